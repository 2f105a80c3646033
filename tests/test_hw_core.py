"""The computing core (hw.core) in amaranth.sim, running Binaries compiled by sim.compile.

Every case compiles a single-layer IntProgram for a one-core config, runs core 0 against the
tb.core harness (which plays the LD/ST DMA units over the Binary's DRAM image, the global
buffers and the semaphores) and compares the DRAM output with (a) an independent loop-level
numpy computation of the layer (dot products written out here, the requant path through
sim.numerics via Epilogue.apply) and (b) sim.golden and sim.funcsim; the cycle count is compared
with sim.perf on the same Binary.
"""

from __future__ import annotations

import numpy as np
import pytest

from hw.core import Core, Unit
from sim import compile as sc
from sim import funcsim, golden, perf
from tb.core.cases import CASES, make_case, small_config, pointwise_program
from tb.core.harness import CoreEnv, HarnessError, simulate_amaranth

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def reference(prog, x):
    """Loop-level reference of a single pointwise conv / linear node."""
    (n,) = prog.nodes
    w = np.asarray(n.params["weight"], np.int64)
    b = np.asarray(n.params["bias"], np.int64)
    cout = w.shape[0]
    xt, yt = prog.tensors[n.inputs[0]], prog.tensors[n.output]
    xs = np.asarray(x, np.int64).reshape(xt.shape[0], -1)
    acc = np.zeros((cout, xs.shape[1]), np.int64)
    for co in range(cout):
        for p in range(xs.shape[1]):
            s = int(b[co])
            for ci in range(xs.shape[0]):
                s += int(w.reshape(cout, -1)[co, ci]) * int(xs[ci, p])
            acc[co, p] = s
    if n.epilogue is None:
        return acc.reshape(yt.shape)
    res = xs if n.epilogue.residual is not None else None
    y = n.epilogue.apply(acc, out_bits=yt.bits, signed=yt.signed, residual=res)
    return y.reshape(yt.shape)


def run_case(name, seed=0):
    prog, cfg, x = make_case(name, seed)
    binary = sc.compile(prog, cfg)
    env = CoreEnv(binary, x)
    cycles = simulate_amaranth(Core.from_config(cfg), env, max_cycles=20000)
    return prog, binary, x, env, cycles


@pytest.mark.parametrize("name", [c for c in CASES if c != "pw_8x8"])
def test_core_single_layer(name):
    prog, binary, x, env, cycles = run_case(name)
    out = env.outputs()[prog.outputs[0]]
    np.testing.assert_array_equal(out, reference(prog, x))
    np.testing.assert_array_equal(out, golden.run(prog, x)[prog.outputs[0]])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)[prog.outputs[0]])
    # both engines got work and every compute instruction ran
    ops = {op for _, op, _, _ in env.compute_spans()}
    assert ops == {"CONV_MAT", "CONV_RDF"}
    model = perf.simulate(binary).cycles
    print(f"{name}: rtl {cycles} cycles, sim.perf {model} ({(cycles - model) / model:+.1%})")
    assert model <= cycles <= model * 1.15 + 10


@pytest.mark.slow
def test_core_8x8():
    prog, binary, x, env, cycles = run_case("pw_8x8")
    np.testing.assert_array_equal(env.outputs()["y"], reference(prog, x))


def test_core_rejects_unsupported_instruction():
    """A depthwise tile (not yet implemented on the R-MAC unit) stops the core with error."""
    from tb.core.cases import depthwise_program
    prog = depthwise_program(c=4, h=4, w=4)
    cfg = small_config()
    binary = sc.compile(prog, cfg)
    env = CoreEnv(binary, np.zeros((4, 4, 4), np.int64))
    with pytest.raises(HarnessError, match="error"):
        simulate_amaranth(Core.from_config(cfg), env, max_cycles=2000)


def test_core_unsigned_input_flagged():
    """uint8 inputs (after ReLU) do not fit the signed 8-bit engines: the unit must refuse."""
    prog = pointwise_program(cin=8, cout=4, h=2, w=2)
    prog.tensors["x"].signed = False
    cfg = small_config()
    binary = sc.compile(prog, cfg)
    env = CoreEnv(binary, np.zeros((8, 2, 2), np.int64))
    with pytest.raises(HarnessError, match="error"):
        simulate_amaranth(Core.from_config(cfg), env, max_cycles=2000)


@pytest.mark.parametrize("kw, exc", [
    (dict(N=0), ValueError), (dict(S=65), ValueError), (dict(T=2.0), TypeError),
    (dict(packed=1), TypeError), (dict(M=3, packed=True), ValueError),
])
def test_core_bad_parameters(kw, exc):
    with pytest.raises(exc):
        Core(**kw)


def test_unit_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        Unit(kind="DMA")
