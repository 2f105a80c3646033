"""Tiling plans: how a layer is cut into tiles and a tile into the cores' and engines' work.

Each node is cut into tiles: output-channel chunks (so that a chunk's weights fit a C slot)
times output-row blocks (so that the input rows with their halo fit a B slot and the outputs an
OUT slot). A tile is split over the ``L`` cores by output channels and/or rows (the
factorisation ``Lc x Lr`` with the smallest estimated core time, :func:`plan_conv`), and inside
a core between the MAT and the R-MAC engine (by output channels or rows, whichever balances
better, :func:`engine_split`); depthwise tiles run on the R-MAC in self-accumulation mode
(:func:`best_dw_split`). Everything here is a pure function of shapes, buffer slot sizes and
the :class:`~sim.config.AccelConfig`; it emits nothing.
"""

from __future__ import annotations

import math

from .. import timing
from ..isa import att_s_bytes, att_s_line, dw_weight_bytes
from ..config import AccelConfig
from .common import ALIGN, PARAM_RECORD, CompileError, align, cdiv, split
from .cost import conv_cycles, dw_cycles

__all__ = ["TILES_TARGET", "FUSED_TILES", "FUSED_TILES_S1", "MIN_TILE_BYTES", "MAX_FIELD",
           "WEIGHT_GROUP_MAX", "c_slot_bytes",
           "PRE_PIPE_SYNC", "ranges", "core_grids", "best_dw_split", "pipe_pieces", "pipe_plan",
           "pre_pipe_plan", "pre_pipe_needs", "dw_piece_times", "plan_conv", "engine_split",
           "tile_rows",
           "fit_rows", "conv_chunk", "filter_gran", "dw_chunk", "chain_tile_regions",
           "fused_tile_rows", "attention_plan", "att_aux_half"]

TILES_TARGET = 4        #: aim for at least this many row tiles per layer (inter-layer overlap)
FUSED_TILES = 4         #: row tiles per fused chain at least (fewer: less halo recompute)
FUSED_TILES_S1 = 3      #: ... for stride-1 chains with a first PW (its halo rows are recomputed)
MIN_TILE_BYTES = 16384  #: ... but no smaller tiles than this (bytes loaded + stored)
#: cycles a row piece of :func:`pre_pipe_plan` must save (its SIGNALs and WAITs)
PRE_PIPE_SYNC = 4
MAX_FIELD = 4095        #: largest channel count / row count of one instruction (12-bit fields)
#: the largest weight group in buffer C (a conv's chunk of filters with their records, a fused
#: chain's weights, ...): C is cut in two slots of at most this, and the prefetch arena
#: (:mod:`sim.compile.prefetch`) places groups of at most this anywhere in the whole of C. A
#: larger C therefore makes no group larger; it is room for more groups in flight. Larger
#: groups were slower (B1-R224 on ``paper``, C = 384 KiB: 508.2 FPS against 515.6 at 192 KiB,
#: docs/perf.md "Why a larger C was slower"): a layer's first chunk loads before its compute
#: can start and ties up the one DRAM port ahead of the stores, and a whole MBConv at 7x7
#: fused into one chain (it fits a larger slot) recomputes 57 % more of its expansion rows
#: than it saves in DRAM traffic.
WEIGHT_GROUP_MAX = 96 * 1024


def c_slot_bytes(nbytes: int) -> int:
    """The bytes of a buffer-C region of ``nbytes`` that its two weight slots use:
    ``min(nbytes, 2 * WEIGHT_GROUP_MAX)`` (the rest of a larger C serves only the prefetch
    arena)."""
    return min(nbytes, 2 * WEIGHT_GROUP_MAX)


def ranges(n, step):
    """``[(a, b), ...]``: range(n) in consecutive pieces of ``step`` (the last ragged)."""
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def core_grids(L: int):
    """The ``(lc, lr)`` ways of splitting a tile over ``L`` cores: ``lc`` channel parts times
    ``lr`` row parts with ``lc * lr == L``, plus all-channels ``(L, 1)``."""
    for lc in range(1, L + 1):
        lr = L // lc
        if lc * lr == L or lc == L:
            yield lc, lr


