"""Calibration observers: turn the activations seen on calibration images into a scale.

Every observer sees batches ``x`` of shape ``(B, C, ...)`` (channel on dim 1) through
:meth:`Observer.update`, keeps per-channel minima/maxima (needed by the Trio-ViT transforms:
migration factors, Eq. 8, and the filter-wise shift, Eq. 9), and returns a symmetric per-tensor
scale from :meth:`Observer.scale`:

``minmax``      ``s = max(|min|, |max|) / qmax`` over everything seen.
``ema``         the same, with min/max tracked as an exponential moving average over batches
                (momentum 0.9, first batch initialises), as in TensorRT/PyTorch observers.
``percentile``  ``s = P / qmax`` with ``P`` the 99.99th percentile of ``|x|`` (per batch,
                averaged over batches; a signed/unsigned range uses the same magnitude).
``omse``        the scale minimising ``||x - Q(x)||^2`` over clipping ratios
                ``alpha * max|x|``, alpha in [0.3, 1] (100 steps), on a random subsample of
                at most ``max_samples`` values (Choukroun et al. 2019, OMSE).

``asym-grid``   the authors' (BRECQ's ``UniformAffineQuantizer``, ``scale_method='mse'``)
                asymmetric initialisation: 80 candidate ranges ``[(1 - i/100) min, (1 - i/100)
                max]``, ``i = 0..79``, each with step ``(hi - lo) / (2**bits - 1)`` and zero
                point ``round(-lo / step)``; the one with the least mean ``|x - Q(x)|^2.4`` (their
                ``lp_loss(p=2.4, reduction='all')``) wins. The range's midpoint becomes a
                per-tensor ``center`` (the quantizer's offset form of a zero point), so the
                quantizer is asymmetric. A float-scale baseline: the integer graph has offsets only
                on filter-wise-shifted tensors, so a model calibrated with it does not export.

``center`` (optional, per channel): the observer then measures ``x - center`` (used after the
filter-wise shift); ``channel_factor``: it measures ``x / factor`` (after channel migration).
"""

from __future__ import annotations

import torch

from .quantizers import fake_quant, qrange

__all__ = ["Observer", "MinMaxObserver", "EMAObserver", "PercentileObserver", "OMSEObserver",
           "AsymGridObserver", "OBSERVERS", "ASYMMETRIC", "make_observer"]


class Observer:
    name = "base"

    def __init__(self, bits: int = 8, signed: bool = True, *, max_samples: int = 1 << 16,
                 seed: int = 0):
        self.bits, self.signed = bits, signed
        self.ch_min = self.ch_max = None
        self.max_samples = max_samples
        self.gen = torch.Generator().manual_seed(seed)
        self.center = None
        self.channel_factor = None
        self.count = 0

    # -- per-channel statistics of the raw tensor (always kept) --------------------------------
    def _channel_stats(self, x: torch.Tensor):
        xc = x.detach().transpose(0, 1).reshape(x.shape[1], -1)
        mn, mx = xc.amin(dim=1), xc.amax(dim=1)
        if self.ch_min is None:
            self.ch_min, self.ch_max = mn.clone(), mx.clone()
        else:
            self.ch_min = torch.minimum(self.ch_min, mn)
            self.ch_max = torch.maximum(self.ch_max, mx)

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        """The tensor as the quantizer will see it (after migration/shift)."""
        x = x.detach()
        shape = [1] * x.dim()
        shape[1] = x.shape[1]
        if self.center is not None:
            x = x - self.center.reshape(shape).to(x)
        if self.channel_factor is not None:
            x = x / self.channel_factor.reshape(shape).to(x)
        return x

    def update(self, x: torch.Tensor):
        self._channel_stats(x)
        self._update(self._view(x))
        self.count += 1

    def reset(self):
        """Forget the scale statistics (keep per-channel min/max and the transform settings)."""
        self.count = 0

    def _update(self, x):
        raise NotImplementedError

    def magnitude(self) -> float:
        raise NotImplementedError

    def scale(self) -> float:
        """The symmetric per-tensor scale ``magnitude / qmax`` (a tiny positive value if the
        tensor was all zero)."""
        if self.count == 0:
            raise RuntimeError(f"{self.name} observer saw no data")
        qmax = qrange(self.bits, self.signed)[1]
        m = float(self.magnitude())
        return max(m, 1e-8) / qmax


class MinMaxObserver(Observer):
    name = "minmax"

    def reset(self):
        super().reset()
        self.lo = self.hi = None

    def _update(self, x):
        lo, hi = float(x.min()), float(x.max())
        if self.count == 0 or getattr(self, "lo", None) is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def magnitude(self):
        return max(abs(self.lo), abs(self.hi)) if self.signed else max(self.hi, 0.0)


