"""Single-layer test programs for the computing core (used by tests/test_hw_core.py and the
cocotb tests): a random IntProgram, a small single-core AccelConfig and an input."""

from __future__ import annotations

import numpy as np

from sim import numerics as nx
from sim.config import AccelConfig
from sim.intprogram import Epilogue, IntProgram, Node, TensorInfo

__all__ = ["small_config", "pointwise_program", "linear_program", "depthwise_program",
           "generic_program", "mbconv_program", "pool_program", "CASES", "NETWORKS",
           "make_case", "compile_without_config_check", "CASE_COMPILE", "compile_case"]


def small_config(*, N=4, M=4, T=4, S=4, packed=False, **kw) -> AccelConfig:
    """A one-core config with small buffers; DRAM so fast (4096 B/cycle, no latency) that the
    cycle model's time is the compute time, comparable with the RTL run whose DMA takes no time."""
    d = dict(N=N, M=M, T=T, S=S, L=1, buf_b_bytes=16384, buf_c_bytes=8192, buf_out_bytes=8192,
             buf_aux_bytes=256, buf_div_bytes=64, dram_bytes_per_cycle=4096,
             dram_latency_cycles=0, dsp_packing=packed)
    d.update(kw)
    return AccelConfig(**d)


def compile_without_config_check(prog: IntProgram, cfg: AccelConfig):
    """The Binary a compiler that does not call ``validate(cfg)`` would emit for a program
    ``cfg``'s engines cannot run (``sim.compile`` refuses it): to check that funcsim and the
    core's RTL refuse such a Binary too."""
    from unittest import mock

    from sim import compile as sc
    validate = IntProgram.validate
    with mock.patch.object(IntProgram, "validate", lambda self, cfg=None: validate(self)):
        return sc.compile(prog, cfg)


def compile_case(name: str, prog: IntProgram, cfg: AccelConfig, **kw):
    """``sim.compile.compile(prog, cfg, **kw)`` with case ``name``'s options of
    :data:`CASE_COMPILE` (``kw`` wins)."""
    from sim import compile as sc
    return sc.compile(prog, cfg, **{**CASE_COMPILE.get(name, {}), **kw})


def _epilogue(rng, cout, act, residual=None, s_res=0.05):
    mult = nx.to_dyadic(rng.uniform(0.0005, 0.003, cout))
    if act == "hswish":
        three, hm = nx.hswish_constants(3.0 / 900, 0.02)
        mult = nx.to_dyadic(rng.uniform(0.05, 0.4, cout))
        return Epilogue(mult=mult, act="hswish", mid_bits=16, three=three, hswish_mult=hm,
                        offset=rng.integers(-3, 4, cout))
    res_mult = None
    if residual is not None:
        res_mult = nx.align_residual(nx.to_dyadic(np.full(cout, s_res / 0.1)), mult.c)
    return Epilogue(mult=mult, act=act, residual=residual, res_mult=res_mult,
                    offset=rng.integers(-3, 4, cout))


