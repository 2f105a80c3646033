# amaranth: UnusedElaboratable=no
"""Several LD engines (``Accelerator(axi_ports=3|4)``, docs/system.md "AXI ports"): the
descriptor dealer, the global buffers' extra line-write ports, the accelerator's parameters and
ports, ``sim.timing.AxiDma.ports`` and the Binary check of ``sim.checks`` (amaranth.sim and
plain Python; the whole networks run in ``tb/test_accelerator_rtl.py``)."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.system.dma import DescriptorDealer
from sim import compile as sc
from sim import zoo
from sim.checks import check_ld_order, ld_overlaps
from sim.config import PRESETS
from sim.isa import BUFS, Instr


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _bytes_of(f):
    """``{buffer byte: DRAM byte}`` a LOAD with fields ``f`` writes (sim.isa's semantics)."""
    out = {}
    for i in range(f["count"]):
        for j in range(f["length"]):
            out[(f["buf"], f["core"], f["buf_addr"] + i * f["length"] + j)] = \
                f["dram_addr"] + i * f["stride"] + j
    return out


FIELDS = ("dram_addr", "buf", "core", "buf_addr", "count", "length", "stride")


@pytest.mark.parametrize("engines,seed", [(2, 1), (3, 2), (4, 3)])
def test_dealer_splits_and_deals_in_order(engines, seed):
    """Random LOADs (1..6 chunks of 1..700 bytes, some into buffer A, unaligned addresses) with
    random engine back-pressure: the pieces, read in stream order (piece j from engine j mod
    E), are sim.timing.AxiDma.pieces of each descriptor in turn; each descriptor's pieces
    write exactly its bytes from exactly its DRAM bytes (sim.isa's LOAD); at most one engine
    is offered a piece per cycle; ``idle`` only with nothing held or just handed over and
    every engine idle."""
    from sim import timing
    dut = DescriptorDealer(engines=engines)
    rng = random.Random(seed)
    descs = []
    for _ in range(40):
        count = rng.choice([1, 1, 2, 3, 5, 6])
        length = rng.choice([rng.randint(1, 40), rng.randint(40, 700)])
        descs.append(dict(dram_addr=rng.randrange(1 << 30), buf=rng.choice([0, 1, 2, 5]),
                          core=0, buf_addr=rng.randrange(1 << 16), count=count, length=length,
                          stride=length + rng.randrange(0, 64)))
    want = [p for f in descs for p in timing.AxiDma().pieces(f, engines, BUFS["A"])]
    got = [[] for _ in range(engines)]

    async def bench(ctx):
        i = 0
        for _cycle in range(4000):
            if sum(map(len, got)) == len(want):
                break
            ctx.set(dut.cmd.valid, i < len(descs) and rng.random() < 0.8)
            if i < len(descs):
                for k, v in descs[i].items():
                    ctx.set(getattr(dut.cmd.payload, k), v)
            readies = [rng.random() < 0.5 for _ in range(engines)]
            for k in range(engines):
                ctx.set(dut.engine[k].ready, readies[k])
            ctx.set(dut.engine_idle, (1 << engines) - 1)
            await ctx.delay(1e-10)
            offered = [k for k in range(engines) if ctx.get(dut.engine[k].valid)]
            assert len(offered) <= 1
            for k in offered:
                if readies[k]:
                    got[k].append({f: ctx.get(getattr(dut.engine[k].payload, f))
                                   for f in FIELDS})
            if ctx.get(dut.cmd.valid) and ctx.get(dut.cmd.ready):
                i += 1
            if ctx.get(dut.idle):
                assert not offered
            await ctx.tick()
        assert i == len(descs)
        await ctx.tick()
        assert ctx.get(dut.idle)
        ctx.set(dut.engine_idle, 1)
        await ctx.delay(1e-10)
        assert not ctx.get(dut.idle)

    _run(dut, bench)
    stream_order = [got[j % engines][j // engines] for j in range(len(want))]
    assert stream_order == want
    assert len(want) > len(descs) + 20          # the bench did split
    # each descriptor's pieces: exactly its bytes (the reference: the descriptor itself)
    j = 0
    for f in descs:
        n = len(timing.AxiDma().pieces(f, engines, BUFS["A"]))
        pieces = stream_order[j:j + n]
        j += n
        union = {}
        for p in pieces:
            b = _bytes_of(p)
            assert not (set(b) & set(union)), "two pieces write one byte"
            union.update(b)
        assert union == _bytes_of(f)


@pytest.mark.parametrize("e", [2, 3, 4, 5, 7, 16])
def test_ceil_div_const_is_exact_on_20_bits(e):
    from hw.system.dma import ceil_div_const
    x = np.arange(0, (1 << 20) + 1, dtype=np.int64)
    assert np.array_equal(ceil_div_const(x, e, 20), -(-x // e))


def test_dealer_parameters_are_checked():
    for bad in (1, 17):
        with pytest.raises(ValueError, match="engines"):
            DescriptorDealer(engines=bad)
    with pytest.raises(TypeError, match="engines"):
        DescriptorDealer(engines=2.0)


# --- the global buffers' line-write ports ------------------------------------------------------

def _buffers(ld_ports, L=1):
    from hw.system.buffers import GlobalBuffers
    from tests.test_banked_buffers import SIZES, core_signature
    return GlobalBuffers(core_signature=core_signature(stall=False), cores=L, sizes=SIZES,
                         line=16, ld_ports=ld_ports), SIZES


@pytest.mark.parametrize("ports", [2, 4])
def test_buffers_take_a_line_on_every_port_each_cycle(ports):
    """Every port writes a line per cycle (random buffers and lines; bytes of one line dealt to
    different ports in the same cycle, as LOADs of one stretch that share a line do); the ST
    read port then reads every line back: the buffers equal a byte model."""
    from hw.system.buffers import ld_port_name
    dut, sizes = _buffers(ports)
    rng = np.random.default_rng(ports)
    model = {b: np.zeros(n, np.uint8) for b, n in sizes.items()}
    names = ("B", "C", "OUT")

    async def bench(ctx):
        for _ in range(120):
            buf = names[rng.integers(3)]
            line = int(rng.integers(sizes[buf] // 16)) * 16
            owner = rng.integers(ports + 1, size=16)          # ports: byte's writer, or none
            for k in range(ports):
                p = getattr(dut, ld_port_name(k))
                mine = owner == k
                solo = rng.random() < 0.3 and k > 0           # or a line elsewhere
                data = rng.integers(256, size=16, dtype=np.uint8)
                mask = mine if not solo else np.zeros(16, bool)
                b, a = (buf, line)
                if solo:
                    # never a byte another port writes this cycle: a line in a buffer region
                    # reserved per port (the top 16 lines of B, one per port)
                    b, a = "B", sizes["B"] - 16 * (k + 1)
                    mask = rng.random(16) < 0.7
                ctx.set(p.valid, 1)
                ctx.set(p.payload.buf, BUFS[b])
                ctx.set(p.payload.addr, a)
                ctx.set(p.payload.data, int.from_bytes(data.tobytes(), "little"))
                ctx.set(p.payload.mask, int(sum(1 << j for j in range(16) if mask[j])))
                model[b][a:a + 16][mask] = data[mask]
            await ctx.tick()
        for k in range(ports):
            ctx.set(getattr(dut, ld_port_name(k)).valid, 0)
        for b in names:
            for a in range(0, sizes[b], 16):
                ctx.set(dut.st_en, 1)
                ctx.set(dut.st_buf, BUFS[b])
                ctx.set(dut.st_addr, a)
                await ctx.tick()
                ctx.set(dut.st_en, 0)
                got = ctx.get(dut.st_data).to_bytes(16, "little")
                assert got == model[b][a:a + 16].tobytes(), (b, a)
        assert ctx.get(dut.fault) == 0

    _run(dut, bench)


def test_buffers_ld_ports_are_checked():
    from hw.system.banked import BankedBuffers
    from tests.test_banked_buffers import SIZES, core_signature
    for bad in (0, 5):
        with pytest.raises(ValueError, match="ld_ports"):
            _buffers(bad)
    with pytest.raises(ValueError, match="ld_ports=2"):
        BankedBuffers(core_signature=core_signature(), cores=1, line=16, ld_ports=2,
                      sizes=SIZES)


# --- the accelerator ------------------------------------------------------------------------------

def test_accelerator_ports_and_engines():
    """``axi_ports`` P: ``m_axi`` .. ``m_axi{P-1}``, P - 1 LD engines (one for P = 1), each
    with its own line-write port into the buffers; the banked buffers refuse more than one;
    the register block reports P."""
    from amaranth.hdl import Fragment

    from hw.system.accelerator import Accelerator
    from tests.test_banked_buffers import core_signature
    for p, engines in ((1, 1), (2, 1), (3, 2), (4, 3)):
        acc = Accelerator(config="small:L=2", sems=16, axi_ports=p)
        assert acc.ld_engines == engines
        assert [n for n in acc.signature.members if n.startswith("m_axi")] == \
            ["m_axi"] + [f"m_axi{k}" for k in range(1, p)]
        bufs = acc._buffers(core_signature(stall=False))
        bufs._MustUse__silence = True
        assert bufs.ld_ports == engines
        Fragment.get(acc, None)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="axi_ports"):
            Accelerator(config="small:L=1", sems=16, axi_ports=bad)
    with pytest.raises(ValueError, match="banked"):
        Accelerator(config="small:L=1", sems=16, axi_ports=3, buffers="banked")


# --- sim.timing / sim.perf ---------------------------------------------------------------------

def test_axidma_ports():
    from sim import timing
    assert [timing.AxiDma(ports=p).ld_engines for p in (1, 2, 3, 4)] == [1, 1, 2, 3]
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError, match="ports"):
            timing.AxiDma(ports=bad)
    assert timing.axi_system(4).axi.ports == 4 and timing.axi_system().axi == timing.AXI_SYSTEM.axi


def _tiny(L=1, **kw):
    return sc.compile(zoo.tiny(), PRESETS["small"].replace(L=L), **kw)


def test_perf_splits_loads_over_the_engines():
    """With P ports the model's LD unit hands each LOAD over and goes on the next cycle;
    the LOADs' DRAM transfers overlap in time only with several engines, and the run is never
    slower with more engines (tiny, small:L=1)."""
    from sim import perf, timing
    b = _tiny()
    cyc = {}
    for p in (2, 3, 4):
        tr = []
        cyc[p] = perf.simulate(b, env=timing.axi_system(p), trace=tr).cycles
        loads = [(s, e) for st, u, op, _t, s, e in tr if u == "LD" and op == "LOAD"]
        assert all(e == s + 1 for s, e in loads), loads[:5]
    assert cyc[4] <= cyc[3] <= cyc[2]


def test_axidma_pieces_by_hand():
    from sim import timing
    ax = timing.AxiDma()
    f = dict(dram_addr=1000, buf=0, core=0, buf_addr=7, count=7, length=10, stride=30)
    got = ax.pieces(f, 3, BUFS["A"])
    assert [(p["dram_addr"], p["buf_addr"], p["count"]) for p in got] == \
        [(1000, 7, 3), (1090, 37, 3), (1180, 67, 1)]
    one = dict(f, count=1, length=200)          # 13 beats >= 4 * 3: pieces of 5 beats
    assert [(p["dram_addr"], p["buf_addr"], p["length"]) for p in ax.pieces(one, 3, 5)] == \
        [(1000, 7, 80), (1080, 87, 80), (1160, 167, 40)]
    assert ax.pieces(dict(one, length=170), 3, 5) == [dict(one, length=170)]   # 11 beats
    assert ax.pieces(dict(f, buf=BUFS["A"]), 3, BUFS["A"]) == [dict(f, buf=BUFS["A"])]


# --- the compiler's guarantee (sim.checks) -----------------------------------------------------

@pytest.mark.parametrize("L,kw", [(1, {}), (4, {}), (2, {"prefetch": True}),
                                  (2, {"stream": True}), (1, {"fuse": False}),
                                  (2, {"attn_onchip": False})])
def test_compiled_binaries_have_no_overlapping_loads(L, kw):
    """The compiler's guarantee for several LD engines (docs/system.md, "AXI ports") on tiny
    with each compiler option."""
    b = _tiny(L, **kw)
    assert ld_overlaps(b) == []
    check_ld_order(b)


def _with_global(binary, ins, tags):
    streams = dict(binary.streams, **{"global": ins})
    return dataclasses.replace(binary, streams=streams, tags=dict(binary.tags, **{"global": tags}))


def test_overlapping_loads_are_found():
    """A LOAD repeated (shifted by one byte, or a core's A) before the next SIGNAL of LD is
    reported with both indices and the common bytes; after a SIGNAL, or to another buffer or
    core, or behind a WAIT only, it is not."""
    b = _tiny()
    g, tags = list(b.streams["global"]), list(b.tags["global"])
    i = next(j for j, x in enumerate(g) if x.op == "LOAD" and x["length"] * x["count"] > 8)
    x = g[i]
    shifted = Instr("LOAD", dict(x.f, buf_addr=x["buf_addr"] + 1))
    bad = _with_global(b, g[:i + 1] + [shifted] + g[i + 1:], tags[:i + 1] + [-1] + tags[i + 1:])
    found = ld_overlaps(bad)
    ld_pc = sum(1 for y in g[:i] if y.unit == "LD")
    n = x["count"] * x["length"]
    assert len(found) == 1 and (found[0].first, found[0].second) == (ld_pc, ld_pc + 1)
    assert (found[0].lo, found[0].hi) == (x["buf_addr"] + 1, x["buf_addr"] + n)
    with pytest.raises(ValueError, match="either order"):
        check_ld_order(bad)
    sig = Instr("SIGNAL", dict(unit=0, sem=0, count=1))     # unit 0: LD
    wait = Instr("WAIT", dict(unit=0, sem=0, count=0))
    ok = _with_global(b, g[:i + 1] + [sig, shifted] + g[i + 1:],
                      tags[:i + 1] + [-1, -1] + tags[i + 1:])
    assert ld_overlaps(ok) == []
    still = _with_global(b, g[:i + 1] + [wait, shifted] + g[i + 1:],
                         tags[:i + 1] + [-1, -1] + tags[i + 1:])
    assert len(ld_overlaps(still)) == 1
    other = Instr("LOAD", dict(x.f, buf=BUFS["A"], core=0, buf_addr=0)) \
        if x["buf"] != BUFS["A"] else Instr("LOAD", dict(x.f, core=x["core"] + 1))
    assert ld_overlaps(_with_global(b, g[:i + 1] + [other] + g[i + 1:],
                                    tags[:i + 1] + [-1] + tags[i + 1:])) == []
