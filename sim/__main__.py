"""``python -m sim``: compile, run and measure EfficientViT on the Trio-ViT accelerator model.

Subcommands
-----------
perf     cycle model of one model/config: latency and streaming FPS, the bounds (sim.bounds)
         and the fraction of each reached, utilisation, layers
sweep    FPS over a grid of (N, M, T, S, L) -> CSV + PNG
table7   the paper's Table VII (Trio-ViT columns) beside this model, B1/B2 at R224/256/288
attctx   A/B: the attention context modules through DRAM and kept on chip, next to the bounds
bufsweep FPS over the global buffer sizes B, C, OUT within a byte budget -> table, CSV + PNG
compile  IntProgram (.npz) -> Binary (.npz) for a config
run      (alias funcsim) run a Binary on the functional simulator and compare with golden
access   how the core units access the buffers: strides, widths, rates, sharing (sim.access)
lockstep what-if: the cores in lock-step groups of G (one stream per group): FPS, barrier and
         imbalance cost, control copies, B / C reads after broadcast (sim.lockstep)
"""

from __future__ import annotations

import argparse
import json
import time
import sys
from pathlib import Path

import numpy as np

from .isa import SEM_IDS

BUILD = Path("build")


class UserError(Exception):
    pass


def _cfg(spec):
    from .config import AccelConfig, ConfigError
    try:
        return AccelConfig.from_string(spec)
    except ConfigError as e:
        raise UserError(f"--config: {e}") from None


def _program(args):
    from . import zoo
    from .intprogram import IntProgram, IntProgramError
    if getattr(args, "program", None):
        try:
            return IntProgram.load(args.program)
        except IntProgramError as e:
            raise UserError(str(e)) from None
    try:
        zoo.parse_name(args.model)
    except (ValueError, TypeError) as e:
        raise UserError(f"--model: {e}") from None
    print(f"building {args.model} with random self-calibrated weights (seed {args.seed})",
          file=sys.stderr)
    p = zoo.build(args.model, seed=args.seed)
    p.meta.setdefault("name", args.model)
    return p


