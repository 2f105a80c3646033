"""sim.golden against independent references: naive loops written here, sim.numerics called
directly, and hand-computed programs."""

import numpy as np
import pytest

from sim import golden
from sim import numerics as nx
from sim.intprogram import Epilogue, IntProgram, Node, TensorInfo

RNG = np.random.default_rng(2024)


def rand_i8(shape, rng=RNG):
    a = rng.integers(-128, 128, size=shape)
    flat = a.reshape(-1)
    if flat.size >= 2:  # always include the extremes
        flat[0], flat[-1] = -128, 127
    return a


# --- naive references -------------------------------------------------------------------------

def naive_conv(x, w, b, stride, pad, groups):
    cin, h, wd = x.shape
    cout, cin_g, k, _ = w.shape
    ho = (h + 2 * pad - k) // stride + 1
    wo = (wd + 2 * pad - k) // stride + 1
    out = np.zeros((cout, ho, wo), dtype=object)
    cout_g = cout // groups
    for co in range(cout):
        g = co // cout_g
        for oy in range(ho):
            for ox in range(wo):
                s = int(b[co]) if b is not None else 0
                for ci in range(cin_g):
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = oy * stride - pad + ky, ox * stride - pad + kx
                            if 0 <= iy < h and 0 <= ix < wd:
                                s += int(x[g * cin_g + ci, iy, ix]) * int(w[co, ci, ky, kx])
                out[co, oy, ox] = s
    return out.astype(np.int64)


CONV_CASES = [  # (cin, cout, h, k, stride, pad, groups)
    (3, 8, 9, 3, 2, 1, 1),      # generic 3x3 s2 (the stem)
    (3, 4, 8, 3, 1, 1, 1),      # generic 3x3 s1
    (12, 10, 5, 1, 1, 0, 1),    # pointwise
    (12, 12, 5, 1, 1, 0, 3),    # grouped pointwise (groups = 3 * heads)
    (12, 6, 4, 1, 1, 0, 2),     # grouped pointwise, Cout != Cin
    (6, 6, 7, 3, 1, 1, 6),      # depthwise 3x3 s1
    (6, 6, 7, 3, 2, 1, 6),      # depthwise 3x3 s2, odd size
    (6, 6, 8, 3, 2, 1, 6),      # depthwise 3x3 s2, even size
    (5, 5, 7, 5, 1, 2, 5),      # depthwise 5x5 s1
    (5, 5, 9, 5, 2, 2, 5),      # depthwise 5x5 s2
    (4, 4, 3, 5, 1, 2, 4),      # depthwise 5x5 on a map smaller than the kernel
    (4, 8, 6, 3, 2, 0, 2),      # grouped 3x3, no padding
]


