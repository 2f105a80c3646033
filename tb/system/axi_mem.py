"""``AxiMemory``: a simulation-only AXI4 subordinate memory (the DDR of a fast testbench).

cocotbext-axi's ``AxiRam`` moves every beat through Python (a few hundred simulated cycles per
second for the whole accelerator); this model is HDL, so a simulator runs the accelerator and
its DRAM without Python on the hot path. It is a *simulation model* (``tb/``, not for a
bitstream): one word-wide array with a read and a write port for AXI and a wide debug port.

What it does (AMBA AXI4, IHI 0022):

* **reads**: AR requests are queued (``outstanding`` of them: a request waits in the queue
  while earlier bursts stream); a burst's first R beat comes ``latency`` cycles after its AR
  handshake at the earliest (what ``tb.system.monitor.AxiMonitor`` measures and
  ``sim.timing.AxiDma`` takes as ``cfg.dram_latency_cycles``), then one beat per cycle while
  ``rready``, bursts in request order (all ids share one queue, which AXI allows);
* **writes**: AW requests are queued likewise; W beats are taken one per cycle with their byte
  strobes; a burst's B response comes ``latency`` cycles after its last beat at the earliest;
* **bursts**: INCR of full-width beats (``AxSIZE`` = log2 of the data bytes), up to 256 beats.
  A burst of another type or size, or one reaching past the memory (``depth`` words from
  address 0), is answered with ``SLVERR`` / ``DECERR`` and touches nothing (its read data is 0);
* **debug port** (the testbench's, while the manager is idle): ``dbg_rdata`` is the
  ``dbg_words`` words from word ``dbg_addr`` (combinational), and ``dbg_wdata`` is written
  there at the clock edge, byte ``i`` where ``dbg_wstrb[i]``. This is how the CPU's buffer
  accesses (``runtime.cocotb_device.CocotbMemoryDevice``) reach the DRAM.

Storage (``storage``): ``"memory"``, an ``amaranth.lib.memory.Memory`` (for ``amaranth.sim``);
``"verilog"``, the array as the small Verilog module :data:`VERILOG` (write it with
:func:`write_verilog` next to the design, e.g. ``tb.rtl.run_cocotb(sources=...)``). The second
exists because Amaranth 0.5 writes every word of a memory's initial value into the Verilog (a
64 Ki-word memory takes 54 s to convert and 3.6 MB of text): the megabytes a network's DRAM
image needs would cost minutes per build and per run. The logic around the array (queues,
bursts, strobes, latency, responses) is the same Amaranth for both.
"""

from __future__ import annotations

from pathlib import Path

from amaranth import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.params import check_int, check_pow2
from hw.system.axi import (BURST_INCR, MAX_BURST_BEATS, RESP_DECERR, RESP_OKAY, RESP_SLVERR,
                           axi4_signature)

__all__ = ["AxiMemory", "VERILOG", "VERILOG_MODULE", "write_verilog", "STORAGES"]

