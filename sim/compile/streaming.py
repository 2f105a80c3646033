"""Streaming pass (``compile(..., stream=True)``): buffer regions that let frame k+1's first
layers run beside frame k's last ones.

In streaming mode (:mod:`sim.stream`) a write of frame k+1 waits for every access of frame k
to an overlapping location (a *frame fence*). With the default allocation the stem's first
weight LOAD writes the C slot the head's last linear reads, and the stem's tiles land in the B
and OUT slots of the head's layers, so frame k+1 cannot start before frame k has finished,
whatever the dispatcher does. This pass splits the program in three *phases*:

* the **front**: the first layers, ``nodes[:front_end]``;
* the **tail**: the last layers, ``nodes[tail_start:]``;
* the **middle**: everything between, which uses the whole buffers as before;

and gives the front and the tail disjoint regions of the global buffers B, C and OUT
(:data:`FRONT` / :data:`TAIL`: fractions of each buffer, each region cut into the usual number
of slots). Frame k+1's front then has no fence against frame k's tail (DRAM needs nothing:
every tensor has its own DRAM block, :mod:`sim.compile.layout`, and the host LayerNorm reads
and writes only the tail's tensors). Its fences against frame k's middle remain: they end when
frame k enters its tail, which is where the overlap is wanted.

Where the boundaries go (:func:`plan_stream`): the tail starts after the last node whose output
is a feature map (H * W > 1): EfficientViT's pool, linears and LayerNorm, the weight-bound
part; or later, at the first node no chain or kept tensor crosses (B1-R224: the head conv's
output stays in B for the pool, so the pool joins the middle and the tail is the linears and
the LayerNorm; before, the tail moved *earlier* and took the whole of stage 3, one run of
kept tensors, into its 1/8 of B). The front is the shortest prefix whose cycles cover the
tail's, so that frame k+1 has about as much work to overlap as frame k's tail lasts (the
pipeline measures them: ``sim.perf`` on the Binary compiled without this pass, each layer's
attributed cycles; a longer front only squeezes more layers into its smaller regions), moved
later (or, where nothing later is left before the tail, earlier) to a cut that splits nothing
the emitters keep on chip across layers (a fused chain, a tensor kept in a B slot until its
last reader: :mod:`sim.compile.fusion`, :mod:`sim.compile.attctx`) and holds no fused chain
whose weights exceed the front's C slot. Where no boundary can avoid them, what crosses is
listed in ``StreamPlan.cut`` and the pipeline degrades it (the chain unfused, the tensor
through DRAM, a context module's tensors together; ``pipeline._stream_plan``, which also
drops a chain or kept tensor of the front or the tail that does not fit that phase's C or B
slot). Never relaxed: the tail reads no tensor the front writes (that would be a fence in
reach: frame k+1's front overwriting what frame k's tail still reads); without such a cut,
:class:`CompileError`.

With the weight prefetch (``prefetch=True``, the default where C exceeds its two slots) the
front keeps its two C slots and the middle and the tail share one
:class:`~sim.compile.prefetch.WeightArena` over the tail's C region (``StreamPlan.arena``):
the tail's first weight groups are reserved and loaded during the middle, as without
``stream``, and frame k+1's front, in its own part of C, still has no fence against them.

At a phase change (:meth:`sim.compile.schedule.Scheduler.use_regions`) the deferred tile is
flushed and every slot of the new phase waits for every user of every slot of the old one
(conservative: the regions overlap differently); there are two such changes per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..intprogram import IntProgram
from .common import CompileError, shape3
from .fusion import chain_weight_bytes

__all__ = ["StreamPlan", "plan_stream", "insert_fences", "insert_restores", "FRONT", "TAIL", "BUFFERS"]

BUFFERS = ("B", "C", "OUT")
#: the front's region of each global buffer, as (start, end) fractions of its size: B and OUT
#: hold the front's large row tiles, C only the stem's and first stages' small weights
FRONT = {"B": (0.0, 0.875), "C": (0.0, 0.25), "OUT": (0.0, 0.875)}
#: the tail's region: the head's linears stream their weights through C; their inputs and
#: outputs (vectors) need little of B and OUT
TAIL = {"B": (0.875, 1.0), "C": (0.25, 1.0), "OUT": (0.875, 1.0)}


@dataclass(frozen=True)
class StreamPlan:
    """Nodes ``[0, front_end)`` are the front, ``[tail_start, len(nodes))`` the tail;
    ``regions[phase][buffer] = (lo, hi)`` in bytes for ``phase`` in ``"front"``, ``"tail"``
    (the middle uses whole buffers); ``cut``: what the compiler must give up so that nothing
    kept on chip crosses a boundary, ``("chain", first node)`` (the chain is emitted unfused)
    and ``("keep", tensor)`` (the tensor goes through DRAM), empty when a cut was found that
    splits nothing."""
    front_end: int
    tail_start: int
    regions: dict
    cut: frozenset = frozenset()
    #: the middle and the tail share C's tail region, the weight prefetch arena's with
    #: ``prefetch`` (:meth:`sim.compile.schedule.Scheduler.use_regions`)
    arena: bool = False

    def phase(self, i: int) -> str:
        """``"front"``, ``"middle"`` or ``"tail"`` of node index ``i``."""
        if i < self.front_end:
            return "front"
        return "tail" if i >= self.tail_start else "middle"


def _region(frac, size, align=64):
    lo = int(size * frac[0]) // align * align
    hi = int(size * frac[1]) // align * align
    return lo, hi


def regions(cfg) -> dict:
    """``{"front": {buffer: (lo, hi)}, "tail": {...}}`` in bytes for ``cfg``: :data:`FRONT`
    and :data:`TAIL`, but the front's C region no larger than the two weight slots it is cut
    into (:func:`~sim.compile.tiling.c_slot_bytes`: on a C larger than them, e.g. the
    ``zcu102`` preset's 2 MiB, the rest would stay unused), the tail's starting where it
    ends."""
    from .tiling import c_slot_bytes
    sizes = {"B": cfg.buf_b_bytes, "C": cfg.buf_c_bytes, "OUT": cfg.buf_out_bytes}
    out = {"front": {b: _region(FRONT[b], sizes[b]) for b in BUFFERS},
           "tail": {b: _region(TAIL[b], sizes[b]) for b in BUFFERS}}
    lo, hi = out["front"]["C"]
    hi = min(hi, lo + c_slot_bytes(sizes["C"]) // 64 * 64)
    out["front"]["C"] = (lo, hi)
    out["tail"]["C"] = (hi, out["tail"]["C"][1])
    return out


def c_slot(region) -> int:
    """The size of each of the two weight slots of a buffer-C region ``(lo, hi)`` (as
    :meth:`sim.compile.schedule.Scheduler.use_regions` cuts it)."""
    from .tiling import c_slot_bytes
    lo, hi = region
    return c_slot_bytes(hi - lo) // 2 // 64 * 64


def _reads(n) -> list:
    """The tensors node ``n`` reads: its inputs and its epilogue's residual."""
    res = [n.epilogue.residual] if n.epilogue is not None and n.epilogue.residual else []
    return list(n.inputs) + res


def _producers(prog: IntProgram) -> dict:
    """tensor -> index of the first node writing it; a concat output is written by the
    producers of its inputs (they write slices of it in place, :mod:`sim.compile.layout`)."""
    prod = {}
    for i, n in enumerate(prog.nodes):
        if n.op == "concat":
            prod[n.output] = min([prod.get(t, i) for t in n.inputs], default=i)
        else:
            prod[n.output] = i
    return prod


def _spans(prog: IntProgram, chains: dict, keep: dict) -> list:
    """``[(first, last, what)]``: node index ranges a boundary must not split, fused chains
    (``what = ("chain", first node)``) and tensors kept on chip from their producer to their
    last reader (``("keep", tensor)``)."""
    pos = {n.name: i for i, n in enumerate(prog.nodes)}
    prod = _producers(prog)
    readers = {}
    for i, n in enumerate(prog.nodes):
        for t in _reads(n):
            readers.setdefault(t, []).append(i)
    out = [(pos[first], max(pos[m.name] for m in ch), ("chain", first))
           for first, ch in chains.items()]
    for t in keep:
        if t in prod and readers.get(t):
            out.append((prod[t], max(readers[t]), ("keep", t)))
    return out


def plan_stream(prog: IntProgram, cfg, chains: dict, keep: dict,
                cycles: list | None = None) -> StreamPlan:
    """The phases of ``prog`` (module doc) for ``cfg``, given the fusion plan (``chains``:
    first node -> chain; ``keep``: tensors kept in B slots, including the context modules')
    and the cycles of every node (``cycles``: the pipeline gives those ``sim.perf`` attributes
    to each layer of the Binary compiled without the pass; by default the per-layer bound of
    :func:`sim.bounds.bounds`, which underestimates the compute-bound front).

    The tail starts after the last node with a feature-map output, or later (never earlier:
    the tail is the weight-bound part, and EfficientViT's stage 3 is one run of chains and
    kept tensors) at the first node where no chain or kept tensor crosses; where every later
    cut crosses one, at that node with what crosses in ``cut``. The front: the first cut at or
    after the covering prefix (else before it) that crosses nothing and holds no chain too
    big for its C slot; else the same search ignoring those two conditions, with what crosses
    in ``cut`` (the pipeline drops a chain too big for its phase's C slot itself). Never
    relaxed: the tail reads no tensor the front writes; without such a cut
    :class:`CompileError`."""
    nodes = prog.nodes
    n = len(nodes)
    fmap = [i for i, nd in enumerate(nodes)
            if nd.op != "concat" and shape3(prog.tensors[nd.output].shape)[1:] != (1, 1)]
    tail = (fmap[-1] + 1) if fmap else n
    if cycles is None:
        from ..bounds import bounds
        cycles = [lb.cycles for lb in bounds(prog, cfg).layers]
    spans = _spans(prog, chains, keep)
    prod = _producers(prog)

    def crossing(b):
        return {w for a, e, w in spans if a < b <= e}
    cut = set()
    if tail < n:
        later = [t for t in range(tail, n) if not crossing(t)]
        if later:
            tail = later[0]
        else:
            cut |= crossing(tail)
    cyc = list(cycles)
    need, front, acc = sum(cyc[tail:]), 0, 0.0
    while front < tail and acc < need:
        acc += cyc[front]
        front += 1
    tail_reads = {t for nd in nodes[tail:] for t in _reads(nd)}

    regs = regions(cfg)
    slot = c_slot(regs["front"]["C"])
    pos = {nd.name: i for i, nd in enumerate(nodes)}
    # a fused chain whose weights do not fit the front's C slot stays out of the front (fused
    # in the middle rather than unfused in the front)
    big = min([pos[f] for f, ch in chains.items() if chain_weight_bytes(ch, cfg) > slot],
              default=n)

    def legal(f):       # the tail must not read what the front writes (a fence within reach)
        return 0 < f < tail and not any(prod.get(t, n) < f for t in tail_reads)

    def clean(f):
        return legal(f) and f <= big and not crossing(f)
    order = list(range(max(front, 1), tail)) + list(range(min(front, tail) - 1, 0, -1))
    cands = [f for f in order if clean(f)]
    if not cands:
        cands = [f for f in order if legal(f)]
        if cands:
            cut |= crossing(cands[0])
    if not cands:
        raise CompileError("stream: no front/tail split of this program: the tail reads "
                           "what every possible front writes")
    return StreamPlan(cands[0], tail, regs, frozenset(cut))


def _phase_of_tag(binary):
    """tag -> phase of a Binary compiled with stream=True (untagged, e.g. HALT: ``"middle"``)."""
    phases = {i: ly["phase"] for i, ly in enumerate(binary.layers) if "phase" in ly}
    return lambda tag: phases.get(tag, "middle")


def insert_fences(binary) -> dict:
    """Write the frame fences into ``binary`` (compiled with the phases of this pass), in
    place: every unit queue gets (``sim.isa.FRAME_FENCES``)

    * ``WAIT prev=1, sem=F_MID, count=Q`` before its first front instruction (when it has
      one): frame k+1's front starts once every queue of frame k has ended its middle;
    * ``WAIT prev=1, sem=F_END, count=Q`` before its first other instruction (middle, tail or
      the HALT): the rest starts once every queue of frame k has ended;
    * ``SIGNAL F_MID`` after its last front or middle instruction, and not before the
      second WAIT (so a frame's ``F_MID`` also says that every queue has passed both of its
      fences on the previous frame's counters: the hardware may reuse that bank from then on);
    * ``SIGNAL F_END`` just before its HALT;

    ``Q`` is the number of unit queues; ``F_MID`` and ``F_END`` are two new semaphore ids
    after the Binary's last one. These are the coarse fences of :func:`sim.stream.phase_fences`
    as instructions. In one frame (latency mode) the WAITs pass at once and each queue
    spends four instruction slots on them. Returns ``{"mid": F_MID, "end": F_END, "count": Q}``.
    """
    from ..funcsim import CORE_UNITS, GLOBAL_UNITS
    from ..isa import UNITS, Instr
    ph = _phase_of_tag(binary)
    sems = [i["sem"] for s in binary.streams.values() for i in s if i.op in ("SIGNAL", "WAIT")]
    mid = max(sems, default=-1) + 1
    end = mid + 1
    nq = len(GLOBAL_UNITS) + len(CORE_UNITS) * (len(binary.streams) - 1)
    for s in list(binary.streams):
        ins, tags = binary.streams[s], binary.tags[s]
        before = {}                      # stream position -> [(Instr, tag)] inserted before it
        after = {}                       # stream position -> [(Instr, tag)] inserted after it
        for u in (GLOBAL_UNITS if s == "global" else CORE_UNITS):
            code = UNITS[u]
            pos = [p for p, i in enumerate(ins) if i.unit == u]
            if not pos or ins[pos[-1]].op != "HALT":
                raise ValueError(f"insert_fences: queue {s}/{u} does not end with HALT")
            halt = pos[-1]
            body = pos[:-1]
            kinds = [ph(tags[p]) for p in body]
            front = [p for p, k in zip(body, kinds) if k == "front"]
            rest = [p for p, k in zip(body, kinds) if k != "front"] + [halt]
            nontail = [p for p, k in zip(body, kinds) if k != "tail"]
            if front:
                before.setdefault(front[0], []).append(
                    (Instr("WAIT", dict(unit=code, sem=mid, count=nq, prev=1)), tags[front[0]]))
            w_end = (Instr("WAIT", dict(unit=code, sem=end, count=nq, prev=1)), tags[rest[0]])
            before.setdefault(rest[0], []).append(w_end)
            s_mid = Instr("SIGNAL", dict(unit=code, sem=mid, count=1))
            if nontail and nontail[-1] > rest[0]:
                after.setdefault(nontail[-1], []).append((s_mid, tags[nontail[-1]]))
            else:                         # right after the second WAIT
                before[rest[0]].append((s_mid, tags[rest[0]]))
            before.setdefault(halt, []).append(
                (Instr("SIGNAL", dict(unit=code, sem=end, count=1)), tags[halt]))
        new_i, new_t = [], []
        for p, (i, t) in enumerate(zip(ins, tags)):
            for a, b in before.get(p, ()):
                new_i.append(a)
                new_t.append(b)
            new_i.append(i)
            new_t.append(t)
            for a, b in after.get(p, ()):
                new_i.append(a)
                new_t.append(b)
        binary.streams[s], binary.tags[s] = new_i, new_t
    return {"mid": mid, "end": end, "count": nq}


#: instructions that are not a unit's work: the rest (compute, LOAD, STORE, HOST_LN) read the
#: unit's layer registers, if it has any
_CONTROL = ("SIGNAL", "WAIT", "SETR", "NOP", "HALT")


def insert_restores(binary) -> int:
    """Make the register state of every unit safe where two frames can interleave (in place;
    returns the number of SETRs added).

    The dispatcher's two contexts share each unit's layer registers (no second register set;
    docs/system.md): a unit leaves one frame's queue for the other's only at a WAIT that
    blocks (or at the end of its frame). The emitter drops a SETR that would not change a
    register, so an instruction relies on registers set many instructions before it, possibly
    before such a WAIT. Frames interleave only where one frame's tail meets the next frame's
    front (the fences of :func:`insert_fences` keep every middle alone). So every front and
    tail instruction that is not control (``_CONTROL``) with a WAIT of its queue since the
    queue's previous such instruction, and the first of each queue's middle, is preceded by
    SETRs of every register its unit set in program order *before the last of those WAITs*:
    whatever another frame wrote while this one waited is overwritten, and no WAIT lies
    between these SETRs and the instruction. A queue whose front or tail has neither SETRs
    nor work needs none (the other frame's instructions on its unit leave the registers)."""
    from ..isa import UNITS, Instr
    ph = _phase_of_tag(binary)
    added = 0
    for s in list(binary.streams):
        ins, tags = binary.streams[s], binary.tags[s]
        state = {}                      # unit -> {reg: value}
        fresh = {}                      # unit -> regs SETR'd since its last WAIT
        waited = {}                     # unit -> a WAIT since its last work instruction
        seen_mid = set()                # units whose first middle instruction is placed
        # a queue whose front or tail has no SETR and no work cannot be clobbered: the other
        # frame's instructions on its unit are then control only
        busy = {}
        for i, t in zip(ins, tags):
            if i.op == "SETR" or i.op not in _CONTROL:
                busy.setdefault(i.unit, set()).add(ph(t))
        mixed = {u for u, p in busy.items() if {"front", "tail"} <= p}
        new_i, new_t = [], []
        for i, t in zip(ins, tags):
            u = i.unit
            if i.op == "SETR":
                state.setdefault(u, {})[i["reg"]] = i["value"]
                fresh.setdefault(u, set()).add(i["reg"])
            elif i.op == "WAIT":
                fresh[u] = set()
                waited[u] = True
            elif i.op not in _CONTROL:
                p = ph(t)
                first_mid = p == "middle" and u not in seen_mid
                if p == "middle":
                    seen_mid.add(u)
                if u in mixed and ((p != "middle" and waited.get(u)) or first_mid):
                    for reg, v in sorted(state.get(u, {}).items()):
                        if reg not in fresh.get(u, ()):
                            new_i.append(Instr("SETR", dict(unit=UNITS[u], reg=reg, value=v)))
                            new_t.append(t)
                            added += 1
                waited[u] = False
            new_i.append(i)
            new_t.append(t)
        binary.streams[s], binary.tags[s] = new_i, new_t
    return added
