"""The accelerator's register map, described once: the CPU's view of the AXI4-Lite register block.

Everything else is generated from :data:`REGMAP`: the register block's HDL
(:class:`hw.system.csr.RegisterBlock`), the documentation (``docs/regmap.md``, from
:meth:`RegisterMap.to_markdown`), a C header (:meth:`RegisterMap.to_c_header`) and a standalone
Python module for the board's runtime (:meth:`RegisterMap.to_python`)::

    python -m hw regmap --format md|c|py [-o FILE]

Model
-----
* Registers are 32 bits wide at byte offsets (multiples of 4) inside a 4 KiB window. A *wide*
  register (``width`` 64 or 128) takes ``width / 32`` consecutive words, least significant word
  first; its words are named ``<NAME>_LO`` / ``<NAME>_HI`` (64 bits) or ``<NAME>0`` ..
  ``<NAME>3`` (128 bits). A wide register holds exactly one field spanning all its bits.
* Field accesses (the CPU's view):

  ``RO``  read only; writes are ignored (OKAY). Its value comes either from the hardware (an
  input port of the block) or, for a *constant* field (``const=True``), from the block's
  build parameters (``reset`` is then the value, or ``None`` when it must be given at build
  time, e.g. the config the block was built for).
  ``RW``  read/write; byte strobes honoured; ``reset`` after reset; an output port.
  ``W1P`` write 1: a one-cycle pulse on the output port (the cycle after the write); reads 0.
  ``W1C`` the hardware sets it (input port high for a cycle), writing 1 clears it; a set and a
  clear in the same cycle leave it set (no event is lost); reads the current value.
* 64-bit read rule: reading word 0 (``_LO``) of a wide RO register fed by the hardware (the
  performance counters, ``HOST_INSTR``) latches its upper words in the same cycle; reading an
  upper word returns the latched value. Read ``_LO`` first, then ``_HI``: the pair is coherent
  (no carry between the two reads). Wide RW registers have no latch: each word is written
  and read directly.
* Port names of :class:`~hw.system.csr.RegisterBlock`: ``<port>_<field>`` in lower case, where
  ``<port>`` is the register's ``port`` (default: its name); a field named like its register
  (one value) gives just ``<port>``. The performance counters use ``port="perf_<name>"``.
* An access to an address that is not a register word gets ``SLVERR`` (reads return 0).

Validation happens at construction: bad names, widths, accesses, resets, overlapping fields or
words, duplicate names (also among the generated C names and port names) raise
:class:`RegMapError`.
"""

from __future__ import annotations

import enum
import hashlib
import keyword
import re
from dataclasses import dataclass

from sim import isa

from ..params import check_int, check_pow2

__all__ = ["RO", "RW", "W1P", "W1C", "ACCESSES", "Field", "Register", "ErrorCode",
           "RegisterMap", "RegMapError", "REGMAP", "ERROR_CODES", "ErrCode", "ID_MAGIC",
           "REGMAP_VERSION", "config_hash", "config_constants"]

RO, RW, W1P, W1C = "RO", "RW", "W1P", "W1C"
ACCESSES = (RO, RW, W1P, W1C)
_ACCESS_TEXT = {
    RO: "read only",
    RW: "read/write",
    W1P: "write 1: one-cycle pulse, reads 0",
    W1C: "set by the hardware, write 1 clears",
}
_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
WORD_BYTES = 4


class RegMapError(ValueError):
    """An inconsistent register map (the message names the register and field)."""


def _check_name(what: str, name) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegMapError(f"{what} name must be an upper-case identifier ([A-Z][A-Z0-9_]*), "
                          f"got {name!r}")
    return name


