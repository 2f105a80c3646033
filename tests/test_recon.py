"""Block reconstruction (quant.reconstruct): the fast default must actually lower the held-out
block error in the deployed arithmetic, and its shortcuts must not change what is deployed."""

import statistics

import numpy as np
import pytest
import torch

from quant.bn_calib import random_calibrated_model
from quant.data import SyntheticImages
from quant.export import export
from quant.fold import fold_bn
from quant.qmodel import QConfig, _key, lower
from quant.reconstruct import FAST, _restore_steps_if_unexportable, reconstruct

RES = 64


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    m, _ = random_calibrated_model(f"b0-r{RES}", seed=0, n_images=8)
    m.set_attention_mode("linear")
    ds = SyntheticImages(24, RES, seed=5)
    imgs = ds.images()
    return m, imgs


def _calibrated(m, imgs):
    g = lower(fold_bn(m), resolution=RES).prepare(QConfig())
    g.calibrate([imgs[:8], imgs[8:16]])
    return g


def _same_program(a, b):
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    for x, y in zip(a.nodes, b.nodes):
        assert x.params.keys() == y.params.keys(), x.name
        for k in x.params:
            assert np.array_equal(np.asarray(x.params[k]), np.asarray(y.params[k])), (x.name, k)
        ex, ey = x.epilogue, y.epilogue
        assert (ex is None) == (ey is None), x.name
        if ex is not None:
            assert np.array_equal(ex.mult.b, ey.mult.b) and np.array_equal(ex.mult.c, ey.mult.c)
            assert np.array_equal(np.asarray(ex.offset), np.asarray(ey.offset)), x.name


def test_partial_deploy_refresh_equals_full_export(small):
    """Hardening / reverting AdaRound with frozen steps re-exports only the block's weight nodes;
    the cached program must equal a fresh full export."""
    m, imgs = small
    g = _calibrated(m, imgs)
    g.set_mode("fake")
    prog = g.deploy_program()
    before = {n.name: np.array(n.params["weight"]) for n in prog.nodes if "weight" in n.params}
    name, s, e = g.blocks[2]                      # an MBConv (with a shifted PW2 input)
    g.use_adaround((s, e))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n in g.nodes[s:e]:
            if hasattr(n.wq, "alpha"):            # flip about a third of the decisions
                flip = torch.rand(n.wq.alpha.shape, generator=gen) < 0.3
                n.wq.alpha[flip] = -n.wq.alpha[flip]
    g.harden_adaround((s, e), scales_unchanged=True)
    assert g.deploy_program() is prog             # refreshed in place, not re-exported
    _same_program(prog, export(g, check=False))
    after = {n.name: np.asarray(n.params["weight"]) for n in prog.nodes if "weight" in n.params}
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    assert moved and moved <= {n.name for n in g.nodes[s:e]}


def test_fast_default_lowers_heldout_block_mse(small):
    """The fast default, on a fixed seed, lowers the held-out block MSE (deploy-exact arithmetic)
    on most blocks: a real behavioural check (the previous default, 20 Adam steps at lr 1e-3 with
    the regulariser at 0.01, changed it by < 0.5 % and fails it)."""
    m, imgs = small
    g = _calibrated(m, imgs)
    g.blocks = g.blocks[:6]
    rep = reconstruct(g, imgs[:16], FAST, progress=False, seed=0)
    assert rep["held_out_images"] == 4          # 16 images, 25 % held out
    ratios = [b["mse_after"] / b["mse_before"] for b in rep["blocks"]]
    # measured: median 0.985, best 0.925, 6 of 6 kept (the old default: median 0.999, best 0.996)
    assert statistics.median(ratios) < 0.99, ratios
    assert min(ratios) < 0.95, ratios
    assert rep["kept"] >= 4
    for b in rep["blocks"]:
        assert b["kept"] == (b["mse_after"] <= b["mse_before"])


def test_unexportable_steps_are_restored(small):
    """A learned step that pushes a requant ratio beyond the 16-bit dyadic multiplier makes
    export fail (sim.numerics.to_dyadic); reconstruction then restores the block's steps from
    before, with a warning, instead of failing."""
    m, imgs = small
    g = _calibrated(m, imgs)
    g.set_mode("fake")
    name, s, e = g.blocks[2]                      # an MBConv: output = PW2 + residual
    keys = [_key(n.output) for n in g.nodes[s:e] if _key(n.output) in g.act_q]
    saved = {k: g.act_q[k].scale.detach().clone() for k in keys}
    assert not _restore_steps_if_unexportable(g, saved, name)       # exportable: untouched
    out = _key(g.nodes[e - 1].output)
    with torch.no_grad():
        g.act_q[out].scale.mul_(1e-9)             # res_mult = s_res / s_out ~ 1e9 > 2**16
    with pytest.raises(ValueError, match="16-bit"):
        export(g, check=False)
    with pytest.warns(RuntimeWarning, match="unexportable"):
        assert _restore_steps_if_unexportable(g, saved, name)
    assert all(torch.equal(g.act_q[k].scale.detach(), v) for k, v in saved.items())
    export(g)                                     # and the restored model validates
