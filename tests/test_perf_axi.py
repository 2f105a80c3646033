"""sim.perf's AXI-level DMA model (sim.timing.AxiDma) against the RTL DMA engines.

The engines (hw.system.dma) run in amaranth.sim against the DMA tests' AXI memory with a fixed
read / response latency and no pauses; the cycle at which an engine is idle again after a
sequence of descriptors must equal the model's "landed" time for the same descriptors within a
small bound per descriptor. The burst split of the model is checked against the bursts the
engine really requested.
"""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from amaranth.sim import Simulator

from hw.system.dma import LoadDMA, Realigner, StoreDMA, realign_params
from sim import perf, timing
from sim.config import PRESETS
from sim.isa import BUFS, Instr
from tests.test_dma import BASE, _machine, run_engine

AXI = timing.AxiDma()


def _descs(rng, n):
    out = []
    for _ in range(n):
        length = int(rng.integers(1, 700))
        count = int(rng.integers(1, 4))
        out.append({"buf": BUFS["B"], "dram_addr": int(rng.integers(0, 30000)),
                    "buf_addr": int(rng.integers(0, 2000)), "count": count, "length": length,
                    "stride": length + int(rng.integers(0, 200)), "core": 0})
    return out


def test_burst_split_by_hand():
    # one chunk of 100 bytes at 4090: beats 255 (4080..4095) and 256..262 -> two bursts (4 KB)
    assert AXI.bursts(4090, 1, 100, 100) == [(0, 1), (0, 6)]
    # 2 chunks of 16 aligned bytes: one beat each
    assert AXI.bursts(0, 2, 16, 64) == [(0, 1), (1, 1)]
    # 1100 aligned bytes: 69 beats -> 64 + 5 (max_burst)
    assert AXI.bursts(0, 1, 1100, 1100) == [(0, 64), (0, 5)]


def test_read_port_held_ld_request_by_hand():
    # hw.system.arbiter.ReadArbiter + a memory that takes a new AR only while fewer than 2
    # accepted bursts wait for their data (ar_queue = 2), latency 2, 64-beat LD bursts A, B, C
    # presented in cycles 0, 1, 5 (accepted at once: A's data start in 2, only B waits), D in 6:
    # B and C wait, so D is held at the port until B's data are 1 cycle from starting (65).
    def ld_port():
        p = perf._ReadPort(2, 2)
        for r in (0, 1, 5):
            assert p.burst(r, 64)[0] == r
        assert p.burst(6, 64)[0] == 65                  # D's handshake
        return p
    # a dispatcher burst presented in 6 too wins the tie (a lower index): before D, its AR in
    # 65 (the AR queue), its 8 beats after C's (2 + 3 * 64 = 194)
    assert ld_port().burst(6, 8, insert=True) == (65, 194, 202)
    # presented in 7, while D is held: after D's handshake (65), its AR in 129 (C's data start
    # in 130) and its beats after D's (258)
    assert ld_port().burst(7, 8, insert=True) == (129, 258, 266)


@pytest.mark.parametrize("store,latency,seed", [(False, 3, 0), (False, 20, 1), (True, 3, 2),
                                                (True, 20, 3)])
def test_model_lands_with_the_engine(store, latency, seed):
    rng = np.random.default_rng(seed)
    descs = _descs(rng, 6)
    dut = StoreDMA() if store else LoadDMA()
    res = run_engine(dut, descs, _machine(np.random.default_rng(seed + 50)), rng, store=store,
                     pause=0.0, latency=(latency, latency + 1))
    rtl = res["cycles"] - 20        # run_engine ends after 20 idle cycles
    assert res["memory"].bursts == sum(len(AXI.bursts(BASE + d["dram_addr"], d["count"],
                                                      d["length"], d["stride"])) for d in descs)
    # the model: the descriptors offered back to back from cycle 0
    cfg = PRESETS["small"].replace(dram_latency_cycles=latency)
    unit = "ST" if store else "LD"
    state = ({"LD": 0, "ST": 0}, {"LD": [], "ST": []}, {"LD": 0, "ST": 0})
    t, landed = 0, 0
    for d in descs:
        ins = Instr("STORE" if store else "LOAD", {**d, "dram_addr": BASE + d["dram_addr"]})
        _s, t, done, _x = perf._axi_transfer(AXI, cfg, ins, t, unit, *state)
        landed = max(landed, done)
    print(f"RTL idle at {rtl}, model {landed}")
    assert abs(rtl - landed) <= 2 * len(descs) + 4, (rtl, landed)


def test_read_port_keeps_every_burst_a_refill_can_pass():
    # issue #13: the LD engine places a whole LOAD's bursts ahead of the dispatcher. Twenty
    # 4-beat LD bursts presented in cycles 100..119 (latency 2, no AR queue limit): burst k's
    # AR in 100 + k, its beats from 102 + 4k. A refill of 4 words presented in 101 passes the
    # 19 bursts presented from 101 on (the arbiter's tie and order rule), so it goes behind
    # burst 0 (beats 102..105), not onto the channel's cycles of a forgotten burst
    p = perf._ReadPort(2, None)
    for k in range(20):
        assert p.burst(100 + k, 4) == (100 + k, 102 + 4 * k, 106 + 4 * k)
    assert p.burst(101, 4, insert=True) == (101, 106, 110)
    assert p.ld_end == 102 + 4 * 21                 # the 19 LD bursts behind it moved back 4
    # beats on the channel never overlap: 21 bursts of 4 beats in 84 cycles from 102
    spans = sorted((b[1], b[2]) for b in p.hist)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_read_port_forgets_only_bursts_no_refill_can_pass():
    # with the dispatcher's round robin at cycle `low`, bursts presented before it are
    # forgotten except the last ar_queue (here 2) ones; the result of a refill is unchanged
    def run(low):
        p = perf._ReadPort(2, 2)
        p.low = low
        for k in range(40):
            p.burst(10 * k, 8)
        return p, p.burst(395, 8, insert=True)
    kept, r_kept = run(0)
    cut, r_cut = run(300)
    assert r_kept == r_cut
    assert len(kept.hist) == 41 and len(cut.hist) < 41
    assert min(b[5] for b in cut.hist) < 300 and sum(b[5] < 300 for b in cut.hist) == 2


