# amaranth: UnusedElaboratable=no
"""The computing core (hw.core) in amaranth.sim, running Binaries compiled by sim.compile.

Every case compiles a single-layer IntProgram for a one-core config, runs core 0 against the
tb.core harness (which plays the LD/ST DMA units over the Binary's DRAM image, the global
buffers and the semaphores) and compares the DRAM output with (a) an independent loop-level
numpy computation of the layer (dot products written out here, the requant path through
sim.numerics via Epilogue.apply) and (b) sim.golden and sim.funcsim; the cycle count, and the
cycle at which every instruction of every unit is fetched, must equal sim.perf's on the same
Binary (``check_cycles``; sim.timing holds the RTL's timing).
"""

from __future__ import annotations

import numpy as np
import pytest

from hw.core import Core, Unit
from sim import compile as sc
from sim import funcsim, golden, perf, timing
from sim.compile.tiling import att_aux_half
from sim.isa import att_s_bytes, att_s_line, att_s_offsets
from tb.core.cases import CASES, compile_case, make_case, small_config, pointwise_program
from tb.core.harness import UNITS, CoreEnv, HarnessError, simulate_amaranth



def reference_conv(prog, x):
    """Loop-level reference of a single kxk conv node (dense, grouped or depthwise; zero
    padding, stride): the sums written out tap by tap, then the epilogue."""
    (n,) = prog.nodes
    w = np.asarray(n.params["weight"], np.int64)
    b = np.asarray(n.params["bias"], np.int64)
    k, s, pad = (int(n.attrs[a]) for a in ("kernel", "stride", "padding"))
    groups = int(n.attrs.get("groups", 1))
    yt = prog.tensors[n.output]
    C, H, W = x.shape
    cout, cin_g = w.shape[:2]
    cout_g = cout // groups
    _, Ho, Wo = yt.shape
    acc = np.zeros(yt.shape, np.int64)
    for co in range(cout):
        c0 = co // cout_g * cin_g
        for oy in range(Ho):
            for ox in range(Wo):
                v = int(b[co])
                for ci in range(cin_g):
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = oy * s + ky - pad, ox * s + kx - pad
                            if 0 <= iy < H and 0 <= ix < W:
                                v += int(w[co, ci, ky, kx]) * int(x[c0 + ci, iy, ix])
                acc[co, oy, ox] = v
    res = x if n.epilogue.residual is not None else None
    return n.epilogue.apply(acc, out_bits=yt.bits, signed=yt.signed, residual=res)


def reference(prog, x):
    """Loop-level reference of a single pointwise conv / linear / kxk conv / pooling node."""
    (n,) = prog.nodes
    if n.op == "conv" and int(n.attrs.get("kernel", 1)) > 1:
        return reference_conv(prog, np.asarray(x, np.int64))
    if n.op == "global_avgpool":
        yt = prog.tensors[n.output]
        acc = np.array([sum(int(v) for v in np.asarray(x)[c].reshape(-1))
                        for c in range(x.shape[0])], np.int64)
        return n.epilogue.apply(acc, out_bits=yt.bits, signed=yt.signed)
    w = np.asarray(n.params["weight"], np.int64)
    b = np.asarray(n.params["bias"], np.int64)
    cout = w.shape[0]
    xt, yt = prog.tensors[n.inputs[0]], prog.tensors[n.output]
    xs = np.asarray(x, np.int64).reshape(xt.shape[0], -1)
    groups = int(n.attrs.get("groups", 1))
    cin_g, cout_g = xs.shape[0] // groups, cout // groups
    acc = np.zeros((cout, xs.shape[1]), np.int64)
    for co in range(cout):
        gi = co // cout_g
        for p in range(xs.shape[1]):
            s = int(b[co])
            for ci in range(cin_g):
                s += int(w.reshape(cout, -1)[co, ci]) * int(xs[gi * cin_g + ci, p])
            acc[co, p] = s
    if n.epilogue is None:
        return acc.reshape(yt.shape)
    res = xs if n.epilogue.residual is not None else None
    y = n.epilogue.apply(acc, out_bits=yt.bits, signed=yt.signed, residual=res)
    return y.reshape(yt.shape)


