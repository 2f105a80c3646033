"""cocotb test: the board runtime (``runtime.run``) drives the RTL accelerator, unchanged.

The DDR is cocotbext-axi's ``AxiRam`` on ``m_axi``, the CPU's bus an ``AxiLiteMaster`` on
``s_axi``; :class:`runtime.cocotb_device.CocotbDevice` puts them (and ``irq``) behind the
runtime's ``Device`` interface, and the runtime's synchronous code runs in a
:func:`cocotb.task.bridge` thread. In order:

1. ``bad_binary`` (a Binary compiled for another config) must be refused before START with a
   ``RunError`` of cause ``config`` (nothing runs);
2. the real run (interrupt, or polling with ``poll``): outputs against ``sim.golden`` and
   ``sim.funcsim``; the counters the runtime returns against the same registers read by the
   testbench's own AXI4-Lite accesses, and the bus-visible ones against the Binary itself:
   ``INSTR_FETCHED`` = the words of the queue table found in the DDR, ``DRAM_RD_BYTES`` = 16 x
   that + the bytes of every LOAD (count x length, ``sim.isa``), ``DRAM_WR_BYTES`` = the bytes
   of every STORE;
3. with ``timeout_s`` far below the run's length (``short_timeout_s``) the runtime must give up
   with cause ``timeout`` (the run is left unfinished: the test ends).

Writes ``runtime.json`` (the result without outputs, the reference figures).
"""

from __future__ import annotations

import json

import cocotb
from cocotb.task import bridge
import numpy as np
from cocotb.triggers import ClockCycles

import runtime
from hw.system.regmap import REGMAP
from runtime.cocotb_device import CocotbDevice
from sim.compile import Binary
from sim.image import n_queues, parse_table
from tb.reference import assert_matches_references
from tb.rtl import params
from tb.system.axi_env import axi_env

BASE = 0x1000       #: bus address of the runtime's buffer in the AxiRam


def _dma_bytes(binary, op):
    return sum(i.f["count"] * i.f["length"] for ins in binary.streams.values() for i in ins
               if i.op == op)


@cocotb.test()
async def runtime_runs_binary(dut):
    p = params()
    binary = Binary.load(p["binary"])
    x = np.load(p["input"])
    ram, cpu = await axi_env(dut, BASE + runtime.layout(binary).end)
    dev = CocotbDevice(cpu, ram, dut, base=BASE, irq=not p.get("poll"))
    await ClockCycles(dut.clk, 2)
    run = bridge(runtime.run)
    rec = {}

    if p.get("bad_binary"):
        try:
            await run(dev, Binary.load(p["bad_binary"]), x)
            raise AssertionError("a Binary for another config was started")
        except runtime.RunError as e:
            assert e.cause == "config", e
            rec["bad_binary"] = str(e)
        assert int(await cpu.read_dword(REGMAP["STATUS"].offset)) == 0, "it ran anyway"

    res = await run(dev, binary, x, timeout_s=p.get("timeout_s", 0.05))
    assert_matches_references(binary, x, res.outputs)
    # the counters: the runtime's reading vs the testbench's own register reads
    raw = {}
    for n in res.counters:
        r = REGMAP[n]
        lo = int(await cpu.read_dword(r.offset))
        raw[n] = lo | int(await cpu.read_dword(r.offset + 4)) << 32
    assert raw == res.counters, f"runtime counters {res.counters} != registers {raw}"
    # ... and the bus-visible ones vs the Binary as placed in the DDR
    L = binary.cfg.L
    table = parse_table(np.frombuffer(bytes(ram.read(BASE, 16 * n_queues(L))), np.uint8), L)
    words = sum(w for _, w in table)
    expect = {"INSTR_FETCHED": words,
              "DRAM_RD_BYTES": 16 * words + _dma_bytes(binary, "LOAD"),
              "DRAM_WR_BYTES": _dma_bytes(binary, "STORE")}
    got = {k: res.counters[k] for k in expect}
    assert got == expect, f"counters {got} != from the Binary {expect}"
    assert res.host_requests == sum(i.op == "HOST_LN" for i in binary.streams["global"])
    rec.update(res.as_dict(), expected=expect)
    dut._log.info(f"runtime.run: done, {res.counters['CYCLES']} cycles, outputs == sim.golden, "
                  f"counters == registers == Binary ({expect})")
    if p.get("short_timeout_s"):
        # last: a run given far less time than it needs is reported, one line, cause timeout
        # (it is left running: the test ends here; recovery by SOFT_RESET after an error is
        # tb.test_accelerator_rtl's watchdog case)
        try:
            await run(dev, binary, x, timeout_s=p["short_timeout_s"])
            raise AssertionError(f"the run finished within {p['short_timeout_s']} s")
        except runtime.RunError as e:
            assert e.cause == "timeout", e
            rec["timeout"] = str(e)

    with open("runtime.json", "w") as f:
        json.dump(rec, f)
