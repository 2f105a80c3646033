"""The golden integer model: executes an :class:`~sim.intprogram.IntProgram` bit-exactly.

Every rounding, saturation and shift is a call into :mod:`sim.numerics`; this module only moves
data and forms integer dot products. Dot products are computed as float64 BLAS matrix products,
which is exact as long as every partial sum stays below ``2**53`` in magnitude; each product
checks that bound from the actual operand magnitudes (``K * max|a| * max|b| < 2**53``) and raises
:class:`ExactnessError` otherwise, so a result is either exact or an error, never silently wrong.
Depthwise convolutions are done tap by tap in int64 (exact, no bound needed). Every accumulator
is also checked against the 32-bit range of the hardware's psum registers
(:class:`AccumulatorOverflow`), so an exporter bug (e.g. an oversized bias) cannot make the golden
model and the RTL silently disagree.

Public API (others code against it; keep it stable)
---------------------------------------------------
* :func:`run` ``(prog, x, keep=False)`` -> ``{tensor name: int64 array}``
* :func:`run_batch` ``(prog, xs)`` -> ``{output name: (B, ...) int64 array}``
* :func:`quantize_input` ``(img, tensor)`` -> the int8 image (values in the tensor's range,
  int64 dtype so that nobody's arithmetic on it can wrap)
* :func:`conv_acc`, :func:`linear_acc` -> int64 accumulators (bias included, before requant)
* :func:`attention`, :func:`attention_steps` -> the linear attention and its five steps
* :func:`layernorm_host` -> the head's LayerNorm, the one float op (runs on the host CPU)
* :func:`top1`, :func:`topk` -> class indices from logits
* :func:`float_reference`, :func:`float_node`, :func:`sqnr_db` -> the float network a program
  quantizes, for measuring quantization error

Rounding of the float -> int conversions (input quantization, LayerNorm output): round half up,
``floor(v + 1/2)``, the same convention as :func:`sim.numerics.rshift_round`, then
:func:`sim.numerics.saturate`.
"""

from __future__ import annotations

import numpy as np

from . import numerics as nx
from .intprogram import IntProgram, IntProgramError, Node, TensorInfo

__all__ = ["ExactnessError", "AccumulatorOverflow", "EXACT_LIMIT", "run", "run_batch",
           "quantize_input", "conv_acc", "linear_acc", "attention", "attention_steps",
           "attention_kv", "attention_ksum", "attention_div", "attention_out",
           "layernorm_host", "round_half_up", "top1", "topk", "execute_node", "float_reference",
           "float_node", "sqnr_db"]

EXACT_LIMIT = 1 << 53  #: float64 integer arithmetic is exact for magnitudes below this


class ExactnessError(ArithmeticError):
    """A dot product could exceed 2**53, where float64 stops representing integers exactly."""


class AccumulatorOverflow(ArithmeticError):
    """An accumulator left the ``numerics.ACC_BITS``-bit range the hardware's psum registers hold
    (they would wrap; the golden model refuses instead of silently disagreeing with the RTL)."""


def _check_acc(acc: np.ndarray, what: str) -> np.ndarray:
    lim = 1 << (nx.ACC_BITS - 1)
    if acc.size and (acc.min() < -lim or acc.max() >= lim):
        raise AccumulatorOverflow(f"{what}: accumulator range [{acc.min()}, {acc.max()}] exceeds"
                                  f" {nx.ACC_BITS}-bit two's complement")
    return acc