STORAGES = ("memory", "verilog")
VERILOG_MODULE = "trio_sim_ram"
#: the array of ``storage="verilog"``: one write port with byte enables and ``RPORTS``
#: asynchronous read ports for AXI, a debug port of ``DBG`` words (read asynchronous, write with byte enables);
#: zeroed at time 0 (a loop, not one initialiser per word)
VERILOG = f"""// simulation-only word array of tb.system.axi_mem.AxiMemory (storage="verilog")
module {VERILOG_MODULE} #(parameter WIDTH = 128, parameter DEPTH = 1024, parameter ABITS = 10,
                          parameter DBG = 1, parameter RPORTS = 1) (
    input                        clk,
    input      [ABITS-1:0]       waddr,
    input      [WIDTH/8-1:0]     wen,
    input      [WIDTH-1:0]       wdata,
    input      [RPORTS*ABITS-1:0] raddr,
    output     [RPORTS*WIDTH-1:0] rdata,
    input      [ABITS-1:0]       dbg_addr,
    input      [DBG*WIDTH/8-1:0] dbg_wen,
    input      [DBG*WIDTH-1:0]   dbg_wdata,
    output     [DBG*WIDTH-1:0]   dbg_rdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    integer i, j;
    initial for (i = 0; i < DEPTH; i = i + 1) mem[i] = {{WIDTH{{1'b0}}}};
    genvar g;
    generate for (g = 0; g < RPORTS; g = g + 1) begin : rd
        assign rdata[g*WIDTH +: WIDTH] = mem[raddr[g*ABITS +: ABITS]];
    end endgenerate
    generate for (g = 0; g < DBG; g = g + 1) begin : dbg
        wire [ABITS-1:0] a = dbg_addr + g;
        assign dbg_rdata[g*WIDTH +: WIDTH] = mem[a];
    end endgenerate
    always @(posedge clk) begin
        for (j = 0; j < WIDTH / 8; j = j + 1)
            if (wen[j]) mem[waddr][8*j +: 8] <= wdata[8*j +: 8];
        for (i = 0; i < DBG; i = i + 1)
            for (j = 0; j < WIDTH / 8; j = j + 1)
                if (dbg_wen[i * WIDTH / 8 + j])
                    mem[dbg_addr + i][8*j +: 8] <= dbg_wdata[i * WIDTH + 8*j +: 8];
    end
endmodule
"""


def write_verilog(directory) -> Path:
    """Write :data:`VERILOG` as ``<directory>/trio_sim_ram.v`` (only if it changed) and return
    its path."""
    from sim.fileio import atomic_write
    path = Path(directory) / f"{VERILOG_MODULE}.v"
    if not path.exists() or path.read_text() != VERILOG:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, VERILOG)
    return path