@pytest.mark.parametrize("cin,cout,h,k,stride,pad,groups", CONV_CASES)
def test_conv_acc_vs_naive(cin, cout, h, k, stride, pad, groups):
    rng = np.random.default_rng(cin * 1000 + cout * 10 + k + stride)
    x = rand_i8((cin, h, h + 1), rng)
    w = rand_i8((cout, cin // groups, k, k), rng)
    b = rng.integers(-(1 << 20), 1 << 20, size=cout)
    got = golden.conv_acc(x, w, b, stride=stride, padding=pad, groups=groups)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, naive_conv(x, w, b, stride, pad, groups))
    # no bias
    np.testing.assert_array_equal(golden.conv_acc(x, w, None, stride=stride, padding=pad, groups=groups),
                                  naive_conv(x, w, None, stride, pad, groups))


def test_conv_acc_extreme_values():
    """All -128 inputs and weights: every product is +16384; padding contributes nothing."""
    x = np.full((4, 5, 5), -128)
    w = np.full((4, 4, 3, 3), -128)
    got = golden.conv_acc(x, w, np.zeros(4, int), stride=1, padding=1)
    assert got[0, 2, 2] == 4 * 9 * 16384
    assert got[0, 0, 0] == 4 * 4 * 16384  # corner sees a 2x2 window
    np.testing.assert_array_equal(got, naive_conv(x, w, None, 1, 1, 1))


def test_conv_acc_rejects_bad_shapes():
    with pytest.raises(ValueError, match="inconsistent conv"):
        golden.conv_acc(np.zeros((4, 3, 3), int), np.zeros((4, 3, 1, 1), int), groups=1)
    with pytest.raises(ValueError, match="empty"):
        golden.conv_acc(np.zeros((1, 2, 2), int), np.zeros((1, 1, 5, 5), int))
    with pytest.raises(TypeError):
        golden.conv_acc(np.zeros((1, 2, 2)), np.zeros((1, 1, 1, 1), int))


def test_linear_acc_vs_loop():
    x = rand_i8(300)
    w = rand_i8((7, 300))
    b = RNG.integers(-1000, 1000, 7)
    ref = [int(b[o]) + sum(int(w[o, i]) * int(x[i]) for i in range(300)) for o in range(7)]
    np.testing.assert_array_equal(golden.linear_acc(x, w, b), ref)


def test_exactness_bound_is_enforced():
    # 2**26 * 2**26 = 2**52 < 2**53: exact (checked against Python ints)
    x = np.array([[[1 << 26]]], dtype=np.int64)
    w = np.array([[[[-(1 << 26)]]]], dtype=np.int64)
    assert golden.conv_acc(x, w)[0, 0, 0] == -(1 << 52)
    # K = 2 terms of 2**52 could reach 2**53: refused rather than silently rounded
    x2 = np.full((2, 1, 1), 1 << 26, dtype=np.int64)
    w2 = np.full((1, 2, 1, 1), 1 << 26, dtype=np.int64)
    with pytest.raises(golden.ExactnessError, match="2\\*\\*53"):
        golden.conv_acc(x2, w2)
    with pytest.raises(golden.ExactnessError):
        golden.linear_acc(np.full(4, 1 << 30), np.full((1, 4), 1 << 22))
    # the realistic worst case (K = 2560, int8 x int8) is far inside the bound
    x = np.full(2560, -128)
    w = np.full((1, 2560), -128)
    assert golden.linear_acc(x, w)[0] == 2560 * 16384


# --- attention -------------------------------------------------------------------------------------

def ref_attention(x, p, dim):
    """Per head, per token loops over the five steps, with sim.numerics scalars."""
    heads = x.shape[0] // (3 * dim)
    h, w = x.shape[1:]
    n = h * w
    out = np.zeros((heads, dim, n), dtype=np.int64)
    dens = np.zeros((heads, n), dtype=np.int64)
    for hd in range(heads):
        t = x[hd * 3 * dim:(hd + 1) * 3 * dim].reshape(3 * dim, n)
        q = [[max(int(t[j, m]), 0) for m in range(n)] for j in range(dim)]
        k = [[max(int(t[dim + j, m]), 0) for m in range(n)] for j in range(dim)]
        v = [[int(t[2 * dim + i, m]) for m in range(n)] for i in range(dim)]
        sm = nx.Dyadic(p["s_mult_b"][hd], p["s_mult_c"][hd])
        km = nx.Dyadic(p["ksum_mult_b"][hd], p["ksum_mult_c"][hd])
        s8 = [[int(nx.requant(sum(k[j][m] * v[i][m] for m in range(n)), sm)) for i in range(dim)]
              for j in range(dim)]
        ks8 = [int(nx.requant(sum(k[j]), km, signed=False)) for j in range(dim)]
        for m in range(n):
            den = sum(q[j][m] * ks8[j] for j in range(dim))
            dens[hd, m] = den
            e = int(nx.log2_quantize(den, offset=int(p["log2_offset"][hd]),
                                     emin=int(p["log2_emin"][hd])))
            for i in range(dim):
                num = sum(q[j][m] * s8[j][i] for j in range(dim))
                if den == 0:
                    out[hd, i, m] = 0
                else:
                    out[hd, i, m] = int(nx.requant(num, nx.Dyadic(p["out_mult_b"][hd],
                                                                  p["out_mult_c"][hd] + e)))
    return out.reshape(heads * dim, h, w), dens


def attention_params(heads, rng, *, emin=None):
    p = {
        "s_mult_b": rng.integers(1 << 15, 1 << 16, heads), "s_mult_c": rng.integers(22, 28, heads),
        "ksum_mult_b": rng.integers(1 << 15, 1 << 16, heads), "ksum_mult_c": rng.integers(19, 23, heads),
        "out_mult_b": rng.integers(1 << 15, 1 << 16, heads), "out_mult_c": rng.integers(8, 14, heads),
        "log2_offset": rng.integers(-3, 4, heads),
        "log2_emin": np.full(heads, 2) if emin is None else emin,
    }
    return {k: np.asarray(v, dtype=np.int64) for k, v in p.items()}


@pytest.mark.parametrize("heads,dim,h,w", [(2, 4, 3, 5), (3, 8, 4, 4), (1, 16, 7, 7)])
def test_attention_vs_per_token_loops(heads, dim, h, w):
    rng = np.random.default_rng(heads * 100 + dim)
    x = rand_i8((heads * 3 * dim, h, w), rng)
    p = attention_params(heads, rng)
    st = golden.attention_steps(x, p, dim)
    ref, dens = ref_attention(x, p, dim)
    np.testing.assert_array_equal(st["den"], dens)
    np.testing.assert_array_equal(st["out"], ref)
    np.testing.assert_array_equal(golden.attention(x, p, dim), ref)
    # the step tensors have the documented shapes/ranges
    n = h * w
    assert st["kv_acc"].shape == (heads, dim, dim) and st["num"].shape == (heads, dim, n)
    assert st["s8"].min() >= -128 and st["s8"].max() <= 127
    assert st["ksum8"].min() >= 0 and st["ksum8"].max() <= 255
    assert st["code"].min() >= 0 and st["code"].max() <= 15
    assert st["q"].min() >= 0 and st["k"].min() >= 0
    # outputs are not trivially saturated or zero for these params
    assert 0.05 < np.mean(st["out"] != 0)


def test_attention_steps_intermediates_vs_direct_formulas():
    rng = np.random.default_rng(5)
    heads, dim, h, w = 2, 4, 2, 3
    x = rand_i8((heads * 3 * dim, h, w), rng)
    p = attention_params(heads, rng)
    st = golden.attention_steps(x, p, dim)
    for hd in range(heads):
        t = x[hd * 12:(hd + 1) * 12].reshape(12, 6)
        k = np.maximum(t[4:8], 0)
        v = t[8:12]
        for j in range(4):
            assert st["ksum"][hd, j] == sum(int(a) for a in k[j])
            for i in range(4):
                assert st["kv_acc"][hd, j, i] == sum(int(a) * int(b) for a, b in zip(k[j], v[i]))


def test_attention_zero_divisor_gives_zero():
    """A token whose ReLU(q) is all zero has den = 0 and must output 0; so must a head whose
    ksum8 rounds to zero while num does not."""
    rng = np.random.default_rng(9)
    heads, dim = 2, 4
    x = rand_i8((heads * 3 * dim, 2, 2), rng)
    x[0:dim, 0, 0] = -5                    # head 0, token 0: q <= 0 -> den = 0
    p = attention_params(heads, rng)
    p["ksum_mult_c"][1] = 40               # head 1: ksum8 = 0 everywhere -> den = 0
    st = golden.attention_steps(x, p, dim)
    assert st["den"][0, 0] == 0 and np.all(st["den"][1] == 0)
    assert np.all(st["out"][0:dim, 0, 0] == 0)
    assert np.all(st["out"][dim:2 * dim] == 0)
    assert np.any(st["num"][1] != 0)       # zero forced, not incidental
    ref, _ = ref_attention(x, p, dim)
    np.testing.assert_array_equal(st["out"], ref)


def test_attention_log2_code_clipping():
    """Divisors beyond the 4-bit window clip to emin / emin + 15 (numerics.log2_quantize)."""
    rng = np.random.default_rng(11)
    heads, dim = 1, 4
    x = rand_i8((3 * dim, 3, 3), rng)
    p = attention_params(heads, rng, emin=np.array([12]))
    p["log2_offset"][:] = 0
    st = golden.attention_steps(x, p, dim)
    d = st["den"][0]
    lr = np.where(d > 0, nx.log2_round(np.maximum(d, 1)), 0)
    np.testing.assert_array_equal(st["e"][0], np.clip(np.where(d > 0, lr, 12), 12, 27))


def test_attention_approximates_float_formula():
    """Dequantised, the integer attention tracks the official float formula
    out = (V ReLU(K)^T) ReLU(Q) / (sum ReLU(K)^T ReLU(Q)) closely (4-bit divisor error only)."""
    rng = np.random.default_rng(3)
    dim, h, w = 8, 6, 6
    x = rand_i8((3 * dim, h, w), rng) // 2
    s_in = 0.05
    t = x.reshape(3 * dim, -1) * s_in
    q, k, v = np.maximum(t[:dim], 0), np.maximum(t[dim:2 * dim], 0), t[2 * dim:]
    ref = (v @ k.T) @ q / ((k.sum(axis=1) @ q) + 1e-15)
    s_s = np.abs(k @ v.T).max() / 127
    s_ks = k.sum(axis=1).max() / 255
    s_out = np.abs(ref).max() / 127
    sm, km = nx.to_dyadic(s_in * s_in / s_s), nx.to_dyadic(s_in / s_ks)
    offset = 0
    om = nx.to_dyadic(s_s / (s_ks * s_out))
    p = {"s_mult_b": [sm.b], "s_mult_c": [sm.c], "ksum_mult_b": [km.b], "ksum_mult_c": [km.c],
         "out_mult_b": [om.b], "out_mult_c": [om.c], "log2_offset": [offset], "log2_emin": [0]}
    p = {k_: np.asarray(v_, dtype=np.int64).reshape(1) for k_, v_ in p.items()}
    out = golden.attention(x, p, dim).reshape(dim, -1) * s_out
    corr = np.corrcoef(out.ravel(), ref.ravel())[0, 1]
    assert corr > 0.9
    # log2 rounding of the divisor changes each token by a factor in [2**-0.5, 2**0.5]
    big = np.abs(ref) > 0.3 * np.abs(ref).max()
    ratio = out[big] / ref[big]
    assert np.all((ratio > 0.6) & (ratio < 1.6))


# --- epilogues inside a program, and a hand-computed program ------------------------------------------

def _one_conv_prog(epi, *, out_signed=True):
    tensors = {"x": TensorInfo("x", (4, 5, 5)), "y": TensorInfo("y", (6, 5, 5), signed=out_signed)}
    nodes = []
    inputs = ["x"]
    rng = np.random.default_rng(1)
    w = rand_i8((6, 4, 3, 3), rng)
    b = rng.integers(-2000, 2000, 6).astype(np.int32)
    nodes.append(Node("c", "conv", ["x"], "y", dict(kernel=3, stride=1, padding=1, groups=1),
                      dict(weight=w, bias=b), epi))
    return IntProgram(tensors, nodes, inputs, ["y"]), w, b


@pytest.mark.parametrize("act", ["none", "relu"])
def test_epilogue_requant_paths(act):
    mult = nx.Dyadic(np.arange(40000, 40006), np.array([18, 19, 20, 18, 19, 20]))
    epi = Epilogue(mult=mult, act=act, offset=np.array([0, 1, -2, 3, 0, 0]))
    prog, w, b = _one_conv_prog(epi)
    x = rand_i8((4, 5, 5))
    acc = naive_conv(x, w, b, 1, 1, 1)
    ref = np.stack([nx.requant(acc[c], nx.Dyadic(mult.b[c], mult.c[c]), offset=epi.offset[c],
                               relu=act == "relu") for c in range(6)])
    got = golden.run(prog.validate(), x)["y"]
    np.testing.assert_array_equal(got, ref)
    assert 0.01 < np.mean(got != 0) and np.mean(np.abs(got) == 128) < 0.5


def test_epilogue_hswish_path():
    s_mid, s_out = 0.002, 0.03
    three, hm = nx.hswish_constants(s_mid, s_out)
    mult = nx.to_dyadic(np.linspace(0.01, 0.03, 6))
    epi = Epilogue(mult=mult, act="hswish", mid_bits=16, three=three, hswish_mult=hm)
    prog, w, b = _one_conv_prog(epi)
    x = rand_i8((4, 5, 5))
    acc = naive_conv(x, w, b, 1, 1, 1)
    ref = []
    for c in range(6):
        mid = nx.requant(acc[c], nx.Dyadic(mult.b[c], mult.c[c]), out_bits=16)
        ref.append(nx.hswish_int(mid, three, hm))
    got = golden.run(prog.validate(), x)["y"]
    np.testing.assert_array_equal(got, np.stack(ref))
    assert got.min() >= -128 and got.max() <= 127 and np.any(got < 0) and np.any(got > 0)


def test_epilogue_residual_path():
    rng = np.random.default_rng(4)
    w = rand_i8((4, 4, 1, 1), rng)
    b = np.zeros(4, np.int32)
    mult = nx.to_dyadic(np.full(4, 0.004))
    res_mult = nx.align_residual(nx.to_dyadic(0.7), mult.c)
    tensors = {"x": TensorInfo("x", (4, 3, 3)), "y": TensorInfo("y", (4, 3, 3))}
    node = Node("pw", "conv", ["x"], "y", dict(kernel=1, stride=1, padding=0, groups=1),
                dict(weight=w, bias=b), Epilogue(mult=mult, residual="x", res_mult=res_mult))
    prog = IntProgram(tensors, [node], ["x"], ["y"]).validate()
    x = rand_i8((4, 3, 3), rng)
    acc = naive_conv(x, w, b, 1, 0, 1)
    ref = np.stack([nx.requant(acc[c], nx.Dyadic(mult.b[c], mult.c[c]), residual=x[c],
                               res_mult=nx.Dyadic(res_mult.b[c], res_mult.c[c])) for c in range(4)])
    np.testing.assert_array_equal(golden.run(prog, x)["y"], ref)


def hand_program():
    """x (1,2,2) -> pw conv (w=3, b=1, x0.5) -> pw conv (w=-1, x1) + 0.5 * residual
    -> global avg pool (x1/4) -> linear [[2], [-1]] + [0, 10] (raw logits)."""
    d = nx.Dyadic
    t = {"x": TensorInfo("x", (1, 2, 2)), "a": TensorInfo("a", (1, 2, 2)),
         "b": TensorInfo("b", (1, 2, 2)), "p": TensorInfo("p", (1,)),
         "y": TensorInfo("y", (2,), bits=32)}
    pw = dict(kernel=1, stride=1, padding=0, groups=1)
    nodes = [
        Node("n1", "conv", ["x"], "a", pw, dict(weight=np.array([[[[3]]]], np.int8),
                                               bias=np.array([1], np.int32)),
             Epilogue(mult=d(32768, 16))),
        Node("n2", "conv", ["a"], "b", pw, dict(weight=np.array([[[[-1]]]], np.int8),
                                               bias=np.array([0], np.int32)),
             Epilogue(mult=d(32768, 15), residual="a", res_mult=d(16384, 15))),
        Node("n3", "global_avgpool", ["b"], "p", {}, {}, Epilogue(mult=d(32768, 17))),
        Node("n4", "linear", ["p"], "y", {}, dict(weight=np.array([[2], [-1]], np.int8),
                                                 bias=np.array([0, 10], np.int32)), None),
    ]
    return IntProgram(t, nodes, ["x"], ["y"]).validate()


def test_hand_computed_program():
    prog = hand_program()
    x = np.array([[[1, -3], [5, 127]]])
    out = golden.run(prog, x, keep=True)
    # n1: 3x+1 = [4, -8, 16, 382]; /2 round half up -> [2, -4, 8, 191] -> saturate 127
    np.testing.assert_array_equal(out["a"], [[[2, -4], [8, 127]]])
    # n2: -a + a/2 = -a/2 = [-1, 2, -4, -63.5 -> -63]
    np.testing.assert_array_equal(out["b"], [[[-1, 2], [-4, -63]]])
    # n3: (-1 + 2 - 4 - 63) / 4 = -16.5 -> -16
    np.testing.assert_array_equal(out["p"], [-16])
    # n4: [2 * -16, -1 * -16 + 10]
    np.testing.assert_array_equal(out["y"], [-32, 26])
    assert set(golden.run(prog, x)) == {"y"}
    assert set(out) == {"x", "a", "b", "p", "y"}


def test_run_rejects_bad_inputs():
    prog = hand_program()
    with pytest.raises(ValueError, match="shape"):
        golden.run(prog, np.zeros((1, 3, 3), int))
    with pytest.raises(TypeError, match="integer"):
        golden.run(prog, np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="range"):
        golden.run(prog, np.array([[[1, 2], [3, 300]]]))


def test_run_batch_and_topk():
    prog = hand_program()
    xs = np.array([[[[1, -3], [5, 127]]], [[[0, 0], [0, 0]]]])
    out = golden.run_batch(prog, xs)["y"]
    np.testing.assert_array_equal(out, [[-32, 26], [0, 10]])
    assert golden.top1(out).tolist() == [1, 1]
    assert golden.top1(np.array([3, 9, 9, 1])) == 1           # first of ties
    np.testing.assert_array_equal(golden.topk(np.array([[5, 1, 7, 7, -2]]), 3), [[2, 3, 0]])
    with pytest.raises(ValueError):
        golden.topk(np.array([1, 2]), 3)


# --- host-side conversions -------------------------------------------------------------------------------

def test_quantize_input_rounds_half_up_and_saturates():
    t = TensorInfo("input", (2, 1, 4), scale=np.array([0.5, 0.25]))
    img = np.array([[[0.25, -0.25, -0.75, 100.0]], [[0.125, -0.125, 1.0, -100.0]]])
    # channel 0: 0.5 -> 1, -0.5 -> 0, -1.5 -> -1, 200 -> 127; channel 1: same /0.25
    np.testing.assert_array_equal(golden.quantize_input(img, t),
                                  [[[1, 0, -1, 127]], [[1, 0, 4, -128]]])
    tu = TensorInfo("u", (1, 1, 2), signed=False, scale=1.0)
    np.testing.assert_array_equal(golden.quantize_input(np.array([[[-3.0, 300.0]]]), tu),
                                  [[[0, 255]]])
    with pytest.raises(ValueError, match="shape"):
        golden.quantize_input(np.zeros((3, 2, 2)), t)
    with pytest.raises(ValueError, match="NaN"):
        golden.quantize_input(np.full((2, 1, 4), np.nan), t)


def test_layernorm_host_vs_formula():
    rng = np.random.default_rng(8)
    x = rng.integers(-(1 << 20), 1 << 20, 64)
    gamma, beta = rng.uniform(0.5, 1.5, 64), rng.normal(0, 0.3, 64)
    s_in, s_out = 1e-4, 0.02
    for act in ("none", "hswish"):
        got = golden.layernorm_host(x, s_in, gamma, beta, eps=1e-5, act=act, out_scale=s_out)
        v = x * s_in
        y = (v - v.mean()) / np.sqrt(v.var() + 1e-5) * gamma + beta
        if act == "hswish":
            y = y * np.minimum(np.maximum(y + 3, 0), 6) / 6
        ref = np.clip(np.floor(y / s_out + 0.5), -128, 127)
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError):
        golden.layernorm_host(x, s_in, gamma, beta, eps=1e-5, act="gelu", out_scale=s_out)


