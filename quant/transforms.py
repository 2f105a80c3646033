"""The three Trio-ViT quantization techniques (paper Sec. IV-B..D), as float transforms.

1. **Channel-wise migration** for depthwise-conv inputs (Eq. 6-8). With per-channel maxima
   ``m_i = max|A_i|`` the factors are ``M_i = m_i / mean_j(m_j)``. The DW input is divided by
   ``M_i`` and the DW filter ``i`` multiplied by ``M_i`` (exactly equivalent in float). In the
   integer graph nothing is computed at run time: the DW input is simply stored with the
   per-channel scale ``S_a * M_i`` (Eq. 7), which the producer's per-channel requant multiplier
   absorbs; and since DW weights are quantized filter-wise, ``Q(W_i M_i)`` has the same integer
   codes as ``Q(W_i)`` (only the filter scale changes by ``M_i``).
   We use ``max|A_i|`` (the paper writes ``max(A_i)``; DW inputs are Hardswish outputs whose
   minimum is >= -0.375, so the two agree except for dead channels) and clamp every factor to
   at least ``1e-3`` so that an all-zero channel does not produce a zero factor.
2. **Filter-wise shifting** for the second pointwise-conv input (Eq. 9-10): each input channel
   is centred before quantization, ``A_hat_i = A_i - c_i``, and the consumer's bias absorbs the
   shift, ``b'_j = b_j + sum_i W_ji c_i``. Eq. 9 prints ``c_i = (max - min) / 2``; a centring
   shift must be the *midpoint* ``(max + min) / 2`` (docs/decisions.md), which we use.
3. **4-bit log2 quantization of the attention divisors** (Eq. 11): the integer divisor ``X_Q``
   (scale ``S``) becomes the exponent ``e = clip(round(log2 S) + log2_round(X_Q), emin,
   emin + 15)`` with ``log2_round`` the leading-one position plus the round bit below it
   (``sim.numerics.log2_round``). :func:`log2_round_torch` is a torch port of it, tested bit for
   bit against ``sim.numerics`` (it is used inside the differentiable fake-quant model; the
   exported integer graph calls ``sim.numerics`` itself).
"""

from __future__ import annotations

import math

import torch

from sim import numerics as nx

__all__ = ["migration_factors", "migrate_depthwise", "shift_centers", "shift_bias",
           "log2_round_torch", "log2_quantize_torch", "log2_offset", "choose_emin",
           "uniform_divisor_quant"]


# --- 1. channel-wise migration -----------------------------------------------------------------

def migration_factors(ch_absmax: torch.Tensor, *, floor: float = 1e-3) -> torch.Tensor:
    """Eq. 8: ``M_i = max|A_i| / mean_j max|A_j|`` (clamped to >= ``floor``)."""
    m = ch_absmax.detach().double().abs()
    mean = m.mean()
    if not torch.isfinite(mean) or mean <= 0:
        return torch.ones_like(m)
    return (m / mean).clamp_min(floor)


def migrate_depthwise(weight: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Eq. 6: the DW filter ``i`` times ``M_i`` (weight shape ``(C, 1, k, k)``)."""
    return weight * factors.to(weight).reshape(-1, 1, 1, 1)


# --- 2. filter-wise shifting ---------------------------------------------------------------------

def shift_centers(ch_min: torch.Tensor, ch_max: torch.Tensor) -> torch.Tensor:
    """Eq. 9 with the midpoint: ``c_i = (max_i + min_i) / 2``."""
    return (ch_max.double() + ch_min.double()) / 2


def shift_bias(weight: torch.Tensor, bias: torch.Tensor | None, centers: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``b'_j = b_j + sum_i W_ji c_i`` for a pointwise (or generic, zero-free) conv
    ``weight`` of shape ``(Cout, Cin, 1, 1)``."""
    w = weight.reshape(weight.shape[0], weight.shape[1], -1).sum(-1)
    b = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device) if bias is None else bias
    return b + w @ centers.to(weight)


# --- 3. log2 divisors ------------------------------------------------------------------------

def log2_round_torch(x: torch.Tensor) -> torch.Tensor:
    """Torch port of ``sim.numerics.log2_round`` for non-negative integer tensors below 2**53.

    ``i`` = leading-one position (from ``frexp``, exact for integers in float64), result
    ``i + bit[i-1]``; 0 gives -1. Works on any float or integer dtype holding integers.
    """
    xd = x.detach().to(torch.float64)
    if torch.any(xd < 0) or torch.any(xd != torch.floor(xd)):
        raise ValueError("log2_round_torch takes non-negative integers")
    _, ex = torch.frexp(xd)                       # x = m * 2**ex, m in [0.5, 1)
    i = ex.to(torch.int64) - 1
    xi = xd.to(torch.int64)
    rb = torch.where(i >= 1, (xi >> (i - 1).clamp_min(0)) & 1, torch.zeros_like(xi))
    return torch.where(xi > 0, i + rb, torch.full_like(xi, -1))


def log2_quantize_torch(x: torch.Tensor, *, offset, emin, bits: int = nx.LOG2_CODE_BITS) -> torch.Tensor:
    """Torch port of ``sim.numerics.log2_quantize``: ``clip(offset + log2_round(x), emin,
    emin + 2**bits - 1)``, ``x = 0 -> emin``. ``offset``/``emin`` broadcast against ``x``."""
    off = torch.as_tensor(offset, dtype=torch.int64, device=x.device)
    lo = torch.as_tensor(emin, dtype=torch.int64, device=x.device)
    e = torch.where(x.detach() > 0, off + log2_round_torch(x), lo)
    e = torch.maximum(e, lo)
    return torch.minimum(e, lo + (1 << bits) - 1)


def log2_offset(scale: float) -> int:
    """The precomputed ``round(log2(S))`` of Eq. 11 (round half up, like everywhere else)."""
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"divisor scale must be positive and finite, got {scale}")
    return int(math.floor(math.log2(scale) + 0.5))


def choose_emin(e_max_seen: int, bits: int = nx.LOG2_CODE_BITS) -> int:
    """The lowest exponent of the 4-bit window: the window ``[emin, emin + 15]`` ends at the
    largest exponent seen on calibration data, so no calibration divisor is clipped from above
    (which would inflate outputs); only divisors below ``2**emin`` (relative size < 2**-15 of
    the largest) are clipped, where the dividend is tiny as well."""
    return int(e_max_seen) - (1 << bits) + 1


# --- the baseline the paper compares against: uniform 8-bit divisors -------------------------

def uniform_divisor_quant(div: torch.Tensor, scale: float, bits: int = 8) -> torch.Tensor:
    """Uniform unsigned quantization of divisors (the "Uniform (8)" column of Table V):
    ``s * clip(round(d / s), 0, 2**bits - 1)``. Small divisors round to 0, so the following
    division produces inf/NaN: the paper's NaN."""
    hi = (1 << bits) - 1
    return scale * torch.clamp(torch.floor(div / scale + 0.5), 0, hi)
