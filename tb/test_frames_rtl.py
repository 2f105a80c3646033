"""Frames back to back through the real accelerator (``FRAMES``, issue #16): ``sim.zoo.tiny``
compiled with ``stream=True`` (its frame fences: WAITs on the previous frame's semaphores) runs
2-3 times on the accelerator with the DRAM in HDL (``tb.system.fast``, as tb/test_fast_rtl.py).

The cocotb test checks every frame's outputs against ``sim.golden`` and ``sim.funcsim`` (each
frame's logits read when the next frame's HOST_LN is requested, the last at the end). Here: the
accelerator's ``CYCLES`` against ``sim.perf`` with the same frames (one instruction context per
unit, the Binary's own fences): within 2 %.
"""

import pytest

from sim import compile as sc
from sim import golden, zoo
from sim.config import PRESETS
from tb.system.fast import run_fast

pytestmark = pytest.mark.rtl

SMALL = PRESETS["small"]
LATENCY = 16


def _tiny(cfg, seed=3):
    prog = zoo.tiny()
    t = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(t.shape[-1], seed=seed), t)
    return sc.compile(prog, cfg, stream=True), x


def _check(cfg, frames, tmp_path, simulator="verilator"):
    binary, x = _tiny(cfg)
    rec = run_fast(binary, x, simulator, tmp_path, latency=LATENCY, frames=frames)
    assert rec["status"] == "done" and rec["frames_checked"] == frames, rec
    rtl, model = rec["cycles"], rec["perf_cycles"]
    print(f"\ntiny --stream on {cfg.describe()}, {frames} frames: RTL {rtl} cycles, sim.perf "
          f"{model} ({(rtl - model) / model:+.2%}; model frames done {rec['perf_frame_done']})")
    assert abs(rtl - model) <= 0.02 * model, (rtl, model)
    return rec


@pytest.mark.slow
@pytest.mark.parametrize("L,frames", [(1, 1), (1, 3), (2, 2)])
def test_tiny_frames_back_to_back(L, frames, tmp_path):
    _check(SMALL.replace(L=L), frames, tmp_path)