def test_concat_and_layernorm_in_a_program():
    t = {"x": TensorInfo("x", (2, 1, 1)), "y": TensorInfo("y", (2, 1, 1)),
         "c": TensorInfo("c", (4, 1, 1))}
    pw = dict(kernel=1, stride=1, padding=0, groups=1)
    n1 = Node("neg", "conv", ["x"], "y", pw, dict(weight=np.array([[[[-1]], [[0]]], [[[0]], [[-1]]]],
                                                                   np.int8),
                                                  bias=np.zeros(2, np.int32)),
              Epilogue(mult=nx.Dyadic(32768, 15)))
    n2 = Node("cat", "concat", ["x", "y"], "c")
    prog = IntProgram(t, [n1, n2], ["x"], ["c"]).validate()
    np.testing.assert_array_equal(golden.run(prog, np.array([[[5]], [[-128]]]))["c"].ravel(),
                                  [5, -128, -5, 127])


def test_epilogue_unsigned_relu_output():
    mult = nx.to_dyadic(np.full(6, 0.01))
    prog, w, b = _one_conv_prog(Epilogue(mult=mult, act="relu"), out_signed=False)
    x = rand_i8((4, 5, 5))
    acc = naive_conv(x, w, b, 1, 1, 1)
    ref = np.stack([nx.requant(acc[c], nx.Dyadic(mult.b[c], mult.c[c]), relu=True, signed=False)
                    for c in range(6)])
    got = golden.run(prog.validate(), x)["y"]
    np.testing.assert_array_equal(got, ref)
    assert got.min() == 0 and got.max() > 127       # the unsigned range is used


