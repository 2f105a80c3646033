"""The constant blocks the compiler writes into the DRAM image: the pre-tiled weights of a conv
or linear node (:class:`ConvWeightLayout`; the layout itself is :mod:`sim.isa`'s) and of a
depthwise conv, the 32-byte parameter record per output channel of a conv/linear/pool node,
the one per attention head, and the float64 block of the host LayerNorm. The field order is
what the core's requant unit (``hw.core.unit``), the attention unit and :mod:`sim.funcsim`
read."""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from ..config import AccelConfig
from ..intprogram import Node
from ..isa import (conv_weight_bytes, dw_weight_bytes, engine_shape, pack_conv_weights,
                   pack_dw_weights)
from .common import align

__all__ = ["param_block", "attention_block", "layernorm_block", "ConvWeightLayout",
           "dw_weights", "weight_bytes"]


@dataclass(frozen=True)
class ConvWeightLayout:
    """Where a chunk of a conv's filters sits in buffer C: one pre-tiled block
    (:func:`sim.isa.pack_conv_weights`) per engine shape that may execute it (MAT ``S x T``,
    R-MAC ``M x N``; one block when both are the same), each aligned. Chunks, cores and
    engines split a dense conv's filters only at multiples of :func:`sim.compile.tiling.
    filter_gran` (whole blocks of either engine), a grouped conv's at whole groups."""
    cfg: AccelConfig
    cin_g: int
    k: int
    cout_g: int
    grouped: bool

    @property
    def shapes(self):
        mat, rmac = engine_shape(self.cfg, "MAT"), engine_shape(self.cfg, "RMAC")
        return [mat] if mat == rmac else [mat, rmac]

    def _bytes(self, n, lw):
        return conv_weight_bytes(cout=n, cin_g=self.cin_g, k=self.k,
                                 groups=n // self.cout_g if self.grouped else 1,
                                 lanes=lw[0], width=lw[1])

    def nbytes(self, n) -> int:
        """Bytes of a chunk of ``n`` filters (whole groups when grouped)."""
        return sum(align(self._bytes(n, lw)) for lw in self.shapes[:-1]) + \
            self._bytes(n, self.shapes[-1])

    def pack(self, w) -> np.ndarray:
        """The chunk's bytes (int8) from its weights ``(n, cin_g, k, k)``."""
        n = w.shape[0]
        out = np.zeros(self.nbytes(n), dtype=np.int8)
        off = 0
        for lw in self.shapes:
            b = pack_conv_weights(w, groups=n // self.cout_g if self.grouped else 1,
                                  lanes=lw[0], width=lw[1])
            out[off:off + b.size] = b
            off += align(b.size)
        return out

    def offset(self, unit, ca, n) -> int:
        """Offset inside a chunk of ``n`` filters of the weights of filter ``ca`` (the first of
        an instruction) for ``unit`` (MAT or RMAC)."""
        lw = engine_shape(self.cfg, unit)
        base = 0
        for s in self.shapes:
            if s == lw:
                break
            base += align(self._bytes(n, s))
        if self.grouped:
            assert ca % self.cout_g == 0, (ca, self.cout_g)
            return base + ca // self.cout_g * self._bytes(self.cout_g, lw)
        assert ca % lw[0] == 0, (ca, lw)
        return base + ca // lw[0] * self._bytes(lw[0], lw)


def weight_bytes(node: Node, cfg: AccelConfig) -> int:
    """Bytes of all of a conv / linear node's weights pre-tiled for ``cfg`` as one chunk (a
    depthwise conv: for the R-MAC's ``N``)."""
    w = np.asarray(node.params["weight"])
    if node.op == "conv" and node.kind == "depthwise":
        return dw_weight_bytes(w.shape[0], w.shape[-1], cfg.N)
    w = w.reshape(w.shape[0], w.shape[1], *(w.shape[2:] or (1, 1)))
    g = int(node.attrs.get("groups", 1))
    return ConvWeightLayout(cfg, w.shape[1], w.shape[-1], w.shape[0] // g, g > 1).nbytes(w.shape[0])


def dw_weights(w, n) -> np.ndarray:
    """A depthwise conv's weights ``(C, 1, k, k)`` pre-tiled for an R-MAC of ``n`` R-MACs
    per lane (:func:`sim.isa.pack_dw_weights`; ``sim.isa.dw_weight_bytes`` bytes)."""
    b = pack_dw_weights(w, n=n)
    assert b.size == dw_weight_bytes(w.shape[0], w.shape[-1], n)
    return b

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
