"""Emission of a global average pool on the cores' AUX units (adder tree + requant): channel
chunks that fit a B slot, each split over the cores by channels; the input is read where a
conv left it resident in B (:func:`sim.compile.fusion.find_resident`) or loaded from DRAM."""

from __future__ import annotations

from ...intprogram import Node
from ...isa import ACTS, BUFS
from .. import tiling
from ..common import PARAM_RECORD, split
from ..context import Context
from ..records import param_block

__all__ = ["emit_pool"]


def emit_pool(ctx: Context, n: Node, info):
    cfg, p, em, sched = ctx.cfg, ctx.prog, ctx.em, ctx.sched
    B, C, OUT = sched.B, sched.C, sched.O
    xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
    Cn, H, W = xt.shape
    e = n.epilogue
    paddr = ctx.image.alloc(f"param:{n.name}", Cn * PARAM_RECORD, "param", param_block(n, Cn))
    hw = H * W
    # blocked (ctx.block = b): the channel chunks and the cores' channel ranges are whole
    # blocks, so a range's first channel sits at the planar address c * hw, and XSTRIDE is the
    # stride of a block of B channels (sim.isa.REG_LIMITS)
    Bk = 1 << ctx.block
    chunk = min(Cn, tiling.MAX_FIELD, B.size // hw, C.size // PARAM_RECORD, OUT.size)
    if Bk > 1 and hw > 1:
        chunk = max(Bk, chunk // Bk * Bk)
    else:
        Bk = 1
    regs = dict(NTOK=hw, ACT=ACTS[e.act], OBITS=yt.bits, OSIGNED=int(yt.signed),
                MIDBITS=e.mid_bits, THREE=e.three, XSIGNED=int(xt.signed), XBUF=BUFS["B"],
                XSTRIDE=hw * Bk, NOEPI=0, RES_ADDR=-1)
    if ctx.block:
        regs["BLOCK"] = Bk.bit_length() - 1
    # the input may be a conv's output resident in a B slot (sim.compile.fusion.find_resident:
    # the whole tensor as it lies in DRAM, channel-major planes of hw bytes or, blocked, blocks
    # of hw * B bytes; a chunk below starts on a block, c0 * hw, as its LOAD would put it):
    # read it there
    rin = ctx.res.take(n.inputs[0]) if n.inputs[0] in ctx.res.resident else None
    for c0, c1 in tiling.ranges(Cn, chunk):
        info["tiles"] += 1
        sc = C.next()
        wsem = sched.load_weights(sc, [(paddr + c0 * PARAM_RECORD, (c1 - c0) * PARAM_RECORD,
                                        0)])
        pbase = C.base[sc]
        so = OUT.next()
        if rin is None:
            sb = B.next()
            sched.begin_tile(sb)
            sched.sync.wait_stored(n.inputs[0], c0, c1, 0, H * W)
            bbase = B.base[sb]
            sched.dma_rows("LOAD", "B", bbase, ctx.layout.addr(n.inputs[0]) + c0 * hw, 1,
                           (c1 - c0) * hw, 0)
            xwait = [(sched.loaded(), 1)]
        else:
            sb, bbase, xwait = rin["slot"], rin["base"] + c0 * hw, rin["events"]
        obase = OUT.base[so]
        writers, seen = [], set()
        for core, (ca, cb) in enumerate(split(c1 - c0, cfg.L, Bk)):
            st = f"core{core}"
            em.wait_all(st, "AUX", xwait)
            em.wait(st, "AUX", wsem, 1)
            sched.wait_out_slot(st, "AUX", so, seen)
            em.setr(st, "AUX", **regs)
            em.emit(st, "POOL", x_addr=bbase + ca * hw, w_addr=0,
                    p_addr=pbase + ca * PARAM_RECORD, o_addr=obase + ca, nco=cb - ca, hin=1,
                    ho=1, pad_t=0, pad_b=0, obuf=BUFS["OUT"])
            writers.append((st, "AUX"))
        ydram = ctx.layout.addr(n.output) + c0
        done, stored = sched.finish_tile(
            sb, so, writers,
            lambda: sched.dma_rows("STORE", "OUT", obase, ydram, 1, c1 - c0, 0))
        sched.sync.record_store(n.output, c0, c1, 0, 1, stored)
        C.busy[sc] = [(done, len(writers))]
    if rin is not None:
        ctx.res.release(rin)
