"""Quantizers and observers against hand-written formulas (numpy, independent of quant/)."""

import math

import numpy as np
import pytest
import torch

from quant.observers import make_observer
from quant.quantizers import (AdaRoundWeightQuantizer, FixedWeightQuantizer, LSQActQuantizer,
                              fake_quant, qrange, quantize_int, weight_scale)


def ref_quant(x, s, bits, signed):
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return np.clip(np.floor(np.asarray(x, np.float64) / s + 0.5), lo, hi)


def test_qrange():
    assert qrange(8) == (-128, 127)
    assert qrange(8, False) == (0, 255)
    assert qrange(4) == (-8, 7)
    with pytest.raises(ValueError):
        qrange(0)


@pytest.mark.parametrize("bits,signed", [(8, True), (8, False), (4, True), (6, False)])
def test_quantize_int_matches_formula(bits, signed):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, size=(4, 5, 6)).astype(np.float64)
    s = 0.037
    got = quantize_int(torch.from_numpy(x), s, bits, signed).numpy()
    np.testing.assert_array_equal(got, ref_quant(x, s, bits, signed))
    # round half up, like sim.numerics.rshift_round
    assert quantize_int(torch.tensor([2.5, -2.5, 0.5, -0.5]), 1.0).tolist() == [3, -2, 1, 0]


def test_fake_quant_per_channel_and_offset():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, size=(2, 3, 4, 4))
    s = np.array([0.01, 0.1, 0.02])
    o = np.array([5.0, -3.0, 0.0])
    got = fake_quant(torch.from_numpy(x), torch.from_numpy(s), 8, True, axis=1,
                     offset=torch.from_numpy(o)).numpy()
    sb, ob = s.reshape(1, 3, 1, 1), o.reshape(1, 3, 1, 1)
    want = sb * (np.clip(np.floor(x / sb + 0.5) - ob, -128, 127) + ob)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_weight_scale_filterwise():
    w = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 0.25]]], [[[0.0, 0.0]]]])
    s = weight_scale(w, 8)
    np.testing.assert_allclose(s.numpy(), [2 / 127, 0.5 / 127, 1.0])
    assert float(weight_scale(w, 8, channel_wise=False)) == pytest.approx(2 / 127)
    q = quantize_int(w, s, 8, axis=0)
    assert q[0].flatten().tolist() == [64, -127]   # 63.5 rounds half up to 64


def test_lsq_forward_and_scale_gradient():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    q = LSQActQuantizer(0.05, 8, True)
    y = q(x)
    want = ref_quant(x.numpy(), 0.05, 8, True) * 0.05
    np.testing.assert_allclose(y.detach().numpy(), want, atol=1e-6)
    y.pow(2).sum().backward()
    assert q.scale.grad is not None and torch.isfinite(q.scale.grad)
    # LSQ gradient of s for one element: round(x/s) - x/s inside, qmin/qmax when clipped
    q2 = LSQActQuantizer(1.0, 8, True)
    xx = torch.tensor([[0.3, 200.0, -300.0]]).reshape(1, 3, 1, 1)
    q2(xx).sum().backward()
    g = 1 / math.sqrt(3 * 127)
    assert float(q2.scale.grad) == pytest.approx(g * ((0 - 0.3) + 127 - 128), rel=1e-5)


def test_lsq_center_offset():
    q = LSQActQuantizer(0.1, 8, True, center=torch.tensor([10.0, -5.0]))
    assert q.offset().tolist() == [100, -50]
    x = torch.tensor([[10.0, -5.0], [22.0, -5.5]]).reshape(2, 2, 1, 1)
    y = q(x).flatten().tolist()
    # channel 0 centred on 10: 22 -> code 120 -> 12 + 10 = 22 (no clipping despite |22| >> 12.7)
    assert y[2] == pytest.approx(22.0, abs=1e-5)


