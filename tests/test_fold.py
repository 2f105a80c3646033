"""BN folding: exact in eval mode, against an explicit conv + batch-norm reference."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from quant.fold import count_batchnorms, fold_bn, fold_conv_bn
from quant.models import ConvLayer, create_model


def _randomize_bn(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
            m.weight.data.copy_(1 + 0.3 * torch.randn(c, generator=g))
            m.bias.data.copy_(0.3 * torch.randn(c, generator=g))


def _bn_reference(y: np.ndarray, bn: nn.BatchNorm2d) -> np.ndarray:
    """Eval-mode batch norm written out: gamma * (y - mu) / sqrt(var + eps) + beta."""
    mu = bn.running_mean.double().numpy()[None, :, None, None]
    var = bn.running_var.double().numpy()[None, :, None, None]
    gamma = bn.weight.detach().double().numpy()[None, :, None, None]
    beta = bn.bias.detach().double().numpy()[None, :, None, None]
    return gamma * (y - mu) / np.sqrt(var + bn.eps) + beta


@pytest.mark.parametrize("groups,bias,k,stride", [(1, False, 3, 2), (8, False, 3, 1),
                                                  (1, True, 1, 1), (2, True, 5, 1)])
def test_fold_conv_bn_against_reference(groups, bias, k, stride):
    torch.manual_seed(0)
    layer = ConvLayer(8, 8, k, stride=stride, groups=groups, use_bias=bias, act_func=None)
    layer = layer.double()
    _randomize_bn(layer, 1)
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        y = F.conv2d(x, layer.conv.weight, layer.conv.bias, stride, k // 2, 1, groups)
    ref = _bn_reference(y.numpy(), layer.norm)
    w, b = fold_conv_bn(layer.conv, layer.norm)
    with torch.no_grad():
        got = F.conv2d(x, w, b, stride, k // 2, 1, groups).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["b0-r64", "b1-r64"])
def test_fold_whole_model_exact(name):
    torch.manual_seed(0)
    model, res = create_model(name)
    _randomize_bn(model, 2)
    model.eval()
    n_bn = count_batchnorms(model)
    folded = fold_bn(model)
    assert count_batchnorms(folded) == 0 and count_batchnorms(model) == n_bn  # copy
    x = torch.randn(2, 3, res, res)
    with torch.no_grad():
        a = model(x)
        b = folded(x)
    rel = float((a - b).abs().max() / a.abs().max())
    assert rel < 1e-5, rel
    # every ConvLayer lost its norm; those that had a BN now have a conv bias; the head's
    # LayerNorm stays
    had_bn = {n for n, m in model.named_modules() if isinstance(m, ConvLayer) and m.norm}
    assert had_bn
    for n, m in folded.named_modules():
        if isinstance(m, ConvLayer):
            assert m.norm is None
            if n in had_bn:
                assert m.conv.bias is not None
    assert isinstance(folded.head.op_list[2].norm, nn.LayerNorm)


def test_fold_double_precision_is_tight():
    torch.manual_seed(0)
    model, _ = create_model("b0-r64")
    model = model.double()
    _randomize_bn(model, 3)
    model.eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    folded = fold_bn(model)
    with torch.no_grad():
        a, b = model(x), folded(x)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-10


def test_fold_inplace_and_training_mode_uses_running_stats():
    torch.manual_seed(0)
    model, _ = create_model("b0-r64")
    _randomize_bn(model, 4)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model.eval()(x)
    model.train()
    out = fold_bn(model, inplace=True)
    assert out is model and not model.training and count_batchnorms(model) == 0
    with torch.no_grad():
        assert float((model(x) - ref).abs().max() / ref.abs().max()) < 1e-5


def test_fold_rejects_stray_batchnorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="could not be folded"):
        fold_bn(model)
