"""hw.estimate.estimate_modules: per-module resources of a design synthesised without
flattening (docs/hw-core.md, issue #14 round 3, uses it for the units' breakdowns)."""

from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.estimate import estimate, estimate_modules
from hw.units.log2 import Log2Quantizer


class _Two(wiring.Component):
    """A registered 16 x 16 product (one DSP48E2 in this module) beside a log2 quantizer
    (a submodule, no DSP)."""
    a: In(signed(16))
    b: In(signed(16))
    x: In(32)
    p: Out(signed(32))
    code: Out(4)
    valid: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.q = q = Log2Quantizer(width=32, exp_bits=8)
        m.d.sync += self.p.eq(self.a * self.b)
        m.d.comb += [q.x.eq(self.x), q.offset.eq(3), q.emin.eq(-4), q.in_valid.eq(1),
                     self.code.eq(q.code), self.valid.eq(q.out_valid)]
        return m


def test_estimate_modules_splits_the_design_by_module():
    mods = estimate_modules(_Two(), "two")
    assert set(mods) == {"two", "two.q"}
    assert mods["two"]["DSP48E2"] == 1 and mods["two.q"]["DSP48E2"] == 0
    assert mods["two.q"]["LUT"] > 0 and mods["two.q"]["FF"] > 0
    # registers are not merged across the hierarchy: the modules' FFs add up to the flattened
    # design's, and the product register is the top module's own
    flat = estimate(_Two(), "two", abc9=False)
    assert sum(v["FF"] for v in mods.values()) == flat["FF"]
    assert sum(v["DSP48E2"] for v in mods.values()) == flat["DSP48E2"] == 1
