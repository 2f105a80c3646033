"""Model zoo: IntPrograms with the exact topology of the official EfficientViT-B0..B3 classifiers.

The graphs follow ``mit-han-lab/efficientvit`` (``efficientvit/models/efficientvit/backbone.py``,
``cls.py``, ``models/nn/ops.py``); node names are the official module paths, e.g.
``backbone.stages.2.op_list.1.context_module.main.qkv`` (the module whose ``.conv.weight`` is the
state-dict key), so reports and the ``quant`` exporter speak the same names.

The parameters are random but *sane*: int8 weights drawn at random, and every bias, dyadic
multiplier and scale derived from a calibration pass of the golden model itself on random
photo-like images, node by node, as a real PTQ would: each weight tensor gets a real
(filter-wise) scale chosen so that its pre-activation has a unit-ish RMS (a BN-normalised
network), residual branches match the magnitude of their shortcut, and each int8 output scale is
the least-MSE clipping range (>= the 99.9th percentile). So the TensorInfo scales describe a
consistent float network (``sim.golden.float_reference``), activations stay in range (typically
< 1 % saturated) and the logits vary with the input. Deterministic for a seed. The details and
measured figures are in docs/intprogram.md.

API: :data:`MODELS`, :func:`parse_name`, :func:`build`, :func:`tiny`, :func:`macs`,
:func:`mac_shares`, :func:`config`, :func:`random_image`.
"""

from __future__ import annotations

import re

import numpy as np

from . import golden
from . import numerics as nx
from .intprogram import Epilogue, IntProgram, Node, TensorInfo

__all__ = ["MODELS", "CONFIGS", "TINY_CONFIG", "parse_name", "config", "build", "tiny",
           "random_image", "macs", "node_macs", "mac_shares", "main"]

MODELS = ("b0", "b1", "b2", "b3")

#: official widths, depths, attention dim and head widths (cls.py / backbone.py)
CONFIGS = {
    "b0": dict(width=(8, 16, 32, 64, 128), depth=(1, 2, 2, 2, 2), dim=16, head=(1024, 1280)),
    "b1": dict(width=(16, 32, 64, 128, 256), depth=(1, 2, 3, 3, 4), dim=16, head=(1536, 1600)),
    "b2": dict(width=(24, 48, 96, 192, 384), depth=(1, 3, 4, 4, 6), dim=32, head=(2304, 2560)),
    "b3": dict(width=(32, 64, 128, 256, 512), depth=(1, 4, 6, 6, 9), dim=32, head=(2304, 2560)),
}
EXPAND_RATIO = 4
DEFAULT_RESOLUTION = 224
OUT_TARGET = 120.0          # LSBs the 99.9th percentile of the input image maps to
CLIP_CANDIDATES = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)  # x p99.9, for the output-scale search
PCT = 99.9
CALIB_IMAGES = 2            # random images the parameters are calibrated on


