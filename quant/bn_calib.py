"""Randomly initialised but BN-calibrated EfficientViT models (no pretrained weights here).

:func:`bn_calibrate` re-estimates every BatchNorm's running mean and variance on given images,
the way the official ``reset_bn`` (mit-han-lab/efficientvit ``models/nn/norm.py``) does: during
one pass each BN normalises with the statistics of the current batch (so every layer sees the
distribution its upstream layers will produce after calibration), and the running statistics
become the batch-size-weighted average of the per-batch mean and (biased) variance. With a
single batch, eval-mode outputs on those images then equal the train-mode outputs, and each BN
output channel has mean ``beta`` and standard deviation ``~gamma`` on them.

:func:`random_init` gives every conv/linear weight a variance-preserving normal initialisation
(``std = 1/sqrt(fan_in)``), zero biases, BN/LN ``gamma = 1``, ``beta = 0``, so activations stay
O(1) through the layers without a BatchNorm (the fewer-norm MBConvs, LiteMLA's q/k/v) as well.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .data import SyntheticImages
from .models.efficientvit import EfficientViTCls, create_model

__all__ = ["random_init", "bn_calibrate", "random_calibrated_model"]


@torch.no_grad()
def random_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise ``model`` in place (see module docstring) from ``seed``; returns it."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            w = torch.randn(m.weight.shape, generator=gen) / math.sqrt(fan_in)
            m.weight.copy_(w.to(m.weight.dtype))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            if m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
    return model


def _batches(images, batch_size: Optional[int]):
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        bs = batch_size or images.shape[0]
        for i in range(0, images.shape[0], bs):
            yield images[i:i + bs]
    else:
        for batch in images:
            yield batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def bn_calibrate(model: nn.Module, images: Union[torch.Tensor, Iterable],
                 batch_size: Optional[int] = None, progress: bool = False) -> nn.Module:
    """Re-estimate the running statistics of every BatchNorm2d of ``model`` (in place) on
    ``images`` (a ``(N, 3, H, W)`` tensor split into ``batch_size`` chunks, default one batch,
    or an iterable of batches / ``(images, labels)``). Returns the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    sums = {id(m): [None, None, 0] for m in bns}  # mean * n, var * n, n

    def make_forward(bn):
        def forward(x):
            mean = x.mean(dim=(0, 2, 3))
            var = ((x - mean.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
            acc = sums[id(bn)]
            n = x.shape[0]
            acc[0] = mean * n if acc[0] is None else acc[0] + mean * n
            acc[1] = var * n if acc[1] is None else acc[1] + var * n
            acc[2] += n
            return F.batch_norm(x, mean, var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return forward

    model.eval()
    try:
        for bn in bns:
            bn.forward = make_forward(bn)
        device = next(model.parameters()).device
        seen = 0
        for batch in tqdm(_batches(images, batch_size), desc="bn calib", disable=not progress,
                          leave=False):
            model(batch.to(device))
            seen += batch.shape[0]
        if seen == 0:
            raise ValueError("bn_calibrate: no images given")
    finally:
        for bn in bns:
            del bn.forward  # back to the class's forward
    for bn in bns:
        s_mean, s_var, n = sums[id(bn)]
        if n == 0:
            continue  # a BN the images never reached
        bn.running_mean.copy_(s_mean / n)
        bn.running_var.copy_(s_var / n)
        bn.num_batches_tracked.fill_(1)
    return model.eval()


def random_calibrated_model(name: str = "b1-r224", seed: int = 0,
                            images: Optional[torch.Tensor] = None, n_images: int = 32,
                            num_classes: int = 1000, batch_size: Optional[int] = None,
                            progress: bool = False) -> tuple[EfficientViTCls, int]:
    """``create_model(name)``, :func:`random_init` from ``seed``, then :func:`bn_calibrate` on
    ``images`` (default: ``n_images`` :class:`quant.data.SyntheticImages` at the model's
    resolution, seeded by ``seed``). Returns ``(model, resolution)``, model in eval mode."""
    model, res = create_model(name, num_classes=num_classes)
    random_init(model, seed)
    if images is None:
        ds = SyntheticImages(n_images, res, seed=seed)
        images = ds.images()
    bn_calibrate(model, images, batch_size=batch_size, progress=progress)
    return model, res
