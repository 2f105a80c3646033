"""QONNX export: the QDQ ONNX model (:mod:`quant.onnx_export`) with every QuantizeLinear ->
DequantizeLinear pair and every int8 weight's DequantizeLinear replaced by one ``Quant`` node of
the ``qonnx.custom_op.general`` domain (the format of FINN / Brevitas / hls4ml).

``Quant(x, scale, zeropt, bitwidth)`` (attributes ``signed``, ``narrow = 0``,
``rounding_mode``) returns ``(clip(round(x / scale + zeropt)) - zeropt) * scale``: the same real
values as ``DequantizeLinear(QuantizeLinear(x, scale, zp), scale, zp)`` with ``zeropt = zp``,
clipped to ``bitwidth`` (a QDQ tensor narrower than its ONNX type, e.g. uint8 ``ksum`` or a
4-bit activation, has a ``Clip`` between Q and DQ: it becomes the ``bitwidth``). Per-channel
scales and zero points are reshaped to broadcast over the channel axis. A residual reads the
codes of a tensor with another scale (``DequantizeLinear(q, s2)``): that becomes ``Mul(Quant
output, s2 / s)``. The int32 biases keep their ``DequantizeLinear`` (a standard operator; a
32-bit ``Quant`` would need float64). Rounding: ``rounding_mode = "ROUND"`` (half to even, what
QuantizeLinear does), so the QONNX model computes what the QDQ model computes.

The batch size is fixed (``batch``, default 1): the ``qonnx`` executor allocates every tensor
from its static shape. ``qonnx.core.onnx_exec.execute_onnx`` runs the result
(``tests/test_onnx_export.py``; ``python -m quant.onnx_check`` reports its agreement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .onnx_export import OnnxExportError, build_model

__all__ = ["QONNX_DOMAIN", "to_qonnx", "export_qonnx"]

QONNX_DOMAIN = "qonnx.custom_op.general"


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx
            return onnx.helper.get_attribute_value(a)
    return default


def _same(a, b) -> bool:
    """Equal after broadcasting (a per-channel array of one value equals that scalar)."""
    a, b = np.asarray(a), np.asarray(b)
    try:
        return bool(np.all(a.astype(np.float64) == b.astype(np.float64)))
    except ValueError:
        return False


def to_qonnx(qdq, *, batch: int = 1, rounding_mode: str = "ROUND"):
    """The QONNX ``ModelProto`` of a QDQ ``ModelProto`` made by :func:`quant.onnx_export.build_model`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    g = m.graph
    for v in list(g.input) + list(g.output):
        v.type.tensor_type.shape.dim[0].ClearField("dim_param")
        v.type.tensor_type.shape.dim[0].dim_value = batch
    inferred = onnx.shape_inference.infer_shapes(m)
    rank = {v.name: len(v.type.tensor_type.shape.dim)
            for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    nodes = list(g.node)
    users = {}
    for n in nodes:
        for i in n.input:
            users.setdefault(i, []).append(n)
    new_inits, out, rename, dropped = [], [], {}, set()
    count = [0]

    def const(base, arr):
        count[0] += 1
        name = f"{base}__qonnx{count[0]}"
        new_inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def bshape(v, r, axis):
        v = np.asarray(v, np.float64)
        if v.ndim == 0 or r is None:
            return v
        return v.reshape([-1] + [1] * (r - 1 - (axis % r)))

    def quant(x, s, zp, bits, signed, r, axis, base):
        q = helper.make_node("Quant", [x, const(f"{base}.scale", bshape(s, r, axis)),
                                       const(f"{base}.zeropt", bshape(zp, r, axis)),
                                       const(f"{base}.bitwidth", float(bits))],
                             [f"{base}.quant"], name=f"{base}.quant", domain=QONNX_DOMAIN,
                             signed=int(signed), narrow=0, rounding_mode=rounding_mode)
        out.append(q)
        return q.output[0]

    for n in nodes:
        if n.name in dropped:
            continue
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            codes = inits[n.input[0]]
            if codes.dtype != np.int8:
                out.append(n)                          # int32 bias: standard DequantizeLinear
                continue
            s, zp = inits[n.input[1]], inits[n.input[2]].astype(np.float64)
            axis = _attr(n, "axis", 1)
            r = codes.ndim
            w = (codes.astype(np.float64) - bshape(zp, r, axis)) * bshape(s, r, axis)
            rename[n.output[0]] = quant(const(f"{n.name}.w", w), s, zp, 8, True, r, axis, n.name)
            continue
        if n.op_type != "QuantizeLinear":
            out.append(n)
            continue
        s, zp = inits[n.input[1]], inits[n.input[2]]
        axis = _attr(n, "axis", 1)
        info = np.iinfo(zp.dtype)
        lo, hi, q = int(info.min), int(info.max), n.output[0]
        nxt = users.get(q, [])
        if len(nxt) == 1 and nxt[0].op_type == "Clip":
            c = nxt[0]
            lo, hi = int(inits[c.input[1]]), int(inits[c.input[2]])
            dropped.add(c.name)
            q, nxt = c.output[0], users.get(c.output[0], [])
        signed = lo < 0
        bits = int(round(np.log2(hi - lo + 1)))
        if (lo, hi) != ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)):
            raise OnnxExportError(f"{n.name}: range [{lo}, {hi}] is no {bits}-bit integer range")
        r = rank.get(n.input[0])
        y = quant(n.input[0], s, zp.astype(np.float64), bits, signed, r, axis, n.name)
        for d in nxt:
            if d.op_type != "DequantizeLinear" or not _same(inits[d.input[2]], zp):
                raise OnnxExportError(f"{n.name}: its codes feed {d.op_type} {d.name}, not a "
                                      "DequantizeLinear with the same zero point")
            dropped.add(d.name)
            s2 = inits[d.input[1]]
            if _same(s2, s):
                rename[d.output[0]] = y
            else:
                k = const(f"{d.name}.rescale", bshape(np.asarray(s2, np.float64) / s, r,
                                                       _attr(d, "axis", 1)))
                mul = helper.make_node("Mul", [y, k], [f"{d.name}.rescaled"], name=f"{d.name}.rescaled")
                out.append(mul)
                rename[d.output[0]] = mul.output[0]
    for n in out:
        for i, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[i] = name
    for o in g.output:
        if o.name in rename:
            raise OnnxExportError(f"graph output {o.name} is a quantizer's output")
    used = {i for n in out for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.node[:]
    g.node.extend(out)
    del g.initializer[:]
    g.initializer.extend(keep + [i for i in new_inits if i.name in used])
    g.ClearField("value_info")
    m.opset_import.append(helper.make_opsetid(QONNX_DOMAIN, 1))
    for e in m.metadata_props:
        if e.key == "source":
            e.value = e.value.replace("qdq form", "QONNX form (Quant nodes)")
    del TensorProto
    return m


def export_qonnx(model_or_prog, path=None, *, batch: int = 1):
    """Write the QONNX model of a :class:`quant.api.QuantizedModel` (or an IntProgram) to
    ``path`` (atomically; skipped when None); returns the ``onnx.ModelProto``."""
    prog = model_or_prog.intprogram() if hasattr(model_or_prog, "intprogram") else model_or_prog
    model = to_qonnx(build_model(prog, form="qdq"), batch=batch)
    if path is not None:
        from sim.fileio import atomic_write
        atomic_write(Path(path), model.SerializeToString())
    return model
