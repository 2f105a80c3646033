"""``CoreSystem``: one :class:`hw.core.Core` with its whole world in hardware (simulation model).

The Python harness (:mod:`tb.core.harness`) serves the core's ports cycle by cycle from Python,
which limits a cocotb run to about 60 cycles/s. ``CoreSystem`` is the same environment written
in Amaranth, so a simulator runs a whole :class:`sim.compile.Binary` (``L = 1``) on its own and
the testbench only waits for ``done`` and reads the outputs back. It is a *simulation model*
(not meant for synthesis): the memories have one port per byte lane.

What it holds (docs/hw-core.md, section "CoreSystem"):

* **DRAM**: a byte memory initialised with the Binary's DRAM image with the input ``x`` written
  in (:meth:`sim.compile.Binary.write_input`); read back through the ``dbg_*`` port.
* **Buffers**: every buffer of ``sim.isa.BUFS`` (B, C, OUT and the per-core AUX, DIV, A) in one
  byte memory (the core serves AUX, DIV and A itself: their ranges stay unused), each at its
  own base offset and with its size from the config. Every gather read /
  scatter write port of the core's signature (found by iterating over the signature, so ports
  added or removed in ``hw.core`` need no edit here) is served as :mod:`hw.core.ports` says:
  gather: ``data[r][e] = buf[(addr + r*row_stride + e*elem_stride) mod 2**20]`` one cycle after
  a cycle with ``en`` (0 outside the buffer); scatter: element ``e`` (where ``mask[e]``) at
  ``addr + e*elem_stride``, 1 byte or, with ``wide``, 4 bytes little-endian. A read and a write
  of the same byte in the same cycle reads the old byte (the units only meet through
  semaphores, which take a cycle).
* **Instruction queues**: one ROM per unit queue of ``sim.funcsim.build_queues`` (the
  dispatcher's split) feeding the core's ``*_instr`` streams, and one per global DMA queue.
* **Semaphore file**: one event counter per semaphore id used by the Binary; WAIT is answered
  combinationally (``ready`` when the counter has reached ``count``), SIGNAL is taken at once.
* **LD / ST DMA engines** executing the global stream's LOAD / STORE / SIGNAL / WAIT with the
  timing of ``sim.perf``: one DRAM channel shared first-come first-served, moving
  ``cfg.dram_bytes_per_cycle`` bytes per cycle in 16-byte beats (each chunk of a transfer
  rounded up to whole beats, as ``sim.perf``); a DMA unit's next instruction starts when its
  transfer has left the channel; a SIGNAL after a transfer fires ``cfg.dram_latency_cycles``
  after the transfer's last beat (posted: the unit goes on). The bytes themselves are written
  when the beat moves: only the SIGNAL is delayed, which is all a unit can observe. A LOAD into
  buffer A (core 0) moves one beat per cycle into the core's ``a_load`` port; the core's A
  lines must then be one beat wide (``sim.timing.a_line_bytes``: 16 bytes for N <= 16 and
  ``dram_bytes_per_cycle`` <= 16, which ``sim.perf`` then also moves per cycle).

Outputs: ``done`` (every queue finished, the core halted, the DMA idle, every posted SIGNAL
fired), ``cycles`` (cycles from reset to ``done``), ``error`` (the core's sticky error bits),
``fault`` (sticky, :data:`FAULTS`: something the Binary or the core did that the model refuses)
and the debug port: ``dbg_data`` = the ``dbg_bytes`` DRAM bytes at ``dbg_addr`` (combinational;
0 past the image).
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.core import Core
from hw.core.ports import ADDR_BITS
from hw.core.unit import field_slices
from hw.system.buffers import core_buffer_ports
from hw.params import check_int
from sim import golden
from sim.funcsim import CORE_UNITS, build_queues
from sim.isa import BUF_NAMES, BUFS, FORMATS, OPCODE_BITS, encode
from sim.timing import BEAT

__all__ = ["CoreSystem", "FAULTS", "gather_ports", "scatter_ports", "SystemError_", "run_system"]

#: bit -> meaning of the sticky ``fault`` output
FAULTS = ("gather from an unknown buffer",
          "scatter to an unknown buffer or past its end",
          "DMA access past the end of a buffer or of the DRAM image",
          "WAIT/SIGNAL on a semaphore id the Binary does not use",
          "unexpected instruction in a global DMA queue")

SEM_BITS = 16       # event counter width


class SystemError_(ValueError):
    """A Binary (or core) that :class:`CoreSystem` cannot model."""


def gather_ports(core) -> list:
    """``[(name, rows, elems)]`` of the gather read ports of ``core``'s signature."""
    return [(n, r, e) for n, r, e, _s in core_buffer_ports(core.signature)[0]]


