"""The compiler: IntProgram + AccelConfig -> Binary (instruction streams + DRAM image).

Memory map
----------
Every tensor lives in DRAM, channel-major ``(C, H, W)``, one byte per element (int8 or uint8 as
the tensor's signedness says; 32-bit tensors, the logits, take 4 bytes). Concat outputs are
allocated once and their inputs are *aliases* into channel slices of it (channel-major layout
makes a channel concat contiguous), so a concat costs nothing. Each conv/linear/pool node has a
weight block (int8, the IntProgram layout ``(Cout, Cin/g, k, k)``) and a parameter block of one
32-byte record per output channel (int32: bias, mult_b, mult_c, offset, res_b, res_c, hsw_b,
hsw_c); attention nodes one 32-byte record per head (s_b, s_c, ks_b, ks_c, log2_offset,
log2_emin, out_b, out_c). The host LayerNorm reads a float64 block (eps, out_bits, signed,
in_signed, in_bits, gamma, beta, in_scale, out_scale).

On chip the global buffers B (activations), C (weights + params) and OUT are each split in two
slots used alternately (double buffering): while the cores compute tile ``t`` out of one slot,
the LD unit fills the other with tile ``t+1`` and the ST unit drains the other OUT slot.

Schedule
--------
Each node is cut into tiles: output-channel chunks (so that a chunk's weights fit a C slot)
times output-row blocks (so that the input rows with their halo fit a B slot and the outputs an
OUT slot). A tile is split over the ``L`` cores by output channels and/or rows (the factorisation
``Lc x Lr`` with the smallest estimated core time), and inside a core between the MAT and the
R-MAC engine (by output channels or rows, whichever balances better); depthwise tiles run on the
R-MAC in self-accumulation mode. All dependencies are explicit SIGNAL/WAIT events: LD -> compute
(tile loaded), compute -> ST (tile computed), ST -> compute (OUT slot free again), compute -> LD
(B/C slot free again), ST -> LD (a DRAM region read by a later layer has been written: RAW
through DRAM, tracked per tensor, channel range and row range, so layer ``i+1`` starts as soon as
the rows it needs are stored, which pipelines consecutive layers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import timing
from .config import AccelConfig, ConfigError
from .fileio import atomic_open
from .intprogram import IntProgram, IntProgramError, Node, check_digest, digest, read_npz
from .isa import (ACTS, BUFS, FORMATS, REG_LIMITS, REGS, Instr, IsaError, decode_stream,
                  encode_stream)

__all__ = ["CompileError", "Binary", "compile", "BINARY_VERSION", "PARAM_RECORD"]

BINARY_VERSION = 1
MAGIC = "trio-vit.binary"
PARAM_RECORD = 32       #: bytes per output channel (8 x int32) / per attention head
ALIGN = 64              #: DRAM alignment of every block (one AXI beat of the 4 HP ports)
TILES_TARGET = 4        #: aim for at least this many row tiles per layer (inter-layer overlap)
FUSED_TILES = 4         #: row tiles per fused chain at least (fewer: less halo recompute)
FUSED_TILES_S1 = 3       #: ... for stride-1 chains with a first PW (its halo rows are recomputed)
B_SLOTS = 3              #: buffer B slots: LD of tile t+1 || first PW of t || DW+PW2 of t-1
MIN_TILE_BYTES = 16384
RESIDENT_MAX = 64 * 1024  #: largest tensor passed between two layers through a B slot  #: ... but no smaller tiles than this (bytes loaded + stored)


class CompileError(ValueError):
    """The program cannot be mapped on this configuration (the message says why)."""


@dataclass
class Binary:
    """What the accelerator runs: per-stream instruction lists and the DRAM image.

    ``streams``: ``{"global": [...], "core0": [...], ...}`` of :class:`sim.isa.Instr`;
    ``tags``: the same shape, the index into ``layers`` of each instruction (-1: none);
    ``dram``: uint8 image; ``symbols``: name -> {addr, nbytes, kind, shape, signed, bytes_per};
    ``layers``: per IntProgram node a dict (name, kind, op, macs, ...).
    """
    cfg: AccelConfig
    prog: IntProgram
    streams: dict
    tags: dict
    dram: np.ndarray
    symbols: dict
    layers: list

    @property
    def n_instructions(self) -> int:
        return sum(len(s) for s in self.streams.values())

    def write_input(self, dram: np.ndarray, x) -> None:
        """Store the integer image ``x`` (already checked against the input tensor) at the input
        tensor's place in the DRAM image ``dram`` (one byte per element, two's complement)."""
        x = np.asarray(x, dtype=np.int64)
        sym = self.symbols[f"tensor:{self.prog.inputs[0]}"]
        dram[sym["addr"]:sym["addr"] + x.size] = (x.reshape(-1) & 0xFF).astype(np.uint8)

    def read_outputs(self, dram: np.ndarray) -> dict:
        """The program's outputs read back from the DRAM image ``dram``: ``{name: int64 array}``
        (8-bit tensors one byte per element, wider ones, the logits, little-endian int32)."""
        out = {}
        for name in self.prog.outputs:
            ot = self.prog.tensors[name]
            sym = self.symbols[f"tensor:{name}"]
            n = int(np.prod(ot.shape))
            raw = dram[sym["addr"]:sym["addr"] + n * (4 if ot.bits > 8 else 1)]
            if ot.bits > 8:
                v = raw.copy().view(np.int32).astype(np.int64)
            else:
                v = (raw.view(np.int8) if ot.signed else raw).astype(np.int64)
            out[name] = v.reshape(ot.shape)
        return out

    def save(self, path) -> Path:
        """Write ``path`` (.npz: encoded streams, tags, DRAM image, JSON manifest with the config,
        symbols and layers; the IntProgram is embedded as its own .npz bytes). Atomic."""
        path = Path(path)
        arrays = {}
        for name, ins in self.streams.items():
            arrays[f"s.{name}"] = encode_stream(ins)
            arrays[f"t.{name}"] = np.asarray(self.tags[name], dtype=np.int32)
        arrays["dram"] = self.dram
        arrays["program"] = np.frombuffer(self.prog.to_bytes(), dtype=np.uint8)
        manifest = {"format": MAGIC, "version": BINARY_VERSION, "config": self.cfg.to_dict(),
                    "streams": list(self.streams), "symbols": self.symbols, "layers": self.layers}
        manifest["sha256"] = digest(arrays, manifest)
        arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        with atomic_open(path) as f:
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path) -> "Binary":
        """Read a file written by :meth:`save`; every failure is a :class:`CompileError` of one
        line naming the file and the cause (damaged or truncated file, missing member, an
        instruction that does not decode, a DRAM image shorter than its symbols, ...)."""
        path = Path(path)
        m, arrays = read_npz(path, "Binary", CompileError)
        if m.get("format") != MAGIC:
            hint = " (an IntProgram: compile it with `python -m sim compile`)" \
                if m.get("format") == "trio-vit.intprogram" else ""
            raise CompileError(f"{path}: format {m.get('format')!r} is not {MAGIC!r}{hint}")
        if m.get("version") != BINARY_VERSION:
            raise CompileError(f"{path}: Binary version {m.get('version')} is not supported (this"
                               f" trio-vit reads version {BINARY_VERSION}); recompile")
        try:
            cfg = AccelConfig.from_dict(m["config"])
        except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise CompileError(f"{path}: bad config in the manifest ({type(e).__name__}: {e})"
                               ) from None
        try:
            prog_bytes = arrays["program"]
            streams = {n: decode_stream(_words(arrays[f"s.{n}"])) for n in m["streams"]}
            tags = {n: arrays[f"t.{n}"].tolist() for n in m["streams"]}
            dram, symbols, layers = arrays["dram"], m["symbols"], m["layers"]
            _check_image(cfg, streams, tags, dram, symbols, layers)
        except KeyError as e:
            raise CompileError(f"{path}: missing member {e}") from None
        except IsaError as e:
            raise CompileError(f"{path}: bad instruction ({e})") from None
        except (TypeError, ValueError, AttributeError, IndexError) as e:
            raise CompileError(f"{path}: inconsistent Binary ({type(e).__name__}: {e})") from None
        if prog_bytes.dtype != np.uint8 or prog_bytes.ndim != 1:
            raise CompileError(f"{path}: member 'program' is not a byte array")
        try:
            prog = IntProgram.from_bytes(prog_bytes.tobytes(), where="program")
        except IntProgramError as e:
            raise CompileError(f"{path}: embedded IntProgram: {str(e).split(': ', 1)[-1]}"
                               ) from None
        for name in prog.inputs + prog.outputs:
            if f"tensor:{name}" not in symbols:
                raise CompileError(f"{path}: no DRAM symbol for tensor {name!r}")
        check_digest(path, m, arrays, "Binary", CompileError)
        return cls(cfg, prog, streams, tags, dram, symbols, layers)


def _words(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint64 or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"an instruction stream is an (n, 2) uint64 array, got {a.dtype} {a.shape}")
    return a


def _check_image(cfg, streams, tags, dram, symbols, layers):
    """The parts of a loaded Binary the executors index blindly (raises ValueError/TypeError)."""
    if not isinstance(dram, np.ndarray) or dram.dtype != np.uint8 or dram.ndim != 1:
        raise ValueError(f"'dram' must be a 1-d uint8 array, got {getattr(dram, 'dtype', dram)}")
    want = ["global"] + [f"core{i}" for i in range(cfg.L)]
    if list(streams) != want:
        raise ValueError(f"streams {list(streams)} are not {want} (L = {cfg.L})")
    for n in streams:
        if len(tags[n]) != len(streams[n]):
            raise ValueError(f"stream {n}: {len(streams[n])} instructions but {len(tags[n])} tags")
    if not isinstance(symbols, dict) or not isinstance(layers, list):
        raise TypeError("symbols must be an object and layers a list")
    for name, sym in symbols.items():
        addr, nbytes = int(sym["addr"]), int(sym["nbytes"])
        if addr < 0 or nbytes < 0 or addr + nbytes > dram.size:
            raise ValueError(f"the DRAM image is {dram.size} bytes, shorter than symbol {name!r}"
                             f" needs ({addr} + {nbytes}): truncated 'dram' array")


# -- helpers -------------------------------------------------------------------------------------

def _cdiv(a, b):
    return -(-a // b)


def _align(n, a=ALIGN):
    return _cdiv(n, a) * a


def _elem_bytes(t) -> int:
    return 1 if t.bits <= 8 else 4


def _shape3(shape):
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


def conv_cycles(cfg: AccelConfig, engine: str, *, K: int, nco: int, npix: int,
                groups: int = 1, k: int = 1) -> int:
    """Busy cycles of a (grouped) conv / matmul tile on one engine in down-forward mode: the
    engine takes ``lanes_in`` reduction elements and ``lanes_out`` output channels per cycle
    (MAT: T x S, R-MAC: N x M), one output pixel at a time. ``K`` is the reduction length per
    group (``Cin/g * k * k``), ``nco`` the output channels of the tile.

    A k x k kernel (``k > 1``) is reduced tap by tap (the core's im2col order, docs/hw-core.md):
    per output pixel ``k*k`` taps of ``ceil((Cin/g) / lanes_in)`` steps each, which is more than
    ``ceil(K / lanes_in)`` when ``Cin/g`` is not a multiple of ``lanes_in`` (the stem: 3
    channels, 9 steps per pixel instead of 4 at width 8)."""
    tin, sout = (cfg.T, cfg.S) if engine == "MAT" else (cfg.N, cfg.M)
    if k > 1:
        if K % (k * k):
            raise ValueError(f"K={K} is not Cin/g * {k}*{k}")
        per_pixel = k * k * _cdiv(K // (k * k), tin)
    else:
        per_pixel = _cdiv(K, tin)
    if groups > 1:
        return groups * per_pixel * _cdiv(nco // groups, sout) * npix
    return per_pixel * _cdiv(nco, sout) * npix


def dw_cycles(cfg: AccelConfig, *, nch: int, ho: int, wo: int, k: int) -> int:
    """R-MAC self-accumulation: N channels (R-MACs of a lane) x M consecutive output pixels of a
    row (the M lanes, weight broadcast) per pass; a pass takes k*k cycles (one tap per cycle,
    stride 2 by the odd/even split of the input row, same count)."""
    return _cdiv(nch, cfg.N) * ho * _cdiv(wo, cfg.M) * k * k


def _split(n, parts, gran=1):
    """Split range(n) into ``parts`` contiguous pieces, sizes multiples of ``gran`` (last ragged);
    empty pieces dropped."""
    units = _cdiv(n, gran)
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


def _core_grids(L: int):
    """The ``(lc, lr)`` ways of splitting a tile over ``L`` cores: ``lc`` channel parts times
    ``lr`` row parts with ``lc * lr == L``, plus all-channels ``(L, 1)``."""
    for lc in range(1, L + 1):
        lr = L // lc
        if lc * lr == L or lc == L:
            yield lc, lr


def _best_dw_split(cfg: AccelConfig, *, nch: int, nrows: int, wo: int, k: int):
    """Channel and row pieces of a depthwise tile over the cores, the split whose slowest core
    (:func:`dw_cycles`) finishes first (the first such split on ties)."""
    best = None
    for lc, lr in _core_grids(cfg.L):
        cs, rs = _split(nch, lc, cfg.N), _split(nrows, lr)
        t = max(dw_cycles(cfg, nch=c1 - c0, ho=r1 - r0, wo=wo, k=k)
                for c0, c1 in cs for r0, r1 in rs)
        if best is None or t < best[0]:
            best = (t, cs, rs)
    return best[1], best[2]


# -- emitter -------------------------------------------------------------------------------------

#: op -> {field: (lo, hi)}: the value ranges of the instruction fields (sim.isa.FORMATS)
_FIELD_RANGES = {op: {n: ((-(1 << (b - 1)), (1 << (b - 1)) - 1) if sg else (0, (1 << b) - 1))
                      for n, b, sg in fields} for op, (_, _, fields) in FORMATS.items()}


class _Em:
    def __init__(self, cfg):
        self.cfg = cfg
        self.names = ["global"] + [f"core{i}" for i in range(cfg.L)]
        self.streams = {n: [] for n in self.names}
        self.tags = {n: [] for n in self.names}
        self.layer = -1
        self.nsem = 0
        self.regs = {}

    def emit(self, stream, op, **f):
        if op in ("LOAD", "STORE"):
            f.setdefault("core", 0)         # only a LOAD into buffer A names a core
        for name, (lo, hi) in _FIELD_RANGES[op].items():
            v = f.get(name, 0)
            if not lo <= v <= hi:
                raise CompileError(f"{op} in {stream}: field {name} = {v} does not fit the"
                                   f" instruction word ([{lo}, {hi}], sim.isa.FORMATS)"
                                   + (f" (layer {self.layer})" if self.layer >= 0 else ""))
        for reg, (lo, hi) in REG_LIMITS.get(op, {}).items():
            v = self.regs.get((stream, FORMATS[op][1], reg))
            if v is not None and not lo <= v <= hi:
                raise CompileError(f"{op} in {stream} needs {reg} in {lo}..{hi} (the core "
                                   f"units' range), got {v}")
        self.streams[stream].append(Instr(op, f))
        self.tags[stream].append(self.layer)

    def sem(self):
        s = self.nsem
        self.nsem += 1
        if self.nsem > 1 << 16:
            raise CompileError("more than 65536 synchronisation events; the 16-bit semaphore"
                               " field overflows (use bigger buffers or a smaller model)")
        return s

    def signal(self, stream, unit, sem, count=1):
        self.emit(stream, "SIGNAL", unit=_unit(unit), sem=sem, count=count)

    def wait(self, stream, unit, sem, count=1):
        if count > 0:
            self.emit(stream, "WAIT", unit=_unit(unit), sem=sem, count=count)

    def setr(self, stream, unit, **regs):
        for k, v in regs.items():
            key = (stream, unit, k)
            if self.regs.get(key) != v:
                self.emit(stream, "SETR", unit=_unit(unit), reg=REGS[k], value=int(v))
                self.regs[key] = v


def _unit(u):
    from .isa import UNITS
    return UNITS[u]


class _Slots:
    """Alternating slots of one global buffer; ``busy[i]`` lists the (sem, count) events that
    mean "slot i is free again"."""

    def __init__(self, size, n=2):
        self.size = size // n
        self.base = [i * self.size for i in range(n)]
        self.busy = [[] for _ in range(n)]
        self.i = 0

    def next(self):
        i = self.i
        self.i = (i + 1) % len(self.base)
        return i


# -- the compiler --------------------------------------------------------------------------------

class _Compiler:
    def __init__(self, prog: IntProgram, cfg: AccelConfig, fuse: bool = True):
        self.p, self.cfg, self.fuse = prog.validate(), cfg, fuse
        self.em = _Em(cfg)
        self.B = _Slots(cfg.buf_b_bytes, B_SLOTS)
        self.C = _Slots(cfg.buf_c_bytes)
        self.O = _Slots(cfg.buf_out_bytes)
        self.blocks = []          # (addr, bytes)
        self.symbols = {}
        self.size = 0
        self.stores = {}          # base tensor -> [(c0, c1, r0, r1, sem)]
        self.layers = []
        self.aux_free = {}        # (core stream, aux half) -> event "ATT_OUT done reading it"
        self.a_free = {}          # (core stream, buffer A slot) -> event "KV and KSUM read it"

    # DRAM ------------------------------------------------------------------------------------
    def alloc(self, name, nbytes, kind, data=None, **meta):
        addr = _align(self.size)
        self.size = addr + nbytes
        if self.size >= 1 << 32:
            raise CompileError("DRAM image exceeds the 32-bit address space")
        self.symbols[name] = dict(addr=addr, nbytes=int(nbytes), kind=kind, **meta)
        if data is not None:
            b = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            assert b.size == nbytes, (name, b.size, nbytes)
            self.blocks.append((addr, b))
        return addr

    def layout_tensors(self):
        p = self.p
        self.alias = {}   # tensor -> (base, channel offset)
        for n in reversed(p.nodes):
            if n.op == "concat":
                base, off0 = self.alias.get(n.output, (n.output, 0))
                off = off0
                for t in n.inputs:
                    if t in self.alias or t in p.inputs:
                        raise CompileError(f"tensor {t!r} is concatenated twice or is a graph"
                                           " input; not supported")
                    self.alias[t] = (base, off)
                    off += p.tensors[t].shape[0]
        for name, t in p.tensors.items():
            if name in self.alias:
                continue
            c, h, w = _shape3(t.shape)
            self.alloc(f"tensor:{name}", c * h * w * _elem_bytes(t), "tensor",
                       shape=list(t.shape), signed=bool(t.signed), bits=t.bits)
        for name, (base, off) in self.alias.items():
            t, bt = p.tensors[name], p.tensors[base]
            c, h, w = _shape3(bt.shape)
            b = self.symbols[f"tensor:{base}"]
            self.symbols[f"tensor:{name}"] = dict(
                addr=b["addr"] + off * h * w * _elem_bytes(bt), nbytes=int(np.prod(t.shape)),
                kind="alias", base=base, channel_offset=off, shape=list(t.shape),
                signed=bool(t.signed), bits=t.bits)

    def taddr(self, name):
        return self.symbols[f"tensor:{name}"]["addr"]

    def base_of(self, name):
        return self.alias.get(name, (name, 0))

    # sync through DRAM -----------------------------------------------------------------------
    def flush(self):
        """Emit the deferred second half of the last fused tile (see :meth:`fused`)."""
        if self.pending is not None:
            p, self.pending = self.pending, None
            p[0]()

    def wait_stored(self, tensor, c0, c1, r0, r1):
        base, off = self.base_of(tensor)
        if self.pending is not None:
            pb, pc0, pc1, pr0, pr1 = self.pending[1]
            if pb == base and pc0 < off + c1 and off + c0 < pc1 and pr0 < r1 and r0 < pr1:
                self.flush()      # we need rows the deferred tile has not even computed yet
        for (a0, a1, b0, b1, sem) in self.stores.get(base, []):
            if a0 < off + c1 and off + c0 < a1 and b0 < r1 and r0 < b1:
                self.em.wait("global", "LD", sem, 1)

    def record_store(self, tensor, c0, c1, r0, r1, sem):
        base, off = self.base_of(tensor)
        self.stores.setdefault(base, []).append((off + c0, off + c1, r0, r1, sem))

    # params ----------------------------------------------------------------------------------
    def param_block(self, node: Node, cout):
        rec = np.zeros((cout, 8), dtype=np.int32)
        e = node.epilogue
        if "bias" in node.params:
            rec[:, 0] = np.asarray(node.params["bias"], dtype=np.int64)
        if e is not None:
            bc = lambda a: np.broadcast_to(np.asarray(a, dtype=np.int64), (cout,))
            rec[:, 1], rec[:, 2], rec[:, 3] = bc(e.mult.b), bc(e.mult.c), bc(e.offset)
            if e.res_mult is not None:
                rec[:, 4], rec[:, 5] = bc(e.res_mult.b), bc(e.res_mult.c)
            if e.hswish_mult is not None:
                rec[:, 6], rec[:, 7] = bc(e.hswish_mult.b), bc(e.hswish_mult.c)
        return rec

    # main ------------------------------------------------------------------------------------
    def run(self) -> Binary:
        self.layout_tensors()
        self.onchip = set()
        self.pending = None
        chains = self.find_chains() if self.fuse else {}
        self.resident = {}
        self.keep = self.find_resident(chains) if self.fuse else {}
        fused_into = {}
        for li, n in enumerate(self.p.nodes):
            self.em.layer = li
            info = dict(name=n.name, kind=n.kind, op=n.op, tiles=0)
            self.layers.append(info)
            info["on_chip"] = n.output in self.onchip
            if n.name in fused_into:
                info["fused_into"] = fused_into[n.name]
                continue
            if n.name not in chains and n.op != "concat":
                self.flush()
                self.em.layer = li          # (the flushed tile tagged its own layers)
            if n.name in chains:
                chain = chains[n.name]
                for m in chain[1:]:
                    fused_into[m.name] = n.name
                self.onchip.update(m.output for m in chain[:-1])
                info["on_chip"] = True
                self.fused(chain, li, info)
            elif n.op == "conv" and n.kind == "depthwise":
                self.dw(n, info)
            elif n.op in ("conv", "linear"):
                self.conv(n, info)
            elif n.op == "linear_attention":
                self.attention(n, info)
            elif n.op == "global_avgpool":
                self.pool(n, info)
            elif n.op == "layernorm":
                self.host_ln(n, info)
            elif n.op == "concat":
                pass
            else:
                raise CompileError(f"node {n.name!r}: op {n.op!r} has no mapping")
        self.flush()
        for name in list(self.resident):       # (never happens: every kept tensor is consumed)
            self.spill(name)
        for s in self.em.names:
            for u in (("LD", "ST", "HOST") if s == "global" else ("RMAC", "MAT", "AUX")):
                self.em.emit(s, "HALT", unit=_unit(u))
        dram = np.zeros(_align(self.size), dtype=np.uint8)
        for addr, b in self.blocks:
            dram[addr:addr + b.size] = b
        return Binary(self.cfg, self.p, self.em.streams, self.em.tags, dram, self.symbols,
                      self.layers)

    # generic tile machinery ------------------------------------------------------------------
    def load_weights(self, slot_c, blocks):
        """LD the given (dram_addr, nbytes, buf_off) blocks into C slot; returns the ready sem."""
        em = self.em
        for sem, cnt in self.C.busy[slot_c]:
            em.wait("global", "LD", sem, cnt)
        self.C.busy[slot_c] = []
        base = self.C.base[slot_c]
        for dram, nbytes, off in blocks:
            for a in range(0, nbytes, (1 << 20) - ALIGN):       # length field is 20 bits
                ln = min(nbytes - a, (1 << 20) - ALIGN)
                em.emit("global", "LOAD", buf=BUFS["C"], dram_addr=dram + a,
                        buf_addr=base + off + a, count=1, length=ln, stride=0)
        sem = em.sem()
        em.signal("global", "LD", sem)
        return sem

    def dma_rows(self, op, buf, buf_addr, dram, count, length, stride):
        """LOAD/STORE ``count`` chunks of ``length`` bytes, DRAM stride ``stride``."""
        if count > 1 and stride == length:           # contiguous: one chunk
            count, length, stride = 1, count * length, 0
        if count == 1 and length >= 1 << 20:
            for a in range(0, length, (1 << 20) - ALIGN):
                ln = min(length - a, (1 << 20) - ALIGN)
                self.em.emit("global", op, buf=BUFS[buf], buf_addr=buf_addr + a,
                             dram_addr=dram + a, count=1, length=ln, stride=0)
            return
        for c0 in range(0, count, 65535):
            n = min(count - c0, 65535)
            self.em.emit("global", op, buf=BUFS[buf],
                         buf_addr=buf_addr + c0 * length, dram_addr=dram + c0 * stride,
                         count=n, length=length, stride=stride)

    def begin_tile(self, slot_b):
        for sem, cnt in self.B.busy[slot_b]:
            self.em.wait("global", "LD", sem, cnt)
        self.B.busy[slot_b] = []

    def finish_tile(self, slot_b, slot_o, writers, store):
        """writers: list of (stream, unit) that SIGNAL done; store: callable emitting STOREs."""
        em = self.em
        done = em.sem()
        for s, u in writers:
            em.signal(s, u, done)
        self.B.busy[slot_b].append((done, len(writers)))
        em.wait("global", "ST", done, len(writers))
        store()
        stored = em.sem()
        em.signal("global", "ST", stored)
        self.O.busy[slot_o] = [(stored, 1)]
        return done, stored

    def wait_out_slot(self, stream, unit, slot_o, seen):
        if (stream, unit) not in seen:
            seen.add((stream, unit))
            for sem, cnt in self.O.busy[slot_o]:
                self.em.wait(stream, unit, sem, cnt)

    # conv / linear -----------------------------------------------------------------------------
    def conv(self, n: Node, info):
        cfg, p, em = self.cfg, self.p, self.em
        xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
        lin = n.op == "linear"
        cin, H, W = _shape3(xt.shape)
        cout, Ho, Wo = _shape3(yt.shape)
        if not lin and int(n.attrs["kernel"]) == 1 and int(n.attrs["stride"]) == 1 \
                and int(n.attrs["padding"]) == 0:
            # a 1x1 conv does not care about rows: view (C, H, W) as (C, H*W, 1) so that tiles
            # and cores split the pixels at single-pixel granularity
            H, W, Ho, Wo = H * W, 1, Ho * Wo, 1
        if lin:
            k = s = 1
            pad, g = 0, 1
        else:
            k, s, pad, g = (int(n.attrs[a]) for a in ("kernel", "stride", "padding", "groups"))
        cin_g, cout_g = cin // g, cout // g
        K = cin_g * k * k
        ob = _elem_bytes(yt)
        e = n.epilogue
        res = e.residual if e is not None else None
        # DRAM blocks
        w = np.asarray(n.params["weight"], dtype=np.int8).reshape(cout, K)
        waddr = self.alloc(f"weight:{n.name}", w.size, "weight", w)
        paddr = self.alloc(f"param:{n.name}", cout * PARAM_RECORD, "param",
                           self.param_block(n, cout))
        # co chunk
        per_co = K + PARAM_RECORD
        chunk = min(cout, 4095, (self.C.size - ALIGN) // per_co)
        gran = cout_g if g > 1 else (8 if cout >= 8 else 1)
        if chunk < cout:
            if g == 1:                 # chunks of 8 lanes x a power-of-two number of cores
                gran = next((m for m in (128, 64, 32, 16, 8) if m <= chunk), gran)
            chunk = chunk // gran * gran
            if chunk >= gran:          # equal chunks, multiples of that granularity
                nch = _cdiv(cout, chunk)
                chunk = min(chunk, _cdiv(_cdiv(cout, nch), gran) * gran)
        if chunk < max(1, cout_g if g > 1 else 1):
            raise CompileError(f"{n.name}: one filter ({per_co} bytes) does not fit a C slot"
                               f" ({self.C.size} bytes); enlarge buf_c_bytes")
        # rows per tile
        def need(nr):
            rows_in = min(H, (nr - 1) * s + k)
            b = cin * rows_in * W + (chunk * nr * Wo if res else 0)
            return b <= self.B.size and (chunk * nr * Wo * ob <= self.O.size or (
                n.output in self.keep and cout * Ho * Wo <= self.B.size))
        nr = Ho
        while nr > 1 and not need(nr):
            nr -= 1
        if not need(nr):
            raise CompileError(f"{n.name}: one output row does not fit the B/OUT slots"
                               f" (B slot {self.B.size} bytes, OUT slot {self.O.size} bytes)")
        if w.size > cin * H * W:       # weight-dominated layer: few, whole tiles
            nr = min(nr, 4095)
        else:
            nr = self.tile_rows(nr, Ho, cin * W * s + chunk * Wo)
        x_signed = int(p.tensors[n.inputs[0]].signed)
        regs = dict(CIN=cin_g, WIN=W, WOUT=Wo, KERNEL=k, STRIDE=s, PAD_L=pad, PAD_R=pad,
                    ACT=ACTS[e.act] if e else 0, OBITS=yt.bits, OSIGNED=int(yt.signed),
                    MIDBITS=e.mid_bits if e else 16, THREE=e.three if e else 0,
                    LINEAR=int(lin), NOEPI=int(e is None), XSIGNED=x_signed,
                    RSIGNED=int(p.tensors[res].signed) if res else 1, XBUF=BUFS["B"])
        # one row tile but several weight chunks: load the input (and the whole residual)
        # once and keep it in its B slot for all chunks
        rin = None
        if n.inputs[0] in self.resident:
            ok = (cin * H * W + (cout * Ho * Wo if res else 0) <= self.B.size
                  and (n.output in self.keep or chunk * Ho * Wo * ob <= self.O.size))
            if ok:
                rin = self.resident.pop(n.inputs[0])
                nr = Ho
            else:
                self.spill(n.inputs[0])
        rout = None
        if n.output in self.keep:
            if nr >= Ho and cout * Ho * Wo <= self.B.size:
                rs, rs_busy = self.take_resident_slot()
                rout = dict(slot=rs, base=self.B.base[rs], events=[], busy=rs_busy)
                info["on_chip"] = True
            else:
                self.keep.pop(n.output, None)
        shared = rin is not None or (nr >= Ho and cout > chunk and cin * H * W +
                                     (cout * Ho * Wo if res else 0) <= self.B.size)
        pre = None
        if shared:
            # the first chunk's weights do not depend on the previous layer: load them first
            sc0 = self.C.next()
            pre = (sc0, self.load_weights(sc0, [(waddr, chunk * K, 0),
                                                (paddr, chunk * PARAM_RECORD, _align(chunk * K))]))
            if rin is not None:                 # the input is already in a B slot
                sb, bbase = rin["slot"], rin["base"]
                xw = list(rin["events"])
                rall = bbase + cin * H * W
                if res:
                    for sem, cnt in rin["busy"]:
                        em.wait("global", "LD", sem, cnt)
                    self.wait_stored(res, 0, cout, 0, Ho * Wo)
                    self.dma_rows("LOAD", "B", rall, self.taddr(res), cout, Ho * Wo, Ho * Wo)
                    xsem = em.sem()
                    em.signal("global", "LD", xsem)
                    xw.append((xsem, 1))
            else:
                sb = self.B.next()
                self.begin_tile(sb)
                self.wait_stored(n.inputs[0], 0, cin, 0, H * W)
                bbase = self.B.base[sb]
                self.dma_rows("LOAD", "B", bbase, self.taddr(n.inputs[0]), cin, H * W, H * W)
                rall = bbase + cin * H * W
                if res:
                    self.wait_stored(res, 0, cout, 0, Ho * Wo)
                    self.dma_rows("LOAD", "B", rall, self.taddr(res), cout, Ho * Wo, Ho * Wo)
                xsem = em.sem()
                em.signal("global", "LD", xsem)
                xw = [(xsem, 1)]
        for c0 in range(0, cout, chunk):
            c1 = min(cout, c0 + chunk)
            nco = c1 - c0
            if c0 == 0 and pre is not None:
                sc, wsem = pre
            else:
                sc = self.C.next()
                wsem = self.load_weights(sc, [(waddr + c0 * K, nco * K, 0),
                                              (paddr + c0 * PARAM_RECORD, nco * PARAM_RECORD,
                                               _align(chunk * K))])
            wbase, pbase = self.C.base[sc], self.C.base[sc] + _align(chunk * K)
            chunk_done = []
            for r0 in range(0, Ho, nr):
                r1 = min(Ho, r0 + nr)
                info["tiles"] += 1
                in_lo, in_hi = r0 * s - pad, (r1 - 1) * s - pad + k
                a, b = max(in_lo, 0), min(in_hi, H)
                so = self.O.next() if rout is None else None
                if shared:
                    rbase = rall + c0 * Ho * Wo
                else:
                    sb = self.B.next()
                    self.begin_tile(sb)
                    self.wait_stored(n.inputs[0], 0, cin, a * W, b * W)
                    bbase = self.B.base[sb]
                    self.dma_rows("LOAD", "B", bbase, self.taddr(n.inputs[0]) + a * W, cin,
                                  (b - a) * W, H * W)
                    rbase = bbase + cin * (b - a) * W
                    if res:
                        self.wait_stored(res, c0, c1, r0 * Wo, r1 * Wo)
                        self.dma_rows("LOAD", "B", rbase,
                                      self.taddr(res) + c0 * Ho * Wo + r0 * Wo,
                                      nco, (r1 - r0) * Wo, Ho * Wo)
                    xsem = em.sem()
                    em.signal("global", "LD", xsem)
                    xw = [(xsem, 1)]
                if rout is None:
                    obase, obuf = self.O.base[so], BUFS["OUT"]
                else:
                    obase, obuf = rout["base"] + c0 * Ho * Wo, BUFS["B"]
                tnr = r1 - r0
                writers, seen = [], set()
                for core, eng, (ca, cb), (ra, rb) in self.plan_conv(nco, r1 - r0, Wo, K, g,
                                                                    cout_g, k=k):
                    st, unit = f"core{core}", eng
                    op = "CONV_MAT" if eng == "MAT" else "CONV_RDF"
                    for sem, cnt in xw:
                        em.wait(st, unit, sem, cnt)
                    em.wait(st, unit, wsem, 1)
                    if rout is None:
                        self.wait_out_slot(st, unit, so, seen)
                    else:
                        for sem, cnt in rout["busy"]:
                            em.wait(st, unit, sem, cnt)
                    gra, grb = r0 + ra, r0 + rb
                    lo, hi = gra * s - pad, (grb - 1) * s - pad + k
                    aa, bb = max(lo, 0), min(hi, H)
                    ngr = (cb - ca) // cout_g if g > 1 else 1
                    ci0 = (c0 + ca) // cout_g * cin_g if g > 1 else 0
                    r = dict(regs, GROUPS=ngr, XSTRIDE=(b - a) * W, OSTRIDE=tnr * Wo * ob,
                             RSTRIDE=tnr * Wo,
                             RES_ADDR=(rbase + (ca * tnr + ra) * Wo) if res else -1)
                    em.setr(st, unit, **r)
                    em.emit(st, op, x_addr=bbase + ci0 * (b - a) * W + (aa - a) * W,
                            w_addr=wbase + ca * K, p_addr=pbase + ca * PARAM_RECORD,
                            o_addr=obase + (ca * tnr + ra) * Wo * ob, nco=cb - ca, hin=bb - aa,
                            ho=rb - ra, pad_t=aa - lo, pad_b=hi - bb, obuf=obuf)
                    writers.append((st, unit))
                if rout is not None:
                    done = self.finish_resident(sb, writers)
                    rout["events"].append((done, len(writers)))
                    if self.keep.get(n.output):
                        self.store_resident(n.output, rout, c0, c1, done, len(writers))
                else:
                    ydram = self.taddr(n.output) + (c0 * Ho + r0) * Wo * ob
                    done, stored = self.finish_tile(
                        sb, so, writers,
                        lambda: self.dma_rows("STORE", "OUT", obase, ydram, nco, tnr * Wo * ob,
                                              Ho * Wo * ob))
                    self.record_store(n.output, c0, c1, r0 * Wo, r1 * Wo, stored)
                chunk_done.append((done, len(writers)))
            self.C.busy[sc] = chunk_done
        if rout is not None:
            self.resident[n.output] = rout

    def finish_resident(self, slot_b, writers):
        done = self.em.sem()
        for st, u in writers:
            self.em.signal(st, u, done)
        self.B.busy[slot_b].append((done, len(writers)))
        return done

    # fused chains (inter-layer pipeline) ----------------------------------------------------
    def chain_wbytes(self, chain):
        tot = 0
        for m in chain:
            w = np.asarray(m.params["weight"])
            tot += _align(w.size) + _align(w.shape[0] * PARAM_RECORD)
        return tot

    def find_chains(self):
        """{first node name: [PW1?, DW, PW2]}: a depthwise conv, the pointwise conv that alone
        reads its output and, when it alone feeds the DW, the pointwise conv producing its input;
        all weights must fit one C slot. The intermediates then never leave the chip."""
        p = self.p
        cons = {}
        for n in p.nodes:
            for t in n.inputs + ([n.epilogue.residual] if n.epilogue and n.epilogue.residual
                                 else []):
                cons.setdefault(t, []).append(n)
        outs = set(p.outputs)
        pos = {n.name: i for i, n in enumerate(p.nodes)}

        def private(t, consumer):
            return ([c.name for c in cons.get(t, [])] == [consumer.name] and t not in outs
                    and t not in self.alias)
        chains = {}
        for dw in p.nodes:
            if dw.op != "conv" or dw.kind != "depthwise":
                continue
            qs = cons.get(dw.output, [])
            if len(qs) != 1:
                continue
            q = qs[0]
            if (q.op != "conv" or int(q.attrs["kernel"]) != 1 or int(q.attrs["stride"]) != 1
                    or int(q.attrs["padding"]) != 0 or q.inputs != [dw.output]
                    or not private(dw.output, q)):
                continue
            chain = [dw, q]
            pn = p.node_producing(dw.inputs[0])
            if (pn is not None and pn.op == "conv" and pn.kind == "pointwise"
                    and int(pn.attrs["stride"]) == 1 and pn.epilogue.residual is None
                    and private(dw.inputs[0], dw) and pn.name not in chains):
                chain = [pn, dw, q]
            if self.chain_wbytes(chain) > self.C.size - ALIGN and len(chain) == 3:
                chain = chain[1:]
            if self.chain_wbytes(chain) > self.C.size - ALIGN:
                continue
            res = q.epilogue.residual
            if res is not None:
                rp = p.node_producing(res)
                if rp is not None and pos[rp.name] >= pos[chain[0].name]:
                    continue
            chains[chain[0].name] = chain
        return chains

    def find_resident(self, chains):
        """Tensors passed between two consecutive unfused layers (PW -> DW or DW -> PW, the
        MBConvs whose weights are too big to fuse) through a B slot instead of DRAM."""
        p = self.p
        cons = {}
        for n in p.nodes:
            for t in n.inputs + ([n.epilogue.residual] if n.epilogue and n.epilogue.residual
                                 else []):
                cons.setdefault(t, []).append(n.name)
        infused = {m.name for c in chains.values() for m in c}
        keep = {}                 # tensor -> also store it to DRAM (other readers)?
        for a, b in zip(p.nodes, p.nodes[1:]):
            if a.name in infused or b.name in infused or a.op != "conv" or b.op != "conv":
                continue
            if a.kind not in ("pointwise", "depthwise") or b.kind not in ("pointwise",
                                                                          "depthwise"):
                continue
            if b.inputs != [a.output]:
                continue
            t = p.tensors[a.output]
            rb = b.epilogue.residual
            need = int(np.prod(t.shape)) + (int(np.prod(p.tensors[rb].shape)) if rb else 0)
            if (a.output in self.alias or int(np.prod(t.shape)) > RESIDENT_MAX or t.bits > 8
                    or need > self.B.size):
                continue
            keep[a.output] = cons.get(a.output) != [b.name] or a.output in p.outputs
        return keep

    def store_resident(self, name, rout, c0, c1, done, nwriters):
        """A resident tensor that other layers read later is also stored (from B)."""
        em = self.em
        _, h, w = self.p.tensors[name].shape
        em.wait("global", "ST", done, nwriters)
        self.dma_rows("STORE", "B", rout["base"] + c0 * h * w, self.taddr(name) + c0 * h * w,
                      c1 - c0, h * w, h * w)
        st = em.sem()
        em.signal("global", "ST", st)
        self.record_store(name, c0, c1, 0, h * w, st)
        self.B.busy[rout["slot"]].append((st, 1))

    def take_resident_slot(self):
        rs = self.B.next()
        busy, self.B.busy[rs] = self.B.busy[rs], []
        return rs, busy

    def spill(self, name):
        """A resident tensor whose consumer cannot read it from B: store it to DRAM."""
        r = self.resident.pop(name)
        em = self.em
        t = self.p.tensors[name]
        c, h, w = t.shape
        for sem, cnt in r["events"]:
            em.wait("global", "ST", sem, cnt)
        self.dma_rows("STORE", "B", r["base"], self.taddr(name), c, h * w, h * w)
        st = em.sem()
        em.signal("global", "ST", st)
        self.record_store(name, 0, c, 0, h * w, st)
        self.B.busy[r["slot"]] = self.B.busy[r["slot"]] + r["busy"] + r["events"] + [(st, 1)]

    def emit_pw(self, tasks, *, waits, xbase, xstride, obase, ostride, obuf, wbase, pbase, K,
                cin_g, cout_g, g, regs, res_base=None, rstride=0, slot_o=None, seen=None):
        """Emit a pointwise phase whose tasks split pixels (flattened) and output channels."""
        em, writers = self.em, []
        for core, eng, (ca, cb), (pa, pb) in tasks:
            st, unit = f"core{core}", eng
            for sem, cnt in waits:
                em.wait(st, unit, sem, cnt)
            if slot_o is not None:
                self.wait_out_slot(st, unit, slot_o, seen)
            ngr = (cb - ca) // cout_g if g > 1 else 1
            ci0 = ca // cout_g * cin_g if g > 1 else 0
            em.setr(st, unit, **dict(regs, CIN=cin_g, GROUPS=ngr, WIN=1, WOUT=1, KERNEL=1,
                                     STRIDE=1, PAD_L=0, PAD_R=0, XSTRIDE=xstride,
                                     OSTRIDE=ostride, RSTRIDE=rstride, LINEAR=0, NOEPI=0,
                                     XBUF=BUFS["B"],
                                     RES_ADDR=(res_base + ca * rstride + pa)
                                     if res_base is not None else -1))
            em.emit(st, "CONV_MAT" if eng == "MAT" else "CONV_RDF",
                    x_addr=xbase + ci0 * xstride + pa, w_addr=wbase + ca * K,
                    p_addr=pbase + ca * PARAM_RECORD, o_addr=obase + ca * ostride + pa,
                    nco=cb - ca, hin=pb - pa, ho=pb - pa, pad_t=0, pad_b=0, obuf=obuf)
            writers.append((st, unit))
        return writers

    def epi_regs(self, n):
        e, yt = n.epilogue, self.p.tensors[n.output]
        res = e.residual
        return dict(ACT=ACTS[e.act], OBITS=yt.bits, OSIGNED=int(yt.signed), MIDBITS=e.mid_bits,
                    THREE=e.three, XSIGNED=int(self.p.tensors[n.inputs[0]].signed),
                    RSIGNED=int(self.p.tensors[res].signed) if res else 1)

    def fused(self, chain, li0, info):
        cfg, p, em = self.cfg, self.p, self.em
        pn = chain[0] if len(chain) == 3 else None
        dw, q = chain[-2], chain[-1]
        li = {m.name: li0 + i for i, m in enumerate(p.nodes[li0:]) if m in chain}
        et = p.tensors[dw.inputs[0]]
        E, H, W = et.shape
        _, Ho, Wo = p.tensors[dw.output].shape
        k, s, pad = (int(dw.attrs[a]) for a in ("kernel", "stride", "padding"))
        Cq = p.tensors[q.output].shape[0]
        gq = int(q.attrs["groups"])
        res = q.epilogue.residual
        xin = pn.inputs[0] if pn else dw.inputs[0]
        Cx = p.tensors[xin].shape[0]
        # weights of the whole chain in one C slot
        blocks, woff = [], {}
        off = 0
        for m in chain:
            w = np.asarray(m.params["weight"], dtype=np.int8)
            cout = w.shape[0]
            wa = self.alloc(f"weight:{m.name}", w.size, "weight", w)
            pa = self.alloc(f"param:{m.name}", cout * PARAM_RECORD, "param",
                            self.param_block(m, cout))
            blocks.append((wa, w.size, off))
            woff[m.name] = off
            off += _align(w.size)
            blocks.append((pa, cout * PARAM_RECORD, off))
            woff[m.name + ".p"] = off
            off += _align(cout * PARAM_RECORD)
        em.layer = li[chain[0].name]
        sc = self.C.next()
        wsem = self.load_weights(sc, blocks)
        cb0 = self.C.base[sc]

        def need(nr):
            rin = min(H, (nr - 1) * s + k)
            tot = (_align(Cx * rin * W) if pn else 0) + _align(E * rin * W) + \
                _align(E * nr * Wo) + (_align(Cq * nr * Wo) if res else 0)
            return tot <= self.B.size and Cq * nr * Wo <= self.O.size and nr * Wo < 4096 \
                and rin * W < 4096
        fit = Ho
        while fit > 1 and not need(fit):
            fit -= 1
        if not need(fit):
            raise CompileError(f"{dw.name}: a fused row does not fit the B slot")
        nr = max(1, min(fit, _cdiv(Ho, FUSED_TILES if s > 1 or pn is None else FUSED_TILES_S1)))
        chunk_done = []
        self.C.busy[sc] = chunk_done
        qb, qoff = self.base_of(q.output)
        for r0 in range(0, Ho, nr):
            # software pipeline: the DW + second PW of tile t are emitted after the load and
            # first PW of tile t+1 (also across consecutive fused chains), so each unit's queue
            # holds independent work while the R-MAC runs the depthwise conv
            front = self.fused_front(chain, li, r0, nr, wsem, cb0, woff, info)
            self.flush()
            r1 = min(Ho, r0 + nr)
            self.pending = (
                lambda front=front: chunk_done.append(self.fused_back(chain, li, front, cb0,
                                                                      woff)),
                (qb, qoff, qoff + Cq, r0 * Wo, r1 * Wo))

    def fused_front(self, chain, li, r0, nr, wsem, cb0, woff, info):
        """LD of a fused tile and its first pointwise conv (on the MAT engines only, so that
        it overlaps the R-MAC's depthwise conv of the previous tile)."""
        cfg, p, em = self.cfg, self.p, self.em
        pn = chain[0] if len(chain) == 3 else None
        dw, q = chain[-2], chain[-1]
        E, H, W = p.tensors[dw.inputs[0]].shape
        _, Ho, Wo = p.tensors[dw.output].shape
        k, s, pad = (int(dw.attrs[a]) for a in ("kernel", "stride", "padding"))
        Cq = p.tensors[q.output].shape[0]
        res = q.epilogue.residual
        xin = pn.inputs[0] if pn else dw.inputs[0]
        Cx = p.tensors[xin].shape[0]
        r1 = min(Ho, r0 + nr)
        tnr = r1 - r0
        info["tiles"] += 1
        lo, hi = r0 * s - pad, (r1 - 1) * s - pad + k
        a, b = max(lo, 0), min(hi, H)
        rin = b - a
        sb, so = self.B.next(), self.O.next()
        em.layer = li[chain[0].name]
        self.begin_tile(sb)
        xb = self.B.base[sb]
        eb = xb + (_align(Cx * rin * W) if pn else 0)
        db = eb + _align(E * rin * W)
        rb_ = db + _align(E * tnr * Wo)
        self.wait_stored(xin, 0, Cx, a * W, b * W)
        self.dma_rows("LOAD", "B", xb if pn else eb, self.taddr(xin) + a * W, Cx, rin * W, H * W)
        rres, rstride = rb_, tnr * Wo
        if res and res == xin and s == 1 and Cq == Cx:
            # the residual is the chain's own input (MBConv / DSConv shortcut): its rows are
            # already in the B tile, read them from there instead of loading them again
            rres, rstride = (xb if pn else eb) + (r0 - a) * W, rin * W
        elif res:
            self.wait_stored(res, 0, Cq, r0 * Wo, r1 * Wo)
            self.dma_rows("LOAD", "B", rb_, self.taddr(res) + r0 * Wo, Cq, tnr * Wo, Ho * Wo)
        xsem = em.sem()
        em.signal("global", "LD", xsem)
        waits = [(xsem, 1), (wsem, 1)]
        pcyc = 0
        if pn:
            em.layer = li[pn.name]
            # the R-MAC will also run the previous tile's DW conv in this time: give the MAT
            # correspondingly more of this pointwise conv
            dwc = min(max(dw_cycles(cfg, nch=c1 - c0, ho=q1 - q0, wo=Wo, k=k)
                          for c0, c1 in _split(E, lc, cfg.N)
                          for q0, q1 in _split(tnr, cfg.L // lc))
                      for lc in (1, 2, 4, 8, 16, cfg.L) if lc <= cfg.L)
            tasks = self.plan_conv(E, rin * W, 1, Cx, 1, E, bias=(0, dwc))
            wr = self.emit_pw(tasks, waits=waits, xbase=xb, xstride=rin * W, obase=eb,
                              ostride=rin * W, obuf=BUFS["B"], wbase=cb0 + woff[pn.name],
                              pbase=cb0 + woff[pn.name + ".p"], K=Cx, cin_g=Cx, cout_g=E,
                              g=1, regs=self.epi_regs(pn))
            esem = em.sem()
            for st, u in wr:
                em.signal(st, u, esem)
            waits = [(xsem, 1), (wsem, 1), (esem, len(wr))]
        return dict(r0=r0, r1=r1, a=a, rin=rin, sb=sb, so=so, eb=eb, db=db, rb=rres,
                    rstride=rstride,
                    waits=waits, pcyc=pcyc)

    def fused_back(self, chain, li, t, cb0, woff):
        """Depthwise conv (R-MAC) and second pointwise conv (both engines) of a fused tile."""
        cfg, p, em = self.cfg, self.p, self.em
        dw, q = chain[-2], chain[-1]
        E, H, W = p.tensors[dw.inputs[0]].shape
        _, Ho, Wo = p.tensors[dw.output].shape
        k, s, pad = (int(dw.attrs[a]) for a in ("kernel", "stride", "padding"))
        Cq = p.tensors[q.output].shape[0]
        gq = int(q.attrs["groups"])
        res = q.epilogue.residual
        r0, r1, a, rin, eb, db = t["r0"], t["r1"], t["a"], t["rin"], t["eb"], t["db"]
        tnr = r1 - r0
        em.layer = li[dw.name]
        dw_cs, dw_rs = _best_dw_split(cfg, nch=E, nrows=tnr, wo=Wo, k=k)
        wr, core = [], 0
        dregs = dict(self.epi_regs(dw), WIN=W, WOUT=Wo, KERNEL=k, STRIDE=s, PAD_L=pad,
                     PAD_R=pad, LINEAR=0, NOEPI=0, XBUF=BUFS["B"], CIN=1,
                     XSTRIDE=rin * W, OSTRIDE=tnr * Wo, RSTRIDE=0, RES_ADDR=-1)
        for c0, c1 in dw_cs:
            for q0, q1 in dw_rs:
                st = f"core{core}"
                core += 1
                for sem, cnt in t["waits"]:
                    em.wait(st, "RMAC", sem, cnt)
                lo2, hi2 = (r0 + q0) * s - pad, (r0 + q1 - 1) * s - pad + k
                aa, bb2 = max(lo2, 0), min(hi2, H)
                em.setr(st, "RMAC", **dict(dregs, GROUPS=c1 - c0))
                em.emit(st, "DW_RSA", x_addr=eb + c0 * rin * W + (aa - a) * W,
                        w_addr=cb0 + woff[dw.name] + c0 * k * k,
                        p_addr=cb0 + woff[dw.name + ".p"] + c0 * PARAM_RECORD,
                        o_addr=db + c0 * tnr * Wo + q0 * Wo, nco=c1 - c0, hin=bb2 - aa,
                        ho=q1 - q0, pad_t=aa - lo2, pad_b=hi2 - bb2, obuf=BUFS["B"])
                wr.append((st, "RMAC"))
        dsem = em.sem()
        for st, u in wr:
            em.signal(st, u, dsem)
        em.layer = li[q.name]
        cq_g, e_g = Cq // gq, E // gq
        tasks = self.plan_conv(Cq, tnr * Wo, 1, e_g, gq, cq_g)
        seen = set()
        so = t["so"]
        writers = self.emit_pw(tasks, waits=[(dsem, len(wr))], xbase=db, xstride=tnr * Wo,
                               obase=self.O.base[so], ostride=tnr * Wo, obuf=BUFS["OUT"],
                               wbase=cb0 + woff[q.name], pbase=cb0 + woff[q.name + ".p"],
                               K=e_g, cin_g=e_g, cout_g=cq_g, g=gq, regs=self.epi_regs(q),
                               res_base=t["rb"] if res else None, rstride=t["rstride"],
                               slot_o=so,
                               seen=seen)
        obase = self.O.base[so]
        ydram = self.taddr(q.output) + r0 * Wo
        done, stored = self.finish_tile(
            t["sb"], so, writers,
            lambda: self.dma_rows("STORE", "OUT", obase, ydram, Cq, tnr * Wo, Ho * Wo))
        self.record_store(q.output, 0, Cq, r0 * Wo, r1 * Wo, stored)
        return (done, len(writers))

    def tile_rows(self, fit, ho, bytes_per_row):
        """Rows per tile: at most ``fit``; about TILES_TARGET tiles per layer (so consecutive
        layers overlap), but no tile smaller than MIN_TILE_BYTES of traffic (DMA and
        synchronisation overheads)."""
        want = max(_cdiv(ho, TILES_TARGET), _cdiv(MIN_TILE_BYTES, max(1, bytes_per_row)))
        want = _cdiv(want, 8) * 8          # rows split evenly over 2, 4 or 8 cores
        return max(1, min(fit, want, 4095))

    def plan_conv(self, nco, nr, wo, K, g, cout_g, bias=(0, 0), only=None, k=1):
        """[(core, engine, (co_a, co_b), (row_a, row_b))] for one tile (relative ranges).
        ``bias``: cycles already queued on (MAT, R-MAC) of every core; ``only``: one engine."""
        cfg = self.cfg
        gran = cout_g if g > 1 else 1
        best = None
        for lc, lr in _core_grids(cfg.L):
            cos = _split(nco, lc, max(gran, 8) if nco >= lc * 8 and g == 1 else gran)
            rows = _split(nr, lr)
            tasks, worst = [], 0
            core = 0
            for (ca, cb) in cos:
                for (ra, rb) in rows:
                    sub, t = self.engine_split(cb - ca, rb - ra, wo, K, g, cout_g, bias, only, k)
                    worst = max(worst, t)
                    for eng, (xa, xb), (ya, yb) in sub:
                        tasks.append((core, eng, (ca + xa, ca + xb), (ra + ya, ra + yb)))
                    core += 1
            if best is None or worst < best[0]:
                best = (worst, tasks)
        return best[1]

    def engine_split(self, nco, nr, wo, K, g, cout_g, bias=(0, 0), only=None, k=1):
        """Split a core's (nco x nr rows) between MAT and R-MAC; returns (tasks, est. cycles)."""
        cfg = self.cfg
        gran = cout_g if g > 1 else 1

        def cyc(eng, c, r):
            """engine steps + the tile's fixed cycles on the core (sim.timing)"""
            if c <= 0 or r <= 0:
                return 0
            groups = c // cout_g if g > 1 else 1
            pre, post = timing.conv_pre_post(cfg, eng, nco=c, groups=groups)
            return pre + post + conv_cycles(cfg, eng, K=K, nco=c, npix=r * wo, groups=groups,
                                            k=k)
        best = None
        bm, br = bias
        if only is not None:
            t = cyc(only, nco, nr) + (bm if only == "MAT" else br)
            return [(only, (0, nco), (0, nr))], t
        for cm in range(0, nco + 1, gran):             # MAT takes channels [0, cm)
            t = max(bm + cyc("MAT", cm, nr), br + cyc("RMAC", nco - cm, nr))
            if best is None or t < best[0]:
                best = (t, [("MAT", (0, cm), (0, nr)), ("RMAC", (cm, nco), (0, nr))])
        step = max(1, nr // 256)
        for rm in range(step, nr, step):
            t = max(bm + cyc("MAT", nco, rm), br + cyc("RMAC", nco, nr - rm))
            if t < best[0]:
                best = (t, [("MAT", (0, nco), (0, rm)), ("RMAC", (0, nco), (rm, nr))])
        tasks = [x for x in best[1] if x[1][1] > x[1][0] and x[2][1] > x[2][0]]
        return tasks, best[0]

    # depthwise ---------------------------------------------------------------------------------
    def dw(self, n: Node, info):
        cfg, p, em = self.cfg, self.p, self.em
        xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
        C, H, W = xt.shape
        _, Ho, Wo = yt.shape
        k, s, pad = (int(n.attrs[a]) for a in ("kernel", "stride", "padding"))
        e = n.epilogue
        res = e.residual
        w = np.asarray(n.params["weight"], dtype=np.int8).reshape(C, k * k)
        waddr = self.alloc(f"weight:{n.name}", w.size, "weight", w)
        paddr = self.alloc(f"param:{n.name}", C * PARAM_RECORD, "param", self.param_block(n, C))
        per = k * k + PARAM_RECORD
        chunk = min(C, 4095, (self.C.size - ALIGN) // per)
        if chunk < C:
            chunk = max(cfg.N, chunk // cfg.N * cfg.N)

        def need(nr, ch):
            rows_in = min(H, (nr - 1) * s + k)
            return (ch * rows_in * W + (ch * nr * Wo if res else 0) <= self.B.size
                    and (ch * nr * Wo <= self.O.size or (n.output in self.keep
                                                         and C * Ho * Wo <= self.B.size)))
        while chunk > cfg.N and not need(1, chunk):
            chunk = max(cfg.N, (chunk // 2) // cfg.N * cfg.N)
        nr = Ho
        while nr > 1 and not need(nr, chunk):
            nr -= 1
        if not need(nr, chunk):
            raise CompileError(f"{n.name}: a depthwise row does not fit the B/OUT slots")
        nr = self.tile_rows(nr, Ho, chunk * W * s + chunk * Wo)
        rin = rout = None
        if n.inputs[0] in self.resident:
            if chunk == C and C * H * W + (C * Ho * Wo if res else 0) <= self.B.size and \
                    (n.output in self.keep or C * Ho * Wo <= self.O.size):
                rin = self.resident.pop(n.inputs[0])
                nr = Ho
            else:
                self.spill(n.inputs[0])
        if n.output in self.keep:
            if chunk == C and nr == Ho and C * Ho * Wo <= self.B.size:
                rs, rs_busy = self.take_resident_slot()
                rout = dict(slot=rs, base=self.B.base[rs], events=[], busy=rs_busy)
                info["on_chip"] = True
            else:
                self.keep.pop(n.output, None)
        regs = dict(WIN=W, WOUT=Wo, KERNEL=k, STRIDE=s, PAD_L=pad, PAD_R=pad, ACT=ACTS[e.act],
                    OBITS=yt.bits, OSIGNED=int(yt.signed), MIDBITS=e.mid_bits, THREE=e.three,
                    LINEAR=0, NOEPI=0, XSIGNED=int(xt.signed),
                    RSIGNED=int(p.tensors[res].signed) if res else 1, XBUF=BUFS["B"])
        for c0 in range(0, C, chunk):
            c1 = min(C, c0 + chunk)
            nch = c1 - c0
            sc = self.C.next()
            wsem = self.load_weights(sc, [(waddr + c0 * k * k, nch * k * k, 0),
                                          (paddr + c0 * PARAM_RECORD, nch * PARAM_RECORD,
                                           _align(chunk * k * k))])
            wbase, pbase = self.C.base[sc], self.C.base[sc] + _align(chunk * k * k)
            chunk_done = []
            for r0 in range(0, Ho, nr):
                r1 = min(Ho, r0 + nr)
                tnr = r1 - r0
                info["tiles"] += 1
                in_lo, in_hi = r0 * s - pad, (r1 - 1) * s - pad + k
                a, b = max(in_lo, 0), min(in_hi, H)
                so = self.O.next() if rout is None else None
                if rin is not None:
                    sb, bbase = rin["slot"], rin["base"]
                    xw = list(rin["events"])
                    for sem, cnt in (rin["busy"] if res else []):
                        em.wait("global", "LD", sem, cnt)
                else:
                    sb = self.B.next()
                    self.begin_tile(sb)
                    self.wait_stored(n.inputs[0], c0, c1, a * W, b * W)
                    bbase = self.B.base[sb]
                    self.dma_rows("LOAD", "B", bbase,
                                  self.taddr(n.inputs[0]) + (c0 * H + a) * W, nch, (b - a) * W,
                                  H * W)
                    xw = []
                rbase = bbase + nch * (b - a) * W
                if res:
                    self.wait_stored(res, c0, c1, r0 * Wo, r1 * Wo)
                    self.dma_rows("LOAD", "B", rbase, self.taddr(res) + c0 * Ho * Wo + r0 * Wo,
                                  nch, tnr * Wo, Ho * Wo)
                if rin is None or res:
                    xsem = em.sem()
                    em.signal("global", "LD", xsem)
                    xw.append((xsem, 1))
                if rout is None:
                    obase, obuf = self.O.base[so], BUFS["OUT"]
                else:
                    obase, obuf = rout["base"], BUFS["B"]
                # split over cores: channels x rows, best estimate
                dw_cs, dw_rs = _best_dw_split(cfg, nch=nch, nrows=tnr, wo=Wo, k=k)
                writers, seen, core = [], set(), 0
                for ca, cb in dw_cs:
                    for ra, rb in dw_rs:
                        st = f"core{core}"
                        core += 1
                        for sem, cnt in xw:
                            em.wait(st, "RMAC", sem, cnt)
                        em.wait(st, "RMAC", wsem, 1)
                        if rout is None:
                            self.wait_out_slot(st, "RMAC", so, seen)
                        else:
                            for sem, cnt in rout["busy"]:
                                em.wait(st, "RMAC", sem, cnt)
                        lo, hi = (r0 + ra) * s - pad, (r0 + rb - 1) * s - pad + k
                        aa, bb = max(lo, 0), min(hi, H)
                        em.setr(st, "RMAC", **dict(regs, CIN=1, GROUPS=cb - ca,
                                                   XSTRIDE=(b - a) * W, OSTRIDE=tnr * Wo,
                                                   RSTRIDE=tnr * Wo,
                                                   RES_ADDR=(rbase + (ca * tnr + ra) * Wo)
                                                   if res else -1))
                        em.emit(st, "DW_RSA", x_addr=bbase + (ca * (b - a) + aa - a) * W,
                                w_addr=wbase + ca * k * k, p_addr=pbase + ca * PARAM_RECORD,
                                o_addr=obase + (ca * tnr + ra) * Wo, nco=cb - ca, hin=bb - aa,
                                ho=rb - ra, pad_t=aa - lo, pad_b=hi - bb, obuf=obuf)
                        writers.append((st, "RMAC"))
                if rout is not None:
                    done = self.finish_resident(sb, writers)
                    rout["events"].append((done, len(writers)))
                    if self.keep.get(n.output):
                        self.store_resident(n.output, rout, c0, c1, done, len(writers))
                else:
                    ydram = self.taddr(n.output) + (c0 * Ho + r0) * Wo
                    done, stored = self.finish_tile(
                        sb, so, writers,
                        lambda: self.dma_rows("STORE", "OUT", obase, ydram, nch, tnr * Wo,
                                              Ho * Wo))
                    self.record_store(n.output, c0, c1, r0 * Wo, r1 * Wo, stored)
                chunk_done.append((done, len(writers)))
            self.C.busy[sc] = chunk_done
        if rout is not None:
            self.resident[n.output] = rout

    # attention ---------------------------------------------------------------------------------
    def attention(self, n: Node, info):
        cfg, p, em = self.cfg, self.p, self.em
        xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
        d = int(n.attrs["dim"])
        Cx, H, W = xt.shape
        heads = Cx // (3 * d)
        ntok = H * W
        pr = n.params
        rec = np.stack([np.asarray(pr[k], dtype=np.int64) for k in
                        ("s_mult_b", "s_mult_c", "ksum_mult_b", "ksum_mult_c", "log2_offset",
                         "log2_emin", "out_mult_b", "out_mult_c")], axis=1).astype(np.int32)
        paddr = self.alloc(f"param:{n.name}", heads * PARAM_RECORD, "param", rec)
        if ntok > cfg.buf_div_bytes or 2 * (d * d + d) > cfg.buf_aux_bytes:
            raise CompileError(f"{n.name}: {ntok} tokens need a divisor buffer of {ntok} bytes"
                               f" (have {cfg.buf_div_bytes}) / aux {2 * (d * d + d)}")
        per_head = 3 * d * ntok
        dn = d * ntok
        # buffer A (per core) holds ReLU(K)'s operand K of a head: the R-MAC (ATT_KV_RDF) and the
        # adder tree (ATT_KSUM) read it from there, Q and V come from B. Two slots per core when
        # they fit (the next head's K loads while the R-MAC works), else one, else K stays in B.
        # A's slots start on its write port's line boundaries (a LOAD into A is line-aligned)
        a_line = timing.a_line_bytes(cfg.N, cfg.dram_bytes_per_cycle)
        a_step = _cdiv(dn, a_line) * a_line
        a_slots = 2 if a_step + dn <= cfg.buf_a_bytes else int(dn <= cfg.buf_a_bytes)
        # two head groups at least: EfficientViT's multi-scale attention puts the heads of the
        # plain qkv first and those of the aggregated qkv second, so the first group can load
        # (and its cores start) while the aggregation of the second is still being stored
        hpt = min(max(1, _cdiv(heads, 2)), self.B.size // per_head, self.O.size // (d * ntok))
        if hpt < 1:
            raise CompileError(f"{n.name}: one head ({per_head} bytes) does not fit a B slot")
        sc = self.C.next()
        wsem = self.load_weights(sc, [(paddr, heads * PARAM_RECORD, 0)])
        pbase = self.C.base[sc]
        chunk_done = []
        xaddr, yaddr = self.taddr(n.inputs[0]), self.taddr(n.output)
        regs = dict(DIM=d, NTOK=ntok, XSIGNED=int(xt.signed), OBITS=8, OSIGNED=1, XSTRIDE=ntok)
        kbuf = BUFS["A"] if a_slots else BUFS["B"]
        aux_i = {}
        for h0 in range(0, heads, hpt):
            h1 = min(heads, h0 + hpt)
            nh = h1 - h0
            info["tiles"] += 1
            sb, so = self.B.next(), self.O.next()
            self.begin_tile(sb)
            self.wait_stored(n.inputs[0], h0 * 3 * d, h1 * 3 * d, 0, H * W)
            bbase, obase = self.B.base[sb], self.O.base[so]
            hx = xaddr + h0 * per_head
            # K of each head goes into its core's buffer A after the group's Q and V (the MAT
            # needs only Q and V; K first was measured no better); a slot is reused once KV and
            # KSUM of its last head read it
            kload, nth = {}, {}
            for h in range(h0, h1) if a_slots else ():
                st = f"core{h % cfg.L}"
                nth[st] = nth.get(st, -1) + 1
                kload[h] = [(aux_i.get(st, 0) + nth[st]) % a_slots, None, em.sem()]

            def load_k(h):
                c = h % cfg.L
                slot, _, af = kload[h]
                free = self.a_free.get((f"core{c}", slot))
                if free is not None:
                    em.wait("global", "LD", free, 2)
                em.emit("global", "LOAD", buf=BUFS["A"], buf_addr=slot * a_step, core=c,
                        dram_addr=xaddr + h * per_head + dn, count=1, length=dn, stride=0)
                kload[h][1] = em.sem()
                em.signal("global", "LD", kload[h][1])
                self.a_free[(f"core{c}", slot)] = af

            if a_slots:
                # Q of the group's heads, then their V, into B
                self.dma_rows("LOAD", "B", bbase, hx, nh, dn, per_head)
                self.dma_rows("LOAD", "B", bbase + nh * dn, hx + 2 * dn, nh, dn, per_head)
                qv = [(bbase + j * dn, bbase + (nh + j) * dn) for j in range(nh)]
            else:
                self.dma_rows("LOAD", "B", bbase, hx, 1, nh * per_head, 0)
                qv = [(bbase + j * per_head, bbase + j * per_head + 2 * dn) for j in range(nh)]
            xsem = em.sem()
            em.signal("global", "LD", xsem)
            for h in kload:
                load_k(h)
            writers, seen = [], set()
            for j, h in enumerate(range(h0, h1)):
                c = h % cfg.L
                st = f"core{c}"
                qa, va = qv[j]
                i = aux_i.get(st, 0)
                aux_i[st] = i + 1
                kv_at, ks_at = (i % 2) * (d * d + d), (i % 2) * (d * d + d) + d * d
                kv, ks = em.sem(), em.sem()
                if a_slots:
                    slot, ksem, af = kload[h]
                    ka = slot * a_step
                else:
                    ka, ksem = qa + dn, None
                prev = self.aux_free.get((st, i % 2))   # ATT_OUT of two heads ago read this half
                for u in ("RMAC", "AUX", "MAT"):
                    # MAT: Q (B); R-MAC: K (A or B) and V (B); adder tree: K
                    if u != "AUX" or ksem is None:
                        em.wait(st, u, xsem, 1)
                    if ksem is not None and u != "MAT":
                        em.wait(st, u, ksem, 1)
                    em.wait(st, u, wsem, 1)
                    if prev is not None and u != "MAT":
                        em.wait(st, u, prev, 1)
                    em.setr(st, u, **dict(regs, XBUF=BUFS["B"] if u == "MAT" else kbuf))
                tile = dict(p_addr=pbase + h * PARAM_RECORD, nco=d, hin=1, ho=1, pad_t=0,
                            pad_b=0)
                em.emit(st, "ATT_KV_RDF", **dict(tile, x_addr=ka, w_addr=va, o_addr=kv_at,
                                                 obuf=BUFS["AUX"]))
                em.signal(st, "RMAC", kv)
                em.emit(st, "ATT_KSUM", **dict(tile, x_addr=ka, w_addr=0, o_addr=ks_at,
                                               obuf=BUFS["AUX"]))
                em.signal(st, "AUX", ks)
                if a_slots:
                    em.signal(st, "RMAC", af)
                    em.signal(st, "AUX", af)
                em.wait(st, "MAT", ks, 1)
                em.emit(st, "ATT_DIV", **dict(tile, x_addr=qa, w_addr=ks_at, o_addr=0,
                                              obuf=BUFS["DIV"]))
                em.wait(st, "MAT", kv, 1)
                self.wait_out_slot(st, "MAT", so, seen)
                em.emit(st, "ATT_OUT", **dict(tile, x_addr=qa, w_addr=kv_at,
                                              o_addr=obase + j * d * ntok, obuf=BUFS["OUT"]))
                hd = em.sem()
                em.signal(st, "MAT", hd)
                self.aux_free[(st, i % 2)] = hd
                writers.append((st, "MAT"))
            done, stored = self.finish_tile(
                sb, so, writers,
                lambda: self.dma_rows("STORE", "OUT", obase, yaddr + h0 * d * ntok, 1,
                                      (h1 - h0) * d * ntok, 0))
            self.record_store(n.output, h0 * d, h1 * d, 0, H * W, stored)
            chunk_done.append((done, len(writers)))
        self.C.busy[sc] = chunk_done

    # pooling -----------------------------------------------------------------------------------
    def pool(self, n: Node, info):
        cfg, p, em = self.cfg, self.p, self.em
        xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
        C, H, W = xt.shape
        e = n.epilogue
        paddr = self.alloc(f"param:{n.name}", C * PARAM_RECORD, "param", self.param_block(n, C))
        hw = H * W
        chunk = min(C, 4095, self.B.size // hw, self.C.size // PARAM_RECORD, self.O.size)
        regs = dict(NTOK=hw, ACT=ACTS[e.act], OBITS=yt.bits, OSIGNED=int(yt.signed),
                    MIDBITS=e.mid_bits, THREE=e.three, XSIGNED=int(xt.signed), XBUF=BUFS["B"],
                    XSTRIDE=hw, NOEPI=0, RES_ADDR=-1)
        for c0 in range(0, C, chunk):
            c1 = min(C, c0 + chunk)
            info["tiles"] += 1
            sc = self.C.next()
            wsem = self.load_weights(sc, [(paddr + c0 * PARAM_RECORD, (c1 - c0) * PARAM_RECORD,
                                           0)])
            pbase = self.C.base[sc]
            sb, so = self.B.next(), self.O.next()
            self.begin_tile(sb)
            self.wait_stored(n.inputs[0], c0, c1, 0, H * W)
            bbase, obase = self.B.base[sb], self.O.base[so]
            self.dma_rows("LOAD", "B", bbase, self.taddr(n.inputs[0]) + c0 * hw, 1,
                          (c1 - c0) * hw, 0)
            xsem = em.sem()
            em.signal("global", "LD", xsem)
            writers, seen = [], set()
            for core, (ca, cb) in enumerate(_split(c1 - c0, cfg.L)):
                st = f"core{core}"
                em.wait(st, "AUX", xsem, 1)
                em.wait(st, "AUX", wsem, 1)
                self.wait_out_slot(st, "AUX", so, seen)
                em.setr(st, "AUX", **regs)
                em.emit(st, "POOL", x_addr=bbase + ca * hw, w_addr=0,
                        p_addr=pbase + ca * PARAM_RECORD, o_addr=obase + ca, nco=cb - ca, hin=1,
                        ho=1, pad_t=0, pad_b=0, obuf=BUFS["OUT"])
                writers.append((st, "AUX"))
            ydram = self.taddr(n.output) + c0
            done, stored = self.finish_tile(
                sb, so, writers,
                lambda: self.dma_rows("STORE", "OUT", obase, ydram, 1, c1 - c0, 0))
            self.record_store(n.output, c0, c1, 0, 1, stored)
            self.C.busy[sc] = [(done, len(writers))]

    # host LayerNorm ----------------------------------------------------------------------------
    def host_ln(self, n: Node, info):
        p, em = self.p, self.em
        xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
        C = xt.shape[0]
        act = n.attrs.get("act", "none")
        hdr = np.array([float(n.attrs.get("eps", 1e-5)), yt.bits, int(yt.signed), int(xt.signed),
                        xt.bits], dtype=np.float64)
        blk = np.concatenate([hdr, np.asarray(n.params["gamma"], np.float64),
                              np.asarray(n.params["beta"], np.float64), xt.channel_scale(),
                              yt.channel_scale()])
        paddr = self.alloc(f"param:{n.name}", blk.size * 8, "host_param", blk)
        for (a0, a1, b0, b1, sem) in self.stores.get(self.base_of(n.inputs[0])[0], []):
            em.wait("global", "HOST", sem, 1)
        em.emit("global", "HOST_LN", src=self.taddr(n.inputs[0]), dst=self.taddr(n.output),
                param=paddr, channels=C, act={"none": 0, "hswish": 1}[act])
        sem = em.sem()
        em.signal("global", "HOST", sem)
        self.record_store(n.output, 0, C, 0, 1, sem)
        info["tiles"] += 1


def compile(prog: IntProgram, cfg: AccelConfig, *, fuse: bool = True) -> Binary:
    """Compile ``prog`` for ``cfg``; raises :class:`CompileError` if it cannot be mapped.
    ``fuse=False`` disables the inter-layer fusion (every tensor goes through DRAM)."""
    return _Compiler(prog, cfg, fuse).run()
