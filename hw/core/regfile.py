"""The layer registers of a core unit (``SETR``, ``sim.isa.REGS``) and their range verdicts.

A ``SETR`` writes a 32-bit signed value; each register is stored at the width its consumers in
:mod:`hw.core.unit` and :mod:`hw.core.attention` need (``REG_STORE``, 242 bits instead of 25 x
32): address strides and ``RES_ADDR`` as ``ADDR_BITS`` (plus the sign of ``RES_ADDR``), 0/1 flags
as bit 0 and "higher bits set", and the registers that are range-checked or compared with
constants clamped on write to one past their checked range, so that every check gives the same
verdict on every 32-bit value and legal values behave the same. ``PAD_R`` and ``LINEAR`` have no
consumer in the units and are not stored.

The ranges of ``sim.isa.REG_LIMITS`` (which a compute instruction needs; the unit stops with
its error flag otherwise) are checked once, when the register is written: one flag per register
and range, kept beside it (``ok_<op>``: all of an opcode's registers are in range). The compares
of the written value with the constants of a range and of a clamp are formed from its sign, "a
bit above the constant's width is set" and a compare of the low bits (``_lt_const`` /
``_gt_const``), not as 32-bit carry chains (issue #14: the unit's control logic).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim.isa import ACTS, FORMATS, OPCODE_BITS, REG_LIMITS, REGS

from .ports import ADDR_BITS

__all__ = ["RegisterFile", "REG_STORE", "field_slices"]

CNT = 24        #: bits of the token counters (hw.core.attention.CNT; NTOK is clamped to it)


def field_slices(op: str) -> dict:
    """``{field: (offset, bits, signed)}`` of opcode ``op`` in the 128-bit word (from sim.isa)."""
    pos, out = OPCODE_BITS, {}
    for name, bits, sgn in FORMATS[op][2]:
        out[name] = (pos, bits, sgn)
        pos += bits
    return out


def _lt_const(v, c: int):
    """``v < c`` for a signed Value ``v`` and a constant ``c >= 0``: the sign, or no bit above
    ``c``'s width set and the low bits below ``c`` (exact for every value)."""
    if c < 0:
        return v < c
    if c == 0:
        return v[-1]
    b = c.bit_length()
    return v[-1] | (~v[b:-1].any() & (v[:b] < c))


def _gt_const(v, c: int):
    """``v > c`` for a signed Value ``v`` and a constant ``c >= 0`` (see ``_lt_const``)."""
    if c < 0:
        return v > c
    b = max(1, c.bit_length())
    above = v[b:-1].any()
    return ~v[-1] & (above if c == (1 << b) - 1 else above | (v[:b] > c))


def _clamp(lo, hi, why):
    """A register that stores ``clamp(value, lo, hi)``: every consumer compares it with constants
    inside ``(lo, hi)`` or reads bits that legal values (``lo < value < hi``) keep, so the checks
    give the same verdict on every 32-bit value and the datapath the same result on legal ones.
    (``value <= lo`` gives ``lo`` and ``value >= hi`` gives ``hi``: the compares are with
    ``lo + 1`` and ``hi - 1``, which for the ranges of ``REG_LIMITS`` are the range's own ends.)"""
    return (range(lo, hi + 1),
            lambda v: Mux(_lt_const(v, lo + 1), lo, Mux(_gt_const(v, hi - 1), hi, v)), why)


def _low(bits, why):
    """A register of which every consumer reads only the low ``bits`` (exact for every value)."""
    return (unsigned(bits), lambda v: v[:bits], why)


def _flag(why):
    """A 0/1 register read as bit 0 and compared with 0 or 1: stores bit 0 and "any higher bit
    set", which keeps ``[0]``, ``== 0`` and ``== 1`` exact for every value."""
    return (unsigned(2), lambda v: Cat(v[0], v[1:].any()), why)


