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

CASES = ["pw_residual", "gpw_g3", "linear_logits", "dw3_s2", "dw5_s1_res", "conv3_s2", "pool",
         "mbconv", "att"]


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
