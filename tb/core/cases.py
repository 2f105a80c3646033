"""Single-layer test programs for the computing core (used by tests/test_hw_core.py and the
cocotb tests): a random IntProgram, a small single-core AccelConfig and an input."""

from __future__ import annotations

import numpy as np

from sim import numerics as nx
from sim.config import AccelConfig
from sim.intprogram import Epilogue, IntProgram, Node, TensorInfo

__all__ = ["small_config", "pointwise_program", "linear_program", "depthwise_program",
           "generic_program", "mbconv_program", "pool_program", "CASES",
           "make_case"]


def small_config(*, N=4, M=4, T=4, S=4, packed=False, **kw) -> AccelConfig:
    """A one-core config with small buffers; DRAM so fast (4096 B/cycle, no latency) that the
    cycle model's time is the compute time, comparable with the RTL run whose DMA takes no time."""
    d = dict(N=N, M=M, T=T, S=S, L=1, buf_b_bytes=16384, buf_c_bytes=8192, buf_out_bytes=8192,
             buf_aux_bytes=256, buf_div_bytes=64, dram_bytes_per_cycle=4096,
             dram_latency_cycles=0, dsp_packing=packed)
    d.update(kw)
    return AccelConfig(**d)


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


def make_case(name: str, seed: int = 0):
    """(program, config, input) of case ``name`` of :data:`CASES`."""
    fn, kw, ckw = CASES[name]
    prog = fn(**kw)
    cfg = small_config(**ckw)
    rng = np.random.default_rng(1000 + seed)
    xt = prog.tensors[prog.inputs[0]]
    x = rng.integers(-128, 128, xt.shape) if xt.signed else rng.integers(0, 256, xt.shape)
    return prog, cfg, x
