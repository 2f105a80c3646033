"""Log2 quantizer of linear-attention divisors (paper Sec. IV-D, Eq. 11): a leading-one detector
with the round bit, offset by the precomputed ``round(log2(S))`` and clipped to a 4-bit code."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim.numerics import LOG2_CODE_BITS

from ..params import check_bool, check_int

__all__ = ["Log2Quantizer"]


class Log2Quantizer(wiring.Component):
    """``e = clip(offset + log2_round(x), emin, emin + 2**code_bits - 1)`` and ``code = e - emin``.

    ``log2_round(x) = i + x[i-1]`` with ``i`` the index of the leading one of ``x`` (so
    ``0b01100011 -> 7``); ``x = 0`` gives ``e = emin`` (code 0). Bit-exact with
    :func:`sim.numerics.log2_quantize` (and ``lod_out`` with :func:`sim.numerics.log2_round`).

    Parameters (keyword-only)
    -------------------------
    width : int, 2..64 (default 32, the accumulator width ``ACC_BITS``)
        Bits of the unsigned divisor ``x``.
    code_bits : int, 1..8 (default 4, the paper's 4-bit log2 code)
    exp_bits : int, 4..16 (default 8)
        Bits of the signed exponents ``offset``, ``emin`` and ``exp``.
    registered : bool (default True)
        Register the outputs (latency 1) or not (latency 0).

    Ports
    -----
    x : In(unsigned(width))        the integer divisor (non-negative by construction: ReLU(Q)·sum ReLU(K))
    offset : In(signed(exp_bits))  ``round(log2(S))`` of the divisor's scale ``S``, per layer
    emin : In(signed(exp_bits))    the smallest exponent (code 0), per layer; must satisfy
                                   ``emin + 2**code_bits - 1 < 2**(exp_bits-1)`` so ``exp`` fits
    in_valid : In(1)
    exp : Out(signed(exp_bits))    the clipped exponent ``e``: the divisor is approximately ``2**e``
    code : Out(unsigned(code_bits)) ``e - emin``, the stored code and the shifter array's shift
    lod_out : Out(signed(...))     ``log2_round(x)`` (-1 for ``x = 0``), for debugging
    out_valid : Out(1)
    """

    def __init__(self, *, width: int = 32, code_bits: int = LOG2_CODE_BITS, exp_bits: int = 8,
                 registered: bool = True):
        self.width = check_int("width", width, lo=2, hi=64)
        self.code_bits = check_int("code_bits", code_bits, lo=1, hi=8)
        self.exp_bits = check_int("exp_bits", exp_bits, lo=4, hi=16)
        self.registered = check_bool("registered", registered)
        if (1 << code_bits) > (1 << (exp_bits - 1)):
            raise ValueError(f"code_bits must be <= exp_bits - 1 = {exp_bits - 1} so that "
                             f"emin + 2**code_bits - 1 is representable, got {code_bits}")
        self._lod_bits = width.bit_length() + 1      # holds -1 .. width
        super().__init__({
            "x": In(unsigned(width)),
            "offset": In(signed(exp_bits)),
            "emin": In(signed(exp_bits)),
            "in_valid": In(1),
            "exp": Out(signed(exp_bits)),
            "code": Out(unsigned(code_bits)),
            "lod_out": Out(signed(self._lod_bits)),
            "out_valid": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``x`` to ``exp``/``code``."""
        return int(self.registered)

    def elaborate(self, platform):
        m = Module()
        w = self.width
        # leading-one detector as a binary search (log2(width) levels of 2:1 muxes): at each
        # level, if the upper half of the remaining window has a one, keep it and set that bit
        # of the index, otherwise keep the lower half
        levels = (w - 1).bit_length()
        window = Signal(1 << levels, name="lod_window")
        m.d.comb += window.eq(self.x)
        lead = Signal(range(max(w, 2)), name="lead")
        bits = []
        for lvl in reversed(range(levels)):
            half = 1 << lvl
            upper = window[half:2 * half]
            hit = Signal(name=f"lod_hit{lvl}")
            nxt = Signal(half, name=f"lod_window{lvl}")
            m.d.comb += [hit.eq(upper.any()), nxt.eq(Mux(hit, upper, window[:half]))]
            bits.append((lvl, hit))
            window = nxt
        m.d.comb += lead.eq(Cat(*[h for _, h in sorted(bits)]))
        # the round bit: x[lead - 1] (0 when lead = 0)
        round_bit = Signal()
        m.d.comb += round_bit.eq(Mux(lead == 0, 0, (self.x << 1).bit_select(lead, 1)))
        nonzero = self.x.any()
        log2r = Signal(signed(self._lod_bits), name="log2r")
        m.d.comb += log2r.eq(Mux(nonzero, lead + round_bit, -1))

        wide = max(self.exp_bits, self._lod_bits) + 2
        e_raw = Signal(signed(wide))
        hi = Signal(signed(wide))
        e = Signal(signed(self.exp_bits))
        m.d.comb += [
            e_raw.eq(Mux(nonzero, self.offset + log2r, self.emin)),
            hi.eq(self.emin + (1 << self.code_bits) - 1),
        ]
        with m.If(e_raw < self.emin):
            m.d.comb += e.eq(self.emin)
        with m.Elif(e_raw > hi):
            m.d.comb += e.eq(hi)
        with m.Else():
            m.d.comb += e.eq(e_raw)
        code = Signal(unsigned(self.code_bits))
        m.d.comb += code.eq(e - self.emin)

        dom = m.d.sync if self.registered else m.d.comb
        dom += [self.exp.eq(e), self.code.eq(code), self.lod_out.eq(log2r),
                self.out_valid.eq(self.in_valid)]
        return m
