"""Emission of a depthwise conv (3x3 / 5x5, stride 1 / 2) on the R-MAC engines in
self-accumulation mode: channel chunks x row tiles, each tile split over the cores by
:func:`~sim.compile.tiling.best_dw_split`. Input and output may be resident in B slots. The
same emission serves both activation layouts (``ctx.block``: planar, or channel-blocked with
the units' ``BLOCK`` register).

A resident output that the next layer reads piece by piece (``Residency.pipe``: the on-chip
aggregation of :mod:`sim.compile.attctx`, planar) is written in row pieces
(:func:`~sim.compile.tiling.pipe_pieces`), each split over the cores and followed by an event
of its own, recorded as ``rows`` in the resident record with the reader's tasks for the piece
(:func:`~sim.compile.tiling.pipe_plan`): the grouped PW (:mod:`.conv`) runs the early pieces
on the MAT engines while the R-MACs run the next ones, the late ones on both."""

from __future__ import annotations

import numpy as np

from ...intprogram import Node
from ...isa import ACTS, BUFS, dw_weight_bytes
from .. import tiling
from ..common import PARAM_RECORD, CompileError, align
from ..context import Context
from ..records import dw_weights, param_block

__all__ = ["emit_depthwise"]


def _tiles(ctx: Context, n: Node, stay: bool, block: int = 1):
    """``(channels per chunk, output rows per tile)``: a chunk's weights fit a C slot, its input
    rows (with halo) and residual a B slot, its output an OUT slot, unless the output stays in a
    B slot (``stay``: the whole output fits one); chunks in multiples of ``block`` too."""
    p, B, C, OUT = ctx.prog, ctx.sched.B, ctx.sched.C, ctx.sched.O
    Cn, H, W = p.tensors[n.inputs[0]].shape
    _, Ho, Wo = p.tensors[n.output].shape
    k, s = int(n.attrs["kernel"]), int(n.attrs["stride"])
    res = n.epilogue.residual

    def need(nr, ch):
        rows_in = min(H, (nr - 1) * s + k)
        return (ch * rows_in * W + (ch * nr * Wo if res else 0) <= B.size
                and (stay or ch * nr * Wo <= OUT.size))
    chunk = tiling.dw_chunk(ctx.cfg, C=Cn, k=k, c_slot=C.size, need=need, block=block)
    nr = tiling.fit_rows(Ho, lambda r: need(r, chunk))
    if not need(nr, chunk):
        raise CompileError(f"{n.name}: a depthwise row does not fit the B/OUT slots")
    return chunk, tiling.tile_rows(nr, Ho, chunk * W * s + chunk * Wo)


def dw_layer(ctx: Context, n: Node):
    """The depthwise layer's DRAM blocks and registers: ``(waddr, paddr, regs)`` (weights
    pre-tiled ``[C/N][k*k][N]``, one parameter record per channel; the layer registers but
    ``BLOCK``)."""
    cfg, p = ctx.cfg, ctx.prog
    xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
    Cn, _, W = xt.shape
    _, _, Wo = yt.shape
    k, s, pad = (int(n.attrs[a]) for a in ("kernel", "stride", "padding"))
    e = n.epilogue
    res = e.residual
    w = dw_weights(np.asarray(n.params["weight"], dtype=np.int8), cfg.N)   # [C/N][k*k][N]
    waddr = ctx.image.alloc(f"weight:{n.name}", w.size, "weight", w, layout="tiled")
    paddr = ctx.image.alloc(f"param:{n.name}", Cn * PARAM_RECORD, "param", param_block(n, Cn))
    regs = dict(WIN=W, WOUT=Wo, KERNEL=k, STRIDE=s, PAD_L=pad, PAD_R=pad, ACT=ACTS[e.act],
                OBITS=yt.bits, OSIGNED=int(yt.signed), MIDBITS=e.mid_bits, THREE=e.three,
                LINEAR=0, NOEPI=0, XSIGNED=int(xt.signed),
                RSIGNED=int(p.tensors[res].signed) if res else 1, XBUF=BUFS["B"])
    return waddr, paddr, regs


def load_dw_chunk(ctx: Context, waddr, paddr, c0, c1, chunk, k):
    """LOAD channels ``[c0, c1)`` of a depthwise layer's weights and records into the next C
    slot (a chunk of at most ``chunk`` channels); returns ``(slot, semaphore, weight base,
    record base)``. Chunks start at multiples of N (tiling.dw_chunk): channel c0's block of
    the pre-tiled weights is at ``c0 * k*k``."""
    sched, N = ctx.sched, ctx.cfg.N
    sc = sched.C.next()
    poff = align(dw_weight_bytes(chunk, k, N))
    wsem = sched.load_weights(sc, [(waddr + c0 * k * k, dw_weight_bytes(c1 - c0, k, N), 0),
                                   (paddr + c0 * PARAM_RECORD, (c1 - c0) * PARAM_RECORD, poff)])
    return sc, wsem, sched.C.base[sc], sched.C.base[sc] + poff


