"""Cross-layer weight prefetch: the next layer's first weight and parameter LOADs issued while
the current layer computes, into the part of buffer C that is free then.

``compile(..., prefetch=True)`` (``--prefetch``); by default on where buffer C is larger than
its two weight slots (``zcu102``: +1.0 to +7.7 % on B0/B1/B2-R224), off on ``paper``
(+0.1 to +2.5 %) for about 3-4x the compile time (docs/perf.md, "Buffer sizes of the ZCU102
build"; :func:`sim.compile.pipeline.default_prefetch`):

* :class:`WeightArena`, the allocation of buffer C. Without prefetch C is two fixed halves
  used in turn (:class:`~sim.compile.schedule.Slots`): a layer's first weight group goes into
  the half its predecessor's second-to-last group used and its LOAD waits until that group's
  users are done, even when the group is small and most of C is idle. The arena places each
  group (one :meth:`~sim.compile.schedule.Scheduler.load_weights`: a chunk of a conv's filters
  with their records, a fused chain's weights, an attention's records) anywhere in the whole
  buffer, at the offset whose previous occupants are freed first (their ``busy`` events have
  the smallest numbers, i.e. were emitted first): its LOADs wait for the ``busy`` events of
  every earlier group it overlaps (the allocation knows which bytes are live until which
  events) and never overlap the group loaded just before (whose users may not all be emitted
  yet: a fused chain's last tile is deferred). Groups are still at most half of C (the
  chunking is unchanged). Every group leaves room beside it for the next one, whose size the
  pipeline learns from a first emission (``sizes``); groups of more than a quarter of C go to
  either end of the buffer, smaller ones anywhere, so two large chunks of a layer alternate
  at the ends and the small groups of the next layers (a depthwise conv's weights, an
  attention's records) and often the next layer's first chunk fit in the middle.
* The reservation (issue #16): with buffer C larger than its two slots (a group is at most
  :data:`~sim.compile.tiling.WEIGHT_GROUP_MAX`), the bytes beyond them hold the first groups
  of the weight-bound head (:func:`reserve_groups`: the head's first linear on B1-R224), which
  nothing touches before, so their LOADs wait for nothing and may load during the
  compute-bound layers before the head. With a large C (2 MiB) not all of it pays: the
  pipeline times prefixes of the reservation and keeps the fastest
  (:data:`sim.compile.pipeline.RESERVE_TRIALS`).
* :func:`hoist_weight_loads`, a transformation of the assembled LD stream: each weight group
  (its WAITs, LOADs into C and SIGNAL) moves up the LD queue, past the
  activation loads of earlier layers, to just before an LD ``WAIT`` on which the LD unit sits
  idle in the cycle model (:func:`ld_idle`) at least as long as the group's transfer takes, so
  the transfer fills time in which the LD unit moves nothing. The group must still be after
  every LD instruction that its WAITs depend on: it goes only where what the LD unit knows
  already implies every SIGNAL its WAITs need (a happens-before analysis of the SIGNAL/WAIT
  graph with vector clocks, :func:`happens_before`), so it cannot deadlock and still waits for
  the previous users of its space; it never passes another weight group. Moving a group
  anywhere else costs time: an LD SIGNAL is posted (it fires when every earlier transfer of
  the unit has landed), so a group ahead of a tile's "loaded" SIGNAL delays that tile by its
  transfer time (measured: a rule by DRAM slack per layer was slower than not moving at all).

The consumers are unchanged: they WAIT for the group's SIGNAL, which moves with it.
"""

from __future__ import annotations

import math

from ..isa import BUFS
from .common import ALIGN, CompileError, align

__all__ = ["WeightArena", "hoist_weight_loads", "ld_idle", "happens_before", "weight_groups",
           "reserve_groups", "WEIGHT_BOUND"]

#: a weight group larger than this fraction of buffer C goes to one of its ends
BIG_GROUP = 1 / 4


