"""Binary assembly, the last pass: end every unit's stream with HALT and build the DRAM image
from the allocated blocks."""

from __future__ import annotations

from .binary import Binary
from .context import Context

__all__ = ["assemble"]


def assemble(ctx: Context) -> Binary:
    """The :class:`Binary` of a compilation whose nodes are all emitted."""
    ctx.em.halt_all()
    return Binary(ctx.cfg, ctx.prog, ctx.em.streams, ctx.em.tags, ctx.image.image(),
                  ctx.image.symbols, ctx.layers)