def _reg_store() -> dict:
    """``{register: (shape, write function, reason)}``: each of ``sim.isa.REGS`` at the width
    its consumers in ``hw.core.unit`` and ``hw.core.attention`` need (SETR writes 32-bit
    values)."""
    store = {}
    for limits in REG_LIMITS.values():          # the ranges the compute units check (error)
        for r, (lo, hi) in limits.items():
            lo0, hi0 = store.get(r, (lo, hi))
            store[r] = (min(lo, lo0), max(hi, hi0))
    store = {r: _clamp(lo - 1, hi + 1, "sim.isa.REG_LIMITS") for r, (lo, hi) in store.items()}
    nco_bits = field_slices("CONV_MAT")["nco"][1]
    store.update(
        GROUPS=_clamp(0, 1 << nco_bits, "checked 1 <= GROUPS <= nco (a 12-bit field)"),
        ACT=_clamp(min(ACTS.values()) - 1, max(ACTS.values()) + 1, "compared with ACTS"),
        OBITS=_clamp(7, 9, "compared with 8 (== 8, > 8)"),
        MIDBITS=_clamp(15, 17, "compared with 16"),
        DIM=_clamp(0, 1 << 12, "checked 0 < DIM < 2**12"),
        NTOK=_clamp(0, 1 << CNT, "checked > 0; the token counters have CNT bits"),
        OSIGNED=_flag("bit 0, == 1"), XSIGNED=_flag("bit 0, == 1"),
        RSIGNED=_flag("bit 0"), NOEPI=_flag("bit 0, == 0"),
        THREE=_low(16, "the Hardswish constant of hw.units.Requant (16 bits)"),
        XBUF=_low(3, "a buffer number (sim.isa.BUFS, the ports' 3-bit buf)"),
        XSTRIDE=_low(ADDR_BITS, "an address stride (the ports wrap at ADDR_BITS)"),
        OSTRIDE=_low(ADDR_BITS, "an address stride"), RSTRIDE=_low(ADDR_BITS, "an address stride"),
        RES_ADDR=(signed(ADDR_BITS + 1), lambda v: Cat(v[:ADDR_BITS], v[-1]),
                  "an address (ADDR_BITS) and its sign (-1: no residual)"))
    # PAD_R and LINEAR: no consumer in the units (the compiler's padding and tile shape already
    # say it), so they are not stored; a SETR of them is a one-cycle no-op
    missing = set(store) - set(REGS)
    assert not missing, missing
    return store


#: how each layer register is stored (see ``_reg_store``)
REG_STORE = _reg_store()


class RegisterFile(wiring.Component):
    """The layer registers of one unit, written by ``SETR``, with the range verdicts of
    ``sim.isa.REG_LIMITS`` formed at write time (see the module doc).

    Parameters (keyword-only)
    -------------------------
    ops : tuple of str
        The compute opcodes (keys of ``sim.isa.REG_LIMITS``) whose verdict the unit reads
        (``ok_<op>`` ports); may be empty.

    Ports
    -----
    we : In(1)   a SETR is executed this cycle (the register changes at the next edge)
    reg : In(8)   its register number (the SETR field, ``sim.isa.REGS``); a number not stored is a no-op
    value : In(signed(32))   the value written
    <register> : Out(shape of ``REG_STORE``)   each stored register (lower-case name), reset 0
    ok_<op> : Out(1)   every register of ``REG_LIMITS[op]`` holds a value in its range
        (for the value last written; the reset value 0 counts as written)
    """

    def __init__(self, *, ops: tuple = ()):
        if not isinstance(ops, tuple):
            raise TypeError(f"ops must be a tuple of opcode names, got {ops!r}")
        for o in ops:
            if o not in REG_LIMITS:
                raise ValueError(f"ops: {o!r} has no register limits (sim.isa.REG_LIMITS: "
                                 f"{sorted(REG_LIMITS)})")
        self.ops = ops
        #: (register, lo, hi) of every range checked, one flag each
        self.ranges = sorted({(r, lo, hi) for o in ops for r, (lo, hi) in REG_LIMITS[o].items()})
        sig = {"we": In(1), "reg": In(field_slices("SETR")["reg"][1]),
               "value": In(signed(32))}
        sig.update({n.lower(): Out(shape) for n, (shape, _, _) in REG_STORE.items()})
        sig.update({f"ok_{o.lower()}": Out(1) for o in ops})
        super().__init__(sig)

    def regs(self) -> dict:
        """``{register name: its output port}`` (the names of ``sim.isa.REGS``)."""
        return {n: getattr(self, n.lower()) for n in REG_STORE}

    def elaborate(self, platform):
        m = Module()
        v = self.value
        flags = {}
        for r, lo, hi in self.ranges:
            # the reset value 0 of the register is in range or not: the flag's reset
            f = Signal(init=int(lo <= 0 <= hi), name=f"ok_{r.lower()}_{lo}_{hi}".replace("-", "m"))
            flags[r, lo, hi] = f
        with m.If(self.we):
            with m.Switch(self.reg):
                for n, (_, write, _) in REG_STORE.items():
                    with m.Case(REGS[n]):
                        m.d.sync += getattr(self, n.lower()).eq(write(v))
                        m.d.sync += [f.eq(~_lt_const(v, lo) & ~_gt_const(v, hi))
                                     for (r, lo, hi), f in flags.items() if r == n]
        for o in self.ops:
            m.d.comb += getattr(self, f"ok_{o.lower()}").eq(
                Cat(*[flags[r, lo, hi] for r, (lo, hi) in REG_LIMITS[o].items()]).all())
        return m
