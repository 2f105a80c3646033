"""The computing core (paper Sec. V-B, Fig. 8): three instruction-driven units.

``Core`` holds the MAT unit (MAT engine, S lanes x T multipliers; log2 module and shifter array
for the attention), the R-MAC unit (R-MAC engine, M lanes x N R-MACs) and the AUX unit (adder
tree), each a :class:`hw.core.unit.Unit` with its own instruction queue, layer registers and
requant lanes, plus the per-core AUX and DIV buffers. The units run concurrently and meet only
through the global semaphores (SIGNAL/WAIT) and the buffers, exactly as ``sim.funcsim`` and ``sim.perf`` execute a :class:`sim.compile.Binary`.

Interface decisions (docs/hw-core.md):

* instructions come in as three streams of 128-bit words, ``mat_instr``, ``rmac_instr``,
  ``aux_instr``: the per-unit split of the core's stream (``sim.funcsim.build_queues``), i.e. the
  dispatcher sits in front of the core (in the top level, or the test harness);
* the global buffers B, C, OUT are outside the core (shared by L cores) and reached through
  gather read / scatter write ports (``hw.core.ports``); the harness plays them and the LD/ST
  DMA units;
* semaphores are outside too (global): ``*_wait`` / ``*_signal`` streams;
* the per-core AUX and DIV buffers (attention: S and ksum8; the divisor codes) are inside, as
  ``lib.memory`` memories of bytes. The core routes the unit ports that reach them (requests
  whose ``buf`` is AUX or DIV never leave the core): AUX is read by the MAT unit's ``x``
  (ATT_DIV: ksum8) and ``w`` ports (ATT_OUT: S) and written by the ``o`` ports of all three
  units (ATT_KV_*, ATT_KSUM); DIV is written by element 0 of the MAT's ``o`` port (ATT_DIV) and
  read by element 0 of its ``r`` port (ATT_OUT). Every element of a gather/scatter is one
  memory port (the buffers are small; banking them is left for later, docs/hw-core.md).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.isa import BUFS

from ..params import check_int
from .ports import ADDR_BITS
from .unit import Unit

__all__ = ["Core", "UNIT_NAMES"]

UNIT_NAMES = ("mat", "rmac", "aux")

#: unit ports served by the local buffers: (unit, port) -> ((buffer, elements or None = all), ...)
LOCAL_READS = {("mat", "x"): (("AUX", None),), ("mat", "w"): (("AUX", None),),
               ("mat", "r"): (("DIV", 1),)}
LOCAL_WRITES = {("mat", "o"): (("AUX", None), ("DIV", 1)), ("rmac", "o"): (("AUX", None),),
                ("aux", "o"): (("AUX", None),)}


class Core(wiring.Component):
    """One computing core.

    Parameters (keyword-only): ``N, M`` (R-MAC engine: M lanes x N R-MACs), ``T, S`` (MAT
    engine: S lanes x T multipliers), each 1..64; ``packed`` (DSP packing in both engines;
    needs even M and S); ``aux_bytes``, ``div_bytes`` (sizes of the local AUX and DIV buffers,
    16..65536). ``Core.from_config(cfg)`` takes them from a ``sim.config.AccelConfig``.
    ``aux_mem`` / ``div_mem`` are the two ``lib.memory.Memory`` objects (for benches).

    Ports: for ``u`` in mat, rmac, aux: ``u_instr`` (In stream, 128-bit words), ``u_wait``,
    ``u_signal`` (Out streams of {sem, count}); for mat and rmac: ``u_x``, ``u_w``, ``u_p``,
    ``u_r`` (gather read ports: inputs, weights, parameter records, residuals) and ``u_o``
    (scatter write port); ``halted`` (3 bits, mat/rmac/aux), ``done`` (all halted),
    ``error`` (3 bits, sticky), ``mat_busy``, ``rmac_busy`` (compute cycles, 32 bits).
    """

    def __init__(self, *, N: int = 8, M: int = 8, T: int = 8, S: int = 8, packed: bool = False,
                 aux_bytes: int = 4096, div_bytes: int = 1024):
        for k, v in dict(N=N, M=M, T=T, S=S).items():
            check_int(k, v, 1, 64)
        self.aux_bytes = check_int("aux_bytes", aux_bytes, 16, 1 << 16)
        self.div_bytes = check_int("div_bytes", div_bytes, 16, 1 << 16)
        self.aux_mem = Memory(shape=unsigned(8), depth=aux_bytes, init=[])
        self.div_mem = Memory(shape=unsigned(8), depth=div_bytes, init=[])
        if not isinstance(packed, bool):
            raise TypeError(f"packed must be a bool, got {packed!r}")
        if packed and (M % 2 or S % 2):
            raise ValueError(f"packed=True needs even M and S, got M={M}, S={S}")
        self.N, self.M, self.T, self.S, self.packed = N, M, T, S, packed
        self.units = {"mat": Unit(kind="MAT", lanes=S, width=T, packed=packed),
                      "rmac": Unit(kind="RMAC", lanes=M, width=N, packed=packed),
                      "aux": Unit(kind="AUX", lanes=1, width=N)}
        sig = {}
        for u, unit in self.units.items():
            for name, member in unit.signature.members.items():
                if name in ("halted", "error", "error_op", "busy_cycles"):
                    continue
                sig[f"{u}_{name}"] = member
        sig.update(halted=Out(3), done=Out(1), error=Out(3), mat_busy=Out(32),
                   rmac_busy=Out(32))
        super().__init__(sig)

    @classmethod
    def from_config(cls, cfg, *, packed: bool | None = None) -> "Core":
        return cls(N=cfg.N, M=cfg.M, T=cfg.T, S=cfg.S,
                   packed=cfg.dsp_packing if packed is None else packed,
                   aux_bytes=cfg.buf_aux_bytes, div_bytes=cfg.buf_div_bytes)

    def elaborate(self, platform):
        m = Module()
        m.submodules.aux_mem = self.aux_mem
        m.submodules.div_mem = self.div_mem
        mems = {"AUX": self.aux_mem, "DIV": self.div_mem}
        for u, unit in self.units.items():
            m.submodules[u] = unit
            for name, member in unit.signature.members.items():
                if name in ("halted", "error", "error_op", "busy_cycles"):
                    continue
                outer = getattr(self, f"{u}_{name}")
                inner = getattr(unit, name)
                if (u, name) in LOCAL_READS:
                    self._route_read(m, inner, outer, LOCAL_READS[(u, name)], mems)
                elif (u, name) in LOCAL_WRITES:
                    self._route_write(m, inner, outer, LOCAL_WRITES[(u, name)], mems)
                else:
                    wiring.connect(m, wiring.flipped(outer), inner)
        us = [self.units[u] for u in UNIT_NAMES]
        m.d.comb += [self.halted.eq(Cat(*[u.halted for u in us])),
                     self.done.eq(Cat(*[u.halted for u in us]).all()),
                     self.error.eq(Cat(*[u.error for u in us])),
                     self.mat_busy.eq(self.units["mat"].busy_cycles),
                     self.rmac_busy.eq(self.units["rmac"].busy_cycles)]
        return m

    @staticmethod
    def _route_read(m, inner, outer, targets, mems):
        """Gather port ``inner`` of a unit: requests for a local buffer are served by one read
        port per element of that memory (same contract: latency 1, 20-bit address wrap, outside
        the buffer reads 0); the others go out through ``outer``."""
        local = Signal()
        m.d.comb += local.eq(Cat(*[inner.buf == BUFS[b] for b, _ in targets]).any())
        m.d.comb += [outer.en.eq(inner.en & ~local), outer.buf.eq(inner.buf),
                     outer.addr.eq(inner.addr), outer.row_stride.eq(inner.row_stride),
                     outer.elem_stride.eq(inner.elem_stride), inner.data.eq(outer.data)]
        rows, elems = len(inner.data), len(inner.data[0])
        for b, n in targets:
            mem = mems[b]
            hit, hit_q = Signal(name=f"{b.lower()}_rd"), Signal(name=f"{b.lower()}_rd_q")
            m.d.comb += hit.eq(inner.en & (inner.buf == BUFS[b]))
            m.d.sync += hit_q.eq(hit)
            for r in range(rows if n is None else 1):
                for e in range(elems if n is None else n):
                    idx = Signal(ADDR_BITS, name=f"{b.lower()}_ra_{r}_{e}")
                    ok_q = Signal(name=f"{b.lower()}_rok_{r}_{e}")
                    m.d.comb += idx.eq(inner.addr + r * inner.row_stride + e * inner.elem_stride)
                    rp = mem.read_port()
                    m.d.comb += [rp.addr.eq(idx), rp.en.eq(hit)]
                    m.d.sync += ok_q.eq(idx < mem.depth)
                    with m.If(hit_q):
                        m.d.comb += inner.data[r][e].eq(Mux(ok_q, rp.data, 0))

    @staticmethod
    def _route_write(m, inner, outer, targets, mems):
        """Scatter port ``inner`` of a unit: byte writes to a local buffer go to one write port
        per element of that memory (writes outside the buffer are dropped; int32 ``wide`` writes
        are not served locally); the others go out through ``outer``."""
        local = Signal()
        m.d.comb += local.eq(Cat(*[inner.buf == BUFS[b] for b, _ in targets]).any())
        m.d.comb += [outer.en.eq(inner.en & ~local), outer.buf.eq(inner.buf),
                     outer.addr.eq(inner.addr), outer.elem_stride.eq(inner.elem_stride),
                     outer.wide.eq(inner.wide), outer.mask.eq(inner.mask),
                     outer.data.eq(inner.data)]
        elems = len(inner.data)
        for b, n in targets:
            mem = mems[b]
            hit = Signal(name=f"{b.lower()}_wr")
            m.d.comb += hit.eq(inner.en & ~inner.wide & (inner.buf == BUFS[b]))
            for e in range(elems if n is None else n):
                idx = Signal(ADDR_BITS, name=f"{b.lower()}_wa_{e}")
                m.d.comb += idx.eq(inner.addr + e * inner.elem_stride)
                wp = mem.write_port()
                m.d.comb += [wp.addr.eq(idx), wp.data.eq(inner.data[e][:8]),
                             wp.en.eq(hit & inner.mask[e] & (idx < mem.depth))]
