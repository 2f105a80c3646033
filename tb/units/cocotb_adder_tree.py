"""cocotb test of hw.units.AdderTree: random and extreme vectors against an exact sum.

params: width, count, latency, n (random vectors), seed.
"""

import cocotb
import numpy as np

from tb.rtl import params
from tb.units.stream import pack, run_stream, start_clock


@cocotb.test()
async def adder_tree_sums(dut):
    p = params()
    w, count, lat, n = p["width"], p["count"], p["latency"], p["n"]
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    rng = np.random.default_rng(p.get("seed", 1))
    corner = [np.full(count, lo), np.full(count, hi), np.zeros(count, dtype=np.int64),
              np.array([lo if i % 2 else hi for i in range(count)]),
              np.array([hi if i == 0 else lo for i in range(count)])]
    vecs = np.concatenate([np.array(corner, dtype=np.int64).reshape(-1, count),
                           rng.integers(lo, hi + 1, size=(n, count))])
    await start_clock(dut)

    def drive(i):
        if i is not None:
            dut.inputs.value = pack(vecs[i], w)

    got = await run_stream(dut, n=len(vecs), latency=lat, drive=drive,
                           sample=lambda: dut.output.value.to_signed())
    want = [int(sum(int(x) for x in v)) for v in vecs]   # exact Python-int sum
    bad = [(i, vecs[i].tolist(), g, e) for i, (g, e) in enumerate(zip(got, want)) if g != e]
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]}"
