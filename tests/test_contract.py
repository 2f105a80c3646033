"""One contract: the ranges the hardware implements (``sim.isa.LIMITS``, ``WIDTHS``,
``SHAPE_LIMITS``) equal the RTL's port widths, and the IntProgram validator, the compiler and the
functional simulator refuse what lies outside them (issue #18), naming field, node and value.

Each finding of the issue has a test here that failed before the table existed:
an epilogue ``offset`` outside 17 bits, a 16-bit input tensor, a float offset, a 4-bit output,
an instruction field that does not fit its word (an ``IsaError`` traceback at save time).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Shape

from hw.core import Core, Unit
from hw.core.unit import MAX_KERNEL, REC_FIELDS
from hw.units import Log2Quantizer, Requant
from sim import compile as sc
from sim import funcsim, golden
from sim.intprogram import IntProgramError, TensorInfo
from sim.isa import (FORMATS, LIMITS, REG_LIMITS, SHAPE_LIMITS, WIDTHS, Limit, LimitError,
                     check_limit)
from tb.core.cases import (compile_without_config_check, depthwise_program, linear_program,
                           pointwise_program, pool_program, small_config)
from tb.core.harness import CoreEnv, HarnessError, simulate_amaranth


# -- the table against the RTL -------------------------------------------------------------------

def _ports(component) -> dict:
    return {n: Shape.cast(m.shape) for n, m in component.signature.members.items() if m.is_port}


def _submodules(unit: Unit) -> dict:
    """``{name: elaboratable}`` of the unit's direct submodules, the unit elaborated as it is
    for Verilog (``Fragment.get``: everything it builds is used, nothing left unelaborated)."""
    out = {}
    for sub, name, _src in Fragment.get(unit, None).subfragments:
        objs = [o for o in (getattr(sub, "origins", None) or ()) if not isinstance(o, Module)]
        if objs:
            out[name] = objs[0]
    return out


@pytest.fixture(scope="module")
def rtl_ports():
    """``{"Requant.<port>": Shape, "Log2Quantizer.<port>": Shape}`` as the core's units
    instantiate them (every Requant / Log2Quantizer of every unit kind must agree)."""
    found = {}
    for kind in ("MAT", "RMAC", "AUX"):
        for sub in _submodules(Unit(kind=kind, lanes=2, width=4)).values():
            if isinstance(sub, (Requant, Log2Quantizer)):
                for port, shape in _ports(sub).items():
                    key = f"{type(sub).__name__}.{port}"
                    assert found.setdefault(key, shape) == shape, (kind, key)
    return found


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limit_equals_rtl_port(name, rtl_ports):
    """Every entry of the table names an RTL port whose width and signedness are the table's,
    and the entry's range lies inside the port's."""
    lim = LIMITS[name]
    assert lim.where in rtl_ports, f"{name}: no port {lim.where} in hw.core.unit.Unit"
    shape = rtl_ports[lim.where]
    assert (shape.width, shape.signed) == (lim.bits, lim.signed), name
    lo, hi = lim.range
    plo, phi = ((-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed
                else (0, (1 << shape.width) - 1))
    assert plo <= lo <= hi <= phi


def test_parameter_record_fields_are_in_the_table():
    """Every field of the per-channel parameter record the core reads has a table entry."""
    assert set(REC_FIELDS) <= set(LIMITS)


def test_widths_equal_rtl(rtl_ports):
    subs = _submodules(Unit(kind="MAT", lanes=2, width=4))
    eng = {n: m.shape for n, m in subs["engine"].signature.members.items() if m.is_port}
    x, w = eng["x"], eng["w"]         # data.ArrayLayout: lanes of elements
    assert Shape.cast(x.elem_shape) == Shape(WIDTHS["operand"], True)
    assert Shape.cast(w.elem_shape.elem_shape) == Shape(WIDTHS["weight"], True)
    assert WIDTHS["operand"] == WIDTHS["activation"] + 1      # int8 or uint8, extended
    assert rtl_ports["Requant.res"] == Shape(WIDTHS["operand"], True)
    assert rtl_ports["Requant.acc"] == Shape(WIDTHS["accumulator"], True)
    assert rtl_ports["Requant.three"].width == WIDTHS["mid"]
    # the log2 module takes the divisor at its bound: DIM terms of a ReLU'd int8 times a uint8
    assert rtl_ports["Log2Quantizer.x"].width == WIDTHS["divisor"] <= WIDTHS["accumulator"]
    assert SHAPE_LIMITS["dim"][1] * 127 * 255 < 1 << WIDTHS["divisor"]
    assert Shape.cast(eng["out"].elem_shape).width == WIDTHS["logits"]


def test_shape_limits_equal_rtl_and_isa():
    assert SHAPE_LIMITS["dw_kernel"] == (1, MAX_KERNEL)
    for k in ("pad_t", "pad_b"):
        bits = {n: b for n, b, _ in FORMATS["CONV_MAT"][2]}[k]
        assert SHAPE_LIMITS["padding"] == (0, (1 << bits) - 1)
    assert SHAPE_LIMITS["dim"][1] == (1 << 12) - 1           # the attention's DIM < 2**12
    assert SHAPE_LIMITS["cin_per_group"] == REG_LIMITS["CONV_MAT"]["CIN"]
    assert SHAPE_LIMITS["wout"] == REG_LIMITS["CONV_MAT"]["WOUT"]


def test_check_limit_names_field_and_value():
    with pytest.raises(LimitError, match=r"epilogue: offset = 65536 outside \[-65536, 65535\].*"
                                         r"Requant.offset \(17-bit signed\)"):
        check_limit("offset", np.array([0, 65536]), "epilogue")
    with pytest.raises(LimitError, match="offset must be integer, got dtype float64"):
        check_limit("offset", np.array([-3.75]))
    check_limit("offset", np.array([-65536, 65535]))
    assert Limit(6, False, "x", 0, 47).range == (0, 47)
    assert Limit(8, True, "x").range == (-128, 127)


# -- the findings of issue #18 ------------------------------------------------------------------

def _with_offset(prog, offset):
    (n,) = prog.nodes
    n.epilogue = dataclasses.replace(n.epilogue, offset=offset)
    return prog


@pytest.mark.parametrize("build", [
    lambda: pointwise_program(act="relu", cin=8, cout=4, h=2, w=2),
    lambda: depthwise_program(c=8, h=4, w=4),
    lambda: pool_program(c=6, h=3, w=3),
], ids=["pointwise", "depthwise", "pool"])
@pytest.mark.parametrize("offset", [65536, -65537, 1 << 20])
def test_offset_outside_17_bits_is_refused(build, offset):
    """Finding: an offset outside the requant lanes' signed(17) port compiled, and golden /
    funcsim gave -128 where the RTL gave 127."""
    prog = build()
    c = prog.tensors[prog.outputs[0]].shape[0]
    off = np.zeros(c, np.int64)
    off[-1] = offset
    _with_offset(prog, off)
    with pytest.raises(IntProgramError, match=rf"node 0 \('\w+', op '\w+'\): epilogue: offset = "
                                              rf"{offset} outside \[-65536, 65535\]"):
        sc.compile(prog, small_config())


def test_float_offset_is_refused_not_truncated():
    """Finding: a float offset -3.75 was truncated to -3 silently."""
    prog = _with_offset(pointwise_program(cin=8, cout=4, h=2, w=2), np.full(4, -3.75))
    assert prog.nodes[0].epilogue.offset.dtype == np.float64
    with pytest.raises(IntProgramError, match="offset must be integer, got dtype float64"):
        prog.validate()


def test_16bit_input_is_refused():
    """Finding: a 16-bit input tensor compiled and funcsim differed from golden."""
    prog = pointwise_program(cin=8, cout=4, h=2, w=2)
    prog.tensors["x"] = dataclasses.replace(prog.tensors["x"], bits=16)
    with pytest.raises(IntProgramError, match=r"input 'x' has bits = 16; the cores read 8-bit"):
        sc.compile(prog, small_config())


@pytest.mark.parametrize("bits", [4, 16])
def test_narrow_or_wide_output_is_refused(bits):
    """Finding: a 4-bit output compiled and the core raised its error flag at run time."""
    prog = pointwise_program(cin=8, cout=4, h=2, w=2)
    prog.tensors["y"] = dataclasses.replace(prog.tensors["y"], bits=bits)
    with pytest.raises(IntProgramError, match=rf"output 'y' has bits = {bits}"):
        sc.compile(prog, small_config())


def test_logits_stay_allowed():
    prog = linear_program(cin=12, cout=5)
    assert prog.tensors[prog.outputs[0]].bits == WIDTHS["logits"]
    b = sc.compile(prog, small_config())
    x = np.random.default_rng(1).integers(-128, 128, prog.tensors[prog.inputs[0]].shape)
    np.testing.assert_array_equal(funcsim.run(b, x)["y"], golden.run(prog, x)["y"])


@pytest.mark.parametrize("mutate, pattern", [
    (lambda n: n.attrs.update(padding=8, kernel=15), r"padding = 8 outside \[0, 7\]"),
    (lambda n: n.attrs.update(kernel=16), r"kernel = 16 outside \[1, 15\]"),
])
def test_shapes_outside_the_table_are_refused(mutate, pattern):
    prog = pointwise_program(cin=8, cout=4, h=2, w=2)
    mutate(prog.nodes[0])
    with pytest.raises(IntProgramError, match=pattern):
        prog.validate()


def test_depthwise_kernel_beyond_rmac_is_refused():
    prog = depthwise_program(c=4, h=8, w=8, k=3)
    n = prog.nodes[0]
    n.attrs["kernel"], n.attrs["padding"] = 7, 3
    n.params["weight"] = np.zeros((4, 1, 7, 7), np.int8)
    with pytest.raises(IntProgramError, match=r"depthwise kernel = 7 outside \[1, 5\]"):
        prog.validate()


def test_attention_log2_fields_follow_the_table():
    from tb.core.cases import attention_program
    prog = attention_program(dim=4, heads=2, h=2, w=2)
    n = prog.nodes[-1]
    n.params["log2_offset"] = np.array([0, -129])
    with pytest.raises(IntProgramError, match=r"log2_offset = -129 outside \[-128, 127\]"):
        prog.validate()


def test_instruction_field_overflow_is_a_compile_error():
    """An instruction whose field does not fit its word is refused when it is emitted (a
    CompileError), not at save time (an IsaError traceback)."""
    em = sc._Em(small_config())
    with pytest.raises(sc.CompileError, match=r"LOAD in global: field count = 70000 does not fit"):
        em.emit("global", "LOAD", buf=0, dram_addr=0, buf_addr=0, count=70000, length=1, stride=1)


def _patch_records(binary, field, value):
    """Write ``value`` into ``field`` of every per-channel parameter record of the Binary's
    DRAM image (a corrupted or hand-edited Binary)."""
    i = ("bias", "mult_b", "mult_c", "offset", "res_b", "res_c", "hsw_b", "hsw_c").index(field)
    for name, sym in binary.symbols.items():
        if name.startswith("param:"):
            rec = binary.dram[sym["addr"]:sym["addr"] + sym["nbytes"]].view(np.int32)
            rec.reshape(-1, 8)[:, i] = value


def test_funcsim_refuses_a_record_the_rtl_cannot_compute():
    """funcsim stops where the core's requant lanes cannot follow (offset beyond 17 bits in a
    patched Binary) instead of computing a result the RTL would not give."""
    prog = pointwise_program(cin=8, cout=4, h=2, w=2)
    b = sc.compile(prog, small_config())
    _patch_records(b, "offset", 1 << 16)
    with pytest.raises(funcsim.FuncSimError, match=r"offset = 65536 outside \[-65536, 65535\]"):
        funcsim.run(b, np.zeros((8, 2, 2), np.int64))


def test_funcsim_refuses_4bit_obits():
    prog = pointwise_program(cin=8, cout=4, h=2, w=2)
    b = sc.compile(prog, small_config())
    for i in b.streams["core0"]:
        if i.op == "SETR" and i["reg"] == 9:     # OBITS
            i.f["value"] = 4
    with pytest.raises(funcsim.FuncSimError, match="OBITS = 4"):
        funcsim.run(b, np.zeros((8, 2, 2), np.int64))


@pytest.mark.parametrize("lo_hi", ["lo", "hi"])
def test_offset_extremes_are_bit_exact_on_the_core(lo_hi):
    """At the edges of the table (offset -65536 and 65535, the extreme multipliers and shifts)
    golden, funcsim and the RTL core (amaranth.sim) agree bit for bit."""
    prog = pointwise_program(act="none", cin=8, cout=4, h=2, w=2, seed=3)
    n = prog.nodes[0]
    lo, hi = LIMITS["offset"].range
    off = np.array([lo, hi, -300, 200]) if lo_hi == "lo" else np.array([hi, lo, 129, -129])
    b = np.array([(1 << 16) - 1, 1 << 15, 40000, 1])
    c = np.array([LIMITS["mult_c"].range[1], 20, 10, 0])
    from sim.numerics import Dyadic
    n.epilogue = dataclasses.replace(n.epilogue, offset=off, mult=Dyadic(b, c))
    prog.validate()
    cfg = small_config()
    binary = sc.compile(prog, cfg)
    x = np.random.default_rng(7).integers(-128, 128, (8, 2, 2))
    ref = golden.run(prog, x)["y"]
    np.testing.assert_array_equal(funcsim.run(binary, x)["y"], ref)
    env = CoreEnv(binary, x)
    simulate_amaranth(Core.from_config(cfg), env, max_cycles=4000)
    np.testing.assert_array_equal(env.outputs()["y"], ref)
    assert set(np.unique(ref)) >= {-128, 127}      # both saturations are exercised


# -- token counters and the depthwise kernel (issue #18) -------------------------------------------

def test_token_limits_equal_rtl_counters():
    """H*W of a pool and of an attention: the NTOK register as the units store it, the POOL
    token counter and the attention sequencer's counters (hw.core.attention.CNT bits) hold
    every value of the table's range, and the next value would not fit."""
    from hw.core.attention import CNT
    from hw.core.unit import _reg_store
    store = _reg_store()["NTOK"][0]            # range of values the NTOK register keeps
    for name in ("pool_tokens", "att_tokens"):
        lo, hi = SHAPE_LIMITS[name]
        assert (lo, hi) == (1, (1 << CNT) - 1), name
        assert store.start <= lo and hi < store.stop - 1     # hi + 1 still tells "too many"


