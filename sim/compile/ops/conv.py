"""Emission of a conv (generic k x k, pointwise, grouped pointwise) or linear node on the MAT
and R-MAC engines in down-forward mode: weight chunks x row tiles (:mod:`sim.compile.tiling`),
each tile split over the cores and engines by :func:`~sim.compile.tiling.plan_conv`. The input
may come from, and the output stay in, a B slot (:mod:`sim.compile.residency`); a layer with a
single row tile and several weight chunks loads its input once for all chunks, after the first
chunk's weights (which do not depend on the previous layer)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...intprogram import Node
from ...isa import ACTS, BUFS
from .. import tiling
from ..common import PARAM_RECORD, CompileError, align, cdiv, elem_bytes, shape3
from ..context import Context
from ..records import ConvWeightLayout, param_block

__all__ = ["emit_conv", "ConvShape", "conv_shape"]


@dataclass(frozen=True)
class ConvShape:
    """A conv / linear node as the core runs it (a 1x1 stride-1 conv is viewed as
    ``(C, H*W, 1)`` so that tiles and cores split its pixels at single-pixel granularity)."""
    cin: int
    H: int
    W: int
    cout: int
    Ho: int
    Wo: int
    k: int
    s: int
    pad: int
    g: int
    linear: bool
    ob: int                 #: output bytes per element (4: the int32 logits)
    res: str | None         #: the residual tensor added in the epilogue

    @property
    def cin_g(self):
        return self.cin // self.g

    @property
    def cout_g(self):
        return self.cout // self.g

    @property
    def K(self):
        """Reduction length per output: ``Cin/g * k * k``."""
        return self.cin_g * self.k * self.k


def conv_shape(prog, n: Node) -> ConvShape:
    xt, yt = prog.tensors[n.inputs[0]], prog.tensors[n.output]
    lin = n.op == "linear"
    cin, H, W = shape3(xt.shape)
    cout, Ho, Wo = shape3(yt.shape)
    if not lin and int(n.attrs["kernel"]) == 1 and int(n.attrs["stride"]) == 1 \
            and int(n.attrs["padding"]) == 0:
        H, W, Ho, Wo = H * W, 1, Ho * Wo, 1
    if lin:
        k, s, pad, g = 1, 1, 0, 1
    else:
        k, s, pad, g = (int(n.attrs[a]) for a in ("kernel", "stride", "padding", "groups"))
    e = n.epilogue
    return ConvShape(cin, H, W, cout, Ho, Wo, k, s, pad, g, lin, elem_bytes(yt),
                     e.residual if e is not None else None)


def _layer_regs(prog, n: Node, c: ConvShape) -> dict:
    """The unit registers that are the same for every tile of the layer."""
    yt, e = prog.tensors[n.output], n.epilogue
    return dict(CIN=c.cin_g, WIN=c.W, WOUT=c.Wo, KERNEL=c.k, STRIDE=c.s, PAD_L=c.pad,
                PAD_R=c.pad, ACT=ACTS[e.act] if e else 0, OBITS=yt.bits,
                OSIGNED=int(yt.signed), MIDBITS=e.mid_bits if e else 16,
                THREE=e.three if e else 0, LINEAR=int(c.linear), NOEPI=int(e is None),
                XSIGNED=int(prog.tensors[n.inputs[0]].signed),
                RSIGNED=int(prog.tensors[c.res].signed) if c.res else 1, XBUF=BUFS["B"])


def _tile_rows(ctx: Context, n: Node, c: ConvShape, chunk: int, wbytes: int,
               keep_out: bool):
    """``(output rows per tile, output stays in B)``: the rows fit the B slot and their
    output the OUT slot, few whole tiles for a weight-dominated layer. When the output may stay
    resident (``keep_out``: planned and the whole output fits a B slot) the OUT slot does not
    bound the rows; but the output stays only if that plan is one row tile, otherwise the rows
    are sized again for the OUT slot the tiles then go to."""
    B, OUT = ctx.sched.B, ctx.sched.O

    def need(nr, stay):
        rows_in = min(c.H, (nr - 1) * c.s + c.k)
        b = c.cin * rows_in * c.W + (chunk * nr * c.Wo if c.res else 0)
        return b <= B.size and (stay or chunk * nr * c.Wo * c.ob <= OUT.size)

    def rows(stay):
        nr = tiling.fit_rows(c.Ho, lambda r: need(r, stay))
        if not need(nr, stay):
            raise CompileError(f"{n.name}: one output row does not fit the B/OUT slots"
                               f" (B slot {B.size} bytes, OUT slot {OUT.size} bytes)")
        if wbytes > c.cin * c.H * c.W:       # weight-dominated layer: few, whole tiles
            return min(nr, tiling.MAX_FIELD)
        return tiling.tile_rows(nr, c.Ho, c.cin * c.W * c.s + chunk * c.Wo)
    if keep_out:
        nr = rows(True)
        if nr >= c.Ho:
            return nr, True
    return rows(False), False


def _load_whole_input(ctx: Context, n: Node, c: ConvShape, rin, Bk=1):
    """Load the whole input (unless resident: ``rin``) and residual into one B slot for all
    weight chunks; returns ``(slot, base, residual base, events the compute waits for)``.
    ``Bk``: the blocked layout's B (1: planar); ``c.cin`` is then padded to whole blocks."""
    em, sched, sync, taddr = ctx.em, ctx.sched, ctx.sched.sync, ctx.layout.addr
    plane, out_plane = c.H * c.W, c.Ho * c.Wo
    if rin is not None:                 # the input is already in a B slot
        sb, bbase = rin["slot"], rin["base"]
        xw = list(rin["events"])
        rall = bbase + c.cin * plane
        if c.res:
            em.wait_all("global", "LD", rin["busy"])
            sync.wait_stored(c.res, 0, c.cout, 0, out_plane)
            sched.dma_rows("LOAD", "B", rall, taddr(c.res), c.cout // Bk, out_plane * Bk,
                           out_plane * Bk)
            xw.append((sched.loaded(), 1))
        return sb, bbase, rall, xw
    sb = sched.B.next()
    sched.begin_tile(sb)
    sync.wait_stored(n.inputs[0], 0, c.cin, 0, plane)
    bbase = sched.B.base[sb]
    sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]), c.cin // Bk, plane * Bk, plane * Bk)
    rall = bbase + c.cin * plane
    if c.res:
        sync.wait_stored(c.res, 0, c.cout, 0, out_plane)
        sched.dma_rows("LOAD", "B", rall, taddr(c.res), c.cout // Bk, out_plane * Bk,
                       out_plane * Bk)
    return sb, bbase, rall, [(sched.loaded(), 1)]


