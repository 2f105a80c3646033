"""Emission of a ReLU linear attention (the Softmax-free EfficientViT's context module) on the
intra-layer pipeline of a core: per head, the R-MAC forms KV = ReLU(K)^T V (ATT_KV_RDF) and
the adder tree the row sums of ReLU(K) (ATT_KSUM) into the auxiliary buffer, the MAT computes
the log2 divisors (ATT_DIV) and the output (ATT_OUT). Heads go round-robin over the cores, in
groups that fit a B slot (:func:`~sim.compile.tiling.attention_plan`); each head's K sits in
its core's buffer A when it fits (Q and V in B), alternating halves of the auxiliary buffer.
S lies in AUX in T x S tiles (docs/isa.md "S in AUX"); an R-MAC whose requant lanes R do not
divide S cannot write them (``sim.isa.att_kv_fits``), so on such a config step i runs on the
MAT (``ATT_KV_MAT``, K in B) before the head's ATT_DIV and ATT_OUT.

A head group whose q|k|v channels are a tensor resident in a B slot (:mod:`sim.compile.attctx`:
the context module's qkv or aggregation output) is read there, K included, instead of being
loaded; the output goes to a B slot instead of OUT when the plan keeps it for proj."""

from __future__ import annotations

from ...intprogram import Node
from ...isa import BUFS, att_kv_fits, att_s_bytes
from .. import tiling
from ..common import PARAM_RECORD
from ..context import Context
from ..records import attention_block

__all__ = ["emit_attention"]


def _sources(ctx: Context, n: Node, groups, d, ntok):
    """Per head group, ``(tensor, record, B address of its first head's q|k|v)`` when its
    channels lie in one tensor resident in a B slot (the input or a concat slice of it), else
    ``None`` (loaded from DRAM)."""
    base, off = ctx.layout.base_of(n.inputs[0])
    out = []
    for h0, h1 in groups:
        c0, c1 = off + h0 * 3 * d, off + h1 * 3 * d
        src = None
        for t, r in ctx.res.resident.items():
            tb, to = ctx.layout.base_of(t)
            if tb == base and to <= c0 and c1 <= to + ctx.prog.tensors[t].shape[0]:
                src = (t, r, r["base"] + (c0 - to) * ntok)
                break
        out.append(src)
    return out


def _resident_parts(ctx: Context, n: Node):
    """The resident tensors that hold channels of the attention's input."""
    base, off = ctx.layout.base_of(n.inputs[0])
    cx = ctx.prog.tensors[n.inputs[0]].shape[0]
    out = []
    for t in ctx.res.resident:
        tb, to = ctx.layout.base_of(t)
        if tb == base and to < off + cx and off < to + ctx.prog.tensors[t].shape[0]:
            out.append(t)
    return out


