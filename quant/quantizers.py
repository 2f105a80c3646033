"""Fake quantizers (torch) for the Trio-ViT PTQ engine.

Conventions (the same as :mod:`sim.numerics`, so that the fake-quant model and the integer model
round identically):

* rounding is *round half up* (``floor(x + 1/2)``), the rule of ``numerics.rshift_round``;
* a signed ``b``-bit code lies in ``[-2**(b-1), 2**(b-1) - 1]``, an unsigned one in
  ``[0, 2**b - 1]`` (activations that are provably non-negative, e.g. after ReLU);
* symmetric quantization (paper Eq. 5): ``x_q = clip(round(x / s), qmin, qmax)``,
  ``x_hat = s * x_q``; weights get one scale per output filter, activations one per tensor
  (or per channel after channel-wise migration, see :mod:`quant.transforms`).

The learnable pieces used by block reconstruction (BRECQ-style) live here too:
:class:`LSQActQuantizer` (Learned Step size Quantization, Esser et al. 2020) and
:class:`AdaRoundWeightQuantizer` (Nagel et al. 2020).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "qrange", "round_half_up", "round_ste", "fake_quant", "quantize_int",
    "weight_scale", "WeightQuantizer", "LSQActQuantizer", "AdaRoundWeightQuantizer",
    "FixedWeightQuantizer",
]


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """The integer code range of a ``bits``-wide signed or unsigned number."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in [1, 32], got {bits}")
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 1/2)``: the rounding of ``sim.numerics.rshift_round`` (2.5 -> 3, -2.5 -> -2)."""
    return torch.floor(x + 0.5)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return round_half_up(x)

    @staticmethod
    def backward(ctx, g):
        return g


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half up with a straight-through gradient."""
    return _RoundSTE.apply(x)


