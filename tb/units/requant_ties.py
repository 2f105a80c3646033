"""Exact round-half vectors for :class:`hw.units.Requant`, with hand-derived expected outputs.

Every rounding of the requant path is ``floor(v / 2**s + 1/2)`` (round half up,
``sim.numerics.rshift_round``). Random vectors almost never hit ``v / 2**s = k + 1/2`` exactly
once ``s`` is more than a few bits, so a unit that rounds half down (or to even, or away from
zero) passes them. These vectors are built so that the value being rounded *is*
``(2k + 1) * 2**(s - 1)`` for every shift ``s`` from 1 up to the largest one the unit can
represent, on each rounding of the configuration:

* the main rounding by ``c`` from ``acc * b`` alone (``b`` a power of two carries the shift);
* (``residual``) from the residual term alone, ``(res * rb) << (c - rc)``, up to the largest
  shift whose tie lies in the domain ``sim.numerics.requant`` defines (``|acc*b| + |res*rb| *
  2**(c - rc) < 2**62``, which every vector here respects), and from ``acc * b`` plus the
  residual together;
* (``hswish``) the main rounding feeding the Hardswish input ``x``, and the Hardswish rounding
  by ``hc`` of ``x * clip(x + three, 0, 2 three) * hb``;
* the largest shifts (``c``, ``hc`` = 2**shift_bits - 1) on the extreme products.

The expected output is derived here by construction (``k + 1`` for a tie at ``k + 1/2``), never
from ``sim.numerics``: the tests compare the RTL with it, so a mutation of either the RTL or the
numpy reference that breaks round-half-up fails. Offsets lift negative ties into an unsigned
output's range (a tie at -1/2 rounded down to -1 would otherwise saturate back to 0).
"""

from __future__ import annotations

import numpy as np

from hw.units.requant import WIDE_BITS

__all__ = ["tie_vectors"]

#: ports of Requant and their defaults for a vector that leaves a feature off
_NEUTRAL = dict(offset=0, relu_en=0, res=0, rb=0, rc=0, hswish_en=0, three=0, hb=0, hc=0)


def _pow2_split(e: int, k: int, a_max: int, b_bits: int):
    """``(acc, b)`` with ``acc * b == (2k + 1) * 2**e``, ``b`` a power of two below
    ``2**b_bits`` and ``|acc| <= a_max`` (``a_max + 1`` for a negative acc); None if impossible."""
    odd = 2 * k + 1
    j = min(e, b_bits - 1)
    acc = odd << (e - j)
    if -(a_max + 1) <= acc <= a_max:
        return acc, 1 << j
    return None


