"""Re-quantization module (paper Eq. 12): dyadic rescaling of accumulators to 8-bit outputs,
with optional ReLU, Hardswish and residual add in the integer domain."""

from __future__ import annotations

import math

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim import numerics
from sim.numerics import ACC_BITS, MULT_BITS

from ._arith import mul_shift_add, rshift_round, saturate
from ..params import check_bool, check_int

__all__ = ["Requant", "WIDE_BITS"]

#: width of the rounding datapath: ``sim.numerics.requant`` (and ``hswish_int``, which calls it)
#: refuses any input whose ``|acc*b| + |res*rb| * 2**(c - rc)`` may reach its int64 limit
#: (2**62), so every sum it defines lies in [-2**62, 2**62): a signed 63-bit number
WIDE_BITS = math.frexp(numerics._WIDE_LIMIT)[1]


class Requant(wiring.Component):
    """Dyadic requantization with ReLU / Hardswish / residual, bit-exact with :mod:`sim.numerics`.

    Without Hardswish (``hswish_en = 0``) the output is
    ``requant(acc, Dyadic(b, c), out_bits, signed, offset, residual=res, res_mult=Dyadic(rb, rc), relu=relu_en)``:
    ``y = rshift_round(acc*b + (res*rb << (c - rc)), c)``, ``max(y, 0)`` if ``relu_en``, then
    ``saturate(y - offset)``. A zero ``rb`` disables the residual; ``rc <= c`` is required (the
    compiler aligns with :func:`sim.numerics.align_residual`; with ``rc > c`` the output is
    undefined).

    With Hardswish (``hswish_en = 1``, hardware present when ``hswish=True``) the first stage is
    rounded and saturated to ``hswish_in_bits`` without offset, and then
    ``hswish_int(x, three, Dyadic(hb, hc), out_bits, signed, offset)``::

        x = requant(acc, Dyadic(b, c), out_bits=hswish_in_bits, residual=..., relu=relu_en)
        out = hswish_int(x, three, Dyadic(hb, hc), out_bits=out_bits, signed=signed, offset=offset)

    (decision: the paper is silent on Hardswish; ``x`` is an intermediate at its own scale
    ``s_in`` with ``hswish_in_bits`` = 16 bits of headroom, see docs/hw-units.md).

    Datapath widths (each from a bound; ``A`` = acc_bits, ``B`` = mult_bits, ``X`` =
    hswish_in_bits, ``R`` = 9 = RES_BITS):

    * ``acc * b``: ``|acc| <= 2**(A-1)``, ``b < 2**B``, so ``|acc*b| < 2**(A+B-1)``: signed
      ``A + B`` bits (48 at the defaults);
    * ``res * rb``: ``|res| <= 2**(R-1)``, so signed ``R + B`` bits (25);
    * the aligned sum ``acc*b + (res*rb << (c - rc))`` and its rounding shift: ``sim.numerics``
      defines ``requant`` only where ``|acc*b| + |res*rb| * 2**(c-rc) < 2**62`` (else it raises
      ``OverflowError``), so signed ``WIDE_BITS`` = 63 bits hold every defined result (the
      field ranges alone, ``c - rc <= 2**shift_bits - 1``, would need ``R + B + 63 + 1`` = 89
      bits plus a carry); outside that domain the output is undefined;
    * the rounded ``y`` is clamped to ``max(out_bits + 2, X)`` bits before its pipeline
      register: ReLU, the offset (``|offset| <= 2**out_bits``) and both saturations give the
      same result on the clamped value (it stays beyond ``out_bits + 1`` bits of magnitude);
      the rounded Hardswish product is clamped to ``out_bits + 2`` bits before its offset for
      the same reason;
    * Hardswish: ``|x| <= 2**(X-1)``, ``0 <= t <= 2*three < 2**(X+1)``, so ``|x*t| < 2**(2X)``:
      signed ``2X + 1`` bits (33), and ``|x*t*hb| < 2**(2X+B)``: signed ``2X + B + 1`` (49).

    All per-vector controls (``b, c, offset, rb, rc, relu_en, hswish_en, three, hb, hc``) are
    sampled together with ``acc`` and travel down the pipeline with it, so they may change every
    cycle (per-channel scales streaming with the channels).

    Parameters (keyword-only)
    -------------------------
    acc_bits : int, 2..48 (default 32 = ACC_BITS)       accumulator width
    mult_bits : int, 1..24 (default 16 = MULT_BITS)     dyadic multiplier width (unsigned)
    shift_bits : int, 1..7 (default 6: c <= MAX_SHIFT = 47 < 64)  dyadic shift width (unsigned)
    out_bits : int, 2..32 (default 8)                    output width
    signed : bool (default True)                         signed or unsigned output saturation
    residual : bool (default True)                       include the residual input and multiplier
    hswish : bool (default True)                         include the Hardswish stage
    hswish_in_bits : int, 2..24 (default 16)             width of the Hardswish input ``x``
    residual_dsp : bool (default True)                   ``res * rb`` on a DSP48E2 (``*``); False:
                                                         shift-and-add in fabric, one DSP48E2 fewer
                                                         for about 250 LUT (docs/hw-core.md)

    Ports
    -----
    acc : In(signed(acc_bits))        accumulator, in acc LSBs
    b : In(unsigned(mult_bits)), c : In(unsigned(shift_bits))   scale ``b / 2**c``
    offset : In(signed(out_bits + 1)) subtracted after rounding, in output LSBs (paper Eq. 9)
    relu_en : In(1)                   apply ReLU before the offset
    res : In(signed(9)), rb : In(unsigned(mult_bits)), rc : In(unsigned(shift_bits))
                                      residual input (9-bit: int8 or uint8 byte extended) and its scale ``rb / 2**rc`` [residual=True]
    hswish_en : In(1), three : In(unsigned(hswish_in_bits)), hb : In(unsigned(mult_bits)),
    hc : In(unsigned(shift_bits))     Hardswish: 3.0 in ``x`` LSBs and the dyadic ``s_in**2/(6 s_out)`` [hswish=True]
    in_valid : In(1)
    out : Out(signed(out_bits) or unsigned(out_bits))
    out_valid : Out(1)
    """

    RES_BITS = 9  #: width of the residual input (an int8 or uint8 activation, sign- or zero-extended)

    def __init__(self, *, acc_bits: int = ACC_BITS, mult_bits: int = MULT_BITS,
                 shift_bits: int = 6, out_bits: int = 8, signed: bool = True,
                 residual: bool = True, hswish: bool = True, hswish_in_bits: int = 16,
                 residual_dsp: bool = True):
        self.acc_bits = check_int("acc_bits", acc_bits, lo=2, hi=48)
        self.mult_bits = check_int("mult_bits", mult_bits, lo=1, hi=24)
        self.shift_bits = check_int("shift_bits", shift_bits, lo=1, hi=7)
        self.out_bits = check_int("out_bits", out_bits, lo=2, hi=32)
        self.signed = check_bool("signed", signed)
        self.residual = check_bool("residual", residual)
        self.hswish = check_bool("hswish", hswish)
        self.hswish_in_bits = check_int("hswish_in_bits", hswish_in_bits, lo=2, hi=24)
        self.residual_dsp = check_bool("residual_dsp", residual_dsp)
        self.max_c = (1 << shift_bits) - 1
        ports = {
            "acc": In(_signed(acc_bits)),
            "b": In(unsigned(mult_bits)),
            "c": In(unsigned(shift_bits)),
            "offset": In(_signed(out_bits + 1)),
            "relu_en": In(1),
            "in_valid": In(1),
            "out": Out(_signed(out_bits) if signed else unsigned(out_bits)),
            "out_valid": Out(1),
        }
        if residual:
            ports.update(res=In(_signed(self.RES_BITS)), rb=In(unsigned(mult_bits)),
                         rc=In(unsigned(shift_bits)))
        if hswish:
            ports.update(hswish_en=In(1), three=In(unsigned(hswish_in_bits)),
                         hb=In(unsigned(mult_bits)), hc=In(unsigned(shift_bits)))
        super().__init__(ports)

    @property
    def latency(self) -> int:
        """Cycles from ``acc`` to ``out``: 3 (multiply, round, saturate), 6 with Hardswish."""
        return 6 if self.hswish else 3

    def elaborate(self, platform):
        m = Module()

        def stage(value, name, shape=None):
            """Register ``value`` (one pipeline stage)."""
            r = Signal(shape if shape is not None else value.shape(), name=name)
            m.d.sync += r.eq(value)
            return r

        # control that travels with the data
        ctl = {"c": self.c, "offset": self.offset, "relu": self.relu_en, "valid": self.in_valid}
        if self.hswish:
            ctl.update(hsw=self.hswish_en, three=self.three, hb=self.hb, hc=self.hc)

        # --- stage 1: products (widths: see the class doc) ----------------------------------
        prod_w = min(self.acc_bits + self.mult_bits, WIDE_BITS)
        p1 = stage(self.acc * self.b, "p1", _signed(prod_w))
        c1 = {k: stage(v, f"{k}_1") for k, v in ctl.items()}
        if self.residual:
            rp_w = self.RES_BITS + self.mult_bits
            if self.residual_dsp:
                rprod = self.res * self.rb
            else:
                rprod = mul_shift_add(m, self.res, self.rb, name="rprod")
            r1 = stage(rprod, "r1", _signed(rp_w))
            d1 = stage((self.c - self.rc)[:self.shift_bits], "d_1", unsigned(self.shift_bits))

        # --- stage 2: residual alignment, add, round-half-up shift, clamp ----------------------
        y_bits = max(self.out_bits + 2, self.hswish_in_bits if self.hswish else 0)
        if self.residual:
            wide_w = min(max(prod_w, rp_w + self.max_c) + 1, WIDE_BITS)
            aligned = Signal(_signed(wide_w))
            m.d.comb += aligned.eq(r1 << d1)
            z = Signal(_signed(wide_w))
            m.d.comb += z.eq(p1 + aligned)
            y = rshift_round(m, z, c1["c"], name="y")
        else:
            y = rshift_round(m, p1, c1["c"], name="y")
        if len(y) > y_bits:
            y = saturate(m, y, y_bits, True, name="y_clamp")
        y2 = stage(y, "y2")
        c2 = {k: stage(v, f"{k}_2") for k, v in c1.items()}

        # --- stage 3: ReLU, offset, saturate (or saturate to the Hardswish input) ---------------
        yr = Signal(y2.shape())
        m.d.comb += yr.eq(Mux(c2["relu"] & (y2 < 0), 0, y2))
        shifted = Signal(_signed(len(yr) + 2))
        m.d.comb += shifted.eq(yr - c2["offset"])
        out_plain = saturate(m, shifted, self.out_bits, self.signed, name="out_plain")
        if not self.hswish:
            m.d.sync += [self.out.eq(out_plain), self.out_valid.eq(c2["valid"])]
            return m

        x = saturate(m, yr, self.hswish_in_bits, True, name="hsw_x")
        x3 = stage(x, "x3")
        out3 = stage(out_plain, "out3")
        c3 = {k: stage(v, f"{k}_3") for k, v in c2.items()}

        # --- stage 4: t = clip(x + three, 0, 2*three); q = x * t ---------------------------
        xb = self.hswish_in_bits
        t_raw = Signal(_signed(xb + 2))
        m.d.comb += t_raw.eq(x3 + c3["three"])
        two3 = Signal(unsigned(xb + 1))
        m.d.comb += two3.eq(c3["three"] << 1)
        t = Signal(unsigned(xb + 1))
        # x + three > 2 three compared as x > three (no carry chain behind the adder)
        m.d.comb += t.eq(Mux(t_raw < 0, 0, Mux(x3 > c3["three"], two3, t_raw)))
        q4 = stage(x3 * t, "q4", _signed(2 * xb + 1))
        out4 = stage(out3, "out4")
        c4 = {k: stage(v, f"{k}_4") for k, v in c3.items()}

        # --- stage 5: q * hb ------------------------------------------------------------------
        q5 = stage(q4 * c4["hb"], "q5", _signed(min(2 * xb + self.mult_bits + 1, WIDE_BITS)))
        out5 = stage(out4, "out5")
        c5 = {k: stage(v, f"{k}_5") for k, v in c4.items()}

        # --- stage 6: round by hc, offset, saturate; select -----------------------------------
        # clamped to out_bits + 2 bits before the offset (the same argument as for ``y``)
        h = saturate(m, rshift_round(m, q5, c5["hc"], name="h_wide"), self.out_bits + 2, True,
                     name="h")
        hs = Signal(_signed(len(h) + 2))
        m.d.comb += hs.eq(h - c5["offset"])
        out_h = saturate(m, hs, self.out_bits, self.signed, name="out_hsw")
        m.d.sync += [self.out.eq(Mux(c5["hsw"], out_h, out5)), self.out_valid.eq(c5["valid"])]
        return m


def _signed(width: int):
    """``amaranth.hdl.signed`` (the constructor's ``signed`` parameter shadows it there)."""
    return signed(width)
