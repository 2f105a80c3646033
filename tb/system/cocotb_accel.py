"""cocotb test of ``hw.system.Accelerator``: a whole Binary through AXI, as on the board.

The DDR is cocotbext-axi's ``AxiRam`` on ``m_axi`` (and one more ``AxiRam`` on the same memory
per further port, ``m_axi1`` .. ``m_axi3``, when the accelerator has ``axi_ports`` > 1); the CPU
is an ``AxiLiteMaster`` on ``s_axi``
doing exactly what a runtime does (``tb.system.host``): place the instruction image
(``sim.image``) and the data image with the input in DRAM, write ``INSTR_TABLE``,
``DATA_BASE``, ``DATA_SIZE``, enable the interrupt, write ``CTRL.START``, then sleep until
``irq``; on ``HOST_REQ`` run the HOST_LN (``sim.funcsim.host_ln``) on the DRAM and acknowledge;
on ``DONE`` read the outputs and the performance counters. The outputs are compared bit for bit
with ``sim.golden`` and ``sim.funcsim``.

params: ``binary`` (.npz), ``input`` (.npy), ``case`` ("run": the network; "illegal_opcode",
"dma_window", "watchdog", "start_busy": an error case, see ``tb.test_accelerator_rtl``),
``pause`` (random AXI back-pressure on every AxiRam channel), ``seed``, ``max_cycles``,
``watchdog`` (cycles, the watchdog case). The watchdog case corrupts a WAIT so that it can
never be satisfied, expects error WATCHDOG, then soft-resets, reloads the clean image and runs
the network to the end (bit-exact): an error never leaves the accelerator stuck.
Writes ``accel.json`` (cycles, counters, wall time, bursts per port, ``CONFIG_L.AXI_PORTS``).
"""

from __future__ import annotations

import json
import random
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from hw.system.regmap import REGMAP
from sim import golden
from sim.compile import Binary
from tb.reference import assert_matches_references
from tb.rtl import params
from tb.system.axi_env import axi_env, extra_ports
from tb.system.host import Host, layout
from tb.system.monitor import AxiMonitor


def _pauses(rng: random.Random, p_pause: float):
    while True:
        yield rng.random() < p_pause


@cocotb.test()
async def accelerator_runs_binary(dut):
    p = params()
    binary = Binary.load(p["binary"])
    x = np.load(p["input"])
    _base, end = layout(binary)
    ram, cpu = await axi_env(dut, end)
    more = extra_ports(dut, ram)        # axi_ports > 1: the same DDR behind every port
    mons = [AxiMonitor(dut, "m_axi_", max_burst=256)] + [
        AxiMonitor(dut, prefix, max_burst=256) for prefix, _ in more]
    if p.get("pause"):
        rng = random.Random(p.get("seed", 1))
        for r in [ram] + [r for _, r in more]:
            for ch in (r.read_if.ar_channel, r.read_if.r_channel, r.write_if.aw_channel,
                       r.write_if.w_channel, r.write_if.b_channel):
                ch.set_pause_generator(_pauses(random.Random(rng.random()), 0.3))
    host = Host(cpu, ram, dut)
    await ClockCycles(dut.clk, 2)
    await host.check_id(binary.cfg)
    ports = REGMAP.field_of("CONFIG_L.AXI_PORTS")
    axi_ports = (await host.read("CONFIG_L") >> ports.lsb) & ((1 << ports.width) - 1)

    case = p.get("case", "run")
    xq = golden._check_input(binary.prog, x)
    corrupt = {"illegal_opcode": "illegal_opcode", "dma_window": "dma_window",
               "watchdog": "endless_wait"}.get(case)
    await host.load(binary, xq, corrupt=corrupt)
    if case == "watchdog":
        await host.write("WATCHDOG", p.get("watchdog", 2000))
    takes, host_cycles = [], []
    from tb.system.trace import host_service
    cocotb.start_soon(host_service(dut, host_cycles))
    if p.get("trace"):      # per-instruction take cycles (tb.system.trace), written below
        from sim.image import n_queues
        from tb.system.trace import record
        bursts = [] if p.get("trace") == "bursts" else None
        cocotb.start_soon(record(dut, n_queues(binary.cfg.L), takes, bursts))
    t0, c0 = time.perf_counter(), time.process_time()
    await host.start()
    if case == "start_busy":
        await ClockCycles(dut.clk, 20)
        await host.start()
    res = await host.wait(max_cycles=p.get("max_cycles", 5_000_000))
    rec = {"case": case, **res, "axi_ports": axi_ports}
    if case != "run":
        assert res["status"] == "error", f"case {case}: expected an error, got {res}"
        if case == "start_busy":
            # the refused START does not disturb the run: it ends normally (STATUS.DONE, with
            # the START_BUSY error still reported), bit-exact
            res = await host.wait(max_cycles=p.get("max_cycles", 5_000_000))
            done_bit = REGMAP.field_of("STATUS.DONE").mask
            res["status"] = "done" if await host.read("STATUS") & done_bit else res["status"]
            rec["after_error"] = res["status"]
        else:
            # the transfers already on the bus complete (nothing is cut off mid-burst)
            for _ in range(1000):
                if all(mon.quiet() for mon in mons):
                    break
                await ClockCycles(dut.clk, 100)
        if case == "watchdog":
            # recovery: soft reset, the clean image, and the same Binary runs to the end
            await host.soft_reset()
            await host.write("WATCHDOG", 0)
            await host.load(binary, xq)
            t0, c0 = time.perf_counter(), time.process_time()
            await host.start()
            res = await host.wait(max_cycles=p.get("max_cycles", 5_000_000))
            rec["after_reset"] = res["status"]
    wall, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    for mon in mons:
        mon.check_quiet()
    lat = sorted(t for mon in mons for t in mon.latencies)
    rec.update(wall_s=wall, cpu_s=cpu_s, bursts=sum(mon.bursts for mon in mons),
               bursts_per_port=[mon.bursts for mon in mons],
               read_latency_median=lat[len(lat) // 2] if lat else None,
               read_latency_min=lat[0] if lat else None)
    if case in ("run", "watchdog", "start_busy"):
        assert res["status"] == "done", f"run ended with {res}"
        out = host.read_outputs(binary)
        assert_matches_references(binary, x, out)
        rec["counters"] = res["counters"]
        rec["cycles_per_s"] = res["counters"]["CYCLES"] / wall
        dut._log.info(f"done: {res['counters']['CYCLES']} cycles in {wall:.1f} s "
                      f"({rec['cycles_per_s']:.0f} cycles/s); outputs == sim.golden == "
                      f"sim.funcsim; {rec['bursts_per_port']} bursts per AXI port, all legal")
    rec["host_service_cycles"] = host_cycles
    if p.get("trace"):
        rec["trace"] = takes
        if bursts is not None:
            rec["read_bursts"] = bursts
    with open("accel.json", "w") as f:
        json.dump(rec, f)
