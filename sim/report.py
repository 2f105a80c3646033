"""Reports of the performance model: tables (rich), CSV/JSON, PNG plots, the Table VII comparison.

Every file is written atomically (temporary file + rename), so an interrupted run leaves
nothing half-written.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

from .fileio import atomic_write

__all__ = ["PAPER_TABLE7", "atomic_write", "print_perf", "bound_rows", "plot_layers", "sweep_rows",
           "plot_sweep", "write_csv", "table7_rows", "print_table7", "parse_grid"]

#: paper Table VII, "Ours" columns as printed (model label, latency ms, FPS, GOPS, DSPs)
PAPER_TABLE7 = {
    "b2-r288": dict(latency_ms=1.12, fps=895.0, gops=769.0, dsp=1024),
    "b1-r224": dict(latency_ms=2.02, fps=494.0, gops=791.0, dsp=1024),
    "b2-r256": dict(latency_ms=2.64, fps=379.0, gops=796.0, dsp=1024),
}
TABLE7_MODELS = ("b1-r224", "b1-r256", "b1-r288", "b2-r224", "b2-r256", "b2-r288")


def _console():
    from rich.console import Console
    return Console(width=160)


def bound_rows(s: dict) -> list[tuple]:
    """(bound, cycles, FPS, latency FPS / bound FPS, streaming FPS / bound FPS) of a summary."""
    b = s["bounds"]
    fr = s.get("fps_over_bound", {})
    st = s.get("streaming", {}).get("fps_over_bound", {})
    names = {"compute": "compute (MACs / multipliers)",
             "traffic": "traffic (weights, params, in/out once)",
             "per_layer": "per layer (compulsory bytes, no prefetch)"}
    return [(names[k], b[f"{k}_cycles"], b[f"{k}_fps"], fr.get(k), st.get(k)) for k in names]


def print_perf(rep, *, layers: bool = True, console=None):
    """Headline figures (latency and streaming mode), the bounds of :mod:`sim.bounds` with the
    fraction of each reached, the op-type breakdown and the per-layer table of a PerfReport."""
    from rich.table import Table
    con = console or _console()
    s = rep.summary()
    cfg = rep.config
    con.print(f"[bold]{s['model']}[/bold] on [bold]{cfg['name']}[/bold]: (N,M,T,S,L)="
              f"({cfg['N']},{cfg['M']},{cfg['T']},{cfg['S']},{cfg['L']}), "
              f"{rep.multipliers} multipliers ({rep.dsps} DSP), {rep.clock_mhz:g} MHz, DRAM "
              f"{cfg['dram_bytes_per_cycle']} B/cycle "
              f"({cfg['dram_bytes_per_cycle'] * rep.clock_mhz / 1000:.1f} GB/s)")
    t = Table(title="headline")
    for c in ("metric", "value"):
        t.add_column(c)
    rows = [("latency mode (one frame): latency", f"{s['latency_ms']:.3f} ms ({s['cycles']} cycles)"),
            ("latency mode: FPS", f"{s['fps']:.1f}")]
    st = s.get("streaming")
    if st and st.get("what_if"):
        rows += [("WHAT-IF (not executable): " + st["what_if"], "")]
    if st:
        rows += [("streaming mode: cycles / frame",
                  f"{st['cycles_per_frame']:.0f} ({st['frames']} frames back to back, at most "
                  f"{st['frames_in_flight']} in flight)"),
                 ("streaming mode: FPS", f"{st['fps']:.1f}")]
    rows += [("GOPS (1 MAC = 2 ops), latency mode", f"{s['gops']:.1f}"),
             ("GOPS/DSP", f"{s['gops_per_dsp']:.3f}"),
             ("MAC utilisation (latency mode)", f"{100 * s['mac_utilization']:.1f} %"),
             ("MACs / frame", f"{s['macs'] / 1e6:.1f} M"),
             ("DRAM traffic / frame: this Binary", f"{s['dram_bytes'] / 1e6:.2f} MB"),
             ("DRAM traffic / frame: compulsory",
              f"{s['bounds']['traffic_bytes'] / 1e6:.2f} MB"),
             ("roofline of this Binary's own bytes (not a bound)",
              f"{s['binary_roofline_fps']:.1f} FPS (latency FPS = "
              f"{100 * s['fps_over_binary_roofline']:.1f} % of it)")]
    for r in rows:
        t.add_row(*r)
    con.print(t)
    t = Table(title="bounds (from the IntProgram and the config only, sim.bounds)")
    for c in ("bound", "cycles", "FPS", "latency FPS / bound", "streaming FPS / bound"):
        t.add_column(c, justify="left" if c == "bound" else "right")
    for name, cyc, fps, fl, fs in bound_rows(s):
        t.add_row(name, str(cyc), f"{fps:.1f}", "-" if fl is None else f"{100 * fl:.1f} %",
                  "-" if fs is None else f"{100 * fs:.1f} %")
    con.print(t)
    b = s["op_breakdown"]
    con.print("op-type share of MACs: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in b.items())
              + "   (paper, B1-R224: generic 1.1 / PW 91.9 / DW 5.4 / matmul 1.6 %)")
    if layers:
        t = Table(title="per layer, latency mode (cycles: each cycle shared among the layers "
                        "running in it, docs/perf.md; the column sums to the latency)")
        for c in ("#", "layer", "kind", "MMAC", "cycles", "span", "util %", "bound", "DRAM KB",
                  "bound cyc"):
            t.add_column(c, justify="right" if c not in ("layer", "kind", "bound") else "left")
        lb = rep.bounds.layers if rep.bounds is not None else [None] * len(rep.layers)
        for i, (l, bl) in enumerate(zip(rep.layers, lb)):
            t.add_row(str(i), l.name[-48:], l.kind, f"{l.macs / 1e6:.2f}", f"{l.cycles:.0f}",
                      str(l.span), f"{100 * l.utilization:.0f}" if l.cycles else "-", l.bound,
                      f"{l.dram_bytes / 1024:.0f}", "-" if bl is None else f"{bl.cycles:.0f}")
        con.print(t)


def plot_layers(rep, path) -> Path:
    """PNG: per-layer MAC utilisation (bars, at most 100 % by the attribution of
    :func:`sim.perf.attribute`) and attributed cycles (line) against the per-layer bound."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    idx = [i for i, l in enumerate(rep.layers) if l.macs or l.cycles]
    ls = [rep.layers[i] for i in idx]
    fig, ax = plt.subplots(figsize=(14, 4.5))
    x = range(len(ls))
    colors = {"compute": "tab:green", "DRAM": "tab:red", "dependency": "tab:orange",
              "overlapped": "tab:gray"}
    util = [100 * l.utilization for l in ls]
    if any(u > 100 + 1e-6 for u in util):
        raise ValueError("a layer's utilisation exceeds 100 %: the attribution is broken")
    ax.bar(x, util, color=[colors.get(l.bound.split(" ")[0], "tab:blue") for l in ls])
    for i, l in enumerate(ls):                      # fused-chain layers: hatched outline
        if "fused" in l.bound:
            ax.bar([i], [100 * l.utilization], fill=False, hatch="//", lw=0)
    ax.set_ylim(0, 100)
    ax.set_ylabel("MAC utilisation % (colour: bound, hatched: fused)")
    ax.set_xlabel("layer")
    ax2 = ax.twinx()
    ax2.plot(list(x), [l.cycles for l in ls], "k.-", lw=0.8, label="attributed cycles")
    if rep.bounds is not None:
        ax2.plot(list(x), [rep.bounds.layers[i].cycles for i in idx], "b_", ms=8,
                 label="per-layer bound (compulsory bytes)")
    ax2.set_ylabel("cycles")
    ax2.legend(loc="upper right")
    s = rep.summary()
    fr = s.get("fps_over_bound", {})
    title = (f"{s['model']} on {rep.config['name']}: latency mode {s['fps']:.0f} FPS = "
             f"{100 * fr.get('compute', float('nan')):.0f} % of the compute bound, "
             f"{100 * fr.get('traffic', float('nan')):.0f} % of the traffic bound")
    if s.get("streaming"):
        title += (f"; streaming {s['streaming']['fps']:.0f} FPS"
                  + (" (what-if)" if s["streaming"].get("what_if") else ""))
    ax.set_title(title)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=c, label=k) for k, c in colors.items()], loc="upper left")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


