"""The whole accelerator: L computing cores and the system around them (paper Fig. 8).

``Accelerator`` is what sits between a Zynq UltraScale+'s DDR and its CPU:

* ``s_axi`` (AXI4-Lite subordinate): the register block of :mod:`hw.system.regmap` (control,
  status and error code, base addresses, performance counters, the config it was built for);
* ``m_axi`` (AXI4 manager, 128-bit): the dispatcher's instruction fetch and the LD engine share
  its read channels (:class:`hw.system.arbiter.ReadArbiter`), the ST engine owns its write
  channels; with ``axi_ports`` = P > 1, managers ``m_axi1`` .. ``m_axi{P-1}`` carry the reads
  of P - 1 LD engines, one each (``m_axi`` keeps the fetch and the ST writes; the LD unit deals
  its descriptors round-robin to the engines, :class:`hw.system.dma.DescriptorDealer`), the
  ports meant for the ZCU102's HP ports (docs/system.md, "AXI ports");
* ``irq``: the interrupt (``CTRL.IRQ_EN`` and any bit of ``IRQ_STATUS``).

Inside: the :class:`hw.system.dispatch.Dispatcher` (the Binary's unit queues from DRAM,
``sim.image``), the global units LD, ST, HOST (:mod:`hw.system.globalunit`), the LD / ST DMA
engines (:mod:`hw.system.dma`), the semaphore file, the global buffers B, C, OUT
(:class:`hw.system.buffers.GlobalBuffers`) and ``L`` :class:`hw.core.Core`\\ s.

A run (what the CPU does, ``docs/system.md``): write ``INSTR_TABLE``, ``DATA_BASE``,
``DATA_SIZE`` (and ``WATCHDOG``, and ``FRAMES`` to run the Binary that many times back to
back: :mod:`hw.system.contexts`), write ``CTRL.START``; the accelerator resets every unit,
fetches the queue table and runs until every queue has executed its HALT and the DMA engines
are idle (``STATUS.DONE``, ``IRQ_STATUS.DONE``), or an error stops the count
(``STATUS.ERROR``, ``ERR_CODE``, ``ERR_PC``). A ``HOST_LN`` raises ``STATUS.HOST_REQ``
(``IRQ_STATUS.HOST_REQ``) and shows the instruction in ``HOST_INSTR0..3``; the CPU runs it
(``sim.funcsim.host_ln`` on the data image) and writes ``HOST_ACK``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sim.image import CORE_QUEUE_UNITS, n_queues
from sim.isa import BUFS, SEM_IDS, UNITS as ISA_UNITS
from sim.funcsim import GLOBAL_UNITS

from ..core import Core
from ..hier import MAX_INSTANCE_OUTPUT_BITS, ModuleInstance, output_bits
from ..core.core import UNIT_NAMES
from ..params import check_int, check_pow2
from .regmap import ErrCode
from .arbiter import ReadArbiter
from .axi import axi4_lite_signature, axi4_signature
from .banked import BankedBuffers
from .wordbanked import WordBankedBuffers
from .buffers import GlobalBuffers, ld_port_name
from .cluster import CLUSTER_MODULE, CoreCluster
from .csr import RegisterBlock
from .contexts import FrameTracker
from .dispatch import Dispatcher
from .dma import DescriptorDealer, LoadDMA, StoreDMA
from .globalunit import GlobalUnit
from .semaphores import SemaphoreFile

__all__ = ["Accelerator", "CORE_MODULE", "BUFFERS_MODULE", "CLUSTER_MODULE", "default_buffers"]

#: the Verilog module names of the core and of the global buffers (``hierarchy=True``)
CORE_MODULE = "trio_core"
BUFFERS_MODULE = "trio_buffers"

DATA_WIDTH = 128
LINE = DATA_WIDTH // 8
# the core units' queue offsets (sim.image) must follow the core's error-bit order
assert tuple(u.lower() for u in CORE_QUEUE_UNITS) == UNIT_NAMES


#: the global-buffer implementations (``Accelerator(buffers=...)``)
BUFFER_KINDS = ("behavioural", "banked", "word")
#: the kinds whose cores need backpressure (``Core(stall=True)``)
STALL_BUFFERS = ("banked", "word")


def default_buffers(config) -> str:
    """The global buffers an :class:`Accelerator` for ``config`` (an AccelConfig) gets when
    none is given: its preset's (``sim.config.PRESET_BUFFERS`` by the config's name; a preset
    with overrides, named ``<preset>*``, keeps its preset's), else ``"behavioural"``."""
    from sim.config import PRESET_BUFFERS
    return PRESET_BUFFERS.get(config.name.rstrip("*"), "behavioural")


