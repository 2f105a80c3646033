"""cocotb test of ``tb.system.fast.FastSystem``: a Binary through the accelerator, DRAM in HDL.

The CPU is the board runtime (``runtime.Accelerator``) over
:class:`runtime.cocotb_device.CocotbMemoryDevice`, step by step so that each step is timed:
check the ID and config hash, load (instruction image and data image with the input, through
the memory's debug port; base registers), start, wait for the interrupt (serving the HOST_LN of
a ``HOST_REQ``), read the counters and the outputs. While the accelerator runs nothing in Python
wakes up before its interrupt. The outputs are compared bit for bit with ``sim.golden`` and
``sim.funcsim``.

params: ``binary`` (.npz), ``input`` (.npy), ``base`` and ``mem_bytes`` (the buffer is
``[base, mem_bytes)``), ``dbg_words`` (the debug port's width), ``max_cycles`` (timeout of one
wait), ``frames`` (``FRAMES``: the Binary run that many times back to back on the same input;
with one HOST_LN per frame every frame's outputs are checked, each read when the next frame's
HOST_LN is requested). Writes ``fast.json``: status, counters, cycles, host requests, wall times of load / run /
read-out, simulated cycles per wall second and per CPU second (of the simulator process, which
runs cocotb too) of the run.
"""

from __future__ import annotations

import json
import time

import cocotb
import numpy as np
from cocotb.task import bridge
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

from runtime import Accelerator
from runtime.cocotb_device import CocotbMemoryDevice
from sim import golden
from sim.compile import Binary
from tb.core.icarus import kick_comb_blocks
from tb.reference import assert_matches_references
from tb.rtl import params
from tb.units.stream import PERIOD_NS, start_clock


@cocotb.test()
async def fast_runs_binary(dut):
    p = params()
    binary = Binary.load(p["binary"])
    x = np.load(p["input"])
    xq = golden._check_input(binary.prog, x)
    if cocotb.SIM_NAME.lower().startswith("icarus"):
        await kick_comb_blocks(dut)
    for s in ("awvalid", "wvalid", "arvalid", "bready", "rready"):
        getattr(dut, f"s_axi__{s}").value = 0
    dut.dbg_wstrb.value = 0
    dut.dbg_addr.value = 0
    await start_clock(dut)
    dev = CocotbMemoryDevice(dut, base=p["base"], size=p["mem_bytes"] - p["base"],
                             dbg_words=p["dbg_words"])
    acc = Accelerator(dev)
    # the testbench CPU's HOST_LN service time (what sim.perf is given in place of the board
    # CPU's, as tb.system.run does): from the interrupt's rising edge to the end of the
    # HOST_ACK write, in cycles; the top's ports are all this build makes visible
    rises, acks = [], []
    ack_offset = dev.regmap.offset("HOST_ACK")
    write_word = dev.write_word

    def timed_write(offset, value):
        write_word(offset, value)
        if offset == ack_offset:
            acks.append(get_sim_time("ns") / PERIOD_NS)

    dev.write_word = timed_write

    async def irq_edges():
        while True:
            await RisingEdge(dut.irq)
            rises.append(get_sim_time("ns") / PERIOD_NS)

    cocotb.start_soon(irq_edges())
    t0 = time.perf_counter()
    await bridge(acc.check)(binary.cfg)
    await bridge(acc.load)(binary, xq)
    frames = p.get("frames", 1)
    # frames back to back (FRAMES, docs/system.md): each frame's outputs are final when the next
    # frame's HOST_LN is requested (its tail starts after the previous frame has ended) and
    # before that frame writes its own (after its LayerNorm); read them then
    per_frame = []
    if frames > 1:
        await bridge(dev.write)("FRAMES", frames)
        n_ln = sum(i.op == "HOST_LN" for i in binary.streams["global"])
        serve = acc._serve_host

        def serve_and_read():
            if n_ln == 1 and per_frame_requests[0] >= 1:
                per_frame.append(acc.read_outputs(binary))
            per_frame_requests[0] += 1
            serve()
        per_frame_requests = [0]
        acc._serve_host = serve_and_read
    t1, c1 = time.perf_counter(), time.process_time()
    dut._log.info(f"loaded {acc.layout.end} bytes in {t1 - t0:.1f} s; start")
    await bridge(acc.start)()
    res = await bridge(acc.wait)(timeout_s=p["max_cycles"] * PERIOD_NS * 1e-9)
    t2, c2 = time.perf_counter(), time.process_time()
    assert res.status == "done", acc.error_message(res)
    out = await bridge(acc.read_outputs)(binary)
    t3 = time.perf_counter()
    assert_matches_references(binary, x, out)
    for o in per_frame:
        assert_matches_references(binary, x, o)
    cycles = res.counters["CYCLES"]
    host = [round(a - max(r for r in rises if r <= a)) for a in acks if any(r <= a for r in rises)]
    rec = {**res.as_dict(), "cycles": cycles, "frames": frames,
           "frames_checked": len(per_frame) + 1, "host_service_cycles": host, "load_s": t1 - t0, "run_s": t2 - t1,
           "read_s": t3 - t2, "cycles_per_s": cycles / (t2 - t1), "cpu_s": c2 - c1,
           "cycles_per_cpu_s": cycles / max(c2 - c1, 1e-9)}
    dut._log.info(f"done: {cycles} cycles in {t2 - t1:.1f} s ({rec['cycles_per_s']:.0f} "
                  f"cycles/s, {rec['cycles_per_cpu_s']:.0f} per CPU second; load {t1 - t0:.1f} s, read-out {t3 - t2:.1f} s); outputs == "
                  f"sim.golden == sim.funcsim")
    with open("fast.json", "w") as f:
        json.dump(rec, f)