def emit_depthwise(ctx: Context, n: Node, info):
    cfg, p, em = ctx.cfg, ctx.prog, ctx.em
    sched, sync, res_ = ctx.sched, ctx.sched.sync, ctx.res
    B, C, OUT = sched.B, sched.C, sched.O
    taddr = ctx.layout.addr
    xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
    Cn, H, W = xt.shape
    _, Ho, Wo = yt.shape
    k, s, pad = (int(n.attrs[a]) for a in ("kernel", "stride", "padding"))
    e = n.epilogue
    res = e.residual
    waddr, paddr, regs = dw_layer(ctx, n)
    # blocked (ctx.block = b, B = 2**b): chunks and core splits on whole blocks, so a chunk's
    # first channel c0 is at c0 * H * W like planar; rows inside a block are B bytes per pixel
    Bk = 1 << ctx.block
    if ctx.block:
        regs["BLOCK"] = ctx.block

    def at(base, c, pix, npix):
        return base + (c // Bk) * npix * Bk + pix * Bk + c % Bk

    # the output may stay in a B slot (planned, and it fits one) if the layer is one tile
    keep_out = n.output in res_.keep and Cn * Ho * Wo <= B.size
    chunk, nr = _tiles(ctx, n, keep_out, block=Bk)
    stay = keep_out and chunk == Cn and nr == Ho
    rin = rout = None
    if n.inputs[0] in res_.resident:
        if chunk == Cn and Cn * H * W + (Cn * Ho * Wo if res else 0) <= B.size and \
                (keep_out or Cn * Ho * Wo <= OUT.size):
            rin = res_.take(n.inputs[0])
            nr, stay = Ho, keep_out         # one tile
        else:
            res_.spill(n.inputs[0])
    if keep_out and not stay:       # the tiles go to OUT slots after all: size them for those
        chunk, nr = _tiles(ctx, n, False, block=Bk)
    if n.output in res_.keep:
        if stay:
            rout = res_.new()
            info["on_chip"] = True
        else:
            res_.keep.pop(n.output, None)
    # the next layer reads the resident output piece by piece (attctx.pipe): its shape
    pipe = None
    if (rin is not None and rout is not None and n.output in res_.pipe and chunk == Cn
            and not res):
        q = next(m for m in p.nodes if n.output in m.inputs)
        cq, ciq = np.asarray(q.params["weight"]).shape[:2]
        pipe = dict(cout=int(cq), cin_g=int(ciq), groups=int(q.attrs["groups"]))
    # blocked, a grouped reader runs group by group (one instruction per group and task,
    # emit_conv): read piece by piece that multiplies its instructions (B1-R224's stage-3
    # grouped PW 397 -> 1,879 cycles on zcu102), so it reads the whole output after the last
    # piece; the pieces stay where the qkv was written in pieces (each waits only for the
    # qkv rows under it, attctx.pipe_qkv), else the DW is one piece
    read_pieces = pipe is not None and not (ctx.block and pipe["groups"] > 1)
    for c0, c1 in tiling.ranges(Cn, chunk):
        nch = c1 - c0
        sc, wsem, wbase, pbase = load_dw_chunk(ctx, waddr, paddr, c0, c1, chunk, k)
        chunk_done = []
        for r0, r1 in tiling.ranges(Ho, nr):
            tnr = r1 - r0
            info["tiles"] += 1
            in_lo, in_hi = r0 * s - pad, (r1 - 1) * s - pad + k
            a, b = max(in_lo, 0), min(in_hi, H)
            if rin is not None:     # the whole input is in the B slot: channel stride H*W
                a, b = 0, H
            so = OUT.next() if rout is None else None
            # an input written in row pieces (attctx.pipe_qkv): each piece of this layer waits
            # for the input pieces under its rows and halo, not for the whole input
            qrows = rin.get("qrows") if (rin is not None and s == 1 and nr == Ho
                                          and not res) else None
            if rin is not None:
                sb, bbase = rin["slot"], rin["base"]
                xw = [] if qrows else list(rin["events"])
                em.wait_all("global", "LD", rin["busy"] if res else [])
            else:
                sb = B.next()
                sched.begin_tile(sb)
                sync.wait_stored(n.inputs[0], c0, c1, a * W, b * W)
                bbase = B.base[sb]
                sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]) + c0 * H * W + a * W * Bk,
                               nch // Bk, (b - a) * W * Bk, H * W * Bk)
                xw = []
            rbase = bbase + nch * (b - a) * W
            if res:
                sync.wait_stored(res, c0, c1, r0 * Wo, r1 * Wo)
                sched.dma_rows("LOAD", "B", rbase, taddr(res) + c0 * Ho * Wo + r0 * Wo * Bk,
                               nch // Bk, tnr * Wo * Bk, Ho * Wo * Bk)
            if rin is None or res:
                xw.append((sched.loaded(), 1))
            if rout is None:
                obase, obuf = OUT.base[so], BUFS["OUT"]
            else:
                obase, obuf = rout["base"], BUFS["B"]
            # row pieces: one, or (a resident output that the next layer reads piece by
            # piece, attctx.pipe) several, each with an event its reader waits for
            pieces, ptasks = [(0, tnr)], None
            if pipe is not None and nr == Ho and (read_pieces or qrows):
                pieces, ptasks = tiling.pipe_pieces(cfg, nch=nch, ho=tnr, wo=Wo, k=k, **pipe)
                if qrows and [(a_, b_) for a_, b_, _, _ in qrows] == pieces:
                    # the grouped PW planned with the producer's MAT backlog and these
                    # pieces' estimated ends (tiling.pre_pipe_plan)
                    ptasks, _ = tiling.pipe_plan(
                        cfg, pieces, tiling.dw_piece_times(cfg, pieces, nch=nch, wo=Wo, k=k),
                        wo=Wo, **pipe, **rin["qplan"])
            writers, seen, waited, rows_ev = [], set(), set(), []
            for p0, p1 in pieces:
                # split over cores: channels x rows, best estimate
                dw_cs, dw_rs = tiling.best_dw_split(cfg, nch=nch, nrows=p1 - p0, wo=Wo, k=k,
                                                    block=Bk)
                piece = []
                pw = [] if not qrows else [
                    (ev, cnt) for q0, q1, ev, cnt in qrows
                    if q0 < min(H, p1 - pad + k - 1) and q1 > max(0, p0 - pad)]
                for core, ((ca, cb), (ra, rb)) in enumerate(
                        (c, (ra + p0, rb + p0)) for c in dw_cs for ra, rb in dw_rs):
                    st = f"core{core}"
                    if st not in waited:
                        waited.add(st)
                        em.wait_all(st, "RMAC", xw)
                        em.wait(st, "RMAC", wsem, 1)
                        if rout is None:
                            sched.wait_out_slot(st, "RMAC", so, seen)
                        else:
                            em.wait_all(st, "RMAC", rout["busy"])
                    for w in pw:
                        if (st, w) not in waited:
                            waited.add((st, w))
                            em.wait(st, "RMAC", *w)
                    lo, hi = (r0 + ra) * s - pad, (r0 + rb - 1) * s - pad + k
                    aa, bb = max(lo, 0), min(hi, H)
                    em.setr(st, "RMAC", **dict(regs, CIN=1, GROUPS=cb - ca,
                                               XSTRIDE=(b - a) * W * Bk, OSTRIDE=tnr * Wo * Bk,
                                               RSTRIDE=tnr * Wo * Bk,
                                               RES_ADDR=at(rbase, ca, ra * Wo, tnr * Wo)
                                               if res else -1))
                    em.emit(st, "DW_RSA", x_addr=at(bbase, ca, (aa - a) * W, (b - a) * W),
                            w_addr=wbase + ca * k * k, p_addr=pbase + ca * PARAM_RECORD,
                            o_addr=at(obase, ca, ra * Wo, tnr * Wo), nco=cb - ca, hin=bb - aa,
                            ho=rb - ra, pad_t=aa - lo, pad_b=hi - bb, obuf=obuf)
                    piece.append((st, "RMAC"))
                if len(pieces) > 1 and read_pieces:
                    ev = em.sem()
                    for st, u in piece:
                        em.signal(st, u, ev)
                    rows_ev.append((ev, len(piece), ptasks[len(rows_ev)]))
                writers += [w for w in piece if w not in writers]
            if rows_ev:
                rout["rows"] = rows_ev
            chunk_done.append(sched.finish_rows(
                sync=sync, resid=res_, name=n.output, rout=rout, slot_b=sb, slot_o=so,
                writers=writers, obase=obase,
                dram=lambda: taddr(n.output) + c0 * Ho * Wo + r0 * Wo * Bk,
                channels=nch // Bk, row_bytes=tnr * Wo * Bk, plane_bytes=Ho * Wo * Bk,
                c0=c0, c1=c1, r0=r0, r1=r1, wo=Wo))
        C.busy[sc] = chunk_done
    if rin is not None:
        res_.release(rin)
    if rout is not None:
        res_.resident[n.output] = rout
