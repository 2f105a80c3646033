"""cocotb test of hw.system.semaphores.SemaphoreFile's Verilog: the random traffic of
``tb.system.sem_model`` (a model written from ``sim.isa``), checked every cycle, two rounds with
a reset between them (the clearing sweep over the first round's RAM contents), then each
counter's value read back through WAITs.

params: ``ports``, ``count``, ``sems`` (ids used), ``seed``, ``cycles`` (per round), ``big``,
``frames`` (a file with ``banks=2``: that many more rounds over two frames at a time, no reset).
Inputs are driven after the falling edge; ``ready`` is sampled in the ReadOnly phase before
the rising edge (the signal arbiter's ``ready`` is combinational from the ``valid``\\ s).
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from tb.core.icarus import kick_comb_blocks
from tb.rtl import params
from tb.system.sem_model import SemTraffic, pack

#: bit of ``frame`` in the file's payload (``hw.system.semaphores.FRAME_SEM_LAYOUT``: sem 16,
#: count 12, frame 2, free 1)
FRAME_SHIFT = 28

PERIOD_NS = 10


def _port(dut, kind, i, field):
    return getattr(dut, f"{kind}__{i}__{field}")


def _plain(sem, count):
    return pack(sem, count)


async def _step(dut, t, enc=_plain, **kw):
    await FallingEdge(dut.clk)
    for i, (sig, wai) in enumerate(t.offers(**kw)):
        _port(dut, "signal", i, "valid").value = int(sig is not None)
        _port(dut, "signal", i, "payload").value = enc(*sig) if sig else 0
        _port(dut, "wait", i, "valid").value = int(wai is not None)
        _port(dut, "wait", i, "payload").value = enc(*wai) if wai else 0
    await ReadOnly()
    t.observe([int(_port(dut, "signal", i, "ready").value) for i in range(t.ports)],
              [int(_port(dut, "wait", i, "ready").value) for i in range(t.ports)])
    assert int(dut.fault.value) == 0
    await RisingEdge(dut.clk)


async def _round(dut, t, cycles, enc=_plain):
    for _ in range(cycles):
        await _step(dut, t, enc)
    for new_s, new_w, limit, empty in t.drain_phases():
        for _ in range(limit):
            if empty and all(x is None for x in getattr(t, empty)):
                break
            await _step(dut, t, enc, new_signals=new_s, new_waits=new_w)
        assert empty is None or all(x is None for x in getattr(t, empty)), getattr(t, empty)
    for sem, cnt, expect in t.final_checks(range(t.sems)):
        got = False
        for _ in range(t.wait_bound):
            await FallingEdge(dut.clk)
            _port(dut, "wait", 0, "valid").value = 1
            _port(dut, "wait", 0, "payload").value = enc(sem, cnt)
            await ReadOnly()
            got = bool(int(_port(dut, "wait", 0, "ready").value))
            await RisingEdge(dut.clk)
            if got:
                break
        await FallingEdge(dut.clk)
        _port(dut, "wait", 0, "valid").value = 0
        assert got == expect, (sem, t.model.value(sem), cnt, got)


@cocotb.test()
async def random_traffic_against_the_isa_model(dut):
    p = params()
    rng = random.Random(p["seed"])
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    await kick_comb_blocks(dut)
    for i in range(p["ports"]):
        for kind in ("signal", "wait"):
            _port(dut, kind, i, "valid").value = 0
            _port(dut, kind, i, "payload").value = 0
    for rnd in range(2):
        await FallingEdge(dut.clk)
        dut.rst.value = 1                   # START: every counter back to 0
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        t = SemTraffic(ports=p["ports"], sems=p["sems"], count=p["count"], rng=rng,
                       big=p["big"], idle=0.6 if rnd else 0.3)
        await _round(dut, t, p["cycles"])
        assert t.taken_signals > p["cycles"] // 2 and t.taken_waits > p["cycles"] // 4, \
            (t.taken_signals, t.taken_waits)
        dut._log.info("round %d: %d signals, %d waits, %d cycles", rnd, t.taken_signals,
                      t.taken_waits, t.cycle)
    # frames (banks=2): traffic id v is counter v % sems of frame base + v // sems, two frames
    # in flight, no reset between rounds: frame base + 2 reuses frame base's bank from 0
    carried = {}
    if p.get("frames", 0):
        await FallingEdge(dut.clk)
        dut.rst.value = 1                   # START, then frames 0, 1, ... without another
        await FallingEdge(dut.clk)
        dut.rst.value = 0
    for base in range(p.get("frames", 0)):
        S = p["sems"]

        def enc(v, count, base=base):
            return pack(v % S, count) | ((base + v // S) % 4) << FRAME_SHIFT
        t = SemTraffic(ports=p["ports"], sems=2 * S, count=2 * p["count"], rng=rng,
                       big=p["big"], idle=0.4)         # (count: two banks for the sweep)
        t.model.counters = dict(carried)
        await _round(dut, t, p["cycles"], enc)
        assert t.taken_signals > p["cycles"] // 2, t.taken_signals
        carried = {v - S: c for v, c in t.model.counters.items() if v >= S}
        dut._log.info("frames %d, %d: %d signals, %d waits", base, base + 1, t.taken_signals,
                      t.taken_waits)
