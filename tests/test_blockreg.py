# amaranth: UnusedElaboratable=no
"""The BLOCK register (sim.isa, docs/isa.md): channel-blocked activations on the conv and
depthwise ports, in sim.funcsim and in the core RTL (hw.core.unit, amaranth.sim).

Two kinds of blocked Binaries: compiled (``sim.compile.compile(..., layout="blocked")``, the first
blocked path: dense and depthwise convs, linears), and built by hand from a planar compile of a one-tile layer whose activation LOADs / STOREs each
move one whole tensor (:func:`reblock`): the tensors' symbols say ``blocked`` (so the input
is written, and the output read back, by ``sim.compile.layout.pack`` / ``unpack``, i.e. by
``act_offset``), every channel stride becomes the stride of a block of ``B`` channels, every
activation address ``slot + c * stride + p`` becomes ``slot + act_offset(c, p)``, and a
``SETR BLOCK`` precedes every compute instruction. The outputs are checked against
``sim.golden`` (planar numpy), the RTL's cycles against ``sim.perf``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from hw.core import Core
from sim import funcsim, golden
from sim import compile as sc
from sim.compile.layout import act_offset, pack
from sim.isa import BLOCK_OPS, BUFS, REGS, UNITS, Instr
from sim.compile import CompileError
from sim.config import AccelConfig
from sim.intprogram import IntProgram, Node, TensorInfo
from tb.core.cases import (_epilogue, attention_program, depthwise_program, generic_program,
                           linear_program, litemla_module_program, mbconv_program,
                           pointwise_program, pool_program, small_config,
                           stem_block_program)
from tb.core.cases import REQUANT, RES_LANES, RES_LANES2
from tb.core.harness import CoreEnv, HarnessError, simulate_amaranth
from test_hw_core import check_cycles

STRIDES = {"XSTRIDE": "XBUF", "OSTRIDE": None, "RSTRIDE": None}


def _slot(slots, buf, addr):
    """The (buffer address, bytes, channels, pixels) of the whole-tensor slot holding ``addr``."""
    for s in slots.get(buf, ()):
        if s[0] <= addr < s[0] + s[1]:
            return s
    raise AssertionError(f"address {addr} of buffer {buf} is in no whole-tensor slot")


def reblock(binary, b: int):
    """A copy of the one-tile planar ``binary`` re-laid out channel-blocked with ``B = 2**b``
    (see the module doc); refuses (AssertionError) a Binary it cannot convert."""
    B = 1 << b
    out = copy.deepcopy(binary)
    prog = out.prog
    tens = {}
    for name in prog.tensors:
        sym = out.symbols[f"tensor:{name}"]
        c, *hw_ = prog.tensors[name].shape
        npix = int(np.prod(hw_)) if hw_ else 1
        assert sym["kind"] == "tensor" and c % B == 0, (name, sym, B)
        tens[name] = (sym["addr"], sym["nbytes"], c, npix)
        sym.update(layout="blocked", block=B)
    # activation LOAD / STOREs: each moves one whole tensor, so the slot is the tensor, blocked
    slots = {}
    for ins in out.streams["global"]:
        if ins.op in ("LOAD", "STORE") and ins["buf"] in (BUFS["B"], BUFS["OUT"]):
            hit = [t for t in tens.values() if t[0] == ins["dram_addr"]]
            assert len(hit) == 1 and ins["count"] == 1 and ins["length"] == hit[0][1], ins
            slots.setdefault(ins["buf"], []).append((ins["buf_addr"], *hit[0][1:]))

    def block_addr(buf, addr, stride):
        base, _, _, npix = _slot(slots, buf, addr)
        assert stride == npix, (addr, base, stride, npix)
        c, p = divmod(addr - base, npix)
        return base + int(act_offset(c, p, npix=npix, layout="blocked", block=B))

    stream, regs = [], {}
    for ins in out.streams["core0"]:
        unit = ins.unit
        r = regs.setdefault(unit, {})
        if ins.op == "SETR":
            r[ins["reg"]] = ins["value"]
        if ins.op in BLOCK_OPS:
            f = dict(ins.f)
            f["x_addr"] = block_addr(r[REGS["XBUF"]], f["x_addr"], r[REGS["XSTRIDE"]])
            f["o_addr"] = block_addr(f["obuf"], f["o_addr"], r[REGS["OSTRIDE"]])
            pre = [("BLOCK", b)]
            for reg in STRIDES:
                pre.append((reg, r[REGS[reg]] * B))
            if r.get(REGS["RES_ADDR"], -1) >= 0:
                pre.append(("RES_ADDR", block_addr(BUFS["B"], r[REGS["RES_ADDR"]],
                                                   r[REGS["RSTRIDE"]])))
            for reg, v in pre:
                stream.append(Instr("SETR", dict(unit=UNITS[unit], reg=REGS[reg], value=v)))
            ins = Instr(ins.op, f)
        stream.append(ins)
    out.streams["core0"] = stream
    out.tags["core0"] = [-1] * len(stream)
    return out


CASES = {
    # name: (program, b[, config changes]): one tile each on the `small` config (N = M = T = S
    # = 4); REQUANT / RES_LANES: fewer requant lanes, so the drain's sub-blocks (offsets R
    # channels apart in a block, R pixels apart in a DW row) run blocked
    "pw_res_b2": (lambda: pointwise_program(cin=8, cout=8, h=3, w=5, residual=True, act="none",
                                            seed=1), 2),
    "pw_b3": (lambda: pointwise_program(cin=16, cout=8, h=3, w=4, act="relu", seed=2), 3),
    "pw_u8_b2": (lambda: pointwise_program(cin=12, cout=12, h=2, w=5, residual=True,
                                           x_signed=False, act="hswish", seed=3), 2),
    "dw3_res_b2": (lambda: depthwise_program(c=8, h=6, w=7, k=3, residual=True, seed=4), 2),
    "dw3_s2_b3": (lambda: depthwise_program(c=8, h=7, w=9, k=3, stride=2, act="relu",
                                            seed=5), 3),
    "dw5_b2": (lambda: depthwise_program(c=4, h=5, w=6, k=5, residual=True, seed=6), 2),
    "conv3_s2_b2": (lambda: generic_program(cin=4, cout=8, h=5, w=5, k=3, stride=2, seed=7), 2),
    "pw_res_rq_b2": (lambda: pointwise_program(cin=12, cout=12, h=3, w=4, residual=True,
                                               act="none", seed=8), 2, REQUANT),
    "pw_res_rr_b3": (lambda: pointwise_program(cin=8, cout=8, h=3, w=4, residual=True,
                                               act="relu", seed=9), 3, RES_LANES2),
    "dw3_s2_rq_b2": (lambda: depthwise_program(c=8, h=6, w=7, k=3, stride=2, act="hswish",
                                               seed=10), 2, REQUANT),
    "dw3_res_rr_b2": (lambda: depthwise_program(c=8, h=5, w=6, k=3, residual=True, seed=11), 2,
                      RES_LANES),
}


def blocked_case(name, seed=0):
    make, b, *kw = CASES[name]
    prog = make()
    cfg = small_config(**(kw[0] if kw else {}))
    planar = sc.compile(prog, cfg)
    x = np.random.default_rng(seed).integers(
        *((-128, 128) if prog.tensors[prog.inputs[0]].signed else (0, 256)),
        prog.tensors[prog.inputs[0]].shape)
    return prog, cfg, planar, reblock(planar, b), x, b


def test_index_is_act_offset():
    """funcsim's blocked addressing (the BLOCK rule on a channel stride of a block) is the
    layout rule of sim.compile.layout.act_offset, for random channels, pixels and b."""
    rng = np.random.default_rng(0)
    for b in range(0, 4):
        B = 1 << b
        for _ in range(20):
            nch, npix = int(rng.integers(1, 20)) * B, int(rng.integers(1, 30))
            base = int(rng.integers(0, 1000))
            idx = funcsim._Machine.index(base, nch, npix, npix * B, block=b)
            want = base + act_offset(np.arange(nch)[:, None], np.arange(npix)[None, :],
                                     npix=npix, layout="blocked" if b else "planar", block=B)
            np.testing.assert_array_equal(idx, want)


@pytest.mark.parametrize("name", list(CASES))
def test_funcsim_blocked_equals_golden(name):
    """A hand-built blocked Binary computes golden's output; the DRAM really is blocked (its
    input bytes are pack()'s blocked bytes, which differ from the planar ones)."""
    prog, cfg, planar, blocked, x, b = blocked_case(name)
    out, m = funcsim.run(blocked, x, return_machine=True)
    want = golden.run(prog, x)[prog.outputs[0]]
    np.testing.assert_array_equal(out[prog.outputs[0]], want)
    np.testing.assert_array_equal(funcsim.run(planar, x)[prog.outputs[0]], want)
    sym = blocked.symbols[f"tensor:{prog.outputs[0]}"]
    raw = m.dram[sym["addr"]:sym["addr"] + sym["nbytes"]]
    np.testing.assert_array_equal(raw, pack(want, layout="blocked", block=1 << b))
    assert not np.array_equal(raw, pack(want))