def _int64(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iub":
        raise TypeError(f"integer array expected, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _maxabs(a: np.ndarray) -> int:
    return int(np.abs(a).max()) if a.size else 0


def _check_exact(k: int, a: np.ndarray, b: np.ndarray, what: str):
    """Raise unless every partial sum of ``k`` products ``a_i * b_i`` is below 2**53."""
    bound = int(k) * _maxabs(a) * _maxabs(b)
    if bound >= EXACT_LIMIT:
        raise ExactnessError(f"{what}: K={k} x max|a|={_maxabs(a)} x max|b|={_maxabs(b)} = {bound}"
                             f" >= 2**53; float64 would not be exact")


def _matmul(a: np.ndarray, b: np.ndarray, what: str = "matmul") -> np.ndarray:
    """Exact integer ``a @ b`` (numpy matmul broadcasting) through float64 BLAS."""
    _check_exact(a.shape[-1], a, b, what)
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)


# --- convolution and linear accumulators -------------------------------------------------------

def conv_acc(x, w, bias=None, *, stride: int = 1, padding: int = 0, groups: int = 1) -> np.ndarray:
    """Integer 2-D convolution accumulators (zero padding, cross-correlation like torch).

    ``x``: int ``(Cin, H, W)``; ``w``: int ``(Cout, Cin/groups, k, k)``; ``bias``: int ``(Cout,)``
    or None. Returns int64 ``(Cout, Ho, Wo)`` = sum over the receptive field of ``x * w`` plus bias.
    Depthwise (``groups == Cin == Cout``) runs tap by tap in int64; everything else as an exact
    float64 im2col matrix product per group.
    """
    x, w = _int64(x), _int64(w)
    if x.ndim != 3 or w.ndim != 4:
        raise ValueError(f"conv_acc wants x (C,H,W) and w (Cout,Cin/g,k,k), got {x.shape}, {w.shape}")
    cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    if stride < 1 or padding < 0 or groups < 1 or cin % groups or cout % groups \
            or cin // groups != cin_g:
        raise ValueError(f"inconsistent conv: x {x.shape}, w {w.shape}, stride {stride},"
                         f" padding {padding}, groups {groups}")
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"conv output would be empty: input {x.shape}, kernel {kh}x{kw}")
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding))) if padding else x
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    if groups == cin and cin_g == 1 and cout == cin:            # depthwise: tap by tap, int64
        acc = np.zeros((cout, ho, wo), dtype=np.int64)
        for dy in range(kh):
            for dx in range(kw):
                acc += w[:, 0, dy, dx][:, None, None] * \
                    xp[:, dy:dy + span_h:stride, dx:dx + span_w:stride]
    elif kh == 1 and kw == 1:                                    # (grouped) pointwise
        xs = xp[:, :span_h:stride, :span_w:stride].reshape(groups, cin_g, ho * wo)
        wg = w.reshape(groups, cout // groups, cin_g)
        acc = _matmul(wg, xs, "pointwise conv").reshape(cout, ho, wo)
    else:                                                        # generic: im2col per group
        taps = [xp[:, dy:dy + span_h:stride, dx:dx + span_w:stride]
                for dy in range(kh) for dx in range(kw)]
        cols = np.stack(taps, axis=1).reshape(groups, cin_g * kh * kw, ho * wo)
        wg = w.reshape(groups, cout // groups, cin_g * kh * kw)
        acc = _matmul(wg, cols, "conv").reshape(cout, ho, wo)
    if bias is not None:
        acc = acc + _int64(bias)[:, None, None]
    return acc


def linear_acc(x, w, bias=None) -> np.ndarray:
    """Integer ``w @ x + bias``: ``x`` int ``(Cin,)``, ``w`` ``(Cout, Cin)`` -> int64 ``(Cout,)``."""
    x, w = _int64(x), _int64(w)
    if x.ndim != 1 or w.ndim != 2 or w.shape[1] != x.shape[0]:
        raise ValueError(f"linear_acc wants x (Cin,) and w (Cout, Cin), got {x.shape}, {w.shape}")
    acc = _matmul(w, x[:, None], "linear")[:, 0]
    if bias is not None:
        acc = acc + _int64(bias)
    return acc


# --- linear attention -----------------------------------------------------------------------------

def _head_dyadic(params: dict, key: str, extra_dims: int) -> nx.Dyadic:
    b = _int64(params[f"{key}_b"]).reshape((-1,) + (1,) * extra_dims)
    c = _int64(params[f"{key}_c"]).reshape((-1,) + (1,) * extra_dims)
    return nx.Dyadic(b, c)


def attention_steps(x, params: dict, dim: int) -> dict:
    """ReLU linear attention of EfficientViT (paper Eq. 4) in integers, step by step.

    ``x``: int8 ``(heads*3*dim, H, W)``; head ``h`` owns channels ``[3*dim*h, 3*dim*(h+1))``, of
    which the first ``dim`` are Q, the next ``dim`` K and the last ``dim`` V (the official
    ``reshape(B, -1, 3*dim, H*W)`` layout). ``N = H*W`` tokens. Per head (all params have shape
    ``(heads,)``), with ``Q = relu(q)``, ``K = relu(k)`` (int8 -> 0..127):

    0. ReLU of q and k (free: sign test).
    1. ``kv_acc[j, i] = sum_n K[j, n] * V[i, n]`` (int32; ``|.| <= N * 2**14``), then
       ``s8 = requant(kv_acc, s_mult)`` -> int8 (signed).          [R-MAC / MAT engine]
    2. ``ksum[j] = sum_n K[j, n]`` (int32), then
       ``ksum8 = requant(ksum, ksum_mult, signed=False)`` -> uint8.  [auxiliary adder tree]
    3. ``num[i, n] = sum_j Q[j, n] * s8[j, i]`` (int32, the dividends).      [MAT engine]
    4. ``den[n] = sum_j Q[j, n] * ksum8[j]`` (int32, the divisors).          [MAT engine]
    5. ``e[n] = log2_quantize(den[n], offset=log2_offset, emin=log2_emin)``  [log2 module]
       (4-bit code ``e - emin``), then
       ``out[i, n] = requant(num[i, n], Dyadic(out_mult_b, out_mult_c + e[n]))`` -> int8, i.e. one
       rounding: the requant module's product ``num * b`` shifted right by ``c + e`` with
       round-half-up by the shifter array, then saturated.            [requant + shifter array]
       **den = 0**: then ``out[:, n] = 0``. (In exact arithmetic den = 0 implies num = 0, and the
       float model gives 0 / eps = 0; in integers num can be non-zero by rounding, so the
       divider forces zero instead of using the smallest divisor. Hardware: a zero flag on den.)

    The validator requires ``0 <= out_mult_c + log2_emin`` and
    ``out_mult_c + log2_emin + 15 <= numerics.MAX_SHIFT``, so every effective shift is a legal
    dyadic shift. The intended scales: ``out_mult = s_S / (s_ksum * s_out) * 2**log2_offset``
    where ``s_S``/``s_ksum``/``s_out`` are the real scales of ``s8``/``ksum8``/``out``: then
    ``out ~= num / den`` in real terms with only the 4-bit rounding of the divisor as error.

    Returns a dict of int64 arrays (head first): ``q``, ``k`` (after ReLU, ``(heads, dim, N)``),
    ``v``, ``kv_acc`` and ``s8`` ``(heads, dim_k, dim_v)``, ``ksum`` and ``ksum8``
    ``(heads, dim)``, ``num`` ``(heads, dim, N)``, ``den`` ``(heads, N)``, ``e`` and ``code``
    ``(heads, N)``, ``out`` ``(heads*dim, H, W)``.
    """
    x = _int64(x)
    if x.ndim != 3 or dim < 1 or x.shape[0] % (3 * dim):
        raise ValueError(f"attention input {x.shape} is not (heads*3*{dim}, H, W)")
    heads = x.shape[0] // (3 * dim)
    h, w = x.shape[1:]
    t = x.reshape(heads, 3 * dim, h * w)
    q = nx.relu(t[:, :dim])
    k = nx.relu(t[:, dim:2 * dim])
    v = t[:, 2 * dim:]
    kv_acc, s8 = attention_kv(k, v, params)
    ksum, ksum8 = attention_ksum(k, params)
    den, e, code = attention_div(q, ksum8, params)
    num, out = attention_out(q, s8, code, den == 0, params)
    return {"q": q, "k": k, "v": v, "kv_acc": kv_acc, "s8": s8, "ksum": ksum, "ksum8": ksum8,
            "num": num, "den": den, "e": e, "code": code,
            "out": out.reshape(heads * dim, h, w)}


# The steps one at a time, as the accelerator's instructions run them (sim.funcsim): every
# operand is head-first, ``q``/``k`` already through the ReLU, params as in attention_steps.

def attention_kv(k, v, params: dict):
    """Step 1 (ATT_KV_*): ``(kv_acc, s8)`` from ``k = relu(K)`` and ``v``, each
    ``(heads, dim, N)``; ``kv_acc[h, j, i] = sum_n k[h, j, n] v[h, i, n]``."""
    k, v = _int64(k), _int64(v)
    kv_acc = _matmul(k, np.swapaxes(v, 1, 2), "attention K^T V")           # (heads, j, i)
    _check_acc(kv_acc, "attention step 1 (K^T V)")
    s8 = nx.requant(kv_acc, _head_dyadic(params, "s_mult", 2), out_bits=8, signed=True)
    return kv_acc, s8


def attention_ksum(k, params: dict):
    """Step 2 (ATT_KSUM, adder tree): ``(ksum, ksum8)`` from ``k = relu(K)``."""
    ksum = _int64(k).sum(axis=2)                                             # (heads, j)
    ksum8 = nx.requant(ksum, _head_dyadic(params, "ksum_mult", 1), out_bits=8, signed=False)
    return ksum, ksum8


def attention_div(q, ksum8, params: dict):
    """Steps 4-5a (ATT_DIV, log2 module): ``(den, e, code)`` from ``q = relu(Q)``
    ``(heads, dim, N)`` and ``ksum8`` ``(heads, dim)``; ``code = e - log2_emin`` (4 bits)."""
    den = _matmul(_int64(ksum8)[:, None, :], _int64(q), "attention Q ksum")[:, 0, :]
    offset = _int64(params["log2_offset"])[:, None]
    emin = _int64(params["log2_emin"])[:, None]
    e = nx.log2_quantize(den, offset=offset, emin=emin)
    return den, e, e - emin


def attention_out(q, s8, code, zero, params: dict):
    """Steps 3 and 5b (ATT_OUT: dividends, requant and shifter array): ``(num, out)`` from
    ``q = relu(Q)``, ``s8`` ``(heads, dim_k, dim_v)``, the 4-bit divisor ``code`` and the
    ``zero`` flags (``den == 0``) ``(heads, N)``; ``out`` is ``(heads, dim, N)`` int8."""
    num = _matmul(np.swapaxes(_int64(s8), 1, 2), _int64(q), "attention Q S")  # (heads, i, n)
    emin = _int64(params["log2_emin"])[:, None]
    om = _head_dyadic(params, "out_mult", 1)                                  # (heads, 1)
    shift = (om.c + _int64(code) + emin)[:, None, :]                          # (heads, 1, n)
    out = nx.requant(num, nx.Dyadic(om.b[:, :, None], shift), out_bits=8, signed=True)
    return num, np.where(np.asarray(zero, bool)[:, None, :], 0, out)


def attention(x, params: dict, dim: int) -> np.ndarray:
    """The int8 output ``(heads*dim, H, W)`` of :func:`attention_steps`."""
    return attention_steps(x, params, dim)["out"]


# --- host-side float ops --------------------------------------------------------------------------

def round_half_up(v) -> np.ndarray:
    """``floor(v + 1/2)`` as int64: the float -> int rounding of the host-side conversions."""
    return np.floor(np.asarray(v, dtype=np.float64) + 0.5).astype(np.int64)


def _hswish_float(v):
    return v * np.clip(v + 3.0, 0.0, 6.0) / 6.0


def layernorm_host(x, in_scale, gamma, beta, *, eps: float, act: str, out_scale,
                   out_bits: int = 8, signed: bool = True) -> np.ndarray:
    """The head's LayerNorm (+ optional hswish) in float64 on the host CPU, requantised.

    ``v = x * in_scale``; ``y = (v - mean(v)) / sqrt(var(v) + eps) * gamma + beta`` (biased
    variance, like torch); ``y = hswish(y)`` if ``act == "hswish"``; result
    ``saturate(floor(y / out_scale + 1/2), out_bits)``. This is float arithmetic, so "bit-exact"
    means: every executor calls this very function (same numpy operations, same order).
    """
    v = _int64(x).astype(np.float64) * np.asarray(in_scale, dtype=np.float64)
    mu = v.mean()
    var = ((v - mu) ** 2).mean()
    y = (v - mu) / np.sqrt(var + eps) * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)
    if act == "hswish":
        y = _hswish_float(y)
    elif act != "none":
        raise ValueError(f"layernorm act must be none or hswish, got {act!r}")
    return nx.saturate(round_half_up(y / np.asarray(out_scale, dtype=np.float64)), out_bits,
                       signed=signed)


def quantize_input(img, tensor: TensorInfo) -> np.ndarray:
    """Quantize a float image ``(C, H, W)`` (already normalised) to the input tensor's integers.

    ``q = saturate(floor(img / scale + 1/2), bits, signed)`` with the tensor's per-tensor or
    per-channel scale: round half up, the convention of :func:`sim.numerics.rshift_round`.
    Returns int64 values (int8 range for an 8-bit input).
    """
    img = np.asarray(img, dtype=np.float64)
    if img.shape != tuple(tensor.shape):
        raise ValueError(f"image shape {img.shape} != input tensor {tensor.name!r} shape {tensor.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or infinity")
    scale = tensor.channel_scale().reshape((-1,) + (1,) * (img.ndim - 1))
    return nx.saturate(round_half_up(img / scale), tensor.bits, signed=tensor.signed)


# --- the executor -----------------------------------------------------------------------------------

def execute_node(prog: IntProgram, node: Node, env: dict) -> np.ndarray:
    """Compute one node's output from the tensors in ``env`` (name -> int64 array)."""
    out_t = prog.tensors[node.output]
    args = [env[t] for t in node.inputs]
    op = node.op
    if op == "conv":
        a = node.attrs
        acc = conv_acc(args[0], node.params["weight"], node.params["bias"], stride=int(a["stride"]),
                       padding=int(a["padding"]), groups=int(a["groups"]))
    elif op == "linear":
        acc = linear_acc(args[0], node.params["weight"], node.params["bias"])
        if node.epilogue is None:  # raw int32 accumulators (logits / the host LayerNorm's input)
            return _check_acc(acc, f"node {node.name!r}")
    elif op == "global_avgpool":
        acc = args[0].reshape(args[0].shape[0], -1).sum(axis=1)
    elif op == "concat":
        return np.concatenate(args, axis=0)
    elif op == "linear_attention":
        return attention(args[0], node.params, int(node.attrs["dim"]))
    elif op == "layernorm":
        in_t = prog.tensors[node.inputs[0]]
        return layernorm_host(args[0], in_t.channel_scale(), node.params["gamma"],
                              node.params["beta"], eps=float(node.attrs.get("eps", 1e-5)),
                              act=node.attrs.get("act", "none"), out_scale=out_t.channel_scale(),
                              out_bits=out_t.bits, signed=out_t.signed)
    else:
        raise IntProgramError(f"node {node.name!r}: golden model has no op {op!r}")
    _check_acc(acc, f"node {node.name!r}")
    res = env[node.epilogue.residual] if node.epilogue.residual is not None else None
    return node.epilogue.apply(acc, out_bits=out_t.bits, signed=out_t.signed, residual=res)


def _check_input(prog: IntProgram, x) -> np.ndarray:
    if len(prog.inputs) != 1:
        raise ValueError(f"run() takes programs with one input, this one has {prog.inputs}")
    t = prog.tensors[prog.inputs[0]]
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"input must be an integer array (use quantize_input), got dtype {x.dtype}")
    if x.shape != t.shape:
        raise ValueError(f"input shape {x.shape} != tensor {t.name!r} shape {t.shape}")
    x = x.astype(np.int64)
    if x.size and not np.array_equal(nx.saturate(x, t.bits, signed=t.signed), x):
        raise ValueError(f"input values [{x.min()}, {x.max()}] exceed the {t.bits}-bit"
                         f" {'signed' if t.signed else 'unsigned'} range of {t.name!r}")
    return x