def parse_grid(spec: str) -> list[dict]:
    """``"N=4,8;M=8;L=8,16"`` -> the cartesian product as a list of override dicts."""
    keys, vals = [], []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        k, eq, v = part.partition("=")
        if not eq or not v:
            raise ValueError(f"grid part {part!r} is not KEY=v1,v2,...")
        try:
            vs = [int(x) for x in v.split(",")]
        except ValueError:
            raise ValueError(f"grid values of {k!r} must be integers, got {v!r}") from None
        keys.append(k.strip())
        vals.append(vs)
    return [dict(zip(keys, combo)) for combo in itertools.product(*vals)]


def sweep_rows(prog, base_cfg, grid: list[dict], *, progress: bool = True) -> list[dict]:
    from tqdm import tqdm
    from .compile import CompileError, compile as compile_
    from .perf import simulate
    rows = []
    for over in tqdm(grid, desc="sweep", disable=not progress):
        cfg = base_cfg.replace(**over)
        row = dict(over, multipliers=cfg.multipliers, dsps=cfg.dsps)
        try:
            s = simulate(compile_(prog, cfg)).summary()
            row.update(fps=s["fps"], latency_ms=s["latency_ms"], mac_utilization=s["mac_utilization"],
                       compute_bound_fps=s["bounds"]["compute_fps"],
                       traffic_bound_fps=s["bounds"]["traffic_fps"],
                       fps_over_compute_bound=s["fps_over_bound"]["compute"],
                       fps_over_traffic_bound=s["fps_over_bound"]["traffic"],
                       gops_per_dsp=s["gops_per_dsp"], error="")
        except CompileError as e:
            row.update(fps=float("nan"), error=str(e))
        rows.append(row)
    return rows


def write_csv(rows, path) -> Path:
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return atomic_write(path, buf.getvalue())


