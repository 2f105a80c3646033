"""The one definition of trio-vit's integer arithmetic.

Every executor of a quantized network -- the torch fake-quant model in ``quant``, the golden
integer model and the compiler's functional simulator in ``sim``, and the RTL in ``hw`` (through
its tests) -- is checked against the functions of this module. Nothing here depends on torch or
Amaranth; everything works on numpy integer arrays (int64 throughout, so that intermediate
products never overflow) and on Python ints.

Conventions
-----------
* ``rshift_round(x, s)`` is the only rounding used anywhere: add half an LSB, then an arithmetic
  shift right, i.e. *round half up* (towards +inf). ``-2.5 -> -2``, ``2.5 -> 3``. In hardware this
  is one adder and a wire shift; round-half-away-from-zero would cost a sign-dependent constant.
* Saturation clips to the two's-complement range of the output width (or the unsigned range
  when ``signed=False``).
* A *dyadic* number is ``b / 2**c`` with ``b`` an unsigned integer of ``MULT_BITS`` bits whose
  top bit is set (normalised) and ``0 <= c <= MAX_SHIFT`` (paper Eq. 12).

Accumulator bound
-----------------
An int8 x int8 product lies in [-16256, 16384] (|p| <= 2**14). A dot product of length K plus an
int32 bias therefore lies within ``K * 2**14 + 2**31``. The largest reduction in EfficientViT-B0..B3
is the head's linear layer with K = 2560 (< 2**12), so ``|acc| < 2**26 + |bias|``; the
accumulator is 32 bits wide and biases are clipped on export to ``ACC_BITS - 2`` bits, which leaves
a factor-2 margin (``accumulator_bits`` computes the exact need for any K). The requant product
``acc * b`` then needs at most 32 + MULT_BITS = 48 bits.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ACC_BITS", "MULT_BITS", "MAX_SHIFT", "LOG2_CODE_BITS",
    "saturate", "rshift_round", "accumulator_bits",
    "Dyadic", "to_dyadic", "requant", "align_residual",
    "relu", "hswish_int", "hswish_constants", "hswish_in_scale",
    "lod", "log2_round", "log2_quantize", "shift_divide",
    "pack_dual_operand", "packed_dual_multiply", "PACK_SHIFT", "PREADD_BITS",
]

ACC_BITS = 32           #: width of every accumulator (psum register), two's complement
MULT_BITS = 16          #: width of the unsigned dyadic multiplier ``b``
MAX_SHIFT = 47          #: largest dyadic shift ``c`` (acc * b has at most 48 bits)
LOG2_CODE_BITS = 4      #: width of a log2-quantized divisor code (paper Sec. IV-D)


def _as_int(x):
    """Return ``x`` as an int64 numpy array (scalars become 0-d arrays)."""
    a = np.asarray(x)
    if a.dtype.kind not in "iub":
        raise TypeError(f"integer input expected, got dtype {a.dtype}")
    return a.astype(np.int64)


def saturate(x, bits: int, *, signed: bool = True):
    """Clip integers to the range of a ``bits``-wide two's-complement (or unsigned) number.

    ``saturate(200, 8) == 127``, ``saturate(-200, 8) == -128``, ``saturate(-3, 8, signed=False) == 0``.
    """
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    return np.clip(_as_int(x), lo, hi)


def rshift_round(x, s):
    """Arithmetic shift of ``x`` right by ``s`` with round-half-up: ``floor(x / 2**s + 1/2)``.

    ``s`` may be an array broadcast against ``x``. A negative ``s`` shifts left (exact).
    This is what the hardware's requant unit and shifter array compute: ``(x + (1 << (s-1))) >> s``.
    """
    x = _as_int(x)
    s = _as_int(s)
    pos = np.maximum(s, 0)
    half = np.where(pos > 0, np.left_shift(np.int64(1), np.maximum(pos - 1, 0)), 0)
    right = np.right_shift(x + half, pos)
    left = np.left_shift(x, np.maximum(-s, 0))
    return np.where(s >= 0, right, left)


def accumulator_bits(k: int, *, in_bits: int = 8, w_bits: int = 8, bias_bits: int = 0) -> int:
    """Smallest two's-complement width that holds any sum of ``k`` products (plus a bias).

    Products of a signed ``in_bits`` and signed ``w_bits`` number lie in
    ``[-(2**(in_bits+w_bits-2) - 2**(in_bits-1)), 2**(in_bits+w_bits-2)]``; the bound used here is
    ``|p| <= 2**(in_bits+w_bits-2)`` (reached by (-128)*(-128)). With a bias of ``bias_bits``
    the magnitude bound is ``k * 2**(in_bits+w_bits-2) + 2**(bias_bits-1)``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    bound = k * (1 << (in_bits + w_bits - 2)) + ((1 << (bias_bits - 1)) if bias_bits else 0)
    return bound.bit_length() + 1


