"""The DMA engines' Verilog on Icarus and Verilator (cocotb + cocotbext-axi AxiRam as the DDR).

tb/system/dma_top.py joins a LoadDMA, a StoreDMA and a buffer memory; tb/system/cocotb_dma.py
runs random LOADs then STOREs (with and without random AXI pauses and buffer back-pressure)
against sim.funcsim, checks every burst, and the window fault. ``-m regress`` adds a longer
random soak at another burst configuration.

One case:  .venv/bin/python -m pytest tb/test_dma_rtl.py -k "default and icarus"
"""

import pytest

from tb.rtl import run_cocotb
from tb.system.dma_cases import CFG
from tb.system.dma_top import DmaTop

pytestmark = pytest.mark.rtl

BASE = 0x1_2345_0000     # above 4 GB; a multiple of the AxiRam size (64 KB)


def _run(simulator, *, name, seed, n_load, n_store, max_burst=64, outstanding=4,
         data_width=128):
    top = DmaTop(max_burst=max_burst, outstanding=outstanding, data_width=data_width,
                 buf_bytes=CFG.buf_b_bytes)
    run_cocotb(component=top, name=name, test_module="tb.system.cocotb_dma",
               simulator=simulator, timeout_s=900,
               params={"seed": seed, "n_load": n_load, "n_store": n_store, "base": BASE,
                       "max_burst": max_burst, "data_width": data_width, "addr_width": 40})


def test_dma_default(simulator):
    _run(simulator, name="dma_top", seed=1, n_load=30, n_store=30)


@pytest.mark.regress
@pytest.mark.parametrize("seed", [2, 3])
def test_dma_soak(simulator, seed):
    _run(simulator, name="dma_top_b8", seed=seed, n_load=80, n_store=80, max_burst=8,
         outstanding=2)