def ref_lsq_step_grad(x, w, s, bits, signed, center=None, factor=None):
    """d(sum(w * q(x)))/ds of LSQ (Esser et al. 2020), written out in numpy: per element
    ``round(x/s') - x/s'`` inside the range and the clip bound ``b`` (qmin/qmax) outside, with
    ``s' = s m_c`` the channel's effective step (chain rule: times ``m_c``). With a filter-wise
    centre ``c`` (offset ``o = round(c/s')``, stored code ``round(x/s') - o``) the clamped value
    ``s' (b + o)`` adds ``o - c/s'`` (straight-through ``do/ds' = -c/s'^2``); inside, ``o``
    cancels. Times LSQ's gradient scale ``1 / sqrt(numel per sample * qmax)``. x: (N, C, H, W)."""
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    c_n = x.shape[1]
    m = np.ones(c_n) if factor is None else np.asarray(factor, np.float64)
    c = np.zeros(c_n) if center is None else np.asarray(center, np.float64)
    se = (s * m).reshape(1, -1, 1, 1)
    cc = c.reshape(1, -1, 1, 1)
    r = np.floor(x / se + 0.5)
    o = np.floor(cc / se + 0.5)
    code = r - o
    d = np.where(code < lo, lo + o - cc / se,
                 np.where(code > hi, hi + o - cc / se, r - x / se))
    d = d * m.reshape(1, -1, 1, 1)
    return float((w * d).sum()) / math.sqrt(x[0].size * hi)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("kind", ["plain", "center", "factor"])
def test_lsq_step_gradient_matches_reference(kind, signed):
    """The autograd step gradient of LSQActQuantizer equals the hand-written LSQ formula, also
    for filter-wise-shifted tensors (the offset's straight-through term; the earlier version
    treated ``o`` as a constant and gave ``b + o`` at the clamp) and migrated ones."""
    rng = np.random.default_rng(7)
    n, ch, s = 3, 6, 0.05
    center = factor = None
    # channels spread so that a good part of every case is clipped
    x = (rng.normal(0, 6.0, size=(n, ch, 5, 5)) + rng.uniform(-8, 8, size=(1, ch, 1, 1))
         + (0.0 if signed else 6.0))
    if kind == "center":
        center = rng.uniform(-9, 9, size=ch)               # offsets up to ~180 codes
        center[0] = 0.0
        x = x + center.reshape(1, -1, 1, 1) * 0.5          # both sides clip in some channels
    if kind == "factor":
        factor = rng.uniform(0.2, 1.5, size=ch)
    w = rng.normal(size=x.shape)                           # upstream gradient
    q = LSQActQuantizer(s, 8, signed,
                        center=None if center is None else torch.tensor(center),
                        channel_factor=None if factor is None else torch.tensor(factor))
    s32 = float(q.scale.detach())                          # the float32 step actually used
    xt = torch.from_numpy(x)
    y = q(xt)
    (torch.from_numpy(w) * y).sum().backward()
    want = ref_lsq_step_grad(x, w, s32, 8, signed, center, factor)
    lo, hi = qrange(8, signed)
    se = s32 * (np.ones(ch) if factor is None else factor).reshape(1, -1, 1, 1)
    o = 0 if center is None else np.floor(center.reshape(1, -1, 1, 1) / se + 0.5)
    code = np.floor(x / se + 0.5) - o
    assert (code < lo).mean() > 0.02 and (code > hi).mean() > 0.02   # the clamp is exercised
    assert float(q.scale.grad) == pytest.approx(want, rel=1e-4, abs=1e-6)
    # the forward value is unchanged by the gradient plumbing
    np.testing.assert_allclose(y.detach().numpy(), se * (np.clip(code, lo, hi) + o), atol=1e-9)


def test_lsq_offset_step_gradient_sign():
    """A channel centred at 10 with step 0.05 (offset 200 codes): an element clipped below has
    ``dq/ds`` about qmin (the lower clip bound ``c + s qmin`` falls as ``s`` grows), as without a
    centre; with the offset held constant it was ``qmin + 200 = +72``, the wrong sign."""
    q = LSQActQuantizer(0.05, 8, True, center=torch.tensor([10.0]))
    x = torch.tensor([[0.0]], dtype=torch.float64).reshape(1, 1, 1, 1)   # code -200: clipped
    q(x).sum().backward()
    g = 1 / math.sqrt(1 * 127)
    s = float(q.scale.detach())
    assert float(q.scale.grad) == pytest.approx(g * (-128 + 200 - 10.0 / s), abs=1e-4)
    assert float(q.scale.grad) < 0


