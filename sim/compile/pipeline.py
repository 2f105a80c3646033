"""The pass pipeline: IntProgram + AccelConfig -> Binary.

1. layout (:mod:`.layout`): every tensor gets its DRAM place, concat inputs alias slices;
2. fusion (:mod:`.fusion`): fused chains and B-resident tensors (skipped with ``fuse=False``),
   and the attention context modules kept on chip (:mod:`.attctx`, ``attn_onchip``);
3. emission, node by node in program order (:mod:`.ops`), each emitter planning its tiles
   (:mod:`.tiling`) and scheduling them (:mod:`.schedule`, :mod:`.residency`; with
   ``prefetch`` buffer C is one arena, :class:`.prefetch.WeightArena`, and the emission runs
   twice, the first time only to learn the weight groups' sizes);
4. assembly (:mod:`.assemble`): HALTs and the DRAM image;
(3'') with ``stream``: the program cut in front, middle and tail, the front's and the tail's
   buffer slots in disjoint regions (:mod:`.streaming`), and after assembly the frame
   fences written into every unit queue (:func:`.streaming.insert_fences`) and the register
   restores where two frames' queues may interleave (:func:`.streaming.insert_restores`),
   with ``prefetch`` after the LD hoist (5), which then keeps below the front's loads;
5. with ``prefetch``: weight groups moved up the LD queue into time the LD unit idles in the
   cycle model (:func:`.prefetch.ld_times`, :func:`.prefetch.hoist_weight_loads`); C beyond its
   two slots reserved for the head's first groups (:func:`.prefetch.reserve_groups`), as many
   of them as the cycle model finds fastest (:data:`RESERVE_TRIALS`).

Before all of them, with ``stem="im2col"`` (or ``"auto"``, the default, when the cycle model
finds it faster: :func:`.stem.choose_stem`), the dense stem pass (:mod:`.stem`): a generic
conv stem on the input becomes a pointwise conv over the unfolded input the host writes; after
assembly the Binary gets the original program back and its input symbol the ``im2col``
layout.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..config import AccelConfig
from ..intprogram import IntProgram, IntProgramError, Node
from .assemble import assemble
from .attctx import plan_context_modules
from .binary import Binary
from .common import CompileError
from .context import Context
from .emitter import Emitter
from .fusion import chain_weight_bytes, find_chains, find_resident
from .layout import LAYOUTS, DramImage, activation_block, layout_tensors
from ..isa import att_kv_fits, block_unit_ok
from .common import shape3
from .ops.attention import emit_attention
from .ops.chain import emit_chain
from .ops.conv import emit_conv
from .ops.depthwise import emit_depthwise
from .ops.host import emit_layernorm
from .ops.pool import emit_pool
from .prefetch import hoist_weight_loads, ld_times, reserve_groups
from .residency import Residency
from .schedule import B_SLOTS, Scheduler, Slots
from .stem import STEMS, choose_stem, restore_program, unfold_stem
from .tiling import c_slot_bytes
from .streaming import StreamPlan, insert_fences, insert_restores, plan_stream

__all__ = ["compile", "new_context", "emitter_for", "default_prefetch"]


def new_context(prog: IntProgram, cfg: AccelConfig, *, prefetch=False, block: int = 0
                ) -> Context:
    """A compilation of ``prog`` (validated) for ``cfg`` after the layout pass: every tensor
    placed in DRAM, nothing emitted, no tensor kept on chip (``prefetch``: buffer C is a
    :class:`~sim.compile.prefetch.WeightArena`, otherwise two halves; ``True`` or ``(sizes,
    reserve)``: the weight groups' sizes in load order, ``Scheduler.group_sizes`` of an
    earlier emission, and the groups that go to the arena's reserved top,
    :func:`~sim.compile.prefetch.reserve_groups`).
    A malformed program raises :class:`~sim.intprogram.IntProgramError`; a valid one that
    ``cfg``'s engines cannot run (``validate(cfg)``, e.g. a depthwise kernel with
    ``k*k < N + 1``) :class:`CompileError`. ``block``: log2 B of the blocked layout (0:
    planar)."""
    prog = prog.validate()
    try:
        prog.validate(cfg)
    except IntProgramError as e:
        raise CompileError(str(e)) from None
    em = Emitter(cfg)
    image = DramImage()
    layout = layout_tensors(prog, image, block=1 << block)
    sched = Scheduler(em, cfg, layout, prefetch=prefetch,
                      b_align=BLOCK_SLOT_ALIGN if block else 1)
    return Context(prog, cfg, em, image, layout, sched, Residency(prog, sched, layout, {}),
                   block=block)


def _npix(prog, t) -> int:
    _, h, w = shape3(prog.tensors[t].shape)
    return h * w


#: the alignment of the B slots of a blocked compile (bytes): the bank word of
#: hw.system.wordbanked at any block up to 64 (docs/global-buffers.md section 5)
BLOCK_SLOT_ALIGN = 64

#: the IntProgram ops ``layout="blocked"`` compiles (every op the zoo's networks use)
BLOCKED_OPS = ("conv", "linear", "concat", "global_avgpool", "linear_attention", "layernorm")


def check_blocked(prog: IntProgram, cfg: AccelConfig) -> int:
    """log2 B of ``cfg``'s blocked layout (:func:`~sim.compile.layout.activation_block`), or a
    :class:`CompileError` naming what ``layout="blocked"`` does not support: every tensor of
    more than one pixel but the network input must have channels in multiples of B and 8 bits
    (the input, e.g. the stem's 3 channels, is padded to whole blocks and read by dense convs
    only), a grouped conv's groups whole blocks (it is emitted group by group), an
    attention's head dimension a multiple of B, and every concat input at a channel offset
    that is a multiple of B (checked by :func:`~sim.compile.layout.layout_tensors`)."""
    B = activation_block(cfg)
    b = B.bit_length() - 1
    ops = ("CONV_MAT", "CONV_RDF", "DW_RSA", "POOL", "ATT_KSUM", "ATT_DIV", "ATT_OUT",
           "ATT_KV_MAT" if not att_kv_fits(cfg.S, cfg.requant_lanes("RMAC")) else "ATT_KV_RDF")
    bad = [op for op in ops if not block_unit_ok(b, op, cfg)]
    if bad:
        raise CompileError(f"layout='blocked': B = {B} is not a multiple of the engines' "
                           f"widths (T, S, N, M = {cfg.T}, {cfg.S}, {cfg.N}, {cfg.M}) for "
                           f"{', '.join(bad)}")
    for n in prog.nodes:
        multi = n.inputs and _npix(prog, n.inputs[0]) > 1
        if n.op == "conv" and n.kind != "depthwise" and int(n.attrs.get("groups", 1)) != 1 \
                and multi:
            g = int(n.attrs["groups"])
            cin, cout = shape3(prog.tensors[n.inputs[0]].shape)[0], \
                shape3(prog.tensors[n.output].shape)[0]
            if (cin // g) % B or (cout // g) % B:
                raise CompileError(f"layout='blocked': the grouped conv {n.name!r} needs "
                                   f"groups of whole blocks of B = {B} channels")
        if n.op == "linear_attention" and int(n.attrs["dim"]) % B:
            raise CompileError(f"layout='blocked': attention {n.name!r} needs a head "
                               f"dimension that is a multiple of B = {B}")
        if n.op not in BLOCKED_OPS:
            raise CompileError(f"layout='blocked' does not support node {n.name!r} ({n.op})")
    for n in prog.nodes:
        for t in n.inputs:
            if t in prog.inputs and _npix(prog, t) > 1 and shape3(prog.tensors[t].shape)[0] % B \
                    and not (n.op == "conv" and n.kind != "depthwise"
                             and int(n.attrs.get("groups", 1)) == 1):
                raise CompileError(f"layout='blocked': the network input {t!r} of "
                                   f"{shape3(prog.tensors[t].shape)[0]} channels (not whole "
                                   f"blocks) may feed dense convs only, not {n.name!r}")
    for name, t in prog.tensors.items():
        if _npix(prog, name) > 1 and (t.bits != 8 or (name not in prog.inputs
                                                      and shape3(t.shape)[0] % B)):
            raise CompileError(f"layout='blocked': tensor {name!r} {tuple(t.shape)} needs "
                               f"channels in multiples of B = {B} and 8 bits")
    return b


def emitter_for(n: Node):
    """The emission function of node ``n`` (``None``: nothing to emit, a concat)."""
    if n.op == "conv" and n.kind == "depthwise":
        return emit_depthwise
    if n.op in ("conv", "linear"):
        return emit_conv
    if n.op == "concat":
        return None
    try:
        return {"linear_attention": emit_attention, "global_avgpool": emit_pool,
                "layernorm": emit_layernorm}[n.op]
    except KeyError:
        raise CompileError(f"node {n.name!r}: op {n.op!r} has no mapping") from None


def emit_program(ctx: Context, chains: dict, stream: StreamPlan | None = None):
    """Emit every node in program order; a fused chain is emitted at its first node and its
    other nodes are recorded as ``fused_into`` it. With a ``stream`` plan the buffer slots
    change at its phase boundaries (:mod:`sim.compile.streaming`)."""
    fused_into = {}
    phase = None
    for li, n in enumerate(ctx.prog.nodes):
        ctx.em.layer = li
        if stream is not None and stream.phase(li) != phase:
            phase = stream.phase(li)
            ctx.sched.use_regions(stream.regions.get(phase, {}),
                                  arena=stream.arena and phase != "front")
            ctx.sched.phase = phase
            ctx.em.layer = li
        info = dict(name=n.name, kind=n.kind, op=n.op, tiles=0)
        ctx.layers.append(info)
        info["on_chip"] = n.output in ctx.onchip
        if stream is not None:
            info["phase"] = phase
        if n.name in fused_into:
            info["fused_into"] = fused_into[n.name]
            continue
        if n.name not in chains and n.op != "concat":
            ctx.sched.sync.flush()
            ctx.em.layer = li          # (the flushed tile tagged its own layers)
        if n.name in chains:
            chain = chains[n.name]
            for m in chain[1:]:
                fused_into[m.name] = n.name
            ctx.onchip.update(m.output for m in chain[:-1])
            info["on_chip"] = True
            emit_chain(ctx, chain, li, info)
            continue
        emit = emitter_for(n)
        if ctx.block and n.op in ("conv", "linear") and _npix(ctx.prog, n.inputs[0]) == 1:
            # one pixel: planar addresses = blocked ones (the emitter leaves BLOCK alone)
            for st in ctx.em.names[1:]:
                for unit in ("MAT", "RMAC"):
                    ctx.em.setr(st, unit, BLOCK=0)
        if emit is not None:
            emit(ctx, n, info)
    ctx.sched.sync.flush()
    for name in list(ctx.res.resident):     # (never happens: every kept tensor is consumed)
        ctx.res.spill(name)


def compile(prog: IntProgram, cfg: AccelConfig, *, fuse: bool = True,
            attn_onchip: bool = True, prefetch: bool | None = None, stream: bool = False,
            layout: str = "planar", stem: str = "auto") -> Binary:
    """Compile ``prog`` for ``cfg``; raises :class:`CompileError` if it cannot be mapped.
    ``fuse=False`` disables the inter-layer fusion (every tensor goes through DRAM);
    ``attn_onchip=False`` keeps the attention context modules' activations going through
    DRAM as before :mod:`.attctx` (for an A/B comparison; implied by ``fuse=False``).
    ``prefetch=True`` turns on the cross-layer weight prefetch (:mod:`sim.compile.prefetch`):
    buffer C as one arena where each weight group goes into the space freed first (the head's
    first groups into C beyond its two slots), and weight groups moved up the LD queue into
    time the LD unit would idle, so that they load while earlier layers compute (docs/perf.md,
    "Cross-layer weight prefetch"); ``None`` (the default): :func:`default_prefetch`.
    ``stream=True`` gives the first and the last layers disjoint regions of buffers B, C and
    OUT (:mod:`sim.compile.streaming`), so that in streaming mode frame k+1's first layers
    have no frame fence against frame k's last ones (with ``prefetch`` the middle and the tail
    share the weight arena in C beyond the front's two slots), and
    writes the coarse frame fences into every unit queue (:func:`.streaming.insert_fences`:
    WAITs on the previous frame's semaphores, so the Binary runs frames back to back on
    ``sim.funcsim.run_frames``, ``sim.perf`` and the RTL's two contexts).
    ``layout="blocked"`` lays every activation of more than one pixel out channel-blocked
    (``sim.compile.layout``, the units' ``BLOCK`` register; docs/global-buffers.md section 5)
    with the same emitters, fusion, residency, attention context modules, cross-layer weight
    prefetch (the default where C exceeds its two slots, :func:`default_prefetch`) and dense
    stem as planar (what it needs of the program: :func:`check_blocked`), with or without
    ``stream``; the network input is then blocked too, its channels padded to whole blocks
    (the unfolded input of ``stem="im2col"``: ``C*k*k`` = 27 channels in 32 at B = 8).
    ``stem="im2col"``: a program whose first node is a generic conv on
    the input with few ``C*k*k`` (:func:`.stem.stem_node`) runs it as a pointwise conv over
    the input unfolded by the host (:mod:`.stem`, the ``im2col`` input layout; a program
    without such a stem compiles as with ``"taps"``); ``stem="taps"``: the generic conv path,
    ``k*k`` steps per output pixel; ``stem="auto"`` (the default): whichever of the two the
    cycle model finds faster for the stem layer alone (:func:`.stem.choose_stem`; recorded in
    the first layer's ``stem`` entry of ``Binary.layers``; docs/compiler.md "Dense stem")."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    if prefetch not in (False, True, None):
        raise ValueError(f"prefetch must be True, False or None, got {prefetch!r}")
    if prefetch is None:
        prefetch = default_prefetch(cfg, stream=stream, layout=layout)
    if stream not in (False, True):
        raise ValueError(f"stream must be True or False, got {stream!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    block = 0
    prog, probe = prog.validate(), None
    if layout == "blocked":
        block = check_blocked(prog, cfg)
    if stem == "auto":
        stem, probe = choose_stem(prog, cfg, layout=layout)
    unfolded = unfold_stem(prog) if stem == "im2col" else None
    if unfolded is None:
        binary = _compile_one(prog, cfg, fuse, attn_onchip, prefetch, stream, block)
    else:
        binary = restore_program(_compile_one(unfolded[0], cfg, fuse, attn_onchip,
                                              prefetch, stream, block), prog, unfolded[1])
    if probe:
        binary.layers[0]["stem_probe_cycles"] = probe
    if unfolded is None and probe:
        binary.layers[0]["stem"] = "taps"
    return binary


def _compile_one(prog, cfg, fuse, attn_onchip, prefetch, stream, block) -> Binary:
    """:func:`compile` of ``prog`` once its stem is chosen (``block``: log2 B of the blocked
    layout, 0 planar)."""
    cycles = None
    if stream:      # the phases are cut by the cycles of each layer without them
        from ..perf import simulate
        cycles = [lp.cycles for lp in simulate(
            assemble(_emitted(prog, cfg, fuse, attn_onchip, False, block=block))).layers]
    # with the prefetch the middle and the tail share the arena's part of C (the front's two
    # slots apart): this first emission cuts the middle's C slots from the same region, so
    # that its weight groups are the arena emission's
    ctx = _emitted(prog, cfg, fuse, attn_onchip, False, cycles, block=block,
                   arena=bool(prefetch))
    if not prefetch:
        binary = assemble(ctx)
        if stream:
            _stream_fences(binary)
        return binary
    # the weight groups' sizes (they do not depend on where C holds them) let the arena place
    # each group so that the next one fits beside it: emit again with the plan (with stream,
    # the arena's groups only: the front's go to their own slots)
    arena = ctx.sched.group_arena
    sizes = [n for n, a in zip(ctx.sched.group_sizes, arena) if a]
    layers = [li for li, a in zip(ctx.sched.group_layers, arena) if a]
    total = cfg.buf_c_bytes if ctx.stream is None else (
        ctx.stream.regions["tail"]["C"][1] - ctx.stream.regions["tail"]["C"][0])
    reserve = reserve_groups(ctx.prog, cfg, sizes, layers, total - 2 * ctx.sched.C.size)
    binary, c = _arena(prog, cfg, fuse, attn_onchip, block, sizes, reserve, cycles)
    if len(reserve) >= RESERVE_MIN_TRIAL:
        # the timed run decides how much of the reservation pays: every reserved group's
        # transfer must find LD idle time before the head, and beyond some amount they delay
        # the layers whose gaps they fill (B1-R224 at C = 2 MiB: 1.86 MB reserved 346,540
        # cycles, 1.30 MB 344,838); try shorter prefixes, keep the fewest cycles (ties: more)
        order = sorted(reserve)
        best, best_cycles = binary, c
        for frac in RESERVE_TRIALS:
            b, c = _arena(prog, cfg, fuse, attn_onchip, block, sizes,
                          frozenset(order[:int(len(order) * frac)]), cycles)
            if c < best_cycles:
                best, best_cycles = b, c
        binary = best
    if stream:
        _stream_fences(binary)
    return binary


def _stream_fences(binary):
    """The streaming pass's last steps on an assembled Binary: the register restores where two
    frames' queues may interleave, then the frame fences (:mod:`.streaming`)."""
    insert_restores(binary)
    insert_fences(binary)


#: the fractions of the reserved groups (:func:`~.prefetch.reserve_groups`, a prefix of them)
#: that :func:`compile` also times when the reservation has at least
#: :data:`RESERVE_MIN_TRIAL` groups (docs/perf.md "Buffer C beyond 512 KiB")
RESERVE_TRIALS = (0.85, 0.7, 0.55)
RESERVE_MIN_TRIAL = 8


#: how many times :func:`_arena` re-times the Binary and hoists again (each pass starts from
#: the previous one's LD stream; it stops early when a pass moves nothing or is not faster)
HOIST_PASSES = 4


def _arena(prog, cfg, fuse, attn_onchip, block, sizes, reserve, stream=None
           ) -> tuple[Binary, int]:
    """The prefetch emission: the weight arena with ``reserve`` (group indices) at its top,
    then the LD hoist (:func:`~.prefetch.hoist_weight_loads`), repeated from a new timed run
    while it pays (:data:`HOIST_PASSES`). One pass places every group by the gaps of the run
    before it; the groups it moves change the gaps (a gap they filled may have shrunk less
    than they took, and a gap whose wait they shortened opens later, e.g. the host
    LayerNorm's before the head's second linear on B1-R224), so a group that found no room in
    one pass may find it in the next. Reserved groups may pass other groups in the first pass
    only (later passes keep the order the first one gave them). Returns the Binary and its
    cycles in the cycle model: each Binary is timed once (:func:`~.prefetch.ld_times`, whose
    run both judges a pass and gives the next pass its gaps). ``stream``: the cycles of every
    node for the streaming phases (:func:`_emitted`), whose front's LD instructions no group
    passes (``floor`` of :func:`~.prefetch.hoist_weight_loads`); the frame fences come
    after (:func:`_compile_one`)."""
    ctx = _emitted(prog, cfg, fuse, attn_onchip, (sizes, reserve), stream, block=block,
                   arena=True)
    binary = assemble(ctx)
    floor = 0
    if stream is not None:
        g, tg = binary.streams["global"], binary.tags["global"]
        front = [i for i, (ins, t) in enumerate(zip(g, tg)) if ins.unit == "LD"
                 and 0 <= t < len(binary.layers) and binary.layers[t].get("phase") == "front"]
        floor = front[-1] + 1 if front else 0
    # the arena numbers its groups from its first; the front's (in their own slots) come first
    # in the LD queue
    n_front = ctx.sched.group_arena.count(False)
    reserved = frozenset(r + n_front for r in ctx.sched.C.reserve)
    idle, fired, ends, cycles = ld_times(binary)
    hoisted = False                     # (the first pass is kept whatever its cycles)
    for k in range(HOIST_PASSES):
        g, t, moved = hoist_weight_loads(binary.streams, binary.tags, idle,
                                         cfg.dram_bytes_per_cycle,
                                         reserved=reserved if k == 0 else (),
                                         fired=fired, ends=ends, floor=floor)
        if not moved:
            break
        old = binary.streams["global"], binary.tags["global"]
        binary.streams["global"], binary.tags["global"] = g, t
        n_idle, n_fired, n_ends, c = ld_times(binary)
        if hoisted and c >= cycles:
            binary.streams["global"], binary.tags["global"] = old
            break
        hoisted = True
        idle, fired, ends, cycles = n_idle, n_fired, n_ends, c
    return binary, cycles


def default_prefetch(cfg: AccelConfig, *, stream: bool = False, layout: str = "planar"
                     ) -> bool:
    """Whether :func:`compile` prefetches by default: when buffer C is larger than its two
    weight slots (:func:`~sim.compile.tiling.c_slot_bytes`; e.g. the ``zcu102`` preset's
    2 MiB: without the arena the rest of C would stay unused), in either ``layout`` (the arena
    holds weights only, which the activation layout does not change). With ``stream`` the arena
    is C beyond the front's two slots (:mod:`.streaming`). ``paper`` (192 KiB) and ``small``
    keep the two slots: their Binaries are the ones the RTL runs were checked with."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    del stream          # (the same answer with or without: kept for the callers' symmetry)
    return cfg.buf_c_bytes > c_slot_bytes(cfg.buf_c_bytes)


def _emitted(prog, cfg, fuse, attn_onchip, prefetch, stream=None, block=0, arena=False
             ) -> Context:
    """One emission (``stream``: None, or the cycles of every node for :func:`plan_stream`;
    ``block``: log2 B of the blocked layout, 0 planar; ``arena``, with ``stream``: the
    middle's C in the tail's region, the prefetch arena's with ``prefetch``)."""
    ctx = new_context(prog, cfg, prefetch=prefetch, block=block)
    chains = find_chains(ctx.prog, ctx.layout.alias, ctx.sched.C.size, cfg) if fuse else {}
    att = plan_context_modules(ctx.prog, cfg, ctx.layout.alias, chains) \
        if fuse and attn_onchip else None
    if att is not None:
        chains = {k: v for k, v in chains.items() if k not in att.unfuse}
    ctx.res.keep = find_resident(ctx.prog, ctx.layout.alias, chains,
                                 ctx.sched.B.size) if fuse else {}
    if att is not None:
        ctx.res.keep.update(att.keep)
        ctx.res.readers.update(att.readers)
        ctx.attn_hpt.update(att.heads_per_group)
        ctx.res.pipe |= att.pipe
        ctx.res.pipe_in |= att.pipe_qkv
    plan = _stream_plan(ctx, chains, att, stream, arena) if stream is not None else None
    ctx.stream = plan
    emit_program(ctx, chains, plan)
    return ctx


def _stream_plan(ctx: Context, chains: dict, att, cycles, arena=False) -> StreamPlan:
    """The phases of :mod:`.streaming`, degrading the fusion plan where it does not fit them
    rather than refusing the program: a fused chain that crosses a boundary
    (``StreamPlan.cut``) or whose weights do not fit its phase's C slot is dropped (``chains``
    is updated; its layers are emitted one by one), a tensor kept in a B slot across a
    boundary or too large for its phase's B slot goes through DRAM (a context module's
    tensors, :mod:`.attctx`, all of that module's at once), and the resident tensors are
    chosen again, until the plan is stable. ``ctx.res`` gets the final plan. ``arena``: the
    middle's C is the tail's region (``StreamPlan.arena``; the weight prefetch arena's)."""
    from .streaming import c_slot
    prog, cfg = ctx.prog, ctx.cfg
    pos = {n.name: i for i, n in enumerate(prog.nodes)}
    prod = {n.output: i for i, n in enumerate(prog.nodes)}
    att_keep = dict(att.keep) if att is not None else {}
    groups = _att_groups(prog, att_keep)
    dropped = set()                         # kept tensors that go through DRAM instead

    def drop_tensor(t):
        dropped.update(groups.get(t, {t}))
    while True:
        plan = plan_stream(prog, cfg, chains, ctx.res.keep, cycles)
        if arena:
            plan = replace(plan, regions=dict(plan.regions,
                                              middle={"C": plan.regions["tail"]["C"]}),
                           arena=True)
        drop = {w for k, w in plan.cut if k == "chain"}
        for t in (w for k, w in plan.cut if k == "keep"):
            drop_tensor(t)
        for first, ch in chains.items():
            ph = plan.phase(pos[first])
            if ph in plan.regions and chain_weight_bytes(ch, cfg) > \
                    c_slot(plan.regions[ph]["C"]):
                drop.add(first)
        for t in ctx.res.keep:
            ph = plan.phase(prod[t]) if t in prod else "middle"
            if "B" in plan.regions.get(ph, {}):
                lo, hi = plan.regions[ph]["B"]
                if int(np.prod(prog.tensors[t].shape)) > Slots(hi - lo, B_SLOTS, lo,
                                                                align=64).size:
                    drop_tensor(t)
        drop &= set(chains)
        if not drop and not (dropped & set(ctx.res.keep)):
            break
        for first in drop:
            del chains[first]
        keep = find_resident(prog, ctx.layout.alias, chains, ctx.sched.B.size)
        keep.update(att_keep)
        ctx.res.keep = {t: v for t, v in keep.items() if t not in dropped}
    ctx.res.pipe -= dropped
    ctx.res.pipe_in -= dropped
    return plan


def _att_groups(prog: IntProgram, keep: dict) -> dict:
    """tensor -> the tensors of its context module among ``keep`` (:mod:`.attctx`'s plan):
    those whose spans from producer to last reader overlap, transitively; they stay on chip
    together or not at all."""
    from .streaming import _producers, _reads
    prod = _producers(prog)
    last = {}
    for i, n in enumerate(prog.nodes):
        for t in _reads(n):
            last[t] = i
    spans = sorted((prod[t], last.get(t, prod[t]), t) for t in keep if t in prod)
    out, cur, end = {}, [], -1
    for a, e, t in spans + [(len(prog.nodes) + 1, 0, None)]:
        if cur and a > end:
            g = frozenset(cur)
            out.update(dict.fromkeys(cur, g))
            cur, end = [], -1
        if t is not None:
            cur.append(t)
            end = max(end, e)
    return out
