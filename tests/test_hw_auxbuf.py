# amaranth: UnusedElaboratable=no
"""hw.core.auxbuf: the banked AUX buffer against a plain byte-array model of the port contract.

Reference (written from hw.core.ports, not from the bank layout): two byte arrays E and A of
``depth`` bytes; a scatter write stores element ``e`` at ``addr + e`` (where ``mask[e]``; dropped
at or past ``depth``), E from the MAT / R-MAC outputs (at most S bytes: a row of one of S's T x S
tiles) and A from the AUX unit's; a gather read returns ``data[r][k] = E[addr + r*row_stride +
k*elem_stride]`` (weight port: row stride 1, element stride S, ``addr`` a multiple of the tile
line ``sim.isa.att_s_line(S, T)``, the rule of the aligned E) or ``A[addr + k]`` (broadcast port),
0 outside, one cycle after ``en``. Random traffic with a fixed seed, writes and reads in the same
cycles, depths that are not multiples of the bank count or of the line.
"""
import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.core.auxbuf import AuxBuffer, BankedStore
from sim.isa import att_s_line


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _idle(ctx, dut):
    for p in (dut.mat_x, dut.mat_w):
        ctx.set(p.en, 0)
    for p in (dut.mat_o, dut.rmac_o, dut.aux_o):
        ctx.set(p.en, 0)
        ctx.set(p.wide, 0)
        ctx.set(p.elem_stride, 1)


@pytest.mark.parametrize("S,T,M,depth,W,align", [
    (4, 4, 4, 96, 1, (1, 1)), (3, 2, 5, 100, 1, (1, 1)), (8, 8, 8, 520, 1, (1, 1)),
    (1, 3, 1, 37, 1, (1, 1)), (8, 8, 8, 520, 4, (1, 1)), (4, 4, 4, 96, 4, (1, 1)),
    (3, 2, 5, 101, 4, (1, 1)), (1, 3, 1, 37, 4, (1, 1)), (8, 8, 8, 522, 2, (1, 1)),
    # aligned writes (the core's: kv_write_align of R = 4 on the MAT, 8 on the R-MAC at paper)
    (8, 8, 8, 520, 4, (4, 8)), (4, 4, 4, 96, 4, (4, 4)), (8, 8, 8, 522, 2, (2, 8)),
    (8, 4, 8, 300, 4, (8, 2))])