def test_adaround_init_and_hard():
    torch.manual_seed(0)
    w = torch.randn(3, 2, 3, 3)
    s = weight_scale(w)
    ada = AdaRoundWeightQuantizer(w, s)
    np.testing.assert_allclose(ada().detach().numpy(), w.numpy(), atol=1e-4)  # soft == float
    ada.hard()
    codes = ada.int_weight().numpy()
    x = (w / s.reshape(-1, 1, 1, 1)).numpy()
    assert np.all((codes == np.floor(x)) | (codes == np.floor(x) + 1))
    # at initialisation the hard decisions are round-to-nearest (ties aside)
    near = np.clip(np.floor(x + 0.5), -128, 127)
    assert (codes == near).mean() > 0.99
    assert float(ada.regularizer(2.0).detach()) >= 0


def test_fixed_weights_from_adaround():
    torch.manual_seed(1)
    w = torch.randn(4, 3, 1, 1)
    s = weight_scale(w)
    ada = AdaRoundWeightQuantizer(w, s)
    with torch.no_grad():
        ada.alpha.add_(torch.randn_like(ada.alpha))      # some decisions away from nearest
    x = (w / s.reshape(-1, 1, 1, 1)).numpy()
    up = (ada.alpha.detach().numpy() >= 0).astype(np.float64)   # V >= 0 <=> h(V) >= 1/2
    want = np.clip(np.floor(x) + up, -128, 127)
    np.testing.assert_array_equal(ada.hard_int_weight().numpy(), want)   # also while soft
    fx = FixedWeightQuantizer.from_adaround(ada)
    assert fx.codes.dtype == torch.int8
    np.testing.assert_array_equal(fx.codes.numpy(), want)
    np.testing.assert_allclose(fx().numpy(), want * s.numpy().reshape(-1, 1, 1, 1), rtol=1e-6)
    np.testing.assert_array_equal(fx.int_weight().numpy(), ada.hard().int_weight().numpy())
    with pytest.raises(ValueError, match="integers"):
        FixedWeightQuantizer(torch.full((2, 1), 0.5), torch.ones(2))
    with pytest.raises(ValueError, match="integers"):
        FixedWeightQuantizer(torch.full((2, 1), 200.0), torch.ones(2))


def test_observers_match_hand_formulas():
    rng = np.random.default_rng(3)
    batches = [rng.normal(0, 1 + i, size=(4, 3, 5, 5)).astype(np.float32) for i in range(3)]
    obs = {n: make_observer(n, 8, True) for n in ("minmax", "ema", "percentile", "omse")}
    for b in batches:
        for o in obs.values():
            o.update(torch.from_numpy(b))
    allv = np.concatenate([b.ravel() for b in batches])
    assert obs["minmax"].scale() == pytest.approx(np.abs(allv).max() / 127, rel=1e-6)
    lo, hi = batches[0].min(), batches[0].max()
    for b in batches[1:]:
        lo, hi = 0.9 * lo + 0.1 * b.min(), 0.9 * hi + 0.1 * b.max()
    assert obs["ema"].scale() == pytest.approx(max(abs(lo), abs(hi)) / 127, rel=1e-5)
    pct = np.mean([np.sort(np.abs(b.ravel()))[int(round(0.9999 * b.size)) - 1] for b in batches])
    assert obs["percentile"].scale() == pytest.approx(pct / 127, rel=1e-6)
    # OMSE: brute force over the same grid on the same values
    s_omse = obs["omse"].scale()
    top = np.abs(allv).max()
    errs = {a: ((ref_quant(allv, a * top / 127, 8, True) * a * top / 127 - allv) ** 2).sum()
            for a in np.linspace(0.3, 1.0, 100)}
    best = min(errs, key=errs.get)
    assert s_omse == pytest.approx(best * top / 127, rel=1e-4)
    assert s_omse < obs["minmax"].scale()
    # per-channel statistics kept for the transforms
    np.testing.assert_allclose(obs["minmax"].ch_max.numpy(),
                               np.max([b.max(axis=(0, 2, 3)) for b in batches], axis=0))


def test_observer_unsigned_and_errors():
    o = make_observer("minmax", 8, False)
    o.update(torch.tensor([[0.0, 2.55]]).reshape(1, 2, 1))
    assert o.scale() == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown observer"):
        make_observer("bogus")
    with pytest.raises(RuntimeError):
        make_observer("minmax").scale()
