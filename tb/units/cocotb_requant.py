"""cocotb tests of hw.units.Requant: random vectors against sim.numerics.requant / hswish_int,
and the exact round-half vectors of tb.units.requant_ties (hand-derived expected outputs, every
shift up to the largest of the ports).

params: acc_bits, mult_bits, shift_bits, out_bits, signed, residual, hswish, hswish_in_bits,
latency, n (random vectors), seed.
"""

import cocotb
import numpy as np

from sim import numerics as nx
from hw.units import Requant
from tb.rtl import params
from tb.units.requant_ties import tie_vectors
from tb.units.stream import run_stream, start_clock, to_unsigned


def vectors(p, rng):
    """Random and corner vectors; scales chosen so outputs land in, near and beyond the range."""
    n, ab, mb, ob = p["n"], p["acc_bits"], p["mult_bits"], p["out_bits"]
    alo, ahi = -(1 << (ab - 1)), (1 << (ab - 1)) - 1
    acc = np.concatenate([[0, alo, ahi, 1, -1, 3, -3, 5, -5],
                          rng.integers(alo, ahi + 1, n // 2), rng.integers(-(1 << 12), 1 << 12, n - n // 2)])
    m = acc.size
    b = rng.integers(1 << (mb - 1), 1 << mb, m)
    mag = np.floor(np.log2(np.abs(acc * b) + 1)).astype(np.int64)
    c = np.clip(mag - ob + rng.integers(-3, 4, m), 0, min(nx.MAX_SHIFT, (1 << p["shift_bits"]) - 1))
    b[:9], c[:9] = 1, [0, 0, 0, 1, 1, 1, 1, 1, 1]                 # identity, then +-1/2, +-3/2, +-5/2
    v = dict(acc=acc, b=b, c=c,
             offset=np.where(rng.random(m) < 0.5, 0, rng.integers(-(1 << (ob - 1)), 1 << (ob - 1), m)),
             relu_en=rng.integers(0, 2, m))
    v["offset"][:9] = 0
    if p["residual"]:
        v["res"] = rng.integers(-128, 256, m)     # int8 or uint8 residuals (9-bit port)
        v["rb"] = np.where(rng.random(m) < 0.3, 0, rng.integers(1 << (mb - 1), 1 << mb, m))
        v["rc"] = c - rng.integers(0, np.minimum(c, 16) + 1)          # rc <= c, c - rc <= 16
    if p["hswish"]:
        xb = p["hswish_in_bits"]
        v["hswish_en"] = rng.integers(0, 2, m)
        v["relu_en"] = np.where(v["hswish_en"] == 1, 0, v["relu_en"])
        v["three"] = rng.integers(1, 1 << (xb - 4), m)
        v["hb"] = rng.integers(1 << (mb - 1), 1 << mb, m)
        x = _first_stage(v, p, np.arange(m), xb)
        q = np.abs(x * np.clip(x + v["three"], 0, 2 * v["three"]) * v["hb"]) + 1
        v["hc"] = np.clip(np.floor(np.log2(q)).astype(np.int64) - ob + 2 + rng.integers(-2, 3, m),
                          0, nx.MAX_SHIFT)
    return v


def _first_stage(v, p, i, bits, relu=None):
    kw = {}
    if p["residual"]:
        kw = dict(residual=v["res"][i], res_mult=nx.Dyadic(v["rb"][i], v["rc"][i]))
    return nx.requant(v["acc"][i], nx.Dyadic(v["b"][i], v["c"][i]), out_bits=bits,
                      relu=bool(relu), **kw)


def reference(v, p, i):
    """The expected output of vector ``i``, from sim.numerics."""
    if p["hswish"] and v["hswish_en"][i]:
        x = _first_stage(v, p, i, p["hswish_in_bits"], relu=v["relu_en"][i])
        return int(nx.hswish_int(x, int(v["three"][i]), nx.Dyadic(v["hb"][i], v["hc"][i]),
                                 out_bits=p["out_bits"], signed=p["signed"], offset=v["offset"][i]))
    kw = {}
    if p["residual"]:
        kw = dict(residual=v["res"][i], res_mult=nx.Dyadic(v["rb"][i], v["rc"][i]))
    return int(nx.requant(v["acc"][i], nx.Dyadic(v["b"][i], v["c"][i]), out_bits=p["out_bits"],
                          signed=p["signed"], offset=v["offset"][i], relu=bool(v["relu_en"][i]), **kw))


async def _run(dut, p, v):
    """Stream the vectors ``v`` ({port: array}) through the unit; the outputs, in order."""
    widths = {"acc": p["acc_bits"], "offset": p["out_bits"] + 1, "res": Requant.RES_BITS}
    await start_clock(dut)

    def drive(i):
        if i is not None:
            for port, arr in v.items():
                val = int(arr[i])
                getattr(dut, port).value = to_unsigned(val, widths[port]) if port in widths else val

    read = (lambda: dut.out.value.to_signed()) if p["signed"] else (lambda: dut.out.value.to_unsigned())
    return await run_stream(dut, n=len(v["acc"]), latency=p["latency"], drive=drive, sample=read)


@cocotb.test()
async def requant_round_half_up_ties(dut):
    p = params()
    v = tie_vectors(p)
    want = v.pop("want")
    got = await _run(dut, p, v)
    bad = [({k: int(a[i]) for k, a in v.items()}, got[i], int(want[i]))
           for i in range(len(want)) if got[i] != want[i]]
    assert not bad, f"{len(bad)} of {len(want)} round-half vectors wrong, first: {bad[:2]}"
    assert int(v["c"].max()) == (1 << p["shift_bits"]) - 1      # the largest shift was driven


@cocotb.test()
async def requant_matches_numerics(dut):
    p = params()
    rng = np.random.default_rng(p.get("seed", 1))
    v = vectors(p, rng)
    got = await _run(dut, p, v)
    n = len(v["acc"])
    bad = []
    for i in range(n):
        want = reference(v, p, i)
        if got[i] != want:
            bad.append(({k: int(a[i]) for k, a in v.items()}, got[i], want))
    assert not bad, f"{len(bad)} mismatches of {n}, first: {bad[:2]}"
    lo = -(1 << (p["out_bits"] - 1)) if p["signed"] else 0
    hi = (1 << (p["out_bits"] - (1 if p["signed"] else 0))) - 1
    assert lo in got and hi in got, "saturation at both ends was not exercised"
