"""The aligned float-scale fake quant (``QGraph.align``, issue #17): values in the deployed
integer arithmetic with the graph's current scales, gradients of the plain float-scale path."""

import copy

import numpy as np
import pytest
import torch

from quant.bn_calib import random_calibrated_model
from quant.data import SyntheticImages
from quant.export import ExportError, export, quantize_images, run_int
from quant.fold import fold_bn
from quant.qmodel import ALIGN_KINDS, QConfig, lower
from sim import golden

RES = 64


def _graph(**cfg):
    m, _ = random_calibrated_model(f"b0-r{RES}", seed=1, n_images=8)
    m.set_attention_mode("linear")
    ds = SyntheticImages(12, RES, seed=5)
    imgs = torch.stack([ds.image(i) for i in range(12)])
    g = lower(fold_bn(m), resolution=RES).prepare(QConfig(**cfg))
    g.calibrate([imgs[:4], imgs[4:8]])
    g.set_mode("fake")
    g.exact = False
    return g, imgs[8:11]


@pytest.fixture(scope="module")
def small():
    return _graph()


def _int_logits(g, x):
    prog = export(g)
    s = prog.tensors[prog.outputs[0]].channel_scale()
    return run_int(prog, quantize_images(prog, x)) * s, prog


def test_aligned_equals_integer_model(small):
    """Every node aligned: the logits are the integer model's (sim.golden's) bit for bit."""
    g, x = small
    g.align = frozenset(ALIGN_KINDS)
    try:
        with torch.no_grad():
            got = g(x).double().numpy()
    finally:
        g.align = frozenset()
    want, prog = _int_logits(g, x)
    np.testing.assert_array_equal(got, want)
    s = prog.tensors[prog.outputs[0]].channel_scale()
    g.align = frozenset({"layernorm"})  # without an aligned linear: the LayerNorm stays plain
    try:
        with torch.no_grad():
            ln_only = g(x)
    finally:
        g.align = frozenset()
    with torch.no_grad():
        torch.testing.assert_close(ln_only, g(x), rtol=0, atol=0)
    for i in range(2):                 # and sim.golden itself, independent of quant's executor
        gi = golden.run(prog, golden.quantize_input(x[i].numpy(), prog.tensors["input"]))
        np.testing.assert_array_equal(got[i], gi[prog.outputs[0]] * s)


def test_aligned_picks_up_changed_steps(small):
    """Nothing is cached: after an activation step changes (as LSQ does), the aligned forward
    equals a fresh export's integer model."""
    g, x = small
    g2 = copy.deepcopy(g)
    key = next(k for k in g2.act_q if "stages__1" in k)
    with torch.no_grad():
        g2.act_q[key].scale.mul_(1.37)
    g2.align = frozenset(ALIGN_KINDS)
    with torch.no_grad():
        got = g2(x).double().numpy()
    want, _ = _int_logits(g2, x)
    np.testing.assert_array_equal(got, want)
    g2.align = frozenset()
    old, _ = _int_logits(g, x)
    assert not np.array_equal(want, old)


def test_aligned_is_differentiable(small):
    """Soft AdaRound weights and LSQ steps get gradients; on one node they equal the plain
    float-scale node's at the same input (straight-through)."""
    g, x = small
    g2 = copy.deepcopy(g)
    g2.use_adaround((0, 3))
    g2.align = frozenset(ALIGN_KINDS)
    out = g2(x[:2])
    assert out.requires_grad
    (out ** 2).sum().backward()
    alpha = g2.nodes[0].wq.alpha
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    steps = [q.scale.grad for k, q in g2.act_q.items() if k != "input"]
    assert all(s is not None for s in steps) and sum(float(s.abs()) for s in steps) > 0
    xin = g2.quant_input(x[:2]).detach()
    g2.zero_grad()
    env = {"input": xin}
    g2.run_nodes(env, 0, 1)
    ya = env[g2.nodes[0].output]
    (ya ** 2).sum().backward()
    ga = alpha.grad.clone()
    g2.zero_grad()
    g2.align = frozenset()
    env = {"input": xin.float()}
    g2.run_nodes(env, 0, 1)
    (2 * ya.detach().float() * env[g2.nodes[0].output]).sum().backward()
    torch.testing.assert_close(alpha.grad, ga, rtol=1e-4, atol=1e-8)


def test_aligned_without_integer_form_keeps_float_attention():
    """A float divisor (an ablation row) has no IntProgram; the aligned forward still runs, the
    convolutions before the first attention in the integer arithmetic (== the log2 model's,
    whose tensors there are calibrated identically), the attention in float."""
    g, x = _graph(attention="float")
    with pytest.raises(ExportError):
        export(g)
    gl, _ = _graph()
    first_attn = next(i for i, n in enumerate(g.nodes) if n.op == "linear_attention")
    for gg in (g, gl):
        gg.align = frozenset(ALIGN_KINDS)
    with torch.no_grad():
        env, envl = {"input": g.quant_input(x)}, {"input": gl.quant_input(x)}
        g.run_nodes(env, 0, first_attn)
        gl.run_nodes(envl, 0, first_attn)
        out = g(x)
    name = g.nodes[first_attn - 1].output
    torch.testing.assert_close(env[name], envl[name], rtol=0, atol=0)
    assert torch.isfinite(out).all()