def _bshape(scale: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Reshape a per-channel ``scale`` (C,) to broadcast over ``x`` on ``axis``."""
    if scale.dim() == 0 or scale.numel() == 1:
        return scale.reshape(())
    shape = [1] * x.dim()
    shape[axis] = scale.numel()
    return scale.reshape(shape)


def quantize_int(x: torch.Tensor, scale, bits: int = 8, signed: bool = True, axis: int = 1,
                 offset=None) -> torch.Tensor:
    """Integer codes ``clip(round(x / s) - offset, qmin, qmax)`` (as a float tensor of integers).

    ``scale``: scalar or per-channel on ``axis``; ``offset``: optional per-channel integer shift
    (filter-wise shifting, the stored code is relative to the channel's midpoint).
    """
    lo, hi = qrange(bits, signed)
    s = _bshape(torch.as_tensor(scale, dtype=x.dtype, device=x.device), x, axis)
    q = round_half_up(x / s)
    if offset is not None:
        q = q - _bshape(torch.as_tensor(offset, dtype=x.dtype, device=x.device), x, axis)
    return q.clamp(lo, hi)


def fake_quant(x: torch.Tensor, scale, bits: int = 8, signed: bool = True, axis: int = 1,
               offset=None, ste: bool = True) -> torch.Tensor:
    """Quantize-dequantize: ``s * (clip(round(x / s) - o, qmin, qmax) + o)``.

    With ``ste`` the rounding passes gradients straight through (to ``x``; and to ``scale``
    through the LSQ formula when ``scale`` requires grad). ``offset`` (``o``, integer codes per
    channel) implements filter-wise shifting: the channel is quantized around ``s * o``. A
    constant ``offset`` gets no gradient, i.e. the centre ``s * o`` scales with ``s``; for a
    fixed real centre ``c`` pass ``o = round(c / s)`` with its straight-through gradient, as
    :class:`LSQActQuantizer` does.
    """
    lo, hi = qrange(bits, signed)
    s = _bshape(torch.as_tensor(scale, dtype=x.dtype, device=x.device), x, axis)
    o = 0.0 if offset is None else _bshape(torch.as_tensor(offset, dtype=x.dtype, device=x.device),
                                           x, axis)
    r = round_ste if ste else round_half_up
    q = torch.clamp(r(x / s) - o, lo, hi)
    return s * (q + o)


def weight_scale(w: torch.Tensor, bits: int = 8, *, channel_wise: bool = True) -> torch.Tensor:
    """Symmetric max-abs scale: one per output filter (dim 0) when ``channel_wise``, else one.

    ``s = max|w| / qmax`` with ``qmax = 2**(bits-1) - 1``; an all-zero filter gets ``s = 1``
    (its codes are 0 whatever the scale).
    """
    qmax = qrange(bits, True)[1]
    if channel_wise:
        m = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
    else:
        m = w.detach().abs().amax().reshape(())
    return torch.where(m > 0, m / qmax, torch.ones_like(m))


class WeightQuantizer(nn.Module):
    """Filter-wise (or per-tensor) symmetric round-to-nearest weight quantizer."""

    def __init__(self, weight: torch.Tensor, bits: int = 8, channel_wise: bool = True):
        super().__init__()
        self.bits, self.channel_wise = bits, channel_wise
        self.register_buffer("scale", weight_scale(weight, bits, channel_wise=channel_wise))

    def int_weight(self, w: torch.Tensor) -> torch.Tensor:
        return quantize_int(w, self.scale, self.bits, True, axis=0)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant(w, self.scale, self.bits, True, axis=0)


class AdaRoundWeightQuantizer(nn.Module):
    """AdaRound: learn, per weight, whether to round down or up (Nagel et al., ICML 2020).

    ``w_hat = s * clip(floor(w / s) + h(V), qmin, qmax)`` with the rectified sigmoid
    ``h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)``, ``zeta = 1.1, gamma = -0.1``;
    ``V`` starts where ``h(V)`` equals the fractional part of ``w / s`` (so the initial soft
    weight is the float weight inside the clip range). The regulariser
    ``sum(1 - |2 h(V) - 1|**beta)`` pushes every ``h`` to 0 or 1; :meth:`hard` fixes them.
    """

    zeta, gamma = 1.1, -0.1

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bits: int = 8):
        super().__init__()
        self.bits = bits
        self.register_buffer("scale", scale.detach().clone())
        s = _bshape(self.scale, weight, 0)
        x = weight.detach() / s
        self.register_buffer("w_floor", torch.floor(x))
        rest = (x - torch.floor(x)).clamp(1e-4, 1 - 1e-4)
        # invert h: sigmoid(V) = (rest - gamma) / (zeta - gamma)
        p = (rest - self.gamma) / (self.zeta - self.gamma)
        self.alpha = nn.Parameter(torch.log(p / (1 - p)))
        self.soft = True

    def h(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.alpha) * (self.zeta - self.gamma) + self.gamma, 0, 1)

    def int_weight(self, w: torch.Tensor | None = None) -> torch.Tensor:
        lo, hi = qrange(self.bits, True)
        up = self.h() if self.soft else (self.alpha >= 0).to(self.w_floor.dtype)
        return torch.clamp(self.w_floor + up, lo, hi)

    def hard_int_weight(self) -> torch.Tensor:
        """The integer codes of the hard decisions (``h >= 1/2``, i.e. ``V >= 0``), also while
        soft: what the deployed model would use if rounding were frozen now."""
        lo, hi = qrange(self.bits, True)
        return torch.clamp(self.w_floor + (self.alpha.detach() >= 0).to(self.w_floor.dtype), lo, hi)

    def forward(self, w: torch.Tensor | None = None) -> torch.Tensor:
        return _bshape(self.scale, self.w_floor, 0) * self.int_weight()

    def regularizer(self, beta: float) -> torch.Tensor:
        return (1 - (2 * self.h() - 1).abs().pow(beta)).sum()

    def hard(self):
        """Freeze to hard rounding decisions (``h in {0, 1}``)."""
        self.soft = False
        return self


class LSQActQuantizer(nn.Module):
    """Learned Step size Quantization of an activation (Esser et al., ICLR 2020).

    ``x_hat = s * (clip(round(x / s) - o, qmin, qmax) + o)`` with a learnable positive step
    ``s`` (one per tensor) times an optional fixed per-channel factor ``m`` (the channel-wise
    migration factors, Eq. 7: the fused scale is ``s * m_i``) and an optional fixed per-channel
    centre ``c`` (the filter-wise shift, Eq. 9), whose integer offset is ``o = round(c / s)``
    (recomputed from the current step). The gradient of ``s`` is scaled by
    ``1 / sqrt(numel * qmax)`` as in the LSQ paper.

    **Step gradient** (straight-through, every ``round`` has derivative 1; ``b`` is ``qmin`` or
    ``qmax``, ``s`` the effective step of the element's channel). With ``o = round(c / s)``:

    * inside the range (``qmin <= round(x/s) - o <= qmax``): ``q = s * round(x/s)`` (``o``
      cancels), so ``dq/ds = round(x/s) - x/s``: the LSQ gradient of Esser et al., offset or not;
    * clamped: ``q = s * (b + o)``, so ``dq/ds = b + o + s * do/ds = b + round(c/s) - c/s``
      (``do/ds = -c / s**2``): the clip bound ``s (b + o) ~ c + s b`` moves by ``b`` about the
      fixed centre ``c``, plus the centre's rounding residual.

    ``o`` therefore carries a straight-through gradient (:meth:`forward`). Treating it as a
    constant (as an earlier version did) gives ``b + o`` at the clamp instead: wrong by about
    ``c / s`` codes, e.g. ``qmin + o > 0`` for a channel centred above ``|qmin|`` steps, which
    pushes the step the wrong way (``tests/test_quantizers.py`` checks the formula above).
    Without a centre (``c = 0``) both are the plain LSQ gradient ``qmin``/``qmax``.
    """

    def __init__(self, scale: float, bits: int = 8, signed: bool = True, *,
                 channel_factor: torch.Tensor | None = None, center: torch.Tensor | None = None,
                 enabled: bool = True):
        super().__init__()
        self.bits, self.signed, self.enabled = bits, signed, enabled
        self.scale = nn.Parameter(torch.tensor(float(scale), dtype=torch.float32))
        self.register_buffer("channel_factor", None if channel_factor is None
                             else channel_factor.detach().float().clone())
        self.register_buffer("center", None if center is None else center.detach().float().clone())

    def effective_scale(self) -> torch.Tensor:
        s = self.scale.abs().clamp_min(1e-12)
        return s if self.channel_factor is None else s * self.channel_factor

    def offset(self) -> torch.Tensor | None:
        """The integer offsets ``round(c / s)`` of the filter-wise shift (None without shift);
        ``s`` the effective step (with a channel factor, which no shifted tensor has today)."""
        if self.center is None:
            return None
        return round_half_up(self.center / self.effective_scale().detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        lo, hi = qrange(self.bits, self.signed)
        g = 1.0 / math.sqrt(max(1, x.numel() // max(1, x.shape[0])) * max(1, hi))
        s = self.scale.abs().clamp_min(1e-12)
        s = s * g + (s - s * g).detach()  # gradient scaling, value unchanged
        if self.channel_factor is not None:
            s = s * self.channel_factor
        o = None
        if self.center is not None:
            # value round(c / s) (exactly :meth:`offset`), straight-through gradient -c / s**2
            t = self.center / s
            o = self.offset() + (t - t.detach())
        return fake_quant(x, s, self.bits, self.signed, axis=1, offset=o)


class FixedWeightQuantizer(nn.Module):
    """Frozen integer weight codes (int8 storage) and their filter-wise scale: what a hardened
    :class:`AdaRoundWeightQuantizer` becomes, so that a saved model keeps one byte per weight
    instead of AdaRound's float ``V``, floor and scale tensors."""

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, bits: int = 8):
        super().__init__()
        lo, hi = qrange(bits, True)
        if bits > 8:
            raise ValueError(f"FixedWeightQuantizer stores int8 codes, got bits={bits}")
        c = codes.detach()
        if torch.any(c != torch.round(c)) or c.min() < lo or c.max() > hi:
            raise ValueError(f"codes must be integers in [{lo}, {hi}]")
        self.bits = bits
        self.register_buffer("codes", c.to(torch.int8).clone())
        self.register_buffer("scale", scale.detach().clone())

    @classmethod
    def from_adaround(cls, q: AdaRoundWeightQuantizer) -> "FixedWeightQuantizer":
        """Harden ``q`` (its decisions ``V >= 0``) into fixed codes."""
        return cls(q.hard_int_weight(), q.scale, q.bits)

    @classmethod
    def empty(cls, shape, scale: torch.Tensor, bits: int = 8) -> "FixedWeightQuantizer":
        """A placeholder of the right shapes, to be filled by ``load_state_dict``."""
        return cls(torch.zeros(shape), scale, bits)

    def int_weight(self, w: torch.Tensor | None = None) -> torch.Tensor:
        return self.codes.to(self.scale.dtype)

    def forward(self, w: torch.Tensor | None = None) -> torch.Tensor:
        return _bshape(self.scale, self.codes, 0) * self.int_weight()