def cmd_perf(args):
    from .compile import CompileError, compile as compile_
    from .perf import simulate, stream
    from .report import atomic_write, plot_layers, print_perf, to_json
    cfg = _cfg(args.config)
    _check_frames(args.frames)
    if args.contexts < 1:
        raise UserError(f"--contexts must be >= 1, got {args.contexts}")
    if (args.contexts > 1 or args.no_frame_hazards) and args.frames < 2:
        raise UserError("--contexts and --no-frame-hazards are streaming what-ifs: they need "
                        "--frames >= 2")
    if args.phase_fences and (args.no_frame_hazards or not args.stream or args.frames < 2):
        raise UserError("--phase-fences needs --stream and --frames >= 2 (and not "
                        "--no-frame-hazards)")
    if args.ld_priority != "oldest" and args.contexts < 2:
        raise UserError("--ld-priority chooses between queue contexts: it needs --contexts >= 2")
    if args.core_switch != "wait" and args.contexts < 2:
        raise UserError("--core-switch chooses between queue contexts: it needs --contexts >= 2")
    prog = _program(args)
    prog.meta["name"] = args.model if not args.program else Path(args.program).stem
    try:
        b = compile_(prog, cfg, fuse=not args.no_fuse, attn_onchip=not args.no_attn_onchip,
                     prefetch=args.prefetch, stream=args.stream, stem=args.stem,
                     layout=args.layout)
    except CompileError as e:
        raise UserError(f"cannot compile: {e}") from None
    trace = [] if args.losses else None
    rep = simulate(b, trace=trace)
    losses = None
    if args.losses:
        from .losses import layer_losses
        kinds = tuple(k for k in args.losses.split(",") if k)
        losses = [r for r in layer_losses(b, rep, trace) if r["kind"] in kinds]
    if args.frames > 1:
        from .stream import fence_counts, frame_hazards, has_fences, phase_fences
        hz = {} if args.no_frame_hazards else frame_hazards(b)
        if args.phase_fences:
            pf = phase_fences(b)
        # a Binary compiled with --stream carries its own frame fences (WAITs on the previous
        # frame's semaphores); the others get the exact ones replayed
        own = has_fences(b) and not (args.no_frame_hazards or args.phase_fences)
        rep.streaming = stream(b, frames=args.frames, contexts=args.contexts,
                               hazards=pf if args.phase_fences else None if own else hz,
                               ld_priority=args.ld_priority, core_switch=args.core_switch)
        rep.streaming["fences"] = ("the Binary's (compile --stream)" if own else
                                   "none" if args.no_frame_hazards else
                                   "sim.stream.phase_fences, replayed" if args.phase_fences
                                   else "sim.stream.frame_hazards, replayed")
        what = [w for w, on in (("no cross-frame buffer hazards", args.no_frame_hazards),
                                (f"{args.contexts} queue contexts per unit",
                                 args.contexts > 1),
                                ("LD issues the youngest frame first",
                                 args.ld_priority == "youngest"),
                                ("core units switch frames at any instruction",
                                 args.core_switch == "any"),
                                ("two phase fences per queue instead of the exact ones",
                                 args.phase_fences)) if on]
        if what:
            rep.streaming["what_if"] = ", ".join(what)
        if not args.no_frame_hazards and (args.stream or args.contexts > 1):
            rep.streaming["frame_fences"] = fence_counts(b, hz)
            if args.phase_fences:
                rep.streaming["frame_fences"]["phase_fences"] = sum(
                    len(d) for d in pf.values())
    if args.json:
        d = rep.to_dict() if args.layers else rep.summary()
        if losses is not None:
            d["losses"] = losses
        print(to_json(d))
    else:
        print_perf(rep, layers=not args.no_layers)
        if losses is not None:
            from .losses import print_losses
            print_losses(losses, kinds=kinds)
        if rep.streaming and "frame_fences" in rep.streaming:
            print("frame fences (sim.stream.fence_counts): " + ", ".join(
                f"{k} {v}" for k, v in rep.streaming["frame_fences"].items()))
    if args.plot:
        plot_layers(rep, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.out:
        atomic_write(args.out, to_json(rep.to_dict()))
        print(f"wrote {args.out}", file=sys.stderr)


DEFAULT_GRID = "N=4,8;M=8;T=4,8;S=8;L=4,8,16"


def cmd_sweep(args):
    from .report import parse_grid, plot_sweep, sweep_rows, to_json, write_csv
    cfg = _cfg(args.config)
    try:
        grid = parse_grid(args.grid)
        for g in grid:
            cfg.replace(**g)
    except Exception as e:
        raise UserError(f"--grid: {e}") from None
    prog = _program(args)
    rows = sweep_rows(prog, cfg, grid, progress=not args.json)
    write_csv(rows, args.csv)
    plot_sweep(rows, args.plot, title=f"{args.model}: FPS vs multipliers")
    if args.json:
        print(to_json(rows))
    else:
        from rich.console import Console
        from rich.table import Table
        t = Table(title=f"sweep of {args.model} ({args.csv}, {args.plot})")
        keys = [k for k in rows[0] if k not in ("error",)]
        for k in keys:
            t.add_column(k)
        for r in rows:
            t.add_row(*[f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, ""))
                        for k in keys])
        Console(width=160).print(t)


def cmd_table7(args):
    from .report import TABLE7_MODELS, print_table7, table7_rows
    cfg = _cfg(args.config)
    models = _models(args.models) if args.models else list(TABLE7_MODELS)
    _check_frames(args.frames)
    if args.contexts < 1:
        raise UserError(f"--contexts must be >= 1, got {args.contexts}")
    rows = table7_rows(cfg, models, seed=args.seed, progress=not args.json, frames=args.frames,
                       prefetch=args.prefetch, stream=args.stream, contexts=args.contexts,
                       stem=args.stem)
    _emit_rows(args, rows, print_table7)


