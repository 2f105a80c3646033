"""cocotb tests of hw.system.csr.RegisterBlock's Verilog, driven by cocotbext-axi's AxiLiteMaster
(the CPU), against the CPU-view model tb.system.csr_model.CsrModel.

params: ``constants`` ("REG.FIELD" -> value, computed by the pytest side from the AccelConfig),
``seed``, ``n`` (random operations of the traffic test).

The hardware side of the block (RO inputs, W1C set inputs) is driven directly; a monitor
counts the cycles each W1P output is high. Every test resets the block first. The AXI channels
run with random pause generators (valid / ready low for random cycles), so AW and W arrive in
either order and B / R wait for ``bready`` / ``rready``.
"""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from hw.system.regmap import REGMAP, RO, RW, W1C, W1P
from tb.core.icarus import kick_comb_blocks
from tb.rtl import params
from tb.system.csr_model import CsrModel

PERIOD_NS = 10


def _pauses(rng: random.Random, p_pause: float):
    """An endless random pause pattern (True: the channel holds valid / ready low)."""
    return itertools.cycle([rng.random() < p_pause for _ in range(997)])


class Bench:
    """The block with its CPU (AxiLiteMaster), its model and a W1P pulse monitor."""

    def __init__(self, dut, p, seed_offset=0, p_pause=0.3):
        self.dut, self.p = dut, p
        self.rng = random.Random(p.get("seed", 1) + seed_offset)
        self.model = CsrModel(REGMAP, p["constants"])
        self.cpu = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "bus_"), dut.clk, dut.rst)
        if p_pause:
            for ch in (self.cpu.write_if.aw_channel, self.cpu.write_if.w_channel,
                       self.cpu.write_if.b_channel, self.cpu.read_if.ar_channel,
                       self.cpu.read_if.r_channel):
                ch.set_pause_generator(_pauses(self.rng, p_pause))
        self.w1p = [r.port_name(f) for r in REGMAP for f in r.fields if f.access == W1P]
        self.pulses = {p: 0 for p in self.w1p}
        self.want_pulses = {p: 0 for p in self.w1p}

    async def start(self):
        dut = self.dut
        for r in REGMAP:
            for f in r.fields:
                if f.has_port and f.access in (RO, W1C):
                    getattr(dut, r.port_name(f)).value = 0
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False))
        dut.rst.value = 1
        if cocotb.SIM_NAME.lower().startswith("icarus"):
            await kick_comb_blocks(dut)
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        ports = [getattr(self.dut, p) for p in self.w1p]
        while True:
            await RisingEdge(self.dut.clk)
            for name, h in zip(self.w1p, ports):
                if h.value.is_resolvable and int(h.value):
                    self.pulses[name] += 1

    # -- the CPU side, checked against the model -------------------------------------------
    async def write(self, addr: int, data: int, offset: int = 0, length: int = 4):
        """Write ``length`` bytes of ``data`` at byte ``offset`` of the word at ``addr``
        (strobes = those bytes); check BRESP and the RW ports."""
        strb = ((1 << length) - 1) << offset
        raw = ((data & 0xFFFFFFFF) >> (8 * offset)) & ((1 << (8 * length)) - 1)
        resp = await self.cpu.write(addr + offset, raw.to_bytes(length, "little"))
        want, pulses = self.model.write(addr, data & 0xFFFFFFFF & _bytes_mask(strb), strb)
        for p in pulses:
            self.want_pulses[p] += 1
        assert int(resp.resp) == want, f"write {addr:#05x}: bresp {resp.resp} != {want}"
        self.check_ports()

    async def read(self, addr: int) -> int:
        resp = await self.cpu.read(addr, 4)
        want_resp, want = self.model.read(addr)
        got = int.from_bytes(resp.data, "little")
        assert (int(resp.resp), got) == (want_resp, want), \
            f"read {addr:#05x}: ({resp.resp}, {got:#x}) != ({want_resp}, {want:#x})"
        return got

    def check_ports(self):
        for port, v in self.model.port_values().items():
            got = int(getattr(self.dut, port).value)
            assert got == v, f"port {port} = {got:#x}, model {v:#x}"

    # -- the hardware side --------------------------------------------------------------------
    def set_input(self, r, f, v):
        v &= (1 << f.width) - 1
        getattr(self.dut, r.port_name(f)).value = v
        self.model.set_input(r.name, f.name, v)

    async def hw_set(self, r, f):
        h = getattr(self.dut, r.port_name(f))
        h.value = 1
        await RisingEdge(self.dut.clk)
        h.value = 0
        self.model.hw_set(r.name, f.name)

    async def check_irq_and_pulses(self):
        await ClockCycles(self.dut.clk, 3)
        assert int(self.dut.irq.value) == self.model.irq, "irq"
        assert self.pulses == self.want_pulses, f"W1P pulses {self.pulses} != {self.want_pulses}"


def _bytes_mask(strb: int) -> int:
    return sum(0xFF << (8 * k) for k in range(4) if strb >> k & 1)


def _rand_bytes(rng):
    offset = rng.randrange(4)
    return offset, rng.randint(1, 4 - offset)