def check_cycles(name, binary, env, cycles):
    """The RTL run's cycle count and the fetch cycle of every instruction of every unit (a WAIT:
    the cycle it is consumed) equal sim.perf's on the same Binary, exactly. sim.perf is run
    with ``env=sim.timing.PYTHON_HARNESS``, the timing of the world the harness plays around the
    core: its registered ``wait.ready`` makes a WAIT whose semaphore is already satisfied take 2
    cycles instead of 1, and its LD/ST DMA units run in zero time. The count for the
    accelerator (combinational semaphore file, DRAM model of the config) is printed too."""
    trace = []
    model = perf.simulate(binary, trace=trace, env=timing.PYTHON_HARNESS).cycles
    system = perf.simulate(binary).cycles
    print(f"{name}: rtl {cycles} cycles, sim.perf {model} (harness timing; "
          f"{system} with the system's semaphores and DRAM model)")
    for u, U in UNITS:
        want = [(op, start) for st, un, op, _, start, _ in trace if st == "core0" and un == U]
        got = env.fetch_cycle[u]
        assert len(got) == len(want), f"{name}/{u}: {len(got)} fetches, sim.perf {len(want)}"
        for i, ((op, w), g) in enumerate(zip(want, got)):
            assert g == w, (f"{name}/{u}: instruction {i} ({op}, after "
                            f"{want[i - 1][0] if i else '-'}) fetched at cycle {g}, sim.perf "
                            f"says {w}: update sim/timing.py")
    assert cycles == model


def run_case(name, seed=0):
    prog, cfg, x = make_case(name, seed)
    binary = compile_case(name, prog, cfg)
    env = CoreEnv(binary, x)
    cycles = simulate_amaranth(Core.from_config(cfg), env, max_cycles=20000)
    return prog, binary, x, env, cycles


BIG = ("pw_8x8", "dw3_s2_8x8", "conv3_s2_8x8", "conv3_s2_8x8_im2col")
ATT_PREFIX = ("att", "litemla")     # attention cases: tests at the end of this file
BLOCKS = ("mbconv", "mbconv_s2", "mbconv_rq", "stem_block_im2col")


@pytest.mark.parametrize("name", [c for c in CASES if c not in BIG + BLOCKS
                                  and not c.startswith(ATT_PREFIX)])
def test_core_single_layer(name):
    prog, binary, x, env, cycles = run_case(name)
    out = env.outputs()[prog.outputs[0]]
    np.testing.assert_array_equal(out, reference(prog, x))
    np.testing.assert_array_equal(out, golden.run(prog, x)[prog.outputs[0]])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)[prog.outputs[0]])
    # both engines got work and every compute instruction ran
    ops = {op for _, op, _, _ in env.compute_spans()}
    dw = prog.nodes[0].kind == "depthwise"
    if prog.nodes[0].op == "global_avgpool":
        assert ops == {"POOL"}
    else:
        assert ops == ({"DW_RSA"} if dw else {"CONV_MAT", "CONV_RDF"})
    check_cycles(name, binary, env, cycles)


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_core_8x8(name):
    """The paper's engine sizes N = M = T = S = 8."""
    prog, binary, x, env, cycles = run_case(name)
    np.testing.assert_array_equal(env.outputs()["y"], reference(prog, x))
    check_cycles(name, binary, env, cycles)


@pytest.mark.parametrize("name", [pytest.param("mbconv"),
                                  pytest.param("mbconv_s2", marks=pytest.mark.slow),
                                  pytest.param("mbconv_rq", marks=pytest.mark.slow)])
def test_core_mbconv(name):
    """A whole MBConv (PW expand -> DW -> PW project + residual), compiled as one fused chain:
    the intermediates stay in buffer B, the MAT runs the next tile's expand conv while the
    R-MAC runs this tile's depthwise conv (inter-layer pipeline), synchronised by SIGNAL/WAIT."""
    prog, binary, x, env, cycles = run_case(name)
    out = env.outputs()["y"]
    np.testing.assert_array_equal(out, golden.run(prog, x)["y"])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)["y"])
    assert {op for _, op, _, _ in env.compute_spans()} == {"CONV_MAT", "CONV_RDF", "DW_RSA"}
    check_cycles(name, binary, env, cycles)


def test_core_stem_block():
    """The input stem as the dense stem fuses it (issue #16, stem2 round): the stem as a
    pointwise conv over the unfolded input, the depthwise conv and the second pointwise conv
    in one chain of 3 row tiles, that conv's residual (the stem's output) read from the tile's
    own rows in B; bit-exact and every instruction at sim.perf's cycle."""
    prog, binary, x, env, cycles = run_case("stem_block_im2col")
    assert [lay.get("fused_into") for lay in binary.layers] == [None, "stem", "stem"]
    assert binary.layers[0]["tiles"] == 3 and binary.layers[0]["stem"] == "im2col"
    out = env.outputs()["y"]
    np.testing.assert_array_equal(out, golden.run(prog, x)["y"])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)["y"])
    assert {op for _, op, _, _ in env.compute_spans()} == {"CONV_MAT", "CONV_RDF", "DW_RSA"}
    check_cycles("stem_block_im2col", binary, env, cycles)


