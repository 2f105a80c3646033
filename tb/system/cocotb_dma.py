"""cocotb tests of the DMA engines' Verilog (tb.system.dma_top.DmaTop) with cocotbext-axi.

Two ``AxiRam`` models sharing one memory play the DDR behind the LoadDMA's and the StoreDMA's
AXI ports. Random LOADs fill the top's buffer, then random STOREs write parts of it back to
DRAM; the final DRAM image must equal ``sim.funcsim``'s result for the same descriptors
(tb.system.dma_cases). The same run with random pauses on every AXI channel (cocotbext-axi
pause generators) and random ``wr_stall`` back-pressure must give the same image. A monitor
checks every AR / AW handshake (INCR, size, len <= max_burst - 1, no 4 KB crossing), that
``rlast`` / ``wlast`` close each burst, and at the end that every burst got all its beats and
its response.

params: seed, n_load, n_store, max_burst, data_width, base (DRAM image base address).
"""

from __future__ import annotations

import itertools

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotbext.axi import AxiBus, AxiRam

from hw.system.dma import FAULT_WINDOW, descriptor_layout
from sim.isa import BUFS
from tb.core.icarus import kick_comb_blocks
from tb.rtl import params
from tb.system.dma_cases import machine, random_descriptors, reference

DRAM_BYTES = 64 * 1024      # AxiRam wraps addresses modulo its size: base must be a multiple
PERIOD_NS = 10


class BurstMonitor:
    """Checks the handshakes of one AXI manager port on every rising edge."""

    def __init__(self, dut, prefix, *, lanes, max_burst):
        self.dut, self.p, self.lanes, self.max_burst = dut, prefix, lanes, max_burst
        self.errors = []
        self.ar = self.aw = 0
        self.r_bursts = []      # beats still owed per accepted AR, in order (one ID)
        self.w_bursts = []      # beats still owed per accepted AW
        self.b_owed = 0
        cocotb.start_soon(self._run())

    def sig(self, name):
        return getattr(self.dut, f"{self.p}_{name}")

    def _check(self, kind, addr, length, size, burst):
        n = self.lanes
        beats = length + 1
        if burst != 1:
            self.errors.append(f"{kind} burst type {burst}")
        if size != n.bit_length() - 1:
            self.errors.append(f"{kind} size {size}")
        if beats > self.max_burst:
            self.errors.append(f"{kind} at {addr:#x}: {beats} beats > {self.max_burst}")
        if addr % 4096 + beats * n > 4096:
            self.errors.append(f"{kind} at {addr:#x} of {beats} beats crosses 4 KB")
        return beats

    async def _run(self):
        s = self.sig
        while True:
            await RisingEdge(self.dut.clk)
            if self.dut.rst.value:
                continue
            if s("arvalid").value and s("arready").value:
                self.ar += 1
                self.r_bursts.append(self._check("AR", int(s("araddr").value),
                                                 int(s("arlen").value), int(s("arsize").value),
                                                 int(s("arburst").value)))
            if s("rvalid").value and s("rready").value:
                if not self.r_bursts:
                    self.errors.append("R beat without AR")
                else:
                    self.r_bursts[0] -= 1
                    if bool(s("rlast").value) != (self.r_bursts[0] == 0):
                        self.errors.append("rlast misplaced")
                    if self.r_bursts[0] == 0:
                        self.r_bursts.pop(0)
            if s("awvalid").value and s("awready").value:
                self.aw += 1
                self.b_owed += 1
                self.w_bursts.append(self._check("AW", int(s("awaddr").value),
                                                 int(s("awlen").value), int(s("awsize").value),
                                                 int(s("awburst").value)))
            if s("wvalid").value and s("wready").value:
                if not self.w_bursts:
                    self.errors.append("W beat before its AW")
                else:
                    self.w_bursts[0] -= 1
                    if bool(s("wlast").value) != (self.w_bursts[0] == 0):
                        self.errors.append("wlast misplaced")
                    if self.w_bursts[0] == 0:
                        self.w_bursts.pop(0)
            if s("bvalid").value and s("bready").value:
                self.b_owed -= 1

    def final(self):
        errs = list(self.errors)
        if self.r_bursts or self.w_bursts or self.b_owed:
            errs.append(f"{self.p}: unfinished bursts: R {self.r_bursts}, W {self.w_bursts}, "
                        f"B owed {self.b_owed}")
        assert not errs, f"{self.p}: {errs[:5]}"


def _pauses(rng, p):
    """An endless pause pattern: True (pause) with probability p, from a seeded generator."""
    bits = (rng.random(4096) < p).tolist()
    return itertools.cycle(bits)


async def _setup(dut, pause, rng):
    p = params()
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False))
    dut.rst.value = 1
    dut.ld_cmd__valid.value = 0
    dut.st_cmd__valid.value = 0
    dut.wr_stall.value = 0
    dut.win_lo.value = p["base"]
    dut.win_hi.value = p["base"] + DRAM_BYTES
    await kick_comb_blocks(dut)         # Icarus: evaluate every always @* once (tb.core.icarus)
    await ClockCycles(dut.clk, 2)       # outputs defined before the AXI models sample them
    ld_ram = AxiRam(AxiBus.from_prefix(dut, "ld_bus_"), dut.clk, dut.rst, size=DRAM_BYTES)
    st_ram = AxiRam(AxiBus.from_prefix(dut, "st_bus_"), dut.clk, dut.rst, size=DRAM_BYTES,
                    mem=ld_ram.mem)
    if pause:
        for ch in (ld_ram.read_if.ar_channel, ld_ram.read_if.r_channel,
                   st_ram.write_if.aw_channel, st_ram.write_if.w_channel,
                   st_ram.write_if.b_channel):
            ch.set_pause_generator(_pauses(rng, 0.3))

        async def stall():
            while True:
                await FallingEdge(dut.clk)
                dut.wr_stall.value = int(rng.random() < 0.3)
        cocotb.start_soon(stall())
    lanes = p["data_width"] // 8
    mons = {k: BurstMonitor(dut, f"{k}_bus_", lanes=lanes, max_burst=p["max_burst"])
            for k in ("ld", "st")}
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    return ld_ram, mons


