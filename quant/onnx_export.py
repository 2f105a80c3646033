"""ONNX export of a quantized model in the QDQ form (QuantizeLinear / DequantizeLinear around
float operators), built from its :class:`sim.intprogram.IntProgram` (the deployed integers).

Every quantized tensor ``t`` of the IntProgram appears twice: its codes ``QuantizeLinear(x,
s_t, zp_t)`` (int8, uint8 for unsigned tensors, int16 for the Hardswish intermediate) and its
real value ``DequantizeLinear(codes, s_t, zp_t)``. The mapping (``s`` scales, ``m = b / 2**c``
the IntProgram's dyadic multipliers, all per output channel where the IntProgram has them):

=================================  ==============================================================
IntProgram                         ONNX (opset 21)
=================================  ==============================================================
input quantization                 ``QuantizeLinear(images, s_in)`` -> ``DequantizeLinear``
filter-wise shift ``o`` (Eq. 9)    the tensor's zero point ``zp = -o`` (per channel), so the
                                   dequantized value is ``s (int + o)``; the consumer's int32
                                   bias is ``bias - W o`` (Eq. 10 undone: the shift is in zp)
channel-wise migration (Eq. 7)     the tensor's per-channel scale ``s_a M_i`` (axis 1)
conv + requant (Eq. 12)            ``Conv(DQ(x), DQ(W_int8, s_w'), DQ(bias_int32, s_x s_w'))``,
                                   then ``QuantizeLinear(s_out)``; ``s_w' = m s_out / s_x``: the
                                   filter scale that makes ``acc_real / s_out = acc m``, i.e.
                                   the integer requant (``s_w' = s_w`` up to the 16-bit dyadic's
                                   relative 2**-16)
residual add (same rounding)       ``Add(conv, DQ(res_int8, rm s_out))`` before the QuantizeLinear
Hardswish epilogue                 ``QuantizeLinear(int16, s_u)`` of the accumulator (``s_u =
                                   3 / three``: the 16-bit intermediate), ``DQ``, ``HardSwish``,
                                   ``Mul(6 hm s_out / s_u**2)`` (~1: the dyadic ``hm``), then
                                   ``QuantizeLinear(s_out, zp)``
global average pool                ``GlobalAveragePool``, ``Mul(m H W s_out / s_in)``, ``Flatten``
linear (head, raw int32)           ``Gemm(DQ(x), DQ(W_int8, s_acc / s_x), DQ(bias_int32, s_acc))``
                                   (float; the accumulator's real value)
LayerNorm + Hardswish (host)       ``LayerNormalization``, ``HardSwish``, ``QuantizeLinear``
linear attention (per head)        ``MatMul`` on the dequantized ``ReLU(K)``, ``V``; ``S`` through
                                   ``QuantizeLinear``/``DequantizeLinear`` (int8, scale ``s_k s_v
                                   / s_mult``), ``ksum`` likewise (uint8, ``s_k / ksum_mult``);
                                   ``num``, ``den`` by ``MatMul``
log2 divisor (Eq. 11)              ``d = Round(den / (s_ks s_q))`` (the integer divisor); ``i =
                                   Floor(Log(d) / ln 2)`` corrected by one where ``Pow(2, i)``
                                   shows float error (``i += d >= 2^(i+1)``, ``i -= d < 2^i``);
                                   the round bit ``d >= 1.5 * 2^i`` (bit ``i-1`` of ``d``); ``e =
                                   Clip(offset + i + rbit, emin, emin + 15)`` (``Max``/``Min``);
                                   ``out = num * out_mult s_out / (s_S s_q) * Pow(2, -e)``, 0
                                   where ``d = 0`` (``Where``), then ``QuantizeLinear(s_out)``
=================================  ==============================================================

Differences from the integer model, all at the rounding of a value to its code: QuantizeLinear
rounds half to even where ``sim.numerics`` rounds half up (exact ties), and the float32 sums
and products differ from the exact integers by float rounding (relative ~1e-7), which changes a
code only when the value is that close to a rounding boundary. Measured agreement with the
fake-quant model: docs/quant.md and ``tests/test_onnx_export.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["export_onnx", "OPSET", "OnnxExportError"]

OPSET = 21


class OnnxExportError(ValueError):
    """The IntProgram has something the ONNX mapping does not cover."""


def _import_onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:         # pragma: no cover - onnx is a dependency
        raise OnnxExportError("ONNX export needs the onnx package (pip install onnx)") from e
    return onnx, TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self):
        self.onnx, self.TP, self.helper, self.nph = _import_onnx()
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, base):
        self._n += 1
        return f"{base}__{self._n}"

    def const(self, base, arr):
        n = self.name(base)
        self.inits.append(self.nph.from_array(np.asarray(arr), n))
        return n

    def f32(self, base, arr):
        return self.const(base, np.asarray(arr, np.float32))

    def op(self, op, inputs, base, **attrs):
        out = self.name(base)
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out


def _split_heads(b, x, nm, heads, dim, hw):
    """The attention input ``x`` (``[1, heads * 3 dim, h, w]``) as per-head ``ReLU(Q)``,
    ``ReLU(K)`` and ``V`` (each ``[1, heads, dim, h w]``): the split both ONNX forms share."""
    x = b.op("Reshape", [x, b.const(f"{nm}.shape_in",
                                    np.array([-1, heads, 3 * dim, hw], np.int64))], f"{nm}.heads")

    def sl(lo, hi, tag):
        return b.op("Slice", [x, b.const("start", np.array([lo], np.int64)),
                              b.const("end", np.array([hi], np.int64)),
                              b.const("axis", np.array([2], np.int64))], f"{nm}.{tag}")
    q = b.op("Relu", [sl(0, dim, "q")], f"{nm}.relu_q")
    k = b.op("Relu", [sl(dim, 2 * dim, "k")], f"{nm}.relu_k")
    return q, k, sl(2 * dim, 3 * dim, "v")


def _qtype(bits, signed):
    if bits <= 8:
        return (np.int8 if signed else np.uint8), bits
    if bits <= 16 and signed:
        return np.int16, bits
    raise OnnxExportError(f"no ONNX QuantizeLinear type for a {bits}-bit "
                          f"{'signed' if signed else 'unsigned'} tensor")


def log2_round_nodes(b, d, nm, const, dtype):
    """ONNX nodes computing :func:`sim.numerics.log2_round` of the integer-valued tensor ``d``
    (>= 1 where it matters; 0 is mapped like 1 and masked by the caller): the leading-one
    position ``i = floor(log2 d)`` from ``Floor(Log(d) / ln 2)``, corrected by one where float
    rounding put it off (``+1`` if ``d >= 2^(i+1)``, ``-1`` if ``d < 2^i``, powers of two by
    ``Pow``: exact), plus the round bit ``d[i-1]``, which is set iff ``d >= 1.5 * 2^i``.
    ``const(name, value)`` makes constants of ``dtype`` (float32 exact for ``d < 2**24``)."""
    one, two = const("one", 1.0), const("two", 2.0)
    dpos = b.op("Max", [d, one], f"{nm}.den_pos")
    i0 = b.op("Floor", [b.op("Div", [b.op("Log", [dpos], f"{nm}.ln"), const("ln2", math.log(2))],
                             f"{nm}.log2")], f"{nm}.lod0")
    p0 = b.op("Pow", [two, i0], f"{nm}.p0")
    up = b.op("Cast", [b.op("GreaterOrEqual", [dpos, b.op("Mul", [p0, two], f"{nm}.p0x2")],
                            f"{nm}.up?")], f"{nm}.up", to=dtype)
    dn = b.op("Cast", [b.op("Less", [dpos, p0], f"{nm}.dn?")], f"{nm}.dn", to=dtype)
    i = b.op("Sub", [b.op("Add", [i0, up], f"{nm}.lod1"), dn], f"{nm}.lod")
    pi = b.op("Pow", [two, i], f"{nm}.pi")
    rb = b.op("Cast", [b.op("GreaterOrEqual", [dpos, b.op("Mul", [pi, const("1.5", 1.5)],
                                                             f"{nm}.p1_5")], f"{nm}.rb?")],
              f"{nm}.rbit", to=dtype)
    return b.op("Add", [i, rb], f"{nm}.log2_round")


class _Graph:
    """IntProgram -> ONNX nodes; ``real[t]`` / ``codes[t]`` name each tensor's ONNX values."""

    def __init__(self, prog, b: _Builder):
        self.p, self.b = prog, b
        self.real, self.codes = {}, {}
        self.offsets = {k: np.asarray(v, np.int64)
                        for k, v in (prog.meta.get("input_offsets") or {}).items()}

    def scale(self, t) -> np.ndarray:
        return self.p.tensors[t].channel_scale()

    def quant(self, x, t, *, per_channel_axis=1):
        """QuantizeLinear + DequantizeLinear of real ``x`` as tensor ``t`` (its scale, offsets
        as zero point, width)."""
        b, info = self.b, self.p.tensors[t]
        dt, bits = _qtype(info.bits, info.signed)
        s = np.asarray(info.scale, np.float64)
        o = self.offsets.get(t)
        lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if info.signed else (0, (1 << bits) - 1))
        tlo, thi = np.iinfo(dt).min, np.iinfo(dt).max
        zp = None if o is None else -o
        shift = None
        if zp is not None and (zp.min() < tlo or zp.max() > thi):
            shift, zp = o, None                   # offsets beyond the zero point's range
        if zp is not None or s.ndim == 1:
            c = info.channels
            s = np.broadcast_to(s, (c,))
            zp = np.zeros(c, np.int64) if zp is None else zp
            kw = dict(axis=per_channel_axis)
        else:
            zp, kw = np.int64(0), {}
        if shift is not None:
            sh = (shift * self.scale(t)).reshape(1, -1, *([1] * (len(info.shape) - 1)))
            x = b.op("Sub", [x, b.f32("shift", sh)], f"{t}.shift")
        sn, zn = b.f32(f"{t}.scale", s), b.const(f"{t}.zp", np.asarray(zp).astype(dt))
        q = b.op("QuantizeLinear", [x, sn, zn], f"{t}.q", **kw)
        if bits < np.iinfo(dt).bits or (not info.signed and bits < 8):
            q = b.op("Clip", [q, b.const("lo", np.asarray(lo, dt)), b.const("hi", np.asarray(hi, dt))],
                     f"{t}.clip")
        r = b.op("DequantizeLinear", [q, sn, zn], f"{t}.dq", **kw)
        if shift is not None:
            r = b.op("Add", [r, b.f32("unshift", sh)], f"{t}.unshift")
        self.codes[t], self.real[t] = q, r
        return r

    # -- nodes ------------------------------------------------------------------------------------
    def conv(self, n):
        b = self.b
        inp = n.inputs[0]
        w = np.asarray(n.params["weight"], np.int64)
        bias = np.asarray(n.params["bias"], np.int64)
        cout = w.shape[0]
        epi = n.epilogue
        m = np.broadcast_to(epi.mult.value(), (cout,)).astype(np.float64)
        s_x = self.scale(inp)
        s_out = self.scale(n.output)
        groups = int(n.attrs["groups"])
        dw = groups > 1 and w.shape[1] == 1 and groups == cout == len(s_x)
        if dw:
            sx = s_x
        else:
            if not np.all(s_x == s_x[0]):
                raise OnnxExportError(f"{n.name}: per-channel input scale on a non-depthwise conv")
            sx = np.full(cout, s_x[0])
        if epi.act == "hswish":
            if epi.mid_bits != 16 or epi.three <= 0:
                raise OnnxExportError(f"{n.name}: Hardswish intermediate of {epi.mid_bits} bits")
            s_u = 3.0 / epi.three
            target = np.full(cout, s_u)
        else:
            target = s_out
        s_w = m * target / sx
        o_in = self.offsets.get(inp)
        if o_in is not None:            # the shift lives in the input's zero point
            bias = bias - w.reshape(cout, -1, w.shape[-2] * w.shape[-1]).sum(-1) @ o_in
        if np.abs(bias).max(initial=0) >= 2 ** 31:
            raise OnnxExportError(f"{n.name}: bias beyond int32")
        wd = b.op("DequantizeLinear", [b.const(f"{n.name}.w", w.astype(np.int8)),
                                       b.f32(f"{n.name}.w_scale", s_w),
                                       b.const(f"{n.name}.w_zp", np.zeros(cout, np.int8))],
                  f"{n.name}.w_dq", axis=0)
        bd = b.op("DequantizeLinear", [b.const(f"{n.name}.b", bias.astype(np.int32)),
                                       b.f32(f"{n.name}.b_scale", s_w * sx),
                                       b.const(f"{n.name}.b_zp", np.zeros(cout, np.int32))],
                  f"{n.name}.b_dq", axis=0)
        k, st, pd = int(n.attrs["kernel"]), int(n.attrs["stride"]), int(n.attrs["padding"])
        y = b.op("Conv", [self.real[inp], wd, bd], n.name, kernel_shape=[k, k], strides=[st, st],
                 pads=[pd] * 4, group=groups)
        if epi.act == "hswish":
            sn = b.f32(f"{n.name}.mid_scale", s_u)
            zn = b.const(f"{n.name}.mid_zp", np.int16(0))
            mid = b.op("QuantizeLinear", [y, sn, zn], f"{n.name}.mid_q")
            mid = b.op("DequantizeLinear", [mid, sn, zn], f"{n.name}.mid_dq")
            h = b.op("HardSwish", [mid], f"{n.name}.hswish")
            hm = np.broadcast_to(epi.hswish_mult.value(), (cout,))
            k2 = 6.0 * hm * s_out / (s_u * s_u)
            y = b.op("Mul", [h, b.f32(f"{n.name}.hswish_k", k2.reshape(1, -1, 1, 1))],
                     f"{n.name}.hswish_scaled")
        else:
            if epi.residual is not None:
                rm = np.broadcast_to(epi.res_mult.value(), (cout,)) * s_out
                r = b.op("DequantizeLinear", [self.codes[epi.residual],
                                              b.f32(f"{n.name}.res_scale", rm),
                                              b.const(f"{n.name}.res_zp", np.zeros(cout, np.int8))],
                         f"{n.name}.res_dq", axis=1)
                y = b.op("Add", [y, r], f"{n.name}.add")
            if epi.act == "relu":
                y = b.op("Relu", [y], f"{n.name}.relu")
        self.quant(y, n.output)

    def concat(self, n):
        for t in n.inputs:
            if t in self.offsets:
                raise OnnxExportError(f"{n.name}: concat of a shifted tensor")
        self.real[n.output] = self.b.op("Concat", [self.real[t] for t in n.inputs], n.name, axis=1)

    def pool(self, n):
        b, inp = self.b, n.inputs[0]
        if inp in self.offsets:
            raise OnnxExportError(f"{n.name}: pooling of a shifted tensor")
        c, h, w = self.p.tensors[inp].shape
        s_in = self.scale(inp)[0]
        s_out = self.scale(n.output)
        m = float(np.asarray(n.epilogue.mult.value()).reshape(-1)[0])
        y = b.op("GlobalAveragePool", [self.real[inp]], n.name)
        y = b.op("Mul", [y, b.f32(f"{n.name}.k", (m * h * w * s_out / s_in).reshape(1, -1, 1, 1))],
                 f"{n.name}.requant")
        y = b.op("Flatten", [y], f"{n.name}.flat", axis=1)
        self.quant(y, n.output)

    def linear(self, n):
        b, inp = self.b, n.inputs[0]
        w = np.asarray(n.params["weight"], np.int64)
        s_x = self.scale(inp)
        s_acc = self.scale(n.output)
        cout = w.shape[0]
        wd = b.op("DequantizeLinear", [b.const(f"{n.name}.w", w.astype(np.int8)),
                                       b.f32(f"{n.name}.w_scale", s_acc / s_x[0]),
                                       b.const(f"{n.name}.w_zp", np.zeros(cout, np.int8))],
                  f"{n.name}.w_dq", axis=0)
        bd = b.op("DequantizeLinear", [b.const(f"{n.name}.b", np.asarray(n.params["bias"], np.int32)),
                                       b.f32(f"{n.name}.b_scale", s_acc),
                                       b.const(f"{n.name}.b_zp", np.zeros(cout, np.int32))],
                  f"{n.name}.b_dq", axis=0)
        self.real[n.output] = b.op("Gemm", [self.real[inp], wd, bd], n.name, transB=1)

    def layernorm(self, n):
        b = self.b
        y = b.op("LayerNormalization", [self.real[n.inputs[0]],
                                        b.f32(f"{n.name}.gamma", n.params["gamma"]),
                                        b.f32(f"{n.name}.beta", n.params["beta"])],
                 n.name, axis=-1, epsilon=float(n.attrs.get("eps", 1e-5)))
        act = n.attrs.get("act", "none")
        if act == "hswish":
            y = b.op("HardSwish", [y], f"{n.name}.hswish")
        elif act != "none":
            raise OnnxExportError(f"{n.name}: LayerNorm act {act!r}")
        self.quant(y, n.output)

    def attention(self, n):
        b, p = self.b, n.params
        inp = n.inputs[0]
        dim = int(n.attrs["dim"])
        c, h, w = self.p.tensors[inp].shape
        heads = c // (3 * dim)
        sc = self.scale(inp).reshape(heads, 3 * dim)
        if inp in self.offsets:
            raise OnnxExportError(f"{n.name}: attention on a shifted tensor")
        s_q, s_k, s_v = sc[:, 0], sc[:, dim], sc[:, 2 * dim]
        dy = lambda k: p[f"{k}_b"].astype(np.float64) / np.exp2(p[f"{k}_c"].astype(np.float64))  # noqa: E731
        sig = s_k * s_v / dy("s_mult")            # real scale of S (int8)
        tau = s_k / dy("ksum_mult")               # real scale of ksum (uint8)
        s_out = self.scale(n.output)[0]
        hd = lambda a: np.asarray(a, np.float64).reshape(1, heads, 1, 1)  # noqa: E731
        nm = n.name
        q, k, v = _split_heads(b, self.real[inp], nm, heads, dim, h * w)
        # step 1: S = ReLU(K) V^T -> int8 (QDQ, per head)
        S = b.op("MatMul", [k, b.op("Transpose", [v], f"{nm}.vT", perm=[0, 1, 3, 2])], f"{nm}.kv")
        sS, zS = b.f32(f"{nm}.S_scale", sig), b.const(f"{nm}.S_zp", np.zeros(heads, np.int8))
        S = b.op("DequantizeLinear", [b.op("QuantizeLinear", [S, sS, zS], f"{nm}.S_q", axis=1),
                                      sS, zS], f"{nm}.S_dq", axis=1)
        # step 2: ksum -> uint8 (QDQ, per head)
        ks = b.op("ReduceSum", [k, b.const("axes", np.array([3], np.int64))], f"{nm}.ksum",
                  keepdims=0)
        sK, zK = b.f32(f"{nm}.ks_scale", tau), b.const(f"{nm}.ks_zp", np.zeros(heads, np.uint8))
        ks = b.op("DequantizeLinear", [b.op("QuantizeLinear", [ks, sK, zK], f"{nm}.ks_q", axis=1),
                                       sK, zK], f"{nm}.ks_dq", axis=1)
        # steps 3-4: dividends and divisors
        num = b.op("MatMul", [b.op("Transpose", [S], f"{nm}.ST", perm=[0, 1, 3, 2]), q], f"{nm}.num")
        den = b.op("MatMul", [b.op("Unsqueeze", [ks, b.const("ax", np.array([2], np.int64))],
                                   f"{nm}.ks_row"), q], f"{nm}.den")
        # step 5: the 4-bit log2 divisor (leading one + round bit), as a power of two
        d = b.op("Round", [b.op("Mul", [den, b.f32(f"{nm}.den_inv", hd(1.0 / (tau * s_q)))],
                                f"{nm}.den_units")], f"{nm}.den_int")
        lr = log2_round_nodes(b, d, nm, b.f32, b.TP.FLOAT)
        e = b.op("Add", [lr, b.f32(f"{nm}.log2_offset", hd(p["log2_offset"]))], f"{nm}.e_raw")
        emin = p["log2_emin"].astype(np.float64)
        e = b.op("Min", [b.op("Max", [e, b.f32(f"{nm}.emin", hd(emin))], f"{nm}.e_lo"),
                         b.f32(f"{nm}.emax", hd(emin + 15))], f"{nm}.e")
        two = b.f32("two", 2.0)
        kout = dy("out_mult") * s_out / (sig * s_q)
        y = b.op("Mul", [b.op("Mul", [num, b.f32(f"{nm}.out_k", hd(kout))], f"{nm}.num_scaled"),
                         b.op("Pow", [two, b.op("Neg", [e], f"{nm}.neg_e")], f"{nm}.inv_div")],
                 f"{nm}.div")
        y = b.op("Where", [b.op("Greater", [d, b.f32("zero", 0.0)], f"{nm}.den_nz"), y,
                           b.f32("zero", 0.0)], f"{nm}.out")
        y = b.op("Reshape", [y, b.const(f"{nm}.shape_out", np.array([-1, heads * dim, h, w],
                                                                     np.int64))], f"{nm}.merge")
        self.quant(y, n.output)


