"""Fusion pass: which layers run as one on-chip chain, and which tensors pass between two
layers through a buffer B slot instead of DRAM. Pure analysis of the IntProgram: it emits
nothing and only needs the sizes of the C and B slots.

* :func:`find_chains`: the inter-layer pipeline of the paper (DW on the R-MAC feeding PW on
  the MAT): ``[PW1?, DW, PW2]`` with all weights in one C slot; the intermediates never leave
  the chip.
* :func:`find_resident`: consecutive unfused PW -> DW / DW -> PW layers (the MBConvs whose
  weights are too big to fuse) whose tensor (with the consumer's residual) fits a B slot.
"""

from __future__ import annotations

import numpy as np

from ..intprogram import IntProgram
from .common import ALIGN, PARAM_RECORD, align
from .records import weight_bytes

__all__ = ["find_chains", "find_resident", "chain_weight_bytes"]


def chain_weight_bytes(chain, cfg=None) -> int:
    """Bytes of a chain's weights and parameter records in one C slot (blocks aligned); the
    weights pre-tiled for ``cfg`` (:func:`sim.compile.records.weight_bytes`), or dense
    without one."""
    tot = 0
    for m in chain:
        w = np.asarray(m.params["weight"])
        tot += align(w.size if cfg is None else weight_bytes(m, cfg)) + \
            align(w.shape[0] * PARAM_RECORD)
    return tot


def _consumers(prog: IntProgram) -> dict:
    """tensor -> nodes reading it (as an input or as the residual of their epilogue)."""
    cons = {}
    for n in prog.nodes:
        for t in n.inputs + ([n.epilogue.residual] if n.epilogue and n.epilogue.residual
                             else []):
            cons.setdefault(t, []).append(n)
    return cons


def find_chains(prog: IntProgram, alias: dict, c_slot: int, cfg=None) -> dict:
    """{first node name: [PW1?, DW, PW2]}: a depthwise conv without a residual, the pointwise
    conv that alone reads its output and, when it alone feeds the DW (or the DW and, as its
    residual, the second PW: a stride-1 DW, the residual read from the chain's tile), the
    pointwise conv producing its input; all weights (pre-tiled for ``cfg``) must fit one C slot of ``c_slot``
    bytes. ``alias``: the
    concat aliases (:func:`sim.compile.layout.concat_aliases`), whose tensors are never fused
    away. (A DW with a residual stays unfused: a chain's DW writes into B without one.)"""
    p = prog
    cons = _consumers(p)
    outs = set(p.outputs)
    pos = {n.name: i for i, n in enumerate(p.nodes)}

    def private(t, consumer):
        return ([c.name for c in cons.get(t, [])] == [consumer.name] and t not in outs
                and t not in alias)

    def residual_in_tile(dw, q):
        """The DW's input is read by the DW and, as its residual, by ``q`` alone (a DSConv
        after a pointwise producer: EfficientViT's dense stem, unfolded): a chain's B tile holds
        the rows of that tensor the second PW adds (stride 1, as many channels), so it need
        not leave the chip either."""
        t = dw.inputs[0]
        return (int(dw.attrs["stride"]) == 1 and q.epilogue is not None
                and q.epilogue.residual == t and t not in outs and t not in alias
                and sorted(c.name for c in cons.get(t, [])) == sorted([dw.name, q.name])
                and tuple(p.tensors[t].shape) == tuple(p.tensors[q.output].shape))
    chains = {}
    for dw in p.nodes:
        if dw.op != "conv" or dw.kind != "depthwise":
            continue
        if dw.epilogue is not None and dw.epilogue.residual is not None:
            continue            # the chain's DW_RSA has no residual (only PW2 has one)
        qs = cons.get(dw.output, [])
        if len(qs) != 1:
            continue
        q = qs[0]
        if (q.op != "conv" or int(q.attrs["kernel"]) != 1 or int(q.attrs["stride"]) != 1
                or int(q.attrs["padding"]) != 0 or q.inputs != [dw.output]
                or not private(dw.output, q)):
            continue
        chain = [dw, q]
        pn = p.node_producing(dw.inputs[0])
        if (pn is not None and pn.op == "conv" and pn.kind == "pointwise"
                and int(pn.attrs["stride"]) == 1 and pn.epilogue.residual is None
                and (private(dw.inputs[0], dw) or residual_in_tile(dw, q))
                and pn.name not in chains):
            chain = [pn, dw, q]
        if chain_weight_bytes(chain, cfg) > c_slot - ALIGN and len(chain) == 3:
            chain = chain[1:]
        if chain_weight_bytes(chain, cfg) > c_slot - ALIGN:
            continue
        res = q.epilogue.residual
        if res is not None and not (len(chain) == 3 and res == dw.inputs[0]):
            rp = p.node_producing(res)
            if rp is not None and pos[rp.name] >= pos[chain[0].name]:
                continue
        chains[chain[0].name] = chain
    return chains


def find_resident(prog: IntProgram, alias: dict, chains: dict, b_slot: int) -> dict:
    """Tensors passed between two consecutive unfused layers (PW -> DW, DW -> PW, or PW ->
    global average pool: the head's conv and pool) through a B slot of ``b_slot`` bytes instead
    of DRAM: ``{tensor: also store it to DRAM}`` (true when other layers or the program's
    outputs read it too)."""
    p = prog
    cons = {t: [n.name for n in ns] for t, ns in _consumers(p).items()}
    infused = {m.name for c in chains.values() for m in c}
    keep = {}
    for a, b in zip(p.nodes, p.nodes[1:]):
        if a.name in infused or b.name in infused or a.op != "conv":
            continue
        if b.op == "global_avgpool":
            # the pool reads its input from B as a conv's resident output lies there:
            # channel-major planes (issue #16: B1-R224's head conv, 75 KB, no round trip)
            if a.kind != "pointwise":
                continue
        elif b.op != "conv" or a.kind not in ("pointwise", "depthwise") or \
                b.kind not in ("pointwise", "depthwise"):
            continue
        if b.inputs != [a.output]:
            continue
        t = p.tensors[a.output]
        rb = b.epilogue.residual
        need = int(np.prod(t.shape)) + (int(np.prod(p.tensors[rb].shape)) if rb else 0)
        # any tensor that fits a B slot (with the consumer's residual): the former 64 KB cap
        # (the B slot of the first presets) sent B1's stage-3 PW -> stride-2 DW (100 KB)
        # through DRAM (issue #16, docs/perf.md "Depthwise and attention utilisation")
        if a.output in alias or t.bits > 8 or need > b_slot:
            continue
        keep[a.output] = cons.get(a.output) != [b.name] or a.output in p.outputs
    return keep
