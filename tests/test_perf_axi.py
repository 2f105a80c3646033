"""sim.perf's AXI-level DMA model (sim.timing.AxiDma) against the RTL DMA engines.

The engines (hw.system.dma) run in amaranth.sim against the DMA tests' AXI memory with a fixed
read / response latency and no pauses; the cycle at which an engine is idle again after a
sequence of descriptors must equal the model's "landed" time for the same descriptors within a
small bound per descriptor. The burst split of the model is checked against the bursts the
engine really requested.
"""

import numpy as np
import pytest

from hw.system.dma import LoadDMA, StoreDMA
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
