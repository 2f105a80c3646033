"""The compiler's passes (sim.compile.*) each exercised alone on small hand-written programs:
layout and allocation, fusion, tiling plans, the scheduler's events and DMA, the emitter,
emission per op kind (run through sim.funcsim against sim.golden) and assembly. Expected
values are derived by hand in the tests or come from sim.golden."""

import itertools

import numpy as np
import pytest

from sim import golden
from sim.compile import CompileError, PARAM_RECORD, compile as compile_
from sim.compile import fusion, layout, records, tiling
from sim.compile.assemble import assemble
from sim.compile.common import ALIGN, DMA_MAX, split
from sim.compile.cost import conv_cycles, dw_cycles
from sim.compile.emitter import Emitter
from sim.compile.ops.attention import emit_attention
from sim.compile.ops.chain import emit_chain
from sim.compile.ops.conv import emit_conv
from sim.compile.ops.depthwise import emit_depthwise
from sim.compile.ops.host import emit_layernorm
from sim.compile.ops.pool import emit_pool
from sim.compile.pipeline import emit_program, emitter_for, new_context
from sim.compile.schedule import Slots
from sim.config import AccelConfig
from sim.funcsim import run
from sim.isa import BUFS, UNITS
from test_funcsim import Builder, case
from testprogs import assert_runs_like_golden

SMALL = AccelConfig.from_string("small")
TINYBUF = AccelConfig.from_string("small:buf_b_bytes=8192,buf_c_bytes=4096,buf_out_bytes=2048")


def _intervals_disjoint(iv):
    """True when no two half-open [a, b) intervals of ``iv`` overlap (sorted sweep)."""
    iv = sorted((a, b) for a, b in iv if b > a)
    return all(b0 <= a1 for (a0, b0), (a1, b1) in zip(iv, iv[1:]))


# -- layout and allocation ----------------------------------------------------------------------

def test_layout_places_tensors_apart_and_concat_inputs_as_slices():
    prog, _ = case("aggreg_concat")            # q and g are concatenated into c (96 + 96 ch)
    img = layout.DramImage()
    lay = layout.layout_tensors(prog, img)
    own = {n: s for n, s in img.symbols.items() if s["kind"] == "tensor"}
    # every tensor that is not a concat input has its own aligned block of C*H*W bytes
    assert sorted(own) == sorted(f"tensor:{t}" for t in prog.tensors if t not in ("q", "g"))
    for name, s in own.items():
        assert s["addr"] % ALIGN == 0
        assert s["nbytes"] == int(np.prod(prog.tensors[name[7:]].shape))
    assert _intervals_disjoint([(s["addr"], s["addr"] + s["nbytes"]) for s in own.values()])
    # q is channels 0..95 of c, g channels 96..191: c is (192, 5, 5)
    c = img.symbols["tensor:c"]["addr"]
    assert lay.addr("q") == c and lay.addr("g") == c + 96 * 25
    assert lay.base_of("g") == ("c", 96) and lay.base_of("x") == ("x", 0)


def test_concatenating_a_graph_input_is_refused():
    b = Builder()
    x = b.input("x", (8, 4, 4))
    y = b.conv("y", x, 8)
    b.concat("c", [x, y])
    with pytest.raises(CompileError, match="concatenated twice or is a graph input"):
        layout.layout_tensors(b.prog(), layout.DramImage())


def test_dram_image_blocks_hold_their_data_and_never_overlap():
    img = layout.DramImage()
    a = img.alloc("a", 5, "weight", np.arange(5, dtype=np.uint8))
    b = img.alloc("b", 8, "param", np.arange(2, dtype=np.int32))
    c = img.alloc("c", 3, "tensor")
    assert (a, b, c) == (0, 64, 128)           # each block starts on the next 64-byte line
    d = img.image()
    assert d.size == 192 and list(d[:5]) == [0, 1, 2, 3, 4]
    assert list(d[64:72]) == [0, 0, 0, 0, 1, 0, 0, 0]   # little-endian int32 0, 1


def test_param_block_fields():
    prog, _ = case("pointwise_residual")
    n = prog.nodes[1]                              # y = conv(a) + residual a
    rec = records.param_block(n, 16)
    e = n.epilogue
    assert rec.shape == (16, 8) and rec.dtype == np.int32
    assert np.array_equal(rec[:, 0], n.params["bias"])
    assert np.array_equal(rec[:, 3], np.broadcast_to(e.offset, 16))
    assert np.array_equal(rec[:, 4], np.broadcast_to(e.res_mult.b, 16))
    assert not rec[:, 6:].any()                    # no hswish


# -- fusion -------------------------------------------------------------------------------------

