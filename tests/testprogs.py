"""Programs shared by the compiler-pass tests (prefetch, streaming regions)."""

from __future__ import annotations

import functools

from sim import golden, zoo


def tiny_with_input():
    """``sim.zoo.tiny`` (seed 1, 2 calibration images) and one quantized 64x64 input image."""
    prog = zoo.tiny(seed=1, calib_images=2)
    return prog, golden.quantize_input(zoo.random_image(64, seed=1),
                                       prog.tensors[prog.inputs[0]])


def program_cache(programs: dict):
    """``name -> programs[name]()``, each built once per test process."""
    return functools.cache(lambda name: programs[name]())
