"""The dispatcher: fetches every unit's instruction queue from DRAM through AXI4 reads.

The instruction image (``sim.image``: a table of ``(offset, words)`` per queue, then the queues,
16 bytes per instruction) lies in DRAM; nothing is baked into the bitstream. After ``start`` the
dispatcher reads the table, then keeps a small FIFO per queue filled:

* the table is read in bursts of at most ``max_burst`` entries (it lies in one 4 KB page);
* each cycle it looks at one queue (round robin) and, if the queue has words left and room in
  its FIFO, asks for ``min(words left, free slots, beats to the next 4 KB boundary,
  max_burst)`` beats in one INCR burst, provided that is at least ``min(words left,
  depth // 2, beats to the 4 KB boundary)`` (no tiny bursts) and fewer than ``outstanding``
  bursts are in flight;
* space is reserved when the burst is issued, so read data are never refused (``rready`` is 1):
  the bursts come back in order (one ARID) and a tag FIFO says which queue each one fills.

The ``instr[i]`` output streams are the queues' FIFO heads, in ``sim.image.queue_names`` order.

Frames (streaming, ``frames`` > 1): a queue whose words are all requested starts again from
its table entry, ``frames`` times in all, so its FIFO holds frame k+1's copy right behind frame
k's (one instruction context per unit; ``hw.system.contexts.FrameTracker`` tells the frames
apart by their HALTs). A burst never spans two copies.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.image import ENTRY_BYTES

from ..params import check_int, check_pow2
from .axi import BOUNDARY_BYTES, BURST_INCR, RESP_OKAY, axi4_signature

__all__ = ["Dispatcher"]

WORD_BYTES = 16


class Dispatcher(wiring.Component):
    """Instruction fetch for ``queues`` unit queues (see the module doc).

    Parameters (keyword-only): ``queues`` (1..256), ``depth`` (FIFO words per queue, a power of
    two 2..64), ``max_burst`` (beats, 1..256), ``outstanding`` (bursts in flight, 1..16),
    ``addr_width`` (AXI address bits), ``arid`` (the ARID this reader uses).

    Ports:

    * ``bus``: Out(AXI4, 128-bit data): only AR and R are used (AW/W idle, ``bready`` 1);
    * ``start``: In(1), a one-cycle pulse: read the table at ``table_base`` and fetch; the
      dispatcher must be in reset state (the accelerator resets it with every start);
    * ``table_base``: In(addr_width), byte address of the queue table (a multiple of 4096: the
      low 12 bits are ignored, so the table is one burst that crosses no 4 KB boundary);
    * ``stop``: In(1), while high no new burst is requested (those in flight complete): the
      accelerator drains the bus this way before it resets the dispatcher;
    * ``frames``: In(16), copies of every queue to fetch (0 and 1: one), sampled while
      fetching (the accelerator holds it constant during a run);
    * ``instr[i]``: Out(stream of 128-bit words), queue i's instructions in order;
    * ``fetched``: Out(64), instruction words received (performance counter);
    * ``busy``: Out(1), the table is being read or a burst is in flight;
    * ``fault``: Out(1), sticky: a read response other than OKAY, or a queue whose words do not
      start on a 16-byte boundary (its fetch is not started).
    """

    def __init__(self, *, queues: int, depth: int = 8, max_burst: int = 16,
                 outstanding: int = 4, addr_width: int = 40, arid: int = 0):
        self.queues = check_int("queues", queues, 1, 256)
        self.depth = check_pow2("depth", depth, lo=2, hi=64)
        self.max_burst = check_int("max_burst", max_burst, 1, 256)
        self.outstanding = check_int("outstanding", outstanding, 1, 16)
        self.addr_width = check_int("addr_width", addr_width, 13, 64)
        self.arid = check_int("arid", arid, 0, 1)
        if queues * ENTRY_BYTES > BOUNDARY_BYTES:
            raise ValueError(f"{queues} queues need a table larger than {BOUNDARY_BYTES} bytes")
        super().__init__({
            "bus": Out(axi4_signature(addr_width=addr_width, data_width=128)),
            "start": In(1),
            "table_base": In(addr_width),
            "stop": In(1),
            "frames": In(16),
            "instr": Out(stream.Signature(unsigned(128))).array(queues),
            "fetched": Out(64),
            "busy": Out(1),
            "fault": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        Q, D, A = self.queues, self.depth, self.addr_width
        bus = self.bus
        WA = A - 4                      # word addresses (16-byte units)
        m.d.comb += [bus.awvalid.eq(0), bus.wvalid.eq(0), bus.bready.eq(1),
                     bus.arid.eq(self.arid), bus.arsize.eq(4), bus.arburst.eq(BURST_INCR),
                     bus.arcache.eq(0b0011), bus.arprot.eq(0), bus.rready.eq(1)]

        addr = Array(Signal(WA, name=f"q{i}_addr") for i in range(Q))     # next word address
        left = Array(Signal(32, name=f"q{i}_left") for i in range(Q))     # words not requested
        infl = Array(Signal(range(D + 1), name=f"q{i}_infl") for i in range(Q))
        # the table entries again for the next frame's copies: a small RAM (LUT RAM, read
        # asynchronously at the round robin's queue), not registers per queue
        m.submodules.qtab = qtab = Memory(shape=unsigned(WA + 32), depth=Q, init=[])
        qtab_w = qtab.write_port()
        qtab_r = qtab.read_port(domain="comb")
        copies = Array(Signal(16, name=f"q{i}_copies") for i in range(Q))  # copies started - 1
        fifos = []
        for i in range(Q):
            f = SyncFIFOBuffered(width=128, depth=D)
            m.submodules[f"q{i}"] = f
            fifos.append(f)
            wiring.connect(m, wiring.flipped(self.instr[i]), f.r_stream)  # the FIFO head
        levels = Array(f.level for f in fifos)

        tags = SyncFIFOBuffered(width=8, depth=self.outstanding)
        m.submodules.tags = tags
        table_ok = Signal()         # the table has been read
        table_req = Signal()        # the table's burst has been requested
        entry = Signal(range(Q + 1))
        base = Signal(WA)

        # -- read data: the table first, then the queues' words ----------------------------
        r_ok = bus.rvalid & bus.rready
        with m.If(r_ok & (bus.rresp != RESP_OKAY)):
            m.d.sync += self.fault.eq(1)
        tag = tags.r_data
        with m.If(~table_ok):
            with m.If(r_ok):
                off, words = bus.rdata[0:32], bus.rdata[32:64]
                m.d.sync += [addr[entry].eq(base + off[4:]), entry.eq(entry + 1)]
                m.d.comb += [qtab_w.addr.eq(entry),
                             qtab_w.data.eq(Cat((base + off[4:])[:WA], words)),
                             qtab_w.en.eq(off[:4] == 0)]
                with m.If(off[:4] != 0):
                    m.d.sync += self.fault.eq(1)
                with m.Else():
                    m.d.sync += left[entry].eq(words)
                with m.If(entry == Q - 1):
                    m.d.sync += table_ok.eq(1)
        with m.Else():
            for i, f in enumerate(fifos):
                m.d.comb += [f.w_data.eq(bus.rdata), f.w_en.eq(r_ok & (tag == i))]
            m.d.comb += tags.r_en.eq(r_ok & bus.rlast)
            with m.If(r_ok):
                m.d.sync += self.fetched.eq(self.fetched + 1)

        # -- requests -------------------------------------------------------------------------
        ptr = Signal(range(Q))
        free = Signal(range(D + 1))
        to_4k = Signal(range(BOUNDARY_BYTES // WORD_BYTES + 1))
        n = Signal(range(self.max_burst + 1))
        need = Signal(32)
        a = addr[ptr]
        m.d.comb += [free.eq(D - levels[ptr] - infl[ptr]),
                     to_4k.eq(BOUNDARY_BYTES // WORD_BYTES - a[:8]),
                     need.eq(Mux(left[ptr] < D // 2, left[ptr], D // 2))]
        need_pg = Signal(32)        # a burst that ends at a 4 KB boundary may be shorter
        m.d.comb += need_pg.eq(Mux(to_4k < need, to_4k, need))
        # n = min(left, free, to_4k, max_burst)
        cands = [left[ptr], free, to_4k, Const(self.max_burst)]
        cur = cands[0]
        for c in cands[1:]:
            cur = Mux(c < cur, c, cur)
        m.d.comb += n.eq(cur)

        issuing = Signal()
        started = Signal()
        treq = Signal(range(Q + 1))     # table entries requested
        with m.If(self.start):
            m.d.sync += [base.eq(self.table_base[12:] << 8), started.eq(1)]
        with m.If(bus.arvalid):
            with m.If(bus.arready):
                m.d.sync += bus.arvalid.eq(0)
        with m.Elif(~table_req):
            # the table, in bursts of at most max_burst entries (one 4 KB page: no crossing)
            tn = Signal(range(Q + 1))
            m.d.comb += tn.eq(Mux(Q - treq > self.max_burst, self.max_burst, Q - treq))
            with m.If(started & ~self.stop):
                m.d.sync += [bus.arvalid.eq(1), bus.araddr.eq(Cat(Const(0, 4), base + treq)),
                             bus.arlen.eq(tn - 1), treq.eq(treq + tn)]
                with m.If(treq + tn == Q):
                    m.d.sync += table_req.eq(1)
        with m.Elif(~table_ok):
            pass
        with m.Else():
            m.d.comb += issuing.eq((left[ptr] != 0) & (n != 0) & (n >= need_pg) & tags.w_rdy
                                   & ~self.stop)
            with m.If(issuing):
                m.d.sync += [bus.arvalid.eq(1), bus.araddr.eq(Cat(Const(0, 4), a)),
                             bus.arlen.eq(n - 1), a.eq(a + n), left[ptr].eq(left[ptr] - n)]
            m.d.sync += ptr.eq(Mux(ptr == Q - 1, 0, ptr + 1))
        m.d.comb += [tags.w_en.eq(issuing), tags.w_data.eq(ptr)]

        # frames: the round robin's queue, every word requested, starts its next copy (never
        # in a cycle that issues for it: that needs words left)
        m.d.comb += qtab_r.addr.eq(ptr)
        with m.If(table_ok & (left[ptr] == 0) & (copies[ptr] + 1 < self.frames) & ~self.fault):
            m.d.sync += [a.eq(qtab_r.data[:WA]), left[ptr].eq(qtab_r.data[WA:]),
                         copies[ptr].eq(copies[ptr] + 1)]

        # in-flight words per queue: + n when issued, - 1 per word arriving
        for i in range(Q):
            got = table_ok & r_ok & (tag == i)
            add = Mux(issuing & (ptr == i), n, 0)
            m.d.sync += infl[i].eq(infl[i] + add - got)

        m.d.comb += self.busy.eq((started & ~table_ok) | tags.r_rdy | bus.arvalid)
        return m
