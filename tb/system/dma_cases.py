"""Random LOAD / STORE descriptors and the sim.funcsim reference for the DMA engine tests.

Used by ``tests/test_dma.py`` (amaranth.sim) and ``tb/system/cocotb_dma.py`` (cocotb). The
reference is ``sim.funcsim``'s own LOAD / STORE (``_Machine.dma``) on a machine built over a
given DRAM image, so the chunk arithmetic is never restated here.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sim import timing
from sim.config import PRESETS
from sim.funcsim import _Machine
from sim.isa import BUFS, Instr

__all__ = ["CFG", "BOUNDARY", "machine", "buffers", "random_descriptors", "reference"]

CFG = PRESETS["small"]      #: buffer sizes and L of the reference machine
BOUNDARY = 4096             #: AXI's 4 KB rule, to place some chunks across it


def machine(dram: np.ndarray, *, rng=None):
    """A funcsim machine over ``dram`` (copied); buffers random when ``rng`` is given, else 0."""
    m = _Machine(SimpleNamespace(cfg=CFG, dram=np.asarray(dram, np.uint8)))
    if rng is not None:
        for mem in buffers(m).values():
            mem[:] = rng.integers(0, 256, mem.size, dtype=np.uint8)
    return m


def buffers(m) -> dict:
    """{(buf id, core): byte array} of the buffers a LOAD / STORE may address."""
    out = {(BUFS[n], 0): m.glob[n] for n in ("B", "C", "OUT")}
    out.update({(BUFS["A"], c): m.local[f"core{c}"]["A"] for c in range(CFG.L)})
    return out


def random_descriptors(rng, n, *, dram_bytes, buffers=("B", "C", "OUT"), a_loads=0.0,
                       max_len=300, max_count=5, near_boundary=0.3):
    """``n`` random LOAD / STORE field dicts (``sim.isa`` fields; ``dram_addr`` an index into
    the DRAM image): counts 1..max_count, lengths 1..max_len, strides length..length+199,
    unaligned DRAM and buffer offsets, a fraction ``near_boundary`` starting just below a 4 KB
    boundary, a fraction ``a_loads`` into buffer A of a random core (line-aligned there, as
    funcsim requires)."""
    sizes = {"B": CFG.buf_b_bytes, "C": CFG.buf_c_bytes, "OUT": CFG.buf_out_bytes}
    out = []
    for _ in range(n):
        count, length = int(rng.integers(1, max_count + 1)), int(rng.integers(1, max_len + 1))
        stride = length + int(rng.integers(0, 200))
        extent = (count - 1) * stride + length
        if rng.random() < near_boundary:
            k = int(rng.integers(1, dram_bytes // BOUNDARY))
            dram = k * BOUNDARY - int(rng.integers(1, 64))
        else:
            dram = int(rng.integers(0, dram_bytes))
        dram = max(0, min(dram, dram_bytes - extent))
        if rng.random() < a_loads:
            core, bid = int(rng.integers(0, CFG.L)), BUFS["A"]
            line = timing.a_line_bytes(CFG.N, CFG.dram_bytes_per_cycle)
            buf_addr = int(rng.integers(0, (CFG.buf_a_bytes - count * length) // line + 1)) * line
        else:
            name = buffers[int(rng.integers(0, len(buffers)))]
            core, bid = 0, BUFS[name]
            buf_addr = int(rng.integers(0, sizes[name] - count * length + 1))
        out.append({"buf": bid, "dram_addr": dram, "buf_addr": buf_addr, "count": count,
                    "length": length, "stride": stride, "core": core})
    return out


def reference(m, descs, *, store: bool) -> None:
    """Execute ``descs`` in order with sim.funcsim (a LOAD into A picks its core's buffer)."""
    for d in descs:
        m.dma("global", Instr("STORE" if store else "LOAD", dict(d)), store)
