"""The semaphore file: the global event counters of ``sim.isa``'s SIGNAL / WAIT (docs/isa.md).

``SIGNAL unit, sem, count`` adds ``count`` to counter ``sem``; ``WAIT unit, sem, count`` blocks
its unit until counter ``sem >= count`` and does not consume it (``sim.funcsim``: a WAIT only
compares), so any number of units may wait for one event. Every unit of the accelerator (LD, ST,
HOST and the three units of each core) has a wait and a signal stream
(``hw.core.ports.SEM_LAYOUT``).

Structure (docs/system.md, "Semaphore file", has the choice and its cost)
-------------------------------------------------------------------------
* **Counters in one RAM** (``lib.memory.Memory``, ``count`` x 16 bits) with one write port and
  two synchronous read ports, one for the signals' read-modify-write, one for the waiters'
  look-ups (yosys replicates the RAM per read port: 4 RAMB18 at 2,048 ids, LUT RAM when
  small).
* **Signals** go through a round-robin arbiter, one per cycle: the granted port's ``ready`` is
  combinational from the ``valid``\\ s (an ungranted signaller is held, a stream stall). Cycle
  ``t`` (S0): grant, read the counter. Cycle ``t + 1`` (S1): add, write back, and *broadcast*
  ``{sem, new value}`` to every waiter. Back-to-back signals to one counter: the read in S0
  of the second does not see the first's write (same cycle), so S1 takes the value of the
  previous cycle's write when the ids match (a forwarding register). Counters saturate at
  ``0xFFFF`` (WAIT counts are at most 12 bits, so a saturated counter answers every WAIT as the
  unbounded counter of ``sim.isa`` would).
* **Waiters** are watch registers: a unit offering a WAIT requests a look-up (a second
  round-robin arbiter, one per cycle) of its counter; the answer (next cycle) sets the waiter's
  ``sat`` bit when ``counter >= count``; from the cycle its ``valid`` rises it also compares
  every broadcast ``{sem, new}`` with its own ``{sem, count}`` (the stream payload, stable
  while ``valid``) and sets ``sat`` on a match. ``ready`` is ``sat``, a register: no
  combinational path from the counters to the units. Counters never decrease, so a look-up
  that misses a concurrent write is completed by that write's broadcast.
* **Clearing**: a RAM cannot be reset in one cycle. After reset a sweep writes 0 to entry
  ``ptr`` in every cycle without a signal write (``count`` cycles in all); entries at or past
  ``ptr`` read as 0 for the waiters' look-ups, and a signal to an entry at or past ``ptr`` is
  held (not granted) until the sweep has passed it. The compiler numbers events in program
  order, so the sweep (one id per cycle) runs far ahead of the signals of a real run.

Frames (``banks=2``, streaming: ``sim.isa.wait_passes``, docs/system.md)
-----------------------------------------------------------------------
Each frame has its own counters. The ports then carry :data:`FRAME_SEM_LAYOUT`: ``frame`` is
the frame number modulo 4 whose counter a SIGNAL adds to or a WAIT compares (the unit's frame,
or the previous one for a WAIT with ``prev``), ``free`` a WAIT that passes whatever the
counters say (``prev`` in frame 0). Bit 0 of ``frame`` selects the **bank** (the RAM holds
``2 x count`` counters: two frames in flight), bit 1 is the **epoch** stored beside each
counter: an entry written by frame f - 2 (same bank, other epoch) reads as 0 for frame f, so a
bank needs no clearing between frames (the sweep clears both banks once after reset). A frame
reuses its bank only after the frame before it has passed its fences on it: what
``sim.compile.streaming.insert_fences`` guarantees (``sim.funcsim.run_frames`` checks it). A
``free`` WAIT is looked up like any other and answered as if sufficient (the same latency).
With ``banks=1`` the ports carry the same layout, ``frame`` is ignored (one frame at a time)
and ``free`` is honoured.

Latency (``sim.timing.AXI_SYSTEM``): a SIGNAL taken in cycle ``t`` (uncontended: the cycle it is
offered) answers waiters from cycle ``t + 2`` (:data:`SemaphoreFile.SIGNAL_LATENCY`); a WAIT
offered in cycle ``h`` on an already sufficient counter is taken in cycle ``h + 2``
(:data:`SemaphoreFile.WAIT_LATENCY`: look-up granted in ``h``, data and compare in ``h + 1``,
``ready`` from ``h + 2``); contention for either arbiter adds one cycle per port served first.

The compiler allocates one counter per event (``sim.compile``), so the file must have at least as
many counters as the Binary's largest semaphore id + 1; a WAIT or SIGNAL on an id past the file
sets ``fault`` (the register block reports it as error code 7) and is never answered (WAIT) or
dropped (SIGNAL, taken at once).
"""

from __future__ import annotations

from functools import reduce

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..params import check_int

