"""On-chip memory studies with the cycle model (``python -m sim attctx``, ``python -m sim
bufsweep``, docs/perf.md):

* :func:`attctx_rows`: the A/B of the attention context modules kept on chip
  (:mod:`sim.compile.attctx`): per model, the same program compiled with ``attn_onchip`` off
  and on, latency and streaming FPS, DRAM bytes, next to the bounds of :mod:`sim.bounds`;
* :func:`bufsweep_rows`: FPS over a grid of global buffer sizes B, C and OUT (the
  ``AccelConfig`` fields ``buf_b_bytes``, ``buf_c_bytes``, ``buf_out_bytes``) whose sum stays
  within a byte budget (the BRAM the cores leave free; the budget is the caller's, derived in
  docs/perf.md from ``hw.resmodel``: ``sim`` does not import ``hw``).
"""

from __future__ import annotations

import itertools

from .config import AccelConfig

__all__ = ["attctx_rows", "print_attctx", "bufsweep_grid", "bufsweep_rows", "print_bufsweep",
           "plot_bufsweep", "KB"]

KB = 1024


def _measure(prog, cfg, frames: int, **kw) -> dict:
    """Latency (and with ``frames > 1`` streaming) figures of ``prog`` compiled for ``cfg``."""
    from .compile import compile as compile_
    from .perf import simulate, stream
    b = compile_(prog, cfg, **kw)
    rep = simulate(b)
    if frames > 1:
        rep.streaming = stream(b, frames=frames)
    s = rep.summary()
    out = dict(latency_fps=s["fps"], cycles=s["cycles"], dram_mb=s["dram_bytes"] / 1e6,
               mac_utilization=s["mac_utilization"],
               latency_over_compute=s["fps_over_bound"]["compute"],
               latency_over_traffic=s["fps_over_bound"]["traffic"],
               latency_over_per_layer=s["fps_over_bound"]["per_layer"],
               compute_bound_fps=s["bounds"]["compute_fps"],
               traffic_bound_fps=s["bounds"]["traffic_fps"],
               per_layer_bound_fps=s["bounds"]["per_layer_fps"],
               onchip_layers=sum(1 for ly in b.layers if ly.get("on_chip")))
    if frames > 1:
        st = s["streaming"]
        out.update(streaming_fps=st["fps"], streaming_over_compute=st["fps_over_bound"]["compute"],
                   streaming_over_traffic=st["fps_over_bound"]["traffic"])
    return out


def attctx_rows(cfg: AccelConfig, models, *, seed: int = 0, frames: int = 3,
                progress: bool = True) -> list[dict]:
    """One row per (model, attn_onchip off / on): the A/B of :mod:`sim.compile.attctx`."""
    from tqdm import tqdm
    from . import zoo
    rows = []
    for m in tqdm(models, desc="attctx", disable=not progress):
        prog = zoo.build(m, seed=seed)
        prog.meta.setdefault("name", m)
        for on in (False, True):
            rows.append(dict(model=m, attn_onchip=on, **_measure(prog, cfg, frames,
                                                                  attn_onchip=on)))
    return rows


def _table(title, cols, rows, console=None):
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title)
    for c, _ in cols:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*[f(r) for _, f in cols])
    (console or Console(width=200)).print(t)


def _pct(k):
    return lambda r: "-" if r.get(k) is None else f"{100 * r[k]:.1f} %"


def _num(k, fmt="{:.1f}"):
    return lambda r: "-" if r.get(k) is None else fmt.format(r[k])


