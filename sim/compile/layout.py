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

One more layout exists for the network *input* only, written by the host: ``im2col``
(:func:`im2col`, the dense stem, docs/compiler.md "Dense stem"). The image ``(C, H, W)`` of a
network whose first node is a generic ``k x k`` conv (stride ``s``, padding ``p``) is stored
already unfolded, ``[C*k*k][Ho][Wo]`` planar, channel ``c*k*k + ky*k + kx`` holding input pixel
``(c, oy*s - p + ky, ox*s - p + kx)`` and 0 where that pixel is padding (the conv's zero
padding, as :func:`sim.golden.conv_acc` pads), so that the compiler runs the stem as a pointwise
conv over ``C*k*k`` channels. The symbol keeps the image's ``shape`` and records ``kernel``,
``stride`` and ``padding``; only :func:`pack` knows it (nothing reads such a tensor back). In a
blocked compile (``block`` = B > 1) the unfolded tensor is stored ``blocked`` like every other
activation, its ``C*k*k`` channels padded to whole blocks (27 -> 32 at B = 8; pad lanes 0),
so that the unfolded stem is an ordinary blocked pointwise conv (docs/global-buffers.md
section 5).
"""

from __future__ import annotations

import numpy as np

from ..intprogram import IntProgram, conv_output_hw
from .common import CompileError, align, cdiv, elem_bytes, shape3

__all__ = ["DramImage", "TensorLayout", "layout_tensors", "LAYOUTS", "activation_block",
           "check_layout", "act_offset", "act_elems", "pack", "unpack", "tensor_layout",
           "INPUT_LAYOUTS", "im2col", "im2col_shape"]

#: the activation layouts :func:`act_offset` knows
LAYOUTS = ("planar", "blocked")
#: the layouts a tensor symbol may record: the activation layouts and the input-only ``im2col``
INPUT_LAYOUTS = LAYOUTS + ("im2col",)
_GEOM = ("kernel", "stride", "padding")


def activation_block(cfg) -> int:
    """``B`` of the ``blocked`` layout for ``cfg``: the widest channel access of the engines
    (MAT: T input / S output channels per step, R-MAC: N / M), rounded up to a power of two,
    so that one engine step's channels of one pixel lie in one block (8 at ``paper``)."""
    w = max(cfg.T, cfg.S, cfg.N, cfg.M)
    return 1 << (w - 1).bit_length()


def _posint(v, lo=1):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo


def check_layout(layout, block, *, kernel=None, stride=None, padding=None):
    """Raise ValueError unless ``layout`` is one of :data:`LAYOUTS` (``blocked``: with a positive
    int ``block``) or ``im2col`` (with ints ``kernel`` >= 1, ``stride`` >= 1, ``padding`` >= 0
    and ``block`` 1, or a power of two: the unfolded tensor blocked); the geometry is refused
    on any other layout."""
    geom = dict(kernel=kernel, stride=stride, padding=padding)
    if layout not in INPUT_LAYOUTS:
        raise ValueError(f"layout must be one of {INPUT_LAYOUTS}, got {layout!r}")
    if layout == "blocked" and not _posint(block):
        raise ValueError(f"block must be a positive int for the blocked layout, got {block!r}")
    if layout == "im2col":
        if not (_posint(kernel) and _posint(stride) and _posint(padding, 0)):
            raise ValueError(f"the im2col layout needs ints kernel >= 1, stride >= 1, "
                             f"padding >= 0, got {geom}")
        if padding >= kernel:
            raise ValueError(f"im2col: padding {padding} must be smaller than kernel {kernel}")
        if not _posint(block) or block & (block - 1):
            raise ValueError(f"im2col: block must be a power of two (1: planar), got {block!r}")
    elif any(v is not None for v in geom.values()):
        raise ValueError(f"kernel/stride/padding belong to the im2col layout only, not to "
                         f"{layout!r}")


