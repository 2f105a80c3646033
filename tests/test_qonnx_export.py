"""QONNX export (quant.qonnx_export), run by the qonnx package's own executor."""

import numpy as np
import onnxruntime as ort
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

from quant import onnx_export as ox
from quant.qonnx_export import QONNX_DOMAIN, to_qonnx
from sim import golden, zoo


def test_qonnx_runs_in_qonnx_and_equals_qdq():
    """sim.zoo's tiny IntProgram (every op kind; made without quant): its QONNX form has no
    QuantizeLinear left, one Quant per QDQ quantizer and int8 weight, and qonnx's executor
    (numpy Quant, onnxruntime per standard node) gives the QDQ form's logits under onnxruntime
    up to float32 rounding, and golden's top-1."""
    prog = zoo.tiny(seed=0)
    qdq = ox.build_model(prog, form="qdq")
    m = to_qonnx(qdq, batch=1)
    kinds = [(n.domain, n.op_type) for n in m.graph.node]
    assert ("", "QuantizeLinear") not in kinds
    n_q = sum(n.op_type == "QuantizeLinear" for n in qdq.graph.node)
    inits = {i.name: i for i in qdq.graph.initializer}
    n_w = sum(n.op_type == "DequantizeLinear" and n.input[0] in inits
              and inits[n.input[0]].data_type == 3 for n in qdq.graph.node)       # int8
    assert kinds.count((QONNX_DOMAIN, "Quant")) == n_q + n_w
    w = ModelWrapper(m).transform(InferShapes())
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    sess = ort.InferenceSession(qdq.SerializeToString(), o, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    info = prog.tensors[prog.inputs[0]]
    s_in = info.channel_scale().reshape(1, -1, 1, 1)
    s_out = prog.tensors[prog.outputs[0]].channel_scale()
    for _ in range(3):
        x_int = rng.integers(-128, 128, size=(1, *info.shape))
        x = (x_int * s_in).astype(np.float32)
        got = execute_onnx(w, {"images": x})["logits"].astype(np.float64)
        ref = sess.run(["logits"], {"images": x})[0].astype(np.float64)
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
        gold = golden.run(prog, x_int[0])[prog.outputs[0]] * s_out
        assert got.argmax() == gold.argmax()
