"""Random valid IntPrograms and small AccelConfigs as ``hypothesis`` strategies (issue #18).

:func:`configs` draws small accelerator configs (engine sizes, 1..3 cores, DSP packing, buffer
sizes within ``sim.config``'s ranges, small enough to force row tiles, channel tiles and weight
chunks); :func:`programs` draws a random chain of layers for one config, within the ranges of
``sim.isa`` (``SHAPE_LIMITS``, ``LIMITS``): pointwise / grouped pointwise / generic kxk convs,
depthwise convs (every kernel and stride of the R-MAC's self-accumulation mode the config's
``N`` allows: ``sim.isa.dw_kernel_ok``), linear attention, residual and Hardswish / ReLU
epilogues, concat, global pooling, linear layers with and without epilogue, the host's
LayerNorm. Every epilogue multiplier is calibrated on the golden accumulators (so outputs span
the int8 range instead of saturating) and then scaled by a random power of two; offsets,
multipliers and shifts are drawn, now and then, at the ends of their ``LIMITS`` range.

The programs are checked with ``IntProgram.validate(cfg)`` before they are returned: a drawn
program is valid by construction, so a validator refusal is a bug of this generator, and a
compiler refusal other than a buffer capacity one is a finding (``tests/test_random_programs.py``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from sim import golden
from sim import numerics as nx
from sim.config import AccelConfig
from sim.intprogram import Epilogue, IntProgram, Node, TensorInfo, conv_output_hw
from sim.isa import LIMITS, SHAPE_LIMITS, dw_kernel_ok

__all__ = ["configs", "programs", "cases", "RTL_CONFIG"]

#: the one-core config the RTL runs use (tb.core.cases.small_config(): its Verilog is built and
#: cached for tests/../tb/test_core_rtl.py already)
RTL_CONFIG = dict(N=4, M=4, T=4, S=4, L=1, buf_b_bytes=16384, buf_c_bytes=8192,
                  buf_out_bytes=8192, buf_aux_bytes=256, buf_div_bytes=64,
                  dram_bytes_per_cycle=4096, dram_latency_cycles=0, dsp_packing=False)


@st.composite
def configs(draw, *, max_cores: int = 3) -> AccelConfig:
    """A small config: engines of 1..6 lanes, 1..max_cores cores, small buffers."""
    n, m, t, s = (draw(st.integers(1, 6), label=k) for k in "NMTS")
    packed = draw(st.booleans(), label="packed") and (n * m) % 2 == 0 and (t * s) % 2 == 0
    return AccelConfig(
        N=n, M=m, T=t, S=s, L=draw(st.integers(1, max_cores), label="L"), dsp_packing=packed,
        buf_b_bytes=draw(st.sampled_from([8192, 16384, 32768]), label="buf_b"),
        buf_c_bytes=draw(st.sampled_from([4096, 8192, 16384]), label="buf_c"),
        buf_out_bytes=draw(st.sampled_from([2048, 4096, 8192]), label="buf_out"),
        buf_aux_bytes=draw(st.sampled_from([256, 1024, 4096]), label="buf_aux"),
        buf_div_bytes=draw(st.sampled_from([64, 256, 1024]), label="buf_div"),
        buf_a_bytes=draw(st.sampled_from([64, 512, 8192]), label="buf_a"),
        dram_bytes_per_cycle=draw(st.sampled_from([16, 64]), label="dram"),
        dram_latency_cycles=draw(st.sampled_from([0, 16]), label="latency"))


def _edge(draw, name, typical, label):
    """Mostly ``typical``; now and then the lower or upper end of ``LIMITS[name]``."""
    lo, hi = LIMITS[name].range
    pick = draw(st.sampled_from(["typical"] * 6 + ["lo", "hi"]), label=label)
    return {"typical": typical, "lo": lo, "hi": hi}[pick]


class _Gen:
    """Builds the program node by node, running golden as it goes (for calibration)."""

    def __init__(self, draw, cfg, rtl):
        self.draw, self.cfg, self.rtl = draw, cfg, rtl
        self.rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1), label="seed"))
        self.tensors, self.nodes, self.env = {}, [], {}
        self.n = 0
        self.force_signed = False

    def name(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"

    def prog(self, validate=False):
        p = IntProgram(dict(self.tensors), list(self.nodes), [self.inp],
                       [self.nodes[-1].output], dict(name="random"))
        return p.validate(self.cfg) if validate else p

    def add(self, node, shape, bits=8, signed=True):
        self.tensors[node.output] = TensorInfo(node.output, shape, bits, signed)
        self.nodes.append(node)
        self.env[node.output] = golden.execute_node(self.prog(), node, self.env)
        return node.output

    def epilogue(self, acc, cout, *, act=None, residual=None):
        d = self.draw
        act = act or d(st.sampled_from(["none", "relu", "hswish"]), label="act")
        a = np.abs(np.asarray(acc).reshape(cout, -1)).astype(np.float64)
        pct = np.percentile(a, 99.5, axis=1) + 1.0
        gain = 2.0 ** d(st.integers(-3, 3), label="gain")
        off = self.rng.integers(-3, 4, size=cout)
        off[0] = _edge(d, "offset", int(off[0]), "offset edge")
        if act == "hswish":
            mult = nx.to_dyadic(3000.0 * gain / pct)
            three, hm = nx.hswish_constants(3e-3, 0.05)
            return Epilogue(mult=mult, act="hswish", offset=off, mid_bits=16, three=three,
                            hswish_mult=hm), act
        mult = nx.to_dyadic(100.0 * gain / pct)
        b, c = mult.b.copy(), mult.c.copy()
        b[-1] = _edge(d, "mult_b", int(b[-1]), "mult_b edge")
        c[-1] = _edge(d, "mult_c", int(c[-1]), "mult_c edge")
        mult = nx.Dyadic(b, c)
        kw = {}
        if residual is not None:
            ratio = d(st.sampled_from([0.25, 0.5, 1.0, 3.0]), label="res ratio")
            kw = dict(residual=residual,
                      res_mult=nx.align_residual(nx.to_dyadic(np.full(cout, ratio)), mult.c))
        return Epilogue(mult=mult, act=act, offset=off, **kw), act

    def _signed_out(self, act):
        if act != "relu" or self.force_signed:
            return True
        return self.draw(st.booleans(), label="relu signed out")

    # -- layers --------------------------------------------------------------------------------
    def conv(self, x, cout, k, s, p, g):
        cin, h, w = self.tensors[x].shape
        wt = self.rng.integers(-127, 128, size=(cout, cin // g, k, k))
        bias = self.rng.integers(-3000, 3000, size=cout)
        acc = golden.conv_acc(self.env[x], wt, bias, stride=s, padding=p, groups=g)
        out_hw = conv_output_hw(h, w, k, s, p)
        res = None
        if (cout, *out_hw) == (cin, h, w) and self.draw(st.booleans(), label="residual"):
            res = x
        act = self.draw(st.sampled_from(["none", "relu"] if res else ["none", "relu", "hswish"]),
                        label="act")
        epi, act = self.epilogue(acc, cout, act=act, residual=res)
        name = self.name("conv")
        n = Node(name, "conv", [x], name, dict(kernel=k, stride=s, padding=p, groups=g),
                 dict(weight=wt.astype(np.int8), bias=bias.astype(np.int32)), epi)
        return self.add(n, (cout, *out_hw), signed=self._signed_out(act))

    def pointwise(self, x, cout=None):
        d = self.draw
        cin = self.tensors[x].shape[0]
        if cout is None:
            cout = cin if d(st.booleans(), label="keep channels") else d(st.integers(1, 24),
                                                                          label="cout")
        # groups > 1 (not cin = cout = g: a 1x1 depthwise conv, which no engine runs)
        divs = [g for g in range(2, min(cin, cout) + 1)
                if cin % g == 0 and cout % g == 0 and not g == cin == cout]
        g = d(st.sampled_from(divs), label="groups") \
            if divs and d(st.booleans(), label="grouped") else 1
        return self.conv(x, cout, 1, 1, 0, g)

    def generic(self, x):
        d = self.draw
        cin, h, w = self.tensors[x].shape
        k = d(st.integers(2, 3), label="k")
        p = d(st.integers(0, k // 2), label="pad")
        if min(h, w) + 2 * p < k:
            return self.pointwise(x)
        s = d(st.integers(1, 2), label="stride")
        cout = d(st.integers(1, 16), label="cout")
        g = d(st.sampled_from([g for g in (1, 2, 3) if cin % g == 0 and cout % g == 0]),
              label="groups")
        if g > 1 and g == cin == cout:      # that would be a depthwise conv
            g = 1
        return self.conv(x, cout, k, s, p, g)

    def depthwise(self, x):
        d = self.draw
        c, h, w = self.tensors[x].shape
        ks = [k for k in range(SHAPE_LIMITS["dw_kernel"][0], SHAPE_LIMITS["dw_kernel"][1] + 1)
              if dw_kernel_ok(k, self.cfg.N) and k <= min(h, w) + 2 * (k // 2)]
        if not ks or c < 2:
            return self.pointwise(x)
        k = d(st.sampled_from(ks), label="dw k")
        p = d(st.integers(max(0, (k - min(h, w) + 1) // 2), k // 2), label="dw pad")
        s = d(st.integers(*SHAPE_LIMITS["dw_stride"]), label="dw stride")
        return self.conv(x, c, k, s, p, c)

    def attention(self, x, dim=None):
        """A linear attention on a new qkv PW of ``x``, or (``dim`` given) on ``x`` itself."""
        d = self.draw
        if dim is None:
            dim = d(st.integers(1, 6), label="dim")
            heads = d(st.integers(1, 2), label="heads")
            self.force_signed = True            # the attention reads int8 q|k|v
            qkv = self.pointwise(x, cout=3 * dim * heads)
            self.force_signed = False
        else:
            qkv, heads = x, self.tensors[x].shape[0] // (3 * dim)
        _, h, w = self.tensors[qkv].shape
        hp = lambda v: np.full(heads, v, dtype=np.int64)        # noqa: E731
        hf = lambda v: np.full(heads, v, dtype=np.float64)      # noqa: E731
        s_m = nx.to_dyadic(hf(1 / 3000.0 * 2.0 ** d(st.integers(-2, 2), label="s gain")))
        k_m = nx.to_dyadic(hf(1 / 40.0 * 2.0 ** d(st.integers(-2, 2), label="k gain")))
        o_m = nx.to_dyadic(hf(50.0 * 2.0 ** d(st.integers(-2, 2), label="o gain")))
        emin = hp(d(st.integers(max(-int(o_m.c.min()), -4), 8), label="emin"))
        prm = dict(s_mult_b=s_m.b, s_mult_c=s_m.c, ksum_mult_b=k_m.b, ksum_mult_c=k_m.c,
                   log2_offset=hp(d(st.integers(-4, 4), label="log2 offset")), log2_emin=emin,
                   out_mult_b=o_m.b, out_mult_c=o_m.c)
        name = self.name("att")
        n = Node(name, "linear_attention", [qkv], name, dict(dim=dim), prm)
        return self.add(n, (heads * dim, h, w))

    def context(self, x):
        """EfficientViT's LiteMLA context module: qkv PW -> DW -> (grouped) PW -> concat(qkv,
        aggregation) -> linear attention (:meth:`attention` on the concat) -> proj PW; what
        ``sim.compile.attctx`` keeps on chip when it fits."""
        d = self.draw
        dim = d(st.integers(1, 4), label="ctx dim")
        heads = d(st.integers(1, 2), label="ctx heads")
        self.force_signed = True
        qkv = self.pointwise(x, cout=3 * dim * heads)
        agg = self.pointwise(self.depthwise(qkv), cout=3 * dim * heads)
        self.force_signed = False
        if self.tensors[agg].shape != self.tensors[qkv].shape:
            return agg                      # the DW had a stride: no concat
        name = self.name("cat")
        c = 2 * 3 * dim * heads
        cat = self.add(Node(name, "concat", [qkv, agg], name),
                       (c,) + self.tensors[qkv].shape[1:], signed=True)
        y = self.attention(cat, dim=dim)
        return self.pointwise(y)

    def concat(self, x):
        a = self.pointwise(x)
        b = self.pointwise(x)
        if self.tensors[a].signed != self.tensors[b].signed:
            return b
        name = self.name("cat")
        c = self.tensors[a].shape[0] + self.tensors[b].shape[0]
        n = Node(name, "concat", [a, b], name)
        return self.add(n, (c,) + self.tensors[a].shape[1:], signed=self.tensors[a].signed)

    def pool(self, x):
        c = self.tensors[x].shape[0]
        acc = self.env[x].reshape(c, -1).sum(axis=1)
        act = self.draw(st.sampled_from(["none", "relu", "hswish"]), label="pool act")
        epi, act = self.epilogue(acc, c, act=act)
        name = self.name("pool")
        n = Node(name, "global_avgpool", [x], name, {}, {}, epi)
        return self.add(n, (c,), signed=self._signed_out(act))

    def linear(self, x, epilogue=True):
        cin = self.tensors[x].shape[0]
        cout = self.draw(st.integers(1, 24), label="linear cout")
        wt = self.rng.integers(-127, 128, size=(cout, cin))
        bias = self.rng.integers(-3000, 3000, size=cout)
        acc = golden.linear_acc(self.env[x], wt, bias)
        epi, act = self.epilogue(acc, cout) if epilogue else (None, "none")
        name = self.name("fc")
        n = Node(name, "linear", [x], name, {}, dict(weight=wt.astype(np.int8),
                                                   bias=bias.astype(np.int32)), epi)
        if epilogue:
            return self.add(n, (cout,), signed=self._signed_out(act))
        return self.add(n, (cout,), bits=32)

    def layernorm(self, x):
        c = self.tensors[x].shape[0]
        name = self.name("ln")
        n = Node(name, "layernorm", [x], name, dict(eps=1e-5, act="hswish"),
                 dict(gamma=self.rng.normal(1, 0.1, c), beta=self.rng.normal(0, 0.1, c)))
        self.tensors[x].scale = np.float64(1e-4)
        return self.add(n, (c,))


#: map-shaped layer kinds and how often they are drawn
_MAP_OPS = ["pointwise", "pointwise", "generic", "depthwise", "depthwise", "attention",
            "concat", "context"]


@st.composite
def programs(draw, cfg: AccelConfig, *, max_layers: int = 4, rtl: bool = False,
             max_hw: int = 10, max_c: int = 16, stem: bool = False):
    """``(IntProgram, input)``: a random chain of 1..max_layers layers for ``cfg``, valid
    (``validate(cfg)``). ``rtl``: only what the computing core runs (no host LayerNorm).
    ``stem``: the first layer an RGB stem (a 3x3 stride-2 conv with padding 1 on 3 input
    channels, :mod:`sim.compile.stem`) on an image of odd height and width up to
    ``2 * max_hw + 1``."""
    g = _Gen(draw, cfg, rtl)
    c = 3 if stem else draw(st.integers(1, max_c), label="C")
    if stem:
        h = 2 * draw(st.integers(1, max_hw), label="H") + 1
        w = 2 * draw(st.integers(1, max_hw), label="W") + 1
    else:
        h = draw(st.integers(1, max_hw), label="H")
        w = draw(st.integers(1, max_hw), label="W")
    signed = draw(st.booleans(), label="input signed")
    g.inp = "x"
    g.tensors["x"] = TensorInfo("x", (c, h, w), 8, signed)
    g.env["x"] = g.rng.integers(-128, 128, (c, h, w)) if signed \
        else g.rng.integers(0, 256, (c, h, w))
    x = "x"
    if stem:
        x = g.conv(x, draw(st.integers(1, max_c), label="stem cout"), 3, 2, 1, 1)
    layers = draw(st.integers(0 if stem else 1, max_layers), label="layers")
    for _ in range(layers):
        op = draw(st.sampled_from(_MAP_OPS), label="op")
        x = getattr(g, op)(x)
    tail = draw(st.sampled_from(["none", "none", "pool", "pool_linear", "pool_logits"]
                                + ([] if rtl else ["pool_logits_ln"])), label="tail")
    if tail != "none" or not g.nodes:
        x = g.pool(x)
        if tail == "pool_linear":
            x = g.linear(x)
        elif tail.startswith("pool_logits"):
            x = g.linear(x, epilogue=False)
            if tail == "pool_logits_ln":
                g.layernorm(x)
    prog = g.prog(validate=True)
    return prog, g.env["x"]


def cases(*, max_cores: int = 3, max_layers: int = 4, max_hw: int = 10, max_c: int = 16,
          stem: bool = False):
    """``(prog, cfg, x)`` for a random config and a random program on it (``stem``: starting
    with an RGB stem, :func:`programs`)."""
    return configs(max_cores=max_cores).flatmap(
        lambda cfg: programs(cfg, max_layers=max_layers, max_hw=max_hw, max_c=max_c,
                             stem=stem).map(lambda px: (px[0], cfg, px[1])))