def _mbconv(extra_reader=False, residual=True):
    b = Builder()
    x = b.input("x", (16, 8, 8))
    e = b.conv("e", x, 64, act="hswish")
    d = b.conv("d", e, 64, k=3, s=1, p=1, act="hswish", dw=True)
    y = b.conv("y", d, 16, residual=x if residual else None)
    if extra_reader:
        b.conv("z", e, 8)
        return b.prog(outputs=[y, "z"])
    return b.prog()


def test_chain_is_pw_dw_pw_when_the_weights_fit():
    prog = _mbconv()
    # weights + records, each block aligned: e 16*64 + 64*32, d 64*9 + 64*32, y 64*16 + 16*32
    wbytes = (1024 + 2048) + (576 + 2048) + (1024 + 512)
    assert fusion.chain_weight_bytes(prog.nodes) == wbytes
    chains = fusion.find_chains(prog, {}, wbytes + ALIGN)
    assert [[m.name for m in c] for c in chains.values()] == [["e", "d", "y"]]
    assert list(chains) == ["e"]
    # one byte less: the first PW stays outside, DW -> PW2 still fits
    chains = fusion.find_chains(prog, {}, wbytes + ALIGN - 1)
    assert [[m.name for m in c] for c in chains.values()] == [["d", "y"]]
    # not even DW -> PW2 fits
    assert fusion.find_chains(prog, {}, (576 + 2048) + (1024 + 512) + ALIGN - 1) == {}


def test_a_tensor_read_twice_is_not_fused_away():
    prog = _mbconv(extra_reader=True)          # e is also read by z: PW1 stays out
    chains = fusion.find_chains(prog, {}, 1 << 20)
    assert [[m.name for m in c] for c in chains.values()] == [["d", "y"]]


def test_a_depthwise_conv_with_a_residual_is_not_fused():
    """A chain's DW_RSA writes into B with no residual (only PW2 has one): a DW whose epilogue
    adds a residual stays out of chains (it lost the residual when fused); its producer and
    consumer may still pass through B slots."""
    b = Builder()
    x = b.input("x", (16, 8, 8))
    d = b.conv("d", x, 16, k=3, s=1, p=1, dw=True, residual=x)
    b.conv("y", d, 16)
    prog = b.prog()
    assert fusion.find_chains(prog, {}, 1 << 20) == {}
    assert fusion.find_resident(prog, {}, {}, 1 << 16) == {"d": False}
    # the same DW without its residual is fused
    prog.nodes[0].epilogue.residual = None
    prog.nodes[0].epilogue.res_mult = None
    assert [[m.name for m in c] for c in fusion.find_chains(prog, {}, 1 << 20).values()] \
        == [["d", "y"]]


def _dsconv_after_pw(*, stride=1, extra_reader=False):
    """PW -> DW -> PW2 adding the first PW's output (EfficientViT's input stem with the stem
    unfolded into a pointwise conv)."""
    b = Builder(seed=3)
    x = b.input("x", (8, 12, 10))
    e = b.conv("e", x, 16, act="hswish")
    d = b.conv("d", e, 16, k=3, s=stride, p=1, act="hswish", dw=True)
    y = b.conv("y", d, 16, residual=e if stride == 1 else None)
    if extra_reader:
        b.conv("z", e, 8)
        return b.prog(outputs=[y, "z"]), b
    return b.prog(), b


def test_a_first_pw_read_as_the_second_pws_residual_is_fused():
    """The first PW's output read by the DW and, as its residual, by PW2: one chain (the
    residual read from the tile's e region); with another reader it stays out. Both layouts
    through funcsim == golden."""
    prog, b = _dsconv_after_pw()
    assert [[m.name for m in c] for c in fusion.find_chains(prog, {}, 1 << 20).values()] \
        == [["e", "d", "y"]]
    prog2, _ = _dsconv_after_pw(extra_reader=True)
    assert [[m.name for m in c] for c in fusion.find_chains(prog2, {}, 1 << 20).values()] \
        == [["d", "y"]]
    from sim.compile import compile as compile_
    for lay in ("planar", "blocked"):
        bn = compile_(prog, AccelConfig.from_string("small"), layout=lay)
        assert [x.get("fused_into") for x in bn.layers] == [None, "e", "e"]
        assert bn.layers[0]["tiles"] > 1
        assert_runs_like_golden(bn, prog, b.env["x"])


def test_resident_tensors_between_unfused_layers():
    prog = _mbconv(residual=False)
    # no chains (e.g. weights too big): e (PW -> DW) and d (DW -> PW) pass through B slots,
    # stored as well only if someone else reads them
    assert fusion.find_resident(prog, {}, {}, 1 << 16) == {"e": False, "d": False}
    prog = _mbconv(extra_reader=True, residual=False)
    assert fusion.find_resident(prog, {}, {}, 1 << 16) == {"e": True, "d": False}
    # a B slot smaller than the tensor (64 x 8 x 8 = 4096 bytes): nothing resident
    assert fusion.find_resident(prog, {}, {}, 4095) == {}
    # fused layers are never resident
    chains = fusion.find_chains(prog, {}, 1 << 20)
    assert fusion.find_resident(prog, {}, chains, 1 << 16) == {}


