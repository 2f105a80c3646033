"""The whole accelerator (``hw.system.Accelerator``) in RTL: networks bit-exact through AXI.

The DDR is cocotbext-axi's AxiRam, the CPU an AxiLiteMaster (``tb.system.cocotb_accel``,
``tb.system.host``); outputs are compared bit for bit with ``sim.golden`` and ``sim.funcsim``
inside the cocotb test, every AXI burst is checked by ``tb.system.monitor.AxiMonitor``.
"""

import pytest

from sim import zoo
from sim.config import PRESETS
from tb.system.run import run_accelerator

#: the small engines (N=M=T=S=4) with a 128-bit DRAM channel
SMALL = PRESETS["small"]


def _tiny():
    prog = zoo.tiny()
    return prog, zoo.random_image(prog.tensors[prog.inputs[0]].shape[-1], seed=3)


@pytest.mark.rtl
@pytest.mark.slow
def test_tiny_network_L1(tmp_path):
    prog, img = _tiny()
    from sim import golden
    x = golden.quantize_input(img, prog.tensors[prog.inputs[0]])
    rec = run_accelerator(prog, SMALL.replace(L=1), x, "verilator", tmp_path)
    assert rec["status"] == "done"
    print(rec)