class _RealignChunk(wiring.Component):
    """hw.system.dma.Realigner with its chunk parameters from the engine's own
    ``realign_params`` (source lane, destination lane, length)."""

    def __init__(self, lanes=16):
        self.lanes = lanes
        self.r = Realigner(lanes=lanes, tag=1)
        super().__init__({"src": In(range(lanes)), "dst": In(range(lanes)), "length": In(20)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.r = self.r
        realign_params(m, self.r.chunk.payload, self.lanes, self.src, self.dst, self.length)
        return m


def test_flush_rule_matches_the_realigner():
    # every (source lane, destination lane) pair, lengths around the line size: the realigner
    # (input always valid, output always ready) takes a chunk in one cycle per input beat
    # plus one when sim.timing.AxiDma.flushes says the chunk ends with a flush word
    dut = _RealignChunk()
    cases = [(s, d, n) for s in range(16) for d in range(16) for n in (1, 15, 16, 17, 40)]
    seen = []

    async def tb(ctx):
        ctx.set(dut.r.i.valid, 1)
        ctx.set(dut.r.o.ready, 1)
        ctx.set(dut.r.chunk.valid, 1)
        for s, d, n in cases:
            ctx.set(dut.src, s)
            ctx.set(dut.dst, d)
            ctx.set(dut.length, n)
            cycles = 0
            while True:
                cycles += 1
                done = ctx.get(dut.r.chunk.ready)
                await ctx.tick()
                if done:
                    break
            seen.append(cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    flushes = 0
    for (s, d, n), cycles in zip(cases, seen):
        beats = sum(b for _c, b in AXI.bursts(s, 1, n, n))
        flush = AXI.flushes(s, d, n)
        flushes += flush
        assert cycles == beats + flush, (s, d, n, cycles)
    assert 0 < flushes < len(cases)


def test_read_channel_never_fuller_than_one_beat_per_cycle():
    # B0-R64 on the paper's engines at L = 16 and 16 B/cycle is read-bound: the run cannot be
    # shorter than the beats its read channel carries (the LD bursts with the realigner's
    # flush cycles, the instruction words, the queue table); with the 16-burst history the
    # model took 280,887 cycles for 281,941 of them (issue #13)
    from sim import compile as sc
    from sim import zoo
    from sim.config import AccelConfig
    from sim.funcsim import build_queues
    cfg = AccelConfig.from_string("paper:dram_bytes_per_cycle=16").replace(
        dram_latency_cycles=16, host_overhead_cycles=25, host_cycles_per_elem=0)
    binary = sc.compile(zoo.build("b0-r64"), cfg)
    queues = build_queues(binary)
    beats = len(queues) + sum(len(q) for q in queues.values())
    for ins, _tag in queues[("global", "LD")]:
        f = ins.f
        if ins.op != "LOAD" or not f["count"] or not f["length"]:
            continue
        bursts = AXI.bursts(f["dram_addr"], f["count"], f["length"], f["stride"])
        beats += sum(n for _c, n in bursts)
        beats += sum(AXI.flushes(f["dram_addr"] + i * f["stride"], f["buf_addr"] + i * f["length"],
                                 f["length"]) for i in range(f["count"]))
    assert perf.simulate(binary, env=timing.AXI_SYSTEM).cycles >= beats


def test_loads_back_to_back_on_the_read_channel_with_the_fetch_model(monkeypatch):
    # two aligned LOADs into B (256 and 1,024 bytes: 16 and 64 beats, no realigner flush) and
    # nothing else to move once the dispatcher has fetched the LD queue: the read channel
    # carries the second LOAD's 64 beats right after the first's 16 (one beat per cycle, its
    # AR long before). Until the pipefix round the fetch model also charged the "one read
    # beat per fetched instruction" of the model without it for every LOAD, a cycle's gap
    # between the two (the RTL's bursts were back to back: docs/system.md "Cycles")
    import dataclasses

    from sim import compile as sc
    from sim import zoo
    from sim.isa import UNITS
    cfg = PRESETS["small"].replace(L=1, dram_latency_cycles=2)
    b = sc.compile(zoo.tiny(), cfg)
    base = b.symbols[f"tensor:{b.prog.inputs[0]}"]["addr"] // 4096 * 4096
    lds = [Instr("LOAD", {"buf": BUFS["B"], "buf_addr": a, "dram_addr": base + a, "count": 1,
                          "length": n, "stride": 0, "core": 0})
           for a, n in ((0, 256), (256, 1024))]
    lds.append(Instr("SIGNAL", {"unit": UNITS["LD"], "sem": 0, "count": 1}))
    streams = {"global": lds, "core0": []}
    b = dataclasses.replace(b, streams=streams, tags={"global": [-1] * 3, "core0": []})
    seen = []
    orig = perf._ReadPort.burst

    def burst(self, r, n, insert=False, stall=0):
        res = orig(self, r, n, insert, stall)
        if not insert:
            seen.append((n, res[1], res[2]))        # (beats, first beat, after the last)
        return res
    monkeypatch.setattr(perf._ReadPort, "burst", burst)
    perf.simulate(b, env=timing.AXI_SYSTEM)
    assert [n for n, _f, _e in seen] == [16, 64]
    assert seen[1][1] == seen[0][2]
