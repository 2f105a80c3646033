# amaranth: UnusedElaboratable=no
"""hw.system.banked.BankedBuffers in amaranth.sim against a Python model of the port contract.

Several requesters (two cores, each with gather ports of 1 x 4, 3 x 4 and 2 x 8 bytes and two
scatter ports) and the LD / ST DMA line ports issue random requests (random buffers, addresses,
row and element strides, byte and int32 writes, masks; idle cycles; fixed seed). The model
(``hw.core.ports``): a request is held until ``ready``; a gather's ``data`` one cycle after
acceptance equals the bytes at its addresses (0 outside the buffer); a scatter's bytes are in
the buffer after acceptance; LD lines are always accepted, ST data follow ``st_en`` by one
cycle. Run in epochs: in an epoch the writers write only inside one window (each writer its own
part of it, no two writers on a byte) and the readers' bytes inside that window are not
compared (their value depends on the order of accesses in flight, which programs order by
semaphores); the window moves every epoch, so later epochs read what earlier ones wrote, and
at the end every bank word equals the model. The same bench runs the behavioural
``GlobalBuffers`` (never stalls) as a check of the bench itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from hw.core.ports import ADDR_BITS, gather_read_signature, scatter_write_signature
from hw.system.banked import BankedBuffers
from hw.system.buffers import GlobalBuffers
from sim.isa import BUFS

SIZES = {"B": 2048, "C": 1024, "OUT": 1024}
ORDER = ("B", "C", "OUT")
LINE = 16
GATHERS = {"x": (1, 4), "w": (3, 4), "p": (2, 8)}
SCATTERS = {"o": 4, "q": 2}


def core_signature(stall=True):
    sig = {n: Out(gather_read_signature(rows=r, elems=e, stall=stall))
           for n, (r, e) in GATHERS.items()}
    sig.update({n: Out(scatter_write_signature(elems=e, stall=stall))
                for n, e in SCATTERS.items()})
    return wiring.Signature(sig)


def _base(buf):
    return sum(SIZES[b] for b in ORDER[:ORDER.index(buf)])


class Model:
    """The buffers as one byte array (B, C, OUT at their offsets) and the port contract."""

    def __init__(self):
        self.mem = np.zeros(sum(SIZES.values()), np.uint8)

    def gather(self, buf, addr, rs, es, rows, elems):
        """``(values, global addresses or -1)`` of a gather's lanes."""
        vals, where = [], []
        for r in range(rows):
            for e in range(elems):
                i = (addr + r * rs + e * es) % (1 << ADDR_BITS)
                if i < SIZES[buf]:
                    vals.append(int(self.mem[_base(buf) + i]))
                    where.append(_base(buf) + i)
                else:
                    vals.append(0)
                    where.append(-1)
        return vals, where

    def scatter(self, buf, addr, es, wide, mask, data):
        nb = 4 if wide else 1
        for e, v in enumerate(data):
            if (mask >> e) & 1:
                at = _base(buf) + addr + e * es
                self.mem[at:at + nb] = np.frombuffer((v & 0xFFFFFFFF).to_bytes(4, "little")[:nb],
                                                     np.uint8)


def _rand_gather(rng, rows, elems):
    buf = ORDER[rng.integers(3)]
    es = int(rng.choice([0, 1, 1, 2, 3, 7, 8, 9, 16, 49, 64]))
    rs = int(rng.choice([0, 4, 8, 32, 56, 128, 200]))
    if rng.random() < 0.1:          # lanes past the end (read as 0) or wrapping at ADDR_BITS
        addr = int(rng.choice([SIZES[buf] - 3, (1 << ADDR_BITS) - 5]))
    else:
        addr = int(rng.integers(0, SIZES[buf]))
    return dict(buf=buf, addr=addr, rs=rs, es=es)


def _rand_scatter(rng, elems, lo, hi):
    wide = int(rng.random() < 0.3)
    nb = 4 if wide else 1
    es = int(rng.choice([nb, nb, nb + 1, 8, 16]))
    span = (elems - 1) * es + nb
    addr = int(rng.integers(lo, hi - span + 1))
    data = [int(v) for v in rng.integers(-(1 << 31), 1 << 31, elems)]
    return dict(addr=addr, es=es, wide=wide, mask=int(rng.integers(0, 1 << elems)), data=data)