def test_core_rejects_unsupported_instruction():
    """A register setting outside what is implemented (a Hardswish with a 12-bit intermediate,
    MIDBITS != 16) stops the core with its error flag instead of computing garbage. (The
    IntProgram validator refuses mid_bits != 16, sim.isa.WIDTHS; here the Binary is patched.)"""
    prog = pointwise_program(act="hswish", cin=8, cout=4, h=2, w=2)
    cfg = small_config()
    binary = sc.compile(prog, cfg)
    setrs = [i for i in binary.streams["core0"] if i.op == "SETR" and i["reg"] == 11]
    assert setrs and all(i["value"] == 16 for i in setrs)
    for i in setrs:
        i.f["value"] = 12
    env = CoreEnv(binary, np.zeros((8, 2, 2), np.int64))
    with pytest.raises(HarnessError, match="error"):
        simulate_amaranth(Core.from_config(cfg), env, max_cycles=2000)


@pytest.mark.parametrize("reg, value", [
    ("CIN", 65536), ("CIN", -1), ("WOUT", 4096),
    # the units store these registers narrower than 32 bits (hw.core.unit.REG_STORE): values
    # whose low bits are legal, and the 32-bit extremes, must still be refused
    ("CIN", (1 << 16) + 8), ("CIN", 2**31 - 1), ("CIN", -2**31), ("WIN", (1 << 20) + 2),
    ("WOUT", (1 << 12) + 2), ("KERNEL", 17), ("STRIDE", -2**31 + 1), ("PAD_L", 256)])
def test_core_rejects_registers_out_of_range(reg, value):
    """A conv whose registers leave sim.isa.REG_LIMITS (the compiler refuses to emit one; here
    the Binary is patched after compiling) stops the core with its error flag: e.g. CIN > 65535
    would overflow the 16-bit operand of CIN * k*k and CIN * XSTRIDE."""
    from sim.isa import REG_LIMITS, REGS
    lo, hi = REG_LIMITS["CONV_MAT"][reg]
    assert not lo <= value <= hi
    prog = pointwise_program(act="relu", cin=8, cout=4, h=2, w=2)
    cfg = small_config()
    binary = sc.compile(prog, cfg)
    setrs = [i for i in binary.streams["core0"] if i.op == "SETR" and i["reg"] == REGS[reg]]
    assert setrs
    for i in setrs:
        i.f["value"] = value
    env = CoreEnv(binary, np.zeros((8, 2, 2), np.int64))
    with pytest.raises(HarnessError, match="flagged an error"):
        simulate_amaranth(Core.from_config(cfg), env, max_cycles=2000)


@pytest.mark.parametrize("kw, exc", [
    (dict(N=0), ValueError), (dict(S=65), ValueError), (dict(T=2.0), TypeError),
    (dict(p_reuse=1), TypeError), (dict(stall=True, p_reuse="yes"), TypeError),
    (dict(packed=1), TypeError), (dict(M=3, packed=True), ValueError),
    (dict(a_bytes=8), ValueError), (dict(a_line=8), ValueError), (dict(a_line=48), ValueError),
    (dict(N=32, a_line=16), ValueError), (dict(a_line=128), ValueError),
])
def test_core_bad_parameters(kw, exc):
    with pytest.raises(exc):
        Core(**kw)


@pytest.mark.parametrize("kw, match", [
    (dict(S=8, requant_mat=3), "requant_mat must divide S=8"),
    (dict(M=4, requant_rmac=8), "requant_rmac"), (dict(requant_mat=0), "requant_mat"),
    (dict(M=8, requant_rmac=4, requant_rmac_res=3), "requant_rmac_res must divide requant_rmac=4"),
    (dict(M=8, requant_rmac_res=16), "requant_rmac_res"),
])
def test_core_bad_requant_lanes(kw, match):
    with pytest.raises(ValueError, match=match):
        Core(**kw)


def test_unit_requant_lanes():
    """R requant lanes: a divisor of the unit's lanes; the drain takes lanes / R cycles."""
    assert Unit(kind="MAT", lanes=8).requant_lanes == 8
    assert Unit(kind="MAT", lanes=8, requant_lanes=2).drain == 4
    for bad in (3, 0, 16):
        with pytest.raises(ValueError, match="requant_lanes"):
            Unit(kind="RMAC", lanes=8, requant_lanes=bad)
    with pytest.raises(TypeError, match="requant_lanes"):
        Unit(kind="RMAC", lanes=8, requant_lanes=2.0)