def run(prog: IntProgram, x, *, keep: bool = False) -> dict:
    """Execute ``prog`` on one integer image ``x`` (shape of the input tensor).

    Returns ``{name: int64 array}`` for the graph outputs (logits: the raw int32 accumulators),
    or for every tensor (input included) when ``keep`` is true.
    """
    env = {prog.inputs[0]: _check_input(prog, x)}
    outputs = set(prog.outputs)
    last_use = {}
    if not keep:
        for i, n in enumerate(prog.nodes):
            for t in n.inputs + ([n.epilogue.residual] if n.epilogue and n.epilogue.residual else []):
                last_use[t] = i
    for i, n in enumerate(prog.nodes):
        env[n.output] = execute_node(prog, n, env)
        if not keep:  # free tensors nobody reads any more
            for t in n.inputs + ([n.epilogue.residual] if n.epilogue and n.epilogue.residual else []):
                if last_use.get(t) == i and t not in outputs:
                    env.pop(t, None)
    return env if keep else {name: env[name] for name in prog.outputs}


def run_batch(prog: IntProgram, xs, *, progress: bool = False) -> dict:
    """:func:`run` over a batch ``xs`` (B, C, H, W); returns ``{output: (B, ...) int64}``."""
    xs = list(xs)
    it = xs
    if progress:
        from tqdm import tqdm
        it = tqdm(xs, desc="golden", unit="img")
    outs = [run(prog, x) for x in it]
    return {name: np.stack([o[name] for o in outs]) for name in prog.outputs}