def plot_sweep(rows, path, title="") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r["multipliers"] for r in rows]
    ax.scatter(xs, [r["fps"] for r in rows], label="model FPS")
    if any("compute_bound_fps" in r for r in rows):
        ax.scatter(xs, [r.get("compute_bound_fps", float("nan")) for r in rows], marker="x",
                   label="compute bound FPS")
        ax.scatter(xs, [r.get("traffic_bound_fps", float("nan")) for r in rows], marker="+",
                   label="traffic bound FPS")
    for r in rows:
        lab = ",".join(f"{k}{v}" for k, v in r.items() if k in ("N", "M", "T", "S", "L"))
        ax.annotate(lab, (r["multipliers"], r["fps"]), fontsize=6)
    ax.set_xlabel("int8 multipliers")
    ax.set_ylabel("frames per second")
    ax.set_title(title)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


def table7_rows(cfg, models=TABLE7_MODELS, *, seed: int = 0, progress: bool = True,
                frames: int = 3, prefetch: bool | None = None, stream: bool = False,
                contexts: int = 1, stem: str = "auto") -> list[dict]:
    """One row per model: latency and streaming mode (``frames`` back to back, :func:`sim.perf.
    stream`; ``frames=1``: latency only), the bounds of :mod:`sim.bounds` and the paper's
    figures (``prefetch``: compiled with the cross-layer weight prefetch, None: the compiler's
    default for ``cfg``; ``stream``: with the
    streaming regions, :mod:`sim.compile.streaming`; ``contexts``: queue contexts per unit in
    the streaming column, a what-if of :func:`sim.perf.simulate`; ``stem``: the stem mapping,
    :mod:`sim.compile.stem`)."""
    from tqdm import tqdm
    from . import zoo
    from .compile import compile as compile_
    from .perf import simulate, stream as sim_stream
    rows = []
    for m in tqdm(models, desc="table7", disable=not progress):
        prog = zoo.build(m, seed=seed)
        binary = compile_(prog, cfg, prefetch=prefetch, stream=stream, stem=stem)
        rep = simulate(binary)
        if frames > 1:
            rep.streaming = sim_stream(binary, frames=frames, contexts=contexts)
        s = rep.summary()
        b = s["bounds"]
        paper = PAPER_TABLE7.get(m, {})
        row = dict(model=m, macs_g=s["macs"] / 1e9, latency_fps=s["fps"],
                   latency_ms=s["latency_ms"], latency_gops=s["gops"],
                   mac_utilization=s["mac_utilization"],
                   streaming_fps=s["streaming"]["fps"] if frames > 1 else None,
                   compute_bound_fps=b["compute_fps"], traffic_bound_fps=b["traffic_fps"],
                   per_layer_bound_fps=b["per_layer_fps"],
                   latency_over_compute=s["fps_over_bound"]["compute"],
                   latency_over_traffic=s["fps_over_bound"]["traffic"],
                   latency_over_per_layer=s["fps_over_bound"]["per_layer"],
                   streaming_over_compute=(s["streaming"]["fps_over_bound"]["compute"]
                                           if frames > 1 else None),
                   streaming_over_traffic=(s["streaming"]["fps_over_bound"]["traffic"]
                                           if frames > 1 else None),
                   paper_fps=paper.get("fps"), paper_latency_ms=paper.get("latency_ms"),
                   paper_gops=paper.get("gops"))
        row["paper_exceeds_compute_bound"] = bool(paper) and paper["fps"] > b["compute_fps"]
        rows.append(row)
    return rows


def print_table7(rows, console=None):
    from rich.table import Table
    con = console or _console()
    t = Table(title="Table VII, Trio-ViT columns: paper vs this model (same multipliers and "
                    "clock; the paper's FPS = 1 / its latency: compare with latency mode)")
    for c in ("model", "GMAC", "paper FPS", "latency FPS", "streaming FPS", "compute bound",
              "traffic bound", "per-layer bound", "latency / compute", "note"):
        t.add_column(c, justify="left" if c in ("model", "note") else "right")
    for r in rows:
        pf = r["paper_fps"]
        if pf is not None and r["paper_exceeds_compute_bound"]:
            note = (f"paper FPS needs {pf * r['macs_g']:.0f} GMAC/s > peak "
                    f"{r['compute_bound_fps'] * r['macs_g']:.0f}: infeasible")
        elif pf is not None:
            note = "feasible"
        else:
            note = "not in paper"
        sf = r.get("streaming_fps")
        t.add_row(r["model"], f"{r['macs_g']:.3f}", "-" if pf is None else f"{pf:.0f}",
                  f"{r['latency_fps']:.1f}", "-" if sf is None else f"{sf:.1f}",
                  f"{r['compute_bound_fps']:.0f}", f"{r['traffic_bound_fps']:.0f}",
                  f"{r['per_layer_bound_fps']:.0f}", f"{100 * r['latency_over_compute']:.1f} %",
                  note)
    con.print(t)


def to_json(obj) -> str:
    def default(o):
        try:
            return float(o)
        except Exception:
            return str(o)
    return json.dumps(obj, indent=1, default=default)
