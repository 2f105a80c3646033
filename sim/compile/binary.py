"""The Binary: what the accelerator runs (per-stream instruction lists and the DRAM image), its
file format (.npz with a JSON manifest) and the checks a loaded file passes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AccelConfig, ConfigError
from ..fileio import atomic_open
from ..intprogram import IntProgram, IntProgramError, check_digest, digest, read_npz
from ..isa import IsaError, decode_stream, encode_stream
from .common import CompileError
from .layout import check_layout, pack, tensor_layout, unpack
from .stem import check_input_symbol

__all__ = ["Binary", "BINARY_VERSION", "MAGIC"]

BINARY_VERSION = 1
MAGIC = "trio-vit.binary"


@dataclass
class Binary:
    """What the accelerator runs: per-stream instruction lists and the DRAM image.

    ``streams``: ``{"global": [...], "core0": [...], ...}`` of :class:`sim.isa.Instr`;
    ``tags``: the same shape, the index into ``layers`` of each instruction (-1: none);
    ``dram``: uint8 image; ``symbols``: name -> {addr, nbytes, kind, shape, signed, bytes_per};
    ``layers``: per IntProgram node a dict (name, kind, op, macs, ...).
    ``groups``: 1 (one stream per core, ``core0`` ...) or ``G`` > 1, the lock-step group form
    (``sim.lockstep.group_binary``: one stream per group of ``G`` cores, ``group0`` ...,
    with the per-core ``SETC`` registers; ``sim.lockstep.expand`` gives the per-core Binary).
    """
    cfg: AccelConfig
    prog: IntProgram
    streams: dict
    tags: dict
    dram: np.ndarray
    symbols: dict
    layers: list
    groups: int = 1

    @property
    def n_instructions(self) -> int:
        return sum(len(s) for s in self.streams.values())

    @property
    def sem_ids(self) -> int:
        """Semaphore ids the Binary uses: its largest SIGNAL / WAIT id + 1 (0 without any);
        the semaphore file of the accelerator that runs it needs at least this many
        (``sim.isa.SEM_IDS`` by default, the ``CONFIG_SEMS`` register as built)."""
        return 1 + max((i.f["sem"] for s in self.streams.values() for i in s
                        if i.op in ("SIGNAL", "WAIT")), default=-1)

    def write_input(self, dram: np.ndarray, x) -> None:
        """Store the integer image ``x`` (already checked against the input tensor) at the input
        tensor's place in the DRAM image ``dram`` (one byte per element, two's complement, in the
        symbol's layout: :func:`sim.compile.layout.pack`; ``im2col``: unfolded for the dense
        stem, :mod:`sim.compile.stem`)."""
        sym = self.symbols[f"tensor:{self.prog.inputs[0]}"]
        b = pack(x, **tensor_layout(sym))
        dram[sym["addr"]:sym["addr"] + b.size] = b

    def read_outputs(self, dram: np.ndarray) -> dict:
        """The program's outputs read back from the DRAM image ``dram``: ``{name: int64 array}``
        (8-bit tensors one byte per element, wider ones, the logits, little-endian int32; in the
        symbol's layout: :func:`sim.compile.layout.unpack`)."""
        out = {}
        for name in self.prog.outputs:
            ot = self.prog.tensors[name]
            sym = self.symbols[f"tensor:{name}"]
            out[name] = unpack(dram[sym["addr"]:], ot.shape, signed=bool(ot.signed),
                               bits=ot.bits, **tensor_layout(sym))
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
        if self.groups != 1:                # a G = 1 file stays byte-identical
            manifest["groups"] = self.groups
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
            groups = m.get("groups", 1)
            _check_image(cfg, streams, tags, dram, symbols, layers, groups)
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
        for key, sym in symbols.items():
            if key.startswith("tensor:") and sym.get("layout") == "im2col":
                try:
                    check_input_symbol(prog, key[len("tensor:"):], sym)
                except (ValueError, TypeError, KeyError) as e:
                    raise CompileError(f"{path}: inconsistent Binary ({e})") from None
        check_digest(path, m, arrays, "Binary", CompileError)
        return cls(cfg, prog, streams, tags, dram, symbols, layers, groups)


def _words(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint64 or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"an instruction stream is an (n, 2) uint64 array, got {a.dtype} {a.shape}")
    return a


def _check_image(cfg, streams, tags, dram, symbols, layers, groups=1):
    """The parts of a loaded Binary the executors index blindly (raises ValueError/TypeError)."""
    if not isinstance(dram, np.ndarray) or dram.dtype != np.uint8 or dram.ndim != 1:
        raise ValueError(f"'dram' must be a 1-d uint8 array, got {getattr(dram, 'dtype', dram)}")
    if type(groups) is not int or groups < 1 or cfg.L % groups:
        raise ValueError(f"groups (cores per lock-step group) must be a positive integer "
                         f"dividing L = {cfg.L}, got {groups!r}")
    want = ["global"] + ([f"core{i}" for i in range(cfg.L)] if groups == 1 else
                         [f"group{i}" for i in range(cfg.L // groups)])
    if list(streams) != want:
        raise ValueError(f"streams {list(streams)} are not {want} (L = {cfg.L})")
    for n in streams:
        if len(tags[n]) != len(streams[n]):
            raise ValueError(f"stream {n}: {len(streams[n])} instructions but {len(tags[n])} tags")
    if not isinstance(symbols, dict) or not isinstance(layers, list):
        raise TypeError("symbols must be an object and layers a list")
    for name, sym in symbols.items():
        if name.startswith("tensor:"):
            check_layout(**tensor_layout(sym))
        addr, nbytes = int(sym["addr"]), int(sym["nbytes"])
        if addr < 0 or nbytes < 0 or addr + nbytes > dram.size:
            raise ValueError(f"the DRAM image is {dram.size} bytes, shorter than symbol {name!r}"
                             f" needs ({addr} + {nbytes}): truncated 'dram' array")

