"""Two int8 products that share one operand, in one 27x18 multiply (one DSP48E2).

The packing of :func:`sim.numerics.packed_dual_multiply` (Xilinx WP486 style): the pre-adder
forms ``(w_hi << 18) + w_lo`` on the 27-bit A/D path, the shared operand ``a`` is on the 18-bit
B port, and the 45-bit product holds ``a*w_lo`` in bits [17:0] and ``a*w_hi`` above, with the
low field's sign bit (bit 17) added back to the high field to undo the borrow of a negative
low product.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim.numerics import PACK_SHIFT

from ..params import check_int

__all__ = ["PackedDualMultiplier"]


class PackedDualMultiplier(wiring.Component):
    """``p_hi = a * w_hi`` and ``p_lo = a * w_lo`` from one multiply ``a * ((w_hi << 18) + w_lo)``.

    Pipeline (latency 2, matching the DSP48E2's A/B/D input registers and M/P register):
    cycle 1 registers ``a`` and the pre-adder sum, cycle 2 registers the product; the field
    split and sign correction are wires on the product register.

    Parameters (keyword-only)
    -------------------------
    a_bits : int, 2..(18 - w_bits) (default 8)
        Bits of the shared signed operand (activation).
    w_bits : int, 2..8 (default 8)
        Bits of each signed packed operand (weight): ``(w_hi << 18) + w_lo`` must fit the signed
        27-bit pre-adder for all values (with 9 bits, ``(-256 << 18) - 1`` would not).
        ``a_bits + w_bits <= 18`` keeps the low product inside its 18-bit field.

    Ports
    -----
    a : In(signed(a_bits))                      shared operand
    w_hi, w_lo : In(signed(w_bits))             the two other operands
    in_valid : In(1)
    p_hi, p_lo : Out(signed(a_bits + w_bits))   the exact products ``a*w_hi``, ``a*w_lo``
    out_valid : Out(1)
    """

    latency = 2

    def __init__(self, *, a_bits: int = 8, w_bits: int = 8):
        # (w_hi << 18) + w_lo must fit the signed 27-bit pre-adder for every value: w_bits <= 8
        self.w_bits = check_int("w_bits", w_bits, lo=2, hi=26 - PACK_SHIFT)
        self.a_bits = check_int("a_bits", a_bits, lo=2, hi=PACK_SHIFT - w_bits)
        pw = a_bits + w_bits
        super().__init__({
            "a": In(signed(a_bits)),
            "w_hi": In(signed(w_bits)),
            "w_lo": In(signed(w_bits)),
            "in_valid": In(1),
            "p_hi": Out(signed(pw)),
            "p_lo": Out(signed(pw)),
            "out_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        a_r = Signal(signed(self.a_bits))
        packed = Signal(signed(27))                 # pre-adder output, 27-bit A/D path
        m.d.sync += [a_r.eq(self.a), packed.eq((self.w_hi << PACK_SHIFT) + self.w_lo)]
        prod = Signal(signed(27 + self.a_bits))     # the one multiply
        m.d.sync += prod.eq(a_r * packed)
        v1, v2 = Signal(), Signal()
        m.d.sync += [v1.eq(self.in_valid), v2.eq(v1)]
        low = prod[:PACK_SHIFT].as_signed()
        m.d.comb += [
            self.p_lo.eq(low),
            self.p_hi.eq((prod >> PACK_SHIFT) + prod[PACK_SHIFT - 1]),
            self.out_valid.eq(v2),
        ]
        return m
