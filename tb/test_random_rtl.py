"""Random valid programs on the computing core's Verilog (issue #18).

Programs drawn by ``tb.core.random_programs.programs`` (the generator of
tests/test_random_programs.py) for the one-core config of the core's RTL tests
(``tb.core.cases.small_config()``: its Verilog is already built for tb/test_core_rtl.py), with
a fixed seed; all of a run's programs in one simulation (tb/core/cocotb_random.py). Each output
must equal sim.golden bit for bit (in cocotb) and each cycle count sim.perf's on the same Binary
with the Python harness's timing (``sim.timing.PYTHON_HARNESS``).

``make test``: ``FAST`` programs on Verilator; ``make regress``: ``REGRESS`` more on Verilator
and Icarus.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from hw.core import Core
from sim import compile as sc
from sim import perf, timing
from tb.core.cases import small_config
from tb.core.random_programs import programs
from tb.rtl import REPO_ROOT, run_cocotb

pytestmark = pytest.mark.rtl

FAST, REGRESS = 3, 24
#: the stem mapping (sim.compile.stem): a drawn generic conv that is the program's first layer
#: keeps the generic tap-major path, so that the random programs run it (the dense stem has its
#: own core cases, tb.core.cases "conv3_s2_im2col")
STEM = "taps"


def draw_programs(n: int, at: int, cfg) -> list:
    """``n`` programs (with their inputs), small ones (at most 2 map layers of at most 8
    channels and 6x6 pixels, a few hundred cycles each). Program ``i`` is the first random
    example hypothesis generates with seed ``at + i`` (its very first example is the minimal
    one, a 1x1x1 pointwise, and later ones are mutations of earlier ones: neither is taken)."""
    out = []
    for i in range(n):
        got = []

        @seed(at + i)
        @settings(max_examples=2, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(px=programs(cfg, max_layers=2, rtl=True, max_hw=6, max_c=8))
        def collect(px):
            got.append(px)

        collect()
        out.append(got[-1])
    return out


def _run(n, at, simulator, tmp_path):
    cfg = small_config()
    drawn = draw_programs(n, at, cfg)
    files = []
    for i, (prog, x) in enumerate(drawn):
        sc.compile(prog, cfg, stem=STEM)    # a capacity refusal would show here, not in cocotb
        p, xp = tmp_path / f"p{i}.npz", tmp_path / f"x{i}.npy"
        prog.save(p)
        np.save(xp, x)
        files.append([str(p), str(xp)])
    run_cocotb(component=Core.from_config(cfg), name="core", test_module="tb.core.cocotb_random",
               simulator=simulator,
               params=dict(programs=files, config=cfg.to_json(), max_cycles=100_000,
                           stem=STEM),
               timeout_s=3600)
    runs = sorted((REPO_ROOT / "build" / "rtl" / simulator).glob(
        f"core-*/run-{os.getpid()}/random_cycles.json"), key=lambda f: f.stat().st_mtime)
    cycles = json.loads(runs[-1].read_text())
    assert len(cycles) == len(drawn)
    for (prog, _), got in zip(drawn, cycles):
        model = perf.simulate(sc.compile(prog, cfg, stem=STEM),
                              env=timing.PYTHON_HARNESS).cycles
        print(f"{[n.kind for n in prog.nodes]}: RTL {got} cycles, sim.perf {model}")
        assert got == model, f"{prog.summary()}\nRTL {got} cycles, sim.perf {model}"
    return drawn


def test_random_programs_rtl(tmp_path):
    """FAST random programs, fixed seed (33: together every layer kind the core runs:
    pointwise, grouped, generic, depthwise, attention, pool, linear), on Verilator."""
    assert len(_run(FAST, 33, "verilator", tmp_path)) == FAST


@pytest.mark.regress
def test_random_programs_rtl_regress(simulator, tmp_path):
    assert len(_run(REGRESS, 1820, simulator, tmp_path)) == REGRESS