class Accelerator(wiring.Component):
    """The accelerator for one ``sim.config.AccelConfig`` (see the module doc).

    Parameters (keyword-only)
    -------------------------
    config : sim.config.AccelConfig or str
        N, M, T, S, L, the buffer sizes, DSP packing (the DRAM timing fields are the board's,
        not the design's); a string is read by ``AccelConfig.from_string`` (``paper``,
        ``small:L=2``, JSON).
    sems : int, 1..65536
        Event counters (ids) per frame bank of the semaphore file (default ``sim.isa.SEM_IDS``,
        reported in ``CONFIG_SEMS``; a Binary using a larger id stops with error 7, and the
        runtime refuses it before START).
    queue_depth : int
        Instruction FIFO words per unit queue (power of two, 2..64).
    fetch_burst, dma_burst : int, 1..256
        Longest AXI burst of the dispatcher / of the DMA engines, in 128-bit beats.
    dma_outstanding : int, 1..16
        Read bursts the LD engine keeps in flight.
    addr_width : int
        AXI address bits (40 covers the ZCU102's DDR windows).
    axi_ports : int, 1..4
        AXI4 manager ports: 1 (fetch, LD and ST on ``m_axi``) or P = 2..4 (``m_axi`` the fetch
        and ST; P - 1 LD engines, engine ``k`` reading on ``m_axi{k+1}`` and writing its lines
        through line-write port ``k`` of the global buffers or into a core's buffer A, one
        line per core and cycle, a lower engine first). docs/system.md, "AXI ports": the
        compiler must not put two LOADs to the same bytes between two SIGNALs of LD
        (``sim.checks.ld_overlaps``). The banked buffers take one LD engine (P <= 2).
    core : hw.core.Core or None
        A core to replicate (its parameters); default ``Core.from_config(config)``.
    buffers : "behavioural", "banked", "word" or None
        The global buffers (None, the default: :func:`default_buffers`, the config's preset's:
        ``"word"`` for ``zcu102-l1``, else ``"behavioural"``):
        :class:`hw.system.buffers.GlobalBuffers` (one read port per byte
        lane, never stalls; fast to simulate),
        :class:`hw.system.banked.BankedBuffers` (``banks`` word-interleaved simple dual-port
        memories of ``word`` bytes; the cores are then built with ``stall=True`` and freeze
        on bank conflicts) or :class:`hw.system.wordbanked.WordBankedBuffers` (the same banks
        serving whole-word chunks: channel-blocked Binaries only; a request they do not serve,
        their ``violation`` flag, stops the run with the error code ``BUFFER_RANGE``, as an
        access out of a buffer does). docs/global-buffers.md.
    banks, word : int
        The banked buffers' bank count and word bytes (``buffers="banked"`` or ``"word"``).
    hierarchy : bool
        False (default): every part is elaborated inside (flat; what ``amaranth.sim`` runs).
        True: the core and the global buffers are Verilog modules of their own, converted once
        (``modules``: ``{"trio_core": Core, "trio_buffers": the buffers}``) and instantiated
        (:class:`hw.hier.ModuleInstance`, L core instances); :func:`hw.hier.convert` writes the
        whole Verilog. The same logic, in a fraction of the time and memory (docs/board.md).
        Behavioural buffers whose outputs are wider than an Amaranth ``Instance`` takes
        (:data:`hw.hier.MAX_INSTANCE_OUTPUT_BITS`; those at ``paper``) are written as Verilog
        directly, together with the L core instances, as one module
        :data:`hw.system.cluster.CLUSTER_MODULE` (:class:`hw.system.cluster.CoreCluster`;
        ``modules``: ``trio_core`` and ``trio_cluster``, whose text also holds modules
        ``trio_buffers`` and :data:`hw.system.buffers.LANES_MODULE`); banked buffers that
        wide stay in the top module.

    Ports
    -----
    s_axi : In(AXI4-Lite, 12-bit address, 32-bit data)   the register block
    m_axi : Out(AXI4, ``addr_width`` address, 128-bit data, 1-bit id)   DRAM
    m_axi1 .. m_axi3 : Out(AXI4, same)   DRAM, LD engine ``k``'s reads on ``m_axi{k+1}``
        (``axi_ports`` > ``k + 1``; their write channels idle, ``bready`` = 1)
    irq : Out(1)   level interrupt
    """

    def __init__(self, *, config="paper", sems: int = SEM_IDS, queue_depth: int = 16,
                 fetch_burst: int = 16, dma_burst: int = 64, dma_outstanding: int = 4,
                 addr_width: int = 40, axi_ports: int = 1, buffers: str | None = None,
                 banks: int = 8, word: int = 8, hierarchy: bool = False):
        from sim.config import AccelConfig
        if isinstance(config, str):
            config = AccelConfig.from_string(config)
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be a sim.config.AccelConfig or a config string "
                            f"(preset, JSON), got {config!r}")
        self.cfg = config
        self.L = check_int("config.L", config.L, 1, 16)
        self.sems = check_int("sems", sems, 1, 1 << 16)
        self.queue_depth = check_pow2("queue_depth", queue_depth, lo=2, hi=64)
        self.fetch_burst = check_int("fetch_burst", fetch_burst, 1, 256)
        self.dma_burst = check_int("dma_burst", dma_burst, 1, 256)
        self.dma_outstanding = check_int("dma_outstanding", dma_outstanding, 1, 16)
        self.addr_width = check_int("addr_width", addr_width, 32, 64)
        self.axi_ports = check_int("axi_ports", axi_ports, 1, 4)
        #: LD DMA engines: one on ``m_axi`` (one port) or one per further port
        self.ld_engines = max(1, self.axi_ports - 1)
        if buffers is None:
            buffers = default_buffers(config)
        if buffers not in BUFFER_KINDS:
            raise ValueError(f"buffers must be one of {BUFFER_KINDS}, got {buffers!r}")
        if buffers in STALL_BUFFERS and self.ld_engines > 1:
            raise ValueError(f"axi_ports={axi_ports} needs {self.ld_engines} line-write ports "
                             f"into the global buffers; buffers={buffers!r} has one (axi_ports "
                             f"1 or 2; docs/system.md, \"AXI ports\")")
        self.buffers = buffers
        self.banks = check_pow2("banks", banks, lo=2, hi=64)
        self.word = check_pow2("word", word, lo=4, hi=LINE)
        if not isinstance(hierarchy, bool):
            raise TypeError(f"hierarchy must be a bool, got {hierarchy!r}")
        self.hierarchy = hierarchy
        self.n_queues = n_queues(self.L)
        #: the parts converted as Verilog modules of their own (``hierarchy=True``), and
        #: whether each has ``clk``/``rst`` (set by :func:`hw.hier.convert_modules`)
        self.modules = {}
        self.module_clocked = {}
        if hierarchy:
            core = Core.from_config(config, stall=buffers in STALL_BUFFERS)
            self.modules = {CORE_MODULE: core}
            bufs = self._buffers(core.signature)
            if output_bits(bufs) <= MAX_INSTANCE_OUTPUT_BITS:
                self.modules[BUFFERS_MODULE] = bufs
            elif self.buffers == "behavioural":
                # too wide for an Instance: the cores and the buffers as one module written
                # as Verilog directly (hw.system.cluster), the lanes converted once
                bufs._MustUse__silence = True
                bufs = self._buffers(core.signature, hierarchy=True)
                self._cluster = CoreCluster(core=core, buffers=bufs, core_module=CORE_MODULE,
                                            buffers_module=BUFFERS_MODULE)
                self.modules[CLUSTER_MODULE] = self._cluster
            else:                       # too wide for an Instance: elaborated in the top
                self._top_buffers = bufs
                self.modules.update(getattr(bufs, "modules", {}))
            self.module_clocked = dict.fromkeys(self.modules, True)
        axi = axi4_signature(addr_width=addr_width, data_width=DATA_WIDTH, id_width=1)
        ports = {"s_axi": In(axi4_lite_signature(addr_width=12, data_width=32)),
                 "m_axi": Out(axi)}
        for k in range(1, self.axi_ports):
            ports[f"m_axi{k}"] = Out(axi)
        super().__init__({**ports, "irq": Out(1)})

    def clocked(self, module: str, flag: bool) -> None:
        """Whether module ``module`` of ``modules`` has ``clk``/``rst`` (told by
        :func:`hw.hier.convert` after converting it)."""
        bufs = getattr(self, "_top_buffers", None)
        cluster = getattr(self, "_cluster", None)
        if cluster is not None:
            bufs = cluster.buffers
            if module in (CORE_MODULE, CLUSTER_MODULE) and not flag:
                raise RuntimeError(f"module {module} has no clk/rst: {CLUSTER_MODULE} "
                                   f"clocks it")
        if module in getattr(bufs, "modules", {}):
            bufs.clocked(module, flag)
        self.module_clocked[module] = flag

    def _buffers(self, core_signature, hierarchy=False):
        cfg = self.cfg
        sizes = {"B": cfg.buf_b_bytes, "C": cfg.buf_c_bytes, "OUT": cfg.buf_out_bytes}
        if self.buffers in STALL_BUFFERS:
            kind = BankedBuffers if self.buffers == "banked" else WordBankedBuffers
            return kind(core_signature=core_signature, cores=self.L, line=LINE,
                        sizes=sizes, banks=self.banks, word=self.word)
        return GlobalBuffers(core_signature=core_signature, cores=self.L, line=LINE,
                             sizes=sizes, ld_ports=self.ld_engines, hierarchy=hierarchy)

    def elaborate(self, platform):
        m = Module()
        cfg, L, Q, A = self.cfg, self.L, self.n_queues, self.addr_width

        # -- the register block (not reset by a run) ------------------------------------------
        m.submodules.csr = csr = RegisterBlock(config=cfg, axi_ports=self.axi_ports,
                                               data_bytes=LINE, sems=self.sems)
        wiring.connect(m, wiring.flipped(self.s_axi), csr.bus)
        m.d.comb += self.irq.eq(csr.irq)
        table_base = csr.instr_table_addr[:A]
        data_base = csr.data_base_addr[:A]
        data_size = csr.data_size_bytes

        # -- run control ---------------------------------------------------------------------
        busy = Signal()
        run_rst = Signal()          # resets every unit of a run (not the registers)
        go = Signal()               # the cycle after run_rst: the dispatcher starts
        start_ok = csr.ctrl_start & ~busy
        # A START or SOFT_RESET first drains the AXI channels: no new descriptor or fetch
        # burst is issued, those on the bus complete; then the units are reset (a reset with
        # bursts in flight would leave the bus owing beats to engines that forgot them).
        draining = Signal()
        restart = Signal()          # the drain ends in a START (not a SOFT_RESET)
        quiet = Signal()
        with m.If(start_ok | csr.ctrl_soft_reset):
            m.d.sync += [draining.eq(1), restart.eq(start_ok)]
        with m.Elif(draining & quiet):
            m.d.sync += draining.eq(0)
        m.d.comb += run_rst.eq(draining & quiet)
        m.d.sync += go.eq(run_rst & restart)

        def run(sub):
            return ResetInserter(run_rst)(sub)

        # -- units ------------------------------------------------------------------------------
        dispatch = Dispatcher(queues=Q, depth=self.queue_depth, max_burst=self.fetch_burst,
                              addr_width=A)
        E = self.ld_engines
        lds = [LoadDMA(addr_width=A, data_width=DATA_WIDTH, max_burst=self.dma_burst,
                       outstanding=self.dma_outstanding) for _ in range(E)]
        ld = lds[0]
        st = StoreDMA(addr_width=A, data_width=DATA_WIDTH, max_burst=self.dma_burst)
        desc = ld.cmd.payload.shape()
        g = {k: GlobalUnit(kind=k, addr_width=A, descriptor=desc if k != "HOST" else None)
             for k in ("LD", "ST", "HOST")}
        banked = self.buffers in STALL_BUFFERS
        if self.hierarchy:
            # the same parts as Verilog modules converted once (hw.hier), with the run reset
            def inst(module):
                return ModuleInstance(part=self.modules[module], module=module, reset=run_rst,
                                      clocked=self.module_clocked[module])
            cluster = getattr(self, "_cluster", None)
            if cluster is not None:     # the cores and the buffers in one instance
                bufs = inst(CLUSTER_MODULE)
                cores = [cluster.core_ports(bufs, c) for c in range(L)]
            else:
                cores = [inst(CORE_MODULE) for _ in range(L)]
                bufs = inst(BUFFERS_MODULE) if BUFFERS_MODULE in self.modules else \
                    self._top_buffers
        else:
            cores = [Core.from_config(cfg, stall=banked) for _ in range(L)]
            bufs = self._buffers(cores[0].signature)
        sems = SemaphoreFile(count=self.sems, ports=Q, banks=2)
        arb = ReadArbiter(n=2, addr_width=A, data_width=DATA_WIDTH) if self.axi_ports == 1 \
            else None
        m.submodules.dispatch = run(dispatch)
        for e, eng in enumerate(lds):
            m.submodules["ld_dma" if e == 0 else f"ld_dma{e}"] = run(eng)
        if E > 1:
            m.submodules.ld_deal = deal = run(DescriptorDealer(engines=E, addr_width=A))
        m.submodules.st_dma = run(st)
        for k, u in g.items():
            m.submodules[f"{k.lower()}_unit"] = run(u)
        clustered = self.hierarchy and hasattr(self, "_cluster")
        if not clustered:
            for c, core in enumerate(cores):
                m.submodules[f"core{c}"] = core if self.hierarchy else run(core)
        m.submodules.sems = run(sems)
        if clustered:
            m.submodules.cluster = bufs
        else:
            m.submodules.bufs = bufs if isinstance(bufs, ModuleInstance) else run(bufs)
        if arb is not None:
            m.submodules.arb = arb
        ld_idle = Signal()          # every LD engine idle and the dealer empty
        engines_idle = Signal()     # (a drain waits for the engines; it resets the dealer)
        m.d.comb += [engines_idle.eq(Cat(*(e.idle for e in lds)).all()),
                     ld_idle.eq(deal.idle if E > 1 else ld.idle)]
        m.d.comb += [dispatch.start.eq(go), dispatch.table_base.eq(table_base),
                     dispatch.stop.eq(draining),
                     quiet.eq(engines_idle & st.idle & ~dispatch.busy)]

        # queues, semaphores: queue i is semaphore port i (sim.image order)
        units = [g["LD"], g["ST"], g["HOST"]]
        instr = [u.instr for u in units]
        waits = [u.wait for u in units]
        signals = [u.signal for u in units]
        for core in cores:
            for u in CORE_QUEUE_UNITS:
                instr.append(getattr(core, f"{u.lower()}_instr"))
                waits.append(getattr(core, f"{u.lower()}_wait"))
                signals.append(getattr(core, f"{u.lower()}_signal"))
        # frames (streaming): each queue's frame count between its FIFO and its unit
        m.d.comb += dispatch.frames.eq(csr.frames_count)
        for i in range(Q):
            ft = FrameTracker()
            m.submodules[f"frames{i}"] = run(ft)
            m.d.comb += ft.frames.eq(csr.frames_count)
            wiring.connect(m, dispatch.instr[i], ft.up)
            wiring.connect(m, ft.down, instr[i])
            wiring.connect(m, waits[i], ft.unit_wait)
            wiring.connect(m, signals[i], ft.unit_signal)
            wiring.connect(m, ft.file_wait, sems.wait[i])
            wiring.connect(m, ft.file_signal, sems.signal[i])

        # the cores' buffer ports (inside the cluster's Verilog when clustered)
        for c, core in enumerate(cores if not clustered else ()):
            for name, *_ in bufs.gathers:
                wiring.connect(m, getattr(core, name), getattr(bufs, f"c{c}_{name}"))
            for name, *_ in bufs.scatters:
                wiring.connect(m, getattr(core, name), getattr(bufs, f"c{c}_{name}"))

        # DMA: descriptors from LD / ST, the data window, lines into B / C / OUT or a core's A
        # (several LD engines: the LD unit's descriptors split and dealt round-robin by the
        # dealer, its SIGNAL waits for the dealer and all the engines)
        if E > 1:
            m.d.comb += [deal.cmd.payload.eq(g["LD"].cmd.payload),
                         deal.engine_idle.eq(Cat(*(e.idle for e in lds)))]
            for e, eng in enumerate(lds):      # no piece handed over while draining
                m.d.comb += [eng.cmd.payload.eq(deal.engine[e].payload),
                             eng.cmd.valid.eq(deal.engine[e].valid & ~draining),
                             deal.engine[e].ready.eq(eng.cmd.ready & ~draining)]
        for unit, dma in ((g["LD"], deal if E > 1 else ld), (g["ST"], st)):
            m.d.comb += [dma.cmd.payload.eq(unit.cmd.payload),
                         dma.cmd.valid.eq(unit.cmd.valid & ~draining),
                         unit.cmd.ready.eq(dma.cmd.ready & ~draining),
                         unit.dma_idle.eq(dma.idle), unit.data_base.eq(data_base)]
        for dma in lds + [st]:
            m.d.comb += [dma.win_lo.eq(data_base), dma.win_hi.eq(data_base + data_size)]
        # each engine's lines: B / C / OUT through its own line-write port of the buffers; a
        # core's buffer A through the core's one a_load port, granted per core to the lowest
        # engine with a line for it (the others hold their line: wr back-pressure)
        to_a = [eng.wr.payload.buf == BUFS["A"] for eng in lds]
        a_req = [eng.wr.valid & to_a[e] for e, eng in enumerate(lds)]
        # engine e waits while a lower engine has a line for the same core's A (a line naming
        # no core is dropped, as with one engine)
        lost = [Signal(name=f"a_lost{e}") for e in range(E)]
        for e, eng in enumerate(lds):
            same = [a_req[f] & (lds[f].wr.payload.core == eng.wr.payload.core)
                    for f in range(e)]
            m.d.comb += lost[e].eq(Cat(*same).any() if same else 0)
        granted = [[Signal(name=f"a_grant{c}_{e}") for e in range(E)] for c in range(L)]
        for c in range(L):
            for e, eng in enumerate(lds):
                m.d.comb += granted[c][e].eq(a_req[e] & (eng.wr.payload.core == c) & ~lost[e])
        for e, eng in enumerate(lds):
            w = eng.wr.payload
            port = getattr(bufs, ld_port_name(e))
            m.d.comb += [eng.wr.ready.eq(~(to_a[e] & lost[e])),
                         port.valid.eq(eng.wr.valid & ~to_a[e]), port.payload.buf.eq(w.buf),
                         port.payload.addr.eq(w.addr), port.payload.data.eq(w.data),
                         port.payload.mask.eq(w.mask)]
        for c, core in enumerate(cores):
            al, line = core.a_load, core.a_line
            w = Signal.like(ld.wr.payload, name=f"a_wr{c}")
            m.d.comb += w.eq(lds[0].wr.payload)
            for e in range(1, E):           # the granted engine's line (at most one)
                with m.If(granted[c][e]):
                    m.d.comb += w.eq(lds[e].wr.payload)
            sub = Signal(range(max(line // LINE, 2)), name=f"a_sub{c}")
            if line > LINE:
                m.d.comb += sub.eq(w.addr[(LINE.bit_length() - 1):(line.bit_length() - 1)])
            m.d.comb += [al.en.eq(Cat(*granted[c]).any()), al.addr.eq(w.addr)]
            for j in range(line):
                k = j % LINE
                here = (sub == j // LINE) if line > LINE else Const(1)
                m.d.comb += [al.data[j].eq(w.data[8 * k:8 * k + 8]),
                             al.mask[j].eq(here & w.mask[k])]
        m.d.comb += [bufs.st_en.eq(st.rd_en), bufs.st_buf.eq(st.rd_buf),
                     bufs.st_addr.eq(st.rd_addr), st.rd_data.eq(bufs.st_data)]

        # AXI: one port: reads of the dispatcher (id 0) and LD (id 1) share it, ST writes;
        # two ports: the dispatcher's reads and ST's writes on m_axi, LD's reads on m_axi1
        def reads(port, mgr):
            for f in ("araddr", "arlen", "arsize", "arburst", "arlock", "arcache", "arprot",
                      "arvalid", "arid", "rready"):
                m.d.comb += getattr(port, f).eq(getattr(mgr, f))
            for f in ("arready", "rid", "rdata", "rresp", "rlast", "rvalid"):
                m.d.comb += getattr(mgr, f).eq(getattr(port, f))
        if arb is not None:
            wiring.connect(m, dispatch.bus, arb.up[0])
            wiring.connect(m, ld.bus, arb.up[1])
            reads(self.m_axi, arb.down)
        else:
            reads(self.m_axi, dispatch.bus)
            for e, eng in enumerate(lds):
                port = getattr(self, f"m_axi{e + 1}")
                reads(port, eng.bus)
                m.d.comb += port.bready.eq(1)       # no writes on the LD ports
        for f in ("awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache",
                  "awprot", "awvalid", "wdata", "wstrb", "wlast", "wvalid", "bready"):
            m.d.comb += getattr(self.m_axi, f).eq(getattr(st.bus, f))
        for f in ("awready", "wready", "bid", "bresp", "bvalid"):
            m.d.comb += getattr(st.bus, f).eq(getattr(self.m_axi, f))

        # -- host requests --------------------------------------------------------------------
        host = g["HOST"]
        m.d.comb += [host.host_ack.eq(csr.host_ack_ack),
                     csr.status_host_req.eq(host.host_req)]
        m.d.comb += csr.host_instr.eq(host.host_word)
        host_q = Signal()
        m.d.sync += host_q.eq(host.host_req)

        # -- completion, errors, watchdog -------------------------------------------------------
        halted = Cat(*[u.halted for u in units], *[c.halted for c in cores]).all()
        finished = busy & ~draining & ~go & halted & ld_idle & st.idle & ~dispatch.busy
        consumed = [Signal(24, name=f"q{i}_pc") for i in range(Q)]
        progress = Signal()
        hs = []
        for i in range(Q):
            s = dispatch.instr[i]
            with m.If(run_rst):
                m.d.sync += consumed[i].eq(0)
            with m.Elif(s.valid & s.ready):
                m.d.sync += consumed[i].eq(consumed[i] + 1)
            hs.append(s.valid & s.ready)
        toggles = []
        for c, core in enumerate(cores):
            for name in ("mat_busy", "rmac_busy", "aux_busy"):
                prev = Signal(name=f"c{c}_{name}_q")
                m.d.sync += prev.eq(getattr(core, name)[0])
                toggles.append(prev != getattr(core, name)[0])
        more = [getattr(self, f"m_axi{k}") for k in range(1, self.axi_ports)]
        m.d.comb += progress.eq(Cat(*hs, *toggles, *(e.wr.valid for e in lds),
                                    self.m_axi.wvalid & self.m_axi.wready,
                                    self.m_axi.rvalid & self.m_axi.rready,
                                    *(p.rvalid & p.rready for p in more),
                                    host.host_req).any())
        idle_for = Signal(32)
        with m.If(run_rst | progress | ~busy):
            m.d.sync += idle_for.eq(0)
        with m.Else():
            m.d.sync += idle_for.eq(idle_for + 1)
        watchdog = csr.watchdog_cycles
        barked = (watchdog != 0) & (idle_for >= watchdog)

        # error sources, first one wins: (condition, code, queue, pc)
        errs = []
        for qi, u in enumerate(units):
            errs.append((u.error, ErrCode.ILLEGAL_OPCODE, qi, consumed[qi]))
        for c, core in enumerate(cores):
            for k in range(3):
                qi = 3 + 3 * c + k
                errs.append((core.error[k], ErrCode.UNIT_ERROR, qi, consumed[qi] - 1))
        ld_fault = [Cat(*(e.fault[b] for e in lds)).any() for b in range(2)]
        errs += [(ld_fault[0], ErrCode.DMA_WINDOW, 0, consumed[0] - 1),
                 (st.fault[0], ErrCode.DMA_WINDOW, 1, consumed[1] - 1),
                 (ld_fault[1], ErrCode.AXI_RESP, 0, consumed[0] - 1),
                 (st.fault[1], ErrCode.AXI_RESP, 1, consumed[1] - 1),
                 (dispatch.fault, ErrCode.AXI_RESP, Q, 0),
                 (sems.fault, ErrCode.SEM_RANGE, sems.fault_port, 0),
                 (bufs.fault != 0, ErrCode.BUFFER_RANGE, Q, 0),
                 # word buffers: a request outside the word / line patterns (not served)
                 *([(bufs.violation, ErrCode.BUFFER_RANGE, Q, 0)]
                   if self.buffers == "word" else []),
                 (barked, ErrCode.WATCHDOG, Q, 0)]
        err_now = Signal()
        err_code, err_queue, err_pc = Signal(8), Signal(16), Signal(32)
        # the unit (sim.isa.UNITS code) of each queue; 7 = none (a system-wide error)
        qunits = [ISA_UNITS[u] for u in GLOBAL_UNITS] + [ISA_UNITS[u] for _ in range(L)
                                                         for u in CORE_QUEUE_UNITS] + [7]
        err_unit = Signal(8)
        m.d.comb += err_unit.eq(7)
        for qi, uc in enumerate(qunits):
            with m.If(err_queue == qi):
                m.d.comb += err_unit.eq(uc)
        for cond, code, qi, pc in reversed(errs):
            with m.If(cond):
                m.d.comb += [err_now.eq(1), err_code.eq(code), err_queue.eq(qi),
                             err_pc.eq(pc)]
        error = Signal()
        code_r, queue_r, pc_r, unit_r = Signal(8), Signal(16), Signal(32), Signal(8)
        done = Signal()
        m.d.comb += [csr.status_busy.eq(busy), csr.status_done.eq(done),
                     csr.status_error.eq(error), csr.err_code_code.eq(code_r),
                     csr.err_code_queue.eq(queue_r), csr.err_pc_index.eq(pc_r),
                     csr.err_code_unit.eq(unit_r),
                     csr.irq_status_done.eq(0), csr.irq_status_error.eq(0),
                     csr.irq_status_host_req.eq(host.host_req & ~host_q)]
        with m.If(csr.ctrl_start & busy):
            with m.If(~error):
                m.d.sync += [error.eq(1), code_r.eq(ErrCode.START_BUSY), queue_r.eq(Q),
                             pc_r.eq(0), unit_r.eq(7)]
                m.d.comb += csr.irq_status_error.eq(1)
        with m.Elif(start_ok):
            m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), code_r.eq(0), queue_r.eq(0),
                         pc_r.eq(0), unit_r.eq(0)]
        with m.Elif(csr.ctrl_soft_reset):
            m.d.sync += [busy.eq(0), done.eq(0), error.eq(0), code_r.eq(0), queue_r.eq(0),
                         pc_r.eq(0), unit_r.eq(0)]
        with m.Elif(busy & err_now & ~error):
            m.d.sync += [busy.eq(0), error.eq(1), code_r.eq(err_code), queue_r.eq(err_queue),
                         pc_r.eq(err_pc), unit_r.eq(err_unit)]
            m.d.comb += csr.irq_status_error.eq(1)
        with m.Elif(finished):
            m.d.sync += [busy.eq(0), done.eq(1)]
            m.d.comb += csr.irq_status_done.eq(1)

        # -- performance counters (of the last run) ------------------------------------------
        cyc = Signal(64)
        stall = Signal(64)
        with m.If(start_ok):
            m.d.sync += [cyc.eq(0), stall.eq(0)]
        with m.Elif(busy):
            m.d.sync += cyc.eq(cyc + 1)
            with m.If(~progress):
                m.d.sync += stall.eq(stall + 1)

        def total(name):
            acc = 0
            for core in cores:
                acc = acc + getattr(core, name)
            return acc

        m.d.comb += [csr.perf_cycles.eq(cyc), csr.perf_stall_cycles.eq(stall),
                     csr.perf_busy_mat.eq(total("mat_busy")),
                     csr.perf_busy_rmac.eq(total("rmac_busy")),
                     csr.perf_busy_aux.eq(total("aux_busy")),
                     csr.perf_dram_rd_bytes.eq(sum(e.rd_bytes for e in lds)
                                               + (dispatch.fetched << 4)),
                     csr.perf_dram_wr_bytes.eq(st.wr_bytes),
                     csr.perf_instr_fetched.eq(dispatch.fetched)]
        return m