class WeightArena:
    """Buffer C as one arena of ``total`` bytes for weight groups of at most ``slot`` bytes.

    The interface of :class:`~sim.compile.schedule.Slots` as the emitters use it: ``size``
    (the largest group: the chunking reads it), :meth:`next` (a new group handle), ``base``
    and ``busy`` indexed by handle (``busy[h]``: the events after which group ``h``'s bytes
    may be overwritten, filled by its emitter), and :meth:`acquire`, called by
    :meth:`~sim.compile.schedule.Scheduler.load_weights`, which places the group."""

    def __init__(self, total: int, slot: int, sizes=None, reserve=(), lo: int = 0):
        if 2 * slot > total:
            raise CompileError(f"weight arena: groups of {slot} bytes do not fit twice in "
                               f"buffer C ({total} bytes)")
        self.total = total
        self.lo = lo            #: the arena's first byte in buffer C (``base`` includes it)
        self.size = slot
        self.unit = math.gcd(slot, ALIGN)   #: placement granularity (divides the group limit)
        self.sizes = sizes      #: the size of every group in load order (None: unknown)
        #: groups (indices in load order) placed one after the other at the top of the arena,
        #: bytes no other group touches before them, so their LOADs wait for nothing
        self.reserve = frozenset(reserve)
        if self.reserve and sizes is None:
            raise CompileError("weight arena: a reservation needs the planned sizes")
        self.rsize = sum(max(align(sizes[i], self.unit), self.unit) for i in self.reserve)
        if self.rsize > total - 2 * slot:
            raise CompileError(f"weight arena: {self.rsize} reserved bytes leave less than two "
                               f"groups of {slot} bytes in buffer C ({total} bytes)")
        self._rnext = total - self.rsize    #: where the next reserved group goes
        self._rleft = len(self.reserve)     #: reserved groups not placed yet
        self.base = {}
        self.busy = {}
        self.pinned = set()
        self._n = 0
        self.live = []          #: [(start, end, handle)] of the bytes each earlier group holds
        self.last = None        #: the most recent group: never overlapped
        self.placed = []        #: (handle, start, end, [handles it waited for]) in load order

    def next(self):
        h = self._n
        self._n += 1
        self.busy[h] = []
        return h

    def _candidates(self, nbytes, after):
        """Offsets worth trying: both ends of the buffer (below the reserved top while
        reserved groups are still to come) and next to every live interval. The group loaded
        next (``after`` bytes) must fit beside this one (it never overlaps the group loaded just
        before it): with ``sizes`` unknown it may be half the buffer, so a group then stays
        inside one half."""
        top = self.total - self.rsize if self._rleft else self.total
        cs = {0, top - nbytes}
        for a, b, _ in self.live if nbytes <= BIG_GROUP * top else ():
            cs.add(align(b, self.unit))
            cs.add(a - nbytes)
        return sorted(c for c in cs if 0 <= c and c + nbytes <= top and c % self.unit == 0
                      and (c >= after or top - c - nbytes >= after))

    def acquire(self, h, nbytes):
        """Place group ``h`` of ``nbytes``; returns the events its LOADs wait for."""
        if nbytes > self.size:
            raise CompileError(f"weight group of {nbytes} bytes > the {self.size}-byte limit")
        u = self.unit
        nxt = len(self.placed) + 1
        if self.sizes is None:
            after = self.size
        else:
            if len(self.sizes) < nxt or self.sizes[nxt - 1] != nbytes:
                raise CompileError("weight arena: the groups differ from the planned sizes")
            after = align(self.sizes[nxt], u) if nxt < len(self.sizes) else 0
            if nxt in self.reserve:     # the next group goes to the reserved top
                after = 0
        nbytes = max(align(nbytes, u), u)
        best = None
        if nxt - 1 in self.reserve:
            c = self._rnext
            self._rnext += nbytes
            self._rleft -= 1
            cands = [c]
        else:
            cands = self._candidates(nbytes, after)
        for c in cands:
            hit = [x for x in self.live if x[0] < c + nbytes and c < x[1]]
            if any(x[2] == self.last for x in hit):
                continue
            ev = [e for x in hit for e in self.busy[x[2]]]
            key = (max((s for s, _ in ev), default=-1), len(ev), c)
            if best is None or key < best[0]:
                best = (key, c, hit, ev)
        if best is None:        # (cannot happen: a group is at most half of the arena)
            raise CompileError("weight arena: no space that the previous group leaves free")
        _, c, hit, ev = best
        end = c + nbytes
        keep = []
        for a, b, o in self.live:
            if a < end and c < b:
                if a < c:
                    keep.append((a, c, o))
                if end < b:
                    keep.append((end, b, o))
            else:
                keep.append((a, b, o))
        keep.append((c, end, h))
        self.live = sorted(keep)
        self.last = h
        self.base[h] = self.lo + c
        self.placed.append((h, c, end, sorted({x[2] for x in hit})))
        seen, waits = set(), []
        for e in ev:
            if e not in seen:
                seen.add(e)
                waits.append(e)
        self.busy[h] = []
        return waits