@pytest.mark.parametrize("what", ["pool", "attention"])
def test_token_count_outside_the_table_is_refused(what):
    from tb.core.cases import attention_program
    hi = SHAPE_LIMITS["pool_tokens" if what == "pool" else "att_tokens"][1]
    prog = pool_program(c=2, h=2, w=2) if what == "pool" else attention_program(dim=2, heads=1,
                                                                               h=2, w=2)
    x = prog.tensors[prog.nodes[-1].inputs[0]]
    x.shape = (x.shape[0], 1, hi + 1)          # H*W = hi + 1 (never allocated)
    if what == "attention":
        prog.tensors[prog.nodes[-1].output].shape = (2, 1, hi + 1)
    with pytest.raises(IntProgramError, match=rf"{what} tokens H\*W = {hi + 1} outside "
                                              rf"\[1, {hi}\]"):
        prog.nodes[:] = prog.nodes[-1:]
        prog.inputs[:] = [prog.nodes[0].inputs[0]]
        prog.validate()


def _even_dw(n_cfg, k):
    """A 2-channel k x k depthwise conv without padding on 4x5 pixels, compiled for N = n_cfg
    without validate(cfg) (which sim.compile calls: it refuses an N the kernel cannot run)."""
    import numpy as np
    from sim import numerics as nx
    from sim.intprogram import Epilogue, IntProgram, Node
    rng = np.random.default_rng(k)
    t = {"x": TensorInfo("x", (2, 4, 5), 8, True, 0.05),
         "y": TensorInfo("y", (2, 5 - k, 6 - k), 8, True, 0.1)}
    node = Node("dw", "conv", ["x"], "y", dict(kernel=k, stride=1, padding=0, groups=2),
                dict(weight=rng.integers(-127, 128, (2, 1, k, k)).astype(np.int8),
                     bias=rng.integers(-300, 300, 2).astype(np.int32)),
                Epilogue(mult=nx.to_dyadic(np.full(2, 0.01)), offset=np.zeros(2, np.int64)))
    prog = IntProgram(t, [node], ["x"], ["y"]).validate()
    cfg = small_config(N=n_cfg, M=2, T=2, S=2)
    return (prog, cfg, compile_without_config_check(prog, cfg),
            rng.integers(-128, 128, (2, 4, 5)))


