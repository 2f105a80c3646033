"""Emission of a conv (generic k x k, pointwise, grouped pointwise) or linear node on the MAT
and R-MAC engines in down-forward mode: weight chunks x row tiles (:mod:`sim.compile.tiling`),
each tile split over the cores and engines by :func:`~sim.compile.tiling.plan_conv`. The input
may come from, and the output stay in, a B slot (resident tensors)."""

from __future__ import annotations

import numpy as np

from ...intprogram import Node
from ...isa import ACTS, BUFS
from .. import tiling
from ..common import PARAM_RECORD, CompileError, align, elem_bytes, shape3
from ..context import Context
from ..records import param_block

__all__ = ["emit_conv"]


def emit_conv(ctx: Context, n: Node, info):
    cfg, p, em = ctx.cfg, ctx.prog, ctx.em
    sched, sync, res_ = ctx.sched, ctx.sched.sync, ctx.res
    B, C, OUT = sched.B, sched.C, sched.O
    taddr = ctx.layout.addr
    xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
    lin = n.op == "linear"
    cin, H, W = shape3(xt.shape)
    cout, Ho, Wo = shape3(yt.shape)
    if not lin and int(n.attrs["kernel"]) == 1 and int(n.attrs["stride"]) == 1 \
            and int(n.attrs["padding"]) == 0:
        # a 1x1 conv does not care about rows: view (C, H, W) as (C, H*W, 1) so that tiles
        # and cores split the pixels at single-pixel granularity
        H, W, Ho, Wo = H * W, 1, Ho * Wo, 1
    if lin:
        k = s = 1
        pad, g = 0, 1
    else:
        k, s, pad, g = (int(n.attrs[a]) for a in ("kernel", "stride", "padding", "groups"))
    cin_g, cout_g = cin // g, cout // g
    K = cin_g * k * k
    ob = elem_bytes(yt)
    e = n.epilogue
    res = e.residual if e is not None else None
    # DRAM blocks
    w = np.asarray(n.params["weight"], dtype=np.int8).reshape(cout, K)
    waddr = ctx.image.alloc(f"weight:{n.name}", w.size, "weight", w)
    paddr = ctx.image.alloc(f"param:{n.name}", cout * PARAM_RECORD, "param",
                            param_block(n, cout))
    # tiles: weight chunks x row blocks
    chunk = tiling.conv_chunk(n.name, cout=cout, g=g, K=K, c_slot=C.size)

    def need(nr):
        rows_in = min(H, (nr - 1) * s + k)
        b = cin * rows_in * W + (chunk * nr * Wo if res else 0)
        return b <= B.size and (chunk * nr * Wo * ob <= OUT.size or (
            n.output in res_.keep and cout * Ho * Wo <= B.size))
    nr = tiling.fit_rows(Ho, need)
    if not need(nr):
        raise CompileError(f"{n.name}: one output row does not fit the B/OUT slots"
                           f" (B slot {B.size} bytes, OUT slot {OUT.size} bytes)")
    if w.size > cin * H * W:       # weight-dominated layer: few, whole tiles
        nr = min(nr, tiling.MAX_FIELD)
    else:
        nr = tiling.tile_rows(nr, Ho, cin * W * s + chunk * Wo)
    x_signed = int(p.tensors[n.inputs[0]].signed)
    regs = dict(CIN=cin_g, WIN=W, WOUT=Wo, KERNEL=k, STRIDE=s, PAD_L=pad, PAD_R=pad,
                ACT=ACTS[e.act] if e else 0, OBITS=yt.bits, OSIGNED=int(yt.signed),
                MIDBITS=e.mid_bits if e else 16, THREE=e.three if e else 0,
                LINEAR=int(lin), NOEPI=int(e is None), XSIGNED=x_signed,
                RSIGNED=int(p.tensors[res].signed) if res else 1, XBUF=BUFS["B"])
    # one row tile but several weight chunks: load the input (and the whole residual)
    # once and keep it in its B slot for all chunks
    rin = None
    if n.inputs[0] in res_.resident:
        ok = (cin * H * W + (cout * Ho * Wo if res else 0) <= B.size
              and (n.output in res_.keep or chunk * Ho * Wo * ob <= OUT.size))
        if ok:
            rin = res_.resident.pop(n.inputs[0])
            nr = Ho
        else:
            res_.spill(n.inputs[0])
    rout = None
    if n.output in res_.keep:
        if nr >= Ho and cout * Ho * Wo <= B.size:
            rout = res_.new()
            info["on_chip"] = True
        else:
            res_.keep.pop(n.output, None)
    shared = rin is not None or (nr >= Ho and cout > chunk and cin * H * W +
                                 (cout * Ho * Wo if res else 0) <= B.size)
    pre = None
    if shared:
        # the first chunk's weights do not depend on the previous layer: load them first
        sc0 = C.next()
        pre = (sc0, sched.load_weights(sc0, [(waddr, chunk * K, 0),
                                             (paddr, chunk * PARAM_RECORD, align(chunk * K))]))
        if rin is not None:                 # the input is already in a B slot
            sb, bbase = rin["slot"], rin["base"]
            xw = list(rin["events"])
            rall = bbase + cin * H * W
            if res:
                em.wait_all("global", "LD", rin["busy"])
                sync.wait_stored(res, 0, cout, 0, Ho * Wo)
                sched.dma_rows("LOAD", "B", rall, taddr(res), cout, Ho * Wo, Ho * Wo)
                xw.append((sched.loaded(), 1))
        else:
            sb = B.next()
            sched.begin_tile(sb)
            sync.wait_stored(n.inputs[0], 0, cin, 0, H * W)
            bbase = B.base[sb]
            sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]), cin, H * W, H * W)
            rall = bbase + cin * H * W
            if res:
                sync.wait_stored(res, 0, cout, 0, Ho * Wo)
                sched.dma_rows("LOAD", "B", rall, taddr(res), cout, Ho * Wo, Ho * Wo)
            xw = [(sched.loaded(), 1)]
    for c0, c1 in tiling.ranges(cout, chunk):
        nco = c1 - c0
        if c0 == 0 and pre is not None:
            sc, wsem = pre
        else:
            sc = C.next()
            wsem = sched.load_weights(sc, [(waddr + c0 * K, nco * K, 0),
                                           (paddr + c0 * PARAM_RECORD, nco * PARAM_RECORD,
                                            align(chunk * K))])
        wbase, pbase = C.base[sc], C.base[sc] + align(chunk * K)
        chunk_done = []
        for r0, r1 in tiling.ranges(Ho, nr):
            info["tiles"] += 1
            in_lo, in_hi = r0 * s - pad, (r1 - 1) * s - pad + k
            a, b = max(in_lo, 0), min(in_hi, H)
            so = OUT.next() if rout is None else None
            if shared:
                rbase = rall + c0 * Ho * Wo
            else:
                sb = B.next()
                sched.begin_tile(sb)
                sync.wait_stored(n.inputs[0], 0, cin, a * W, b * W)
                bbase = B.base[sb]
                sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]) + a * W, cin,
                               (b - a) * W, H * W)
                rbase = bbase + cin * (b - a) * W
                if res:
                    sync.wait_stored(res, c0, c1, r0 * Wo, r1 * Wo)
                    sched.dma_rows("LOAD", "B", rbase, taddr(res) + c0 * Ho * Wo + r0 * Wo,
                                   nco, (r1 - r0) * Wo, Ho * Wo)
                xw = [(sched.loaded(), 1)]
            if rout is None:
                obase, obuf = OUT.base[so], BUFS["OUT"]
            else:
                obase, obuf = rout["base"] + c0 * Ho * Wo, BUFS["B"]
            tnr = r1 - r0
            writers, seen = [], set()
            for core, eng, (ca, cb), (ra, rb) in tiling.plan_conv(cfg, nco, r1 - r0, Wo, K, g,
                                                                  cout_g, k=k):
                st, unit = f"core{core}", eng
                op = "CONV_MAT" if eng == "MAT" else "CONV_RDF"
                em.wait_all(st, unit, xw)
                em.wait(st, unit, wsem, 1)
                if rout is None:
                    sched.wait_out_slot(st, unit, so, seen)
                else:
                    em.wait_all(st, unit, rout["busy"])
                gra, grb = r0 + ra, r0 + rb
                lo, hi = gra * s - pad, (grb - 1) * s - pad + k
                aa, bb = max(lo, 0), min(hi, H)
                ngr = (cb - ca) // cout_g if g > 1 else 1
                ci0 = (c0 + ca) // cout_g * cin_g if g > 1 else 0
                r = dict(regs, GROUPS=ngr, XSTRIDE=(b - a) * W, OSTRIDE=tnr * Wo * ob,
                         RSTRIDE=tnr * Wo,
                         RES_ADDR=(rbase + (ca * tnr + ra) * Wo) if res else -1)
                em.setr(st, unit, **r)
                em.emit(st, op, x_addr=bbase + ci0 * (b - a) * W + (aa - a) * W,
                        w_addr=wbase + ca * K, p_addr=pbase + ca * PARAM_RECORD,
                        o_addr=obase + (ca * tnr + ra) * Wo * ob, nco=cb - ca, hin=bb - aa,
                        ho=rb - ra, pad_t=aa - lo, pad_b=hi - bb, obuf=obuf)
                writers.append((st, unit))
            if rout is not None:
                done = sched.finish_resident(sb, writers)
                rout["events"].append((done, len(writers)))
                if res_.keep.get(n.output):
                    res_.store(n.output, rout, c0, c1, done, len(writers))
            else:
                ydram = taddr(n.output) + (c0 * Ho + r0) * Wo * ob
                done, stored = sched.finish_tile(
                    sb, so, writers,
                    lambda: sched.dma_rows("STORE", "OUT", obase, ydram, nco, tnr * Wo * ob,
                                           Ho * Wo * ob))
                sync.record_store(n.output, c0, c1, r0 * Wo, r1 * Wo, stored)
            chunk_done.append((done, len(writers)))
        C.busy[sc] = chunk_done
    if rout is not None:
        res_.resident[n.output] = rout
