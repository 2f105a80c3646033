"""The whole accelerator (``hw.system.Accelerator``) in RTL: networks bit-exact through AXI.

The DDR is cocotbext-axi's AxiRam, the CPU an AxiLiteMaster (``tb.system.cocotb_accel``,
``tb.system.host``); outputs are compared bit for bit with ``sim.golden`` and ``sim.funcsim``
inside the cocotb test and every AXI burst is checked by ``tb.system.monitor.AxiMonitor``.
The Verilog depends on the config only (the Binary is in the AxiRam), so the tests of one
config share one build.

Cycle counts: the RTL's ``CYCLES`` counter against ``sim.perf`` at the AXI level
(``sim.timing.AXI_SYSTEM``: the dispatcher's fetch, the DMA engines' bursts on the one AXI port,
the semaphore file) on the same Binary, with the run's memory latency and the testbench CPU's
measured HOST_LN time (``tb.system.run.model_config``): within :data:`CYCLE_TOLERANCE` on every
whole network, asserted (docs/system.md, "Cycles").
"""

import pytest

from hw.system.regmap import ErrCode
from sim import golden, zoo
from sim.config import PRESETS
from tb.system.run import run_accelerator

#: the small engines (N=M=T=S=4) with a 128-bit DRAM channel (16 bytes per cycle)
SMALL = PRESETS["small"]
#: |RTL - sim.perf| / sim.perf on a whole network (issue #13)
CYCLE_TOLERANCE = 0.02


def _tiny(seed=3):
    prog = zoo.tiny()
    img = zoo.random_image(prog.tensors[prog.inputs[0]].shape[-1], seed=seed)
    return prog, golden.quantize_input(img, prog.tensors[prog.inputs[0]])


def _report(rec):
    c = rec["counters"]
    rtl, axi, dram = c["CYCLES"], rec["perf_axi_cycles"], rec["perf_cycles"]
    print(f"\nRTL {rtl} cycles; sim.perf AXI-level {axi} ({(rtl - axi) / axi:+.2%}, read "
          f"latency {rec['read_latency_min']}), DRAM model {dram} ({(rtl - dram) / dram:+.2%}); "
          f"{rec['cycles_per_s']:.0f} cycles/s, {rec['bursts']} AXI bursts; counters {c}")
    return rtl, axi


def _check_cycles(rtl, model):
    assert abs(rtl - model) <= CYCLE_TOLERANCE * model, \
        f"RTL {rtl} cycles vs sim.perf {model}: {(rtl - model) / model:+.2%}"


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("L", [1, 4])
def test_tiny_network(tmp_path, L):
    """The whole sim.zoo.tiny (41 layers, its head's LayerNorm served by the host) at L cores."""
    prog, x = _tiny()
    rec = run_accelerator(prog, SMALL.replace(L=L), x, "verilator", tmp_path)
    assert rec["status"] == "done" and rec["host_requests"] == 1
    _check_cycles(*_report(rec))


@pytest.mark.rtl
@pytest.mark.regress
def test_b0_r64_network(tmp_path):
    """EfficientViT-B0 at 64 x 64 (its head's LayerNorm served by the host) on 4 small cores:
    bit-exact with sim.golden and sim.funcsim (inside the cocotb test), cycles within
    CYCLE_TOLERANCE of sim.perf. About 300 k cycles: an hour or more on Verilator here."""
    prog = zoo.build("b0-r64")
    t = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(t.shape[-1], seed=3), t)
    rec = run_accelerator(prog, SMALL.replace(L=4), x, "verilator", tmp_path,
                          timeout_s=8 * 3600)
    assert rec["status"] == "done" and rec["host_requests"] >= 1
    _check_cycles(*_report(rec))


@pytest.mark.rtl
@pytest.mark.regress
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_tiny_network_banked_buffers(tmp_path, simulator):
    """The whole sim.zoo.tiny with the banked global buffers (hw.system.banked, 8 banks of 8
    bytes; cores with backpressure that freeze on bank conflicts): bit-exact (checked inside the
    cocotb test); the cycle cost against sim.perf (which has no bank conflicts) is reported, and
    it can only be slower. docs/global-buffers.md section 4 has the measured figures."""
    prog, x = _tiny()
    rec = run_accelerator(prog, SMALL.replace(L=1), x, simulator, tmp_path, buffers="banked",
                          timeout_s=6 * 3600)
    assert rec["status"] == "done" and rec["host_requests"] == 1
    rtl, model = _report(rec)
    assert rtl >= 0.97 * model, (rtl, model)


