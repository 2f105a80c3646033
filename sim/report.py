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

__all__ = ["PAPER_TABLE7", "atomic_write", "print_perf", "plot_layers", "sweep_rows",
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


def print_perf(rep, *, layers: bool = True, console=None):
    """Headline figures, op-type breakdown and the per-layer table of a PerfReport."""
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
    rows = [("latency", f"{s['latency_ms']:.3f} ms ({s['cycles']} cycles)"),
            ("FPS", f"{s['fps']:.1f}"), ("GOPS (1 MAC = 2 ops)", f"{s['gops']:.1f}"),
            ("GOPS/DSP", f"{s['gops_per_dsp']:.3f}"),
            ("MAC utilisation", f"{100 * s['mac_utilization']:.1f} %"),
            ("MACs / frame", f"{s['macs'] / 1e6:.1f} M"),
            ("DRAM traffic / frame", f"{s['dram_bytes'] / 1e6:.2f} MB"),
            ("roofline FPS (this binary's bytes)", f"{s['roofline_fps']:.1f}"),
            ("FPS / roofline FPS", f"{100 * s['fps_over_roofline']:.1f} %"),
            ("roofline FPS (compulsory bytes, unfused)", f"{s['roofline_compulsory_fps']:.1f}")]
    for r in rows:
        t.add_row(*r)
    con.print(t)
    b = s["op_breakdown"]
    con.print("op-type share of MACs: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in b.items())
              + "   (paper, B1-R224: generic 1.1 / PW 91.9 / DW 5.4 / matmul 1.6 %)")
    if layers:
        t = Table(title="per layer (cycles: completion minus previous completion)")
        for c in ("#", "layer", "kind", "MMAC", "cycles", "span", "util %", "bound", "DRAM KB",
                  "roof cyc"):
            t.add_column(c, justify="right" if c not in ("layer", "kind", "bound") else "left")
        for i, l in enumerate(rep.layers):
            t.add_row(str(i), l.name[-48:], l.kind, f"{l.macs / 1e6:.2f}", str(l.cycles),
                      str(l.span), f"{100 * l.utilization:.0f}" if l.cycles else "-", l.bound,
                      f"{l.dram_bytes / 1024:.0f}", f"{l.roofline_cycles:.0f}")
        con.print(t)


def plot_layers(rep, path) -> Path:
    """PNG: per-layer MAC utilisation (bars) and attributed cycles (line)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ls = [l for l in rep.layers if l.macs or l.cycles]
    fig, ax = plt.subplots(figsize=(14, 4.5))
    x = range(len(ls))
    colors = {"compute": "tab:green", "DRAM": "tab:red", "dependency": "tab:orange",
              "overlapped": "tab:gray"}
    ax.bar(x, [100 * min(l.utilization, 1.5) for l in ls],
           color=[colors.get(l.bound.split(" ")[0], "tab:blue") for l in ls],
           hatch=None)
    for i, l in enumerate(ls):                      # fused-chain layers: hatched outline
        if "fused" in l.bound:
            ax.bar([i], [100 * min(l.utilization, 1.5)], fill=False, hatch="//", lw=0)
    ax.set_ylabel("MAC utilisation % (colour: bound, hatched: fused)")
    ax.set_xlabel("layer")
    ax2 = ax.twinx()
    ax2.plot(list(x), [l.cycles for l in ls], "k.-", lw=0.8)
    ax2.set_ylabel("attributed cycles")
    s = rep.summary()
    ax.set_title(f"{s['model']} on {rep.config['name']}: {s['fps']:.0f} FPS, "
                 f"{100 * s['mac_utilization']:.0f} % MAC utilisation, "
                 f"{100 * s['fps_over_roofline']:.0f} % of roofline")
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
                       roofline_fps=s["roofline_fps"], fps_over_roofline=s["fps_over_roofline"],
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
    if any("roofline_fps" in r for r in rows):
        ax.scatter(xs, [r.get("roofline_fps", float("nan")) for r in rows], marker="x",
                   label="roofline FPS")
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


def table7_rows(cfg, models=TABLE7_MODELS, *, seed: int = 0, progress: bool = True) -> list[dict]:
    from tqdm import tqdm
    from . import zoo
    from .compile import compile as compile_
    from .perf import simulate
    rows = []
    peak = cfg.multipliers * cfg.clock_mhz * 1e6        # MAC/s
    for m in tqdm(models, desc="table7", disable=not progress):
        prog = zoo.build(m, seed=seed)
        s = simulate(compile_(prog, cfg)).summary()
        macs = s["macs"]
        paper = PAPER_TABLE7.get(m, {})
        bound_fps = peak / macs
        row = dict(model=m, macs_g=macs / 1e9, model_fps=s["fps"], model_latency_ms=s["latency_ms"],
                   model_gops=s["gops"], model_util=s["mac_utilization"],
                   roofline_fps=s["roofline_fps"], peak_bound_fps=bound_fps,
                   paper_fps=paper.get("fps"), paper_latency_ms=paper.get("latency_ms"),
                   paper_gops=paper.get("gops"))
        row["paper_exceeds_peak"] = bool(paper) and paper["fps"] > bound_fps
        rows.append(row)
    return rows


def print_table7(rows, console=None):
    from rich.table import Table
    con = console or _console()
    t = Table(title="Table VII, Trio-ViT columns: paper vs this model (same 2048 mults, 200 MHz)")
    for c in ("model", "GMAC", "paper FPS", "paper ms", "model FPS", "model ms", "model util %",
              "roofline FPS", "peak-bound FPS", "note"):
        t.add_column(c, justify="left" if c in ("model", "note") else "right")
    for r in rows:
        pf = r["paper_fps"]
        note = ""
        if pf is not None and r["paper_exceeds_peak"]:
            note = (f"paper FPS needs {pf * r['macs_g']:.0f} GMAC/s > peak "
                    f"{r['peak_bound_fps'] * r['macs_g']:.0f}: infeasible")
        elif pf is not None:
            note = "feasible"
        else:
            note = "not in paper"
        t.add_row(r["model"], f"{r['macs_g']:.3f}", "-" if pf is None else f"{pf:.0f}",
                  "-" if pf is None else f"{r['paper_latency_ms']:.2f}", f"{r['model_fps']:.0f}",
                  f"{r['model_latency_ms']:.2f}", f"{100 * r['model_util']:.0f}",
                  f"{r['roofline_fps']:.0f}", f"{r['peak_bound_fps']:.0f}", note)
    con.print(t)


def to_json(obj) -> str:
    def default(o):
        try:
            return float(o)
        except Exception:
            return str(o)
    return json.dumps(obj, indent=1, default=default)
