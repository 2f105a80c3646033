"""A reference model of the register block as the CPU sees it, written from the rules of
:mod:`hw.system.regmap` (accesses, byte strobes, the 64-bit read latch, SLVERR on unmapped
addresses, the interrupt), not from :mod:`hw.system.csr`.

It works on whole register values (a field is ``(value >> lsb) & ((1 << width) - 1)``) and
per-address byte masks, where the HDL works per byte lane and per field. The amaranth.sim tests
(``tests/test_csr.py``) and the cocotb tests (``tb/system/cocotb_csr.py``) compare the block
with it.
"""

from __future__ import annotations

from hw.system.axi import RESP_OKAY, RESP_SLVERR
from hw.system.regmap import RO, RW, W1C, W1P, RegisterMap

__all__ = ["CsrModel"]

_WORD = 0xFFFF_FFFF


class CsrModel:
    """The registers of ``regmap`` with constant fields ``constants`` (``"REG.FIELD"`` -> value;
    fields not given take their ``reset``)."""

    def __init__(self, regmap: RegisterMap, constants: dict[str, int] | None = None):
        self.rm = regmap
        constants = constants or {}
        self.state: dict[tuple[str, str], int] = {}   # RW, W1C and RO-input fields
        self.const: dict[tuple[str, str], int] = {}
        for r in regmap:
            for f in r.fields:
                if f.const:
                    self.const[r.name, f.name] = constants.get(f"{r.name}.{f.name}", f.reset)
                else:
                    self.state[r.name, f.name] = f.reset if f.access == RW else 0
        self.latch = {r.name: 0 for r in regmap if r.latched}
        self.word_at = {off: (r, i) for _, off, r, i in regmap.words()}

    # -- the hardware side ------------------------------------------------------------------
    def set_input(self, reg: str, field: str, value: int) -> None:
        """An RO field's input port now holds ``value``."""
        f = self.rm[reg].field(field)
        assert f.access == RO and not f.const
        self.state[reg, field] = value & ((1 << f.width) - 1)

    def hw_set(self, reg: str, field: str) -> None:
        """A one-cycle pulse on a W1C field's set input."""
        assert self.rm[reg].field(field).access == W1C
        self.state[reg, field] = 1

    def port_values(self) -> dict[str, int]:
        """The value of every RW field's output port."""
        return {r.port_name(f): self.state[r.name, f.name]
                for r in self.rm for f in r.fields if f.access == RW}

    @property
    def irq(self) -> int:
        if self.rm.irq_enable is None:
            return 0
        reg, _, field = self.rm.irq_enable.partition(".")
        st = self.rm[self.rm.irq_status]
        return int(bool(self.state[reg, field]) and any(self.state[st.name, f.name]
                                                          for f in st.fields))

    # -- the CPU side -----------------------------------------------------------------------
    def value(self, reg) -> int:
        """The whole register as read (W1P bits 0)."""
        v = 0
        for f in reg.fields:
            if f.access == W1P:
                continue
            x = self.const[reg.name, f.name] if f.const else self.state[reg.name, f.name]
            v |= x << f.lsb
        return v

    def write(self, addr: int, data: int, strb: int = 0xF) -> tuple[int, set[str]]:
        """A bus write; returns ``(bresp, ports that pulse)``."""
        hit = self.word_at.get(addr & ~3)
        if hit is None:
            return RESP_SLVERR, set()
        reg, i = hit
        bytemask = sum(0xFF << (8 * k) for k in range(4) if strb >> k & 1)
        wmask = bytemask << (32 * i)           # the bits of the register the write reaches
        wdata = (data & _WORD) << (32 * i)
        pulses = set()
        for f in reg.fields:
            sel = wmask & f.mask
            if not sel:
                continue
            key = (reg.name, f.name)
            if f.access == RW:
                old = self.state[key] << f.lsb
                self.state[key] = (((old & ~sel) | (wdata & sel)) & f.mask) >> f.lsb
            elif f.access == W1C and wdata & sel:
                self.state[key] = 0
            elif f.access == W1P and wdata & sel:
                pulses.add(reg.port_name(f))
        return RESP_OKAY, pulses

    def read(self, addr: int) -> tuple[int, int]:
        """A bus read; returns ``(rresp, rdata)``."""
        hit = self.word_at.get(addr & ~3)
        if hit is None:
            return RESP_SLVERR, 0
        reg, i = hit
        if reg.latched and i > 0:
            return RESP_OKAY, (self.latch[reg.name] >> (32 * (i - 1))) & _WORD
        v = self.value(reg)
        if reg.latched:
            self.latch[reg.name] = v >> 32
        return RESP_OKAY, (v >> (32 * i)) & _WORD
