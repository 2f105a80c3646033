"""Compiler-independent bounds (sim.bounds), the per-layer cycle attribution and streaming mode
(sim.perf, sim.stream).

The hand derivations count MACs and compulsory bytes from first principles (module doc of
sim/bounds.py: a conv has Cout * Cin/g * k*k * Ho*Wo MACs, a linear Cout*Cin, an attention head
2*d*d*n + d*n; one 32-byte parameter record per output channel or attention head; int8 weights,
int32 logits). `paper-1core` has (8*8 + 8*8) * 1 = 128 multipliers and 64 B/cycle DRAM.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from sim import zoo
from sim.bounds import bounds
from sim.compile import compile as compile_
from sim.config import AccelConfig
from sim.perf import attribute, simulate, stream
from sim.stream import footprints
from test_funcsim import Builder

ONE = AccelConfig.from_string("paper-1core")
PAPER = AccelConfig.from_string("paper")
SMALL = AccelConfig.from_string("small")


def _cnn():
    # x (64, 8, 8) -> PW 64->16 -> DW 3x3 s1 p1 -> global pool -> linear 16->10 (int32 logits)
    b = Builder(0)
    x = b.input("x", (64, 8, 8))
    y = b.conv("pw", x, 16)
    y = b.conv("dw", y, 16, k=3, s=1, p=1, dw=True)
    y = b.pool("pool", y)
    b.linear("fc", y, 10, epilogue=False)
    return b.prog()


def test_bounds_hand_derived_cnn():
    bd = bounds(_cnn(), ONE)
    # MACs: PW 16*64*8*8 = 65,536; DW 16*9*8*8 = 9,216; pool 0; linear 10*16 = 160 -> 74,912
    assert bd.macs == 74_912
    assert [l.macs for l in bd.layers] == [65_536, 9_216, 0, 160]
    # compute: ceil(74,912 / 128) = ceil(585.25) = 586 cycles
    assert bd.compute_cycles == 586
    # bytes: weights 1024 + 144 + 160 = 1328; records (16 + 16 + 16 + 10) * 32 = 1856;
    # input 64*8*8 = 4096; logits 10 * 4 = 40 -> 7320 B, / 64 = 114.375 -> 115 cycles
    assert bd.bytes == {"weights": 1328, "params": 1856, "input": 4096, "output": 40,
                        "host_ln": 0}
    assert bd.traffic_bytes == 7320 and bd.traffic_cycles == 115
    # per layer: PW max(512, (1024 + 512 + 4096) / 64 = 88) = 512; DW max(72, 656/64 = 10.25)
    # = 72; pool max(0, 512/64) = 8; linear max(1.25, (160 + 320 + 40)/64 = 8.125) = 8.125
    # -> 600.125 -> 601
    assert [l.cycles for l in bd.layers] == [512, 72, 8, 8.125]
    assert bd.per_layer_cycles == 601
    # FPS at 200 MHz
    assert bd.compute_fps == pytest.approx(200e6 / 586)
    assert bd.fractions(1172) == pytest.approx({"compute": 0.5, "traffic": 115 / 1172,
                                                "per_layer": 601 / 1172})


def test_bounds_hand_derived_attention_and_host_ln():
    b = Builder(1)
    # attention: 2 heads of d = 4 on 4x4 tokens (n = 16): per head 2*4*4*16 + 4*16 = 576 MACs
    x = b.input("x", (24, 4, 4))
    b.attention("att", x, 4)
    bd = bounds(b.prog(), ONE)
    assert bd.macs == 2 * 576
    # records: one per head, 2 * 32 = 64 B; input 24*16 = 384 B; output 8*16 = 128 B
    assert bd.bytes == {"weights": 0, "params": 64, "input": 384, "output": 128, "host_ln": 0}
    assert bd.compute_cycles == 9                       # ceil(1152 / 128)
    assert bd.traffic_cycles == 9                       # ceil(576 / 64)

    b = Builder(2)
    v = b.input("v", (32,))
    h = b.linear("fc1", v, 16)
    h = b.layernorm("ln", h)
    b.linear("fc2", h, 10, epilogue=False)
    bd = bounds(b.prog(), ONE)
    # weights 32*16 + 16*10 = 672; records (16 + 10) * 32 = 832; input 32; logits 40;
    # the host's LN: its 16-byte input stored and 16-byte output loaded = 32
    assert bd.bytes == {"weights": 672, "params": 832, "input": 32, "output": 40, "host_ln": 32}
    # the LN's "compute" is the host's: 2000 + 4 * 16 = 2064 cycles; fc1 max(4, (512+512+32)/64
    # = 16.5); fc2 max(1.25, (160 + 320 + 40)/64 = 8.125) -> 2088.625 -> 2089
    assert [l.cycles for l in bd.layers] == [16.5, 2064, 8.125]
    assert bd.per_layer_cycles == 2089


def test_bounds_do_not_depend_on_buffers_or_fusion():
    """Only MACs, multipliers, bytes and the DRAM rate enter: buffer sizes (which change the
    Binary) do not move a bound; doubling the DRAM rate halves the traffic bound."""
    prog = zoo.tiny(seed=0)
    a = bounds(prog, PAPER)
    b = bounds(prog, PAPER.replace(buf_b_bytes=128 * 1024, buf_c_bytes=64 * 1024))
    assert a.summary() == b.summary()
    c = bounds(prog, PAPER.replace(dram_bytes_per_cycle=128))
    assert c.traffic_cycles == -(-a.traffic_bytes // 128)
    assert c.compute_cycles == a.compute_cycles


def test_attribute_hand_derived():
    # spans (layer, start, end, multipliers or -1): L0 on the MAT (64) [0,10), L1 on the
    # R-MAC (64) [5,15) and a DMA [15,20), L2 on the AUX (0 multipliers) [0,5); total 30,
    # layers complete at 10, 30, 5.
    # [0,5): only L0 has multipliers -> L0 5 (L2's AUX gets nothing while an engine runs)
    # [5,10): L0 and L1, 64 each -> 2.5 each; [10,15): L1 5; [15,20): no engine, the DMA -> L1 5
    # [20,30): nothing runs -> the first layer not complete at 20: L1 gets 10
    spans = [(0, 0, 10, 64), (1, 5, 15, 64), (1, 15, 20, -1), (2, 0, 5, 0)]
    out = attribute(spans, 30, np.array([10, 30, 5]), 3)
    assert out.tolist() == [7.5, 22.5, 0.0]


def _check_report(rep, cfg):
    bd = rep.bounds
    assert rep.cycles >= bd.compute_cycles and rep.cycles >= bd.traffic_cycles
    # the per-layer bound holds for schedules without cross-layer weight prefetch (sim.bounds)
    assert rep.cycles >= bd.per_layer_cycles
    assert sum(l.cycles for l in rep.layers) == pytest.approx(rep.cycles)
    for l in rep.layers:
        assert l.macs <= l.cycles * cfg.multipliers * (1 + 1e-9), l
        assert 0 <= l.utilization <= 1 + 1e-9


@pytest.mark.parametrize("model,cfg", [("tiny", PAPER), ("tiny", SMALL), ("b0-r64", PAPER),
                                       ("b0-r64", ONE)])
def test_perf_respects_every_bound(model, cfg):
    """A model beating a bound is a bug in the model or in the bound."""
    prog = zoo.tiny(seed=0) if model == "tiny" else zoo.build(model, seed=0)
    b = compile_(prog, cfg)
    _check_report(simulate(b), cfg)
    st = stream(b, frames=2)
    assert st["cycles_per_frame"] >= rep_bounds(prog, cfg)


def rep_bounds(prog, cfg):
    bd = bounds(prog, cfg)
    return max(bd.compute_cycles, bd.traffic_cycles)


@pytest.mark.regress
@pytest.mark.parametrize("model", ["b0-r224", "b1-r224", "b2-r224"])
def test_perf_respects_every_bound_table7(model):
    prog = zoo.build(model, seed=0)
    b = compile_(prog, PAPER)
    _check_report(simulate(b), PAPER)
    assert stream(b, frames=2)["cycles_per_frame"] >= rep_bounds(prog, PAPER)


@pytest.mark.parametrize("contexts", [1, 2])
def test_streaming_respects_cross_frame_hazards(contexts):
    """Every write of frame 1 starts after every access of frame 0 to an overlapping byte range
    has completed. The pairs are found here naively (exact byte ranges, every pair), not with
    sim.stream.frame_hazards' blocks; completion: a compute instruction's next fetch, a
    LOAD/STORE's DRAM acceptance + the latency (the simple DRAM model)."""
    prog = zoo.tiny(seed=0)
    b = compile_(prog, SMALL)
    fp = footprints(b)
    trace = []
    simulate(b, frames=2, trace=trace, contexts=contexts)
    seen = {}
    start, done = {}, {}
    for st, u, op, tag, t0, t1, fr in trace:
        k = (st, u)
        pc = seen.get((k, fr), 0)
        seen[(k, fr)] = pc + 1
        start[(fr, k, pc)] = t0
        done[(fr, k, pc)] = t1 + (SMALL.dram_latency_cycles if op in ("LOAD", "STORE") else 0)
    acc = [(k, pc, mem, lo, hi) for k, per in fp.items() for pc, a in enumerate(per)
           for mem, lo, hi, _w in a]
    mems = np.array([str(a[2]) for a in acc])
    los = np.array([a[3] for a in acc])
    his = np.array([a[4] for a in acc])
    checked = 0
    for k, per in fp.items():
        for pc, a in enumerate(per):
            for mem, lo, hi, w in a:
                if not w:
                    continue
                hit = np.nonzero((mems == str(mem)) & (los < hi) & (his > lo))[0]
                for i in hit:
                    kj, pj = acc[i][0], acc[i][1]
                    assert start[(1, k, pc)] >= done[(0, kj, pj)], (k, pc, kj, pj, mem)
                    checked += 1
    assert checked > 100