def run_bench(dut, *, cores=2, epochs=6, cycles=60, seed=1, gather_gen=None, scatter_gen=None):
    """Drive random traffic for ``epochs`` x ``cycles`` cycles; returns (stall cycles seen,
    requests accepted). Asserts the contract on every accepted request and the final memory.
    ``gather_gen(rng, name, rows, elems)`` / ``scatter_gen(rng, elems, lo, hi)`` make the
    requests (default: any stride, :func:`_rand_gather` / :func:`_rand_scatter`)."""
    gather_gen = gather_gen or (lambda rng, _n, rows, elems: _rand_gather(rng, rows, elems))
    scatter_gen = scatter_gen or _rand_scatter
    rng = np.random.default_rng(seed)
    model = Model()
    total = sum(SIZES.values())
    # initial contents, loaded through LD lines (the only way in besides the cores)
    init = rng.integers(0, 256, total).astype(np.uint8)
    stats = {"stalls": 0, "accepted": 0, "checked": 0}

    def port(c, n):
        return getattr(dut, f"c{c}_{n}")

    async def bench(ctx):
        # load everything through LD
        for g in range(0, total, LINE):
            buf = next(b for b in reversed(ORDER) if g >= _base(b))
            ctx.set(dut.ld.valid, 1)
            ctx.set(dut.ld.payload.buf, BUFS[buf])
            ctx.set(dut.ld.payload.addr, g - _base(buf))
            ctx.set(dut.ld.payload.data, int.from_bytes(init[g:g + LINE].tobytes(), "little"))
            ctx.set(dut.ld.payload.mask, (1 << LINE) - 1)
            await ctx.tick()
        ctx.set(dut.ld.valid, 0)
        model.mem[:] = init
        writers = [(c, n) for c in range(cores) for n in SCATTERS] + [("ld", None)]
        for ep in range(epochs):
            # the window the writers own in this epoch, split between them
            wbuf = ORDER[ep % 3]
            wlen = 64 * len(writers)
            wlo = int(rng.integers(0, (SIZES[wbuf] - wlen) // LINE)) * LINE
            win = (_base(wbuf) + wlo, _base(wbuf) + wlo + wlen)
            part = {w: (wlo + 64 * i, wlo + 64 * i + 64) for i, w in enumerate(writers)}
            cur = {}            # (c, n) -> request in flight
            expect = []         # gathers accepted last cycle: (port, values, where)
            st_expect = None
            for _ in range(cycles):
                # new requests
                for c in range(cores):
                    for n, (rows, elems) in GATHERS.items():
                        if (c, n) not in cur and rng.random() < 0.7:
                            cur[(c, n)] = ("g", gather_gen(rng, n, rows, elems))
                    for n, elems in SCATTERS.items():
                        if (c, n) not in cur and rng.random() < 0.5:
                            lo, hi = part[(c, n)]
                            cur[(c, n)] = ("s", scatter_gen(rng, elems, lo, hi))
                for c in range(cores):
                    for n in list(GATHERS) + list(SCATTERS):
                        p = port(c, n)
                        req = cur.get((c, n))
                        ctx.set(p.en, int(req is not None))
                        if req is None:
                            continue
                        kind, r = req
                        ctx.set(p.buf, BUFS[r.get("buf", wbuf)])
                        ctx.set(p.addr, r["addr"])
                        ctx.set(p.elem_stride, r["es"])
                        if kind == "g":
                            ctx.set(p.row_stride, r["rs"])
                        else:
                            ctx.set(p.wide, r["wide"])
                            ctx.set(p.mask, r["mask"])
                            for e, v in enumerate(r["data"]):
                                ctx.set(p.data[e], v)
                ld_line = None
                if rng.random() < 0.3:
                    lo, hi = part[("ld", None)]
                    a = int(rng.integers(lo // LINE, hi // LINE)) * LINE
                    d = rng.integers(0, 256, LINE).astype(np.uint8)
                    mk = int(rng.integers(0, 1 << LINE))
                    ld_line = (a, d, mk)
                    ctx.set(dut.ld.valid, 1)
                    ctx.set(dut.ld.payload.buf, BUFS[wbuf])
                    ctx.set(dut.ld.payload.addr, a)
                    ctx.set(dut.ld.payload.data, int.from_bytes(d.tobytes(), "little"))
                    ctx.set(dut.ld.payload.mask, mk)
                else:
                    ctx.set(dut.ld.valid, 0)
                st_req = None
                if rng.random() < 0.3:
                    sb = ORDER[rng.integers(3)]
                    sa = int(rng.integers(0, SIZES[sb] // LINE)) * LINE
                    st_req = (sb, sa)
                    ctx.set(dut.st_en, 1)
                    ctx.set(dut.st_buf, BUFS[sb])
                    ctx.set(dut.st_addr, sa)
                else:
                    ctx.set(dut.st_en, 0)
                # data of last cycle's accepted gathers (comb outputs settle after the sets)
                for (c, n), vals, where in expect:
                    rows, elems = GATHERS[n]
                    p = port(c, n)
                    for i, (v, g) in enumerate(zip(vals, where)):
                        if win[0] <= g < win[1]:
                            continue
                        got = ctx.get(p.data[i // elems][i % elems])
                        assert got == v, (ep, c, n, i, got, v)
                        stats["checked"] += 1
                if st_expect is not None:
                    sb, sa = st_expect
                    g = _base(sb) + sa
                    got = ctx.get(dut.st_data).to_bytes(LINE, "little")
                    for j in range(LINE):
                        if not win[0] <= g + j < win[1]:
                            assert got[j] == model.mem[g + j], (ep, "st", sb, sa, j)
                assert ctx.get(dut.ld.ready) == 1
                # acceptance in this cycle
                expect = []
                for (c, n), (kind, r) in list(cur.items()):
                    if not ctx.get(port(c, n).ready):
                        stats["stalls"] += 1
                        continue
                    stats["accepted"] += 1
                    del cur[(c, n)]
                    if kind == "g":
                        rows, elems = GATHERS[n]
                        vals, where = model.gather(r["buf"], r["addr"], r["rs"], r["es"], rows,
                                                   elems)
                        expect.append(((c, n), vals, where))
                    else:
                        model.scatter(wbuf, r["addr"], r["es"], r["wide"], r["mask"], r["data"])
                if ld_line is not None:
                    a, d, mk = ld_line
                    for j in range(LINE):
                        if (mk >> j) & 1:
                            model.mem[_base(wbuf) + a + j] = d[j]
                st_expect = st_req
                await ctx.tick()
            # drain: let every request finish (no new ones)
            for _ in range(400):
                if not cur:
                    break
                ctx.set(dut.ld.valid, 0)
                ctx.set(dut.st_en, 0)
                for (c, n), (kind, r) in list(cur.items()):
                    if ctx.get(port(c, n).ready):
                        del cur[(c, n)]
                        if kind == "s":
                            model.scatter(wbuf, r["addr"], r["es"], r["wide"], r["mask"],
                                          r["data"])
                        stats["accepted"] += 1
                await ctx.tick()
                for c in range(cores):
                    for n in list(GATHERS) + list(SCATTERS):
                        if (c, n) not in cur:
                            ctx.set(port(c, n).en, 0)
            assert not cur, f"requests never accepted: {sorted(cur)}"
            for c in range(cores):
                for n in list(GATHERS) + list(SCATTERS):
                    ctx.set(port(c, n).en, 0)
            await ctx.tick()
        # final contents
        if isinstance(dut, BankedBuffers):
            P, W = dut.banks, dut.word
            got = np.zeros(dut.depth * P * W, np.uint8)
            for b, mem in enumerate(dut.bank_mems):
                for row in range(dut.depth):
                    v = ctx.get(mem.data[row])
                    at = (row * P + b) * W
                    got[at:at + W] = np.frombuffer(v.to_bytes(W, "little"), np.uint8)
        else:
            got = np.array([ctx.get(dut.mem.data[i]) for i in range(total)], np.uint8)
        np.testing.assert_array_equal(got[:total], model.mem)
        assert ctx.get(dut.fault) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return stats


@pytest.mark.parametrize("banks,word", [(8, 8), (2, 8), (4, 4)])
def test_banked_buffers_random(banks, word):
    dut = BankedBuffers(core_signature=core_signature(), cores=2, sizes=SIZES, line=LINE,
                        banks=banks, word=word)
    stats = run_bench(dut, seed=banks * 10 + word)
    assert stats["stalls"] > 0 and stats["accepted"] > 200 and stats["checked"] > 500, stats


def test_behavioural_buffers_same_bench():
    """The bench and model against the behavioural buffers (ready always 1)."""
    dut = GlobalBuffers(core_signature=core_signature(), cores=2, sizes=SIZES, line=LINE)
    stats = run_bench(dut, epochs=3, seed=5)
    assert stats["stalls"] == 0 and stats["checked"] > 500, stats


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(banks=3), ValueError, "banks"),
    (dict(banks=2, word=4), ValueError, "at least line"),
    (dict(word=32), ValueError, "word"),
    (dict(sizes=dict(SIZES, B=2040)), ValueError, "multiple of line"),
    (dict(core_signature=None), ValueError, "stall=True"),
])
def test_banked_buffers_bad_parameters(kw, exc, msg):
    args = dict(core_signature=core_signature(), cores=1, sizes=SIZES, line=LINE)
    if kw.get("core_signature", 1) is None:
        kw = dict(kw, core_signature=core_signature(stall=False))
    args.update(kw)
    with pytest.raises(exc, match=msg):
        BankedBuffers(**args)