def test_depthwise_kernel_bound_is_the_rtls():
    """sim.isa.dw_kernel_ok is the RTL's rule (hw.core.unit: ``kk >= N + 1``): a 2x2 depthwise
    conv (4 taps) runs bit-exact on a core with N = 3 (4 = N + 1) and stops the core with its
    error flag at N = 4, where validate(cfg) and sim.compile name the kernel, and funcsim
    refuses the Binary a compiler without that check would emit."""
    from sim.isa import dw_kernel_ok
    prog, cfg, binary, x = _even_dw(3, 2)
    assert dw_kernel_ok(2, 3)
    prog.validate(cfg)
    env = CoreEnv(binary, x)
    simulate_amaranth(Core.from_config(cfg), env, max_cycles=4000)
    np.testing.assert_array_equal(env.outputs()["y"], golden.run(prog, x)["y"])
    prog, cfg, binary, x = _even_dw(4, 2)
    assert not dw_kernel_ok(2, 4)
    with pytest.raises(IntProgramError, match=r"depthwise kernel = 2: k\*k = 4 < N \+ 1 = 5"):
        prog.validate(cfg)
    with pytest.raises(sc.CompileError, match=r"node 0 \('dw', op 'conv'\): depthwise kernel"
                                              r" = 2: k\*k = 4 < N \+ 1 = 5"):
        sc.compile(prog, cfg)
    with pytest.raises(funcsim.FuncSimError, match="DW_RSA with KERNEL = 2"):
        funcsim.run(binary, x)
    with pytest.raises(HarnessError, match="flagged an error"):
        simulate_amaranth(Core.from_config(cfg), CoreEnv(binary, x), max_cycles=4000)


def test_attention_reads_int8_only():
    """Found by the random programs on the core RTL (tb/test_random_rtl.py): an attention
    whose q|k|v are uint8 (a ReLU pointwise producing them) compiled, funcsim equalled golden,
    and the core stopped with its error flag (the attention steps run with XSIGNED = 1 only).
    The validator refuses it now, naming the tensor."""
    from tb.core.cases import attention_program
    prog = attention_program(dim=4, heads=1, h=2, w=2)
    prog.tensors["x"].signed = False
    with pytest.raises(IntProgramError, match=r"node 0 \('att', op 'linear_attention'\): input "
                                              r"'x' is uint8: the attention steps read int8"):
        prog.validate()