def _conv_pool(extra_reader=False, dw=False):
    """PW (or DW) conv -> global average pool -> linear, the shape of a classifier head."""
    b_ = Builder(seed=7)
    x = b_.input("x", (16, 6, 6))
    e = b_.conv("e", x, 48, act="hswish") if not dw else \
        b_.conv("e", x, 16, k=3, s=1, p=1, act="hswish", dw=True)
    o = b_.pool("pool", e)
    outs = [b_.linear("fc", o, 10)]
    if extra_reader:
        outs.append(b_.conv("z", e, 8))
    return b_.prog(outputs=outs), b_.env["x"]


def test_a_pointwise_output_stays_in_b_for_the_pool():
    """PW -> global average pool: the conv's output is resident (stored as well only when
    another layer reads it); a depthwise conv's output is not (not a pointwise producer)."""
    prog, _ = _conv_pool()
    assert fusion.find_resident(prog, {}, {}, 1 << 16) == {"e": False}
    prog, _ = _conv_pool(extra_reader=True)
    assert fusion.find_resident(prog, {}, {}, 1 << 16) == {"e": True}
    assert fusion.find_resident(prog, {}, {}, 48 * 36 - 1) == {}
    prog, _ = _conv_pool(dw=True)
    assert fusion.find_resident(prog, {}, {}, 1 << 16) == {}


@pytest.mark.parametrize("extra_reader", [False, True])
@pytest.mark.parametrize("layout_", ["planar", "blocked"])
def test_the_pool_reads_a_resident_conv_output_from_b(extra_reader, layout_):
    """The pool's POOL instructions read the conv's output where it lies in B: no round trip
    through DRAM (stored only when another layer reads it, which loads it again; planar and
    blocked alike); funcsim == golden."""
    prog, xin = _conv_pool(extra_reader)
    b = compile_(prog, SMALL, layout=layout_)
    assert b.layers[0]["on_chip"]
    assert bool(_dram_ops(b, "LOAD", "tensor:e")) == extra_reader
    assert bool(_dram_ops(b, "STORE", "tensor:e")) == extra_reader
    got, ref = run(b, xin), golden.run(prog, xin)
    assert all(np.array_equal(got[k], ref[k]) for k in prog.outputs)


# -- tiling plans -------------------------------------------------------------------------------

CFGS = [SMALL, AccelConfig.from_string("paper"), AccelConfig.from_string("small:L=3"),
        AccelConfig.from_string("small:N=2,M=2,T=2,S=2,L=3")]


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
@pytest.mark.parametrize("nco,nr,g", [(16, 6, 1), (48, 49, 3), (40, 1, 1), (7, 13, 1),
                                      (64, 300, 1), (96, 25, 6)])
def test_plan_conv_covers_every_output_once(cfg, nco, nr, g):
    """Every (output channel, row) of the tile is computed by exactly one (core, engine); a
    grouped conv's tasks hold whole groups; cores and engines are the config's."""
    cout_g = nco // g
    tasks = tiling.plan_conv(cfg, nco, nr, 3, 8 * cout_g, g, cout_g)
    seen = np.zeros((nco, nr), dtype=int)
    for core, eng, (ca, cb), (ra, rb) in tasks:
        assert 0 <= core < cfg.L and eng in ("MAT", "RMAC")
        assert 0 <= ca < cb <= nco and 0 <= ra < rb <= nr
        if g > 1:
            assert ca % cout_g == 0 and cb % cout_g == 0
        seen[ca:cb, ra:rb] += 1
    assert (seen == 1).all()
    assert len({(c, e) for c, e, _, _ in tasks}) == len(tasks)   # one task per engine


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
@pytest.mark.parametrize("nch,nrows", [(24, 10), (8, 1), (64, 28), (13, 3)])
def test_dw_split_covers_every_output_once(cfg, nch, nrows):
    cs, rs = tiling.best_dw_split(cfg, nch=nch, nrows=nrows, wo=7, k=3)
    assert len(cs) * len(rs) <= cfg.L
    seen = np.zeros((nch, nrows), dtype=int)
    for (c0, c1), (r0, r1) in itertools.product(cs, rs):
        seen[c0:c1, r0:r1] += 1
    assert (seen == 1).all()


