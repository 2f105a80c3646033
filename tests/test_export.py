"""Export to IntProgram, integer-exact mode vs sim.golden, agreement with the fake-quant model."""

from pathlib import Path

import numpy as np
import pytest
import torch

from quant.bn_calib import random_calibrated_model
from quant.data import SyntheticImages, calibration_images
from quant.export import ExportError, export, quantize_images, run_int
from quant.fold import fold_bn
from quant.qmodel import QConfig, lower, sqnr_db
from sim import golden
from sim.intprogram import IntProgram, IntProgramError

RES = 64
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def _graph(name=f"b0-r{RES}", res=RES, n=16, **cfg):
    m, _ = random_calibrated_model(name, seed=1, n_images=8)
    m.set_attention_mode("linear")
    ds = SyntheticImages(n, res, seed=5)
    imgs = torch.stack([ds.image(i) for i in range(n)])
    g = lower(fold_bn(m), resolution=res).prepare(QConfig(**cfg))
    g.calibrate([imgs[: n // 2], imgs[n // 2:]])
    g.set_mode("fake")
    return g, imgs


@pytest.fixture(scope="module")
def small():
    return _graph()


def test_export_validates_and_roundtrips(small, tmp_path):
    g, imgs = small
    prog = export(g)
    assert prog.validate() is prog
    kinds = {n.kind for n in prog.nodes}
    assert {"generic", "depthwise", "pointwise", "grouped_pointwise", "attention", "pool",
            "matmul", "layernorm", "concat"} <= kinds
    # migrated DW inputs carry per-channel scales, shifted PW2 inputs their offsets
    t = prog.tensors["backbone.stages.0.op_list.0.main.inverted_conv"]
    assert t.scale.shape == (t.shape[0],)
    assert "backbone.stages.0.op_list.0.main.depth_conv" in prog.meta["input_offsets"]
    p = prog.save(tmp_path / "m.npz")
    back = IntProgram.load(p)
    x = quantize_images(back, imgs[:1])[0]
    np.testing.assert_array_equal(golden.run(back, x)[back.outputs[0]],
                                  golden.run(prog, x)[prog.outputs[0]])


def test_quantize_images_matches_golden(small):
    g, imgs = small
    prog = export(g)
    xi = quantize_images(prog, imgs[:3])
    for i in range(3):
        np.testing.assert_array_equal(xi[i], golden.quantize_input(imgs[i].numpy(), prog.tensors["input"]))


def test_integer_exact_mode_equals_golden_bit_for_bit(small):
    g, imgs = small
    prog = export(g)
    xi = quantize_images(prog, imgs[:6])
    env = run_int(prog, xi, keep=True)
    for i in range(6):
        gold = golden.run(prog, xi[i], keep=True)
        for name in prog.tensors:
            np.testing.assert_array_equal(env[name][i], gold[name], err_msg=name)


def test_fake_quant_tracks_integer_model_per_layer(small):
    """The float fake-quant model and the integer graph agree closely on each early layer
    (they differ only by dyadic rounding, the 16-bit hswish intermediate and bias rounding)."""
    g, imgs = small
    prog = export(g)
    xi = quantize_images(prog, imgs[:4])
    env = run_int(prog, xi, keep=True)
    qenv = {"input": g.act_out("input", imgs[:4])}
    with torch.no_grad():
        g.set_mode("fake")
        g.run_nodes(qenv, 0, 4)
    offs = prog.meta["input_offsets"]
    for n in prog.nodes[:4]:
        t = prog.tensors[n.output]
        s = t.channel_scale().reshape(1, -1, 1, 1)
        o = np.asarray(offs.get(n.output, 0)).reshape(1, -1, 1, 1) if n.output in offs else 0
        real = torch.from_numpy((env[n.output] + o) * s)
        assert sqnr_db(qenv[n.output], real) > 30, n.name
    # the codes agree to within 1 LSB almost everywhere on the first layer
    first = prog.nodes[0].output
    s0 = prog.tensors[first].channel_scale().reshape(1, -1, 1, 1)
    d = np.abs(np.round(qenv[first].double().numpy() / s0) - env[first])
    assert (d <= 1).mean() > 0.999


def test_export_refuses_what_integers_cannot_do(small):
    g, imgs = _graph(attention="uniform", n=8)
    with pytest.raises(ExportError, match="log2"):
        export(g)
    g2, _ = _graph(act_quant=False, n=8)
    with pytest.raises(ExportError, match="quantized activations"):
        export(g2)


def test_broken_program_is_rejected(small, tmp_path):
    g, _ = small
    prog = export(g)
    prog.nodes[3].params["weight"] = prog.nodes[3].params["weight"][:, :1]
    with pytest.raises(IntProgramError):
        prog.validate()


def _agreement(name, res, images):
    g, _ = _graph(name, res, n=16)
    prog = export(g)
    xi = quantize_images(prog, images)
    li = run_int(prog, xi)
    gl = np.stack([golden.run(prog, x)[prog.outputs[0]] for x in xi])
    return li, gl


def test_golden_agreement_synthetic_images():
    ds = SyntheticImages(6, RES, seed=9)
    imgs = torch.stack([ds.image(i) for i in range(6)])
    li, gl = _agreement(f"b0-r{RES}", RES, imgs)
    np.testing.assert_array_equal(li, gl)
    assert (li.argmax(1) == gl.argmax(1)).all()


@pytest.mark.regress
@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/imagenet-sample")
def test_golden_agreement_all_imagenet_sample_b1_r224():
    imgs = calibration_images(DATA, 125, 224)
    li, gl = _agreement("b1-r224", 224, imgs)
    assert (li.argmax(1) == gl.argmax(1)).all()
    np.testing.assert_array_equal(li, gl)