class EMAObserver(MinMaxObserver):
    name = "ema"
    momentum = 0.9

    def _update(self, x):
        lo, hi = float(x.min()), float(x.max())
        if self.count == 0 or getattr(self, "lo", None) is None:
            self.lo, self.hi = lo, hi
        else:
            m = self.momentum
            self.lo, self.hi = m * self.lo + (1 - m) * lo, m * self.hi + (1 - m) * hi


def _subsample(x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    flat = x.reshape(-1).float().cpu()
    if flat.numel() <= n:
        return flat
    idx = torch.randint(0, flat.numel(), (n,), generator=gen)
    return flat[idx]


class PercentileObserver(Observer):
    name = "percentile"
    percentile = 99.99

    def reset(self):
        super().reset()
        self.acc = 0.0

    def _update(self, x):
        if self.count == 0:
            self.acc = 0.0
        v = _subsample(x if self.signed else x.clamp_min(0), 1 << 22, self.gen).abs()
        k = max(1, min(v.numel(), int(round(self.percentile / 100.0 * v.numel()))))
        self.acc += float(v.kthvalue(k).values)

    def magnitude(self):
        return self.acc / self.count


class OMSEObserver(Observer):
    name = "omse"
    steps = 100

    def reset(self):
        super().reset()
        self.samples = []

    def _update(self, x):
        if self.count == 0:
            self.samples = []
        per_batch = max(1, self.max_samples // 8)
        self.samples.append(_subsample(x, per_batch, self.gen))
        if sum(s.numel() for s in self.samples) > self.max_samples:
            allv = torch.cat(self.samples)
            self.samples = [allv[torch.randperm(allv.numel(), generator=self.gen)[:self.max_samples]]]
        self._mag = None

    def magnitude(self):
        if getattr(self, "_mag", None) is not None:
            return self._mag
        v = torch.cat(self.samples).double()
        qmax = qrange(self.bits, self.signed)[1]
        top = float(v.abs().max()) if self.signed else float(v.clamp_min(0).max())
        if top <= 0:
            self._mag = 0.0
            return 0.0
        best, best_err = top, float("inf")
        for a in torch.linspace(0.3, 1.0, self.steps).tolist():
            s = a * top / qmax
            err = float(((fake_quant(v, s, self.bits, self.signed, ste=False) - v) ** 2).sum())
            if err < best_err:
                best, best_err = a * top, err
        self._mag = best
        return best


class AsymGridObserver(OMSEObserver):
    name = "asym-grid"
    steps = 80
    p = 2.4

    def reset(self):
        super().reset()
        self._res = None

    def _update(self, x):
        super()._update(x)
        self._res = None

    def _search(self):
        v = torch.cat(self.samples).double()
        lo0, hi0 = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
        qmin, qmax = qrange(self.bits, self.signed)
        levels = (1 << self.bits) - 1
        best = None
        for i in range(self.steps):
            lo, hi = lo0 * (1 - 0.01 * i), hi0 * (1 - 0.01 * i)
            step = max(hi - lo, 1e-8) / levels
            zp = float(torch.floor(torch.tensor(-lo / step) + 0.5))
            xq = (torch.clamp(torch.floor(v / step + 0.5) + zp, 0, levels) - zp) * step
            err = float((xq - v).abs().pow(self.p).mean())
            if best is None or err < best[0]:
                best = (err, step, zp)
        _, step, zp = best
        o = -zp - qmin                      # levels step * k, k in [qmin + o, qmax + o]
        return step, o * step

    def magnitude(self):
        raise RuntimeError("asym-grid is asymmetric: use scale()")

    def scale(self) -> float:
        """The step; sets :attr:`center` (per channel, all equal in the observed view) to the
        chosen range's offset, added to any transform centre already there."""
        if self.count == 0:
            raise RuntimeError(f"{self.name} observer saw no data")
        if self._res is None:
            step, c_view = self._search()
            n = self.ch_min.numel()
            c = torch.full((n,), c_view, dtype=torch.float32)
            if self.channel_factor is not None:
                c = c * self.channel_factor.float()
            self.center = c if self.center is None else self.center.float() + c
            self._res = step
        return self._res


OBSERVERS = {c.name: c for c in (MinMaxObserver, EMAObserver, PercentileObserver, OMSEObserver,
                                  AsymGridObserver)}
ASYMMETRIC = ("asym-grid",)


def make_observer(name: str, bits: int = 8, signed: bool = True, **kw) -> Observer:
    """An observer by name (``minmax``, ``ema``, ``percentile``, ``omse``)."""
    try:
        cls = OBSERVERS[name]
    except KeyError:
        raise ValueError(f"unknown observer {name!r}; choose one of {sorted(OBSERVERS)}") from None
    obs = cls(bits, signed, **kw)
    obs.reset()
    return obs
