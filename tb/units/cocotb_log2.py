"""cocotb test of hw.units.Log2Quantizer against sim.numerics.log2_round / log2_quantize.

params: width, exp_bits, code_bits, latency, n (random vectors), seed.
"""

import cocotb
import numpy as np

from sim import numerics as nx
from tb.rtl import params
from tb.units.stream import run_stream, start_clock, to_unsigned


@cocotb.test()
async def log2_matches_numerics(dut):
    p = params()
    w, eb, cb, lat = p["width"], p["exp_bits"], p["code_bits"], p["latency"]
    rng = np.random.default_rng(p.get("seed", 1))
    top = (1 << w) - 1
    corner = [0, 1, 2, 3, 0b01100011, top, 1 << (w - 1), (1 << (w - 1)) | (1 << (w - 2)),
              (1 << (w - 1)) - 1]
    corner = [c & top for c in corner]
    n = p["n"]
    # random magnitudes: uniform bit length, then uniform below it
    lengths = rng.integers(0, w + 1, n)
    x = np.array([int(rng.integers(0, 1 << int(L))) if L else 0 for L in lengths] + corner, dtype=object)
    emin = rng.integers(-(1 << (eb - 2)), 1 << (eb - 3), x.size)
    offset = rng.integers(-(1 << (eb - 2)), 1 << (eb - 3), x.size)
    await start_clock(dut)

    def drive(i):
        if i is not None:
            dut.x.value = int(x[i])
            dut.offset.value = to_unsigned(offset[i], eb)
            dut.emin.value = to_unsigned(emin[i], eb)

    got = await run_stream(dut, n=x.size, latency=lat, drive=drive, sample=lambda: (
        dut.lod_out.value.to_signed(), dut.exp.value.to_signed(), dut.code.value.to_unsigned()))
    xs = np.array([int(v) for v in x], dtype=np.int64)
    want_lod = nx.log2_round(xs)
    bad = []
    for i, (lod, e, code) in enumerate(got):
        we = int(nx.log2_quantize(int(xs[i]), offset=int(offset[i]), emin=int(emin[i]), bits=cb))
        if (lod, e, code) != (int(want_lod[i]), we, we - int(emin[i])):
            bad.append((int(xs[i]), int(offset[i]), int(emin[i]), (lod, e, code), (int(want_lod[i]), we)))
    assert not bad, f"{len(bad)} mismatches of {x.size}, first: {bad[:3]}"
