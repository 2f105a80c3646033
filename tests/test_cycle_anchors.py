"""Independent cycle anchors (issue #20): for every compute instruction kind, on a small config
(N = M = T = S = 4), unpacked and with DSP packing, in single- and multi-tile layers and split
over two cores, the cycles from the instruction's fetch to the unit's next fetch, derived by
hand from the RTL's documented sequencing (docs/hw-core.md, "Schedules" and "Cycle counts vs
sim.perf"; hw/core/unit.py; hw-engines.md), are compared with

* the RTL core: ``hw.core.Core`` in amaranth.sim driven by the core harness
  (``tb.core.harness.CoreEnv``: the fetch cycle of every instruction of every unit), and
* ``sim.perf`` (its trace: each instruction's fetch and the unit's next fetch),

so a change of the RTL's timing, or a cycle model fitted to a wrong RTL, shows against numbers
that come from neither. (``make test``: sim.perf on every anchor, the RTL on ``DEFAULT_RTL``;
``make regress``: the RTL on every anchor.) (Multi-core: the core harness runs one core; the L = 2 anchors are
checked against sim.perf, and each core's instructions have the one-core timing checked above.)

The arithmetic, once (nothing below is read from sim.timing or sim.perf):

* a unit fetches one instruction at a time and drains a compute instruction's output pipeline
  before its next fetch: duration = pre + engine steps + post;
* CONV_MAT / CONV_RDF: pre 3 (FETCH, SETUP, GROUPS) + ``cout_g + 1`` DIVIDE cycles when the
  tile holds GROUPS > 1 groups; steps ``GROUPS * ceil(cout_g / 4 lanes) * ho * WOUT * k*k *
  ceil(CIN / 4)``; post 1 (gather) + engine latency + 1 (latch, records) + 6 (requant; 0 for the
  int32 logits, NOEPI);
* DW_RSA: pre 2 (FETCH, SETUP); steps ``ceil(nco / N) * ho * ceil(WOUT / M) * k*k``; post 1 +
  DW latency + N = 4 (hold bank, one channel per cycle) + 1 + 6;
* POOL / ATT_KSUM: pre 2; steps ``nco * ceil(NTOK / N)`` / ``d * ceil(n / N)``; post 1 + 1
  (total held) + 1 + 6 = 9;
* ATT_KV_RDF: pre 2; steps ``d * ceil(d / M) * ceil(n / N)``; post 1 + R-MAC latency + 1 + 6;
* ATT_DIV: pre 2; steps ``n * ceil(d / T)``; post 1 + MAT latency + 1 + 1 (log2 module);
* ATT_OUT: pre 2; steps ``ceil(d / S) * n * ceil(d / T)``; post 1 + MAT latency + 1 (latch)
  + 6 (the MAT's requant lanes, which apply ``out_b`` and the divisor's shift since issue #14
  round 3) + ``D - 1`` (D = S / requant lanes; 0 here: one lane per engine lane).

Engine latencies at N = M = T = S = 4 (hw/engines: MATEngine.LATENCY, RMACEngine.DF_LATENCY /
DW_LATENCY): the MAT's product register P (1; 2 packed: the DSP's pre-adder stage) + 1 +
log2(T) = 2 adder-tree levels = 4 (5 packed); the R-MAC's down-forward chain N + 1 = 5 (+ 2
packed product registers = 7); self-accumulation 1 (+ 2 packed = 3).
"""

from __future__ import annotations

import pytest

from hw.core import Core
from sim import compile as sc
from sim import perf
from sim import timing
from sim.funcsim import build_queues
from tb.core.cases import (attention_program, depthwise_program, generic_program,
                           linear_program, pointwise_program, pool_program, small_config)
from tb.core.harness import UNITS, CoreEnv, simulate_amaranth

COMPUTE = {"CONV_MAT", "CONV_RDF", "DW_RSA", "POOL", "ATT_KV_MAT", "ATT_KV_RDF", "ATT_KSUM",
           "ATT_DIV", "ATT_OUT"}
