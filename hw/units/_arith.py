"""Shared arithmetic building blocks of the units."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned

__all__ = ["rshift_round", "saturate"]


def rshift_round(m: Module, value, shift, *, name: str):
    """``floor(value / 2**shift + 1/2)`` (round half up, :func:`sim.numerics.rshift_round`).

    Built as ``((value >> (shift - 1)) + 1) >> 1`` for ``shift >= 1`` (one barrel shifter and an
    incrementer, no wide adder for the half-LSB constant), and ``value`` for ``shift = 0``. Equal
    to the definition because ``floor((floor(y) + 1) / 2) = floor((y + 1) / 2)`` for real ``y``.
    ``value`` is signed; the result has ``len(value)`` bits (a rounded right shift never grows).
    """
    w = len(value)
    sm1 = Signal(unsigned(len(shift)), name=f"{name}_sm1")
    m.d.comb += sm1.eq(shift - 1)
    part = Signal(signed(w), name=f"{name}_part")
    m.d.comb += part.eq(value.as_signed() >> sm1)
    inc = Signal(signed(w + 1), name=f"{name}_inc")
    m.d.comb += inc.eq(part + 1)
    out = Signal(signed(w), name=name)
    m.d.comb += out.eq(Mux(shift == 0, value, inc >> 1))
    return out


def saturate(m: Module, value, bits: int, is_signed: bool, *, name: str):
    """Clip ``value`` to the range of a ``bits``-wide signed/unsigned number (:func:`sim.numerics.saturate`)."""
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if is_signed else (0, (1 << bits) - 1))
    out = Signal(signed(bits) if is_signed else unsigned(bits), name=name)
    m.d.comb += out.eq(Mux(value > hi, hi, Mux(value < lo, lo, value)))
    return out
