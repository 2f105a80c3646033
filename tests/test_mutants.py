"""A repeatable mutation run (``make regress``): hand-picked mutants of the numerics, the
compiler and the hardware, each applied to a copy of the source tree, and the tests that must
kill it run there in a subprocess. A mutant that survives (its tests still pass) fails here.

One case:  .venv/bin/python -m pytest tests/test_mutants.py -m regress -k rshift_hw -q
Each mutant names the exact source text it replaces, so a refactoring that moves that text
fails loudly (``not found``) instead of silently mutating nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

B0_MATRIX = ["tests/test_funcsim.py", "-k", "b0_r64_tiling_matrix and not regress"]

#: id -> (file, original text, mutated text, pytest arguments of the tests that must kill it)
MUTANTS = {
    # round half down instead of up in the RTL's rounded shift (requant and shifter array)
    "rshift_hw_half_down": (
        "hw/units/_arith.py", "part.eq(value.as_signed() >> sm1)",
        "part.eq((value.as_signed() - 1) >> sm1)",
        ["tests/test_hw_units.py", "-k", "round_half_up_ties"]),
    # the same in the numpy definition
    "rshift_numerics_half_down": (
        "sim/numerics.py", "right = np.right_shift(x + half, pos)",
        "right = np.right_shift(x + half - (pos > 0), pos)",
        ["tests/test_numerics.py", "-k", "rshift_round"]),
    # log2 quantisation without the round bit (paper Sec. IV-D)
    "log2_no_round_bit": (
        "sim/numerics.py", "return np.where(i >= 0, i + round_bit, -1)",
        "return np.where(i >= 0, i, -1)",
        ["tests/test_numerics.py", "-k", "log2"]),
    # an unfused depthwise tile split over cores by rows loses its first-row offset in B
    "compile_dw_row_offset": (
        "sim/compile/ops/depthwise.py", "x_addr=bbase + (ca * (b - a) + aa - a) * W,",
        "x_addr=bbase + ca * (b - a) * W,",
        ["tests/test_funcsim.py", "-k", "tiling_matrix"]),
    # the same in a fused DW -> PW chain
    "compile_fused_dw_row_offset": (
        "sim/compile/ops/chain.py", "x_addr=eb + c0 * rin * W + (aa - a) * W,",
        "x_addr=eb + c0 * rin * W,",
        ["tests/test_funcsim.py", "-k", "tiling_matrix"]),
    # tile offsets that the whole-network tests on one config (test_b0_r64 on paper,
    # test_tiny_model) let through; the B0-R64 tiling matrix (small buffers, 2-3 cores) kills
    # them: a depthwise tile split over cores by rows writes every core's rows at row 0
    "compile_dw_out_row_offset": (
        "sim/compile/ops/depthwise.py",
        "o_addr=obase + (ca * tnr + ra) * Wo, nco=cb - ca, hin=bb - aa,",
        "o_addr=obase + ca * tnr * Wo, nco=cb - ca, hin=bb - aa,",
        B0_MATRIX),
    # a depthwise row tile stored at the first row of its channels in DRAM
    "compile_dw_store_row_offset": (
        "sim/compile/ops/depthwise.py", "ydram = taddr(n.output) + (c0 * Ho + r0) * Wo\n",
        "ydram = taddr(n.output) + c0 * Ho * Wo\n",
        B0_MATRIX),
    # a conv row tile loaded from the first input row
    "compile_conv_load_row_offset": (
        "sim/compile/ops/conv.py",
        'sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]) + a * c.W, c.cin,',
        'sched.dma_rows("LOAD", "B", bbase, taddr(n.inputs[0]), c.cin,',
        B0_MATRIX),
    # a depthwise tile split over cores by channels reads the first channels' weights: killed
    # by the random valid programs (tests/test_random_programs.py) as well
    "compile_dw_weight_channel_offset": (
        "sim/compile/ops/depthwise.py",
        "w_addr=wbase + ca * k * k, p_addr=pbase + ca * PARAM_RECORD,",
        "w_addr=wbase, p_addr=pbase + ca * PARAM_RECORD,",
        ["tests/test_random_programs.py", "-k", "funcsim_equals_golden and not regress"]),
}


def _copy_tree(dst: Path) -> None:
    """The tracked files of the working tree (with their current edits) into ``dst``."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


@pytest.mark.regress
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_killed(name, tmp_path):
    path, old, new, args = MUTANTS[name]
    tree = tmp_path / "tree"
    _copy_tree(tree)
    text = (tree / path).read_text()
    assert text.count(old) == 1, f"{name}: {old!r} not found exactly once in {path}"
    (tree / path).write_text(text.replace(old, new))
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-m", "regress or not regress", *args], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=1800)
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-500:]
    print(f"{name}: {tail}")
    assert r.returncode == 1, f"{name} survived ({' '.join(args)}): {tail}"
