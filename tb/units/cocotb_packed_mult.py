"""cocotb test of hw.units.PackedDualMultiplier: both products against plain multiplication and
sim.numerics.packed_dual_multiply.

params: a_bits, w_bits, latency, n (random vectors), seed.
"""

import itertools

import cocotb
import numpy as np

from sim import numerics as nx
from tb.rtl import params
from tb.units.stream import run_stream, start_clock, to_unsigned


@cocotb.test()
async def packed_products(dut):
    p = params()
    ab, wb, lat, n = p["a_bits"], p["w_bits"], p["latency"], p["n"]
    rng = np.random.default_rng(p.get("seed", 1))
    ea = [-(1 << (ab - 1)), -1, 0, 1, (1 << (ab - 1)) - 1]
    ew = [-(1 << (wb - 1)), -1, 0, 1, (1 << (wb - 1)) - 1]
    corner = np.array(list(itertools.product(ea, ew, ew)))         # all extreme triples
    rand = np.stack([rng.integers(ea[0], ea[-1] + 1, n), rng.integers(ew[0], ew[-1] + 1, n),
                     rng.integers(ew[0], ew[-1] + 1, n)], 1)
    v = np.concatenate([corner, rand])
    await start_clock(dut)

    def drive(i):
        if i is not None:
            dut.a.value = to_unsigned(v[i, 0], ab)
            dut.w_hi.value = to_unsigned(v[i, 1], wb)
            dut.w_lo.value = to_unsigned(v[i, 2], wb)

    got = await run_stream(dut, n=len(v), latency=lat, drive=drive,
                           sample=lambda: (dut.p_hi.value.to_signed(), dut.p_lo.value.to_signed()))
    hi, lo = nx.packed_dual_multiply(v[:, 0], v[:, 1], v[:, 2])
    bad = [(v[i].tolist(), g) for i, g in enumerate(got)
           if g != (int(v[i, 0] * v[i, 1]), int(v[i, 0] * v[i, 2])) or g != (int(hi[i]), int(lo[i]))]
    assert not bad, f"{len(bad)} mismatches of {len(v)}, first: {bad[:3]}"
