"""Constants and small helpers every compiler pass shares: the error type, the DRAM block
alignment, the parameter record size, ceiling division and the even split of a range."""

from __future__ import annotations

__all__ = ["CompileError", "PARAM_RECORD", "ALIGN", "cdiv", "align", "elem_bytes", "shape3",
           "split"]

PARAM_RECORD = 32       #: bytes per output channel (8 x int32) / per attention head
ALIGN = 64              #: DRAM alignment of every block (one AXI beat of the 4 HP ports)
DMA_MAX = (1 << 20) - ALIGN   #: longest single LOAD/STORE chunk (the length field is 20 bits)


class CompileError(ValueError):
    """The program cannot be mapped on this configuration (the message says why)."""


def cdiv(a, b):
    """Ceiling of ``a / b`` for integers."""
    return -(-a // b)


def align(n, a=ALIGN):
    """``n`` rounded up to a multiple of ``a`` (the DRAM block alignment by default)."""
    return cdiv(n, a) * a


def elem_bytes(t) -> int:
    """Bytes per element of tensor ``t`` in DRAM and on chip (8-bit: 1, wider: 4)."""
    return 1 if t.bits <= 8 else 4


def shape3(shape):
    """``(C, H, W)`` of a tensor shape; a vector ``(C,)`` is ``(C, 1, 1)``."""
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


def split(n, parts, gran=1):
    """Split range(n) into ``parts`` contiguous pieces, sizes multiples of ``gran`` (last ragged);
    empty pieces dropped."""
    units = cdiv(n, gran)
    base, extra = divmod(units, parts)
    out, s = [], 0
    for i in range(parts):
        u = base + (1 if i < extra else 0)
        if u == 0:
            continue
        e = min(n, s + u * gran)
        out.append((s, e))
        s = e
    return out
