"""Experiment (a) of issue #3: the three Trio-ViT techniques on tensors with injected statistics.

No pretrained weights exist on this machine, so the mechanisms are shown on activations whose
statistics are injected at the magnitudes the paper reports (Sec. IV-A):

* **DW inputs** (inter-channel variation): 64 channels of Hardswish outputs whose per-channel
  ranges are log-normally spread so that, under one per-tensor 8-bit scale, about 90 % of the
  values fall into about 2.3 % of the quantization bins (the paper's "90 % of values in 2.3 %
  of bins"); the measured percentage is reported. Error: SQNR of a 3x3 depthwise conv's output
  (W8 filter-wise) with per-tensor A8 vs channel-wise migration (Eq. 6-8).
* **PW2 inputs** (inter-channel asymmetry): channels that each occupy a narrow interval at a
  different offset, so that the whole tensor's range is ~8.6x one channel's (paper: (2.66,
  3.11) vs (-0.38, 3.49)); the measured ratio is reported. Error: SQNR of a pointwise conv's
  output with per-tensor A8 vs filter-wise shifting (Eq. 9-10, midpoint).
* **Divisors** spanning 0.01 .. 1e3 (log-uniform): ``y = num / den``. Error of ``y`` with the
  divisor quantized uniformly to 8 bits (small divisors round to 0: division by zero -> inf/NaN,
  the paper's NaN) vs 4-bit log2 (Eq. 11, via :func:`quant.transforms.log2_quantize_torch`,
  bit-exact with :mod:`sim.numerics`).

Every SQNR is in dB; a non-finite result is reported as ``NaN`` with its reason, never as a
number.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .quantizers import fake_quant, weight_scale
from .transforms import (log2_offset, log2_quantize_torch, migration_factors, shift_bias,
                         shift_centers, uniform_divisor_quant)

__all__ = ["run_synthetic", "sqnr", "bins_for_90pct"]


def sqnr(ref: torch.Tensor, test: torch.Tensor) -> dict:
    """``{"sqnr_db": float or None, "nan_reason": str or None}`` (None in JSON = NaN)."""
    ref, test = ref.double(), test.double()
    bad = (~torch.isfinite(test)).sum().item()
    if bad:
        return {"sqnr_db": float("nan"), "nan_reason": f"{bad} of {test.numel()} outputs are "
                "inf/NaN (division by a divisor quantized to 0)"}
    err = float(((ref - test) ** 2).sum())
    return {"sqnr_db": (float("inf") if err == 0 else
                        10 * math.log10(float((ref ** 2).sum()) / err)), "nan_reason": None}


def bins_for_90pct(x: torch.Tensor, scale, bits: int = 8, axis: int = 1) -> float:
    """Percentage of the 2**bits bins that hold the most-populated 90 % of the values."""
    from .quantizers import quantize_int
    q = quantize_int(x, scale, bits, True, axis=axis).flatten().long() + (1 << (bits - 1))
    counts = torch.bincount(q, minlength=1 << bits).double().sort(descending=True).values
    k = int(torch.searchsorted(counts.cumsum(0), 0.9 * counts.sum()).item()) + 1
    return 100.0 * k / (1 << bits)


def _dw_case(gen, spread):
    c = 64
    f = torch.exp(torch.randn(c, generator=gen, dtype=torch.float64) * spread)
    a = F.hardswish(torch.randn(8, c, 14, 14, generator=gen, dtype=torch.float64) * 2.0
                    * f.reshape(1, c, 1, 1))
    w = torch.randn(c, 1, 3, 3, generator=gen, dtype=torch.float64) / 3
    ref = F.conv2d(a, w, None, 1, 1, groups=c)
    wq = fake_quant(w, weight_scale(w), 8, True, axis=0, ste=False)
    amax = a.abs().amax()
    s = float(amax) / 127
    van = F.conv2d(fake_quant(a, s, 8, True, ste=False), wq, None, 1, 1, groups=c)
    m = migration_factors(a.abs().amax(dim=(0, 2, 3)))
    s_m = float((a / m.reshape(1, c, 1, 1)).abs().amax()) / 127
    mig = F.conv2d(fake_quant(a, s_m * m, 8, True, axis=1, ste=False), wq, None, 1, 1, groups=c)
    return dict(bins90_vanilla_pct=bins_for_90pct(a, s), bins90_migrated_pct=bins_for_90pct(a, s_m * m),
                vanilla=sqnr(ref, van), trio=sqnr(ref, mig),
                input_vanilla=sqnr(a, fake_quant(a, s, 8, True, ste=False)),
                input_trio=sqnr(a, fake_quant(a, s_m * m, 8, True, axis=1, ste=False)))


def _pw2_case(gen):
    c, co = 64, 64
    centers = torch.rand(c, generator=gen, dtype=torch.float64) * 3.4 - 0.15
    half = 0.225 * (0.5 + torch.rand(c, generator=gen, dtype=torch.float64))
    a = centers.reshape(1, c, 1, 1) + half.reshape(1, c, 1, 1) * (
        2 * torch.rand(8, c, 14, 14, generator=gen, dtype=torch.float64) - 1)
    w = torch.randn(co, c, 1, 1, generator=gen, dtype=torch.float64) / 8
    b = torch.randn(co, generator=gen, dtype=torch.float64) * 0.1
    ref = F.conv2d(a, w, b)
    wq = fake_quant(w, weight_scale(w), 8, True, axis=0, ste=False)
    s = float(a.abs().amax()) / 127
    van = F.conv2d(fake_quant(a, s, 8, True, ste=False), wq, b)
    lo, hi = a.amin(dim=(0, 2, 3)), a.amax(dim=(0, 2, 3))
    cen = shift_centers(lo, hi)
    sh = a - cen.reshape(1, c, 1, 1)
    s2 = float(sh.abs().amax()) / 127
    a_sh = fake_quant(sh, s2, 8, True, ste=False)
    trio = F.conv2d(a_sh, wq, shift_bias(wq, b, cen))
    ratio = float((hi.max() - lo.min()) / (hi[0] - lo[0]))
    return dict(range_ratio_all_vs_channel0=ratio, vanilla=sqnr(ref, van), trio=sqnr(ref, trio),
                input_vanilla=sqnr(a, fake_quant(a, s, 8, True, ste=False)),
                input_trio=sqnr(a, a_sh + cen.reshape(1, c, 1, 1)))


def _divisor_case(gen):
    n = 4096
    den = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(math.log(0.01), math.log(1e3),
                                                                generator=gen))
    num = den * (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * 3
    ref = num / den
    s_u = float(den.max()) / 255
    du = uniform_divisor_quant(den, s_u, 8)
    with torch.no_grad():
        uni = num / du
    # log2: the divisor as an integer X_Q at scale S (16-bit accumulator range), Eq. 11
    S = float(den.max()) / (1 << 20)
    xq = torch.floor(den / S + 0.5)
    off = log2_offset(S)
    top = off + 21
    e = log2_quantize_torch(xq, offset=off, emin=top - 15)
    lg = num / torch.exp2(e.double())
    zero = int((du == 0).sum())
    return dict(n=n, range=[float(den.min()), float(den.max())], uniform_zero_divisors=zero,
                uniform8=sqnr(ref, uni), log2_4bit=sqnr(ref, lg),
                log2_exponent_range=[int(e.min()), int(e.max())])


def run_synthetic(seed: int = 0) -> dict:
    """All three cases; deterministic for ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return {"dw_input_migration": _dw_case(gen, spread=0.9),
            "pw2_input_shifting": _pw2_case(gen),
            "attention_divisor": _divisor_case(gen)}