def emit_attention(ctx: Context, n: Node, info):
    cfg, p, em, sched = ctx.cfg, ctx.prog, ctx.em, ctx.sched
    B, C, OUT = sched.B, sched.C, sched.O
    xt = p.tensors[n.inputs[0]]
    d = int(n.attrs["dim"])
    Cx, H, W = xt.shape
    heads = Cx // (3 * d)
    ntok = H * W
    paddr = ctx.image.alloc(f"param:{n.name}", heads * PARAM_RECORD, "param",
                            attention_block(n))
    per_head = 3 * d * ntok
    dn = d * ntok
    stay = n.output in ctx.res.keep and heads * dn <= B.size
    hpt, a_step, a_slots = tiling.attention_plan(cfg, n.name, heads=heads, d=d, ntok=ntok,
                                                 b_slot=B.size,
                                                 o_slot=B.size if stay else OUT.size)
    hpt = min(hpt, ctx.attn_hpt.get(n.name, hpt))
    groups = tiling.ranges(heads, hpt)
    # inputs resident in B (each taken once, released after the last group); a group that
    # is not inside one of them but overlaps one would read DRAM never written: then every
    # resident part of the input is stored first and all groups load
    srcs = _sources(ctx, n, groups, d, ntok)
    if any(s is None for s in srcs) and _resident_parts(ctx, n):
        for t in _resident_parts(ctx, n):
            ctx.res.spill(t)
        srcs = [None] * len(groups)
    taken = {}
    for src in srcs:
        if src is not None and src[0] not in taken:
            taken[src[0]] = ctx.res.take(src[0])
    rout = None
    if stay:
        rout = ctx.res.new()
        info["on_chip"] = True
    else:
        ctx.res.keep.pop(n.output, None)
    sc = C.next()
    wsem = sched.load_weights(sc, [(paddr, heads * PARAM_RECORD, 0)])
    pbase = C.base[sc]
    chunk_done = []
    xaddr, yaddr = ctx.layout.addr(n.inputs[0]), ctx.layout.addr(n.output)
    regs = dict(DIM=d, NTOK=ntok, XSIGNED=int(xt.signed), OBITS=8, OSIGNED=1, XSTRIDE=ntok)
    if ctx.block and ntok > 1:
        # blocked: a head's d channels are d / B whole blocks, so every DMA and head address is
        # the planar one (c * ntok for a block-aligned c); the units address inside the blocks
        regs.update(XSTRIDE=ntok << ctx.block, BLOCK=ctx.block)
    elif ctx.block:
        regs["BLOCK"] = 0
    aux_i = {}
    # step i on the R-MAC unless its requant lanes cannot write S's tile rows (then on the MAT,
    # which reads K from B: buffer A feeds only the R-MAC and the adder tree)
    kv_mat = not att_kv_fits(cfg.S, cfg.requant_lanes("RMAC"))
    kvu, kv_op = ("MAT", "ATT_KV_MAT") if kv_mat else ("RMAC", "ATT_KV_RDF")
    for (h0, h1), src in zip(groups, srcs):
        nh = h1 - h0
        info["tiles"] += 1
        so = OUT.next() if rout is None else None
        # K of each head goes into its core's buffer A after the group's Q and V (the MAT
        # needs only Q and V; K first was measured no better); a slot is reused once KV and
        # KSUM of its last head read it. A group read from a resident tensor has K in B.
        # (blocked: K in B too; buffer A's port reads a line of consecutive bytes, and the
        # blocked K has its tokens 2**b apart)
        use_a = bool(a_slots) and src is None and not kv_mat and not ctx.block
        kbuf = BUFS["A"] if use_a else BUFS["B"]
        kload, nth = {}, {}
        for h in range(h0, h1) if use_a else ():
            st = f"core{h % cfg.L}"
            nth[st] = nth.get(st, -1) + 1
            kload[h] = [(aux_i.get(st, 0) + nth[st]) % a_slots, None, em.sem()]

        def load_k(h):
            c = h % cfg.L
            slot, _, af = kload[h]
            free = ctx.a_free.get((f"core{c}", slot))
            if free is not None:
                em.wait("global", "LD", free, 2)
            em.emit("global", "LOAD", buf=BUFS["A"], buf_addr=slot * a_step, core=c,
                    dram_addr=xaddr + h * per_head + dn, count=1, length=dn, stride=0)
            kload[h][1] = sched.loaded()
            ctx.a_free[(f"core{c}", slot)] = af

        if src is not None:
            sb = src[1]["slot"]
            xw = list(src[1]["events"])
            qv = [(src[2] + j * per_head, src[2] + j * per_head + 2 * dn) for j in range(nh)]
        else:
            sb = B.next()
            sched.begin_tile(sb)
            sched.sync.wait_stored(n.inputs[0], h0 * 3 * d, h1 * 3 * d, 0, H * W)
            bbase = B.base[sb]
            hx = xaddr + h0 * per_head
            if use_a:
                # Q of the group's heads, then their V, into B
                sched.dma_rows("LOAD", "B", bbase, hx, nh, dn, per_head)
                sched.dma_rows("LOAD", "B", bbase + nh * dn, hx + 2 * dn, nh, dn, per_head)
                qv = [(bbase + j * dn, bbase + (nh + j) * dn) for j in range(nh)]
            else:
                sched.dma_rows("LOAD", "B", bbase, hx, 1, nh * per_head, 0)
                qv = [(bbase + j * per_head, bbase + j * per_head + 2 * dn)
                      for j in range(nh)]
            xw = [(sched.loaded(), 1)]
            for h in kload:
                load_k(h)
        if rout is None:
            obase, obuf = OUT.base[so], BUFS["OUT"]
        else:
            obase, obuf = rout["base"] + h0 * dn, BUFS["B"]
        writers, seen = [], set()
        for j, h in enumerate(range(h0, h1)):
            c = h % cfg.L
            st = f"core{c}"
            qa, va = qv[j]
            i = aux_i.get(st, 0)
            aux_i[st] = i + 1
            # S in T x S tiles from a line boundary, then ksum8 (docs/isa.md "S in AUX")
            kv_at = (i % 2) * tiling.att_aux_half(cfg, d)
            ks_at = kv_at + att_s_bytes(d, cfg.S, cfg.T)
            kv, ks = em.sem(), em.sem()
            if h in kload:
                slot, ksem, af = kload[h]
                ka = slot * a_step
            else:
                ka, ksem = qa + dn, None
            prev = ctx.aux_free.get((st, i % 2))   # ATT_OUT of two heads ago read this half
            for u in ("AUX", "MAT") if kv_mat else ("RMAC", "AUX", "MAT"):
                # MAT: Q (B); R-MAC: K (A or B) and V (B); adder tree: K
                if u != "AUX" or ksem is None:
                    em.wait_all(st, u, xw)
                if ksem is not None and u != "MAT":
                    em.wait(st, u, ksem, 1)
                em.wait(st, u, wsem, 1)
                if prev is not None and u != "MAT":
                    em.wait(st, u, prev, 1)
                em.setr(st, u, **dict(regs, XBUF=BUFS["B"] if u == "MAT" else kbuf))
            tile = dict(p_addr=pbase + h * PARAM_RECORD, nco=d, hin=1, ho=1, pad_t=0,
                        pad_b=0)
            em.emit(st, kv_op, **dict(tile, x_addr=ka, w_addr=va, o_addr=kv_at,
                                      obuf=BUFS["AUX"]))
            em.signal(st, kvu, kv)
            em.emit(st, "ATT_KSUM", **dict(tile, x_addr=ka, w_addr=0, o_addr=ks_at,
                                           obuf=BUFS["AUX"]))
            em.signal(st, "AUX", ks)
            if h in kload:
                em.signal(st, "RMAC", af)
                em.signal(st, "AUX", af)
            em.wait(st, "MAT", ks, 1)
            em.emit(st, "ATT_DIV", **dict(tile, x_addr=qa, w_addr=ks_at, o_addr=0,
                                          obuf=BUFS["DIV"]))
            em.wait(st, "MAT", kv, 1)
            if rout is None:
                sched.wait_out_slot(st, "MAT", so, seen)
            elif (st, "MAT") not in seen:
                seen.add((st, "MAT"))
                em.wait_all(st, "MAT", rout["busy"])
            em.emit(st, "ATT_OUT", **dict(tile, x_addr=qa, w_addr=kv_at,
                                          o_addr=obase + j * dn, obuf=obuf))
            hd = em.sem()
            em.signal(st, "MAT", hd)
            ctx.aux_free[(st, i % 2)] = hd
            writers.append((st, "MAT"))
        if rout is not None:
            done = sched.finish_resident(sb, writers)
            rout["events"].append((done, len(writers)))
            if ctx.res.keep.get(n.output):
                ctx.res.store(n.output, rout, h0 * d, h1 * d, done, len(writers))
        else:
            done, stored = sched.finish_tile(
                sb, so, writers,
                lambda: sched.dma_rows("STORE", "OUT", obase, yaddr + h0 * dn, 1, nh * dn, 0))
            sched.sync.record_store(n.output, h0 * d, h1 * d, 0, H * W, stored)
        chunk_done.append((done, len(writers)))
    C.busy[sc] = chunk_done
    for r in taken.values():
        ctx.res.release(r)
    if rout is not None:
        ctx.res.resident[n.output] = rout
