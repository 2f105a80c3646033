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
part. The front is the shortest prefix whose cycles cover the tail's, so that frame k+1 has about as
much work to overlap as frame k's tail lasts (the pipeline measures them: ``sim.perf`` on the
Binary compiled without this pass, each layer's attributed cycles; a longer front only
squeezes more layers into its smaller regions). A boundary never splits what the emitters keep
on chip across layers: a fused chain, a tensor kept in a B slot until its last reader
(:mod:`sim.compile.fusion`, :mod:`sim.compile.attctx`), the front holds no fused chain whose
weights exceed its C slot (it ends before; the pipeline drops such a chain of the tail), and the tail never reads a tensor the
front writes (that would be a fence in reach: frame k+1's front overwriting what frame k's tail
still reads); the tail's start moves earlier, the front's end later (or, where nothing later
is left before the tail, earlier) until both hold.

At a phase change (:meth:`sim.compile.schedule.Scheduler.use_regions`) the deferred tile is
flushed and every slot of the new phase waits for every user of every slot of the old one
(conservative: the regions overlap differently); there are two such changes per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..intprogram import IntProgram
from .common import CompileError, shape3
from .fusion import chain_weight_bytes

__all__ = ["StreamPlan", "plan_stream", "FRONT", "TAIL", "BUFFERS"]

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
    (the middle uses whole buffers)."""
    front_end: int
    tail_start: int
    regions: dict

    def phase(self, i: int) -> str:
        """``"front"``, ``"middle"`` or ``"tail"`` of node index ``i``."""
        if i < self.front_end:
            return "front"
        return "tail" if i >= self.tail_start else "middle"


def _region(frac, size, align=64):
    lo = int(size * frac[0]) // align * align
    hi = int(size * frac[1]) // align * align
    return lo, hi


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
    """``[(first, last)]`` node index ranges a boundary must not split: fused chains and
    tensors kept on chip (from their producer to their last reader)."""
    pos = {n.name: i for i, n in enumerate(prog.nodes)}
    prod = _producers(prog)
    readers = {}
    for i, n in enumerate(prog.nodes):
        for t in _reads(n):
            readers.setdefault(t, []).append(i)
    out = [(pos[first], max(pos[m.name] for m in ch)) for first, ch in chains.items()]
    for t in keep:
        if t in prod and readers.get(t):
            out.append((prod[t], max(readers[t])))
    return out


def plan_stream(prog: IntProgram, cfg, chains: dict, keep: dict,
                cycles: list | None = None) -> StreamPlan:
    """The phases of ``prog`` (module doc) for ``cfg``, given the fusion plan (``chains``:
    first node -> chain; ``keep``: tensors kept in B slots, including the context modules')
    and the cycles of every node (``cycles``: the pipeline gives those ``sim.perf`` attributes
    to each layer of the Binary compiled without the pass; by default the per-layer bound of
    :func:`sim.bounds.bounds`, which underestimates the compute-bound front)."""
    nodes = prog.nodes
    n = len(nodes)
    fmap = [i for i, nd in enumerate(nodes)
            if nd.op != "concat" and shape3(prog.tensors[nd.output].shape)[1:] != (1, 1)]
    tail = (fmap[-1] + 1) if fmap else n
    if cycles is None:
        from ..bounds import bounds
        cycles = [lb.cycles for lb in bounds(prog, cfg).layers]
    cyc = list(cycles)
    need, front, acc = sum(cyc[tail:]), 0, 0.0
    while front < tail and acc < need:
        acc += cyc[front]
        front += 1
    spans = _spans(prog, chains, keep)
    prod = _producers(prog)

    def split(b):
        return any(a < b <= e for a, e in spans)
    while tail > 0 and split(tail):
        tail -= 1
    tail_reads = {t for nd in nodes[tail:] for t in _reads(nd)}

    sizes = {"B": cfg.buf_b_bytes, "C": cfg.buf_c_bytes, "OUT": cfg.buf_out_bytes}
    regions = {"front": {b: _region(FRONT[b], sizes[b]) for b in BUFFERS},
               "tail": {b: _region(TAIL[b], sizes[b]) for b in BUFFERS}}
    lo, hi = regions["front"]["C"]
    c_slot = (hi - lo) // 2 // 64 * 64
    pos = {nd.name: i for i, nd in enumerate(nodes)}
    # a fused chain whose weights do not fit the front's C slot stays out of the front (fused
    # in the middle rather than unfused in the front)
    big = min([pos[f] for f, ch in chains.items() if chain_weight_bytes(ch, cfg) > c_slot],
              default=n)

    def ok(f):          # the tail must not read what the front writes (a fence within reach)
        return 0 < f < tail and f <= big and not split(f) and not any(
            prod.get(t, n) < f for t in tail_reads)
    cands = [f for f in range(max(front, 1), tail) if ok(f)] or \
        [f for f in range(min(front, tail - 1), 0, -1) if ok(f)]
    if not cands:
        raise CompileError("stream: no front/tail split of this program: every cut splits a "
                           "fused chain or a kept tensor, holds a chain too big for the front's"
                           " C slot, or lets the tail read what the front writes")
    front = cands[0]
    return StreamPlan(front, tail, regions)