async def _send(dut, which, descs, base):
    """Hand ``descs`` to the engine's cmd stream, one per handshake, then wait for idle."""
    layout = descriptor_layout(params().get("addr_width", 40))
    valid, payload, ready = (getattr(dut, f"{which}_cmd__{n}") for n in ("valid", "payload",
                                                                          "ready"))
    idle = getattr(dut, f"{which}_idle")
    for d in descs:
        d = dict(d, dram_addr=d["dram_addr"] + base)
        await FallingEdge(dut.clk)
        payload.value = layout.const(d).as_value().value
        valid.value = 1
        while True:
            await RisingEdge(dut.clk)
            if ready.value:
                break
    await FallingEdge(dut.clk)
    valid.value = 0
    for _ in range(200_000):
        await RisingEdge(dut.clk)
        if idle.value:
            return
    raise AssertionError(f"{which} engine not idle after 200000 cycles")


async def _roundtrip(dut, pause):
    p = params()
    rng = np.random.default_rng(p["seed"])
    ram, mons = await _setup(dut, pause, np.random.default_rng(p["seed"] + 7))
    dram = rng.integers(0, 256, DRAM_BYTES, dtype=np.uint8)
    ram.write(0, dram.tobytes())
    loads = random_descriptors(rng, p["n_load"], dram_bytes=DRAM_BYTES, buffers=("B",))
    stores = random_descriptors(rng, p["n_store"], dram_bytes=DRAM_BYTES, buffers=("B",))
    want = machine(dram)            # buffers start at zero, as the top's memory
    reference(want, loads, store=False)
    reference(want, stores, store=True)

    await _send(dut, "ld", loads, p["base"])
    await _send(dut, "st", stores, p["base"])
    await ClockCycles(dut.clk, 5)
    got = np.frombuffer(ram.read(0, DRAM_BYTES), np.uint8)
    diff = np.flatnonzero(got != want.dram)
    assert diff.size == 0, f"{diff.size} DRAM bytes differ from funcsim, first at {diff[:8]}"
    for m in mons.values():
        m.final()
    assert mons["ld"].aw == 0 and mons["st"].ar == 0, "an engine used the other's channels"
    assert int(dut.ld_fault.value) == 0 and int(dut.st_fault.value) == 0
    assert int(dut.rd_bytes.value) == sum(d["count"] * d["length"] for d in loads)
    assert int(dut.wr_bytes.value) == sum(d["count"] * d["length"] for d in stores)
    assert mons["ld"].ar >= len(loads) and mons["st"].aw >= len(stores)
    dut._log.info(f"{'paused' if pause else 'plain'}: {mons['ld'].ar} AR, {mons['st'].aw} AW")


@cocotb.test()
async def roundtrip(dut):
    """LOADs then STOREs, full-speed memory: DRAM equals funcsim's."""
    await _roundtrip(dut, pause=False)


@cocotb.test()
async def roundtrip_backpressure(dut):
    """The same descriptors with random pauses on every AXI channel and on the buffer port."""
    await _roundtrip(dut, pause=True)


@cocotb.test()
async def window_fault(dut):
    """Descriptors leaving the window set fault bit 0 and issue no AR / AW; a later one inside
    the window still runs."""
    p = params()
    base = p["base"]
    ram, mons = await _setup(dut, False, np.random.default_rng(1))
    before = bytes(ram.read(0, DRAM_BYTES))
    outside = [{"buf": BUFS["B"], "dram_addr": DRAM_BYTES - 100, "buf_addr": 5, "count": 2,
                "length": 60, "stride": 70, "core": 0},           # ends 30 bytes past win_hi
               {"buf": BUFS["B"], "dram_addr": -1, "buf_addr": 5, "count": 1,
                "length": 16, "stride": 16, "core": 0}]           # starts below win_lo
    await _send(dut, "ld", outside, base)
    await _send(dut, "st", outside, base)
    await ClockCycles(dut.clk, 20)
    assert mons["ld"].ar == 0 and mons["st"].aw == 0, "a request left for a faulty descriptor"
    assert int(dut.ld_fault.value) == FAULT_WINDOW and int(dut.st_fault.value) == FAULT_WINDOW
    assert bytes(ram.read(0, DRAM_BYTES)) == before
    inside = [dict(outside[0], dram_addr=DRAM_BYTES - 130)]
    await _send(dut, "ld", inside, base)
    await _send(dut, "st", inside, base)
    await ClockCycles(dut.clk, 5)
    assert mons["ld"].ar >= 2 and mons["st"].aw >= 2
    assert int(dut.rd_bytes.value) == 120 and int(dut.wr_bytes.value) == 120
    for m in mons.values():
        m.final()
