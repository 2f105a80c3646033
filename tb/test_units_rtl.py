"""The arithmetic units' Verilog on Icarus and Verilator (cocotb), against sim.numerics.

Each case emits one unit's Verilog, builds it on the simulator (cached in build/rtl/) and runs
the cocotb module tb/units/cocotb_<unit>.py, which drives random vectors with a fixed seed plus
corner cases and compares every output with the numpy reference. The default run covers every
unit at its paper width and a second width for some; ``-m regress`` adds width sweeps.

One case:  .venv/bin/python -m pytest tb/test_units_rtl.py -k "adder_tree and icarus"
"""

import pytest

from hw.units import AdderTree, Log2Quantizer, PackedDualMultiplier, Requant, ShifterArray
from tb.rtl import run_cocotb

pytestmark = pytest.mark.rtl

SEED = 20260523


def _run(unit, name, simulator, **params):
    run_cocotb(component=unit, name=name, test_module=f"tb.units.cocotb_{name}",
               simulator=simulator, params=dict(seed=SEED, latency=unit.latency, **params),
               timeout_s=600)


@pytest.mark.parametrize("width,count,register_every", [(16, 8, 1), (8, 5, 2)])
def test_adder_tree(simulator, width, count, register_every):
    unit = AdderTree(width=width, count=count, register_every=register_every)
    _run(unit, "adder_tree", simulator, width=width, count=count, n=400)


@pytest.mark.parametrize("width", [32, 16])
def test_log2(simulator, width):
    unit = Log2Quantizer(width=width)
    _run(unit, "log2", simulator, width=width, exp_bits=unit.exp_bits, code_bits=unit.code_bits, n=600)


@pytest.mark.parametrize("lanes,width,shift_bits", [(8, 16, 4), (4, 8, 4)])
def test_shifter(simulator, lanes, width, shift_bits):
    unit = ShifterArray(lanes=lanes, width=width, shift_bits=shift_bits)
    _run(unit, "shifter", simulator, lanes=lanes, width=width, shift_bits=shift_bits, n=400)


def test_packed_mult(simulator):
    unit = PackedDualMultiplier()
    _run(unit, "packed_mult", simulator, a_bits=8, w_bits=8, n=1500)


_RQ_DEFAULT = dict(acc_bits=32, mult_bits=16, shift_bits=6, out_bits=8, signed=True,
                   residual=True, hswish=True, hswish_in_bits=16)


@pytest.mark.parametrize("over", [{}, dict(out_bits=8, signed=False, residual=False, hswish=False)],
                         ids=["full", "unsigned-plain"])
def test_requant(simulator, over):
    cfg = {**_RQ_DEFAULT, **over}
    _run(Requant(**cfg), "requant", simulator, n=600, **cfg)


# --- width sweeps: `pytest -m regress tb/test_units_rtl.py` ----------------------------------

@pytest.mark.regress
@pytest.mark.parametrize("width,count,register_every", [(8, 64, 3), (24, 3, 0), (4, 16, 1)])
def test_adder_tree_sweep(simulator, width, count, register_every):
    unit = AdderTree(width=width, count=count, register_every=register_every)
    _run(unit, "adder_tree", simulator, width=width, count=count, n=300)


@pytest.mark.regress
@pytest.mark.parametrize("width", [8, 24, 48])
def test_log2_sweep(simulator, width):
    unit = Log2Quantizer(width=width)
    _run(unit, "log2", simulator, width=width, exp_bits=unit.exp_bits, code_bits=unit.code_bits, n=1000)


@pytest.mark.regress
@pytest.mark.parametrize("lanes,width,shift_bits", [(16, 12, 5), (1, 32, 6), (2, 4, 3)])
def test_shifter_sweep(simulator, lanes, width, shift_bits):
    unit = ShifterArray(lanes=lanes, width=width, shift_bits=shift_bits)
    _run(unit, "shifter", simulator, lanes=lanes, width=width, shift_bits=shift_bits, n=500)


@pytest.mark.regress
@pytest.mark.parametrize("a_bits,w_bits", [(9, 8), (10, 8), (4, 4)])
def test_packed_mult_sweep(simulator, a_bits, w_bits):
    _run(PackedDualMultiplier(a_bits=a_bits, w_bits=w_bits), "packed_mult", simulator,
         a_bits=a_bits, w_bits=w_bits, n=3000)


@pytest.mark.regress
@pytest.mark.parametrize("over", [dict(out_bits=16), dict(acc_bits=24, mult_bits=12, hswish=False),
                                  dict(signed=False, hswish_in_bits=12)])
def test_requant_sweep(simulator, over):
    cfg = {**_RQ_DEFAULT, **over}
    _run(Requant(**cfg), "requant", simulator, n=1000, **cfg)