@dataclass(frozen=True)
class Field:
    """Bits ``[lsb + width - 1 : lsb]`` of a register.

    ``access``: one of :data:`ACCESSES`; ``reset``: value after reset (RW), the constant (RO
    with ``const=True``; ``None``: given when the block is built); must be 0 for W1P/W1C and
    for RO fields fed by the hardware. ``doc``: one sentence, with the unit.
    """
    name: str
    lsb: int
    width: int
    access: str
    reset: int | None = 0
    doc: str = ""
    const: bool = False

    def __post_init__(self):
        _check_name("field", self.name)
        where = f"field {self.name}"
        for attr, lo in (("lsb", 0), ("width", 1)):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise RegMapError(f"{where}: {attr} must be an int >= {lo}, got {v!r}")
        if self.access not in ACCESSES:
            raise RegMapError(f"{where}: access must be one of {ACCESSES}, got {self.access!r}")
        if not isinstance(self.const, bool):
            raise RegMapError(f"{where}: const must be a bool, got {self.const!r}")
        if self.const and self.access != RO:
            raise RegMapError(f"{where}: only RO fields can be constant (access {self.access})")
        if self.access in (W1P, W1C) and self.width != 1:
            raise RegMapError(f"{where}: {self.access} fields are one bit wide, got {self.width}")
        if self.reset is None:
            if not self.const:
                raise RegMapError(f"{where}: reset None (given at build) is for constant fields")
        elif isinstance(self.reset, bool) or not isinstance(self.reset, int) \
                or not 0 <= self.reset < (1 << self.width):
            raise RegMapError(f"{where}: reset {self.reset!r} does not fit {self.width} bits")
        elif self.reset and (self.access in (W1P, W1C) or (self.access == RO and not self.const)):
            raise RegMapError(f"{where}: a {self.access} field fed by the hardware has reset 0, "
                              f"got {self.reset}")
        if not isinstance(self.doc, str):
            raise RegMapError(f"{where}: doc must be a string")

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    @property
    def mask(self) -> int:
        """The field's bits in place (``((1 << width) - 1) << lsb``)."""
        return ((1 << self.width) - 1) << self.lsb

    @property
    def has_port(self) -> bool:
        """Whether the register block has a port for it (every field but the constants)."""
        return not self.const

    def bits(self) -> str:
        return f"{self.lsb}" if self.width == 1 else f"{self.msb}:{self.lsb}"


@dataclass(frozen=True)
class Register:
    """A register at byte ``offset`` (see the module docstring for wide registers).

    ``access``: the register's access as a whole: ``RO`` when every field is RO (required
    then), else the writable kind the CPU should think of (CTRL is ``RW`` with W1P fields).
    ``fields``: the fields (any order; stored sorted by ``lsb``). ``width``: 32, 64 or 128.
    ``port``: the prefix of its ports in :class:`~hw.system.csr.RegisterBlock` (default: the
    name in lower case).
    """
    name: str
    offset: int
    access: str
    fields: tuple
    doc: str = ""
    width: int = 32
    port: str | None = None

    def __post_init__(self):
        _check_name("register", self.name)
        where = f"register {self.name}"
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0 \
                or self.offset % WORD_BYTES:
            raise RegMapError(f"{where}: offset must be a non-negative multiple of 4, "
                              f"got {self.offset!r}")
        if self.access not in ACCESSES:
            raise RegMapError(f"{where}: access must be one of {ACCESSES}, got {self.access!r}")
        if self.width not in (32, 64, 128):
            raise RegMapError(f"{where}: width must be 32, 64 or 128, got {self.width!r}")
        if self.port is not None and (not isinstance(self.port, str)
                                      or not re.match(r"[a-z][a-z0-9_]*\Z", self.port)):
            raise RegMapError(f"{where}: port must be a lower-case identifier, got {self.port!r}")
        fields = tuple(self.fields)
        if not fields or not all(isinstance(f, Field) for f in fields):
            raise RegMapError(f"{where}: fields must be a non-empty sequence of Field")
        fields = tuple(sorted(fields, key=lambda f: f.lsb))
        object.__setattr__(self, "fields", fields)
        names = [f.name for f in fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise RegMapError(f"{where}: duplicate field name(s) {dup}")
        for f in fields:
            if f.msb >= self.width:
                raise RegMapError(f"{where}: field {f.name} [{f.bits()}] exceeds the register's "
                                  f"{self.width} bits")
        for a, b in zip(fields, fields[1:]):
            if b.lsb <= a.msb:
                raise RegMapError(f"{where}: fields {a.name} [{a.bits()}] and {b.name} "
                                  f"[{b.bits()}] overlap")
        if self.access == RO and any(f.access != RO for f in fields):
            raise RegMapError(f"{where}: an RO register has only RO fields")
        if self.access != RO and all(f.access == RO for f in fields):
            raise RegMapError(f"{where}: every field is RO, so the register's access is RO")
        if self.width > 32:
            f = fields[0]
            if len(fields) != 1 or f.lsb != 0 or f.width != self.width \
                    or f.access not in (RO, RW):
                raise RegMapError(f"{where}: a {self.width}-bit register holds exactly one RO or "
                                  f"RW field spanning all its bits")
        if not isinstance(self.doc, str):
            raise RegMapError(f"{where}: doc must be a string")

    @property
    def nwords(self) -> int:
        return self.width // 32

    @property
    def words(self) -> tuple[tuple[str, int], ...]:
        """``(name, byte offset)`` of each 32-bit word, least significant first."""
        if self.width == 32:
            return ((self.name, self.offset),)
        if self.width == 64:
            names = (f"{self.name}_LO", f"{self.name}_HI")
        else:
            names = tuple(f"{self.name}{i}" for i in range(self.nwords))
        return tuple((n, self.offset + WORD_BYTES * i) for i, n in enumerate(names))

    @property
    def end(self) -> int:
        """The byte offset just past the register."""
        return self.offset + WORD_BYTES * self.nwords

    @property
    def latched(self) -> bool:
        """Whether reading word 0 latches the upper words (wide RO register fed by hardware)."""
        return self.width > 32 and self.access == RO and not self.fields[0].const

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}; "
                       f"fields: {[f.name for f in self.fields]}")

    def port_name(self, f: Field) -> str:
        """The register block's port of field ``f``."""
        base = self.port or self.name.lower()
        return base if f.name == self.name else f"{base}_{f.name.lower()}"

    def const_name(self, f: Field) -> str:
        """The stem of field ``f``'s constants (``<REG>_<FIELD>``; ``<REG>`` for a field named
        like its register)."""
        return self.name if f.name == self.name else f"{self.name}_{f.name}"


