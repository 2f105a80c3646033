"""LD / ST DMA engines: LOAD and STORE descriptors executed as AXI4 bursts.

A descriptor (:func:`descriptor_layout`) is a LOAD / STORE of ``sim.isa`` with an absolute DRAM
address: ``count`` chunks of ``length`` bytes; chunk ``i`` is DRAM ``dram_addr + i*stride`` and
buffer ``buf_addr + i*length`` (dense in the buffer), as ``sim.funcsim`` executes it. Neither
address has any alignment.

:class:`LoadDMA` reads DRAM through the AR / R channels and writes buffer **lines** (``L =
data_width/8`` bytes, line-aligned addresses, a byte mask for partial lines) on its ``wr`` stream;
:class:`StoreDMA` reads buffer lines through a BRAM-like read port and writes DRAM through AW / W /
B, with ``wstrb`` on partial beats. Inside both:

* a **burst generator** (:class:`_BurstGen`): takes a descriptor, checks that its DRAM extent
  ``[dram_addr, dram_addr + (count-1)*stride + length)`` lies in the window ``[win_lo, win_hi)``
  (if not: no AXI request, fault bit 0, the descriptor is dropped), then for every chunk hands the
  chunk to the data path and splits the chunk's beats into bursts. **Burst-splitting rule**: a
  chunk covers the beats from ``floor(addr / L)`` to ``floor((addr + length - 1) / L)``; bursts are
  issued in address order, each INCR, ``AxSIZE = log2(L)``, as long as the smallest of (beats left
  in the chunk, ``max_burst``, beats to the next 4 KB boundary). A burst never spans two chunks, so
  a chunk costs at least one burst.
* a **realigner** (:class:`Realigner`, one per engine): each chunk is its own realignment from the
  source byte offset to the destination byte offset: every input word is rotated by
  ``(dst - src) mod L`` bytes and merged with the carry register (the previous rotated word), one
  output word per input word plus at most one flush word per chunk; first / last output words
  are masked to the chunk's bytes.

Back-pressure never loses data: the LOAD engine lowers ``rready`` while ``wr`` is stalled; the
STORE engine reads the buffer only when its line FIFO has room for the answer.
Both engines accept the next descriptor as soon as the previous one's bursts are all issued
(its data may still be in flight), so descriptors pipeline.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from sim.isa import FORMATS

from ..params import check_int, check_pow2
from .axi import BOUNDARY_BYTES, BURST_INCR, MAX_BURST_BEATS, axi4_signature

__all__ = ["descriptor_layout", "buffer_write_layout", "realign_chunk_layout", "realign_params",
           "Realigner", "LoadDMA", "StoreDMA", "DescriptorDealer", "ceil_div_const",
           "SPLIT_MIN_BEATS",
           "BUF_ADDR_BITS", "FAULT_WINDOW", "FAULT_RESP"]

_DMA_BITS = {n: b for n, b, _ in FORMATS["LOAD"][2]}
BUF_ADDR_BITS = _DMA_BITS["buf_addr"]   #: byte address inside a buffer (sim.isa's buf_addr field)
_LEN_BITS = _DMA_BITS["length"]         #: chunk length in bytes (sim.isa)
_COUNT_BITS = _DMA_BITS["count"]        #: chunks per descriptor (sim.isa)
_STRIDE_BITS = _DMA_BITS["stride"]      #: DRAM bytes between chunk starts (sim.isa)
_WORDS_BITS = 20        #: words (beats / lines) of one chunk: at most ceil((2**20 - 1)/4) + 1
FAULT_WINDOW = 1        #: ``fault`` bit 0: a descriptor left the DRAM window (dropped)
FAULT_RESP = 2          #: ``fault`` bit 1: an AXI SLVERR / DECERR response
_AXCACHE = 0b0011       #: normal non-cacheable bufferable
_CREDIT_BITS = 5        #: counts 0..16 bursts in flight


def descriptor_layout(addr_width: int = 40) -> data.StructLayout:
    """One LOAD / STORE: ``dram_addr`` (absolute byte address, ``addr_width`` bits), ``buf``
    (buffer id, ``sim.isa.BUFS``), ``core`` (core whose buffer A a LOAD fills), ``buf_addr``
    (byte address in the buffer), ``count`` (chunks), ``length`` (bytes per chunk), ``stride``
    (DRAM bytes from one chunk's start to the next)."""
    check_int("addr_width", addr_width, 12, 64)
    return data.StructLayout({"dram_addr": addr_width, "buf": 3, "core": 6,
                              "buf_addr": BUF_ADDR_BITS, "count": _COUNT_BITS,
                              "length": _LEN_BITS, "stride": _STRIDE_BITS})


def buffer_write_layout(data_width: int = 128) -> data.StructLayout:
    """One buffer line written by :class:`LoadDMA`: ``buf``, ``core`` (as the descriptor),
    ``addr`` (byte address of the line, a multiple of ``data_width/8``), ``data`` (byte ``j`` at
    bits ``8j..8j+7`` is buffer byte ``addr + j``), ``mask`` (bit ``j``: write byte ``j``)."""
    check_pow2("data_width", data_width, lo=32, hi=1024)
    return data.StructLayout({"buf": 3, "core": 6, "addr": BUF_ADDR_BITS,
                              "data": data_width, "mask": data_width // 8})


def _check_common(addr_width, data_width, id_width, max_burst, outstanding):
    check_int("addr_width", addr_width, 12, 64)
    check_pow2("data_width", data_width, lo=32, hi=1024)
    check_int("id_width", id_width, 1, 16)
    check_int("max_burst", max_burst, 1, MAX_BURST_BEATS)
    check_int("outstanding", outstanding, 1, 16)


def _log2(n: int) -> int:
    return n.bit_length() - 1


# --- realigner --------------------------------------------------------------------------------

def realign_chunk_layout(lanes: int, tag) -> data.StructLayout:
    """What :class:`Realigner` needs to know about one chunk (see :func:`realign_params`)."""
    lg = _log2(lanes)
    return data.StructLayout({"shift": lg, "late": 1, "n_in": _WORDS_BITS, "n_out": _WORDS_BITS,
                              "lo": lg, "hi": lg, "tag": tag})


def realign_params(m, view, lanes: int, src_off, dst_off, length):
    """Drive the realigner fields of ``view`` (a :func:`realign_chunk_layout` view) for a chunk of
    ``length`` bytes whose first byte is at lane ``src_off`` of the first input word and must land
    at lane ``dst_off`` of the first output word (combinational)."""
    lg = _log2(lanes)
    last_src = src_off + length - 1
    last_dst = dst_off + length - 1
    m.d.comb += [view.shift.eq((dst_off - src_off)[:lg]),
                 view.late.eq(dst_off < src_off),
                 view.n_in.eq((last_src >> lg) + 1),
                 view.n_out.eq((last_dst >> lg) + 1),
                 view.lo.eq(dst_off),
                 view.hi.eq(last_dst[:lg])]


class Realigner(wiring.Component):
    """Byte realignment of a chunk from one word grid to another (a byte rotator and a carry).

    Parameters: ``lanes`` (bytes per word, a power of two 4..128), ``tag`` (shape carried from
    each chunk to its output words).

    * ``chunk`` (In stream): per chunk, ``shift`` = (destination lane - source lane) mod
      ``lanes``, ``late`` = destination lane < source lane (the first input word makes no output
      word), ``n_in`` / ``n_out`` input / output words, ``lo`` / ``hi`` first / last valid byte
      lane of the first / last output word, ``tag``. Taken (``ready``) with the chunk's last
      output word.
    * ``i`` (In stream, ``8*lanes`` bits): the chunk's input words in order, byte ``j`` at bits
      ``8j..8j+7``; the first holds the chunk's first byte at lane ``(lo - shift) mod lanes``.
    * ``o`` (Out stream, registered): ``data`` (bytes outside ``mask`` are undefined), ``mask``,
      ``index`` (output word number inside the chunk), ``last`` (last word of the chunk), ``tag``.

    One word per cycle in and out; a chunk with ``n_out == n_in - late + 1`` takes one more
    cycle (the flush word from the carry register).
    """

    def __init__(self, *, lanes: int, tag):
        check_pow2("lanes", lanes, lo=4, hi=128)
        self.lanes = lanes
        self.chunk_layout = realign_chunk_layout(lanes, tag)
        self.out_layout = data.StructLayout({"data": 8 * lanes, "mask": lanes,
                                             "index": _WORDS_BITS, "last": 1, "tag": tag})
        super().__init__({
            "chunk": In(stream.Signature(self.chunk_layout)),
            "i": In(stream.Signature(8 * lanes)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.lanes
        c = self.chunk.payload
        cnt_in = Signal(_WORDS_BITS)
        cnt_out = Signal(_WORDS_BITS)
        flush = Signal()
        carry = Signal(8 * n)

        word = self.i.payload
        rot = Signal(8 * n)     # input lane d -> lane (d + shift) mod n
        m.d.comb += rot.eq(Array([word.rotate_left(8 * k) for k in range(n)])[c.shift])
        merged = Signal(8 * n)
        m.d.comb += merged.eq(Cat(Mux(j < c.shift, carry[8 * j:8 * j + 8], rot[8 * j:8 * j + 8])
                                  for j in range(n)))

        can_out = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(self.chunk.valid & ~flush & can_out)
        take_in = self.i.valid & self.i.ready
        emit_in = take_in & ~(c.late & (cnt_in == 0))
        emit_flush = self.chunk.valid & flush & can_out
        emit = emit_in | emit_flush
        last_in = cnt_in == c.n_in - 1
        last_out = cnt_out == c.n_out - 1

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take_in):
            m.d.sync += [carry.eq(rot), cnt_in.eq(cnt_in + 1)]
            with m.If(last_in):
                m.d.sync += cnt_in.eq(0)
                with m.If(cnt_out + emit_in == c.n_out):
                    m.d.comb += self.chunk.ready.eq(1)
                with m.Else():
                    m.d.sync += flush.eq(1)
        with m.If(emit_flush):
            m.d.sync += flush.eq(0)
            m.d.comb += self.chunk.ready.eq(1)
        with m.If(emit):
            mask = Cat(((cnt_out != 0) | (j >= c.lo)) & (~last_out | (j <= c.hi))
                       for j in range(n))
            m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(merged),
                         self.o.payload.mask.eq(mask), self.o.payload.index.eq(cnt_out),
                         self.o.payload.last.eq(last_out), self.o.payload.tag.eq(c.tag),
                         cnt_out.eq(Mux(last_out, 0, cnt_out + 1))]
        return m


# --- burst generator ----------------------------------------------------------------------------

class _BurstGen(wiring.Component):
    """Descriptor -> window check -> chunks -> bursts (see the module docstring for the rule).

    * ``cmd``: descriptors; ready only while no descriptor is being issued.
    * ``chunk`` (Out stream): each chunk (``dram``, ``buf_addr``, ``length``, ``buf``, ``core``),
      handed over before its first burst.
    * ``burst`` (Out stream): ``addr`` (beat-aligned byte address), ``len`` (beats - 1, AxLEN).
    * ``window_fault``: one-cycle pulse when a descriptor is dropped by the window check.
    * ``busy``: a descriptor is being checked or issued.
    """

    def __init__(self, *, addr_width, lanes, max_burst):
        self.aw, self.lanes, self.max_burst = addr_width, lanes, max_burst
        self.chunk_layout = data.StructLayout({"dram": addr_width, "buf_addr": BUF_ADDR_BITS,
                                               "length": _LEN_BITS, "buf": 3, "core": 6})
        super().__init__({
            "cmd": In(stream.Signature(descriptor_layout(addr_width))),
            "win_lo": In(addr_width), "win_hi": In(addr_width),
            "chunk": Out(stream.Signature(self.chunk_layout)),
            "burst": Out(stream.Signature(data.StructLayout({"addr": addr_width, "len": 8}))),
            "window_fault": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lg = _log2(self.lanes)
        desc = Signal(descriptor_layout(self.aw))
        span = Signal(_COUNT_BITS + _STRIDE_BITS)        # (count - 1) * stride
        cur_dram = Signal(self.aw)
        cur_buf = Signal(BUF_ADDR_BITS)
        chunks_left = Signal(_COUNT_BITS)
        baddr = Signal(self.aw)
        beats_left = Signal(_WORDS_BITS)

        m.d.comb += [self.chunk.payload.dram.eq(cur_dram), self.chunk.payload.buf_addr.eq(cur_buf),
                     self.chunk.payload.length.eq(desc.length),
                     self.chunk.payload.buf.eq(desc.buf), self.chunk.payload.core.eq(desc.core)]
        # beats of this burst: min(beats left, max_burst, beats to the next 4 KB boundary)
        to_boundary = Signal(range(BOUNDARY_BYTES // self.lanes + 1))
        m.d.comb += to_boundary.eq((BOUNDARY_BYTES - baddr[:_log2(BOUNDARY_BYTES)]) >> lg)
        beats = Signal(range(MAX_BURST_BEATS + 1))
        lim = Mux(to_boundary < self.max_burst, to_boundary, self.max_burst)
        m.d.comb += beats.eq(Mux(beats_left < lim, beats_left, lim))
        m.d.comb += [self.burst.payload.addr.eq(baddr), self.burst.payload.len.eq(beats - 1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    p = self.cmd.payload
                    m.d.sync += [desc.eq(p), span.eq((p.count - 1) * p.stride)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                end = desc.dram_addr + span + desc.length       # wide: no wrap-around
                outside = (desc.dram_addr < self.win_lo) | (end > self.win_hi)
                m.d.sync += [cur_dram.eq(desc.dram_addr), cur_buf.eq(desc.buf_addr),
                             chunks_left.eq(desc.count)]
                with m.If((desc.count == 0) | (desc.length == 0)):
                    m.next = "IDLE"
                with m.Elif(outside):
                    m.d.comb += self.window_fault.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "CHUNK"
            with m.State("CHUNK"):
                m.d.comb += [self.busy.eq(1), self.chunk.valid.eq(1)]
                with m.If(self.chunk.ready):
                    m.d.sync += [baddr.eq(Cat(Const(0, lg), cur_dram[lg:])),
                                 beats_left.eq(((cur_dram[:lg] + desc.length - 1) >> lg) + 1)]
                    m.next = "BURST"
            with m.State("BURST"):
                m.d.comb += [self.busy.eq(1), self.burst.valid.eq(1)]
                with m.If(self.burst.ready):
                    m.d.sync += [baddr.eq(baddr + (beats << lg)), beats_left.eq(beats_left - beats)]
                    with m.If(beats_left == beats):
                        m.d.sync += [cur_dram.eq(cur_dram + desc.stride),
                                     cur_buf.eq(cur_buf + desc.length),
                                     chunks_left.eq(chunks_left - 1)]
                        with m.If(chunks_left == 1):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "CHUNK"
        return m


def _tie_axi_constants(m, bus, lg):
    m.d.comb += [bus.arburst.eq(BURST_INCR), bus.arsize.eq(lg), bus.arcache.eq(_AXCACHE),
                 bus.awburst.eq(BURST_INCR), bus.awsize.eq(lg), bus.awcache.eq(_AXCACHE)]


# --- LOAD ---------------------------------------------------------------------------------------

class _DmaEngine(wiring.Component):
    """What :class:`LoadDMA` and :class:`StoreDMA` share: the validated bus parameters and the
    ports ``bus`` (the AXI4 master), ``cmd`` (descriptors), ``win_lo`` / ``win_hi`` (the DRAM
    window), ``fault`` and ``idle``; ``ports`` adds the engine's own."""

    def __init__(self, *, addr_width: int, data_width: int, id_width: int, max_burst: int,
                 outstanding: int, ports: dict):
        _check_common(addr_width, data_width, id_width, max_burst, outstanding)
        self.addr_width, self.data_width, self.id_width = addr_width, data_width, id_width
        self.max_burst, self.outstanding = max_burst, outstanding
        self.lanes = data_width // 8
        super().__init__({
            "bus": Out(axi4_signature(addr_width=addr_width, data_width=data_width,
                                      id_width=id_width)),
            "cmd": In(stream.Signature(descriptor_layout(addr_width))),
            "win_lo": In(addr_width), "win_hi": In(addr_width),
            "fault": Out(2), "idle": Out(1), **ports,
        })


class LoadDMA(_DmaEngine):
    """LD engine: executes LOAD descriptors as AXI4 read bursts and writes buffer lines.

    Parameters (keyword-only): ``addr_width`` (DRAM byte address bits, 12..64), ``data_width``
    (AXI data and buffer line width in bits, a power of two 32..1024; ``L = data_width/8`` bytes
    per beat and per line), ``id_width`` (AXI ID bits; all requests use ID 0, so responses come
    in order), ``max_burst`` (longest burst in beats, 1..256), ``outstanding`` (read bursts in
    flight, 1..16).

    Ports:

    * ``bus`` (Out, :func:`~hw.system.axi.axi4_signature`): AR / R used; AW / W idle
      (``awvalid = wvalid = 0``, ``bready = 1``).
    * ``cmd`` (In stream of :func:`descriptor_layout`): a descriptor is taken when the previous
      one's bursts have all been issued (its data may still be arriving).
    * ``wr`` (Out stream of :func:`buffer_write_layout`): buffer writes, one line (``L`` bytes at
      an ``L``-aligned address) per transfer with a byte mask; ``wr.ready`` low stalls ``rready``.
    * ``win_lo``, ``win_hi`` (In, byte addresses): the DRAM window ``[win_lo, win_hi)`` a
      descriptor's whole extent must lie in; one outside issues no request and is dropped.
    * ``fault`` (Out(2), sticky until reset): bit 0 a descriptor was dropped by the window
      check, bit 1 a read response was SLVERR or DECERR (its data are written anyway).
    * ``idle`` (Out(1)): no descriptor taken and unfinished: every burst answered and every byte
      read handed to ``wr`` (and accepted).
    * ``rd_bytes`` (Out(64)): bytes of finished chunks (descriptor bytes, not bus beats).

    Throughput: one beat per cycle when memory and ``wr`` allow, plus one cycle per chunk in the
    burst generator and one flush cycle for chunks whose buffer offset needs one more line.
    """

    def __init__(self, *, addr_width: int = 40, data_width: int = 128, id_width: int = 1,
                 max_burst: int = 64, outstanding: int = 4):
        super().__init__(addr_width=addr_width, data_width=data_width, id_width=id_width,
                         max_burst=max_burst, outstanding=outstanding, ports={
                             "wr": Out(stream.Signature(buffer_write_layout(data_width))),
                             "rd_bytes": Out(64)})

    def elaborate(self, platform):
        m = Module()
        n, lg, bus = self.lanes, _log2(self.lanes), self.bus
        m.submodules.gen = gen = _BurstGen(addr_width=self.addr_width, lanes=n,
                                           max_burst=self.max_burst)
        tag = data.StructLayout({"line": BUF_ADDR_BITS, "buf": 3, "core": 6, "length": _LEN_BITS})
        m.submodules.align = align = Realigner(lanes=n, tag=tag)
        m.submodules.chunks = chunks = SyncFIFOBuffered(
            width=align.chunk_layout.size, depth=self.outstanding + 1)

        wiring.connect(m, wiring.flipped(self.cmd), gen.cmd)
        m.d.comb += [gen.win_lo.eq(self.win_lo), gen.win_hi.eq(self.win_hi)]
        _tie_axi_constants(m, bus, lg)
        m.d.comb += bus.bready.eq(1)

        # chunk -> realigner parameters (DRAM lane -> buffer lane)
        cp = gen.chunk.payload
        info = Signal(align.chunk_layout)
        realign_params(m, info, n, cp.dram[:lg], cp.buf_addr[:lg], cp.length)
        m.d.comb += [info.tag.line.eq(Cat(Const(0, lg), cp.buf_addr[lg:])),
                     info.tag.buf.eq(cp.buf), info.tag.core.eq(cp.core),
                     info.tag.length.eq(cp.length),
                     chunks.w_data.eq(info), chunks.w_en.eq(gen.chunk.valid),
                     gen.chunk.ready.eq(chunks.w_rdy)]
        m.d.comb += [align.chunk.payload.eq(chunks.r_data), align.chunk.valid.eq(chunks.r_rdy),
                     chunks.r_en.eq(align.chunk.ready)]

        # AR: gated by the number of bursts in flight
        inflight = Signal(_CREDIT_BITS)
        room = inflight < self.outstanding
        m.d.comb += [bus.arvalid.eq(gen.burst.valid & room),
                     bus.araddr.eq(gen.burst.payload.addr), bus.arlen.eq(gen.burst.payload.len),
                     gen.burst.ready.eq(bus.arready & room)]
        ar_go = bus.arvalid & bus.arready
        r_end = bus.rvalid & bus.rready & bus.rlast
        m.d.sync += inflight.eq(inflight + ar_go - r_end)

        # R -> realigner -> wr
        m.d.comb += [align.i.payload.eq(bus.rdata), align.i.valid.eq(bus.rvalid),
                     bus.rready.eq(align.i.ready)]
        o = align.o.payload
        m.d.comb += [self.wr.valid.eq(align.o.valid), align.o.ready.eq(self.wr.ready),
                     self.wr.payload.buf.eq(o.tag.buf), self.wr.payload.core.eq(o.tag.core),
                     self.wr.payload.addr.eq(o.tag.line + (o.index << lg)),
                     self.wr.payload.data.eq(o.data), self.wr.payload.mask.eq(o.mask)]

        with m.If(gen.window_fault):
            m.d.sync += self.fault[0].eq(1)
        with m.If(bus.rvalid & bus.rready & bus.rresp[1]):
            m.d.sync += self.fault[1].eq(1)
        with m.If(align.o.valid & align.o.ready & o.last):
            m.d.sync += self.rd_bytes.eq(self.rd_bytes + o.tag.length)
        m.d.comb += self.idle.eq(~gen.busy & (chunks.level == 0) & ~align.o.valid
                                 & (inflight == 0))
        return m


# --- STORE --------------------------------------------------------------------------------------

class StoreDMA(_DmaEngine):
    """ST engine: executes STORE descriptors, reading buffer lines and writing AXI4 bursts.

    Parameters: as :class:`LoadDMA` (``outstanding``: write bursts whose B response has not
    arrived yet).

    Ports:

    * ``bus`` (Out): AW / W / B used; AR idle (``arvalid = 0``, ``rready = 1``). W data never
      precede their AW (a burst's beats are sent after its address was accepted).
    * ``cmd`` (In stream of :func:`descriptor_layout`): as :class:`LoadDMA`.
    * buffer read port with a BRAM's latency: ``rd_en`` (Out(1)) read the line at ``rd_addr``
      (Out(20), byte address, a multiple of ``L``) of buffer ``rd_buf`` (Out(3)); ``rd_data``
      (In(``data_width``), byte ``j`` = buffer byte ``rd_addr + j``) must be valid in the cycle
      after ``rd_en``, without stall: reads are issued only when the line FIFO has room.
    * ``win_lo``, ``win_hi``: the DRAM window, as :class:`LoadDMA`.
    * ``fault`` (Out(2), sticky): bit 0 window, bit 1 a SLVERR / DECERR write response.
    * ``idle``: no descriptor taken and unfinished: every B response of the descriptors taken so
      far has arrived.
    * ``wr_bytes`` (Out(64)): bytes of chunks whose last beat has been sent.
    """

    LINE_FIFO_DEPTH = 4     #: lines read from the buffer and not yet sent on W

    def __init__(self, *, addr_width: int = 40, data_width: int = 128, id_width: int = 1,
                 max_burst: int = 64, outstanding: int = 4):
        super().__init__(addr_width=addr_width, data_width=data_width, id_width=id_width,
                         max_burst=max_burst, outstanding=outstanding, ports={
                             "rd_en": Out(1), "rd_buf": Out(3), "rd_addr": Out(BUF_ADDR_BITS),
                             "rd_data": In(data_width), "wr_bytes": Out(64)})

    def elaborate(self, platform):
        m = Module()
        n, lg, bus = self.lanes, _log2(self.lanes), self.bus
        m.submodules.gen = gen = _BurstGen(addr_width=self.addr_width, lanes=n,
                                           max_burst=self.max_burst)
        tag = data.StructLayout({"length": _LEN_BITS})
        m.submodules.align = align = Realigner(lanes=n, tag=tag)
        depth = self.outstanding + 1
        m.submodules.achunks = achunks = SyncFIFOBuffered(width=align.chunk_layout.size,
                                                          depth=depth)
        rd_layout = data.StructLayout({"line": BUF_ADDR_BITS, "lines": _WORDS_BITS, "buf": 3})
        m.submodules.rchunks = rchunks = SyncFIFOBuffered(width=rd_layout.size, depth=depth)
        m.submodules.lines = lines = SyncFIFOBuffered(width=self.data_width,
                                                      depth=self.LINE_FIFO_DEPTH)
        m.submodules.wlens = wlens = SyncFIFOBuffered(width=8, depth=self.outstanding)

        wiring.connect(m, wiring.flipped(self.cmd), gen.cmd)
        m.d.comb += [gen.win_lo.eq(self.win_lo), gen.win_hi.eq(self.win_hi)]
        _tie_axi_constants(m, bus, lg)
        m.d.comb += bus.rready.eq(1)

        # chunk -> (reader, realigner): buffer lane -> DRAM lane
        cp = gen.chunk.payload
        info = Signal(align.chunk_layout)
        realign_params(m, info, n, cp.buf_addr[:lg], cp.dram[:lg], cp.length)
        m.d.comb += info.tag.length.eq(cp.length)
        rinfo = Signal(rd_layout)
        m.d.comb += [rinfo.line.eq(Cat(Const(0, lg), cp.buf_addr[lg:])), rinfo.lines.eq(info.n_in),
                     rinfo.buf.eq(cp.buf)]
        both = achunks.w_rdy & rchunks.w_rdy
        m.d.comb += [achunks.w_data.eq(info), rchunks.w_data.eq(rinfo),
                     achunks.w_en.eq(gen.chunk.valid & both),
                     rchunks.w_en.eq(gen.chunk.valid & both), gen.chunk.ready.eq(both)]

        # buffer reader: one line per cycle while the line FIFO has room for its answer
        rc = data.View(rd_layout, rchunks.r_data)
        line_cnt = Signal(_WORDS_BITS)
        pending = Signal()
        room = lines.level + pending < self.LINE_FIFO_DEPTH
        m.d.comb += [self.rd_en.eq(rchunks.r_rdy & room), self.rd_buf.eq(rc.buf),
                     self.rd_addr.eq(rc.line + (line_cnt << lg))]
        m.d.sync += pending.eq(self.rd_en)
        with m.If(self.rd_en):
            m.d.sync += line_cnt.eq(line_cnt + 1)
            with m.If(line_cnt == rc.lines - 1):
                m.d.sync += line_cnt.eq(0)
                m.d.comb += rchunks.r_en.eq(1)
        m.d.comb += [lines.w_data.eq(self.rd_data), lines.w_en.eq(pending)]

        # line FIFO -> realigner
        m.d.comb += [align.chunk.payload.eq(achunks.r_data), align.chunk.valid.eq(achunks.r_rdy),
                     achunks.r_en.eq(align.chunk.ready),
                     align.i.payload.eq(lines.r_data), align.i.valid.eq(lines.r_rdy),
                     lines.r_en.eq(align.i.ready)]

        # AW: gated by bursts in flight and room for the burst's length (W side)
        inflight = Signal(_CREDIT_BITS)
        aroom = (inflight < self.outstanding) & wlens.w_rdy
        m.d.comb += [bus.awvalid.eq(gen.burst.valid & aroom),
                     bus.awaddr.eq(gen.burst.payload.addr), bus.awlen.eq(gen.burst.payload.len),
                     gen.burst.ready.eq(bus.awready & aroom)]
        aw_go = bus.awvalid & bus.awready
        m.d.comb += [wlens.w_data.eq(gen.burst.payload.len), wlens.w_en.eq(aw_go)]
        b_go = bus.bvalid & bus.bready
        m.d.comb += bus.bready.eq(1)
        m.d.sync += inflight.eq(inflight + aw_go - b_go)

        # W: realigner output, wlast from the burst lengths of the issued AWs
        beat = Signal(8)
        o = align.o.payload
        m.d.comb += [bus.wvalid.eq(align.o.valid & wlens.r_rdy),
                     align.o.ready.eq(bus.wready & wlens.r_rdy),
                     bus.wdata.eq(o.data), bus.wstrb.eq(o.mask),
                     bus.wlast.eq(beat == wlens.r_data)]
        w_go = bus.wvalid & bus.wready
        with m.If(w_go):
            m.d.sync += beat.eq(beat + 1)
            with m.If(bus.wlast):
                m.d.sync += beat.eq(0)
                m.d.comb += wlens.r_en.eq(1)
            with m.If(o.last):
                m.d.sync += self.wr_bytes.eq(self.wr_bytes + o.tag.length)

        with m.If(gen.window_fault):
            m.d.sync += self.fault[0].eq(1)
        with m.If(b_go & bus.bresp[1]):
            m.d.sync += self.fault[1].eq(1)
        m.d.comb += self.idle.eq(~gen.busy & (inflight == 0) & (achunks.level == 0)
                                 & (wlens.level == 0))
        return m


# --- several LD engines -------------------------------------------------------------------------

#: a LOAD of one chunk is split by bytes only when it has at least this many beats per engine
SPLIT_MIN_BEATS = 4


def ceil_div_const(x, e: int, bits: int):
    """``ceil(x / e)`` for ``0 <= x < 2**bits`` and a constant ``e`` (1..16), without a divider:
    ``((x + e - 1) * ceil(2**S / e)) >> S`` with ``S = bits + 5`` (the rounding error stays
    below ``1/e`` while ``(x + e - 1) * (e - 1) < 2**S``; ``tests/test_ldports.py`` checks it
    exhaustively for 20 bits); works on ints, numpy arrays and Amaranth values."""
    check_int("e", e, 1, 16)
    s = bits + 5
    return ((x + (e - 1)) * -(-(1 << s) // e)) >> s


class DescriptorDealer(wiring.Component):
    """Splits the LD unit's descriptors into pieces and deals the pieces round-robin to
    ``engines`` DMA engines (``axi_ports`` > 2, docs/system.md "AXI ports").

    A descriptor taken on ``cmd`` is held in a register; from the next cycle on its pieces go
    out one per cycle, piece ``j`` of the whole stream to engine ``j mod engines`` (each engine
    gets its pieces in stream order), the dealer waiting while the engine whose turn it is does
    not take its piece. ``cmd`` takes the next descriptor when the dealer is empty or in the
    cycle its last piece is taken. The pieces (``E`` = engines):

    * ``count >= 2`` (not into buffer A): runs of ``q = ceil(count / E)`` consecutive chunks
      (the last one shorter): ``dram_addr + lo*stride``, ``buf_addr + lo*length``,
      ``count = min(q, count - lo)``, at most ``E`` pieces;
    * ``count == 1`` of at least ``SPLIT_MIN_BEATS * E`` beats (not into buffer A): runs of
      ``q = 16 * ceil(beats / E)`` bytes (``beats = ceil(length / 16)``, so every piece keeps
      the chunk's byte lane): ``dram_addr + lo``, ``buf_addr + lo``, ``length = min(q,
      length - lo)``;
    * otherwise (and every LOAD into a core's buffer A, whose one write port an engine fills
      at its rate already) the descriptor itself.

    The pieces write exactly the descriptor's bytes (``sim.funcsim``'s LOAD), read exactly its
    DRAM bytes, and each lies inside the descriptor's extent, so the window check of each
    engine drops a piece only if the descriptor leaves the window. ``idle``: no descriptor held,
    no piece handed over in the last cycle, and every engine's ``idle``.

    Parameters (keyword-only): ``engines`` (2..16), ``addr_width`` (the descriptors' DRAM
    address bits, :func:`descriptor_layout`), ``beat`` (bytes per AXI beat, a power of two).

    Ports: ``cmd`` (In stream of :func:`descriptor_layout`): from the LD unit; ``engine[k]``
    (Out stream of the same): to engine ``k``; ``engine_idle`` (In(engines)): bit ``k`` engine
    ``k`` is idle; ``idle`` (Out(1)).
    """

    def __init__(self, *, engines: int, addr_width: int = 40, beat: int = 16):
        from sim.isa import BUFS
        self.engines = check_int("engines", engines, 2, 16)
        self.addr_width = check_int("addr_width", addr_width, 12, 64)
        self.beat = check_pow2("beat", beat, lo=4, hi=128)
        self._buf_a = BUFS["A"]
        desc = stream.Signature(descriptor_layout(addr_width))
        super().__init__({"cmd": In(desc), "engine": Out(desc).array(engines),
                          "engine_idle": In(engines), "idle": Out(1)})

    def elaborate(self, platform):
        m = Module()
        E, lg = self.engines, _log2(self.beat)
        c = self.cmd.payload
        d = Signal.like(c)              # the descriptor being dealt (advanced per piece)
        busy = Signal()
        by_chunks, by_bytes = Signal(), Signal()
        rem = Signal(_LEN_BITS + 1)     # chunks (by_chunks) or bytes (by_bytes) left
        q = Signal(_LEN_BITS + 1)       # chunks / bytes per piece
        dstep = Signal(self.addr_width)
        bstep = Signal(BUF_ADDR_BITS)
        turn = Signal(range(E))
        sent = Signal()

        # the piece on offer
        last = ~(by_chunks | by_bytes) | (rem <= q)
        n = Mux(rem < q, rem, q)
        piece = Signal.like(c)
        m.d.comb += piece.eq(d)
        with m.If(by_chunks):
            m.d.comb += piece.count.eq(n)
        with m.If(by_bytes):
            m.d.comb += piece.length.eq(n)
        go = Signal()
        for k in range(E):
            mine = turn == k
            m.d.comb += [self.engine[k].payload.eq(piece),
                         self.engine[k].valid.eq(busy & mine)]
            with m.If(mine):
                m.d.comb += go.eq(busy & self.engine[k].ready)
        with m.If(go):
            m.d.sync += [turn.eq(Mux(turn == E - 1, 0, turn + 1)),
                         d.dram_addr.eq(d.dram_addr + dstep), d.buf_addr.eq(d.buf_addr + bstep),
                         rem.eq(rem - q)]
        m.d.sync += sent.eq(go)

        # taking a descriptor: how it is split
        m.d.comb += self.cmd.ready.eq(~busy | (go & last))
        take = self.cmd.valid & self.cmd.ready
        beats = Signal(_LEN_BITS + 1)
        m.d.comb += beats.eq((c.length + (self.beat - 1)) >> lg)
        not_a = c.buf != self._buf_a
        chunks = not_a & (c.count >= 2)
        bytes_ = not_a & (c.count == 1) & (beats >= SPLIT_MIN_BEATS * E)
        qc = Signal(_LEN_BITS + 1)
        qb = Signal(_LEN_BITS + 1)
        m.d.comb += [qc.eq(ceil_div_const(c.count, E, _LEN_BITS)),
                     qb.eq(ceil_div_const(beats, E, _LEN_BITS) << lg)]
        with m.If(take):
            m.d.sync += [d.eq(c), busy.eq(1), by_chunks.eq(chunks), by_bytes.eq(bytes_)]
            with m.If(chunks):
                m.d.sync += [q.eq(qc), rem.eq(c.count), dstep.eq(qc * c.stride),
                             bstep.eq(qc * c.length)]
            with m.Elif(bytes_):
                m.d.sync += [q.eq(qb), rem.eq(c.length), dstep.eq(qb), bstep.eq(qb)]
        with m.Elif(go & last):
            m.d.sync += busy.eq(0)
        m.d.comb += self.idle.eq(~busy & ~sent & self.engine_idle.all())
        return m
