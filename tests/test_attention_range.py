"""Issue #17: the attention's output multiplier when the real divisors are large.

``out_mult = s_S 2**round(log2(s_q s_ks)) / (s_ks s_out)`` exceeds 2**16 when a divisor unit
``s_q s_ks`` is large (B0/B1-R224 with random weights and injected statistics); calibration then
stopped with "scale ... too large for a 16-bit dyadic multiplier". Here the qkv convolutions of a
small model are scaled up by ``f`` and the projections after the attention down by ``f`` (the
network downstream is unchanged; ``out_mult`` grows by ``f**2``) until that happens, and the exported attention is checked against the
paper's equations written out in numpy (not the export's formulas).
"""

import math

import numpy as np
import pytest
import torch

from quant.bn_calib import random_calibrated_model
from quant.data import SyntheticImages
from quant.export import export, quantize_images
from quant.fold import fold_bn
from quant.qmodel import QAttention, QConfig, lower
from sim import golden

RES = 64


def _log2_round_ref(x: int) -> int:
    """Leading-one position plus the bit below it (paper Sec. IV-D), for x >= 1."""
    i = int(x).bit_length() - 1
    return i + ((int(x) >> (i - 1)) & 1 if i >= 1 else 0)


def _nominal_out_mult(g, a):
    sc = g.scale_vector(a.inputs[0]).double().reshape(a.heads, 3 * a.dim)
    s_q = sc[:, 0].numpy()
    s_S, s_ks = a.s_S.numpy(), a.s_ks.numpy()
    s_out = float(g.scale_vector(a.output)[0])
    off = np.floor(np.log2(s_q * s_ks) + 0.5)
    return s_S * np.exp2(off) / (s_ks * s_out), s_q, s_S, s_ks, s_out, off


@pytest.fixture(scope="module")
def large_divisors():
    torch.manual_seed(0)
    m, _ = random_calibrated_model(f"b0-r{RES}", seed=1, n_images=8)
    m.set_attention_mode("linear")
    g = lower(fold_bn(m), resolution=RES)
    with torch.no_grad():
        for n in g.nodes:
            if n.name.endswith("context_module.main.qkv"):
                n.weight.mul_(200.0)
                n.bias.mul_(200.0)
            elif n.name.endswith("context_module.main.proj"):
                n.weight.div_(200.0)
    ds = SyntheticImages(8, RES, seed=5)
    imgs = ds.images()
    g.prepare(QConfig())
    g.calibrate([imgs[:4], imgs[4:]])          # raised ValueError before the fix
    return g, imgs


def test_large_divisor_attention_calibrates_and_exports(large_divisors):
    g, imgs = large_divisors
    attn = [n for n in g.nodes if isinstance(n, QAttention)]
    nominal = np.concatenate([_nominal_out_mult(g, a)[0] for a in attn])
    assert nominal.max() >= 2 ** 16, "the case this test is about did not arise"
    prog = export(g)
    prog.validate()
    for a in attn:
        p = next(n for n in prog.nodes if n.name == a.name).params
        assert (p["out_mult_b"] < 2 ** 16).all() and (p["out_mult_c"] >= 0).all()
        assert (np.abs(p["log2_offset"]) <= 127).all() and (np.abs(p["log2_emin"]) <= 127).all()


def test_large_divisor_attention_output_matches_paper_equations(large_divisors):
    """golden(exported params): out = round(num s_S s_q / (s_q s_ks 2**log2_round(den) s_out)):
    the real numerator over the real divisor whose integer is log2-rounded (Eq. 11), within the
    4-bit window of exponents ``e = round(log2(s_q s_ks)) + log2_round(den)`` (1 LSB allowed for
    the 16-bit multiplier's rounding)."""
    g, imgs = large_divisors
    prog = export(g)
    xi = quantize_images(prog, imgs[:2])
    checked = big = 0
    for a in (n for n in g.nodes if isinstance(n, QAttention)):
        nominal, s_q, s_S, s_ks, s_out, off = _nominal_out_mult(g, a)
        node = next(n for n in prog.nodes if n.name == a.name)
        p = node.params
        for x in xi:
            env = golden.run(prog, x, keep=True)
            st = golden.attention_steps(env[node.inputs[0]], p, a.dim)
            np.testing.assert_array_equal(st["out"], env[node.output])
            out = st["out"].reshape(a.heads, a.dim, -1)
            for h in range(a.heads):
                # window of the 4-bit code in absolute exponents: exported emin + the offset moved
                lo = p["log2_emin"][h] + (off[h] - p["log2_offset"][h])
                for n_ in range(st["den"].shape[1]):
                    d = int(st["den"][h, n_])
                    if d == 0:
                        continue
                    lr = _log2_round_ref(d)
                    if not (lo <= off[h] + lr <= lo + 15):
                        continue
                    ref = st["num"][h, :, n_] * (s_S[h] * s_q[h]) / (s_q[h] * s_ks[h] * 2.0 ** lr
                                                                    * s_out)
                    ref = np.clip(np.floor(ref + 0.5), -128, 127)
                    got = out[h, :, n_]
                    assert np.abs(got - ref).max() <= 1, (a.name, h, n_)
                    checked += 1
                    big += nominal[h] >= 2 ** 16
    assert checked > 100 and big > 0, (checked, big)


def test_small_divisor_params_unchanged():
    """Where out_mult < 2**15 nothing moves: offset = round(log2(s_q s_ks)) exactly."""
    m, _ = random_calibrated_model(f"b0-r{RES}", seed=1, n_images=8)
    m.set_attention_mode("linear")
    g = lower(fold_bn(m), resolution=RES)
    ds = SyntheticImages(8, RES, seed=5)
    imgs = ds.images()
    g.prepare(QConfig()).calibrate([imgs[:4], imgs[4:]])
    prog = export(g)
    for a in (n for n in g.nodes if isinstance(n, QAttention)):
        nominal, *_, off = _nominal_out_mult(g, a)
        p = next(n for n in prog.nodes if n.name == a.name).params
        small = nominal < 2 ** 15
        assert small.any()
        np.testing.assert_array_equal(p["log2_offset"][small], off[small].astype(np.int64))
        for h in np.flatnonzero(small):
            assert math.isclose(p["out_mult_b"][h] / 2.0 ** p["out_mult_c"][h], nominal[h],
                                rel_tol=2 ** -15)