@cocotb.test()
async def constants_and_rw_registers(dut):
    """RO constants as built; every RW word written with random values and byte ranges."""
    b = Bench(dut, params())
    await b.start()
    c = b.p["constants"]
    for name in ("ID", "VERSION", "CONFIG_HASH", "CONFIG_NMTS", "CONFIG_L", "CONFIG_SEMS"):
        await b.read(REGMAP[name].offset)
    assert await b.read(REGMAP["ID"].offset) == 0x54564954
    assert await b.read(REGMAP["CONFIG_HASH"].offset) == c["CONFIG_HASH.HASH"]
    assert await b.read(REGMAP["CONFIG_SEMS"].offset) == c["CONFIG_SEMS.IDS"]
    rw_words = [(n, off) for n, off, r, _ in REGMAP.words()
                if any(f.access == RW for f in r.fields)]
    assert {n for n, _ in rw_words} >= {"INSTR_TABLE_LO", "INSTR_TABLE_HI", "DATA_BASE_LO",
                                        "DATA_BASE_HI", "DATA_SIZE", "WATCHDOG", "CTRL"}
    for _ in range(6):
        for _name, off in rw_words:
            if off == REGMAP["CTRL"].offset:
                data = b.rng.getrandbits(32) & ~0b11     # START/SOFT_RESET: W1P test
            else:
                data = b.rng.getrandbits(32)
            await b.write(off, data, *_rand_bytes(b.rng))
            await b.read(off)
    for name, off in rw_words:                          # full-word writes read back whole
        await b.write(off, 0xA5A5A5A5 ^ off)
        await b.read(off)
    for name in ("ID", "CONFIG_NMTS"):                  # writes to RO are ignored
        await b.write(REGMAP[name].offset, 0xFFFFFFFF)
        await b.read(REGMAP[name].offset)
    await b.check_irq_and_pulses()


@cocotb.test()
async def ro_inputs_and_64bit_reads(dut):
    """Every RO input reaches its word; a counter that carries between LO and HI reads
    coherently (HI latched by the LO read)."""
    b = Bench(dut, params(), seed_offset=1)
    await b.start()
    ro = [(r, f) for r in REGMAP for f in r.fields if f.access == RO and not f.const]
    for _ in range(3):
        for r, f in ro:
            b.set_input(r, f, b.rng.getrandbits(f.width))
        await RisingEdge(dut.clk)
        for r, f in ro:
            for _n, off in r.words:
                await b.read(off)
    cyc = REGMAP["CYCLES"]
    lo, hi = (off for _, off in cyc.words)
    b.set_input(cyc, cyc.fields[0], 0x0000_0007_FFFF_FFFF)
    assert await b.read(lo) == 0xFFFF_FFFF
    b.set_input(cyc, cyc.fields[0], 0x0000_0008_0000_0000)
    assert await b.read(hi) == 7
    assert await b.read(lo) == 0
    assert await b.read(hi) == 8


@cocotb.test()
async def w1p_w1c_irq_and_unmapped(dut):
    """START / SOFT_RESET / HOST_ACK pulse once per written 1; IRQ_STATUS set by the hardware,
    cleared by writing 1; irq = IRQ_EN and any cause; unmapped addresses give SLVERR."""
    b = Bench(dut, params(), seed_offset=2)
    await b.start()
    ctrl, st, ack = (REGMAP[n].offset for n in ("CTRL", "IRQ_STATUS", "HOST_ACK"))
    await b.write(ctrl, 0b001)
    await b.write(ctrl, 0b010)
    await b.write(ctrl, 0b011, offset=1, length=1)      # byte 1 only: no pulse
    await b.write(ack, 1)
    await b.write(ack, 0)
    await b.check_irq_and_pulses()
    assert b.pulses == {"ctrl_start": 1, "ctrl_soft_reset": 1, "host_ack_ack": 1}
    stat = REGMAP["IRQ_STATUS"]
    for f in stat.fields:
        await b.hw_set(stat, f)
    assert await b.read(st) == 0b111
    await b.check_irq_and_pulses()                      # IRQ_EN is 0: no interrupt
    assert int(dut.irq.value) == 0
    await b.write(ctrl, 0b100)
    await b.check_irq_and_pulses()
    assert int(dut.irq.value) == 1
    await b.write(st, 0b011)
    assert await b.read(st) == 0b100
    await b.check_irq_and_pulses()
    await b.write(st, 0b100)
    assert await b.read(st) == 0
    await b.check_irq_and_pulses()
    assert int(dut.irq.value) == 0
    mapped = {off for _, off, _, _ in REGMAP.words()}
    for a in (0x018, 0x03C, 0x074, 0x0FC, 0x140, 0x800, 0xFFC):
        assert a not in mapped
        await b.write(a, 0xFFFFFFFF)                    # model: SLVERR
        await b.read(a)
    await b.read(REGMAP["ID"].offset)


@cocotb.test()
async def random_traffic(dut):
    """Random reads and writes over the whole window with random byte ranges, hardware inputs
    and W1C sets changing in between, random pauses on all five channels."""
    p = params()
    b = Bench(dut, p, seed_offset=3, p_pause=0.5)
    await b.start()
    words = [off for _, off, _, _ in REGMAP.words()]
    ro = [(r, f) for r in REGMAP for f in r.fields if f.access == RO and not f.const]
    w1c = [(r, f) for r in REGMAP for f in r.fields if f.access == W1C]
    for _ in range(p.get("n", 300)):
        x = b.rng.random()
        if x < 0.15:
            r, f = b.rng.choice(ro)
            b.set_input(r, f, b.rng.getrandbits(f.width))
        elif x < 0.22:
            await b.hw_set(*b.rng.choice(w1c))
        addr = b.rng.choice(words) if b.rng.random() < 0.9 else 4 * b.rng.randrange(1024)
        if b.rng.random() < 0.5:
            await b.write(addr, b.rng.getrandbits(32), *_rand_bytes(b.rng))
        else:
            await b.read(addr)
    await b.check_irq_and_pulses()
