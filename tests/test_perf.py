"""Cycle model: hand-derived cycle counts of small cases, physical bounds, the CLI.

Hand derivations use the timing documented in sim/perf.py and sim/timing.py (the RTL core's;
tests/test_hw_core.py checks it instruction by instruction against amaranth.sim, and
tests/test_timing.py the latencies against the hw blocks): DRAM 64 B/cycle shared, 16-byte
beats, 64-cycle latency paid when data lands, a DMA SIGNAL fires when its transfers have
landed; in a core unit SETR, WAIT (once satisfied) and SIGNAL take 1 cycle each (the counter
shows a SIGNAL from the next cycle) and a compute instruction takes pre + engine steps + post
cycles before the unit fetches its next one. `paper-1core` has DSP packing (product latency 2):
MAT latency 2 + 1 + log2(T)=3 = 6, R-MAC down-forward 8 + 1 + 2 = 11, self-accumulation 1 + 2 =
3; requant 6 after a 1-cycle output latch.
"""
import json
import subprocess
import sys

import pytest

from sim import zoo
from sim.compile import compile as compile_
from sim.config import AccelConfig
from sim.perf import simulate
from test_funcsim import Builder

ONE = AccelConfig.from_string("paper-1core")     # (8,8,8,8) engines, one core


def _prog(build):
    b = Builder(0)
    build(b)
    return b.prog()


def _setr(binary, stream="core0"):
    return sum(1 for i in binary.streams[stream] if i.op == "SETR")


def test_pointwise_one_core_cycles():
    # PW 64 -> 16 channels on 8x8 pixels, one core, act none.
    prog = _prog(lambda b: b.conv("y", b.input("x", (64, 8, 8)), 16))
    b = compile_(prog, ONE)
    # 22 layer registers per engine (1 cycle each), written once per engine
    assert _setr(b) == 2 * 22
    # LD: weights 16*64 = 1024 B -> 16 cycles [0,16); params 16*32 = 512 B -> 8 cycles [16,24),
    #     lands at 24+64 = 88; input 64*64 = 4096 B -> 64 cycles [24,88), lands at 152.
    # MAT and R-MAC: two WAITs (input, weights) consumed at 152 and 153, 22 SETR [154,176).
    #     The 16 output channels are split 8/8 between the engines: ceil(64/8) reduction steps
    #     x ceil(8/8) lane groups x 64 pixels = 512 steps each. CONV_MAT at 176: pre 3 (fetch,
    #     SETUP, GROUPS) + 512 + post 15 (gather 1 + MAT 6 + latch 1 + requant 6 + 1: the
    #     paper's MAT has 4 requant lanes for its 8 engine lanes, so the last vector takes 2
    #     cycles through them; a vector every 8 steps never waits for them) -> SIGNAL at 706;
    #     CONV_RDF: 3 + 512 + 19 (1 + R-MAC 11 + 1 + 6) -> SIGNAL at 710, seen at 711.
    # ST: waits for both (711), stores 16*64 = 1024 B in 16 cycles [711,727), lands at 791.
    r = simulate(b)
    assert r.cycles == 791
    assert r.layers[0].busy["MAT"] == 3 + 512 + 15 and r.layers[0].busy["RMAC"] == 3 + 512 + 19


def test_depthwise_3x3_stride2_cycles():
    # DW 3x3, stride 2, pad 1: 16 channels, 16x16 -> 8x8, one core.
    prog = _prog(lambda b: b.conv("y", b.input("x", (16, 16, 16)), 16, k=3, s=2, p=1, dw=True))
    b = compile_(prog, ONE)
    assert _setr(b) == 22
    # LD: weights 16*9 = 144 B (9 beats) -> ceil(144/64) = 3 cycles [0,3); params 512 B -> 8
    #     cycles [3,11), lands at 75; input 16*16*16 = 4096 B -> 64 cycles [11,75), lands at 139.
    # R-MAC: WAITs at 139, 140, 22 SETR [141,163); self-accumulation: ceil(16 ch / N=8) x 8
    #     output rows x ceil(8 cols / M=8) passes of k*k = 9 taps = 144 steps; DW_RSA at 163:
    #     pre 2 (fetch, SETUP) + 144 + post 19 (gather 1 + DW latency 3 + channel-serial drain
    #     of the last tile N=8 + latch 1 + requant 6) -> SIGNAL at 328, seen at 329.
    # ST: 16*64 = 1024 B -> 16 cycles [329,345), lands at 409.
    r = simulate(b)
    assert r.cycles == 409
    assert r.layers[0].busy["RMAC"] == 2 + 144 + 19


