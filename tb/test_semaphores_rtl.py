"""hw.system.semaphores.SemaphoreFile's Verilog on Icarus and Verilator (tb/system/cocotb_sems.py):
random SIGNAL / WAIT traffic against tb.system.sem_model (a model written from sim.isa), with
same-id collisions, back-to-back signals, counts up to the field maximum (saturation), a reset
between two rounds, and each counter's value read back.

One simulator:  .venv/bin/python -m pytest tb/test_semaphores_rtl.py -k icarus
"""

import pytest

from hw.system.semaphores import SemaphoreFile
from tb.rtl import run_cocotb

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("banks", [1, 2])
def test_semaphore_file(simulator, banks):
    # 15 ports = the accelerator at L = 4; 20 counters, traffic on the first 8 (collisions);
    # with two banks (frames back to back) then 4 rounds over frames f, f + 1 without reset
    dut = SemaphoreFile(count=20, ports=15, banks=banks)
    run_cocotb(component=dut, name=f"sems{banks}", test_module="tb.system.cocotb_sems",
               simulator=simulator, timeout_s=900,
               params={"ports": 15, "count": 20, "sems": 8, "seed": 11, "cycles": 500,
                       "big": 0.05, "frames": 4 if banks == 2 else 0})
