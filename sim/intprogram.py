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

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import numerics as nx
from .fileio import atomic_write
from .isa import (DW_HOLD_EXTRA, SHAPE_LIMITS, WIDTHS, LimitError, check_limit,
                  dw_kernel_ok)

__all__ = ["FORMAT_VERSION", "IntProgramError", "TensorInfo", "Epilogue", "Node", "IntProgram",
           "OPS", "conv_output_hw", "read_npz", "check_digest", "digest"]

FORMAT_VERSION = 1
MAGIC = "trio-vit.intprogram"
OPS = ("conv", "linear", "concat", "linear_attention", "global_avgpool", "layernorm")
ACTS = ("none", "relu", "hswish")


class IntProgramError(ValueError):
    """A malformed, inconsistent or incompatible IntProgram."""


def digest(arrays: dict, manifest: dict | None = None) -> str:
    """SHA-256 over the arrays of a file (names, dtypes, shapes and bytes, in name order) and
    its manifest (canonical JSON, without the ``sha256`` entry): saved in the manifest, so that
    a damaged file (a flipped bit in the weights or an address) is refused on load instead of
    computing something else."""
    h = hashlib.sha256()
    if manifest is not None:
        m = {k: v for k, v in manifest.items() if k != "sha256"}
        h.update(json.dumps(m, sort_keys=True).encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_npz(path, what: str, error, *, data: bytes | None = None) -> tuple[dict, dict]:
    """Read an ``.npz`` written by ``save`` of an IntProgram or Binary: ``(manifest, arrays)``
    (from ``data`` when given: the file's contents, ``path`` then only names it in messages).
    Every failure raises ``error`` with one line naming ``path`` and the cause: missing file,
    not a zip / truncated (an archive whose first member does not start at byte 0 is the tail
    of a damaged file: a truncated Binary would otherwise read as its embedded IntProgram),
    no or bad manifest, digest mismatch (the manifest's ``sha256``, when present)."""
    if data is None:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise error(f"{path}: no such file") from None
        except OSError as e:
            raise error(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
        if infos and min(i.header_offset for i in infos) != 0:
            raise error(f"{path}: truncated or damaged {what} file (the archive does not start"
                        " at byte 0)")
        z = np.load(io.BytesIO(data), allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except error:
        raise
    except Exception as e:  # zipfile/format errors come in many types
        art = "an" if what[0] in "AEIOU" else "a"
        raise error(f"{path}: not {art} {what} .npz file or truncated ({type(e).__name__}: {e})"
                    ) from None
    if "__manifest__" not in arrays:
        raise error(f"{path}: no __manifest__ entry; not a {what} file")
    try:
        m = json.loads(arrays.pop("__manifest__").tobytes().decode())
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
    except Exception as e:
        raise error(f"{path}: manifest is not valid JSON ({e})") from None
    return m, arrays


def check_digest(path, m: dict, arrays: dict, what: str, error) -> None:
    """Refuse a file whose arrays or manifest do not match the manifest's ``sha256`` (when it
    has one). Called last by the loaders, so a structurally broken file gets the specific
    message and an otherwise valid but altered one this."""
    want = m.get("sha256")
    if want is not None and want != digest(arrays, m):
        raise error(f"{path}: damaged {what} file (its arrays or manifest do not match the"
                    " manifest's SHA-256)")


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
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                   for s in self.shape):
            raise IntProgramError(f"tensor {self.name!r}: shape {self.shape!r} must be integers")
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
        off = np.asarray(self.offset)
        # integers become int64; anything else is kept as it is for validate() to refuse (a
        # float offset cast here would be truncated silently: -3.75 -> -3)
        self.offset = off.astype(np.int64) if off.dtype.kind in "iub" else off

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
    def validate(self, cfg=None) -> "IntProgram":
        """Check every invariant the executors rely on; raise :class:`IntProgramError` naming the
        node and the problem. Returns ``self``. With ``cfg`` (a :class:`sim.config.AccelConfig`)
        also what that accelerator's engines can run (a depthwise kernel needs
        ``k*k >= N + 1``: :func:`sim.isa.dw_kernel_ok`)."""
        _check_types(self)
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
            _check_widths(self, n, where)
            try:
                _CHECKS[n.op](self, n)
                if n.epilogue is not None:
                    _check_epilogue(self, n)
                if cfg is not None:
                    _check_for_config(n, cfg)
            except (IntProgramError, LimitError) as e:
                raise IntProgramError(f"{where}: {e}") from None
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise IntProgramError(f"{where}: malformed ({type(e).__name__}: {e})") from None
            defined.add(n.output)
        for name in self.inputs:
            if self.tensors[name].bits != WIDTHS["activation"]:
                raise IntProgramError(f"graph input {name!r}: bits = {self.tensors[name].bits};"
                                      f" the accelerator reads {WIDTHS['activation']}-bit images")
        for name in self.outputs:
            if name not in defined:
                raise IntProgramError(f"graph output {name!r} is never produced")
        seen = set()
        for i, n in enumerate(self.nodes):
            if n.name in seen:
                raise IntProgramError(f"node {i}: name {n.name!r} is used twice")
            seen.add(n.name)
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
        manifest["sha256"] = digest(arrays, manifest)
        arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def load(cls, path) -> "IntProgram":
        """Read and validate a file written by :meth:`save`; errors name the file and the problem."""
        path = Path(path)
        return cls.from_bytes(None, where=path)

    @classmethod
    def from_bytes(cls, data: bytes | None, *, where="IntProgram bytes") -> "IntProgram":
        """Read and validate the contents of a file written by :meth:`save` (:meth:`to_bytes`);
        error messages start with ``where`` (a file name, say). ``data=None``: read the file
        ``where``."""
        m, arrays = read_npz(where, "IntProgram", IntProgramError, data=data)
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
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            what = f"missing member {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            raise IntProgramError(f"{where}: manifest is incomplete or inconsistent ({what})") from None
        try:
            prog.validate()
        except IntProgramError as e:
            raise IntProgramError(f"{where}: {e}") from None
        check_digest(where, m, arrays, "IntProgram", IntProgramError)
        return prog

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
    if isinstance(t.bits, bool) or not isinstance(t.bits, (int, np.integer)):
        raise IntProgramError(f"{where}: bits = {t.bits!r} is not an integer")
    if not (1 <= int(t.bits) <= 32):
        raise IntProgramError(f"{where}: bits {t.bits} out of range [1, 32]")
    if not isinstance(t.signed, (bool, np.bool_)):
        raise IntProgramError(f"{where}: signed = {t.signed!r} is not a bool")
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
    k, s, pad, g = (_int_attr(n, a) for a in ("kernel", "stride", "padding", "groups"))
    if k < 1 or s < 1 or pad < 0 or g < 1:
        raise IntProgramError(f"kernel/stride/padding/groups out of range: {k}/{s}/{pad}/{g}")
    _shape_limit("kernel", k)
    _shape_limit("stride", s)
    _shape_limit("padding", pad)
    w = _int_array(n.params["weight"], -128, 127, "weight")
    cout = y.shape[0]
    if x.shape[0] % g or cout % g:
        raise IntProgramError(f"groups {g} must divide Cin {x.shape[0]} and Cout {cout}")
    if w.shape != (cout, x.shape[0] // g, k, k):
        raise IntProgramError(f"weight shape {w.shape} != {(cout, x.shape[0] // g, k, k)}")
    if n.kind == "depthwise":
        _shape_limit("dw_kernel", k, "depthwise kernel")
        _shape_limit("dw_stride", s, "depthwise stride")
        if not dw_kernel_ok(k, 1):          # no engine (N >= 1) runs it
            raise IntProgramError(f"depthwise kernel = {k}: k*k = {k * k} taps are fewer than"
                                  f" N + {DW_HOLD_EXTRA} for every R-MAC engine (N >= 1)"
                                  " (sim.isa.dw_kernel_ok)")
    else:
        _shape_limit("cin_per_group", x.shape[0] // g, "input channels per group")
    _shape_limit("win", x.shape[2], "input width")
    _check_bias(n.params["bias"])
    if np.asarray(n.params["bias"]).shape != (cout,):
        raise IntProgramError(f"bias shape must be ({cout},)")
    if conv_output_hw(x.shape[1], x.shape[2], k, s, pad) != y.shape[1:]:
        raise IntProgramError(f"output shape {y.shape} does not follow from input {x.shape}"
                              f" with k={k} s={s} p={pad}")
    _shape_limit("wout", y.shape[2], "output width")
    if n.epilogue is None:
        raise IntProgramError("conv needs an epilogue")


def _check_linear(p: IntProgram, n: Node):
    x, y = p.tensors[n.inputs[0]], p.tensors[n.output]
    w = _int_array(n.params["weight"], -128, 127, "weight")
    if len(x.shape) != 1 or w.shape != (y.shape[0], x.shape[0]):
        raise IntProgramError(f"linear weight {w.shape} does not map {x.shape} to {y.shape}")
    _shape_limit("cin_per_group", x.shape[0], "input features")
    _check_bias(n.params["bias"])
    if np.asarray(n.params["bias"]).shape != (y.shape[0],):
        raise IntProgramError(f"bias shape must be ({y.shape[0]},)")
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
    d = _int_attr(n, "dim")
    _shape_limit("dim", d, "head dimension dim")
    if len(x.shape) != 3 or x.shape[0] % (3 * d):
        raise IntProgramError(f"input channels {x.shape[0]} are not a multiple of 3*dim={3 * d}")
    heads = x.shape[0] // (3 * d)
    _shape_limit("att_tokens", x.shape[1] * x.shape[2], "attention tokens H*W")
    if not x.signed:
        raise IntProgramError(f"input {n.inputs[0]!r} is uint8: the attention steps read int8"
                              " q|k|v (XSIGNED = 1 in hw.core.attention and the adder tree's"
                              " ATT_KSUM)")
    if y.shape != (heads * d,) + x.shape[1:]:
        raise IntProgramError(f"output shape {y.shape} != {(heads * d,) + x.shape[1:]}")
    for k in ("s_mult_b", "s_mult_c", "ksum_mult_b", "ksum_mult_c", "out_mult_b", "out_mult_c",
              "log2_offset", "log2_emin"):
        if k.endswith("_b"):
            nx.Dyadic(n.params[k], n.params[k[:-1] + "c"])
        check_limit(k, n.params[k])
        if np.asarray(n.params[k]).shape != (heads,):
            raise IntProgramError(f"{k} must have one value per head ({heads}),"
                                  f" got shape {np.asarray(n.params[k]).shape}")
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
    _shape_limit("pool_tokens", x.shape[1] * x.shape[2], "pool tokens H*W")
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


def _check_for_config(n: Node, cfg):
    """What one accelerator config's engines run (``validate(cfg)``)."""
    if n.op == "conv" and n.kind == "depthwise":
        k = int(n.attrs["kernel"])
        if not dw_kernel_ok(k, cfg.N):
            raise IntProgramError(f"depthwise kernel = {k}: k*k = {k * k} < N + {DW_HOLD_EXTRA}"
                                  f" = {cfg.N + DW_HOLD_EXTRA} for N = {cfg.N} (the R-MAC"
                                  " holds a tile's N channels while the next k*k steps run;"
                                  " sim.isa.dw_kernel_ok)")


def _check_epilogue(p: IntProgram, n: Node):
    e, y = n.epilogue, p.tensors[n.output]
    c = y.shape[0]
    if e.act not in ACTS:
        raise IntProgramError(f"epilogue act {e.act!r} not in {ACTS}")
    if e.mult is None:
        raise IntProgramError("epilogue has no multiplier")
    if y.bits != WIDTHS["activation"]:
        raise IntProgramError(f"output {n.output!r}: bits = {y.bits}; an epilogue writes"
                              f" {WIDTHS['activation']}-bit activations")
    fields = [("mult_b", e.mult.b), ("mult_c", e.mult.c), ("offset", e.offset)]
    if e.res_mult is not None:
        fields += [("res_b", e.res_mult.b), ("res_c", e.res_mult.c)]
    if e.hswish_mult is not None:
        fields += [("hsw_b", e.hswish_mult.b), ("hsw_c", e.hswish_mult.c)]
    for what, arr in fields:
        check_limit(what, arr, "epilogue")
        _per_channel(arr, c, f"epilogue {'mult' if what == 'mult_b' else what}")
    if e.act == "hswish":
        if isinstance(e.mid_bits, bool) or e.mid_bits != WIDTHS["mid"]:
            raise IntProgramError(f"hswish mid_bits {e.mid_bits!r} out of range: the requant lanes'"
                                  f" Hardswish intermediate is {WIDTHS['mid']} bits")
        if e.hswish_mult is None:
            raise IntProgramError("hswish epilogue needs hswish_mult")
        if not isinstance(e.three, (int, np.integer)) or isinstance(e.three, bool):
            raise IntProgramError(f"hswish three = {e.three!r} is not an integer")
        check_limit("three", e.three, "epilogue")
        if e.residual is not None:
            raise IntProgramError("a residual is only allowed with act none/relu")
    if e.residual is not None:
        r = p.tensors[e.residual]
        if r.shape != y.shape:
            raise IntProgramError(f"residual {e.residual!r} shape {r.shape} != output {y.shape}")
        if e.res_mult is None or np.any(np.asarray(e.res_mult.c) > np.asarray(e.mult.c)):
            raise IntProgramError("residual needs res_mult with rc <= c (numerics.align_residual)")


def _check_types(p: IntProgram):
    """The JSON-side structure: names are strings, lists are lists of names, node names unique
    (a hand-edited or damaged manifest otherwise fails deep inside an executor)."""
    def names(v, what):
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise IntProgramError(f"{what} must be a list of tensor names, got {v!r}")
    if not isinstance(p.tensors, dict) or not isinstance(p.nodes, list):
        raise IntProgramError("tensors must be a dict and nodes a list")
    names(p.inputs, "graph inputs")
    names(p.outputs, "graph outputs")
    if len(p.inputs) != 1:
        raise IntProgramError(f"the accelerator runs programs with one input, got {p.inputs}")
    if not isinstance(p.meta, dict):
        raise IntProgramError(f"meta must be a dict, got {type(p.meta).__name__}")
    for i, n in enumerate(p.nodes):
        where = f"node {i}"
        if not isinstance(n.name, str) or not isinstance(n.op, str) \
                or not isinstance(n.output, str):
            raise IntProgramError(f"{where}: name, op and output must be strings")
        names(n.inputs, f"{where} ({n.name!r}) inputs")
        if not isinstance(n.attrs, dict) or not isinstance(n.params, dict):
            raise IntProgramError(f"{where} ({n.name!r}): attrs and params must be dicts")
        e = n.epilogue
        if e is not None:
            if not isinstance(e.act, str) or not (e.residual is None or isinstance(e.residual, str)):
                raise IntProgramError(f"{where} ({n.name!r}): epilogue act / residual must be"
                                      " strings")


def _int_attr(n: Node, name: str) -> int:
    v = n.attrs[name]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise IntProgramError(f"attribute {name} = {v!r} must be an integer")
    return int(v)


def _check_bias(b):
    a = np.asarray(b)
    check_limit("bias", a)
    if a.ndim != 1:
        raise IntProgramError(f"bias must be a vector, got shape {a.shape}")


def _shape_limit(name, value, what=None):
    lo, hi = SHAPE_LIMITS[name]
    if not lo <= int(value) <= hi:
        raise IntProgramError(f"{what or name} = {value} outside [{lo}, {hi}], the range the"
                              f" accelerator implements (sim.isa.SHAPE_LIMITS[{name!r}])")


def _check_widths(p: IntProgram, n: Node, where: str):
    """Tensor widths: every tensor an accelerator op reads is one byte per element; only a
    linear without epilogue writes raw ``logits`` (int32), read by the host (layernorm) or
    returned as a graph output."""
    ins = n.inputs + ([n.epilogue.residual] if n.epilogue is not None and n.epilogue.residual
                      else [])
    if n.op != "layernorm":
        for t in ins:
            if p.tensors[t].bits != WIDTHS["activation"]:
                raise IntProgramError(f"{where}: input {t!r} has bits = {p.tensors[t].bits}; the"
                                      f" cores read {WIDTHS['activation']}-bit activations")
    y = p.tensors[n.output]
    raw = n.op == "linear" and n.epilogue is None
    if n.op == "concat":
        if any(p.tensors[t].signed != y.signed for t in n.inputs):
            raise IntProgramError(f"{where}: concat inputs and output must agree in signedness"
                                  " (the output aliases its inputs' bytes)")
        raw = False
    if n.op == "layernorm":
        raw = False
    if not raw and y.bits != WIDTHS["activation"]:
        raise IntProgramError(f"{where}: output {n.output!r} has bits = {y.bits}; only a linear"
                              f" without epilogue writes {WIDTHS['logits']}-bit values")


_CHECKS = {"conv": _check_conv, "linear": _check_linear, "concat": _check_concat,
           "linear_attention": _check_attention, "global_avgpool": _check_pool,
           "layernorm": _check_layernorm}
