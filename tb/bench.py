"""Benchmarks: ``python -m tb.bench [NAME ...] [--list]`` (``make bench`` runs them all but the
long ones, :data:`LONG`, which run only when named).

Each benchmark runs in its own child process, so that its peak memory (``ru_maxrss``) is its
own, and returns a flat dict of figures. The runner prints one table row per benchmark and,
for each, one JSON line ``{"bench": NAME, ...}`` that scripts can grep. Throughput is reported
as ratios measured within the same run (e.g. golden model vs funcsim on the same image), so the
figures mean something on a loaded or slower machine too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
import traceback

BENCHES: dict = {}
#: benchmarks that run for hours: only when named (``python -m tb.bench fast_b1_paper``)
LONG: set = set()


def bench(name: str, doc: str, *, long: bool = False):
    """Register a benchmark function returning a dict of figures; ``long``: run only when
    named on the command line, not by a plain ``make bench``."""
    def deco(fn):
        BENCHES[name] = (fn, doc)
        if long:
            LONG.add(name)
        return fn
    return deco


def _timed(fn, *args, repeat: int = 1, **kw):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args, **kw)
        best = min(best, time.perf_counter() - t)
    return best, out


@bench("golden", "sim.golden on B1-R224 (random weights): ms per image, and vs funcsim on B0-R64")
def bench_golden() -> dict:
    import numpy as np

    from sim import golden, zoo
    from sim.compile import compile as compile_binary
    from sim.config import AccelConfig
    from sim import funcsim

    t_build, prog = _timed(zoo.build, "b1-r224", seed=0)
    x = zoo.random_image(224, seed=1)
    xq = golden.quantize_input(x, prog.tensors[prog.inputs[0]])
    t_run, _ = _timed(golden.run, prog, xq, repeat=3)
    # golden vs the instruction-level functional simulator, same small program, same run
    small = zoo.build("b0-r64", seed=0)
    xs = golden.quantize_input(zoo.random_image(64, seed=2), small.tensors[small.inputs[0]])
    binary = compile_binary(small, AccelConfig.from_string("paper"))
    t_g, ref = _timed(golden.run, small, xs, repeat=3)
    t_f, out = _timed(funcsim.run, binary, xs)
    same = all(np.array_equal(ref[k], out[k]) for k in small.outputs)
    return {"b1_r224_build_s": round(t_build, 2), "b1_r224_golden_ms": round(1e3 * t_run, 1),
            "b0_r64_golden_ms": round(1e3 * t_g, 1), "b0_r64_funcsim_ms": round(1e3 * t_f, 1),
            "funcsim_over_golden": round(t_f / t_g, 1), "funcsim_equals_golden": same}


@bench("perf", "sim.perf: B1-R224 on `paper` (FPS vs the paper's 494 and vs the compute "
               "bound), model speed")
def bench_perf() -> dict:
    from sim import perf, zoo
    from sim.compile import compile as compile_binary
    from sim.config import AccelConfig

    cfg = AccelConfig.from_string("paper")
    t_build, prog = _timed(zoo.build, "b1-r224", seed=0)
    t_comp, binary = _timed(compile_binary, prog, cfg)
    t_sim, rep = _timed(perf.simulate, binary)
    s = rep.summary()
    return {"fps": round(s["fps"], 1), "paper_fps": 494, "fps_over_paper": round(s["fps"] / 494, 3),
            "fps_over_compute_bound": round(s["fps_over_bound"]["compute"], 3),
            "fps_over_traffic_bound": round(s["fps_over_bound"]["traffic"], 3),
            "mac_utilization": round(s["mac_utilization"], 3), "latency_ms": round(s["latency_ms"], 3),
            "compile_s": round(t_comp, 2), "simulate_s": round(t_sim, 2),
            "model_s_over_frame_s": round(t_sim / (s["latency_ms"] / 1e3))}


def _source_digest() -> str:
    """SHA-256 of the sources a zoo Binary depends on (the cache key's code part)."""
    import hashlib
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "sim"
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        if p.name in ("perf.py", "report.py", "bounds.py", "stream.py", "__main__.py",
                      "access.py"):
            continue                    # readers of a Binary, not its makers
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cached_binary(model: str, cfg, *, seed: int = 0, cache="build/bench", **options):
    """``(Binary, its cache path, whether it came from the cache)``: the compiled zoo ``model``
    for ``cfg`` (``options``: keyword options of :func:`sim.compile.compile`, e.g.
    ``prefetch=True``, ``stem="taps"``; omitted ones take the compiler's defaults), from
    ``cache`` when an earlier run of the same sources, config, seed and options wrote it
    (build/ is generated output)."""
    from pathlib import Path

    from sim import zoo
    from sim.compile import Binary, CompileError
    from sim.compile import compile as compile_binary
    import hashlib
    tag = "".join(f"-{k}={options[k]}" for k in sorted(options))
    key = f"{model}-s{seed}{tag}-" + hashlib.sha256(
        (_source_digest() + cfg.to_json()).encode()).hexdigest()[:16]
    path = Path(cache) / f"{key}.bin.npz"
    if path.exists():
        try:
            return Binary.load(path), path, True
        except CompileError:
            pass
    prog = zoo.build(model, seed=seed)
    prog.meta.setdefault("name", model)
    b = compile_binary(prog, cfg, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    b.save(path)
    return b, path, False


def cached_hazards(binary, path):
    """:func:`sim.stream.frame_hazards` of ``binary``, cached beside its cached Binary (the
    functional simulator run behind it is most of a streaming measurement's time)."""
    from sim.fileio import atomic_write
    from sim.stream import frame_hazards
    hp = path.with_name(path.name.replace(".bin.npz", ".hazards.json"))
    if hp.exists():
        d = json.loads(hp.read_text())
        return {tuple(k.split("/")): {int(pc): [(tuple(x[0]), x[1]) for x in v]
                                      for pc, v in per.items()} for k, per in d.items()}
    hz = frame_hazards(binary)
    atomic_write(hp, json.dumps({"/".join(k): {str(pc): [[list(kj), pj] for kj, pj in v]
                                               for pc, v in per.items()}
                                 for k, per in hz.items()}))
    return hz


def bound_ratios(models, cfg, *, cache="build/bench", frames: int = 3, **options) -> dict:
    """Latency and streaming FPS of each zoo model and their fractions of the compute and
    traffic bounds (:mod:`sim.bounds`), flat keys ``{model}_{figure}`` (``options``: compile
    options, as :func:`cached_binary`); ``cached_binaries`` counts the Binaries taken from
    ``cache``."""
    from sim import perf
    out, hits = {}, 0
    for m in models:
        b, path, hit = cached_binary(m, cfg, cache=cache, **options)
        hits += hit
        rep = perf.simulate(b)
        rep.streaming = perf.stream(b, frames=frames, hazards=cached_hazards(b, path))
        s = rep.summary()
        k = m.replace("-", "_")
        out[f"{k}_latency_fps"] = round(s["fps"], 1)
        out[f"{k}_streaming_fps"] = round(s["streaming"]["fps"], 1)
        out[f"{k}_latency_over_compute"] = round(s["fps_over_bound"]["compute"], 3)
        out[f"{k}_latency_over_traffic"] = round(s["fps_over_bound"]["traffic"], 3)
        out[f"{k}_streaming_over_compute"] = round(s["streaming"]["fps_over_bound"]["compute"], 3)
        out[f"{k}_streaming_over_traffic"] = round(s["streaming"]["fps_over_bound"]["traffic"], 3)
    out["cached_binaries"] = hits
    return out


#: the schedule issue #16 started from: `paper`'s buffers, the tap-major stem, no prefetch
BEFORE_16 = dict(prefetch=False, stem="taps")


@bench("bounds", "Table VII models: latency and streaming FPS as fractions of the compute and "
                 "traffic bounds (sim.bounds), measured in this run, for the schedule issue #16 "
                 "started from (`paper`, tap-major stem, no prefetch: plain keys) and for the "
                 "ZCU102 build's (`zcu102` with the compiler's defaults: keys zcu102_*, "
                 "zcu102_<model>_latency_speedup = after / before)")
def bench_bounds() -> dict:
    from sim.config import AccelConfig
    from sim.report import TABLE7_MODELS
    out = bound_ratios(TABLE7_MODELS, AccelConfig.from_string("paper"), **BEFORE_16)
    after = bound_ratios(TABLE7_MODELS, AccelConfig.from_string("zcu102"))
    out["cached_binaries"] += after.pop("cached_binaries")
    out.update({f"zcu102_{k}": v for k, v in after.items()})
    for m in TABLE7_MODELS:
        k = m.replace("-", "_")
        for mode in ("latency", "streaming"):
            out[f"zcu102_{k}_{mode}_speedup"] = round(
                out[f"zcu102_{k}_{mode}_fps"] / out[f"{k}_{mode}_fps"], 4)
    return out


def stem_costs(models, cfg, *, repeat: int = 20) -> dict:
    """The dense stem's costs and gains (issue #16, :mod:`sim.compile.stem`): the host's numpy
    im2col of one frame of each model's input (``Binary.write_input``'s
    :func:`sim.compile.layout.pack` with the ``im2col`` layout, best of ``repeat``, ms; next
    to the planar pack and the host's quantisation of the float image), the
    input's DRAM bytes planar and unfolded, and the whole network's cycles with
    ``stem="taps"`` / ``"im2col"`` and what ``stem="auto"`` chooses."""

    from sim import golden, zoo
    from sim.compile import compile as compile_binary
    from sim.compile.layout import pack
    from sim.compile.stem import choose_stem, unfold_stem
    from sim.perf import simulate
    out = {}
    for m in models:
        k = m.replace("-", "_")
        prog = zoo.build(m, seed=0)
        t = prog.tensors[prog.inputs[0]]
        img = zoo.random_image(t.shape[-1], seed=1)
        t_quant, x = _timed(golden.quantize_input, img, t, repeat=repeat)
        geom = unfold_stem(prog)[1]
        t_pack, b = _timed(pack, x, layout="im2col", repeat=repeat, **geom)
        t_planar, _ = _timed(pack, x, repeat=repeat)
        cyc = {s: simulate(compile_binary(prog, cfg, stem=s)).cycles for s in ("taps", "im2col")}
        out.update({f"{k}_quantize_ms": round(1e3 * t_quant, 3),
                    f"{k}_im2col_ms": round(1e3 * t_pack, 3),
                    f"{k}_planar_pack_ms": round(1e3 * t_planar, 3),
                    f"{k}_input_bytes": int(x.size), f"{k}_im2col_bytes": int(b.size),
                    f"{k}_taps_cycles": int(cyc["taps"]), f"{k}_im2col_cycles": int(cyc["im2col"]),
                    f"{k}_im2col_speedup": round(cyc["taps"] / cyc["im2col"], 4),
                    f"{k}_auto": choose_stem(prog, cfg)[0]})
    return out


@bench("stem", "the dense stem (im2col input layout) on `paper`: numpy im2col ms per frame on "
               "this machine, input DRAM bytes, cycles taps vs im2col and stem=auto's choice, "
               "B0/B1/B2-R224")
def bench_stem() -> dict:
    from sim.config import AccelConfig
    return stem_costs(("b0-r224", "b1-r224", "b2-r224"), AccelConfig.from_string("paper"))


@bench("quantize", "quant: quantize B1-R224 (fast default, 64 calibration images): time, CPU, "
                   "peak memory, reconstruction effect")
def bench_quantize() -> dict:
    import tempfile

    from quant.cli import build_parser, cmd_quantize

    c0 = time.process_time()
    with tempfile.TemporaryDirectory() as d:
        args = build_parser().parse_args(["quantize", "--model", "b1-r224", "--calib-size", "64",
                                          "--json", "-o", f"{d}/m.qmodel"])
        r = cmd_quantize(args)
    rec = r.get("reconstruction", {})
    med = rec.get("median_mse_ratio")
    return {"seconds": round(r["seconds"], 1), "cpu_s": round(time.process_time() - c0, 1),
            "sqnr_logits_db": round(r["sqnr_logits_db_calib"], 2),
            "recon_seconds": round(r.get("reconstruction_seconds", 0.0), 1),
            "recon_kept": rec.get("kept"), "recon_reverted": rec.get("reverted"),
            "recon_median_mse_ratio": None if med is None else round(med, 4)}


@bench("fast_system", "the whole accelerator (small:L=1) on sim.zoo.tiny, Verilator: DRAM in HDL "
                      "(tb.system.fast, with and without --public-flat-rw) vs cocotbext-axi's "
                      "AxiRam, simulated cycles/s; cycles vs sim.perf")
def bench_fast_system() -> dict:
    import tempfile

    from sim import compile as sc
    from sim import golden, zoo
    from sim.config import AccelConfig
    from tb.system.fast import run_fast
    from tb.system.run import run_accelerator

    # the same Binary through the testbenches of the same accelerator (each checks the outputs
    # bit for bit); builds are excluded, the figures are of the run alone. Per CPU second of the
    # simulator process (cocotb runs in it) is the figure a loaded machine does not distort.
    # "public": the fast testbench built as every model (cocotb's --public-flat-rw), to
    # separate what the DRAM in HDL gives from what the private build gives.
    prog = zoo.tiny()
    t = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(t.shape[-1], seed=3), t)
    cfg = AccelConfig.from_string("small:L=1")
    binary = sc.compile(prog, cfg)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        f = run_fast(binary, x, "verilator", f"{d}/fast", latency=16)
        fp = run_fast(binary, x, "verilator", f"{d}/fast_public", latency=16, public=True)
        a = run_accelerator(prog, cfg, x, "verilator", f"{d}/axiram")
    res.update(cycles=f["cycles"], perf_cycles=f["perf_cycles"],
               cycles_over_perf=round(f["cycles"] / f["perf_cycles"], 3),
               fast_cycles_per_s=round(f["cycles_per_s"]),
               fast_cycles_per_cpu_s=round(f["cycles_per_cpu_s"]),
               fast_run_s=round(f["run_s"], 1), fast_load_s=round(f["load_s"], 1),
               public_cycles_per_cpu_s=round(fp["cycles_per_cpu_s"]),
               axiram_cycles=a["counters"]["CYCLES"],
               axiram_cycles_per_s=round(a["cycles_per_s"]),
               axiram_cycles_per_cpu_s=round(a["counters"]["CYCLES"] / a["cpu_s"]),
               axiram_run_s=round(a["wall_s"], 1))
    res["fast_over_axiram"] = round(res["fast_cycles_per_cpu_s"] / res["axiram_cycles_per_cpu_s"],
                                    1)
    res["fast_over_axiram_wall"] = round(f["cycles_per_s"] / a["cycles_per_s"], 1)
    res["public_over_axiram"] = round(res["public_cycles_per_cpu_s"]
                                      / res["axiram_cycles_per_cpu_s"], 1)
    return res


@bench("fast_b1_paper", "EfficientViT-B1-R224 end to end through the whole accelerator's "
                        "Verilog on the paper's point at the RTL's 16 B/cycle (tb.system.fast, "
                        "Verilator, DRAM in HDL): bit-exact, RTL cycles vs sim.perf, speed "
                        "(hours: run only when named)", long=True)
def bench_fast_b1_paper() -> dict:
    import tempfile

    from sim import compile as sc
    from sim import golden, zoo
    from sim.config import AccelConfig
    from tb.system.fast import PAPER16, PAPER16_BUILD, run_fast

    prog = zoo.build("b1-r224")
    t = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(t.shape[-1], seed=3), t)
    t0 = time.perf_counter()
    binary = sc.compile(prog, AccelConfig.from_string(PAPER16))
    compile_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        # the cocotb test asserts the outputs == sim.golden == sim.funcsim (else this raises)
        f = run_fast(binary, x, "verilator", d, latency=16, timeout_s=12 * 3600, **PAPER16_BUILD)
    diff = (f["cycles"] - f["perf_cycles"]) / f["perf_cycles"]
    return {"config": PAPER16, "bit_exact": f["status"] == "done", "cycles": f["cycles"],
            "perf_cycles": f["perf_cycles"], "diff_pct": round(100 * diff, 2),
            "within_2pct": abs(diff) <= 0.02, "cycles_per_cpu_s": round(f["cycles_per_cpu_s"]),
            "cycles_per_s": round(f["cycles_per_s"]), "run_s": round(f["run_s"]),
            "load_s": round(f["load_s"]), "setup_s": round(f["setup_s"]),
            "compile_s": round(compile_s)}