def best_dw_split(cfg: AccelConfig, *, nch: int, nrows: int, wo: int, k: int, block: int = 1):
    """Channel and row pieces of a depthwise tile over the cores, the split whose slowest core
    (:func:`~sim.compile.cost.dw_cycles`) finishes first (the first such split on ties); the
    channel pieces in multiples of N (and of ``block``, the blocked layout's B)."""
    best = None
    for lc, lr in core_grids(cfg.L):
        cs, rs = split(nch, lc, max(cfg.N, block)), split(nrows, lr)
        t = max(dw_cycles(cfg, nch=c1 - c0, ho=r1 - r0, wo=wo, k=k)
                for c0, c1 in cs for r0, r1 in rs)
        if best is None or t < best[0]:
            best = (t, cs, rs)
    return best[1], best[2]


def pipe_plan(cfg: AccelConfig, pieces, dw_times, *, wo: int, cout: int, cin_g: int,
              groups: int, ends=None, mat_free: int = 0):
    """The 1x1 conv (``cout`` filters of ``cin_g`` inputs in ``groups`` groups) that reads a
    depthwise output written in row ``pieces`` (``wo`` pixels per row; the R-MACs take
    ``dw_times[j]`` cycles for piece j): per piece its :func:`plan_conv` tasks (pixel ranges
    of the whole output), split between the engines with the cycles each has queued when the
    piece is ready (``bias``: the MAT's backlog of earlier pieces; the R-MAC's remaining DW
    pieces, since its tasks queue behind them), and the estimated end of the last task.
    ``ends``: when each DW piece ends (default: back to back from 0, the sums of
    ``dw_times``); ``mat_free``: when the MATs are free (the producer's work queued before,
    :func:`pre_pipe_plan`)."""
    cout_g = cout // groups

    def t_of(eng, ca, cb, ra, rb):
        g = (cb - ca) // cout_g if groups > 1 else 1
        pre, post = timing.conv_pre_post(cfg, eng, nco=cb - ca, groups=g)
        return pre + post + conv_cycles(cfg, eng, K=cin_g, nco=cb - ca, npix=rb - ra,
                                        groups=g)
    if ends is None:
        ends = [sum(dw_times[:j + 1]) for j in range(len(dw_times))]
    total, end = ends[-1], {"MAT": mat_free, "RMAC": 0}
    plan = []
    for (r0, r1), ready in zip(pieces, ends):
        bias = (max(0, end["MAT"] - ready), max(total, end["RMAC"]) - ready)
        tasks = plan_conv(cfg, cout, (r1 - r0) * wo, 1, cin_g, groups, cout_g, bias=bias)
        for eng, start in (("MAT", ready), ("RMAC", max(total, end["RMAC"]))):
            ts = [t_of(eng, ca, cb, ra, rb) for _, e, (ca, cb), (ra, rb) in tasks if e == eng]
            if ts:
                end[eng] = max(end[eng], start) + max(ts)
        plan.append([(c, e, co, (ra + r0 * wo, rb + r0 * wo)) for c, e, co, (ra, rb) in tasks])
    return plan, max(total, *end.values())


def dw_piece_times(cfg: AccelConfig, pieces, *, nch: int, wo: int, k: int, block: int = 1):
    """The R-MAC cycles of each row piece of a depthwise conv (``nch`` channels, rows of
    ``wo`` pixels): its slowest core (:func:`best_dw_split`; ``block``: the blocked layout's
    B) with its fixed cycles (:func:`sim.timing.compute_timing`)."""
    def dw_t(nr):
        cs, rs = best_dw_split(cfg, nch=nch, nrows=nr, wo=wo, k=k, block=block)
        return max(timing.compute_timing(cfg, "DW_RSA", dict(KERNEL=k, WOUT=wo, RES_ADDR=-1),
                                         dict(nco=c1 - c0, ho=r1 - r0)).cycles
                   for c0, c1 in cs for r0, r1 in rs)
    return [dw_t(r1 - r0) for r0, r1 in pieces]