class Dyadic:
    """A dyadic rational ``b / 2**c`` (paper Eq. 12); ``b`` and ``c`` are numpy int64 arrays.

    ``b`` holds one multiplier per output channel (or a 0-d array for one per tensor).
    """

    __slots__ = ("b", "c")

    def __init__(self, b, c):
        self.b = _as_int(b)
        self.c = _as_int(c)
        if np.any(self.b < 0) or np.any(self.b >= (1 << MULT_BITS)):
            raise ValueError(f"dyadic multiplier must be in [0, 2**{MULT_BITS}), got {self.b}")
        if np.any(self.c < 0) or np.any(self.c > MAX_SHIFT):
            raise ValueError(f"dyadic shift must be in [0, {MAX_SHIFT}], got {self.c}")

    def value(self):
        """The real value(s) ``b / 2**c`` as float64."""
        return self.b.astype(np.float64) / np.power(2.0, self.c.astype(np.float64))

    def __repr__(self):
        return f"Dyadic(b={self.b.tolist()}, c={self.c.tolist()})"


def to_dyadic(scale, *, mult_bits: int = MULT_BITS) -> Dyadic:
    """Approximate positive real scale(s) by ``b / 2**c`` with a normalised ``mult_bits``-bit ``b``.

    ``c`` is the largest shift (<= MAX_SHIFT) for which ``round(scale * 2**c) < 2**mult_bits``, so
    ``b >= 2**(mult_bits-1)`` whenever the scale is not tiny. Error bound, for scales with
    ``2**-(MAX_SHIFT - mult_bits + 1) <= scale < 2**mult_bits``:
    ``|b / 2**c - scale| <= 2**-(c+1) <= scale * 2**-mult_bits`` (relative error <= 2**-16 at 16 bits).
    A scale of 0 gives ``b = 0``. Negative, non-finite or too large scales raise ``ValueError``.
    """
    s = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"dyadic scales must be finite and >= 0, got {s}")
    if np.any(s >= (1 << mult_bits)):
        raise ValueError(f"scale {s.max()} too large for a {mult_bits}-bit dyadic multiplier")
    with np.errstate(divide="ignore"):
        e = np.where(s > 0, np.floor(np.log2(np.where(s > 0, s, 1.0))), 0).astype(np.int64)
    c = np.clip(mult_bits - 1 - e, 0, MAX_SHIFT)
    b = np.round(s * np.power(2.0, c)).astype(np.int64)
    # rounding up can carry into bit mult_bits: renormalise
    over = b >= (1 << mult_bits)
    c = np.where(over & (c > 0), c - 1, c)
    b = np.where(over, np.round(s * np.power(2.0, c)).astype(np.int64), b)
    return Dyadic(b, c)


def requant(acc, mult: Dyadic, *, out_bits: int = 8, signed: bool = True, offset=0,
            residual=None, res_mult: Dyadic | None = None, relu: bool = False):
    """Re-quantize accumulators to ``out_bits`` (paper Eq. 12).

    ``y = rshift_round(acc*b + (res*rb << (c - rc)), c)``; then ``max(y, 0)`` if ``relu``; then
    ``sat(y - offset)``. Without a residual this is ``sat(rshift_round(acc*b, c) - offset)``.

    ``acc``: int accumulators; ``mult``'s arrays broadcast against it (callers put the channel
    axis where the per-channel ``b, c`` broadcast). ``offset``: integer subtracted after rounding,
    in output LSBs (the filter-wise shift of the next layer's input, paper Eq. 9, folded into this
    producer's output). ``residual``/``res_mult``: a residual input added in the same rounding
    (``rb / 2**rc`` = its scale over the output scale; requires ``rc <= c``, see
    :func:`align_residual`), so the residual add costs no extra rounding.
    """
    acc = _as_int(acc)
    bound = _maxabs(acc) * _maxabs(mult.b)
    if residual is not None:
        if res_mult is None:
            raise ValueError("a residual needs res_mult")
        if np.any(res_mult.c > mult.c):
            raise ValueError("residual shift rc must be <= the main shift c (use align_residual)")
        res = _as_int(residual)
        shift = mult.c - res_mult.c
        bound += _maxabs(res) * _maxabs(res_mult.b) * 2.0 ** float(np.max(shift, initial=0))
    if bound >= _WIDE_LIMIT:
        raise OverflowError(f"requant: |acc*b + (res*rb << (c-rc))| may reach {bound:.3g}, beyond"
                            f" the 2^62 an int64 reference (and the hardware's datapath) holds")
    wide = acc * mult.b
    if residual is not None:
        wide = wide + np.left_shift(res * res_mult.b, shift)
    y = rshift_round(wide, mult.c)
    if relu:
        y = np.maximum(y, 0)
    return saturate(y - _as_int(offset), out_bits, signed=signed)


