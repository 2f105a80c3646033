"""IntProgram: the hardware-independent integer graph that ``quant`` exports and everything reads.

An IntProgram is a topologically ordered list of :class:`Node` s over named integer tensors
(:class:`TensorInfo`). All feature maps are batch-free ``(C, H, W)``; vectors are ``(C,)``.
Every arithmetic detail is a call into :mod:`sim.numerics`; this module only holds parameters,
checks them, and saves/loads them.

Ops (``Node.op``) and their parameters
--------------------------------------
``conv``            inputs ``[x]``; attrs ``kernel, stride, padding, groups``; params ``weight``
                    int8 ``(Cout, Cin/groups, k, k)``, ``bias`` int32 ``(Cout,)``; an
                    :class:`Epilogue`. Covers the generic 3x3 stride-2 stem, pointwise
                    (k=1, groups=1), grouped pointwise (k=1, 1<groups<Cin) and depthwise
                    (groups=Cin=Cout) convolutions. Zero padding (all zero points are 0).
``linear``          inputs ``[x]`` with x ``(Cin,)``; params ``weight (Cout, Cin)``, ``bias``;
                    an epilogue, or none: then the output is the raw int32 accumulator (logits).
``concat``          inputs ``[a, b, ...]`` along channels; no arithmetic (scales concatenate).
``linear_attention`` inputs ``[x]`` with x ``(heads*3*dim, H, W)``, per head ``q, k, v`` of
                    ``dim`` channels each (EfficientViT's layout). Paper Eq. 4 in five steps;
                    per-head params ``s_mult`` (requant of ReLU(K)^T V to int8), ``ksum_mult``
                    (requant of the row sums of ReLU(K) to uint8), ``log2_offset`` and
                    ``log2_emin`` (the 4-bit log2 divisor, :func:`sim.numerics.log2_quantize`),
                    ``out_mult`` (dividend to output scale, shifted further by the divisor's
                    exponent). Output ``(heads*dim, H, W)``. See ``sim.golden.attention_steps``
                    for the exact integer steps (den = 0 gives 0). Constraint (checked):
                    ``0 <= out_mult_c + log2_emin <= numerics.MAX_SHIFT - 15`` so every
                    effective output shift ``c + e`` is a legal right shift.
``global_avgpool``  inputs ``[x]`` ``(C, H, W)`` -> ``(C,)``: the sum over H*W, then the epilogue
                    (whose multiplier includes 1/(H*W)).
``layernorm``       inputs ``[x]`` ``(C,)``; params ``gamma, beta`` (float64), attr ``eps``, ``act``
                    (``none``/``hswish``). Runs on the host CPU in float64 (the accelerator of the
                    paper has no normaliser; this is the head's one LayerNorm, C <= 2560 values).

Epilogue (the requant path of a producing node)
-----------------------------------------------
``act = none | relu``: ``numerics.requant(acc, mult, offset, residual, res_mult, relu)``.
``act = hswish``: ``x = numerics.requant(acc, mult, out_bits=mid_bits)`` (scale ``s_mid``), then
``numerics.hswish_int(x, three, hswish_mult, offset)``. The residual is only allowed with
``act = none`` (EfficientViT adds residuals after linear projections only).
Per-channel arrays have shape ``(Cout,)`` and broadcast over the channel axis.

The file format, each op and the decisions behind them are documented in docs/intprogram.md.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import numerics as nx
from .fileio import atomic_write

__all__ = ["FORMAT_VERSION", "IntProgramError", "TensorInfo", "Epilogue", "Node", "IntProgram",
           "OPS", "conv_output_hw"]

FORMAT_VERSION = 1
MAGIC = "trio-vit.intprogram"
OPS = ("conv", "linear", "concat", "linear_attention", "global_avgpool", "layernorm")
ACTS = ("none", "relu", "hswish")


class IntProgramError(ValueError):
    """A malformed, inconsistent or incompatible IntProgram."""


def conv_output_hw(h: int, w: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    return ((h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1)


@dataclass
class TensorInfo:
    """A named integer tensor: its shape, width, signedness and real-valued scale.

    ``scale`` is float64, shape ``()`` (one per tensor) or ``(C,)`` (per channel, e.g. depthwise
    inputs after channel-wise migration). The real value is ``scale * int``.
    """
    name: str
    shape: tuple
    bits: int = 8
    signed: bool = True
    scale: np.ndarray = field(default_factory=lambda: np.float64(1.0))

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        self.scale = np.asarray(self.scale, dtype=np.float64)

    @property
    def channels(self) -> int:
        return self.shape[0]

    def channel_scale(self) -> np.ndarray:
        """The scale broadcast to ``(C,)``."""
        return np.broadcast_to(self.scale, (self.channels,)).astype(np.float64)


@dataclass
class Epilogue:
    """The re-quantization applied to a node's accumulators on the way out (see module doc)."""
    mult: nx.Dyadic
    act: str = "none"
    offset: np.ndarray = field(default_factory=lambda: np.int64(0))
    residual: str | None = None
    res_mult: nx.Dyadic | None = None
    mid_bits: int = 16
    three: int = 0
    hswish_mult: nx.Dyadic | None = None

    def __post_init__(self):
        self.offset = np.asarray(self.offset, dtype=np.int64)

    def apply(self, acc, *, out_bits: int, signed: bool, residual=None, channel_axis: int = 0):
        """Run the requant path on ``acc`` (channel on ``channel_axis``); returns int64."""
        acc = np.asarray(acc, dtype=np.int64)
        nd = acc.ndim

        def bc(a):
            a = np.asarray(a)
            if a.ndim == 0:
                return a
            shape = [1] * nd
            shape[channel_axis] = a.shape[0]
            return a.reshape(shape)

        mult = nx.Dyadic(bc(self.mult.b), bc(self.mult.c))
        off = bc(self.offset)
        if self.act == "hswish":
            x = nx.requant(acc, mult, out_bits=self.mid_bits)
            hm = nx.Dyadic(bc(self.hswish_mult.b), bc(self.hswish_mult.c))
            return nx.hswish_int(x, self.three, hm, out_bits=out_bits, signed=signed, offset=off)
        res_mult = None
        if self.residual is not None:
            if residual is None:
                raise IntProgramError(f"epilogue needs residual tensor {self.residual!r}")
            res_mult = nx.Dyadic(bc(self.res_mult.b), bc(self.res_mult.c))
        return nx.requant(acc, mult, out_bits=out_bits, signed=signed, offset=off,
                          residual=residual if self.residual is not None else None,
                          res_mult=res_mult, relu=self.act == "relu")

    # -- (de)serialisation helpers ----------------------------------------------------------
    def _arrays(self, prefix: str) -> dict:
        out = {f"{prefix}mult_b": self.mult.b, f"{prefix}mult_c": self.mult.c,
               f"{prefix}offset": self.offset}
        if self.res_mult is not None:
            out[f"{prefix}res_b"], out[f"{prefix}res_c"] = self.res_mult.b, self.res_mult.c
        if self.hswish_mult is not None:
            out[f"{prefix}hsw_b"], out[f"{prefix}hsw_c"] = self.hswish_mult.b, self.hswish_mult.c
        return out

    def _meta(self) -> dict:
        return {"act": self.act, "residual": self.residual, "mid_bits": self.mid_bits,
                "three": self.three}

    @classmethod
    def _from(cls, meta: dict, arrays: dict, prefix: str) -> "Epilogue":
        def dy(name):
            b, c = arrays.get(f"{prefix}{name}_b"), arrays.get(f"{prefix}{name}_c")
            return None if b is None else nx.Dyadic(b, c)
        return cls(mult=dy("mult"), act=meta["act"], offset=arrays[f"{prefix}offset"],
                   residual=meta.get("residual"), res_mult=dy("res"),
                   mid_bits=int(meta.get("mid_bits", 16)), three=int(meta.get("three", 0)),
                   hswish_mult=dy("hsw"))