#: a layer is weight-bound when its weights take longer than this many times its compute to
#: load (the transfer at the config's DRAM rate against its MACs on every multiplier): the
#: head's linears on one pooled pixel (B1-R224: 38,952 cycles of weights for 1,200 of MACs)
WEIGHT_BOUND = 2


def reserve_groups(prog, cfg, sizes, layers, room: int) -> frozenset:
    """The weight groups (indices in load order) that :class:`WeightArena` places in its
    reserved top (``room`` bytes: buffer C beyond its two slots): consecutive groups from the
    first one of the weight-bound layer (:data:`WEIGHT_BOUND`; ``layers``: each group's node
    index, ``sizes`` its bytes) with the most weight bytes, as many of that layer and the
    weight-bound layers after it as fit. Nothing else uses those bytes before them, so their LOADs wait for nothing and
    :func:`hoist_weight_loads` may move them far up the LD queue (into the compute-bound
    layers before the head)."""
    from ..zoo import node_macs
    if room <= 0:
        return frozenset()
    per = {}
    for n, li in zip(sizes, layers):
        per[li] = per.get(li, 0) + n
    bound = {li for li, n in per.items() if li >= 0 and n / cfg.dram_bytes_per_cycle >
             WEIGHT_BOUND * node_macs(prog, prog.nodes[li]) / cfg.multipliers}
    if not bound:
        return frozenset()
    first = max(bound, key=lambda li: (per[li], li))
    out, used = [], 0
    for i, (n, li) in enumerate(zip(sizes, layers)):
        if li < first or (li not in bound and not out):
            continue
        if li not in bound:
            break
        n = max(align(n, ALIGN), ALIGN)
        if used + n > room:
            break
        out.append(i)
        used += n
    return frozenset(out)


# ---------------------------------------------------------------------------------------
# the LD-stream transformation


def weight_groups(instrs):
    """The weight groups of a global stream: ``[(first, last)]`` index ranges (inclusive) of
    the LD unit's ``WAIT* LOAD(C)+ SIGNAL`` runs, as
    :meth:`~sim.compile.schedule.Scheduler.load_weights` emits them."""
    out, i, n = [], 0, len(instrs)
    while i < n:
        ins = instrs[i]
        if ins.op == "LOAD" and ins.f["buf"] == BUFS["C"]:
            j = i
            while j > 0 and instrs[j - 1].op == "WAIT" and instrs[j - 1].unit == "LD":
                j -= 1
            k = i
            while instrs[k].op == "LOAD" and instrs[k].f["buf"] == BUFS["C"]:
                k += 1
            if instrs[k].op != "SIGNAL" or instrs[k].unit != "LD":
                raise CompileError(f"global stream: weight LOADs at {i} not closed by an LD "
                                   "SIGNAL")
            out.append((j, k))
            i = k + 1
        else:
            i += 1
    return out


def happens_before(streams):
    """Happens-before by vector clocks, from an untimed run of every unit's queue: a clock is a
    dict ``{(stream, unit): n}``, "the first n instructions of that unit have certainly executed"
    (a WAIT learns the clocks of its semaphore's SIGNALs only when it needs all of them,
    ``count`` = their total; otherwise nothing: a safe under-estimate). Returns ``(ld_clock,
    signals)``: the LD unit's clock at each of its instructions (by index in
    ``streams["global"]``, after a WAIT what it learned), and per semaphore the ``(unit,
    position in its queue)`` of every SIGNAL of it. Raises :class:`CompileError` on a
    deadlock."""
    from ..funcsim import CORE_UNITS, GLOBAL_UNITS
    queues = {}
    for s, ins in streams.items():
        for u in (GLOBAL_UNITS if s == "global" else CORE_UNITS):
            queues[(s, u)] = []
        for idx, i in enumerate(ins):
            queues[(s, i.unit)].append((idx, i))
    signals = {}                 # sem -> [(unit key, position)]
    total = {}
    for k, q in queues.items():
        for pos, (_, i) in enumerate(q):
            if i.op == "SIGNAL":
                signals.setdefault(i.f["sem"], []).append((k, pos))
                total[i.f["sem"]] = total.get(i.f["sem"], 0) + i.f.get("count", 1)
    pc = {k: 0 for k in queues}
    clock = {k: {} for k in queues}
    sem_clock = {}               # sem -> (count so far, joined clock of its signals)
    ld_key = ("global", "LD")
    ld_clock = {}
    progress = True
    while progress:
        progress = False
        for k, q in queues.items():
            while pc[k] < len(q):
                idx, i = q[pc[k]]
                if i.op == "WAIT":
                    cnt, vc = sem_clock.get(i.f["sem"], (0, {}))
                    if cnt < i.f["count"]:
                        break
                    if i.f["count"] >= total.get(i.f["sem"], 0):
                        c = clock[k]
                        for u, n in vc.items():
                            if c.get(u, 0) < n:
                                c[u] = n
                if k == ld_key:
                    ld_clock[idx] = dict(clock[k])
                if i.op == "SIGNAL":
                    cnt, vc = sem_clock.get(i.f["sem"], (0, {}))
                    vc = dict(vc)
                    for u, n in clock[k].items():
                        if vc.get(u, 0) < n:
                            vc[u] = n
                    vc[k] = max(vc.get(k, 0), pc[k] + 1)
                    sem_clock[i.f["sem"]] = (cnt + i.f.get("count", 1), vc)
                pc[k] += 1
                clock[k][k] = pc[k]
                progress = True
    stuck = [k for k, q in queues.items() if pc[k] < len(q)]
    if stuck:
        raise CompileError(f"the instruction streams deadlock (units {stuck[:3]} blocked)")
    return ld_clock, signals


