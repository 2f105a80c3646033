"""Engine cycle counts the tiling pass balances work with (and :mod:`sim.timing` charges):
the conv/matmul steps of the MAT and R-MAC in down-forward mode, and depthwise steps of the
R-MAC in self-accumulation mode."""

from __future__ import annotations

from ..config import AccelConfig
from .common import cdiv

__all__ = ["conv_cycles", "dw_cycles"]


def conv_cycles(cfg: AccelConfig, engine: str, *, K: int, nco: int, npix: int,
                groups: int = 1, k: int = 1) -> int:
    """Busy cycles of a (grouped) conv / matmul tile on one engine in down-forward mode: the
    engine takes ``lanes_in`` reduction elements and ``lanes_out`` output channels per cycle
    (MAT: T x S, R-MAC: N x M), one output pixel at a time. ``K`` is the reduction length per
    group (``Cin/g * k * k``), ``nco`` the output channels of the tile.

    A k x k kernel (``k > 1``) is reduced tap by tap (the core's im2col order, docs/hw-core.md):
    per output pixel ``k*k`` taps of ``ceil((Cin/g) / lanes_in)`` steps each, which is more than
    ``ceil(K / lanes_in)`` when ``Cin/g`` is not a multiple of ``lanes_in`` (the stem: 3
    channels, 9 steps per pixel instead of 4 at width 8)."""
    tin, sout = (cfg.T, cfg.S) if engine == "MAT" else (cfg.N, cfg.M)
    if k > 1:
        if K % (k * k):
            raise ValueError(f"K={K} is not Cin/g * {k}*{k}")
        per_pixel = k * k * cdiv(K // (k * k), tin)
    else:
        per_pixel = cdiv(K, tin)
    if groups > 1:
        return groups * per_pixel * cdiv(nco // groups, sout) * npix
    return per_pixel * cdiv(nco, sout) * npix


def dw_cycles(cfg: AccelConfig, *, nch: int, ho: int, wo: int, k: int) -> int:
    """R-MAC self-accumulation: N channels (R-MACs of a lane) x M consecutive output pixels of a
    row (the M lanes, weight broadcast) per pass; a pass takes k*k cycles (one tap per cycle,
    stride 2 by the odd/even split of the input row, same count)."""
    return cdiv(nch, cfg.N) * ho * cdiv(wo, cfg.M) * k * k