def test_pointwise_and_depthwise_unpacked_cycles():
    """The two cases above without DSP packing: the product register is 1 cycle shorter (MAT
    latency 1 + 1 + 3 = 5), the R-MAC's down-forward path has no packed product registers
    (8 + 1 = 9) and self-accumulation has 1 (hw.engines: MATEngine.LATENCY, RMACEngine
    .DF_LATENCY / .DW_LATENCY with packed=False); DMA, SETR and the step counts are unchanged."""
    one = ONE.replace(dsp_packing=False)
    prog = _prog(lambda b: b.conv("y", b.input("x", (64, 8, 8)), 16))
    # CONV_MAT at 176: 3 + 512 + post 14 (gather 1 + MAT 5 + latch 1 + requant 6 + drain 1)
    # -> 705;
    # CONV_RDF at 176: 3 + 512 + post 17 (1 + R-MAC 9 + 1 + 6) -> SIGNAL at 708, seen at 709;
    # ST 16 cycles [709,725), lands at 789.
    r = simulate(compile_(prog, one))
    assert r.cycles == 789
    assert r.layers[0].busy["MAT"] == 3 + 512 + 14 and r.layers[0].busy["RMAC"] == 3 + 512 + 17
    prog = _prog(lambda b: b.conv("y", b.input("x", (16, 16, 16)), 16, k=3, s=2, p=1, dw=True))
    # DW_RSA at 163: 2 + 144 + post 17 (gather 1 + DW latency 1 + drain 8 + latch 1 +
    # requant 6) -> SIGNAL at 326, seen at 327; ST [327,343), lands at 407.
    r = simulate(compile_(prog, one))
    assert r.cycles == 407
    assert r.layers[0].busy["RMAC"] == 2 + 144 + 17


def test_one_attention_head_cycles():
    # one head, d = 16, 8x8 = 64 tokens, one core, DRAM 64 B/cycle and latency 64.
    prog = _prog(lambda b: b.attention("y", b.input("x", (48, 8, 8)), 16))
    one_a = ONE.replace(buf_a_bytes=8192)       # with buffer A (`paper` builds none)
    b = compile_(prog, one_a)
    assert _setr(b) == 3 * 7
    # LD: 32 B of head params -> 1 cycle [0,1), lands 65; Q 16*64 = 1024 B -> 16 cycles [1,17),
    #     V 1024 B -> 16 cycles [17,33), their SIGNAL lands at 97; K 1024 B into the core's
    #     buffer A, 64-byte lines (a_line_bytes(8, 64)) at 64 B/cycle -> 16 cycles [33,49), its
    #     SIGNAL lands at 113.
    # MAT: WAITs (Q|V, params) at 97, 98, 7 SETR [99,106).
    # R-MAC: WAITs Q|V at 97, K at 113, params 114, 7 SETR [115,122); step i ReLU(K)^T V:
    #     ceil(64 tokens / N=8) x ceil(16 / M=8) x 16 rows = 256 steps; ATT_KV_RDF at 122:
    #     pre 2 + 256 + post 19 (1 + R-MAC 11 + 1 + 6) -> SIGNAL at 399, seen at 400.
    # AUX adder tree: WAITs K at 113, params 114, 7 SETR [115,122); step ii: 16 rows x
    #     ceil(64 / 8) = 128 steps; ATT_KSUM at 122: 2 + 128 + post 9 (gather 1, total held 1,
    #     latch 1, requant 6) -> SIGNAL at 261, seen at 262.
    # MAT: WAIT for ksum at 262; step iv divisors ATT_DIV at 263: ceil(16/T) x 64 tokens = 128
    #     steps, 2 + 128 + post 9 (1 + MAT 6 + latch 1 + log2 module 1) -> 402; WAIT for S
    #     (seen at 400) at 402; steps iii+v ATT_OUT at 403: ceil(16/8) x 64 x ceil(16/8) = 256,
    #     2 + 256 + post 15 (1 + MAT 6 + latch 1 + requant lane 6 + drain D - 1 = 1: the
    #     MAT's 4 requant lanes take a vector of 8 in D = 2 cycles; issue #14 round 3) -> 676;
    #     two SIGNALs, the second at 677, seen at 678.
    # ST: 16*64 = 1024 B -> 16 cycles [678,694), lands at 758.
    r = simulate(b)
    assert r.cycles == 758
    assert r.layers[0].busy == {"LD": 1 + 16 + 16 + 16, "RMAC": 2 + 256 + 19, "AUX": 2 + 128 + 9,
                                "MAT": 2 + 128 + 9 + 2 + 256 + 15, "ST": 16}
    # the same head with K in B (buffer A too small): one q|k|v LOAD, 48 cycles [1,49), lands
    # at 113; every unit WAITs at 113, 114, SETR [115,122); KV and KSUM at 122 (KSUM SIGNAL
    # at 261, seen 262), DIV at 263 -> 402, OUT at 403 -> 676, ST [678,694), lands at 758
    assert simulate(compile_(prog, ONE.replace(buf_a_bytes=512))).cycles == 758
    # DRAM 128 B/cycle: A's write port (64-byte lines at most) is now the narrower one. Params
    # [0,1); Q [1,9), V [9,17), land at 81; K 1024 B at 64 B/cycle [17,33), lands at 97.
    # R-MAC and AUX: K at 97, params 98, SETR [99,106); KV at 106 -> 383 (seen 384), KSUM at
    # 106 -> 245 (seen 246); MAT: DIV at 247 -> 386, OUT at 387 -> 660, second SIGNAL seen at
    # 662; ST 8 cycles [662,670), lands at 734.
    assert simulate(compile_(prog, one_a.replace(dram_bytes_per_cycle=128))).cycles == 734


