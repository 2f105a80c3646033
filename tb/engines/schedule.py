"""Executable form of the engine schedules of docs/hw-engines.md.

Turns a layer (numpy int8 arrays) into the cycle-by-cycle inputs of the R-MAC engine or the
MAT engine, and says where each output event of the engine goes in the layer's output. Both
the ``amaranth.sim`` tests and the cocotb testbenches drive the engines from these schedules;
the expected outputs come from independent numpy loop references in the tests, never from here.

A :class:`Schedule` has

* ``steps``: one dict per input cycle, port name -> int or nested lists of ints (row-major;
  element 0 of an ``ArrayLayout`` is its least significant field);
* ``events``: for the k-th output pulse of the engine (``lane_valid``/``pixel_valid`` of the
  R-MAC engine, ``out_valid`` of the MAT engine) a list of ``(src, flat)`` pairs: flattened
  output-port element ``src`` is written to ``out.flat[flat]``;
* ``out_shape``: the shape of the layer output; ``latency``: the engine latency (cycles from the
  ``last`` input cycle to its output pulse); ``cycles``: the documented cycle count of the whole
  schedule, ``len(steps) + latency`` (first input cycle to last output pulse, inclusive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Schedule", "dot_schedule", "conv_schedule", "matmul_schedule", "dw_schedule",
    "conv_out_size", "pack", "unpack", "decode",
]


@dataclass
class Schedule:
    """Inputs per cycle and output placement of one engine run (see module docstring)."""

    steps: list[dict] = field(default_factory=list)
    events: list[list[tuple[int, int]]] = field(default_factory=list)
    out_shape: tuple[int, ...] = ()
    latency: int = 0

    @property
    def cycles(self) -> int:
        """Documented cycle count: input steps + latency."""
        return len(self.steps) + self.latency


def conv_out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * pad - kernel) // stride + 1


def pack(values, width: int) -> int:
    """Pack (nested) signed ints row-major into one unsigned int, element 0 at the LSBs."""
    flat = np.asarray(values, dtype=np.int64).ravel()
    mask = (1 << width) - 1
    out = 0
    for i, v in enumerate(flat.tolist()):
        out |= (int(v) & mask) << (i * width)
    return out


def unpack(word: int, width: int, count: int) -> list[int]:
    """Unpack ``count`` signed ``width``-bit fields from an int (element 0 at the LSBs)."""
    mask = (1 << width) - 1
    half = 1 << (width - 1)
    out = []
    for i in range(count):
        v = (int(word) >> (i * width)) & mask
        out.append(v - (1 << width) if v >= half else v)
    return out


def decode(schedule: Schedule, outputs: list[list[int]]) -> np.ndarray:
    """Place the engine's output pulses (flattened port values, in order) into the layer output."""
    if len(outputs) != len(schedule.events):
        raise ValueError(f"expected {len(schedule.events)} output pulses, got {len(outputs)}")
    out = np.zeros(schedule.out_shape, dtype=np.int64)
    flat = out.reshape(-1)
    for values, event in zip(outputs, schedule.events):
        for src, dst in event:
            flat[dst] = values[src]
    return out


def dot_schedule(X, Wt, *, vec: int, lanes: int, x_port: str = "df_x", w_port: str = "df_w",
                 out_index=None, latency: int = 0, sched: Schedule | None = None,
                 extra: dict | None = None) -> Schedule:
    """Dot products ``Y[p, q] = X[p, :] . Wt[q, :]`` on a lanes x vec engine.

    Output channels are tiled by ``lanes`` (lane m computes filter ``q0 + m``); for each tile and
    each row p the reduction is cut into ``ceil(R / vec)`` vectors of ``vec`` elements (zero
    padded), one per cycle, ``first`` on the first and ``last`` on the last. ``out_index(p, q)``
    gives the flat output index (default ``p * Q + q``). Appends to ``sched`` when given.
    """
    X = np.asarray(X, dtype=np.int64)
    Wt = np.asarray(Wt, dtype=np.int64)
    P, R = X.shape
    Q, R2 = Wt.shape
    if R != R2:
        raise ValueError(f"reduction lengths differ: {R} vs {R2}")
    if out_index is None:
        out_index = lambda p, q: p * Q + q  # noqa: E731
    if sched is None:
        sched = Schedule(out_shape=(P, Q), latency=latency)
    chunks = math.ceil(R / vec)
    Rp = chunks * vec
    Xp = np.zeros((P, Rp), dtype=np.int64)
    Xp[:, :R] = X
    for q0 in range(0, Q, lanes):
        Wtile = np.zeros((lanes, Rp), dtype=np.int64)
        nq = min(lanes, Q - q0)
        Wtile[:nq, :R] = Wt[q0:q0 + nq]
        for p in range(P):
            for c in range(chunks):
                sl = slice(c * vec, (c + 1) * vec)
                step = {"valid": 1, "first": int(c == 0), "last": int(c == chunks - 1),
                        x_port: Xp[p, sl].tolist(), w_port: Wtile[:, sl].tolist()}
                if extra:
                    step.update(extra)
                sched.steps.append(step)
            sched.events.append([(m, out_index(p, q0 + m)) for m in range(nq)])
    return sched