@pytest.mark.rtl
@pytest.mark.slow
def test_cli_runs_a_network(capsys):
    """The README's `python -m tb.system.run --model tiny --config small:L=2` (its JSON): the
    whole tiny network at L = 2 (the L = 2 case of test_tiny_network, through the CLI), its
    cycles within CYCLE_TOLERANCE of sim.perf."""
    import json

    from tb.system.run import main
    assert main(["--model", "tiny", "--config", "small:L=2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] and out["bit_exact"] and out["host_requests"] == 1
    assert out["rtl_cycles"] == out["counters"]["CYCLES"] > 0
    print(f"\nL = 2: RTL {out['rtl_cycles']}, sim.perf AXI-level {out['perf_axi_cycles']} "
          f"({out['axi_cycle_diff']:+.2%})")
    _check_cycles(out["rtl_cycles"], out["perf_axi_cycles"])


@pytest.mark.rtl
@pytest.mark.slow
def test_tiny_network_two_axi_ports(capsys):
    """`python -m tb.system.run --model tiny --config small:L=1 --axi-ports 2`: LD reads on
    ``m_axi1``, fetch and ST on ``m_axi``, each port an AxiRam on the same memory: the same
    outputs, every burst legal on both ports, the cycles within CYCLE_TOLERANCE of sim.perf
    with ``AxiDma.ports = 2`` (the fetch's read channel apart from LD's)."""
    import json

    from tb.system.run import main
    assert main(["--model", "tiny", "--config", "small:L=1", "--axi-ports", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] and out["bit_exact"] and out["host_requests"] == 1
    ports = out["bursts_per_port"]
    assert len(ports) == 2 and all(n > 0 for n in ports), ports
    print(f"\ntwo AXI ports: RTL {out['rtl_cycles']} cycles, sim.perf {out['perf_axi_cycles']} "
          f"({out['axi_cycle_diff']:+.2%}), bursts per port {ports}")
    assert out["axi_ports"] == 2
    _check_cycles(out["rtl_cycles"], out["perf_axi_cycles"])


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("ports,L", [  # the most engines and cores by default, the rest in regress
    pytest.param(3, 1, marks=pytest.mark.regress), pytest.param(4, 1, marks=pytest.mark.regress),
    pytest.param(3, 2, marks=pytest.mark.regress), (4, 2)])
def test_tiny_network_several_ld_engines(tmp_path, ports, L):
    """``axi_ports`` = 3 and 4 (docs/system.md, "AXI ports"): fetch and ST on ``m_axi``, 2 or 3
    LD engines on ``m_axi1`` .. (the LD unit's descriptors dealt round-robin), each port an
    AxiRam on the same memory with its own AxiMonitor: bit-exact (inside the cocotb test), the
    register block reports the ports, every port carries bursts, and the cycles are within
    CYCLE_TOLERANCE of sim.perf with ``AxiDma.ports`` (``sim.timing.axi_system(ports)``)."""
    prog, x = _tiny()
    rec = run_accelerator(prog, SMALL.replace(L=L), x, "verilator", tmp_path, axi_ports=ports)
    assert rec["status"] == "done" and rec["host_requests"] == 1
    assert rec["axi_ports"] == ports
    assert len(rec["bursts_per_port"]) == ports and all(n > 0 for n in rec["bursts_per_port"]), \
        rec["bursts_per_port"]
    _check_cycles(*_report(rec))


@pytest.mark.rtl
@pytest.mark.slow
def test_four_ports_stop_on_an_illegal_opcode(tmp_path, simulator):
    """A short run of the 4-port accelerator on each simulator (Icarus too: a whole network
    takes it hours): LD's second word corrupted, the error read through the register block,
    every burst issued before it completed on all four ports (the monitors)."""
    prog, x = _tiny()
    rec = run_accelerator(prog, SMALL.replace(L=1), x, simulator, tmp_path, axi_ports=4,
                          case="illegal_opcode")
    assert rec["status"] == "error" and rec["err_code"] == ErrCode.ILLEGAL_OPCODE, rec
    assert rec["err_queue"] == 0 and rec["err_pc"] == 1 and rec["axi_ports"] == 4, rec
    assert len(rec["bursts_per_port"]) == 4


@pytest.mark.rtl
@pytest.mark.slow
def test_tiny_network_axi_backpressure(tmp_path):
    """Random ready/valid pauses on every AxiRam channel: same outputs, every burst legal."""
    prog, x = _tiny(seed=4)
    rec = run_accelerator(prog, SMALL.replace(L=1), x, "verilator", tmp_path, pause=True, seed=7)
    assert rec["status"] == "done"
    _report(rec)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("case,code,queue,pc", [
    ("illegal_opcode", ErrCode.ILLEGAL_OPCODE, 0, 1),       # LD's second word
    ("dma_window", ErrCode.DMA_WINDOW, None, None),
    ("start_busy", ErrCode.START_BUSY, None, None),
    ("watchdog", ErrCode.WATCHDOG, None, None),
])
def test_errors_read_through_the_register_block(tmp_path, case, code, queue, pc):
    prog, x = _tiny()
    rec = run_accelerator(prog, SMALL.replace(L=1), x, "verilator", tmp_path, case=case)
    assert rec["status"] == "error" and rec["err_code"] == code, rec
    if queue is not None:
        assert rec["err_queue"] == queue and rec["err_pc"] == pc, rec
    if case == "watchdog":
        assert rec["after_reset"] == "done"
    if case == "start_busy":
        assert rec["after_error"] == "done"
