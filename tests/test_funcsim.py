"""Functional simulation of compiled Binaries == the golden model, bit for bit.

Every single-layer kind is built here by hand with sim.intprogram (random weights, parameters
calibrated from the golden accumulators), compiled for four configurations (the paper's,
a small 2-core one, the small one with tiny buffers that forces many tiles and weight chunks,
and one whose C buffer is too small to fuse, which forces the resident-tensor path) and run
in both unit orders. Whole networks: the zoo's tiny model and B0-R64 by
default, B0-R224 and B1-R224 as regressions.
The golden model (sim.golden) is the independent reference: it executes the IntProgram
node by node without any tiling, DRAM image or instruction.
"""
import numpy as np
import pytest

from sim import golden
from sim import numerics as nx
from sim import zoo
from sim.compile import compile as compile_
from sim.config import AccelConfig
from sim.funcsim import FuncSimError, run
from sim.intprogram import Epilogue, IntProgram, Node, TensorInfo, conv_output_hw

CONFIGS = {"paper": "paper", "small": "small",
           "tinybuf": "small:buf_b_bytes=8192,buf_c_bytes=4096,buf_out_bytes=2048",
           # weights too big to fuse: layers pass tensors through B slots ("resident")
           "smallc": "small:buf_c_bytes=6144,buf_b_bytes=49152"}



