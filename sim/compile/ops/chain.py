"""Emission of a fused chain ``[PW1?, DW, PW2]`` (:func:`sim.compile.fusion.find_chains`): the
paper's inter-layer pipeline. All the chain's weights sit in one C slot; each row tile loads
the chain's input rows (with the halo the DW needs), runs the first pointwise conv on the MAT
(into B), the depthwise conv on the R-MAC (into B) and the second pointwise conv on both
engines (into OUT), and stores only the chain's output.

Software pipeline: the DW + second PW of tile t (:func:`_back`) are emitted after the load and
first PW of tile t+1 (:func:`_front`), also across consecutive chains, through the scheduler's
deferred emission (:meth:`sim.compile.schedule.DramSync.defer`), so each unit's queue holds
independent work while the R-MAC runs the depthwise conv."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...intprogram import Node
from ...isa import ACTS, BUFS
from .. import tiling
from ..common import PARAM_RECORD, align, split
from ..context import Context
from ..cost import dw_cycles
from ..records import ConvWeightLayout, dw_weights, param_block

__all__ = ["HALO_VIA_DRAM", "emit_chain", "emit_pw", "epi_regs"]

#: a fused chain's first-PW rows shared by two row tiles go through a DRAM scratch block
#: (stored after the first tile's PW, loaded by the next) instead of being computed twice.
#: Off by default (decision, docs/perf.md "Pointwise chains of stages 0-2"): it takes one
#: STORE and one LOAD per expansion channel and tile boundary (a DMA chunk is contiguous on
#: the buffer side), which `sim.timing.SYSTEM` charges little (B1-R224 on zcu102 +1.5 % FPS)
#: and the AXI-level model of the DMA the RTL has charges per descriptor (-6 %: 453,371 ->
#: 481,376 cycles with `sim.timing.axi_system(4)`); a buffer-side stride in the LD/ST
#: descriptors would make it one descriptor each way
HALO_VIA_DRAM = False


def epi_regs(ctx: Context, n):
    """The epilogue registers (activation, output format, residual signedness) of ``n``."""
    e, yt = n.epilogue, ctx.prog.tensors[n.output]
    res = e.residual
    return dict(ACT=ACTS[e.act], OBITS=yt.bits, OSIGNED=int(yt.signed), MIDBITS=e.mid_bits,
                THREE=e.three, XSIGNED=int(ctx.prog.tensors[n.inputs[0]].signed),
                RSIGNED=int(ctx.prog.tensors[res].signed) if res else 1)


def at(ctx: Context, base, c, p, npix):
    """Address of channel ``c`` (block-aligned when blocked), pixel ``p`` of a tile of ``npix``
    pixels per channel at ``base`` in the compilation's layout (``ctx.block``: planar
    ``base + c * npix + p``, or blocked, :func:`sim.compile.layout.act_offset`)."""
    B = 1 << ctx.block
    return base + (c // B) * npix * B + p * B + c % B


def emit_pw(ctx: Context, tasks, *, waits, xbase, xstride, obase, ostride, obuf, wbase, pbase,
            cout, cin_g, cout_g, g, regs, res_base=None, rstride=0, slot_o=None, seen=None):
    """Emit a pointwise phase whose tasks (:func:`~sim.compile.tiling.plan_conv` over flattened
    pixels) split pixels and output channels of a conv of ``cout`` filters whose pre-tiled
    weights (one chunk) are at ``wbase``; returns the writers ``[(stream, unit)]``. The strides
    are pixels per channel of the tiles; blocked (``ctx.block``) the registers say the stride
    of a block of B channels and a grouped conv runs group by group (``GROUPS = 1``)."""
    em, writers = ctx.em, []
    B = 1 << ctx.block
    wl = ConvWeightLayout(ctx.cfg, cin_g, 1, cout_g, g > 1)
    blk = dict(BLOCK=ctx.block) if ctx.block else {}
    for core, eng, (ca, cb), (pa, pb) in tasks:
        st, unit = f"core{core}", eng
        em.wait_all(st, unit, waits)
        if slot_o is not None:
            ctx.sched.wait_out_slot(st, unit, slot_o, seen)
        if g > 1 and ctx.block:
            parts = [(q, q + cout_g, q // cout_g * cin_g, 1) for q in range(ca, cb, cout_g)]
        else:
            parts = [(ca, cb, ca // cout_g * cin_g if g > 1 else 0,
                      (cb - ca) // cout_g if g > 1 else 1)]
        for qa, qb, ci0, ngr in parts:
            em.setr(st, unit, **dict(regs, CIN=cin_g, GROUPS=ngr, WIN=1, WOUT=1, KERNEL=1,
                                     STRIDE=1, PAD_L=0, PAD_R=0, XSTRIDE=xstride * B,
                                     OSTRIDE=ostride * B, RSTRIDE=rstride * B, LINEAR=0,
                                     NOEPI=0, XBUF=BUFS["B"],
                                     RES_ADDR=at(ctx, res_base, qa, pa, rstride)
                                     if res_base is not None else -1, **blk))
            em.emit(st, "CONV_MAT" if eng == "MAT" else "CONV_RDF",
                    x_addr=at(ctx, xbase, ci0, pa, xstride),
                    w_addr=wbase + wl.offset(unit, qa, cout),
                    p_addr=pbase + qa * PARAM_RECORD, o_addr=at(ctx, obase, qa, pa, ostride),
                    nco=qb - qa, hin=pb - pa, ho=pb - pa, pad_t=0, pad_b=0, obuf=obuf)
        writers.append((st, unit))
    return writers


@dataclass
class _Chain:
    """A fused chain's nodes and shapes, the IntProgram index of each node (for the tags) and,
    once loaded, where its weights sit in the C slot (``cb0`` + ``woff[name]`` /
    ``woff[name + ".p"]``) and the event that says they are there (``wsem``)."""
    pn: Node | None         #: first pointwise conv (None: the chain starts at the DW)
    dw: Node
    q: Node                 #: second pointwise conv
    li: dict
    E: int                  #: DW channels, input H x W, output Ho x Wo
    H: int
    W: int
    Ho: int
    Wo: int
    k: int
    s: int
    pad: int
    Cq: int                 #: output channels
    gq: int                 #: groups of the second PW
    res: str | None         #: residual of the second PW
    xin: str                #: the chain's input tensor
    Cx: int                 #: its channels
    Cxb: int = 0            #: its channels in B and DRAM (blocked: padded to whole blocks)
    cb0: int = 0
    woff: dict = None
    wsem: int = -1

    @property
    def res_in_e(self) -> bool:
        """The second PW's residual is the first PW's output (the DSConv after the unfolded
        stem, :func:`sim.compile.fusion.find_chains`): its rows are in the tile's ``e`` region
        (stride-1 DW, as many channels), so the tile needs no residual region."""
        return (self.pn is not None and self.res == self.dw.inputs[0] and self.s == 1
                and self.Cq == self.E)


def _chain(prog, chain, li0, block=1) -> _Chain:
    pn = chain[0] if len(chain) == 3 else None
    dw, q = chain[-2], chain[-1]
    li = {m.name: li0 + i for i, m in enumerate(prog.nodes[li0:]) if m in chain}
    E, H, W = prog.tensors[dw.inputs[0]].shape
    _, Ho, Wo = prog.tensors[dw.output].shape
    k, s, pad = (int(dw.attrs[a]) for a in ("kernel", "stride", "padding"))
    xin = pn.inputs[0] if pn else dw.inputs[0]
    cx = prog.tensors[xin].shape[0]
    # (blocked: only the network input may have channels that are not whole blocks, e.g. the
    # unfolded stem's 27: padded to whole blocks in DRAM and in the tile, lanes >= CIN unread)
    return _Chain(pn, dw, q, li, E, H, W, Ho, Wo, k, s, pad, prog.tensors[q.output].shape[0],
                  int(q.attrs["groups"]), q.epilogue.residual, xin, cx,
                  -(-cx // block) * block)


def _load_chain_weights(ctx: Context, chain, ch: _Chain):
    """Allocate the chain's weights and records in DRAM and load them all into one C slot."""
    blocks, woff = [], {}
    off = 0
    for m in chain:
        w = np.asarray(m.params["weight"], dtype=np.int8)
        cout = w.shape[0]
        if m is ch.dw:          # pre-tiled (sim.isa): [channel block of N][tap][N]
            w = dw_weights(w, ctx.cfg.N)
        else:                   # one chunk of the conv's pre-tiled weights
            g = int(m.attrs.get("groups", 1))
            w = ConvWeightLayout(ctx.cfg, w.shape[1], 1, cout // g, g > 1).pack(w)
        wa = ctx.image.alloc(f"weight:{m.name}", w.size, "weight", w, layout="tiled")
        pa = ctx.image.alloc(f"param:{m.name}", cout * PARAM_RECORD, "param",
                             param_block(m, cout))
        blocks.append((wa, w.size, off))
        woff[m.name] = off
        off += align(w.size)
        blocks.append((pa, cout * PARAM_RECORD, off))
        woff[m.name + ".p"] = off
        off += align(cout * PARAM_RECORD)
    ctx.em.layer = ch.li[chain[0].name]
    sc = ctx.sched.C.next()
    ch.wsem = ctx.sched.load_weights(sc, blocks)
    ch.cb0, ch.woff = ctx.sched.C.base[sc], woff
    return sc


def _regions(ch: _Chain, rows_in, rows_out):
    return tiling.chain_tile_regions(cx=ch.Cxb, e=ch.E, cq=ch.Cq, rows_in=rows_in, w=ch.W,
                                     rows_out=rows_out, wo=ch.Wo, first_pw=ch.pn is not None,
                                     residual=ch.res is not None and not ch.res_in_e)


def emit_chain(ctx: Context, chain, li0, info):
    """Emit ``chain`` (its first node is node ``li0``); the last tile's second half stays
    deferred (the next emission, or the end of the program, flushes it)."""
    sched = ctx.sched
    ch = _chain(ctx.prog, chain, li0, 1 << ctx.block)
    sc = _load_chain_weights(ctx, chain, ch)

    def need(nr):
        rin = min(ch.H, (nr - 1) * ch.s + ch.k)
        return _regions(ch, rin, nr)["end"] <= sched.B.size and \
            ch.Cq * nr * ch.Wo <= sched.O.size and nr * ch.Wo < 4096 and rin * ch.W < 4096
    nr = tiling.fused_tile_rows(ch.dw.name, ho=ch.Ho, stride=ch.s, first_pw=ch.pn is not None,
                                need=need)
    chunk_done = []
    sched.C.busy[sc] = chunk_done
    qb, qoff = ctx.layout.base_of(ch.q.output)
    tiles = tiling.ranges(ch.Ho, nr)
    halo = None
    for i, (r0, r1) in enumerate(tiles):
        front = _front(ctx, ch, r0, r1, info, halo_in=halo,
                       halo_next=tiles[i + 1] if HALO_VIA_DRAM and i + 1 < len(tiles) else None)
        halo = front.get("halo_out")
        # without a first PW, the R-MAC runs the next tile's DW while the MAT still works on
        # this tile's second PW: the split gives the MAT correspondingly more of it
        front["rmac_next"] = (_dw_time(ctx, ch, *tiles[i + 1])
                              if ch.pn is None and i + 1 < len(tiles) else 0)
        sched.sync.flush()
        sched.sync.defer(lambda front=front: chunk_done.append(_back(ctx, ch, front)),
                         (qb, qoff, qoff + ch.Cq, r0 * ch.Wo, r1 * ch.Wo))


def _dw_time(ctx: Context, ch: _Chain, r0, r1):
    """The R-MAC cycles of the DW of output rows ``[r0, r1)``: its slowest core with the
    instruction's fixed cycles (:func:`sim.compile.tiling.dw_piece_times`)."""
    return tiling.dw_piece_times(ctx.cfg, [(r0, r1)], nch=ch.E, wo=ch.Wo, k=ch.k,
                                 block=1 << ctx.block)[0]


def _front(ctx: Context, ch: _Chain, r0, r1, info, *, halo_in=None, halo_next=None):
    """LD of a fused tile and its first pointwise conv (on the MAT engines only, so that
    it overlaps the R-MAC's depthwise conv of the previous tile).

    Halo rows (:data:`HALO_VIA_DRAM`, chains with a first PW): the first PW's output rows this
    tile shares with the next one (``halo_next``: its output rows) are stored from the B slot
    to a DRAM scratch block after the first PW (``halo_out`` in the result), and the next tile
    (``halo_in``: that record) loads them into its expansion region instead of computing them
    again; its depthwise conv waits for that load."""
    cfg, em, sched = ctx.cfg, ctx.em, ctx.sched
    pn, H, W, Wo, k, s = ch.pn, ch.H, ch.W, ch.Wo, ch.k, ch.s
    tnr = r1 - r0
    info["tiles"] += 1
    a, b = max(r0 * s - ch.pad, 0), min((r1 - 1) * s - ch.pad + k, H)
    rin = b - a
    sb, so = sched.B.next(), sched.O.next()
    em.layer = ch.li[(pn if pn is not None else ch.dw).name]
    sched.begin_tile(sb)
    xb = sched.B.base[sb]
    reg = _regions(ch, rin, tnr)
    eb, db, rb_ = xb + reg["e"], xb + reg["d"], xb + reg["r"]
    Bk = 1 << ctx.block         # (blocked: rows of B-channel blocks, chunks per block)
    sched.sync.wait_stored(ch.xin, 0, ch.Cx, a * W, b * W)
    sched.dma_rows("LOAD", "B", xb if pn else eb, ctx.layout.addr(ch.xin) + a * W * Bk,
                   ch.Cxb // Bk, rin * W * Bk, H * W * Bk)
    rres, rstride = rb_, tnr * Wo
    if ch.res and ch.res == ch.xin and s == 1 and ch.Cq == ch.Cx:
        # the residual is the chain's own input (MBConv / DSConv shortcut): its rows are
        # already in the B tile, read them from there instead of loading them again
        rres, rstride = (xb if pn else eb) + (r0 - a) * W * Bk, rin * W
    elif ch.res_in_e:
        # the residual is the first PW's output (the DSConv after the unfolded stem): the
        # rows r0..r1 of the e region, which the first PW below writes for rows a..b
        rres, rstride = eb + (r0 - a) * W * Bk, rin * W
    elif ch.res:
        sched.sync.wait_stored(ch.res, 0, ch.Cq, r0 * Wo, r1 * Wo)
        sched.dma_rows("LOAD", "B", rb_, ctx.layout.addr(ch.res) + r0 * Wo * Bk,
                       ch.Cq // Bk, tnr * Wo * Bk, ch.Ho * Wo * Bk)
    xsem = sched.loaded()
    waits = [(xsem, 1), (ch.wsem, 1)]
    extra = {}
    if pn:
        em.layer = ch.li[pn.name]
        E = ch.E
        # the R-MAC will also run the previous tile's DW conv in this time: give the MAT
        # correspondingly more of this pointwise conv
        dwc = min(max(dw_cycles(cfg, nch=c1 - c0, ho=q1 - q0, wo=Wo, k=k)
                      for c0, c1 in split(E, lc, cfg.N)
                      for q0, q1 in split(tnr, cfg.L // lc))
                  for lc in (1, 2, 4, 8, 16, cfg.L) if lc <= cfg.L)
        h = halo_in["rows"] if halo_in is not None else 0    # rows loaded, not computed
        tasks = tiling.plan_conv(cfg, E, (rin - h) * W, 1, ch.Cx, 1, E, bias=(0, dwc),
                                 block=1 << ctx.block)
        tasks = [(c, e, co, (pa + h * W, pb + h * W)) for c, e, co, (pa, pb) in tasks]
        wr = emit_pw(ctx, tasks, waits=waits, xbase=xb, xstride=rin * W, obase=eb,
                     ostride=rin * W, obuf=BUFS["B"], wbase=ch.cb0 + ch.woff[pn.name],
                     pbase=ch.cb0 + ch.woff[pn.name + ".p"], cout=E, cin_g=ch.Cx, cout_g=E,
                     g=1, regs=epi_regs(ctx, pn))
        esem = em.sem()
        for st, u in wr:
            em.signal(st, u, esem)
        waits = [(xsem, 1), (ch.wsem, 1), (esem, len(wr))]
        if halo_in is not None:
            waits.append((_load_halo(ctx, ch, halo_in, eb, rin), 1))
        if halo_next is not None:
            an = max(halo_next[0] * s - ch.pad, 0)
            hn = b - an                       # rows [an, b) of this tile's expansion
            if 0 < hn < min((halo_next[1] - 1) * s - ch.pad + k, H) - an:
                out = _store_halo(ctx, ch, eb + (an - a) * W * Bk, rin, hn, esem, len(wr),
                                  sb)
                out["rows"] = hn
                extra = {"halo_out": out}
    return dict(r0=r0, r1=r1, a=a, rin=rin, sb=sb, so=so, eb=eb, db=db, rb=rres,
                rstride=rstride, waits=waits, **extra)


def _store_halo(ctx: Context, ch: _Chain, src, rin, h, esem, nwr, sb):
    """STORE ``h`` rows of each expansion channel (block) from ``src`` in B slot ``sb``
    (channel stride ``rin`` rows) to a new DRAM scratch block, after the first PW's
    ``nwr`` writers signal ``esem``; one DMA per channel (block): the buffer side of a DMA
    chunk is contiguous. Returns the record :func:`_load_halo` reads."""
    em, sched = ctx.em, ctx.sched
    Bk = 1 << ctx.block
    run = h * ch.W * Bk
    dram = ctx.image.alloc(f"halo:{ch.dw.name}:{len(ctx.image.symbols)}", ch.E * h * ch.W,
                           "scratch")
    em.wait("global", "ST", esem, nwr)
    for j in range(ch.E // Bk):
        sched.dma_rows("STORE", "B", src + j * rin * ch.W * Bk, dram + j * run, 1, run, run)
    st = em.sem()
    em.signal("global", "ST", st)
    sched.B.busy[sb].append((st, 1))
    return {"dram": dram, "sem": st}


def _load_halo(ctx: Context, ch: _Chain, halo, eb, rin):
    """LOAD the halo rows :func:`_store_halo` wrote into the first rows of the expansion
    region at ``eb`` (channel stride ``rin`` rows); returns the event of the load."""
    em, sched = ctx.em, ctx.sched
    Bk = 1 << ctx.block
    run = halo["rows"] * ch.W * Bk
    em.wait("global", "LD", halo["sem"], 1)
    for j in range(ch.E // Bk):
        sched.dma_rows("LOAD", "B", eb + j * rin * ch.W * Bk, halo["dram"] + j * run, 1, run,
                       run)
    return sched.loaded()


def _back(ctx: Context, ch: _Chain, t):
    """Depthwise conv (R-MAC) and second pointwise conv (both engines) of a fused tile;
    returns its (done event, writers)."""
    cfg, em, sched = ctx.cfg, ctx.em, ctx.sched
    dw, q, E, H, W, Wo, k, s, pad = ch.dw, ch.q, ch.E, ch.H, ch.W, ch.Wo, ch.k, ch.s, ch.pad
    cb0, woff = ch.cb0, ch.woff
    r0, r1, a, rin, eb, db = t["r0"], t["r1"], t["a"], t["rin"], t["eb"], t["db"]
    tnr = r1 - r0
    em.layer = ch.li[dw.name]
    Bk = 1 << ctx.block
    dw_cs, dw_rs = tiling.best_dw_split(cfg, nch=E, nrows=tnr, wo=Wo, k=k, block=Bk)
    wr, core = [], 0
    dregs = dict(epi_regs(ctx, dw), WIN=W, WOUT=Wo, KERNEL=k, STRIDE=s, PAD_L=pad,
                 PAD_R=pad, LINEAR=0, NOEPI=0, XBUF=BUFS["B"], CIN=1,
                 XSTRIDE=rin * W * Bk, OSTRIDE=tnr * Wo * Bk, RSTRIDE=0, RES_ADDR=-1,
                 **(dict(BLOCK=ctx.block) if ctx.block else {}))
    for c0, c1 in dw_cs:
        for q0, q1 in dw_rs:
            st = f"core{core}"
            core += 1
            em.wait_all(st, "RMAC", t["waits"])
            lo2, hi2 = (r0 + q0) * s - pad, (r0 + q1 - 1) * s - pad + k
            aa, bb2 = max(lo2, 0), min(hi2, H)
            em.setr(st, "RMAC", **dict(dregs, GROUPS=c1 - c0))
            em.emit(st, "DW_RSA", x_addr=at(ctx, eb, c0, (aa - a) * W, rin * W),
                    w_addr=cb0 + woff[dw.name] + c0 * k * k,
                    p_addr=cb0 + woff[dw.name + ".p"] + c0 * PARAM_RECORD,
                    o_addr=at(ctx, db, c0, q0 * Wo, tnr * Wo), nco=c1 - c0, hin=bb2 - aa,
                    ho=q1 - q0, pad_t=aa - lo2, pad_b=hi2 - bb2, obuf=BUFS["B"])
            wr.append((st, "RMAC"))
    dsem = em.sem()
    for st, u in wr:
        em.signal(st, u, dsem)
    em.layer = ch.li[q.name]
    cq_g, e_g = ch.Cq // ch.gq, E // ch.gq
    tasks = tiling.plan_conv(cfg, ch.Cq, tnr * Wo, 1, e_g, ch.gq, cq_g, block=Bk,
                             res=ch.res is not None, bias=(0, t.get("rmac_next", 0)))
    so = t["so"]
    writers = emit_pw(ctx, tasks, waits=[(dsem, len(wr))], xbase=db, xstride=tnr * Wo,
                      obase=sched.O.base[so], ostride=tnr * Wo, obuf=BUFS["OUT"],
                      wbase=cb0 + woff[q.name], pbase=cb0 + woff[q.name + ".p"],
                      cout=ch.Cq, cin_g=e_g, cout_g=cq_g, g=ch.gq, regs=epi_regs(ctx, q),
                      res_base=t["rb"] if ch.res else None, rstride=t["rstride"],
                      slot_o=so, seen=set())
    obase = sched.O.base[so]
    ydram = ctx.layout.addr(q.output) + r0 * Wo * Bk
    done, stored = sched.finish_tile(
        t["sb"], so, writers,
        lambda: sched.dma_rows("STORE", "OUT", obase, ydram, ch.Cq // Bk, tnr * Wo * Bk,
                               ch.Ho * Wo * Bk))
    sched.sync.record_store(q.output, 0, ch.Cq, r0 * Wo, r1 * Wo, stored)
    return (done, len(writers))
