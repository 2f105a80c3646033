"""The constant blocks the compiler writes into the DRAM image besides weights: the 32-byte
parameter record per output channel of a conv/linear/pool node, the one per attention head,
and the float64 block of the host LayerNorm. The field order is what the core's requant unit
(``hw.core.unit``), the attention unit and :mod:`sim.funcsim` read."""

from __future__ import annotations

import numpy as np

from ..intprogram import Node

__all__ = ["param_block", "attention_block", "layernorm_block"]

#: the attention head record's fields, in order (one int32 each)
ATTENTION_FIELDS = ("s_mult_b", "s_mult_c", "ksum_mult_b", "ksum_mult_c", "log2_offset",
                    "log2_emin", "out_mult_b", "out_mult_c")


def param_block(node: Node, cout) -> np.ndarray:
    """``(cout, 8)`` int32: bias, mult_b, mult_c, offset, res_b, res_c, hsw_b, hsw_c per output
    channel (zeros where the node has no such parameter)."""
    rec = np.zeros((cout, 8), dtype=np.int32)
    e = node.epilogue
    if "bias" in node.params:
        rec[:, 0] = np.asarray(node.params["bias"], dtype=np.int64)
    if e is not None:
        def bc(a):
            return np.broadcast_to(np.asarray(a, dtype=np.int64), (cout,))
        rec[:, 1], rec[:, 2], rec[:, 3] = bc(e.mult.b), bc(e.mult.c), bc(e.offset)
        if e.res_mult is not None:
            rec[:, 4], rec[:, 5] = bc(e.res_mult.b), bc(e.res_mult.c)
        if e.hswish_mult is not None:
            rec[:, 6], rec[:, 7] = bc(e.hswish_mult.b), bc(e.hswish_mult.c)
    return rec


def attention_block(node: Node) -> np.ndarray:
    """``(heads, 8)`` int32: the :data:`ATTENTION_FIELDS` of each head."""
    pr = node.params
    return np.stack([np.asarray(pr[k], dtype=np.int64) for k in ATTENTION_FIELDS],
                    axis=1).astype(np.int32)


def layernorm_block(node: Node, xt, yt) -> np.ndarray:
    """float64: eps, out_bits, out_signed, in_signed, in_bits, gamma[C], beta[C],
    in_scale[C], out_scale[C] (what the host's LayerNorm reads)."""
    hdr = np.array([float(node.attrs.get("eps", 1e-5)), yt.bits, int(yt.signed), int(xt.signed),
                    xt.bits], dtype=np.float64)
    return np.concatenate([hdr, np.asarray(node.params["gamma"], np.float64),
                           np.asarray(node.params["beta"], np.float64), xt.channel_scale(),
                           yt.channel_scale()])
