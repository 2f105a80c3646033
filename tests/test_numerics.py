"""sim.numerics against independent references: exact rationals, exhaustive small sweeps, the paper."""

import math
from fractions import Fraction

import numpy as np
import pytest

from sim import numerics as nx


def ref_round_half_up(fr: Fraction) -> int:
    return math.floor(fr + Fraction(1, 2))


@pytest.mark.parametrize("s", range(-3, 12))
def test_rshift_round_matches_exact_rational(s):
    xs = np.arange(-5000, 5001)
    got = nx.rshift_round(xs, s)
    want = [ref_round_half_up(Fraction(int(x), 1) / Fraction(2) ** s) for x in xs]
    assert got.tolist() == want


def test_rshift_round_half_cases():
    assert nx.rshift_round(5, 1) == 3      # 2.5 -> 3
    assert nx.rshift_round(-5, 1) == -2    # -2.5 -> -2
    assert nx.rshift_round(-7, 2) == -2    # -1.75 -> -2
    assert nx.rshift_round(3, -2) == 12


def test_saturate():
    assert nx.saturate(np.array([200, -200, 5]), 8).tolist() == [127, -128, 5]
    assert nx.saturate(np.array([300, -3]), 8, signed=False).tolist() == [255, 0]
    with pytest.raises(ValueError, match="bits"):
        nx.saturate(1, 0)


def test_to_dyadic_error_bound_and_normalisation():
    rng = np.random.default_rng(0)
    scales = np.exp(rng.uniform(np.log(1e-9), np.log(1e3), 20000))
    d = nx.to_dyadic(scales)
    approx = d.b / np.power(2.0, d.c)
    assert np.all(np.abs(approx - scales) <= np.power(2.0, -d.c - 1) * (1 + 1e-12))
    assert np.all(np.abs(approx / scales - 1) <= 2.0 ** -nx.MULT_BITS)
    assert np.all(d.b >= 1 << (nx.MULT_BITS - 1)) and np.all(d.b < 1 << nx.MULT_BITS)


def test_to_dyadic_rejects_bad_scales():
    for bad in (-1.0, float("nan"), float("inf"), 2.0 ** 20):
        with pytest.raises(ValueError):
            nx.to_dyadic(bad)
    assert int(nx.to_dyadic(0.0).b) == 0


def test_requant_matches_rational_reference():
    rng = np.random.default_rng(1)
    acc = rng.integers(-(1 << 26), 1 << 26, size=4000)
    mult = nx.to_dyadic(rng.uniform(1e-6, 1e-2, size=4000))
    got = nx.requant(acc, mult)
    for a, b, c, g in zip(acc, mult.b, mult.c, got):
        want = ref_round_half_up(Fraction(int(a) * int(b), 2 ** int(c)))
        assert g == max(-128, min(127, want))


def test_requant_offset_and_unsigned():
    m = nx.Dyadic(1 << 15, 15)  # exactly 1.0
    assert nx.requant(np.array([10, 10]), m, offset=np.array([3, -3])).tolist() == [7, 13]
    assert nx.requant(np.array([-5, 300]), m, signed=False).tolist() == [0, 255]


