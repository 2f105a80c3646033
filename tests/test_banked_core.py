"""A core with backpressure on the banked global buffers (tb.core.banked), in amaranth.sim:
single layers and a fused MBConv and an attention compiled by sim.compile, bit-exact with
sim.golden and sim.funcsim; the cycles against sim.perf (no bank conflicts in the model) are
printed (docs/global-buffers.md section 4) and can only be more."""

from __future__ import annotations

import numpy as np
import pytest

from sim import funcsim, golden, perf, timing
from tb.core.banked import BankedCoreTop, BankedEnv, simulate_banked
from tb.core.cases import compile_case, make_case

#: in make test: a strided gather / scatter of every port kind (conv, depthwise, pool, attention);
#: the longer layers (many bank conflicts, up to 5x the conflict-free cycles) under make regress
FAST = ["linear_logits", "dw3_s2", "pool", "att"]
LONG = ["pw_residual", "gpw_g3", "dw5_s1_res", "conv3_s2", "mbconv"]
CASES = FAST + [pytest.param(n, marks=pytest.mark.regress) for n in LONG]


def run_banked(name, banks=8):
    prog, cfg, x = make_case(name)
    binary = compile_case(name, prog, cfg)
    top = BankedCoreTop(cfg, banks=banks)
    env = BankedEnv(binary, x, top)
    cycles = simulate_banked(top, env, max_cycles=100_000)
    return prog, binary, x, env, cycles


def assert_core_run(label, name, prog, binary, x, env, cycles):
    """A core run on stalling buffers: its output bit-exact with sim.golden and sim.funcsim,
    and its cycles (printed with -s) at least sim.perf's, which has no bank conflicts."""
    y = prog.outputs[0]
    out = env.outputs()[y]
    np.testing.assert_array_equal(out, golden.run(prog, x)[y])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)[y])
    model = perf.simulate(binary, env=timing.PYTHON_HARNESS).cycles
    print(f"{name}: {label} {cycles} cycles, sim.perf (no conflicts) {model} "
          f"({(cycles - model) / model:+.1%})")
    assert cycles >= model


@pytest.mark.parametrize("name", CASES)
def test_core_on_banked_buffers(name):
    assert_core_run("banked", name, *run_banked(name))


def test_bank_demand_planar_and_blocked():
    """The static estimate of docs/global-buffers.md section 5 for the cases above (no RTL run):
    the words the core's ports ask of the 8 banks, planar and with the channel-blocked what-if
    (``sim.access.bank_demand``), printed with ``-s``. Blocked, the x / o / r words of the conv
    layers shrink; the depthwise layers' drain (one channel x M pixels) grows."""
    from sim.access import bank_demand
    rows = {}
    for name in FAST + LONG:
        prog, cfg, x = make_case(name)
        binary = compile_case(name, prog, cfg)
        model = perf.simulate(binary, env=timing.PYTHON_HARNESS).cycles
        pl, bl = (bank_demand(binary, layout=lay) for lay in ("planar", "blocked"))
        rows[name] = (pl["words"], bl["words"])
        print(f"{name:14} sim.perf {model:5d}  words/8 planar {pl['cycles']:5d}  "
              f"blocked {bl['cycles']:5d} ({(bl['words'] - pl['words']) / pl['words']:+.1%})")
    for name in ("pw_residual", "gpw_g3", "conv3_s2", "mbconv"):
        assert rows[name][1] < rows[name][0], name
    for name in ("dw3_s2", "dw5_s1_res"):
        assert rows[name][1] > rows[name][0], name
    assert rows["pool"][1] == rows["pool"][0]      # it pools the network input (kept planar)
