"""The instruction emitter: appends instructions to the per-unit streams, refuses a field or a
register value the instruction word or the core units cannot hold, numbers the synchronisation
events (semaphores) and drops SETRs that would not change a register."""

from __future__ import annotations

from ..isa import FORMATS, REG_LIMITS, REGS, UNITS, Instr
from .common import CompileError

__all__ = ["Emitter", "unit_code"]

#: op -> {field: (lo, hi)}: the value ranges of the instruction fields (sim.isa.FORMATS)
_FIELD_RANGES = {op: {n: ((-(1 << (b - 1)), (1 << (b - 1)) - 1) if sg else (0, (1 << b) - 1))
                      for n, b, sg in fields} for op, (_, _, fields) in FORMATS.items()}

MAX_EVENTS = 1 << 16    #: the SIGNAL/WAIT semaphore field is 16 bits


def unit_code(u: str) -> int:
    """The ISA code of unit ``u`` (``"LD"``, ``"MAT"``, ...)."""
    return UNITS[u]


class Emitter:
    """Instruction streams under construction: ``streams["global"]`` (LD, ST, HOST) and
    ``streams["core<i>"]`` (RMAC, MAT, AUX) of each core; ``tags`` holds, per instruction, the
    index of the IntProgram node it belongs to (:attr:`layer`, -1: none)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.names = ["global"] + [f"core{i}" for i in range(cfg.L)]
        self.streams = {n: [] for n in self.names}
        self.tags = {n: [] for n in self.names}
        self.layer = -1
        self.nsem = 0
        self.regs = {}

    def emit(self, stream, op, **f):
        """Append ``op`` with fields ``f`` to ``stream`` (CompileError if a field or a register
        the instruction uses is out of range)."""
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
        """A new synchronisation event (semaphore number)."""
        s = self.nsem
        self.nsem += 1
        if self.nsem > MAX_EVENTS:
            raise CompileError("more than 65536 synchronisation events; the 16-bit semaphore"
                               " field overflows (use bigger buffers or a smaller model)")
        return s

    def signal(self, stream, unit, sem, count=1):
        self.emit(stream, "SIGNAL", unit=unit_code(unit), sem=sem, count=count)

    def wait(self, stream, unit, sem, count=1):
        if count > 0:
            self.emit(stream, "WAIT", unit=unit_code(unit), sem=sem, count=count, prev=0)

    def wait_all(self, stream, unit, events):
        """WAIT for every ``(sem, count)`` of ``events``."""
        for sem, cnt in events:
            self.wait(stream, unit, sem, cnt)

    def setr(self, stream, unit, **regs):
        """SETR each register of ``regs`` whose value on ``unit`` of ``stream`` differs."""
        for k, v in regs.items():
            key = (stream, unit, k)
            if self.regs.get(key) != v:
                self.emit(stream, "SETR", unit=unit_code(unit), reg=REGS[k], value=int(v))
                self.regs[key] = v

    def halt_all(self):
        """HALT every unit of every stream (the end of the program)."""
        for s in self.names:
            for u in (("LD", "ST", "HOST") if s == "global" else ("RMAC", "MAT", "AUX")):
                self.emit(s, "HALT", unit=unit_code(u))