def run_rtl(binary, x, cfg):
    env = CoreEnv(binary, x)
    cycles = simulate_amaranth(Core.from_config(cfg), env, max_cycles=20000)
    return env, cycles


@pytest.mark.parametrize("name", list(CASES))
def test_core_blocked_equals_golden(name):
    """The core RTL on the blocked Binary: golden's output bit for bit, every instruction
    fetched at sim.perf's cycle, and as many cycles as the planar Binary plus its extra SETRs."""
    prog, cfg, planar, blocked, x, b = blocked_case(name)
    env, cycles = run_rtl(blocked, x, cfg)
    np.testing.assert_array_equal(env.outputs()[prog.outputs[0]],
                                  golden.run(prog, x)[prog.outputs[0]])
    check_cycles(name, blocked, env, cycles)


def _patch_block(binary, b, ops):
    """``binary`` with ``SETR BLOCK b`` before every instruction of ``ops``."""
    out = copy.deepcopy(binary)
    s = []
    for ins in out.streams["core0"]:
        if ins.op in ops:
            s.append(Instr("SETR", dict(unit=UNITS[ins.unit], reg=REGS["BLOCK"], value=b)))
        s.append(ins)
    out.streams["core0"], out.tags["core0"] = s, [-1] * len(s)
    return out