def pipe_pieces(cfg: AccelConfig, *, nch: int, ho: int, wo: int, k: int, cout: int,
                cin_g: int, groups: int, max_pieces: int = 16):
    """``(pieces, tasks)``: the row pieces ``[(r0, r1), ...]`` of a depthwise conv (``nch``
    channels, ``ho`` x ``wo`` output, ``k`` x ``k``) whose output a 1x1 conv (``cout`` filters
    of ``cin_g`` inputs in ``groups`` groups) reads piece by piece (the on-chip aggregation of
    :mod:`sim.compile.attctx`), and that conv's tasks per piece (:func:`pipe_plan`). The count
    of equal pieces whose estimated end (each piece's slowest core on the R-MAC plus its fixed
    cycles, :func:`sim.timing.compute_timing`; the conv as :func:`pipe_plan` splits it) comes
    first; one piece (no pipelining: the conv after the whole DW) on ties."""
    best = None
    for n in range(1, min(ho, max_pieces) + 1):
        pieces = split(ho, n)
        plan, end = pipe_plan(cfg, pieces, dw_piece_times(cfg, pieces, nch=nch, wo=wo, k=k),
                              wo=wo,
                              cout=cout, cin_g=cin_g, groups=groups)
        if best is None or end < best[0]:
            best = (end, pieces, plan)
    return best[1], best[2]


def pre_pipe_plan(cfg: AccelConfig, pieces, dw_times, *, k: int, wo: int, nco: int,
                  K: int, then: dict):
    """The 1x1 conv (``nco`` filters of ``K`` inputs, dense) whose output a stride-1
    depthwise conv (``k`` x ``k``, rows of ``wo`` pixels, written in row ``pieces`` taking
    ``dw_times`` cycles on the R-MACs) reads piece by piece, itself written in the same row
    pieces (the qkv pointwise ahead of the on-chip aggregation, :mod:`sim.compile.attctx`):
    ``(plan, ends, mat_free)``, per piece its :func:`plan_conv` tasks (pixel ranges of the
    whole output), when each DW piece is estimated to end and when the MATs are.

    DW piece j needs the conv's rows ``[r0 - k//2, r1 + k//2)`` (:func:`pre_pipe_needs`). A
    core's R-MAC runs the conv's tasks before any DW task (in the unit's queue order), so the
    first ``m`` pieces run on both engines and the rest on the MATs alone while the R-MACs
    run the DW; ``m`` is chosen by the estimated end of the whole, the 1x1 conv after the DW
    (``then``: its ``cout``, ``cin_g``, ``groups``) planned by :func:`pipe_plan`. None when
    that end is not ahead of the conv's in one piece by :data:`PRE_PIPE_SYNC` per piece."""
    def t_of(eng, ca, cb, ra, rb):
        pre, post = timing.conv_pre_post(cfg, eng, nco=cb - ca, groups=1)
        return pre + post + conv_cycles(cfg, eng, K=K, nco=cb - ca, npix=rb - ra, groups=1)
    needs = pre_pipe_needs(pieces, k)
    best = None
    for m in range(len(pieces) + 1):
        end, ready, plan = {"MAT": 0, "RMAC": 0}, [], []
        for i, (r0, r1) in enumerate(pieces):
            tasks = plan_conv(cfg, nco, (r1 - r0) * wo, 1, K, 1, nco,
                              bias=(end["MAT"], end["RMAC"]),
                              only=None if i < m else "MAT")
            for eng in ("MAT", "RMAC"):
                ts = [t_of(eng, ca, cb, ra, rb) for _, e, (ca, cb), (ra, rb) in tasks
                      if e == eng]
                if ts:
                    end[eng] += max(ts)
            ready.append(max(end[e] for e in ("MAT", "RMAC")
                             if any(t[1] == e for t in tasks)))
            plan.append([(c, e, co, (ra + r0 * wo, rb + r0 * wo))
                         for c, e, co, (ra, rb) in tasks])
        rmac, ends = end["RMAC"], []
        for j, t in enumerate(dw_times):
            rmac = max(rmac, max(ready[i] for i in needs[j])) + t
            ends.append(rmac)
        _, fin = pipe_plan(cfg, pieces, dw_times, wo=wo, ends=ends, mat_free=end["MAT"],
                           **then)
        if best is None or fin < best[0]:
            best = (fin, plan, ends, end["MAT"])
    # against the conv in one piece before the whole DW: pieces only when they come out ahead
    # by more than their synchronisation (a SIGNAL per writer, a WAIT per reader and piece)
    ho = pieces[-1][1]
    tasks = plan_conv(cfg, nco, ho * wo, 1, K, 1, nco)
    end = {e: max([t_of(e, ca, cb, ra, rb) for _, x, (ca, cb), (ra, rb) in tasks if x == e],
                  default=0) for e in ("MAT", "RMAC")}
    start = max(end.values())
    _, base = pipe_plan(cfg, pieces, dw_times, wo=wo, mat_free=end["MAT"],
                        ends=[start + sum(dw_times[:j + 1]) for j in range(len(dw_times))],
                        **then)
    if best[0] + PRE_PIPE_SYNC * len(pieces) >= base:
        return None
    return best[1], best[2], best[3]


