# amaranth: UnusedElaboratable=no
"""hw.system.csr.RegisterBlock in amaranth.sim against the CPU-view model tb.system.csr_model.

The reference is the model (written from the register map's rules); the expected constants
(ID, CONFIG_*) are computed here from the AccelConfig's fields and SHA-256 directly. A small
AXI4-Lite manager drives the bus with chosen or random orderings of AW and W, delays on
``bready``/``rready``, and checks the handshake rules on every cycle it waits (responses held
stable, at most one write and one read in flight).
"""

import hashlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.system.axi import RESP_OKAY, RESP_SLVERR
from hw.system.csr import RegisterBlock
from hw.system.regmap import REGMAP, REGMAP_VERSION, RO, RW, W1C, RegisterMap, Register, Field
from sim.config import PRESETS
from tb.system.csr_model import CsrModel

CFG = PRESETS["small"]


#: the semaphore ids the blocks here are built with (not the default, so the port is seen)
SEMS = 5000

def _expected_constants(cfg, axi_ports, data_bytes, sems=SEMS):
    h = int(hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8], 16)
    return {"CONFIG_HASH.HASH": h, "CONFIG_NMTS.N": cfg.N, "CONFIG_NMTS.M": cfg.M,
            "CONFIG_NMTS.T": cfg.T, "CONFIG_NMTS.S": cfg.S, "CONFIG_L.L": cfg.L,
            "CONFIG_L.PACKED": int(cfg.dsp_packing), "CONFIG_L.AXI_PORTS": axi_ports,
            "CONFIG_L.DATA_BYTES": data_bytes, "CONFIG_SEMS.IDS": sems}


class Manager:
    """AXI4-Lite manager for amaranth.sim testbenches (one transaction at a time)."""

    def __init__(self, ctx, bus):
        self.ctx, self.bus = ctx, bus
        for s in ("awvalid", "wvalid", "bready", "arvalid", "rready"):
            ctx.set(getattr(bus, s), 0)

    async def write(self, addr, data, strb=0xF, *, aw_delay=0, w_delay=0, b_delay=0):
        """AW after ``aw_delay`` cycles, W after ``w_delay`` (independently); ``bready`` low
        for ``b_delay`` cycles of ``bvalid``. Returns bresp."""
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.wdata, data)
        ctx.set(bus.wstrb, strb)
        aw_done = w_done = False
        cyc = 0
        while not (aw_done and w_done):
            ctx.set(bus.awvalid, int(not aw_done and cyc >= aw_delay))
            ctx.set(bus.wvalid, int(not w_done and cyc >= w_delay))
            _, _, awv, awr, wv, wr, bv = await ctx.tick().sample(
                bus.awvalid, bus.awready, bus.wvalid, bus.wready, bus.bvalid)
            assert not bv, "B raised before both AW and W were accepted"
            aw_done |= bool(awv and awr)
            w_done |= bool(wv and wr)
            cyc += 1
            assert cyc < 50, "AW/W not accepted"
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        return await self._response(bus.bvalid, bus.bready, (bus.bresp,), b_delay,
                                    (bus.awready, bus.wready))

    async def read(self, addr, *, r_delay=0):
        """Returns (rresp, rdata); ``rready`` low for ``r_delay`` cycles of ``rvalid``."""
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.araddr, addr)
        ctx.set(bus.arvalid, 1)
        await ctx.tick().until(bus.arready)
        ctx.set(bus.arvalid, 0)
        return await self._response(bus.rvalid, bus.rready, (bus.rresp, bus.rdata), r_delay,
                                    (bus.arready,))

    async def _response(self, valid, ready, payload, delay, busy_readies):
        ctx = self.ctx
        held = None
        n = 0
        while True:                                   # wait for valid, then hold ready low
            if ctx.get(valid):
                vals = tuple(ctx.get(p) for p in payload)
                if held is not None:
                    assert vals == held, f"response changed while waiting: {held} -> {vals}"
                held = vals
                # one outstanding: no new address accepted while the response waits
                assert not any(ctx.get(r) for r in busy_readies), \
                    "a new request can be accepted while a response waits"
                if n >= delay:
                    break
                n += 1
            await ctx.tick()
        ctx.set(ready, 1)
        await ctx.tick()
        ctx.set(ready, 0)
        return held[0] if len(held) == 1 else held