def test_unit_requant_res_lanes():
    """R_res of the R lanes have the residual path (R-MAC only): a residual vector drains in
    lanes / R_res cycles; the other lanes are built without the residual inputs."""
    u = Unit(kind="RMAC", lanes=8, requant_lanes=8, requant_res_lanes=2)
    assert (u.drain, u.drain_res) == (1, 4)
    assert Unit(kind="RMAC", lanes=8, requant_lanes=4).drain_res == 2
    for bad in (3, 0, 8):
        with pytest.raises(ValueError, match="requant_res_lanes"):
            Unit(kind="RMAC", lanes=8, requant_lanes=4, requant_res_lanes=bad)
    with pytest.raises(ValueError, match="requant_res_lanes: only an RMAC"):
        Unit(kind="MAT", lanes=8, requant_res_lanes=4)
    import re
    from amaranth.back import verilog
    text = verilog.convert(Unit(kind="RMAC", lanes=4, width=4, requant_lanes=4,
                                requant_res_lanes=1), name="unit", emit_src=False)
    mods = {m.group(1): m.group(2) for m in re.finditer(
        r"module \\?(unit\.requant_\d+)\s*\((.*?)endmodule", text, re.S)}
    assert sorted(mods) == [f"unit.requant_{s}" for s in range(4)]
    assert [bool(re.search(r"input \[15:0\] rb;", mods[f"unit.requant_{s}"]))
            for s in range(4)] == [True, False, False, False]


def _drain_stalls(name):
    """{opcode: sim.timing stall cycles} of case ``name``'s Binary (every compute instruction)."""
    from sim.funcsim import build_queues
    from sim.isa import REG_NAMES
    prog, cfg, x = make_case(name)
    out = {}
    for q in build_queues(compile_case(name, prog, cfg)).values():
        regs = {}
        for ins, _ in q:
            if ins.op == "SETR":
                regs[REG_NAMES[ins["reg"]]] = ins["value"]
            elif ins.op in timing.COMPUTE_OPS:
                t = timing.compute_timing(cfg, ins.op, regs, ins.f)
                out[ins.op] = out.get(ins.op, 0) + t.stall
    return out


def test_residual_lane_cases_reach_the_drain_stalls():
    """The ``*_rr`` cases (tb.core.cases.RES_LANES: the residual path on 1 of the R-MAC's 4 or
    2 requant lanes) make the R-MAC wait on residual vectors only: a residual pointwise conv
    (3 steps per vector < 4) and a residual depthwise 3x3 (9 steps per tile < 17) wait; the
    plain pointwise conv with 4 lanes does not (1 step, D = 1), with 2 it does."""
    assert _drain_stalls("pw_residual_rr")["CONV_RDF"] > 0
    assert _drain_stalls("pw_residual_rr2")["CONV_RDF"] > 0
    assert _drain_stalls("dw3_s1_res_rr")["DW_RSA"] > 0
    assert _drain_stalls("dw3_s1_res_rr2")["DW_RSA"] > 0
    assert _drain_stalls("pw_rr2")["CONV_RDF"] > 0
    assert _drain_stalls("pw_residual_paper_lanes")["CONV_RDF"] > 0     # paper's 2 of 8
    cfg = make_case("pw_residual_rr")[1]
    assert cfg.requant_lanes("RMAC") == 4 and cfg.requant_res_lanes() == 1
    assert _drain_stalls("dw3_s2")["DW_RSA"] == 0


def test_requant_cases_reach_the_drain_stalls():
    """The ``*_rq`` cases (tb.core.cases.REQUANT) run with fewer requant lanes than engine lanes
    and make each unit's sequencer wait for the drain: conv on both units, depthwise, the
    attention's KV step (their cycle counts are checked against the RTL by the tests above)."""
    assert _drain_stalls("pw_rq")["CONV_MAT"] > 0 and _drain_stalls("pw_rq")["CONV_RDF"] > 0
    assert _drain_stalls("pw_residual_rq")["CONV_RDF"] > 0
    assert _drain_stalls("dw3_s2_rq")["DW_RSA"] > 0
    assert _drain_stalls("att_d6_rq")["ATT_KV_RDF"] > 0
    st = _drain_stalls("mbconv_rq")
    assert st["DW_RSA"] > 0 and st["CONV_RDF"] > 0
    # and one lane per engine lane never waits
    assert not any(_drain_stalls("mbconv").values())


def test_unit_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        Unit(kind="DMA")


# ---- attention (hw.core.attention; AUX and DIV inside the core) ---------------------------------

def run_attention(name, **cfg_changes):
    prog, cfg, x = make_case(name)
    cfg = cfg.replace(**cfg_changes) if cfg_changes else cfg
    binary = sc.compile(prog, cfg)
    env = CoreEnv(binary, x)
    local = {}
    cycles = simulate_amaranth(Core.from_config(cfg), env, max_cycles=20000, local_buffers=local)
    return prog, cfg, binary, x, env, cycles, local


@pytest.mark.parametrize("name", ["att", pytest.param("att_d6", marks=pytest.mark.slow),
                                  pytest.param("att_d6_rq", marks=pytest.mark.slow),
                                  pytest.param("att_d8", marks=pytest.mark.regress),
                                  pytest.param("att_8x8", marks=pytest.mark.regress)])