ATT_OPS = ("ATT_KV_RDF", "ATT_KSUM", "ATT_DIV", "ATT_OUT")


@pytest.mark.parametrize("what", ["att_dim", "att_narrow", "ksum_dim", "narrow", "groups"])
def test_block_refused_where_not_built(what):
    """BLOCK != 0 where the blocked path does not exist: funcsim refuses, the core stops with
    its error flag: an attention head whose DIM is not whole blocks (all steps, or ATT_KSUM on
    the AUX unit alone), a block narrower than the engine's step (b = 1 < log2 4 at `small`:
    the attention's L rows of V, a conv's channels); a grouped conv."""
    cfg = small_config()
    if what == "att_dim":
        prog, ops, b = attention_program(dim=4, heads=1, h=2, w=3), ATT_OPS, 3
    elif what == "ksum_dim":
        prog, ops, b = attention_program(dim=4, heads=1, h=2, w=3), ("ATT_KSUM",), 3
    elif what == "att_narrow":
        prog, ops, b = attention_program(dim=4, heads=1, h=2, w=3), ("ATT_KV_RDF",), 1
    elif what == "narrow":
        prog, ops, b = pointwise_program(cin=8, cout=8, h=2, w=2), ("CONV_MAT", "CONV_RDF"), 1
    else:
        # 4 groups of 2 channels: the compiler gives each unit a GROUPS = 2 instruction
        prog, ops, b = (pointwise_program(cin=8, cout=8, h=2, w=2, groups=4),
                        ("CONV_MAT", "CONV_RDF"), 2)
    binary = _patch_block(sc.compile(prog, cfg), b, ops)
    x = np.zeros(prog.tensors[prog.inputs[0]].shape, np.int64)
    with pytest.raises(funcsim.FuncSimError, match="BLOCK = "):
        funcsim.run(binary, x)
    with pytest.raises(HarnessError, match="flagged an error"):
        run_rtl(binary, x, cfg)


# ---- the blocked compile path ------------------------------------------------------------------

def two_pw_program(*, c=16, e=32, h=5, w=6, seed=0):
    """pw expand (c -> e, ReLU) then pw project (e -> c, + the input: a residual)."""
    rng = np.random.default_rng(seed)
    t = {"x": TensorInfo("x", (c, h, w), 8, True, 0.05),
         "m": TensorInfo("m", (e, h, w), 8, False, 0.05),
         "y": TensorInfo("y", (c, h, w), 8, True, 0.1)}
    nodes = []
    for name, i, o, ci, co, act, res in (("pw1", "x", "m", c, e, "relu", None),
                                          ("pw2", "m", "y", e, c, "none", "x")):
        nodes.append(Node(name, "conv", [i], o, dict(kernel=1, stride=1, padding=0, groups=1),
                          dict(weight=rng.integers(-127, 128, (co, ci, 1, 1)).astype(np.int8),
                               bias=rng.integers(-3000, 3000, co).astype(np.int32)),
                          _epilogue(rng, co, act, res)))
    return IntProgram(t, nodes, ["x"], ["y"]).validate()


