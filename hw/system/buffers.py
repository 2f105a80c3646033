"""The global buffers B, C and OUT, shared by the L cores and the DMA engines (behavioural).

**Status (docs/system.md, "Global buffers"):** this is the *behavioural* version: it serves the
cores' gather / scatter contract (``hw.core.ports``: any row and element stride, one-cycle
latency, no stall) with one memory read port per byte lane, as the retired simulation model
``CoreSystem`` did. It is exact and simulates well, but it is not the BRAM layout the ZCU102 needs (a real BRAM
has two ports; at the paper's point the cores' ports ask for thousands of byte lanes a cycle).
The banked design that replaces it changes the core's port contract and the compiler's layout
(docs/global-buffers.md); the ports of this component towards the DMA engines are already the
BRAM-shaped ones (one aligned line per cycle).

The three buffers live in one byte memory at offsets ``B, C, OUT`` (sizes from the config).
Each core's byte addresses (every gather lane, every scatter byte) are computed by a
:class:`CoreLanes` (combinational); with ``hierarchy=True`` those are instances of one Verilog
module :data:`LANES_MODULE` converted once (``hw.hier``): how ``python -m hw build zcu102``
writes the ``paper`` buffers (too wide for an instance themselves) without L copies of that
logic in the top (docs/board.md, "Measured here").

Ports (for core ``c`` and each gather / scatter port ``p`` of ``hw.core.Core``'s signature):

* ``c{c}_{p}``: the core's port, flipped (gather: ``data[r][e] = buf[(addr + r*row_stride +
  e*elem_stride) mod 2**20]`` one cycle after ``en``, 0 outside the buffer; scatter: element
  ``e`` where ``mask[e]``, one byte or with ``wide`` four bytes little-endian); a port with
  backpressure (``hw.core.Core(stall=True)``) gets ``ready = 1`` (this buffer never stalls);
  :class:`hw.system.banked.BankedBuffers` is the banked version that does;
* ``ld``: In(stream of line writes ``{buf, addr, data, mask}`` of ``line`` bytes, ``addr`` a
  multiple of ``line``): the LD DMA engine's output (always ready); with ``ld_ports`` = n > 1
  also ``ld1`` .. ``ld{n-1}`` (:func:`ld_port_name`), one per LD engine, each written in the
  same cycle as the others (byte masks: two ports writing different bytes of one line both
  land; two writing the same byte in one cycle is what the compiler never emits, docs/system.md
  "AXI ports", and leaves either value);
* ``st_en``, ``st_buf``, ``st_addr``: In, a line read for the ST DMA engine; ``st_data``: Out
  (``8*line`` bits) in the next cycle;
* ``fault``: Out(3), sticky: bit 0 a core gather of an unknown buffer, bit 1 a core scatter out
  of its buffer, bit 2 a DMA line out of its buffer (the bytes are dropped / read as 0).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.isa import BUF_MAX_BYTES, BUFS

from ..core.ports import ADDR_BITS
from ..hier import ModuleInstance
from ..params import check_bool, check_int, check_pow2

__all__ = ["GlobalBuffers", "CoreLanes", "GLOBAL_BUFS", "LANES_MODULE", "core_buffer_ports",
           "ld_port_name", "MAX_LD_PORTS"]

GLOBAL_BUFS = ("B", "C", "OUT")
#: line-write ports for LD engines (``ld_ports``): one per LD engine of a 4-port accelerator
MAX_LD_PORTS = 4


def ld_port_name(k: int) -> str:
    """The name of line-write port ``k`` of the global buffers: ``ld``, ``ld1``, ``ld2``, ..."""
    return "ld" if k == 0 else f"ld{k}"


def _is_gather(sig) -> bool:
    mem = sig.members
    return {"en", "buf", "addr", "row_stride", "elem_stride", "data"} == set(mem) - {"ready"} \
        and mem["data"].flow == In


def _is_scatter(sig) -> bool:
    return {"en", "buf", "addr", "elem_stride", "wide", "mask", "data"} == \
        set(sig.members) - {"ready"}


def core_buffer_ports(core_signature) -> tuple[list, list]:
    """``([(name, rows, elems, signature)], [(name, elems, signature)])``: the gather read and
    scatter write ports of a core's signature (found by their members, so ports added to
    ``hw.core`` need no edit here)."""
    gathers, scatters = [], []
    for name, mem in core_signature.members.items():
        if not (mem.is_signature and mem.flow == Out):
            continue
        if _is_gather(mem.signature):
            lay = mem.signature.members["data"].shape
            gathers.append((name, lay.length, lay.elem_shape.length, mem.signature))
        elif _is_scatter(mem.signature):
            scatters.append((name, mem.signature.members["data"].shape.length, mem.signature))
    return gathers, scatters


def line_write_layout(line: int) -> data.StructLayout:
    return data.StructLayout({"buf": unsigned(3), "addr": unsigned(ADDR_BITS),
                              "data": unsigned(8 * line), "mask": unsigned(line)})


#: the request members of a gather / scatter port (what :class:`CoreLanes` reads)
GATHER_REQUEST = ("en", "buf", "addr", "row_stride", "elem_stride")
SCATTER_REQUEST = ("en", "buf", "addr", "elem_stride", "wide", "mask")

#: the Verilog module of :class:`CoreLanes` (``GlobalBuffers(hierarchy=True)``)
LANES_MODULE = "trio_buflanes"


def _check_sizes(sizes) -> dict:
    if not isinstance(sizes, dict) or set(sizes) != set(GLOBAL_BUFS):
        raise ValueError(f"sizes must give {GLOBAL_BUFS}, got {sorted(sizes or ())}")
    return {k: check_int(f"sizes[{k!r}]", sizes[k], 1024, BUF_MAX_BYTES[k]) for k in GLOBAL_BUFS}


def _bases(sizes) -> tuple[dict, int]:
    """``({buffer: offset in the byte memory}, total bytes)``: B, C, OUT one after another."""
    base, bases = 0, {}
    for b in GLOBAL_BUFS:
        bases[b] = base
        base += sizes[b]
    return bases, base


def _select(m, bufid, name, bases, sizes, total):
    """(base, size, known) of buffer id ``bufid`` as multiplexers (Icarus leaves a comb
    Switch's ``always @*`` X until its input first changes)."""
    base = Signal(range(total + 1), name=f"{name}_base")
    size = Signal(range(total + 1), name=f"{name}_size")
    known = Signal(name=f"{name}_known")
    b_, s_, k_ = Const(0), Const(0), Const(0)
    for bname in GLOBAL_BUFS:
        hit = bufid == BUFS[bname]
        b_ = Mux(hit, bases[bname], b_)
        s_ = Mux(hit, sizes[bname], s_)
        k_ = Mux(hit, 1, k_)
    m.d.comb += [base.eq(b_), size.eq(s_), known.eq(k_)]
    return base, size, known


def _scatter_at(m, port, tag, e, size, known):
    """Element ``e`` of scatter port ``port``: ``(at, act, inr)``, its byte address in the
    buffer, whether it writes this cycle, and whether its 1 (or 4, ``wide``) bytes lie inside
    the selected buffer."""
    at = Signal(ADDR_BITS + 8, name=f"{tag}_at{e}")
    m.d.comb += at.eq(port.addr + port.elem_stride * e)
    act = port.en & port.mask[e]
    inr = known & (at + Mux(port.wide, 4, 1) <= size)
    return at, act, inr


def _request_signature(port_signature, members) -> wiring.Signature:
    return wiring.Signature({k: Out(port_signature.members[k].shape) for k in members})


class CoreLanes(wiring.Component):
    """The byte addresses of one core's gather and scatter ports in the global buffers' byte
    memory (combinational; what :class:`GlobalBuffers` computes for each core).

    Parameters (keyword-only): ``core_signature`` (``hw.core.Core(...).signature``),
    ``sizes`` (``{"B": bytes, "C": bytes, "OUT": bytes}``, each 1 KiB ..
    ``sim.isa.BUF_MAX_BYTES``: B and OUT 512 KiB, C 2 MiB).

    Ports (the memory holds B, C, OUT at offsets ``base`` and one zero byte at ``total``;
    addresses are byte indices into it, ``range(total + 1)``):

    * ``first``: In(1), the power-up cycle: every gather lane addresses the zero byte;
    * for each gather port ``p`` (rows x elems bytes): ``p``: In(its request: ``en``,
      ``buf``, ``addr``, ``row_stride``, ``elem_stride``); ``p_addr``: Out(rows * elems
      addresses, row-major): ``base + (addr + r*row_stride + e*elem_stride) mod 2**20``, or
      the zero byte if that lies outside the buffer (or the buffer id is unknown);
    * for each scatter port ``p`` (elems elements): ``p``: In(its request: ``en``, ``buf``,
      ``addr``, ``elem_stride``, ``wide``, ``mask``); ``p_addr``: Out(4 * elems addresses,
      byte ``b`` of element ``e`` at ``4*e + b``), ``p_en``: Out(4 * elems) the byte is
      written this cycle (``en``, ``mask[e]``, inside the buffer; bytes 1..3 only if
      ``wide``);
    * ``fault``: Out(2), this cycle: bit 0 a gather of an unknown buffer, bit 1 a scatter
      element out of its buffer.
    """

    def __init__(self, *, core_signature, sizes: dict):
        self.sizes = _check_sizes(sizes)
        self.base, self.total = _bases(self.sizes)
        self.gathers, self.scatters = core_buffer_ports(core_signature)
        if not self.gathers or not self.scatters:
            raise ValueError("the core signature has no gather or no scatter port")
        addr = data.ArrayLayout
        aw = Shape.cast(range(self.total + 1))      # the memory's address
        sig = {"first": In(1)}
        for name, rows, elems, s in self.gathers:
            sig[name] = In(_request_signature(s, GATHER_REQUEST))
            sig[f"{name}_addr"] = Out(addr(aw, rows * elems))
        for name, elems, s in self.scatters:
            sig[name] = In(_request_signature(s, SCATTER_REQUEST))
            sig[f"{name}_addr"] = Out(addr(aw, 4 * elems))
            sig[f"{name}_en"] = Out(4 * elems)
        sig["fault"] = Out(2)
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        zero = self.total
        sel = dict(bases=self.base, sizes=self.sizes, total=self.total)
        bad_buf, bad_scatter = [], []
        for name, rows, elems, _s in self.gathers:
            port = getattr(self, name)
            base, size, known = _select(m, port.buf, name, **sel)
            bad_buf.append(port.en & ~known)
            # e * elem_stride once per element, shared by the rows (same sum mod 2**20)
            offs = []
            for e in range(elems):
                off = Signal(ADDR_BITS, name=f"{name}_off{e}")
                m.d.comb += off.eq(port.elem_stride * e)
                offs.append(off)
            lanes = []
            for r in range(rows):
                row = Signal(ADDR_BITS, name=f"{name}_row{r}")
                m.d.comb += row.eq(port.addr + port.row_stride * r)
                for e in range(elems):
                    idx = Signal(ADDR_BITS, name=f"{name}_i{r}_{e}")
                    m.d.comb += idx.eq(row + offs[e])
                    lanes.append(Mux(self.first | ~(known & (idx < size)), zero, base + idx))
            # one assignment of the whole port (one per lane is quadratic in Amaranth)
            out = getattr(self, f"{name}_addr").as_value()
            w = len(out) // len(lanes)
            m.d.comb += out.eq(Cat(*(v[:w] for v in lanes)))
        for name, elems, _s in self.scatters:
            port = getattr(self, name)
            base, size, known = _select(m, port.buf, name, **sel)
            addrs, ens = [], []
            for e in range(elems):
                at, act, inr = _scatter_at(m, port, name, e, size, known)
                bad_scatter.append(act & ~inr)
                for b in range(4):
                    addrs.append(base + at + b)
                    ens.append(act & inr & (port.wide if b else 1))
            out = getattr(self, f"{name}_addr").as_value()
            w = len(out) // len(addrs)
            m.d.comb += [out.eq(Cat(*(a[:w] for a in addrs))),
                         getattr(self, f"{name}_en").eq(Cat(*ens))]
        m.d.comb += self.fault.eq(Cat(Cat(*bad_buf).any(), Cat(*bad_scatter).any()))
        return m
class GlobalBuffers(wiring.Component):
    """B, C and OUT for ``cores`` cores (see the module doc).

    Parameters (keyword-only): ``core_signature`` (``hw.core.Core(...).signature``),
    ``cores`` (1..64), ``sizes`` (``{"B": bytes, "C": bytes, "OUT": bytes}``, each
    1 KiB .. ``sim.isa.BUF_MAX_BYTES``), ``line`` (bytes per DMA line, a power of two
    4..128), ``ld_ports`` (1..:data:`MAX_LD_PORTS`, default 1: line-write ports, one per LD
    engine), ``hierarchy``
    (bool, default False): each core's addresses (:class:`CoreLanes`, combinational) as
    instances of one Verilog module :data:`LANES_MODULE` converted once (``modules``, the
    :mod:`hw.hier` protocol) instead of ``cores`` copies in this module; the same logic.
    """

    def __init__(self, *, core_signature, cores: int, sizes: dict, line: int = 16,
                 ld_ports: int = 1, hierarchy: bool = False):
        self.cores = check_int("cores", cores, 1, 64)
        self.ld_ports = check_int("ld_ports", ld_ports, 1, MAX_LD_PORTS)
        self.line = check_pow2("line", line, lo=4, hi=128)
        self.sizes = _check_sizes(sizes)
        self.hierarchy = check_bool("hierarchy", hierarchy)
        self.gathers, self.scatters = core_buffer_ports(core_signature)
        if not self.gathers or not self.scatters:
            raise ValueError("the core signature has no gather or no scatter port")
        self.core_signature = core_signature
        sig = {}
        for c in range(cores):
            for name, _r, _e, s in self.gathers:
                sig[f"c{c}_{name}"] = In(s)
            for name, _e, s in self.scatters:
                sig[f"c{c}_{name}"] = In(s)
        for k in range(self.ld_ports):
            sig[ld_port_name(k)] = In(stream.Signature(line_write_layout(line)))
        sig.update(st_en=In(1), st_buf=In(3), st_addr=In(ADDR_BITS),
                   st_data=Out(8 * line), fault=Out(3))
        sig.update(self._extra_ports())
        self.base, self.total = _bases(self.sizes)
        #: the parts converted as Verilog modules of their own (``hierarchy=True``)
        self.modules = {LANES_MODULE: self._lanes()} if hierarchy else {}
        self.module_clocked = dict.fromkeys(self.modules, False)
        super().__init__(sig)

    def _extra_ports(self) -> dict:
        """Signature members a subclass adds (called once ``gathers`` / ``scatters`` are
        known); none here."""
        return {}

    @staticmethod
    def _scatter_element(m, port, tag, e, size, known, fault):
        """``(at, act, inr)`` of :func:`_scatter_at`; sets ``fault`` bit 1 (sticky) when an
        element that writes lies outside its buffer."""
        at, act, inr = _scatter_at(m, port, tag, e, size, known)
        with m.If(act & ~inr):
            m.d.sync += fault[1].eq(1)
        return at, act, inr

    def _select(self, m, bufid, name):
        """(base, size, known) of buffer id ``bufid`` (:func:`_select`)."""
        return _select(m, bufid, name, self.base, self.sizes, self.total)

    def _lanes(self):
        return CoreLanes(core_signature=self.core_signature, sizes=self.sizes)

    def clocked(self, module: str, flag: bool) -> None:
        """Whether module ``module`` has ``clk``/``rst`` (told by :func:`hw.hier.convert`):
        :class:`CoreLanes` must not (a parent's ``ResetInserter`` would not reach into it)."""
        if flag:
            raise RuntimeError(f"module {module} has clk/rst: CoreLanes must be combinational")
        self.module_clocked[module] = flag

    def elaborate(self, platform):
        m = Module()
        zero = self.total               # a byte past the buffers that stays 0
        mem = Memory(shape=unsigned(8), depth=self.total + 1, init=[])
        m.submodules.mem = mem
        self.mem = mem
        fault = Signal(3)
        m.d.comb += self.fault.eq(fault)
        first = Signal(init=1)          # power-up cycle: every lane reads the zero byte
        m.d.sync += first.eq(0)

        for c in range(self.cores):
            if self.hierarchy:
                lanes = ModuleInstance(part=self.modules[LANES_MODULE], module=LANES_MODULE,
                                       clocked=self.module_clocked[LANES_MODULE])
            else:
                lanes = self._lanes()
            m.submodules[f"lanes{c}"] = lanes
            m.d.comb += lanes.first.eq(first)
            with m.If(lanes.fault[0]):
                m.d.sync += fault[0].eq(1)
            with m.If(lanes.fault[1]):
                m.d.sync += fault[1].eq(1)
            for name, rows, elems, _s in self.gathers:
                port = getattr(self, f"c{c}_{name}")
                req = getattr(lanes, name)
                m.d.comb += [getattr(req, k).eq(getattr(port, k)) for k in GATHER_REQUEST]
                if "ready" in port.signature.members:
                    m.d.comb += port.ready.eq(1)
                en = Signal(name=f"c{c}_{name}_ren")
                m.d.comb += en.eq(port.en | first)
                addrs = getattr(lanes, f"{name}_addr")
                rdata = []
                for i in range(rows * elems):
                    rp = mem.read_port(domain="sync")
                    m.d.comb += [rp.en.eq(en), rp.addr.eq(addrs[i])]
                    rdata.append(rp.data)
                # one assignment of the whole port (one per lane is quadratic in Amaranth)
                m.d.comb += port.data.eq(Cat(*rdata))
            for name, elems, _s in self.scatters:
                port = getattr(self, f"c{c}_{name}")
                req = getattr(lanes, name)
                m.d.comb += [getattr(req, k).eq(getattr(port, k)) for k in SCATTER_REQUEST]
                if "ready" in port.signature.members:
                    m.d.comb += port.ready.eq(1)
                addrs, ens = getattr(lanes, f"{name}_addr"), getattr(lanes, f"{name}_en")
                for e in range(elems):
                    for b in range(4):
                        wp = mem.write_port()
                        m.d.comb += [wp.addr.eq(addrs[4 * e + b]),
                                     wp.data.eq(port.data[e][8 * b:8 * b + 8]),
                                     wp.en.eq(ens[4 * e + b])]

        # the DMA engines' line ports: one byte write port per lane of every LD port
        for k in range(self.ld_ports):
            name = ld_port_name(k)
            port = getattr(self, name)
            ld = port.payload
            m.d.comb += port.ready.eq(1)
            lbase, lsize, lknown = self._select(m, ld.buf, name)
            for j in range(self.line):
                a = Signal(ADDR_BITS + 1, name=f"{name}_a{j}")
                m.d.comb += a.eq(ld.addr + j)
                on = port.valid & ld.mask[j]
                ok = lknown & (a < lsize)
                with m.If(on & ~ok):
                    m.d.sync += fault[2].eq(1)
                wp = mem.write_port()
                m.d.comb += [wp.addr.eq(lbase + a), wp.data.eq(ld.data[8 * j:8 * j + 8]),
                             wp.en.eq(on & ok)]
        st_base, st_size, st_known = self._select(m, self.st_buf, "st")
        st_data = []
        for j in range(self.line):
            sa = Signal(ADDR_BITS + 1, name=f"st_a{j}")
            rp = mem.read_port(domain="sync")
            m.d.comb += [sa.eq(self.st_addr + j), rp.en.eq(self.st_en | first),
                         rp.addr.eq(Mux(first | ~(st_known & (sa < st_size)), zero,
                                        st_base + sa))]
            st_data.append(rp.data)
            with m.If(self.st_en & ~(st_known & (sa < st_size))):
                m.d.sync += fault[2].eq(1)
        m.d.comb += self.st_data.eq(Cat(*st_data))
        return m
