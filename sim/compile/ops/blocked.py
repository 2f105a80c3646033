"""Emission of a conv (generic k x k or pointwise, one group) and of a depthwise conv in the
channel-blocked layout (``compile(..., layout="blocked")``, docs/global-buffers.md section 5).

Every activation with more than one pixel lives ``[C/B][H][W][B]`` (``sim.compile.layout``,
``B = 2**b``); a B-slot tile of input rows ``a..b`` is the same, ``[C/B][rows*W][B]``, loaded by
one descriptor of ``C/B`` chunks (one per channel block: ``rows * W * B`` contiguous bytes at a
DRAM stride of ``H * W * B``), and so are the residual tile and the stored output tile. The
units read them through the ``BLOCK`` register (``sim.isa``): ``XSTRIDE`` / ``RSTRIDE`` /
``OSTRIDE`` are the strides of a channel block, every address is the tile base plus
``act_offset(c, p)`` of the first channel and pixel. The tiling is :mod:`.conv`'s (weight chunks
x row tiles, :func:`~sim.compile.tiling.plan_conv`) and :mod:`.depthwise`'s (channel chunks x
row tiles, :func:`~sim.compile.tiling.best_dw_split`), with every channel split on a multiple
of ``B`` and without the shared-input and residency variants: each tile loads its input rows.
"""

from __future__ import annotations

from dataclasses import replace

from ...intprogram import Node
from ...isa import BUFS
from .. import tiling
from ..common import PARAM_RECORD, CompileError, align, cdiv
from ..context import Context
from ..layout import act_offset
from ..records import ConvWeightLayout, param_block
from .conv import _layer_regs, _tile_rows, conv_shape, tiled_weights
from .depthwise import _tiles as _dw_tiles
from .depthwise import dw_layer, load_dw_chunk

__all__ = ["emit_conv_blocked", "emit_depthwise_blocked"]


def _at(base, ch, pix, npix, B):
    """Address of channel ``ch``, pixel ``pix`` of a blocked block of ``npix`` pixels."""
    return base + int(act_offset(ch, pix, npix=npix, layout="blocked", block=B))