def test_aux_buffer_matches_byte_array_model(S, T, M, depth, W, align):
    """Both layouts: byte banks (``word_bytes=1``) and banks of 2- or 4-byte words (the core's,
    BRAM18s in SDP mode). E is one copy of one tile line in banks: the weight read is that line
    (T x S bytes of it), the writes S consecutive bytes at any address (or at multiples of
    ``write_align``, whole words picked per bank)."""
    dut = AuxBuffer(depth=depth, S=S, T=T, M=M, word_bytes=W, write_align=align)
    rng = np.random.default_rng(S * 100 + T * 10 + M + W)
    E = np.zeros(depth, np.int64)
    A = np.zeros(depth, np.int64)
    banks, wb = dut.e_store.banks, dut.e_store.word_bytes
    line = att_s_line(S, T)
    assert dut.e_store.copies == 1 and banks * wb == line

    def bank_set(lo, n):
        return {(a // wb) % banks for a in range(lo, lo + n)}
    checks = {"w": 0, "x": 0}

    async def bench(ctx):
        _idle(ctx, dut)
        for cyc in range(400):
            # one cycle: maybe a MAT write, an R-MAC write to other banks, an AUX write, reads
            ops = []
            lo = int(rng.integers(0, depth + 4)) // align[0] * align[0]
            if rng.random() < 0.5:
                n = S
                mask = int(rng.integers(0, 1 << n))
                vals = rng.integers(0, 256, n)
                ops.append((dut.mat_o, lo, mask, vals, E))
            if rng.random() < 0.4:
                # the R-MAC writes M bytes that share no bank with the MAT's line
                base = lo + S if ops else lo
                base = -(-base // align[1]) * align[1]
                if ops and bank_set(lo, S) & bank_set(base, M):
                    base = None
                if base is not None:
                    n = M       # of which the first min(M, S) (a tile row) may be written
                    mask = int(rng.integers(0, 1 << min(n, S)))
                    ops.append((dut.rmac_o, base, mask, rng.integers(0, 256, n), E))
            if rng.random() < 0.5:
                ops.append((dut.aux_o, int(rng.integers(0, depth + 2)), 1,
                            rng.integers(0, 256, 1), A))
            for port, addr, mask, vals, _ in ops:
                ctx.set(port.en, 1)
                ctx.set(port.addr, addr)
                ctx.set(port.mask, mask)
                for e, v in enumerate(vals):
                    ctx.set(port.data[e], int(v))
            rw = rng.random() < 0.6
            rx = rng.random() < 0.6
            wreq = (int(rng.integers(0, -(-depth // line) + 1)) * line, S)
            xreq = int(rng.integers(0, depth + 8))
            ctx.set(dut.mat_w.en, int(rw))
            ctx.set(dut.mat_w.addr, wreq[0])
            ctx.set(dut.mat_w.row_stride, 1)
            ctx.set(dut.mat_w.elem_stride, wreq[1])
            ctx.set(dut.mat_x.en, int(rx))
            ctx.set(dut.mat_x.addr, xreq)
            ctx.set(dut.mat_x.elem_stride, 1)
            # the read sees the memory before this cycle's writes
            exp_w = np.array([[E[a] if (a := wreq[0] + r + k * wreq[1]) < depth else 0
                               for k in range(T)] for r in range(S)])
            exp_x = np.array([A[a] if (a := xreq + k) < depth else 0 for k in range(T)])
            await ctx.tick()
            _idle(ctx, dut)
            for _, addr, mask, vals, arr in ops:
                for e, v in enumerate(vals):
                    if mask >> e & 1 and addr + e < depth:
                        arr[addr + e] = v
            if rw:
                got = np.array([[ctx.get(dut.mat_w.data[r][k]) for k in range(T)]
                                for r in range(S)])
                np.testing.assert_array_equal(got, exp_w, err_msg=f"weight read, cycle {cyc}")
                checks["w"] += 1
            if rx:
                got = np.array([ctx.get(dut.mat_x.data[0][k]) for k in range(T)])
                np.testing.assert_array_equal(got, exp_x, err_msg=f"broadcast read, cycle {cyc}")
                checks["x"] += 1
            assert ctx.get(dut.error) == 0
        # the model's contents equal the stores' (every copy of E)
        assert (E != 0).sum() > depth // 4 and (A != 0).sum() > depth // 8
        for c in range(dut.e_store.copies):
            np.testing.assert_array_equal(dut.e_store.contents(ctx, c), E)
        np.testing.assert_array_equal(dut.a_store.contents(ctx), A)

    _run(dut, bench)
    assert checks["w"] > 100 and checks["x"] > 100


def _both_writers(a_mat, a_rmac, mask):
    return [(p, f, v) for p, a in (("mat_o", a_mat), ("rmac_o", a_rmac))
            for f, v in (("en", 1), ("addr", a), ("mask", mask))]


#: case -> (the error bit expected, or None; the (port, field, value) settings of one cycle)
RULE_CASES = {
    "w_row_stride": (0, [("mat_w", "en", 1), ("mat_w", "row_stride", 2),
                         ("mat_w", "elem_stride", 4)]),
    # the weight read is one aligned tile line (16 bytes at S = T = 4): element stride S, a
    # multiple of 16
    "w_elem_stride": (0, [("mat_w", "en", 1), ("mat_w", "row_stride", 1),
                          ("mat_w", "elem_stride", 5)]),
    "w_unaligned": (0, [("mat_w", "en", 1), ("mat_w", "addr", 20), ("mat_w", "row_stride", 1),
                        ("mat_w", "elem_stride", 4)]),
    "x_elem_stride": (0, [("mat_x", "en", 1), ("mat_x", "elem_stride", 4)]),
    "rmac_elem_stride": (1, [("rmac_o", "en", 1), ("rmac_o", "elem_stride", 2)]),
    "mat_wide": (0, [("mat_o", "en", 1), ("mat_o", "wide", 1)]),
    # bytes 10..13 and 12..15: banks 2, 3 (bytes) or bank 1 (4-byte words) are hit twice
    "same_bank": (1, _both_writers(10, 12, 0xF)),
    # both writers on disjoint banks (bytes: 8, 9 and 14, 15; 4-byte words: 2 and 3) at stride
    # 1, a weight read of the line at 32
    "ok": (None, _both_writers(8, 14, 0x3) + [("mat_w", "en", 1), ("mat_w", "addr", 32),
                                               ("mat_w", "row_stride", 1),
                                               ("mat_w", "elem_stride", 4)]),
}


@pytest.mark.parametrize("W", [1, 4])
@pytest.mark.parametrize("case", RULE_CASES)
def test_aux_buffer_flags_accesses_it_cannot_serve(case, W):
    """Accesses outside the banked layout's rules set the requesting unit's error bit (E at S =
    T = 4: a 16-byte line in 16 byte banks or 4 banks of 4-byte words)."""
    dut = AuxBuffer(depth=256, S=4, T=4, M=4, word_bytes=W)
    bit, settings = RULE_CASES[case]

    async def bench(ctx):
        _idle(ctx, dut)
        for port, field, value in settings:
            ctx.set(getattr(getattr(dut, port), field), value)
        await ctx.tick()
        _idle(ctx, dut)
        await ctx.tick()
        assert ctx.get(dut.error) == (0 if bit is None else 1 << bit)

    _run(dut, bench)


@pytest.mark.parametrize("port,addr,err", [("mat_o", 2, 1), ("rmac_o", 6, 2), ("mat_o", 4, 0),
                                           ("rmac_o", 12, 0)])
def test_aux_buffer_flags_writes_off_their_alignment(port, addr, err):
    """With ``write_align`` (the core's :func:`kv_write_align`) a write at an address that is not
    a multiple of its writer's alignment sets that writer's error bit."""
    dut = AuxBuffer(depth=256, S=4, T=4, M=4, write_align=(4, 4))

    async def bench(ctx):
        _idle(ctx, dut)
        for f, v in (("en", 1), ("addr", addr), ("mask", 0xF)):
            ctx.set(getattr(getattr(dut, port), f), v)
        await ctx.tick()
        _idle(ctx, dut)
        await ctx.tick()
        assert ctx.get(dut.error) == err

    _run(dut, bench)


def test_aux_buffer_flags_rmac_write_past_a_tile_row():
    """With M > S the R-MAC's write port is wider than a row of S's tiles: a write with a mask bit
    past S sets its error bit, one within S does not (and lands)."""
    dut = AuxBuffer(depth=128, S=2, T=4, M=4)

    async def bench(ctx):
        _idle(ctx, dut)
        for mask, err in ((0x3, 0), (0x4, 1 << 1)):
            for f, v in (("en", 1), ("addr", 8), ("mask", mask)):
                ctx.set(getattr(dut.rmac_o, f), v)
            for e in range(4):
                ctx.set(dut.rmac_o.data[e], 10 + e)
            await ctx.tick()
            _idle(ctx, dut)
            await ctx.tick()
            assert ctx.get(dut.error) == err
        assert list(dut.e_store.contents(ctx)[8:12]) == [10, 11, 0, 0]

    _run(dut, bench)


#: BankedStore layouts: (banks, word_bytes, depth, aligned_writes, read_bytes, write_bytes);
#: the byte-banked ones (word_bytes = 1) and buffer A in 32-bit words at the paper's 64-byte
#: line and the RTL tests' 16-byte line, with N = 8 and N = 4 readers (hw.core.Core.a_store)
STORE_CASES = {
    "bytes16_unaligned": (16, 1, 200, False, 16, 16),
    "bytes16_aligned": (16, 1, 200, True, 16, 16),
    "a_line64_n8": (16, 4, 8192, True, 8, 64),
    "a_line64_n4_short": (16, 4, 1000, True, 4, 64),
    "a_line16_n8": (4, 4, 203, True, 8, 16),
    "a_line16_n4": (4, 4, 256, True, 4, 16),
    "words2_unaligned": (4, 2, 101, False, 7, 7),
    "words4_unaligned": (4, 4, 150, False, 8, 13),
}


@pytest.mark.parametrize("case", STORE_CASES)
def test_banked_store_line_writes_and_copies(case):
    """BankedStore alone (buffer A of the core: two copies, one writer): random writes
    (unaligned, or aligned: the line holding ``addr``) and a read per copy each cycle, against a
    byte array: a write puts ``data[j]`` at ``line + j`` where ``mask[j]``, with ``line = addr``
    (unaligned) or ``addr`` rounded down to the line of ``banks * word_bytes`` bytes (aligned);
    bytes at or past ``depth`` are dropped and read 0; every copy sees every write; a read
    returns ``read_bytes`` consecutive bytes at any address."""
    P, W, depth, aligned, nr, nw = STORE_CASES[case]
    line = P * W
    dut = BankedStore(depth=depth, banks=P, word_bytes=W, copies=2, aligned_writes=aligned,
                      read_bytes=nr, write_bytes=nw)
    rng = np.random.default_rng(sum(map(ord, case)))
    ref = np.zeros(depth + 3 * line, np.int64)
    seen = [0, 0]
    cycles = 300 if depth < 1024 else 400

    async def bench(ctx):
        w = dut.write[0]
        for cyc in range(cycles):
            wr = rng.random() < 0.6
            # near the end of the buffer a quarter of the time, so the depth check is exercised
            hi = depth + 8
            addr = int(rng.integers(max(0, depth - 2 * line), hi) if rng.random() < 0.25
                       else rng.integers(0, hi))
            mask = int("".join(map(str, rng.integers(0, 2, nw))), 2)
            vals = rng.integers(0, 256, nw)
            ctx.set(w.en, int(wr))
            ctx.set(w.addr, addr)
            ctx.set(w.mask, mask)
            for j, v in enumerate(vals):
                ctx.set(w.data[j], int(v))
            reqs = []
            for c, r in enumerate(dut.read):
                en = rng.random() < 0.7
                ra = int(rng.integers(max(0, depth - 2 * line), depth + 4) if rng.random() < 0.25
                         else rng.integers(0, depth + 4))
                ctx.set(r.en, int(en))
                ctx.set(r.addr, ra)
                if en:
                    reqs.append((c, ra, ref[ra:ra + nr].copy()))
            # the data come one cycle later and do not see this cycle's write (read first)
            await ctx.tick()
            for c, ra, want in reqs:
                got = [ctx.get(dut.read[c].data[j]) for j in range(nr)]
                assert got == want.tolist(), f"copy {c} read at {ra}, cycle {cyc}"
                seen[c] += 1
            if wr:
                base = addr - addr % line if aligned else addr
                for j in range(nw):
                    if mask >> j & 1 and base + j < depth:
                        ref[base + j] = vals[j]
        await ctx.tick()
        assert (ref[:depth] != 0).sum() > min(depth, cycles * nw // 4) // 4
        for c in range(2):
            np.testing.assert_array_equal(dut.contents(ctx, c), ref[:depth])

    _run(dut, bench)
    assert min(seen) > cycles // 2


def test_banked_store_word_layout_sizes():
    """Buffer A at the paper's point: 16 banks of 128 32-bit words per copy (4 line rows of 16
    bytes per word would be the same bytes; this is the word-interleaved layout), and the widest
    port a layout serves."""
    st = BankedStore(depth=8192, banks=16, word_bytes=4, copies=2, aligned_writes=True,
                     read_bytes=8, write_bytes=64)
    assert st.line == 64 and st.bank_depth == 128
    assert {(mem.shape.width, mem.depth) for c in st.mems for mem in c} == {(32, 128)}
    assert len([mem for c in st.mems for mem in c]) == 32
    Fragment.get(st, None)      # elaborates (and so uses) the store and its memories
    with pytest.raises(ValueError, match="read_bytes"):
        BankedStore(depth=256, banks=4, word_bytes=4, read_bytes=14)
    with pytest.raises(ValueError, match="write_bytes"):
        BankedStore(depth=256, banks=4, word_bytes=4, write_bytes=16)
    Fragment.get(BankedStore(depth=256, banks=4, word_bytes=4, write_bytes=16,
                             aligned_writes=True), None)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="banks must be a power of two"):
        BankedStore(depth=64, banks=6)
    with pytest.raises(ValueError, match="word_bytes must be a power of two"):
        BankedStore(depth=64, banks=4, word_bytes=3)
    with pytest.raises(ValueError, match="depth"):
        AuxBuffer(depth=8)
    with pytest.raises(ValueError, match="T must be"):
        AuxBuffer(T=65)