@dataclass(frozen=True)
class ErrorCode:
    """One value of ``ERR_CODE.CODE``: ``name`` (upper-case identifier) and its meaning."""
    value: int
    name: str
    text: str


class RegisterMap:
    """A validated register map: registers, error codes, the interrupt's registers.

    ``size``: the window in bytes (a power of two); ``version``: the map's version number;
    ``error_codes``: the values of the ``error_field`` (``"REG.FIELD"``);
    ``irq_enable`` (``"REG.FIELD"``, one RW bit) and ``irq_status`` (a register of W1C bits):
    the block's ``irq`` output is ``irq_enable & (any bit of irq_status)``.
    """

    def __init__(self, *, registers, error_codes=(), error_field: str | None = None,
                 irq_enable: str | None = None, irq_status: str | None = None,
                 version: int = 1, size: int = 4096):
        try:
            check_pow2("size", size, lo=WORD_BYTES)
            check_int("version", version, 0, (1 << 32) - 1)
        except (TypeError, ValueError) as e:
            raise RegMapError(str(e)) from None
        self.size = size
        self.version = version
        regs = tuple(registers)
        if not regs or not all(isinstance(r, Register) for r in regs):
            raise RegMapError("registers must be a non-empty sequence of Register")
        self.registers = tuple(sorted(regs, key=lambda r: r.offset))
        self._by_name: dict[str, Register] = {}
        for r in self.registers:
            if r.name in self._by_name:
                raise RegMapError(f"duplicate register name {r.name}")
            self._by_name[r.name] = r
            if r.end > size:
                raise RegMapError(f"register {r.name} at {r.offset:#05x} ({r.width} bits) lies "
                                  f"outside the {size}-byte window")
        for a, b in zip(self.registers, self.registers[1:]):
            if b.offset < a.end:
                raise RegMapError(f"registers {a.name} ({a.offset:#05x}..{a.end - 1:#05x}) and "
                                  f"{b.name} ({b.offset:#05x}) overlap")
        # generated names must not collide: word names, C field names, ports
        seen: dict[str, str] = {}
        for r in self.registers:
            names = [w for w, _ in r.words]
            if r.width > 32:
                names.append(r.name)
            else:
                names += [f"{r.const_name(f)}_{s}" for f in r.fields for s in ("SHIFT", "MASK")]
            names += [f"{r.const_name(f)}_VALUE" for f in r.fields if f.const]
            for n in names:
                if n in seen and seen[n] != r.name:
                    raise RegMapError(f"generated name {n} of register {r.name} collides with "
                                      f"register {seen[n]}")
                seen[n] = r.name
        ports: dict[str, str] = {}
        for r in self.registers:
            for f in r.fields:
                if not f.has_port:
                    continue
                p = r.port_name(f)
                if p in ports or p in ("bus", "irq"):
                    raise RegMapError(f"port {p} of {r.name}.{f.name} collides with "
                                      f"{ports.get(p, 'a fixed port of the block')}")
                if keyword.iskeyword(p):
                    raise RegMapError(f"port {p} of {r.name}.{f.name} is a Python keyword")
                ports[p] = f"{r.name}.{f.name}"
        # error codes
        self.error_codes = tuple(error_codes)
        self.error_field = error_field
        if self.error_codes:
            if error_field is None:
                raise RegMapError("error_codes need error_field (REG.FIELD)")
            ef = self.field_of(error_field)
            vals = [c.value for c in self.error_codes]
            names = [c.name for c in self.error_codes]
            for c in self.error_codes:
                if not isinstance(c, ErrorCode):
                    raise RegMapError(f"error codes must be ErrorCode, got {c!r}")
                _check_name("error code", c.name)
                if isinstance(c.value, bool) or not isinstance(c.value, int) \
                        or not 0 <= c.value < (1 << ef.width):
                    raise RegMapError(f"error code {c.name} = {c.value!r} does not fit "
                                      f"{error_field} ({ef.width} bits)")
            if len(set(vals)) != len(vals) or len(set(names)) != len(names):
                raise RegMapError("error code values and names must be unique")
        # interrupt
        self.irq_enable = irq_enable
        self.irq_status = irq_status
        if (irq_enable is None) != (irq_status is None):
            raise RegMapError("give both irq_enable and irq_status, or neither")
        if irq_enable is not None:
            fe = self.field_of(irq_enable)
            if fe.access != RW or fe.width != 1:
                raise RegMapError(f"irq_enable {irq_enable} must be a one-bit RW field")
            st = self[irq_status]
            if any(f.access != W1C for f in st.fields):
                raise RegMapError(f"irq_status {irq_status} must hold only W1C fields")

    # -- look-up -------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Register:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no register {name!r}") from None

    def __iter__(self):
        return iter(self.registers)

    def __len__(self) -> int:
        return len(self.registers)

    def __contains__(self, name) -> bool:
        return name in self._by_name

    def field_of(self, path: str) -> Field:
        """The field named by ``"REG.FIELD"``."""
        reg, _, fname = path.partition(".")
        try:
            return self[reg].field(fname)
        except KeyError as e:
            raise RegMapError(f"{path}: {e.args[0]}") from None

    def words(self) -> list[tuple[str, int, Register, int]]:
        """Every 32-bit word: ``(name, byte offset, register, word index)`` by offset."""
        return [(n, off, r, i) for r in self.registers for i, (n, off) in enumerate(r.words)]

    def error_text(self, value: int) -> str:
        for c in self.error_codes:
            if c.value == value:
                return c.text
        return f"unknown error code {value}"

    # -- emitters ------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The map as Markdown: the rules, a table per register, the error codes."""
        out = ["# Register map", "",
               "<!-- Generated by `python -m hw regmap --format md -o docs/regmap.md` from "
               "hw/system/regmap.py; do not edit (tests/test_regmap.py checks it). -->", "",
               f"The accelerator's AXI4-Lite register block (`hw.system.csr.RegisterBlock`): "
               f"32-bit registers at byte offsets in a {self.size // 1024} KiB window, map "
               f"version {self.version}.", "",
               "| access | meaning |", "| --- | --- |"]
        out += [f"| {a} | {_ACCESS_TEXT[a]} |" for a in ACCESSES]
        out += ["",
                "* A 64-bit register takes two words, `_LO` (bits 31:0) then `_HI`; a 128-bit "
                "register four, `0` (bits 31:0) to `3`.",
                "* **64-bit reads**: reading word 0 of a wide read-only register fed by the "
                "hardware (marked *latched*) latches its upper words; reading an upper word "
                "returns the latched value. Read `_LO` first, then `_HI`: the pair is coherent.",
                "* Writes to read-only bits are ignored. An address that is not a register "
                "word gets `SLVERR` (reads return 0). Byte strobes (`WSTRB`) select the bytes a "
                "write changes."]
        if self.irq_enable:
            out.append(f"* Interrupt output: `{self.irq_enable}` and any bit of "
                       f"`{self.irq_status}`, registered (one cycle after the bit is set).")
        out += ["", "## Summary", "", "| offset | register | access | description |",
                "| --- | --- | --- | --- |"]
        for r in self.registers:
            first = r.doc.split(". ")[0].rstrip(".")
            for n, off in r.words:
                out.append(f"| 0x{off:03X} | [`{n}`](#{r.name.lower()}) | {r.access} | {first} |")
        for r in self.registers:
            words = ", ".join(f"`{n}` 0x{off:03X}" for n, off in r.words)
            kind = f"{r.width} bits, " if r.width > 32 else ""
            latched = ", latched" if r.latched else ""
            out += ["", f"## {r.name}", "",
                    f"{words} ({kind}{r.access}{latched}). {r.doc}".rstrip(), "",
                    "| bits | field | access | reset | port | description |",
                    "| --- | --- | --- | --- | --- | --- |"]
            for f in reversed(r.fields):
                reset = ("as built" if f.reset is None else
                         "-" if not f.const and f.access == RO else f"0x{f.reset:X}")
                port = f"`{r.port_name(f)}`" if f.has_port else "(constant)"
                out.append(f"| {f.bits()} | {f.name} | {f.access} | {reset} | {port} | "
                           f"{f.doc} |")
        if self.error_codes:
            out += ["", f"## Error codes ({self.error_field})", "", "| code | name | meaning |",
                    "| --- | --- | --- |"]
            out += [f"| {c.value} | {c.name} | {c.text} |" for c in self.error_codes]
        return "\n".join(out) + "\n"

    def constants(self) -> dict[str, int]:
        """Every constant of the C header and the Python module, without prefix, in order:
        word offsets, wide registers' base offsets, field shifts and masks (32-bit registers),
        fixed constant values (``<REG>_<FIELD>_VALUE``; the stem is
        :meth:`Register.const_name`), error codes (``ERR_<NAME>``), ``REGMAP_VERSION`` and
        ``REGMAP_SIZE``."""
        c: dict[str, int] = {"REGMAP_VERSION": self.version, "REGMAP_SIZE": self.size}
        for r in self.registers:
            if r.width > 32:
                c[r.name] = r.offset
            for n, off in r.words:
                c[n] = off
            if r.width == 32:
                for f in r.fields:
                    c[f"{r.const_name(f)}_SHIFT"] = f.lsb
                    c[f"{r.const_name(f)}_MASK"] = f.mask
            for f in r.fields:
                if f.const and f.reset is not None:
                    c[f"{r.const_name(f)}_VALUE"] = f.reset
        for e in self.error_codes:
            c[f"ERR_{e.name}"] = e.value
        return c

    def to_c_header(self, prefix: str = "TRIOVIT") -> str:
        """A C header of :meth:`constants` as ``#define <prefix>_<NAME> 0x...u``."""
        _check_name("prefix", prefix)
        guard = f"{prefix}_REGMAP_H"
        out = ["/* Register map of the Trio-ViT accelerator's AXI4-Lite register block.",
               " * Generated by `python -m hw regmap --format c` from hw/system/regmap.py;",
               " * do not edit. Offsets are in bytes from the block's base address;",
               " * <REG>_<FIELD>_MASK is the field's bits in place. Read a 64-bit",
               " * counter's _LO word first: it latches _HI. */",
               f"#ifndef {guard}", f"#define {guard}", ""]
        offsets = {r.name for r in self.registers} | {n for n, _, _, _ in self.words()}
        for name, v in self.constants().items():
            out.append(f"#define {prefix}_{name} 0x{v:0{3 if name in offsets else 1}X}u")
        out += ["", f"#endif /* {guard} */"]
        return "\n".join(out) + "\n"

    def to_python(self) -> str:
        """A standalone Python module (no trio-vit imports) with :meth:`constants` as
        module-level ints, ``REGISTERS`` (word name -> offset), ``ERROR_TEXT`` (code -> text)
        and ``FIELDS`` ((register, field) -> (lsb, width, access))."""
        out = ['"""Register map of the Trio-ViT accelerator\'s AXI4-Lite register block.',
               "",
               "Generated by `python -m hw regmap --format py` from hw/system/regmap.py; do not "
               "edit.",
               "Offsets are in bytes from the block's base address; <REG>_<FIELD>_MASK is the "
               "field's",
               "bits in place. Read a 64-bit counter's _LO word first: it latches _HI.",
               '"""', ""]
        offsets = {r.name for r in self.registers} | {n for n, _, _, _ in self.words()}
        for name, v in self.constants().items():
            out.append(f"{name} = 0x{v:0{3 if name in offsets else 1}X}")
        out += ["", "REGISTERS = {"]
        out += [f"    {n!r}: 0x{off:03X}," for n, off, _, _ in self.words()]
        out += ["}", "", "FIELDS = {"]
        out += [f"    ({r.name!r}, {f.name!r}): ({f.lsb}, {f.width}, {f.access!r}),"
                for r in self.registers for f in r.fields]
        out += ["}", "", "ERROR_TEXT = {"]
        out += [f"    {e.value}: {e.text!r}," for e in self.error_codes]
        out += ["}", ""]
        return "\n".join(out)


