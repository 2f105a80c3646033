"""cocotb test of hw.system.semaphores.SemaphoreFile's Verilog: the random traffic of
``tb.system.sem_model`` (a model written from ``sim.isa``), checked every cycle, two rounds with
a reset between them (the clearing sweep over the first round's RAM contents), then each
counter's value read back through WAITs.

params: ``ports``, ``count``, ``sems`` (ids used), ``seed``, ``cycles`` (per round), ``big``.
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

PERIOD_NS = 10


def _port(dut, kind, i, field):
    return getattr(dut, f"{kind}__{i}__{field}")


async def _step(dut, t, **kw):
    await FallingEdge(dut.clk)
    for i, (sig, wai) in enumerate(t.offers(**kw)):
        _port(dut, "signal", i, "valid").value = int(sig is not None)
        _port(dut, "signal", i, "payload").value = pack(*sig) if sig else 0
        _port(dut, "wait", i, "valid").value = int(wai is not None)
        _port(dut, "wait", i, "payload").value = pack(*wai) if wai else 0
    await ReadOnly()
    t.observe([int(_port(dut, "signal", i, "ready").value) for i in range(t.ports)],
              [int(_port(dut, "wait", i, "ready").value) for i in range(t.ports)])
    assert int(dut.fault.value) == 0
    await RisingEdge(dut.clk)


async def _round(dut, t, cycles):
    for _ in range(cycles):
        await _step(dut, t)
    for new_s, new_w, limit, empty in t.drain_phases():
        for _ in range(limit):
            if empty and all(x is None for x in getattr(t, empty)):
                break
            await _step(dut, t, new_signals=new_s, new_waits=new_w)
        assert empty is None or all(x is None for x in getattr(t, empty)), getattr(t, empty)
    for sem, cnt, expect in t.final_checks(range(t.sems)):
        got = False
        for _ in range(t.wait_bound):
            await FallingEdge(dut.clk)
            _port(dut, "wait", 0, "valid").value = 1
            _port(dut, "wait", 0, "payload").value = pack(sem, cnt)
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
