# amaranth: UnusedElaboratable=no
"""hw.units under amaranth.sim, bit for bit against sim.numerics and independent references.

Vectorised: ``_Lanes`` instantiates ``k`` copies of a unit behind one wide signal per port, so
each simulated cycle checks ``k`` vectors (the exhaustive sweeps stay within seconds).
"""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.units import AdderTree, Log2Quantizer, PackedDualMultiplier, Requant, ShifterArray
from sim import numerics as nx
from tb.units.cases import REQUANT_DEFAULT
from tb.units.requant_ties import tie_vectors


# --- harness ----------------------------------------------------------------------------------

class _Lanes(Elaboratable):
    """``k`` instances of a unit; port ``p`` of lane ``i`` is bits ``[i*w, (i+1)*w)`` of ``self.ports[p]``."""

    def __init__(self, factory, k):
        self.units = [factory() for _ in range(k)]
        self.k = k
        self.members = {}
        for path, member in self.units[0].signature.members.flatten():
            name = ".".join(map(str, path))
            w = Shape.cast(member.shape).width
            self.members[name] = (member.flow, w, Shape.cast(member.shape))
        self.ports = {n: Signal(k * w, name=n) for n, (_, w, _) in self.members.items()}

    def elaborate(self, platform):
        m = Module()
        for i, u in enumerate(self.units):
            m.submodules[f"u{i}"] = u
            for name, (flow, w, _) in self.members.items():
                port = Value.cast(getattr(u, name))
                sl = self.ports[name][i * w:(i + 1) * w]
                if flow == wiring.In:
                    m.d.comb += port.eq(sl)
                else:
                    m.d.comb += sl.eq(port)
        return m


def _pack(values, w):
    """Pack integers (two's complement, ``w`` bits each; element 0 at the LSBs) into one int."""
    mask = (1 << w) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * w)
    return word


def _unpack(word, w, n, signed):
    mask = (1 << w) - 1
    out = []
    for i in range(n):
        f = (word >> (i * w)) & mask
        out.append(f - (1 << w) if signed and f >> (w - 1) else f)
    return out


