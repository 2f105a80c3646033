"""The state one compilation threads through its passes: the program and config, the
instruction :class:`~sim.compile.emitter.Emitter`, the DRAM image and tensor layout, the
:class:`~sim.compile.schedule.Scheduler` (slots, events, DMA), the resident tensors, and the
per-layer records that end up in ``Binary.layers``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import AccelConfig
from ..intprogram import IntProgram
from .emitter import Emitter
from .layout import DramImage, TensorLayout
from .residency import Residency
from .schedule import Scheduler

__all__ = ["Context"]


@dataclass
class Context:
    prog: IntProgram
    cfg: AccelConfig
    em: Emitter
    image: DramImage
    layout: TensorLayout
    sched: Scheduler
    res: Residency
    layers: list = field(default_factory=list)   #: per node: name, kind, op, tiles, on_chip...
    onchip: set = field(default_factory=set)     #: tensors that never leave the chip
    aux_free: dict = field(default_factory=dict)  #: (core, aux half) -> ATT_OUT read it
    a_free: dict = field(default_factory=dict)    #: (core, A slot) -> KV and KSUM read it
    attn_hpt: dict = field(default_factory=dict)  #: attention -> heads per group (attctx)
    block: int = 0          #: log2 B of the blocked layout (0: planar; the BLOCK register)
    stream: object = None   #: the :class:`~sim.compile.streaming.StreamPlan` (stream=True)