__all__ = ["SemaphoreFile", "COUNTER_BITS", "FRAME_SEM_LAYOUT"]

COUNTER_BITS = 16       #: width of one event counter (saturating; WAIT counts are 12 bits)

#: the file's port payload: the core's ``SEM_LAYOUT`` ({sem, count}) and the frame it is for
#: (modulo 4: bank and epoch) and ``free`` (a WAIT that passes at once: ``prev`` in frame 0);
#: the accelerator adds the last two to the units' streams (``hw.system.contexts``)
FRAME_SEM_LAYOUT = data.StructLayout({"sem": unsigned(16), "count": unsigned(12),
                                      "frame": unsigned(2), "free": unsigned(1)})


def _round_robin(m: Module, req, take, name: str) -> Signal:
    """One-hot grant of the lowest requester after the last one served (wrapping to the lowest
    overall); the pointer moves only in a cycle with ``take`` (the grant was used)."""
    n = len(req)
    after = Signal(n, name=f"{name}_after")         # ports strictly after the last grant
    above = Signal(n, name=f"{name}_above")
    pick = Signal(n, name=f"{name}_pick")
    grant = Signal(n, name=f"{name}_grant")
    m.d.comb += [above.eq(req & after),
                 pick.eq(Mux(above.any(), above, req)),
                 grant.eq(pick & (~pick + 1)[:n])]  # lowest set bit
    with m.If(take):
        m.d.sync += after.eq(~(grant | (grant - 1)[:n]))
    return grant


def _select(grant, values):
    """AND-OR multiplexer: ``values[i]`` where the one-hot ``grant`` has bit ``i``."""
    return reduce(lambda a, b: a | b, [Mux(grant[i], v, 0) for i, v in enumerate(values)])