#: packing adds 1 cycle to the MAT's latency, 2 to the R-MAC's (both modes): the packed anchor
#: of an instruction is its unpacked one plus this (POOL / ATT_KSUM: no engine)
PACKED_EXTRA = {"CONV_MAT": 1, "ATT_DIV": 1, "ATT_OUT": 1, "CONV_RDF": 2, "ATT_KV_RDF": 2,
                "DW_RSA": 2, "POOL": 0, "ATT_KSUM": 0}

TINYBUF = dict(buf_b_bytes=1024, buf_c_bytes=1024, buf_out_bytes=1024)

#: name -> (program factory, its kwargs, config kwargs, the compute instructions of each unit in
#: queue order: (op, tile fields that fix the steps, hand-derived unpacked duration))
ANCHORS = {
    # 8 -> 8 channels, 2x3 pixels (flattened: ho = 6 pixel rows of WOUT = 1); MAT and R-MAC take
    # 4 channels each. MAT: 3 + 1*6*ceil(8/4)=12 steps + 1+4+1+6 = 27; R-MAC: 3 + 12 + 1+5+1+6 = 28
    "pointwise": (pointwise_program, dict(cin=8, cout=8, h=2, w=3), {}, {
        "MAT": [("CONV_MAT", dict(nco=4, ho=6), 27)],
        "RMAC": [("CONV_RDF", dict(nco=4, ho=6), 28)]}),
    # groups 4: cin_g = cout_g = 2; each engine's tile holds GROUPS = 2 groups of 2 channels:
    # 3 + (2 + 1) DIVIDE + 2*ceil(2/4)*6*ceil(2/4) = 12 steps + 12 = 30 (MAT), 31 (R-MAC: +1)
    "grouped": (pointwise_program, dict(cin=8, cout=8, h=2, w=3, groups=4), {}, {
        "MAT": [("CONV_MAT", dict(nco=4, ho=6), 30)],
        "RMAC": [("CONV_RDF", dict(nco=4, ho=6), 31)]}),
    # the stem's shape: 3x3 stride 2, pad 1, 3 -> 4 channels, 5x5 -> 3x3; the MAT takes output
    # rows 0-1 (ho = 2, WOUT = 3): 3 + 1*1*2*3*9*ceil(3/4) = 54 + 12 = 69; the R-MAC row 2:
    # 3 + 27 + 13 = 43
    "generic3x3s2": (generic_program, dict(cin=3, cout=4, h=5, w=5), {}, {
        "MAT": [("CONV_MAT", dict(nco=4, ho=2), 69)],
        "RMAC": [("CONV_RDF", dict(nco=4, ho=1), 43)]}),
    # linear 12 -> 5 without epilogue (int32 logits, no requant: post - 6): MAT 4 outputs (the
    # filters split at whole 4-lane blocks of the pre-tiled weights), 3 + ceil(12/4) = 3 steps
    # + 1+4+1 = 12; R-MAC 1 output: 3 + 3 + 1+5+1 = 13
    "linear_logits": (linear_program, dict(cin=12, cout=5), {}, {
        "MAT": [("CONV_MAT", dict(nco=4, ho=1), 12)],
        "RMAC": [("CONV_RDF", dict(nco=1, ho=1), 13)]}),
    # depthwise 3x3, pad 1, 6 channels, 4x5: 2 + ceil(6/4)*4*ceil(5/4)*9 = 144 steps
    # + 1+1+4+1+6 = 13 -> 159
    "depthwise": (depthwise_program, dict(c=6, h=4, w=5), {}, {
        "RMAC": [("DW_RSA", dict(nco=6, ho=4), 159)]}),
    # pool 6 channels of 3x3 tokens: 2 + 6*ceil(9/4) = 18 + 9 = 29
    "pool": (pool_program, dict(c=6, h=3, w=3), {}, {
        "AUX": [("POOL", dict(nco=6), 29)]}),
    # one head, d = 4, n = 2x4 = 8 tokens: KV 2 + 4*1*2 = 8 + 1+5+1+6 = 23; KSUM 2 + 4*2 + 9 =
    # 19; DIV 2 + 8*1 + 1+4+1+1 = 17; OUT 2 + 1*8*1 + 1+4+1+6+0 = 22
    "attention": (attention_program, dict(dim=4, heads=1, h=2, w=4), {}, {
        "RMAC": [("ATT_KV_RDF", {}, 23)], "AUX": [("ATT_KSUM", {}, 19)],
        "MAT": [("ATT_DIV", {}, 17), ("ATT_OUT", {}, 22)]}),
    # multi-tile: 16 -> 12 channels, 4x8 = 32 pixels, 1 KiB buffers: two weight chunks, row
    # tiles of 21 + 11 pixels (chunk 1: 4 + 4 channels) and 11+10, 6+5 pixels (chunk 2, split
    # by rows between the engines); steps ho * ceil(16/4): MAT 3 + 84 + 12 = 99, 3 + 44 + 12 =
    # 59, 59, 3 + 24 + 12 = 39; R-MAC 3 + 84 + 13 = 100, 60, 3 + 40 + 13 = 56, 3 + 20 + 13 = 36
    "pointwise_multitile": (pointwise_program, dict(cin=16, cout=12, h=4, w=8), TINYBUF, {
        "MAT": [("CONV_MAT", dict(nco=4, ho=21), 99), ("CONV_MAT", dict(nco=4, ho=11), 59),
                ("CONV_MAT", dict(nco=4, ho=11), 59), ("CONV_MAT", dict(nco=4, ho=6), 39)],
        "RMAC": [("CONV_RDF", dict(nco=4, ho=21), 100), ("CONV_RDF", dict(nco=4, ho=11), 60),
                 ("CONV_RDF", dict(nco=4, ho=10), 56), ("CONV_RDF", dict(nco=4, ho=5), 36)]}),
    # multi-tile depthwise: 8 channels, 8x8, 1 KiB buffers: row tiles 3, 3, 2;
    # 2 + 2*3*2*9 = 108 + 13 = 123 (twice), 2 + 72 + 13 = 87
    "depthwise_multitile": (depthwise_program, dict(c=8, h=8, w=8), TINYBUF, {
        "RMAC": [("DW_RSA", dict(nco=8, ho=3), 123), ("DW_RSA", dict(nco=8, ho=3), 123),
                 ("DW_RSA", dict(nco=8, ho=2), 87)]}),
}

