"""Properties of a :class:`sim.compile.Binary` that the hardware relies on and the ISA does not
state by itself.

:func:`ld_overlaps` (the compiler's guarantee for several LD engines, docs/system.md "AXI
ports"): ``hw.system.Accelerator(axi_ports=P)`` with P > 2 has P - 1 LD DMA engines and deals
the LD queue's LOADs to them round-robin, so the LOADs between two SIGNALs of LD (a *stretch*:
from the queue's start or a SIGNAL to the next SIGNAL or the queue's end) run concurrently and
land in any order; only a SIGNAL of LD waits for all engines. Two LOADs of one stretch that
write the same buffer bytes would leave either value. A WAIT does not end a stretch (it waits
for another unit, not for LD's own transfers). The compiler must never emit such a pair;
:func:`check_ld_order` raises if a Binary has one. With one LD engine (``axi_ports`` 1 or 2)
the LOADs land in queue order and the property is not needed, but the compiler keeps it for
every Binary, so that one Binary runs on any port count.

The bytes a LOAD writes: ``count * length`` bytes from ``buf_addr`` (the chunks lie dense in
the buffer, ``sim.isa``), in buffer ``buf``, of core ``core`` for buffer A. The DMA engines
mask partial lines to those bytes, so LOADs that only share a line do not conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

from .funcsim import build_queues
from .isa import BUFS

__all__ = ["LdOverlap", "ld_overlaps", "check_ld_order"]

_BUF_NAMES = {v: k for k, v in BUFS.items()}


@dataclass(frozen=True)
class LdOverlap:
    """Two LOADs of one stretch of the LD queue writing common bytes: their indices in the LD
    queue (``first < second``), the stretch (SIGNALs of LD before it), the buffer (``"A3"``:
    core 3's buffer A) and the common byte range ``[lo, hi)``."""
    first: int
    second: int
    stretch: int
    buffer: str
    lo: int
    hi: int

    def __str__(self) -> str:
        return (f"LD instructions {self.first} and {self.second} (stretch {self.stretch}) both "
                f"write {self.buffer}[{self.lo}:{self.hi}]")


def ld_overlaps(binary, *, limit: int | None = None) -> list[LdOverlap]:
    """Every pair of LOADs of one stretch of the LD queue writing common bytes (see the module
    doc), in queue order of the second LOAD; at most ``limit`` of them."""
    out: list[LdOverlap] = []
    ld = [ins for ins, _ in build_queues(binary)[("global", "LD")]]
    stretch, seen = 0, {}                 # buffer -> [(lo, hi, pc)] of this stretch
    for pc, ins in enumerate(ld):
        if ins.op == "SIGNAL":
            stretch, seen = stretch + 1, {}
            continue
        if ins.op != "LOAD":
            continue
        f = ins.f
        n = f["count"] * f["length"]
        if n == 0:
            continue
        name = _BUF_NAMES.get(f["buf"], str(f["buf"]))
        key = f"A{f.get('core', 0)}" if f["buf"] == BUFS["A"] else name
        lo, hi = f["buf_addr"], f["buf_addr"] + n
        prev = seen.setdefault(key, [])
        for plo, phi, ppc in prev:
            if plo < hi and lo < phi:
                out.append(LdOverlap(ppc, pc, stretch, key, max(lo, plo), min(hi, phi)))
                if limit is not None and len(out) >= limit:
                    return out
        prev.append((lo, hi, pc))
    return out


def check_ld_order(binary) -> None:
    """Raise ``ValueError`` naming the first pair if two LOADs of one stretch of the LD queue
    write common bytes (:func:`ld_overlaps`): such a Binary is not safe on an accelerator with
    several LD engines."""
    bad = ld_overlaps(binary, limit=1)
    if bad:
        raise ValueError(f"{bad[0]}: no SIGNAL of LD between them, so with several LD engines "
                         f"(axi_ports > 2) they may land in either order (docs/system.md, "
                         f"\"AXI ports\")")
