"""The computing core (paper Sec. V-B, Fig. 8): three instruction-driven units.

``Core`` holds the MAT unit (MAT engine, S lanes x T multipliers; the log2 module for the
attention, whose output step runs on the unit's requant lanes), the R-MAC unit (R-MAC engine,
M lanes x N R-MACs) and the AUX unit (adder tree), each a :class:`hw.core.unit.Unit` with its
own instruction queue, layer registers and requant lanes, plus the per-core AUX and DIV buffers.
The units run concurrently and meet only through the global semaphores (SIGNAL/WAIT) and the
buffers, exactly as ``sim.funcsim`` and ``sim.perf`` execute a :class:`sim.compile.Binary`.

Interface decisions (docs/hw-core.md):

* instructions come in as three streams of 128-bit words, ``mat_instr``, ``rmac_instr``,
  ``aux_instr``: the per-unit split of the core's stream (``sim.funcsim.build_queues``), i.e. the
  dispatcher sits in front of the core (in the top level, or the test harness);
* the global buffers B, C, OUT are outside the core (shared by L cores) and reached through
  gather read / scatter write ports (``hw.core.ports``); the harness plays them and the LD/ST
  DMA units;
* semaphores are outside too (global): ``*_wait`` / ``*_signal`` streams;
* the per-core AUX and DIV buffers (attention: S and ksum8; the divisor codes) and buffer A
  (the broadcast operand of the R-MAC engine and the adder tree: the attention's K, filled by the
  LD DMA through the ``a_load`` port) are inside. Requests whose ``buf`` is AUX, DIV or A never
  leave the core. A is a :class:`hw.core.auxbuf.BankedStore` with two copies, one read by the
  R-MAC's ``x`` port and one by the AUX unit's ``x`` port (``N`` consecutive bytes at any byte
  address, element stride 1), written a line of ``a_line`` bytes at a time; its banks hold
  words of ``a_word`` bytes (32-bit where the readers allow it: BRAM18s in SDP mode). AUX is
  :class:`hw.core.auxbuf.AuxBuffer` (banked; S written by the engines' ``o`` ports and read by the
  MAT's ``w`` port, ksum8 written by the AUX unit and read by the MAT's ``x`` port); DIV is a
  ``lib.memory`` memory of bytes written by element 0 of the MAT's ``o`` port (ATT_DIV) and read
  by element 0 of its ``r`` port (ATT_OUT): one write and one read port.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.isa import BUFS
from sim.timing import A_MAX_LINE, BEAT, a_line_bytes

from ..params import check_int, check_pow2
from .auxbuf import AuxBuffer, BankedStore, a_word_bytes, kv_write_align, line_write_signature
from .unit import Unit

__all__ = ["Core", "UNIT_NAMES"]

UNIT_NAMES = ("mat", "rmac", "aux")
#: unit outputs the core gathers into its own status ports (not passed through)
UNIT_STATUS = ("halted", "error", "error_op", "busy_cycles", "stall_cycles")

#: unit ports served by the local buffers: (unit, port) -> local buffers (AUX: the AuxBuffer port
#: of the same name; DIV: element 0 only)
LOCAL_READS = {("mat", "x"): ("AUX",), ("mat", "w"): ("AUX",), ("mat", "r"): ("DIV",),
               ("rmac", "x"): ("A",), ("aux", "x"): ("A",)}
#: buffer A's copy that serves each of its readers
A_COPIES = {"rmac": 0, "aux": 1}
LOCAL_WRITES = {("mat", "o"): ("AUX", "DIV"), ("rmac", "o"): ("AUX",), ("aux", "o"): ("AUX",)}


class Core(wiring.Component):
    """One computing core.

    Parameters (keyword-only): ``N, M`` (R-MAC engine: M lanes x N R-MACs), ``T, S`` (MAT
    engine: S lanes x T multipliers), each 1..64; ``packed`` (DSP packing in both engines;
    needs even M and S); ``aux_bytes``, ``div_bytes``, ``a_bytes`` (sizes of the local AUX,
    DIV and A buffers, 16..65536; ``a_bytes=0`` builds no buffer A: a read of A then reads 0
    and sets the reader's ``error`` bit, ``a_load`` is ignored); ``a_line`` (bytes per line of buffer A: its banks and the
    width of ``a_load``; a power of two, ``max(16, N)`` .. 64; default
    ``sim.timing.a_line_bytes(N, 16)``); ``requant_mat``, ``requant_rmac`` (the requant lanes
    of the MAT and R-MAC units, divisors of S and M; None: one per engine lane, see
    :class:`hw.core.unit.Unit`); ``requant_rmac_res`` (how many of the R-MAC's requant lanes
    have the residual path, a divisor of ``requant_rmac``; None: all of them; an instruction
    with a residual drains through those only); ``stall`` (the buffer ports have ``ready``
    backpressure and the units freeze while a request waits: ``hw.core.unit.Unit``'s ``stall``;
    requests served by the core's local buffers are always accepted at once); ``p_reuse``
    (bool or None: the MAT and R-MAC units hold the parameter records they read and do not
    read them again within a channel block, ``hw.core.unit.Unit``'s ``p_reuse``; None, the
    default: on with ``stall``, where fewer requests mean fewer bank conflicts, off without,
    where the cycles are the same either way).
    ``Core.from_config(cfg)`` takes them from a
    ``sim.config.AccelConfig``. ``aux_buf`` is the :class:`hw.core.auxbuf.AuxBuffer`,
    ``div_mem`` the DIV ``lib.memory.Memory``, ``a_store`` buffer A's (None without one)
    :class:`hw.core.auxbuf.BankedStore` (``a_line / a_word`` banks of ``a_word``-byte words,
    :func:`hw.core.auxbuf.a_word_bytes`; for benches: ``aux_buf.contents(ctx)``,
    ``a_store.contents(ctx)``).

    Ports: for ``u`` in mat, rmac, aux: ``u_instr`` (In stream, 128-bit words), ``u_wait``,
    ``u_signal`` (Out streams of {sem, count}); for mat and rmac: ``u_x``, ``u_w``, ``u_p``,
    ``u_r`` (gather read ports: inputs, weights, parameter records, residuals) and ``u_o``
    (scatter write port); ``a_load`` (In: a line write of ``a_line`` bytes into buffer A, the
    LD DMA's port: ``en``, byte ``addr`` of the line (its low ``log2(a_line)`` bits are
    ignored: writes are line-aligned), ``mask``, ``data``; the bytes land at the clock edge);
    ``halted`` (3 bits, mat/rmac/aux), ``done`` (all halted),
    ``error`` (3 bits, sticky), ``mat_busy``, ``rmac_busy``, ``aux_busy`` (compute cycles of
    each unit, 32 bits, counting from reset).
    """

    def __init__(self, *, N: int = 8, M: int = 8, T: int = 8, S: int = 8, packed: bool = False,
                 aux_bytes: int = 4096, div_bytes: int = 1024, a_bytes: int = 8192,
                 a_line: int | None = None, requant_mat: int | None = None,
                 requant_rmac: int | None = None, requant_rmac_res: int | None = None,
                 stall: bool = False, p_reuse: bool | None = None):
        # validate every parameter before building anything: a rejected core leaves no
        # half-built buffers behind (each would warn UnusedElaboratable when collected)
        for k, v in dict(N=N, M=M, T=T, S=S).items():
            check_int(k, v, 1, 64)
        self.aux_bytes = check_int("aux_bytes", aux_bytes, 16, 1 << 16)
        self.div_bytes = check_int("div_bytes", div_bytes, 16, 1 << 16)
        if a_bytes != 0:
            check_int("a_bytes", a_bytes, 16, 1 << 16)
        self.a_bytes = a_bytes
        if a_line is None:
            a_line = a_line_bytes(N, BEAT)
        self.a_line = check_pow2("a_line", a_line, lo=max(BEAT, N), hi=A_MAX_LINE)
        if not isinstance(packed, bool):
            raise TypeError(f"packed must be a bool, got {packed!r}")
        if packed and (M % 2 or S % 2):
            raise ValueError(f"packed=True needs even M and S, got M={M}, S={S}")
        if not isinstance(stall, bool):
            raise TypeError(f"stall must be a bool, got {stall!r}")
        if p_reuse is None:
            p_reuse = stall
        if not isinstance(p_reuse, bool):
            raise TypeError(f"p_reuse must be a bool or None, got {p_reuse!r}")
        self.p_reuse = p_reuse
        # requant lanes: divisors of S / M
        for k, v, what, lanes in (("requant_mat", requant_mat, "S", S),
                                  ("requant_rmac", requant_rmac, "M", M)):
            if v is not None and check_int(k, v, 1, lanes) and lanes % v:
                raise ValueError(f"{k} must divide {what}={lanes}, got {v}")
        self.requant_mat = S if requant_mat is None else requant_mat
        self.requant_rmac = M if requant_rmac is None else requant_rmac
        if requant_rmac_res is not None and check_int("requant_rmac_res", requant_rmac_res, 1,
                                                      self.requant_rmac) \
                and self.requant_rmac % requant_rmac_res:
            raise ValueError(f"requant_rmac_res must divide requant_rmac={self.requant_rmac}, "
                             f"got {requant_rmac_res}")
        self.requant_rmac_res = (self.requant_rmac if requant_rmac_res is None
                                 else requant_rmac_res)
        self.N, self.M, self.T, self.S, self.packed = N, M, T, S, packed
        self.stall = stall
        # the attention's KV writes of each unit: R consecutive columns of one row of an S tile
        # (hw.core.attention), so at a multiple of R's largest power-of-two divisor
        self.aux_buf = AuxBuffer(depth=aux_bytes, S=S, T=T, M=M,
                                 write_align=(kv_write_align(S, T, self.requant_mat),
                                              kv_write_align(S, T, self.requant_rmac)))
        self.div_mem = Memory(shape=unsigned(8), depth=div_bytes, init=[])
        # buffer A in words of a_word bytes (32-bit: a BRAM18 in SDP mode; section "Buffer A in
        # BRAM" of docs/hw-core.md), a_line / a_word banks, readers of N bytes
        self.a_word = a_word_bytes(self.a_line, N)
        self.a_store = BankedStore(depth=a_bytes, banks=self.a_line // self.a_word,
                                   word_bytes=self.a_word, copies=len(A_COPIES),
                                   aligned_writes=True, read_bytes=N,
                                   write_bytes=self.a_line) if a_bytes else None
        self.units = {"mat": Unit(kind="MAT", lanes=S, width=T, packed=packed,
                                  requant_lanes=self.requant_mat, stall=stall,
                                  p_reuse=p_reuse),
                      "rmac": Unit(kind="RMAC", lanes=M, width=N, packed=packed,
                                   requant_lanes=self.requant_rmac,
                                   requant_res_lanes=self.requant_rmac_res,
                                   aux_tile=(S, T), stall=stall, p_reuse=p_reuse),
                      "aux": Unit(kind="AUX", lanes=1, width=N, stall=stall, p_reuse=p_reuse)}
        sig = {}
        for u, unit in self.units.items():
            for name, member in unit.signature.members.items():
                if name in UNIT_STATUS:
                    continue
                sig[f"{u}_{name}"] = member
        sig.update(a_load=In(line_write_signature(self.a_line)),
                   halted=Out(3), done=Out(1), error=Out(3), mat_busy=Out(32),
                   rmac_busy=Out(32), aux_busy=Out(32))
        super().__init__(sig)

    @classmethod
    def from_config(cls, cfg, *, packed: bool | None = None, stall: bool = False,
                    p_reuse: bool | None = None) -> "Core":
        kw = cls.config_params(cfg)
        if packed is not None:
            kw["packed"] = packed
        return cls(stall=stall, p_reuse=p_reuse, **kw)

    @staticmethod
    def config_params(cfg) -> dict:
        """The constructor parameters for a ``sim.config.AccelConfig`` (also ``hw.registry``'s)."""
        return dict(N=cfg.N, M=cfg.M, T=cfg.T, S=cfg.S, packed=cfg.dsp_packing,
                    aux_bytes=cfg.buf_aux_bytes, div_bytes=cfg.buf_div_bytes,
                    a_bytes=cfg.buf_a_bytes, a_line=a_line_bytes(cfg.N, cfg.dram_bytes_per_cycle),
                    requant_mat=cfg.requant_lanes("MAT"), requant_rmac=cfg.requant_lanes("RMAC"),
                    requant_rmac_res=cfg.requant_res_lanes())

    def elaborate(self, platform):
        m = Module()
        m.submodules.aux_buf = aux = self.aux_buf
        m.submodules.div_mem = self.div_mem
        if self.a_store is not None:
            m.submodules.a_store = self.a_store
            wiring.connect(m, wiring.flipped(self.a_load), self.a_store.write[0])
        a_err = Signal(3)       # sticky: a read of A that breaks its rule (bit 1 rmac, 2 aux)
        for u, unit in self.units.items():
            m.submodules[u] = unit
            for name, member in unit.signature.members.items():
                if name in UNIT_STATUS:
                    continue
                outer = getattr(self, f"{u}_{name}")
                inner = getattr(unit, name)
                if (u, name) in LOCAL_READS:
                    self._route_read(m, u, inner, outer, LOCAL_READS[(u, name)],
                                     getattr(aux, f"{u}_{name}", None), a_err)
                elif (u, name) in LOCAL_WRITES:
                    self._route_write(m, inner, outer, LOCAL_WRITES[(u, name)],
                                      getattr(aux, f"{u}_{name}"))
                else:
                    wiring.connect(m, wiring.flipped(outer), inner)
        us = [self.units[u] for u in UNIT_NAMES]
        m.d.comb += [self.halted.eq(Cat(*[u.halted for u in us])),
                     self.done.eq(Cat(*[u.halted for u in us]).all()),
                     self.error.eq(Cat(*[u.error for u in us]) | aux.error | a_err),
                     self.mat_busy.eq(self.units["mat"].busy_cycles),
                     self.rmac_busy.eq(self.units["rmac"].busy_cycles),
                     self.aux_busy.eq(self.units["aux"].busy_cycles)]
        return m

    def _route_read(self, m, u, inner, outer, targets, aux_port, a_err):
        """Gather port ``inner`` of unit ``u``: requests for AUX go to ``aux_port`` (the
        AuxBuffer), for DIV to the DIV memory's read port (element 0: latency 1, outside the
        buffer reads 0), for A to the unit's copy of buffer A (a line at ``addr``: element
        stride 1 or the unit's bit of ``a_err`` is set); the others go out through ``outer``."""
        hits = {b: Signal(name=f"{b.lower()}_rd") for b in targets}
        for b, hit in hits.items():
            m.d.comb += hit.eq(inner.en & (inner.buf == BUFS[b]))
        if self.stall:
            m.d.comb += inner.ready.eq(Cat(*hits.values()).any() | outer.ready)
        m.d.comb += [outer.en.eq(inner.en & ~Cat(*hits.values()).any()),
                     outer.buf.eq(inner.buf), outer.addr.eq(inner.addr),
                     outer.row_stride.eq(inner.row_stride),
                     outer.elem_stride.eq(inner.elem_stride), inner.data.eq(outer.data)]
        for b, hit in hits.items():
            hit_q = Signal(name=f"{b.lower()}_rd_q")
            m.d.sync += hit_q.eq(hit)
            if b == "A" and self.a_store is None:
                with m.If(hit):     # no buffer A: the data stay 0
                    m.d.sync += a_err[UNIT_NAMES.index(u)].eq(1)
            elif b == "A":
                rd = self.a_store.read[A_COPIES[u]]
                elems = len(inner.data[0])
                m.d.comb += [rd.en.eq(hit), rd.addr.eq(inner.addr)]
                with m.If(hit_q):
                    m.d.comb += [inner.data[0][e].eq(rd.data[e]) for e in range(elems)]
                if elems > 1:
                    with m.If(hit & (inner.elem_stride != 1)):
                        m.d.sync += a_err[UNIT_NAMES.index(u)].eq(1)
            elif b == "AUX":
                m.d.comb += [aux_port.en.eq(hit), aux_port.addr.eq(inner.addr),
                             aux_port.row_stride.eq(inner.row_stride),
                             aux_port.elem_stride.eq(inner.elem_stride)]
                with m.If(hit_q):
                    m.d.comb += inner.data.eq(aux_port.data)
            else:
                rp, ok_q = self.div_mem.read_port(), Signal(name="div_rok")
                idx = inner.addr
                m.d.comb += [rp.addr.eq(idx), rp.en.eq(hit)]
                m.d.sync += ok_q.eq(idx < self.div_mem.depth)
                with m.If(hit_q):
                    m.d.comb += inner.data[0][0].eq(Mux(ok_q, rp.data, 0))

    def _route_write(self, m, inner, outer, targets, aux_port):
        """Scatter port ``inner`` of a unit: writes to AUX go to ``aux_port`` (the AuxBuffer),
        byte writes to DIV (element 0) to the DIV memory's write port (dropped outside the
        buffer); the others go out through ``outer``."""
        hits = {b: Signal(name=f"{b.lower()}_wr") for b in targets}
        for b, hit in hits.items():
            m.d.comb += hit.eq(inner.en & (inner.buf == BUFS[b]))
        if self.stall:
            m.d.comb += inner.ready.eq(Cat(*hits.values()).any() | outer.ready)
        m.d.comb += [outer.en.eq(inner.en & ~Cat(*hits.values()).any()),
                     outer.buf.eq(inner.buf), outer.addr.eq(inner.addr),
                     outer.elem_stride.eq(inner.elem_stride), outer.wide.eq(inner.wide),
                     outer.mask.eq(inner.mask), outer.data.eq(inner.data)]
        m.d.comb += [aux_port.en.eq(hits["AUX"]), aux_port.addr.eq(inner.addr),
                     aux_port.elem_stride.eq(inner.elem_stride), aux_port.wide.eq(inner.wide),
                     aux_port.mask.eq(inner.mask), aux_port.data.eq(inner.data)]
        if "DIV" in hits:
            wp = self.div_mem.write_port()
            m.d.comb += [wp.addr.eq(inner.addr), wp.data.eq(inner.data[0][:8]),
                         wp.en.eq(hits["DIV"] & ~inner.wide & inner.mask[0]
                                  & (inner.addr < self.div_mem.depth))]
