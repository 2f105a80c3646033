"""The whole accelerator (``hw.system.Accelerator``) in RTL: networks bit-exact through AXI.

The DDR is cocotbext-axi's AxiRam, the CPU an AxiLiteMaster (``tb.system.cocotb_accel``,
``tb.system.host``); outputs are compared bit for bit with ``sim.golden`` and ``sim.funcsim``
inside the cocotb test and every AXI burst is checked by ``tb.system.monitor.AxiMonitor``.
The Verilog depends on the config only (the Binary is in the AxiRam), so the tests of one
config share one build.

Cycle counts: the RTL's ``CYCLES`` counter against ``sim.perf`` on the same Binary, reported;
the bound asserted is the one documented in docs/system.md ("Cycles").
"""

import pytest

from hw.system.regmap import ErrCode
from sim import golden, zoo
from sim.config import PRESETS
from tb.system.run import run_accelerator

#: the small engines (N=M=T=S=4) with a 128-bit DRAM channel (16 bytes per cycle)
SMALL = PRESETS["small"]


def _tiny(seed=3):
    prog = zoo.tiny()
    img = zoo.random_image(prog.tensors[prog.inputs[0]].shape[-1], seed=seed)
    return prog, golden.quantize_input(img, prog.tensors[prog.inputs[0]])


def _report(rec):
    c = rec["counters"]
    print(f"\nRTL {c['CYCLES']} cycles, sim.perf {rec['perf_cycles']} "
          f"({(c['CYCLES'] - rec['perf_cycles']) / rec['perf_cycles']:+.1%}), "
          f"{rec['cycles_per_s']:.0f} cycles/s, {rec['bursts']} AXI bursts; counters {c}")


@pytest.mark.rtl
@pytest.mark.slow
def test_tiny_network_L1(tmp_path):
    prog, x = _tiny()
    rec = run_accelerator(prog, SMALL.replace(L=1), x, "verilator", tmp_path)
    assert rec["status"] == "done" and rec["host_requests"] == 1
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
