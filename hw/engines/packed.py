"""The packed multiply of the engines' DSP48E2s: two products sharing one operand.

``packed_products(m, a, w_hi, w_lo, shift=..., name=...)`` adds to module ``m`` one registered
product ``a * ((w_hi << shift) + w_lo)`` (the DSP48E2's pre-adder, multiplier and M register)
and returns the two exact products ``(a * w_hi, a * w_lo)`` split from it as
``sim.numerics.packed_dual_multiply`` defines them (the low field sign-extended, the high field
plus the low field's sign bit). It is the second stage of ``hw.units.PackedDualMultiplier``
without that unit's input registers: the engines register the operands themselves (the DSP's
A/B/D input registers), where they can share the registers with the rest of the datapath (the
R-MAC engine's pixel shift registers, the MAT engine's weights before the pre-adder). The
caller guarantees what ``PackedDualMultiplier`` checks: every ``a * w_lo`` fits a signed
``shift``-bit field and ``(w_hi << shift) + w_lo`` fits the signed 27-bit pre-adder
(``sim.numerics.PREADD_BITS``); the engines' tests run every (activation, weight) pair through
both engines.
"""

from __future__ import annotations

from amaranth import Signal, signed

from hw.units.packed_mult import split_packed
from sim.numerics import PREADD_BITS

__all__ = ["packed_products", "PACKED_LATENCY"]

#: cycles from the ports to the products: the operand registers and the product register
PACKED_LATENCY = 2


def packed_products(m, a, w_hi, w_lo, *, shift: int, name: str):
    """One registered packed multiply in ``m.d.sync``; ``a``, ``w_hi``, ``w_lo`` are the
    (registered) signed operands. Returns ``(p_hi, p_lo)``: ``a * w_hi`` and ``a * w_lo``, valid
    one cycle after the operands."""
    prod = Signal(signed(PREADD_BITS + len(a)), name=name)
    m.d.sync += prod.eq(a * ((w_hi << shift) + w_lo))
    return split_packed(prod, shift)