def scatter_ports(core) -> list:
    """``[(name, elems)]`` of the scatter write ports of ``core``'s signature."""
    return [(n, e) for n, e, _s in core_buffer_ports(core.signature)[1]]


def _fields(word, op):
    """``{field: Value}`` of instruction word ``word`` decoded as opcode ``op`` (sim.isa)."""
    out = {}
    for name, (pos, bits, sgn) in field_slices(op).items():
        v = word[pos:pos + bits]
        out[name] = v.as_signed() if sgn else v
    return out


class _Rom:
    """An instruction queue: a ROM of 128-bit words and a program counter (Python helper)."""

    def __init__(self, m, name, words):
        self.n = len(words)
        self.pc = Signal(range(self.n + 1), name=f"{name}_pc")
        self.word = Signal(128, name=f"{name}_word")
        self.valid = Signal(name=f"{name}_valid")
        if self.n:
            mem = Memory(shape=unsigned(128), depth=self.n, init=words)
            m.submodules[f"{name}_rom"] = mem
            rp = mem.read_port(domain="comb")
            m.d.comb += [rp.addr.eq(self.pc), self.word.eq(rp.data),
                         self.valid.eq(self.pc < self.n)]
        self.done = Signal(name=f"{name}_done")
        m.d.comb += self.done.eq(self.pc == self.n)


