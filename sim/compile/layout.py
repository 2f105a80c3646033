"""Layout and allocation pass: where every tensor and every constant block lives in DRAM.

Every tensor lives in DRAM channel-major ``(C, H, W)``, one byte per element (int8 or uint8 as
the tensor's signedness says; 32-bit tensors, the logits, take 4 bytes). Concat outputs are
allocated once and their inputs are *aliases* into channel slices of it (channel-major layout
makes a channel concat contiguous), so a concat costs nothing. Blocks are allocated in order,
each aligned to :data:`~sim.compile.common.ALIGN` bytes, and never overlap.

The activation layout rule (the one place it is written, docs/global-buffers.md section 5):
:func:`act_offset` gives the element offset of channel ``c``, pixel ``p = y*W + x`` of an
activation with ``npix`` pixels per channel, ``planar`` (channel-major, what the compiler
emits) or ``blocked`` (``[ceil(C/B)][H][W][B]``: ``B`` channels of one pixel side by side,
:func:`activation_block`; the pad channels of a last partial block are never read as data).
With one pixel (``npix = 1``: linear layers, pooled vectors, the logits) both are the same.
:func:`pack` / :func:`unpack` apply the rule to a whole tensor; every tensor symbol records its
``layout`` and ``block`` so that :meth:`sim.compile.Binary.read_outputs` / ``write_input`` (and
through them ``sim.funcsim``, ``tb`` and ``runtime``) read and write it by the rule.
"""

from __future__ import annotations

import numpy as np

from ..intprogram import IntProgram
from .common import CompileError, align, cdiv, elem_bytes, shape3

__all__ = ["DramImage", "TensorLayout", "layout_tensors", "LAYOUTS", "activation_block",
           "check_layout", "act_offset", "act_elems", "pack", "unpack", "tensor_layout"]

#: the activation layouts :func:`act_offset` knows
LAYOUTS = ("planar", "blocked")


def activation_block(cfg) -> int:
    """``B`` of the ``blocked`` layout for ``cfg``: the widest channel access of the engines
    (MAT: T input / S output channels per step, R-MAC: N / M), rounded up to a power of two,
    so that one engine step's channels of one pixel lie in one block (8 at ``paper``)."""
    w = max(cfg.T, cfg.S, cfg.N, cfg.M)
    return 1 << (w - 1).bit_length()


def check_layout(layout, block):
    """Raise ValueError unless ``layout`` is one of :data:`LAYOUTS` (``blocked``: with a positive
    int ``block``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "blocked" and (not isinstance(block, (int, np.integer)) or block < 1):
        raise ValueError(f"block must be a positive int for the blocked layout, got {block!r}")


def act_offset(c, p, *, npix: int, layout: str = "planar", block: int = 1):
    """Element offset of channel ``c``, pixel ``p`` (``y * W + x``) of an activation with
    ``npix`` pixels per channel: ``planar`` ``c * npix + p``; ``blocked`` ``(c // B) * npix * B
    + p * B + c % B`` (``B = block``). ``c`` and ``p`` may be numpy arrays (broadcast). The same
    rule places a tile in an on-chip buffer (``npix`` = the tile's pixels per channel)."""
    check_layout(layout, block)
    if layout == "planar":
        return c * npix + p
    return (c // block) * (npix * block) + p * block + c % block


def act_elems(channels: int, npix: int, *, layout: str = "planar", block: int = 1) -> int:
    """Elements an activation of ``channels x npix`` occupies (blocked: the last block padded
    to ``B`` channels)."""
    check_layout(layout, block)
    if layout == "planar" or npix == 1:
        return channels * npix
    return cdiv(channels, block) * block * npix


def _offsets(shape, layout, block):
    c, h, w = shape3(shape)
    return act_offset(np.arange(c)[:, None], np.arange(h * w)[None, :], npix=h * w,
                      layout=layout, block=block).reshape(c, h, w).reshape(shape)


def pack(x, *, layout: str = "planar", block: int = 1, bits: int = 8) -> np.ndarray:
    """The DRAM bytes of integer tensor ``x`` (shape ``(C, H, W)`` or ``(C,)``) in ``layout``:
    8-bit two's complement or, ``bits > 8``, little-endian int32 per element; pad elements 0."""
    x = np.asarray(x, dtype=np.int64)
    c, h, w = shape3(x.shape)
    out = np.zeros(act_elems(c, h * w, layout=layout, block=block), dtype=np.int64)
    out[_offsets(x.shape, layout, block).reshape(-1)] = x.reshape(-1)
    if bits > 8:
        return out.astype(np.int32).view(np.uint8)
    return (out & 0xFF).astype(np.uint8)


def unpack(raw, shape, *, signed: bool, layout: str = "planar", block: int = 1,
           bits: int = 8) -> np.ndarray:
    """The int64 tensor of ``shape`` whose DRAM bytes (``pack``'s format) start ``raw``."""
    c, h, w = shape3(shape)
    n = act_elems(c, h * w, layout=layout, block=block)
    raw = np.asarray(raw, dtype=np.uint8)
    if bits > 8:
        v = raw[:4 * n].copy().view(np.int32).astype(np.int64)
    else:
        v = (raw[:n].view(np.int8) if signed else raw[:n]).astype(np.int64)
    return v[_offsets(shape, layout, block).reshape(-1)].reshape(tuple(shape))


def tensor_layout(sym: dict) -> dict:
    """``{layout, block}`` of a tensor symbol (a symbol without them, from a Binary written
    before the blocked layout existed, is planar)."""
    return dict(layout=sym.get("layout", "planar"), block=int(sym.get("block", 1)))


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


def layout_tensors(prog: IntProgram, image: DramImage, *, block: int = 1) -> TensorLayout:
    """Allocate every tensor of ``prog`` in ``image`` (aliases inside their base tensor);
    ``block`` > 1: every tensor of more than one pixel ``blocked`` with ``B = block`` (one
    pixel: planar, the same bytes); a concat input is then a run of whole blocks of the
    concat output (its channel offset must be a multiple of ``B``), at the same address as in
    the planar layout (``act_offset(off, 0)`` = ``off * H * W``)."""
    alias = concat_aliases(prog)
    for name, (base, off) in alias.items():
        c, h, w = shape3(prog.tensors[base].shape)
        if block > 1 and h * w > 1 and (off % block or shape3(prog.tensors[name].shape)[0]
                                        % block):
            raise CompileError(f"layout='blocked': concat input {name!r} at channel {off} of "
                               f"{base!r} is not a run of whole blocks of B = {block} channels")
    for name, t in prog.tensors.items():
        if name in alias:
            continue
        c, h, w = shape3(t.shape)
        lay = dict(layout="blocked", block=block) if block > 1 and h * w > 1 else \
            dict(layout="planar", block=1)
        image.alloc(f"tensor:{name}", act_elems(c, h * w, **lay) * elem_bytes(t), "tensor",
                    shape=list(t.shape), signed=bool(t.signed), bits=t.bits, **lay)
    for name, (base, off) in alias.items():
        t, bt = prog.tensors[name], prog.tensors[base]
        c, h, w = shape3(bt.shape)
        b = image.symbols[f"tensor:{base}"]
        lay = dict(layout=b["layout"], block=b["block"])
        image.symbols[f"tensor:{name}"] = dict(
            addr=b["addr"] + int(act_offset(off, 0, npix=h * w, **lay)) * elem_bytes(bt),
            nbytes=int(np.prod(t.shape)), kind="alias", base=base, channel_offset=off,
            shape=list(t.shape), signed=bool(t.signed), bits=t.bits, **lay)
    return TensorLayout(image, alias)
