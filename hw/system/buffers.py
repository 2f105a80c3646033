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

Ports (for core ``c`` and each gather / scatter port ``p`` of ``hw.core.Core``'s signature):

* ``c{c}_{p}``: the core's port, flipped (gather: ``data[r][e] = buf[(addr + r*row_stride +
  e*elem_stride) mod 2**20]`` one cycle after ``en``, 0 outside the buffer; scatter: element
  ``e`` where ``mask[e]``, one byte or with ``wide`` four bytes little-endian); a port with
  backpressure (``hw.core.Core(stall=True)``) gets ``ready = 1`` (this buffer never stalls);
  :class:`hw.system.banked.BankedBuffers` is the banked version that does;
* ``ld``: In(stream of line writes ``{buf, addr, data, mask}`` of ``line`` bytes, ``addr`` a
  multiple of ``line``): the LD DMA engine's output (always ready);
* ``st_en``, ``st_buf``, ``st_addr``: In, a line read for the ST DMA engine; ``st_data``: Out
  (``8*line`` bits) in the next cycle;
* ``fault``: Out(3), sticky: bit 0 a core gather of an unknown buffer, bit 1 a core scatter out
  of its buffer, bit 2 a DMA line out of its buffer (the bytes are dropped / read as 0).
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.isa import BUFS

from ..core.ports import ADDR_BITS
from ..params import check_int, check_pow2

__all__ = ["GlobalBuffers", "GLOBAL_BUFS", "core_buffer_ports"]

GLOBAL_BUFS = ("B", "C", "OUT")


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


