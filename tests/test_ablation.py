"""Issue #17: the ablation's baselines and injected statistics, checked against references
written here from their definitions."""

import numpy as np
import torch

from quant.ablation import inject_statistics
from quant.bn_calib import random_calibrated_model
from quant.data import SyntheticImages
from quant.fold import fold_bn
from quant.observers import make_observer
from quant.qmodel import QAttention, lower
from quant.quantizers import LSQActQuantizer


def _brecq_mse_init(x: np.ndarray, bits: int = 8):
    """BRECQ's UniformAffineQuantizer.init_quantization_scale(scale_method='mse'), per tensor:
    80 shrinking ranges, lp_loss(p=2.4, reduction='all') (mean), the best range's quantizer."""
    x_min, x_max = min(x.min(), 0.0), max(x.max(), 0.0)
    best = None
    for i in range(80):
        new_max, new_min = x_max * (1.0 - i * 0.01), x_min * (1.0 - i * 0.01)
        delta = (new_max - new_min) / (2 ** bits - 1)
        zp = np.floor(-new_min / delta + 0.5)
        xq = (np.clip(np.floor(x / delta + 0.5) + zp, 0, 2 ** bits - 1) - zp) * delta
        score = np.mean(np.abs(x - xq) ** 2.4)
        if best is None or score < best[0]:
            best = (score, delta, zp, xq)
    return best[1], best[2], best[3]


def test_asym_grid_observer_is_the_authors_init():
    rng = np.random.default_rng(0)
    # a skewed tensor (Hardswish-like: long positive tail, small negative part)
    x = np.maximum(rng.gamma(1.5, 1.0, size=(4, 8, 16, 16)) - 0.4, -0.375)
    o = make_observer("asym-grid", 8, True)
    o.update(torch.from_numpy(x).float())
    s = o.scale()
    delta, zp, xq_ref = _brecq_mse_init(x.astype(np.float32).astype(np.float64))
    assert abs(s - delta) <= 1e-9 * delta
    q = LSQActQuantizer(s, 8, True, center=o.center)
    with torch.no_grad():
        xq = q(torch.from_numpy(x).float()).double().numpy()
    np.testing.assert_allclose(xq, xq_ref, atol=1e-5 * delta)
    # asymmetric: the range is not centred at 0 (symmetric MinMax would waste half the codes)
    assert float(o.center[0]) > 0.2 * float(np.abs(x).max())


def test_divisor_injection_keeps_the_float_network_and_spreads_divisors():
    m, _ = random_calibrated_model("b0-r64", seed=0, n_images=4)
    m.set_attention_mode("linear")
    ds = SyntheticImages(4, 64, seed=3)
    x = ds.images()
    g = lower(fold_bn(m), resolution=64).set_mode("float")

    def run():
        env = {"input": x}
        with torch.no_grad():
            g.run_nodes(env, 0, None)
        return env
    e0 = run()
    inject_statistics(g, 0, spread=0.0, compress=1.0, max_offset=0.0, head_spread=2.0)
    e1 = run()
    ref = e0[g.output_name]
    assert float((e1[g.output_name] - ref).abs().max()) < 1e-4 * float(ref.abs().max())
    for n in (n for n in g.nodes if isinstance(n, QAttention)):
        b = x.shape[0]

        def den(env):
            # den = relu(Q) . sum_n relu(K), per head (paper Eq. 4), max over images/tokens
            t = env[n.inputs[0]].reshape(b, n.heads, 3 * n.dim, -1).double()
            q, k = t[:, :, :n.dim].clamp_min(0), t[:, :, n.dim:2 * n.dim].clamp_min(0)
            return (q * k.sum(-1, keepdim=True)).sum(2).amax(dim=(0, 2))
        ratio = (den(e1) / den(e0)).numpy()
        assert ratio.max() / ratio.min() > 20, ratio        # divisor magnitudes spread across heads
