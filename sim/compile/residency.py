"""Resident tensors: an output kept in a B slot for the next layer instead of a round trip
through DRAM (the tensors :func:`sim.compile.fusion.find_resident` chose). The producer takes a
slot (:meth:`Residency.take_slot`), the consumer pops it (:meth:`Residency.resident`); a
tensor that other layers also read is stored from B as well (:meth:`Residency.store`), and one
whose consumer cannot read it from B is spilled to DRAM (:meth:`Residency.spill`)."""

from __future__ import annotations

from .layout import TensorLayout
from .schedule import Scheduler

__all__ = ["Residency"]


class Residency:
    """``keep``: tensor -> also store it to DRAM (the plan; a producer that cannot keep its
    output drops it); ``resident``: tensor -> {slot, base, events, busy} of outputs now in a B
    slot (``events``: their writers' done events; ``busy``: what freed the slot before)."""

    def __init__(self, prog, sched: Scheduler, layout: TensorLayout, keep: dict):
        self.p, self.sched, self.layout = prog, sched, layout
        self.keep = keep
        self.resident = {}
        self.readers = {}     # tensor -> layers reading it from B (default 1; sim.compile.attctx)
        # resident outputs whose producer (a depthwise conv) writes them in row pieces, each
        # with its own event, for a 1x1 conv that reads them piece by piece (attctx.pipe)
        self.pipe = set()
        # resident outputs of a pointwise conv written in the row pieces of the depthwise
        # conv that reads them (attctx.pipe_qkv: ``qrows`` in the record)
        self.pipe_in = set()

    def take(self, name):
        """A consumer reads resident tensor ``name`` from its slot: its record, popped from
        :attr:`resident` by the last of its planned :attr:`readers` (until then the slot
        stays pinned through :meth:`release`)."""
        r = self.resident[name]
        r.setdefault("left", self.readers.get(name, 1))
        r["left"] -= 1
        if r["left"] <= 0:
            del self.resident[name]
        return r

    def take_slot(self):
        """A B slot for a resident output: ``(slot, events that free it)`` (the next slot). The
        slot is pinned (no tile takes it) until :meth:`release`: the producer's later tiles and
        the consumer's own output must not land on it."""
        B = self.sched.B
        rs = B.next()
        busy, B.busy[rs] = B.busy[rs], []
        B.pinned.add(rs)
        return rs, busy

    def release(self, r):
        """The consumer of resident tensor ``r`` (popped from :attr:`resident`) has emitted all
        its reads: its slot goes back to the rotation (free after the events in ``busy``), but
        not before the last of its readers (:meth:`take`)."""
        if r.get("left", 0) <= 0:
            self.sched.B.pinned.discard(r["slot"])

    def new(self):
        """Take a slot for a resident output: its record (before any writer)."""
        rs, rs_busy = self.take_slot()
        return dict(slot=rs, base=self.sched.B.base[rs], events=[], busy=rs_busy)

    def store(self, name, rout, c0, c1, done, nwriters):
        """A resident tensor that other layers read later is also stored (from B)."""
        sched = self.sched
        em = sched.em
        _, h, w = self.p.tensors[name].shape
        em.wait("global", "ST", done, nwriters)
        sched.dma_rows("STORE", "B", rout["base"] + c0 * h * w,
                       self.layout.addr(name) + c0 * h * w, c1 - c0, h * w, h * w)
        st = em.sem()
        em.signal("global", "ST", st)
        sched.sync.record_store(name, c0, c1, 0, h * w, st)
        sched.B.busy[rout["slot"]].append((st, 1))

    def spill(self, name):
        """A resident tensor whose consumer cannot read it from B: store it to DRAM."""
        r = self.resident.pop(name)
        r["left"] = 0
        sched = self.sched
        em = sched.em
        c, h, w = self.p.tensors[name].shape
        for sem, cnt in r["events"]:
            em.wait("global", "ST", sem, cnt)
        sched.dma_rows("STORE", "B", r["base"], self.layout.addr(name), c, h * w, h * w)
        st = em.sem()
        em.signal("global", "ST", st)
        sched.sync.record_store(name, 0, c, 0, h * w, st)
        B = sched.B
        B.busy[r["slot"]] = B.busy[r["slot"]] + r["busy"] + r["events"] + [(st, 1)]
        self.release(r)