def test_streaming_contexts_what_if():
    """With one context the what-if changes nothing; with two contexts and no hazards (not
    executable) frames overlap, and still no bound is beaten."""
    prog = zoo.tiny(seed=0)
    b = compile_(prog, PAPER)
    one = stream(b, frames=3)
    assert stream(b, frames=3, contexts=1)["frame_done"] == one["frame_done"]
    two = stream(b, frames=3, contexts=2, hazards={})
    assert two["cycles_per_frame"] < one["cycles_per_frame"]
    assert two["cycles_per_frame"] >= rep_bounds(prog, PAPER)


def test_streaming_frames_and_semaphores():
    prog = zoo.tiny(seed=0)
    b = compile_(prog, PAPER)
    lat = simulate(b).cycles
    st = stream(b, frames=3)
    d = st["frame_done"]
    assert len(d) == 3 and d[0] < d[1] < d[2]
    assert st["cycles_per_frame"] == (d[2] - d[0]) / 2
    # at most one frame's latency per frame: frame k+1 never waits for more than frame k
    # finishing, as with a reset between frames (plus DRAM contention of its first loads)
    assert st["cycles_per_frame"] <= lat * 1.01
    assert 1 <= st["frames_in_flight"] <= 3
    with pytest.raises(ValueError):
        stream(b, frames=1)