def print_attctx(rows, console=None):
    cols = [("model", lambda r: r["model"]),
            ("context modules", lambda r: "on chip" if r["attn_onchip"] else "through DRAM"),
            ("latency FPS (cycles)", lambda r: f"{r['latency_fps']:.1f} ({r['cycles']})"),
            ("streaming FPS", _num("streaming_fps")), ("DRAM MB / frame", _num("dram_mb", "{:.2f}")),
            ("compute bound", _num("compute_bound_fps", "{:.0f}")),
            ("traffic bound", _num("traffic_bound_fps", "{:.0f}")),
            ("per-layer bound", _num("per_layer_bound_fps", "{:.0f}")),
            ("latency / compute", _pct("latency_over_compute")),
            ("latency / traffic", _pct("latency_over_traffic")),
            ("streaming / compute", _pct("streaming_over_compute")),
            ("streaming / traffic", _pct("streaming_over_traffic"))]
    _table("attention context modules through DRAM (compile(attn_onchip=False)) and on chip",
           cols, rows, console)


def bufsweep_grid(b_kb, c_kb, out_kb, budget_kb: int | None) -> list[dict]:
    """The (B, C, OUT) size combinations (KiB lists) whose sum is within ``budget_kb``, as
    AccelConfig overrides in bytes."""
    grid = []
    for b, c, o in itertools.product(b_kb, c_kb, out_kb):
        if budget_kb is None or b + c + o <= budget_kb:
            grid.append(dict(buf_b_bytes=b * KB, buf_c_bytes=c * KB, buf_out_bytes=o * KB))
    return grid


def bufsweep_rows(prog, base: AccelConfig, grid: list[dict], *, frames: int = 1,
                  ab: bool = False, progress: bool = True) -> list[dict]:
    """FPS of ``prog`` at every point of ``grid`` (:func:`bufsweep_grid`); ``ab``: also with
    the context modules through DRAM (column ``latency_fps_dram``). A point the compiler
    rejects keeps its row with the message in ``error``."""
    from tqdm import tqdm
    from .compile import CompileError
    rows = []
    for over in tqdm(grid, desc="bufsweep", disable=not progress):
        cfg = base.replace(**over)
        row = dict(b_kb=over["buf_b_bytes"] // KB, c_kb=over["buf_c_bytes"] // KB,
                   out_kb=over["buf_out_bytes"] // KB,
                   total_kb=sum(over.values()) // KB, error="")
        try:
            row.update(_measure(prog, cfg, frames))
            if ab:
                row["latency_fps_dram"] = _measure(prog, cfg, 1, attn_onchip=False)[
                    "latency_fps"]
        except CompileError as e:
            row.update(latency_fps=float("nan"), error=str(e))
        rows.append(row)
    return rows


def print_bufsweep(rows, title, console=None):
    cols = [("B KiB", _num("b_kb", "{}")), ("C KiB", _num("c_kb", "{}")),
            ("OUT KiB", _num("out_kb", "{}")), ("B+C+OUT KiB", _num("total_kb", "{}")),
            ("latency FPS", _num("latency_fps")),
            ("context modules through DRAM", _num("latency_fps_dram")),
            ("streaming FPS", _num("streaming_fps")),
            ("DRAM MB", _num("dram_mb", "{:.2f}")),
            ("latency / compute", _pct("latency_over_compute")),
            ("error", lambda r: r.get("error", "")[:60])]
    _table(title, cols, rows, console)


def plot_bufsweep(rows, path, title=""):
    """FPS against B + C + OUT (KiB), one marker per C size, B as the label."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import atomic_write
    fig, ax = plt.subplots(figsize=(8, 5))
    ok = [r for r in rows if not r.get("error")]
    for (c, o), mk in zip(sorted({(r["c_kb"], r["out_kb"]) for r in ok}),
                          itertools.cycle("os^vDP*X")):
        pts = sorted((r["total_kb"], r["latency_fps"], r["b_kb"]) for r in ok
                     if (r["c_kb"], r["out_kb"]) == (c, o))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=mk, linestyle=":",
                label=f"C {c} KiB, OUT {o} KiB")
        for x, y, b in pts:
            ax.annotate(f"B{b}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    if any("latency_fps_dram" in r for r in ok):
        pts = sorted((r["total_kb"], r["latency_fps_dram"]) for r in ok)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="x", color="grey",
                   label="context modules through DRAM")
    ax.set_xlabel("global buffers B + C + OUT (KiB)")
    ax.set_ylabel("latency-mode FPS")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())
