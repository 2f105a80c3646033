"""How the core units access the buffers: strides, widths, rates and sharing, measured on a Binary.

This reads a compiled :class:`sim.compile.Binary` (no ``hw`` import) and reports, for every gather
read / scatter write port of the core units (``hw.core.ports``) and every buffer, what a real
memory behind that port would have to serve. It does not simulate the units' address generators
cycle by cycle: per compute instruction it takes the layer registers in force (the last SETR of
each register on that unit's queue), the instruction's fields and its engine step count
(:func:`sim.timing.compute_steps`, the same count :mod:`sim.perf` and the RTL use), and derives
for each port its buffer, base address, element and row stride, the bytes per access and how
many accesses the instruction makes. With the :mod:`sim.perf` trace it also places each
instruction in time, so that accesses of different cores can be added up per cycle and the
ones that read *the same addresses at the same time* can be found.

Which register sets which stride (from ``hw/core/unit.py`` and ``hw/core/attention.py``)
---------------------------------------------------------------------------------------------
``L`` = lanes, ``W`` = width of the unit's engine (MAT: S, T; R-MAC: M, N; AUX: -, N);
``k`` = KERNEL; ``K = CIN * k*k``; a *vector* is one output of the engine (``L`` channels of one
pixel); the rate column says per what one access is made.

===========  =====  ===============  =======================  ===================  ============  ==============
opcode       port   buffer           element stride           row stride           rows x elems  one access per
===========  =====  ===============  =======================  ===================  ============  ==============
CONV_*       x      XBUF (B)         XSTRIDE (channels)       -                    1 x W         engine step
CONV_*       w      C (w_addr)       1 (pre-tiled line)       W                    L x W         engine step
CONV_*       p      C (p_addr)       1 (record bytes)         32 (PARAM_RECORD)    L x 32        output vector
CONV_*       r      B (RES_ADDR)     RSTRIDE                  -                    1 x L         output vector (RES_ADDR >= 0)
CONV_*       o      obuf             OSTRIDE (x4 bytes wide)  -                    L (scatter)   output vector
DW_RSA       x      C (w_addr)       1 (pre-tiled word)       -                    1 x N         engine step (the tap's weights)
DW_RSA       xr     XBUF (B)         STRIDE (1 or 2)          XSTRIDE              N x (M+4)     row segment: k (stride 1) or 2k
                                                                                                 (stride 2) per pass of k*k steps
DW_RSA       p      C (p_addr)       1                        -                    1 x 32        drained channel (N per pass)
DW_RSA       r      B (RES_ADDR)     1 (pixels)               -                    1 x M         drained channel
DW_RSA       o      obuf             1 (pixels)               -                    M (scatter)   drained channel
POOL         x      XBUF (B)         1 (tokens)               -                    1 x N         engine step
POOL         p / o  C / obuf         1                        -                    1 x 32 / 1    channel (nco)
ATT_KV_*     x      XBUF (A or B)    1 (tokens of K)          -                    1 x W         engine step
ATT_KV_*     w      B (w_addr: V)    1 (tokens)               XSTRIDE (V rows)     L x W         engine step
ATT_KV_*     o      obuf (AUX)       1                        -                    L (scatter)   vector (d * ceil(d/L))
ATT_KSUM     x      XBUF (A or B)    1                        -                    1 x N         engine step
ATT_DIV      x      AUX (w_addr)     1                        -                    1 x T         engine step
ATT_DIV      w      XBUF (B: Q)      XSTRIDE (channels)       0 (all lanes equal)  S x T         engine step
ATT_OUT      x      XBUF (B: Q)      XSTRIDE (channels)       -                    1 x T         engine step
ATT_OUT      w      AUX (w_addr: S)  DIM                      1                    S x T         engine step
ATT_OUT      r / o  DIV / obuf       1 / NTOK (tokens)        -                    1 / S         vector (ceil(d/S) * NTOK)
ATT_*        p      C (p_addr)       1                        -                    1 x 32        once (setup)
===========  =====  ===============  =======================  ===================  ============  ==============

(AUX, DIV and A are inside the core; they are reported, marked ``local``, but the design question
is B, C and OUT.) ``LOAD``/``STORE`` are reported as the DMA port of their buffer, one access
per DRAM cycle of the transfer (:mod:`sim.perf`'s count).

What is reported (:func:`analyse`)
----------------------------------
* per ``(op class, port, buffer)``: instructions, accesses, engine steps, accesses per step and
  per busy cycle, the port's width and the bytes actually carried per access (channel / lane
  masks of partial blocks counted out), the element / row strides used (the most frequent
  values, the share of odd element strides), the alignment of the instructions' base addresses,
  and the **bank conflicts** of the stride pattern: the worst-bank load of one access when the
  buffer is split into ``P`` byte-interleaved single-port banks (byte ``a`` in bank ``a mod P``),
  i.e. the cycles such a buffer needs per access (1 = conflict-free);
* per buffer over the whole run (all L cores, placed in time by the :mod:`sim.perf` trace, each
  instruction's accesses spread evenly over its busy interval): bytes and accesses per cycle,
  mean over the run, and the 99th percentile and maximum over 64-cycle windows;
* per port also ``words``: the distinct 8-byte words of one access (what the word-interleaved
  ``hw.system.banked.BankedBuffers`` serves) and ``@8w``, their worst-bank load on 8 such
  banks; per unit and op class the words of B, C, OUT per engine step (``words``);
* **what-if layouts** (``analyse(..., layout="blocked")``, ``--layout blocked``): every activation
  port re-addressed by the rule of :func:`sim.compile.layout.act_offset` (:func:`relayout`)
  and the activation LOADs / STOREs rewritten as the blocked layout would move them
  (:func:`blocked_dma`); the core cannot run such a Binary (docs/global-buffers.md section 5);
* **sharing**: accesses of one port kind on different cores at overlapping times (same layer,
  same opcode) whose whole address sequence is the same (same buffer, base, strides and loop
  bounds: the *key* of :func:`instruction_ports`); ``broadcast factor`` = accesses / distinct
  sequences, i.e. how many cores one read could serve if the cores ran in lock-step.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

import numpy as np

from . import timing
from .compile import PARAM_RECORD
from .compile.common import shape3
from .compile.layout import LAYOUTS, act_offset, activation_block
from .funcsim import build_queues
from .isa import BUF_NAMES, BUFS, REG_NAMES, Instr

__all__ = ["PortUse", "instruction_ports", "collect", "analyse", "bank_load", "format_report",
           "compile_split", "SPLITS", "relayout", "word_load", "WORD", "blocked_dma",
           "bank_demand",
           "GLOBAL_BUFS", "DW_ROW_EXTRA", "BANKS"]

#: the buffers shared by all cores (the design question); AUX, DIV, A are per core
GLOBAL_BUFS = ("B", "C", "OUT")
#: extra bytes of a depthwise row segment beyond the M outputs: ``hw.core.unit.MAX_KERNEL - 1``
#: (the R-MAC's ``xr`` port is ``N x (M + MAX_KERNEL - 1)``; tests/test_access.py checks it)
DW_ROW_EXTRA = 4
#: bank counts the conflict columns are computed for
BANKS = (8, 16, 32, 64)
#: window (cycles) of the per-buffer peak rates
WINDOW = 64
#: bytes of one bank word of ``hw.system.banked.BankedBuffers`` (its default): the ``words``
#: and ``@8w`` columns count these
WORD = 8


@dataclass
class PortUse:
    """One port of one compute instruction: what it reads or writes, how often."""
    port: str               # x, w, p, r, o, xr
    buf: str                # B, C, OUT, AUX, DIV, A
    addr: int               # base address of the instruction's first access
    elem_stride: int
    row_stride: int
    rows: int               # port shape (rows x elems); a scatter port has rows = 1
    elems: int
    elem_bytes: int         # 1, or 4 for int32 (wide) writes
    used: float             # bytes carried per access, on average (masked lanes excluded)
    accesses: int
    write: bool
    key: tuple              # the whole address sequence (for sharing between cores)
    #: what the rows and the elements of an access step over in an activation tile: "c"
    #: (channels), "p" (pixels / tokens), "" (one row, or every row the same); ``()``: not an
    #: activation (weights, records, the per-core AUX / DIV data)
    axes: tuple = ()

    @property
    def width(self) -> int:
        """bytes of the port per access"""
        return self.rows * self.elems * self.elem_bytes


def _cdiv(a, b):
    return -(-a // b)


def _lanes_width(cfg, unit):
    return {"MAT": (cfg.S, cfg.T), "RMAC": (cfg.M, cfg.N), "AUX": (1, cfg.N)}[unit]


def _avg_fill(n, w):
    """average items per block when ``n`` items go through blocks of ``w`` (masked tail)"""
    return n / _cdiv(n, w) if n > 0 else 0.0


def instruction_ports(cfg, unit: str, op: str, regs: dict, f: dict) -> list[PortUse]:
    """The ports compute instruction ``op`` (fields ``f``) of ``unit`` (MAT, RMAC, AUX) uses, with
    the unit's layer registers ``regs`` in force (see the module doc's table)."""
    L, W = _lanes_width(cfg, unit)
    R = lambda n, d=0: int(regs.get(n, d))     # noqa: E731
    steps = timing.compute_steps(cfg, op, regs, f)
    xbuf = BUF_NAMES[R("XBUF", BUFS["B"])]
    out = []

    def add(port, buf, addr, es, rs, rows, elems, used, acc, *, eb=1, write=False, key=(),
            axes=()):
        if acc > 0:
            out.append(PortUse(port, buf, int(addr), int(es), int(rs), int(rows), int(elems),
                               int(eb), float(used), int(acc), write, (op, port, buf) + key,
                               axes if buf in ("B", "OUT", "A") and eb == 1 else ()))

    if op in ("CONV_MAT", "CONV_RDF"):
        k, cin, g = R("KERNEL", 1), R("CIN"), max(1, R("GROUPS", 1))
        nco = f["nco"]
        coutg = nco // g
        npix = f["ho"] * R("WOUT")
        vectors = g * _cdiv(coutg, L) * npix
        lanes = _avg_fill(coutg, L)
        ch = _avg_fill(cin, W)
        geo = (R("WIN"), f["hin"], f["ho"], R("WOUT"), k, R("STRIDE"), f["pad_t"], R("PAD_L"))
        add("x", xbuf, f["x_addr"], R("XSTRIDE"), 0, 1, W, ch, steps,
            key=(f["x_addr"], R("XSTRIDE"), cin, g) + geo, axes=("", "c"))
        add("w", "C", f["w_addr"], 1, W, L, W, lanes * ch, steps,      # one pre-tiled line
            key=(f["w_addr"], cin, k, nco, g))
        add("p", "C", f["p_addr"], 1, PARAM_RECORD, L, PARAM_RECORD, lanes * PARAM_RECORD, vectors,
            key=(f["p_addr"], nco, g, npix))
        if R("RES_ADDR", -1) >= 0:
            add("r", "B", R("RES_ADDR"), R("RSTRIDE"), 0, 1, L, lanes, vectors,
                key=(R("RES_ADDR"), R("RSTRIDE"), nco, g, npix), axes=("", "c"))
        wide = R("NOEPI") or R("OBITS", 8) > 8
        eb = 4 if wide else 1
        add("o", BUF_NAMES[f["obuf"]], f["o_addr"], R("OSTRIDE") * 1, 0, 1, L, lanes * eb,
            vectors, eb=eb, write=True, key=(f["o_addr"], R("OSTRIDE"), nco, npix),
            axes=("", "c"))
    elif op == "DW_RSA":
        k, s, nco = R("KERNEL"), R("STRIDE", 1), f["nco"]
        N, M = cfg.N, cfg.M
        passes = _cdiv(nco, N) * f["ho"] * _cdiv(R("WOUT"), M)
        chans = _avg_fill(nco, N)
        add("x", "C", f["w_addr"], 1, 0, 1, N, chans, steps, key=(f["w_addr"], nco, k))  # a word
        segs = k * (2 if s == 2 else 1)
        seg_len = M + (k - 1 if s == 1 else k / 2 - 1)
        add("xr", xbuf, f["x_addr"], s, R("XSTRIDE"), N, M + DW_ROW_EXTRA, chans * seg_len,
            passes * segs, key=(f["x_addr"], R("XSTRIDE"), R("WIN"), f["hin"], f["ho"],
                                 R("WOUT"), k, s, nco, f["pad_t"], R("PAD_L")),
            axes=("c", "p"))
        pix = _avg_fill(R("WOUT"), M)
        add("p", "C", f["p_addr"], 1, 0, 1, PARAM_RECORD, PARAM_RECORD, N * passes,
            key=(f["p_addr"], nco, f["ho"], R("WOUT")))
        if R("RES_ADDR", -1) >= 0:
            add("r", "B", R("RES_ADDR"), 1, 0, 1, M, pix, N * passes,
                key=(R("RES_ADDR"), R("RSTRIDE"), nco, f["ho"], R("WOUT")), axes=("", "p"))
        add("o", BUF_NAMES[f["obuf"]], f["o_addr"], 1, 0, 1, M, pix, N * passes, write=True,
            key=(f["o_addr"], R("OSTRIDE"), nco, f["ho"], R("WOUT")), axes=("", "p"))
    elif op in ("POOL", "ATT_KSUM"):
        ntok = R("NTOK")
        nch = f["nco"] if op == "POOL" else R("DIM")
        add("x", xbuf, f["x_addr"], 1, 0, 1, W, _avg_fill(ntok, W), steps,
            key=(f["x_addr"], R("XSTRIDE"), ntok, nch), axes=("", "p"))
        add("p", "C", f["p_addr"], 1, 0, 1, PARAM_RECORD, PARAM_RECORD,
            nch if op == "POOL" else 1, key=(f["p_addr"], nch))
        add("o", BUF_NAMES[f["obuf"]], f["o_addr"], 1, 0, 1, 1, 1, nch, write=True,
            key=(f["o_addr"], nch))
    elif op in ("ATT_KV_MAT", "ATT_KV_RDF", "ATT_DIV", "ATT_OUT"):
        d, n, xs = R("DIM"), R("NTOK"), R("XSTRIDE")
        head = (xs, d, n)
        add("p", "C", f["p_addr"], 1, 0, 1, PARAM_RECORD, PARAM_RECORD, 1, key=(f["p_addr"],))
        if op in ("ATT_KV_MAT", "ATT_KV_RDF"):
            tok = _avg_fill(n, W)
            add("x", xbuf, f["x_addr"], 1, 0, 1, W, tok, steps, key=(f["x_addr"],) + head,
                axes=("", "p"))
            add("w", "B", f["w_addr"], 1, xs, L, W, _avg_fill(d, L) * tok, steps,
                key=(f["w_addr"],) + head, axes=("c", "p"))
            add("o", BUF_NAMES[f["obuf"]], f["o_addr"], 1, 0, 1, L, _avg_fill(d, L),
                d * _cdiv(d, L), write=True, key=(f["o_addr"], d))
        elif op == "ATT_DIV":
            ch = _avg_fill(d, W)
            add("x", "AUX", f["w_addr"], 1, 0, 1, W, ch, steps, key=(f["w_addr"], d, n))
            # every lane reads the same column of Q (row stride 0): one row of bytes carried
            add("w", xbuf, f["x_addr"], xs, 0, L, W, ch, steps, key=(f["x_addr"],) + head,
                axes=("", "c"))
            add("o", BUF_NAMES[f["obuf"]], f["o_addr"], 1, 0, 1, 1, 1, n, write=True,
                key=(f["o_addr"], n))
        else:
            ch = _avg_fill(d, W)
            vec = _cdiv(d, L) * n
            add("x", xbuf, f["x_addr"], xs, 0, 1, W, ch, steps, key=(f["x_addr"],) + head,
                axes=("", "c"))
            add("w", "AUX", f["w_addr"], d, 1, L, W, _avg_fill(d, L) * ch, steps,
                key=(f["w_addr"], d, n))
            add("r", "DIV", 0, 1, 0, 1, 1, 1, vec, key=(n,))
            add("o", BUF_NAMES[f["obuf"]], f["o_addr"], n, 0, 1, L, _avg_fill(d, L), vec,
                write=True, key=(f["o_addr"], d, n), axes=("", "c"))
    else:
        raise ValueError(f"{op} is not a compute instruction")
    return out


def bank_load(rows: int, elems: int, row_stride: int, elem_stride: int, banks: int) -> int:
    """Cycles one access of ``rows x elems`` bytes at the given strides needs on ``banks``
    byte-interleaved single-port banks (byte ``a`` in bank ``a mod banks``): the largest number
    of its distinct addresses that fall into one bank. Independent of the base address."""
    r = np.arange(rows)[:, None] * row_stride
    e = np.arange(elems)[None, :] * elem_stride
    offs = np.unique((r + e).ravel())
    return int(np.bincount(offs % banks, minlength=banks).max())


def word_bank_load(addr: int, rows: int, elems: int, row_stride: int, elem_stride: int,
                   banks: int = 8, word: int = 8) -> int:
    """Cycles one access needs on ``banks`` word-interleaved banks of ``word`` bytes with one
    port each (``hw.system.banked.BankedBuffers``: byte ``g`` in word ``g // word``, bank ``(g //
    word) % banks``; all bytes of a word in one cycle): the largest number of distinct words
    of the access in one bank, at base address ``addr``. Alone on the banks (no other
    requester): a lower bound of the banked buffers' service time."""
    r = np.arange(rows)[:, None] * row_stride
    e = np.arange(elems)[None, :] * elem_stride
    words = np.unique(((addr + r + e).ravel()) // word)
    return int(np.bincount(words % banks, minlength=banks).max())


def word_load(addr: int, rows: int, elems: int, row_stride: int, elem_stride: int,
              elem_bytes: int = 1, banks: int = 8, word: int = WORD) -> tuple[int, int]:
    """``(distinct words, worst-bank load)`` of one access at base ``addr`` on ``banks``
    word-interleaved banks of ``word`` bytes (:func:`word_bank_load`'s model; elements of
    ``elem_bytes`` bytes; the port's whole shape, lanes masked off in a partial block
    included): the words are the bank reads (or writes) the access costs, the load the cycles
    it needs alone."""
    r = np.arange(rows)[:, None, None] * row_stride
    e = np.arange(elems)[None, :, None] * elem_stride
    b = np.arange(elem_bytes)[None, None, :]
    words = np.unique(((addr + r + e + b).ravel()) // word)
    return int(words.size), int(np.bincount(words % banks, minlength=banks).max())


def relayout(p: PortUse, layout: str, block: int) -> PortUse:
    """What-if: the access ``p`` of a planar Binary as it would be with its activation tile in
    ``layout`` (:func:`sim.compile.layout.act_offset`, the one rule; ``block`` = its ``B``),
    the same channels and pixels in the same order. A channel axis then steps by
    ``act_offset(1, 0) - act_offset(0, 0)`` (1 blocked), a pixel axis of step ``s`` by
    ``act_offset(0, s) - act_offset(0, 0)`` (``s * B``). Assumes what a blocked compiler would
    guarantee: an access's first channel is the first of a block (so its <= ``B`` channels lie
    in one block: refused otherwise) and the tile starts on a 64-byte boundary (the address is
    rounded down to one). Ports that are not activations (``axes == ()``) are unchanged."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "planar" or not p.axes:
        return p
    ra, ea = p.axes
    # the planar channel stride is the tile's pixels per channel (the rule's npix)
    cs = p.row_stride if ra == "c" else p.elem_stride if ea == "c" else 1
    npix = max(1, cs)

    def step(axis, stride, n):
        if axis == "c":
            if n > block:
                raise ValueError(f"{p.port}: {n} channels per access exceed the block of "
                                 f"{block}")
            return int(act_offset(1, 0, npix=npix, layout=layout, block=block)
                       - act_offset(0, 0, npix=npix, layout=layout, block=block))
        if axis == "p":
            return int(act_offset(0, stride, npix=npix, layout=layout, block=block)
                       - act_offset(0, 0, npix=npix, layout=layout, block=block))
        return stride
    return replace(p, row_stride=step(ra, p.row_stride, p.rows),
                   elem_stride=step(ea, p.elem_stride, p.elems), addr=p.addr - p.addr % 64)


def bank_demand(binary, *, layout: str = "planar", banks: int = 8, trace=None) -> dict:
    """The words the cores' ports ask of B, C and OUT over the whole run (:func:`analyse`'s
    ``words`` table summed; ``layout="blocked"``: the what-if) and ``words / banks``: the
    cycles ``banks`` word-interleaved banks need for them at one word per bank and cycle (reads
    and writes together, the DMA left out: a static estimate of the banked buffers' busy
    cycles, docs/global-buffers.md section 5). Returns ``{words, steps, cycles}``."""
    rep = analyse(binary, layout=layout, trace=trace)
    words = sum(w["words"] for w in rep["words"])
    return dict(words=words, steps=sum(w["steps"] for w in rep["words"]),
                cycles=-(-words // banks))


def _activation_spans(binary):
    """``[(start, end, npix, name)]`` sorted: the DRAM ranges of the activations a blocked
    layout would change (8-bit, more than one pixel, not a graph input; aliases lie in their
    base)."""
    spans = []
    for name, sym in binary.symbols.items():
        t = name.split(":", 1)[1]
        if sym.get("kind") != "tensor" or t in binary.prog.inputs or sym.get("bits", 8) > 8:
            continue
        c, h, w = shape3(sym["shape"])
        if h * w > 1:
            spans.append((sym["addr"], sym["addr"] + c * h * w, h * w, t))
    return sorted(spans)


def _blocked_runs(spans, starts, f, block):
    """The DRAM byte runs ``[(addr, length)]`` of LOAD / STORE fields ``f`` with the tensor in
    the blocked layout (the same channels and pixels, whole blocks), or None when the
    descriptor is not inside one activation (weights, records, the network input)."""
    a0 = f["dram_addr"]
    i = bisect.bisect_right(starts, a0) - 1
    if i < 0 or f["count"] == 0 or f["length"] == 0:
        return None
    base, end, npix, _ = spans[i]
    last = a0 + (f["count"] - 1) * f["stride"] + f["length"]
    if last > end:
        return None
    off = lambda c, p: int(act_offset(c, p, npix=npix, layout="blocked",   # noqa: E731
                                      block=block))
    runs = set()
    for k in range(f["count"]):
        a = a0 + k * f["stride"] - base
        c0, p0 = divmod(a, npix)
        c1, p1 = divmod(a + f["length"], npix)
        if p0 == 0 and p1 == 0:                 # whole channels c0 .. c1
            for cb in range(c0 // block, -(-c1 // block)):
                runs.add((base + off(cb * block, 0), npix * block))
        elif c1 == c0 or (c1 == c0 + 1 and p1 == 0):    # pixels p0 .. of one channel
            n = f["length"]
            runs.add((base + off(c0 // block * block, p0), n * block))
        else:
            return None
    merged = []
    for a, n in sorted(runs):
        if merged and merged[-1][0] + merged[-1][1] >= a:
            pa, pn = merged[-1]
            merged[-1] = (pa, max(pn, a + n - pa))
        else:
            merged.append((a, n))
    return merged


def blocked_dma(binary, block: int | None = None):
    """What-if: a copy of (planar) ``binary`` whose LOADs and STOREs of activations move what
    they would move with every activation but the network input channel-blocked
    (:func:`sim.compile.layout.act_offset`, ``block`` default
    :func:`~sim.compile.layout.activation_block`): the same channels and pixels as whole
    blocks of ``B`` channels (a partial block moves its pad lanes), as one descriptor when the
    runs are evenly spaced (``count`` blocks of ``pixels x B`` bytes at stride ``H*W*B``, merged
    when contiguous), else one per run, packed densely at the same buffer address. Only the
    global stream changes (the cores' instructions are untouched): for :mod:`sim.perf`'s DMA
    timing (``--layout blocked`` of ``python -m sim access``), not for execution. Returns
    ``(binary, {converted, unchanged, descriptors})``."""
    from .compile.common import DMA_MAX
    block = activation_block(binary.cfg) if block is None else block
    spans = _activation_spans(binary)
    starts = [s[0] for s in spans]
    g, tg = [], []
    stats = Counter()
    for ins, tag in zip(binary.streams["global"], binary.tags["global"]):
        runs = _blocked_runs(spans, starts, ins.f, block) \
            if ins.op in ("LOAD", "STORE") else None
        if runs is None:
            if ins.op in ("LOAD", "STORE"):
                stats["unchanged"] += 1
            g.append(ins)
            tg.append(tag)
            continue
        stats["converted"] += 1
        lens = {n for _, n in runs}
        steps = {b[0] - a[0] for a, b in zip(runs, runs[1:])}
        if len(lens) == 1 and len(steps) <= 1 and runs[0][1] < 1 << 20 and len(runs) < 1 << 16:
            descs = [(runs[0][0], len(runs), runs[0][1], steps.pop() if steps else 0)]
        else:
            descs = [(a + o, 1, min(DMA_MAX, n - o), 0) for a, n in runs
                     for o in range(0, n, DMA_MAX)]
        b = ins.f["buf_addr"]
        for a, cnt, ln, st in descs:
            g.append(Instr(ins.op, dict(ins.f, dram_addr=a, buf_addr=b, count=cnt, length=ln,
                                        stride=st)))
            tg.append(tag)
            b += cnt * ln
            stats["descriptors"] += 1
    streams, tags = dict(binary.streams), dict(binary.tags)
    streams["global"], tags["global"] = g, tg
    return dataclasses.replace(binary, streams=streams, tags=tags), dict(stats)


def conflict_estimate(binary, *, banks: int = 8, word: int = 8, trace=None) -> dict:
    """A static estimate of the stall cycles the banked buffers add (``BankedBuffers`` with
    ``Core(stall=True)``, which freezes a unit until all requests of its step are served): per
    compute instruction, the port of the global buffers B, C, OUT with the largest
    ``accesses x (word_bank_load - 1)`` at the instruction's first address, summed per core
    unit. Ignores conflicts between ports, units and cores (a lower bound of each unit's extra
    cycles) and that later accesses start at other addresses. Returns ``{"per_unit":
    {(stream, unit): cycles}, "max_unit": cycles}``."""
    uses, _dma, _total = collect(binary, trace=trace)
    per_instr = defaultdict(int)
    for u in uses:
        p = u.p
        if p.buf not in ("B", "C", "OUT"):
            continue
        load = word_bank_load(p.addr, p.rows, p.elems, p.row_stride, p.elem_stride, banks,
                              word)
        key = (u.stream, u.unit, u.tag, u.start)
        per_instr[key] = max(per_instr[key], p.accesses * (load - 1))
    per_unit = defaultdict(int)
    for (st, un, _tag, _t0), c in per_instr.items():
        per_unit[(st, un)] += c
    return {"per_unit": dict(per_unit), "max_unit": max(per_unit.values(), default=0)}


@dataclass
class Use:
    """A :class:`PortUse` placed in a Binary: which core unit, layer, and when."""
    stream: str
    unit: str
    op: str
    tag: int
    start: int              # perf trace: fetch cycle
    end: int                # perf trace: next fetch (drained)
    steps: int
    cycles: int
    p: PortUse


def collect(binary, *, trace=None) -> tuple[list[Use], list[dict], int]:
    """Every port use of every compute instruction of ``binary`` (registers tracked per unit
    queue), the DMA transfers (``{buf, op, bytes, start, end}``) and the run's total cycles.
    ``trace``: a :func:`sim.perf.simulate` trace of ``binary`` (computed when None)."""
    from .perf import simulate
    cfg = binary.cfg
    total = None
    if trace is None:
        trace = []
        total = simulate(binary, trace=trace).cycles
    per_key = defaultdict(list)
    for st, u, op, tag, t0, t1 in trace:
        per_key[(st, u)].append((op, t0, t1))
    queues = build_queues(binary)
    uses, dma = [], []
    for (st, u), q in queues.items():
        times = per_key.get((st, u), [])
        if len(times) != len(q):
            raise ValueError(f"trace of {st}/{u} has {len(times)} entries, queue {len(q)}")
        regs = {}
        for (ins, tag), (op, t0, t1) in zip(q, times):
            if op != ins.op:
                raise ValueError(f"trace of {st}/{u} out of step: {op} vs {ins.op}")
            if ins.op == "SETR":
                regs[REG_NAMES[ins["reg"]]] = ins["value"]
            elif ins.op in ("LOAD", "STORE"):
                dma.append(dict(buf=BUF_NAMES[ins["buf"]], op=ins.op, tag=tag,
                                bytes=ins["count"] * ins["length"], start=t0, end=t1))
            elif ins.op in timing.COMPUTE_OPS:
                ct = timing.compute_timing(cfg, ins.op, regs, ins.f)
                for pu in instruction_ports(cfg, u, ins.op, regs, ins.f):
                    uses.append(Use(st, u, ins.op, tag, t0, t1, ct.steps, ct.cycles, pu))
    if total is None:
        total = max([t1 for *_, t1 in trace] + [0])
    return uses, dma, int(total)


def _op_class(op):
    return {"CONV_MAT": "CONV", "CONV_RDF": "CONV", "ATT_KV_MAT": "ATT_KV",
            "ATT_KV_RDF": "ATT_KV"}.get(op, op)


def _top(counter: Counter, n=4):
    tot = sum(counter.values()) or 1
    return [[int(v), round(c / tot, 3)] for v, c in counter.most_common(n)]


def _sharing(uses):
    """Per (port, buffer): accesses, distinct address sequences, and the accesses another reader
    (another core, or the other engine of the same core) makes with the same sequence at an
    overlapping time (see the module doc). Also the distinct bytes per buffer (each shared
    sequence counted once)."""
    groups = defaultdict(list)
    for u in uses:
        p = u.p
        groups[(u.tag, p.port, p.buf, p.rows, p.elems) + p.key[3:]].append(u)
    res = defaultdict(lambda: dict(accesses=0, distinct=0, shared=0, cores=Counter(),
                                   readers=Counter(), skew=0.0, rel=0.0))
    distinct_bytes = defaultdict(float)
    for _, g in groups.items():
        # clusters of overlapping busy intervals (different cores at the same time)
        g.sort(key=lambda u: u.start)
        clusters, cur, cur_end = [], [], -1
        for u in g:
            if cur and u.start >= cur_end:
                clusters.append(cur)
                cur, cur_end = [], -1
            cur.append(u)
            cur_end = max(cur_end, u.end)
        if cur:
            clusters.append(cur)
        for c in clusters:
            r = res[(c[0].p.port, c[0].p.buf)]
            cores = {u.stream for u in c}
            readers = {(u.stream, u.unit) for u in c}
            acc = sum(u.p.accesses for u in c)
            r["accesses"] += acc
            r["distinct"] += max(u.p.accesses for u in c)
            distinct_bytes[(c[0].p.buf, c[0].p.write)] += max(u.p.accesses * u.p.used for u in c)
            if len(readers) > 1:
                r["shared"] += acc
                # how far apart the sharers start (lock-step needs 0): cycles, and relative to
                # the shortest sharer's busy interval
                sk = max(u.start for u in c) - min(u.start for u in c)
                r["skew"] += acc * sk
                r["rel"] += acc * sk / max(1, min(u.end - u.start for u in c))
            r["cores"][len(cores)] += acc
            r["readers"][len(readers)] += acc
    out = []
    for (port, buf), r in sorted(res.items()):
        out.append(dict(port=port, buf=buf, accesses=r["accesses"],
                        broadcast_factor=round(r["accesses"] / max(1, r["distinct"]), 2),
                        shared_fraction=round(r["shared"] / max(1, r["accesses"]), 3),
                        start_skew_cycles=round(r["skew"] / max(1, r["shared"]), 1),
                        start_skew_rel=round(r["rel"] / max(1, r["shared"]), 3),
                        cores_same=_top(r["cores"], 6), readers_same=_top(r["readers"], 6)))
    return out, distinct_bytes


def _rates(uses, dma, total, distinct_bytes):
    """Per buffer: bytes and accesses per cycle over the run (mean, p99 / max of WINDOW-cycle
    windows), all cores together, reads and writes apart; the distinct bytes (each shared
    sequence once) as a mean; the DMA's bytes per cycle."""
    nwin = max(1, _cdiv(total, WINDOW))
    rates = {}
    bins = defaultdict(lambda: (np.zeros(nwin + 1), np.zeros(nwin + 1)))
    for u in uses:
        byt, acc = bins[(u.p.buf, u.p.write)]
        a, b = u.start, max(u.start + 1, u.end)
        _spread(byt, a, b, u.p.accesses * u.p.used)
        _spread(acc, a, b, u.p.accesses)
    dbins = defaultdict(lambda: np.zeros(nwin + 1))
    for d in dma:
        _spread(dbins[(d["buf"], d["op"] == "LOAD")], d["start"], max(d["start"] + 1, d["end"]),
                d["bytes"])
    for buf in GLOBAL_BUFS + ("AUX", "DIV", "A"):
        for write in (False, True):
            if (buf, write) not in bins and (buf, write) not in dbins:
                continue
            byt, acc = bins[(buf, write)]
            dbytes = dbins[(buf, write)]
            win, aw = byt[:nwin] / WINDOW, acc[:nwin] / WINDOW
            rates[f"{buf}.{'write' if write else 'read'}"] = dict(
                ports_bytes_per_cycle=dict(mean=round(byt.sum() / total, 2),
                                           p99=round(float(np.percentile(win, 99)), 1),
                                           max=round(float(win.max()), 1)),
                ports_accesses_per_cycle=dict(mean=round(acc.sum() / total, 2),
                                              p99=round(float(np.percentile(aw, 99)), 1),
                                              max=round(float(aw.max()), 1)),
                distinct_bytes_per_cycle_mean=round(distinct_bytes.get((buf, write), 0) / total,
                                                    2),
                dma_bytes_per_cycle=dict(mean=round(dbytes.sum() / total, 2),
                                         max=round(float((dbytes[:nwin] / WINDOW).max()), 1)))
    return rates


def _spread(arr, a, b, amount):
    """add ``amount`` spread evenly over cycles [a, b) into WINDOW-cycle bins of ``arr``"""
    per = amount / (b - a)
    w0, w1 = a // WINDOW, (b - 1) // WINDOW
    if w0 == w1:
        arr[w0] += amount
        return
    arr[w0] += per * ((w0 + 1) * WINDOW - a)
    arr[w1] += per * (b - w1 * WINDOW)
    if w1 > w0 + 1:
        arr[w0 + 1:w1] += per * WINDOW


def _graph_input_port(prog, u: Use) -> bool:
    """``u`` reads a graph input (the network image, which stays planar in the what-if)."""
    if not 0 <= u.tag < len(prog.nodes) or u.p.write:
        return False
    n = prog.nodes[u.tag]
    t = n.epilogue.residual if u.p.port == "r" and n.epilogue is not None else \
        (n.inputs[0] if n.inputs else None)
    return t in prog.inputs


def analyse(binary, *, trace=None, layout: str = "planar", block: int | None = None) -> dict:
    """The report (a JSON-ready dict): ``ports`` (per unit / op class / port / buffer),
    ``sharing``, ``rates`` (per buffer), ``dma`` and the run's ``cycles`` (see the module doc).
    ``layout="blocked"``: what-if, the (planar) Binary's activation LOADs / STOREs rewritten by
    :func:`blocked_dma` (so cycles, FPS and DMA figures are ``sim.perf``'s on those; ``trace``,
    if given, must be of ``blocked_dma(binary)[0]``) and every activation port re-addressed by
    :func:`relayout` with ``block`` (default :func:`sim.compile.layout.activation_block`),
    except reads of the network input (kept planar); the compute instructions, their counts
    and sharing are the planar Binary's."""
    cfg = binary.cfg
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    block = activation_block(cfg) if block is None else block
    dma_stats = None
    if layout != "planar":
        binary, dma_stats = blocked_dma(binary, block)
    uses, dma, total = collect(binary, trace=trace)
    if layout != "planar":
        uses = [u if _graph_input_port(binary.prog, u) else
                replace(u, p=relayout(u.p, layout, block)) for u in uses]
    rows = defaultdict(lambda: dict(instructions=0, accesses=0, steps=0, cycles=0, bytes=0.0,
                                    es=Counter(), rs=Counter(), odd=0, align=Counter(),
                                    conflicts={P: 0 for P in BANKS}, shape=Counter(),
                                    cores=set(), words=0, w8=0))
    bl_cache, wl_cache = {}, {}
    # per unit and op class: engine steps (each instruction once) and words of B, C, OUT
    demand = defaultdict(lambda: dict(steps=0, words=0.0, by_buf=Counter(), seen=set()))
    for u in uses:
        p = u.p
        r = rows[(u.unit, _op_class(u.op), p.port, p.buf)]
        r["instructions"] += 1
        r["accesses"] += p.accesses
        r["steps"] += u.steps
        r["cycles"] += u.cycles
        r["bytes"] += p.accesses * p.used
        r["es"][p.elem_stride] += p.accesses
        r["rs"][p.row_stride] += p.accesses
        r["odd"] += p.accesses if p.elem_stride % 2 else 0
        r["shape"][(p.rows, p.elems, p.elem_bytes)] += p.accesses
        r["cores"].add(u.stream)
        a = p.addr
        r["align"]["64" if a % 64 == 0 else "16" if a % 16 == 0 else "8" if a % 8 == 0
                   else "other"] += 1
        for P in BANKS:
            kk = (p.rows, p.elems, p.row_stride, p.elem_stride, P)
            if kk not in bl_cache:
                bl_cache[kk] = bank_load(*kk)
            r["conflicts"][P] += p.accesses * bl_cache[kk]
        kw = (a % (8 * WORD), p.rows, p.elems, p.row_stride, p.elem_stride, p.elem_bytes)
        if kw not in wl_cache:
            wl_cache[kw] = word_load(*kw)
        r["words"] += p.accesses * wl_cache[kw][0]
        r["w8"] += p.accesses * wl_cache[kw][1]
        d = demand[(u.unit, _op_class(u.op))]
        if (u.stream, u.start) not in d["seen"]:
            d["seen"].add((u.stream, u.start))
            d["steps"] += u.steps
        if p.buf in GLOBAL_BUFS:
            d["words"] += p.accesses * wl_cache[kw][0]
            d["by_buf"][f"{p.port}.{p.buf}"] += p.accesses * wl_cache[kw][0]
    ports = []
    for (unit, opc, port, buf), r in sorted(rows.items()):
        n = r["accesses"]
        ports.append(dict(
            unit=unit, op=opc, port=port, buf=buf, local=buf not in GLOBAL_BUFS,
            instructions=r["instructions"], accesses=n,
            per_step=round(n / max(1, r["steps"]), 3), per_cycle=round(n / max(1, r["cycles"]), 3),
            shape=[list(s) for s, _ in r["shape"].most_common(1)][0],
            width_bytes=int(np.prod([list(s) for s, _ in r["shape"].most_common(1)][0])),
            used_bytes=round(r["bytes"] / max(1, n), 1),
            elem_stride=_top(r["es"]), odd_elem_stride=round(r["odd"] / max(1, n), 3),
            row_stride=_top(r["rs"], 3),
            base_align={k: v for k, v in sorted(r["align"].items())},
            cycles_per_access={P: round(r["conflicts"][P] / max(1, n), 2) for P in BANKS},
            words_per_access=round(r["words"] / max(1, n), 2),
            word_cycles_per_access=round(r["w8"] / max(1, n), 2),
            cores=len(r["cores"])))
    words = [dict(unit=un, op=op, steps=d["steps"], words=int(d["words"]),
                  words_per_step=round(d["words"] / max(1, d["steps"]), 2),
                  per_port={k: round(v / max(1, d["steps"]), 2)
                            for k, v in sorted(d["by_buf"].items())})
             for (un, op), d in sorted(demand.items())]
    sharing, distinct_bytes = _sharing(uses)
    dsum = defaultdict(lambda: dict(transfers=0, bytes=0))
    for d in dma:
        s = dsum[f"{d['op']} {d['buf']}"]
        s["transfers"] += 1
        s["bytes"] += d["bytes"]
    return dict(model=binary.prog.meta.get("name", "?"), config=cfg.describe(), cycles=total,
                layout=layout, block=block if layout != "planar" else 1,
                blocked_dma=dma_stats,
                fps=round(cfg.clock_mhz * 1e6 / max(1, total), 1),
                L=cfg.L, ports=ports, words=words, sharing=sharing,
                rates=_rates(uses, dma, total, distinct_bytes),
                dma=dict(dsum))


SPLITS = ("auto", "rows", "channels", "lc2", "lc4")


def compile_split(prog, cfg, split: str = "auto", *, fuse: bool = True, stem: str = "auto"):
    """:func:`sim.compile.compile` with the cores' split of every tile forced (a what-if for the
    buffer design, docs/global-buffers.md; not a compiler option): ``auto`` = the compiler's own
    choice, ``rows`` = every core takes all output channels of a tile and its own rows (weights
    and parameter records the same on every core), ``channels`` = every core takes its own
    output channels and all rows (inputs the same on every core), ``lc2`` / ``lc4`` = the
    compiler's choice among the splits into at most 2 / 4 channel groups (each a group of
    ``L/2`` / ``L/4`` cores that share the weights and split the rows). It replaces
    ``sim.compile.tiling.core_grids`` (the ``(lc, lr)`` candidates of conv and depthwise tiles)
    for the duration of the call. ``stem``: as for :func:`sim.compile.compile`."""
    from . import compile as cm
    from .compile import tiling
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "auto":
        return cm.compile(prog, cfg, fuse=fuse, stem=stem)
    orig = tiling.core_grids
    if split == "rows":
        tiling.core_grids = lambda L: iter([(1, L)])
    elif split == "channels":
        tiling.core_grids = lambda L: iter([(L, 1)])
    else:
        lcmax = int(split[2:])
        tiling.core_grids = lambda L: iter([(lc, lr) for lc, lr in orig(L) if lc <= lcmax
                                            and lc * lr == L])
    try:
        return cm.compile(prog, cfg, fuse=fuse, stem=stem)
    finally:
        tiling.core_grids = orig


def format_report(rep: dict, *, local: bool = False) -> str:
    """Plain-text tables of :func:`analyse`'s report (global buffers only unless ``local``)."""
    what = "" if rep.get("layout", "planar") == "planar" else \
        (f"; what-if: activations {rep['layout']}, B = {rep['block']}, the network input "
         f"planar (sim.access.relayout; LOAD/STORE by sim.access.blocked_dma: "
         f"{rep['blocked_dma'].get('converted', 0)} rewritten into "
         f"{rep['blocked_dma'].get('descriptors', 0)}, "
         f"{rep['blocked_dma'].get('unchanged', 0)} unchanged)")
    out = [f"{rep['model']} on {rep['config']}: {rep['cycles']} cycles ({rep['fps']} FPS, "
           f"sim.perf){what}", "",
           "ports (per unit, op class, port, buffer; strides: value:share of accesses; "
           "@P: worst-bank load of one access on P byte-interleaved banks; words: distinct "
           f"{WORD}-byte words per access, @8w: worst-bank load on 8 word-interleaved banks)"]
    hdr = (f"{'unit':4} {'op':8} {'port':4} {'buf':4} {'instrs':>6} {'accesses':>10} "
           f"{'/step':>6} {'/cycle':>6} {'shape':>9} {'used B':>6} {'elem stride':28} "
           f"{'odd':>5} {'row stride':18} {'base%64=0':>9} " + " ".join(f"@{P:<3}" for P in BANKS)
           + f" {'words':>5} {'@8w':>4}")
    out.append(hdr)
    for p in rep["ports"]:
        if p["local"] and not local:
            continue
        es = " ".join(f"{v}:{s:.2f}" for v, s in p["elem_stride"])
        rs = " ".join(f"{v}:{s:.2f}" for v, s in p["row_stride"])
        shape = "x".join(str(v) for v in p["shape"][:2]) + ("w" if p["shape"][2] > 1 else "")
        al = p["base_align"]
        a64 = al.get("64", 0) / max(1, sum(al.values()))
        out.append(f"{p['unit']:4} {p['op']:8} {p['port']:4} {p['buf']:4} {p['instructions']:6d} "
                   f"{p['accesses']:10d} {p['per_step']:6.3f} {p['per_cycle']:6.3f} {shape:>9} "
                   f"{p['used_bytes']:6.1f} {es[:28]:28} {p['odd_elem_stride']:5.2f} {rs[:18]:18} "
                   f"{a64:9.2f} " + " ".join(f"{p['cycles_per_access'][P]:<4}" for P in BANKS)
                   + f" {p['words_per_access']:5.2f} {p['word_cycles_per_access']:4.2f}")
    out += ["", f"{WORD}-byte words of B, C, OUT per engine step, per unit and op class (all "
            f"its ports; one core's unit alone needs >= words / banks cycles per step)",
            f"{'unit':4} {'op':8} {'steps':>10} {'words':>11} {'/step':>6}  per port /step"]
    for w in rep.get("words", []):
        if not w["steps"]:
            continue
        pp = " ".join(f"{k}:{v}" for k, v in w["per_port"].items())
        out.append(f"{w['unit']:4} {w['op']:8} {w['steps']:10d} {w['words']:11d} "
                   f"{w['words_per_step']:6.2f}  {pp}")
    out += ["", "sharing between cores (same address sequence, overlapping in time)",
            f"{'port':4} {'buf':4} {'accesses':>10} {'bcast':>6} {'shared':>6} {'skew':>6} {'rel':>5}  "
            "cores reading the same sequence, cores:share of accesses | readers (core units)"]
    for s in rep["sharing"]:
        if s["buf"] not in GLOBAL_BUFS and not local:
            continue
        cs = " ".join(f"{c}:{f:.2f}" for c, f in s["cores_same"])
        rd = " ".join(f"{c}:{f:.2f}" for c, f in s["readers_same"])
        out.append(f"{s['port']:4} {s['buf']:4} {s['accesses']:10d} "
                   f"{s['broadcast_factor']:6.2f} {s['shared_fraction']:6.2f} "
                   f"{s['start_skew_cycles']:6.0f} {s['start_skew_rel']:5.2f}  {cs} | {rd}")
    out += ["", f"per buffer, all {rep['L']} cores (bytes and accesses per cycle; p99 / max over "
            f"{WINDOW}-cycle windows)",
            f"{'buffer':10} {'B/cyc mean':>10} {'p99':>7} {'max':>7} {'acc/cyc':>8} {'p99':>6} "
            f"{'max':>6} {'distinct B/cyc':>14} {'DMA B/cyc':>9}"]
    for b, r in rep["rates"].items():
        if b.split(".")[0] not in GLOBAL_BUFS and not local:
            continue
        pb, pa = r["ports_bytes_per_cycle"], r["ports_accesses_per_cycle"]
        dist = r["distinct_bytes_per_cycle_mean"]
        out.append(f"{b:10} {pb['mean']:10.1f} {pb['p99']:7.1f} {pb['max']:7.1f} "
                   f"{pa['mean']:8.2f} {pa['p99']:6.1f} {pa['max']:6.1f} "
                   f"{'' if dist is None else f'{dist:.1f}':>14} "
                   f"{r['dma_bytes_per_cycle']['mean']:9.1f}")
    return "\n".join(out)


def to_json(rep: dict) -> str:
    return json.dumps(rep, default=lambda o: sorted(o) if isinstance(o, set) else str(o))
