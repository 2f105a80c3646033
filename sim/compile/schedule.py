"""Scheduling: the on-chip buffer slots, the synchronisation events that order the units, and
the DMA instructions that move tiles.

On chip the global buffers B (activations), C (weights + params) and OUT are each split in
slots used in turn (B three, C and OUT two): while the cores compute tile ``t`` out of one
slot, the LD unit fills the next with tile ``t+1`` and the ST unit drains the other OUT slot.
All dependencies are explicit SIGNAL/WAIT events: LD -> compute (tile loaded), compute -> ST
(tile computed), ST -> compute (OUT slot free again), compute -> LD (B/C slot free again),
ST -> LD (a DRAM region read by a later layer has been written: RAW through DRAM, tracked per
tensor, channel range and row range by :class:`DramSync`, so layer ``i+1`` starts as soon as
the rows it needs are stored, which pipelines consecutive layers).
"""

from __future__ import annotations

from ..isa import BUFS
from .common import DMA_MAX, CompileError
from .emitter import Emitter
from .layout import TensorLayout
from .tiling import c_slot_bytes

__all__ = ["B_SLOTS", "Slots", "DramSync", "Scheduler"]

B_SLOTS = 3              #: buffer B slots: LD of tile t+1 || first PW of t || DW+PW2 of t-1


class Slots:
    """Slots of one global buffer, handed out in turn by :meth:`next`; ``busy[i]`` lists the
    (sem, count) events that mean "slot i is free again". A ``pinned`` slot (a resident tensor
    in B, :mod:`sim.compile.residency`) is skipped until it is unpinned. The slots cover
    ``size`` bytes from ``lo``, each a multiple of ``align`` bytes."""

    def __init__(self, size, n=2, lo=0, align=1):
        self.size = size // n // align * align
        self.base = [lo + i * self.size for i in range(n)]
        self.busy = [[] for _ in range(n)]
        self.i = 0
        self.pinned = set()

    def next(self):
        for _ in self.base:
            i = self.i
            self.i = (i + 1) % len(self.base)
            if i not in self.pinned:
                return i
        raise CompileError(f"every one of the {len(self.base)} slots holds a resident tensor")

    def acquire(self, i, nbytes):
        """Slot ``i`` is about to be written (``nbytes`` from its base): the events to wait
        for first (its previous users'); the slot's ``busy`` list starts again empty."""
        busy, self.busy[i] = self.busy[i], []
        return busy


class DramSync:
    """Read-after-write through DRAM. ``stores``: base tensor -> [(c0, c1, r0, r1, sem)], the
    event each STORE signalled for a channel x row (flattened pixel) range. One emission may be
    *deferred* (:meth:`defer`: the second half of a fused tile, software-pipelined after the
    next tile's first half); a reader of rows it will write emits it first."""

    def __init__(self, em: Emitter, layout: TensorLayout):
        self.em, self.layout = em, layout
        self.stores = {}
        self.pending = None       # (emit callable, (base, c0, c1, r0, r1) it stores)

    def defer(self, emit, region):
        """Hold ``emit`` back until :meth:`flush` (``region``: what it stores)."""
        assert self.pending is None
        self.pending = (emit, region)

    def flush(self):
        """Emit the deferred work, if any."""
        if self.pending is not None:
            p, self.pending = self.pending, None
            p[0]()

    def wait_stored(self, tensor, c0, c1, r0, r1):
        """WAIT (on LD) for every STORE that wrote a part of ``tensor[c0:c1, r0:r1]``."""
        base, off = self.layout.base_of(tensor)
        if self.pending is not None:
            pb, pc0, pc1, pr0, pr1 = self.pending[1]
            if pb == base and pc0 < off + c1 and off + c0 < pc1 and pr0 < r1 and r0 < pr1:
                self.flush()      # we need rows the deferred tile has not even computed yet
        for (a0, a1, b0, b1, sem) in self.stores.get(base, []):
            if a0 < off + c1 and off + c0 < a1 and b0 < r1 and r0 < b1:
                self.em.wait("global", "LD", sem, 1)

    def stores_of(self, tensor):
        """Every store event recorded for the base tensor of ``tensor``."""
        return self.stores.get(self.layout.base_of(tensor)[0], [])

    def record_store(self, tensor, c0, c1, r0, r1, sem):
        """``sem`` signals that ``tensor[c0:c1, r0:r1]`` is in DRAM."""
        base, off = self.layout.base_of(tensor)
        self.stores.setdefault(base, []).append((off + c0, off + c1, r0, r1, sem))