# -- the accelerator's map ---------------------------------------------------------------------

ID_MAGIC = 0x54564954      #: ``ID``: "TVIT" in ASCII
REGMAP_VERSION = 3         #: ``VERSION``: bump on any change of the map

#: values of ``ERR_CODE.CODE`` (the first error stops the accelerator; 0 = none)
ERROR_CODES = (
    ErrorCode(0, "NONE", "no error"),
    ErrorCode(1, "ILLEGAL_OPCODE", "illegal opcode (an instruction word the unit cannot decode)"),
    ErrorCode(2, "DMA_WINDOW", "DMA outside the data window (DATA_BASE, DATA_SIZE)"),
    ErrorCode(3, "AXI_RESP", "AXI error response (SLVERR or DECERR) on a DMA or fetch"),
    ErrorCode(4, "WATCHDOG", "watchdog: no progress for WATCHDOG cycles"),
    ErrorCode(5, "START_BUSY", "START written while busy"),
    ErrorCode(6, "UNIT_ERROR", "a core unit reported an error (e.g. a layer register out of "
                               "range)"),
    ErrorCode(7, "SEM_RANGE", "semaphore id out of range of the semaphore file"),
    ErrorCode(8, "BUFFER_RANGE", "a core or DMA access outside its global buffer (B, C, OUT)"),
)

