"""Frames on a unit queue: between the dispatcher's FIFO head and the unit (streaming mode).

With ``FRAMES.COUNT`` > 1 the dispatcher fetches every unit queue that many times back to back
(:class:`hw.system.dispatch.Dispatcher`), so a unit runs frame k+1's copy of its queue right
after its part of frame k, while other units may still work on frame k. The semaphores keep
the frames apart (``sim.isa.wait_passes``): every SIGNAL and WAIT acts on its own frame's
counters, a WAIT with ``prev`` on the previous frame's (a frame fence, written by
``compile(..., stream=True)``), and frame 0 passes such a WAIT at once.

:class:`FrameTracker` is what adds the frame to a unit without touching it (the core's and the
global units' ports stay those of one frame): it counts the queue's frames and

* passes the instruction words through, except the HALT of every frame but the last, which it
  takes itself (one cycle) and counts: the unit halts once, at the end of the run;
* passes the unit's ``wait`` and ``signal`` streams (``hw.core.ports.SEM_LAYOUT``) to the
  semaphore file with the frame they are for (:data:`hw.system.semaphores.FRAME_SEM_LAYOUT`):
  a unit executes WAIT and SIGNAL from its queue head (the word is taken when the file
  accepts), so the head word in front of the unit is the one being executed: its ``prev``
  bit (a WAIT's) says whether the counter is the previous frame's, and in frame 0 such a WAIT
  is ``free``.

One instruction context per queue: a unit's frames run in order. A second context (frame k+1's
queue fetched and issued while frame k's is blocked) is designed in docs/perf.md, section
"Built: frame fences in the Binary, frames back to back in the RTL"; it is not built.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sim.isa import FORMATS, OPCODE_BITS

from ..core.ports import SEM_LAYOUT
from .semaphores import FRAME_SEM_LAYOUT

__all__ = ["FrameTracker", "PREV_BIT"]


def _field_pos(op: str, name: str) -> tuple[int, int]:
    pos = OPCODE_BITS
    for n, bits, _ in FORMATS[op][2]:
        if n == name:
            return pos, bits
        pos += bits
    raise KeyError(f"{op}.{name}")


#: bit of the instruction word holding a WAIT's ``prev`` flag (``sim.isa.FORMATS``)
PREV_BIT = _field_pos("WAIT", "prev")[0]
_HALT = FORMATS["HALT"][0]
_WAIT = FORMATS["WAIT"][0]


class FrameTracker(wiring.Component):
    """One unit queue's frame count and the frame of its semaphore traffic (module doc).

    Ports:

    * ``up``: In(stream of 128-bit words), the dispatcher's FIFO head for this queue;
    * ``down``: Out(stream of 128-bit words), the unit's instruction input;
    * ``unit_wait``, ``unit_signal``: In(stream of ``SEM_LAYOUT``), the unit's WAIT / SIGNAL;
    * ``file_wait``, ``file_signal``: Out(stream of ``FRAME_SEM_LAYOUT``), to the semaphore
      file, the same requests with their frame (modulo 4) and ``free``;
    * ``frames``: In(16), frames of the run (0 and 1: one), constant during a run;
    * ``frame``: Out(16), the frame the queue is in (0 after reset).
    """

    def __init__(self):
        super().__init__({
            "up": In(stream.Signature(unsigned(128))),
            "down": Out(stream.Signature(unsigned(128))),
            "unit_wait": In(stream.Signature(SEM_LAYOUT)),
            "unit_signal": In(stream.Signature(SEM_LAYOUT)),
            "file_wait": Out(stream.Signature(FRAME_SEM_LAYOUT)),
            "file_signal": Out(stream.Signature(FRAME_SEM_LAYOUT)),
            "frames": In(16),
            "frame": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        word = self.up.payload
        op = word[:OPCODE_BITS]
        last = Signal()
        m.d.comb += last.eq(self.frame + 1 >= self.frames)
        skip = Signal()                 # a HALT of a frame before the last: taken here
        m.d.comb += [skip.eq(self.up.valid & (op == _HALT) & ~last),
                     self.down.payload.eq(word),
                     self.down.valid.eq(self.up.valid & ~skip),
                     self.up.ready.eq(Mux(skip, 1, self.down.ready))]
        with m.If(skip):
            m.d.sync += self.frame.eq(self.frame + 1)

        prev = Signal()
        m.d.comb += prev.eq((op == _WAIT) & word[PREV_BIT])
        fw, uw = self.file_wait, self.unit_wait
        m.d.comb += [fw.valid.eq(uw.valid), uw.ready.eq(fw.ready),
                     fw.payload.sem.eq(uw.payload.sem), fw.payload.count.eq(uw.payload.count),
                     fw.payload.frame.eq((self.frame - prev)[:2]),
                     fw.payload.free.eq(prev & (self.frame == 0))]
        fs, us = self.file_signal, self.unit_signal
        m.d.comb += [fs.valid.eq(us.valid), us.ready.eq(fs.ready),
                     fs.payload.sem.eq(us.payload.sem), fs.payload.count.eq(us.payload.count),
                     fs.payload.frame.eq(self.frame[:2]), fs.payload.free.eq(0)]
        return m