COMPILED = {
    # name: (program, config): the default (fast) ones run in RTL too
    "pw": (lambda: pointwise_program(cin=16, cout=24, h=3, w=7, seed=11), small_config),
    "pw_res_hswish": (lambda: pointwise_program(cin=8, cout=8, h=5, w=5, residual=True,
                                                act="hswish", seed=12), small_config),
    "conv3_s2": (lambda: generic_program(cin=8, cout=8, h=7, w=7, k=3, stride=2, seed=13),
                 small_config),
    "two_pw": (lambda: two_pw_program(c=8, e=16, h=4, w=5, seed=14), small_config),
    "linear": (lambda: linear_program(cin=40, cout=10, seed=15), small_config),
    # bigger: several row tiles and weight chunks, two cores, the paper's engines (B = 8)
    "pw_tiles": (lambda: pointwise_program(cin=64, cout=96, h=20, w=20, seed=16), small_config),
    "two_pw_tiles": (lambda: two_pw_program(c=32, e=64, h=16, w=16, seed=17), small_config),
    "conv3_tiles": (lambda: generic_program(cin=16, cout=32, h=24, w=24, k=3, stride=1,
                                            seed=18), small_config),
    "pw_res_L2": (lambda: pointwise_program(cin=32, cout=32, h=12, w=12, residual=True,
                                            seed=19), lambda: small_config(L=2)),
    "pw_paper": (lambda: pointwise_program(cin=64, cout=128, h=14, w=14, seed=20), AccelConfig),
    "pw_res_rq": (lambda: pointwise_program(cin=12, cout=12, h=4, w=4, residual=True, seed=21),
                  lambda: small_config(**REQUANT)),
    "pw_res_rr": (lambda: pointwise_program(cin=12, cout=12, h=4, w=4, residual=True, seed=22),
                  lambda: small_config(**RES_LANES)),
    "dw3_res": (lambda: depthwise_program(c=8, h=6, w=7, k=3, residual=True, seed=23),
                small_config),
    "dw3_s2": (lambda: depthwise_program(c=16, h=9, w=9, k=3, stride=2, act="relu", seed=24),
               small_config),
    "mbconv": (lambda: mbconv_program(c=8, e=16, h=6, w=6, seed=25), small_config),
    "dw5_tiles": (lambda: depthwise_program(c=64, h=24, w=24, k=5, residual=True, seed=26),
                  small_config),
    "dw3_s2_L2": (lambda: depthwise_program(c=32, h=12, w=12, k=3, stride=2, seed=27),
                  lambda: small_config(L=2)),
    "dw_paper": (lambda: depthwise_program(c=64, h=14, w=14, k=3, residual=True, seed=28),
                 AccelConfig),
    "mbconv_s2_rq": (lambda: mbconv_program(c=8, e=16, h=9, w=9, stride=2, seed=29),
                     lambda: small_config(**REQUANT)),
    # the paper's core: N = M = T = S = 8 (B = 8), 4 requant lanes on the MAT, the residual on
    # 2 of the R-MAC's 8 (`paper`'s requant_mat / requant_rmac_res)
    "mbconv_paper_core": (lambda: mbconv_program(c=16, e=32, h=6, w=6, seed=30),
                          lambda: small_config(N=8, M=8, T=8, S=8, requant_mat=4,
                                               requant_rmac_res=2)),
    # phase 2: the stem's 3-channel input padded to a block, grouped pointwise (group by group),
    # POOL and the attention steps with BLOCK, a whole LiteMLA module (concat aliases)
    "stem": (lambda: generic_program(cin=3, cout=8, h=9, w=9, k=3, stride=2, seed=31),
             small_config),
    "stem_paper": (lambda: generic_program(cin=3, cout=16, h=9, w=9, k=3, stride=2, seed=32),
                   AccelConfig),
    "gpw": (lambda: pointwise_program(cin=16, cout=24, h=3, w=5, groups=2, seed=33),
            small_config),
    "pool": (lambda: pool_program(c=12, h=5, w=7, seed=34), small_config),
    "pool_relu": (lambda: pool_program(c=16, h=3, w=3, act="relu", seed=35), small_config),
    "att": (lambda: attention_program(dim=4, heads=2, h=4, w=5, seed=36), small_config),
    "att_d8": (lambda: attention_program(dim=8, heads=2, h=3, w=3, seed=37), small_config),
    "att_rq": (lambda: attention_program(dim=8, heads=1, h=4, w=4, seed=38),
               lambda: small_config(**REQUANT)),
    "litemla": (lambda: litemla_module_program(), small_config),
    "att_paper_core": (lambda: attention_program(dim=8, heads=2, h=4, w=4, seed=39),
                       lambda: small_config(N=8, M=8, T=8, S=8, requant_mat=4,
                                            requant_rmac_res=2)),
}
# the blocked parity round: the stem both ways whatever stem="auto" picks, and the stem block
# (stem -> DSConv, the PW adding the stem's output) with the dense stem on the blocked unfolded
# input (27 channels in 28 at B = 4: a pointwise conv with CIN not whole blocks, fused with the
# DW and the PW, one residual requant lane as at `paper`)
COMPILED.update({
    "stem_taps": (lambda: generic_program(cin=3, cout=8, h=9, w=9, k=3, stride=2, seed=31),
                  small_config),
    "stem_im2col": (lambda: generic_program(cin=3, cout=8, h=9, w=9, k=3, stride=2, seed=31),
                    small_config),
    "stem_block_im2col": (lambda: stem_block_program(c=8, h=11, w=9, seed=26),
                          lambda: small_config(**RES_LANES)),
})
#: compile options of a case (the default: stem="auto")
COMPILE_KW = {"stem_taps": {"stem": "taps"}, "stem_im2col": {"stem": "im2col"},
              "stem_block_im2col": {"stem": "im2col"}}
