"""Two small products that share one operand, in one 27x18 multiply (one DSP48E2).

The packing of :func:`sim.numerics.packed_dual_multiply` (Xilinx WP486 style): the pre-adder
forms ``(w_hi << shift) + w_lo`` on the 27-bit A/D path, the shared operand ``a`` is on the
18-bit B port, and the 45-bit product holds ``a*w_lo`` in bits ``[shift-1:0]`` and ``a*w_hi``
above, with the low field's sign bit added back to the high field to undo the borrow of a
negative low product. Default: a 9-bit shared operand (an int8 or uint8 activation, sign- or
zero-extended) times two int8 weights at shift 18.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim.numerics import PACK_SHIFT, PREADD_BITS

from ..params import check_bool, check_int

__all__ = ["PackedDualMultiplier", "split_packed"]


def split_packed(prod, shift: int):
    """The two exact products in the packed product ``prod`` = ``a * ((w_hi << shift) + w_lo)``:
    ``(a * w_hi, a * w_lo)``, the low field sign-extended and its sign bit added back to the
    high field (the borrow of a negative low product), as ``sim.numerics.packed_dual_multiply``
    defines them. Wires only; the engines (``hw.engines.packed``) use it on their own product
    registers."""
    return (prod >> shift) + prod[shift - 1], prod[:shift].as_signed()


class PackedDualMultiplier(wiring.Component):
    """``p_hi = a * w_hi`` and ``p_lo = a * w_lo`` from one multiply
    ``a * ((w_hi << shift) + w_lo)``.

    Pipeline (latency 2, matching the DSP48E2's A/B/D input registers and M/P register):
    cycle 1 registers ``a`` and the pre-adder sum, cycle 2 registers the product; the field
    split and sign correction are wires on the product register.

    Parameters (keyword-only)
    -------------------------
    a_bits : int, 2..min(18, shift - w_bits + mixed) (default 9)
        Bits of the shared signed operand (activation: 9 = an int8 or uint8 byte extended).
    w_bits : int, 2..(26 - shift) (default 8)
        Bits of each signed packed operand: ``(w_hi << shift) + w_lo`` must fit the signed
        27-bit pre-adder for all values, i.e. ``w_bits + shift <= 26``.
    shift : int, 2..24 (default ``sim.numerics.PACK_SHIFT`` = 18)
        Position of ``w_hi`` in the packed operand = width of the low product field.
        ``a_bits + w_bits <= shift`` makes the low field hold every product.
    mixed : bool (default False)
        The caller guarantees that in every product one of the two operands fits one bit less
        than its port (``a`` in ``a_bits - 1`` bits or ``w_hi, w_lo`` in ``w_bits - 1``), so
        ``|product| <= 2**(a_bits + w_bits - 3)`` and ``a_bits + w_bits <= shift + 1`` is
        enough. The R-MAC engine's case: 9-bit ports at shift 17, an int8 weight times a 9-bit
        activation in both modes (the shared operand is the activation in down-forward mode,
        the weight in self-accumulation mode). Without the guarantee the one product
        ``(-2**(a_bits-1)) * (-2**(w_bits-1)) = 2**shift`` would not fit the low field.

    Ports
    -----
    a : In(signed(a_bits))                      shared operand
    w_hi, w_lo : In(signed(w_bits))             the two other operands
    in_valid : In(1)
    p_hi, p_lo : Out(signed(a_bits + w_bits))   the exact products ``a*w_hi``, ``a*w_lo``
    out_valid : Out(1)
    """

    latency = 2

    def __init__(self, *, a_bits: int = 9, w_bits: int = 8, shift: int = PACK_SHIFT,
                 mixed: bool = False):
        self.shift = check_int("shift", shift, lo=2, hi=PREADD_BITS - 3)
        self.mixed = check_bool("mixed", mixed)
        # (w_hi << shift) + w_lo must fit the signed 27-bit pre-adder for every value
        self.w_bits = check_int("w_bits", w_bits, lo=2, hi=PREADD_BITS - 1 - shift)
        # every product must fit the low field (shift bits); a is on the 18-bit B port
        self.a_bits = check_int("a_bits", a_bits, lo=2,
                                hi=min(18, shift - w_bits + int(mixed)))
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
        sh = self.shift
        a_r = Signal(signed(self.a_bits))
        packed = Signal(signed(PREADD_BITS))        # pre-adder output, 27-bit A/D path
        m.d.sync += [a_r.eq(self.a), packed.eq((self.w_hi << sh) + self.w_lo)]
        prod = Signal(signed(PREADD_BITS + self.a_bits))     # the one multiply
        m.d.sync += prod.eq(a_r * packed)
        v1, v2 = Signal(), Signal()
        m.d.sync += [v1.eq(self.in_valid), v2.eq(v1)]
        p_hi, p_lo = split_packed(prod, sh)
        m.d.comb += [
            self.p_lo.eq(p_lo),
            self.p_hi.eq(p_hi),
            self.out_valid.eq(v2),
        ]
        return m
