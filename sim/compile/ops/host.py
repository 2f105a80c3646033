"""Emission of the ops the host CPU runs (the LayerNorm of the classifier head): one HOST_LN
instruction on the global stream, after every store of its input, reading its float64
parameter block (:func:`sim.compile.records.layernorm_block`) from DRAM."""

from __future__ import annotations

from ...intprogram import Node
from ..context import Context
from ..records import layernorm_block

__all__ = ["emit_layernorm"]

HOST_ACTS = {"none": 0, "hswish": 1}   #: HOST_LN's act field


def emit_layernorm(ctx: Context, n: Node, info):
    p, em, sync = ctx.prog, ctx.em, ctx.sched.sync
    xt, yt = p.tensors[n.inputs[0]], p.tensors[n.output]
    C = xt.shape[0]
    act = n.attrs.get("act", "none")
    blk = layernorm_block(n, xt, yt)
    paddr = ctx.image.alloc(f"param:{n.name}", blk.size * 8, "host_param", blk)
    for (a0, a1, b0, b1, sem) in sync.stores_of(n.inputs[0]):
        em.wait("global", "HOST", sem, 1)
    em.emit("global", "HOST_LN", src=ctx.layout.addr(n.inputs[0]),
            dst=ctx.layout.addr(n.output), param=paddr, channels=C, act=HOST_ACTS[act])
    sem = em.sem()
    em.signal("global", "HOST", sem)
    sync.record_store(n.output, 0, C, 0, 1, sem)
    info["tiles"] += 1
