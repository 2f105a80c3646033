# amaranth: UnusedElaboratable=no
"""The unit's layer registers (hw.core.regfile.RegisterFile) and the small compare helpers of
hw.core.unit, against references written from sim.isa (amaranth.sim)."""

import random

import pytest
from amaranth import Cat, Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hw.core.regfile import REG_STORE, RegisterFile
from hw.core.unit import _above, _saturate8
from sim.isa import REG_LIMITS, REGS


def _values(lo, hi, rng):
    """Edge values around a range, the 32-bit extremes and random ones."""
    vals = {lo - 2, lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, hi + 2, -2**31, 2**31 - 1, 0, -1,
            (1 << 16) + lo, (1 << 20) + lo}
    vals |= {rng.randrange(-2**31, 2**31) for _ in range(6)}
    vals |= {rng.randrange(lo - 40, hi + 40) for _ in range(6)}
    return sorted(v for v in vals if -2**31 <= v < 2**31)


def _store_ref(name, v):
    """What a register keeps of a written value, from its REG_STORE shape: a clamp to the
    range of a ``range`` shape, else the low bits (two's complement for a signed shape)."""
    shape = REG_STORE[name][0]
    if isinstance(shape, range):
        return min(max(v, shape.start), shape.stop - 1)
    return None         # flags and low-bit registers: covered by the core tests


@pytest.mark.parametrize("ops", [("CONV_MAT",), ("CONV_RDF", "DW_RSA"), ()])
def test_regfile_verdicts_and_clamps(ops):
    """``ok_<op>`` is high exactly when every register of REG_LIMITS[op] holds a value in its
    range (reset: 0 everywhere), and a clamped register keeps clamp(value) after each SETR."""
    rng = random.Random(14)
    rf = RegisterFile(ops=ops)
    writes = []
    for name, (shape, _, _) in REG_STORE.items():
        if isinstance(shape, range):
            writes += [(name, v) for v in _values(shape.start + 1, shape.stop - 2, rng)]
    rng.shuffle(writes)
    sim = Simulator(rf)
    sim.add_clock(1e-6)

    async def bench(ctx):
        held = {n: 0 for n in REGS}
        for o in ops:       # the reset values
            assert ctx.get(getattr(rf, f"ok_{o.lower()}")) == all(
                lo <= 0 <= hi for lo, hi in REG_LIMITS[o].values())
        for name, v in writes:
            ctx.set(rf.we, 1)
            ctx.set(rf.reg, REGS[name])
            ctx.set(rf.value, v)
            await ctx.tick()
            ctx.set(rf.we, 0)
            held[name] = v
            assert ctx.get(getattr(rf, name.lower())) == _store_ref(name, v), (name, v)
            for o in ops:
                want = all(lo <= held[r] <= hi for r, (lo, hi) in REG_LIMITS[o].items())
                assert ctx.get(getattr(rf, f"ok_{o.lower()}")) == want, (o, name, v)
    sim.add_testbench(bench)
    sim.run()


def test_regfile_ignores_other_registers_and_no_write():
    """A SETR of a register it does not store (PAD_R, LINEAR, numbers above REGS) and a cycle
    without ``we`` change nothing."""
    rf = RegisterFile(ops=("CONV_MAT",))
    sim = Simulator(rf)
    sim.add_clock(1e-6)

    async def bench(ctx):
        ctx.set(rf.we, 1)
        ctx.set(rf.reg, REGS["WIN"])
        ctx.set(rf.value, 7)
        await ctx.tick()
        for reg, we in ((REGS["PAD_R"], 1), (REGS["LINEAR"], 1), (200, 1), (REGS["WIN"], 0),
                        (REGS["WIN"] + 256 - 256, 0)):
            ctx.set(rf.we, we)
            ctx.set(rf.reg, reg)
            ctx.set(rf.value, -5)
            await ctx.tick()
            assert ctx.get(rf.win) == 7
    sim.add_testbench(bench)
    sim.run()


def test_regfile_bad_parameters():
    with pytest.raises(TypeError, match="ops"):
        RegisterFile(ops=["CONV_MAT"])
    with pytest.raises(ValueError, match="ops"):
        RegisterFile(ops=("HALT",))


@pytest.mark.parametrize("shape, n", [(signed(6), 23), (unsigned(5), 8), (signed(4), 12),
                                      (unsigned(3), 9), (signed(9), 5)])
def test_above_exhaustive(shape, n):
    """``_above(x, n)[k] == (x > k)`` for every value of x."""
    m = Module()
    x, y = Signal(shape), Signal(n)
    m.d.comb += y.eq(Cat(*_above(x, n)))
    lo, hi = ((-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed
              else (0, 1 << shape.width))
    sim = Simulator(m)

    async def bench(ctx):
        for v in range(lo, hi):
            ctx.set(x, v)
            assert ctx.get(y) == sum(1 << k for k in range(n) if v > k), v
    sim.add_testbench(bench)
    sim.run()


def test_saturate8_exhaustive():
    """int8 / uint8 saturation of every 16-bit value (the requant lanes' output width)."""
    m = Module()
    x, sg, y = Signal(signed(16)), Signal(2), Signal(signed(32))
    m.d.comb += y.eq(_saturate8(x, sg[0]))
    sim = Simulator(m)

    async def bench(ctx):
        for s, (lo, hi) in ((0, (0, 255)), (1, (-128, 127))):
            ctx.set(sg, s)
            for v in range(-32768, 32768, 7):
                ctx.set(x, v)
                assert ctx.get(y) == min(max(v, lo), hi), (s, v)
            for v in (-32768, -129, -128, -127, -1, 0, 1, 126, 127, 128, 254, 255, 256, 32767):
                ctx.set(x, v)
                assert ctx.get(y) == min(max(v, lo), hi), (s, v)
    sim.add_testbench(bench)
    sim.run()