def format_synthetic(r: dict) -> str:
    def f(d):
        return "NaN (" + d["nan_reason"] + ")" if d["nan_reason"] else f"{d['sqnr_db']:.2f} dB"
    dw, pw, dv = r["dw_input_migration"], r["pw2_input_shifting"], r["attention_divisor"]
    return "\n".join([
        "(a) injected statistics, SQNR of the layer output vs float (8-bit)",
        f"  DW input, inter-channel variation: 90% of values in {dw['bins90_vanilla_pct']:.1f}% of"
        f" bins (per tensor) / {dw['bins90_migrated_pct']:.1f}% (migrated)",
        f"    vanilla per-tensor A8 : input {f(dw['input_vanilla'])}, DW output {f(dw['vanilla'])}",
        f"    channel-wise migration: input {f(dw['input_trio'])}, DW output {f(dw['trio'])}",
        f"  PW2 input, inter-channel asymmetry: whole range {pw['range_ratio_all_vs_channel0']:.2f}x"
        " channel 0's",
        f"    vanilla per-tensor A8 : input {f(pw['input_vanilla'])}, PW output {f(pw['vanilla'])}",
        f"    filter-wise shifting  : input {f(pw['input_trio'])}, PW output {f(pw['trio'])}",
        f"  divisors {dv['range'][0]:.3g} .. {dv['range'][1]:.3g} (log-uniform, n={dv['n']})",
        f"    uniform 8-bit divisor : {f(dv['uniform8'])}",
        f"    log2 4-bit divisor    : {f(dv['log2_4bit'])}",
    ])
