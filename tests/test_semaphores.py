"""hw.system.semaphores.SemaphoreFile in amaranth.sim against a Python model of ``sim.isa``'s
SIGNAL / WAIT (written from the ISA's definition, not from the HDL).

``sim.isa`` / ``sim.funcsim``: ``SIGNAL sem, count`` adds ``count`` to an unbounded counter;
``WAIT sem, count`` proceeds once the counter is ``>= count`` and does not consume it. The model
(:class:`SemModel`) keeps those counters for the SIGNALs the file has *taken* (a stream
transfer); the checks, every cycle of random traffic (fixed seeds):

* safety: a WAIT is taken only if the model's counter, counting the SIGNALs taken in earlier
  cycles, is ``>= count`` (a SIGNAL cannot satisfy a WAIT in its own cycle);
* liveness: a WAIT whose counter is sufficient is taken within a bound of cycles, a SIGNAL is
  taken within a bound (both generous: ports served before it by the arbiters, the clearing
  sweep after reset); no exact latency is asserted here (``tests/test_timing.py`` pins the
  latency the cycle model uses);
* at the end, each counter's value: ``WAIT(sem, value)`` is answered, ``WAIT(sem, value + 1)``
  is not (where ``value + 1`` fits the 12-bit count field).

Streams obey the stream rules: a port's payload is held until it is taken.
"""

import random

import pytest
from amaranth import Elaboratable, Module, ResetInserter, Signal
from amaranth.sim import Simulator

from hw.system.semaphores import SemaphoreFile

SEM_FIELD_MAX = (1 << 16) - 1       # SEM_LAYOUT.sem
COUNT_FIELD_MAX = (1 << 12) - 1     # SEM_LAYOUT.count (WAIT's count field, sim.isa)


class SemModel:
    """sim.isa's semaphores: unbounded event counters; WAIT compares, SIGNAL adds."""

    def __init__(self):
        self.counters = {}

    def value(self, sem):
        return self.counters.get(sem, 0)

    def signal(self, sem, count):
        self.counters[sem] = self.value(sem) + count

    def ready(self, sem, count):
        return self.value(sem) >= count


class _Top(Elaboratable):
    """The file with a synchronous reset the testbench drives (the Accelerator's START)."""

    def __init__(self, dut):
        self.dut, self.rst = dut, Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = ResetInserter(self.rst)(self.dut)
        return m


def _run(top, bench):
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class _Traffic:
    """Per port, a signaller and a waiter that each offer one request at a time (held until
    taken) after random idle gaps; checks every cycle against :class:`SemModel`."""

    def __init__(self, dut, rng, *, sems, big=0.0, idle=0.5):
        self.dut, self.rng, self.sems, self.big, self.idle = dut, rng, sems, big, idle
        P = dut.ports
        self.model = SemModel()
        self.sig = [None] * P           # (sem, count, cycle offered)
        self.wai = [None] * P           # (sem, count, cycle offered, cycle satisfied or None)
        self.last_sem = 0
        self.cycle = 0
        self.taken_signals = 0
        self.taken_waits = 0
        self.signal_bound = P + dut.count + 4     # arbiter turns + the clearing sweep
        self.wait_bound = P + 6                   # look-up turns + the write and broadcast

    def pick_sem(self):
        # same-sem collisions: half the time the id used last
        if self.rng.random() < 0.5:
            return self.last_sem
        self.last_sem = self.rng.randrange(self.sems)
        return self.last_sem

    def new_signal(self):
        sem = self.pick_sem()
        cnt = (COUNT_FIELD_MAX if self.rng.random() < 0.5 else self.rng.randrange(1, 8)) \
            if self.rng.random() < self.big else self.rng.randrange(1, 4)
        return (sem, cnt, self.cycle)

    def new_wait(self):
        sem = self.pick_sem()
        v = self.model.value(sem)
        # around the counter's value: some already satisfied, some a few signals ahead
        cnt = min(COUNT_FIELD_MAX, max(0, v + self.rng.randrange(-3, 6)))
        return [sem, cnt, self.cycle, self.cycle if self.model.ready(sem, cnt) else None]

    async def step(self, ctx, *, new_signals=True, new_waits=True):
        dut, rng = self.dut, self.rng
        for i in range(dut.ports):
            if self.sig[i] is None and new_signals and rng.random() > self.idle:
                self.sig[i] = self.new_signal()
            if self.wai[i] is None and new_waits and rng.random() > self.idle:
                self.wai[i] = self.new_wait()
            s, w = dut.signal[i], dut.wait[i]
            ctx.set(s.valid, self.sig[i] is not None)
            if self.sig[i] is not None:
                ctx.set(s.payload.sem, self.sig[i][0])
                ctx.set(s.payload.count, self.sig[i][1])
            ctx.set(w.valid, self.wai[i] is not None)
            if self.wai[i] is not None:
                ctx.set(w.payload.sem, self.wai[i][0])
                ctx.set(w.payload.count, self.wai[i][1])
        took = []
        for i in range(dut.ports):
            s, w = dut.signal[i], dut.wait[i]
            if self.sig[i] is not None:
                if ctx.get(s.ready):
                    took.append(self.sig[i][:2])
                    self.sig[i] = None
                    self.taken_signals += 1
                else:
                    assert self.cycle - self.sig[i][2] < self.signal_bound, \
                        f"port {i}: SIGNAL {self.sig[i]} not taken by cycle {self.cycle}"
            if self.wai[i] is not None:
                sem, cnt, _, since = self.wai[i]
                if ctx.get(w.ready):
                    assert self.model.ready(sem, cnt), \
                        (f"port {i}: WAIT(sem {sem}, count {cnt}) taken at cycle {self.cycle} "
                         f"with the counter at {self.model.value(sem)}")
                    self.wai[i] = None
                    self.taken_waits += 1
                else:
                    assert since is None or self.cycle - since < self.wait_bound, \
                        (f"port {i}: WAIT(sem {sem}, count {cnt}) satisfied since cycle {since} "
                         f"not taken by cycle {self.cycle}")
        assert ctx.get(dut.fault) == 0
        await ctx.tick()
        self.cycle += 1
        for sem, cnt in took:
            self.model.signal(sem, cnt)
        for w in self.wai:
            if w is not None and w[3] is None and self.model.ready(w[0], w[1]):
                w[3] = self.cycle

    async def drain(self, ctx):
        """No new WAITs; SIGNALs go on until every pending WAIT is answered, then stop."""
        for _ in range(2000):
            if all(w is None for w in self.wai):
                break
            await self.step(ctx, new_waits=False)
        assert all(w is None for w in self.wai), self.wai
        for _ in range(4 * self.signal_bound):
            if all(s is None for s in self.sig):
                break
            await self.step(ctx, new_signals=False, new_waits=False)
        assert all(s is None for s in self.sig), self.sig
        for _ in range(4):              # the last signals' writes
            await self.step(ctx, new_signals=False, new_waits=False)

    async def check_counters(self, ctx, sems):
        """Each counter's value through WAITs on port 0: value answered, value + 1 not."""
        w = self.dut.wait[0]
        for sem in sems:
            v = self.model.value(sem)
            for cnt, expect in ((min(v, COUNT_FIELD_MAX), True), (v + 1, False)):
                if cnt > COUNT_FIELD_MAX:
                    continue
                ctx.set(w.valid, 1)
                ctx.set(w.payload.sem, sem)
                ctx.set(w.payload.count, cnt)
                got = False
                for _ in range(self.wait_bound):
                    if ctx.get(w.ready):
                        got = True
                        await ctx.tick()
                        break
                    await ctx.tick()
                ctx.set(w.valid, 0)
                await ctx.tick()
                assert got == expect, (sem, v, cnt, got)