def emit_conv_blocked(ctx: Context, n: Node, info):
    """Emit conv node ``n`` (``g = 1``, 8-bit output, input and output channels multiples of
    ``B``, checked by the caller) with ``BLOCK = ctx.block``."""
    cfg, p, em = ctx.cfg, ctx.prog, ctx.em
    sched, sync = ctx.sched, ctx.sched.sync
    C, OUT = sched.C, sched.O
    b = ctx.block
    B = 1 << b
    c = conv_shape(p, n)
    cin, H, W, cout, Ho, Wo = c.cin, c.H, c.W, c.cout, c.Ho, c.Wo
    k, s, pad, K, res = c.k, c.s, c.pad, c.K, c.res
    g, cin_g, cout_g = c.g, c.cin_g, c.cout_g
    if c.ob != 1 or cout_g % B or (g > 1 and cin_g % B) or (cin % B and n.inputs[0]
                                                             not in p.inputs):
        raise CompileError(f"{n.name}: the blocked conv needs 8-bit outputs, groups of whole "
                           f"blocks and channels in multiples of B = {B} (but the network "
                           "input's)")
    taddr = ctx.layout.addr
    cin_p = cdiv(cin, B) * B        # the input's channels padded to whole blocks (the stem)
    # pre-tiled weights chunk by chunk, as :mod:`.conv` (records.ConvWeightLayout)
    wl = ConvWeightLayout(cfg, cin_g, k, cout_g, g > 1)
    chunk = tiling.conv_chunk(n.name, cout=cout, g=g, K=K, c_slot=C.size, wbytes=wl.nbytes,
                              gran=tiling.filter_gran(cfg), block=B)
    chunks = tiling.ranges(cout, chunk)
    waddr, woffs = tiled_weights(ctx, n, wl, chunks)
    paddr = ctx.image.alloc(f"param:{n.name}", cout * PARAM_RECORD, "param",
                            param_block(n, cout))
    wpoff = align(wl.nbytes(chunk))        # the records' offset in the C slot
    nr, _ = _tile_rows(ctx, n, replace(c, cin=cin_p), chunk, cout * K, False)
    regs = dict(_layer_regs(p, n, c), GROUPS=1, BLOCK=b)
    plane, out_plane = H * W * B, Ho * Wo * B       # bytes of one channel block
    for ci, (c0, c1) in enumerate(chunks):
        nco = c1 - c0
        sc = C.next()
        wsem = sched.load_weights(sc, [(waddr + woffs[ci], woffs[ci + 1] - woffs[ci], 0),
                                       (paddr + c0 * PARAM_RECORD, nco * PARAM_RECORD, wpoff)])
        wbase, pbase = C.base[sc], C.base[sc] + wpoff
        chunk_done = []
        for r0, r1 in tiling.ranges(Ho, nr):
            info["tiles"] += 1
            a, bb_ = max(r0 * s - pad, 0), min((r1 - 1) * s - pad + k, H)
            tnr, rows = r1 - r0, bb_ - a
            so = OUT.next()
            sb = sched.B.next()
            sched.begin_tile(sb)
            sync.wait_stored(n.inputs[0], 0, cin, a * W, bb_ * W)
            bbase = sched.B.base[sb]
            sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]) + a * W * B, cin_p // B,
                           rows * W * B, plane)
            rbase = bbase + cin_p * rows * W
            if res:
                sync.wait_stored(res, c0, c1, r0 * Wo, r1 * Wo)
                sched.dma_rows("LOAD", "B", rbase, taddr(res) + c0 // B * out_plane
                               + r0 * Wo * B, nco // B, tnr * Wo * B, out_plane)
            xw = [(sched.loaded(), 1)]
            obase = OUT.base[so]
            tpix = tnr * Wo                 # pixels per channel of the output tile

            def at(base, ch, pix, npix):
                return _at(base, ch, pix, npix, B)
            writers, seen = [], set()
            for core, eng, (ca, cb), (ra, rb) in tiling.plan_conv(cfg, nco, tnr, Wo, K, g,
                                                                  cout_g if g > 1 else nco,
                                                                  k=k, block=B):
                st, unit = f"core{core}", eng
                em.wait_all(st, unit, xw)
                em.wait(st, unit, wsem, 1)
                sched.wait_out_slot(st, unit, so, seen)
                lo, hi = (r0 + ra) * s - pad, (r0 + rb - 1) * s - pad + k
                aa, bb = max(lo, 0), min(hi, H)
                # a grouped conv: one GROUPS = 1 instruction per group (the blocked units have
                # no group increments), its input channels the group's blocks
                parts = [(ca, cb, 0)] if g == 1 else \
                    [(q, q + cout_g, (c0 + q) // cout_g * cin_g) for q in range(ca, cb, cout_g)]
                for qa, qb, ci0 in parts:
                    em.setr(st, unit, **dict(regs, XSTRIDE=rows * W * B, OSTRIDE=tpix * B,
                                             RSTRIDE=tpix * B,
                                             RES_ADDR=at(rbase, qa, ra * Wo, tpix) if res
                                             else -1))
                    em.emit(st, "CONV_MAT" if eng == "MAT" else "CONV_RDF",
                            x_addr=at(bbase, ci0, (aa - a) * W, rows * W),
                            w_addr=wbase + wl.offset(eng, qa, nco),
                            p_addr=pbase + qa * PARAM_RECORD,
                            o_addr=at(obase, qa, ra * Wo, tpix), nco=qb - qa, hin=bb - aa,
                            ho=rb - ra, pad_t=aa - lo, pad_b=hi - bb, obuf=BUFS["OUT"])
                writers.append((st, unit))
            chunk_done.append(sched.finish_rows(
                sync=sync, resid=ctx.res, name=n.output, rout=None, slot_b=sb, slot_o=so,
                writers=writers, obase=obase,
                dram=lambda c0=c0, r0=r0: taddr(n.output) + c0 // B * out_plane + r0 * Wo * B,
                channels=nco // B, row_bytes=tpix * B, plane_bytes=out_plane,
                c0=c0, c1=c1, r0=r0, r1=r1, wo=Wo))
        C.busy[sc] = chunk_done


def emit_depthwise_blocked(ctx: Context, n: Node, info):
    """Emit depthwise node ``n`` (channels a multiple of ``B``, checked by the caller) with
    ``BLOCK = ctx.block``: :mod:`.depthwise`'s tiles, blocked."""
    cfg, p, em = ctx.cfg, ctx.prog, ctx.em
    sched, sync = ctx.sched, ctx.sched.sync
    Bs, C, OUT = sched.B, sched.C, sched.O
    b = ctx.block
    B = 1 << b
    taddr = ctx.layout.addr
    xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
    Cn, H, W = xt.shape
    _, Ho, Wo = yt.shape
    k, s, pad = (int(n.attrs[a]) for a in ("kernel", "stride", "padding"))
    e = n.epilogue
    res = e.residual
    if Cn % B:
        raise CompileError(f"{n.name}: the blocked depthwise needs channels in multiples of B")
    waddr, paddr, regs = dw_layer(ctx, n)
    regs["BLOCK"] = b
    chunk, nr = _dw_tiles(ctx, n, False, block=B)
    plane, out_plane = H * W * B, Ho * Wo * B
    for c0, c1 in tiling.ranges(Cn, chunk):
        nch = c1 - c0
        sc, wsem, wbase, pbase = load_dw_chunk(ctx, waddr, paddr, c0, c1, chunk, k)
        chunk_done = []
        for r0, r1 in tiling.ranges(Ho, nr):
            tnr = r1 - r0
            info["tiles"] += 1
            a, bb_ = max(r0 * s - pad, 0), min((r1 - 1) * s - pad + k, H)
            rows = bb_ - a
            so = OUT.next()
            sb = Bs.next()
            sched.begin_tile(sb)
            sync.wait_stored(n.inputs[0], c0, c1, a * W, bb_ * W)
            bbase = Bs.base[sb]
            sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]) + c0 // B * plane
                           + a * W * B, nch // B, rows * W * B, plane)
            rbase = bbase + nch * rows * W
            if res:
                sync.wait_stored(res, c0, c1, r0 * Wo, r1 * Wo)
                sched.dma_rows("LOAD", "B", rbase, taddr(res) + c0 // B * out_plane
                               + r0 * Wo * B, nch // B, tnr * Wo * B, out_plane)
            xw = [(sched.loaded(), 1)]
            obase = OUT.base[so]
            tpix = tnr * Wo
            dw_cs, dw_rs = tiling.best_dw_split(cfg, nch=nch, nrows=tnr, wo=Wo, k=k, block=B)
            writers, seen, core = [], set(), 0
            for ca, cb in dw_cs:
                for ra, rb in dw_rs:
                    st = f"core{core}"
                    core += 1
                    em.wait_all(st, "RMAC", xw)
                    em.wait(st, "RMAC", wsem, 1)
                    sched.wait_out_slot(st, "RMAC", so, seen)
                    lo, hi = (r0 + ra) * s - pad, (r0 + rb - 1) * s - pad + k
                    aa, bb = max(lo, 0), min(hi, H)
                    em.setr(st, "RMAC", **dict(regs, CIN=1, GROUPS=cb - ca,
                                               XSTRIDE=rows * W * B, OSTRIDE=tpix * B,
                                               RSTRIDE=tpix * B,
                                               RES_ADDR=_at(rbase, ca, ra * Wo, tpix, B)
                                               if res else -1))
                    em.emit(st, "DW_RSA", x_addr=_at(bbase, ca, (aa - a) * W, rows * W, B),
                            w_addr=wbase + ca * k * k, p_addr=pbase + ca * PARAM_RECORD,
                            o_addr=_at(obase, ca, ra * Wo, tpix, B), nco=cb - ca,
                            hin=bb - aa, ho=rb - ra, pad_t=aa - lo, pad_b=hi - bb,
                            obuf=BUFS["OUT"])
                    writers.append((st, "RMAC"))
            chunk_done.append(sched.finish_rows(
                sync=sync, resid=ctx.res, name=n.output, rout=None, slot_b=sb, slot_o=so,
                writers=writers, obase=obase,
                dram=lambda c0=c0, r0=r0: taddr(n.output) + c0 // B * out_plane + r0 * Wo * B,
                channels=nch // B, row_bytes=tpix * B, plane_bytes=out_plane,
                c0=c0, c1=c1, r0=r0, r1=r1, wo=Wo))
        C.busy[sc] = chunk_done
