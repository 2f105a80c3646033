"""cocotb test of hw.units.ShifterArray against sim.numerics.shift_divide.

params: lanes, width, shift_bits, latency, n (random vectors), seed.
"""

import cocotb
import numpy as np

from sim import numerics as nx
from tb.rtl import params
from tb.units.stream import pack, run_stream, start_clock, unpack_signed


@cocotb.test()
async def shifter_matches_numerics(dut):
    p = params()
    lanes, w, sb, lat, n = p["lanes"], p["width"], p["shift_bits"], p["latency"], p["n"]
    rng = np.random.default_rng(p.get("seed", 1))
    lo, hi, smax = -(1 << (w - 1)), (1 << (w - 1)) - 1, (1 << sb) - 1
    x = rng.integers(lo, hi + 1, size=(n, lanes))
    s = rng.integers(0, smax + 1, size=(n, lanes))
    # corners: min/max at shift 0 and max shift, exact halves (+-1.5, +-2.5, ...)
    cx = np.resize(np.array([lo, hi, 0, -1, 1, 3, -3, 5, -5, lo + 1, hi - 1, 2]), (6, lanes))
    cs = np.resize(np.array([0, smax, 1, 1, 1, 1, 1, 1, 1, smax, 1, 2]), (6, lanes))
    x, s = np.concatenate([cx, x]), np.concatenate([cs, s])
    await start_clock(dut)

    def drive(i):
        if i is not None:
            dut.x.value = pack(x[i], w)
            dut.shift.value = pack(s[i], sb)

    got = await run_stream(dut, n=len(x), latency=lat, drive=drive,
                           sample=lambda: unpack_signed(dut.out.value.to_unsigned(), w, lanes))
    want = nx.shift_divide(x, s)
    bad = [(i, x[i].tolist(), s[i].tolist(), g) for i, g in enumerate(got) if g != want[i].tolist()]
    assert not bad, f"{len(bad)} mismatches of {len(x)}, first: {bad[:3]}"