def test_core_attention(name):
    """One LiteMLA attention (2 heads on one core): ATT_KV_RDF on the R-MAC, ATT_KSUM on the AUX
    adder tree, ATT_DIV (log2 module) and ATT_OUT (the MAT's requant lanes) on the MAT, through the AUX and
    DIV memories inside the core. Output bit-exact with sim.golden and sim.funcsim; the AUX/DIV
    contents left at the end (both AUX halves: S and ksum8 of heads 0 and 1; DIV: the codes and
    zero flags of head 1) equal golden.attention_steps. ``att_d6``: d = 6 and 9 tokens, not
    multiples of the engine sizes (masked lanes and steps), 3 heads (AUX half 0 reused)."""
    prog, cfg, binary, x, env, cycles, local = run_attention(name)
    out = env.outputs()["y"]
    np.testing.assert_array_equal(out, golden.run(prog, x)["y"])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)["y"])
    assert {op for _, op, _, _ in env.compute_spans()} == {"ATT_KV_RDF", "ATT_KSUM", "ATT_DIV",
                                                           "ATT_OUT"}
    node = prog.nodes[0]
    d = int(node.attrs["dim"])
    st = golden.attention_steps(x, node.params, d)
    heads, n = st["s8"].shape[0], x.shape[1] * x.shape[2]
    assert st["ksum8"].max() > 127      # uint8 ksum8 as ATT_DIV's broadcast (9-bit) operand
    assert heads >= 2
    aux, aux_a, div = local["AUX"], local["AUX_A"], local["DIV"]
    # S in tiles of T x S (sim.isa.att_s_offsets), then ksum8; the halves (sim.compile's
    # att_aux_half) start on a tile line
    off, sb = att_s_offsets(d, cfg.S, cfg.T), att_s_bytes(d, cfg.S, cfg.T)
    assert att_aux_half(cfg, d) % att_s_line(cfg.S, cfg.T) == 0
    for h in range(heads - 2, heads):   # the last head written into each AUX half
        base = (h % 2) * att_aux_half(cfg, d)     # AUX half of the core's h-th head
        np.testing.assert_array_equal(aux[base + off].view(np.int8), st["s8"][h])
        np.testing.assert_array_equal(aux_a[base + sb:base + sb + d], st["ksum8"][h])
    np.testing.assert_array_equal(div[:n] & 15, st["code"][-1])
    np.testing.assert_array_equal(div[:n] >> 4, (st["den"][-1] == 0).astype(np.uint8))
    check_cycles(name, binary, env, cycles)


@pytest.mark.parametrize("case,changes,kv_op", [
    ("att_d6", dict(M=3, T=3, S=6), "ATT_KV_RDF"),      # T*S = 18: 32-byte lines, R = 3 | S
    ("att", dict(M=4, T=4, S=6), "ATT_KV_MAT"),         # the R-MAC's R = 4 does not divide S
    ("att_d6", dict(N=4, M=4, T=2, S=8, requant_mat=2, requant_rmac=2), "ATT_KV_RDF")])
def test_core_attention_s_tiles_at_other_engine_sizes(case, changes, kv_op):
    """S in AUX in T x S tiles (sim.isa.att_s_offsets) at engine sizes that are not powers of
    two or where the R-MAC's requant lanes do not divide S (the compiler then puts step i on the
    MAT, sim.isa.att_kv_fits): bit-exact with sim.golden and sim.funcsim, S where the layout
    says, every instruction's cycles equal to sim.perf's."""
    prog, cfg, binary, x, env, cycles, local = run_attention(case, **changes)
    assert {op for _, op, _, _ in env.compute_spans()} == {kv_op, "ATT_KSUM", "ATT_DIV",
                                                           "ATT_OUT"}
    out = env.outputs()["y"]
    np.testing.assert_array_equal(out, golden.run(prog, x)["y"])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)["y"])
    node = prog.nodes[0]
    d = int(node.attrs["dim"])
    st = golden.attention_steps(x, node.params, d)
    h = st["s8"].shape[0] - 1
    base = (h % 2) * att_aux_half(cfg, d)
    np.testing.assert_array_equal(local["AUX"][base + att_s_offsets(d, cfg.S, cfg.T)]
                                  .view(np.int8), st["s8"][h])
    check_cycles(f"{case} {changes}", binary, env, cycles)


