"""Whole networks through the real accelerator with its DRAM in HDL (``tb.system.fast``).

``hw.system.Accelerator`` and ``tb.system.axi_mem.AxiMemory`` in one design; the CPU is the
board runtime (``runtime.Accelerator`` over ``runtime.cocotb_device.CocotbMemoryDevice``): it
loads the Binary through the memory's debug port, starts the run, serves the HOST_LN on the
interrupt and reads the outputs back; the outputs are compared bit for bit with ``sim.golden``
and ``sim.funcsim`` inside the cocotb test. The accelerator's ``CYCLES`` counter is held against
``sim.perf`` (AXI-level DMA, ``sim.timing.AXI_SYSTEM``) at the memory's read latency and the
testbench CPU's measured HOST_LN time: within 2 % (docs/system.md, "The DRAM in HDL").
"""

import pytest

from sim import compile as sc
from sim import golden, zoo
from sim.config import PRESETS, AccelConfig
from tb.system.fast import PAPER16, PAPER16_BUILD, run_fast

pytestmark = pytest.mark.rtl

SMALL = PRESETS["small"]
LATENCY = 16
PAPER = AccelConfig.from_string(PAPER16)       # the paper's point at the RTL's 16 B/cycle
#: four AXI ports (three LD engines) and a config compiled for a 64 B/cycle DRAM, the build the
#: two 4-port runs share (docs/system.md, "AXI ports")
FOUR64 = AccelConfig.from_string("small:L=4,dram_bytes_per_cycle=64")
FOUR64_BUILD = dict(mem_bytes=8 << 20, axi_ports=4)


def _network(model, cfg, seed=3, layout="planar"):
    prog = zoo.tiny() if model == "tiny" else zoo.build(model)
    t = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(t.shape[-1], seed=seed), t)
    return sc.compile(prog, cfg, layout=layout), x


def _check(model, cfg, tmp_path, layout="planar", **kw):
    """Run ``model`` on ``cfg`` through the RTL (the cocotb test asserts the outputs equal
    sim.golden and sim.funcsim) and compare its cycles with sim.perf's: within 2 %."""
    binary, x = _network(model, cfg, layout=layout)
    rec = run_fast(binary, x, "verilator", tmp_path, latency=LATENCY, **kw)
    assert rec["status"] == "done" and rec["host_requests"] >= 1, rec
    rtl, model_cycles = rec["cycles"], rec["perf_cycles"]
    print(f"\n{model} on {cfg.describe()}: RTL {rtl} cycles, sim.perf {model_cycles} "
          f"({(rtl - model_cycles) / model_cycles:+.2%}); {rec['cycles_per_s']:.0f} cycles/s, "
          f"{rec['cycles_per_cpu_s']:.0f} per CPU second (run {rec['run_s']:.1f} s, load "
          f"{rec['load_s']:.1f} s, read-out {rec['read_s']:.1f} s)")
    assert abs(rtl - model_cycles) <= 0.02 * model_cycles, (rtl, model_cycles)
    return rec


@pytest.mark.slow
def test_tiny_network_fast(tmp_path):
    """sim.zoo.tiny (41 layers, its head's LayerNorm served by the runtime) at L = 1."""
    _check("tiny", SMALL.replace(L=1), tmp_path)


@pytest.mark.slow
def test_tiny_network_big_c_fast(tmp_path):
    """sim.zoo.tiny at L = 1 with buffer C at the ISA's 2 MiB (``sim.isa.BUF_MAX_BYTES``): the
    prefetch arena (on by default there) puts weight groups and records at the top of C, so
    LOADs, the w / p ports and the x port's depthwise weights use addresses of 21 bits."""
    from sim.isa import BUFS, BUF_MAX_BYTES
    cfg = SMALL.replace(L=1, buf_c_bytes=BUF_MAX_BYTES["C"])
    binary, _ = _network("tiny", cfg)
    top = max(i.f["w_addr"] for st in binary.streams.values() for i in st if "w_addr" in i.f)
    assert top >= 1 << 20 and max(i.f["buf_addr"] for i in binary.streams["global"]
                                  if i.op == "LOAD" and i.f["buf"] == BUFS["C"]) >= 1 << 20
    _check("tiny", cfg, tmp_path)


@pytest.mark.slow
def test_tiny_network_blocked_fast(tmp_path):
    """sim.zoo.tiny compiled with ``layout="blocked"`` (every activation channel-blocked, the
    units' BLOCK register; docs/global-buffers.md section 5) at L = 1: the same checks."""
    _check("tiny", SMALL.replace(L=1), tmp_path, layout="blocked")


