"""A core with backpressure on the banked global buffers (tb.core.banked), in amaranth.sim:
single layers and a fused MBConv and an attention compiled by sim.compile, bit-exact with
sim.golden and sim.funcsim; the cycles against sim.perf (no bank conflicts in the model) are
printed (docs/global-buffers.md section 4) and can only be more."""

from __future__ import annotations

import numpy as np
import pytest

from sim import compile as sc
from sim import funcsim, golden, perf, timing
from tb.core.banked import BankedCoreTop, BankedEnv, simulate_banked
from tb.core.cases import make_case

#: in make test: a strided gather / scatter of every port kind (conv, depthwise, pool, attention);
#: the longer layers (many bank conflicts, up to 5x the conflict-free cycles) under make regress
FAST = ["linear_logits", "dw3_s2", "pool", "att"]
LONG = ["pw_residual", "gpw_g3", "dw5_s1_res", "conv3_s2", "mbconv"]
CASES = FAST + [pytest.param(n, marks=pytest.mark.regress) for n in LONG]


def run_banked(name, banks=8):
    prog, cfg, x = make_case(name)
    binary = sc.compile(prog, cfg)
    top = BankedCoreTop(cfg, banks=banks)
    env = BankedEnv(binary, x, top)
    cycles = simulate_banked(top, env, max_cycles=100_000)
    return prog, binary, x, env, cycles


@pytest.mark.parametrize("name", CASES)
def test_core_on_banked_buffers(name):
    prog, binary, x, env, cycles = run_banked(name)
    y = prog.outputs[0]
    out = env.outputs()[y]
    np.testing.assert_array_equal(out, golden.run(prog, x)[y])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)[y])
    model = perf.simulate(binary, env=timing.PYTHON_HARNESS).cycles
    print(f"{name}: banked {cycles} cycles, sim.perf (no conflicts) {model} "
          f"({(cycles - model) / model:+.1%})")
    assert cycles >= model