class AxiMemory(wiring.Component):
    """An AXI4 subordinate memory of ``depth`` words at bus address 0 (see the module doc).

    Parameters (keyword-only)
    -------------------------
    depth : int
        Words (power of two, 2..2**26); the memory holds ``depth * data_width / 8`` bytes.
    data_width : int
        Bits per word and AXI beat (power of two, 32..1024).
    addr_width, id_width : int
        AXI address and id bits.
    latency : int, 1..4096
        Cycles from an AR handshake to its burst's first R beat, and from a burst's last W beat
        to its B response (both at the earliest).
    outstanding : int, 1..64
        Read requests (and write requests) the memory accepts before its first is finished
        (per port).
    read_ports : int, 1..4
        AXI ports: ``bus`` (reads and writes) and ``read_ports - 1`` read-only ones ``rbus1``
        .. (the further managers of ``hw.system.Accelerator(axi_ports=...)``, which only read),
        each with its own AR queue and read data path on the one array (several HP ports in
        front of one DDR; a write is seen by every port from the next cycle).
    dbg_words : int, 1..64
        Words per debug access.
    storage : "memory" or "verilog"
        The array: ``amaranth.lib.memory.Memory`` or the Verilog module :data:`VERILOG`.

    Ports
    -----
    bus : In(AXI4)   the subordinate port (connect a manager's ``Out(axi4_signature(...))``)
    rbus1 .. : In(AXI4)   the read-only ports (``read_ports`` > 1): AW / W never ready, no B
    dbg_addr : In(range(depth))   word address of the debug access
    dbg_rdata : Out(dbg_words * data_width)   words ``dbg_addr ..`` (word 0 in the low bits)
    dbg_wdata : In(dbg_words * data_width)   written at the clock edge where ``dbg_wstrb``
    dbg_wstrb : In(dbg_words * data_width / 8)   byte enables of the debug write
    """

    def __init__(self, *, depth: int, data_width: int = 128, addr_width: int = 40,
                 id_width: int = 1, latency: int = 16, outstanding: int = 4,
                 dbg_words: int = 8, storage: str = "memory", read_ports: int = 1):
        self.depth = check_pow2("depth", depth, lo=2, hi=1 << 26)
        self.data_width = check_pow2("data_width", data_width, lo=32, hi=1024)
        self.addr_width = check_int("addr_width", addr_width, 12, 64)
        self.id_width = check_int("id_width", id_width, 1, 16)
        self.latency = check_int("latency", latency, 1, 4096)
        self.outstanding = check_int("outstanding", outstanding, 1, 64)
        self.dbg_words = check_int("dbg_words", dbg_words, 1, 64)
        self.read_ports = check_int("read_ports", read_ports, 1, 4)
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.storage = storage
        self.bytes = self.data_width // 8
        if self.depth * self.bytes > 1 << self.addr_width:
            raise ValueError(f"depth={depth} words of {self.bytes} bytes do not fit "
                             f"addr_width={addr_width}")
        d = self.dbg_words
        axi = In(axi4_signature(addr_width=addr_width, data_width=data_width,
                                id_width=id_width))
        super().__init__({
            "bus": axi, **{f"rbus{k}": axi for k in range(1, self.read_ports)},
            "dbg_addr": In(range(self.depth)), "dbg_rdata": Out(d * self.data_width),
            "dbg_wdata": In(d * self.data_width), "dbg_wstrb": In(d * self.bytes)})

    @property
    def size_bytes(self) -> int:
        return self.depth * self.bytes

    def elaborate(self, platform):
        m = Module()
        bus, W, B = self.bus, self.data_width, self.bytes
        abits = (self.depth - 1).bit_length()
        shift = (B - 1).bit_length()                # byte address -> word address
        size = Const(shift, 3)

        # -- the array ---------------------------------------------------------------------
        P = self.read_ports
        waddr, wen, wdata = Signal(abits), Signal(B), Signal(W)
        raddrs = [Signal(abits, name=f"raddr{k}") for k in range(P)]
        rdatas = [Signal(W, name=f"rdata{k}") for k in range(P)]
        if self.storage == "memory":
            m.submodules.mem = mem = Memory(shape=W, depth=self.depth, init=[])
            wp = mem.write_port(granularity=8)
            m.d.comb += [wp.addr.eq(waddr), wp.en.eq(wen), wp.data.eq(wdata)]
            for ra, rd in zip(raddrs, rdatas):
                rp = mem.read_port(domain="comb")
                m.d.comb += [rp.addr.eq(ra), rd.eq(rp.data)]
            for k in range(self.dbg_words):
                dw = mem.write_port(granularity=8)
                dr = mem.read_port(domain="comb")
                m.d.comb += [dw.addr.eq(self.dbg_addr + k), dr.addr.eq(self.dbg_addr + k),
                             dw.en.eq(self.dbg_wstrb[k * B:(k + 1) * B]),
                             dw.data.eq(self.dbg_wdata[k * W:(k + 1) * W]),
                             self.dbg_rdata[k * W:(k + 1) * W].eq(dr.data)]
        else:
            m.submodules.mem = Instance(
                VERILOG_MODULE, p_WIDTH=W, p_DEPTH=self.depth, p_ABITS=abits,
                p_DBG=self.dbg_words, p_RPORTS=P, i_clk=ClockSignal(), i_waddr=waddr,
                i_wen=wen, i_wdata=wdata, i_raddr=Cat(*raddrs), o_rdata=Cat(*rdatas),
                i_dbg_addr=self.dbg_addr,
                i_dbg_wen=self.dbg_wstrb, i_dbg_wdata=self.dbg_wdata,
                o_dbg_rdata=self.dbg_rdata)

        # -- time: requests carry the cycle from which they may be answered -----------------
        now = Signal(32)
        m.d.sync += now.eq(now + 1)

        def due(t):     # wrap-safe "now >= t"
            return ~(now - t)[31]

        request = data.StructLayout({"id": self.id_width, "word": abits, "len": 8,
                                     "resp": 2, "due": 32})

        def resp_of(bad_type, outside):
            r = Signal(2)
            with m.If(bad_type):
                m.d.comb += r.eq(RESP_SLVERR)
            with m.Elif(outside):
                m.d.comb += r.eq(RESP_DECERR)
            with m.Else():
                m.d.comb += r.eq(RESP_OKAY)
            return r

        def checks(addr, length, burst, asize):
            word = addr[shift:shift + abits]
            last = Signal(abits + 9)
            m.d.comb += last.eq(word + length)
            bad_type = (burst != BURST_INCR) | (asize != size) | (addr[:shift] != 0)
            outside = (addr[shift + abits:] != 0) | (last >= self.depth)
            return word, resp_of(bad_type, outside)

        # -- reads: one AR queue and data path per port ----------------------------------
        for k in range(P):
            rb = bus if k == 0 else getattr(self, f"rbus{k}")
            raddr, rdata = raddrs[k], rdatas[k]
            m.submodules[f"ar_q{k or ''}"] = arq = SyncFIFO(width=request.size,
                                                            depth=self.outstanding)
            ar_in = data.View(request, arq.w_data)
            ar = data.View(request, arq.r_data)
            word, resp = checks(rb.araddr, rb.arlen, rb.arburst, rb.arsize)
            m.d.comb += [rb.arready.eq(arq.w_rdy), arq.w_en.eq(rb.arvalid),
                         ar_in.id.eq(rb.arid), ar_in.word.eq(word), ar_in.len.eq(rb.arlen),
                         ar_in.resp.eq(resp), ar_in.due.eq(now + self.latency)]
            rbeat = Signal(8, name=f"rbeat{k}")
            ok = ar.resp == RESP_OKAY
            m.d.comb += [raddr.eq(ar.word + rbeat),
                         rb.rvalid.eq(arq.r_rdy & due(ar.due)),
                         rb.rid.eq(ar.id), rb.rresp.eq(ar.resp),
                         rb.rdata.eq(rdata & ok.replicate(W)),
                         rb.rlast.eq(rbeat == ar.len)]
            with m.If(rb.rvalid & rb.rready):
                with m.If(rb.rlast):
                    m.d.sync += rbeat.eq(0)
                    m.d.comb += arq.r_en.eq(1)
                with m.Else():
                    m.d.sync += rbeat.eq(rbeat + 1)

        # -- writes -----------------------------------------------------------------------
        m.submodules.aw_q = awq = SyncFIFO(width=request.size, depth=self.outstanding)
        m.submodules.b_q = bq = SyncFIFO(width=request.size, depth=self.outstanding)
        aw_in = data.View(request, awq.w_data)
        aw = data.View(request, awq.r_data)
        b_in = data.View(request, bq.w_data)
        b = data.View(request, bq.r_data)
        word, resp = checks(bus.awaddr, bus.awlen, bus.awburst, bus.awsize)
        m.d.comb += [bus.awready.eq(awq.w_rdy), awq.w_en.eq(bus.awvalid),
                     aw_in.id.eq(bus.awid), aw_in.word.eq(word), aw_in.len.eq(bus.awlen),
                     aw_in.resp.eq(resp), aw_in.due.eq(0)]
        wbeat = Signal(8)
        m.d.comb += [bus.wready.eq(awq.r_rdy & bq.w_rdy),
                     waddr.eq(aw.word + wbeat), wdata.eq(bus.wdata)]
        with m.If(bus.wvalid & bus.wready):
            with m.If(aw.resp == RESP_OKAY):
                m.d.comb += wen.eq(bus.wstrb)
            with m.If(bus.wlast | (wbeat == aw.len)):
                m.d.sync += wbeat.eq(0)
                m.d.comb += [awq.r_en.eq(1), bq.w_en.eq(1)]
            with m.Else():
                m.d.sync += wbeat.eq(wbeat + 1)
        # a burst whose WLAST does not come with its last beat is answered SLVERR
        m.d.comb += [b_in.id.eq(aw.id), b_in.word.eq(0), b_in.len.eq(0),
                     b_in.due.eq(now + self.latency),
                     b_in.resp.eq(Mux((aw.resp == RESP_OKAY) & (bus.wlast != (wbeat == aw.len)),
                                       RESP_SLVERR, aw.resp))]
        m.d.comb += [bus.bvalid.eq(bq.r_rdy & due(b.due)), bus.bid.eq(b.id),
                     bus.bresp.eq(b.resp), bq.r_en.eq(bus.bvalid & bus.bready)]
        return m


assert MAX_BURST_BEATS == 256       # AxLEN is 8 bits: the beat counters above
