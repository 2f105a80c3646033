"""A reference for the semaphore file (``hw.system.semaphores``), written from ``sim.isa``'s
definition of SIGNAL / WAIT, and random traffic checked against it cycle by cycle.

``sim.isa`` / ``sim.funcsim``: ``SIGNAL sem, count`` adds ``count`` to an unbounded counter;
``WAIT sem, count`` proceeds once the counter is ``>= count`` and does not consume it.
:class:`SemModel` keeps those counters for the SIGNALs the file has *taken* (stream transfers).
:class:`SemTraffic` plays, per port, a signaller and a waiter that each offer one request at a
time (held until taken, as the stream rules require) after random idle gaps, and checks:

* safety: a WAIT is taken only if the model's counter, counting the SIGNALs taken in earlier
  cycles, is ``>= count`` (a SIGNAL cannot satisfy a WAIT in its own cycle);
* liveness: a WAIT whose counter suffices is taken within ``wait_bound`` cycles, a SIGNAL within
  ``signal_bound`` (generous bounds: ports served first by the arbiters, the clearing sweep
  after reset; the exact uncontended latency is pinned by tests/test_timing.py).

It is simulator-neutral: :meth:`SemTraffic.offers` says what each port drives this cycle,
:meth:`SemTraffic.observe` takes the ``ready`` bits sampled before the clock edge. Used by
tests/test_semaphores.py (amaranth.sim) and tb/system/cocotb_sems.py (the Verilog).
"""

from __future__ import annotations

import random

__all__ = ["SemModel", "SemTraffic", "COUNT_FIELD_MAX", "pack"]

COUNT_FIELD_MAX = (1 << 12) - 1     #: SEM_LAYOUT.count (WAIT's count field in sim.isa)


def pack(sem: int, count: int) -> int:
    """A SEM_LAYOUT payload as an integer (``sem`` in bits 0-15, ``count`` in 16-27)."""
    return sem | (count << 16)


class SemModel:
    """sim.isa's semaphores: unbounded event counters; WAIT compares, SIGNAL adds."""

    def __init__(self):
        self.counters: dict[int, int] = {}

    def value(self, sem: int) -> int:
        return self.counters.get(sem, 0)

    def signal(self, sem: int, count: int) -> None:
        self.counters[sem] = self.value(sem) + count

    def ready(self, sem: int, count: int) -> bool:
        return self.value(sem) >= count


class SemTraffic:
    """Random SIGNAL / WAIT traffic on ``ports`` ports over ids ``0 .. sems-1`` (see module doc).

    ``big``: share of signals with large counts (the 12-bit field's maximum half of those);
    ``idle``: probability a free port offers nothing this cycle; ``count``: the file's size
    (for the clearing sweep's bound)."""

    def __init__(self, *, ports: int, sems: int, count: int, rng: random.Random,
                 big: float = 0.0, idle: float = 0.5):
        self.ports, self.sems, self.rng, self.big, self.idle = ports, sems, rng, big, idle
        self.model = SemModel()
        self.sig: list = [None] * ports        # (sem, count, cycle offered)
        self.wai: list = [None] * ports        # [sem, count, cycle offered, cycle satisfied]
        self.last_sem = 0
        self.cycle = 0
        self.taken_signals = 0
        self.taken_waits = 0
        self.signal_bound = ports + count + 4
        self.wait_bound = ports + 6

    def _sem(self) -> int:
        # same-id collisions and back-to-back signals: half the time the id used last
        if self.rng.random() < 0.5:
            return self.last_sem
        self.last_sem = self.rng.randrange(self.sems)
        return self.last_sem

    def _new_signal(self):
        r = self.rng
        if r.random() < self.big:
            cnt = COUNT_FIELD_MAX if r.random() < 0.5 else r.randrange(1, COUNT_FIELD_MAX)
        else:
            cnt = r.randrange(1, 4)
        return (self._sem(), cnt, self.cycle)

    def _new_wait(self):
        sem = self._sem()
        v = self.model.value(sem)
        # around the counter's value: some already satisfied, some a few signals ahead
        cnt = min(COUNT_FIELD_MAX, max(0, v + self.rng.randrange(-3, 6)))
        return [sem, cnt, self.cycle, self.cycle if self.model.ready(sem, cnt) else None]

    def offers(self, *, new_signals: bool = True, new_waits: bool = True) -> list:
        """``[(signal (sem, count) or None, wait (sem, count) or None)]`` per port this cycle."""
        out = []
        for i in range(self.ports):
            if self.sig[i] is None and new_signals and self.rng.random() > self.idle:
                self.sig[i] = self._new_signal()
            if self.wai[i] is None and new_waits and self.rng.random() > self.idle:
                self.wai[i] = self._new_wait()
            out.append((None if self.sig[i] is None else self.sig[i][:2],
                        None if self.wai[i] is None else tuple(self.wai[i][:2])))
        return out

    def observe(self, sig_ready, wait_ready) -> None:
        """The ``ready`` bits of this cycle (before the edge): check, then advance a cycle."""
        took = []
        for i in range(self.ports):
            if self.sig[i] is not None:
                if sig_ready[i]:
                    took.append(self.sig[i][:2])
                    self.sig[i] = None
                    self.taken_signals += 1
                else:
                    assert self.cycle - self.sig[i][2] < self.signal_bound, \
                        f"port {i}: SIGNAL {self.sig[i]} not taken by cycle {self.cycle}"
            if self.wai[i] is not None:
                sem, cnt, _, since = self.wai[i]
                if wait_ready[i]:
                    assert self.model.ready(sem, cnt), \
                        (f"port {i}: WAIT(sem {sem}, count {cnt}) taken at cycle {self.cycle} "
                         f"with the counter at {self.model.value(sem)}")
                    self.wai[i] = None
                    self.taken_waits += 1
                else:
                    assert since is None or self.cycle - since < self.wait_bound, \
                        (f"port {i}: WAIT(sem {sem}, count {cnt}) satisfied since cycle {since} "
                         f"not taken by cycle {self.cycle}")
        self.cycle += 1
        for sem, cnt in took:
            self.model.signal(sem, cnt)
        for w in self.wai:
            if w is not None and w[3] is None and self.model.ready(w[0], w[1]):
                w[3] = self.cycle

    def idle_ports(self) -> bool:
        return all(s is None for s in self.sig) and all(w is None for w in self.wai)

    def drain_phases(self):
        """``(new_signals, new_waits, max cycles, what must be empty after)`` to finish a round:
        SIGNALs go on (no new WAITs) until every WAIT is answered, then stop."""
        return [(True, False, 4000, "wai"), (False, False, 4 * self.signal_bound, "sig"),
                (False, False, 4, None)]

    def final_checks(self, sems) -> list:
        """``[(sem, count, expect ready)]``: each counter's value read back through WAITs
        (``value`` answered; ``value + 1`` not, where it fits the count field)."""
        out = []
        for sem in sems:
            v = self.model.value(sem)
            out.append((sem, min(v, COUNT_FIELD_MAX), True))
            if v + 1 <= COUNT_FIELD_MAX:
                out.append((sem, v + 1, False))
        return out
