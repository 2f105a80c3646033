# amaranth: UnusedElaboratable=no
"""tb.system.axi_mem.AxiMemory in amaranth.sim against a byte-array model of AXI4 (IHI 0022).

A manager written here issues random INCR bursts (reads several in flight, writes with random
strobes) under random R / B back-pressure; every read beat must equal a numpy byte array that
the test updates with the same writes, every first beat must come ``latency`` cycles or more
after its AR handshake (exactly ``latency`` when nothing is ahead of it), responses come in
request order with their ids, and bad bursts get SLVERR / DECERR without touching the memory.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.system.axi import RESP_DECERR, RESP_OKAY, RESP_SLVERR
from tb.system.axi_mem import AxiMemory

W, B, DEPTH = 64, 8, 256        # a small memory: 64-bit words, 2 KiB


def _run(dut, *benches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for b in benches:
        sim.add_testbench(b)
    sim.run()


def _bursts(rng, n, *, depth=DEPTH):
    """``n`` legal read/write bursts ``(addr, len)`` inside the memory, within 4 KiB."""
    out = []
    for _ in range(n):
        ln = rng.randrange(0, 16)
        word = rng.randrange(0, depth - ln)
        out.append((word * B, ln))
    return out


@pytest.mark.parametrize("latency,outstanding", [(1, 1), (5, 4)])
def test_random_bursts_match_a_byte_model(latency, outstanding):
    rng = random.Random(latency * 7 + outstanding)
    dut = AxiMemory(depth=DEPTH, data_width=W, addr_width=16, latency=latency,
                    outstanding=outstanding, dbg_words=2)
    model = np.zeros(DEPTH * B, np.uint8)
    writes = _bursts(rng, 12)
    reads = _bursts(rng, 24)
    wbeats = [[(rng.getrandbits(W), rng.getrandbits(B)) for _ in range(n + 1)] for _, n in writes]
    log = {"ar": [], "r": [], "b": 0}

    async def writer(ctx):
        for (addr, ln), beats in zip(writes, wbeats):
            ctx.set(dut.bus.awaddr, addr)
            ctx.set(dut.bus.awlen, ln)
            ctx.set(dut.bus.awsize, 3)
            ctx.set(dut.bus.awburst, 1)
            ctx.set(dut.bus.awid, 1)
            ctx.set(dut.bus.awvalid, 1)
            while not ctx.get(dut.bus.awready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(dut.bus.awvalid, 0)
            for k, (d, s) in enumerate(beats):
                ctx.set(dut.bus.wdata, d)
                ctx.set(dut.bus.wstrb, s)
                ctx.set(dut.bus.wlast, k == ln)
                ctx.set(dut.bus.wvalid, 1)
                while not ctx.get(dut.bus.wready):
                    await ctx.tick()
                await ctx.tick()
                for i in range(B):
                    if s >> i & 1:
                        model[addr + k * B + i] = d >> (8 * i) & 0xFF
            ctx.set(dut.bus.wvalid, 0)
            ctx.set(dut.bus.bready, 1)
            while not ctx.get(dut.bus.bvalid):
                await ctx.tick()
            assert ctx.get(dut.bus.bresp) == RESP_OKAY and ctx.get(dut.bus.bid) == 1
            await ctx.tick()
            ctx.set(dut.bus.bready, 0)
            log["b"] += 1
        # now the reads, several in flight (issued by `requester`, consumed by `reader`)
        log["writes_done"] = True

    async def requester(ctx):
        cycle = 0
        while not log.get("writes_done"):
            await ctx.tick()
            cycle += 1
        for i, (addr, ln) in enumerate(reads):
            ctx.set(dut.bus.araddr, addr)
            ctx.set(dut.bus.arlen, ln)
            ctx.set(dut.bus.arsize, 3)
            ctx.set(dut.bus.arburst, 1)
            ctx.set(dut.bus.arid, i & 1)
            ctx.set(dut.bus.arvalid, 1)
            while not ctx.get(dut.bus.arready):
                await ctx.tick()
                cycle += 1
            log["ar"].append((cycle, model[addr:addr + (ln + 1) * B].copy(), ln, i & 1))
            await ctx.tick()
            cycle += 1
            ctx.set(dut.bus.arvalid, 0)
            for _ in range(rng.randrange(0, 3)):
                await ctx.tick()
                cycle += 1

    async def reader(ctx):
        cycle = 0
        got = 0
        beat = 0
        first = {}
        while got < len(reads):
            ready = rng.random() < 0.7
            ctx.set(dut.bus.rready, ready)
            if ready and ctx.get(dut.bus.rvalid):
                ar_cycle, want, ln, rid = log["ar"][got]
                if beat == 0:
                    first[got] = cycle
                    assert cycle - ar_cycle >= latency, (got, cycle, ar_cycle)
                d = ctx.get(dut.bus.rdata)
                assert ctx.get(dut.bus.rid) == rid and ctx.get(dut.bus.rresp) == RESP_OKAY
                assert ctx.get(dut.bus.rlast) == (beat == ln)
                assert d == int.from_bytes(want[beat * B:(beat + 1) * B].tobytes(), "little"), \
                    (got, beat)
                beat += 1
                if beat > ln:
                    got, beat = got + 1, 0
            await ctx.tick()
            cycle += 1
        log["first"] = first

    _run(dut, writer, requester, reader)
    assert log["b"] == len(writes)
    # a burst with nothing ahead of it starts exactly `latency` cycles after its request
    assert log["first"][0] - log["ar"][0][0] == latency


def test_bad_bursts_and_the_debug_port():
    """SLVERR for a FIXED burst or a narrow size, DECERR past the end; neither writes; the debug
    port reads and writes dbg_words words with byte strobes."""
    dut = AxiMemory(depth=DEPTH, data_width=W, addr_width=16, latency=2, dbg_words=2)
    seen = {}

    async def bench(ctx):
        # debug write: two words at word 10, bytes 0..11 only
        ctx.set(dut.dbg_addr, 10)
        ctx.set(dut.dbg_wdata, (1 << 128) - 1)
        ctx.set(dut.dbg_wstrb, 0x0FFF)
        await ctx.tick()
        ctx.set(dut.dbg_wstrb, 0)
        seen["dbg"] = ctx.get(dut.dbg_rdata)
        ctx.set(dut.bus.rready, 1)
        ctx.set(dut.bus.bready, 1)
        for burst, size, addr, ln in [(0, 3, 80, 0), (1, 2, 80, 0), (1, 3, DEPTH * B - 8, 1),
                                      (1, 3, 1 << 15, 0), (1, 3, 80, 1)]:
            # write all-ones over word 10 (a bad burst must not land), then read it back
            ctx.set(dut.bus.awaddr, addr)
            ctx.set(dut.bus.awlen, ln)
            ctx.set(dut.bus.awsize, size)
            ctx.set(dut.bus.awburst, burst)
            ctx.set(dut.bus.awvalid, 1)
            await ctx.tick()
            ctx.set(dut.bus.awvalid, 0)
            for k in range(ln + 1):
                ctx.set(dut.bus.wdata, 0x1122334455667788)
                ctx.set(dut.bus.wstrb, 0xFF)
                ctx.set(dut.bus.wlast, k == ln)
                ctx.set(dut.bus.wvalid, 1)
                await ctx.tick()
            ctx.set(dut.bus.wvalid, 0)
            while not ctx.get(dut.bus.bvalid):
                await ctx.tick()
            bresp = ctx.get(dut.bus.bresp)
            await ctx.tick()
            ctx.set(dut.bus.araddr, addr)
            ctx.set(dut.bus.arlen, ln)
            ctx.set(dut.bus.arsize, size)
            ctx.set(dut.bus.arburst, burst)
            ctx.set(dut.bus.arvalid, 1)
            await ctx.tick()
            ctx.set(dut.bus.arvalid, 0)
            while not ctx.get(dut.bus.rvalid):
                await ctx.tick()
            rresp, rdata = ctx.get(dut.bus.rresp), ctx.get(dut.bus.rdata)
            for _ in range(ln + 1):
                await ctx.tick()
            seen[(burst, size, addr)] = (bresp, rresp, rdata, ctx.get(dut.dbg_rdata))

    _run(dut, bench)
    assert seen["dbg"] == (1 << 96) - 1
    assert seen[(0, 3, 80)] == (RESP_SLVERR, RESP_SLVERR, 0, (1 << 96) - 1)
    assert seen[(1, 2, 80)] == (RESP_SLVERR, RESP_SLVERR, 0, (1 << 96) - 1)
    assert seen[(1, 3, DEPTH * B - 8)][:3] == (RESP_DECERR, RESP_DECERR, 0)
    assert seen[(1, 3, 1 << 15)][:3] == (RESP_DECERR, RESP_DECERR, 0)
    word = 0x1122334455667788
    assert seen[(1, 3, 80)] == (RESP_OKAY, RESP_OKAY, word, word | word << 64)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="depth"):
        AxiMemory(depth=100)
    with pytest.raises(ValueError, match="latency"):
        AxiMemory(depth=64, latency=0)
    with pytest.raises(ValueError, match="storage"):
        AxiMemory(depth=64, storage="ddr4")


def test_fast_system_checks_its_parameters():
    from hw.system.accelerator import Accelerator
    from tb.system.fast import FastSystem
    with pytest.raises(ValueError, match="mem_bytes"):
        FastSystem(accelerator=Accelerator(config="small:L=1"), mem_bytes=3 << 20)
    with pytest.raises(TypeError, match="Accelerator"):
        FastSystem(accelerator="small:L=1", mem_bytes=1 << 20)


@pytest.mark.parametrize("ports", [2, 4])
def test_read_ports_each_answer_their_own_bursts(ports):
    """``read_ports``: the memory filled through the debug port, then every port (``bus``,
    ``rbus1`` ..) issues random bursts at once under random back-pressure: each port's beats
    equal the byte model, in its own request order, no earlier than ``latency`` after its AR;
    the read-only ports never take a write."""
    rng = random.Random(ports)
    lat = 3
    dut = AxiMemory(depth=DEPTH, data_width=W, addr_width=16, latency=lat, dbg_words=2,
                    read_ports=ports)
    model = np.frombuffer(rng.randbytes(DEPTH * B), np.uint8).copy()
    buses = [dut.bus] + [getattr(dut, f"rbus{k}") for k in range(1, ports)]
    reads = [_bursts(rng, 10) for _ in range(ports)]
    log = {"loaded": False, "ar": [[] for _ in range(ports)], "done": 0}

    async def loader(ctx):
        for w in range(0, DEPTH, 2):
            ctx.set(dut.dbg_addr, w)
            ctx.set(dut.dbg_wdata, int.from_bytes(model[w * B:(w + 2) * B].tobytes(), "little"))
            ctx.set(dut.dbg_wstrb, (1 << (2 * B)) - 1)
            await ctx.tick()
        ctx.set(dut.dbg_wstrb, 0)
        for bus in buses[1:]:
            ctx.set(bus.awvalid, 1)
            ctx.set(bus.wvalid, 1)
        await ctx.delay(1e-10)
        for bus in buses[1:]:
            assert not ctx.get(bus.awready) and not ctx.get(bus.wready) and not ctx.get(bus.bvalid)
            ctx.set(bus.awvalid, 0)
            ctx.set(bus.wvalid, 0)
        log["loaded"] = True

    def requester(p):
        async def bench(ctx):
            bus, cycle = buses[p], 0
            while not log["loaded"]:
                await ctx.tick()
                cycle += 1
            for addr, ln in reads[p]:
                ctx.set(bus.araddr, addr)
                ctx.set(bus.arlen, ln)
                ctx.set(bus.arsize, 3)
                ctx.set(bus.arburst, 1)
                ctx.set(bus.arvalid, 1)
                while not ctx.get(bus.arready):
                    await ctx.tick()
                    cycle += 1
                log["ar"][p].append((cycle, model[addr:addr + (ln + 1) * B].copy(), ln))
                await ctx.tick()
                cycle += 1
                ctx.set(bus.arvalid, 0)
        return bench

    def reader(p):
        async def bench(ctx):
            bus, cycle, got, beat = buses[p], 0, 0, 0
            while got < len(reads[p]):
                ready = rng.random() < 0.7
                ctx.set(bus.rready, ready)
                if ready and ctx.get(bus.rvalid):
                    ar_cycle, want, ln = log["ar"][p][got]
                    if beat == 0:
                        assert cycle - ar_cycle >= lat
                    assert ctx.get(bus.rlast) == (beat == ln)
                    assert ctx.get(bus.rdata) == int.from_bytes(
                        want[beat * B:(beat + 1) * B].tobytes(), "little"), (p, got, beat)
                    beat += 1
                    if beat > ln:
                        got, beat = got + 1, 0
                await ctx.tick()
                cycle += 1
            log["done"] += 1
        return bench

    _run(dut, loader, *[requester(p) for p in range(ports)], *[reader(p) for p in range(ports)])
    assert log["done"] == ports