class GlobalBuffers(wiring.Component):
    """B, C and OUT for ``cores`` cores (see the module doc).

    Parameters (keyword-only): ``core_signature`` (``hw.core.Core(...).signature``),
    ``cores`` (1..64), ``sizes`` (``{"B": bytes, "C": bytes, "OUT": bytes}``, each
    1 KiB .. 512 KiB), ``line`` (bytes per DMA line, a power of two 4..128).
    """

    def __init__(self, *, core_signature, cores: int, sizes: dict, line: int = 16):
        self.cores = check_int("cores", cores, 1, 64)
        self.line = check_pow2("line", line, lo=4, hi=128)
        if set(sizes) != set(GLOBAL_BUFS):
            raise ValueError(f"sizes must give {GLOBAL_BUFS}, got {sorted(sizes)}")
        self.sizes = {k: check_int(f"sizes[{k!r}]", v, 1024, 1 << 19) for k, v in sizes.items()}
        self.gathers, self.scatters = core_buffer_ports(core_signature)
        if not self.gathers or not self.scatters:
            raise ValueError("the core signature has no gather or no scatter port")
        sig = {}
        for c in range(cores):
            for name, _r, _e, s in self.gathers:
                sig[f"c{c}_{name}"] = In(s)
            for name, _e, s in self.scatters:
                sig[f"c{c}_{name}"] = In(s)
        sig.update(ld=In(stream.Signature(line_write_layout(line))),
                   st_en=In(1), st_buf=In(3), st_addr=In(ADDR_BITS),
                   st_data=Out(8 * line), fault=Out(3))
        base, self.base = 0, {}
        for b in GLOBAL_BUFS:
            self.base[b] = base
            base += self.sizes[b]
        self.total = base
        super().__init__(sig)

    @staticmethod
    def _scatter_element(m, port, tag, e, size, known, fault):
        """Element ``e`` of scatter port ``port``: ``(at, act, inr)``, its byte address in the
        buffer, whether it writes this cycle, and whether its 1 (or 4, ``wide``) bytes lie
        inside the selected buffer (else ``fault`` bit 1 is set)."""
        at = Signal(ADDR_BITS + 8, name=f"{tag}_at{e}")
        m.d.comb += at.eq(port.addr + port.elem_stride * e)
        act = port.en & port.mask[e]
        inr = known & (at + Mux(port.wide, 4, 1) <= size)
        with m.If(act & ~inr):
            m.d.sync += fault[1].eq(1)
        return at, act, inr

    def _select(self, m, bufid, name):
        """(base, size, known) of buffer id ``bufid`` as multiplexers (Icarus leaves a comb
        Switch's ``always @*`` X until its input first changes)."""
        base = Signal(range(self.total + 1), name=f"{name}_base")
        size = Signal(range(self.total + 1), name=f"{name}_size")
        known = Signal(name=f"{name}_known")
        b_, s_, k_ = Const(0), Const(0), Const(0)
        for bname in GLOBAL_BUFS:
            hit = bufid == BUFS[bname]
            b_ = Mux(hit, self.base[bname], b_)
            s_ = Mux(hit, self.sizes[bname], s_)
            k_ = Mux(hit, 1, k_)
        m.d.comb += [base.eq(b_), size.eq(s_), known.eq(k_)]
        return base, size, known

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
            for name, rows, elems, _s in self.gathers:
                port = getattr(self, f"c{c}_{name}")
                tag = f"c{c}_{name}"
                base, size, known = self._select(m, port.buf, tag)
                if "ready" in port.signature.members:
                    m.d.comb += port.ready.eq(1)
                with m.If(port.en & ~known):
                    m.d.sync += fault[0].eq(1)
                for r in range(rows):
                    row = Signal(ADDR_BITS, name=f"{tag}_row{r}")
                    m.d.comb += row.eq(port.addr + port.row_stride * r)
                    for e in range(elems):
                        idx = Signal(ADDR_BITS, name=f"{tag}_i{r}_{e}")
                        rp = mem.read_port(domain="sync")
                        m.d.comb += [idx.eq(row + port.elem_stride * e),
                                     rp.en.eq(port.en | first),
                                     rp.addr.eq(Mux(first | ~(known & (idx < size)), zero,
                                                    base + idx)),
                                     port.data[r][e].eq(rp.data)]
            for name, elems, _s in self.scatters:
                port = getattr(self, f"c{c}_{name}")
                tag = f"c{c}_{name}"
                base, size, known = self._select(m, port.buf, tag)
                if "ready" in port.signature.members:
                    m.d.comb += port.ready.eq(1)
                for e in range(elems):
                    at, act, inr = self._scatter_element(m, port, tag, e, size, known, fault)
                    for b in range(4):
                        wp = mem.write_port()
                        m.d.comb += [wp.addr.eq(base + at + b),
                                     wp.data.eq(port.data[e][8 * b:8 * b + 8]),
                                     wp.en.eq(act & inr & (port.wide if b else 1))]

        # the DMA engines' line ports
        ld = self.ld.payload
        m.d.comb += self.ld.ready.eq(1)
        lbase, lsize, lknown = self._select(m, ld.buf, "ld")
        st_base, st_size, st_known = self._select(m, self.st_buf, "st")
        for j in range(self.line):
            a = Signal(ADDR_BITS + 1, name=f"ld_a{j}")
            m.d.comb += a.eq(ld.addr + j)
            on = self.ld.valid & ld.mask[j]
            ok = lknown & (a < lsize)
            with m.If(on & ~ok):
                m.d.sync += fault[2].eq(1)
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(lbase + a), wp.data.eq(ld.data[8 * j:8 * j + 8]),
                         wp.en.eq(on & ok)]
            sa = Signal(ADDR_BITS + 1, name=f"st_a{j}")
            rp = mem.read_port(domain="sync")
            m.d.comb += [sa.eq(self.st_addr + j), rp.en.eq(self.st_en | first),
                         rp.addr.eq(Mux(first | ~(st_known & (sa < st_size)), zero,
                                        st_base + sa)),
                         self.st_data[8 * j:8 * j + 8].eq(rp.data)]
            with m.If(self.st_en & ~(st_known & (sa < st_size))):
                m.d.sync += fault[2].eq(1)
        return m
