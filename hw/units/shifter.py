"""Shifter array: P lanes of division by a power of two with round-half-up (paper Sec. V-A2,
step v of the linear attention: the dividend divided by the log2-quantized divisor)."""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sim.numerics import LOG2_CODE_BITS

from ._arith import rshift_round
from ..params import check_bool, check_int, check_pow2

__all__ = ["ShifterArray"]


class ShifterArray(wiring.Component):
    """``out[i] = rshift_round(x[i], shift[i]) = (x[i] + 2**(shift[i]-1)) >> shift[i]`` per lane.

    Bit-exact with :func:`sim.numerics.shift_divide` for non-negative shifts. The shift is the
    4-bit log2 code of the divisor (``e - emin``, see :class:`~hw.units.Log2Quantizer`); the
    constant ``2**emin`` is folded into the dividend's requantization scale, so only right shifts
    are needed. The result of a right shift with rounding always fits the input width.

    Parameters (keyword-only)
    -------------------------
    lanes : int, power of two in 1..1024 (default 8: one lane per MAT multiplier, T = 8)
        P, the number of parallel lanes (a power of two: one buffer word of P elements).
    width : int, 2..64 (default 16)
        Bits of each signed dividend.
    shift_bits : int, 1..6 (default 4, the log2 code width)
        Bits of each unsigned shift amount.
    registered : bool (default True)
        Register the outputs (latency 1) or not (latency 0).

    Ports
    -----
    x : In(ArrayLayout(signed(width), lanes))             dividends, in input LSBs
    shift : In(ArrayLayout(unsigned(shift_bits), lanes))  shift amounts (divisor = 2**shift)
    in_valid : In(1)
    out : Out(ArrayLayout(signed(width), lanes))          quotients, rounded half up
    out_valid : Out(1)
    """

    def __init__(self, *, lanes: int = 8, width: int = 16, shift_bits: int = LOG2_CODE_BITS,
                 registered: bool = True):
        self.lanes = check_pow2("lanes", lanes, lo=1, hi=1024)
        self.width = check_int("width", width, lo=2, hi=64)
        self.shift_bits = check_int("shift_bits", shift_bits, lo=1, hi=6)
        self.registered = check_bool("registered", registered)
        super().__init__({
            "x": In(data.ArrayLayout(signed(width), lanes)),
            "shift": In(data.ArrayLayout(unsigned(shift_bits), lanes)),
            "in_valid": In(1),
            "out": Out(data.ArrayLayout(signed(width), lanes)),
            "out_valid": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``x`` to ``out``."""
        return int(self.registered)

    def elaborate(self, platform):
        m = Module()
        dom = m.d.sync if self.registered else m.d.comb
        for i in range(self.lanes):
            q = rshift_round(m, self.x[i], self.shift[i], name=f"q{i}")
            dom += self.out[i].eq(q)
        dom += self.out_valid.eq(self.in_valid)
        return m
