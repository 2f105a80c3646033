"""Export a calibrated :class:`quant.qmodel.QGraph` to an :class:`sim.intprogram.IntProgram`, and
run IntPrograms batched in torch (the "integer-exact" mode of the fake-quant model).

Parameter mapping (real value = scale x integer; ``s_in``, ``s_w``, ``s_out`` the input, filter
and output scales; every dyadic from :func:`sim.numerics.to_dyadic`):

* conv: ``weight`` = the filter-wise int codes (AdaRound's hard decisions when used);
  ``s_acc[j] = s_in[j or *] * s_w[j]`` (a per-channel ``s_in`` only for a depthwise conv whose
  input was migrated: the migration factors live in that input's per-channel scale, Eq. 7);
  ``bias = round(b / s_acc) + sum_i W_int[j, i] * o_i`` where ``o_i`` are the integer offsets of
  a filter-wise-shifted input (Eq. 10), clipped to 30 bits (``numerics.ACC_BITS - 2``).
  Epilogue: ``none/relu``: ``mult = s_acc / s_out``; residual ``res_mult = s_res / s_out``
  (per channel, aligned with :func:`sim.numerics.align_residual`); ``hswish``: ``mult = s_acc /
  s_mid`` to a 16-bit intermediate with ``s_mid = max(1.25 * max|pre|, 6) / 2**15`` (calibrated),
  then :func:`sim.numerics.hswish_constants` per output channel. The output's filter-wise shift
  (if its consumer is a shifted PW2) is the epilogue ``offset``.
* global_avgpool: ``mult = s_in / (H W) / s_out``.
* linear (head): raw int32 accumulators, ``bias = round(b / (s_in s_w))``; the output tensor's
  per-channel scale is ``s_in s_w``. The LayerNorm node reads them (host, float64).
* linear_attention (per head): ``s_mult = s_k s_v / s_S``, ``ksum_mult = s_k / s_ks``,
  ``log2_offset = round(log2(s_q s_ks)) - k``, ``out_mult = s_S 2**offset / (s_ks s_out)``,
  ``log2_emin`` from calibration minus ``k``, where ``k >= 0`` is the smallest power of two that
  keeps ``out_mult`` below ``2**16`` (:func:`attention_plan`), clipped so that ``0 <= out_mult_c + emin`` and
  ``out_mult_c + emin + 15 <= 47`` (:func:`sim.golden.attention_steps`).

``meta["input_offsets"]`` lists, for each filter-wise-shifted tensor, its integer channel offsets
(the real value of such a tensor is ``scale * (int + offset)``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from sim import numerics as nx
from sim.intprogram import Epilogue, IntProgram, Node, TensorInfo

from .qmodel import QAttention, QConcat, QConv, QGraph, QLayerNorm, QLinear, QPool
from .quantizers import AdaRoundWeightQuantizer, round_half_up
from .transforms import log2_offset

__all__ = ["export", "export_node", "run_node_current", "refresh_weights", "run_int", "run_node", "quantize_images", "ExportError",
           "BIAS_BITS"]

BIAS_BITS = nx.ACC_BITS - 2


class ExportError(ValueError):
    """The quantized model cannot be expressed as an IntProgram (e.g. activations not quantized)."""


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)


def _round(x) -> np.ndarray:
    return np.floor(np.asarray(x, np.float64) + 0.5).astype(np.int64)


def _wint(n) -> np.ndarray:
    if isinstance(n.wq, AdaRoundWeightQuantizer):
        # hard decisions (V >= 0), also while AdaRound is still soft
        return _np(n.wq.hard_int_weight()).astype(np.int64)
    return _np(n.wq.int_weight(n.weight)).astype(np.int64)


def _dy_per_channel(vals) -> nx.Dyadic:
    return nx.to_dyadic(np.asarray(vals, np.float64))


@functools.lru_cache(maxsize=1 << 17)
def _hswish_constants(s_mid: float, s_out: float) -> tuple:
    """:func:`sim.numerics.hswish_constants` memoised (a re-export during block reconstruction
    meets the same scale pairs again; one call per channel dominated the export's time)."""
    three, m = nx.hswish_constants(s_mid, s_out)
    return three, int(m.b), int(m.c)


def _hswish_per_channel(s_mid: float, s_out: np.ndarray):
    threes, bs, cs = set(), [], []
    for so in np.atleast_1d(s_out):
        three, b, c = _hswish_constants(float(s_mid), float(so))
        threes.add(three)
        bs.append(b)
        cs.append(c)
    (three,) = threes
    return three, nx.Dyadic(np.array(bs), np.array(cs))


def export(g: QGraph, *, check: bool = True) -> IntProgram:
    """The IntProgram of a calibrated (optionally reconstructed) QGraph."""
    if not g.cfg.act_quant or not len(g.act_q):
        raise ExportError("export needs a calibrated model with quantized activations "
                          "(not --no-act-quant)")
    from .observers import ASYMMETRIC
    if g.cfg.observer in ASYMMETRIC:
        raise ExportError(f"observer {g.cfg.observer!r} quantizes every tensor asymmetrically; the "
                          "integer graph has offsets only on filter-wise-shifted tensors")
    if g.cfg.attention != "log2":
        raise ExportError(f"the integer graph implements the log2 divisor only; attention mode "
                          f"{g.cfg.attention!r} is a fake-quant ablation setting")
    for n in g.nodes:
        for what in ("weight", "bias"):
            t = getattr(n, what, None)
            if isinstance(t, torch.Tensor) and t.is_floating_point() \
                    and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ExportError(f"{n.name}: {what} has {bad} non-finite value(s) (NaN or"
                                  " infinity); the model cannot be exported")
    shapes = g.shapes()
    tensors, nodes = {}, []
    offsets = {}

    def scale_of(name):
        return _scale_of(g, name)

    def offset_of(name):
        return _offset_of(g, name)

    def add_tensor(name, *, bits=None, signed=True, scale=None):
        tensors[name] = _tensor_info(g, name, shapes[name], bits=bits, signed=signed, scale=scale)
        o = offset_of(name)
        if o is not None:
            offsets[name] = o.tolist()

    add_tensor("input")
    for n in g.nodes:
        node, out_kw = export_node(g, n, shapes, scale_of, offset_of)
        nodes.append(node)
        add_tensor(n.output, **out_kw)
    meta = dict(g.meta)
    meta.update(source="quant.export", qconfig=g.cfg.as_dict(), input_offsets=offsets)
    prog = IntProgram(tensors, nodes, ["input"], [g.output_name], meta)
    return prog.validate() if check else prog


def export_node(g: QGraph, n, shapes: dict, scale_of=None, offset_of=None) -> tuple[Node, dict]:
    """The IntProgram node of one QGraph node with the graph's current scales and weights, and
    the keyword arguments (``bits``, ``scale``) its output tensor gets where they differ from the
    QGraph's (the raw linear's int32 accumulators). :func:`export` calls it for every node."""
    scale_of = scale_of or (lambda name: _scale_of(g, name))
    offset_of = offset_of or (lambda name: _offset_of(g, name))
    if isinstance(n, QConv):
        return _conv(g, n, scale_of, offset_of), {}
    if isinstance(n, QConcat):
        return Node(n.name, "concat", list(n.inputs), n.output), {}
    if isinstance(n, QPool):
        s_in = scale_of(n.inputs[0])
        if not np.allclose(s_in, s_in[0]):
            raise ExportError(f"{n.name}: pooling needs a per-tensor input scale")
        h, w = shapes[n.inputs[0]][1:]
        mult = nx.to_dyadic(s_in[0] / (h * w) / scale_of(n.output)[0])
        return Node(n.name, "global_avgpool", list(n.inputs), n.output, {}, {},
                    Epilogue(mult=mult)), {}
    if isinstance(n, QLinear):
        node, s_acc = _linear(g, n, scale_of)
        return node, dict(bits=32, scale=s_acc)
    if isinstance(n, QLayerNorm):
        return Node(n.name, "layernorm", list(n.inputs), n.output, dict(eps=n.eps, act=n.act),
                    dict(gamma=_np(n.gamma), beta=_np(n.beta)), None), {}
    if isinstance(n, QAttention):
        return _attention(g, n, scale_of), {}
    raise ExportError(f"{n.name}: no IntProgram op for {type(n).__name__}")


def _tensor_info(g: QGraph, name: str, shape, *, bits=None, signed=True, scale=None) -> TensorInfo:
    t = g.tensors[name]
    sc = _scale_of(g, name) if scale is None else np.asarray(scale, np.float64)
    if sc.ndim == 1 and np.all(sc == sc[0]):
        sc = np.float64(sc[0])
    return TensorInfo(name, tuple(shape), t.bits if bits is None else bits, signed, sc)


class _OneNode:
    """The part of an IntProgram :func:`run_node` reads: the tensors of one node."""

    def __init__(self, tensors: dict):
        self.tensors = tensors


def run_node_current(g: QGraph, n, ints: dict, shapes: dict, inputs: dict) -> tuple[np.ndarray, TensorInfo]:
    """One node of ``g`` in the deployed integer arithmetic, with the graph's *current* scales
    and weights (:func:`export_node`: nothing is cached, so learnt steps are picked up at once):
    ``ints`` the input (and residual) tensors' integers, ``inputs`` their :class:`TensorInfo`
    where it is not the default one (a raw linear's int32 output). Returns the output integers
    and the output's :class:`TensorInfo`. Used by the aligned float-scale forward
    (:meth:`quant.qmodel.QGraph.run_nodes`)."""
    node, kw = export_node(g, n, shapes)
    tensors = {t: inputs.get(t) or _tensor_info(g, t, shapes[t]) for t in n.reads()}
    tensors[n.output] = _tensor_info(g, n.output, shapes[n.output], **kw)
    return run_node(_OneNode(tensors), node, ints), tensors[n.output]


def _scale_of(g, name) -> np.ndarray:
    return _np(g.scale_vector(name))


def _offset_of(g, name):
    key = name.replace(".", "__")
    q = g.act_q[key] if key in g.act_q else None
    o = None if q is None else q.offset()
    return None if o is None else _np(o).astype(np.int64)


def refresh_weights(g: QGraph, prog: IntProgram, node_range) -> list:
    """Re-export, in place in ``prog``, the conv and linear nodes of ``g.nodes[node_range]``:
    their weight codes and the biases that depend on them (Eq. 10), for when only rounding
    decisions changed since ``prog`` was exported (block reconstruction with frozen activation
    steps). Every other parameter depends on scales only, which must be unchanged (the caller's
    contract; ``tests/test_recon.py`` checks the result equals a full :func:`export`).
    Returns the new nodes."""
    s0, e0, _ = slice(*node_range).indices(len(g.nodes))
    pos = {n.name: i for i, n in enumerate(prog.nodes)}
    new = []
    scale_of = lambda name: _scale_of(g, name)          # noqa: E731
    offset_of = lambda name: _offset_of(g, name)        # noqa: E731
    for n in list(g.nodes)[s0:e0]:
        if isinstance(n, QConv):
            node = _conv(g, n, scale_of, offset_of)
        elif isinstance(n, QLinear):
            node = _linear(g, n, scale_of)[0]
        else:
            continue
        prog.nodes[pos[n.name]] = node
        new.append(node)
    return new


def _linear(g, n: QLinear, scale_of):
    s_in = scale_of(n.inputs[0])
    if not np.allclose(s_in, s_in[0]):
        raise ExportError(f"{n.name}: a linear layer needs a per-tensor input scale")
    s_acc = s_in[0] * _np(n.wq.scale).reshape(-1) * np.ones(n.weight.shape[0])
    bias = np.clip(_round(_np(n.bias) / s_acc), -(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1)
    node = Node(n.name, "linear", list(n.inputs), n.output, {},
                dict(weight=_wint(n).astype(np.int8), bias=bias.astype(np.int32)), None)
    return node, s_acc


def _conv(g, n: QConv, scale_of, offset_of) -> Node:
    s_in = scale_of(n.inputs[0])
    cout = n.weight.shape[0]
    s_w = _np(n.wq.scale).reshape(-1) * np.ones(cout)
    if n.depthwise:
        s_acc = s_in * s_w
    else:
        if not np.allclose(s_in, s_in[0], rtol=0, atol=0):
            raise ExportError(f"{n.name}: per-channel input scale on a non-depthwise conv")
        s_acc = s_in[0] * s_w
    w = _wint(n)
    bias = _round(_np(n.bias) / s_acc)
    o_in = offset_of(n.inputs[0])
    if o_in is not None:                       # Eq. 10: fold the input shift into the bias
        if n.kernel != 1 or n.groups != 1:
            raise ExportError(f"{n.name}: filter-wise shifting needs a pointwise consumer")
        bias = bias + w[:, :, 0, 0] @ o_in
    bias = np.clip(bias, -(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1)
    s_out = scale_of(n.output)
    o_out = offset_of(n.output)
    off = np.int64(0) if o_out is None else o_out
    if n.act == "hswish":
        s_mid = max(1.25 * float(n.pre_max), 6.0) / (1 << (g.cfg.mid_bits - 1))
        three, hm = _hswish_per_channel(s_mid, s_out)
        epi = Epilogue(mult=_dy_per_channel(s_acc / s_mid), act="hswish", offset=off,
                       mid_bits=g.cfg.mid_bits, three=three, hswish_mult=hm)
    else:
        mult = _dy_per_channel(s_acc / s_out)
        res_mult = None
        if n.residual is not None:
            s_res = scale_of(n.residual)
            res_mult = nx.align_residual(_dy_per_channel(s_res / s_out), mult.c)
        epi = Epilogue(mult=mult, act=n.act, offset=off, residual=n.residual, res_mult=res_mult)
    attrs = dict(kernel=int(n.kernel), stride=int(n.stride), padding=int(n.padding),
                 groups=int(n.groups))
    return Node(n.name, "conv", list(n.inputs), n.output, attrs,
                dict(weight=w.astype(np.int8), bias=bias.astype(np.int32)), epi)


def attention_plan(g: QGraph, n: QAttention, s_out: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """The per-head integer parameters of :func:`sim.golden.attention_steps` and the power of
    two ``k`` (per head) moved from the output multiplier into the log2 offset.

    The divisor's exponent is ``e = offset + log2_round(den_int)``; with ``offset =
    round(log2(s_q s_ks))`` (``2**e`` ~ the real divisor, the fake-quant's convention) the
    output multiplier is ``out_mult = s_S 2**offset / (s_ks s_out)`` ~ ``s_S s_q / s_out``, the
    ratio of a numerator unit to an output unit. Where the real divisors are large (a divisor
    unit ``s_q s_ks`` of 2**8 and more, e.g. B0/B1-R224 with random weights and injected
    statistics) that ratio exceeds 2**16 and has no 16-bit dyadic form. Only the product
    ``out_mult 2**-e`` matters, so ``k = max(0, ceil(log2(out_mult)) - 15)`` is moved from
    ``out_mult`` into ``offset`` (and ``emin``): ``offset - k``, ``emin - k``, ``out_mult /
    2**k``. The codes ``e - emin`` and the effective shifts ``out_mult_c + e`` are unchanged,
    the multiplier keeps its 16 significant bits, and where ``out_mult < 2**15`` already ``k = 0``
    (the parameters are the same as before). The fields stay 16-bit multiplier / 8-bit offset."""
    s_q, s_k, s_v = (_np(t) for t in n.head_scales(g))
    s_S, s_ks = _np(n.s_S), _np(n.s_ks)
    if s_out is None:
        s_out = float(_np(g.scale_vector(n.output))[0])      # attention outputs are per tensor
    s_mult = nx.to_dyadic(s_k * s_v / s_S)
    ksum_mult = nx.to_dyadic(s_k / s_ks)
    offset = np.array([log2_offset(float(v)) for v in s_q * s_ks], dtype=np.int64)
    nominal = s_S / (s_ks * s_out) * np.exp2(offset.astype(np.float64))
    with np.errstate(divide="ignore"):
        k = np.maximum(0, np.ceil(np.log2(np.where(nominal > 0, nominal, 1.0))) - 15).astype(np.int64)
    out_mult = nx.to_dyadic(nominal * np.exp2(-k.astype(np.float64)))
    emin = _np(n.emin).astype(np.int64) - k
    top = nx.MAX_SHIFT - ((1 << nx.LOG2_CODE_BITS) - 1)
    emin = np.clip(emin, -out_mult.c, top - out_mult.c)
    params = dict(s_mult_b=s_mult.b, s_mult_c=s_mult.c, ksum_mult_b=ksum_mult.b,
                  ksum_mult_c=ksum_mult.c, out_mult_b=out_mult.b, out_mult_c=out_mult.c,
                  log2_offset=offset - k, log2_emin=emin)
    params = {kk: np.asarray(v, dtype=np.int64).reshape(n.heads) for kk, v in params.items()}
    return params, k.reshape(n.heads)


def attention_params(g: QGraph, n: QAttention, s_out: np.ndarray | None = None) -> dict:
    """The per-head integer parameters of :func:`sim.golden.attention_steps` (see
    :func:`attention_plan`)."""
    return attention_plan(g, n, s_out)[0]


def attention_fake_emin(g: QGraph, n: QAttention) -> torch.Tensor:
    """The exported (clipped) ``log2_emin`` in the fake quant's convention (``2**e`` ~ the real
    divisor): the exported one plus the power of two moved into the offset."""
    p, k = attention_plan(g, n)
    return torch.as_tensor(p["log2_emin"] + k, dtype=torch.float64)


def _attention(g, n: QAttention, scale_of) -> Node:
    p, k = attention_plan(g, n)
    n.emin = torch.as_tensor(p["log2_emin"] + k, dtype=torch.float64)   # keep fake-quant in sync
    return Node(n.name, "linear_attention", list(n.inputs), n.output, dict(dim=int(n.dim)), p, None)


# ------------------------------------------------------------------------------------------------
# batched integer executor (the "integer-exact" mode)
# ------------------------------------------------------------------------------------------------

def quantize_images(prog: IntProgram, images: torch.Tensor) -> np.ndarray:
    """Float images ``(B, C, H, W)`` -> the input tensor's integers (round half up, saturate)."""
    t = prog.tensors[prog.inputs[0]]
    s = torch.as_tensor(t.channel_scale(), dtype=torch.float64).reshape(1, -1, 1, 1)
    q = round_half_up(images.double() / s)
    return nx.saturate(q.numpy().astype(np.int64), t.bits, signed=t.signed)


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _int(a: torch.Tensor) -> np.ndarray:
    return a.numpy().astype(np.int64)


def _attention_batched(x: np.ndarray, p: dict, dim: int) -> np.ndarray:
    """Integer linear attention over a batch (same steps as sim.golden.attention_steps, written
    independently with batched torch float64 matmuls, exact for these magnitudes)."""
    b, c, h, w = x.shape
    heads = c // (3 * dim)
    t = _t(x).reshape(b, heads, 3 * dim, h * w)
    q, k, v = t[:, :, :dim].clamp_min(0), t[:, :, dim:2 * dim].clamp_min(0), t[:, :, 2 * dim:]

    def dy(key, extra):
        shape = (1, heads) + (1,) * extra
        return nx.Dyadic(p[f"{key}_b"].reshape(shape), p[f"{key}_c"].reshape(shape))

    kv = _int(k @ v.transpose(-1, -2))                                  # (b, heads, dk, dv)
    s8 = nx.requant(kv, dy("s_mult", 2), out_bits=8, signed=True)
    ks = _int(k.sum(-1))                                                # (b, heads, dk)
    ks8 = nx.requant(ks, dy("ksum_mult", 1), out_bits=8, signed=False)
    num = _int(_t(s8).transpose(-1, -2) @ q)                            # (b, heads, dv, N)
    den = _int((_t(ks8).unsqueeze(-1) * q).sum(-2))                     # (b, heads, N)
    e = nx.log2_quantize(den, offset=p["log2_offset"].reshape(1, heads, 1),
                         emin=p["log2_emin"].reshape(1, heads, 1))
    m = nx.Dyadic(p["out_mult_b"].reshape(1, heads, 1, 1),
                  p["out_mult_c"].reshape(1, heads, 1, 1) + e[:, :, None, :])
    out = nx.requant(num, m, out_bits=8, signed=True)
    out = np.where((den == 0)[:, :, None, :], 0, out)
    return out.reshape(b, heads * dim, h, w)


#: float32 represents every integer of magnitude <= 2**24 exactly
F32_EXACT = 1 << 24


def _f32_is_ieee() -> bool:
    """No reduced-precision float32 mode (TF32/bf16 'fpmath') is switched on in torch."""
    mk = getattr(torch.backends, "mkldnn", None)
    conv = getattr(getattr(mk, "conv", None), "fp32_precision", "none")
    return torch.get_float32_matmul_precision() == "highest" and conv in ("none", "ieee")


def _conv_int(x: np.ndarray, node: Node) -> np.ndarray:
    """Exact integer convolution ``W * x + bias`` (int64) of a conv node.

    The products and partial sums are integers; a float type computes them exactly as long as
    every partial sum stays within its exact-integer range, whatever the summation order. The
    bound ``max|x| * max_j sum_i |W[j, i]|`` (from the actual operands) covers every partial
    sum of every output, so the convolution runs in float32 (the fast oneDNN path; ~20-50x
    faster than float64 on this CPU) when the bound is <= 2**24 and in float64 (exact below
    2**53, the bound being at most 2**25 * k*k*C_in for int8 x int9 operands) otherwise. The
    bias (up to 30 bits) is added in int64."""
    at = node.attrs
    w = np.asarray(node.params["weight"], np.int64)
    wsum = int(np.abs(w).reshape(w.shape[0], -1).sum(1).max(initial=0))
    xmax = int(np.abs(x).max(initial=0))
    args = (int(at["stride"]), int(at["padding"]), 1, int(at["groups"]))
    if xmax * wsum <= F32_EXACT and _f32_is_ieee():
        acc = F.conv2d(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                       torch.from_numpy(w.astype(np.float32)), None, *args)
    else:
        acc = F.conv2d(_t(x), _t(w), None, *args)
    return _int(acc) + np.asarray(node.params["bias"], np.int64).reshape(1, -1, 1, 1)


@torch.no_grad()
def run_node(prog: IntProgram, node: Node, env: dict) -> np.ndarray:
    """One node of ``prog`` on a batch: ``env`` maps the node's input (and residual) tensor names
    to int64 arrays ``(B, ...)``; returns the output's int64 array. The integer arithmetic is
    :mod:`sim.numerics` (epilogues, attention) with exact float64 torch matmuls/convolutions."""
    from sim import golden  # the host LayerNorm is one shared float64 function by contract
    out_t = prog.tensors[node.output]
    a = [env[t] for t in node.inputs]
    if node.op == "conv":
        acc = _conv_int(a[0], node)
    elif node.op == "concat":
        return np.concatenate(a, axis=1)
    elif node.op == "global_avgpool":
        acc = a[0].reshape(a[0].shape[0], a[0].shape[1], -1).sum(-1)
    elif node.op == "linear":
        acc = _int(_t(a[0]) @ _t(node.params["weight"]).T + _t(node.params["bias"]))
        if node.epilogue is None:
            return nx.saturate(acc, out_t.bits, signed=out_t.signed)
    elif node.op == "linear_attention":
        return _attention_batched(a[0], node.params, int(node.attrs["dim"]))
    elif node.op == "layernorm":
        in_t = prog.tensors[node.inputs[0]]
        return np.stack([
            golden.layernorm_host(r, in_t.channel_scale(), node.params["gamma"],
                                  node.params["beta"], eps=float(node.attrs.get("eps", 1e-5)),
                                  act=node.attrs.get("act", "none"),
                                  out_scale=out_t.channel_scale(), out_bits=out_t.bits,
                                  signed=out_t.signed) for r in a[0]])
    else:
        raise ExportError(f"run_int: unsupported op {node.op!r}")
    res = env[node.epilogue.residual] if node.epilogue.residual is not None else None
    return node.epilogue.apply(acc, out_bits=out_t.bits, signed=out_t.signed,
                               residual=res, channel_axis=1)


@torch.no_grad()
def run_int(prog: IntProgram, x_int, *, keep: bool = False) -> np.ndarray | dict:
    """Execute ``prog`` on a batch of integer images ``(B, C, H, W)``; returns the int64 output
    ``(B, ...)`` (or every tensor with ``keep``). Bit-exact with :func:`sim.golden.run`."""
    x_int = np.asarray(x_int)
    env = {prog.inputs[0]: x_int.astype(np.int64)}
    for node in prog.nodes:
        env[node.output] = run_node(prog, node, env)
    if keep:
        return env
    return env[prog.outputs[0]]
