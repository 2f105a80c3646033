"""Layout and allocation pass: where every tensor and every constant block lives in DRAM.

Every tensor lives in DRAM channel-major ``(C, H, W)``, one byte per element (int8 or uint8 as
the tensor's signedness says; 32-bit tensors, the logits, take 4 bytes). Concat outputs are
allocated once and their inputs are *aliases* into channel slices of it (channel-major layout
makes a channel concat contiguous), so a concat costs nothing. Blocks are allocated in order,
each aligned to :data:`~sim.compile.common.ALIGN` bytes, and never overlap.
"""

from __future__ import annotations

import numpy as np

from ..intprogram import IntProgram
from .common import CompileError, align, elem_bytes, shape3

__all__ = ["DramImage", "TensorLayout", "layout_tensors"]


class DramImage:
    """The DRAM image under construction: a bump allocator of aligned blocks, the symbol table
    (name -> addr, nbytes, kind and metadata) and the constant contents (weights, records)."""

    def __init__(self):
        self.blocks = []          # (addr, uint8 bytes)
        self.symbols = {}
        self.size = 0

    def alloc(self, name, nbytes, kind, data=None, **meta):
        """Allocate ``nbytes`` as symbol ``name``; ``data`` (any array of exactly ``nbytes``
        bytes) is its initial content. Returns the address."""
        addr = align(self.size)
        self.size = addr + nbytes
        if self.size >= 1 << 32:
            raise CompileError("DRAM image exceeds the 32-bit address space")
        self.symbols[name] = dict(addr=addr, nbytes=int(nbytes), kind=kind, **meta)
        if data is not None:
            b = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            assert b.size == nbytes, (name, b.size, nbytes)
            self.blocks.append((addr, b))
        return addr

    def image(self) -> np.ndarray:
        """The uint8 DRAM image: zeros (tensors) with the constant blocks written in."""
        dram = np.zeros(align(self.size), dtype=np.uint8)
        for addr, b in self.blocks:
            dram[addr:addr + b.size] = b
        return dram


class TensorLayout:
    """The tensors' DRAM placement: :meth:`addr` of a tensor, and :meth:`base_of`, the tensor
    that really holds it (a concat input is a channel slice of the concat's output)."""

    def __init__(self, image: DramImage, alias: dict):
        self.image = image
        self.alias = alias        # tensor -> (base tensor, channel offset)

    def addr(self, name) -> int:
        return self.image.symbols[f"tensor:{name}"]["addr"]

    def base_of(self, name):
        """``(base tensor, channel offset)`` of ``name`` (itself at 0 unless an alias)."""
        return self.alias.get(name, (name, 0))


def concat_aliases(prog: IntProgram) -> dict:
    """``{tensor: (base, channel offset)}``: each concat input is a slice of the concat output
    (nested concats resolve to the outermost one)."""
    alias = {}
    for n in reversed(prog.nodes):
        if n.op == "concat":
            base, off0 = alias.get(n.output, (n.output, 0))
            off = off0
            for t in n.inputs:
                if t in alias or t in prog.inputs:
                    raise CompileError(f"tensor {t!r} is concatenated twice or is a graph"
                                       " input; not supported")
                alias[t] = (base, off)
                off += prog.tensors[t].shape[0]
    return alias


def layout_tensors(prog: IntProgram, image: DramImage) -> TensorLayout:
    """Allocate every tensor of ``prog`` in ``image`` (aliases inside their base tensor)."""
    alias = concat_aliases(prog)
    for name, t in prog.tensors.items():
        if name in alias:
            continue
        c, h, w = shape3(t.shape)
        image.alloc(f"tensor:{name}", c * h * w * elem_bytes(t), "tensor",
                    shape=list(t.shape), signed=bool(t.signed), bits=t.bits)
    for name, (base, off) in alias.items():
        t, bt = prog.tensors[name], prog.tensors[base]
        c, h, w = shape3(bt.shape)
        b = image.symbols[f"tensor:{base}"]
        image.symbols[f"tensor:{name}"] = dict(
            addr=b["addr"] + off * h * w * elem_bytes(bt), nbytes=int(np.prod(t.shape)),
            kind="alias", base=base, channel_offset=off, shape=list(t.shape),
            signed=bool(t.signed), bits=t.bits)
    return TensorLayout(image, alias)