# -- commands of docs/perf.md ------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True,
                          timeout=900)


def test_cli_perf_bounds_streaming(tmp_path):
    """`python -m sim perf --model M --config paper [--plot]` on a small model."""
    r = _cli("perf", "--model", "b0-r64", "--config", "paper", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    prog = zoo.build("b0-r64", seed=0)
    bd = bounds(prog, PAPER)
    assert d["bounds"]["compute_cycles"] == bd.compute_cycles
    assert d["fps_over_bound"]["compute"] == pytest.approx(bd.compute_cycles / d["cycles"])
    assert d["streaming"]["frames"] == 3 and d["streaming"]["fps"] > 0
    assert d["streaming"]["fps_over_bound"]["traffic"] <= 1
    r = _cli("perf", "--model", "b0-r64", "--plot", str(tmp_path / "p.png"), "--frames", "2")
    assert r.returncode == 0, r.stderr
    for s in ("streaming mode: FPS", "compute (MACs / multipliers)", "not a bound"):
        assert s in r.stdout
    assert (tmp_path / "p.png").stat().st_size > 1000
    r = _cli("perf", "--model", "b0-r64", "--frames", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--frames" in r.stderr
    # the what-if of docs/perf.md (small model): labelled, and faster than the replay
    r = _cli("perf", "--model", "b0-r64", "--frames", "4", "--contexts", "2",
             "--no-frame-hazards", "--json")
    assert r.returncode == 0, r.stderr
    w = json.loads(r.stdout)["streaming"]
    assert w["what_if"] == "no cross-frame buffer hazards, 2 queue contexts per unit"
    assert w["cycles_per_frame"] < d["streaming"]["cycles_per_frame"]
    r = _cli("perf", "--model", "b0-r64", "--frames", "1", "--contexts", "2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_cli_table7_small():
    """`python -m sim table7` on one small model: both modes next to the bounds."""
    r = _cli("table7", "--models", "b0-r64", "--frames", "2", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)[0]
    assert row["streaming_fps"] > 0 and row["latency_fps"] > 0
    assert row["latency_fps"] <= row["compute_bound_fps"]
    assert row["streaming_fps"] <= min(row["compute_bound_fps"], row["traffic_bound_fps"])
    r = _cli("table7", "--models", "b9-r64")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_bench_bound_ratios_small(tmp_path):
    """`python -m tb.bench bounds` on one small model: the ratios are the bounds' own (recomputed
    here from sim.bounds and the latency cycles), and a second run takes the cached Binary and
    hazards and gives the same figures."""
    from tb.bench import bound_ratios
    a = bound_ratios(["b0-r64"], PAPER, cache=tmp_path, frames=2, stem="taps")
    assert a["cached_binaries"] == 0
    bd = bounds(zoo.build("b0-r64", seed=0), PAPER)
    cyc = 200e6 / a["b0_r64_latency_fps"]
    assert a["b0_r64_latency_over_compute"] == pytest.approx(bd.compute_cycles / cyc, abs=2e-3)
    assert a["b0_r64_streaming_over_traffic"] <= 1
    b = bound_ratios(["b0-r64"], PAPER, cache=tmp_path, frames=2, stem="taps")
    assert b["cached_binaries"] == 1
    assert {k: v for k, v in a.items() if k != "cached_binaries"} == \
        {k: v for k, v in b.items() if k != "cached_binaries"}
    # other options are cached apart and timed as compiled with them
    from sim import compile as sc, perf
    for opts in (dict(prefetch=True, stem="taps"), dict(prefetch=True, stem="im2col")):
        c = bound_ratios(["b0-r64"], PAPER, cache=tmp_path, frames=2, **opts)
        assert c["cached_binaries"] == 0
        fps = perf.simulate(sc.compile(zoo.build("b0-r64", seed=0), PAPER, **opts)).summary()
        assert c["b0_r64_latency_fps"] == round(fps["fps"], 1)


@pytest.mark.regress
def test_cli_perf_b1_r224_and_table7_docs():
    """The long commands of docs/perf.md."""
    r = _cli("perf", "--model", "b1-r224", "--config", "paper", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # 518,963,712 MACs (issue #16) / 2048 multipliers = 253,400.25 -> 253,401
    assert d["macs"] == 518_963_712 and d["bounds"]["compute_cycles"] == 253_401
    for extra in (["--frames", "4", "--no-frame-hazards"], ["--frames", "4", "--contexts", "2"],
                  ["--frames", "4", "--contexts", "2", "--no-frame-hazards"]):
        r = _cli("perf", "--model", "b1-r224", "--config", "paper", "--json", *extra)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["streaming"]["what_if"]
    r = _cli("table7", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {x["model"] for x in rows} >= {"b1-r224", "b2-r224", "b2-r256", "b2-r288"}
    r = subprocess.run([sys.executable, "-m", "tb.bench", "bounds"], capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    line = json.loads([x for x in r.stdout.splitlines() if x.startswith('{"bench"')][0])
    assert 0 < line["b1_r224_latency_over_compute"] <= 1