FORMS = ("qdq", "exact")


def build_model(prog, *, form: str = "qdq", opset: int = OPSET, name: str | None = None):
    """The ONNX ``ModelProto`` of an IntProgram (checked by ``onnx.checker``): input
    ``images`` float32 ``(N, C, H, W)``, output ``logits`` float32 ``(N, classes)``.
    ``form``: ``"qdq"`` (float operators on dequantized values, requant by QuantizeLinear) or
    ``"exact"`` (:class:`_ExactGraph`: bit-exact with the integer model)."""
    if form not in FORMS:
        raise OnnxExportError(f"form must be one of {FORMS}, got {form!r}")
    b = _Builder()
    g = (_ExactGraph if form == "exact" else _Graph)(prog, b)
    inp = prog.inputs[0]
    x = "images"
    if form == "exact":
        g.input(x, inp)
    else:
        g.quant(x, inp)
    for n in prog.nodes:
        fn = {"conv": g.conv, "concat": g.concat, "global_avgpool": g.pool, "linear": g.linear,
              "layernorm": g.layernorm, "linear_attention": g.attention}.get(n.op)
        if fn is None:
            raise OnnxExportError(f"{n.name}: no ONNX mapping for op {n.op!r}")
        fn(n)
    out = prog.outputs[0]
    if form == "exact":
        s = prog.tensors[out].channel_scale()
        g.real[out] = b.op("Cast", [b.op("Mul", [g.ints[out], b.const("s_logits", s)], "logits_f64")],
                           "logits_f32", to=b.TP.FLOAT)
    b.nodes.append(b.helper.make_node("Identity", [g.real[out]], ["logits"], name="logits"))
    shp = prog.tensors[inp].shape
    graph = b.helper.make_graph(
        b.nodes, name or str(prog.meta.get("model_name") or "trio-vit"),
        [b.helper.make_tensor_value_info(x, b.TP.FLOAT, ["N", *shp])],
        [b.helper.make_tensor_value_info("logits", b.TP.FLOAT,
                                         ["N", prog.tensors[out].shape[0]])],
        initializer=b.inits)
    model = b.helper.make_model(graph, opset_imports=[b.helper.make_opsetid("", opset)],
                                producer_name="trio-vit quant.onnx_export")
    model.ir_version = min(model.ir_version, 10)
    meta = {"model_name": str(prog.meta.get("model_name", "")),
            "source": f"trio-vit IntProgram ({form} form; see quant/onnx_export.py)"}
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    b.onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(model_or_prog, path=None, *, form: str = "qdq", opset: int = OPSET):
    """Write the ONNX model (``form`` ``"qdq"`` or ``"exact"``, see :func:`build_model`) of a
    :class:`quant.api.QuantizedModel` (or an IntProgram) to ``path`` (atomically; skipped when
    None); returns the ``onnx.ModelProto``."""
    prog = model_or_prog.intprogram() if hasattr(model_or_prog, "intprogram") else model_or_prog
    model = build_model(prog, form=form, opset=opset)
    if path is not None:
        from sim.fileio import atomic_write
        atomic_write(Path(path), model.SerializeToString())
    return model