def simulate(factory, inputs: dict, outputs: list, *, k=64, elem_bits: dict | None = None):
    """Run ``len(vectors)`` input vectors through ``k`` lanes of ``factory()``.

    ``inputs[port]``: array of shape (n,) or, for array-layout ports, (n, count) with element
    width ``elem_bits[port]``. Returns ``{port: np.ndarray of shape (n,) or (n, count)}`` for
    ``outputs`` (array ports need ``elem_bits`` too). ``in_valid`` is driven and ``out_valid``
    checked when the unit has them.
    """
    elem_bits = elem_bits or {}
    dut = _Lanes(factory, k)
    lat = dut.units[0].latency
    n = len(next(iter(inputs.values())))
    batches = math.ceil(n / k)

    def lane_words(port, b):
        arr = np.asarray(inputs[port])
        idx = np.arange(b * k, b * k + k) % n        # pad the last batch by wrapping around
        rows = arr[idx]
        if rows.ndim == 2:
            rows = [_pack(r, elem_bits[port]) for r in rows]
        return _pack(rows, dut.members[port][1])

    got = {p: [] for p in outputs}
    has_valid = "in_valid" in dut.members

    async def bench(ctx):
        for t in range(batches + lat):
            if t < batches:
                for p in inputs:
                    ctx.set(dut.ports[p], lane_words(p, t))
            if has_valid:
                ctx.set(dut.ports["in_valid"], (1 << k) - 1 if t < batches else 0)
            b = t - lat
            if has_valid:
                v = ctx.get(dut.ports["out_valid"])
                assert v == ((1 << k) - 1 if 0 <= b < batches else 0), f"out_valid wrong at cycle {t}"
            if 0 <= b < batches:
                for p in outputs:
                    _, w, shape = dut.members[p]
                    lanes = _unpack(ctx.get(dut.ports[p]), w, k, False)
                    if p in elem_bits:
                        e = elem_bits[p]
                        rows = [_unpack(x, e, w // e, True) for x in lanes]
                    else:
                        rows = _unpack(ctx.get(dut.ports[p]), w, k, shape.signed)
                    got[p].extend(rows)
            if lat:
                await ctx.tick()

    sim = Simulator(dut)
    if lat:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return {p: np.array(v[:n], dtype=np.int64) for p, v in got.items()}


# --- Log2Quantizer ------------------------------------------------------------------------------

def _log2_round_ref(x: int) -> int:
    """Paper Sec. IV-D, straight from the text: leading-one index i plus bit i-1; -1 for 0."""
    if x == 0:
        return -1
    i = x.bit_length() - 1
    return i + ((x >> (i - 1)) & 1 if i >= 1 else 0)


def test_log2_paper_example():
    assert _log2_round_ref(0b01100011) == 7
    out = simulate(lambda: Log2Quantizer(width=8), {"x": [0b01100011], "offset": [0], "emin": [0]},
                   ["lod_out", "exp", "code"], k=1)
    assert out["lod_out"].tolist() == [7] and out["exp"].tolist() == [7] and out["code"].tolist() == [7]


@pytest.mark.parametrize("width", [8, 16])
def test_log2_exhaustive(width):
    """Every input of the width, each with a random (offset, emin) in the clipping regime."""
    rng = np.random.default_rng(width)
    x = np.arange(1 << width)
    offset = rng.integers(-40, 30, size=x.size)
    emin = rng.integers(-40, 20, size=x.size)
    k = 64
    out = simulate(lambda: Log2Quantizer(width=width), {"x": x, "offset": offset, "emin": emin},
                   ["lod_out", "exp", "code"], k=k)
    assert out["lod_out"].tolist() == [_log2_round_ref(int(v)) for v in x]
    assert np.array_equal(out["lod_out"], nx.log2_round(x))
    want = np.stack([nx.log2_quantize(x[i:i + 1], offset=int(offset[i]), emin=int(emin[i]))[0]
                     for i in range(x.size)]) if width == 8 else None
    if want is None:   # vectorised form of log2_quantize for per-vector offset/emin
        e = np.where(x > 0, offset + nx.log2_round(x), emin)
        want = np.clip(e, emin, emin + 15)
        spot = rng.integers(0, x.size, 200)
        for i in spot:
            assert want[i] == nx.log2_quantize(int(x[i]), offset=int(offset[i]), emin=int(emin[i]))
    assert np.array_equal(out["exp"], want)
    assert np.array_equal(out["code"], want - emin)


def test_log2_wide_default_random():
    rng = np.random.default_rng(5)
    x = np.concatenate([[0, 1, 2, 3, (1 << 32) - 1, 1 << 31, (1 << 31) + (1 << 30), 0b01100011],
                        rng.integers(0, 1 << 32, 3000, dtype=np.int64) >> rng.integers(0, 32, 3000)])
    out = simulate(lambda: Log2Quantizer(), {"x": x, "offset": np.full(x.size, -24),
                                               "emin": np.full(x.size, -16)},
                   ["lod_out", "code"], k=64)
    assert np.array_equal(out["lod_out"], nx.log2_round(x))
    assert np.array_equal(out["code"], nx.log2_quantize(x, offset=-24, emin=-16) + 16)


# --- ShifterArray -------------------------------------------------------------------------------

@pytest.mark.parametrize("width,shift_bits", [(16, 4), (8, 4), (12, 3)])
def test_shifter_array(width, shift_bits):
    lanes = 4
    rng = np.random.default_rng(width * 10 + shift_bits)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    n = 3000
    x = rng.integers(lo, hi + 1, size=(n, lanes))
    s = rng.integers(0, 1 << shift_bits, size=(n, lanes))
    # corners: extremes and exact half cases (x = odd multiple of 2**(s-1))
    corner_x = np.array([[lo, hi, 0, -1], [lo, hi, 1, -1], [3, -3, 5, -5], [lo + 1, hi - 1, 2, -2]])
    corner_s = np.array([[0, 0, 1, 1], [(1 << shift_bits) - 1] * 4, [1, 1, 1, 1], [1, 1, 2, 2]])
    x, s = np.concatenate([corner_x, x]), np.concatenate([corner_s, s])
    out = simulate(lambda: ShifterArray(lanes=lanes, width=width, shift_bits=shift_bits),
                   {"x": x, "shift": s}, ["out"], k=64,
                   elem_bits={"x": width, "shift": shift_bits, "out": width})["out"]
    assert np.array_equal(out, nx.shift_divide(x, s))
    ref = [[math.floor(Fraction(int(a), 2 ** int(b)) + Fraction(1, 2)) for a, b in zip(r, q)]
           for r, q in zip(x[:200], s[:200])]
    assert out[:200].tolist() == ref


# --- AdderTree ----------------------------------------------------------------------------------

@pytest.mark.parametrize("width,count,register_every", [(16, 8, 1), (8, 5, 2), (8, 7, 0), (4, 1, 1),
                                                        (12, 16, 3)])
def test_adder_tree(width, count, register_every):
    rng = np.random.default_rng(count)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    v = np.concatenate([np.full((1, count), lo), np.full((1, count), hi),
                        rng.integers(lo, hi + 1, size=(1000, count))])
    unit = AdderTree(width=width, count=count, register_every=register_every)
    levels = math.ceil(math.log2(count)) if count > 1 else 0
    assert unit.latency == (0 if register_every == 0 else math.ceil(levels / register_every))
    assert unit.signature.members["output"].shape.width == width + levels
    unit._MustUse__silence = True        # built only to check its properties
    out = simulate(lambda: AdderTree(width=width, count=count, register_every=register_every),
                   {"inputs": v}, ["output"], k=32, elem_bits={"inputs": width})["output"]
    assert out.tolist() == [sum(int(a) for a in row) for row in v]


# --- PackedDualMultiplier -----------------------------------------------------------------------

def _packed_check(v, factory=PackedDualMultiplier, shift=nx.PACK_SHIFT):
    out = simulate(factory, {"a": v[:, 0], "w_hi": v[:, 1], "w_lo": v[:, 2]},
                   ["p_hi", "p_lo"], k=64)
    assert np.array_equal(out["p_hi"], v[:, 0] * v[:, 1])
    assert np.array_equal(out["p_lo"], v[:, 0] * v[:, 2])
    hi, lo = nx.packed_dual_multiply(v[:, 0], v[:, 1], v[:, 2], shift=shift)
    assert np.array_equal(out["p_hi"], hi) and np.array_equal(out["p_lo"], lo)


def _all_pairs_with(w_hi_values, w_lo_values, *, a_range=range(-256, 256),
                    w_range=range(-128, 128)):
    """All (a, w_lo) pairs for each fixed w_hi, all (a, w_hi) pairs for each fixed w_lo."""
    A, B = np.meshgrid(np.asarray(a_range), np.asarray(w_range), indexing="ij")
    A, B = A.ravel(), B.ravel()
    rows = [np.stack([A, np.full(A.size, c), B], 1) for c in w_hi_values]      # (a, w_lo) all
    rows += [np.stack([A, B, np.full(A.size, c)], 1) for c in w_lo_values]     # (a, w_hi) all
    return rows


def test_packed_multiplier_dense():
    """Default unit (9-bit shared activation x two int8 weights, shift 18): all (a, w_lo) pairs
    for w_hi in {-128, 127}, all (a, w_hi) pairs for w_lo = -128 (the low field's largest
    borrow), plus 20000 random triples; against the plain products."""
    rows = _all_pairs_with((-128, 127), (-128,))
    rng = np.random.default_rng(7)
    rows.append(np.stack([rng.integers(-256, 256, 20000), rng.integers(-128, 128, 20000),
                          rng.integers(-128, 128, 20000)], 1))
    _packed_check(np.concatenate(rows))


def _rmac_packed():
    return PackedDualMultiplier(a_bits=9, w_bits=9, shift=17, mixed=True)


def test_packed_multiplier_mixed_shift17():
    """The R-MAC engine's variant (9-bit ports, shift 17, one operand of each product int8):
    9-bit a with int8 pairs (down-forward) and int8 a with 9-bit pairs (depthwise pixels)."""
    rows = _all_pairs_with((-128, 127), (-128,))                       # 9-bit a, int8 w
    rows += _all_pairs_with((-256, 255), (-256,), a_range=range(-128, 128),
                            w_range=range(-256, 256))                  # int8 a, 9-bit w
    rng = np.random.default_rng(8)
    rows.append(np.stack([rng.integers(-128, 128, 8000), rng.integers(-256, 256, 8000),
                          rng.integers(-256, 256, 8000)], 1))
    _packed_check(np.concatenate(rows), _rmac_packed, shift=17)


@pytest.mark.regress
def test_packed_multiplier_sweep():
    """All (a, w_lo) pairs for 16 values of w_hi and all (a, w_hi) for 8 values of w_lo."""
    _packed_check(np.concatenate(_all_pairs_with(range(-128, 128, 17), range(-127, 128, 36))))


# --- Requant ------------------------------------------------------------------------------------

def _requant_vectors(rng, n, *, acc_bits, mult_bits, out_bits):
    alo, ahi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    acc = np.concatenate([[0, alo, ahi, 1, -1, 2, -2, 3, -3],
                          rng.integers(alo, ahi + 1, n // 2),
                          rng.integers(-(1 << 16), 1 << 16, n - n // 2 - 9)])
    size = acc.size
    b = rng.integers(1 << (mult_bits - 1), 1 << mult_bits, size)     # normalised multipliers
    b[:9] = [1 << (mult_bits - 1), 1, (1 << mult_bits) - 1, 1, 1, 1, 1, 1, 1]
    c = rng.integers(0, nx.MAX_SHIFT + 1 - max(0, acc_bits + mult_bits - 62), size)
    c[:9] = [0, 5, 5, 1, 1, 2, 2, 1, 1]           # +-1/2, +-1/2, +-3/2: round-half cases
    # most vectors in the interesting range: c so that acc*b/2**c lands near the output range
    mag = np.log2(np.abs(acc * b) + 1).astype(np.int64)
    pick = rng.random(size) < 0.6
    c = np.where(pick, np.clip(mag - out_bits + rng.integers(-2, 4, size), 0, nx.MAX_SHIFT), c)
    c[:9] = [0, 5, 5, 1, 1, 2, 2, 1, 1]
    offset = np.where(rng.random(size) < 0.5, 0, rng.integers(-(1 << out_bits), 1 << out_bits, size))
    offset[:9] = 0
    relu = rng.integers(0, 2, size)
    return acc, b, c, offset, relu


@pytest.mark.parametrize("out_bits,signed", [(8, True), (8, False), (12, True)])
def test_requant_plain(out_bits, signed):
    """No residual, no Hardswish: ``requant`` with ReLU and offset, random + corner cases."""
    rng = np.random.default_rng(out_bits + signed)
    acc, b, c, offset, relu = _requant_vectors(rng, 4000, acc_bits=32, mult_bits=16, out_bits=out_bits)
    ins = dict(acc=acc, b=b, c=c, offset=offset, relu_en=relu)
    out = simulate(lambda: Requant(out_bits=out_bits, signed=signed, residual=False, hswish=False),
                   ins, ["out"], k=128)["out"]
    want = np.concatenate([
        nx.requant(acc[relu == r], nx.Dyadic(b[relu == r], c[relu == r]), out_bits=out_bits,
                   signed=signed, offset=offset[relu == r], relu=bool(r)) for r in (0, 1)])
    order = np.concatenate([np.flatnonzero(relu == 0), np.flatnonzero(relu == 1)])
    assert np.array_equal(out[order], want)
    # independent check of the first (corner) vectors with exact rationals
    lo, hi = ((-(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1) if signed else (0, (1 << out_bits) - 1))
    for i in range(300):
        y = math.floor(Fraction(int(acc[i]) * int(b[i]), 2 ** int(c[i])) + Fraction(1, 2))
        y = max(y, 0) if relu[i] else y
        assert out[i] == min(max(y - int(offset[i]), lo), hi), i
    assert (out == hi).any() and (out == lo).any()          # saturation was exercised


def test_requant_residual_and_hswish():
    """The full unit (default widths): residual add in the same rounding, Hardswish path."""
    rng = np.random.default_rng(11)
    n = 3000
    acc, b, c, offset, relu = _requant_vectors(rng, n, acc_bits=32, mult_bits=16, out_bits=8)
    n = acc.size
    # the residual port is 9 bits: int8 or uint8 residuals (sign- or zero-extended bytes)
    res = rng.integers(-128, 256, n)
    res[9:13] = [-128, 255, 127, 0]
    rb = rng.integers(0, 1 << 16, n)
    rb[::5] = 0
    # rc <= c (align_residual), and c - rc <= 20 so that numerics' int64 sum cannot overflow
    # (|res*rb| < 2**24, shifted by <= 20 bits); the RTL is exact for any rc <= c
    rc = c - rng.integers(0, np.minimum(c, 20) + 1)
    hsw = rng.integers(0, 2, n)
    relu = np.where(hsw == 1, 0, relu)
    three = rng.integers(1, 3000, n)
    hb = rng.integers(1 << 15, 1 << 16, n)
    # choose hc so that most Hardswish outputs land inside the 8-bit range (not all saturated)
    x = nx.requant(acc, nx.Dyadic(b, c), out_bits=16, residual=res, res_mult=nx.Dyadic(rb, rc))
    q = np.abs(x * np.clip(x + three, 0, 2 * three) * hb) + 1
    hc = np.clip(np.floor(np.log2(q)).astype(np.int64) - 6 + rng.integers(-2, 3, n), 0, nx.MAX_SHIFT)
    ins = dict(acc=acc, b=b, c=c, offset=offset, relu_en=relu, res=res, rb=rb, rc=rc,
               hswish_en=hsw, three=three, hb=hb, hc=hc)
    out = simulate(Requant, ins, ["out"], k=128)["out"]
    inside = 0
    for i in range(n):
        m = nx.Dyadic(b[i], c[i])
        rm = nx.Dyadic(rb[i], rc[i])
        if hsw[i]:
            x = nx.requant(acc[i], m, out_bits=16, residual=res[i], res_mult=rm)
            want = nx.hswish_int(x, int(three[i]), nx.Dyadic(hb[i], hc[i]), offset=offset[i])
        else:
            want = nx.requant(acc[i], m, offset=offset[i], residual=res[i], res_mult=rm,
                              relu=bool(relu[i]))
        inside += bool(hsw[i]) and -128 < want < 127
        assert out[i] == want, (i, repr({k: int(v[i]) for k, v in ins.items()}), int(out[i]), int(want))
    assert inside > n // 4, inside       # the Hardswish path was exercised away from saturation


#: every Requant configuration in use: the core's MAT/R-MAC lanes (16-bit, residual, Hardswish),
#: their pool / ksum path (no residual), and the unit cases of tb/units/cases.py (default and regress)
REQUANT_VARIANTS = {
    "core-lane": dict(out_bits=16),
    "core-pool": dict(out_bits=16, residual=False),
    "full": {},
    "plain": dict(residual=False, hswish=False),
    "unsigned-plain": dict(signed=False, residual=False, hswish=False),
    "acc24": dict(acc_bits=24, mult_bits=12, hswish=False),
    "unsigned-x12": dict(signed=False, hswish_in_bits=12),
}


@pytest.mark.parametrize("variant", REQUANT_VARIANTS)
def test_requant_round_half_up_ties(variant):
    """Exact round-half vectors (tb.units.requant_ties): for every shift from 1 to the largest
    of the 6-bit ports, values at k + 1/2 on the main rounding (acc*b alone, the residual term
    alone, both), on the Hardswish input and on the Hardswish rounding, plus the largest shifts on
    the extreme products; the expected outputs are derived by construction (round half up)."""
    p = {**REQUANT_DEFAULT, **REQUANT_VARIANTS[variant]}
    v = tie_vectors(p)
    want = v.pop("want")
    kw = {k: p[k] for k in REQUANT_DEFAULT}
    out = simulate(lambda: Requant(**kw), v, ["out"], k=128)["out"]
    bad = np.flatnonzero(out != want)
    assert bad.size == 0, (f"{bad.size} of {want.size} ties wrong, first: "
                           f"{ {k: int(a[bad[0]]) for k, a in v.items()} } -> {int(out[bad[0]])},"
                           f" want {int(want[bad[0]])}")
    # the vectors do reach the largest shifts of both roundings
    assert v["c"].max() == (1 << p["shift_bits"]) - 1
    if p["hswish"]:
        assert v["hc"].max() == (1 << p["shift_bits"]) - 1


def _requant_reference(v, *, out_bits, signed, hswish_in_bits=16):
    """``sim.numerics``' output for one vector ``v`` (a dict of the unit's inputs), or ``None``
    when the vector is outside the domain numerics defines (it raises ``OverflowError``)."""
    m, rm = nx.Dyadic(v["b"], v["c"]), nx.Dyadic(v["rb"], v["rc"])
    try:
        if v["hswish_en"]:
            x = nx.requant(v["acc"], m, out_bits=hswish_in_bits, residual=v["res"], res_mult=rm,
                           relu=bool(v["relu_en"]))
            return int(nx.hswish_int(x, v["three"], nx.Dyadic(v["hb"], v["hc"]),
                                     out_bits=out_bits, signed=signed, offset=v["offset"]))
        return int(nx.requant(v["acc"], m, out_bits=out_bits, signed=signed, offset=v["offset"],
                              residual=v["res"], res_mult=rm, relu=bool(v["relu_en"])))
    except OverflowError:
        return None


@pytest.mark.parametrize("out_bits,signed,residual_dsp", [(16, True, True), (8, True, True),
                                                          (8, False, True), (16, True, False)])
def test_requant_extremes(out_bits, signed, residual_dsp):
    """Boundary values of every field (the datapath widths of ``Requant``'s doc are bounds on
    them): accumulator, multipliers and shifts at their extremes, the residual at the 9-bit
    limits, Hardswish constants at 0 and full scale, and sums that reach the edge of the domain
    ``sim.numerics.requant`` defines (``|acc*b| + |res*rb| 2^(c-rc)`` just below 2^62, where
    the 63-bit rounding datapath has no bit to spare). (16, True) is the core's lane, also with
    ``res * rb`` as shift-and-add in fabric (``residual_dsp=False``)."""
    A, B = 1 << 31, (1 << 16) - 1
    accs = [-A, -A + 1, -1, 0, 1, A - 1]
    offs = [-(1 << out_bits), 0, (1 << out_bits) - 1]
    vecs = []
    base = dict(res=0, rb=0, rc=0, hswish_en=0, three=0, hb=0, hc=0, relu_en=0)
    # main and residual path (no Hardswish)
    for acc, b, c, res, rb, off, relu in itertools.product(
            accs, [0, 1, 1 << 15, B], [0, 1, 16, 46, 47], [-256, -128, 0, 255], [0, 1, B],
            offs, [0, 1]):
        for rc in sorted({0, c // 2, c}):
            vecs.append({**base, "acc": acc, "b": b, "c": c, "res": res, "rb": rb, "rc": rc,
                         "offset": off, "relu_en": relu})
    # Hardswish path
    for acc, b, c, res, rb, three, hb, hc, off in itertools.product(
            accs, [1, B], [0, 16, 47], [-256, 255], [0, B], [0, 1, 1 << 15, B], [1, B],
            [0, 47], offs):
        for rc in sorted({0, c}):
            vecs.append({**base, "acc": acc, "b": b, "c": c, "res": res, "rb": rb, "rc": rc,
                         "hswish_en": 1, "three": three, "hb": hb, "hc": hc, "offset": off})
    # the edge of the domain: the shifted residual fills the 63-bit sum
    for acc, b, res, rb, c, rc, hsw in [(-A, B, -256, 127, 47, 0, 0), (A - 1, B, 255, 128, 47, 0, 0),
                                        (-A, B, -256, 127, 47, 0, 1), (A - 1, B, 255, 128, 47, 0, 1),
                                        (-A, B, 255, 128, 47, 0, 0), (A - 1, B, -256, 127, 47, 0, 0),
                                        (-A, B, -256, (1 << 14) - 1, 47, 7, 0),
                                        (A - 1, 1, 255, 256, 47, 1, 0)]:
        for off in offs:
            vecs.append({**base, "acc": acc, "b": b, "c": c, "res": res, "rb": rb, "rc": rc,
                         "hswish_en": hsw, "three": 3, "hb": 1, "hc": 0, "offset": off})
    want = [_requant_reference(v, out_bits=out_bits, signed=signed) for v in vecs]
    keep = [i for i, w in enumerate(want) if w is not None]
    # the edge vectors are all inside the domain (their bound is below 2^62)
    assert all(want[i] is not None for i in range(len(vecs) - 8 * len(offs), len(vecs)))
    ins = {k: np.array([vecs[i][k] for i in keep]) for k in vecs[0]}
    out = simulate(lambda: Requant(out_bits=out_bits, signed=signed, residual_dsp=residual_dsp),
                   ins, ["out"], k=256)["out"]
    bad = [(vecs[i], int(o), want[i]) for i, o in zip(keep, out) if o != want[i]]
    assert not bad, (len(bad), bad[:3])
    assert len(keep) > 0.8 * len(vecs)


# --- the arithmetic helpers (hw.units._arith), exhaustively on small widths ---------------------

class _ArithHarness(Elaboratable):
    """``y = f(m, a, b)`` of one helper on signals ``a`` and ``b`` (combinational)."""

    def __init__(self, fn, a_shape, b_shape):
        self.fn, self.a, self.b = fn, Signal(a_shape), Signal(b_shape)
        self.y = None

    def elaborate(self, platform):
        m = Module()
        self.y = self.fn(m, self.a, self.b)
        return m


def _run_arith(fn, a_shape, b_shape, pairs):
    """``fn``'s output for every ``(a, b)`` in ``pairs`` (amaranth.sim, one settle per pair)."""
    dut = _ArithHarness(fn, a_shape, b_shape)
    sim = Simulator(dut)                    # elaborates: dut.y exists from here on
    out = []

    async def bench(ctx):
        for a, b in pairs:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            out.append(ctx.get(dut.y))

    sim.add_testbench(bench)
    sim.run()
    return out


def test_arith_rshift_round_exhaustive():
    """Every 8-bit signed value by every shift of a 4-bit amount (beyond the width too) against
    ``sim.numerics.rshift_round`` (round half up)."""
    from hw.units._arith import rshift_round
    pairs = [(a, s) for a in range(-128, 128) for s in range(16)]
    out = _run_arith(lambda m, a, s: rshift_round(m, a, s, name="y"), Shape(8, True), 4, pairs)
    a, s = np.array(pairs).T
    assert out == nx.rshift_round(a, s).tolist()


@pytest.mark.parametrize("bits,is_signed", [(4, True), (4, False), (1, False), (9, True)])
@pytest.mark.parametrize("in_signed", [True, False])
def test_arith_saturate_exhaustive(bits, is_signed, in_signed):
    """Every 7-bit value (signed or unsigned input) saturated to ``bits`` against
    ``sim.numerics.saturate``, including result widths above the input's."""
    from hw.units._arith import saturate
    vals = range(-64, 64) if in_signed else range(128)
    pairs = [(v, 0) for v in vals]
    out = _run_arith(lambda m, a, _: saturate(m, a, bits, is_signed, name="y"),
                     Shape(7, in_signed), 1, pairs)
    assert out == nx.saturate(np.array(list(vals)), bits, signed=is_signed).tolist()


def test_arith_mul_shift_add_exhaustive():
    """Every signed 5-bit x unsigned 6-bit product (the shape of ``res * rb``)."""
    from hw.units._arith import mul_shift_add
    pairs = [(a, b) for a in range(-16, 16) for b in range(64)]
    out = _run_arith(lambda m, a, b: mul_shift_add(m, a, b, name="y"), Shape(5, True), 6, pairs)
    assert out == [a * b for a, b in pairs]


# --- parameter validation -----------------------------------------------------------------------

@pytest.mark.parametrize("factory,param,match", [
    (lambda: AdderTree(width=0, count=4), "width", r"width must be in \[1, 256\], got 0"),
    (lambda: AdderTree(width=8, count=0), "count", r"count must be in \[1, 4096\], got 0"),
    (lambda: AdderTree(width=8, count=4, register_every=-1), "register_every", r"register_every .*got -1"),
    (lambda: ShifterArray(lanes=6), "lanes", r"lanes must be a power of two"),
    (lambda: ShifterArray(width=0), "width", r"width must be in \[2, 64\]"),
    (lambda: ShifterArray(shift_bits=-1), "shift_bits", r"shift_bits must be in \[1, 6\], got -1"),
    (lambda: Log2Quantizer(width=0), "width", r"width must be in \[2, 64\], got 0"),
    (lambda: Log2Quantizer(code_bits=9), "code_bits", r"code_bits"),
    (lambda: Requant(out_bits=0), "out_bits", r"out_bits must be in \[2, 32\], got 0"),
    (lambda: Requant(shift_bits=-2), "shift_bits", r"shift_bits must be in \[1, 7\], got -2"),
    (lambda: PackedDualMultiplier(w_bits=9), "w_bits", r"w_bits must be in \[2, 8\], got 9"),
    (lambda: PackedDualMultiplier(a_bits=11), "a_bits", r"a_bits must be in \[2, 10\], got 11"),
    (lambda: PackedDualMultiplier(a_bits=9, w_bits=9, shift=17), "a_bits",
     r"a_bits must be in \[2, 8\], got 9"),
    (lambda: PackedDualMultiplier(w_bits=9, shift=17, a_bits=10, mixed=True), "a_bits",
     r"a_bits must be in \[2, 9\], got 10"),
])
def test_bad_params(factory, param, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_bad_param_types():
    with pytest.raises(TypeError, match="width must be an int"):
        AdderTree(width=8.0, count=4)
    with pytest.raises(TypeError, match="signed must be a bool"):
        Requant(signed=1)
    with pytest.raises(TypeError, match="residual_dsp must be a bool"):
        Requant(residual_dsp="no")
    with pytest.raises(TypeError):
        AdderTree(8, 4)          # keyword-only
