"""The arithmetic units' Verilog on Icarus and Verilator (cocotb), against sim.numerics.

Each case (tb/units/cases.py) emits one unit's Verilog, builds it on the simulator (cached in
build/rtl/) and runs the cocotb module tb/units/cocotb_<unit>.py, which drives random vectors
with a fixed seed plus corner cases and compares every output with the numpy reference. The
default run covers every unit at its paper width and a second width for some; ``-m regress``
adds the width sweeps.

One case:  .venv/bin/python -m pytest tb/test_units_rtl.py -k "requant and icarus"
"""

import pytest

from tb.rtl import run_cocotb
from tb.units.cases import DEFAULT_CASES, REGRESS_CASES

pytestmark = pytest.mark.rtl


def _run(case, simulator):
    unit = case.make()
    run_cocotb(component=unit, name=case.name, test_module=f"tb.units.cocotb_{case.name}",
               simulator=simulator, params=case.test_params(unit), timeout_s=600)


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: c.id)
def test_unit(simulator, case):
    _run(case, simulator)


@pytest.mark.regress
@pytest.mark.parametrize("case", REGRESS_CASES, ids=lambda c: c.id)
def test_unit_sweep(simulator, case):
    _run(case, simulator)
