"""Shared arithmetic building blocks of the units."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned

__all__ = ["rshift_round", "saturate", "mul_shift_add"]


def rshift_round(m: Module, value, shift, *, name: str):
    """``floor(value / 2**shift + 1/2)`` (round half up, :func:`sim.numerics.rshift_round`).

    Built as ``(value >> shift) + value[shift - 1]`` (the round bit is 0 for ``shift = 0``): one
    barrel shifter, the one-bit selection ``((value << 1) >> shift)[0]`` and an incrementer, no
    multiplexer for ``shift = 0``. Equal to the definition because, with ``value = h 2**s + l``
    and ``0 <= l < 2**s``, ``l + 2**(s-1)`` carries into ``h`` exactly when bit ``s - 1`` of
    ``value`` is set; the arithmetic shifts sign-extend, so the identity also holds for shifts
    beyond ``len(value)``. ``value`` is signed; the result has ``len(value)`` bits (a rounded
    right shift never grows).
    """
    w = len(value)
    v = value.as_signed()
    part = Signal(signed(w), name=f"{name}_part")
    m.d.comb += part.eq(v >> shift)
    rbit = Signal(name=f"{name}_rbit")
    m.d.comb += rbit.eq(((v << 1) >> shift)[0])
    out = Signal(signed(w), name=name)
    m.d.comb += out.eq(part + rbit)
    return out


def saturate(m: Module, value, bits: int, is_signed: bool, *, name: str):
    """Clip ``value`` to the range of a ``bits``-wide signed/unsigned number (:func:`sim.numerics.saturate`).

    The range check looks at the bits above the result (all equal to the sign for a signed
    result, all zero for an unsigned one) instead of comparing with the two limits, so it costs
    a reduction of those bits and a ``bits``-wide multiplexer, no carry chain.
    """
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if is_signed else (0, (1 << bits) - 1))
    v = value if value.shape().signed else Cat(value, Const(0, 1))
    v = v.as_signed()
    w = len(v)
    sign = v[w - 1]
    if is_signed:
        fits = Const(1, 1) if w <= bits else (v[bits - 1:].all() | ~v[bits - 1:].any())
    else:
        fits = ~sign if w - 1 <= bits else ~v[bits:].any()
    out = Signal(signed(bits) if is_signed else unsigned(bits), name=name)
    m.d.comb += out.eq(Mux(fits, v[:bits] if w >= bits else v, Mux(sign, lo, hi)))
    return out


def mul_shift_add(m: Module, a, b, *, name: str):
    """``a * b`` as shift-and-add in fabric (no DSP48E2): ``a`` signed (the narrow operand, one
    row per bit, the top bit's row subtracted), ``b`` unsigned. Returns a signed
    ``len(a) + len(b)``-bit signal (``|a| <= 2**(len(a)-1)``, ``b < 2**len(b)``). The rows are
    summed as a balanced tree."""
    wa, wb = len(a), len(b)
    w = wa + wb
    rows = []
    for i in range(wa):
        row = Signal(signed(w), name=f"{name}_row{i}")
        term = Mux(a[i], b, 0) << i
        m.d.comb += row.eq(-term if i == wa - 1 else term)
        rows.append(row)
    k = 0
    while len(rows) > 1:
        nxt = []
        for j in range(0, len(rows) - 1, 2):
            s = Signal(signed(w), name=f"{name}_s{k}")
            k += 1
            m.d.comb += s.eq(rows[j] + rows[j + 1])
            nxt.append(s)
        if len(rows) % 2:
            nxt.append(rows[-1])
        rows = nxt
    out = Signal(signed(w), name=name)
    m.d.comb += out.eq(rows[0])
    return out