class SemaphoreFile(wiring.Component):
    """``count`` event counters shared by ``ports`` units (see the module doc for the design).

    Parameters (keyword-only): ``count`` (counters per bank, 1..65536: ids ``0 .. count-1``;
    default 2,048, the Accelerator's), ``ports`` (units, 1..256; default 51 = 3 + 3 L at the
    paper's L = 16), ``banks`` (1 or 2: frames in flight, module doc).

    Ports: ``wait[i]`` (In stream of :data:`FRAME_SEM_LAYOUT`: unit i's WAIT; ``ready``,
    registered, once counter ``sem`` of frame ``frame`` has reached ``count``, or ``free``),
    ``signal[i]`` (In stream: unit i's SIGNAL, adds ``count`` to counter ``sem`` of frame
    ``frame``; ``ready`` when the signal arbiter takes it, in the cycle it is offered unless
    other signals compete), ``fault`` (Out(1), sticky: an id past the file), ``fault_port``
    (Out(8): the unit of the first fault).
    """

    #: cycles from a SIGNAL taken in cycle t to a waiter's ready (t + 2)
    SIGNAL_LATENCY = 2
    #: cycles from a WAIT offered in cycle h on a sufficient counter to its ready (h + 2)
    WAIT_LATENCY = 2

    def __init__(self, *, count: int = 2048, ports: int = 51, banks: int = 1):
        self.count = check_int("count", count, 1, 1 << 16)
        self.ports = check_int("ports", ports, 1, 256)
        self.banks = check_int("banks", banks, 1, 2)
        super().__init__({
            "wait": In(stream.Signature(FRAME_SEM_LAYOUT)).array(ports),
            "signal": In(stream.Signature(FRAME_SEM_LAYOUT)).array(ports),
            "fault": Out(1),
            "fault_port": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        n, P, NB = self.count, self.ports, self.banks
        E = 1 if NB == 2 else 0         # the epoch bit stored beside each counter
        depth = NB * n
        AB = max(depth, 2).bit_length()
        m.submodules.mem = mem = Memory(shape=unsigned(COUNTER_BITS + E), depth=depth, init=[])
        wr = mem.write_port()
        rd_s = mem.read_port()          # signals' read-modify-write
        rd_w = mem.read_port()          # waiters' look-ups
        waits, signals = list(self.wait), list(self.signal)

        def where(p):
            """(RAM address, epoch) of a port's counter."""
            if NB == 1:
                return p.sem, Const(0, 1)
            return p.sem + Mux(p.frame[0], n, 0), p.frame[1]

        def value(word, epoch):
            """The counter in RAM word ``word`` as frame epoch ``epoch`` sees it."""
            if E == 0:
                return word
            return Mux(word[COUNTER_BITS] == epoch, word[:COUNTER_BITS], 0)

        # clearing sweep: entries below ptr hold their counters, the others are 0
        ptr = Signal(range(depth + 1))

        # -- faults: ids past the file ------------------------------------------------------------
        w_ok = [w.payload.sem < n for w in waits]
        s_ok = [s.payload.sem < n for s in signals]
        bad = [(w.valid & ~wo) | (s.valid & ~so)
               for w, s, wo, so in zip(waits, signals, w_ok, s_ok)]
        with m.If(Cat(*bad).any() & ~self.fault):
            m.d.sync += self.fault.eq(1)
            for i in reversed(range(P)):
                with m.If(bad[i]):
                    m.d.sync += self.fault_port.eq(i)

        # -- S0: the signal arbiter, the counter read ----------------------------------------------
        s_req = Signal(P)
        m.d.comb += s_req.eq(Cat(*[s.valid & so for s, so in zip(signals, s_ok)]))
        s_take = Signal()
        s_grant = _round_robin(m, s_req, s_take, "sig")
        g_addr = Signal(AB)
        g_epoch = Signal()
        g_count = Signal(12)
        s_where = [where(s.payload) for s in signals]
        m.d.comb += [g_addr.eq(_select(s_grant, [a for a, _ in s_where])),
                     g_epoch.eq(_select(s_grant, [e for _, e in s_where])),
                     g_count.eq(_select(s_grant, [s.payload.count for s in signals])),
                     # a granted signal to an entry the sweep has not cleared yet is held
                     s_take.eq(s_req.any() & (g_addr < ptr)),
                     rd_s.addr.eq(g_addr)]
        for i, (s, so) in enumerate(zip(signals, s_ok)):
            m.d.comb += s.ready.eq((s_grant[i] & s_take) | (s.valid & ~so))   # bad: dropped

        # -- S1: add, write back, broadcast --------------------------------------------------------
        p_valid = Signal()
        p_addr = Signal(AB)
        p_epoch = Signal()
        p_count = Signal(12)
        m.d.sync += [p_valid.eq(s_take), p_addr.eq(g_addr), p_epoch.eq(g_epoch),
                     p_count.eq(g_count)]
        last_valid = Signal()           # the write of the previous cycle (forwarding)
        last_addr = Signal(AB)
        last_word = Signal(COUNTER_BITS + E)
        old = Signal(COUNTER_BITS)
        total = Signal(COUNTER_BITS + 1)
        new = Signal(COUNTER_BITS)
        word = Mux(last_valid & (last_addr == p_addr), last_word, rd_s.data)
        m.d.comb += [old.eq(value(word, p_epoch)),
                     total.eq(old + p_count),
                     new.eq(Mux(total[COUNTER_BITS], (1 << COUNTER_BITS) - 1, total))]
        new_word = Cat(new, p_epoch) if E else new
        m.d.sync += [last_valid.eq(p_valid), last_addr.eq(p_addr), last_word.eq(new_word)]
        with m.If(p_valid):
            m.d.comb += [wr.addr.eq(p_addr), wr.data.eq(new_word), wr.en.eq(1)]
        with m.Elif(ptr < depth):
            m.d.comb += [wr.addr.eq(ptr), wr.data.eq(0), wr.en.eq(1)]
            m.d.sync += ptr.eq(ptr + 1)

        # -- waiters: look-up arbiter, watch registers ---------------------------------------------
        sat = Signal(P)                 # the waiter's counter has reached its count: ready
        looked = Signal(P)              # its look-up was granted
        w_req = Signal(P)
        m.d.comb += w_req.eq(Cat(*[w.valid & wo for w, wo in zip(waits, w_ok)]) & ~looked & ~sat)
        w_grant = _round_robin(m, w_req, w_req.any(), "look")
        w_where = [where(w.payload) for w in waits]
        l_addr = Signal(AB)
        m.d.comb += [l_addr.eq(_select(w_grant, [a for a, _ in w_where])),
                     rd_w.addr.eq(l_addr)]
        lk_who = Signal(P)              # the waiter whose look-up data arrive this cycle
        lk_count = Signal(12)
        lk_epoch = Signal()
        lk_free = Signal()
        lk_zero = Signal()              # its entry was not cleared yet when read: 0
        m.d.sync += [lk_who.eq(w_grant),
                     lk_count.eq(_select(w_grant, [w.payload.count for w in waits])),
                     lk_epoch.eq(_select(w_grant, [e for _, e in w_where])),
                     lk_free.eq(_select(w_grant, [w.payload.free for w in waits])),
                     lk_zero.eq(l_addr >= ptr)]
        hit = Signal()
        m.d.comb += hit.eq(lk_free | (Mux(lk_zero, 0, value(rd_w.data, lk_epoch)) >= lk_count))
        for i, w in enumerate(waits):
            a, e = w_where[i]
            seen = (lk_who[i] & hit) | (p_valid & (p_addr == a) & (p_epoch == e)
                                         & (new >= w.payload.count))
            done = w.valid & sat[i]
            m.d.comb += w.ready.eq(sat[i])
            m.d.sync += [sat[i].eq(w.valid & ~done & (sat[i] | seen)),
                         looked[i].eq(w.valid & ~done & (looked[i] | w_grant[i]))]
        return m