#: two cores: each core's tile is a one-core tile of half the rows (checked against sim.perf)
ANCHORS_L2 = {
    # 8 -> 16 channels, 6 pixels: 3 pixels per core, MAT and R-MAC 8 channels each:
    # 3 + ceil(8/4)*3*ceil(8/4) = 12 steps + 12 = 27 (MAT), 28 (R-MAC) on each core
    "pointwise_L2": (pointwise_program, dict(cin=8, cout=16, h=2, w=3), dict(L=2), {
        "MAT": [("CONV_MAT", dict(nco=8, ho=3), 27)],
        "RMAC": [("CONV_RDF", dict(nco=8, ho=3), 28)]}),
    # depthwise 8 channels, 4x5: two output rows per core: 2 + 2*2*2*9 = 72 + 13 = 87
    "depthwise_L2": (depthwise_program, dict(c=8, h=4, w=5), dict(L=2), {
        "RMAC": [("DW_RSA", dict(nco=8, ho=2), 87)]}),
}


def _expected(spec, packed):
    return {u: [(op, f, d + (PACKED_EXTRA[op] if packed else 0)) for op, f, d in lst]
            for u, lst in spec.items()}


def _compile(name, table, packed):
    fn, kw, ckw, spec = table[name]
    prog = fn(**kw)
    cfg = small_config(packed=packed, **ckw)
    # (stem="taps": the generic anchors are the tap-major generic conv path's; the dense stem,
    # sim.compile.stem, has its own core case, tb.core.cases "conv3_s2_im2col")
    return prog, cfg, sc.compile(prog, cfg, stem="taps"), _expected(spec, packed)


def _check_tiles(binary, stream, want):
    """The Binary's compute instructions are the tiles the derivation assumes."""
    q = build_queues(binary)
    for unit, lst in want.items():
        got = [ins for ins, _ in q[(stream, unit)] if ins.op in COMPUTE]
        assert [i.op for i in got] == [op for op, _, _ in lst], (stream, unit)
        for ins, (_, fields, _) in zip(got, lst):
            assert {k: ins[k] for k in fields} == fields, (stream, unit, ins)