def _emit_rows(args, rows, printer):
    """``rows`` as JSON (``--json``) or through ``printer``, and to ``--out`` as JSON."""
    from .report import atomic_write, to_json
    if args.json:
        print(to_json(rows))
    else:
        printer(rows)
    if args.out:
        atomic_write(args.out, to_json(rows))


def _models(spec):
    from . import zoo
    models = [m.strip() for m in spec.split(",") if m.strip()]
    for m in models:
        try:
            zoo.parse_name(m)
        except (ValueError, TypeError) as e:
            raise UserError(f"--models: {e}") from None
    return models


def _check_frames(frames):
    if frames < 1:
        raise UserError(f"--frames must be >= 1 (1: latency mode only), got {frames}")


def cmd_attctx(args):
    from .onchip import attctx_rows, print_attctx
    cfg = _cfg(args.config)
    _check_frames(args.frames)
    rows = attctx_rows(cfg, _models(args.models), seed=args.seed, frames=args.frames,
                       progress=not args.json)
    _emit_rows(args, rows, print_attctx)


def _kb_list(name, spec):
    try:
        v = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--{name}: expected comma-separated KiB, got {spec!r}") from None
    if not v or min(v) < 1:
        raise UserError(f"--{name}: expected positive KiB sizes, got {spec!r}")
    return v


def cmd_bufsweep(args):
    from .onchip import bufsweep_grid, bufsweep_rows, plot_bufsweep, print_bufsweep
    from .report import to_json, write_csv
    cfg = _cfg(args.config)
    _check_frames(args.frames)
    grid = bufsweep_grid(_kb_list("b", args.b), _kb_list("c", args.c),
                         _kb_list("out", args.out_kb), args.budget_kb)
    if not grid:
        raise UserError(f"no (B, C, OUT) combination within --budget-kb {args.budget_kb}")
    try:
        for g in grid:
            cfg.replace(**g)
    except Exception as e:
        raise UserError(f"buffer size: {e}") from None
    prog = _program(args)
    rows = bufsweep_rows(prog, cfg, grid, frames=args.frames, ab=args.ab,
                         progress=not args.json)
    title = (f"{args.model if not args.program else Path(args.program).stem} on {args.config}:"
             f" FPS vs global buffer sizes (B+C+OUT <= {args.budget_kb} KiB)")
    write_csv(rows, args.csv)
    plot_bufsweep(rows, args.plot, title=title)
    if args.json:
        print(to_json(rows))
    else:
        print_bufsweep(rows, title)
        print(f"wrote {args.csv}, {args.plot}", file=sys.stderr)


def cmd_compile(args):
    from .compile import CompileError, compile as compile_
    from .intprogram import IntProgram, IntProgramError
    cfg = _cfg(args.config)
    try:
        prog = IntProgram.load(args.program)
    except IntProgramError as e:
        raise UserError(str(e)) from None
    try:
        b = compile_(prog, cfg, fuse=not args.no_fuse, attn_onchip=not args.no_attn_onchip,
                     prefetch=args.prefetch, stream=args.stream, stem=args.stem,
                     layout=args.layout)
    except CompileError as e:
        raise UserError(f"cannot compile: {e}") from None
    if args.groups != 1:
        from .lockstep import LockstepError, group_binary
        try:
            b = group_binary(b, args.groups, setc=args.setc, hoist=args.hoist)
        except LockstepError as e:
            raise UserError(f"--groups {args.groups}: {e}") from None
    try:
        b.save(args.output)
    except OSError as e:
        raise UserError(f"{args.output}: cannot write ({e.strerror or e})") from None
    print(f"wrote {args.output}: {b.n_instructions} instructions, DRAM image "
          f"{b.dram.size / 1e6:.2f} MB, {b.sem_ids} semaphore ids, config {cfg.describe()}")
    if b.sem_ids > SEM_IDS:
        print(f"note: the Binary uses {b.sem_ids} semaphore ids, more than the {SEM_IDS} of an "
              f"accelerator built with the default semaphore file: build it with "
              f"`python -m hw build zcu102 --sems {b.sem_ids}` or more (the runtime refuses "
              f"the Binary on a smaller file)", file=sys.stderr)