def test_linear_with_epilogue_and_per_channel_pool():
    rng = np.random.default_rng(12)
    t = {"x": TensorInfo("x", (3, 4, 4)), "p": TensorInfo("p", (3,)), "y": TensorInfo("y", (5,))}
    pm = nx.to_dyadic(np.array([1 / 16, 1 / 8, 1 / 32]))
    w = rand_i8((5, 3), rng)
    b = rng.integers(-500, 500, 5).astype(np.int32)
    lm = nx.to_dyadic(np.linspace(0.02, 0.05, 5))
    nodes = [Node("pool", "global_avgpool", ["x"], "p", {}, {}, Epilogue(mult=pm)),
             Node("fc", "linear", ["p"], "y", {}, dict(weight=w, bias=b), Epilogue(mult=lm, act="relu"))]
    prog = IntProgram(t, nodes, ["x"], ["y"]).validate()
    x = rand_i8((3, 4, 4), rng)
    sums = [sum(int(v) for v in x[c].ravel()) for c in range(3)]
    p = [int(nx.requant(sums[c], nx.Dyadic(pm.b[c], pm.c[c]))) for c in range(3)]
    y = [int(nx.requant(int(b[o]) + sum(int(w[o, i]) * p[i] for i in range(3)),
                        nx.Dyadic(lm.b[o], lm.c[o]), relu=True)) for o in range(5)]
    out = golden.run(prog, x, keep=True)
    np.testing.assert_array_equal(out["p"], p)
    np.testing.assert_array_equal(out["y"], y)


