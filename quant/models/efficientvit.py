"""EfficientViT classification models B0-B3 (the Softmax-free ReLU linear-attention ViT).

Module structure and ``state_dict`` key names follow the official release
(mit-han-lab/efficientvit: ``efficientvit/models/nn/ops.py``,
``efficientvit/models/efficientvit/backbone.py`` and ``cls.py``), so that an official checkpoint
loads by path (see :mod:`quant.checkpoint`). The code is written for this project; only the
structure, the hyper-parameters and the parameter names are the official ones.

Layout of a model (``EfficientViTCls``)::

    backbone.input_stem   OpSequential: ConvLayer 3x3/2 (BN, hswish), then depth[0] x
                          ResidualBlock(DSConv(dw 3x3 BN hswish, pw BN), identity)
    backbone.stages[0..1] OpSequential of ResidualBlock(MBConv(pw BN hswish, dw BN hswish,
                          pw BN)); the first block of a stage has stride 2 and no shortcut
    backbone.stages[2..3] ResidualBlock(MBConv "fewer norm": pw+bias hswish, dw+bias hswish,
                          pw BN; stride 2, no shortcut), then depth x EfficientViTBlock:
                          context_module = ResidualBlock(LiteMLA, identity)
                          local_module   = ResidualBlock(MBConv fewer-norm stride 1, identity)
    head                  ClsHead: ConvLayer 1x1 (BN, hswish), AdaptiveAvgPool2d(1),
                          LinearLayer (no bias, LayerNorm, hswish), LinearLayer (bias) -> logits

Hooks for quantization: every convolution except the two inside ``LiteMLA.aggreg`` is a
:class:`ConvLayer` with ``.conv`` / ``.norm`` / ``.act`` (``norm`` and ``act`` may be ``None``);
``LiteMLA.aggreg[i]`` is ``nn.Sequential(depthwise 5x5 nn.Conv2d, grouped 1x1 nn.Conv2d)`` exactly
as in the official code (their keys are ``aggreg.0.0.weight`` / ``aggreg.0.1.weight``). All the
attention arithmetic (ReLU kernel, the two matmuls, the division) is in
:meth:`LiteMLA.relu_linear_att`, which a quantizer can override or wrap.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "MODEL_CONFIGS",
    "ConvLayer",
    "LinearLayer",
    "IdentityLayer",
    "DSConv",
    "MBConv",
    "LiteMLA",
    "EfficientViTBlock",
    "ResidualBlock",
    "OpSequential",
    "EfficientViTBackbone",
    "ClsHead",
    "EfficientViTCls",
    "build_act",
    "build_norm",
    "efficientvit_cls_b0",
    "efficientvit_cls_b1",
    "efficientvit_cls_b2",
    "efficientvit_cls_b3",
    "create_model",
    "parse_model_name",
]

# Per variant: backbone widths and depths, the attention head dimension, the head widths.
# Source: efficientvit/models/efficientvit/backbone.py (efficientvit_backbone_b0..b3) and
# cls.py (efficientvit_cls_b0..b3: ClsHead in_channels = width[-1], width_list).
MODEL_CONFIGS: dict[str, dict] = {
    "b0": dict(width=(8, 16, 32, 64, 128), depth=(1, 2, 2, 2, 2), dim=16, head=(1024, 1280)),
    "b1": dict(width=(16, 32, 64, 128, 256), depth=(1, 2, 3, 3, 4), dim=16, head=(1536, 1600)),
    "b2": dict(width=(24, 48, 96, 192, 384), depth=(1, 3, 4, 4, 6), dim=32, head=(2304, 2560)),
    "b3": dict(width=(32, 64, 128, 256, 512), depth=(1, 4, 6, 6, 9), dim=32, head=(2304, 2560)),
}

# Resolutions the official checkpoints were released for (any resolution >= 32 works).
OFFICIAL_RESOLUTIONS = {"b0": (224,), "b1": (224, 256, 288), "b2": (224, 256, 288),
                        "b3": (224, 256, 288)}


# ----------------------------------------------------------------------------------------------
# builders
# ----------------------------------------------------------------------------------------------

def build_act(name: Optional[str]) -> Optional[nn.Module]:
    """The activation named ``name`` (``relu``, ``relu6``, ``hswish``) or ``None`` for no act."""
    if name is None:
        return None
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "hswish":
        return nn.Hardswish()
    raise ValueError(f"unknown activation {name!r}: expected 'relu', 'relu6', 'hswish' or None")


def build_norm(name: Optional[str], num_features: int) -> Optional[nn.Module]:
    """``bn2d`` -> BatchNorm2d, ``ln`` -> LayerNorm (both with PyTorch's default eps 1e-5)."""
    if name is None:
        return None
    if name == "bn2d":
        return nn.BatchNorm2d(num_features)
    if name == "ln":
        return nn.LayerNorm(num_features)
    raise ValueError(f"unknown norm {name!r}: expected 'bn2d', 'ln' or None")


def _pair(value, n: int) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"expected {n} values, got {value!r}")
        return tuple(value)
    return (value,) * n