ErrCode = enum.IntEnum("ErrCode", [(c.name, c.value) for c in ERROR_CODES])
ErrCode.__doc__ = "The values of ``ERR_CODE.CODE`` as an IntEnum (from :data:`ERROR_CODES`)."

_PERF = (
    ("CYCLES", "Clock cycles while BUSY."),
    ("BUSY_MAT", "Cycles in which a MAT engine was busy, summed over the cores."),
    ("BUSY_RMAC", "Cycles in which an R-MAC engine was busy, summed over the cores."),
    ("BUSY_AUX", "Cycles in which an AUX unit was busy, summed over the cores."),
    ("DRAM_RD_BYTES", "Bytes read from DRAM by the DMA engines and the dispatcher."),
    ("DRAM_WR_BYTES", "Bytes written to DRAM by the DMA engines."),
    ("STALL_CYCLES", "Cycles in which BUSY was set and no unit made progress."),
    ("INSTR_FETCHED", "Instruction words fetched by the dispatcher."),
)


def _f(name, lsb, width, access, reset=0, doc="", const=False):
    return Field(name, lsb, width, access, reset, doc, const)


def _regs():
    c = dict(access=RO, reset=None, const=True)
    yield Register("ID", 0x000, RO, [_f("ID", 0, 32, RO, ID_MAGIC, "Magic 0x54564954 (\"TVIT\").",
                                        True)], "Identifies a Trio-ViT accelerator.")
    yield Register("VERSION", 0x004, RO, [_f("VERSION", 0, 32, RO, REGMAP_VERSION,
                                             "Version of this register map.", True)],
                   "Register-map version.")
    yield Register("CONFIG_HASH", 0x008, RO, [_f("HASH", 0, 32, doc=(
        "First 32 bits of the SHA-256 of the AccelConfig's JSON (`config_hash`)."), **c)],
        "Hash of the AccelConfig the accelerator was built for: a Binary compiled for another "
        "config must not be started.")
    yield Register("CONFIG_NMTS", 0x00C, RO, [
        _f("N", 0, 8, doc="R-MACs per PE lane.", **c),
        _f("M", 8, 8, doc="PE lanes of the R-MAC engine.", **c),
        _f("T", 16, 8, doc="Multipliers per PE lane of the MAT engine.", **c),
        _f("S", 24, 8, doc="PE lanes of the MAT engine.", **c)],
        "Engine sizes as built.")
    yield Register("CONFIG_L", 0x010, RO, [
        _f("L", 0, 8, doc="Computing cores.", **c),
        _f("PACKED", 8, 1, doc="1: two int8 products per DSP48E2 (dsp_packing).", **c),
        _f("AXI_PORTS", 9, 3, doc="AXI4 master ports of the DMA (1..4).", **c),
        _f("DATA_BYTES", 16, 8, doc="Bytes per beat of the AXI4 master ports.", **c)],
        "Core count and memory interface as built.")
    yield Register("CONFIG_SEMS", 0x014, RO, [
        _f("IDS", 0, 17, doc=("Semaphore ids per frame bank of the semaphore file (a Binary "
                              "using an id at or above it stops with SEM_RANGE)."), **c)],
        "Semaphore file as built.")
    yield Register("CTRL", 0x020, RW, [
        _f("START", 0, 1, W1P, doc="Start the Binary at INSTR_TABLE (error START_BUSY if "
                                   "busy)."),
        _f("SOFT_RESET", 1, 1, W1P, doc="Abort and return the accelerator to idle (clears "
                                        "STATUS); this block's registers keep their values."),
        _f("IRQ_EN", 2, 1, RW, 0, "Interrupt output enable.")],
        "Control.")
    yield Register("STATUS", 0x024, RO, [
        _f("BUSY", 0, 1, RO, doc="A Binary is running."),
        _f("DONE", 1, 1, RO, doc="The last run finished (every queue reached HALT)."),
        _f("ERROR", 2, 1, RO, doc="The last run stopped with an error (ERR_CODE)."),
        _f("HOST_REQ", 3, 1, RO, doc="A HOST_LN instruction waits for the CPU (HOST_INSTR).")],
        "Status, as the accelerator drives it.")
    yield Register("IRQ_STATUS", 0x028, W1C, [
        _f("DONE", 0, 1, W1C, doc="Set when a run finishes."),
        _f("ERROR", 1, 1, W1C, doc="Set when a run stops with an error."),
        _f("HOST_REQ", 2, 1, W1C, doc="Set when a HOST_LN instruction waits for the CPU.")],
        "Interrupt causes; the interrupt output is CTRL.IRQ_EN and any of them.")
    yield Register("ERR_CODE", 0x02C, RO, [
        _f("CODE", 0, 8, RO, doc="Error code (table below); 0: none."),
        _f("QUEUE", 8, 16, RO, doc="The instruction queue that failed."),
        _f("UNIT", 24, 8, RO, doc="The unit that failed.")],
        "The first error of the last run.")
    yield Register("ERR_PC", 0x030, RO, [_f("INDEX", 0, 32, RO, doc=(
        "Index of the failing instruction in its queue (instructions)."))],
        "Where the first error happened.")
    yield Register("INSTR_TABLE", 0x040, RW, [_f("ADDR", 0, 64, RW, 0, (
        "Byte address of the queue table in DRAM (16-byte aligned)."))],
        "DRAM address of the instruction queue table.", width=64)
    yield Register("DATA_BASE", 0x048, RW, [_f("ADDR", 0, 64, RW, 0, (
        "Byte address of the data image in DRAM."))],
        "DRAM address of the Binary's data image.", width=64)
    yield Register("DATA_SIZE", 0x050, RW, [_f("BYTES", 0, 32, RW, 0, (
        "Size of the data image in bytes: the DMA window is [DATA_BASE, DATA_BASE + "
        "DATA_SIZE)."))], "Size of the data image.")
    yield Register("WATCHDOG", 0x054, RW, [_f("CYCLES", 0, 32, RW, 0, (
        "Cycles without progress before error WATCHDOG; 0: off."))], "Watchdog limit.")
    yield Register("FRAMES", 0x058, RW, [_f("COUNT", 0, 16, RW, 0, (
        "Frames to run back to back (streaming mode, docs/system.md): every unit queue runs "
        "this many times, each frame on its own bank of semaphore counters; 0 and 1: one "
        "frame."))], "Frame count of a run.")
    yield Register("HOST_INSTR", 0x060, RO, [_f("HOST_INSTR", 0, isa.WORD_BITS, RO, doc=(
        "The pending HOST_LN instruction word (valid while STATUS.HOST_REQ)."))],
        "The HOST_LN instruction the CPU is to execute.", width=isa.WORD_BITS)
    yield Register("HOST_ACK", 0x070, W1P, [_f("ACK", 0, 1, W1P, doc=(
        "The CPU finished the pending HOST_LN."))], "Host acknowledge.")
    for i, (name, doc) in enumerate(_PERF):
        yield Register(name, 0x100 + 8 * i, RO, [_f(name, 0, 64, RO, doc=doc)],
                       f"{doc} Performance counter, cleared by START and SOFT_RESET.", width=64,
                       port=f"perf_{name.lower()}")