def test_hswish_int_tracks_float_hardswish():
    s_in, s_out = 6.0 / 4096, 6.0 / 127
    three, mult = nx.hswish_constants(s_in, s_out)
    x = np.arange(-8 * 4096 // 6, 8 * 4096 // 6)
    got = nx.hswish_int(x, three, mult)
    xf = x * s_in
    ref = xf * np.clip(xf + 3, 0, 6) / 6
    want = np.clip(np.floor(ref / s_out + 0.5), -128, 127)
    # three = round(3/s_in) is exact here, so only the dyadic's 2**-16 relative error remains
    assert np.max(np.abs(got - want)) <= 1
    assert np.mean(got != want) < 0.01


def _hswish_ref_codes(x, s_in, s_out):
    """numpy Hardswish of the real inputs ``x s_in`` (the textbook formula), rounded half up to
    int8 codes of scale ``s_out``."""
    xf = x * s_in
    return np.clip(np.floor(xf * np.clip(xf + 3, 0, 6) / 6 / s_out + 0.5), -128, 127)


@pytest.mark.parametrize("s_in", [2.5, 4.0, 5.9, 6.0, 7.5, 40.0, 1000.0])
def test_hswish_int_large_input_scale(s_in):
    """Issue #17: for ``s_in > 6`` the rounded ``3 / s_in`` was 0 (no integer form: the export
    failed on ``three = 0``), and for ``2 < s_in <= 6`` the textbook ``s_in**2 / (6 s_out)`` with
    ``three = 1`` tilted the linear part by up to 50 %. Every 16-bit input is checked against the
    float Hardswish: at most 1 LSB off, and equal wherever the real input is outside the knee
    ``(-3, 3)`` (there Hardswish is 0 or the identity)."""
    x = np.arange(-(1 << 15), 1 << 15)
    s_out = 127 * s_in / 100.0                     # the output spans 100 input LSBs
    three, mult = nx.hswish_constants(s_in, s_out)
    assert 1 <= three < (1 << 15)
    got = nx.hswish_int(x, three, mult)
    want = _hswish_ref_codes(x, s_in, s_out)
    assert np.max(np.abs(got - want)) <= 1
    outside = np.abs(x * s_in) >= 3
    # off the knee only the dyadic's 2**-16 remains: a tie may flip, nothing else
    assert np.mean(got[outside] != want[outside]) < 1e-3


def test_hswish_constants_slope_and_scale_recovery():
    """Over seven decades of ``s_in``: the linear part's slope ``2 three mult s_out / s_in`` is 1
    within the dyadic's ``2**-16``, ``three`` is ``3 / s_in`` rounded (at least 1), and
    :func:`sim.numerics.hswish_in_scale` gives ``s_in`` back."""
    for s_in in np.geomspace(1.0 / (1 << 14), 1e3, 200):
        s_out = float(s_in) * 37.0
        three, mult = nx.hswish_constants(float(s_in), s_out)
        assert three == max(1, math.floor(3 / s_in + 0.5))
        slope = 2 * three * float(mult.value()) * s_out / s_in
        assert abs(slope - 1) <= 2.0 ** -16
        assert abs(float(nx.hswish_in_scale(three, mult, s_out)) / s_in - 1) <= 2.0 ** -16


def test_lod_and_log2_paper_example():
    assert nx.lod(0b01100011) == 6
    assert nx.log2_round(0b01100011) == 7          # paper Sec. IV-D
    assert nx.log2_round(1) == 0
    assert nx.log2_round(0) == -1


def test_log2_round_exhaustive_16bit():
    x = np.arange(1, 1 << 16)
    got = nx.log2_round(x)
    # independent reference: the round bit compares the mantissa x / 2**floor(log2 x) with 1.5
    i = np.array([v.bit_length() - 1 for v in x.tolist()])
    mant = x / np.power(2.0, i)
    assert np.array_equal(got, i + (mant >= 1.5))


def test_log2_quantize_clips_to_4_bits():
    x = np.array([0, 1, 3, 1 << 20])
    e = nx.log2_quantize(x, offset=-10, emin=-12)
    assert e.tolist() == [-12, -10, -8, 3]   # -10+21=11 clipped to emin+15=3
    assert np.all((e - -12 >= 0) & (e - -12 < 16))


def test_shift_divide_matches_division_by_power_of_two():
    x = np.arange(-1000, 1000)
    for e in (-2, 0, 1, 5):
        want = [ref_round_half_up(Fraction(int(v)) / Fraction(2) ** e) for v in x]
        assert nx.shift_divide(x, e).tolist() == want


def _packed_exhaustive(a_range, w_range, shift):
    """Every (a, w_hi, w_lo) with a in ``a_range`` and w_hi, w_lo in ``w_range``: both fields
    equal the plain products (one value of ``a`` per numpy pass)."""
    hi = np.asarray(w_range)[:, None]
    lo = np.asarray(w_range)[None, :]
    for a in a_range:
        h, l = nx.packed_dual_multiply(a, hi, lo, shift=shift)
        assert np.array_equal(h, np.broadcast_to(a * hi, h.shape)), (a, shift)
        assert np.array_equal(l, np.broadcast_to(a * lo, l.shape)), (a, shift)


def test_packed_dual_multiply_exhaustive_9bit_x_int8():
    """The shared operand is a 9-bit activation (int8 or uint8 byte, sign- or zero-extended):
    all 512 x 256 x 256 triples at the default shift 18 (MAT engine, R-MAC down-forward)."""
    _packed_exhaustive(range(-256, 256), range(-128, 128), nx.PACK_SHIFT)


def test_packed_dual_multiply_exhaustive_shift17():
    """Shift 17 (the R-MAC engine's packing, docs/hw-engines.md): 9-bit shared operand with int8
    pairs (down-forward) and int8 shared operand with 9-bit pairs (depthwise: the pixels)."""
    _packed_exhaustive(range(-256, 256), range(-128, 128), 17)
    _packed_exhaustive(range(-128, 128), range(-256, 256), 17)
    # the packed 9-bit operand fits the 27-bit pre-adder (w_bits + shift <= 26)
    ext = nx.pack_dual_operand(np.array([-256, 255]), np.array([-256, 255]), shift=17)
    assert ext.min() >= -(1 << (nx.PREADD_BITS - 1)) and ext.max() < 1 << (nx.PREADD_BITS - 1)


def test_packed_dual_multiply_field_overflow_detected():
    """Outside the exact domain the reference is wrong, as the hardware would be: a 9 x 9-bit
    product of 2**16 does not fit the 17-bit low field (why one operand must stay int8)."""
    h, l = nx.packed_dual_multiply(-256, 0, -256, shift=17)
    assert int(l) != 65536


def test_accumulator_bits_bound():
    # 2560 products of (-128)*(-128) + nothing: 2560 * 16384 = 41943040 needs 27 bits signed
    assert nx.accumulator_bits(2560) == 27
    assert nx.accumulator_bits(2560, bias_bits=30) <= nx.ACC_BITS


def test_requant_with_residual_is_one_rounding_of_the_exact_sum():
    rng = np.random.default_rng(2)
    acc = rng.integers(-(1 << 24), 1 << 24, size=3000)
    res = rng.integers(-128, 128, size=3000)
    m = nx.to_dyadic(rng.uniform(1e-6, 1e-4, size=3000))
    rm = nx.align_residual(nx.to_dyadic(rng.uniform(0.3, 2.0, size=3000)), m.c)
    got = nx.requant(acc, m, residual=res, res_mult=rm)
    for a, r, b, c, rb, rc, g in zip(acc, res, m.b, m.c, rm.b, rm.c, got):
        exact = Fraction(int(a) * int(b), 2 ** int(c)) + Fraction(int(r) * int(rb), 2 ** int(rc))
        assert g == max(-128, min(127, ref_round_half_up(exact)))


def test_requant_relu_before_offset():
    one = nx.Dyadic(1 << 15, 15)
    assert nx.requant(np.array([-7, 9]), one, relu=True, offset=2).tolist() == [-2, 7]


def test_requant_refuses_int64_overflow():
    """A residual shifted far left (c - rc = 46) would wrap int64 silently: it must raise."""
    mult, res_mult = nx.Dyadic(1 << 15, 47), nx.Dyadic(1 << 15, 1)
    with pytest.raises(OverflowError, match="2\\^62"):
        nx.requant(np.array([5]), mult, residual=np.array([127]), res_mult=res_mult)
    # the same magnitudes with an aligned shift are fine and exact
    y = nx.requant(np.array([5]), mult, residual=np.array([127]), res_mult=nx.Dyadic(1 << 15, 47))
    assert int(y[0]) == 0
