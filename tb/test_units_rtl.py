"""The arithmetic units' Verilog on Icarus and Verilator (cocotb), against sim.numerics.

Each case emits one unit's Verilog, builds it on the simulator (cached in build/rtl/) and runs
the cocotb module tb/units/cocotb_<unit>.py, which drives random vectors with a fixed seed plus
corner cases and compares every output with the numpy reference. The default run covers every
unit at its paper width and a second width for some; ``-m regress`` adds width sweeps.

One case:  .venv/bin/python -m pytest tb/test_units_rtl.py -k "adder_tree and icarus"
"""

import pytest

from hw.units import AdderTree
from tb.rtl import run_cocotb

pytestmark = pytest.mark.rtl

SEED = 20260523


def _run(unit, name, simulator, **params):
    run_cocotb(component=unit, name=name, test_module=f"tb.units.cocotb_{name}",
               simulator=simulator, params=dict(seed=SEED, **params), timeout_s=300)


@pytest.mark.parametrize("width,count,register_every", [(16, 8, 1), (8, 5, 2)])
def test_adder_tree(simulator, width, count, register_every):
    unit = AdderTree(width=width, count=count, register_every=register_every)
    _run(unit, "adder_tree", simulator, width=width, count=count, latency=unit.latency, n=400)


@pytest.mark.regress
@pytest.mark.parametrize("width,count,register_every", [(8, 64, 3), (24, 3, 0), (4, 16, 1)])
def test_adder_tree_sweep(simulator, width, count, register_every):
    unit = AdderTree(width=width, count=count, register_every=register_every)
    _run(unit, "adder_tree", simulator, width=width, count=count, latency=unit.latency, n=300)