def _im2col(x, k: int, stride: int, pad: int):
    """``x[C, H, W]`` -> ``cols[Ho*Wo, C*k*k]`` (reduction order: channel, ky, kx)."""
    C, H, W = x.shape
    Ho, Wo = conv_out_size(H, k, stride, pad), conv_out_size(W, k, stride, pad)
    xp = np.zeros((C, H + 2 * pad, W + 2 * pad), dtype=np.int64)
    xp[:, pad:pad + H, pad:pad + W] = x
    cols = np.zeros((Ho * Wo, C * k * k), dtype=np.int64)
    for oy in range(Ho):
        for ox in range(Wo):
            win = xp[:, oy * stride:oy * stride + k, ox * stride:ox * stride + k]
            cols[oy * Wo + ox] = win.reshape(-1)
    return cols, Ho, Wo


def conv_schedule(x, w, *, stride: int = 1, pad: int = 0, groups: int = 1, vec: int,
                  lanes: int, latency: int = 0, x_port: str = "df_x", w_port: str = "df_w",
                  extra: dict | None = None) -> Schedule:
    """A (grouped) convolution ``x[C, H, W] * w[Co, C/groups, k, k]`` as dot products.

    Each group is lowered separately (im2col of its input channels), so a lane tile never
    mixes groups; the output is ``[Co, Ho, Wo]``.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    C, H, W = x.shape
    Co, Cig, k, k2 = w.shape
    if k != k2 or C != Cig * groups or Co % groups:
        raise ValueError("inconsistent conv shapes/groups")
    Cog = Co // groups
    Ho, Wo = conv_out_size(H, k, stride, pad), conv_out_size(W, k, stride, pad)
    sched = Schedule(out_shape=(Co, Ho, Wo), latency=latency)
    for g in range(groups):
        cols, _, _ = _im2col(x[g * Cig:(g + 1) * Cig], k, stride, pad)
        Wt = w[g * Cog:(g + 1) * Cog].reshape(Cog, -1)
        dot_schedule(cols, Wt, vec=vec, lanes=lanes, x_port=x_port, w_port=w_port,
                     out_index=lambda p, q, g=g: (g * Cog + q) * Ho * Wo + p, sched=sched,
                     extra=extra)
    return sched


def matmul_schedule(A, B, *, vec: int, lanes: int, latency: int = 0, x_port: str = "df_x",
                    w_port: str = "df_w", extra: dict | None = None) -> Schedule:
    """``A[P, R] @ B[R, Q]``: rows of A are the input vectors, columns of B the lane filters."""
    B = np.asarray(B, dtype=np.int64)
    return dot_schedule(A, B.T, vec=vec, lanes=lanes, x_port=x_port, w_port=w_port,
                        latency=latency, extra=extra)


def dw_schedule(x, w, *, stride: int, pad: int, lanes: int, macs_per_lane: int, row_len: int,
                latency: int = 1) -> Schedule:
    """Depthwise conv ``x[C, H, W]`` with ``w[C, k, k]`` on the R-MAC engine, self-accumulation.

    Tiles: N channels x one output row x M consecutive output columns; K*K cycles per tile.
    Per kernel row ky: stride 1 loads padded input columns ``ox0 + i`` and applies kernel
    columns 0..K-1 while shifting; stride 2 loads the even columns ``2*ox0 + 2i`` and applies
    the even kernel columns, then the odd columns ``2*ox0 + 1 + 2i`` with the odd kernel columns.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    C, H, W = x.shape
    Cw, k, k2 = w.shape
    if Cw != C or k != k2:
        raise ValueError("inconsistent depthwise shapes")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    need = lanes + (k - 1 if stride == 1 else (k + 1) // 2 - 1)
    if need > row_len:
        raise ValueError(f"kernel {k} at stride {stride} needs a row of {need} > {row_len}")
    N, M = macs_per_lane, lanes
    Ho, Wo = conv_out_size(H, k, stride, pad), conv_out_size(W, k, stride, pad)
    Hp, Wp = H + 2 * pad, W + 2 * pad
    xp = np.zeros((C, Hp, Wp), dtype=np.int64)
    xp[:, pad:pad + H, pad:pad + W] = x
    sched = Schedule(out_shape=(C, Ho, Wo), latency=latency)
    zeros_row = [[0] * row_len for _ in range(N)]
    for c0 in range(0, C, N):
        chans = [c0 + j if c0 + j < C else None for j in range(N)]
        for oy in range(Ho):
            for ox0 in range(0, Wo, M):
                if stride == 1:
                    passes = [(ox0, 1, list(range(k)))]
                else:
                    passes = [(2 * ox0, 2, list(range(0, k, 2))),
                              (2 * ox0 + 1, 2, list(range(1, k, 2)))]
                passes = [p for p in passes if p[2]]
                for ky in range(k):
                    iy = oy * stride + ky
                    for pi, (col0, step_c, taps) in enumerate(passes):
                        cols = [col0 + step_c * i for i in range(row_len)]
                        seg = [[int(xp[c, iy, cc]) if c is not None and cc < Wp else 0
                                for cc in cols] for c in chans]
                        for e, kx in enumerate(taps):
                            sched.steps.append({
                                "mode": 1, "valid": 1, "load": int(e == 0),
                                "first": int(ky == 0 and pi == 0 and e == 0),
                                "last": int(ky == k - 1 and pi == len(passes) - 1
                                            and e == len(taps) - 1),
                                "dw_row": seg if e == 0 else zeros_row,
                                "dw_w": [int(w[c, ky, kx]) if c is not None else 0
                                         for c in chans],
                            })
                sched.events.append([
                    (j * M + m, (chans[j] * Ho + oy) * Wo + ox0 + m)
                    for j in range(N) for m in range(M)
                    if chans[j] is not None and ox0 + m < Wo])
    return sched