def cmd_run(args):
    from . import golden
    from .compile import Binary, CompileError
    from .funcsim import run
    from .funcsim import FuncSimError
    try:
        b = Binary.load(args.binary)
    except CompileError as e:
        raise UserError(str(e)) from None
    t = b.prog.tensors[b.prog.inputs[0]]
    if args.input:
        try:
            x = np.load(args.input, allow_pickle=False)
        except Exception as e:
            raise UserError(f"--input: cannot read {args.input}: {e}") from None
    else:
        x = np.random.default_rng(args.seed).integers(-128 if t.signed else 0,
                                                      128 if t.signed else 256, size=t.shape)
    t0 = time.perf_counter()
    try:
        golden._check_input(b.prog, x)
    except (ValueError, TypeError) as e:
        raise UserError(f"{args.input or 'input'}: {e}") from None
    try:
        out = run(b, x, order=args.order)
    except FuncSimError as e:
        raise UserError(f"{args.binary}: the functional simulator stopped: {e}") from None
    t1 = time.perf_counter()
    try:
        ref = golden.run(b.prog, x)
    except (ValueError, ArithmeticError) as e:
        raise UserError(f"{args.binary}: the golden model stopped: {e}") from None
    t2 = time.perf_counter()
    ok, rows = True, {}
    for k in b.prog.outputs:
        eq = bool(np.array_equal(out[k], ref[k]))
        ok &= eq
        rows[k] = dict(equal=eq, shape=list(out[k].shape),
                       max_abs_diff=int(np.abs(out[k] - ref[k]).max()),
                       top1_funcsim=int(np.argmax(out[k])), top1_golden=int(np.argmax(ref[k])))
        if not args.json:
            print(f"{k}: funcsim {'==' if eq else '!='} golden  (shape {out[k].shape}, "
                  f"max |diff| {rows[k]['max_abs_diff']}, top-1 {rows[k]['top1_funcsim']})")
    if args.json:
        print(json.dumps(dict(funcsim_equals_golden=ok, instructions=b.n_instructions,
                              funcsim_s=round(t1 - t0, 2), golden_s=round(t2 - t1, 2),
                              outputs=rows)))
    if not ok:
        sys.exit(1)


def cmd_access(args):
    from .access import analyse, compile_split, format_report, to_json
    from .compile import CompileError
    from . import zoo
    cfg = _cfg(args.config)
    prog = zoo.tiny(seed=args.seed) if args.model == "tiny" and not args.program \
        else _program(args)
    prog.meta["name"] = args.model if not args.program else Path(args.program).stem
    try:
        b = compile_split(prog, cfg, args.split, fuse=not args.no_fuse)
    except CompileError as e:
        raise UserError(f"cannot compile: {e}") from None
    rep = analyse(b, layout=args.layout)
    print(to_json(rep) if args.json else format_report(rep, local=args.local))


