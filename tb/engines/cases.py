"""Test cases of the compute engines, shared by the pytest wrappers and the cocotb modules.

A case is a JSON-serialisable dict (it travels to the cocotb side in ``TRIO_TB_PARAMS``)::

    {"engine": "rmac_engine", "lanes": 4, "macs_per_lane": 3, "max_kernel": 5,
     "kind": "dw", "k": 3, "stride": 2, "pad": 1, "C": 4, "H": 7, "W": 9, "seed": 5}

``engine``: ``rmac_engine`` or ``mat_engine`` (+ its constructor parameters); ``kind``:
``conv`` (generic/pointwise/grouped: ``Co, C, H, W, k, stride, pad, groups``), ``matmul``
(``P, R, Q``) or ``dw`` (R-MAC engine only: ``C, H, W, k, stride, pad``); ``"u8": true``
draws uint8 activations (the engines' 9-bit input ports). :func:`build` turns it
into the engine, the random int8 operands (``numpy`` generator seeded with ``seed``), the
schedule and the expected output from :mod:`sim.golden` (``conv_acc``) or an int64 matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.golden import conv_acc

from .schedule import Schedule, conv_schedule, dw_schedule, matmul_schedule

__all__ = ["Case", "build", "make_engine", "ENGINE_KEYS"]

ENGINE_KEYS = {
    "rmac_engine": ("lanes", "macs_per_lane", "max_kernel", "acc_width", "packed"),
    "mat_engine": ("lanes", "multipliers", "acc_width", "register_every", "packed"),
}


@dataclass
class Case:
    """Everything a driver needs: schedule, expected output and the output ports to watch."""

    schedule: Schedule
    expected: np.ndarray
    valid_port: str
    data_port: str
    width: int
    count: int
    idle: dict


def make_engine(p: dict):
    """The Amaranth component of case ``p``."""
    from hw.engines import MATEngine, RMACEngine
    cls = {"rmac_engine": RMACEngine, "mat_engine": MATEngine}[p["engine"]]
    return cls(**{k: p[k] for k in ENGINE_KEYS[p["engine"]] if k in p})


def _geometry(p: dict):
    """Engine latency etc. without building Amaranth objects (the cocotb side has no Amaranth
    component at hand): computed from the parameters exactly as the engines document it."""
    acc = p.get("acc_width", 32)
    if p["engine"] == "rmac_engine":
        M, N = p["lanes"], p["macs_per_lane"]
        P = 2 if p.get("packed") else 0      # PackedDualMultiplier.latency
        return dict(vec=N, lanes=M, acc=acc, df_latency=N + 1 + P, dw_latency=1 + P,
                    row_len=M + p.get("max_kernel", 5) - 1)
    T, S = p["multipliers"], p["lanes"]
    reg = p.get("register_every", 1)
    levels = (T - 1).bit_length()
    tree = 0 if reg == 0 else -(-levels // reg)
    P = 2 if p.get("packed") else 1
    return dict(vec=T, lanes=S, acc=acc, df_latency=P + 1 + tree)


def build(p: dict) -> Case:
    """Operands, schedule and expected output of case ``p`` (see the module docstring)."""
    g = _geometry(p)
    rng = np.random.default_rng(p.get("seed", 1))
    rmac = p["engine"] == "rmac_engine"
    ports = dict(x_port="df_x", w_port="df_w", extra={"mode": 0}) if rmac else \
        dict(x_port="x", w_port="w")
    kind = p["kind"]

    def rnd(*shape):
        if p.get("extreme"):
            return np.full(shape, -128, dtype=np.int64)
        return rng.integers(-128, 128, size=shape, dtype=np.int64)

    def act(*shape):
        """Activations: int8, or uint8 with ``"u8": true`` (the engines' 9-bit input ports)."""
        if p.get("u8") and not p.get("extreme"):
            return rng.integers(0, 256, size=shape, dtype=np.int64)
        return rnd(*shape)

    if kind == "conv":
        groups = p.get("groups", 1)
        x = act(p["C"], p["H"], p["W"])
        w = rnd(p["Co"], p["C"] // groups, p["k"], p["k"])
        sched = conv_schedule(x, w, stride=p.get("stride", 1), pad=p.get("pad", 0),
                              groups=groups, vec=g["vec"], lanes=g["lanes"],
                              latency=g["df_latency"], **ports)
        expected = conv_acc(x, w, stride=p.get("stride", 1), padding=p.get("pad", 0),
                            groups=groups)
    elif kind == "matmul":
        a, b = act(p["P"], p["R"]), rnd(p["R"], p["Q"])
        sched = matmul_schedule(a, b, vec=g["vec"], lanes=g["lanes"], latency=g["df_latency"],
                                **ports)
        expected = a @ b          # int64: exact for these sizes
    elif kind == "dw":
        if not rmac:
            raise ValueError("depthwise runs on the R-MAC engine only")
        x, w = act(p["C"], p["H"], p["W"]), rnd(p["C"], p["k"], p["k"])
        sched = dw_schedule(x, w, stride=p["stride"], pad=p["pad"], lanes=g["lanes"],
                            macs_per_lane=g["vec"], row_len=g["row_len"],
                            latency=g["dw_latency"])
        expected = conv_acc(x, w[:, None], stride=p["stride"], padding=p["pad"],
                            groups=p["C"])
        return Case(sched, expected, "pixel_valid", "pixel_out", g["acc"],
                    g["lanes"] * g["vec"], {"mode": 1})
    else:
        raise ValueError(f"unknown case kind {kind!r}")
    if rmac:
        return Case(sched, expected, "lane_valid", "lane_out", g["acc"], g["lanes"], {"mode": 0})
    return Case(sched, expected, "out_valid", "out", g["acc"], g["lanes"], {})
