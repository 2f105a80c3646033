"""The accelerator's AXI4-Lite register block, generated from the register map.

:class:`RegisterBlock` implements a :class:`hw.system.regmap.RegisterMap` (by default
:data:`~hw.system.regmap.REGMAP`) as an AXI4-Lite subordinate: the CPU reads and writes the
registers over ``bus``, and the rest of the accelerator sees one port per field. The register
map's module docstring defines the accesses (RO, RW, W1P, W1C) and the 64-bit read rule;
``docs/regmap.md`` lists every register and port.

Bus behaviour (AXI4-Lite, 32-bit data)
--------------------------------------
* Write: AW and W are accepted independently (either first, or together) into one holding
  register each; when both are held the write is performed and the response raised on B.
  ``awready``/``wready`` stay low while their holding register is full or a write response
  waits, so there is at most one write in flight. ``bvalid``/``bresp`` hold until ``bready``.
* Read: ``arready`` is high while no read response waits; the address is decoded in the cycle
  it is accepted and ``rdata``/``rresp``/``rvalid`` are registered and held until ``rready``.
* An address that is not a register word gets ``SLVERR`` (reads return 0, writes change
  nothing); address bits [1:0] are ignored. Writes to RO bits are ignored with OKAY.
  ``wstrb`` selects the bytes of RW fields a write changes, and qualifies W1P/W1C bits.
  ``awprot``/``arprot`` are ignored.
* Every ``*ready`` and ``*valid`` output is a function of registers only: no combinational
  path from an input ``ready`` or ``valid`` to an output.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim.isa import SEM_IDS

from ..params import check_int
from .axi import RESP_OKAY, RESP_SLVERR, axi4_lite_signature
from .regmap import REGMAP, RO, RW, W1C, W1P, RegisterMap, config_constants

__all__ = ["RegisterBlock"]


class RegisterBlock(wiring.Component):
    """AXI4-Lite register block of a :class:`~hw.system.regmap.RegisterMap`.

    Parameters (keyword-only)
    -------------------------
    config : sim.config.AccelConfig or None
        The config the accelerator is built for: fills the map's build-time constants
        (``CONFIG_HASH``, ``CONFIG_NMTS``, ``CONFIG_L``, ``CONFIG_SEMS``) with
        :func:`~hw.system.regmap.config_constants`. Required for :data:`REGMAP`.
    axi_ports, data_bytes : int
        The DMA's AXI4 master ports (1..4) and bytes per beat, reported in ``CONFIG_L``.
    sems : int
        Semaphore ids of the accelerator's semaphore file (1..65536), reported in
        ``CONFIG_SEMS`` (default ``sim.isa.SEM_IDS``).
    constants : dict or None
        ``"REG.FIELD"`` -> value of constant fields, overriding those from ``config`` (for maps
        other than :data:`REGMAP`).
    regmap : RegisterMap
        The map to implement (default :data:`REGMAP`).
    addr_width : int
        Width of the bus address in bits (12 covers the 4 KiB window; more bits are decoded
        too: nothing is mapped above the window).

    Ports
    -----
    bus : In(axi4_lite_signature(addr_width=addr_width, data_width=32))
        The CPU's AXI4-Lite port (subordinate side).
    irq : Out(1)
        The interrupt: the map's ``irq_enable`` bit and any bit of ``irq_status``, registered
        (one cycle after the cause). Present when the map defines an interrupt.
    <register>_<field> (:meth:`Register.port_name`), one per field that is not a constant:
        * RW: ``Out(width)``, the register's value (a 64-bit address as one 64-bit port);
        * W1P: ``Out(1)``, high for one cycle after the CPU writes a 1;
        * RO: ``In(width)``, the value the CPU reads (e.g. ``status_busy``, the 64-bit
          counter ``perf_cycles`` in its unit: cycles, bytes or instructions);
        * W1C: ``In(1)``, *sets* the bit (hold it high for one cycle per event); the CPU reads
          the bit and clears it by writing 1.
    """

    def __init__(self, *, config=None, axi_ports: int = 1, data_bytes: int = 16,
                 sems: int = SEM_IDS, constants: dict | None = None,
                 regmap: RegisterMap = REGMAP,
                 addr_width: int = 12):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"regmap must be a RegisterMap, got {type(regmap).__name__}")
        check_int("addr_width", addr_width, regmap.size.bit_length() - 1, 64)
        values: dict[str, int] = {}
        if config is not None:
            if regmap is not REGMAP:
                raise ValueError("config fills REGMAP's constants; give constants= for another "
                                 "register map")
            values.update(config_constants(config, axi_ports=axi_ports, data_bytes=data_bytes,
                                           sems=sems))
        for path, v in (constants or {}).items():
            f = regmap.field_of(path)
            if not f.const:
                raise ValueError(f"constants: {path} is not a constant field")
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < (1 << f.width):
                raise ValueError(f"constants: {path} = {v!r} does not fit {f.width} bits")
            values[path] = v
        self._const: dict[str, int] = {}
        for r in regmap:
            for f in r.fields:
                if not f.const:
                    continue
                path = f"{r.name}.{f.name}"
                v = values.get(path, f.reset)
                if v is None:
                    raise ValueError(f"{path} is fixed when the block is built: pass "
                                     f"config=AccelConfig(...) (or constants={{{path!r}: ...}})")
                self._const[path] = v
        self.regmap = regmap
        self.addr_width = addr_width
        self.config = config
        members = {"bus": In(axi4_lite_signature(addr_width=addr_width, data_width=32))}
        if regmap.irq_enable is not None:
            members["irq"] = Out(1)
        for r in regmap:
            for f in r.fields:
                if f.has_port:
                    members[r.port_name(f)] = (Out if f.access in (RW, W1P) else In)(f.width)
        super().__init__(wiring.Signature(members))

    def constant(self, path: str) -> int:
        """The value of constant field ``"REG.FIELD"`` in this block."""
        return self._const[path]

    def elaborate(self, platform):
        m = Module()
        bus, rm = self.bus, self.regmap

        # -- storage: one signal per RW / W1C field, a latch per wide hardware-fed register --
        store = {}
        for r in rm:
            for f in r.fields:
                if f.access == RW:
                    store[r.name, f.name] = Signal(f.width, init=f.reset,
                                                   name=f"{r.port_name(f)}_q")
                    m.d.comb += getattr(self, r.port_name(f)).eq(store[r.name, f.name])
                elif f.access == W1C:
                    store[r.name, f.name] = Signal(name=f"{r.port_name(f)}_q")
                elif f.access == W1P:
                    m.d.sync += getattr(self, r.port_name(f)).eq(0)   # a pulse: one cycle
        latch = {r.name: Signal(r.width - 32, name=f"{r.name.lower()}_hi")
                 for r in rm if r.latched}

        def value(r, f):
            """What the CPU reads of field f (full width)."""
            if f.const:
                return C(self._const[f"{r.name}.{f.name}"], f.width)
            if f.access == W1P:
                return C(0, f.width)
            if f.access in (RW, W1C):
                return store[r.name, f.name]
            return getattr(self, r.port_name(f))

        def word(r, i):
            """The 32-bit word i of register r as the CPU reads it."""
            if r.width > 32:
                v = value(r, r.fields[0])
                if i > 0 and r.latched:
                    return latch[r.name][32 * (i - 1):32 * i]
                return v[32 * i:32 * (i + 1)]
            parts, pos = [], 0
            for f in r.fields:
                parts += [C(0, f.lsb - pos), value(r, f)]
                pos = f.msb + 1
            return Cat(*parts, C(0, 32 - pos))

        # -- W1C set inputs: applied after the bus write below, so a set beats a clear --
        sets = []
        for r in rm:
            for f in r.fields:
                if f.access == W1C:
                    sets.append((store[r.name, f.name], getattr(self, r.port_name(f))))

        # -- write channel -----------------------------------------------------------------
        aw_full, w_full = Signal(), Signal()
        aw_addr = Signal(self.addr_width)
        w_data, w_strb = Signal(32), Signal(4)
        bvalid, bresp = Signal(), Signal(2)
        m.d.comb += [
            bus.awready.eq(~aw_full & ~bvalid),
            bus.wready.eq(~w_full & ~bvalid),
            bus.bvalid.eq(bvalid), bus.bresp.eq(bresp),
        ]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(bus.awaddr)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)

        with m.If(aw_full & w_full):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1), bresp.eq(RESP_OKAY)]
            with m.Switch(aw_addr[2:]):
                for _name, off, r, i in rm.words():
                    with m.Case(off >> 2):
                        self._write(m, r, i, w_data, w_strb, store)
                with m.Default():
                    m.d.sync += bresp.eq(RESP_SLVERR)

        for q, s in sets:                       # after the clears: a set in the same cycle wins
            with m.If(s):
                m.d.sync += q.eq(1)

        # -- read channel ------------------------------------------------------------------
        rvalid, rresp, rdata = Signal(), Signal(2), Signal(32)
        m.d.comb += [bus.arready.eq(~rvalid), bus.rvalid.eq(rvalid), bus.rresp.eq(rresp),
                     bus.rdata.eq(rdata)]
        with m.If(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        with m.If(bus.arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rresp.eq(RESP_OKAY)]
            with m.Switch(bus.araddr[2:]):
                for _name, off, r, i in rm.words():
                    with m.Case(off >> 2):
                        m.d.sync += rdata.eq(word(r, i))
                        if i == 0 and r.latched:
                            m.d.sync += latch[r.name].eq(value(r, r.fields[0])[32:])
                with m.Default():
                    m.d.sync += [rdata.eq(0), rresp.eq(RESP_SLVERR)]

        # -- interrupt ---------------------------------------------------------------------
        if rm.irq_enable is not None:
            ereg, _, efield = rm.irq_enable.partition(".")
            causes = [store[rm.irq_status, f.name] for f in rm[rm.irq_status].fields]
            m.d.sync += self.irq.eq(store[ereg, efield] & Cat(*causes).any())
        return m

    def _write(self, m, r, i, data, strb, store):
        """The sync statements of a write of ``data`` (byte strobes ``strb``) to word ``i`` of
        register ``r`` (inside the decoder's Case)."""
        lo = 32 * i                               # the word's first bit in the register
        for f in r.fields:
            if f.access == RO:
                continue
            for byte in range(4):
                a = max(f.lsb, lo + 8 * byte)      # bits [a, b) of the register in this byte
                b = min(f.msb + 1, lo + 8 * byte + 8)
                if a >= b:
                    continue
                src = data[a - lo:b - lo]
                with m.If(strb[byte]):
                    if f.access == RW:
                        m.d.sync += store[r.name, f.name][a - f.lsb:b - f.lsb].eq(src)
                    elif f.access == W1C:
                        with m.If(src):
                            m.d.sync += store[r.name, f.name].eq(0)
                    else:                          # W1P: a pulse on the field's port
                        with m.If(src):
                            m.d.sync += getattr(self, r.port_name(f)).eq(1)