class Builder:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.tensors, self.nodes, self.env = {}, [], {}

    def input(self, name, shape, signed=True):
        self.tensors[name] = TensorInfo(name, shape, 8, signed)
        lo, hi = (-128, 128) if signed else (0, 256)
        self.env[name] = self.rng.integers(lo, hi, size=shape)
        self.inputs = [name]
        return name

    def _epi(self, acc, act, residual, cout):
        a = np.abs(acc.reshape(cout, -1)).astype(np.float64)
        pct = np.percentile(a, 99.5, axis=1) + 1.0
        off = self.rng.integers(-3, 4, size=cout)
        if act == "hswish":
            three, hm = nx.hswish_constants(3e-3, 0.05)
            return Epilogue(mult=nx.to_dyadic(3000.0 / pct), act="hswish", offset=off,
                            mid_bits=16, three=three, hswish_mult=hm)
        kw = {}
        if residual is not None:
            kw = dict(residual=residual, res_mult=nx.to_dyadic(np.full(cout, 0.5)))
        return Epilogue(mult=nx.to_dyadic(100.0 / pct), act=act, offset=off, **kw)

    def _add(self, node, out_shape, bits=8, signed=True):
        self.tensors[node.output] = TensorInfo(node.output, out_shape, bits, signed)
        self.nodes.append(node)
        self.env[node.output] = golden.execute_node(self.prog(validate=False), node, self.env)
        return node.output

    def conv(self, name, x, cout, k=1, s=1, p=0, g=1, act="none", residual=None, dw=False):
        cin, h, w = self.tensors[x].shape
        if dw:
            g = cout = cin
        wt = self.rng.integers(-127, 128, size=(cout, cin // g, k, k))
        bias = self.rng.integers(-3000, 3000, size=cout)
        acc = golden.conv_acc(self.env[x], wt, bias, stride=s, padding=p, groups=g)
        epi = self._epi(acc, act, residual, cout)
        n = Node(name, "conv", [x], name, dict(kernel=k, stride=s, padding=p, groups=g),
                 dict(weight=wt.astype(np.int8), bias=bias.astype(np.int32)), epi)
        return self._add(n, (cout,) + conv_output_hw(h, w, k, s, p),
                         signed=act != "relu")

    def linear(self, name, x, cout, epilogue=True, act="none"):
        cin = self.tensors[x].shape[0]
        wt = self.rng.integers(-127, 128, size=(cout, cin))
        bias = self.rng.integers(-3000, 3000, size=cout)
        acc = golden.linear_acc(self.env[x], wt, bias)
        epi = self._epi(acc, act, None, cout) if epilogue else None
        n = Node(name, "linear", [x], name, {}, dict(weight=wt.astype(np.int8),
                                                   bias=bias.astype(np.int32)), epi)
        return self._add(n, (cout,), bits=8 if epilogue else 32)

    def pool(self, name, x):
        c = self.tensors[x].shape[0]
        acc = self.env[x].reshape(c, -1).sum(axis=1)
        n = Node(name, "global_avgpool", [x], name, {}, {}, self._epi(acc, "none", None, c))
        return self._add(n, (c,))

    def attention(self, name, x, dim):
        c, h, w = self.tensors[x].shape
        heads = c // (3 * dim)
        hp = lambda v: np.full(heads, v, dtype=np.int64)
        hf = lambda v: np.full(heads, v, dtype=np.float64)
        s_m, k_m, o_m = nx.to_dyadic(hf(1 / 3000.0)), nx.to_dyadic(hf(1 / 40.0)), \
            nx.to_dyadic(hf(50.0))
        prm = dict(s_mult_b=s_m.b, s_mult_c=s_m.c, ksum_mult_b=k_m.b, ksum_mult_c=k_m.c,
                   log2_offset=hp(0), log2_emin=hp(6), out_mult_b=o_m.b, out_mult_c=o_m.c)
        n = Node(name, "linear_attention", [x], name, dict(dim=dim), prm)
        return self._add(n, (heads * dim, h, w))

    def concat(self, name, xs):
        c = sum(self.tensors[t].shape[0] for t in xs)
        n = Node(name, "concat", list(xs), name)
        return self._add(n, (c,) + self.tensors[xs[0]].shape[1:])

    def layernorm(self, name, x):
        c = self.tensors[x].shape[0]
        n = Node(name, "layernorm", [x], name, dict(eps=1e-5, act="hswish"),
                 dict(gamma=self.rng.normal(1, 0.1, c), beta=self.rng.normal(0, 0.1, c)))
        self.tensors[x].scale = np.float64(1e-4)
        self.tensors[name] = TensorInfo(name, (c,), 8, True, np.float64(0.05))
        self.nodes.append(n)
        self.env[name] = golden.execute_node(self.prog(validate=False), n, self.env)
        return name

    def prog(self, outputs=None, validate=True):
        p = IntProgram(dict(self.tensors), list(self.nodes), list(self.inputs),
                       outputs or ([self.nodes[-1].output] if self.nodes else []),
                       dict(name="test"))
        return p.validate() if validate else p


def case(kind, seed=0):
    """(program, input) for one layer kind."""
    b = Builder(seed)
    if kind == "generic_3x3_s2":
        x = b.input("x", (3, 16, 16))
        b.conv("y", x, 16, k=3, s=2, p=1, act="hswish")
    elif kind == "pointwise_unsigned_in":
        x = b.input("x", (32, 8, 8), signed=False)
        b.conv("y", x, 24, act="relu")
    elif kind == "grouped_pointwise":
        x = b.input("x", (48, 7, 7))
        b.conv("y", x, 48, g=3)
    elif kind == "dw3_s1":
        x = b.input("x", (24, 10, 10))
        b.conv("y", x, 24, k=3, s=1, p=1, act="hswish", dw=True)
    elif kind == "dw3_s2_oddwidth":
        x = b.input("x", (16, 12, 11))
        b.conv("y", x, 16, k=3, s=2, p=1, dw=True)
    elif kind == "dw5_s1":
        x = b.input("x", (16, 9, 9))
        b.conv("y", x, 16, k=5, s=1, p=2, dw=True)
    elif kind == "dw5_s2":
        x = b.input("x", (8, 13, 13))
        b.conv("y", x, 8, k=5, s=2, p=2, act="hswish", dw=True)
    elif kind == "pointwise_residual":
        x = b.input("x", (16, 6, 6))
        a = b.conv("a", x, 16, act="none")
        b.conv("y", a, 16, residual=a)
    elif kind == "linear":
        x = b.input("x", (64,))
        b.linear("y", x, 40, act="relu")
    elif kind == "linear_logits":
        x = b.input("x", (64,))
        b.linear("y", x, 40, epilogue=False)
    elif kind == "pool":
        x = b.input("x", (32, 5, 5))
        b.pool("y", x)
    elif kind == "attention":
        x = b.input("x", (2 * 3 * 16, 6, 6))
        b.attention("y", x, 16)
    elif kind == "layernorm_head":
        x = b.input("x", (64,))
        h = b.linear("h", x, 48, epilogue=False)
        b.layernorm("y", h)
    elif kind == "mbconv_fused":
        x = b.input("x", (16, 12, 12))
        e = b.conv("e", x, 64, act="hswish")
        d = b.conv("d", e, 64, k=3, s=1, p=1, act="hswish", dw=True)
        b.conv("y", d, 16, residual=x)
    elif kind == "mbconv_s2_fused":
        x = b.input("x", (8, 14, 14))
        e = b.conv("e", x, 32, act="hswish")
        d = b.conv("d", e, 32, k=3, s=2, p=1, act="hswish", dw=True)
        b.conv("y", d, 16)
    elif kind == "aggreg_concat":
        x = b.input("x", (96, 5, 5))
        d = b.conv("d", x, 96, k=5, s=1, p=2, dw=True)
        g = b.conv("g", d, 96, g=6)
        q = b.conv("q", x, 96)
        c = b.concat("c", [q, g])
        b.attention("y", c, 16)
    else:
        raise KeyError(kind)
    p = b.prog()
    return p, b.env[p.inputs[0]]


KINDS = ["generic_3x3_s2", "pointwise_unsigned_in", "grouped_pointwise", "dw3_s1",
         "dw3_s2_oddwidth", "dw5_s1", "dw5_s2", "pointwise_residual", "linear", "linear_logits",
         "pool", "attention", "layernorm_head", "mbconv_fused", "mbconv_s2_fused",
         "aggreg_concat"]


def _check(prog, x, cfg, order="ld_first", fuse=True, stem="auto"):
    b = compile_(prog, AccelConfig.from_string(cfg), fuse=fuse, stem=stem)
    got = run(b, x, order=order)
    ref = golden.run(prog, x)
    for k in prog.outputs:
        assert got[k].shape == ref[k].shape
        assert np.array_equal(got[k], ref[k]), (k, int(np.abs(got[k] - ref[k]).max()))
    return b


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("kind", KINDS)
def test_single_layer_kinds(kind, cfg):
    prog, x = case(kind)
    _check(prog, x, CONFIGS[cfg], order="ld_first")
    _check(prog, x, CONFIGS[cfg], order="ld_last")


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("stem", ["taps", "im2col"])
def test_generic_stem_both_mappings(stem, cfg):
    """The generic 3x3 stride-2 layer is the program's stem: tap-major (the generic conv path)
    and as the dense stem (sim.compile.stem), whichever ``stem="auto"`` picks above."""
    prog, x = case("generic_3x3_s2")
    b = _check(prog, x, CONFIGS[cfg], order="ld_last", stem=stem)
    assert b.symbols[f"tensor:{prog.inputs[0]}"]["layout"] == \
        ("im2col" if stem == "im2col" else "planar")


@pytest.mark.parametrize("kind", ["mbconv_fused", "mbconv_s2_fused", "aggreg_concat"])
def test_fusion_on_and_off_agree(kind):
    prog, x = case(kind, seed=3)
    fused = _check(prog, x, "small", fuse=True)
    plain = _check(prog, x, "small", fuse=False)
    assert any(l.get("on_chip") for l in fused.layers)          # the chain really was fused
    assert not any(l.get("on_chip") for l in plain.layers)


def test_tiny_model():
    prog = zoo.tiny(seed=1)
    x = golden.quantize_input(zoo.random_image(64, seed=2), prog.tensors[prog.inputs[0]])
    for cfg in ("paper", "small"):
        _check(prog, x, cfg)


#: the tiling matrix: small buffers that force several row tiles per layer (and row halos),
#: split over L = 1..4 cores (by channels and rows), and narrow engines (N = M = T = S = 2) that
#: force many output-channel tiles and weight chunks
SMALLBUF = "buf_b_bytes=16384,buf_c_bytes=8192,buf_out_bytes=4096"
TILING = {f"L{L}": f"small:L={L},{SMALLBUF}" for L in (1, 2, 3, 4)}
TILING["narrow-L3"] = f"small:N=2,M=2,T=2,S=2,L=3,{SMALLBUF}"


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("cfg", sorted(TILING))
def test_tiny_model_tiling_matrix(cfg, fuse):
    """The whole tiny network (every layer kind of EfficientViT) on the tiling matrix, fused and
    not: funcsim == golden. The Binary must really split depthwise layers into several tiles
    and run depthwise tiles on every core."""
    prog = zoo.tiny(seed=1)
    x = golden.quantize_input(zoo.random_image(64, seed=2), prog.tensors[prog.inputs[0]])
    b = _check(prog, x, TILING[cfg], fuse=fuse)
    L = AccelConfig.from_string(TILING[cfg]).L
    # (the late stages are 4x4 and 2x2 pixels: one tile; the stem and stage 1 are split)
    dw = [l["tiles"] for l in b.layers if l["kind"] == "depthwise"]
    assert sum(t >= 2 for t in dw) >= 2, dw
    for c in range(L):
        assert any(i.op == "DW_RSA" for i in b.streams[f"core{c}"]), f"core{c} runs no DW tile"


#: B0-R64 on the tiling matrix: buffers small enough for several row tiles per early layer and
#: many output-channel chunks (C 32 KiB: two 16 KiB slots; the head's 1024-input linear needs
#: more than 8 KiB per slot, see tests/test_random_programs.py), split over 2..4 cores
B0_TILING = {f"L{L}": f"small:L={L},buf_b_bytes=16384,buf_c_bytes=32768,buf_out_bytes=4096"
             for L in (2, 4)}
B0_TILING["narrow-L3"] = ("small:N=2,M=2,T=2,S=2,L=3,buf_b_bytes=16384,buf_c_bytes=32768,"
                          "buf_out_bytes=4096")


def _b0_tiling(cfg, fuse):
    prog = zoo.build("b0-r64", seed=0)
    x = golden.quantize_input(zoo.random_image(64, seed=1), prog.tensors[prog.inputs[0]])
    b = _check(prog, x, B0_TILING[cfg], fuse=fuse)
    L = AccelConfig.from_string(B0_TILING[cfg]).L
    dw = [ly["tiles"] for ly in b.layers if ly["kind"] == "depthwise" and ly["tiles"]]
    assert sum(t >= 2 for t in dw) >= 5, dw                    # multi-row depthwise tiles
    pw = [ly["tiles"] for ly in b.layers if ly["kind"] == "pointwise"]
    assert max(pw) >= 4, pw                                    # row tiles x channel chunks
    for c in range(L):
        ops = {i.op for i in b.streams[f"core{c}"]}
        assert {"DW_RSA", "CONV_MAT", "CONV_RDF"} <= ops, (c, ops)


@pytest.mark.parametrize("cfg", ["L2", "narrow-L3"])
def test_b0_r64_tiling_matrix(cfg):
    """The whole B0-R64 network on small buffers over several cores: funcsim == golden. A
    compiler that loses a tile's row or channel offset fails here (tests/test_mutants.py)."""
    _b0_tiling(cfg, True)


@pytest.mark.regress
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("cfg", sorted(B0_TILING))
def test_b0_r64_tiling_matrix_regress(cfg, fuse):
    _b0_tiling(cfg, fuse)


def test_b0_r64():
    prog = zoo.build("b0-r64", seed=0)
    x = golden.quantize_input(zoo.random_image(64, seed=1), prog.tensors[prog.inputs[0]])
    _check(prog, x, "paper")


@pytest.mark.regress
@pytest.mark.parametrize("name", ["b0-r224", "b1-r224"])
def test_whole_network_r224(name):
    prog = zoo.build(name, seed=0)
    x = golden.quantize_input(zoo.random_image(224, seed=1), prog.tensors[prog.inputs[0]])
    _check(prog, x, "paper")


# -- the simulator really checks addresses and synchronisation ---------------------------------

def _binary(kind="mbconv_fused", cfg="small"):
    prog, x = case(kind)
    return prog, x, compile_(prog, AccelConfig.from_string(cfg))


def test_wrong_address_is_caught():
    prog, x, b = _binary()
    ins = next(i for i in b.streams["core0"] if i.op == "CONV_MAT")
    ins.f["x_addr"] += 1
    ref = golden.run(prog, x)[prog.outputs[0]]
    try:
        got = run(b, x)[prog.outputs[0]]
    except FuncSimError:
        return
    assert not np.array_equal(got, ref)


def test_wrong_dram_stride_is_caught():
    prog, x, b = _binary("dw3_s1")
    ins = next(i for i in b.streams["global"] if i.op == "LOAD" and i.f["buf"] == 0)
    ins.f["dram_addr"] += 10                     # the input rows of a tile, shifted
    ref = golden.run(prog, x)[prog.outputs[0]]
    assert not np.array_equal(run(b, x)[prog.outputs[0]], ref)


def test_missing_wait_is_caught_in_ld_last_order():
    prog, x, b = _binary()
    s = b.streams["core0"]
    i = next(j for j, ins in enumerate(s) if ins.op == "WAIT")     # wait for the first LOAD
    del s[i]
    del b.tags["core0"][i]
    ref = golden.run(prog, x)[prog.outputs[0]]
    try:
        got = run(b, x, order="ld_last")[prog.outputs[0]]
    except FuncSimError:
        return
    assert not np.array_equal(got, ref)


def test_deadlock_reported():
    prog, x, b = _binary()
    s = b.streams["global"]
    i = next(j for j, ins in enumerate(s) if ins.op == "SIGNAL")
    del s[i]
    del b.tags["global"][i]
    with pytest.raises(FuncSimError, match="deadlock"):
        run(b, x)


def test_bad_input_rejected():
    prog, x, b = _binary()
    with pytest.raises(ValueError):
        run(b, x[:, :3])


def test_aux_is_only_for_the_attention():
    """A conv writing its output to AUX is refused: AUX carries the attention's S and ksum8
    only (the core serves AUX with hw.core.auxbuf.AuxBuffer, which has no port for it)."""
    prog, x, b = _binary("pointwise_unsigned_in")
    ins = next(i for i in b.streams["core0"] if i.op == "CONV_MAT")
    ins.f["obuf"] = 3   # sim.isa.BUFS["AUX"]
    with pytest.raises(FuncSimError, match="holds only the attention"):
        run(b, x)


def test_aux_engine_and_adder_tree_stores_are_apart():
    """AUX is two stores over one address range, as in hw.core.auxbuf: ksum8 written by the
    adder tree over the bytes of S does not change what ATT_OUT reads (one shared array would
    corrupt S's first row, and funcsim would refuse S as not this head's)."""
    prog, x, b = _binary("attention")
    s = b.streams["core0"]
    ksum = [i for i in s if i.op == "ATT_KSUM"]
    kv = [i for i in s if i.op == "ATT_KV_RDF"]
    div = [i for i in s if i.op == "ATT_DIV"]
    assert ksum and len(ksum) == len(kv) == len(div)
    for k, v, d in zip(ksum, kv, div):
        k.f["o_addr"] = d.f["w_addr"] = v.f["o_addr"]
    np.testing.assert_array_equal(run(b, x)[prog.outputs[0]], golden.run(prog, x)[prog.outputs[0]])


def test_attention_k_goes_through_buffer_a():
    """The compiled attention loads each head's K into its core's buffer A (LOAD with ``core``)
    and reads it there (ATT_KV_RDF, ATT_KSUM with XBUF = A); moving A's bytes changes the result,
    and what the ISA forbids is refused: the MAT reading A, a LOAD into the A of a core that
    does not exist or not on a line boundary, a STORE from A."""
    import copy
    from sim.isa import BUFS, REGS, UNITS
    prog, x, b = _binary("attention")
    ref = golden.run(prog, x)[prog.outputs[0]]
    loads = [i for i in b.streams["global"] if i.op == "LOAD" and i["buf"] == BUFS["A"]]
    heads = len([i for s in b.streams.values() for i in s if i.op == "ATT_KSUM"])
    assert len(loads) == heads >= 2 and {i["core"] for i in loads} == set(range(b.cfg.L))
    for order in ("ld_first", "ld_last"):
        np.testing.assert_array_equal(run(b, x, order=order)[prog.outputs[0]], ref)
    bad = copy.deepcopy(b)
    for i in bad.streams["global"]:
        if i.op == "LOAD" and i["buf"] == BUFS["A"]:
            i.f["dram_addr"] += 1           # K shifted by one token
    assert not np.array_equal(run(bad, x)[prog.outputs[0]], ref)
    bad = copy.deepcopy(b)
    next(i for i in bad.streams["global"] if i.op == "LOAD" and i["buf"] == BUFS["A"]).f["core"] \
        = b.cfg.L
    with pytest.raises(FuncSimError, match="buffer A of core"):
        run(bad, x)
    bad = copy.deepcopy(b)
    next(i for i in bad.streams["global"] if i.op == "LOAD" and i["buf"] == BUFS["A"]) \
        .f["buf_addr"] += 8                 # A's write port takes whole lines only
    with pytest.raises(FuncSimError, match="line boundary"):
        run(bad, x)
    bad = copy.deepcopy(b)
    st = next(i for i in bad.streams["global"] if i.op == "STORE")
    st.f["buf"] = BUFS["A"]
    with pytest.raises(FuncSimError, match="STORE from buffer A"):
        run(bad, x)
    bad = copy.deepcopy(b)
    s = bad.streams["core0"]
    setr = next(i for i in s if i.op == "SETR" and i["unit"] == UNITS["MAT"]
                and i["reg"] == REGS["XBUF"])
    setr.f["value"] = BUFS["A"]             # the MAT's XBUF: Q from A
    with pytest.raises(FuncSimError, match="buffer A"):
        run(bad, x)