def _run(dut, bench, pulses=None):
    """Run ``bench(ctx, manager)``; ``pulses``: a dict port -> list of cycles it was high."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    cycle = [0]

    async def monitor(ctx):
        ports = [getattr(dut, p) for p in pulses]
        async for _, _, *vals in ctx.tick().sample(*ports):
            for p, v in zip(pulses, vals):
                if v:
                    pulses[p].append(cycle[0])
            cycle[0] += 1

    async def top(ctx):
        await bench(ctx, Manager(ctx, dut.bus))

    if pulses is not None:
        sim.add_testbench(monitor, background=True)
    sim.add_testbench(top)
    sim.run()
    return cycle


def _block(**kw):
    return RegisterBlock(config=CFG, axi_ports=2, data_bytes=16, sems=SEMS, **kw)


def _model():
    return CsrModel(REGMAP, _expected_constants(CFG, 2, 16))


def test_constants_read_back():
    dut = _block()
    want = {"ID": 0x54564954, "VERSION": REGMAP_VERSION}
    c = _expected_constants(CFG, 2, 16)
    want["CONFIG_HASH"] = c["CONFIG_HASH.HASH"]
    want["CONFIG_NMTS"] = CFG.N | CFG.M << 8 | CFG.T << 16 | CFG.S << 24
    want["CONFIG_L"] = CFG.L | int(CFG.dsp_packing) << 8 | 2 << 9 | 16 << 16
    want["CONFIG_SEMS"] = SEMS

    async def bench(ctx, bus):
        for name, v in want.items():
            assert await bus.read(REGMAP[name].offset) == (RESP_OKAY, v), name
            # writes to RO registers are ignored (OKAY)
            assert await bus.write(REGMAP[name].offset, ~v & 0xFFFFFFFF) == RESP_OKAY
            assert await bus.read(REGMAP[name].offset) == (RESP_OKAY, v), name
    _run(dut, bench)


@pytest.mark.parametrize("order", ["together", "aw_first", "w_first"])
def test_write_orderings_and_strobes(order):
    dut = _block()
    dly = {"together": {}, "aw_first": {"w_delay": 3}, "w_first": {"aw_delay": 4}}[order]
    off = REGMAP["DATA_SIZE"].offset

    async def bench(ctx, bus):
        assert await bus.write(off, 0x11223344, 0xF, **dly) == RESP_OKAY
        assert ctx.get(dut.data_size_bytes) == 0x11223344
        assert await bus.write(off, 0xAABBCCDD, 0b0101, **dly) == RESP_OKAY
        assert ctx.get(dut.data_size_bytes) == 0x11BB33DD
        assert await bus.read(off) == (RESP_OKAY, 0x11BB33DD)
        assert await bus.write(off, 0xFFFFFFFF, 0, **dly) == RESP_OKAY   # no byte enabled
        assert await bus.read(off + 2) == (RESP_OKAY, 0x11BB33DD)        # bits [1:0] ignored
        hi = REGMAP["INSTR_TABLE"].words[1][1]
        assert await bus.write(hi, 0xCAFEF00D, 0b1000, **dly) == RESP_OKAY
        assert ctx.get(dut.instr_table_addr) == 0xCA << 56
    _run(dut, bench)


def test_w1p_pulses_once_and_reads_zero():
    dut = _block()
    pulses = {"ctrl_start": [], "ctrl_soft_reset": [], "host_ack_ack": []}
    ctrl = REGMAP["CTRL"].offset

    async def bench(ctx, bus):
        await bus.write(ctrl, 0b101)                        # START and IRQ_EN
        assert await bus.read(ctrl) == (RESP_OKAY, 0b100)   # W1P bits read 0
        await bus.write(ctrl, 0b011, strb=0)                # no strobe: nothing
        await bus.write(ctrl, 0b010, b_delay=3)             # SOFT_RESET; IRQ_EN back to 0
        assert await bus.read(ctrl) == (RESP_OKAY, 0)
        await bus.write(REGMAP["HOST_ACK"].offset, 1)
        await bus.write(REGMAP["HOST_ACK"].offset, 0)
        for _ in range(3):
            await ctx.tick()
    _run(dut, bench, pulses)
    assert {k: len(v) for k, v in pulses.items()} == \
        {"ctrl_start": 1, "ctrl_soft_reset": 1, "host_ack_ack": 1}


def test_w1c_set_clear_and_irq():
    dut = _block()
    st, ctrl = REGMAP["IRQ_STATUS"].offset, REGMAP["CTRL"].offset

    async def pulse(ctx, port):
        ctx.set(port, 1)
        await ctx.tick()
        ctx.set(port, 0)
        await ctx.tick()

    async def bench(ctx, bus):
        await pulse(ctx, dut.irq_status_done)
        await pulse(ctx, dut.irq_status_host_req)
        assert await bus.read(st) == (RESP_OKAY, 0b101)
        assert not ctx.get(dut.irq)                          # IRQ_EN is 0 after reset
        await bus.write(ctrl, 0b100)
        await ctx.tick()
        assert ctx.get(dut.irq)
        await bus.write(st, 0b001)                           # clear DONE only
        assert await bus.read(st) == (RESP_OKAY, 0b100)
        assert ctx.get(dut.irq)
        await bus.write(st, 0b100, strb=0)                   # no strobe: no clear
        assert await bus.read(st) == (RESP_OKAY, 0b100)
        await bus.write(st, 0b111)
        assert await bus.read(st) == (RESP_OKAY, 0)
        await ctx.tick()
        assert not ctx.get(dut.irq)
        # a set in the cycle of the clear wins: hold ERROR's set input high during the write
        ctx.set(dut.irq_status_error, 1)
        await bus.write(st, 0b010)
        ctx.set(dut.irq_status_error, 0)
        assert await bus.read(st) == (RESP_OKAY, 0b010)
    _run(dut, bench)


def test_counter_read_is_coherent():
    dut = _block()
    lo, hi = (off for _, off in REGMAP["CYCLES"].words)

    async def bench(ctx, bus):
        ctx.set(dut.perf_cycles, 0x0000_0001_FFFF_FFFF)
        assert await bus.read(lo) == (RESP_OKAY, 0xFFFF_FFFF)
        ctx.set(dut.perf_cycles, 0x0000_0002_0000_0000)     # carried in between the reads
        assert await bus.read(hi) == (RESP_OKAY, 1)          # the latched HI
        assert await bus.read(lo) == (RESP_OKAY, 0)
        assert await bus.read(hi) == (RESP_OKAY, 2)
        ctx.set(dut.host_instr, int.from_bytes(bytes(range(16)), "little"))
        words = [await bus.read(off) for _, off in REGMAP["HOST_INSTR"].words]
        assert words == [(RESP_OKAY, int.from_bytes(bytes(range(4 * i, 4 * i + 4)), "little"))
                         for i in range(4)]
    _run(dut, bench)


def test_unmapped_addresses_slverr():
    dut = _block()
    mapped = {off for _, off, _, _ in REGMAP.words()}
    holes = [a for a in (0x018, 0x034, 0x05C, 0x074, 0x0FC, 0x140, 0xFFC) if a not in mapped]
    assert len(holes) == 7

    async def bench(ctx, bus):
        for a in holes:
            assert await bus.read(a, r_delay=1) == (RESP_SLVERR, 0)
            assert await bus.write(a, 0xFFFFFFFF) == RESP_SLVERR
        assert await bus.read(REGMAP["ID"].offset) == (RESP_OKAY, 0x54564954)
    _run(dut, bench)


def test_random_traffic_matches_model():
    """Random reads/writes (every word and holes), strobes, AW/W orderings, B/R delays, RO inputs
    and W1C sets; every response and every RW port compared with the model."""
    dut = _block()
    model = _model()
    rng = np.random.default_rng(13)
    words = [off for _, off, _, _ in REGMAP.words()]
    writable = [off for _, off, r, _ in REGMAP.words() if r.access != RO]
    ro_inputs = [(r, f) for r in REGMAP for f in r.fields if f.access == RO and not f.const]
    w1c = [(r, f) for r in REGMAP for f in r.fields if f.access == W1C]
    pulses = {r.port_name(f): [] for r in REGMAP for f in r.fields if f.access == "W1P"}
    want_pulses = {p: 0 for p in pulses}

    seen_irq = set()

    async def bench(ctx, bus):
        for _ in range(600):
            if rng.random() < 0.3:                        # the hardware side changes
                r, f = ro_inputs[rng.integers(len(ro_inputs))]
                v = int(rng.integers(0, 1 << 63)) | int(rng.integers(0, 1 << 63)) << 63
                ctx.set(getattr(dut, r.port_name(f)), v & ((1 << f.width) - 1))
                model.set_input(r.name, f.name, v)
            if rng.random() < 0.1:
                r, f = w1c[rng.integers(len(w1c))]
                ctx.set(getattr(dut, r.port_name(f)), 1)
                await ctx.tick()
                ctx.set(getattr(dut, r.port_name(f)), 0)
                model.hw_set(r.name, f.name)
            write = rng.random() < 0.5
            addr = (int(rng.choice(writable if write and rng.random() < 0.6 else words))
                    if rng.random() < 0.9 else int(rng.integers(0, 1024)) * 4)
            addr |= int(rng.integers(0, 4)) if rng.random() < 0.1 else 0
            if write:
                data, strb = int(rng.integers(0, 1 << 32)), int(rng.integers(0, 16))
                if rng.random() < 0.5:
                    strb = 0xF
                d = [int(rng.integers(0, 3)) if rng.random() < 0.5 else 0 for _ in range(3)]
                got = await bus.write(addr, data, strb, aw_delay=d[0], w_delay=d[1], b_delay=d[2])
                want, pl = model.write(addr, data, strb)
                for p in pl:
                    want_pulses[p] += 1
                assert got == want, f"write {addr:#x}: bresp {got} != {want}"
                for port, v in model.port_values().items():
                    assert ctx.get(getattr(dut, port)) == v, port
            else:
                got = await bus.read(addr, r_delay=int(rng.integers(0, 3)))
                want = model.read(addr)
                assert got == want, f"read {addr:#x}: {got} != {want}"
            await ctx.tick()
            assert ctx.get(dut.irq) == model.irq
            seen_irq.add(model.irq)
    _run(dut, bench, pulses)
    assert {p: len(c) for p, c in pulses.items()} == want_pulses
    assert min(want_pulses.values()) >= 5 and seen_irq == {0, 1}


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="CONFIG_HASH.HASH is fixed when the block is built"):
        RegisterBlock()
    with pytest.raises(ValueError, match="addr_width"):
        RegisterBlock(config=CFG, addr_width=8)
    with pytest.raises(ValueError, match="axi_ports"):
        RegisterBlock(config=CFG, axi_ports=5)
    with pytest.raises(ValueError, match="data_bytes"):
        RegisterBlock(config=CFG, data_bytes=24)
    with pytest.raises(ValueError, match="sems"):
        RegisterBlock(config=CFG, sems=(1 << 16) + 1)
    with pytest.raises(ValueError, match="STATUS.BUSY is not a constant"):
        RegisterBlock(config=CFG, constants={"STATUS.BUSY": 1})
    with pytest.raises(TypeError, match="regmap"):
        RegisterBlock(config=CFG, regmap={})


def test_custom_map_and_wider_address():
    """Another map (byte-wide RW fields, a W1C status, no interrupt) on a 16-bit address: the
    window is not aliased above 4 KiB."""
    rm = RegisterMap(registers=[
        Register("A", 0x0, RW, [Field("X", 4, 12, RW, 0x123), Field("Y", 20, 3, RW, 5)]),
        Register("B", 0x8, RO, [Field("K", 0, 16, RO, 0xBEEF, const=True)]),
        Register("C", 0xC, W1C, [Field("E", 7, 1, W1C)]),
    ], size=4096)
    dut = RegisterBlock(regmap=rm, addr_width=16)
    assert not hasattr(dut, "irq")
    model = CsrModel(rm)

    async def bench(ctx, bus):
        for addr in (0x0, 0x8, 0xC, 0x4, 0x1000, 0x1008):
            assert await bus.read(addr) == model.read(addr), hex(addr)
        for data, strb in ((0xFFFFFFFF, 0b0010), (0x0, 0b0100), (0x12345678, 0xF)):
            assert await bus.write(0x0, data, strb) == model.write(0x0, data, strb)[0]
            assert await bus.read(0x0) == model.read(0x0)
            assert ctx.get(dut.a_x) == model.port_values()["a_x"]
            assert ctx.get(dut.a_y) == model.port_values()["a_y"]
        ctx.set(dut.c_e, 1)
        await ctx.tick()
        ctx.set(dut.c_e, 0)
        model.hw_set("C", "E")
        assert await bus.read(0xC) == (RESP_OKAY, 0x80) == model.read(0xC)
        assert await bus.write(0x100C, 0x80) == RESP_SLVERR   # not an alias of C
        assert await bus.read(0xC) == (RESP_OKAY, 0x80)
    _run(dut, bench)