class Scheduler:
    """The tile protocol every op emitter follows: take slots, load (waiting until the slot is
    free), compute, signal, store, and record when each slot is free again."""

    def __init__(self, em: Emitter, cfg, layout: TensorLayout, *, prefetch=False,
                 b_align: int = 1):
        from .prefetch import WeightArena
        self.em, self.cfg = em, cfg
        # b_align: the B slots' bases (the blocked layout: a multiple of the bank word, so
        # that a block of B channels is one aligned word, docs/global-buffers.md section 5)
        self.B = Slots(cfg.buf_b_bytes, B_SLOTS, align=b_align)
        self.C = Slots(c_slot_bytes(cfg.buf_c_bytes))
        self.group_sizes = []   #: bytes of every weight group, in load order
        self.group_layers = []  #: the node (index) of every weight group, in load order
        #: whether each weight group went to the arena's part of C (:meth:`use_regions`)
        self.group_arena = []
        self.phase = None       #: the stream phase being emitted (:meth:`use_regions`)
        self._arena_plan = None
        if prefetch:            # the whole of buffer C as one arena (sim.compile.prefetch)
            sizes, reserve = (None, ()) if prefetch is True else prefetch
            self._arena_plan = (None if sizes is None else list(sizes), reserve)
            self.C = WeightArena(cfg.buf_c_bytes, self.C.size, self._arena_plan[0],
                                 reserve=reserve)
        self.O = Slots(cfg.buf_out_bytes)
        self.sync = DramSync(em, layout)

    def use_regions(self, regions: dict, *, arena: bool = False):
        """Stream phases (:mod:`sim.compile.streaming`): from now on the slots of buffers B, C
        and OUT lie in ``regions[name] = (lo, hi)`` (bytes; ``None``: the whole buffer), cut
        into as many slots as before. Every new slot waits for every user of every old slot
        (the old and new slots overlap in ways not worth tracking; two changes per frame).
        ``arena``: C's region is the one the middle and the tail share with the weight
        prefetch (:mod:`sim.compile.prefetch`): with ``prefetch`` the :class:`WeightArena`
        over that region (made at its first use, kept across the middle and the tail; it is
        disjoint from the front's region, so it waits for nothing of the front), without it
        two slots as elsewhere. Call it between layers: no resident tensor may hold a B slot,
        nothing deferred."""
        from .prefetch import WeightArena
        from .streaming import c_slot
        if self.B.pinned:
            raise CompileError("stream: a phase change while a tensor is kept in a B slot")
        self.sync.flush()
        for attr, name, full in (("B", "B", self.cfg.buf_b_bytes),
                                 ("C", "C", self.cfg.buf_c_bytes),
                                 ("O", "OUT", self.cfg.buf_out_bytes)):
            old = getattr(self, attr)
            lo, hi = regions.get(name) or (0, full)
            if attr == "C" and arena and self._arena_plan is not None:
                if not (isinstance(old, WeightArena) and old.lo == lo
                        and old.total == hi - lo):
                    sizes, reserve = self._arena_plan
                    self.C = WeightArena(hi - lo, c_slot((lo, hi)), sizes, reserve=reserve,
                                         lo=lo)
                continue
            new = Slots(c_slot_bytes(hi - lo) if attr == "C" else hi - lo,
                        2 if isinstance(old, WeightArena) else len(old.base), lo, align=64)
            busy = []
            for b in (old.busy.values() if isinstance(old, WeightArena) else old.busy):
                busy += [e for e in b if e not in busy]
            new.busy = [list(busy) for _ in new.base]
            setattr(self, attr, new)

    def load_weights(self, slot_c, blocks):
        """LD the given (dram_addr, nbytes, buf_off) blocks into C slot; returns the ready sem."""
        em = self.em
        nbytes = max(off + n for _, n, off in blocks)
        self.group_sizes.append(nbytes)
        self.group_layers.append(em.layer)
        self.group_arena.append(self.phase != "front")
        for sem, cnt in self.C.acquire(slot_c, nbytes):
            em.wait("global", "LD", sem, cnt)
        base = self.C.base[slot_c]
        for dram, nbytes, off in blocks:
            for a in range(0, nbytes, DMA_MAX):
                ln = min(nbytes - a, DMA_MAX)
                em.emit("global", "LOAD", buf=BUFS["C"], dram_addr=dram + a,
                        buf_addr=base + off + a, count=1, length=ln, stride=0)
        sem = em.sem()
        em.signal("global", "LD", sem)
        return sem

    def dma_rows(self, op, buf, buf_addr, dram, count, length, stride):
        """LOAD/STORE ``count`` chunks of ``length`` bytes, DRAM stride ``stride``."""
        if count > 1 and stride == length:           # contiguous: one chunk
            count, length, stride = 1, count * length, 0
        if count == 1 and length >= 1 << 20:
            for a in range(0, length, DMA_MAX):
                ln = min(length - a, DMA_MAX)
                self.em.emit("global", op, buf=BUFS[buf], buf_addr=buf_addr + a,
                             dram_addr=dram + a, count=1, length=ln, stride=0)
            return
        for c0 in range(0, count, 65535):
            n = min(count - c0, 65535)
            self.em.emit("global", op, buf=BUFS[buf],
                         buf_addr=buf_addr + c0 * length, dram_addr=dram + c0 * stride,
                         count=n, length=length, stride=stride)

    def loaded(self):
        """SIGNAL a new event on LD after a tile's loads; returns it."""
        sem = self.em.sem()
        self.em.signal("global", "LD", sem)
        return sem

    def begin_tile(self, slot_b):
        """LD waits until B slot ``slot_b`` is free."""
        for sem, cnt in self.B.busy[slot_b]:
            self.em.wait("global", "LD", sem, cnt)
        self.B.busy[slot_b] = []

    def finish_tile(self, slot_b, slot_o, writers, store):
        """writers: list of (stream, unit) that SIGNAL done; store: callable emitting STOREs.
        Returns the (computed, stored) events."""
        em = self.em
        done = em.sem()
        for s, u in writers:
            em.signal(s, u, done)
        self.B.busy[slot_b].append((done, len(writers)))
        em.wait("global", "ST", done, len(writers))
        store()
        stored = em.sem()
        em.signal("global", "ST", stored)
        self.O.busy[slot_o] = [(stored, 1)]
        return done, stored

    def finish_resident(self, slot_b, writers):
        """Like :meth:`finish_tile` for a tile whose output stays in a B slot (no STORE)."""
        done = self.em.sem()
        for st, u in writers:
            self.em.signal(st, u, done)
        self.B.busy[slot_b].append((done, len(writers)))
        return done

    def finish_rows(self, *, sync, resid, name, rout, slot_b, slot_o, writers, obase, dram,
                    channels, row_bytes, plane_bytes, c0, c1, r0, r1, wo):
        """The end of a conv / depthwise tile: rows ``[r0, r1)`` (``wo`` pixels each) of channels
        ``[c0, c1)`` of tensor ``name``, written by ``writers``. Kept in B (``rout``, the
        resident output's record; ``resid`` keeps it past the layer when asked) or stored from
        OUT slot ``slot_o`` at ``obase`` to DRAM address ``dram()`` as ``channels`` runs of
        ``row_bytes`` bytes, ``plane_bytes`` apart. Returns ``(done event, writer count)``."""
        if rout is not None:
            done = self.finish_resident(slot_b, writers)
            rout["events"].append((done, len(writers)))
            if resid.keep.get(name):
                resid.store(name, rout, c0, c1, done, len(writers))
        else:
            done, stored = self.finish_tile(
                slot_b, slot_o, writers,
                lambda: self.dma_rows("STORE", "OUT", obase, dram(), channels, row_bytes,
                                      plane_bytes))
            sync.record_store(name, c0, c1, r0 * wo, r1 * wo, stored)
        return done, len(writers)

    def wait_out_slot(self, stream, unit, slot_o, seen):
        """``unit`` of ``stream`` waits (once per tile, ``seen``) until OUT slot is drained."""
        if (stream, unit) not in seen:
            seen.add((stream, unit))
            for sem, cnt in self.O.busy[slot_o]:
                self.em.wait(stream, unit, sem, cnt)