def parse_name(name: str) -> tuple[str, int]:
    """``"b1-r224"`` -> ``("b1", 224)``; ``"b1"`` -> ``("b1", 224)``. Case-insensitive."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    m = re.fullmatch(r"\s*(b[0-9])(?:[-_]?r(\d+))?\s*", name.lower())
    if not m or m.group(1) not in MODELS:
        raise ValueError(f"bad model name {name!r}: expected one of {', '.join(MODELS)} optionally"
                         f" followed by -r<resolution>, e.g. 'b1-r224'")
    res = int(m.group(2)) if m.group(2) else DEFAULT_RESOLUTION
    _check_resolution(res)
    return m.group(1), res


def _check_resolution(res):
    if not isinstance(res, (int, np.integer)) or isinstance(res, bool):
        raise TypeError(f"resolution must be an int, got {type(res).__name__}")
    if res < 32 or res % 32:
        raise ValueError(f"resolution must be a multiple of 32 and >= 32 (five stride-2 stages),"
                         f" got {res}")


def config(model: str) -> dict:
    """The width/depth/dim/head configuration of ``model`` (a copy)."""
    if model not in CONFIGS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    return dict(CONFIGS[model])


# --- the builder ---------------------------------------------------------------------------------

def _pct(a, q=PCT) -> float:
    a = np.abs(np.asarray(a, dtype=np.float64)).ravel()
    return float(np.percentile(a, q)) if a.size else 0.0


def _hswish(v):
    return v * np.clip(v + 3.0, 0.0, 6.0) / 6.0


class _Builder:
    """Adds nodes one at a time and runs each on the calibration images right away."""

    def __init__(self, rng: np.random.Generator, xs_int: list, in_scale: float):
        self.rng = rng
        self.tensors: dict[str, TensorInfo] = {}
        self.nodes: list[Node] = []
        self.envs: list[dict] = [{"input": x} for x in xs_int]   # one env per calibration image
        self.tensors["input"] = TensorInfo("input", xs_int[0].shape, 8, True, in_scale)
        self._prog = IntProgram(self.tensors, self.nodes, ["input"], [])

    # helpers
    def vals(self, name) -> np.ndarray:
        """The calibration values of ``name``: (images, ...) int64."""
        return np.stack([e[name] for e in self.envs])

    def real(self, name) -> np.ndarray:
        t = self.tensors[name]
        s = t.channel_scale().reshape((-1,) + (1,) * (len(t.shape) - 1))
        return self.vals(name).astype(np.float64) * s

    def _add(self, node: Node, shape, *, scale, bits=8, signed=True, accs=None):
        """Append ``node`` and compute its output on every calibration image; ``accs``: the
        node's accumulators per image when already at hand (conv), else golden executes it."""
        self.tensors[node.output] = TensorInfo(node.output, shape, bits, signed, scale)
        self.nodes.append(node)
        for i, e in enumerate(self.envs):
            if accs is None:
                e[node.output] = golden.execute_node(self._prog, node, e)
            else:
                epi = node.epilogue
                res = e[epi.residual] if epi.residual is not None else None
                e[node.output] = epi.apply(accs[i], out_bits=bits, signed=signed, residual=res)
        return node.output

    def _weights(self, shape):
        w = np.round(self.rng.standard_normal(shape) * 40.0)
        return np.clip(w, -127, 127).astype(np.int8)

    def _out_scale(self, real_out) -> float:
        """The int8 output scale: the clipping range among ``CLIP_CANDIDATES`` x the 99.9th
        percentile (capped at the maximum) with the least quantization MSE on the calibration
        values (an OMSE-style search on a fixed subsample), mapped to 127 LSB."""
        a = np.abs(np.asarray(real_out, dtype=np.float64)).ravel()
        if a.size > 100_000:
            a = a[np.linspace(0, a.size - 1, 100_000).astype(np.int64)]
        p, top = _pct(a), float(a.max()) if a.size else 0.0
        if p <= 0.0:
            return max(top, 1e-6) / 127.0
        best, best_err = None, np.inf
        for f in CLIP_CANDIDATES:
            s = min(p * f, top) / 127.0
            err = float(np.mean((a - s * np.minimum(np.floor(a / s + 0.5), 127)) ** 2))
            if err < best_err:
                best, best_err = s, err
        return best

    def conv(self, name, x, cout, *, kernel=1, stride=1, groups=1, act="none", bias=True,
             residual=None, target=1.0):
        """A conv whose real pre-activation has RMS ~ ``target`` (x a random per-filter factor)
        and per-channel means ~ N(0, 0.3 target) (from the bias), then ``act`` (+ residual)."""
        xt = self.tensors[x]
        cin = xt.shape[0]
        w = self._weights((cout, cin // groups, kernel, kernel))
        pad = kernel // 2
        acc0 = np.stack([golden.conv_acc(e[x], w, None, stride=stride, padding=pad, groups=groups)
                         for e in self.envs])
        s_in = float(np.max(xt.channel_scale()))  # zoo activations are per-tensor
        if not np.allclose(xt.channel_scale(), s_in):
            raise NotImplementedError("zoo convs take per-tensor input scales")
        # one data-driven normalisation per tensor (per-channel normalisation on a couple of
        # images over-amplifies channels that happen to be quiet on them), times a random
        # per-filter factor so that filter-wise multipliers differ
        sig = float(np.sqrt(np.mean(acc0.astype(np.float64) ** 2))) or 1.0
        tgt = target * self.rng.uniform(0.7, 1.3, cout)
        s_acc = tgt / sig                                   # real value of one accumulator LSB
        if bias:
            b_real = self.rng.normal(0.0, 0.3 * target, cout)
            b = np.clip(np.round(b_real / s_acc), -(1 << 29), (1 << 29)).astype(np.int32)
        else:
            b = np.zeros(cout, dtype=np.int32)
        acc = acc0 + b[:, None, None]           # == golden.conv_acc(x, w, b), (images, C, H, W)
        pre = acc * s_acc[:, None, None]
        return self._epilogue_node(name, "conv", [x], pre, s_acc, act, residual, accs=acc,
                                   attrs=dict(kernel=kernel, stride=stride, padding=pad, groups=groups),
                                   params=dict(weight=w, bias=b))

    def _epilogue_node(self, name, op, inputs, pre, s_acc, act, residual, *, attrs, params,
                       accs=None):
        shape = pre.shape[1:]
        if act == "hswish":
            out_real = _hswish(pre)
            s_out = self._out_scale(out_real)
            s_mid = max(np.abs(pre).max() * 1.25, 6.0) / (1 << 15)
            three, hmult = nx.hswish_constants(s_mid, s_out)
            mult = nx.to_dyadic(s_acc / s_mid)
            epi = Epilogue(mult=mult, act="hswish", mid_bits=16, three=three, hswish_mult=hmult)
        elif act in ("none", "relu"):
            out_real = pre
            res_mult = None
            if residual is not None:
                out_real = pre + self.real(residual)
            if act == "relu":
                out_real = np.maximum(out_real, 0)
            s_out = self._out_scale(out_real)
            mult = nx.to_dyadic(s_acc / s_out)
            if residual is not None:
                s_res = float(np.max(self.tensors[residual].channel_scale()))
                res_mult = nx.align_residual(nx.to_dyadic(s_res / s_out), mult.c)
            epi = Epilogue(mult=mult, act=act, residual=residual, res_mult=res_mult)
        else:
            raise ValueError(act)
        node = Node(name, op, list(inputs), name, attrs, params, epi)
        return self._add(node, shape, scale=s_out, accs=accs)

    def pool(self, name, x):
        xi, s_in = self.vals(x), float(np.max(self.tensors[x].channel_scale()))
        c, hw = xi.shape[1], xi.shape[2] * xi.shape[3]
        out_real = xi.reshape(xi.shape[0], c, -1).sum(axis=2) * s_in / hw
        s_out = self._out_scale(out_real)
        epi = Epilogue(mult=nx.to_dyadic(s_in / hw / s_out))
        return self._add(Node(name, "global_avgpool", [x], name, {}, {}, epi), (c,), scale=s_out)

    def linear(self, name, x, cout, *, bias=True, target=1.0):
        """A linear layer without epilogue: its output is the raw int32 accumulator (the host
        LayerNorm's input, or the logits)."""
        xt = self.tensors[x]
        s_in = float(np.max(xt.channel_scale()))
        w = self._weights((cout, xt.shape[0]))
        acc0 = np.stack([golden.linear_acc(e[x], w) for e in self.envs])
        sig = float(acc0.std()) or 1.0
        s_w = target / sig / s_in                          # one weight scale per tensor
        s_acc = s_in * s_w
        b = (np.clip(np.round(self.rng.normal(0, 0.3 * target, cout) / s_acc), -(1 << 29), 1 << 29)
             .astype(np.int32) if bias else np.zeros(cout, dtype=np.int32))
        node = Node(name, "linear", [x], name, {}, dict(weight=w, bias=b), None)
        return self._add(node, (cout,), scale=s_acc, bits=32)

    def layernorm(self, name, x, *, act="hswish", eps=1e-5):
        c = self.tensors[x].shape[0]
        gamma = self.rng.uniform(0.8, 1.2, c)
        beta = self.rng.normal(0.0, 0.2, c)
        v = self.real(x)
        y = (v - v.mean(axis=1, keepdims=True)) / np.sqrt(v.var(axis=1, keepdims=True) + eps) \
            * gamma + beta
        if act == "hswish":
            y = _hswish(y)
        s_out = self._out_scale(y)
        node = Node(name, "layernorm", [x], name, dict(eps=eps, act=act),
                    dict(gamma=gamma, beta=beta), None)
        return self._add(node, (c,), scale=s_out)

    def concat(self, name, xs):
        t0 = self.tensors[xs[0]]
        scale = np.concatenate([self.tensors[t].channel_scale() for t in xs])
        shape = (sum(self.tensors[t].shape[0] for t in xs),) + t0.shape[1:]
        return self._add(Node(name, "concat", list(xs), name, {}, {}, None), shape, scale=scale)

    def attention(self, name, x, dim):
        """Linear attention with calibrated step multipliers (see golden.attention_steps)."""
        xi, xt = self.vals(x), self.tensors[x]                     # (images, C, H, W)
        heads = xt.shape[0] // (3 * dim)
        hsc = xt.channel_scale().reshape(heads, 3 * dim)
        s_q, s_k, s_v = hsc[:, 0], hsc[:, dim], hsc[:, 2 * dim]
        t = xi.reshape(xi.shape[0], heads, 3 * dim, -1).astype(np.float64)
        k = np.maximum(t[:, :, dim:2 * dim], 0) * s_k[:, None, None]
        v = t[:, :, 2 * dim:] * s_v[:, None, None]
        s_real = k @ np.swapaxes(v, -1, -2)                           # (images, heads, d, d)
        s_s = np.maximum(np.abs(s_real).max(axis=(0, 2, 3)), 1e-9) / 127.0
        ksum_real = k.sum(axis=-1)                                    # (images, heads, d)
        s_ks = np.maximum(ksum_real.max(axis=(0, 2)), 1e-9) / 255.0
        s_mult = nx.to_dyadic(s_k * s_v / s_s)
        ksum_mult = nx.to_dyadic(s_k / s_ks)
        # the quantized steps 1-4 decide the divisor range and the output scale
        p = dict(s_mult_b=s_mult.b, s_mult_c=s_mult.c, ksum_mult_b=ksum_mult.b,
                 ksum_mult_c=ksum_mult.c, out_mult_b=np.full(heads, 1 << 15),
                 out_mult_c=np.full(heads, 20), log2_offset=np.zeros(heads, np.int64),
                 log2_emin=np.zeros(heads, np.int64))
        steps = [golden.attention_steps(e[x], p, dim) for e in self.envs]
        num = np.stack([st["num"] for st in steps])                   # (images, heads, d, N)
        den = np.stack([st["den"] for st in steps])                   # (images, heads, N)
        s_den = s_ks * s_q
        num_real = num * (s_s * s_q)[:, None, None]
        den_real = den * s_den[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            out_real = np.where(den_real[:, :, None, :] > 0, num_real / den_real[:, :, None, :], 0.0)
        s_out = self._out_scale(out_real)
        offset = np.round(np.log2(s_den)).astype(np.int64)        # paper Eq. 11
        out_mult = nx.to_dyadic(s_s / (s_ks * s_out) * np.exp2(offset.astype(np.float64)))
        span = (1 << nx.LOG2_CODE_BITS) - 1
        emin = np.zeros(heads, np.int64)
        for h in range(heads):
            top = int(nx.log2_round(max(int(den[:, h].max()), 1))) + int(offset[h])
            c = int(out_mult.c[h])                                  # cover the largest divisors
            emin[h] = int(np.clip(top - span, -c, nx.MAX_SHIFT - c - span))
        params = dict(s_mult_b=s_mult.b, s_mult_c=s_mult.c, ksum_mult_b=ksum_mult.b,
                      ksum_mult_c=ksum_mult.c, out_mult_b=out_mult.b, out_mult_c=out_mult.c,
                      log2_offset=offset, log2_emin=emin)
        params = {k: np.asarray(v, dtype=np.int64) for k, v in params.items()}
        node = Node(name, "linear_attention", [x], name, dict(dim=dim), params, None)
        return self._add(node, (heads * dim,) + xt.shape[1:], scale=s_out)

    # --- EfficientViT blocks -------------------------------------------------------------------
    def mbconv(self, prefix, x, cout, *, stride, residual):
        cin = self.tensors[x].shape[0]
        mid = round(cin * EXPAND_RATIO)
        y = self.conv(f"{prefix}.inverted_conv", x, mid, act="hswish")
        y = self.conv(f"{prefix}.depth_conv", y, mid, kernel=3, stride=stride, groups=mid,
                      act="hswish")
        return self._point(f"{prefix}.point_conv", y, cout, x if residual else None)

    def dsconv(self, prefix, x, cout, *, residual):
        cin = self.tensors[x].shape[0]
        y = self.conv(f"{prefix}.depth_conv", x, cin, kernel=3, groups=cin, act="hswish")
        return self._point(f"{prefix}.point_conv", y, cout, x if residual else None)

    def _point(self, name, y, cout, residual):
        tgt = float(self.real(residual).std()) if residual is not None else 1.0
        return self.conv(name, y, cout, act="none", residual=residual, target=tgt)

    def lite_mla(self, prefix, x, dim):
        c = self.tensors[x].shape[0]
        heads = c // dim
        td = heads * dim
        qkv = self.conv(f"{prefix}.qkv", x, 3 * td, bias=False)
        a = self.conv(f"{prefix}.aggreg.0.0", qkv, 3 * td, kernel=5, groups=3 * td, bias=False)
        a = self.conv(f"{prefix}.aggreg.0.1", a, 3 * td, groups=3 * heads, bias=False)
        cat = self.concat(f"{prefix}.multi_scale_qkv", [qkv, a])
        att = self.attention(f"{prefix}.relu_linear_att", cat, dim)
        tgt = float(self.real(x).std())
        return self.conv(f"{prefix}.proj", att, c, residual=x, bias=False, target=tgt)


def _check_common(seed, num_classes, calib_images):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not isinstance(calib_images, (int, np.integer)) or calib_images < 1:
        raise ValueError(f"calib_images must be an int >= 1, got {calib_images!r}")


def build(name_or_model: str, resolution: int | None = None, *, seed: int = 0,
          num_classes: int = 1000, calib_images: int = CALIB_IMAGES) -> IntProgram:
    """An IntProgram of EfficientViT ``name_or_model`` (``"b1"``, ``"b1-r256"``) at ``resolution``.

    ``resolution`` overrides the one in the name (default 224). ``seed`` fixes the weights and
    the ``calib_images`` random calibration images. The program is validated before it is
    returned. Cost: about 1 s (B0) to 10 s (B3) on one core.
    """
    model, res = parse_name(name_or_model)
    if resolution is not None:
        _check_resolution(resolution)
        res = int(resolution)
    _check_common(seed, num_classes, calib_images)
    meta = dict(model=model, resolution=res, seed=int(seed), num_classes=int(num_classes),
                source="sim.zoo (random weights, self-calibrated)",
                topology="mit-han-lab/efficientvit efficientvit_cls_" + model)
    return _build(CONFIGS[model], res, [seed, MODELS.index(model), res], num_classes,
                  calib_images, meta)


#: a miniature of the same topology (every op kind, every block type) for fast tests
TINY_CONFIG = dict(width=(8, 8, 16, 16, 24), depth=(1, 2, 1, 1, 1), dim=8, head=(32, 40))


def tiny(*, seed: int = 0, resolution: int = 64, num_classes: int = 10,
         calib_images: int = CALIB_IMAGES) -> IntProgram:
    """A miniature EfficientViT (:data:`TINY_CONFIG`) with the full topology of B0-B3 -- stem,
    DSConv, MBConvs with and without residual, EfficientViT blocks (qkv, DW 5x5, grouped PW,
    concat, linear attention, proj + residual) and the head -- in about 0.1 s. Node names as in
    :func:`build`. For unit tests of the compiler, simulator and RTL."""
    _check_resolution(resolution)
    _check_common(seed, num_classes, calib_images)
    meta = dict(model="tiny", resolution=int(resolution), seed=int(seed),
                num_classes=int(num_classes), source="sim.zoo.tiny (random weights, self-calibrated)",
                topology="EfficientViT-B topology with TINY_CONFIG widths")
    return _build(TINY_CONFIG, int(resolution), [seed, 99, resolution], num_classes, calib_images,
                  meta)


def _build(cfg, res, seed_key, num_classes, calib_images, meta) -> IntProgram:
    rng = np.random.default_rng(seed_key)
    # calibration images: smooth random fields (like normalised photos), std ~ 1
    imgs = [_smooth_image(rng, res) for _ in range(calib_images)]
    in_scale = _pct(np.stack(imgs)) / OUT_TARGET
    tinfo = TensorInfo("input", (3, res, res), 8, True, in_scale)
    b = _Builder(rng, [golden.quantize_input(img, tinfo) for img in imgs], in_scale)
    width, depth, dim = cfg["width"], cfg["depth"], cfg["dim"]

    x = b.conv("backbone.input_stem.op_list.0", "input", width[0], kernel=3, stride=2,
               act="hswish")
    for i in range(depth[0]):
        x = b.dsconv(f"backbone.input_stem.op_list.{i + 1}.main", x, width[0], residual=True)
    for s, (w, d) in enumerate(zip(width[1:3], depth[1:3])):
        for i in range(d):
            x = b.mbconv(f"backbone.stages.{s}.op_list.{i}.main", x, w, stride=2 if i == 0 else 1,
                         residual=i > 0)
    for s, (w, d) in enumerate(zip(width[3:], depth[3:]), start=2):
        x = b.mbconv(f"backbone.stages.{s}.op_list.0.main", x, w, stride=2, residual=False)
        for i in range(1, d + 1):
            p = f"backbone.stages.{s}.op_list.{i}"
            x = b.lite_mla(f"{p}.context_module.main", x, dim)
            x = b.mbconv(f"{p}.local_module.main", x, w, stride=1, residual=True)
    x = b.conv("head.op_list.0", x, cfg["head"][0], act="hswish")
    x = b.pool("head.op_list.1", x)
    x = b.linear("head.op_list.2.linear", x, cfg["head"][1], bias=False)
    x = b.layernorm("head.op_list.2.norm", x, act="hswish")
    x = b.linear("head.op_list.3.linear", x, num_classes, bias=True)
    meta = dict(meta, calib_images=int(calib_images))
    prog = IntProgram(b.tensors, b.nodes, ["input"], [x], meta)
    return prog.validate()


def random_image(resolution: int, seed: int = 0) -> np.ndarray:
    """A float (3, R, R) test image from the distribution the zoo calibrates on (std ~ 1)."""
    return _smooth_image(np.random.default_rng([seed, 12345]), int(resolution))


def _smooth_image(rng, res):
    """A random photo-like (3, res, res) float image, normalised like ImageNet inputs: 1/f
    ("pink") spectrum as natural images have, a strong luminance component shared by the three
    channels plus weaker colour components, a random gain and offset per image."""
    fy = np.fft.fftfreq(res)[:, None]
    fx = np.fft.rfftfreq(res)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / res)
    amp[0, 0] = 0.0

    def field():
        spec = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
        f = np.fft.irfft2(spec, s=(res, res))
        return f / (f.std() or 1.0)

    lum = field()
    img = np.stack([lum + 0.35 * field() for _ in range(3)])
    img = img / img.std() * rng.uniform(0.7, 1.3) + rng.uniform(-0.3, 0.3, (3, 1, 1))
    return np.clip(img, -2.2, 2.7)         # the range of ImageNet-normalised pixels


# --- workload figures -------------------------------------------------------------------------------

def node_macs(prog: IntProgram, n: Node) -> int:
    """Multiply-accumulates of one node (additions-only ops count 0)."""
    if n.op == "conv":
        cout, cin_g, kh, kw = n.params["weight"].shape
        ho, wo = prog.tensors[n.output].shape[1:]
        return int(cout * cin_g * kh * kw * ho * wo)
    if n.op == "linear":
        return int(np.asarray(n.params["weight"]).size)
    if n.op == "linear_attention":
        d = int(n.attrs["dim"])
        c, h, w = prog.tensors[n.inputs[0]].shape
        heads, tokens = c // (3 * d), h * w
        # step i: K^T V (d*d*N), step iii: Q S (d*d*N), step iv: Q ksum (d*N)
        return int(heads * (2 * d * d * tokens + d * tokens))
    return 0


def macs(prog: IntProgram) -> dict:
    """MACs per :attr:`Node.kind` (``generic``, ``pointwise``, ``grouped_pointwise``,
    ``depthwise``, ``matmul``, ``attention``); key ``total`` holds the sum."""
    out: dict[str, int] = {}
    for n in prog.nodes:
        m = node_macs(prog, n)
        if m:
            out[n.kind] = out.get(n.kind, 0) + m
    out["total"] = sum(out.values())
    return out


def mac_shares(prog: IntProgram) -> dict:
    """MAC shares in % in the paper's classes (Sec. VI-C): ``generic`` conv, ``pointwise``
    (incl. the grouped pointwise of the attention's aggregation), ``depthwise``, ``matmul`` (the
    attention's MatMuls) -- plus ``linear``, the head's two fully connected layers, which the
    paper's four classes leave out (with ``linear`` added to ``pointwise`` the shares are within
    0.4 points of the paper's for B1-R224; see docs/intprogram.md)."""
    m = macs(prog)
    tot = m["total"]
    groups = {"generic": ("generic",), "pointwise": ("pointwise", "grouped_pointwise"),
              "depthwise": ("depthwise",), "matmul": ("attention",), "linear": ("matmul",)}
    return {g: 100.0 * sum(m.get(k, 0) for k in ks) / tot for g, ks in groups.items()}


# --- command line -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    """``python -m sim.zoo b1-r224 [--out FILE] [--json]``: build a zoo model, print its workload,
    optionally save it as an IntProgram file."""
    import argparse
    import json
    import sys
    import time

    ap = argparse.ArgumentParser(
        prog="python -m sim.zoo",
        description="Build an EfficientViT IntProgram with random, self-calibrated integer "
                    "parameters (official B0-B3 topology) and report its workload.")
    ap.add_argument("model", help="b0..b3 optionally with -r<resolution> (e.g. b1-r224), or 'tiny'")
    ap.add_argument("--resolution", "-r", type=int, help="input resolution (multiple of 32);"
                    " overrides the one in the name")
    ap.add_argument("--seed", type=int, default=0, help="weights and calibration seed (default 0)")
    ap.add_argument("--classes", type=int, default=None, help="number of classes"
                    " (default 1000; 10 for tiny)")
    ap.add_argument("--calib-images", type=int, default=CALIB_IMAGES,
                    help=f"random images to calibrate on (default {CALIB_IMAGES})")
    ap.add_argument("--out", "-o", help="write the IntProgram to this .npz file")
    ap.add_argument("--summary", action="store_true", help="print one line per node")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if a.model.strip().lower() == "tiny":
            prog = tiny(seed=a.seed, resolution=a.resolution or 64, num_classes=a.classes or 10,
                        calib_images=a.calib_images)
        else:
            prog = build(a.model, a.resolution, seed=a.seed, num_classes=a.classes or 1000,
                         calib_images=a.calib_images)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    build_s = time.perf_counter() - t0
    path = None
    if a.out:
        try:
            path = str(prog.save(a.out))
        except OSError as e:
            print(f"error: cannot write {a.out}: {e}", file=sys.stderr)
            return 2
    m = macs(prog)
    report = {"model": prog.meta["model"], "resolution": prog.meta["resolution"],
              "seed": prog.meta["seed"], "nodes": len(prog.nodes), "macs": m,
              "gmacs": m["total"] / 1e9, "mac_shares_percent": mac_shares(prog),
              "build_seconds": round(build_s, 3), "file": path}
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        if a.summary:
            print(prog.summary())
        print(f"{report['model']}-r{report['resolution']} seed {report['seed']}: "
              f"{report['nodes']} nodes, {report['gmacs']:.3f} GMACs, built in {build_s:.1f} s")
        for k, v in report["mac_shares_percent"].items():
            print(f"  {k:10s} {v:6.2f} %")
        if path:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