def test_core_depthwise_extreme_sums():
    """The depthwise hold bank keeps DW_HOLD_BITS (21) bits of each sum: a 5x5 DW_RSA on uint8
    inputs of 255 with all weights -128 (channel 0) and 127 (channel 1) reaches sums of
    -816,000 and +809,625, beyond 20 signed bits (a narrower bank wraps them and flips the
    outputs' signs). Bit-exact with the loop reference and sim.golden."""
    from tb.core.cases import depthwise_program
    from hw.core.unit import DW_HOLD_BITS
    prog = depthwise_program(c=4, h=6, w=6, k=5, x_signed=False, seed=40)
    wt = prog.nodes[0].params["weight"]
    wt[0], wt[1] = -128, 127
    wt[2], wt[3] = wt[0], wt[1]
    x = np.full((4, 6, 6), 255, np.uint8)
    sums = (wt.reshape(4, -1).astype(np.int64) * 255).sum(axis=1)
    assert sums.min() < -(1 << 19) and sums.max() >= 1 << 19
    assert max(-sums.min(), sums.max()) < 1 << (DW_HOLD_BITS - 1)
    cfg = small_config()
    binary = sc.compile(prog, cfg)
    env = CoreEnv(binary, x)
    cycles = simulate_amaranth(Core.from_config(cfg), env, max_cycles=20000)
    out = env.outputs()["y"]
    np.testing.assert_array_equal(out, reference(prog, x))
    np.testing.assert_array_equal(out, golden.run(prog, x)["y"])
    check_cycles("dw5 extreme", binary, env, cycles)


@pytest.mark.slow
def test_core_attention_out_drain_stalls():
    """ATT_OUT on the MAT's requant lanes (shift ``out_c + log2_emin + code``, a zero divisor
    as a zero multiplier): with one lane for S = 4 engine lanes (D = 4 cycles per vector) and
    d = 4 (1 engine step per vector) the sequencer waits for the drain, and the sub-blocks of a
    vector land in rows ``i0 + j`` (``elem_stride`` = NTOK). Bit-exact with sim.golden,
    zero-divisor tokens included; every fetch cycle equal to sim.perf's."""
    prog, cfg, binary, x, env, cycles, local = run_attention("att", requant_mat=1)
    assert cfg.requant_lanes("MAT") == 1
    from sim.funcsim import build_queues
    from sim.isa import REG_NAMES
    stall = 0
    for q in build_queues(binary).values():
        regs = {}
        for ins, _ in q:
            if ins.op == "SETR":
                regs[REG_NAMES[ins["reg"]]] = ins["value"]
            elif ins.op == "ATT_OUT":
                stall += timing.compute_timing(cfg, ins.op, regs, ins.f).stall
    assert stall > 0
    node = prog.nodes[0]
    st = golden.attention_steps(x, node.params, int(node.attrs["dim"]))
    assert (st["den"] == 0).any()       # the zero flag reaches the lanes
    out = env.outputs()["y"]
    np.testing.assert_array_equal(out, golden.run(prog, x)["y"])
    check_cycles("att (requant_mat=1)", binary, env, cycles)


def test_harness_refuses_local_buffers():
    """AUX/DIV live inside the core: the harness never serves them."""
    prog, cfg, x = make_case("pw_relu")
    env = CoreEnv(sc.compile(prog, cfg), x)
    with pytest.raises(HarnessError, match="inside the core"):
        env.gather("mat_x", 1, 4, {"mat_x__buf": 3, "mat_x__addr": 0, "mat_x__row_stride": 0,
                                   "mat_x__elem_stride": 1})


@pytest.mark.regress
@pytest.mark.parametrize("name", ["litemla", "litemla_8x8"])
def test_core_efficientvit_module(name):
    """A whole EfficientViT module of sim.zoo.tiny (stage 2: LiteMLA context module - qkv PW,
    DW 5x5 + grouped PW aggregation, concat, attention on 4 heads, proj + residual - then the
    local MBConv), compiled as sim.compile does for the model, on one core: bit-exact with
    sim.golden and sim.funcsim (ksum8 up to 188: the zoo's uint8 calibration). ``litemla_8x8``:
    the same at N = M = T = S = 8."""
    prog, cfg, x = make_case(name)
    binary = sc.compile(prog, cfg)
    env = CoreEnv(binary, x)
    cycles = simulate_amaranth(Core.from_config(cfg), env, max_cycles=100000)
    y = prog.outputs[0]
    out = env.outputs()[y]
    np.testing.assert_array_equal(out, golden.run(prog, x)[y])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)[y])
    ops = {op for _, op, _, _ in env.compute_spans()}
    assert {"CONV_MAT", "CONV_RDF", "DW_RSA", "ATT_KV_RDF", "ATT_KSUM", "ATT_DIV",
            "ATT_OUT"} <= ops
    check_cycles(name, binary, env, cycles)


