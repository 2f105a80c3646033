"""The semaphore file: the global event counters of ``sim.isa``'s SIGNAL / WAIT (docs/isa.md).

``SIGNAL unit, sem, count`` adds ``count`` to counter ``sem``; ``WAIT unit, sem, count`` blocks
its unit until counter ``sem >= count``. Counters never decrement, so any number of units may
wait for one event. Every unit of the accelerator (LD, ST, HOST and the three units of each
core) has a wait and a signal stream (``hw.core.ports.SEM_LAYOUT``); a WAIT is answered in the
cycle it is offered (``ready`` is combinational from the counters, the contract of
``hw.core.ports``), a SIGNAL is always taken and shows in the counter from the next cycle; all
sources may signal in the same cycle (their counts add).

The compiler allocates one counter per event (``sim.compile``), so the file must have at least as
many counters as the Binary's largest semaphore id + 1; a WAIT or SIGNAL on an id past the file
sets ``fault`` (the register block reports it as error code 7) and is never answered (WAIT) or
dropped (SIGNAL).
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..core.ports import SEM_LAYOUT
from ..params import check_int

__all__ = ["SemaphoreFile", "COUNTER_BITS"]

COUNTER_BITS = 16       #: width of one event counter (WAIT counts are 12 bits)


class SemaphoreFile(wiring.Component):
    """``count`` event counters shared by ``ports`` units.

    Parameters (keyword-only): ``count`` (counters, 1..65536: ids ``0 .. count-1``), ``ports``
    (units, 1..256).

    Ports: ``wait[i]`` (In stream of {sem, count}: unit i's WAIT; ``ready`` when the counter has
    reached ``count``), ``signal[i]`` (In stream: unit i's SIGNAL; always ready), ``fault``
    (Out(1), sticky: an id past the file), ``fault_port`` (Out(8): the unit of the first fault).
    """

    def __init__(self, *, count: int, ports: int):
        self.count = check_int("count", count, 1, 1 << 16)
        self.ports = check_int("ports", ports, 1, 256)
        super().__init__({
            "wait": In(stream.Signature(SEM_LAYOUT)).array(ports),
            "signal": In(stream.Signature(SEM_LAYOUT)).array(ports),
            "fault": Out(1),
            "fault_port": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        cnt = [Signal(COUNTER_BITS, name=f"sem{i}") for i in range(self.count)]
        arr = Array(cnt)
        bad = []
        for i in range(self.ports):
            w, s = self.wait[i], self.signal[i]
            w_ok = w.payload.sem < self.count
            m.d.comb += [w.ready.eq(w_ok & (arr[w.payload.sem] >= w.payload.count)),
                         s.ready.eq(1)]
            bad.append((w.valid & ~w_ok) | (s.valid & (s.payload.sem >= self.count)))
        for c_i, c in enumerate(cnt):
            inc = 0
            for i in range(self.ports):
                s = self.signal[i]
                inc = inc + Mux(s.valid & (s.payload.sem == c_i), s.payload.count, 0)
            m.d.sync += c.eq(c + inc)
        anybad = Cat(*bad).any()
        with m.If(anybad & ~self.fault):
            m.d.sync += self.fault.eq(1)
            for i in reversed(range(self.ports)):
                with m.If(bad[i]):
                    m.d.sync += self.fault_port.eq(i)
        return m