def cmd_lockstep(args):
    from . import lockstep, zoo
    from .access import compile_split
    from .compile import CompileError
    try:
        groups = [int(g) for g in args.groups.split(",")]
    except ValueError:
        raise UserError(f"--groups: a comma list of integers, got {args.groups!r}") from None
    if args.posted is not None and args.posted < 0:
        raise UserError(f"--posted must be >= 0, got {args.posted}")
    if args.barrier_latency < 0:
        raise UserError(f"--barrier-latency must be >= 0, got {args.barrier_latency}")
    results = []
    for spec in args.config or ["paper"]:
        cfg = _cfg(spec)
        for g in groups:
            try:
                lockstep.control_savings(cfg.L, g)
            except lockstep.LockstepError as e:
                raise UserError(f"--groups: {e}") from None
        for model in args.model.split(","):
            prog = zoo.tiny(seed=args.seed) if model == "tiny" else _program(
                argparse.Namespace(model=model, seed=args.seed, program=None))
            prog.meta["name"] = model
            try:
                b = compile_split(prog, cfg, args.split, stem=args.stem)
            except CompileError as e:
                raise UserError(f"cannot compile {model}: {e}") from None
            if args.controller:
                try:
                    rows = lockstep.controller_rows(b, groups, posted=args.posted)
                except lockstep.LockstepError as e:
                    raise UserError(f"{model}: {e}") from None
                results.append(dict(model=model, config=spec, rows=rows))
                continue
            if args.issue:
                for g in groups:
                    if g == 1:
                        continue
                    try:
                        il = lockstep.issue_load(lockstep.group_binary(b, g))
                    except lockstep.LockstepError as e:
                        raise UserError(f"{model} at G = {g}: {e}") from None
                    results.append(dict(model=model, config=spec, G=g, issue=il))
                continue
            if args.fields:
                for g in groups:
                    if g == 1:
                        continue
                    try:
                        d = lockstep.differences(b, g)
                        st = lockstep.stream_stats(lockstep.group_binary(b, g))
                    except lockstep.LockstepError as e:
                        raise UserError(f"{model} at G = {g}: {e}") from None
                    results.append(dict(model=model, config=spec, G=g,
                                        summary=lockstep.fields_summary(d), stream=st,
                                        per_core=sum(len(v) for k, v in b.streams.items()
                                                     if k != "global")))
                continue
            rows = lockstep.measure(b, groups, traffic=args.traffic,
                                    latency=args.barrier_latency)
            results.append(dict(model=model, config=spec, split=args.split, rows=rows))
    if args.json:
        print(json.dumps(results))
    elif args.controller:
        print(lockstep.format_controller(results))
        print()
        print(lockstep.format_patterns(results))
    elif args.issue:
        print("| model | config | G | cycles | slots | issued between slots: group / slowest "
              "core | extra, drained | extra, latched |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in results:
            il = r["issue"]
            print(f"| {r['model']} | {r['config']} | {r['G']} | {il['cycles']:,} | "
                  f"{il['slots']:,} | {il['group']:,} / {il['core']:,} | "
                  f"{il['extra_drained']:,} | {il['extra_latched']:,} |")
    elif args.fields:
        print(lockstep.format_fields(results))
        print()
        print("| model | config | G | core instructions | group stream instructions | slots "
              "| SETC (MASK / offsets / bounds) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in results:
            st = r["stream"]["setc"]
            off = sum(v for k, v in st.items() if k.endswith("_OFF"))
            bnd = sum(v for k, v in st.items() if k in ("NCO", "HIN", "HO"))
            print(f"| {r['model']} | {r['config']} | {r['G']} | {r['per_core']:,} | "
                  f"{r['stream']['instructions']:,} | {r['stream']['slots']:,} | "
                  f"{st.get('MASK', 0):,} / {off:,} / {bnd:,} |")
    else:
        print(lockstep.format_table(results, traffic=args.traffic))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m sim", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true",
                    help="print the traceback of an unexpected error")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, model=True):
        p.add_argument("--config", default="paper",
                       help="preset (paper, small, paper-1core), 'paper:L=8,dram_bytes_per_cycle=32'"
                            ", a JSON object or a .json file (default: paper)")
        if model:
            p.add_argument("--model", default="b1-r224", help="zoo model, e.g. b1-r224 (default)")
            p.add_argument("--program", help="an IntProgram .npz instead of a zoo model")
            p.add_argument("--seed", type=int, default=0, help="seed of the random weights")

    def schedule_options(p, *, onchip=True):
        """The compiler's schedule switches, the same on every subcommand that compiles."""
        if onchip:
            p.add_argument("--no-attn-onchip", action="store_true",
                           help="the attention context modules' activations through DRAM (the "
                                "schedule before sim.compile.attctx; for an A/B see `python -m "
                                "sim attctx`)")
        p.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=None,
                       help="cross-layer weight prefetch (sim.compile.prefetch; default: on when "
                            "buffer C is larger than its two weight slots, e.g. --config zcu102, "
                            "also with --stream; docs/perf.md)")
        p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=False,
                       help="compile for streaming: the first and the last layers' buffer "
                            "regions disjoint (sim.compile.streaming; default off; gains only "
                            "with --contexts 2, docs/perf.md)")
        p.add_argument("--stem", choices=("auto", "im2col", "taps"), default="auto",
                       help="im2col: a generic conv stem on the input runs as a pointwise conv "
                            "over the input the host writes unfolded; taps: the generic conv "
                            "path, k*k steps per pixel; auto (default): the faster of the two "
                            "for the stem layer by the cycle model (sim.compile.stem, "
                            "docs/compiler.md)")

    p = sub.add_parser("perf", help="cycle model of one model on one config")
    common(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--layers", action="store_true", help="with --json: include per-layer rows")
    p.add_argument("--no-layers", action="store_true", help="omit the per-layer table")
    p.add_argument("--no-fuse", action="store_true", help="disable inter-layer fusion")
    p.add_argument("--losses", nargs="?", const="depthwise,grouped_pointwise,attention",
                   metavar="KIND,KIND",
                   help="also print each layer's cycles per cause (sim.losses) for these "
                        "layer kinds (default depthwise,grouped_pointwise,attention)")
    schedule_options(p)
    p.add_argument("--frames", type=int, default=3,
                   help="streaming mode: replay the Binary this many frames back to back and "
                        "report the steady-state FPS (default 3; 1: latency mode only)")
    p.add_argument("--contexts", type=int, default=1,
                   help="what-if for streaming: each unit holds this many frames' queues and "
                        "issues from any ready one (a dispatcher the hardware does not have)")
    p.add_argument("--ld-priority", choices=("oldest", "youngest"), default="oldest",
                   help="what-if with --contexts: which frame's ready LOAD the LD unit issues "
                        "first (default oldest; youngest: the next frame's first loads ahead "
                        "of the current frame's weight stream, docs/perf.md)")
    p.add_argument("--core-switch", choices=("wait", "any"), default="wait",
                   help="what-if with --contexts: when a core unit may leave one frame's queue "
                        "for the other's (default wait: only after a refused WAIT, as the "
                        "shared registers require; any: at every instruction, oldest ready "
                        "frame first, as a second register set per unit would allow)")
    p.add_argument("--phase-fences", action="store_true",
                   help="with --stream: replay with two coarse frame fences per queue "
                        "(sim.stream.phase_fences) instead of the exact ones")
    p.add_argument("--no-frame-hazards", action="store_true",
                   help="what-if for streaming: drop the cross-frame buffer hazards (not "
                        "executable by this Binary: an upper estimate for a compiler that keeps "
                        "the frames' buffers apart)")
    p.add_argument("--plot", nargs="?", const=str(BUILD / "perf_layers.png"),
                   help="write a PNG of per-layer utilisation (default build/perf_layers.png)")
    p.add_argument("-o", "--out", help="also write the full report as JSON here")
    p.add_argument("--layout", default="planar", choices=("planar", "blocked"),
                   help="activation layout of the compiled Binary: planar (default) or "
                        "channel-blocked (docs/global-buffers.md section 5)")
    p.set_defaults(fn=cmd_perf)

    p = sub.add_parser("sweep", help="FPS over a grid of (N,M,T,S,L)")
    common(p)
    p.add_argument("--grid", default=DEFAULT_GRID,
                   help=f"'KEY=v1,v2;KEY=...' over config fields (default {DEFAULT_GRID!r})")
    p.add_argument("--csv", default=str(BUILD / "sweep.csv"), help="CSV output (build/sweep.csv)")
    p.add_argument("--plot", default=str(BUILD / "sweep.png"), help="PNG output (build/sweep.png)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("table7", help="paper Table VII vs this model")
    common(p, model=False)
    p.add_argument("--models", help="comma list (default b1-r224..b2-r288)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=3,
                   help="frames back to back for the streaming column (default 3; 1: omit it)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--contexts", type=int, default=1,
                   help="what-if for the streaming column: queue contexts per unit (as perf)")
    schedule_options(p, onchip=False)
    p.add_argument("-o", "--out", help="also write JSON here")
    p.set_defaults(fn=cmd_table7)

    p = sub.add_parser("attctx", help="A/B: attention context modules through DRAM / on chip")
    common(p, model=False)
    p.add_argument("--models", default="b0-r224,b1-r224,b2-r224",
                   help="comma list of zoo models (default b0-r224,b1-r224,b2-r224)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=3,
                   help="frames back to back for the streaming column (default 3; 1: omit it)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-o", "--out", help="also write JSON here")
    p.set_defaults(fn=cmd_attctx)

    p = sub.add_parser("bufsweep", help="FPS over the global buffer sizes B, C, OUT")
    common(p)
    p.add_argument("--b", default="288,384,448,512",
                   help="buffer B sizes in KiB (default 288,384,448,512; at most 512: the "
                        "19-bit x_addr / o_addr of the tile instructions, sim.isa)")
    p.add_argument("--c", default="128,192,256,384", help="buffer C sizes in KiB "
                   "(default 128,192,256,384; at most 2048: the 21-bit w_addr / p_addr)")
    p.add_argument("--out-kb", default="64,128", help="OUT sizes in KiB (default 64,128)")
    p.add_argument("--budget-kb", type=int, default=3472,
                   help="only points with B + C + OUT within this many KiB (default 3472: the "
                        "ZCU102's 912 BRAM36 less 16 zcu102 cores' 40 and the top's 4, at "
                        "4 KiB each; docs/perf.md)")
    p.add_argument("--frames", type=int, default=1,
                   help="frames back to back for a streaming column (default 1: latency only)")
    p.add_argument("--ab", action="store_true",
                   help="also each point with the context modules through DRAM")
    p.add_argument("--csv", default=str(BUILD / "bufsweep.csv"),
                   help="CSV output (build/bufsweep.csv)")
    p.add_argument("--plot", default=str(BUILD / "bufsweep.png"),
                   help="PNG output (build/bufsweep.png)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_bufsweep)

    p = sub.add_parser("compile", help="IntProgram -> Binary")
    p.add_argument("program", help="IntProgram .npz (from python -m quant export or sim.zoo)")
    common(p, model=False)
    p.add_argument("-o", "--output", default=str(BUILD / "model.bin.npz"))
    p.add_argument("--no-fuse", action="store_true")
    schedule_options(p)
    p.add_argument("--layout", default="planar", choices=("planar", "blocked"),
                   help="activation layout: planar (default) or channel-blocked "
                        "[C/B][H][W][B] with the units' BLOCK register "
                        "(docs/global-buffers.md section 5)")
    p.add_argument("--groups", type=int, default=1, metavar="G",
                   help="write the lock-step group form: one stream per group of G cores "
                        "(sim.lockstep.group_binary, docs/global-buffers.md section 6; "
                        "default 1, one stream per core)")
    p.add_argument("--setc", choices=("core", "affine"), default="core",
                   help="with --groups: per-core SETCs only (default) or also the every-core "
                        "forms where they take fewer (sim.lockstep.group_binary setc=)")
    p.add_argument("--hoist", action="store_true",
                   help="with --groups: the SETRs between two slots moved to just after the "
                        "first, grouped by mask (sim.lockstep.group_binary hoist=)")
    p.set_defaults(fn=cmd_compile)

    p = sub.add_parser("access", help="buffer access of the core units (strides, rates, sharing)")
    common(p)       # --model also takes "tiny" (sim.zoo.tiny)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--local", action="store_true", help="include the per-core AUX, DIV, A")
    p.add_argument("--split", default="auto", choices=("auto", "rows", "channels", "lc2", "lc4"),
                   help="what-if: force how tiles are split over the cores (default: the "
                        "compiler's choice)")
    p.add_argument("--no-fuse", action="store_true", help="disable inter-layer fusion")
    p.add_argument("--layout", default="planar", choices=("planar", "blocked"),
                   help="what-if: the activation ports re-addressed as if every activation but "
                        "the network input were channel-blocked [C/B][H][W][B] "
                        "(sim.access.relayout; the Binary itself is planar)")
    p.set_defaults(fn=cmd_access)

    p = sub.add_parser("lockstep", help="what-if: cores in lock-step groups of G (sim.lockstep)")
    p.add_argument("--model", default="b1-r224",
                   help="zoo model(s), comma list (tiny too; default b1-r224)")
    p.add_argument("--config", action="append",
                   help="a config as for perf; repeat for several (default paper)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--groups", default="1,2,4,16",
                   help="cores per lock-step group, comma list, each dividing L (default "
                        "1,2,4,16; 1 = today, asserted equal to sim.perf)")
    p.add_argument("--split", default="auto", choices=("auto", "rows", "channels", "lc2", "lc4"),
                   help="what-if: force how tiles are split over the cores, as for access "
                        "(sim.access.compile_split; default: the compiler's choice)")
    p.add_argument("--barrier-latency", type=int, default=0, metavar="CYCLES",
                   help="cycles a slot starts after its last participant is ready (default 0; "
                        "a what-if for a registered barrier)")
    p.add_argument("--traffic", action="store_true",
                   help="also the B / C reads per cycle, requested and after broadcast")
    p.add_argument("--stem", choices=("auto", "im2col", "taps"), default="auto",
                   help="the dense stem's mapping, as for compile (default auto)")
    p.add_argument("--fields", action="store_true",
                   help="instead: which instruction fields and registers differ between the "
                        "participants of a slot, and the size of the group streams "
                        "(sim.lockstep.differences, group_binary) for each G > 1")
    p.add_argument("--issue", action="store_true",
                   help="instead: what the group controllers issue between slots against the "
                        "cores (sim.lockstep.issue_load, an estimate) for each G > 1")
    p.add_argument("--controller", action="store_true",
                   help="instead: the group Binary timed as its controllers issue it, plain "
                        "and with shadow registers, per-core and every-core (affine) SETCs "
                        "(sim.lockstep.controller_rows)")
    p.add_argument("--posted", type=int, default=None, metavar="DEPTH",
                   help="with --controller: the shadow controllers' posted-SIGNAL FIFO depth "
                        "(default: unbounded; 0: a SIGNAL waits for the slot's drain)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(fn=cmd_lockstep)

    for name in ("run", "funcsim"):
        p = sub.add_parser(name, help="functional simulation of a Binary vs the golden model")
        p.add_argument("binary", help="Binary .npz from `python -m sim compile`")
        p.add_argument("--input", help=".npy integer image (default: random with --seed)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--order", default="ld_first", choices=("ld_first", "ld_last"))
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(fn=cmd_run)

    args = ap.parse_args(argv)
    try:
        args.fn(args)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)     # one line
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:      # a bug, not a user error: short message, traceback on request
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"internal error: {type(e).__name__}: {msg} (rerun with --debug for the"
              " traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