def test_accumulator_overflow_is_refused():
    """Bias + products beyond int32 would wrap in the psum registers: refused, naming the node."""
    prog = hand_program()
    prog.nodes[0].params["bias"] = np.array([(1 << 31) - 100], np.int64)
    prog.validate()                                    # the bias itself is a legal int32
    with pytest.raises(golden.AccumulatorOverflow, match="'n1'.*32-bit"):
        golden.run(prog, np.array([[[1, -3], [5, 127]]]))
    # the same program with a harmless bias runs
    prog.nodes[0].params["bias"] = np.array([1], np.int32)
    golden.run(prog, np.array([[[1, -3], [5, 127]]]))


# --- the float reference --------------------------------------------------------------------------------

def test_sqnr_db():
    assert golden.sqnr_db([1.0, 1.0], [1.0, 0.0]) == pytest.approx(10 * np.log10(2.0))
    assert golden.sqnr_db([3.0, -4.0], [3.0, -4.0]) == float("inf")
    assert np.isnan(golden.sqnr_db([0.0, 0.0], [1.0, 0.0]))


def test_float_reference_of_a_consistent_conv():
    """One hswish conv with s_in = 0.01, weight scale 0.02 per tensor, s_mid, s_out: the float
    reference is hswish(conv(x_real, w * 0.02) + bias * s_in * 0.02) computed here directly."""
    rng = np.random.default_rng(21)
    s_in, s_w, s_mid, s_out = 0.01, 0.02, 0.001, 0.1
    three, hm = nx.hswish_constants(s_mid, s_out)
    w = rand_i8((3, 2, 3, 3), rng)
    b = rng.integers(-100, 100, 3).astype(np.int32)
    epi = Epilogue(mult=nx.to_dyadic(s_in * s_w / s_mid), act="hswish", three=three, hswish_mult=hm)
    t = {"x": TensorInfo("x", (2, 4, 4), scale=s_in), "y": TensorInfo("y", (3, 4, 4), scale=s_out)}
    prog = IntProgram(t, [Node("c", "conv", ["x"], "y", dict(kernel=3, stride=1, padding=1, groups=1),
                               dict(weight=w, bias=b), epi)], ["x"], ["y"]).validate()
    img = rng.uniform(-1, 1, (2, 4, 4))
    pre = naive_conv(np.zeros((2, 4, 4), int), w, b, 1, 1, 1) * s_in * s_w  # bias only
    acc_real = np.zeros((3, 4, 4))
    for co in range(3):
        for oy in range(4):
            for ox in range(4):
                for ci in range(2):
                    for ky in range(3):
                        for kx in range(3):
                            iy, ix = oy - 1 + ky, ox - 1 + kx
                            if 0 <= iy < 4 and 0 <= ix < 4:
                                acc_real[co, oy, ox] += img[ci, iy, ix] * w[co, ci, ky, kx] * s_w
    y = acc_real + pre
    ref = y * np.clip(y + 3, 0, 6) / 6
    got = golden.float_reference(prog, img)["y"]
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-6)   # dyadic/three rounding only
    # and the integer program approximates it
    q = golden.run(prog, golden.quantize_input(img, t["x"]))["y"] * s_out
    assert golden.sqnr_db(ref, q) > 20