def ld_idle(binary) -> dict:
    """Per LD ``WAIT`` of ``binary``'s global stream (by index): the cycles the LD unit sits
    blocked on it in the cycle model (:func:`sim.perf.simulate`, the accelerator's timing):
    from the cycle it is reached (the previous LD instruction issued) to the cycle it is
    consumed. Time in which a weight transfer issued just before the WAIT delays nothing."""
    from ..perf import simulate
    tr = []
    simulate(binary, trace=tr)
    return _ld_waits(binary, tr)[0]


def _ld_waits(binary, tr) -> tuple[dict, dict]:
    """``(idle, ends)`` of the LD ``WAIT``s of ``binary``'s global stream (by index) in the
    trace ``tr`` of :func:`sim.perf.simulate`: the cycles LD sits blocked on each (where it
    does, :func:`ld_idle`) and the cycle each is consumed."""
    g = binary.streams["global"]
    ld_idx = [i for i, ins in enumerate(g) if ins.unit == "LD"]
    times = [(e[4], e[5]) for e in tr if e[0] == "global" and e[1] == "LD"]
    idle = {i: times[p][0] - times[p - 1][1] for p, i in enumerate(ld_idx)
            if p > 0 and g[i].op == "WAIT" and times[p][0] > times[p - 1][1]}
    ends = {i: times[p][0] for p, i in enumerate(ld_idx) if g[i].op == "WAIT"}
    return idle, ends


def ld_times(binary) -> tuple[dict, dict, dict, int]:
    """From one timed run of ``binary`` (:func:`sim.perf.simulate`): ``(idle, fired, ends,
    cycles)``: :func:`ld_idle`'s gaps, the cycle each semaphore's last SIGNAL executed
    (``fired``), for each LD ``WAIT`` of the global stream (by index) the cycle it was
    consumed (``ends``), and the run's cycles (``simulate(binary).cycles``: the hoist's
    caller judges a pass by them without timing the Binary again)."""
    from ..funcsim import build_queues
    from ..perf import simulate
    tr = []
    cycles = simulate(binary, trace=tr).cycles
    queues = build_queues(binary)
    pos = {k: 0 for k in queues}
    fired = {}
    for st, u, op, _, t0, _t1 in (e[:6] for e in tr):
        ins, _ = queues[(st, u)][pos[(st, u)]]
        pos[(st, u)] += 1
        if op == "SIGNAL":
            fired[ins.f["sem"]] = max(fired.get(ins.f["sem"], 0), t0)
    idle, ends = _ld_waits(binary, tr)
    return idle, fired, ends, cycles