def _check_word(model, cfg, tmp_path, **kw):
    """``model`` compiled blocked through the accelerator on the word-banked global buffers
    (``buffers="word"``; hw.system.wordbanked): bit-exact (inside the cocotb test), the run not
    stopped by the buffers' violation flag (status done), and the cycles against sim.perf, which
    has no bank model: the cores only stall on bank conflicts, so the RTL can be slower, never
    faster (beyond the 2 % the behavioural buffers are held to); the difference is printed."""
    binary, x = _network(model, cfg, layout="blocked")
    rec = run_fast(binary, x, "verilator", tmp_path, latency=LATENCY, buffers="word", **kw)
    assert rec["status"] == "done" and rec["host_requests"] >= 1, rec
    rtl, model_cycles = rec["cycles"], rec["perf_cycles"]
    print(f"\n{model} blocked on {cfg.describe()}, word buffers: RTL {rtl} cycles, sim.perf "
          f"{model_cycles} ({(rtl - model_cycles) / model_cycles:+.2%}); counters "
          f"{rec['counters']}; run {rec['run_s']:.1f} s, setup {rec['setup_s']:.1f} s")
    assert rtl >= 0.98 * model_cycles, (rtl, model_cycles)
    return rec


@pytest.mark.slow
def test_tiny_network_word_buffers_fast(tmp_path):
    """sim.zoo.tiny compiled blocked at small, L = 1, on the word buffers (8 banks x 8 bytes):
    the whole accelerator as ``zcu102-l1`` builds it, at the small engines."""
    _check_word("tiny", SMALL.replace(L=1), tmp_path)


@pytest.mark.regress
def test_tiny_network_zcu102_l1_fast(tmp_path):
    """sim.zoo.tiny compiled blocked on the ``zcu102-l1`` preset (one paper core, the word
    buffers it is built with, B / C / OUT of the ZCU102 build): ~2.5 min with the Verilator
    build (docs/board.md, "A first build that fits")."""
    _check_word("tiny", PRESETS["zcu102-l1"], tmp_path)


@pytest.mark.regress
def test_b0_r64_blocked_fast(tmp_path):
    """EfficientViT-B0 at 64x64 compiled blocked on the small engines at L = 4."""
    _check("b0-r64", SMALL.replace(L=4), tmp_path, layout="blocked", timeout_s=6 * 3600)


@pytest.mark.regress
def test_b0_r64_fast(tmp_path):
    """EfficientViT-B0 at 64x64 on the small engines at L = 4 (about 310 k cycles)."""
    _check("b0-r64", SMALL.replace(L=4), tmp_path, timeout_s=6 * 3600)


@pytest.mark.regress
def test_tiny_paper_fast(tmp_path):
    """sim.zoo.tiny on the paper's point (L = 16, 16 B/cycle): the build the two below share."""
    _check("tiny", PAPER, tmp_path, timeout_s=2 * 3600, **PAPER16_BUILD)


@pytest.mark.regress
def test_b0_r64_paper_fast(tmp_path):
    """EfficientViT-B0 at 64x64 on the complete paper config (L = 16, 16 B/cycle)."""
    _check("b0-r64", PAPER, tmp_path, timeout_s=4 * 3600, **PAPER16_BUILD)


@pytest.mark.regress
def test_b1_r224_paper_fast(tmp_path):
    """EfficientViT-B1 at 224x224 on the paper config (L = 16, 16 B/cycle), end to end."""
    _check("b1-r224", PAPER, tmp_path, timeout_s=8 * 3600, **PAPER16_BUILD)


@pytest.mark.regress
def test_tiny_four_ports_fast(tmp_path):
    """sim.zoo.tiny on 4 small cores with 4 AXI ports (3 LD engines, each on a read port of
    the memory of its own) and a Binary compiled for 64 B/cycle: bit-exact, within 2 %."""
    _check("tiny", FOUR64, tmp_path, timeout_s=2 * 3600, **FOUR64_BUILD)


@pytest.mark.regress
def test_b0_r64_four_ports_fast(tmp_path):
    """EfficientViT-B0 at 64x64 on FOUR64 (4 AXI ports, 64 B/cycle), the build above."""
    _check("b0-r64", FOUR64, tmp_path, timeout_s=4 * 3600, **FOUR64_BUILD)
