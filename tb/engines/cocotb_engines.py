"""cocotb test of the R-MAC engine / MAT engine Verilog: layer cases (tb.engines.cases).

params: ``{"cases": [case dict, ...]}`` (see :mod:`tb.engines.cases`), all for the same engine
configuration, run one after the other in one simulation (so one Verilog build serves them all);
a failing case is reported by name and the others still run. For each case the test drives the schedule's steps one per
cycle (inputs written just after the falling clock edge, outputs sampled 1 ns later, as in
:mod:`tb.units.stream`), collects the output pulses, places them into the layer output and
compares it with the golden output; it also checks the measured cycle count (first input cycle
to the last output pulse, inclusive) against the documented formula ``len(steps) + latency``.
"""

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, Timer

from tb.engines.cases import build
from tb.engines.schedule import decode, pack, unpack
from tb.rtl import params
from tb.units.stream import start_clock


def _drive(dut, step: dict):
    """Write one step; array ports are packed with their element width (port bits / elements:
    9-bit activations, 8-bit weights)."""
    for name, v in step.items():
        h = getattr(dut, name)
        if isinstance(v, int):
            h.value = int(v)
        else:
            h.value = pack(v, len(h) // np.asarray(v).size)


@cocotb.test()
async def engine_layers(dut):
    await start_clock(dut)
    failures = []
    for p in params()["cases"]:
        try:
            await run_case(dut, p)
        except AssertionError as e:
            failures.append(f"{p.get('name', p['kind'])}: {e}")
    assert not failures, "; ".join(failures)


async def run_case(dut, p: dict):
    case = build(p)
    sched = case.schedule
    valid_h, data_h = getattr(dut, case.valid_port), getattr(dut, case.data_port)
    outputs, pulses = [], []
    cycle = 0

    def sample():
        if int(valid_h.value):
            outputs.append(unpack(int(data_h.value), case.width, case.count))
            pulses.append(cycle)

    # defined idle values on every input before the first step
    _drive(dut, {**{k: (0 if isinstance(v, int) else np.zeros_like(v).tolist())
                    for k, v in sched.steps[0].items()}, **case.idle})
    for step in sched.steps:
        _drive(dut, step)
        await Timer(1, unit="ns")
        sample()
        await FallingEdge(dut.clk)
        cycle += 1
    dut.valid.value = 0
    for _ in range(4 * sched.latency + 8):
        if len(outputs) >= len(sched.events):
            break
        await Timer(1, unit="ns")
        sample()
        await FallingEdge(dut.clk)
        cycle += 1
    assert len(outputs) == len(sched.events), \
        f"{len(outputs)} output pulses, expected {len(sched.events)}"
    got = decode(sched, outputs)
    bad = np.argwhere(got != case.expected)
    assert bad.size == 0, (f"{len(bad)} mismatches, first at {bad[0].tolist()}: "
                           f"got {got[tuple(bad[0])]}, expected {case.expected[tuple(bad[0])]}")
    measured = pulses[-1] + 1
    assert measured == sched.cycles, f"measured {measured} cycles, documented {sched.cycles}"
    dut._log.info("%s %s %s: %d steps, %d cycles (formula %d)", p["engine"], p.get("name"), p["kind"],
                  len(sched.steps), measured, sched.cycles)