#: the accelerator's register map
REGMAP = RegisterMap(registers=list(_regs()), error_codes=ERROR_CODES,
                     error_field="ERR_CODE.CODE", irq_enable="CTRL.IRQ_EN",
                     irq_status="IRQ_STATUS", version=REGMAP_VERSION, size=4096)


def config_hash(cfg) -> int:
    """The 32-bit hash of an :class:`sim.config.AccelConfig` held in ``CONFIG_HASH``:
    the first 8 hex digits of the SHA-256 of ``cfg.to_json()``."""
    return int(hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8], 16)


def config_constants(cfg, *, axi_ports: int = 1, data_bytes: int = 16,
                     sems: int = isa.SEM_IDS) -> dict[str, int]:
    """The values of :data:`REGMAP`'s build-time constants (``"REG.FIELD"`` -> int) for an
    accelerator built for ``cfg`` with ``axi_ports`` AXI4 master ports (1..4) of
    ``data_bytes`` bytes per beat (a power of two, 4..128) and a semaphore file of ``sems``
    ids (1..65536)."""
    check_int("axi_ports", axi_ports, 1, 4)
    check_pow2("data_bytes", data_bytes, lo=4, hi=128)
    check_int("sems", sems, 1, 1 << 16)
    vals = {"CONFIG_HASH.HASH": config_hash(cfg),
            "CONFIG_NMTS.N": cfg.N, "CONFIG_NMTS.M": cfg.M, "CONFIG_NMTS.T": cfg.T,
            "CONFIG_NMTS.S": cfg.S, "CONFIG_L.L": cfg.L, "CONFIG_L.PACKED": int(cfg.dsp_packing),
            "CONFIG_L.AXI_PORTS": axi_ports, "CONFIG_L.DATA_BYTES": data_bytes,
            "CONFIG_SEMS.IDS": sems}
    for path, v in vals.items():
        f = REGMAP.field_of(path)
        if not 0 <= v < (1 << f.width):
            raise ValueError(f"{path} = {v} does not fit its {f.width} bits")
    return vals
