"""Where a cold ``python -m hw build zcu102`` spends its time: the accelerator's Verilog, module
by module and phase by phase (issue #15; docs/board.md, "Measured here").

Usage: ``PYTHONPATH=$PWD python -m tb.build_profile --config paper [--sems N] [--json]``.
Builds ``hw.system.Accelerator(hierarchy=True)`` as ``python -m hw build`` does and converts
each of its modules and the top as :func:`hw.hier.convert_modules` would, timing apart (CPU
seconds of this process, and of its children for Yosys):

* ``elaborate``: ``Fragment.get`` (every ``elaborate`` of the module's tree);
* ``netlist+rtlil``: Amaranth's netlist and its RTLIL text;
* ``yosys``: Amaranth's Yosys (``read_rtlil``, ``write_verilog``), a child process;
* a module that writes its own Verilog (``verilog_text``, :mod:`hw.system.cluster`): ``text``.

plus the imports and the construction of the accelerator. A measurement, not part of the flow:
it calls two private functions of Amaranth 0.5 (``back.rtlil.convert_fragment``,
``back.verilog._convert_rtlil_text``) to split what ``verilog.convert`` does in one call.
"""

from __future__ import annotations

import json
import re
import resource
import sys


def _cpu() -> tuple[float, float]:
    """(this process's CPU seconds, its waited-for children's)."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def profile(config: str, sems: int = 2048) -> dict:
    """``{"imports": s, "construct": s, "modules": [{module, elaborate, netlist_rtlil, yosys,
    text, mbytes}], "total": s}`` (CPU seconds) of the hierarchical accelerator for
    ``config``."""
    t0 = _cpu()
    from amaranth.back import rtlil, verilog
    from amaranth.hdl import Fragment

    from hw.hier import compact_zero_init
    from hw.system.accelerator import Accelerator
    from sim.config import AccelConfig
    t1 = _cpu()
    cfg = AccelConfig.from_string(config)
    acc = Accelerator(config=cfg, sems=sems, hierarchy=True)
    t2 = _cpu()
    rows = []
    for mod, comp in [*acc.modules.items(), ("trio_accel", acc)]:
        row = {"module": mod, "elaborate": 0.0, "netlist_rtlil": 0.0, "yosys": 0.0, "text": 0.0}
        a = _cpu()
        if callable(getattr(comp, "verilog_text", None)):
            text = comp.verilog_text(mod)
            row["text"] = _cpu()[0] - a[0]
        else:
            frag = Fragment.get(comp, None)
            b = _cpu()
            il, _ = rtlil.convert_fragment(frag, name=mod, emit_src=False)
            c = _cpu()
            text = compact_zero_init(verilog._convert_rtlil_text(il, strip_internal_attrs=False))
            d = _cpu()
            row.update(elaborate=b[0] - a[0], netlist_rtlil=c[0] - b[0],
                       yosys=(d[0] - c[0]) + (d[1] - c[1]))
        if comp is not acc:
            head = re.search(rf"^module {mod}\((.*?)\);", text, re.M | re.S).group(1)
            acc.clocked(mod, "clk" in {p.strip() for p in head.split(",")})
        row["mbytes"] = len(text) / 1e6
        rows.append(row)
    end = _cpu()
    return {"config": config, "imports": t1[0] - t0[0], "construct": t2[0] - t1[0],
            "modules": rows, "total": (end[0] - t0[0]) + (end[1] - t0[1])}


def table(res: dict) -> str:
    lines = [f"config {res['config']}: imports {res['imports']:.1f} s, Accelerator() "
             f"{res['construct']:.1f} s, in all {res['total']:.1f} CPU s",
             f"{'module':<16}{'elaborate':>10}{'netlist+rtlil':>15}{'yosys':>8}{'text':>7}"
             f"{'MB':>7}"]
    for r in res["modules"]:
        lines.append(f"{r['module']:<16}{r['elaborate']:>10.1f}{r['netlist_rtlil']:>15.1f}"
                     f"{r['yosys']:>8.1f}{r['text']:>7.1f}{r['mbytes']:>7.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m tb.build_profile", description=(
        "CPU seconds of the accelerator's hierarchical Verilog by module and phase (what a "
        "cold `python -m hw build zcu102` spends)"))
    ap.add_argument("--config", default="paper", help="config string (default paper)")
    ap.add_argument("--sems", type=int, default=2048, help="semaphores (default 2048)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    res = profile(args.config, args.sems)
    print(json.dumps(res) if args.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
