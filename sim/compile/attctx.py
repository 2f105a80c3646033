"""Attention context modules on chip: an analysis pass choosing which intermediate activations
of a LiteMLA context module stay in buffer B slots instead of going through DRAM.

EfficientViT's context module is, in program order::

    qkv (PW) -> aggreg DW 5x5 -> aggreg grouped PW -> concat(qkv, aggreg) -> attention -> proj

and by default (:mod:`.fusion`) the qkv output is stored, the aggregation runs as a fused
``[DW, GPW]`` chain that loads qkv and stores its output, the attention loads the whole
concat (Q, V and each head's K) and stores its output, which proj loads again. When the
tensors fit B slots (:func:`plan_context_modules`) they stay on chip instead, each in a slot
of its own (:mod:`.residency`):

* the qkv output (a slice of the concat) in slot X, read by the DW and by the attention's
  first head group;
* the DW output (the aggregation is then two layers, not a fused chain) in slot Z, read by
  the grouped PW; with ``pipe`` (:data:`PIPE_AGGREGATION`) the DW writes it in row pieces and
  the grouped PW reads each piece as it is written (``ContextPlan.pipe``,
  :func:`~sim.compile.tiling.pipe_pieces`), the early pieces on the MAT engines while the
  R-MACs still run the DW;
* the grouped PW output (the other slice of the concat) in slot Y, read by the attention's
  second head group (K from B as well: buffer A is filled only by the LD DMA);
* the attention output in slot Z again (free once the grouped PW has read it), read by proj.

That needs the three B slots, the six nodes consecutive, each tensor within one B slot, and
every head group of the attention inside one of the concat's inputs (the plan lowers the heads
per group of :func:`~sim.compile.tiling.attention_plan` until none straddles them). Otherwise the module is left to the default schedule (the attention
output alone may still stay on chip when proj can read it from B). Pure analysis: nothing is
emitted; the emitters carry out the plan through :class:`~sim.compile.residency.Residency`,
and fall back to DRAM themselves when a tile plan does not allow it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import AccelConfig
from ..intprogram import IntProgram
from . import tiling
from .common import CompileError
from .fusion import _consumers
from .schedule import B_SLOTS

__all__ = ["ContextPlan", "plan_context_modules", "PIPE_AGGREGATION", "PIPE_QKV"]

#: the default of :func:`plan_context_modules`' ``pipe``: the aggregation's DW writes its
#: on-chip output in row pieces and the grouped PW reads each piece on the MAT engines while
#: the R-MACs run the next one (docs/perf.md "Depthwise and attention utilisation"). On by
#: default again since the AXI-level ``sim.perf`` models the semaphore file's arbiters (with
#: it, sim.zoo.tiny at L = 4 through the accelerator RTL had run 2.85 % off the model without
#: them; docs/system.md "Cycles")
PIPE_AGGREGATION = True

#: the default of :func:`plan_context_modules`' ``pipe_qkv`` (only with ``pipe``): the qkv
#: pointwise writes its on-chip output in the aggregation DW's row pieces and the DW starts
#: each piece once the qkv rows under it and its ``k//2`` halo rows are written
#: (:func:`~sim.compile.tiling.pre_pipe_plan`; docs/perf.md "Depthwise and attention
#: utilisation")
PIPE_QKV = True


@dataclass
class ContextPlan:
    """``keep``: tensor -> also store it to DRAM (merged into the residency plan); ``readers``:
    tensor -> how many layers read it from its B slot (more than one: the slot stays pinned
    until the last); ``unfuse``: first nodes of fused chains to drop (the aggregation runs as
    DW and grouped PW with the intermediate in B); ``modules``: attention node -> what stays
    on chip (for the report); ``heads_per_group``: attention -> heads per group, chosen so that
    no group straddles the concat's inputs; ``pipe``: DW outputs written in row pieces for the
    grouped PW (``Residency.pipe``); ``pipe_qkv``: qkv outputs written in the DW's row pieces
    (``Residency.pipe_in``)."""
    keep: dict = field(default_factory=dict)
    readers: dict = field(default_factory=dict)
    unfuse: set = field(default_factory=set)
    modules: dict = field(default_factory=dict)
    heads_per_group: dict = field(default_factory=dict)
    pipe: set = field(default_factory=set)
    pipe_qkv: set = field(default_factory=set)


def _size(prog, t) -> int:
    return int(np.prod(prog.tensors[t].shape))


def _is_pw(n, kind=("pointwise",)) -> bool:
    return (n.op == "conv" and n.kind in kind and int(n.attrs["kernel"]) == 1
            and int(n.attrs["stride"]) == 1 and int(n.attrs["padding"]) == 0)


def plan_context_modules(prog: IntProgram, cfg: AccelConfig, alias: dict,
                         chains: dict | None = None, pipe: bool | None = None,
                         pipe_qkv: bool | None = None) -> ContextPlan:
    """The on-chip plan of every linear attention of ``prog`` for ``cfg``'s buffer sizes
    (``alias``: the concat aliases of :func:`sim.compile.layout.concat_aliases`; ``chains``:
    the fused chains of :func:`sim.compile.fusion.find_chains`, whose emitter reads its input
    from DRAM: a chain's first node never gets a resident input)."""
    plan = ContextPlan()
    pipe = PIPE_AGGREGATION if pipe is None else pipe
    pipe_qkv = PIPE_QKV if pipe_qkv is None else pipe_qkv
    chains = chains or {}
    infused = {m.name for c in chains.values() for m in c}
    b_slot = cfg.buf_b_bytes // B_SLOTS
    o_slot = cfg.buf_out_bytes // 2
    cons = {t: [n.name for n in ns] for t, ns in _consumers(prog).items()}
    outs = set(prog.outputs)
    nodes = prog.nodes
    for i, att in enumerate(nodes):
        if att.op != "linear_attention":
            continue
        d = int(att.attrs["dim"])
        cx, h, w = prog.tensors[att.inputs[0]].shape
        ntok, heads = h * w, cx // (3 * d)
        try:
            tiling.attention_plan(cfg, att.name, heads=heads, d=d, ntok=ntok, b_slot=b_slot,
                                  o_slot=o_slot)
        except CompileError:
            continue
        what = []
        # the attention output for proj (the next node, a pointwise conv reading it alone)
        y = att.output
        proj = nodes[i + 1] if i + 1 < len(nodes) else None
        if (proj is not None and _is_pw(proj) and proj.name not in infused
                and proj.inputs == [y] and cons.get(y) ==
                [proj.name] and y not in outs and y not in alias and prog.tensors[y].bits <= 8
                and _size(prog, y) + (_size(prog, proj.output)
                                      if proj.epilogue.residual else 0) <= b_slot):
            plan.keep[y] = False
            plan.readers[y] = 1
            what.append("attention output")
        # the multi-scale q|k|v: qkv -> DW -> GPW -> concat -> attention
        if i < 4:
            plan.modules[att.name] = what
            continue
        qkv, dw, gpw, cat = nodes[i - 4:i]
        if not (cat.op == "concat" and cat.output == att.inputs[0] and len(cat.inputs) == 2
                and _is_pw(qkv) and cat.inputs == [qkv.output, gpw.output]
                and dw.op == "conv" and dw.kind == "depthwise" and dw.inputs == [qkv.output]
                and dw.epilogue.residual is None and _is_pw(gpw, ("grouped_pointwise",
                                                                  "pointwise"))
                and gpw.inputs == [dw.output] and gpw.epilogue.residual is None
                and qkv.epilogue.residual is None
                and sorted(cons.get(qkv.output, [])) == sorted([dw.name, cat.name])
                and cons.get(dw.output) == [gpw.name] and cons.get(gpw.output) == [cat.name]
                and cons.get(cat.output) == [att.name] and cat.output not in outs
                and not {qkv.output, dw.output, gpw.output} & outs
                and dw.output not in alias and qkv.name not in infused
                and ([m.name for m in chains.get(dw.name, [])] == [dw.name, gpw.name]
                     or not {dw.name, gpw.name} & infused)):
            plan.modules[att.name] = what
            continue
        tq, tg = prog.tensors[qkv.output], prog.tensors[gpw.output]
        # heads per group as the emitter plans them (the OUT slot does not bound them when the
        # output stays in B), then fewer until no group straddles qkv | aggregation
        hpt, _, _ = tiling.attention_plan(cfg, att.name, heads=heads, d=d, ntok=ntok,
                                          b_slot=b_slot,
                                          o_slot=b_slot if y in plan.keep else o_slot)
        nq = tq.shape[0]
        groups_ok = nq % (3 * d) == 0
        if groups_ok:
            while (nq // (3 * d)) % hpt:
                hpt -= 1
        fits = (max(_size(prog, qkv.output), _size(prog, dw.output),
                    _size(prog, gpw.output)) <= b_slot
                and _size(prog, qkv.inputs[0]) <= b_slot
                and tq.bits <= 8 and tg.bits <= 8 and prog.tensors[dw.output].bits <= 8)
        if not (groups_ok and fits):
            plan.modules[att.name] = what
            continue
        plan.keep.update({qkv.output: False, dw.output: False, gpw.output: False})
        plan.readers.update({qkv.output: 2, dw.output: 1, gpw.output: 1})
        plan.unfuse.update({dw.name, qkv.name})
        if pipe:
            plan.pipe.add(dw.output)
            if pipe_qkv:
                plan.pipe_qkv.add(qkv.output)
        plan.heads_per_group[att.name] = hpt
        plan.modules[att.name] = ["qkv", "aggregation DW output", "aggregation output"] + what
    return plan