# ----------------------------------------------------------------------------------------------
# basic layers
# ----------------------------------------------------------------------------------------------

class ConvLayer(nn.Module):
    """Conv2d ('same' padding) -> optional norm -> optional activation.

    Attributes ``conv`` (``nn.Conv2d``), ``norm`` (``nn.BatchNorm2d`` or ``None``) and ``act``
    (an activation module or ``None``), as in the official ``ConvLayer``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1, groups: int = 1, use_bias: bool = False,
                 dropout: float = 0.0, norm: Optional[str] = "bn2d",
                 act_func: Optional[str] = "relu"):
        super().__init__()
        padding = (kernel_size // 2) * dilation
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else None
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                              padding=padding, dilation=dilation, groups=groups, bias=use_bias)
        self.norm = build_norm(norm, out_channels)
        self.act = build_act(act_func)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LinearLayer(nn.Module):
    """Flatten (if needed) -> Linear -> optional norm (LayerNorm) -> optional activation."""

    def __init__(self, in_features: int, out_features: int, use_bias: bool = True,
                 dropout: float = 0.0, norm: Optional[str] = None,
                 act_func: Optional[str] = None):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.linear = nn.Linear(in_features, out_features, bias=use_bias)
        self.norm = build_norm(norm, out_features)
        self.act = build_act(act_func)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.linear(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class IdentityLayer(nn.Module):
    """The shortcut of a residual block (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class OpSequential(nn.Module):
    """A list of modules applied in order, stored as ``op_list`` (``None`` entries dropped)."""

    def __init__(self, op_list: Sequence[Optional[nn.Module]]):
        super().__init__()
        self.op_list = nn.ModuleList([op for op in op_list if op is not None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class ResidualBlock(nn.Module):
    """``main(x) + shortcut(x)``; ``main(x)`` alone when ``shortcut`` is ``None``."""

    def __init__(self, main: Optional[nn.Module], shortcut: Optional[nn.Module]):
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.main is None:
            return x
        if self.shortcut is None:
            return self.main(x)
        return self.main(x) + self.shortcut(x)


# ----------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------

class DSConv(nn.Module):
    """Depthwise-separable conv: ``depth_conv`` (kxk, groups=C) then ``point_conv`` (1x1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, use_bias=False, norm=("bn2d", "bn2d"),
                 act_func=("relu6", None)):
        super().__init__()
        use_bias, norm, act_func = _pair(use_bias, 2), _pair(norm, 2), _pair(act_func, 2)
        self.depth_conv = ConvLayer(in_channels, in_channels, kernel_size, stride,
                                    groups=in_channels, norm=norm[0], act_func=act_func[0],
                                    use_bias=use_bias[0])
        self.point_conv = ConvLayer(in_channels, out_channels, 1, norm=norm[1],
                                    act_func=act_func[1], use_bias=use_bias[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class MBConv(nn.Module):
    """Inverted bottleneck: ``inverted_conv`` (1x1 expand), ``depth_conv`` (kxk depthwise,
    carries the stride), ``point_conv`` (1x1 project)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, mid_channels: Optional[int] = None, expand_ratio: float = 6,
                 use_bias=False, norm=("bn2d", "bn2d", "bn2d"),
                 act_func=("relu6", "relu6", None)):
        super().__init__()
        use_bias, norm, act_func = _pair(use_bias, 3), _pair(norm, 3), _pair(act_func, 3)
        mid = round(in_channels * expand_ratio) if mid_channels is None else mid_channels
        self.inverted_conv = ConvLayer(in_channels, mid, 1, stride=1, norm=norm[0],
                                       act_func=act_func[0], use_bias=use_bias[0])
        self.depth_conv = ConvLayer(mid, mid, kernel_size, stride=stride, groups=mid,
                                    norm=norm[1], act_func=act_func[1], use_bias=use_bias[1])
        self.point_conv = ConvLayer(mid, out_channels, 1, norm=norm[2], act_func=act_func[2],
                                    use_bias=use_bias[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class LiteMLA(nn.Module):
    r"""Lightweight multi-scale linear attention (Softmax-free, ReLU kernel).

    ``qkv``: 1x1 ConvLayer to ``3*heads*dim`` channels (no norm, no act). ``aggreg[i]``: for
    each scale, a depthwise ``scale x scale`` conv then a 1x1 conv grouped per (q|k|v, head),
    giving another set of ``heads`` heads. The ``(1+len(scales))*heads`` heads each hold
    ``q, k, v`` as consecutive ``dim``-channel slices. ``proj``: 1x1 ConvLayer with BN.

    Per head, with ``N = H*W`` tokens (paper Eq. 4, the official ``relu_linear_att``)::

        out[:, n] = sum_m v[:, m] (ReLU(k_m) . ReLU(q_n)) / (sum_m ReLU(k_m) . ReLU(q_n) + eps)

    computed as ``(V_pad @ ReLU(K)^T) @ ReLU(Q)`` where ``V_pad`` is ``V`` with a row of ones
    appended (its last output row is the divisor). ``eps = 1e-15``; half/bfloat16 inputs are
    computed in float32 with autocast disabled, as in the official code.

    ``attention_mode``: ``"auto"`` (official: the quadratic form ``V @ norm(K^T Q)`` when
    ``H*W <= dim``, mathematically the same function) or ``"linear"`` (always
    :meth:`relu_linear_att`; set this when quantizing, so one code path is hooked).
    """

    def __init__(self, in_channels: int, out_channels: int, heads: Optional[int] = None,
                 heads_ratio: float = 1.0, dim: int = 8, use_bias=False,
                 norm=(None, "bn2d"), act_func=(None, None), kernel_func: str = "relu",
                 scales: Sequence[int] = (5,), eps: float = 1.0e-15):
        super().__init__()
        self.eps = eps
        heads = int(in_channels // dim * heads_ratio) if heads is None else heads
        total_dim = heads * dim
        use_bias, norm, act_func = _pair(use_bias, 2), _pair(norm, 2), _pair(act_func, 2)
        self.dim = dim
        self.heads = heads
        self.scales = tuple(scales)
        self.attention_mode = "auto"
        self.qkv = ConvLayer(in_channels, 3 * total_dim, 1, use_bias=use_bias[0],
                             norm=norm[0], act_func=act_func[0])
        self.aggreg = nn.ModuleList([
            nn.Sequential(
                nn.Conv2d(3 * total_dim, 3 * total_dim, scale, padding=scale // 2,
                          groups=3 * total_dim, bias=use_bias[0]),
                nn.Conv2d(3 * total_dim, 3 * total_dim, 1, groups=3 * heads,
                          bias=use_bias[0]),
            )
            for scale in self.scales
        ])
        self.kernel_func = build_act(kernel_func)
        self.proj = ConvLayer(total_dim * (1 + len(self.scales)), out_channels, 1,
                              use_bias=use_bias[1], norm=norm[1], act_func=act_func[1])

    def multi_scale_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """``cat([qkv(x), aggreg[0](qkv(x)), ...], dim=1)``: ``(B, (1+S)*3*heads*dim, H, W)``."""
        qkv = self.qkv(x)
        return torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)

    def _split(self, qkv: torch.Tensor):
        b, _, h, w = qkv.shape
        qkv = torch.reshape(qkv, (b, -1, 3 * self.dim, h * w))
        return (qkv[:, :, 0:self.dim], qkv[:, :, self.dim:2 * self.dim],
                qkv[:, :, 2 * self.dim:])

    def relu_linear_att(self, qkv: torch.Tensor) -> torch.Tensor:
        """The linear attention on the multi-scale ``qkv`` ``(B, G*3*dim, H, W)`` ->
        ``(B, G*dim, H, W)`` (``G`` heads in total)."""
        b, _, h, w = qkv.shape
        if qkv.dtype in (torch.float16, torch.bfloat16):
            qkv = qkv.float()
        with torch.autocast(device_type=qkv.device.type, enabled=False):  # as official
            q, k, v = self._split(qkv)                  # (B, G, dim, N) each
            q = self.kernel_func(q)
            k = self.kernel_func(k)
            v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1.0)   # (B, G, dim+1, N)
            vk = torch.matmul(v, k.transpose(-1, -2))  # (B, G, dim+1, dim)
            out = torch.matmul(vk, q)                   # (B, G, dim+1, N)
            out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        return torch.reshape(out, (b, -1, h, w))

    def relu_quadratic_att(self, qkv: torch.Tensor) -> torch.Tensor:
        """The same function in quadratic form (official path for ``H*W <= dim``)."""
        b, _, h, w = qkv.shape
        orig = qkv.dtype
        if orig in (torch.float16, torch.bfloat16):
            qkv = qkv.float()
        with torch.autocast(device_type=qkv.device.type, enabled=False):
            q, k, v = self._split(qkv)
            q = self.kernel_func(q)
            k = self.kernel_func(k)
            att = torch.matmul(k.transpose(-1, -2), q)  # (B, G, N, N)
            att = att / (torch.sum(att, dim=2, keepdim=True) + self.eps)
            out = torch.matmul(v, att)                  # (B, G, dim, N)
        return torch.reshape(out, (b, -1, h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.multi_scale_qkv(x)
        h, w = qkv.shape[-2:]
        if self.attention_mode == "linear" or h * w > self.dim:
            out = self.relu_linear_att(qkv).to(qkv.dtype)
        else:
            out = self.relu_quadratic_att(qkv).to(qkv.dtype)
        return self.proj(out)


class EfficientViTBlock(nn.Module):
    """``context_module`` (residual LiteMLA) then ``local_module`` (residual MBConv with bias,
    norm only on the last 1x1)."""

    def __init__(self, in_channels: int, heads_ratio: float = 1.0, dim: int = 32,
                 expand_ratio: float = 4, scales: Sequence[int] = (5,), norm: str = "bn2d",
                 act_func: str = "hswish"):
        super().__init__()
        self.context_module = ResidualBlock(
            LiteMLA(in_channels, in_channels, heads_ratio=heads_ratio, dim=dim,
                    norm=(None, norm), scales=scales),
            IdentityLayer(),
        )
        self.local_module = ResidualBlock(
            MBConv(in_channels, in_channels, expand_ratio=expand_ratio,
                   use_bias=(True, True, False), norm=(None, None, norm),
                   act_func=(act_func, act_func, None)),
            IdentityLayer(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))


# ----------------------------------------------------------------------------------------------
# backbone, head, classifier
# ----------------------------------------------------------------------------------------------

def _local_block(in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 norm: str, act_func: str, fewer_norm: bool = False) -> nn.Module:
    if expand_ratio == 1:
        return DSConv(in_channels, out_channels, stride=stride,
                      use_bias=(True, False) if fewer_norm else False,
                      norm=(None, norm) if fewer_norm else norm,
                      act_func=(act_func, None))
    return MBConv(in_channels, out_channels, stride=stride, expand_ratio=expand_ratio,
                  use_bias=(True, True, False) if fewer_norm else False,
                  norm=(None, None, norm) if fewer_norm else norm,
                  act_func=(act_func, act_func, None))


class EfficientViTBackbone(nn.Module):
    """``input_stem`` and four ``stages``; ``forward`` returns the official feature dict
    (``input``, ``stage0`` .. ``stage4``, ``stage_final``)."""

    def __init__(self, width_list: Sequence[int], depth_list: Sequence[int],
                 in_channels: int = 3, dim: int = 32, expand_ratio: float = 4,
                 norm: str = "bn2d", act_func: str = "hswish"):
        super().__init__()
        if len(width_list) != 5 or len(depth_list) != 5:
            raise ValueError("width_list and depth_list need 5 entries each")
        self.width_list = []
        stem = [ConvLayer(in_channels, width_list[0], stride=2, norm=norm, act_func=act_func)]
        for _ in range(depth_list[0]):
            block = _local_block(width_list[0], width_list[0], 1, 1, norm, act_func)
            stem.append(ResidualBlock(block, IdentityLayer()))
        in_channels = width_list[0]
        self.input_stem = OpSequential(stem)
        self.width_list.append(in_channels)

        stages = []
        for w, d in zip(width_list[1:3], depth_list[1:3]):
            stage = []
            for i in range(d):
                stride = 2 if i == 0 else 1
                block = _local_block(in_channels, w, stride, expand_ratio, norm, act_func)
                stage.append(ResidualBlock(block, IdentityLayer() if stride == 1 else None))
                in_channels = w
            stages.append(OpSequential(stage))
            self.width_list.append(in_channels)
        for w, d in zip(width_list[3:], depth_list[3:]):
            block = _local_block(in_channels, w, 2, expand_ratio, norm, act_func,
                                 fewer_norm=True)
            stage = [ResidualBlock(block, None)]
            in_channels = w
            for _ in range(d):
                stage.append(EfficientViTBlock(in_channels, dim=dim, expand_ratio=expand_ratio,
                                               norm=norm, act_func=act_func))
            stages.append(OpSequential(stage))
            self.width_list.append(in_channels)
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"input": x}
        out["stage0"] = x = self.input_stem(x)
        for i, stage in enumerate(self.stages, 1):
            out[f"stage{i}"] = x = stage(x)
        out["stage_final"] = x
        return out


class ClsHead(OpSequential):
    """``op_list``: ConvLayer 1x1 (BN, hswish), AdaptiveAvgPool2d(1), LinearLayer (no bias,
    LayerNorm, hswish), LinearLayer (bias) -> logits. Reads ``feed_dict[fid]``."""

    def __init__(self, in_channels: int, width_list: Sequence[int], n_classes: int = 1000,
                 dropout: float = 0.0, norm: str = "bn2d", act_func: str = "hswish",
                 fid: str = "stage_final"):
        super().__init__([
            ConvLayer(in_channels, width_list[0], 1, norm=norm, act_func=act_func),
            nn.AdaptiveAvgPool2d(output_size=1),
            LinearLayer(width_list[0], width_list[1], False, norm="ln", act_func=act_func),
            LinearLayer(width_list[1], n_classes, True, dropout, None, None),
        ])
        self.fid = fid

    def forward(self, feed_dict) -> torch.Tensor:
        x = feed_dict[self.fid] if isinstance(feed_dict, dict) else feed_dict
        return OpSequential.forward(self, x)


class EfficientViTCls(nn.Module):
    """``backbone`` + ``head``: images ``(B, 3, R, R)`` -> logits ``(B, n_classes)``.

    ``variant`` (``"b0"`` ..) and ``resolution`` (the intended input size, informative only:
    the network accepts any size >= 32) are plain attributes, not part of the state_dict.
    """

    def __init__(self, backbone: EfficientViTBackbone, head: ClsHead,
                 variant: str = "", resolution: int = 224):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.variant = variant
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def set_attention_mode(self, mode: str) -> "EfficientViTCls":
        """Set ``attention_mode`` (``"auto"`` or ``"linear"``) of every LiteMLA; returns self."""
        if mode not in ("auto", "linear"):
            raise ValueError(f"attention mode must be 'auto' or 'linear', got {mode!r}")
        for m in self.modules():
            if isinstance(m, LiteMLA):
                m.attention_mode = mode
        return self


def _build(variant: str, num_classes: int, dropout: float, resolution: int) -> EfficientViTCls:
    cfg = MODEL_CONFIGS[variant]
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    backbone = EfficientViTBackbone(cfg["width"], cfg["depth"], dim=cfg["dim"])
    head = ClsHead(cfg["width"][-1], cfg["head"], n_classes=num_classes, dropout=dropout)
    return EfficientViTCls(backbone, head, variant=variant, resolution=resolution)


def efficientvit_cls_b0(num_classes: int = 1000, dropout: float = 0.0,
                        resolution: int = 224) -> EfficientViTCls:
    """EfficientViT-B0 classifier (about 3.4 M parameters)."""
    return _build("b0", num_classes, dropout, resolution)


def efficientvit_cls_b1(num_classes: int = 1000, dropout: float = 0.0,
                        resolution: int = 224) -> EfficientViTCls:
    """EfficientViT-B1 classifier (about 9.1 M parameters)."""
    return _build("b1", num_classes, dropout, resolution)


def efficientvit_cls_b2(num_classes: int = 1000, dropout: float = 0.0,
                        resolution: int = 224) -> EfficientViTCls:
    """EfficientViT-B2 classifier (about 24 M parameters)."""
    return _build("b2", num_classes, dropout, resolution)


def efficientvit_cls_b3(num_classes: int = 1000, dropout: float = 0.0,
                        resolution: int = 224) -> EfficientViTCls:
    """EfficientViT-B3 classifier (about 49 M parameters)."""
    return _build("b3", num_classes, dropout, resolution)


_NAME_RE = re.compile(r"^(?:efficientvit[-_]?)?(?:cls[-_]?)?(b[0-3])(?:[-_]r(\d+))?$")


def parse_model_name(name: str) -> tuple[str, int]:
    """``"b1-r224"`` -> ``("b1", 224)``. Accepts ``b0``..``b3`` with an optional ``-rNNN``
    (default 224) and an optional ``efficientvit-`` prefix, case-insensitive."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    m = _NAME_RE.match(name.strip().lower())
    if m is None:
        raise ValueError(f"unknown model name {name!r}: expected b0, b1, b2 or b3 with an "
                         f"optional -rRES suffix, e.g. 'b1-r224'")
    variant, res = m.group(1), int(m.group(2) or 224)
    if res < 32:
        raise ValueError(f"resolution {res} in {name!r} is too small: need at least 32 "
                         f"(the backbone downsamples by 32)")
    return variant, res


def create_model(name: str, num_classes: int = 1000,
                 dropout: float = 0.0) -> tuple[EfficientViTCls, int]:
    """Build the model named ``name`` (see :func:`parse_model_name`); returns
    ``(model, resolution)``. Weights are PyTorch's default initialisation; load a checkpoint
    with :func:`quant.checkpoint.load_checkpoint` or see :mod:`quant.bn_calib`."""
    variant, res = parse_model_name(name)
    return _build(variant, num_classes, dropout, res), res