class CoreSystem(wiring.Component):
    """One core, its DRAM, buffers, instruction queues, semaphores and DMA (see module doc).

    Parameters (keyword-only)
    -------------------------
    binary : sim.compile.Binary
        Compiled for ``L = 1``; its global HOST queue must be empty (HOST_LN is the host's).
    x : integer array
        The program input (checked against the input tensor, written into the DRAM image).
    dbg_bytes : int, 1..256
        Bytes returned per debug read.
    core : hw.core.Core or None
        The core to wrap (default ``Core.from_config(binary.cfg)``).

    Ports
    -----
    dbg_addr : In(32)          DRAM byte address of the debug read
    dbg_data : Out(8*dbg_bytes) DRAM bytes ``dbg_addr ..`` (byte 0 in bits 7:0), combinational
    done : Out(1)              everything finished (see module doc)
    cycles : Out(32)           cycles from reset until ``done`` (then frozen)
    error : Out(3)             the core's sticky error bits (mat, rmac, aux)
    fault : Out(len(FAULTS))   sticky model faults, bit i = FAULTS[i]
    """

    def __init__(self, *, binary, x, dbg_bytes: int = 64, core: Core | None = None):
        try:
            self._setup(binary, x, dbg_bytes, core)
        except Exception:
            self._MustUse__used = True      # a refused model is not an unused elaboratable
            raise
        super().__init__({"dbg_addr": In(32), "dbg_data": Out(8 * self.dbg_bytes),
                          "done": Out(1), "cycles": Out(32), "error": Out(3),
                          "fault": Out(len(FAULTS))})

    def _setup(self, binary, x, dbg_bytes, core):
        cfg = binary.cfg
        if cfg.L != 1:
            raise SystemError_(f"CoreSystem runs single-core Binaries (L = 1), got L={cfg.L}")
        self.dbg_bytes = check_int("dbg_bytes", dbg_bytes, 1, 256)
        self.cfg, self.binary = cfg, binary
        self.core = Core.from_config(cfg) if core is None else core
        if not isinstance(self.core, Core):
            raise TypeError(f"core must be a hw.core.Core, got {self.core!r}")
        xq = golden._check_input(binary.prog, x)
        self.dram_image = binary.dram.copy()
        binary.write_input(self.dram_image, xq)
        q = build_queues(binary)
        host = [i for i, _ in q[("global", "HOST")] if i.op not in ("HALT", "NOP")]
        if host:
            raise SystemError_(f"CoreSystem has no host CPU; the Binary's HOST queue holds {host[:3]}")
        self.queues = {k: [i for i, _ in v] for k, v in q.items()}
        sems = [i["sem"] for v in self.queues.values() for i in v if i.op in ("WAIT", "SIGNAL")]
        self.n_sems = max(sems) + 1 if sems else 1
        self.bufs = {}          # name -> (base, size) in the buffer memory
        base = 0
        for bid, name in sorted(BUF_NAMES.items()):
            size = getattr(cfg, f"buf_{name.lower()}_bytes")
            self.bufs[name] = (base, size)
            base += size
        self.buf_bytes = base
        self.gathers = gather_ports(self.core)
        self.scatters = scatter_ports(self.core)
        if not self.gathers or not self.scatters:
            raise SystemError_("the core has no gather or no scatter port: port contract changed?")
        self.units = [n[:-len("_instr")] for n in self.core.signature.members
                      if n.endswith("_instr")]
        for u in self.units:
            if u.upper() not in CORE_UNITS:
                raise SystemError_(f"core instruction port {u}_instr names no unit of {CORE_UNITS}")
        known = {n for n, *_ in self.gathers} | {n for n, _ in self.scatters}
        known |= {f"{u}_{p}" for u in self.units for p in ("instr", "wait", "signal")}
        known.add("a_load")
        a_loads = [i for i in self.queues[("global", "LD")]
                   if i.op == "LOAD" and BUF_NAMES.get(i["buf"]) == "A"]
        if any(i["core"] for i in a_loads):
            raise SystemError_("the Binary loads buffer A of a core other than 0")
        if a_loads and getattr(self.core, "a_line", BEAT) != BEAT:
            raise SystemError_(f"CoreSystem writes buffer A one {BEAT}-byte beat per cycle; this "
                               f"core's A lines are {self.core.a_line} bytes (sim.timing."
                               f"a_line_bytes: N = {cfg.N}, dram_bytes_per_cycle = "
                               f"{cfg.dram_bytes_per_cycle})")
        for name, mem in self.core.signature.members.items():
            drives_in = (mem.is_port and mem.flow == In) or (mem.is_signature and name not in known)
            if drives_in:
                raise SystemError_(f"CoreSystem does not know how to serve core port {name!r}")

    # -- helpers ------------------------------------------------------------------------------
    def _buf_select(self, m, bufid, name):
        """(base, size, known) of buffer id ``bufid`` (a Value) in the buffer memory. Written
        as multiplexers, not a comb ``Switch``: Icarus leaves the ``always @*`` block of a comb
        Switch X until its input first changes."""
        base = Signal(range(self.buf_bytes + 1), name=f"{name}_base")
        size = Signal(range(self.buf_bytes + 1), name=f"{name}_size")
        known = Signal(name=f"{name}_known")
        b_, s_, k_ = Const(0), Const(0), Const(0)
        for bid, bname in BUF_NAMES.items():
            b, s = self.bufs[bname]
            hit = bufid == bid
            b_, s_, k_ = Mux(hit, b, b_), Mux(hit, s, s_), Mux(hit, 1, k_)
        m.d.comb += [base.eq(b_), size.eq(s_), known.eq(k_)]
        return base, size, known

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        cfg = self.cfg
        fault = Signal(len(FAULTS))
        m.d.comb += self.fault.eq(fault)

        now = Signal(32)                      # free-running cycle counter
        m.d.sync += now.eq(now + 1)

        dram = Memory(shape=unsigned(8), depth=max(len(self.dram_image), 1),
                      init=[int(v) for v in self.dram_image])
        zero = self.buf_bytes       # a byte past the buffers that stays 0
        bufs = Memory(shape=unsigned(8), depth=self.buf_bytes + 1, init=[])
        m.submodules.dram = dram
        self._dram, self._bufs = dram, bufs      # for debugging benches
        m.submodules.bufs = bufs
        ndram = len(self.dram_image)

        # -- gather read ports ----------------------------------------------------------------
        first = Signal(init=1)
        m.d.sync += first.eq(0)
        for name, rows, elems in self.gathers:
            port = getattr(core, name)
            base, size, known = self._buf_select(m, port.buf, name)
            with m.If(port.en & ~known):
                m.d.sync += fault[0].eq(1)
            rowb = []
            for r in range(rows):
                s = Signal(ADDR_BITS, name=f"{name}_row{r}")
                m.d.comb += s.eq(port.addr + port.row_stride * r)
                rowb.append(s)
            eoff = []
            for e in range(elems):
                s = Signal(ADDR_BITS, name=f"{name}_eoff{e}")
                m.d.comb += s.eq(port.elem_stride * e)
                eoff.append(s)
            for r in range(rows):
                for e in range(elems):
                    # one synchronous read port per byte lane (Icarus re-evaluates every
                    # combinational memory read on every write to the memory: 5 cycles/s at
                    # N=M=T=S=8); outside the buffer the lane reads the zero byte past the
                    # buffers (never written). In the first cycle after power-up every lane
                    # reads the zero byte: the core multiplies lanes it masks, which must not
                    # be X on Icarus.
                    idx = Signal(ADDR_BITS, name=f"{name}_i{r}_{e}")
                    rp = bufs.read_port(domain="sync")
                    m.d.comb += [idx.eq(rowb[r] + eoff[e]), rp.en.eq(port.en | first),
                                 rp.addr.eq(Mux(first | ~(known & (idx < size)), zero,
                                                base + idx)),
                                 port.data[r][e].eq(rp.data)]

        # -- scatter write ports --------------------------------------------------------------
        for name, elems in self.scatters:
            port = getattr(core, name)
            base, size, known = self._buf_select(m, port.buf, name)
            for e in range(elems):
                at = Signal(ADDR_BITS + 8, name=f"{name}_at{e}")
                m.d.comb += at.eq(port.addr + port.elem_stride * e)
                act = port.en & port.mask[e]
                inr = known & (at + Mux(port.wide, 4, 1) <= size)
                with m.If(act & ~inr):
                    m.d.sync += fault[1].eq(1)
                word = port.data[e]
                for b in range(4):
                    wp = bufs.write_port()
                    m.d.comb += [wp.addr.eq(base + at + b), wp.data.eq(word[8 * b:8 * b + 8]),
                                 wp.en.eq(act & inr & (port.wide if b else 1))]

        # -- semaphore file -------------------------------------------------------------------
        cnt = [Signal(SEM_BITS, name=f"sem{i}") for i in range(self.n_sems)]
        cnt_arr = Array(cnt)
        self._sems = cnt                # for debugging benches
        signals = []            # (valid, sem, count) taken this cycle

        def wait_ready(valid, sem, count):
            ok = Signal()
            m.d.comb += ok.eq((sem < self.n_sems) & (cnt_arr[sem] >= count))
            with m.If(valid & (sem >= self.n_sems)):
                m.d.sync += fault[3].eq(1)
            return ok

        # -- core instruction queues, waits, signals ------------------------------------------
        for u in self.units:
            rom = _Rom(m, u, [encode(i) for i in self.queues[("core0", u.upper())]])
            ins = getattr(core, f"{u}_instr")
            m.d.comb += [ins.valid.eq(rom.valid), ins.payload.eq(rom.word)]
            with m.If(ins.valid & ins.ready):
                m.d.sync += rom.pc.eq(rom.pc + 1)
            w = getattr(core, f"{u}_wait")
            m.d.comb += w.ready.eq(wait_ready(w.valid, w.payload.sem, w.payload.count))
            s = getattr(core, f"{u}_signal")
            m.d.comb += s.ready.eq(1)
            signals.append((s.valid, s.payload.sem, s.payload.count))
            with m.If(s.valid & (s.payload.sem >= self.n_sems)):
                m.d.sync += fault[3].eq(1)

        # -- DMA: LD / ST front ends and one DRAM channel ---------------------------------------
        bpc = cfg.dram_bytes_per_cycle
        lanes = -(-bpc // BEAT)                 # beats the channel can move per cycle
        op_code = {n: FORMATS[n][0] for n in FORMATS}
        # channel state
        ch_busy, ch_owner = Signal(), Signal()  # owner 0 = LD (LOAD), 1 = ST (STORE)
        ch_base, ch_size = Signal(range(self.buf_bytes + 1)), Signal(range(self.buf_bytes + 1))
        ch_count, ch_len, ch_stride = Signal(16), Signal(20), Signal(28)
        ch_to_a = Signal()                      # the transfer fills the core's buffer A
        ch_c, ch_k = Signal(17), Signal(17)
        ch_db, ch_bb = Signal(48), Signal(40)
        credit = Signal(range(bpc + 2 * BEAT))
        finish = Signal()
        fe = []
        prio_st = Signal()
        for idx, unit in enumerate(("LD", "ST")):
            rom = _Rom(m, unit.lower(), [encode(i) for i in self.queues[("global", unit)]])
            op = rom.word[:OPCODE_BITS]
            xf = _fields(rom.word, "LOAD" if unit == "LD" else "STORE")
            wf, sf = _fields(rom.word, "WAIT"), _fields(rom.word, "SIGNAL")
            req, xfer = Signal(name=f"{unit}_req"), Signal(name=f"{unit}_xfer")
            drain_at = Signal(32, name=f"{unit}_drain_at")
            fifo = SyncFIFO(width=SEM_BITS + 12 + 32, depth=4)
            m.submodules[f"{unit.lower()}_sigq"] = fifo
            rdy = wait_ready(rom.valid & (op == op_code["WAIT"]), wf["sem"], wf["count"])
            xop = op_code["LOAD" if unit == "LD" else "STORE"]
            # decode (the comb outputs as expressions, see _buf_select)
            head_ok = rom.valid & ~xfer
            is_ = {n: head_ok & (op == op_code[n]) for n in ("WAIT", "SIGNAL", "NOP", "SETR",
                                                              "HALT")}
            is_x = head_ok & (op == xop)
            empty = (xf["count"] == 0) | (xf["length"] == 0)
            scount = Signal(12, name=f"{unit}_scount")     # SIGNAL's count field is narrower
            # a SIGNAL whose transfers have landed (and with none queued before it) fires at
            # once; otherwise it is queued with the cycle it may fire in
            direct = Signal(name=f"{unit}_sig_now")
            m.d.comb += [direct.eq(is_["SIGNAL"] & ~fifo.r_rdy & (drain_at <= now)),
                         scount.eq(sf["count"]), fifo.w_en.eq(is_["SIGNAL"] & ~direct),
                         fifo.w_data.eq(Cat(sf["sem"], scount, drain_at)),
                         req.eq(is_x & ~empty)]
            signals.append((direct, sf["sem"], scount))
            with m.If(direct & (sf["sem"] >= self.n_sems)):
                m.d.sync += fault[3].eq(1)
            with m.If((is_["WAIT"] & rdy) | (is_["SIGNAL"] & (direct | fifo.w_rdy)) | (is_x & empty)
                      | is_["NOP"] | is_["SETR"] | is_["HALT"]):
                m.d.sync += rom.pc.eq(rom.pc + 1)
            with m.If(head_ok & ~Cat(*is_.values(), is_x).any()):
                m.d.sync += fault[4].eq(1)
            with m.If(xfer & finish & (ch_owner == idx)):
                m.d.sync += [xfer.eq(0), rom.pc.eq(rom.pc + 1),
                             # sim.perf: the data are in place `latency` cycles after the
                             # transfer left the DRAM (cycle now + 1); a WAIT in that cycle
                             # passes, so the counter moves at the edge before it
                             drain_at.eq(now + cfg.dram_latency_cycles)]
            # posted signals fire in order once their time has come
            head = fifo.r_data
            hsem, hcnt, htime = head[:SEM_BITS], head[SEM_BITS:SEM_BITS + 12], head[SEM_BITS + 12:]
            fire = Signal(name=f"{unit}_fire")
            m.d.comb += [fire.eq(fifo.r_rdy & (now >= htime)), fifo.r_en.eq(fire)]
            signals.append((fire, hsem, hcnt))
            with m.If(fire & (hsem >= self.n_sems)):
                m.d.sync += fault[3].eq(1)
            fe.append(dict(rom=rom, req=req, xfer=xfer, xf=xf, fifo=fifo))
        # first-come first-served grant of the idle channel (LD first on a tie, as sim.perf)
        ld, st = fe
        with m.If(st["req"] & ~ld["req"]):
            m.d.sync += prio_st.eq(1)
        with m.Elif(~st["req"]):
            m.d.sync += prio_st.eq(0)
        grant_st = Signal()
        m.d.comb += grant_st.eq(st["req"] & (~ld["req"] | prio_st))
        f = {k: Mux(grant_st, st["xf"][k], ld["xf"][k]) for k in ld["xf"]}
        base, size, known = self._buf_select(m, f["buf"], "dma")
        with m.If(~ch_busy & (ld["req"] | st["req"])):
            with m.If(~known):
                m.d.sync += fault[2].eq(1)
            m.d.sync += [ch_busy.eq(known), ch_owner.eq(grant_st), ch_base.eq(base),
                         ch_size.eq(size), ch_count.eq(f["count"]), ch_len.eq(f["length"]),
                         ch_stride.eq(f["stride"]), ch_c.eq(0), ch_k.eq(0),
                         ch_db.eq(f["dram_addr"]), ch_bb.eq(f["buf_addr"]), credit.eq(0),
                         ch_to_a.eq(f["buf"] == BUFS["A"])]
            with m.If(grant_st):
                m.d.sync += st["xfer"].eq(1)
            with m.Else():
                m.d.sync += ld["xfer"].eq(1)
        # the channel: up to `lanes` beats per cycle, as the credit of bpc bytes/cycle allows
        bpch = Signal(17)
        m.d.comb += bpch.eq((ch_len + BEAT - 1) >> 4)
        cr = Signal(range(bpc + 2 * BEAT))
        m.d.comb += cr.eq(credit + bpc)
        pos = [(ch_c, ch_k, ch_db, ch_bb)]
        act = []
        for i in range(lanes):
            c, k, db, bb = pos[-1]
            a = Signal(name=f"beat{i}_act")
            m.d.comb += a.eq(ch_busy & (cr >= BEAT * (i + 1)) & (c < ch_count)
                             & ((i == 0) | ~ch_to_a))
            act.append(a)
            for j in range(BEAT):
                off = Signal(21, name=f"beat{i}_off{j}")
                m.d.comb += off.eq(Cat(Const(j, 4), k))
                valid = a & (off < ch_len)
                daddr = Signal(48, name=f"beat{i}_d{j}")
                boff = Signal(40, name=f"beat{i}_b{j}")
                m.d.comb += [daddr.eq(db + off), boff.eq(bb + off)]
                dok, bok = daddr < ndram, boff < ch_size
                with m.If(valid & ~(dok & bok)):
                    m.d.sync += fault[2].eq(1)
                ok = valid & dok & bok
                drp, dwp = dram.read_port(domain="comb"), dram.write_port()
                brp, bwp = bufs.read_port(domain="comb"), bufs.write_port()
                m.d.comb += [drp.addr.eq(daddr), brp.addr.eq(ch_base + boff),
                             bwp.addr.eq(ch_base + boff), bwp.data.eq(drp.data),
                             bwp.en.eq(ok & (ch_owner == 0) & ~ch_to_a),
                             dwp.addr.eq(daddr), dwp.data.eq(brp.data),
                             dwp.en.eq(ok & (ch_owner == 1))]
                if i == 0:      # buffer A: the beat goes into the core's a_load port
                    al = core.a_load
                    m.d.comb += [al.data[j].eq(drp.data), al.mask[j].eq(ok & ch_to_a)]
                    if j == 0:
                        m.d.comb += [al.en.eq(a & ch_to_a & (ch_owner == 0)), al.addr.eq(boff)]
            # next beat position: along the chunk, then the next chunk
            nc, nk = Signal(17, name=f"beat{i}_nc"), Signal(17, name=f"beat{i}_nk")
            ndb, nbb = Signal(48, name=f"beat{i}_ndb"), Signal(40, name=f"beat{i}_nbb")
            along = k + 1 < bpch
            m.d.comb += [nc.eq(Mux(along, c, c + 1)), nk.eq(Mux(along, k + 1, 0)),
                         ndb.eq(Mux(along, db, db + ch_stride)),
                         nbb.eq(Mux(along, bb, bb + ch_len))]
            pos.append((nc, nk, ndb, nbb))
        last = Signal()
        with m.If(ch_busy):
            for i in range(lanes):
                with m.If(act[i]):
                    m.d.sync += [ch_c.eq(pos[i + 1][0]), ch_k.eq(pos[i + 1][1]),
                                 ch_db.eq(pos[i + 1][2]), ch_bb.eq(pos[i + 1][3]),
                                 # into A one beat per cycle: no credit builds up
                                 credit.eq(Mux(ch_to_a & (cr >= 2 * BEAT), 0,
                                               cr - BEAT * (i + 1)))]
            with m.If(~act[0]):
                m.d.sync += credit.eq(cr)
            # the transfer ends in the cycle its last beat moves
            ends = [act[i] & ~(act[i + 1] if i + 1 < lanes else 0) & (pos[i + 1][0] >= ch_count)
                    for i in range(lanes)]
            m.d.comb += last.eq(Cat(*ends).any())
            with m.If(last):
                m.d.sync += ch_busy.eq(0)
        m.d.comb += finish.eq(last)

        # -- signals into the semaphore file ----------------------------------------------------
        for i, c in enumerate(cnt):
            inc = 0
            for v, s, n in signals:
                inc = inc + Mux(v & (s == i), n, 0)
            m.d.sync += c.eq(c + inc)

        # -- completion, cycle counter, debug port ----------------------------------------------
        all_done = core.done & ~ch_busy
        for f_ in fe:
            all_done = all_done & f_["rom"].done & ~f_["xfer"] & ~f_["fifo"].r_rdy
        m.d.comb += [self.done.eq(all_done), self.error.eq(core.error)]
        with m.If(~all_done):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        for i in range(self.dbg_bytes):
            rp = dram.read_port(domain="comb")
            a = Signal(33, name=f"dbg_a{i}")
            m.d.comb += [a.eq(self.dbg_addr + i), rp.addr.eq(a),
                         self.dbg_data[8 * i:8 * i + 8].eq(Mux(a < ndram, rp.data, 0))]
        return m


def run_system(prog, cfg, x, simulator: str, workdir, *, mode: str = "system",
               harness_cycles: int = 0, poll: int = 1000, timeout_s: float = 1800) -> dict:
    """Compile ``prog`` for ``cfg``, run it on CoreSystem (``mode="system"``) or on the core with
    the Python harness (``mode="harness"``, ``harness_cycles`` cycles) in ``simulator``; return
    the cocotb side's record plus ``perf_cycles`` (sim.perf, same Binary)."""
    import json
    import os

    from sim import compile as sc
    from sim import perf
    from tb.rtl import REPO_ROOT, run_cocotb

    binary = sc.compile(prog, cfg)
    bpath, xpath = os.path.join(workdir, "binary.npz"), os.path.join(workdir, "x.npy")
    binary.save(bpath)
    np.save(xpath, np.asarray(x))
    if mode == "system":
        comp, name = CoreSystem(binary=binary, x=x), "core_system"
    else:
        comp, name = Core.from_config(cfg), "core"
    run_cocotb(component=comp, name=name, test_module="tb.core.cocotb_system",
               simulator=simulator, timeout_s=timeout_s,
               params=dict(mode=mode, binary=bpath, input=xpath, poll=poll, dbg_bytes=64,
                           harness_cycles=harness_cycles, max_cycles=2_000_000))
    runs = sorted((REPO_ROOT / "build" / "rtl" / simulator).glob(
        f"{name}-*/run-{os.getpid()}/{mode}.json"), key=lambda f: f.stat().st_mtime)
    rec = json.loads(runs[-1].read_text())
    rec["perf_cycles"] = int(perf.simulate(binary).cycles)
    return rec
