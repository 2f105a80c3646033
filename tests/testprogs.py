"""Programs shared by the compiler-pass tests (prefetch, streaming regions)."""

from __future__ import annotations

import functools

import numpy as np

from sim import golden, zoo
from sim.funcsim import run


def tiny_with_input():
    """``sim.zoo.tiny`` (seed 1, 2 calibration images) and one quantized 64x64 input image."""
    prog = zoo.tiny(seed=1, calib_images=2)
    return prog, golden.quantize_input(zoo.random_image(64, seed=1),
                                       prog.tensors[prog.inputs[0]])


def program_cache(programs: dict):
    """``name -> programs[name]()``, each built once per test process."""
    return functools.cache(lambda name: programs[name]())


def assert_runs_like_golden(binary, prog, x, ref=None):
    """``binary`` through ``sim.funcsim`` in both unit orders gives ``sim.golden``'s outputs
    (``ref``: golden's, computed when None) bit for bit."""
    ref = golden.run(prog, x) if ref is None else ref
    for order in ("ld_first", "ld_last"):
        got = run(binary, x, order=order)
        for k in prog.outputs:
            assert np.array_equal(got[k], ref[k]), (order, k)