# ------------------------------------------------------------------------------------------------
# the integer-exact form
# ------------------------------------------------------------------------------------------------

F32_EXACT = 1 << 24     #: float32 holds every integer up to 2**24 exactly


class _ExactGraph(_Graph):
    """``form="exact"``: the same tensors (int8 codes through ``QuantizeLinear`` with their zero
    points, real values through ``DequantizeLinear`` with their scales), but each operator reads
    its inputs' *codes* (``DequantizeLinear`` with scale 1: integer-valued floats), convolutions
    run in float32 on integers (exact: every partial sum is bounded by 2**24, input channels
    split where the bound needs it) and the requant is written out in float64 as
    :mod:`sim.numerics` defines it (``floor((acc b + 2**(c-1)) / 2**c)``, round half up; exact
    below 2**53), then ``QuantizeLinear(y, 1, -offset)`` saturates and applies the shift. The
    logits equal the integer model's (and :func:`sim.golden.run`'s) bit for bit."""

    def __init__(self, prog, b):
        super().__init__(prog, b)
        self.ints = {}                  # tensor -> float32 (or float64) integer values
        self.codes_dt = {}

    def d(self, x, base):
        return self.b.op("Cast", [x], base, to=self.b.TP.DOUBLE)

    def f64(self, base, arr):
        return self.b.const(base, np.asarray(arr, np.float64))

    def int_of(self, t):
        """The stored integers of ``t`` (float32, exact), from its codes."""
        if t not in self.ints:
            b = self.b
            self.ints[t] = b.op("DequantizeLinear", [self.codes[t], b.f32("one", 1.0),
                                                     b.const("zp", np.zeros((), self.codes_dt[t]))],
                                f"{t}.int")
        return self.ints[t]

    def emit(self, y, t):
        """``y``: float64 exact integers (before the offset and saturation) of tensor ``t``;
        makes its codes (``QuantizeLinear`` scale 1, zero point ``-offset``) and real value."""
        b, info = self.b, self.p.tensors[t]
        dt, bits = _qtype(info.bits, info.signed)
        o = self.offsets.get(t)
        y = b.op("Cast", [y], f"{t}.f32", to=b.TP.FLOAT)
        if o is not None and ((-o).min() < np.iinfo(dt).min or (-o).max() > np.iinfo(dt).max):
            y = b.op("Sub", [y, b.f32("o", o.reshape(1, -1, *([1] * (len(info.shape) - 1))))],
                     f"{t}.shifted")
            o = None
        c = info.channels
        zp = np.zeros(c, np.int64) if o is None else -o
        one = b.f32("ones", np.ones(c))
        zn = b.const(f"{t}.zp1", zp.astype(dt))
        q = b.op("QuantizeLinear", [y, one, zn], f"{t}.q", axis=1)
        lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if info.signed else (0, (1 << bits) - 1))
        if bits < np.iinfo(dt).bits:
            q = b.op("Clip", [q, b.const("lo", np.asarray(lo, dt)), b.const("hi", np.asarray(hi, dt))],
                     f"{t}.clip")
        # codes relative to the zero point -> stored integers sat(y - offset): the codes are
        # stored with zero point -offset, so the integer is the code itself
        self.codes[t], self.codes_dt[t] = q, dt
        # the real value s (int + o)
        s = np.broadcast_to(np.asarray(info.scale, np.float64), (c,))
        zr = self.offsets.get(t)
        zr = np.zeros(c, np.int64) if zr is None else -zr
        if zr.min() >= np.iinfo(dt).min and zr.max() <= np.iinfo(dt).max:
            self.real[t] = b.op("DequantizeLinear", [q, b.f32(f"{t}.scale", s),
                                                     b.const(f"{t}.zp", zr.astype(dt))],
                                f"{t}.dq", axis=1)
        return q

    # rshift_round(wide, c) in float64, c per channel (broadcast shape)
    def rshift(self, wide, c, base):
        b = self.b
        c = np.asarray(c, np.float64)
        half = np.where(c > 0, np.exp2(c - 1), 0.0)
        return b.op("Floor", [b.op("Mul", [b.op("Add", [wide, self.f64("half", half)], f"{base}.h"),
                                            self.f64("inv", np.exp2(-c))], f"{base}.sh")],
                    f"{base}.round")

    def clip(self, x, lo, hi, base):
        return self.b.op("Clip", [x, self.f64("lo", lo), self.f64("hi", hi)], base)

    def requant(self, acc, mult, shape, base, *, res=None, res_mult=None):
        b = self.b
        mb = np.asarray(mult.b, np.float64).reshape(shape)
        mc = np.asarray(mult.c, np.float64).reshape(shape)
        wide = b.op("Mul", [acc, self.f64("mb", mb)], f"{base}.mul")
        if res is not None:
            rb = np.asarray(res_mult.b, np.float64).reshape(shape)
            rc = np.asarray(res_mult.c, np.float64).reshape(shape)
            wide = b.op("Add", [wide, b.op("Mul", [res, self.f64("rb", rb * np.exp2(mc - rc))],
                                           f"{base}.res")], f"{base}.wide")
        return self.rshift(wide, mc, base)

    # -- nodes ------------------------------------------------------------------------------------
    def input(self, x, t):
        b, info = self.b, self.p.tensors[t]
        s = np.asarray(info.scale, np.float64)
        s = s.reshape(1, -1, 1, 1) if s.ndim == 1 else s
        y = b.op("Floor", [b.op("Add", [b.op("Div", [self.d(x, "images.f64"), self.f64("s_in", s)],
                                             "images.div"), self.f64("half", 0.5)], "images.h")],
                 "images.round")
        self.emit(y, t)

    def conv(self, n):
        b = self.b
        inp = n.inputs[0]
        w = np.asarray(n.params["weight"], np.int64)
        bias = np.asarray(n.params["bias"], np.int64)
        cout, cin_g = w.shape[:2]
        groups = int(n.attrs["groups"])
        k, st, pd = int(n.attrs["kernel"]), int(n.attrs["stride"]), int(n.attrs["padding"])
        info = self.p.tensors[inp]
        xmax = 1 << (info.bits - 1) if info.signed else (1 << info.bits) - 1
        x = self.int_of(inp)
        # split the input channels so that every partial sum stays below 2**24
        per_in = np.abs(w).reshape(cout, cin_g, -1).sum(-1)          # (cout, cin_g)
        chunks, start = [], 0
        while start < cin_g:
            end = start + 1
            while end < cin_g and xmax * per_in[:, start:end + 1].sum(1).max() <= F32_EXACT:
                end += 1
            if xmax * per_in[:, start:end].sum(1).max() > F32_EXACT:
                raise OnnxExportError(f"{n.name}: one input channel's sum exceeds 2**24")
            chunks.append((start, end))
            start = end
        if groups != 1 and len(chunks) > 1:
            raise OnnxExportError(f"{n.name}: grouped conv beyond the float32-exact bound")
        acc = None
        for lo, hi in chunks:
            xs = x if (lo, hi) == (0, cin_g) else b.op(
                "Slice", [x, b.const("s", np.array([lo], np.int64)), b.const("e", np.array([hi], np.int64)),
                          b.const("a", np.array([1], np.int64))], f"{n.name}.x{lo}")
            wd = b.op("DequantizeLinear", [b.const(f"{n.name}.w", w[:, lo:hi].astype(np.int8)),
                                           b.f32("one", 1.0), b.const("zp8", np.int8(0))],
                      f"{n.name}.w_int")
            y = self.d(b.op("Conv", [xs, wd], f"{n.name}.conv", kernel_shape=[k, k],
                            strides=[st, st], pads=[pd] * 4, group=groups), f"{n.name}.acc")
            acc = y if acc is None else b.op("Add", [acc, y], f"{n.name}.acc_sum")
        acc = b.op("Add", [acc, self.f64(f"{n.name}.bias", bias.reshape(1, -1, 1, 1))],
                   f"{n.name}.biased")
        epi = n.epilogue
        shape = (1, -1, 1, 1)
        bc = lambda a: np.broadcast_to(np.asarray(a), (cout,))  # noqa: E731
        from sim import numerics as nx
        if epi.act == "hswish":
            mid = self.requant(acc, nx.Dyadic(bc(epi.mult.b), bc(epi.mult.c)), shape, f"{n.name}.mid")
            lim = 1 << (epi.mid_bits - 1)
            mid = self.clip(mid, -lim, lim - 1, f"{n.name}.mid_sat")
            t = self.clip(b.op("Add", [mid, self.f64("three", float(epi.three))], f"{n.name}.x3"),
                          0.0, 2.0 * epi.three, f"{n.name}.relu6")
            p = b.op("Mul", [mid, t], f"{n.name}.xt")
            hm = epi.hswish_mult
            y = self.requant(p, nx.Dyadic(bc(hm.b), bc(hm.c)), shape, f"{n.name}.hswish")
        else:
            res = res_mult = None
            if epi.residual is not None:
                res = self.d(self.int_of(epi.residual), f"{n.name}.res_f64")
                res_mult = nx.Dyadic(bc(epi.res_mult.b), bc(epi.res_mult.c))
            y = self.requant(acc, nx.Dyadic(bc(epi.mult.b), bc(epi.mult.c)), shape, n.name,
                             res=res, res_mult=res_mult)
            if epi.act == "relu":
                y = b.op("Relu", [y], f"{n.name}.relu")
        self.emit(y, n.output)

    def concat(self, n):
        self.ints[n.output] = self.b.op("Concat", [self.int_of(t) for t in n.inputs],
                                        f"{n.name}.int", axis=1)

    def pool(self, n):
        b, inp = self.b, n.inputs[0]
        s = b.op("ReduceSum", [self.int_of(inp), b.const("axes", np.array([2, 3], np.int64))],
                 f"{n.name}.sum", keepdims=0)
        y = self.requant(self.d(s, f"{n.name}.acc"), n.epilogue.mult, (1, -1), n.name)
        self.emit(y, n.output)

    def linear(self, n):
        b, inp = self.b, n.inputs[0]
        w = np.asarray(n.params["weight"], np.int64)
        x = self.d(self.int_of(inp) if inp in self.codes else self.ints[inp], f"{n.name}.x")
        wd = self.d(b.op("DequantizeLinear", [b.const(f"{n.name}.w", w.T.astype(np.int8)),
                                              b.f32("one", 1.0), b.const("zp8", np.int8(0))],
                         f"{n.name}.w_int"), f"{n.name}.w_f64")
        y = b.op("Add", [b.op("MatMul", [x, wd], f"{n.name}.mm"),
                         self.f64(f"{n.name}.bias", np.asarray(n.params["bias"], np.float64))],
                 f"{n.name}.acc")
        info = self.p.tensors[n.output]
        lim = 1 << (info.bits - 1)
        self.ints[n.output] = self.clip(y, -lim, lim - 1, f"{n.name}.sat")   # raw int32, float64
        self.codes.pop(n.output, None)

    def layernorm(self, n):
        b, inp = self.b, n.inputs[0]
        s_in = self.p.tensors[inp].channel_scale()
        x = self.ints[inp] if inp in self.ints else self.d(self.int_of(inp), f"{n.name}.x")
        v = b.op("Mul", [x, self.f64(f"{n.name}.s_in", s_in)], f"{n.name}.v")
        ax = b.const("ax", np.array([-1], np.int64))
        mu = b.op("ReduceMean", [v, ax], f"{n.name}.mean", keepdims=1)
        dv = b.op("Sub", [v, mu], f"{n.name}.centred")
        var = b.op("ReduceMean", [b.op("Mul", [dv, dv], f"{n.name}.sq"), ax], f"{n.name}.var",
                   keepdims=1)
        sd = b.op("Sqrt", [b.op("Add", [var, self.f64("eps", float(n.attrs.get("eps", 1e-5)))],
                              f"{n.name}.var_eps")], f"{n.name}.std")
        y = b.op("Add", [b.op("Mul", [b.op("Div", [dv, sd], f"{n.name}.norm"),
                                      self.f64(f"{n.name}.gamma", n.params["gamma"])], f"{n.name}.g"),
                         self.f64(f"{n.name}.beta", n.params["beta"])], f"{n.name}.ln")
        if n.attrs.get("act", "none") == "hswish":
            t = self.clip(b.op("Add", [y, self.f64("3", 3.0)], f"{n.name}.y3"), 0.0, 6.0,
                          f"{n.name}.relu6")
            y = b.op("Div", [b.op("Mul", [y, t], f"{n.name}.yt"), self.f64("6", 6.0)],
                     f"{n.name}.hswish")
        s_out = self.p.tensors[n.output].channel_scale()
        y = b.op("Floor", [b.op("Add", [b.op("Div", [y, self.f64("s_out", s_out)], f"{n.name}.div"),
                                        self.f64("half", 0.5)], f"{n.name}.h")], f"{n.name}.round")
        self.emit(y, n.output)

    def attention(self, n):
        b, p = self.b, n.params
        inp = n.inputs[0]
        dim = int(n.attrs["dim"])
        c, h, w = self.p.tensors[inp].shape
        heads = c // (3 * dim)
        nm = n.name
        x = self.d(self.ints[inp] if inp in self.ints else self.int_of(inp), f"{nm}.x")
        q, k, v = _split_heads(b, x, nm, heads, dim, h * w)

        def dyn(key, shape):
            from sim import numerics as nx
            return nx.Dyadic(p[f"{key}_b"].reshape(shape), p[f"{key}_c"].reshape(shape))
        kv = b.op("MatMul", [k, b.op("Transpose", [v], f"{nm}.vT", perm=[0, 1, 3, 2])], f"{nm}.kv")
        s8 = self.clip(self.requant(kv, dyn("s_mult", (1, heads, 1, 1)), (1, heads, 1, 1),
                                    f"{nm}.S"), -128, 127, f"{nm}.S8")
        ks = b.op("ReduceSum", [k, b.const("axes", np.array([3], np.int64))], f"{nm}.ksum", keepdims=0)
        ks8 = self.clip(self.requant(ks, dyn("ksum_mult", (1, heads, 1)), (1, heads, 1),
                                     f"{nm}.ks"), 0, 255, f"{nm}.ks8")
        num = b.op("MatMul", [b.op("Transpose", [s8], f"{nm}.ST", perm=[0, 1, 3, 2]), q], f"{nm}.num")
        den = b.op("MatMul", [b.op("Unsqueeze", [ks8, b.const("ax", np.array([2], np.int64))],
                                   f"{nm}.ks_row"), q], f"{nm}.den")     # (B, heads, 1, N)
        lr = log2_round_nodes(b, den, nm, self.f64, b.TP.DOUBLE)
        one, two = self.f64("one", 1.0), self.f64("two", 2.0)
        hd = lambda a: np.asarray(a, np.float64).reshape(1, heads, 1, 1)  # noqa: E731
        e = b.op("Add", [lr, self.f64("offset", hd(p["log2_offset"]))], f"{nm}.e_raw")
        emin = p["log2_emin"].astype(np.float64)
        e = b.op("Min", [b.op("Max", [e, self.f64("emin", hd(emin))], f"{nm}.e_lo"),
                         self.f64("emax", hd(emin + 15))], f"{nm}.e")
        # requant(num, b / 2**(c + e)): floor((num b + 2**(c+e-1)) / 2**(c+e)), c + e >= 0
        cc = b.op("Add", [e, self.f64("oc", hd(p["out_mult_c"]))], f"{nm}.shift")
        half = b.op("Where", [b.op("Greater", [cc, self.f64("zero", 0.0)], f"{nm}.c>0"),
                              b.op("Pow", [two, b.op("Sub", [cc, one], f"{nm}.c-1")], f"{nm}.half"),
                              self.f64("zero", 0.0)], f"{nm}.half_or_0")
        wide = b.op("Add", [b.op("Mul", [num, self.f64("ob", hd(p["out_mult_b"]))], f"{nm}.nb"), half],
                    f"{nm}.wide")
        y = b.op("Floor", [b.op("Mul", [wide, b.op("Pow", [two, b.op("Neg", [cc], f"{nm}.-c")],
                                                     f"{nm}.inv")], f"{nm}.sh")], f"{nm}.round")
        y = self.clip(y, -128, 127, f"{nm}.out8")
        y = b.op("Where", [b.op("Greater", [den, self.f64("zero", 0.0)], f"{nm}.den_nz"), y,
                           self.f64("zero", 0.0)], f"{nm}.out")
        y = b.op("Reshape", [y, b.const("shape", np.array([-1, heads * dim, h, w], np.int64))],
                 f"{nm}.merge")
        self.emit(y, n.output)