def pointwise_program(*, cin=16, cout=12, h=4, w=5, act="relu", residual=False,
                      out_signed=True, groups=1, x_signed=True, seed=0):
    """One (grouped) pointwise conv ``x (cin,h,w) -> y (cout,h,w)`` with bias and epilogue
    ``act``; ``residual``: y += x (needs cin == cout); ``x_signed=False``: x is uint8 (then so
    is the residual)."""
    rng = np.random.default_rng(seed)
    wt = rng.integers(-127, 128, (cout, cin // groups, 1, 1)).astype(np.int8)
    b = rng.integers(-3000, 3000, cout).astype(np.int32)
    if residual and cin != cout:
        raise ValueError("a residual pointwise case needs cin == cout")
    epi = _epilogue(rng, cout, act, "x" if residual else None)
    t = {"x": TensorInfo("x", (cin, h, w), 8, x_signed, 0.05),
         "y": TensorInfo("y", (cout, h, w), 8, out_signed, 0.1)}
    node = Node("pw", "conv", ["x"], "y", dict(kernel=1, stride=1, padding=0, groups=groups),
                dict(weight=wt, bias=b), epi)
    return IntProgram(t, [node], ["x"], ["y"]).validate()


def linear_program(*, cin=40, cout=10, seed=0):
    """A linear layer without epilogue: int32 logits."""
    rng = np.random.default_rng(seed)
    wt = rng.integers(-127, 128, (cout, cin)).astype(np.int8)
    b = rng.integers(-50000, 50000, cout).astype(np.int32)
    t = {"x": TensorInfo("x", (cin,), 8, True, 0.05),
         "y": TensorInfo("y", (cout,), 32, True, 0.01)}
    node = Node("fc", "linear", ["x"], "y", {}, dict(weight=wt, bias=b), None)
    return IntProgram(t, [node], ["x"], ["y"]).validate()


def depthwise_program(*, c=8, h=6, w=7, k=3, stride=1, act="none", residual=False,
                      x_signed=True, seed=0):
    """One depthwise kxk conv with padding k//2; ``residual``: y += x (stride 1 only);
    ``x_signed=False``: x (and the residual) uint8."""
    rng = np.random.default_rng(seed)
    wt = rng.integers(-127, 128, (c, 1, k, k)).astype(np.int8)
    b = rng.integers(-3000, 3000, c).astype(np.int32)
    pad = k // 2
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    epi = _epilogue(rng, c, act, "x" if residual else None)
    t = {"x": TensorInfo("x", (c, h, w), 8, x_signed, 0.05),
         "y": TensorInfo("y", (c, ho, wo), 8, True, 0.1)}
    node = Node("dw", "conv", ["x"], "y", dict(kernel=k, stride=stride, padding=pad, groups=c),
                dict(weight=wt, bias=b), epi)
    return IntProgram(t, [node], ["x"], ["y"]).validate()


def generic_program(*, cin=3, cout=4, h=5, w=5, k=3, stride=2, act="relu", x_signed=True,
                    groups=1, seed=0):
    """One generic (dense or grouped) kxk conv with padding k//2 (the stem: 3x3, stride 2, 3
    input channels), im2col on the MAT / R-MAC down-forward path; ``x_signed=False``: uint8
    input."""
    rng = np.random.default_rng(seed)
    wt = rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8)
    b = rng.integers(-3000, 3000, cout).astype(np.int32)
    pad = k // 2
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    t = {"x": TensorInfo("x", (cin, h, w), 8, x_signed, 0.05),
         "y": TensorInfo("y", (cout, ho, wo), 8, True, 0.1)}
    node = Node("conv", "conv", ["x"], "y", dict(kernel=k, stride=stride, padding=pad,
                                                 groups=groups),
                dict(weight=wt, bias=b), _epilogue(rng, cout, act))
    return IntProgram(t, [node], ["x"], ["y"]).validate()


def mbconv_program(*, c=8, e=16, h=6, w=6, k=3, stride=1, seed=0):
    """An MBConv block: pointwise expand (hswish) -> depthwise kxk (hswish) -> pointwise
    project (+ residual when stride 1); compiled as one fused chain (inter-layer pipeline)."""
    rng = np.random.default_rng(seed)
    pad = k // 2
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    w1 = rng.integers(-127, 128, (e, c, 1, 1)).astype(np.int8)
    w2 = rng.integers(-127, 128, (e, 1, k, k)).astype(np.int8)
    w3 = rng.integers(-127, 128, (c, e, 1, 1)).astype(np.int8)
    b = lambda n: rng.integers(-3000, 3000, n).astype(np.int32)  # noqa: E731
    t = {"x": TensorInfo("x", (c, h, w), 8, True, 0.05),
         "e1": TensorInfo("e1", (e, h, w), 8, True, 0.05),
         "e2": TensorInfo("e2", (e, ho, wo), 8, True, 0.05),
         "y": TensorInfo("y", (c, ho, wo), 8, True, 0.1)}
    res = "x" if stride == 1 else None
    nodes = [Node("pw1", "conv", ["x"], "e1", dict(kernel=1, stride=1, padding=0, groups=1),
                  dict(weight=w1, bias=b(e)), _epilogue(rng, e, "hswish")),
             Node("dw", "conv", ["e1"], "e2", dict(kernel=k, stride=stride, padding=pad,
                                                   groups=e),
                  dict(weight=w2, bias=b(e)), _epilogue(rng, e, "hswish")),
             Node("pw2", "conv", ["e2"], "y", dict(kernel=1, stride=1, padding=0, groups=1),
                  dict(weight=w3, bias=b(c)), _epilogue(rng, c, "none", res))]
    return IntProgram(t, nodes, ["x"], ["y"]).validate()


def stem_block_program(*, cin=3, c=8, h=9, w=9, seed=0):
    """EfficientViT's input stem: a 3x3 stride-2 conv on the image (hswish), then a DSConv:
    depthwise 3x3 (hswish) -> pointwise adding the stem's output as its residual. With the
    dense stem (``stem="im2col"``) the three run as one fused chain whose second pointwise conv
    reads its residual from the chain's own B tile (:func:`sim.compile.fusion.find_chains`)."""
    rng = np.random.default_rng(seed)
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    w0 = rng.integers(-127, 128, (c, cin, 3, 3)).astype(np.int8)
    w1 = rng.integers(-127, 128, (c, 1, 3, 3)).astype(np.int8)
    w2 = rng.integers(-127, 128, (c, c, 1, 1)).astype(np.int8)
    b = lambda n: rng.integers(-3000, 3000, n).astype(np.int32)  # noqa: E731
    t = {"x": TensorInfo("x", (cin, h, w), 8, True, 0.05),
         "s": TensorInfo("s", (c, ho, wo), 8, True, 0.05),
         "d": TensorInfo("d", (c, ho, wo), 8, True, 0.05),
         "y": TensorInfo("y", (c, ho, wo), 8, True, 0.1)}
    nodes = [Node("stem", "conv", ["x"], "s", dict(kernel=3, stride=2, padding=1, groups=1),
                  dict(weight=w0, bias=b(c)), _epilogue(rng, c, "hswish")),
             Node("dw", "conv", ["s"], "d", dict(kernel=3, stride=1, padding=1, groups=c),
                  dict(weight=w1, bias=b(c)), _epilogue(rng, c, "hswish")),
             Node("pw", "conv", ["d"], "y", dict(kernel=1, stride=1, padding=0, groups=1),
                  dict(weight=w2, bias=b(c)), _epilogue(rng, c, "none", "s"))]
    return IntProgram(t, nodes, ["x"], ["y"]).validate()


def pool_program(*, c=10, h=5, w=7, act="none", seed=0):
    """Global average pooling ``(c, h, w) -> (c,)``: per-channel sum, requant by 1/(h*w)."""
    rng = np.random.default_rng(seed)
    epi = Epilogue(mult=nx.to_dyadic(rng.uniform(0.5, 1.5, c) / (h * w)), act=act,
                   offset=rng.integers(-3, 4, c))
    t = {"x": TensorInfo("x", (c, h, w), 8, True, 0.05),
         "y": TensorInfo("y", (c,), 8, True, 0.05)}
    node = Node("pool", "global_avgpool", ["x"], "y", {}, {}, epi)
    return IntProgram(t, [node], ["x"], ["y"]).validate()


#: name -> (program factory, its kwargs, config kwargs)
CASES = {
    "pw_relu": (pointwise_program, dict(act="relu"), {}),
    "pw_hswish": (pointwise_program, dict(act="hswish", cin=10, cout=9, seed=1), {}),
    "pw_residual": (pointwise_program, dict(act="none", cin=12, cout=12, residual=True, seed=2),
                    {}),
    "pw_unsigned_out": (pointwise_program, dict(act="relu", out_signed=False, seed=3), {}),
    "linear_logits": (linear_program, dict(), {}),
    "gpw_g3": (pointwise_program, dict(act="hswish", cin=12, cout=18, groups=3, seed=12), {}),
    "gpw_g6": (pointwise_program, dict(act="none", cin=12, cout=12, groups=6, residual=True,
                                       seed=13), {}),
    "pw_8x8": (pointwise_program, dict(act="hswish", cin=24, cout=20, h=6, w=6, seed=4),
               dict(N=8, M=8, T=8, S=8)),
    "dw3_s1": (depthwise_program, dict(c=6, h=5, w=6, k=3, stride=1, act="relu", seed=5), {}),
    "dw3_s2": (depthwise_program, dict(c=6, h=6, w=7, k=3, stride=2, act="hswish", seed=6), {}),
    "dw5_s1_res": (depthwise_program, dict(c=5, h=5, w=6, k=5, stride=1, residual=True,
                                           seed=7), {}),
    "dw5_s2": (depthwise_program, dict(c=9, h=9, w=9, k=5, stride=2, seed=8), {}),
    "pool": (pool_program, dict(seed=14), {}),
    "pool_relu": (pool_program, dict(c=6, h=3, w=3, act="relu", seed=15), {}),
    "pool_c12": (pool_program, dict(c=12, h=5, w=7, seed=16), {}),    # (whole blocks of 4)
    "mbconv": (mbconv_program, dict(seed=10), {}),
    "mbconv_s2": (mbconv_program, dict(c=6, e=12, h=7, w=7, stride=2, seed=11), {}),
    "pw_packed": (pointwise_program, dict(act="hswish", cin=10, cout=9, seed=16),
                  dict(packed=True)),
    "dw3_s2_packed": (depthwise_program, dict(c=6, h=6, w=7, k=3, stride=2, seed=17),
                      dict(packed=True)),
    # uint8 activations (XSIGNED = 0) and uint8 residuals (RSIGNED = 0): 9-bit engine operands
    "pw_u8_res": (pointwise_program, dict(act="none", cin=12, cout=12, residual=True,
                                          x_signed=False, seed=18), {}),
    "pw_u8_packed": (pointwise_program, dict(act="relu", cin=10, cout=9, x_signed=False,
                                             seed=19), dict(packed=True)),
    "dw3_s1_u8_res": (depthwise_program, dict(c=6, h=5, w=6, k=3, stride=1, residual=True,
                                              x_signed=False, seed=20), {}),
    "dw3_s2_u8_packed": (depthwise_program, dict(c=6, h=6, w=7, k=3, stride=2, act="hswish",
                                                 x_signed=False, seed=21), dict(packed=True)),
    # generic k x k convolutions (im2col on the down-forward paths): the stem's shape (3x3,
    # stride 2, padding 1, 3 input channels) and a stride-1 one with uint8 input channels
    # spread over two blocks of `width`
    "conv3_s2": (generic_program, dict(cin=3, cout=8, h=9, w=9, k=3, stride=2, act="hswish",
                                       seed=22), {}),
    "conv3_s1_u8": (generic_program, dict(cin=6, cout=6, h=5, w=6, k=3, stride=1, act="relu",
                                          x_signed=False, seed=23), {}),
    "gconv3_s2_g2": (generic_program, dict(cin=8, cout=12, h=7, w=6, k=3, stride=2, groups=2,
                                           seed=25), {}),
    "conv3_s2_8x8": (generic_program, dict(cin=3, cout=16, h=12, w=13, k=3, stride=2,
                                           act="hswish", seed=24), dict(N=8, M=8, T=8, S=8)),
    "dw3_s2_8x8": (depthwise_program, dict(c=12, h=10, w=11, k=3, stride=2, act="hswish",
                                           seed=9), dict(N=8, M=8, T=8, S=8)),
}


# the dense stem (sim.compile.stem): the same 3x3 stride-2 convs on 3 input channels run as a
# pointwise conv over the 27 channels of the input the host writes unfolded (im2col layout);
# the cases above keep the generic tap-major path (CASE_COMPILE)
CASES.update({
    "conv3_s2_im2col": (generic_program, dict(cin=3, cout=8, h=9, w=9, k=3, stride=2,
                                              act="hswish", seed=22), {}),
    "conv3_s2_8x8_im2col": (generic_program, dict(cin=3, cout=16, h=12, w=13, k=3, stride=2,
                                                  act="hswish", seed=24),
                            dict(N=8, M=8, T=8, S=8)),
    "conv3_s1_u8_im2col": (generic_program, dict(cin=6, cout=6, h=5, w=6, k=3, stride=1,
                                                 act="relu", x_signed=False, seed=23), {}),
})

#: compile options per case (:func:`compile_case`): the generic convs that the dense stem
#: would unfold keep the generic path (``stem="taps"``) and their twins take the dense stem
#: (``stem="im2col"``), whatever ``stem="auto"`` would choose, so that the core tests run both
TAPS, IM2COL = dict(stem="taps"), dict(stem="im2col")
CASE_COMPILE = {"conv3_s2": TAPS, "conv3_s1_u8": TAPS, "conv3_s2_8x8": TAPS,
                "conv3_s2_im2col": IM2COL, "conv3_s2_8x8_im2col": IM2COL,
                "conv3_s1_u8_im2col": IM2COL, "stem_block_im2col": IM2COL}


def make_case(name: str, seed: int = 0):
    """(program, config, input) of case ``name`` of :data:`CASES` or :data:`NETWORKS`."""
    fn, kw, ckw = CASES[name] if name in CASES else NETWORKS[name]
    prog = fn(**kw)
    cfg = small_config(**ckw)
    rng = np.random.default_rng(1000 + seed)
    xt = prog.tensors[prog.inputs[0]]
    x = rng.integers(-128, 128, xt.shape) if xt.signed else rng.integers(0, 256, xt.shape)
    if hasattr(fn, "case_input"):       # a factory with its own (realistic) input
        x = fn.case_input(prog, seed)
    return prog, cfg, x


# ---- attention (hw.core.attention) ------------------------------------------------------------

def _attention_params(x, dim: int, *, ksum_max: int, rng) -> dict:
    """Per-head step multipliers for ``golden.attention_steps`` on input ``x`` chosen so that
    every intermediate spans its range: S up to ~110, ksum8 up to ``ksum_max``, the log2 codes
    over their 16 values (largest divisor at code 15) and the outputs up to ~100."""
    from sim import golden
    heads = x.shape[0] // (3 * dim)
    t = np.asarray(x, np.int64).reshape(heads, 3 * dim, -1)
    k, v = np.maximum(t[:, dim:2 * dim], 0), t[:, 2 * dim:]
    kv = np.abs(np.einsum("hjn,hin->hji", k, v)).max(axis=(1, 2))
    s_m = nx.to_dyadic(110.0 / np.maximum(kv, 1) * rng.uniform(0.9, 1.1, heads))
    ks_m = nx.to_dyadic(ksum_max / np.maximum(k.sum(axis=2).max(axis=1), 1))
    p = dict(s_mult_b=s_m.b, s_mult_c=s_m.c, ksum_mult_b=ks_m.b, ksum_mult_c=ks_m.c,
             log2_offset=np.zeros(heads, np.int64), log2_emin=np.zeros(heads, np.int64),
             out_mult_b=np.full(heads, 1 << 14), out_mult_c=np.full(heads, 14))
    st = golden.attention_steps(x, p, dim)
    top = np.array([int(nx.log2_round(max(int(st["den"][h].max()), 1))) for h in range(heads)])
    offset = rng.integers(-2, 3, heads)
    emin = top + offset - 15
    # out ~ num / 2**e: scale the largest |num / 2**e| to ~100
    e = nx.log2_quantize(st["den"], offset=offset[:, None], emin=emin[:, None])
    ratio = np.abs(st["num"] / np.exp2(e)[:, None, :]).max(axis=(1, 2))
    om = nx.to_dyadic(100.0 / np.maximum(ratio, 1e-9))
    c = np.maximum(om.c, -emin)         # every shift c + e must be >= 0 (IntProgram validator)
    b = np.round(om.b * np.exp2(c - om.c)).astype(np.int64)
    if np.any(b >= 1 << nx.MULT_BITS):
        raise ValueError("attention case: out_mult does not fit; pick another seed")
    p.update(log2_offset=offset, log2_emin=emin, out_mult_b=b, out_mult_c=c)
    return {k: np.asarray(v, np.int64) for k, v in p.items()}


def attention_program(*, dim=4, heads=2, h=4, w=5, ksum_max=250, seed=0, input_seed=0):
    """One LiteMLA ReLU linear attention ``x (heads*3*dim, h, w) -> y (heads*dim, h, w)``, the
    step multipliers (``seed``) calibrated on the input :func:`make_case` gives for
    ``input_seed``. ``ksum_max``: the largest ksum8 (uint8)."""
    rng = np.random.default_rng(seed)
    x = np.random.default_rng(1000 + input_seed).integers(-128, 128, (heads * 3 * dim, h, w))
    prm = _attention_params(x, dim, ksum_max=ksum_max, rng=rng)
    t = {"x": TensorInfo("x", (heads * 3 * dim, h, w), 8, True, 0.05),
         "y": TensorInfo("y", (heads * dim, h, w), 8, True, 0.05)}
    node = Node("att", "linear_attention", ["x"], "y", dict(dim=dim), prm, None)
    return IntProgram(t, [node], ["x"], ["y"]).validate()


CASES.update({
    "att": (attention_program, dict(dim=4, heads=2, h=4, w=5, seed=20), {}),
    "att_d8": (attention_program, dict(dim=8, heads=2, h=3, w=5, seed=21), {}),
    "att_d6": (attention_program, dict(dim=6, heads=3, h=3, w=3, seed=24), {}),
    "att_8x8": (attention_program, dict(dim=8, heads=2, h=5, w=5, seed=23),
                dict(N=8, M=8, T=8, S=8)),
})


def litemla_module_program(*, stage=2, seed=0, context_only=False, resolution=64):
    """One whole EfficientViT module of :func:`sim.zoo.tiny` (stage ``stage``, its EfficientViT
    block after the downsampling MBConv): the LiteMLA context module (qkv PW, multi-scale
    aggregation DW 5x5 + grouped PW, concat, ReLU linear attention, proj + residual) followed by
    the local MBConv (PW expand -> DW 3x3 -> PW project + residual). Stage 2 at resolution 64:
    16 channels, 4x4 tokens, dim 8, 2 + 2 heads. Weights and scales are the zoo's (ksum8 over
    the full uint8 range). ``context_only``: the context module alone (up to proj);
    ``resolution``: the network's (128: 8x8 tokens at stage 2)."""
    from sim import zoo
    full = zoo.tiny(seed=seed, resolution=resolution)
    pre = f"backbone.stages.{stage}.op_list.1." + ("context_module." if context_only else "")
    nodes = [n for n in full.nodes if n.name.startswith(pre)]
    x = nodes[0].inputs[0]
    names = {x} | {n.output for n in nodes}
    t = {k: v for k, v in full.tensors.items() if k in names}
    meta = dict(name=f"tiny.{pre[:-1]}", zoo_seed=seed, stage=stage, resolution=resolution)
    return IntProgram(t, nodes, [x], [nodes[-1].output], meta).validate()


def _litemla_input(prog, seed=0):
    """The module's real input: sim.zoo.tiny run by sim.golden on a random image up to it."""
    from sim import golden, zoo
    full = zoo.tiny(seed=int(prog.meta.get("zoo_seed", 0)),
                    resolution=int(prog.meta.get("resolution", 64)))
    img = zoo.random_image(full.tensors[full.inputs[0]].shape[1], seed=seed)
    xq = golden.quantize_input(img, full.tensors[full.inputs[0]])
    return golden.run(full, xq, keep=True)[prog.inputs[0]]


litemla_module_program.case_input = _litemla_input

def tiny_network_program(*, seed=0):
    """All of :func:`sim.zoo.tiny` that runs on the accelerator before its head's LayerNorm
    (which is the host's, ``HOST_LN``): input stem, stages 0-3 with two EfficientViT modules
    (LiteMLA + MBConv), the head's PW conv, global pool and first linear layer. 39 of the 41
    nodes; the output is that linear layer's int8 vector."""
    from sim import zoo
    full = zoo.tiny(seed=seed)
    stop = next(i for i, n in enumerate(full.nodes) if n.op == "layernorm")
    nodes = full.nodes[:stop]
    names = set(full.inputs) | {n.output for n in nodes}
    t = {k: v for k, v in full.tensors.items() if k in names}
    meta = dict(name="tiny.before_layernorm", zoo_seed=seed)
    return IntProgram(t, nodes, list(full.inputs), [nodes[-1].output], meta).validate()


def _tiny_input(prog, seed=0):
    """A random image quantized by the network's input quantizer."""
    from sim import golden, zoo
    img = zoo.random_image(prog.tensors[prog.inputs[0]].shape[1], seed=seed)
    return golden.quantize_input(img, prog.tensors[prog.inputs[0]])


tiny_network_program.case_input = _tiny_input

#: whole networks: through the accelerator only (tb/test_system_rtl.py), too long for the Python
#: harness
NETWORKS = {
    "tiny_net": (tiny_network_program, {}, {}),
    "tiny_net_8x8": (tiny_network_program, {}, dict(N=8, M=8, T=8, S=8)),
}

CASES.update({
    "litemla": (litemla_module_program, dict(stage=2), {}),
    "litemla_8x8": (litemla_module_program, dict(stage=2), dict(N=8, M=8, T=8, S=8)),
    # the context module alone: its activations stay in B (sim.compile.attctx)
    "litemla_ctx": (litemla_module_program, dict(stage=2, context_only=True), {}),
    # at 8x8 tokens: the qkv written in the aggregation DW's row pieces, the DW starting on
    # the first while the MAT computes the rest (attctx.PIPE_QKV)
    "litemla_ctx_pipe": (litemla_module_program, dict(stage=2, context_only=True,
                                                      resolution=128), {}),
})

#: fewer requant lanes than engine lanes (``requant_mat`` / ``requant_rmac``, docs/hw-core.md
#: "Requant lanes"): the MAT unit drains a vector of 4 in 2 cycles, the R-MAC unit in 4 (a
#: depthwise tile of 4 x 4 in 16). Chosen so that every drain stall path runs: one step per
#: output vector (``pw_rq``: the sequencer waits on both units), 3 steps (``pw_residual_rq``,
#: R-MAC; residual bytes through the sub-blocks), NOEPI int32 writes, groups, a depthwise 3x3
#: (9 steps per tile < 17: waits) and 5x5 with residual, the im2col path, a fused MBConv and the
#: attention (9 tokens: 3 steps per KV vector on the R-MAC, which waits).
REQUANT = dict(requant_mat=2, requant_rmac=1)
CASES.update({
    "pw_rq": (pointwise_program, dict(act="hswish", cin=4, cout=10, seed=30), REQUANT),
    "pw_residual_rq": (pointwise_program, dict(act="none", cin=12, cout=12, residual=True,
                                               seed=31), REQUANT),
    "linear_logits_rq": (linear_program, dict(cin=4, cout=10, seed=32), REQUANT),
    "gpw_g3_rq": (pointwise_program, dict(act="hswish", cin=12, cout=18, groups=3, seed=33),
                  REQUANT),
    "dw3_s2_rq": (depthwise_program, dict(c=6, h=6, w=7, k=3, stride=2, act="hswish", seed=34),
                  REQUANT),
    "dw5_s1_res_rq": (depthwise_program, dict(c=5, h=5, w=6, k=5, stride=1, residual=True,
                                              seed=35), REQUANT),
    "conv3_s2_rq": (generic_program, dict(cin=3, cout=8, h=9, w=9, k=3, stride=2, act="hswish",
                                          seed=36), REQUANT),
    "conv3_s2_im2col_rq": (generic_program, dict(cin=3, cout=8, h=9, w=9, k=3, stride=2,
                                                 act="hswish", seed=36), REQUANT),
    "mbconv_rq": (mbconv_program, dict(seed=37), REQUANT),
    "att_d6_rq": (attention_program, dict(dim=6, heads=3, h=3, w=3, seed=24), REQUANT),
})

#: the residual path on fewer of the R-MAC's requant lanes (``requant_rmac_res``, docs/hw-core.md
#: "issue #14, round 4"): at N = M = 4 one of the 4 lanes (``_rr``: a residual vector drains in
#: 4 cycles, any other in 1) or one of 2 (``_rr2``: 4 and 2 cycles). A residual pointwise conv of
#: 3 steps per vector (the R-MAC waits), a residual depthwise 3x3 (9 steps per tile < 17: waits)
#: and a plain pointwise conv next to them.
RES_LANES = dict(requant_rmac_res=1)
RES_LANES2 = dict(requant_rmac=2, requant_rmac_res=1)
# the stem and the DSConv after it, fused into one chain by the dense stem (issue #16, stem2
# round): the second PW's residual read from the tile, 3 row tiles with their halo; one
# residual requant lane (the PW's R-MAC vectors wait for it, as at `paper`: its pixels are
# split between the engines with those stalls counted)
CASES["stem_block_im2col"] = (stem_block_program, dict(c=8, h=11, w=9, seed=26), RES_LANES)
CASE_COMPILE.update(conv3_s2_rq=TAPS, conv3_s2_im2col_rq=IM2COL)
CASES.update({
    "pw_residual_rr": (pointwise_program, dict(act="none", cin=12, cout=12, residual=True,
                                               seed=41), RES_LANES),
    "pw_residual_rr2": (pointwise_program, dict(act="relu", cin=12, cout=12, residual=True,
                                                seed=42), RES_LANES2),
    "pw_rr": (pointwise_program, dict(act="hswish", cin=4, cout=10, seed=46), RES_LANES),
    "pw_rr2": (pointwise_program, dict(act="hswish", cin=4, cout=10, seed=43), RES_LANES2),
    "dw3_s1_res_rr": (depthwise_program, dict(c=6, h=6, w=7, k=3, stride=1, residual=True,
                                              seed=44), RES_LANES),
    "dw3_s1_res_rr2": (depthwise_program, dict(c=5, h=5, w=6, k=3, stride=1, residual=True,
                                               seed=45), RES_LANES2),
})
#: the paper's engine sizes and requant lanes (``sim.config.PAPER_REQUANT``: 4 MAT lanes, 8 R-MAC
#: lanes of which 2 have the residual path): a residual pointwise conv of 2 steps per vector on
#: the R-MAC (D_res = 4: it waits)
CASES["pw_residual_paper_lanes"] = (pointwise_program, dict(act="relu", cin=16, cout=16, h=2, w=5,
                                                            residual=True, seed=47),
                                    dict(N=8, M=8, T=8, S=8, requant_mat=4, requant_rmac_res=2))