def topk(logits, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` largest logits along the last axis, best first (ties: lower index)."""
    a = np.asarray(logits)
    if k < 1 or k > a.shape[-1]:
        raise ValueError(f"k must be in [1, {a.shape[-1]}], got {k}")
    order = np.argsort(-a.astype(np.float64), axis=-1, kind="stable")
    return order[..., :k]


def top1(logits) -> np.ndarray | int:
    """Index of the largest logit along the last axis (first one on ties)."""
    r = np.argmax(np.asarray(logits), axis=-1)
    return int(r) if np.ndim(r) == 0 else r


# --- the float network an IntProgram stands for ----------------------------------------------------

def _real_weight_scale(prog: IntProgram, node: Node) -> np.ndarray:
    """Per output channel ``s_in * s_w`` (the real value of one accumulator LSB), recovered from
    the epilogue: ``mult = s_in s_w / s_out``, or ``s_in s_w / s_mid`` for hswish with ``s_mid``
    from the Hardswish constants (:func:`sim.numerics.hswish_in_scale`); a raw linear's output scale is ``s_in s_w`` itself."""
    out_t = prog.tensors[node.output]
    epi = node.epilogue
    if epi is None:
        return out_t.channel_scale()
    m = np.broadcast_to(epi.mult.value(), (out_t.channels,))
    if epi.act == "hswish":
        return m * nx.hswish_in_scale(epi.three, epi.hswish_mult, out_t.channel_scale())
    return m * out_t.channel_scale()


def float_reference(prog: IntProgram, img, *, keep: bool = False) -> dict:
    """Run the float network that ``prog`` quantizes, without any rounding or saturation.

    Weights are ``w * s_w`` and biases ``bias * s_in * s_w`` with the per-channel scales
    recovered from the epilogues and tensor scales; activations, residual adds, the attention
    ``num / den`` (exact division; den = 0 gives 0) and the LayerNorm are computed in float64 on
    real values. ``img``: the float input (before :func:`quantize_input`). Returns real-valued
    float64 arrays (outputs, or all tensors with ``keep``). Comparing them with
    ``run(...) * scale`` measures the quantization error of the integer program
    (see :func:`sqnr_db`).
    """
    t_in = prog.tensors[prog.inputs[0]]
    env = {prog.inputs[0]: np.asarray(img, dtype=np.float64)}
    if env[prog.inputs[0]].shape != t_in.shape:
        raise ValueError(f"image shape {env[prog.inputs[0]].shape} != input shape {t_in.shape}")
    for n in prog.nodes:
        env[n.output] = float_node(prog, n, env)
    return env if keep else {k: env[k] for k in prog.outputs}


def float_node(prog: IntProgram, n: Node, env: dict) -> np.ndarray:
    """One node of :func:`float_reference` on real-valued inputs from ``env``. Fed with the
    dequantized outputs of :func:`run`, it gives each node's own quantization error."""
    x = [env[t] for t in n.inputs]
    if n.op in ("conv", "linear"):
        s_acc = _real_weight_scale(prog, n)               # s_in * s_w per output channel
        s_w = s_acc / _input_scale(prog, n)
        w = np.asarray(n.params["weight"], dtype=np.float64)
        b = np.asarray(n.params["bias"], dtype=np.float64) * s_acc
        if n.op == "conv":
            a = n.attrs
            y = _float_conv(x[0], w, int(a["stride"]), int(a["padding"]), int(a["groups"]))
            y = y * s_w[:, None, None] + b[:, None, None]
        else:
            y = (w @ x[0]) * s_w + b
    elif n.op == "global_avgpool":
        y = x[0].reshape(x[0].shape[0], -1).mean(axis=1)
    elif n.op == "concat":
        y = np.concatenate(x, axis=0)
    elif n.op == "linear_attention":
        y = _float_attention(x[0], int(n.attrs["dim"]))
    elif n.op == "layernorm":
        v = x[0]
        y = (v - v.mean()) / np.sqrt(v.var() + float(n.attrs.get("eps", 1e-5))) \
            * np.asarray(n.params["gamma"], np.float64) + np.asarray(n.params["beta"], np.float64)
        if n.attrs.get("act", "none") == "hswish":
            y = _hswish_float(y)
    else:
        raise IntProgramError(f"node {n.name!r}: no float reference for op {n.op!r}")
    if n.epilogue is not None:
        ch = (slice(None),) + (None,) * (y.ndim - 1)
        if n.epilogue.act == "hswish":
            y = _hswish_float(y)
        if n.epilogue.residual is not None:
            y = y + env[n.epilogue.residual]
        if n.epilogue.act == "relu":
            y = np.maximum(y, 0.0)
        off = np.broadcast_to(np.asarray(n.epilogue.offset, np.float64),
                              (y.shape[0],))[ch] * prog.tensors[n.output].channel_scale()[ch]
        y = y - off
    return y


def _input_scale(prog: IntProgram, n: Node) -> float:
    s = prog.tensors[n.inputs[0]].channel_scale()
    if not np.allclose(s, s[0]):
        raise NotImplementedError(f"node {n.name!r}: float_reference needs a per-tensor input"
                                  " scale for conv/linear (per-channel migrated inputs: not yet)")
    return float(s[0])


def _float_conv(x, w, stride, padding, groups):
    cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    sh, sw_ = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    taps = [xp[:, dy:dy + sh:stride, dx:dx + sw_:stride] for dy in range(kh) for dx in range(kw)]
    cols = np.stack(taps, axis=1).reshape(groups, cin_g * kh * kw, ho * wo)
    return np.matmul(w.reshape(groups, cout // groups, cin_g * kh * kw), cols).reshape(cout, ho, wo)


def _float_attention(x, dim):
    heads = x.shape[0] // (3 * dim)
    t = x.reshape(heads, 3 * dim, -1)
    q, k, v = np.maximum(t[:, :dim], 0), np.maximum(t[:, dim:2 * dim], 0), t[:, 2 * dim:]
    num = np.swapaxes(k @ np.swapaxes(v, 1, 2), 1, 2) @ q           # (heads, dim_v, N)
    den = np.einsum("hjn,hj->hn", q, k.sum(axis=2))[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return y.reshape(heads * dim, *x.shape[1:])


def sqnr_db(reference, approx) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum ref^2 / sum (ref - approx)^2)`` in dB
    (``inf`` when equal, ``nan`` for an all-zero reference)."""
    r = np.asarray(reference, dtype=np.float64)
    e = r - np.asarray(approx, dtype=np.float64)
    sig, noise = float(np.sum(r * r)), float(np.sum(e * e))
    if sig == 0.0:
        return float("nan")
    return float("inf") if noise == 0.0 else 10.0 * np.log10(sig / noise)


# --- command line -------------------------------------------------------------------------------------

def main(argv=None) -> int:
    """``python -m sim.golden PROGRAM.npz [--npy IMG.npy | --random SEED] [--stats] [--json]``."""
    import argparse
    import json
    import sys
    import time

    from .intprogram import IntProgram

    ap = argparse.ArgumentParser(
        prog="python -m sim.golden",
        description="Run an IntProgram file on one image with the bit-exact golden integer model"
                    " and print the top-5 classes (and, with --stats, per-tensor saturation).")
    ap.add_argument("program", help="IntProgram .npz file (quant export or python -m sim.zoo -o)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--npy", help="float image (C,H,W), already normalised, as a .npy file")
    src.add_argument("--random", type=int, metavar="SEED", default=None,
                     help="a random photo-like image (sim.zoo.random_image) with this seed"
                          " (the default, seed 0)")
    ap.add_argument("--stats", action="store_true",
                    help="per-tensor saturation and non-zero fractions of the int8 tensors")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args(argv)
    try:
        prog = IntProgram.load(a.program)
        t_in = prog.tensors[prog.inputs[0]]
        if a.npy:
            try:
                img = np.load(a.npy, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read {a.npy}: {e}") from None
        else:
            from .zoo import random_image
            if len(t_in.shape) != 3 or t_in.shape[1] != t_in.shape[2] or t_in.shape[0] != 3:
                raise ValueError(f"--random needs a (3, R, R) input, program has {t_in.shape}")
            img = random_image(t_in.shape[1], a.random or 0)
        x = quantize_input(img, t_in)
    except (ValueError, TypeError) as e:          # IntProgramError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.process_time()
    out = run(prog, x, keep=a.stats)
    cpu = time.process_time() - t0
    logits = out[prog.outputs[0]]
    top = topk(logits, min(5, logits.shape[-1])).tolist() if logits.ndim == 1 else []
    rep = {"program": a.program, "nodes": len(prog.nodes), "cpu_seconds": round(cpu, 4),
           "output": prog.outputs[0], "top5": top,
           "top5_logits": [int(logits[i]) for i in top]}
    if a.stats:
        stats = {}
        for n in prog.nodes:
            t = prog.tensors[n.output]
            if t.bits > 8:
                continue
            v = out[n.output]
            lo, hi = (-(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1) if t.signed else (0, (1 << t.bits) - 1)
            stats[n.name] = {"saturated": float(np.mean((v == lo) | (v == hi))),
                             "nonzero": float(np.mean(v != 0)), "std_lsb": float(v.std())}
        rep["stats"] = stats
    if a.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"{a.program}: {rep['nodes']} nodes, {cpu:.3f} s CPU")
        print("top-5: " + ", ".join(f"{c} ({v})" for c, v in zip(rep["top5"], rep["top5_logits"])))
        for name, s in rep.get("stats", {}).items():
            print(f"  {name:64s} sat {100 * s['saturated']:6.2f} %  nz {100 * s['nonzero']:6.1f} %"
                  f"  std {s['std_lsb']:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