def pre_pipe_needs(pieces, k: int):
    """For each row piece ``(r0, r1)`` of a stride-1 ``k`` x ``k`` depthwise conv (padding
    ``k//2``, the same pieces on its input), the indices of the input pieces its rows and
    halo ``[r0 - k//2, r1 + k//2)`` overlap."""
    h = k // 2
    return [[i for i, (q0, q1) in enumerate(pieces) if q0 < r1 + h and q1 > r0 - h]
            for r0, r1 in pieces]


def filter_gran(cfg: AccelConfig) -> int:
    """The filters of a dense conv are split between chunks, cores and engines only at
    multiples of this: the output-channel blocks of the pre-tiled weights of both engines
    (``lcm(S, M)``; sim.isa's weight layout)."""
    return math.lcm(cfg.S, cfg.M)


def plan_conv(cfg: AccelConfig, nco, nr, wo, K, g, cout_g, bias=(0, 0), only=None, k=1,
              block=1, res=False):
    """[(core, engine, (co_a, co_b), (row_a, row_b))] for one conv tile of ``nco`` output
    channels x ``nr`` rows of ``wo`` pixels (relative ranges). ``bias``: cycles already queued
    on (MAT, R-MAC) of every core; ``only``: one engine; ``block``: the channel ranges start on
    multiples of it too (the blocked layout's ``B``, ``g = 1`` only); ``res``: the conv adds
    a residual (:func:`engine_split`)."""
    gran = cout_g if g > 1 else math.lcm(filter_gran(cfg), block)
    wide = 8 if 8 % gran == 0 else gran
    best = None
    for lc, lr in core_grids(cfg.L):
        cos = split(nco, lc, wide if nco >= lc * 8 and g == 1 else gran)
        rows = split(nr, lr)
        tasks, worst = [], 0
        core = 0
        for (ca, cb) in cos:
            for (ra, rb) in rows:
                sub, t = engine_split(cfg, cb - ca, rb - ra, wo, K, g, cout_g, bias, only, k,
                                      block, res)
                worst = max(worst, t)
                for eng, (xa, xb), (ya, yb) in sub:
                    tasks.append((core, eng, (ca + xa, ca + xb), (ra + ya, ra + yb)))
                core += 1
        if best is None or worst < best[0]:
            best = (worst, tasks)
    return best[1]