def _recount_dram_bytes(b):
    return sum(i["count"] * i["length"] for i in b.streams["global"]
               if i.op in ("LOAD", "STORE"))


def test_b0_r64_bounds_and_consistency():
    prog = zoo.build("b0-r64", seed=0)
    cfg = AccelConfig.from_string("paper")
    b = compile_(prog, cfg)
    r = simulate(b)
    total_macs = zoo.macs(prog)["total"]
    assert r.macs == total_macs
    assert r.macs <= r.cycles * cfg.multipliers                 # no more than peak
    assert r.dram_bytes == _recount_dram_bytes(b)
    # DRAM busy time cannot exceed the run time
    assert r.unit_busy["global.LD"] + r.unit_busy["global.ST"] <= r.cycles
    assert sum(r.breakdown().values()) == pytest.approx(1.0)
    # less bandwidth or fewer cores never make it faster
    slow = simulate(compile_(prog, cfg.replace(dram_bytes_per_cycle=16)))
    small = simulate(compile_(prog, cfg.replace(L=4)))
    assert slow.cycles > r.cycles and small.cycles > r.cycles


def test_b1_r224_op_breakdown():
    """The model's speed is a benchmark (`python -m tb.bench perf`: simulate_s), not a test."""
    prog = zoo.build("b1-r224", seed=0)
    r = simulate(compile_(prog, AccelConfig.from_string("paper")))
    s = r.summary()
    # paper Sec. V-A1: generic / PW / DW / matmul = 1.1 / 91.9 / 5.4 / 1.6 % of B1-R224 ops
    br = s["op_breakdown"]
    assert br["pointwise"] == pytest.approx(0.919, abs=0.01)
    assert br["generic"] == pytest.approx(0.011, abs=0.002)
    assert br["depthwise"] == pytest.approx(0.054, abs=0.005)
    assert 0 < s["mac_utilization"] <= 1 and 0 < s["fps_over_binary_roofline"] <= 1.2


def _b1_r224_paper():
    prog = zoo.build("b1-r224", seed=0)
    return simulate(compile_(prog, AccelConfig.from_string("paper"))).summary()


@pytest.mark.regress
def test_b1_r224_roofline_target():
    """Benchmark guard (issue #4): B1-R224 on `paper` at >= 90 % of the roofline FPS of the same
    binary (a figure of the Binary, not a bound: docs/perf.md)."""
    s = _b1_r224_paper()
    assert s["fps_over_binary_roofline"] >= 0.90, s


# -- CLI ---------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True,
                          timeout=600)


def test_cli_perf_json_and_errors(tmp_path):
    r = _cli("perf", "--model", "b0-r64", "--json", "--plot", str(tmp_path / "l.png"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for k in ("latency_ms", "fps", "gops", "gops_per_dsp", "mac_utilization",
              "binary_roofline_fps", "fps_over_binary_roofline", "bounds", "fps_over_bound",
              "streaming", "op_breakdown"):
        assert k in d
    assert (tmp_path / "l.png").stat().st_size > 1000
    for bad in (("perf", "--config", "nope"), ("perf", "--model", "b7-r224"),
                ("compile", str(tmp_path / "missing.npz"))):
        r = _cli(*bad)
        assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_cli_compile_run_sweep_table7(tmp_path):
    prog = zoo.tiny(seed=0)
    pp = prog.save(tmp_path / "tiny.npz")
    out = tmp_path / "tiny.bin.npz"
    r = _cli("compile", str(pp), "--config", "small", "-o", str(out))
    assert r.returncode == 0, r.stderr
    r = _cli("run", str(out))
    assert r.returncode == 0 and "== golden" in r.stdout, r.stdout + r.stderr
    r = _cli("sweep", "--program", str(pp), "--grid", "L=1,2;N=4", "--config", "small",
             "--csv", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png"), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["L"] for x in rows] == [1, 2] and rows[1]["fps"] > rows[0]["fps"]
    assert (tmp_path / "s.csv").read_text().startswith("L,N,")
    r = _cli("table7", "--models", "b0-r64", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)[0]
    assert row["paper_fps"] is None and row["latency_fps"] > 0
