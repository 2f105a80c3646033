"""Batch-norm folding: every ``ConvLayer``'s BatchNorm2d merged into its convolution.

For a BatchNorm with running mean ``mu``, running variance ``var``, ``eps``, weight ``gamma``
and bias ``beta`` after a convolution ``y = W * x + b`` (``b = 0`` when the conv has no bias),
eval-mode BN computes ``gamma * (y - mu) / sqrt(var + eps) + beta``. With the per-output-channel
factor ``a = gamma / sqrt(var + eps)``::

    W' = a[o] * W[o, ...]          b' = a * (b - mu) + beta

so ``conv'(x) == bn(conv(x))`` exactly in real arithmetic. The arithmetic is done in float64 and
rounded once to the parameter dtype. The head's ``LayerNorm`` (in ``LinearLayer.norm``) is not a
BatchNorm and stays as it is; ``LiteMLA.aggreg`` convs have no norm. After folding the model has
no BatchNorm left, ``ConvLayer.norm`` is ``None`` and every folded ``conv`` has a bias.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .models.efficientvit import ConvLayer

__all__ = ["fold_conv_bn", "fold_bn", "count_batchnorms"]


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The folded ``(weight, bias)`` of ``bn(conv(x))`` in eval mode (float64 math)."""
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"expected nn.BatchNorm2d, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics "
                         "(track_running_stats=False)")
    dtype = conv.weight.dtype
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(
        w.shape[0], dtype=torch.float64, device=w.device)
    mu = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mu)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mu)
    a = gamma / torch.sqrt(var + bn.eps)
    w_f = w * a.reshape(-1, *([1] * (w.dim() - 1)))
    b_f = a * (b - mu) + beta
    return w_f.to(dtype), b_f.to(dtype)


@torch.no_grad()
def fold_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` (a deep copy unless ``inplace``) with every ``ConvLayer``'s BatchNorm2d
    folded into the conv weight and bias. The result is in eval mode; its output equals the
    eval-mode output of the original model up to float rounding.

    Raises ``ValueError`` if a BatchNorm2d remains outside a ``ConvLayer`` (none does in
    EfficientViT), so that a silently unfolded norm cannot slip through.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for module in model.modules():
        if isinstance(module, ConvLayer) and isinstance(module.norm, nn.BatchNorm2d):
            w, b = fold_conv_bn(module.conv, module.norm)
            module.conv.weight.data.copy_(w)
            if module.conv.bias is None:
                module.conv.bias = nn.Parameter(b)
            else:
                module.conv.bias.data.copy_(b)
            module.norm = None
    left = [name for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"{len(left)} BatchNorm layer(s) not inside a ConvLayer could not be "
                         f"folded: {left[:5]}")
    return model


def count_batchnorms(model: nn.Module) -> int:
    """Number of BatchNorm modules in ``model``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
