"""ONNX export (quant.onnx_export): checked by onnx.checker, run by onnxruntime, compared with
sim.golden (an IntProgram built independently by sim.zoo) and with the project's fake-quant
model on the sample images."""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from quant import onnx_export as ox  # noqa: E402
from sim import golden, numerics as nx, zoo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imagenet-sample"


def _session(model):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])


def _images_for(prog, x_int):
    """Float images whose input quantization gives exactly ``x_int``."""
    s = prog.tensors[prog.inputs[0]].channel_scale().reshape(1, -1, 1, 1)
    return (x_int * s).astype(np.float32)


def test_log2_round_nodes_equal_numerics():
    """The Log/Floor/Pow leading-one + round-bit subgraph equals sim.numerics.log2_round on every
    integer up to 2**16 and around every power of two up to 2**24 (float32 and float64)."""
    from onnx import TensorProto, helper
    xs = np.arange(1, 1 << 16)
    p = 2 ** np.arange(16, 25)
    xs = np.unique(np.concatenate([xs, p - 1, p, p + 1, 3 * p // 2 - 1, 3 * p // 2,
                                   3 * p // 2 + 1])).astype(np.int64)
    xs = xs[xs < (1 << 24)]
    for dt, tp in ((np.float32, TensorProto.FLOAT), (np.float64, TensorProto.DOUBLE)):
        b = ox._Builder()
        out = ox.log2_round_nodes(b, "d", "t", lambda n, v: b.const(n, np.asarray(v, dt)), tp)
        g = helper.make_graph(b.nodes, "l2", [helper.make_tensor_value_info("d", tp, [None])],
                              [helper.make_tensor_value_info(out, tp, [None])],
                              initializer=b.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", ox.OPSET)])
        m.ir_version = 10
        onnx.checker.check_model(m, full_check=True)
        got = _session(m).run(None, {"d": xs.astype(dt)})[0].astype(np.int64)
        assert np.array_equal(got, nx.log2_round(xs)), dt
    assert nx.log2_round(np.array([0b01100011]))[0] == 7       # the paper's example


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_form_equals_golden_on_zoo_tiny(seed):
    """The exact form of an IntProgram made by sim.zoo (every op kind and block type) gives
    sim.golden's logits bit for bit; the QDQ form of it passes onnx.checker and runs."""
    prog = zoo.tiny(seed=seed)
    rng = np.random.default_rng(seed)
    info = prog.tensors[prog.inputs[0]]
    x_int = rng.integers(-128, 128, size=(6, *info.shape))
    want = np.stack([golden.run(prog, x)[prog.outputs[0]] for x in x_int])
    s_out = prog.tensors[prog.outputs[0]].channel_scale()
    for form in ("exact", "qdq"):
        m = ox.build_model(prog, form=form)
        got = _session(m).run(["logits"], {"images": _images_for(prog, x_int)})[0]
        if form == "exact":
            assert np.array_equal(np.round(got.astype(np.float64) / s_out).astype(np.int64), want)
        else:
            assert got.shape == want.shape and np.isfinite(got).all()
    ops = {n.op_type for n in ox.build_model(prog, form="qdq").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "MatMul", "Log", "Floor", "Pow",
            "HardSwish", "LayerNormalization", "Gemm"} <= ops


def test_bad_form_and_unknown_op():
    prog = zoo.tiny()
    with pytest.raises(ox.OnnxExportError, match="form must be one of"):
        ox.build_model(prog, form="qonnx")
    prog.nodes[0].op = "mystery"
    with pytest.raises(ox.OnnxExportError, match="no ONNX mapping for op 'mystery'"):
        ox.build_model(prog)


def _check(capsys, *args):
    """``python -m quant.onnx_check ... --json`` (the command docs/quant.md prints)."""
    import json

    from quant.onnx_check import main
    capsys.readouterr()
    assert main([*args, "--data", str(DATA), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/imagenet-sample")
def test_onnxruntime_agrees_with_fake_quant_b0(capsys):
    """B0 at 64x64 (the default suite), 32 sample images. The exact form: >= 98 % top-1
    agreement is the issue's bar, and it is in fact the same logits (the SQNR is float32's
    rounding of the logits). The QDQ form rounds in float32 with ties to even: measured 29/32
    here at commit 556b572 (31/32 before 7bab64d; docs/quant.md), so a loose floor. Sizes: the v3
    .qmodel about the IntProgram's."""
    r = _check(capsys, "--model", "b0-r64", "--images", "32")
    assert r["images"] == 32 and r["weights"] == "random"
    assert r["exact"]["top1_agreement"] == 1.0 and r["exact"]["sqnr_db"] > 100
    assert r["qdq"]["top1_agreement"] >= 0.9 and r["qdq"]["sqnr_db"] > 10
    b = r["bytes"]
    assert b["qmodel_v3"] < 1.2 * b["intprogram"] and b["qmodel_v3"] < b["qmodel_v2_same_graph"] / 2


def test_onnx_check_errors_are_one_line(capsys, tmp_path):
    from quant.onnx_check import main
    assert main(["--model", "b9", "--data", str(tmp_path)]) == 2
    assert main(["--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "b9" in err[0] and "no such file" in err[1]


@pytest.mark.regress
@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/imagenet-sample")
def test_onnxruntime_agrees_with_fake_quant_b1_all_sample_images(capsys):
    """The documented command, B1-R224 on all 125 sample images (~30 min on the loaded
    2-core machine)."""
    r = _check(capsys, "--model", "b1-r224", "--images", "125")
    assert r["images"] == 125
    assert r["exact"]["top1_agreement"] >= 0.98 and r["exact"]["sqnr_db"] > 100
    assert r["qdq"]["top1_agreement"] >= 0.5
    b = r["bytes"]
    assert b["qmodel_v3"] < 1.2 * b["intprogram"]