def tie_vectors(p: dict) -> dict:
    """Round-half vectors for a Requant configured by ``p`` (the keys of
    ``tb.units.cases.REQUANT_DEFAULT``). Returns ``{port: int64 array}`` for every input port of
    the configuration, plus ``"want"``: the expected ``out``."""
    ab, mb, sb, ob = p["acc_bits"], p["mult_bits"], p["shift_bits"], p["out_bits"]
    signed, residual, hswish = p["signed"], p["residual"], p["hswish"]
    xb = p.get("hswish_in_bits", 16)
    c_max = (1 << sb) - 1
    a_max = (1 << (ab - 1)) - 1
    lo, hi = ((-(1 << (ob - 1)), (1 << (ob - 1)) - 1) if signed else (0, (1 << ob) - 1))
    # the offset that moves the rounded values (-3..3) well inside the output range
    lift = 0 if signed else -8
    rows = []

    def in_domain(v):
        """Inside the domain sim.numerics.requant defines (and the RTL's 63-bit rounding
        datapath, hw.units.requant.WIDE_BITS, holds): |acc*b| + |res*rb| * 2**(c - rc) < 2**62."""
        wide = abs(v.get("acc", 0) * v.get("b", 0))
        wide += abs(v.get("res", 0) * v.get("rb", 0)) << max(v.get("c", 0) - v.get("rc", 0), 0)
        return wide < 1 << (WIDE_BITS - 1)

    def add(want, **v):
        row = {**_NEUTRAL, **v}
        assert lo <= want <= hi, (want, row)
        assert in_domain(row), row
        rows.append((row, want))

    ks = (0, -1, 1, -2)                     # ties at 1/2, -1/2, 3/2, -3/2
    # 1. the main rounding, acc * b alone: every shift for which the product can be a tie
    for c in range(1, c_max + 1):
        for k in ks:
            split = _pow2_split(c - 1, k, a_max, mb)
            if split is None:
                continue
            acc, b = split
            add(k + 1 - lift, acc=acc, b=b, c=c, offset=lift)
            if k >= 0:                      # ReLU passes positive results unchanged
                add(k + 1 - lift, acc=acc, b=b, c=c, offset=lift, relu_en=1)
    # the largest shift on the extreme products: |acc * b| < 2**(c_max - 1) rounds to 0
    bmax = (1 << mb) - 1
    for acc in (-(a_max + 1), a_max):
        if abs(acc * bmax) < 1 << (c_max - 1):
            add(-lift, acc=acc, b=bmax, c=c_max, offset=lift)
    if residual:
        for c in range(1, c_max + 1):
            for k in ks:
                # 2. the residual term alone: res * rb << (c - rc) with rc = 1, rb = 1 (up to
                #    the largest c whose tie lies inside the domain: 2**(c-1) < 2**62)
                if in_domain(dict(res=2 * k + 1, rb=1, rc=1, c=c)):
                    add(k + 1 - lift, res=2 * k + 1, rb=1, rc=1, c=c, offset=lift)
                # 3. acc * b = k * 2**c plus a residual of +-2**(c-1): a tie at k +- 1/2
                if c >= 2:
                    split = _pow2_split(c - 1, 0, a_max, mb)     # acc * b = 2**(c-1)
                    if split is not None:
                        acc, b = split
                        acc *= 2 * k                             # 2k * 2**(c-1) = k * 2**c
                        if -(a_max + 1) <= acc <= a_max:
                            add(k + 1 - lift, acc=acc, b=b, res=1, rb=1, rc=1, c=c, offset=lift)
                            add(k - lift, acc=acc, b=b, res=-1, rb=1, rc=1, c=c, offset=lift)
        # the largest residual alignments inside the domain (rc = 0: res * rb comes back
        # exactly): c - rc = 61 for res = +-1, 60 for res = +-3
        for r in (-3, -1, 1, 3):
            c = min(c_max, 61 if abs(r) == 1 else 60)
            add(r - lift, res=r, rb=1, rc=0, c=c, offset=lift)
        # the largest shift with the largest residual products: |res * rb| / 2**c_max -> 0
        add(-lift, res=255, rb=bmax, rc=c_max, c=c_max, offset=lift)
        add(-lift, res=-128, rb=bmax, rc=c_max, c=c_max, offset=lift)
    if hswish:
        xmax = (1 << (xb - 1)) - 1
        tmax = (1 << xb) - 1                # three is unsigned(hswish_in_bits)
        # 4. the main rounding into the Hardswish input: x = k + 1 from a tie, then
        #    t = clip(x + three, 0, 2 three) with three = 8 (x + 8 in range), hb = 1, hc = 0:
        #    out = x * (x + 8), exactly
        for c in range(1, c_max + 1):
            for k in ks:
                split = _pow2_split(c - 1, k, a_max, mb)
                if split is None:
                    continue
                acc, b = split
                x = k + 1
                add(x * (x + 8) - lift, acc=acc, b=b, c=c, hswish_en=1, three=8, hb=1, hc=0,
                    offset=lift)
        # 5. the Hardswish rounding: x * t * hb = (2k + 1) * 2**(hc - 1). x = +-2**a enters
        #    unrounded (acc = x, b = 1, c = 0); x = 2**a with three = 2**a gives t = 2**(a+1)
        #    (clipped at 2 three), x = -2**a with three = 2**(a+1) gives t = 2**a.
        for hc in range(1, c_max + 1):
            for k in ks:
                odd = 2 * k + 1
                found = False
                for a in range(0, xb - 1):
                    if found:
                        break
                    for neg in (False, True):
                        x = -(1 << a) if neg else (1 << a)
                        three = (1 << (a + 1)) if neg else (1 << a)
                        if three > tmax or abs(x) > xmax + neg or abs(x) > a_max:
                            continue
                        t = (1 << a) if neg else (1 << (a + 1))
                        q_exp = (2 * a) if neg else (2 * a + 1)     # |x * t| = 2**q_exp
                        j = hc - 1 - q_exp                          # hb = |odd| * 2**j
                        if j < 0 or abs(odd) << j > bmax:
                            continue
                        hb = abs(odd) << j
                        # sign of x * t * hb must equal the sign of odd
                        if (odd < 0) != neg:
                            continue
                        add(k + 1 - lift, acc=x, b=1, c=0, hswish_en=1, three=three, hb=hb,
                            hc=hc, offset=lift)
                        found = True
                        break
        # the largest Hardswish shift on the largest product: rounds to 0
        add(-lift, acc=xmax, b=1, c=0, hswish_en=1, three=tmax, hb=bmax, hc=c_max, offset=lift)
    cols = {port: np.array([r[port] for r, _ in rows], dtype=object) for port in _NEUTRAL}
    cols["acc"] = np.array([r.get("acc", 0) for r, _ in rows], dtype=object)
    cols["b"] = np.array([r.get("b", 0) for r, _ in rows], dtype=object)
    cols["c"] = np.array([r.get("c", 0) for r, _ in rows], dtype=object)
    keep = ["acc", "b", "c", "offset", "relu_en"]
    if residual:
        keep += ["res", "rb", "rc"]
    if hswish:
        keep += ["hswish_en", "three", "hb", "hc"]
    out = {k: cols[k].astype(np.int64) for k in keep}
    # a vector that uses a port the configuration lacks was not generated (checked here)
    for port in set(_NEUTRAL) - set(keep):
        assert not cols[port].astype(bool).any(), port
    out["want"] = np.array([w for _, w in rows], dtype=np.int64)
    return out