_WIDE_LIMIT = float(2 ** 62)


def _maxabs(a) -> float:
    """The largest magnitude in ``a`` as a float (0 for an empty array)."""
    a = np.asarray(a)
    return float(np.max(np.abs(a.astype(np.float64)), initial=0.0))


def align_residual(res_mult: Dyadic, c) -> Dyadic:
    """Make a residual multiplier usable with main shift(s) ``c``: where ``rc > c``, round ``rb``
    to shift ``c`` (``rb' = rshift_round(rb, rc - c)``). Broadcasts ``rb`` against ``c``."""
    c = _as_int(c)
    rb = np.broadcast_to(res_mult.b, np.broadcast_shapes(res_mult.b.shape, c.shape))
    rc = np.broadcast_to(res_mult.c, rb.shape)
    excess = np.maximum(rc - c, 0)
    return Dyadic(rshift_round(rb, excess), rc - excess)


def relu(x):
    """ReLU on integers (scale-free)."""
    return np.maximum(_as_int(x), 0)


def hswish_constants(s_in: float, s_out: float, *, mult_bits: int = MULT_BITS):
    """Integer constants of :func:`hswish_int` for input scale ``s_in`` and output scale ``s_out``.

    Returns ``(three, mult)``: ``three = max(1, floor(3 / s_in + 1/2))`` is 3.0 in input LSBs
    (round half up, at least 1) and ``mult`` is the dyadic ``s_in / (2 three s_out)``.

    :func:`hswish_int` then computes ``x clip(x + three, 0, 2 three) mult``, i.e. (in real units,
    ``a = three s_in``) the Hardswish ``y clip(y + a, 0, 2a) / (2a)`` whose knee constant is ``a``
    instead of 3: the linear part (``y >= a``) has slope exactly 1 (up to the dyadic's
    ``2**-16``) and the knee is off by at most ``s_in / 2``. Where ``3 / s_in`` is an integer
    this is exactly ``x (x + 3/s_in) s_in**2 / (6 s_out)``, the textbook form. The textbook
    multiplier ``s_in**2 / (6 s_out)`` with a rounded ``three`` would instead tilt the linear
    part by up to ``1 / (2 three)`` (``three = 1``: 50 %), and for ``s_in > 6`` the rounded
    ``three`` is 0, which has no integer form at all (``sim.isa``: ``three >= 1``). With ``three
    = 1`` and ``s_in >= 6`` the result is ``relu(x) s_in / s_out``, the exact Hardswish of
    every input on the grid (no grid point lies inside ``(-3, 3)`` except 0).
    The intermediate's scale is recovered from the constants by :func:`hswish_in_scale`.
    """
    if not (s_in > 0 and s_out > 0):
        raise ValueError("hswish scales must be > 0")
    three = max(1, math.floor(3.0 / s_in + 0.5))
    return three, to_dyadic(s_in / (2.0 * three * s_out), mult_bits=mult_bits)


def hswish_in_scale(three, mult: Dyadic, s_out):
    """The input scale ``s_in`` that :func:`hswish_constants` was given, recovered from its
    constants: ``2 three mult s_out`` (per channel where ``mult`` or ``s_out`` are; relative
    error ``<= 2**-16``, the dyadic's)."""
    return 2.0 * float(three) * mult.value() * np.asarray(s_out, np.float64)


def hswish_int(x, three: int, mult: Dyadic, *, out_bits: int = 8, signed: bool = True, offset=0):
    """Hardswish ``x * relu6(x + 3) / 6`` in the integer domain.

    ``x``: integers at scale ``s_in`` (the wide intermediate of the requant path, not yet 8-bit);
    ``three``: 3.0 in input LSBs; ``mult``: dyadic ``s_in / (2 three s_out)`` (see
    :func:`hswish_constants`).
    Computes ``t = clip(x + three, 0, 2*three)``, ``p = x * t`` (exact), then
    ``sat(rshift_round(p * b, c) - offset)``. The only rounding is the final one.
    """
    x = _as_int(x)
    t = np.clip(x + three, 0, 2 * three)
    return requant(x * t, mult, out_bits=out_bits, signed=signed, offset=offset)


