"""Issue #17: a Hardswish whose 16-bit intermediate scale is large.

The export puts a Hardswish conv's pre-activation on a 16-bit intermediate of scale ``s_mid =
max(1.25 max|pre|, 6) / 2**15``; its integer constant ``three`` is 3.0 in those units. Where
``max|pre|`` exceeds ~1.6e5 (``s_mid > 6``) the rounded ``3 / s_mid`` was 0 and the export failed
(``Requant.three`` must be >= 1; the ablation reported "no integer form"). Here one MBConv's
expanding conv is scaled up by ``F`` until that happens, and the exported node is checked
against the float Hardswish of its own quantized inputs and weights, written out in numpy.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from quant.bn_calib import random_calibrated_model
from quant.data import SyntheticImages
from quant.export import export
from quant.fold import fold_bn
from quant.qmodel import QConfig, lower
from sim import golden

RES = 64
NODE = "backbone.stages.0.op_list.0.main.inverted_conv"
SCALE_UP = 1e6


@pytest.fixture(scope="module")
def large_hswish():
    torch.manual_seed(0)
    m, _ = random_calibrated_model(f"b0-r{RES}", seed=1, n_images=8)
    m.set_attention_mode("linear")
    g = lower(fold_bn(m), resolution=RES)
    node = next(n for n in g.nodes if n.name == NODE)
    with torch.no_grad():
        node.weight.mul_(SCALE_UP)
        node.bias.mul_(SCALE_UP)
    ds = SyntheticImages(8, RES, seed=5)
    imgs = torch.stack([ds.image(i) for i in range(8)])
    g.prepare(QConfig()).calibrate([imgs[:4], imgs[4:]])
    return g, node, imgs


def test_large_hswish_scale_exports(large_hswish):
    g, node, _ = large_hswish
    s_mid = max(1.25 * float(node.pre_max), 6.0) / 2 ** 15
    assert 3.0 / s_mid < 0.5, "the case this test is about did not arise"
    prog = export(g)                            # failed before the fix: three = 0
    prog.validate()
    epi = next(n for n in prog.nodes if n.name == NODE).epilogue
    assert epi.three >= 1


def test_large_hswish_output_matches_float_hardswish(large_hswish):
    """The node's int8 output (golden) vs ``round(hardswish(conv(x, W) + b) / s_out) - o`` with
    ``x`` the node's dequantized input, ``W`` its quantized weights, ``b`` the float bias: within 1
    LSB everywhere (bias and dyadic rounding), and equal almost everywhere."""
    g, node, imgs = large_hswish
    prog = export(g)
    pn = next(n for n in prog.nodes if n.name == NODE)
    s_in = float(g.scale_vector(node.inputs[0])[0])
    s_out = g.scale_vector(node.output).numpy().reshape(1, -1, 1, 1)
    o_out = prog.meta["input_offsets"].get(node.output)
    o_out = 0 if o_out is None else np.asarray(o_out).reshape(1, -1, 1, 1)
    assert prog.meta["input_offsets"].get(node.inputs[0]) is None
    got, want = [], []
    for img in imgs[:2].numpy():
        env = golden.run(prog, golden.quantize_input(img, prog.tensors[prog.inputs[0]]), keep=True)
        x = torch.from_numpy(env[pn.inputs[0]][None].astype(np.float64) * s_in)
        w = node.qweight().detach().double()
        pre = F.conv2d(x, w, node.bias.double(), node.stride, node.padding, 1, node.groups).numpy()
        hs = pre * np.clip(pre + 3, 0, 6) / 6
        want.append(np.clip(np.floor(hs / s_out + 0.5) - o_out, -128, 127)[0])
        got.append(env[pn.output])
    got, want = np.stack(got), np.stack(want)
    assert np.abs(got - want).max() <= 1
    assert np.mean(got != want) < 0.01
    assert np.mean(got > 0) > 0.1               # not all zero (what three = 0 would give)