def _perf_durations(binary, stream):
    trace = []
    perf.simulate(binary, trace=trace, env=timing.PYTHON_HARNESS)
    out = {}
    for st, unit, op, _tag, start, nxt in trace:
        if st == stream and op in COMPUTE:
            out.setdefault(unit, []).append((op, nxt - start))
    return out


class _Env(CoreEnv):
    """The core harness, also noting the cycle at which each semaphore reached each count."""

    def __init__(self, *a, **kw):
        self.reached = {}
        super().__init__(*a, **kw)

    def edge(self, s):
        before = dict(getattr(self, "sems", {}))
        out = super().edge(s)
        for sem, v in self.sems.items():
            for c in range(before.get(sem, 0) + 1, v + 1):
                self.reached.setdefault((sem, c), self.cycle)
        return out


def _rtl_durations(cfg, binary, x):
    """{unit: [(op, cycles from its fetch until the unit is free)]} of the RTL run. The unit is
    free when it fetches its next instruction; a WAIT is seen when it is consumed, and with the
    harness's registered ready a WAIT already satisfied at the head of the queue is consumed 1
    cycle after it (docs/hw-core.md, "The harness term"): such a WAIT's consumption - 1. A WAIT
    that really waited shows nothing of the instruction before it: refused (not an anchor)."""
    env = _Env(binary, x)
    simulate_amaranth(Core.from_config(cfg), env, max_cycles=5000)
    out = {}
    for u, U in UNITS:
        fetch, instrs = env.fetch_cycle[u], env.instrs[u]
        for i, ins in enumerate(instrs):
            if ins.op not in COMPUTE:
                continue
            nxt = instrs[i + 1]
            free = fetch[i + 1]
            if nxt.op == "WAIT":
                free -= 1
                seen = env.reached[(nxt["sem"], nxt["count"])]
                assert seen < free, f"{U}: the WAIT after {ins.op} blocked: not an anchor"
            out.setdefault(U, []).append((ins.op, free - fetch[i]))
    return out


def _want(expected):
    return {u: [(op, d) for op, _, d in lst] for u, lst in expected.items()}


#: the RTL runs of make test (amaranth.sim, several seconds each): every instruction kind, both
#: packings, single- and multi-tile; make regress runs all of ANCHORS in both packings
DEFAULT_RTL = {("pointwise", False), ("grouped", True), ("generic3x3s2", False),
               ("linear_logits", True), ("depthwise", True), ("pool", False),
               ("attention", False), ("attention", True), ("pointwise_multitile", False),
               ("depthwise_multitile", True)}
_RTL_CASES = [pytest.param(n, p, id=f"{n}-{'packed' if p else 'unpacked'}",
                           marks=() if (n, p) in DEFAULT_RTL else pytest.mark.regress)
              for n in sorted(ANCHORS) for p in (False, True)]


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("name", sorted(ANCHORS))
def test_anchor_perf(name, packed):
    _, _, binary, expected = _compile(name, ANCHORS, packed)
    _check_tiles(binary, "core0", expected)
    assert _perf_durations(binary, "core0") == _want(expected)


@pytest.mark.parametrize("name, packed", _RTL_CASES)
def test_anchor_rtl(name, packed):
    import numpy as np
    prog, cfg, binary, expected = _compile(name, ANCHORS, packed)
    _check_tiles(binary, "core0", expected)
    xt = prog.tensors[prog.inputs[0]]
    x = np.random.default_rng(5).integers(-128, 128, xt.shape)
    assert _rtl_durations(cfg, binary, x) == _want(expected)


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("name", sorted(ANCHORS_L2))
def test_anchor_two_cores_perf(name, packed):
    _, cfg, binary, expected = _compile(name, ANCHORS_L2, packed)
    assert cfg.L == 2
    for core in range(2):
        _check_tiles(binary, f"core{core}", expected)
        assert _perf_durations(binary, f"core{core}") == _want(expected), f"core{core}"
