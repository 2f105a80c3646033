"""cocotb test of tb.core.system.CoreSystem: a whole Binary runs in the simulator on its own.

params: ``mode`` ("system": the top is CoreSystem; "harness": the top is hw.core.Core driven by
the Python harness, to measure its speed on the same Binary), ``binary`` (a saved
sim.compile.Binary .npz), ``input`` (.npy), ``max_cycles``, ``poll`` (cycles per Python check
of ``done``), ``dbg_bytes`` (CoreSystem's debug read width), ``harness_cycles`` (harness mode:
cycles to run).

System mode: after reset the testbench only looks at ``done`` / ``error`` / ``fault`` every
``poll`` cycles, then reads the outputs from the DRAM through the debug port and compares them
bit for bit with sim.golden and sim.funcsim. It writes ``system.json`` (cycles, the wall time of
the run loop, simulated cycles per second) into the run directory; the pytest side compares the
cycle count with sim.perf.
"""

import json
import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, Timer

from sim.compile import Binary
from tb.reference import assert_matches_references
from tb.rtl import params
from tb.core.icarus import kick_comb_blocks
from tb.units.stream import PERIOD_NS, start_clock


def _int(h) -> int:
    """The value of ``h``; after reset every output the testbench reads must be 0/1 on both
    simulators (an X read as 0 would hide an error, a fault or a missing ``done``)."""
    v = h.value
    assert v.is_resolvable, f"{h._name} reads {v} (X/Z) after reset"
    return int(v)


async def read_dram(dut, addr: int, n: int, width: int) -> bytes:
    """``n`` DRAM bytes at ``addr`` through CoreSystem's debug port (``width`` bytes a read)."""
    out = bytearray()
    for a in range(addr, addr + n, width):
        dut.dbg_addr.value = a
        await Timer(1, unit="ns")
        out += _int(dut.dbg_data).to_bytes(width, "little")
    return bytes(out[:n])


async def run_system(dut, binary, x, p) -> dict:
    poll, max_cycles = p.get("poll", 1000), p.get("max_cycles", 1_000_000)
    dut.dbg_addr.value = 0
    if cocotb.SIM_NAME.lower().startswith("icarus"):
        kicked = await kick_comb_blocks(dut)
        dut._log.info(f"toggled {kicked} always @* trigger registers")
    await start_clock(dut)          # reset for two cycles, returns after a falling edge
    t0, c0 = time.perf_counter(), time.process_time()
    checks = 0
    while True:
        # one timer per poll, not one trigger per clock edge: no Python between the checks
        await Timer(poll * PERIOD_NS, unit="ns")
        checks += 1
        err, fault = _int(dut.error), _int(dut.fault)
        assert err == 0, f"core error bits {err:03b} after {_int(dut.cycles)} cycles"
        assert fault == 0, f"CoreSystem fault bits {fault:b} (see tb.core.system.FAULTS)"
        if _int(dut.done):
            break
        assert checks * poll < max_cycles, f"not done after {checks * poll} cycles"
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    cycles = _int(dut.cycles)
    await FallingEdge(dut.clk)
    dram = np.zeros(binary.dram.size, np.uint8)
    for name in binary.prog.outputs:
        t = binary.prog.tensors[name]
        sym = binary.symbols[f"tensor:{name}"]
        n = int(np.prod(t.shape)) * (4 if t.bits > 8 else 1)
        raw = await read_dram(dut, sym["addr"], n, p.get("dbg_bytes", 64))
        dram[sym["addr"]:sym["addr"] + n] = np.frombuffer(raw, np.uint8)
    out = binary.read_outputs(dram)
    assert_matches_references(binary, x, out)
    ran = checks * poll         # clock cycles the simulator ran (done is seen at a check)
    dut._log.info(f"done after {cycles} cycles; {ran} cycles simulated in {wall:.2f} s "
                  f"({ran / wall:.0f} cycles/s, {ran / cpu:.0f} per CPU second); outputs == "
                  f"sim.golden == sim.funcsim")
    return {"cycles": cycles, "sim_cycles": ran, "wall_s": wall, "cycles_per_s": ran / wall,
            "cpu_s": cpu, "cycles_per_cpu_s": ran / cpu, "checks": checks}


async def run_harness(dut, binary, x, p) -> dict:
    """The Python harness (tb.core.cocotb_core) on the same Binary for ``harness_cycles``
    cycles: its speed, for the ratio (the run is cut short, so no output check here)."""
    from tb.core.cocotb_core import run_program
    n = p["harness_cycles"]
    await start_clock(dut)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        await run_program(dut, "harness", binary.prog, binary.cfg, x, max_cycles=n)
        raise AssertionError(f"the Binary finished within {n} cycles: choose fewer")
    except AssertionError as e:
        if "did not finish" not in str(e):
            raise
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"cycles": n, "wall_s": wall, "cycles_per_s": n / wall, "cpu_s": cpu,
            "cycles_per_cpu_s": n / cpu}


@cocotb.test()
async def system_runs_binary(dut):
    p = params()
    binary = Binary.load(p["binary"])
    x = np.load(p["input"])
    run = {"system": run_system, "harness": run_harness}[p["mode"]]
    res = await run(dut, binary, x, p)
    with open(f"{p['mode']}.json", "w") as f:
        json.dump(res, f)