def test_conv_chunks_fit_the_c_slot():
    for cout, g, K, c_slot in [(64, 1, 16, 4096), (1536, 1, 256, 98304), (48, 3, 16, 1024),
                               (5, 1, 3, 1024), (4095 + 8, 1, 1, 1 << 18), (16, 1, 1024, 8192),
                               (9, 1, 100, 300)]:
        chunk = tiling.conv_chunk("n", cout=cout, g=g, K=K, c_slot=c_slot)
        assert chunk * K + chunk * PARAM_RECORD <= c_slot - ALIGN or chunk == cout
        assert chunk <= 4095 and (chunk % (cout // g) == 0 if g > 1 else True)
        covered = np.zeros(cout, dtype=int)
        for c0, c1 in tiling.ranges(cout, chunk):
            covered[c0:c1] += 1
        assert (covered == 1).all()
    # 1536 filters of 256 + 32 bytes in 98304 - 64 bytes: 341 fit, in 8-lane x 2^k multiples
    # (256), as equal as possible over the 6 chunks that needs: 256 each
    assert tiling.conv_chunk("n", cout=1536, g=1, K=256, c_slot=98304) == 256
    with pytest.raises(CompileError, match=r"n: one filter \(160 bytes\) does not fit a C slot "
                                           r"\(128 bytes\); enlarge buf_c_bytes"):
        tiling.conv_chunk("n", cout=8, g=1, K=128, c_slot=128)
    # fewer than 8 filters fit (16 x 1056 bytes, 7 fit 8192 - 64): chunks of single filters,
    # as equal as possible (3 chunks of 6, 6, 4), not the 8-lane multiple 0
    assert tiling.conv_chunk("n", cout=16, g=1, K=1024, c_slot=8192) == 6
    assert tiling.conv_chunk("n", cout=9, g=1, K=100, c_slot=300) == 1
    # grouped: a chunk is whole groups; one group that does not fit is named as a group
    assert tiling.conv_chunk("n", cout=48, g=3, K=16, c_slot=832) == 16
    with pytest.raises(CompileError, match=r"n: one group \(16 filters, 768 bytes\) does not fit a"
                                           r" C slot \(831 bytes\); enlarge buf_c_bytes"):
        tiling.conv_chunk("n", cout=48, g=3, K=16, c_slot=831)


def test_row_tiles():
    assert tiling.ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert tiling.fit_rows(20, lambda r: r * 100 <= 1000) == 10
    # 112 rows: 4 tiles of 28 wanted, rounded up to 32 (a multiple of 8); fit 20 caps it
    assert tiling.tile_rows(200, 112, 1 << 20) == 32
    assert tiling.tile_rows(20, 112, 1 << 20) == 20
    # 400 rows of 100 bytes: 4 tiles would be 100 rows, but no tile under 16384 bytes ->
    # 164 rows, rounded up to 168
    assert tiling.tile_rows(4095, 400, 100) == 168


@pytest.mark.parametrize("first_pw,residual", [(True, True), (True, False), (False, True)])
def test_chain_tile_regions_are_disjoint_and_in_the_slot(first_pw, residual):
    for rows_out in (1, 3, 14):
        rows_in = rows_out * 2 + 1
        r = tiling.chain_tile_regions(cx=16, e=64, cq=24, rows_in=rows_in, w=28,
                                      rows_out=rows_out, wo=14, first_pw=first_pw,
                                      residual=residual)
        iv = [(r["e"], r["e"] + 64 * rows_in * 28), (r["d"], r["d"] + 64 * rows_out * 14)]
        if first_pw:
            iv.append((r["x"], r["x"] + 16 * rows_in * 28))
        if residual:
            iv.append((r["r"], r["r"] + 24 * rows_out * 14))
        assert _intervals_disjoint(iv)
        assert all(a % ALIGN == 0 and b <= r["end"] for a, b in iv)


def test_attention_plan():
    cfg = AccelConfig.from_string("paper:buf_a_bytes=8192")
    # 4 heads of dim 16 over 49 tokens: two groups of 2; K (784 bytes) twice in buffer A
    hpt, a_step, a_slots = tiling.attention_plan(cfg, "att", heads=4, d=16, ntok=49,
                                                 b_slot=1 << 17, o_slot=1 << 15)
    assert hpt == 2 and a_slots == 2 and a_step >= 784 and a_step + 784 <= cfg.buf_a_bytes
    # without buffer A (`paper`): K stays in B
    assert tiling.attention_plan(AccelConfig.from_string("paper"), "att", heads=4, d=16,
                                 ntok=49, b_slot=1 << 17, o_slot=1 << 15)[2] == 0
    with pytest.raises(CompileError, match="att: one head"):
        tiling.attention_plan(cfg, "att", heads=4, d=16, ntok=49, b_slot=100, o_slot=1 << 15)
    with pytest.raises(CompileError, match="att: 2000 tokens need a divisor buffer"):
        tiling.attention_plan(cfg, "att", heads=4, d=16, ntok=2000, b_slot=1 << 20,
                              o_slot=1 << 20)


def test_engine_cycle_counts_by_hand():
    cfg = AccelConfig.from_string("paper")               # T = S = N = M = 8
    # the stem: 3 channels x 3x3 taps tap by tap: 9 steps per pixel, 16 channels in 2 passes
    assert conv_cycles(cfg, "MAT", K=27, nco=16, npix=10, k=3) == 9 * 2 * 10
    # pointwise 20 -> 9 channels: ceil(20/8) = 3 steps x ceil(9/8) = 2 x 5 pixels
    assert conv_cycles(cfg, "RMAC", K=20, nco=9, npix=5) == 30
    # grouped: 3 groups of 16 outputs: 3 x ceil(16/8) x ceil(16/8) x 4 pixels
    assert conv_cycles(cfg, "MAT", K=16, nco=48, npix=4, groups=3) == 3 * 2 * 2 * 4
    # depthwise 3x3: ceil(10/8) channel passes x 4 rows x ceil(20/8) pixel passes x 9 taps
    assert dw_cycles(cfg, nch=10, ho=4, wo=20, k=3) == 2 * 4 * 3 * 9


# -- scheduling: events, slots and DMA ----------------------------------------------------------

def _ops(em, stream="global"):
    return [(i.op, dict(i.f)) for i in em.streams[stream]]


def test_raw_waits_only_for_overlapping_stores():
    prog, _ = case("aggreg_concat")
    ctx = new_context(prog, SMALL)
    sync, em = ctx.sched.sync, ctx.em
    sync.record_store("x", 0, 96, 0, 10, 7)        # rows 0..9 of x
    sync.record_store("x", 0, 96, 10, 25, 8)       # rows 10..24
    sync.record_store("g", 0, 96, 0, 25, 9)        # g = channels 96..191 of c
    sync.wait_stored("x", 0, 96, 12, 20)
    sync.wait_stored("c", 0, 96, 0, 25)            # channels of q only: not g's store
    sync.wait_stored("c", 90, 100, 0, 25)          # overlaps g
    waits = [f["sem"] for op, f in _ops(em) if op == "WAIT"]
    assert waits == [8, 9]


def test_deferred_emission_is_flushed_before_a_reader_of_its_region():
    ctx = new_context(case("dw3_s1")[0], SMALL)
    sync, em = ctx.sched.sync, ctx.em
    sync.defer(lambda: em.signal("global", "ST", 42), ("y", 0, 24, 0, 50))
    sync.wait_stored("y", 0, 24, 60, 100)          # other rows: still deferred
    assert _ops(em) == []
    sync.wait_stored("y", 0, 24, 40, 60)
    assert _ops(em) == [("SIGNAL", dict(unit=UNITS["ST"], sem=42, count=1))]
    sync.flush()                                   # nothing left
    assert len(_ops(em)) == 1


def test_slots_rotate_and_split_the_buffer():
    s = Slots(3000, 3)
    assert s.size == 1000 and s.base == [0, 1000, 2000]
    assert [s.next() for _ in range(5)] == [0, 1, 2, 0, 1]
    # a pinned slot (a resident tensor) is skipped until unpinned; all pinned: refused
    s.pinned.add(0)
    assert [s.next() for _ in range(4)] == [2, 1, 2, 1]
    s.pinned.discard(0)
    assert [s.next() for _ in range(3)] == [2, 0, 1]
    s.pinned.update({0, 1, 2})
    with pytest.raises(CompileError, match="every one of the 3 slots holds a resident tensor"):
        s.next()


def test_dma_rows_merges_contiguous_rows_and_splits_long_ones():
    ctx = new_context(case("dw3_s1")[0], SMALL)
    sched, em = ctx.sched, ctx.em
    sched.dma_rows("LOAD", "B", 100, 5000, 4, 50, 50)      # 4 contiguous rows: one chunk
    assert _ops(em) == [("LOAD", dict(buf=BUFS["B"], buf_addr=100, dram_addr=5000, count=1,
                                      length=200, stride=0, core=0))]
    em.streams["global"].clear()
    sched.dma_rows("STORE", "OUT", 0, 0, 3, 10, 64)        # strided: one instruction
    assert [f["count"] for _, f in _ops(em)] == [3]
    em.streams["global"].clear()
    sched.dma_rows("STORE", "B", 0, 4096, 1, (1 << 20) + 5, 0)   # length field: 20 bits
    assert DMA_MAX == (1 << 20) - 64
    assert [(f["buf_addr"], f["dram_addr"], f["length"]) for _, f in _ops(em)] == \
        [(0, 4096, DMA_MAX), (DMA_MAX, 4096 + DMA_MAX, 69)]
    em.streams["global"].clear()
    sched.dma_rows("LOAD", "B", 0, 0, 70000, 3, 7)         # count field is 16 bits
    assert [(f["count"], f["buf_addr"], f["dram_addr"]) for _, f in _ops(em)] == \
        [(65535, 0, 0), (70000 - 65535, 65535 * 3, 65535 * 7)]


def test_emitter_checks_fields_numbers_events_and_drops_redundant_setr():
    em = Emitter(SMALL)
    em.setr("core0", "MAT", CIN=3, WIN=8)
    em.setr("core0", "MAT", CIN=3, WIN=9)              # CIN unchanged: one SETR only
    assert [i.op for i in em.streams["core0"]] == ["SETR"] * 3
    with pytest.raises(CompileError, match="field count"):
        em.emit("global", "LOAD", buf=0, buf_addr=0, dram_addr=0, count=1 << 20, length=1)
    em.nsem = (1 << 16) - 1
    em.sem()
    with pytest.raises(CompileError, match="more than 65536 synchronisation events"):
        em.sem()


# -- emission per op kind, each alone: funcsim == golden ----------------------------------------

def _emit_alone(prog, cfg, emit, *args):
    ctx = new_context(prog, cfg)
    info = dict(name="", kind="", op="", tiles=0)
    ctx.layers.append(info)
    emit(ctx, *args, info)
    ctx.sched.sync.flush()
    return assemble(ctx), info


@pytest.mark.parametrize("cfg", [SMALL, TINYBUF], ids=["small", "tinybuf"])
@pytest.mark.parametrize("kind,emit", [
    ("generic_3x3_s2", emit_conv), ("grouped_pointwise", emit_conv), ("linear", emit_conv),
    ("linear_logits", emit_conv), ("dw3_s1", emit_depthwise), ("dw5_s2", emit_depthwise),
    ("dw3_s2_oddwidth", emit_depthwise), ("attention", emit_attention), ("pool", emit_pool)])
def test_one_node_emitted_alone_runs_like_golden(kind, emit, cfg):
    prog, x = case(kind)
    assert emitter_for(prog.nodes[0]) is emit
    b, info = _emit_alone(prog, cfg, emit, prog.nodes[0])
    assert info["tiles"] >= 1
    got, ref = run(b, x), golden.run(prog, x)
    assert all(np.array_equal(got[k], ref[k]) for k in prog.outputs)


def test_depthwise_on_tiny_buffers_is_cut_into_several_tiles():
    prog, x = case("dw3_s1")                       # 24 x 10 x 10: 2.4 KB in, 2.4 KB out
    b, info = _emit_alone(prog, TINYBUF, emit_depthwise, prog.nodes[0])
    assert info["tiles"] >= 2
    assert np.array_equal(run(b, x)["y"], golden.run(prog, x)["y"])


@pytest.mark.parametrize("kind", ["mbconv_fused", "mbconv_s2_fused"])
def test_fused_chain_emitted_alone_runs_like_golden(kind):
    prog, x = case(kind)
    chain = list(prog.nodes)
    b, info = _emit_alone(prog, SMALL, emit_chain, chain, 0)
    assert info["tiles"] >= 2
    # the expanded and depthwise tensors never went to DRAM: only x is loaded into B, and
    # the expansion's halo rows shared by two tiles (their scratch blocks, test below)
    xs = b.symbols["tensor:x"]
    lo, hi = xs["addr"], xs["addr"] + xs["nbytes"]
    halo = [(v["addr"], v["addr"] + v["nbytes"]) for k, v in b.symbols.items()
            if k.startswith("halo:")]
    loads = [i.f for i in b.streams["global"] if i.op == "LOAD" and i.f["buf"] == BUFS["B"]]
    assert loads and all(lo <= f["dram_addr"] < hi or
                         any(a <= f["dram_addr"] < z for a, z in halo) for f in loads)
    assert np.array_equal(run(b, x)["y"], golden.run(prog, x)["y"])


def _pw1_macs(b, li):
    """MACs the CONV instructions of layer ``li`` form (sim.losses.instr_macs with the
    registers each unit holds)."""
    from sim.funcsim import build_queues
    from sim.isa import REG_NAMES
    from sim.losses import instr_macs
    tot = 0
    for q in build_queues(b).values():
        regs = {}
        for ins, tag in q:
            if ins.op == "SETR":
                regs[REG_NAMES[ins.f["reg"]]] = ins.f["value"]
            elif ins.op in ("CONV_MAT", "CONV_RDF") and tag == li:
                tot += instr_macs(ins.op, regs, ins.f)
    return tot


@pytest.mark.parametrize("kind,halo_rows", [("mbconv_fused", 2), ("mbconv_s2_fused", 1)])
def test_fused_chain_halo_rows_are_loaded_not_recomputed(kind, halo_rows, monkeypatch):
    """Issue #16: a fused chain's row tiles share the first PW's rows under the DW's window
    (k = 3: rows r0 - 1 and r0 at stride 1, row 2 r0 - 1 at stride 2). They are computed once,
    stored from the tile's B slot to a DRAM scratch block and loaded into the next tile's
    expansion region; the first PW then forms exactly its IntProgram MACs (Cout * Cin * H * W),
    where recomputing them formed more. Outputs equal sim.golden either way."""
    from sim.compile.ops import chain as chain_mod
    prog, x = case(kind)
    ref = golden.run(prog, x)["y"]
    cx, h, w = prog.tensors["x"].shape
    e = prog.tensors["e"].shape[0]
    macs = {}
    for on in (False, True):
        monkeypatch.setattr(chain_mod, "HALO_VIA_DRAM", on)
        b, info = _emit_alone(prog, SMALL, emit_chain, list(prog.nodes), 0)
        assert info["tiles"] >= 2
        assert np.array_equal(run(b, x)["y"], ref)
        macs[on] = _pw1_macs(b, 0)
        halo = {k: v for k, v in b.symbols.items() if k.startswith("halo:")}
        if not on:
            assert not halo
            continue
        # one block per tile boundary: halo_rows rows of every expansion channel
        assert len(halo) == info["tiles"] - 1
        assert all(v["nbytes"] == e * halo_rows * w for v in halo.values())
        spans = [(v["addr"], v["addr"] + v["nbytes"]) for v in halo.values()]
        moved = {op: sum(i.f["count"] * i.f["length"] for i in b.streams["global"]
                         if i.op == op and any(a <= i.f["dram_addr"] < z for a, z in spans))
                 for op in ("STORE", "LOAD")}
        assert moved == {"STORE": len(halo) * e * halo_rows * w,
                         "LOAD": len(halo) * e * halo_rows * w}
    assert macs[True] == e * cx * h * w         # the paper's count for a 1x1 conv
    assert macs[False] > macs[True]


def test_host_layernorm_after_the_linear_it_reads():
    prog, x = case("layernorm_head")
    assert emitter_for(prog.nodes[1]) is emit_layernorm
    ctx = new_context(prog, SMALL)
    for n in prog.nodes:
        info = dict(tiles=0)
        ctx.layers.append(info)
        emitter_for(n)(ctx, n, info)
    b = assemble(ctx)
    host = [i for i in b.streams["global"] if i.op in ("HOST_LN", "WAIT")
            and (i.op == "HOST_LN" or i.f["unit"] == UNITS["HOST"])]
    assert [i.op for i in host] == ["WAIT", "HOST_LN"]    # waits for the linear's store
    assert np.array_equal(run(b, x)["y"], golden.run(prog, x)["y"])


def test_emit_program_without_fusion_equals_compile_unfused():
    from sim.compile import compile as compile_
    prog, x = case("mbconv_fused")
    ctx = new_context(prog, SMALL)
    emit_program(ctx, {})
    b = assemble(ctx)
    ref = compile_(prog, SMALL, fuse=False)
    assert b.streams == ref.streams and np.array_equal(b.dram, ref.dram)


def test_assembly_ends_every_unit_with_halt():
    prog, _ = case("pool")
    b, _ = _emit_alone(prog, SMALL, emit_pool, prog.nodes[0])
    for s, ins in b.streams.items():
        units = ("LD", "ST", "HOST") if s == "global" else ("RMAC", "MAT", "AUX")
        assert [(i.op, i.f["unit"]) for i in ins[-3:]] == [("HALT", UNITS[u]) for u in units]
    sym = b.symbols["param:y"]
    assert np.array_equal(b.dram[sym["addr"]:sym["addr"] + sym["nbytes"]].view(np.int32)
                          .reshape(-1, 8)[:, 1], np.broadcast_to(prog.nodes[0].epilogue.mult.b,
                                                                 32))


def test_unknown_op_has_no_mapping():
    prog, _ = case("pool")
    n = prog.nodes[0]
    bad = type(n)(n.name, "frobnicate", n.inputs, n.output)
    with pytest.raises(CompileError, match="op 'frobnicate' has no mapping"):
        emitter_for(bad)


def test_split_helper():
    assert split(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split(10, 3, 8) == [(0, 8), (8, 10)]
    assert split(2, 4) == [(0, 1), (1, 2)]


def _dram_ops(b, op, sym):
    """The ``op`` (LOAD / STORE) instructions whose DRAM range touches symbol ``sym``."""
    s = b.symbols[sym]
    lo, hi = s["addr"], s["addr"] + s["nbytes"]
    return [i.f for i in b.streams["global"] if i.op == op and lo <= i.f["dram_addr"] < hi]


@pytest.mark.parametrize("extra_reader", [False, True])
def test_resident_tensors_skip_dram_unless_read_again(extra_reader):
    """PW -> DW -> PW emitted unfused with the residency plan: e and d pass through B slots;
    e is stored to DRAM only when another layer (z) reads it; funcsim == golden."""
    b_ = Builder(seed=5)
    x = b_.input("x", (16, 8, 8))
    e = b_.conv("e", x, 64, act="hswish")
    d = b_.conv("d", e, 64, k=3, s=1, p=1, act="hswish", dw=True)
    y = b_.conv("y", d, 16)
    outs = [y]
    if extra_reader:
        outs.append(b_.conv("z", e, 8))
    prog = b_.prog(outputs=outs)
    xin = b_.env["x"]
    ctx = new_context(prog, SMALL)
    ctx.res.keep = fusion.find_resident(prog, ctx.layout.alias, {}, ctx.sched.B.size)
    assert set(ctx.res.keep) == {"e", "d"}
    emit_program(ctx, {})
    b = assemble(ctx)
    assert [lay["on_chip"] for lay in b.layers[:3]] == [True, True, False]
    assert _dram_ops(b, "LOAD", "tensor:d") == []
    assert bool(_dram_ops(b, "STORE", "tensor:e")) == extra_reader
    assert _dram_ops(b, "STORE", "tensor:d") == []
    got, ref = run(b, xin), golden.run(prog, xin)
    assert all(np.array_equal(got[k], ref[k]) for k in prog.outputs)


def test_dw_pw_chain_keeps_the_mat_busy_while_the_rmac_runs_the_next_dw():
    """Issue #16: in a fused DW -> PW2 chain (no first PW) the R-MAC runs tile t+1's depthwise
    conv after its share of tile t's PW2, while the MAT's next work (PW2 of t+1) waits for
    that DW. The PW2 split therefore gives the MAT the next DW's cycles more
    (``plan_conv(bias=(0, DW))``): in the timed Binary (sim.perf) the MAT waits between two
    tiles' PW2 less than half a DW, where it used to wait the whole DW."""
    from sim.compile import compile as compile_
    from sim.perf import simulate
    b = Builder()
    x = b.input("x", (16, 16, 16))
    e = b.conv("e", x, 64, act="hswish")
    d = b.conv("d", e, 64, k=3, s=1, p=1, act="hswish", dw=True)
    y = b.conv("y", d, 32)
    b.conv("z", e, 8)                   # e is read twice: the chain is [d, y]
    prog = b.prog(outputs=[y, "z"])
    xin = np.random.default_rng(0).integers(-128, 128, size=(16, 16, 16))
    binary = compile_(prog, SMALL)
    assert np.array_equal(run(binary, xin)["y"], golden.run(prog, xin)["y"])
    names = [n.name for n in prog.nodes]
    trace = []
    simulate(binary, trace=trace)
    for core in range(SMALL.L):
        st = f"core{core}"
        mats = sorted((a, z) for s, u, op, tag, a, z in trace
                      if s == st and op == "CONV_MAT" and tag == names.index("y"))
        dws = [z - a for s, u, op, tag, a, z in trace
               if s == st and op == "DW_RSA" and tag == names.index("d")]
        assert len(mats) >= 3 and dws
        waits = [a1 - z0 for (_, z0), (a1, _) in itertools.pairwise(mats)]
        assert max(waits) < min(dws) / 2, (core, waits, dws)


def test_a_resident_input_stays_when_the_output_goes_out_in_row_tiles():
    """Issue #16: a pointwise conv whose input is resident in B (its producer kept it there)
    but whose output chunk does not fit one OUT slot reads the input where it is and stores
    its output in row tiles; it used to spill the input to DRAM and load it back (B1's
    stage-2 local inverted conv after the on-chip context module: ~1,200 cycles each)."""
    from sim.compile import compile as compile_
    b = Builder()
    x = b.input("x", (8, 16, 16))
    a = b.conv("a", x, 16)                      # 4 KB: resident (B slot 10.9 KB)
    q = b.conv("q", a, 64)                      # 16 KB: over a B slot, over an OUT slot (8 KB)
    b.conv("y", q, 8)
    prog = b.prog()
    assert fusion.find_resident(prog, {}, {}, SMALL.buf_b_bytes // 3) == {"a": False}
    binary = compile_(prog, SMALL)             # (fuse=False keeps nothing in B)
    xin = np.random.default_rng(1).integers(-128, 128, size=(8, 16, 16))
    assert np.array_equal(run(binary, xin)["y"], golden.run(prog, xin)["y"])
    sym = binary.symbols["tensor:a"]
    lo, hi = sym["addr"], sym["addr"] + sym["nbytes"]
    dma = [i for i in binary.streams["global"] if i.op in ("LOAD", "STORE")
           and lo <= i.f["dram_addr"] < hi]
    assert dma == []                            # a never went through DRAM
    assert [(l["name"], l["tiles"]) for l in binary.layers][1] == ("q", 2)
