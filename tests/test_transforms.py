"""Each Trio-ViT transform is exactly equivalent before quantization; log2 path vs sim.numerics."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quant.transforms import (choose_emin, log2_offset, log2_quantize_torch, log2_round_torch,
                              migrate_depthwise, migration_factors, shift_bias, shift_centers,
                              uniform_divisor_quant)
from sim import numerics as nx


def test_migration_factors_eq8():
    m = torch.tensor([1.0, 4.0, 0.5, 2.5])
    f = migration_factors(m)
    np.testing.assert_allclose(f.numpy(), m.numpy() / m.numpy().mean())
    # after migration every channel has the same maximum: mean(max)
    np.testing.assert_allclose((m / f).numpy(), np.full(4, 2.0))
    assert migration_factors(torch.tensor([0.0, 1.0])).min() >= 1e-3


@pytest.mark.parametrize("k,stride", [(3, 1), (5, 2)])
def test_migration_is_equivalent_in_float(k, stride):
    torch.manual_seed(0)
    c = 6
    a = torch.randn(2, c, 9, 9, dtype=torch.float64) * torch.logspace(-2, 2, c, dtype=torch.float64).reshape(1, c, 1, 1)
    w = torch.randn(c, 1, k, k, dtype=torch.float64)
    b = torch.randn(c, dtype=torch.float64)
    m = migration_factors(a.abs().amax(dim=(0, 2, 3)))
    ref = F.conv2d(a, w, b, stride, k // 2, groups=c)
    got = F.conv2d(a / m.reshape(1, c, 1, 1), migrate_depthwise(w, m), b, stride, k // 2, groups=c)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_shifting_is_equivalent_in_float():
    torch.manual_seed(1)
    cin, cout = 7, 5
    a = torch.randn(3, cin, 6, 6, dtype=torch.float64) + torch.linspace(-3, 5, cin, dtype=torch.float64).reshape(1, cin, 1, 1)
    w = torch.randn(cout, cin, 1, 1, dtype=torch.float64)
    b = torch.randn(cout, dtype=torch.float64)
    mn, mx = a.amin(dim=(0, 2, 3)), a.amax(dim=(0, 2, 3))
    c = shift_centers(mn, mx)
    np.testing.assert_allclose(c.numpy(), (mn.numpy() + mx.numpy()) / 2)   # the midpoint
    ref = F.conv2d(a, w, b)
    got = F.conv2d(a - c.reshape(1, cin, 1, 1), w, shift_bias(w, b, c))
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    # the shifted channels are centred: |max| == |min| per channel
    sh = a - c.reshape(1, cin, 1, 1)
    np.testing.assert_allclose(sh.amax(dim=(0, 2, 3)).numpy(), -sh.amin(dim=(0, 2, 3)).numpy())
    # no bias: compensation alone
    np.testing.assert_allclose(shift_bias(w, None, c).numpy(), (w[:, :, 0, 0] @ c).numpy())


def test_log2_round_bit_exact_vs_numerics():
    rng = np.random.default_rng(4)
    x = np.concatenate([np.arange(0, 4097), rng.integers(0, 2 ** 40, 20000),
                        (1 << np.arange(0, 52)), (1 << np.arange(1, 52)) - 1,
                        3 * (1 << np.arange(0, 50))]).astype(np.int64)
    got = log2_round_torch(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, nx.log2_round(x))
    assert int(log2_round_torch(torch.tensor([0b01100011]))[0]) == 7   # the paper's example
    got_f = log2_round_torch(torch.from_numpy(x[:5000]).double()).numpy()
    np.testing.assert_array_equal(got_f, nx.log2_round(x[:5000]))
    with pytest.raises(ValueError):
        log2_round_torch(torch.tensor([-1]))


def test_log2_quantize_bit_exact_vs_numerics():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2 ** 24, 5000)
    x[:50] = 0
    for offset, emin in [(0, 0), (-17, -20), (5, -3), (-30, -40)]:
        got = log2_quantize_torch(torch.from_numpy(x), offset=offset, emin=emin).numpy()
        np.testing.assert_array_equal(got, nx.log2_quantize(x, offset=offset, emin=emin))
    # per-head offsets broadcast
    xx = rng.integers(0, 2 ** 16, (3, 100))
    off, lo = np.array([[-3], [0], [-12]]), np.array([[-8], [-2], [-20]])
    got = log2_quantize_torch(torch.from_numpy(xx), offset=torch.from_numpy(off), emin=torch.from_numpy(lo)).numpy()
    want = np.stack([nx.log2_quantize(xx[i], offset=int(off[i, 0]), emin=int(lo[i, 0])) for i in range(3)])
    np.testing.assert_array_equal(got, want)


def test_log2_offset_and_emin():
    assert log2_offset(1.0) == 0
    assert log2_offset(2 ** -10) == -10
    assert log2_offset(3 * 2 ** -10) == -8       # log2(3) = 1.58 rounds to 2
    assert choose_emin(5) == -10
    with pytest.raises(ValueError):
        log2_offset(0.0)


def test_uniform_divisor_rounds_small_to_zero():
    d = torch.tensor([0.01, 0.3, 750.0, 1000.0])
    q = uniform_divisor_quant(d, 1000.0 / 255)
    assert q[0] == 0 and q[1] == 0 and q[3] == pytest.approx(1000.0)