def engine_split(cfg: AccelConfig, nco, nr, wo, K, g, cout_g, bias=(0, 0), only=None, k=1,
                 block=1, res=False):
    """Split a core's (nco x nr rows) between MAT and R-MAC (by channels in multiples of
    ``block`` too when ``g = 1``); returns (tasks, est. cycles). ``res``: the conv adds a
    residual, which the R-MAC drains through fewer requant lanes (``requant_rmac_res``)."""
    gran = cout_g if g > 1 else math.lcm(filter_gran(cfg), block)
    red = K // (k * k)

    def cyc(eng, c, r):
        """engine steps + the tile's fixed cycles on the core + the requant drain's stalls
        when a vector takes fewer steps than its drain (sim.timing.compute_timing: the stem's
        DSConv, 16 -> 16 with a residual, waits 2 cycles a vector on the R-MAC at ``paper``)"""
        if c <= 0 or r <= 0:
            return 0
        groups = c // cout_g if g > 1 else 1
        pre, post = timing.conv_pre_post(cfg, eng, nco=c, groups=groups)
        steps = conv_cycles(cfg, eng, K=K, nco=c, npix=r * wo, groups=groups, k=k)
        per = k * k * cdiv(red, cfg.T if eng == "MAT" else cfg.N)
        return pre + post + steps + timing.drain_stall(steps // per, per,
                                                       timing.drain_cycles(cfg, eng, res))
    best = None
    bm, br = bias
    if only is not None:
        t = cyc(only, nco, nr) + (bm if only == "MAT" else br)
        return [(only, (0, nco), (0, nr))], t
    for cm in sorted({*range(0, nco, gran), nco}):     # MAT takes channels [0, cm)
        t = max(bm + cyc("MAT", cm, nr), br + cyc("RMAC", nco - cm, nr))
        if best is None or t < best[0]:
            best = (t, [("MAT", (0, cm), (0, nr)), ("RMAC", (cm, nco), (0, nr))])
    step = max(1, nr // 256)
    for rm in range(step, nr, step):
        t = max(bm + cyc("MAT", nco, rm), br + cyc("RMAC", nco, nr - rm))
        if t < best[0]:
            best = (t, [("MAT", (0, nco), (0, rm)), ("RMAC", (0, nco), (rm, nr))])
    tasks = [x for x in best[1] if x[1][1] > x[1][0] and x[2][1] > x[2][0]]
    return tasks, best[0]


def tile_rows(fit, ho, bytes_per_row):
    """Rows per tile: at most ``fit``; about TILES_TARGET tiles per layer (so consecutive
    layers overlap), but no tile smaller than MIN_TILE_BYTES of traffic (DMA and
    synchronisation overheads)."""
    want = max(cdiv(ho, TILES_TARGET), cdiv(MIN_TILE_BYTES, max(1, bytes_per_row)))
    want = cdiv(want, 8) * 8          # rows split evenly over 2, 4 or 8 cores
    return max(1, min(fit, want, MAX_FIELD))


def fit_rows(ho, need) -> int:
    """The most output rows (at most ``ho``, at least 1) for which ``need(rows)`` holds; 1 if
    none does (the caller checks ``need(1)``)."""
    nr = ho
    while nr > 1 and not need(nr):
        nr -= 1
    return nr


def conv_chunk(name, *, cout, g, K, c_slot, wbytes=None, gran=1, block=1) -> int:
    """Output channels per weight chunk of a (grouped) conv / linear: as many filters (their
    weight bytes + a parameter record each) as fit a C slot of ``c_slot`` bytes, in equal
    chunks that are multiples of a group (grouped) or of 8 lanes x a power-of-two number of
    cores (dense; any multiple of ``gran`` when fewer than 8 fit).

    ``wbytes(n)``: the weight bytes of ``n`` filters in buffer C (default ``n * K``; the
    pre-tiled layout pads partial blocks, :class:`sim.compile.records.ConvWeightLayout`);
    ``gran``: the filters of a dense conv are split (between chunks, cores and engines) only at
    multiples of it (the layout's output-channel blocks); ``block``: the blocked activation
    layout's ``B``, a multiple of it too."""
    wbytes = wbytes or (lambda n: n * K)
    gran = math.lcm(gran, block)
    cout_g = cout // g
    unit = cout_g if g > 1 else gran        # the smallest chunk
    per_co = cdiv(wbytes(unit), unit) + PARAM_RECORD

    def fits(n):
        return align(wbytes(n)) + n * PARAM_RECORD <= c_slot
    chunk = min(cout, MAX_FIELD, (c_slot - ALIGN) // per_co)
    if g > 1 and chunk < cout_g:
        raise CompileError(f"{name}: one group ({cout_g} filters, {cout_g * per_co} bytes)"
                           f" does not fit a C slot ({c_slot} bytes); enlarge buf_c_bytes")
    if chunk < min(unit, cout) or not fits(min(unit, cout)):
        what = "one filter" if unit == 1 else f"one block of {unit} filters"
        raise CompileError(f"{name}: {what} ({per_co * unit} bytes) does not fit a C slot"
                           f" ({c_slot} bytes); enlarge buf_c_bytes")
    # chunks of a group (grouped), of 8 lanes x a power-of-two number of cores (dense),
    # or of single blocks (``gran`` filters) when fewer than 8 fit
    step = cout_g if g > 1 else next((m for m in (128, 64, 32, 16, 8)
                                      if m <= chunk and m % gran == 0), gran)
    if chunk < cout:
        chunk = chunk // step * step
        nch = cdiv(cout, chunk)    # equal chunks, multiples of that granularity
        chunk = min(chunk, cdiv(cdiv(cout, nch), step) * step)
    while chunk > unit and not fits(chunk):     # the padding of partial blocks, alignment
        chunk = (chunk - 1) // unit * unit
    return chunk


def dw_chunk(cfg: AccelConfig, *, C, k, c_slot, need, block: int = 1) -> int:
    """Channels per chunk of a depthwise conv: what fits a C slot (``k*k`` weights + a record
    per channel), in multiples of the R-MAC's N lanes (and of ``block``, the blocked layout's
    B, a power of two), halved while even one output row of the chunk does not fit
    (``need(rows, chunk)``)."""
    gran = max(cfg.N, block)
    per = k * k + PARAM_RECORD
    chunk = min(C, MAX_FIELD, (c_slot - ALIGN) // per)
    if chunk < C:
        chunk = max(gran, chunk // gran * gran)
    # the weights are pre-tiled in blocks of N channels (sim.isa.dw_weight_bytes): padding
    while chunk > gran and align(dw_weight_bytes(chunk, k, cfg.N)) + chunk * PARAM_RECORD > c_slot:
        chunk = (chunk - 1) // gran * gran
    while chunk > gran and not need(1, chunk):
        chunk = max(gran, (chunk // 2) // gran * gran)
    return chunk


def chain_tile_regions(*, cx, e, cq, rows_in, w, rows_out, wo, first_pw, residual):
    """Where a fused chain's tile lives in its B slot (offsets from the slot's base, each
    region aligned): ``x`` the chain's input rows (``cx`` channels x ``rows_in`` rows of ``w``;
    only with a first PW, else the input goes straight to ``e``), ``e`` the DW's input
    (``e`` channels), ``d`` the DW's output (``rows_out`` rows of ``wo``), ``r`` the residual
    rows (``cq`` channels) when the chain has one; ``end`` the bytes used."""
    x = 0
    ea = x + (align(cx * rows_in * w) if first_pw else 0)
    d = ea + align(e * rows_in * w)
    r = d + align(e * rows_out * wo)
    end = r + (align(cq * rows_out * wo) if residual else 0)
    return dict(x=x, e=ea, d=d, r=r, end=end)


def fused_tile_rows(name, *, ho, stride, first_pw, need) -> int:
    """Output rows per tile of a fused chain: what fits (``need(rows)``), but at least
    FUSED_TILES (FUSED_TILES_S1 for stride-1 chains with a first PW) tiles."""
    fit = fit_rows(ho, need)
    if not need(fit):
        raise CompileError(f"{name}: a fused row does not fit the B slot")
    return max(1, min(fit, cdiv(ho, FUSED_TILES if stride > 1 or not first_pw
                                else FUSED_TILES_S1)))


def att_aux_half(cfg: AccelConfig, d: int) -> int:
    """Bytes of one half of a core's AUX for a ``d``-channel head: its S in T x S tiles
    (:func:`sim.isa.att_s_bytes`) then its ksum8 (``d`` bytes), rounded up to S's line so the
    second half's S starts on a line too (docs/isa.md "S in AUX")."""
    line = att_s_line(cfg.S, cfg.T)
    return cdiv(att_s_bytes(d, cfg.S, cfg.T) + d, line) * line


def attention_plan(cfg: AccelConfig, name, *, heads, d, ntok, b_slot, o_slot):
    """``(heads per tile, buffer A slot stride, buffer A slots per core)`` of a linear
    attention. Buffer A (per core) holds a head's K: two slots per core when they fit (the next
    head's K loads while the R-MAC works), else one, else (0) K stays in B; slots start on A's
    write-port line boundaries. Two head groups at least: EfficientViT's multi-scale attention
    puts the heads of the plain qkv first and those of the aggregated qkv second, so the first
    group can load (and its cores start) while the aggregation of the second is being stored."""
    if ntok > cfg.buf_div_bytes or 2 * att_aux_half(cfg, d) > cfg.buf_aux_bytes:
        raise CompileError(f"{name}: {ntok} tokens need a divisor buffer of {ntok} bytes"
                           f" (have {cfg.buf_div_bytes}) / aux {2 * att_aux_half(cfg, d)}"
                           f" (have {cfg.buf_aux_bytes})")
    per_head = 3 * d * ntok
    dn = d * ntok
    a_line = timing.a_line_bytes(cfg.N, cfg.dram_bytes_per_cycle)
    a_step = cdiv(dn, a_line) * a_line
    a_slots = 2 if a_step + dn <= cfg.buf_a_bytes else int(dn <= cfg.buf_a_bytes)
    hpt = min(max(1, cdiv(heads, 2)), b_slot // per_head, o_slot // (d * ntok))
    if hpt < 1:
        raise CompileError(f"{name}: one head ({per_head} bytes) does not fit a B slot")
    return hpt, a_step, a_slots