@dataclass
class Node:
    """One operation. ``params`` holds numpy arrays; ``attrs`` JSON-able scalars/lists."""
    name: str
    op: str
    inputs: list
    output: str
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    epilogue: Epilogue | None = None

    @property
    def kind(self) -> str:
        """A finer op class for the compiler and reports: generic/pointwise/grouped/depthwise conv,
        matmul (linear), attention, pool, concat, layernorm."""
        if self.op == "conv":
            g, k = self.attrs["groups"], self.attrs["kernel"]
            cout, cin_g = self.params["weight"].shape[:2]
            if g > 1 and cin_g == 1 and g == cout:
                return "depthwise"
            if k == 1:
                return "pointwise" if g == 1 else "grouped_pointwise"
            return "generic"
        return {"linear": "matmul", "linear_attention": "attention",
                "global_avgpool": "pool"}.get(self.op, self.op)


@dataclass
class IntProgram:
    """The integer graph. ``tensors`` maps names to :class:`TensorInfo`; ``nodes`` are in order."""
    tensors: dict
    nodes: list
    inputs: list
    outputs: list
    meta: dict = field(default_factory=dict)

    # -- checks ------------------------------------------------------------------------------
    def validate(self) -> "IntProgram":
        """Check every invariant the executors rely on; raise :class:`IntProgramError` naming the
        node and the problem. Returns ``self``."""
        for name, t in self.tensors.items():
            _check_tensor(name, t)
        defined = set()
        for name in self.inputs:
            if name not in self.tensors:
                raise IntProgramError(f"graph input {name!r} has no tensor entry")
            defined.add(name)
        for i, n in enumerate(self.nodes):
            where = f"node {i} ({n.name!r}, op {n.op!r})"
            if n.op not in OPS:
                raise IntProgramError(f"{where}: unknown op; expected one of {OPS}")
            for t in n.inputs + ([n.epilogue.residual] if n.epilogue and n.epilogue.residual else []):
                if t not in defined:
                    raise IntProgramError(f"{where}: input {t!r} is not produced before this node")
            if n.output not in self.tensors:
                raise IntProgramError(f"{where}: output {n.output!r} has no tensor entry")
            if n.output in defined:
                raise IntProgramError(f"{where}: output {n.output!r} is produced twice")
            try:
                _CHECKS[n.op](self, n)
                if n.epilogue is not None:
                    _check_epilogue(self, n)
            except IntProgramError as e:
                raise IntProgramError(f"{where}: {e}") from None
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise IntProgramError(f"{where}: malformed ({type(e).__name__}: {e})") from None
            defined.add(n.output)
        for name in self.outputs:
            if name not in defined:
                raise IntProgramError(f"graph output {name!r} is never produced")
        return self

    def node_producing(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if n.output == tensor:
                return n
        return None

    # -- file format -------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Validate, then write one ``.npz`` file atomically (a temporary file renamed into place,
        so a failure leaves nothing half-written)."""
        return atomic_write(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """Validate, then return the contents of the ``.npz`` file :meth:`save` writes."""
        self.validate()
        arrays, nodes = {}, []
        for i, n in enumerate(self.nodes):
            for k, v in n.params.items():
                arrays[f"n{i}.p.{k}"] = np.asarray(v)
            entry = {"name": n.name, "op": n.op, "inputs": list(n.inputs), "output": n.output,
                     "attrs": n.attrs, "params": sorted(n.params)}
            if n.epilogue is not None:
                entry["epilogue"] = n.epilogue._meta()
                arrays.update(n.epilogue._arrays(f"n{i}.e."))
            nodes.append(entry)
        tensors = []
        for t in self.tensors.values():
            tensors.append({"name": t.name, "shape": list(t.shape), "bits": t.bits,
                            "signed": t.signed})
            arrays[f"t.{t.name}.scale"] = t.scale
        manifest = {"format": MAGIC, "version": FORMAT_VERSION, "meta": self.meta,
                    "inputs": self.inputs, "outputs": self.outputs, "tensors": tensors,
                    "nodes": nodes}
        arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def load(cls, path) -> "IntProgram":
        """Read and validate a file written by :meth:`save`; errors name the file and the problem."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntProgramError(f"{path}: no such file") from None
        except OSError as e:
            raise IntProgramError(f"{path}: not an IntProgram .npz file ({e})") from None
        return cls.from_bytes(data, where=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "IntProgram bytes") -> "IntProgram":
        """Read and validate the contents of a file written by :meth:`save` (:meth:`to_bytes`);
        error messages start with ``where`` (a file name, say)."""
        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
            arrays = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile/format errors come in many types
            raise IntProgramError(f"{where}: not an IntProgram .npz file ({e})") from None
        if "__manifest__" not in arrays:
            raise IntProgramError(f"{where}: no __manifest__ entry; not an IntProgram file")
        try:
            m = json.loads(arrays.pop("__manifest__").tobytes().decode())
        except Exception as e:
            raise IntProgramError(f"{where}: manifest is not valid JSON ({e})") from None
        if m.get("format") != MAGIC:
            raise IntProgramError(f"{where}: format {m.get('format')!r} is not {MAGIC!r}")
        if m.get("version") != FORMAT_VERSION:
            raise IntProgramError(f"{where}: IntProgram version {m.get('version')} is not supported"
                                  f" (this trio-vit reads version {FORMAT_VERSION}); re-export it")
        try:
            tensors = {}
            for t in m["tensors"]:
                tensors[t["name"]] = TensorInfo(t["name"], tuple(t["shape"]), t["bits"], t["signed"],
                                                arrays[f"t.{t['name']}.scale"])
            nodes = []
            for i, e in enumerate(m["nodes"]):
                params = {k: arrays[f"n{i}.p.{k}"] for k in e["params"]}
                epi = Epilogue._from(e["epilogue"], arrays, f"n{i}.e.") if "epilogue" in e else None
                nodes.append(Node(e["name"], e["op"], list(e["inputs"]), e["output"],
                                  dict(e["attrs"]), params, epi))
            prog = cls(tensors, nodes, list(m["inputs"]), list(m["outputs"]), dict(m.get("meta", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise IntProgramError(f"{where}: manifest is incomplete or inconsistent ({e!r})") from None
        try:
            return prog.validate()
        except IntProgramError as e:
            raise IntProgramError(f"{where}: {e}") from None

    def summary(self) -> str:
        lines = [f"IntProgram v{FORMAT_VERSION}: {len(self.nodes)} nodes, inputs {self.inputs},"
                 f" outputs {self.outputs}"]
        for n in self.nodes:
            lines.append(f"  {n.name:40s} {n.kind:18s} {self.tensors[n.output].shape}")
        return "\n".join(lines)


# --- per-op checks --------------------------------------------------------------------------

def _check_tensor(name: str, t: TensorInfo):
    where = f"tensor {name!r}"
    if t.name != name:
        raise IntProgramError(f"{where}: entry is named {t.name!r}")
    if not t.shape or any(d < 1 for d in t.shape):
        raise IntProgramError(f"{where}: shape {t.shape} must be non-empty with positive sizes")
    if not (1 <= int(t.bits) <= 32):
        raise IntProgramError(f"{where}: bits {t.bits} out of range [1, 32]")
    sc = np.asarray(t.scale)
    if sc.ndim > 1 or (sc.ndim == 1 and sc.shape[0] != t.shape[0]):
        raise IntProgramError(f"{where}: scale must be a scalar or have shape ({t.shape[0]},),"
                              f" got {sc.shape}")
    if not np.all(np.isfinite(sc)) or np.any(sc <= 0):
        raise IntProgramError(f"{where}: scales must be finite and > 0")


def _int_array(a, lo, hi, what):
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise IntProgramError(f"{what} must be an integer array, got dtype {a.dtype}")
    if a.size and (a.min() < lo or a.max() > hi):
        raise IntProgramError(f"{what} values must lie in [{lo}, {hi}], got [{a.min()}, {a.max()}]")
    return a


def _per_channel(a, c, what):
    a = np.asarray(a)
    if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != c):
        raise IntProgramError(f"{what} must be a scalar or have shape ({c},), got {a.shape}")


def _check_conv(p: IntProgram, n: Node):
    x, y = p.tensors[n.inputs[0]], p.tensors[n.output]
    if len(n.inputs) != 1 or len(x.shape) != 3 or len(y.shape) != 3:
        raise IntProgramError("conv takes one (C, H, W) input and gives a (C, H, W) output")
    k, s, pad, g = (int(n.attrs[a]) for a in ("kernel", "stride", "padding", "groups"))
    if k < 1 or s < 1 or pad < 0 or g < 1:
        raise IntProgramError(f"kernel/stride/padding/groups out of range: {k}/{s}/{pad}/{g}")
    w = _int_array(n.params["weight"], -128, 127, "weight")
    cout = y.shape[0]
    if x.shape[0] % g or cout % g:
        raise IntProgramError(f"groups {g} must divide Cin {x.shape[0]} and Cout {cout}")
    if w.shape != (cout, x.shape[0] // g, k, k):
        raise IntProgramError(f"weight shape {w.shape} != {(cout, x.shape[0] // g, k, k)}")
    _int_array(n.params["bias"], -(1 << 31), (1 << 31) - 1, "bias")
    if np.asarray(n.params["bias"]).shape != (cout,):
        raise IntProgramError(f"bias shape must be ({cout},)")
    if conv_output_hw(x.shape[1], x.shape[2], k, s, pad) != y.shape[1:]:
        raise IntProgramError(f"output shape {y.shape} does not follow from input {x.shape}"
                              f" with k={k} s={s} p={pad}")
    if n.epilogue is None:
        raise IntProgramError("conv needs an epilogue")


def _check_linear(p: IntProgram, n: Node):
    x, y = p.tensors[n.inputs[0]], p.tensors[n.output]
    w = _int_array(n.params["weight"], -128, 127, "weight")
    if len(x.shape) != 1 or w.shape != (y.shape[0], x.shape[0]):
        raise IntProgramError(f"linear weight {w.shape} does not map {x.shape} to {y.shape}")
    _int_array(n.params["bias"], -(1 << 31), (1 << 31) - 1, "bias")
    if n.epilogue is None and (y.bits != 32 or not y.signed):
        raise IntProgramError("a linear without epilogue outputs raw int32 accumulators (bits=32)")


def _check_concat(p: IntProgram, n: Node):
    xs = [p.tensors[t] for t in n.inputs]
    y = p.tensors[n.output]
    if len(xs) < 2 or any(x.shape[1:] != y.shape[1:] for x in xs) \
            or sum(x.shape[0] for x in xs) != y.shape[0]:
        raise IntProgramError("concat inputs must agree in H, W and sum to the output channels")


def _check_attention(p: IntProgram, n: Node):
    x, y = p.tensors[n.inputs[0]], p.tensors[n.output]
    d = int(n.attrs["dim"])
    if d < 1 or x.shape[0] % (3 * d):
        raise IntProgramError(f"input channels {x.shape[0]} are not a multiple of 3*dim={3 * d}")
    heads = x.shape[0] // (3 * d)
    if y.shape != (heads * d,) + x.shape[1:]:
        raise IntProgramError(f"output shape {y.shape} != {(heads * d,) + x.shape[1:]}")
    for k in ("s_mult", "ksum_mult", "out_mult"):
        nx.Dyadic(n.params[f"{k}_b"], n.params[f"{k}_c"])
        if np.asarray(n.params[f"{k}_b"]).shape != (heads,):
            raise IntProgramError(f"{k} must have one value per head ({heads})")
    for k in ("log2_offset", "log2_emin"):
        _int_array(n.params[k], -64, 64, k)
        if np.asarray(n.params[k]).shape != (heads,):
            raise IntProgramError(f"{k} must have one value per head ({heads})")
    # the output shift c + e (e in [emin, emin + 15]) must be a legal dyadic shift
    lo = np.asarray(n.params["out_mult_c"]) + np.asarray(n.params["log2_emin"])
    hi = lo + (1 << nx.LOG2_CODE_BITS) - 1
    if np.any(lo < 0) or np.any(hi > nx.MAX_SHIFT):
        raise IntProgramError(f"out_mult_c + log2_emin must lie in [0, {nx.MAX_SHIFT - 15}] so that"
                              f" every output shift c + e is in [0, {nx.MAX_SHIFT}];"
                              f" got {lo.tolist()}")


def _check_pool(p: IntProgram, n: Node):
    x, y = p.tensors[n.inputs[0]], p.tensors[n.output]
    if len(x.shape) != 3 or y.shape != (x.shape[0],):
        raise IntProgramError(f"global_avgpool maps (C, H, W) to (C,), got {x.shape} -> {y.shape}")
    if n.epilogue is None:
        raise IntProgramError("global_avgpool needs an epilogue")


def _check_layernorm(p: IntProgram, n: Node):
    x, y = p.tensors[n.inputs[0]], p.tensors[n.output]
    if len(x.shape) != 1 or y.shape != x.shape:
        raise IntProgramError("layernorm maps (C,) to (C,)")
    for k in ("gamma", "beta"):
        if np.asarray(n.params[k]).shape != x.shape:
            raise IntProgramError(f"{k} must have shape {x.shape}")
    if n.attrs.get("act", "none") not in ("none", "hswish"):
        raise IntProgramError("layernorm act must be none or hswish")


def _check_epilogue(p: IntProgram, n: Node):
    e, y = n.epilogue, p.tensors[n.output]
    c = y.shape[0]
    if e.act not in ACTS:
        raise IntProgramError(f"epilogue act {e.act!r} not in {ACTS}")
    if e.mult is None:
        raise IntProgramError("epilogue has no multiplier")
    for arr, what in ((e.mult.b, "mult"), (e.offset, "offset")):
        _per_channel(arr, c, f"epilogue {what}")
    if e.act == "hswish":
        if not (2 <= int(e.mid_bits) <= 24):  # x * t * b must fit int64: 2 * mid_bits + 16 < 64
            raise IntProgramError(f"hswish mid_bits {e.mid_bits} out of range [2, 24]")
        if e.hswish_mult is None or not (0 < e.three < (1 << (e.mid_bits - 1))):
            raise IntProgramError(f"hswish epilogue needs hswish_mult and 0 < three < 2**{e.mid_bits - 1}")
        if e.residual is not None:
            raise IntProgramError("a residual is only allowed with act none/relu")
    if e.residual is not None:
        r = p.tensors[e.residual]
        if r.shape != y.shape:
            raise IntProgramError(f"residual {e.residual!r} shape {r.shape} != output {y.shape}")
        if e.res_mult is None or np.any(np.asarray(e.res_mult.c) > np.asarray(e.mult.c)):
            raise IntProgramError("residual needs res_mult with rc <= c (numerics.align_residual)")
    if not (1 <= y.bits <= 32):
        raise IntProgramError(f"output bits {y.bits} out of range [1, 32]")


_CHECKS = {"conv": _check_conv, "linear": _check_linear, "concat": _check_concat,
           "linear_attention": _check_attention, "global_avgpool": _check_pool,
           "layernorm": _check_layernorm}