@pytest.mark.parametrize("ports,count,seed", [(9, 6, 1), (17, 40, 2), (4, 1, 3)])
def test_random_traffic_against_the_isa_model(ports, count, seed):
    """Many waiters and signallers, ids drawn from few counters (collisions, back-to-back
    signals to one id), then a reset (counters back to 0 through the clearing sweep) and
    a second round on the old RAM contents."""
    dut = SemaphoreFile(count=count, ports=ports)
    top = _Top(dut)
    rng = random.Random(seed)

    async def bench(ctx):
        for rnd in range(2):
            t = _Traffic(dut, rng, sems=count, idle=0.6 if rnd else 0.3)
            for _ in range(600):
                await t.step(ctx)
            await t.drain(ctx)
            assert t.taken_signals > 300 and t.taken_waits > 150, (t.taken_signals, t.taken_waits)
            await t.check_counters(ctx, range(count))
            ctx.set(top.rst, 1)         # START: every counter back to 0
            await ctx.tick()
            ctx.set(top.rst, 0)

    _run(top, bench)


def test_counts_up_to_the_field_max_saturate():
    """Signals of the largest count (4095) push counters past 16 bits: they saturate, so every
    WAIT (12-bit count) stays answered as with sim.isa's unbounded counters (a wrapping 16-bit
    counter would fall back below 4095)."""
    dut = SemaphoreFile(count=4, ports=6)
    top = _Top(dut)
    rng = random.Random(5)

    async def bench(ctx):
        t = _Traffic(dut, rng, sems=4, big=0.9, idle=0.2)
        for _ in range(400):
            await t.step(ctx)
        await t.drain(ctx)
        assert max(t.model.counters.values()) > 3 * (1 << 16)
        await t.check_counters(ctx, range(4))

    _run(top, bench)


def test_ids_past_the_file_fault_with_their_port():
    dut = SemaphoreFile(count=12, ports=5)

    async def bench(ctx):
        await ctx.tick()
        ctx.set(dut.signal[1].valid, 1)             # a bad SIGNAL is dropped (taken) ...
        ctx.set(dut.signal[1].payload.sem, 12)
        ctx.set(dut.wait[3].valid, 1)               # ... a bad WAIT never answered
        ctx.set(dut.wait[3].payload.sem, 40)
        assert ctx.get(dut.signal[1].ready) == 1
        await ctx.tick()
        ctx.set(dut.signal[1].valid, 0)
        for _ in range(20):
            assert ctx.get(dut.wait[3].ready) == 0
            await ctx.tick()
        assert ctx.get(dut.fault) == 1 and ctx.get(dut.fault_port) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("kw,exc", [
    (dict(count=0, ports=4), ValueError), (dict(count=(1 << 16) + 1, ports=4), ValueError),
    (dict(count=8, ports=0), ValueError), (dict(count=8, ports=257), ValueError),
    (dict(count=8.0, ports=4), TypeError), (dict(count=8, ports=True), TypeError)])
def test_parameters_are_checked(kw, exc):
    with pytest.raises(exc):
        SemaphoreFile(**kw)