def hoist_weight_loads(streams, tags, idle: dict, rate: float, margin: int = 64,
                       reserved=(), fired=None, ends=None, floor: int = 0):
    """Move weight groups up the LD queue (``streams["global"]``) into gaps where the LD unit
    idles: just before the closest earlier LD ``WAIT`` that blocks the unit (``idle``: cycles,
    :func:`ld_idle`) at least as long as the group's transfer (``rate``: bytes per cycle) plus
    ``margin``, provided that what LD knows there already implies every SIGNAL the group's
    WAITs need (:func:`happens_before`). A group whose events LD does not know yet just above
    it may still go before the nearest LD ``WAIT`` above it when that WAIT implies them (it
    waits for something that happens after them, so no deadlock) and, with ``fired`` (the
    cycle each semaphore fired) and ``ends`` (the cycle each LD WAIT was consumed) of a timed
    run, :func:`ld_times`, the time from the group's last event to that WAIT's end holds its
    transfer: the second linear's groups load during the host's LayerNorm this way. Every
    group tries, in LD order; a group never passes the group before it, except the
    ``reserved`` ones (indices in :func:`weight_groups` order, :func:`reserve_groups`: they
    have no WAITs). A gap's time is spent once. No group moves before index ``floor`` of the
    global stream (``compile(..., stream=True)``: past the front's last LD instruction, so
    that the front's loads stay ahead of every frame fence of the rest). Returns the new
    global instructions and tags and the number of groups moved."""
    g, tg = streams["global"], tags["global"]
    groups = weight_groups(g)
    if not groups:
        return list(g), list(tg), 0
    ld_clock, signals = happens_before(streams)
    ld_idx = [i for i, ins in enumerate(g) if ins.unit == "LD"]
    ld_pos = {i: p for p, i in enumerate(ld_idx)}
    room = dict(idle)

    def implied(sem, clk):
        return all(clk.get(u, 0) > pos for u, pos in signals.get(sem, []))

    moves = {}                   # group start index -> (index it goes before, group end)
    used = {}                    # transfer cycles put before a WAIT by waiting groups
    prev_end = -1                # a group stands after this index (its predecessor's place)
    for gi, (j, k) in enumerate(groups):
        sems = [g[x].f["sem"] for x in range(j, k) if g[x].op == "WAIT"]
        if gi in reserved and sems:
            raise CompileError(f"weight group {gi} is reserved but waits for {len(sems)} "
                               "events")
        cost = sum(g[x].f["count"] * g[x].f["length"] for x in range(j, k)
                   if g[x].op == "LOAD") / rate + margin
        p = ld_pos[j]
        prev_moved = False
        # walk up the LD queue while the group may stand before ld_idx[p - 1] (what LD knows
        # after ld_idx[p - 2] implies the group's events); stop at the first WAIT with room
        lim = max(-1 if gi in reserved else prev_end, floor - 1)
        while p > 0 and ld_idx[p - 1] > lim:
            clk = ld_clock[ld_idx[p - 2]] if p >= 2 else {}
            tgt = ld_idx[p - 1]
            if not all(implied(s, clk) for s in sems):
                # not known before ``tgt``: the group may still wait just before the nearest
                # LD WAIT above if that WAIT implies its events (it waits for something that
                # happens after them: no deadlock), and only if, in the timed run, the time
                # from its last event to that WAIT's end holds the transfer
                q = p - 1
                while q > 0 and g[ld_idx[q]].op != "WAIT" and ld_idx[q - 1] > lim:
                    q -= 1
                w = ld_idx[q]
                if (fired is not None and g[w].op == "WAIT" and w in room
                        and all(implied(s, ld_clock[w]) for s in sems)):
                    slack = ends[w] - max(fired.get(s, 0) for s in sems) - used.get(w, 0)
                    if min(slack, room[w]) >= cost:
                        room[w] -= cost
                        used[w] = used.get(w, 0) + cost
                        moves[j] = (w, k)
                        prev_moved = True
                break
            p -= 1
            if room.get(tgt, 0) >= cost:
                room[tgt] -= cost
                moves[j] = (tgt, k)
                prev_moved = True
                break
        prev_end = moves[j][0] - 1 if prev_moved else k
    if not moves:
        return list(g), list(tg), 0
    ng, ntg = _rebuild(g, tg, moves)
    return ng, ntg, len(moves)


def _rebuild(g, tg, moves):
    """The global stream with each moved group (``moves``: start -> (target, end)) inserted
    before its target instruction."""
    before = {}
    skip = set()
    for j, (target, k) in moves.items():
        before.setdefault(target, []).extend(range(j, k + 1))
        skip.update(range(j, k + 1))
    ng, ntg = [], []
    for i in range(len(g)):
        for x in before.get(i, ()):
            ng.append(g[x])
            ntg.append(tg[x])
        if i not in skip:
            ng.append(g[i])
            ntg.append(tg[i])
    return ng, ntg