RTL_COMPILED = ("pw", "pw_res_hswish", "conv3_s2", "two_pw", "linear", "pw_res_rq", "pw_res_rr",
                "dw3_res", "dw3_s2", "mbconv", "mbconv_s2_rq", "stem", "gpw", "pool",
                "pool_relu", "att", "att_d8", "att_rq", "stem_taps", "stem_im2col",
                "stem_block_im2col")


def compiled_case(name, seed=0):
    make, cfg = COMPILED[name]
    prog, cfg = make(), cfg()
    xt = prog.tensors[prog.inputs[0]]
    x = np.random.default_rng(seed).integers(*((-128, 128) if xt.signed else (0, 256)),
                                             xt.shape)
    return prog, cfg, sc.compile(prog, cfg, layout="blocked", **COMPILE_KW.get(name, {})), x


@pytest.mark.parametrize("name", list(COMPILED))
def test_compile_blocked_funcsim_equals_golden(name):
    """A blocked compile computes golden's output under both DMA orders; its tensors of more
    than one pixel are blocked in DRAM (the output bytes are pack()'s blocked ones), its conv
    instructions run with BLOCK = log2 B, and it keeps the planar tiling's cycles up to the
    SETR BLOCKs (or fewer DMA descriptors)."""
    from sim import perf
    from sim.compile.layout import activation_block
    prog, cfg, binary, x = compiled_case(name)
    want = golden.run(prog, x)[prog.outputs[0]]
    for order in ("ld_first", "ld_last"):
        out, m = funcsim.run(binary, x, order=order, return_machine=True)
        np.testing.assert_array_equal(out[prog.outputs[0]], want)
    B = activation_block(cfg)
    sym = binary.symbols[f"tensor:{prog.outputs[0]}"]
    blocks = {i["value"] for st in binary.streams.values() for i in st
              if i.op == "SETR" and i["reg"] == REGS["BLOCK"]}
    xt = prog.tensors[prog.inputs[0]]
    if want.ndim == 3 and want.shape[1] * want.shape[2] > 1:
        assert (sym["layout"], sym["block"]) == ("blocked", B)
        raw = m.dram[sym["addr"]:sym["addr"] + sym["nbytes"]]
        np.testing.assert_array_equal(raw, pack(want, layout="blocked", block=B))
        assert blocks == {B.bit_length() - 1}
    elif len(xt.shape) == 3 and xt.shape[1] * xt.shape[2] > 1:     # a pool
        assert sym["layout"] == "planar" and blocks == {B.bit_length() - 1}
    else:
        assert sym["layout"] == "planar" and blocks == {0}
    # fused chains (the default) and without fusion: both golden's output; without fusion
    # the same tiling as the planar compile, so the same cycles up to the SETR BLOCKs
    kw = COMPILE_KW.get(name, {})
    unfused = sc.compile(prog, cfg, layout="blocked", fuse=False, **kw)
    np.testing.assert_array_equal(funcsim.run(unfused, x)[prog.outputs[0]], want)
    # (the same stem as the blocked compile chose)
    stem = "im2col" if unfused.layers[0].get("stem") == "im2col" else "taps"
    planar = sc.compile(prog, cfg, fuse=False, stem=stem)
    cb, cp = perf.simulate(unfused).cycles, perf.simulate(planar).cycles
    dma = [sum(i.op in ("LOAD", "STORE") and i["buf"] in (BUFS["B"], BUFS["OUT"])
               for i in bi.streams["global"]) for bi in (unfused, planar)]
    print(f"\n{name}: sim.perf blocked (fuse=False) {cb} cycles, planar (fuse=False) {cp} "
          f"({100 * (cb - cp) / cp:+.2f} %); activation DMA descriptors {dma[0]} / {dma[1]}")
    # a grouped conv runs group by group blocked (one instruction per group: their fixed
    # cycles); everything else as planar up to the SETR BLOCKs
    grouped = any(int(n.attrs.get("groups", 1)) > 1 and n.kind != "depthwise"
                  for n in prog.nodes)
    assert cb <= cp + 2 * cfg.L or (grouped and cb <= cp * 1.01)


