"""Export to IntProgram, integer-exact mode vs sim.golden, agreement with the fake-quant model."""

import copy
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
    imgs = ds.images()
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


def _golden_logits(prog, xi):
    return np.stack([golden.run(prog, x)[prog.outputs[0]] for x in xi])


def _check_deploy_exact(g, imgs):
    """Deploy-exact fake quant vs sim.golden: every logit equal (tolerance 0 LSB), same top-1."""
    prog = export(g)
    xi = quantize_images(prog, imgs)
    gl = _golden_logits(prog, xi)
    lsb = prog.tensors[prog.outputs[0]].channel_scale()
    with torch.no_grad():
        fake = g.set_mode("fake")(imgs).numpy()
    assert g.exact_active()
    assert np.abs(fake / lsb - gl).max() < 1e-6
    np.testing.assert_array_equal(np.round(fake / lsb).astype(np.int64), gl)
    assert (fake.argmax(1) == (gl * lsb).argmax(1)).all()
    return prog


def test_deploy_exact_fake_quant_equals_golden(small):
    g, imgs = small
    _check_deploy_exact(g, imgs[:6])
    # every intermediate tensor too: fake-quant values are scale * (golden integers + offset)
    prog = export(g)
    xi = quantize_images(prog, imgs[:2])
    env = {"input": g.set_mode("fake").quant_input(imgs[:2])}
    with torch.no_grad():
        g.run_nodes(env)
    for i in range(2):
        gold = golden.run(prog, xi[i], keep=True)
        for name in prog.tensors:
            np.testing.assert_array_equal(g.to_int(name, env[name][i:i + 1])[0], gold[name],
                                          err_msg=name)


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/imagenet-sample")
def test_deploy_exact_fake_quant_equals_golden_real_images_after_adaround():
    """Real images, and AdaRound weights (soft, then hardened): still equal to sim.golden."""
    g, _ = _graph(n=8)
    imgs = calibration_images(DATA, 4, RES)
    g.use_adaround((0, 6))
    prog = _check_deploy_exact(g, imgs)         # soft AdaRound: its hard decisions are deployed
    from quant.quantizers import AdaRoundWeightQuantizer
    n0 = g.nodes[0]
    assert isinstance(n0.wq, AdaRoundWeightQuantizer)
    np.testing.assert_array_equal(prog.nodes[0].params["weight"],
                                  n0.wq.hard_int_weight().numpy().astype(np.int8))
    with torch.no_grad():
        n0.wq.alpha.neg_()                      # flip every decision
    g.invalidate_deploy()
    g.harden_adaround()
    _check_deploy_exact(g, imgs)


def test_deploy_exact_mode_is_differentiable(small):
    """Straight-through: values from the integer model, gradients from the float-scale path."""
    g, imgs = small
    g2 = copy.deepcopy(g)
    g2.use_adaround((0, 3))
    g2.set_mode("fake")
    out = g2(imgs[:2])
    assert out.requires_grad
    (out ** 2).sum().backward()
    alpha = g2.nodes[0].wq.alpha
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    steps = [q.scale.grad for k, q in g2.act_q.items() if k != "input"]
    assert all(s is not None for s in steps) and sum(float(s.abs()) for s in steps) > 0
    # same gradient as the float-scale fake quant evaluated at the same (exact) block input
    x = g2.quant_input(imgs[:2])
    g2.zero_grad()
    env = {"input": x}
    g2.run_nodes(env, 0, 1)
    (env[g2.nodes[0].output] ** 2).sum().backward()
    ga = alpha.grad.clone()
    g2.zero_grad()
    g2.exact = False
    env = {"input": x.float()}
    g2.run_nodes(env, 0, 1)
    yf = env[g2.nodes[0].output]
    g2.exact = True
    env_e = {"input": x}
    g2.run_nodes(env_e, 0, 1)
    ye = env_e[g2.nodes[0].output].detach().float()
    (2 * ye * yf).sum().backward()      # d/dy (y^2) at the exact value, through the STE path
    torch.testing.assert_close(alpha.grad, ga, rtol=1e-4, atol=1e-8)


def test_float_scale_fake_quant_tracks_integer_model_per_layer(small):
    """The float-scale fake quant (``exact = False``) and the integer graph agree closely on each
    early layer (they differ only by dyadic rounding, the 16-bit hswish intermediate and bias
    rounding)."""
    g, imgs = small
    prog = export(g)
    xi = quantize_images(prog, imgs[:4])
    env = run_int(prog, xi, keep=True)
    g.exact = False
    qenv = {"input": g.act_out("input", imgs[:4])}
    with torch.no_grad():
        g.set_mode("fake")
        g.run_nodes(qenv, 0, 4)
    g.exact = True
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
    imgs = ds.images()
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