def _child(name, q):
    fn = BENCHES[name][0]
    t = time.perf_counter()
    try:
        res = fn()
        res["ok"] = True
    except Exception as e:  # report, don't crash the whole run
        res = {"ok": False, "error": f"{type(e).__name__}: {e}",
               "trace": traceback.format_exc(limit=3)}
    res["wall_s"] = round(time.perf_counter() - t, 2)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    q.put(res)


def run(names) -> list:
    ctx = mp.get_context("spawn")
    results = []
    for name in names:
        q = ctx.Queue()
        p = ctx.Process(target=_child, args=(name, q))
        p.start()
        res = q.get()
        p.join()
        results.append((name, res))
        print(json.dumps({"bench": name, **{k: v for k, v in res.items() if k != "trace"}}),
              flush=True)
        if not res["ok"]:
            print(res["trace"], file=sys.stderr)
    return results


def print_table(results):
    from rich.console import Console
    from rich.table import Table
    table = Table(title="trio-vit benchmarks")
    table.add_column("bench")
    table.add_column("figures")
    table.add_column("wall s", justify="right")
    table.add_column("peak MB", justify="right")
    for name, res in results:
        figs = ", ".join(f"{k}={v}" for k, v in res.items()
                         if k not in ("ok", "wall_s", "peak_rss_mb", "trace"))
        table.add_row(name if res["ok"] else f"[red]{name} FAILED", figs,
                      str(res["wall_s"]), str(res["peak_rss_mb"]))
    Console().print(table)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tb.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, (_, doc) in BENCHES.items():
            print(f"{name:16s} {'(only when named) ' if name in LONG else ''}{doc}")
        return 0
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}")
    results = run(args.names or [n for n in BENCHES if n not in LONG])
    print_table(results)
    return 0 if all(r["ok"] for _, r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