@pytest.mark.parametrize("name", [*RTL_COMPILED,
                                  pytest.param("mbconv_paper_core", marks=pytest.mark.slow),
                                  pytest.param("att_paper_core", marks=pytest.mark.slow),
                                  pytest.param("litemla", marks=pytest.mark.slow)])
def test_core_compiled_blocked(name):
    """The core RTL runs the compiled blocked Binary: golden's output bit for bit, every
    instruction fetched at sim.perf's cycle."""
    prog, cfg, binary, x = compiled_case(name)
    env, cycles = run_rtl(binary, x, cfg)
    np.testing.assert_array_equal(env.outputs()[prog.outputs[0]],
                                  golden.run(prog, x)[prog.outputs[0]])
    check_cycles(name, binary, env, cycles)


@pytest.mark.parametrize("prog, match", [
    (lambda: attention_program(dim=2, heads=2, h=4, w=4), "head dimension that is a multiple"),
    (lambda: depthwise_program(c=6, h=6, w=7), r"network input 'x' of 6 channels"),
    (lambda: pointwise_program(cin=8, cout=8, h=2, w=2, groups=4), "grouped conv 'pw' needs "
                                                                   "groups of whole blocks"),
    (lambda: generic_program(cin=8, cout=6, h=5, w=5), r"tensor 'y' \(6, 3, 3\) needs channels"
                                                       " in multiples of B = 4"),
])
def test_compile_blocked_refuses(prog, match):
    """What the blocked path does not build is refused with a CompileError naming it."""
    with pytest.raises(CompileError, match=match):
        sc.compile(prog(), small_config(), layout="blocked")


NETWORKS = {
    "tiny_small": ("tiny", lambda: AccelConfig.from_string("small")),
    "tiny_paper": ("tiny", lambda: AccelConfig.from_string("paper")),
    "b0_r64_small": ("b0-r64", lambda: AccelConfig.from_string("small")),
}