def im2col_shape(shape, *, kernel: int, stride: int, padding: int) -> tuple:
    """``(C*k*k, Ho, Wo)``: the shape of image ``shape = (C, H, W)`` in the ``im2col`` layout
    (:func:`sim.intprogram.conv_output_hw`'s ``Ho``, ``Wo``)."""
    check_layout("im2col", 1, kernel=kernel, stride=stride, padding=padding)
    if len(shape) != 3:
        raise ValueError(f"im2col: the image must be (C, H, W), got shape {tuple(shape)}")
    c, h, w = (int(v) for v in shape)
    ho, wo = conv_output_hw(h, w, kernel, stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"im2col: a {h}x{w} image is smaller than the {kernel}x{kernel} kernel")
    return (c * kernel * kernel, ho, wo)


def im2col(x, *, kernel: int, stride: int, padding: int) -> np.ndarray:
    """The image ``x`` ``(C, H, W)`` unfolded for a ``kernel x kernel`` conv of ``stride`` and
    ``padding``: ``(C*k*k, Ho, Wo)``, channel ``c*k*k + ky*k + kx`` = ``x[c, oy*s - p + ky,
    ox*s - p + kx]``, 0 outside the image (the module doc; the conv's weights ``(Cout, C, k, k)``
    reshaped to ``(Cout, C*k*k)`` are the pointwise weights in the same order)."""
    x = np.asarray(x)
    k, s, p = kernel, stride, padding
    cc, ho, wo = im2col_shape(x.shape, kernel=k, stride=s, padding=p)
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    out = np.empty((x.shape[0], k, k, ho, wo), dtype=x.dtype)
    for ky in range(k):
        for kx in range(k):
            out[:, ky, kx] = xp[:, ky:ky + (ho - 1) * s + 1:s, kx:kx + (wo - 1) * s + 1:s]
    return out.reshape(cc, ho, wo)


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


def pack(x, *, layout: str = "planar", block: int = 1, bits: int = 8, **geom) -> np.ndarray:
    """The DRAM bytes of integer tensor ``x`` (shape ``(C, H, W)`` or ``(C,)``) in ``layout``:
    8-bit two's complement or, ``bits > 8``, little-endian int32 per element; pad elements 0.
    ``im2col`` (the network input only; ``geom``: ``kernel``, ``stride``, ``padding``): the
    bytes of :func:`im2col` of ``x``, planar (``block`` 1) or blocked (``block`` B > 1, the
    unfolded channels padded to whole blocks)."""
    check_layout(layout, block, **geom)
    x = np.asarray(x, dtype=np.int64)
    if layout == "im2col":      # unfolded as bytes (a padding 0 is byte 0, signed or not)
        if bits != 8:
            raise ValueError(f"im2col: the input is 8-bit, got bits = {bits}")
        u = im2col((x & 0xFF).astype(np.uint8), **geom)
        if block == 1:
            return u.reshape(-1)
        return pack(u, layout="blocked", block=block)
    c, h, w = shape3(x.shape)
    if layout == "planar":      # (act_offset is the identity)
        out = x.reshape(-1)
    else:
        out = np.zeros(act_elems(c, h * w, layout=layout, block=block), dtype=np.int64)
        out[_offsets(x.shape, layout, block).reshape(-1)] = x.reshape(-1)
    if bits > 8:
        return out.astype(np.int32).view(np.uint8)
    return (out & 0xFF).astype(np.uint8)


def unpack(raw, shape, *, signed: bool, layout: str = "planar", block: int = 1,
           bits: int = 8) -> np.ndarray:
    """The int64 tensor of ``shape`` whose DRAM bytes (``pack``'s format) start ``raw``
    (not for ``im2col``: the host writes the input, nothing reads it back)."""
    if layout == "im2col":
        raise ValueError("the im2col layout is written by the host only: it is never unpacked")
    check_layout(layout, block)
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
    before the blocked layout existed, is planar), with ``kernel``, ``stride``, ``padding`` for
    ``im2col``: the keyword arguments of :func:`pack` and :func:`check_layout`."""
    lay = dict(layout=sym.get("layout", "planar"), block=int(sym.get("block", 1)))
    if lay["layout"] == "im2col":
        lay.update({g: sym.get(g) for g in _GEOM})
    return lay


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