def test_core_without_buffer_a():
    """``a_bytes=0`` (``paper``) builds no buffer A: a Binary compiled without one (K in B) runs
    bit-exact on it, and one that reads K from A sets the reading units' error bits."""
    from sim.isa import BUFS
    prog, cfg, x = make_case("att")
    for a_bytes, uses_a in ((0, False), (cfg.buf_a_bytes, True)):
        binary = sc.compile(prog, cfg.replace(buf_a_bytes=a_bytes))
        assert bool([i for i in binary.streams["global"]
                     if i.op == "LOAD" and i["buf"] == BUFS["A"]]) == uses_a
        core = Core.from_config(cfg.replace(buf_a_bytes=0))
        assert core.a_store is None
        env = CoreEnv(binary, x)
        if uses_a:
            with pytest.raises(HarnessError, match=r"error \(units (1..|.1.)\)"):
                simulate_amaranth(core, env, max_cycles=20000)
        else:
            simulate_amaranth(core, env, max_cycles=20000)
            np.testing.assert_array_equal(env.outputs()["y"], golden.run(prog, x)["y"])


def test_core_attention_kv_on_mat():
    """ATT_KV_MAT (step i on the MAT engine; the compiler puts it on the R-MAC): the compiled
    Binary of ``att`` with each ATT_KV_RDF and its SIGNAL moved to the MAT unit. K must then be
    in B (buffer A feeds only the R-MAC and the adder tree): compiled with a buffer A too small
    for one head's K, the compiler's fallback. Bit-exact with sim.golden and with sim.funcsim on
    the same Binary."""
    import dataclasses
    from sim.isa import BUFS, UNITS, Instr
    prog, cfg, x = make_case("att")
    cfg = cfg.replace(buf_a_bytes=64)
    binary = sc.compile(prog, cfg)
    assert not [i for i in binary.streams["global"] if i.op == "LOAD" and i["buf"] == BUFS["A"]]
    mat = UNITS["MAT"]
    ins, moved = list(binary.streams["core0"]), 0
    for i, it in enumerate(ins):
        if it.op == "ATT_KV_RDF":
            ins[i] = Instr("ATT_KV_MAT", dict(it.f))
            j = next(k for k in range(i + 1, len(ins)) if ins[k].op == "SIGNAL"
                     and ins[k].unit == "RMAC")
            ins[j] = Instr("SIGNAL", dict(ins[j].f, unit=mat))
            moved += 1
    assert moved == 2
    binary = dataclasses.replace(binary, streams=dict(binary.streams, core0=ins))
    env = CoreEnv(binary, x)
    cycles = simulate_amaranth(Core.from_config(cfg), env, max_cycles=20000)
    out = env.outputs()["y"]
    assert {op for _, op, _, _ in env.compute_spans()} == {"ATT_KV_MAT", "ATT_KSUM", "ATT_DIV",
                                                           "ATT_OUT"}
    np.testing.assert_array_equal(out, golden.run(prog, x)["y"])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)["y"])
    check_cycles("att (ATT_KV_MAT)", binary, env, cycles)


# ---- backpressure (Core(stall=True), hw.core.ports' ready) --------------------------------------
STALL_CASES = ("pw_residual", "linear_logits", "gpw_g3", "dw3_s2", "dw5_s1_res", "conv3_s2",
               "pool", "mbconv", "att", "pw_rq", "dw3_s2_rq")


def _run_stalled(name, ready, seed=0):
    prog, cfg, x = make_case(name)
    binary = compile_case(name, prog, cfg)
    env = CoreEnv(binary, x, ready=ready, seed=seed)
    cycles = simulate_amaranth(Core.from_config(cfg, stall=True), env, max_cycles=60000)
    return prog, binary, x, env, cycles


@pytest.mark.parametrize("name", ["pw_residual", "dw3_s2", "att", "pw_residual_rr",
                                  "dw3_s1_res_rr2"])
def test_core_stall_always_ready(name):
    """A core with backpressure ports, every ``ready`` high: the same cycles as sim.perf (the
    shims and the clock enable cost no cycle) and the same outputs."""
    prog, binary, x, env, cycles = _run_stalled(name, ready=1.0)
    y = prog.outputs[0]
    np.testing.assert_array_equal(env.outputs()[y], golden.run(prog, x)[y])
    check_cycles(name, binary, env, cycles)


@pytest.mark.parametrize("name", STALL_CASES)
def test_core_stall_random_ready(name):
    """Every port's ``ready`` low 40 % of the cycles at random (fixed seed): bit-exact with
    sim.golden and sim.funcsim (the units freeze, nothing is lost or read twice), and slower."""
    prog, binary, x, env, cycles = _run_stalled(name, ready=0.6, seed=len(name))
    y = prog.outputs[0]
    out = env.outputs()[y]
    np.testing.assert_array_equal(out, golden.run(prog, x)[y])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)[y])
    assert env.stalled > 0
    assert cycles > perf.simulate(binary, env=timing.PYTHON_HARNESS).cycles