def test_every_tiny_node_tracks_its_float_op():
    """Each node of the tiny zoo model, fed the golden model's own dequantized inputs, matches its
    float operation up to its own quantization error; this ties the integer steps (layouts,
    shifts, signs) to the scales in the file."""
    from sim import zoo
    prog = zoo.tiny(seed=2)
    x = golden.quantize_input(zoo.random_image(64, 4), prog.tensors["input"])
    out = golden.run(prog, x, keep=True)
    deq = {k: v * prog.tensors[k].channel_scale().reshape((-1,) + (1,) * (v.ndim - 1))
           for k, v in out.items()}
    for n in prog.nodes:
        db = golden.sqnr_db(golden.float_node(prog, n, deq), deq[n.output])
        floor = {"attention": 8.0, "concat": 200.0}.get(n.kind, 18.0)
        assert db > floor, f"{n.name} ({n.kind}): {db:.1f} dB"


def test_cli(tmp_path, capsys):
    import json

    from sim import zoo
    prog = zoo.tiny(seed=1)
    path = prog.save(tmp_path / "t.npz")
    img = zoo.random_image(64, 9)
    np.save(tmp_path / "img.npy", img)
    assert golden.main([str(path), "--npy", str(tmp_path / "img.npy"), "--stats", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    logits = golden.run(prog, golden.quantize_input(img, prog.tensors["input"]))[prog.outputs[0]]
    assert rep["top5"] == golden.topk(logits, 5).tolist()
    assert rep["top5_logits"] == [int(logits[i]) for i in rep["top5"]]
    assert set(rep["stats"]) == {n.name for n in prog.nodes if prog.tensors[n.output].bits <= 8}
    assert golden.main([str(tmp_path / "missing.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "small.npy", np.zeros((3, 8, 8)))
    assert golden.main([str(path), "--npy", str(tmp_path / "small.npy")]) == 2
    assert "shape" in capsys.readouterr().err
