"""``python -m quant.qdq_precision``: where the QDQ ONNX form's disagreement with the fake-quant
(integer) model comes from. The QDQ model of a quantized network is run by onnxruntime and by
onnx's numpy reference evaluator (``onnx.reference``) in four arithmetics:

* ``ort-f32``: onnxruntime, the model as exported (float32 scales and arithmetic);
* ``ref-f32``: the reference evaluator, the same model;
* ``ref-f64-f32scales``: every float constant and the arithmetic in float64, the scales still the
  float32-rounded ones (QuantizeLinear's scale type is float32 in opset 21);
* ``ref-f64``: the scales rebuilt in float64 from the IntProgram, float64 arithmetic;
* ``ref-f64-halfup``: as ``ref-f64`` with QuantizeLinear rounding half up (``floor(x + 1/2)``,
  ``sim.numerics``'s rule) instead of ONNX's half to even.

The float64 models are not valid ONNX (double scales); they exist only for this measurement.

::

    python -m quant.qdq_precision --model b0-r64 --images 32 --json
"""

from __future__ import annotations

import contextlib
import sys
import time

import numpy as np

__all__ = ["measure", "main"]


@contextlib.contextmanager
def _float64_constants(enabled: bool):
    """While active, :mod:`quant.onnx_export` writes its float constants as float64 and skips
    onnx.checker (which rejects double scales)."""
    import onnx

    from . import onnx_export as ox
    if not enabled:
        yield
        return
    f32, check = ox._Builder.f32, onnx.checker.check_model
    ox._Builder.f32 = lambda self, base, arr: self.const(base, np.asarray(arr, np.float64))
    onnx.checker.check_model = lambda *a, **k: None
    try:
        yield
    finally:
        ox._Builder.f32, onnx.checker.check_model = f32, check


@contextlib.contextmanager
def _quantize_half_up(enabled: bool):
    """While active, onnx's reference QuantizeLinear rounds half up instead of half to even."""
    import onnx.reference.ops.op_quantize_linear as q

    class _Np:
        def __getattr__(self, k):
            return getattr(np, k)

        @staticmethod
        def rint(x):
            return np.floor(x + 0.5)

    old = q.np
    if enabled:
        q.np = _Np()
    try:
        yield
    finally:
        q.np = old


def _to_double(m, *, constants: bool):
    from onnx import TensorProto, numpy_helper
    if constants:
        for i, init in enumerate(m.graph.initializer):
            if init.data_type == TensorProto.FLOAT:
                a = numpy_helper.to_array(init).astype(np.float64)
                m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, init.name))
    for node in m.graph.node:
        for at in node.attribute:
            if node.op_type == "Cast" and at.name == "to" and at.i == TensorProto.FLOAT:
                at.i = TensorProto.DOUBLE
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.elem_type = TensorProto.DOUBLE
    return m


def measure(name: str, images: int, *, data, calib: int = 16) -> dict:
    import onnxruntime as ort
    import torch
    from onnx.reference import ReferenceEvaluator

    import quant
    from quant.data import make_loader
    from quant.onnx_export import build_model
    t0 = time.time()
    model = quant.float_model(name)
    res = int(model.trio_vit_name.split("-r")[1])
    qm = quant.quantize(model, make_loader(data, res, batch_size=16, limit=calib),
                        quant.QuantConfig(reconstruction="off", calib_images=calib))
    batches = [x for x, _ in make_loader(data, res, batch_size=8, limit=images)]
    with torch.no_grad():
        fake = np.concatenate([qm(x).double().numpy() for x in batches])
    prog = qm.intprogram()
    r = dict(model=qm.model_name, calibration_images=calib, images=len(fake), forms={})

    from .onnx_check import agreement

    def score(label, got):
        r["forms"][label] = agreement(fake, got)

    m32 = build_model(prog, form="qdq")
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    s = ort.InferenceSession(m32.SerializeToString(), o, providers=["CPUExecutionProvider"])
    score("ort-f32", np.concatenate([s.run(["logits"], {"images": x.numpy()})[0] for x in batches]))
    ev = ReferenceEvaluator(m32)
    score("ref-f32", np.concatenate([ev.run(["logits"], {"images": x.numpy()})[0] for x in batches]))
    m = _to_double(build_model(prog, form="qdq"), constants=True)
    ev = ReferenceEvaluator(m)
    score("ref-f64-f32scales", np.concatenate(
        [ev.run(["logits"], {"images": x.double().numpy()})[0] for x in batches]))
    with _float64_constants(True):
        m64 = _to_double(build_model(prog, form="qdq"), constants=False)
    for label, half_up in (("ref-f64", False), ("ref-f64-halfup", True)):
        with _quantize_half_up(half_up):
            ev = ReferenceEvaluator(m64)
            score(label, np.concatenate(
                [ev.run(["logits"], {"images": x.double().numpy()})[0] for x in batches]))
    r["seconds"] = round(time.time() - t0, 1)
    return r


def main(argv=None) -> int:
    from .onnx_check import check_error, check_parser, run_measure
    ap = check_parser("python -m quant.qdq_precision", __doc__, model="b0-r64", images=32)
    a = ap.parse_args(argv)
    err = check_error(a)
    if err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    r = run_measure(a, measure, a.model, a.images, data=a.data, calib=a.calib_size)
    if not isinstance(r, dict):
        return r
    print(f"{r['model']}: QDQ form vs fake quant on {r['images']} images")
    for k, f in r["forms"].items():
        print(f"  {k:18s} top-1 agreement {100 * f['top1_agreement']:5.1f} %, logit SQNR "
              f"{f['sqnr_db']:6.1f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