@pytest.mark.parametrize("case, layout", [("litemla_ctx", "planar"),
                                          ("litemla_ctx_pipe", "planar"),
                                          pytest.param("litemla_ctx_pipe", "blocked",
                                                       marks=pytest.mark.slow)])
def test_core_context_module_on_chip(case, layout, monkeypatch):
    """The LiteMLA context module of sim.zoo.tiny (qkv PW, DW 5x5 + grouped PW aggregation,
    concat, attention on 4 heads, proj + residual) with its activations kept in buffer B
    (sim.compile.attctx): the only LOADs into B are the module's input (for qkv, and as proj's
    residual), the attention reads Q, K and V from B and writes its output there, the one
    STORE is proj's output. Bit-exact with sim.golden and sim.funcsim; every instruction fetched
    in the cycle sim.perf says. ``litemla_ctx_pipe`` (8x8 tokens): the qkv is written in the
    aggregation DW's row pieces, each followed by a SIGNAL that the DW's R-MAC waits for;
    ``blocked`` (``layout="blocked"``, B = 4): the same pieces with BLOCK set, the DW in
    pieces but the grouped PW reading its whole output (group by group)."""
    from sim.compile import attctx
    from sim.isa import BUFS
    # the row pieces (on by default, attctx.PIPE_AGGREGATION / PIPE_QKV): this test runs them
    # whatever the defaults
    monkeypatch.setattr(attctx, "PIPE_AGGREGATION", True)
    monkeypatch.setattr(attctx, "PIPE_QKV", True)
    prog, cfg, x = make_case(case)
    binary = sc.compile(prog, cfg, layout=layout)
    g = binary.streams["global"]
    xaddr = binary.symbols[f"tensor:{prog.inputs[0]}"]["addr"]
    loads_b = [i for i in g if i.op == "LOAD" and i["buf"] == BUFS["B"]]
    assert loads_b and all(i["dram_addr"] == xaddr for i in loads_b)
    assert [i["buf"] for i in g if i.op == "STORE"] == [BUFS["OUT"]]
    att = [i for i in binary.streams["core0"] if i.op.startswith("ATT_")]
    assert {i["obuf"] for i in att if i.op == "ATT_OUT"} == {BUFS["B"]}
    assert not [i for i in g if i.op == "LOAD" and i["buf"] == BUFS["A"]]
    # the qkv (the first node) signals once per row piece and once at its end
    qkv_signals = [i for i, t in zip(binary.streams["core0"], binary.tags["core0"])
                   if t == 0 and i.op == "SIGNAL"]
    assert (len(qkv_signals) > 2) == (case == "litemla_ctx_pipe")
    env = CoreEnv(binary, x)
    cycles = simulate_amaranth(Core.from_config(cfg), env, max_cycles=100000)
    y = prog.outputs[0]
    out = env.outputs()[y]
    np.testing.assert_array_equal(out, golden.run(prog, x)[y])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)[y])
    check_cycles(case, binary, env, cycles)


def test_p_reuse_default_and_validation():
    """``p_reuse`` (hold the parameter records): on by default with ``stall``, off without;
    a bool or None, checked before anything is built."""
    from test_board import _silence
    for kw, want in ((dict(), False), (dict(stall=True), True),
                     (dict(stall=True, p_reuse=False), False), (dict(p_reuse=True), True)):
        core = Core(**kw)
        _silence(core)
        assert core.p_reuse is want and all(u.p_reuse is want for u in core.units.values()), kw
    with pytest.raises(TypeError, match="p_reuse"):
        Unit(kind="MAT", p_reuse=0)


@pytest.mark.parametrize("name", ["pw_rq", "pw_residual_rr2", "dw3_s2_rq", "dw3_s1_res_rr",
                                  "mbconv_rq", "att_d6_rq", "gpw_g3_rq"])
def test_core_p_reuse_ideal_ports(name):
    """``p_reuse=True`` on the core without backpressure (ports that never stall): the held
    records give sim.golden's and sim.funcsim's outputs and not a cycle more or less than
    sim.perf (check_cycles), with drain sub-blocks (the REQUANT / RES_LANES cases), groups,
    depthwise tiles and the attention steps (which read their record themselves)."""
    prog, cfg, x = make_case(name)
    binary = compile_case(name, prog, cfg)
    env = CoreEnv(binary, x)
    cycles = simulate_amaranth(Core.from_config(cfg, p_reuse=True), env, max_cycles=20000)
    y = prog.outputs[0]
    out = env.outputs()[y]
    np.testing.assert_array_equal(out, golden.run(prog, x)[y])
    np.testing.assert_array_equal(out, funcsim.run(binary, x)[y])
    check_cycles(name, binary, env, cycles)
