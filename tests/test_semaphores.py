# amaranth: UnusedElaboratable=no
"""hw.system.semaphores.SemaphoreFile in amaranth.sim against a Python model of ``sim.isa``'s
SIGNAL / WAIT (``tb.system.sem_model``: written from the ISA's definition, not from the HDL).

Random traffic (fixed seeds) checked every cycle: a WAIT is never taken before the model's
counter reaches its count, sufficient WAITs and all SIGNALs are taken within a bound, and at
the end each counter's value is read back through WAITs (``value`` answered, ``value + 1``
not). The same traffic runs on the Verilog in tb/test_semaphores_rtl.py.
"""

import random

import pytest
from amaranth import Elaboratable, Module, ResetInserter, Signal
from amaranth.sim import Simulator

from hw.system.semaphores import SemaphoreFile
from tb.system.sem_model import SemTraffic


class _Top(Elaboratable):
    """The file with a synchronous reset the testbench drives (the Accelerator's START)."""

    def __init__(self, dut):
        self.dut, self.rst = dut, Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = ResetInserter(self.rst)(self.dut)
        return m


def _run(top, bench):
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _plain(v):
    """The traffic's id ``v`` is counter ``v`` (one bank: no frame field)."""
    return v, None


def _two_frames(base, count):
    """The traffic's virtual id ``v`` is counter ``v % count`` of frame ``base + v // count``
    (two frames in flight on a two-bank file; the frame field counts modulo 4)."""
    return lambda v: (v % count, (base + v // count) % 4)


def _offer(ctx, port, req, route):
    ctx.set(port.valid, req is not None)
    if req is not None:
        sem, frame = route(req[0])
        ctx.set(port.payload.sem, sem)
        if frame is not None:
            ctx.set(port.payload.frame, frame)
        ctx.set(port.payload.count, req[1])


async def _step(ctx, dut, t, route=_plain, **kw):
    for i, (sig, wai) in enumerate(t.offers(**kw)):
        _offer(ctx, dut.signal[i], sig, route)
        _offer(ctx, dut.wait[i], wai, route)
    t.observe([ctx.get(s.ready) for s in dut.signal], [ctx.get(w.ready) for w in dut.wait])
    assert ctx.get(dut.fault) == 0
    await ctx.tick()


async def _round(ctx, dut, t, cycles, ids, route=_plain):
    """``cycles`` of traffic, the drain, then each counter of ``ids`` read back through port
    0's WAIT (``value`` answered, ``value + 1`` not)."""
    for _ in range(cycles):
        await _step(ctx, dut, t, route)
    for new_s, new_w, limit, empty in t.drain_phases():
        for _ in range(limit):
            if empty and all(x is None for x in getattr(t, empty)):
                break
            await _step(ctx, dut, t, route, new_signals=new_s, new_waits=new_w)
        assert empty is None or all(x is None for x in getattr(t, empty)), getattr(t, empty)
    w = dut.wait[0]
    for v, cnt, expect in t.final_checks(ids):
        _offer(ctx, w, (v, cnt), route)
        got = False
        for _ in range(t.wait_bound):
            got = bool(ctx.get(w.ready))
            await ctx.tick()
            if got:
                break
        ctx.set(w.valid, 0)
        await ctx.tick()
        assert got == expect, (v, t.model.value(v), cnt, got)


@pytest.mark.parametrize("ports,count,seed", [(9, 6, 1), (17, 40, 2), (4, 1, 3), (1, 1, 4)])
def test_random_traffic_against_the_isa_model(ports, count, seed):
    """Many waiters and signallers, ids drawn from few counters (collisions, back-to-back
    signals to one id), then a reset (counters back to 0 through the clearing sweep) and
    a second round on the old RAM contents."""
    dut = SemaphoreFile(count=count, ports=ports)
    top = _Top(dut)
    rng = random.Random(seed)

    async def bench(ctx):
        for rnd in range(2):
            t = SemTraffic(ports=ports, sems=count, count=count, rng=rng,
                           idle=0.6 if rnd else 0.3)
            await _round(ctx, dut, t, 600, range(count))
            assert t.taken_signals > 100 and t.taken_waits > 50, (t.taken_signals,
                                                                  t.taken_waits)
            ctx.set(top.rst, 1)         # START: every counter back to 0
            await ctx.tick()
            ctx.set(top.rst, 0)

    _run(top, bench)


def test_counts_up_to_the_field_max_saturate():
    """Signals of the largest count (4095) push counters past 16 bits: they saturate, so every
    WAIT (12-bit count) stays answered as with sim.isa's unbounded counters (a wrapping 16-bit
    counter would fall back below 4095)."""
    dut = SemaphoreFile(count=4, ports=6)
    top = _Top(dut)
    rng = random.Random(5)

    async def bench(ctx):
        t = SemTraffic(ports=6, sems=4, count=4, rng=rng, big=0.9, idle=0.2)
        await _round(ctx, dut, t, 400, range(4))
        assert max(t.model.counters.values()) > 3 * (1 << 16)

    _run(top, bench)


def test_ids_past_the_file_fault_with_their_port():
    dut = SemaphoreFile(count=12, ports=5)

    async def bench(ctx):
        await ctx.tick()
        ctx.set(dut.signal[1].valid, 1)             # a bad SIGNAL is dropped (taken) ...
        ctx.set(dut.signal[1].payload.sem, 12)
        ctx.set(dut.wait[3].valid, 1)               # ... a bad WAIT never answered
        ctx.set(dut.wait[3].payload.sem, 40)
        assert ctx.get(dut.signal[1].ready) == 1
        await ctx.tick()
        ctx.set(dut.signal[1].valid, 0)
        for _ in range(20):
            assert ctx.get(dut.wait[3].ready) == 0
            await ctx.tick()
        assert ctx.get(dut.fault) == 1 and ctx.get(dut.fault_port) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("kw,exc", [
    (dict(count=0, ports=4), ValueError), (dict(count=(1 << 16) + 1, ports=4), ValueError),
    (dict(count=8, ports=0), ValueError), (dict(count=8, ports=257), ValueError),
    (dict(count=8.0, ports=4), TypeError), (dict(count=8, ports=True), TypeError)])
def test_parameters_are_checked(kw, exc):
    with pytest.raises(exc):
        SemaphoreFile(**kw)


# -- two banks: frames back to back (sim.isa.wait_passes) ----------------------------------------

@pytest.mark.parametrize("ports,count,seed", [(7, 5, 11), (12, 16, 12)])
def test_two_banks_keep_frames_apart_without_clearing(ports, count, seed):
    """Rounds of random traffic over frames f and f + 1, f = 0 .. 4, with no reset between
    rounds: each frame's counters are its own (a model counter per (frame, id)), and frame
    f + 2 starts from 0 in the bank frame f filled (the epoch bit, no sweep); at the end of each
    round every counter of both frames is read back through WAITs."""
    dut = SemaphoreFile(count=count, ports=ports, banks=2)
    rng = random.Random(seed)

    async def bench(ctx):
        for _ in range(count * 2 + 4):           # the sweep after reset
            await ctx.tick()
        carried = {}
        for base in range(5):
            t = SemTraffic(ports=ports, sems=2 * count, count=count, rng=rng, idle=0.4)
            t.model.counters = dict(carried)
            await _round(ctx, dut, t, 300, range(2 * count), _two_frames(base, count))
            assert t.taken_signals > 50 and t.taken_waits > 30
            # frame base + 1 becomes the older frame; frame base + 2 starts at 0
            carried = {v - count: c for v, c in t.model.counters.items() if v >= count}

    _run(_Top(dut), bench)


def test_free_wait_passes_like_a_sufficient_one():
    """``free`` (a ``prev`` WAIT in frame 0) is answered on a counter at 0 with the latency of
    a sufficient WAIT (SemaphoreFile.WAIT_LATENCY); the same WAIT without it is not."""
    dut = SemaphoreFile(count=4, ports=2, banks=2)

    async def bench(ctx):
        for _ in range(12):
            await ctx.tick()
        w = dut.wait[1]
        for free, expect in ((1, SemaphoreFile.WAIT_LATENCY), (0, None)):
            ctx.set(w.valid, 1)
            ctx.set(w.payload.sem, 3)
            ctx.set(w.payload.count, 9)
            ctx.set(w.payload.free, free)
            got = None
            for c in range(10):
                if ctx.get(w.ready):
                    got = c
                    break
                await ctx.tick()
            assert got == expect, (free, got)
            ctx.set(w.valid, 0)
            await ctx.tick()

    _run(_Top(dut), bench)