def blocked_input_bytes(prog, x, B):
    """The DRAM bytes of the network input of a blocked compile with the dense stem, from
    first principles: the image unfolded for the stem conv (channel ``c*k*k + ky*k + kx`` of
    output pixel ``(oy, ox)`` is ``x[c, oy*s - p + ky, ox*s - p + kx]``, 0 in the padding),
    its channels padded to whole blocks of ``B``, ``[C/B][Ho][Wo][B]``."""
    n = prog.nodes[0]
    k, s_, p = (int(n.attrs[a]) for a in ("kernel", "stride", "padding"))
    c, h, w = x.shape
    ho, wo = (h + 2 * p - k) // s_ + 1, (w + 2 * p - k) // s_ + 1
    xp = np.zeros((c, h + 2 * p, w + 2 * p), np.int64)
    xp[:, p:p + h, p:p + w] = x
    cc = -(-c * k * k // B) * B
    u = np.zeros((cc, ho, wo), np.int64)
    for ci in range(c):
        for ky in range(k):
            for kx in range(k):
                u[ci * k * k + ky * k + kx] = xp[ci, ky:ky + s_ * (ho - 1) + 1:s_,
                                                 kx:kx + s_ * (wo - 1) + 1:s_]
    return (u.reshape(cc // B, B, ho, wo).transpose(0, 2, 3, 1).reshape(-1) & 0xFF) \
        .astype(np.uint8)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_blocked(name):
    """Whole networks compiled blocked (stem, fused MBConvs, resident tensors, grouped
    pointwise, concat aliases, attention with its context module on chip, pooling, the
    host's LayerNorm, the head): funcsim's logits are golden's under both DMA orders, and
    every activation that goes through DRAM holds pack(golden's tensor, blocked) there, pad
    channels included (the network input's 3 channels are a padded block, or with the dense
    stem its 27 unfolded channels are 32 / 28 at B = 8 / 4)."""
    from sim import zoo
    from sim.compile.layout import activation_block
    model, cfg = NETWORKS[name]
    cfg = cfg()
    prog = zoo.tiny() if model == "tiny" else zoo.build(model)
    xt = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(xt.shape[-1], seed=5), xt)
    binary = sc.compile(prog, cfg, layout="blocked")
    ref = golden.run(prog, x, keep=True)
    B = activation_block(cfg)
    for order in ("ld_first", "ld_last"):
        out, m = funcsim.run(binary, x, order=order, return_machine=True)
        for y in prog.outputs:
            np.testing.assert_array_equal(out[y], ref[y])
    in_dram = {li["name"] for li in binary.layers
               if not li.get("on_chip") and "fused_into" not in li}
    checked = 0
    for n in prog.nodes:
        t = n.output
        shape = prog.tensors[t].shape
        if n.name not in in_dram or n.op == "concat" or len(shape) < 3 or \
                shape[1] * shape[2] == 1:
            continue
        sym = binary.symbols[f"tensor:{t}"]
        assert (sym["layout"], sym["block"]) == ("blocked", B), t
        raw = m.dram[sym["addr"]:sym["addr"] + sym["nbytes"]]
        np.testing.assert_array_equal(raw, pack(ref[t], layout="blocked", block=B), err_msg=t)
        checked += 1
    sym = binary.symbols[f"tensor:{prog.inputs[0]}"]
    want = blocked_input_bytes(prog, x, B) if sym["layout"] == "im2col" else \
        pack(x, layout="blocked", block=B)
    assert sym["layout"] == ("im2col" if binary.layers[0].get("stem") == "im2col"
                             else "blocked") and sym["block"] == B
    np.testing.assert_array_equal(m.dram[sym["addr"]:sym["addr"] + sym["nbytes"]], want)
    assert checked >= 2, checked      # (the dense stem block keeps its tensors on chip)
    # everything the cores compute on more than one pixel runs blocked
    blk, units = {}, set()
    for st, ins in binary.streams.items():
        for i in ins:
            if i.op == "SETR" and i["reg"] == REGS["BLOCK"]:
                blk[(st, i.unit)] = i["value"]
            elif i.op in BLOCK_OPS and i.op != "CONV_MAT" or i.op == "CONV_MAT" and \
                    blk.get((st, i.unit), 0):
                units.add((i.op, blk.get((st, i.unit), 0)))
    assert {op for op, b in units if b == 0} <= {"CONV_RDF"}, units   # (linears: 1 pixel)
    assert {op for op, b in units if b} >= {"CONV_MAT", "CONV_RDF", "DW_RSA", "POOL",
                                            "ATT_KSUM", "ATT_DIV", "ATT_OUT"}


def test_network_blocked_prefetch_and_stream():
    """tiny compiled blocked with the cross-layer weight prefetch (funcsim == golden under both
    DMA orders) and for streaming (three frames back to back in funcsim.run_frames, each
    golden's; the padded blocked input is double-buffered whole)."""
    from sim import zoo
    prog, cfg = zoo.tiny(), AccelConfig.from_string("small")
    xt, y = prog.tensors[prog.inputs[0]], prog.outputs[0]
    xs = [golden.quantize_input(zoo.random_image(xt.shape[-1], seed=s), xt) for s in (1, 2, 3)]
    want = [golden.run(prog, x)[y] for x in xs]
    b = sc.compile(prog, cfg, layout="blocked", prefetch=True)
    for order in ("ld_first", "ld_last"):
        np.testing.assert_array_equal(funcsim.run(b, xs[0], order=order)[y], want[0])
    b = sc.compile(prog, cfg, layout="blocked", stream=True)
    sym = b.symbols[f"tensor:{prog.inputs[0]}"]      # (im2col: the dense stem, blocked)
    assert sym["layout"] in ("blocked", "im2col") and sym["block"] == 4
    for out, w in zip(funcsim.run_frames(b, xs), want):
        np.testing.assert_array_equal(out[y], w)


def test_compile_blocked_bad_arguments():
    prog = pointwise_program(cin=8, cout=8, h=2, w=2)
    with pytest.raises(ValueError, match="layout must be one of"):
        sc.compile(prog, small_config(), layout="nchw")
    # engines whose widths are not powers of two: no B fits every step
    with pytest.raises(CompileError, match="B = 8 is not a multiple"):
        sc.compile(prog, small_config(T=6, S=4, N=4, M=4), layout="blocked")


@pytest.mark.parametrize("name", ["two_pw", "dw3_s2_rq_b2", "att_d8", "pool"])
def test_core_blocked_stall_random_ready(name):
    """Blocked Binaries on a core with backpressure ports, every ``ready`` low 40 % of the
    cycles at random (fixed seed): still golden's output (the blocked addresses are held while
    the unit is frozen)."""
    if name in COMPILED:
        prog, cfg, binary, x = compiled_case(name)
    else:
        prog, cfg, _, binary, x, _ = blocked_case(name)
    env = CoreEnv(binary, x, ready=0.6, seed=len(name))
    simulate_amaranth(Core.from_config(cfg, stall=True), env, max_cycles=60000)
    y = prog.outputs[0]
    np.testing.assert_array_equal(env.outputs()[y], golden.run(prog, x)[y])
    assert env.stalled > 0


@pytest.mark.regress
@pytest.mark.parametrize("config", ["paper", "zcu102"])
@pytest.mark.parametrize("model", ["b0-r224", "b1-r224"])
def test_network_blocked_perf(model, config):
    """B0 / B1-R224 on `paper` and `zcu102` compiled blocked: funcsim's logits are golden's,
    and sim.perf's latency FPS against the planar compile (the default, fused, and without
    fusion); docs/global-buffers.md section 5 has the table this prints. The blocked Binary
    may cost at most 2 % against the planar one (measured, parity round: -0.1 % / -0.4 % on
    `paper`, +0.1 % / -1.4 % on `zcu102`)."""
    from sim import perf, zoo
    prog = zoo.build(model)
    cfg = AccelConfig.from_string(config)
    xt = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(xt.shape[-1], seed=1), xt)
    blocked = sc.compile(prog, cfg, layout="blocked")
    out, ref = funcsim.run(blocked, x), golden.run(prog, x)
    for y in prog.outputs:
        np.testing.assert_array_equal(out[y], ref[y])
    rows = {"blocked": perf.simulate(blocked),
            "planar": perf.simulate(sc.compile(prog, cfg)),
            "planar, fuse=False": perf.simulate(sc.compile(prog, cfg, fuse=False))}
    for k, r in rows.items():
        print(f"\n{model} {config} {k}: {r.cycles} cycles, {r.fps:.1f} FPS", end="")
    print()
    assert rows["blocked"].fps >= 0.98 * rows["planar"].fps


def test_cli_compile_blocked(tmp_path, capsys):
    """``python -m sim compile --layout blocked``: the saved Binary loads with its tensors
    blocked and runs like golden; an unsupported program is a one-line error."""
    from sim import zoo
    from sim.__main__ import main
    from sim.compile import Binary
    prog = zoo.tiny()
    src, out = tmp_path / "tiny.npz", tmp_path / "tiny.bin.npz"
    prog.save(src)
    assert main(["compile", str(src), "--config", "small", "--layout", "blocked", "-o",
                 str(out)]) in (0, None)
    b = Binary.load(out)
    sym = b.symbols[f"tensor:{prog.inputs[0]}"]      # (im2col: the dense stem, blocked)
    assert sym["layout"] in ("blocked", "im2col") and sym["block"] == 4
    xt = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(xt.shape[-1], seed=7), xt)
    y = prog.outputs[0]
    np.testing.assert_array_equal(funcsim.run(b, x)[y], golden.run(prog, x)[y])
    bad = tmp_path / "att.npz"
    attention_program(dim=2, heads=2, h=4, w=4).save(bad)
    with pytest.raises(SystemExit):
        main(["compile", str(bad), "--config", "small", "--layout", "blocked", "-o",
              str(tmp_path / "x.npz")])
    assert "cannot compile" in capsys.readouterr().err