def _load_rows(ctx: Context, n: Node, c: ConvShape, c0, c1, r0, r1, a, b, Bk=1):
    """Load input rows ``a..b`` (all channels) and the residual of output channels ``c0..c1``,
    rows ``r0..r1`` into the next B slot; returns ``(slot, base, residual base, events)``.
    ``Bk``: the blocked layout's B (1: planar; a DMA chunk is then rows of a block)."""
    sched, sync, taddr = ctx.sched, ctx.sched.sync, ctx.layout.addr
    sb = sched.B.next()
    sched.begin_tile(sb)
    sync.wait_stored(n.inputs[0], 0, c.cin, a * c.W, b * c.W)
    bbase = sched.B.base[sb]
    sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]) + a * c.W * Bk, c.cin // Bk,
                   (b - a) * c.W * Bk, c.H * c.W * Bk)
    rbase = bbase + c.cin * (b - a) * c.W
    if c.res:
        sync.wait_stored(c.res, c0, c1, r0 * c.Wo, r1 * c.Wo)
        sched.dma_rows("LOAD", "B", rbase, taddr(c.res) + c0 * c.Ho * c.Wo + r0 * c.Wo * Bk,
                       (c1 - c0) // Bk, (r1 - r0) * c.Wo * Bk, c.Ho * c.Wo * Bk)
    return sb, bbase, rbase, [(sched.loaded(), 1)]


def tiled_weights(ctx: Context, n: Node, wl: ConvWeightLayout, chunks):
    """Allocate a conv's pre-tiled weights in DRAM chunk by chunk (each chunk one contiguous
    LOAD, :class:`~sim.compile.records.ConvWeightLayout`); returns ``(address, offsets)``, the
    chunks' byte offsets with the total at the end."""
    w = np.asarray(n.params["weight"], dtype=np.int8).reshape(-1, wl.cin_g, wl.k, wl.k)
    packed = [wl.pack(w[c0:c1]) for c0, c1 in chunks]
    woffs = np.cumsum([0] + [b.size for b in packed]).tolist()
    waddr = ctx.image.alloc(f"weight:{n.name}", woffs[-1], "weight", np.concatenate(packed),
                            layout="tiled", chunks=[list(r) for r in chunks], offsets=woffs[:-1])
    return waddr, woffs


def _qkv_pieces(ctx: Context, n: Node, c):
    """The row pieces of pointwise ``n`` whose resident output a stride-1 depthwise conv reads
    piece by piece (``Residency.pipe_in``; the on-chip aggregation of :mod:`..attctx`), or
    None: ``dict(pieces, tasks, ends, mat_free)``, the depthwise's own row pieces
    (:func:`~sim.compile.tiling.pipe_pieces`, as :mod:`.depthwise` chooses them) and this
    conv's tasks per piece (:func:`~sim.compile.tiling.pre_pipe_plan`)."""
    p, cfg = ctx.prog, ctx.cfg
    if n.output not in ctx.res.pipe_in:
        return None
    d = next((m for m in p.nodes if m.op == "conv" and m.kind == "depthwise"
              and m.inputs == [n.output]), None)
    if d is None or int(d.attrs["stride"]) != 1 or d.output not in ctx.res.pipe:
        return None
    q = next(m for m in p.nodes if d.output in m.inputs)
    cq, ciq = np.asarray(q.params["weight"]).shape[:2]
    then = dict(cout=int(cq), cin_g=int(ciq), groups=int(q.attrs["groups"]))
    nch, ho, wo = p.tensors[d.output].shape
    dk = int(d.attrs["kernel"])
    pieces, _ = tiling.pipe_pieces(cfg, nch=nch, ho=ho, wo=wo, k=dk, **then)
    if len(pieces) < 2:
        return None
    times = tiling.dw_piece_times(cfg, pieces, nch=nch, wo=wo, k=dk)
    plan = tiling.pre_pipe_plan(cfg, pieces, times, k=dk, wo=wo, nco=c.cout, K=c.cin_g,
                                then=then)
    if plan is None:
        return None
    tasks, ends, mat_free = plan
    return dict(pieces=pieces, tasks=tasks, ends=ends, mat_free=mat_free)


def emit_conv(ctx: Context, n: Node, info):
    """Emit conv / linear node ``n`` in the compilation's activation layout: planar, or
    (``ctx.block = b`` and more than one input pixel) channel-blocked with ``B = 2**b``: the
    units' ``BLOCK`` register, strides of a block of B channels, DMA chunks of rows of a block,
    every channel split on whole blocks, a grouped conv one ``GROUPS = 1`` instruction per group
    (``sim.compile.pipeline.check_blocked`` guarantees 8-bit outputs and channels in whole
    blocks, but the network input's, which is padded to whole blocks)."""
    cfg, p, em = ctx.cfg, ctx.prog, ctx.em
    sched, sync, resid = ctx.sched, ctx.sched.sync, ctx.res
    B, C, OUT = sched.B, sched.C, sched.O
    c = conv_shape(p, n)
    Bk = 1 << ctx.block if ctx.block and c.H * c.W > 1 else 1
    if Bk > 1 and c.cin % Bk:           # the network input (the stem): padded blocks
        c = replace(c, cin=cdiv(c.cin, Bk) * Bk)
    cin, H, W, cout, Ho, Wo = c.cin, c.H, c.W, c.cout, c.Ho, c.Wo
    k, s, pad, g, K, ob, res = c.k, c.s, c.pad, c.g, c.K, c.ob, c.res
    K = conv_shape(p, n).K      # (the real input channels)

    def at(base, ch, pix, npix):
        return base + (ch // Bk) * npix * Bk + pix * Bk + ch % Bk
    # tiles: weight chunks (pre-tiled weights, records.ConvWeightLayout) x row blocks
    cin_g = conv_shape(p, n).cin_g
    wl = ConvWeightLayout(cfg, cin_g, k, c.cout_g, g > 1)
    chunk = tiling.conv_chunk(n.name, cout=cout, g=g, K=K, c_slot=C.size, wbytes=wl.nbytes,
                              gran=tiling.filter_gran(cfg), block=Bk)
    # DRAM blocks: the weights chunk by chunk, each chunk one contiguous LOAD
    chunks = tiling.ranges(cout, chunk)
    waddr, woffs = tiled_weights(ctx, n, wl, chunks)
    paddr = ctx.image.alloc(f"param:{n.name}", cout * PARAM_RECORD, "param",
                            param_block(n, cout))
    wpoff = align(wl.nbytes(chunk))        # the records' offset in the C slot
    keep_out = n.output in resid.keep and cout * Ho * Wo <= B.size
    nr, stay = _tile_rows(ctx, n, c, chunk, cout * K, keep_out)
    regs = _layer_regs(p, n, conv_shape(p, n))
    if Bk > 1:
        regs["BLOCK"] = ctx.block
    # residency: the input may already be in a B slot, the output may stay in one
    rin = None
    if n.inputs[0] in resid.resident:
        ok = (cin * H * W + (cout * Ho * Wo if res else 0) <= B.size
              and (keep_out or chunk * Ho * Wo * ob <= OUT.size))
        if ok:
            rin = resid.take(n.inputs[0])
            nr, stay = Ho, keep_out         # one row tile
        elif not res and not keep_out and cin * H * W <= B.size:
            # the input stays where it is; the output (a chunk too large for one OUT slot)
            # goes out in row tiles of the OUT slot (rows ``nr`` of :func:`_tile_rows`)
            # instead of spilling the input to DRAM and loading it back (B1's stage-2
            # local inverted conv after the on-chip context module, issue #16)
            rin = resid.take(n.inputs[0])
        else:
            resid.spill(n.inputs[0])
    rout = None
    if n.output in resid.keep:
        if stay:
            rout = resid.new()
            info["on_chip"] = True
        else:
            resid.keep.pop(n.output, None)
    # one row tile but several weight chunks: load the input (and the whole residual)
    # once and keep it in its B slot for all chunks
    shared = rin is not None or (nr >= Ho and cout > chunk and cin * H * W +
                                 (cout * Ho * Wo if res else 0) <= B.size)
    pre = None
    if shared:
        # the first chunk's weights do not depend on the previous layer: load them first
        sc0 = C.next()
        pre = (sc0, sched.load_weights(sc0, [(waddr, woffs[1], 0),
                                             (paddr, chunks[0][1] * PARAM_RECORD, wpoff)]))
        sb, bbase, rall, xw = _load_whole_input(ctx, n, c, rin, Bk)
    for ci, (c0, c1) in enumerate(chunks):
        nco = c1 - c0
        if c0 == 0 and pre is not None:
            sc, wsem = pre
        else:
            sc = C.next()
            wsem = sched.load_weights(sc, [(waddr + woffs[ci], woffs[ci + 1] - woffs[ci], 0),
                                           (paddr + c0 * PARAM_RECORD, nco * PARAM_RECORD,
                                            wpoff)])
        wbase, pbase = C.base[sc], C.base[sc] + wpoff
        chunk_done = []
        for r0, r1 in tiling.ranges(Ho, nr):
            info["tiles"] += 1
            a, b = max(r0 * s - pad, 0), min((r1 - 1) * s - pad + k, H)
            if shared:          # the whole input is in the B slot: rows 0..H, channel stride H*W
                a, b = 0, H
            so = OUT.next() if rout is None else None
            if shared:
                rbase = rall + c0 * Ho * Wo
            else:
                sb, bbase, rbase, xw = _load_rows(ctx, n, c, c0, c1, r0, r1, a, b, Bk)
            if rout is None:
                obase, obuf = OUT.base[so], BUFS["OUT"]
            else:
                obase, obuf = rout["base"] + c0 * Ho * Wo, BUFS["B"]
            tnr = r1 - r0
            writers, seen, waited = [], set(), set()
            # a resident input written in row pieces (attctx.pipe: the aggregation's DW
            # output) is read piece by piece, each piece after its event, the early ones on
            # the MAT engines while the R-MACs still run the next; otherwise one plan after
            # all of it
            pieces = rin.get("rows") if (rin is not None and nr == Ho and len(chunks) == 1
                                          and k == 1 and W == 1 and not res) else None
            # an output that a depthwise conv reads piece by piece (attctx.pipe_qkv: the qkv
            # pointwise ahead of the aggregation) is written in its row pieces, each followed
            # by an event (tiling.pre_pipe_plan: the late pieces on the MATs alone)
            qpipe = _qkv_pieces(ctx, n, c) if (
                rout is not None and nr == Ho and len(chunks) == 1 and k == 1
                and W == 1 and g == 1 and not res and not pieces) else None
            ends = []
            if pieces:          # (the tasks of tiling.pipe_plan, planned by the producer)
                tasks = [t + ([(ev, cnt)],) for ev, cnt, ts in pieces for t in ts]
            elif qpipe is not None:
                tasks = [t + (xw,) for ts in qpipe["tasks"] for t in ts]
                ends = list(np.cumsum([len(ts) for ts in qpipe["tasks"]]))
            else:
                tasks = [t + (xw,) for t in tiling.plan_conv(cfg, nco, tnr, Wo, K, g,
                                                             c.cout_g, k=k, block=Bk,
                                                             res=res is not None)]
            qrows, piece = [], []
            for ti, (core, eng, (ca, cb), (ra, rb), tw) in enumerate(tasks):
                st, unit = f"core{core}", eng
                em.wait_all(st, unit, tw)
                if (st, unit) not in waited:
                    waited.add((st, unit))
                    em.wait(st, unit, wsem, 1)
                    if rout is None:
                        sched.wait_out_slot(st, unit, so, seen)
                    else:
                        em.wait_all(st, unit, rout["busy"])
                lo, hi = (r0 + ra) * s - pad, (r0 + rb - 1) * s - pad + k
                aa, bb = max(lo, 0), min(hi, H)
                # (blocked grouped: one GROUPS = 1 instruction per group, its input channels
                # the group's blocks: the units have no group increments with BLOCK)
                if g > 1 and Bk > 1:
                    parts = [(q, q + c.cout_g, 1) for q in range(ca, cb, c.cout_g)]
                else:
                    parts = [(ca, cb, (cb - ca) // c.cout_g if g > 1 else 1)]
                for qa, qb, ngr in parts:
                    ci0 = (c0 + qa) // c.cout_g * cin_g if g > 1 else 0
                    em.setr(st, unit, **dict(regs, GROUPS=ngr, XSTRIDE=(b - a) * W * Bk,
                                             OSTRIDE=tnr * Wo * ob * Bk, RSTRIDE=tnr * Wo * Bk,
                                             RES_ADDR=at(rbase, qa, ra * Wo, tnr * Wo) if res
                                             else -1))
                    em.emit(st, "CONV_MAT" if eng == "MAT" else "CONV_RDF",
                            x_addr=at(bbase, ci0, (aa - a) * W, (b - a) * W),
                            w_addr=wbase + wl.offset(eng, qa, nco),
                            p_addr=pbase + qa * PARAM_RECORD,
                            o_addr=obase + at(0, qa, ra * Wo, tnr * Wo) * ob, nco=qb - qa,
                            hin=bb - aa, ho=rb - ra, pad_t=aa - lo, pad_b=hi - bb, obuf=obuf)
                if (st, unit) not in writers:
                    writers.append((st, unit))
                if (st, unit) not in piece:
                    piece.append((st, unit))
                if ti + 1 in ends:      # the end of a row piece: its event
                    ev = em.sem()
                    for su in piece:
                        em.signal(*su, ev)
                    p0, p1 = qpipe["pieces"][len(qrows)]
                    qrows.append((p0, p1, ev, len(piece)))
                    piece = []
            if qrows:
                rout["qrows"] = qrows
                rout["qplan"] = dict(ends=qpipe["ends"], mat_free=qpipe["mat_free"])
            chunk_done.append(sched.finish_rows(
                sync=sync, resid=resid, name=n.output, rout=rout, slot_b=sb, slot_o=so,
                writers=writers, obase=obase,
                dram=lambda: ctx.layout.addr(n.output) + (c0 * Ho * Wo + r0 * Wo * Bk) * ob,
                channels=nco // Bk, row_bytes=tnr * Wo * ob * Bk,
                plane_bytes=Ho * Wo * ob * Bk, c0=c0, c1=c1, r0=r0, r1=r1, wo=Wo))
        C.busy[sc] = chunk_done
    if rin is not None:
        resid.release(rin)
    if rout is not None:
        resid.resident[n.output] = rout
