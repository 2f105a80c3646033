"""The check every whole-Binary RTL testbench ends with: outputs against both references."""

from __future__ import annotations

import numpy as np

__all__ = ["assert_matches_references"]


def assert_matches_references(binary, x, out: dict) -> None:
    """Assert ``out`` (``{output name: array}`` read back from the RTL's DRAM) equals
    ``sim.golden`` and ``sim.funcsim`` on ``binary`` and input ``x``, bit for bit."""
    from sim import funcsim, golden
    ref = golden.run(binary.prog, x)
    fs = funcsim.run(binary, x)
    for name in binary.prog.outputs:
        for what, r in (("sim.golden", ref[name]), ("sim.funcsim", fs[name])):
            bad = np.argwhere(np.asarray(out[name]) != r)
            assert bad.size == 0, (f"{name}: {len(bad)} of {r.size} outputs differ from {what}, "
                                   f"first at {bad[0].tolist()}")