def lod(x):
    """Leading-one detector: index of the most significant set bit of non-negative ``x``; -1 for 0."""
    x = _as_int(x)
    if np.any(x < 0):
        raise ValueError("lod takes non-negative integers")
    out = np.full(x.shape, -1, dtype=np.int64)
    v = x.copy()
    for bit in range(62, -1, -1):
        hit = (out < 0) & ((v >> bit) & 1).astype(bool)
        out[hit] = bit
    return out


def log2_round(x):
    """Integer log2 with the round bit (paper Sec. IV-D): ``i + x[i-1]`` where ``i = lod(x)``.

    ``log2_round(0b01100011) == 7`` (i = 6, bit 5 is 1). ``log2_round(1) == 0``. For ``x = 0`` the
    result is -1 (callers clip it; see :func:`log2_quantize`).
    """
    x = _as_int(x)
    i = lod(x)
    round_bit = np.where(i >= 1, (x >> np.maximum(i - 1, 0)) & 1, 0)
    return np.where(i >= 0, i + round_bit, -1)


def log2_quantize(x, *, offset: int, emin: int, bits: int = LOG2_CODE_BITS):
    """4-bit log2 quantization of integer divisors (paper Eq. 11).

    The divisor's real value is ``S * x`` with ``offset = round(log2(S))`` precomputed; the result
    is the exponent ``e = clip(offset + log2_round(x), emin, emin + 2**bits - 1)`` so that the
    divisor is approximated by ``2**e``. The stored code is ``e - emin`` (``bits`` wide, unsigned).
    Returns ``e`` (int64 array). ``x = 0`` maps to ``emin``.
    """
    x = _as_int(x)
    e = np.where(x > 0, offset + log2_round(x), emin)
    return np.clip(e, emin, emin + (1 << bits) - 1)


def shift_divide(x, e):
    """Division by ``2**e`` as the shifter array does it: ``rshift_round(x, e)`` (left for e < 0)."""
    return rshift_round(x, e)


# --- DSP packing (Xilinx WP486 style): two int8 products sharing one operand -----------------

PACK_SHIFT = 18  #: position of the high weight in the pre-adder word (bit 18 of the 27-bit A port)
PREADD_BITS = 27  #: width of the DSP48E2's signed pre-adder (A/D path)


def pack_dual_operand(w_hi, w_lo, *, shift: int = PACK_SHIFT):
    """The pre-adder output ``(w_hi << shift) + w_lo`` (signed; must fit the DSP48E2's 27-bit
    A/D path: for every ``w_bits``-bit pair that holds when ``w_bits + shift <= 26``)."""
    return (_as_int(w_hi) << shift) + _as_int(w_lo)


def packed_dual_multiply(a, w_hi, w_lo, *, shift: int = PACK_SHIFT):
    """Two products ``(a*w_hi, a*w_lo)`` sharing ``a`` from one wide multiply
    ``a * ((w_hi << shift) + w_lo)``.

    The low field is the sign-extended bits ``[shift-1:0]`` of the product ``P``; the high field
    is ``P >> shift`` plus bit ``shift-1`` of ``P`` (the low field's sign bit), which undoes the
    borrow a negative low product takes from the high field. Exact whenever ``a*w_lo`` fits a
    signed ``shift``-bit field and the packed operand fits the 27-bit pre-adder; in particular
    for every 9-bit ``a`` (an int8 or uint8 activation, sign- or zero-extended) with int8
    ``w_hi, w_lo`` at the default shift 18 (``|a*w_lo| <= 2**15``), and at shift 17 for 9-bit
    ``a`` with int8 ``w`` as well as for int8 ``a`` with 9-bit ``w`` (``|a*w_lo| <= 2**15 <
    2**16``, ``(w_hi << 17) + w_lo`` within 26 bits).
    """
    p = _as_int(a) * pack_dual_operand(w_hi, w_lo, shift=shift)
    low = ((p & ((1 << shift) - 1)) ^ (1 << (shift - 1))) - (1 << (shift - 1))
    high = (p >> shift) + ((p >> (shift - 1)) & 1)
    return high, low


def dyadic_error_bound(scale: float, *, mult_bits: int = MULT_BITS) -> float:
    """The absolute error bound of :func:`to_dyadic` for ``scale``: ``2**-(c+1)``."""
    d = to_dyadic(scale, mult_bits=mult_bits)
    return math.ldexp(1.0, -int(d.c) - 1)
