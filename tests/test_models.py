"""EfficientViT model definitions: official key names, parameter counts, shapes, attention math."""

import numpy as np
import pytest
import torch

from quant.models import (
    MODEL_CONFIGS,
    ConvLayer,
    LiteMLA,
    create_model,
    efficientvit_cls_b0,
    efficientvit_cls_b1,
    efficientvit_cls_b2,
    efficientvit_cls_b3,
    parse_model_name,
)

# Key names read from the official release, mit-han-lab/efficientvit:
#   backbone.py  EfficientViTBackbone: self.input_stem = OpSequential([ConvLayer, ResidualBlock(
#                DSConv, IdentityLayer) x depth[0]]); self.stages = nn.ModuleList of OpSequential;
#                stages 3/4 start with ResidualBlock(MBConv fewer_norm, None) then
#                EfficientViTBlock x depth.
#   ops.py       ConvLayer.{conv,norm,act}; DSConv.{depth_conv,point_conv};
#                MBConv.{inverted_conv,depth_conv,point_conv}; ResidualBlock.{main,shortcut};
#                EfficientViTBlock.{context_module,local_module}; LiteMLA.{qkv,aggreg,proj} with
#                aggreg = ModuleList([Sequential(Conv2d dw, Conv2d grouped 1x1)]);
#                OpSequential.op_list; LinearLayer.{linear,norm}.
#   cls.py       ClsHead(OpSequential): [ConvLayer, AdaptiveAvgPool2d, LinearLayer(norm="ln"),
#                LinearLayer(bias)] -> head.op_list.0/2/3.
# Indices below are for B1 (depth [1, 2, 3, 3, 4]).
OFFICIAL_B1_KEYS = [
    "backbone.input_stem.op_list.0.conv.weight",
    "backbone.input_stem.op_list.0.norm.running_var",
    "backbone.input_stem.op_list.1.main.depth_conv.conv.weight",
    "backbone.input_stem.op_list.1.main.point_conv.norm.weight",
    "backbone.stages.0.op_list.0.main.inverted_conv.conv.weight",
    "backbone.stages.0.op_list.1.main.depth_conv.norm.bias",
    "backbone.stages.1.op_list.2.main.point_conv.norm.running_mean",
    "backbone.stages.2.op_list.0.main.inverted_conv.conv.bias",
    "backbone.stages.2.op_list.0.main.depth_conv.conv.bias",
    "backbone.stages.2.op_list.0.main.point_conv.norm.weight",
    "backbone.stages.2.op_list.3.context_module.main.qkv.conv.weight",
    "backbone.stages.3.op_list.1.context_module.main.qkv.conv.weight",
    "backbone.stages.3.op_list.1.context_module.main.aggreg.0.0.weight",
    "backbone.stages.3.op_list.1.context_module.main.aggreg.0.1.weight",
    "backbone.stages.3.op_list.1.context_module.main.proj.norm.weight",
    "backbone.stages.3.op_list.4.local_module.main.inverted_conv.conv.bias",
    "backbone.stages.3.op_list.4.local_module.main.point_conv.norm.num_batches_tracked",
    "head.op_list.0.conv.weight",
    "head.op_list.0.norm.running_mean",
    "head.op_list.2.linear.weight",
    "head.op_list.2.norm.weight",
    "head.op_list.2.norm.bias",
    "head.op_list.3.linear.weight",
    "head.op_list.3.linear.bias",
]
# Keys that must NOT exist (fewer-norm convs have no norm, qkv has no bias, head.op_list.2 has
# no bias, the pooling has no parameters, stages 3/4 first block has no shortcut parameters).
ABSENT_B1_KEYS = [
    "backbone.stages.2.op_list.0.main.inverted_conv.norm.weight",
    "backbone.stages.3.op_list.1.local_module.main.depth_conv.norm.weight",
    "backbone.stages.3.op_list.1.context_module.main.qkv.conv.bias",
    "backbone.stages.3.op_list.1.context_module.main.qkv.norm.weight",
    "backbone.stages.3.op_list.1.context_module.main.aggreg.0.0.bias",
    "backbone.stages.3.op_list.5.context_module.main.qkv.conv.weight",
    "backbone.stages.4.op_list.0.main.inverted_conv.conv.weight",
    "head.op_list.2.linear.bias",
    "head.op_list.1.weight",
]


@pytest.fixture(scope="module")
def b1():
    return efficientvit_cls_b1()


def test_official_key_names_b1(b1):
    keys = set(b1.state_dict().keys())
    missing = [k for k in OFFICIAL_B1_KEYS if k not in keys]
    assert not missing, missing
    present = [k for k in ABSENT_B1_KEYS if k in keys]
    assert not present, present


def test_official_shapes_b1(b1):
    sd = b1.state_dict()
    # width 256, dim 16 -> 16 heads, total_dim 256; qkv 3*256 channels; aggreg grouped per
    # (q|k|v, head) -> 48 groups of 16 channels; proj from 2*256 (1 + one scale) channels.
    p = "backbone.stages.3.op_list.1.context_module.main."
    assert tuple(sd[p + "qkv.conv.weight"].shape) == (768, 256, 1, 1)
    assert tuple(sd[p + "aggreg.0.0.weight"].shape) == (768, 1, 5, 5)
    assert tuple(sd[p + "aggreg.0.1.weight"].shape) == (768, 16, 1, 1)
    assert tuple(sd[p + "proj.conv.weight"].shape) == (256, 512, 1, 1)
    assert tuple(sd["backbone.input_stem.op_list.0.conv.weight"].shape) == (16, 3, 3, 3)
    assert tuple(sd["backbone.stages.0.op_list.0.main.inverted_conv.conv.weight"].shape) == (
        64, 16, 1, 1)
    assert tuple(sd["backbone.stages.0.op_list.0.main.depth_conv.conv.weight"].shape) == (
        64, 1, 3, 3)
    assert tuple(sd["head.op_list.0.conv.weight"].shape) == (1536, 256, 1, 1)
    assert tuple(sd["head.op_list.2.linear.weight"].shape) == (1600, 1536)
    assert tuple(sd["head.op_list.3.linear.weight"].shape) == (1000, 1600)


def _expected_params(width, depth, dim, head, ncls=1000):
    """Closed-form parameter count of the official architecture (independent of the code)."""
    bn = lambda c: 2 * c  # noqa: E731  (gamma, beta)

    def mb(cin, cout, fewer):
        mid = 4 * cin
        n = cin * mid + 9 * mid + mid * cout + bn(cout)
        return n + (2 * mid if fewer else 2 * bn(mid))  # conv biases vs two BNs

    n = 3 * 9 * width[0] + bn(width[0])
    n += depth[0] * (9 * width[0] + bn(width[0]) + width[0] ** 2 + bn(width[0]))
    cin = width[0]
    for w, d in zip(width[1:3], depth[1:3]):
        for _ in range(d):
            n += mb(cin, w, False)
            cin = w
    for w, d in zip(width[3:], depth[3:]):
        n += mb(cin, w, True)
        cin = w
        for _ in range(d):
            td = (w // dim) * dim
            n += w * 3 * td + 25 * 3 * td + 3 * td * dim + 2 * td * w + bn(w)  # LiteMLA
            n += mb(w, w, True)
    n += cin * head[0] + bn(head[0]) + head[0] * head[1] + 2 * head[1] + head[1] * ncls + ncls
    return n


@pytest.mark.parametrize("variant,factory,official_m", [
    ("b0", efficientvit_cls_b0, 3.4), ("b1", efficientvit_cls_b1, 9.1),
    ("b2", efficientvit_cls_b2, 24.0), ("b3", efficientvit_cls_b3, 49.0)])
def test_parameter_counts(variant, factory, official_m):
    model = factory()
    n = sum(p.numel() for p in model.parameters())
    cfg = MODEL_CONFIGS[variant]
    assert n == _expected_params(cfg["width"], cfg["depth"], cfg["dim"], cfg["head"])
    # official figures (EfficientViT paper / model zoo) are rounded: within 2 %
    assert abs(n / 1e6 - official_m) / official_m < 0.02, n


@pytest.mark.parametrize("variant", ["b0", "b2", "b3"])
def test_key_structure_other_variants(variant):
    model, _ = create_model(variant)
    keys = set(model.state_dict())
    depth = MODEL_CONFIGS[variant]["depth"]
    last = depth[4]  # op_list.0 is the downsampling MBConv, then depth[4] EfficientViTBlocks
    assert f"backbone.stages.3.op_list.{last}.context_module.main.qkv.conv.weight" in keys
    assert f"backbone.stages.3.op_list.{last + 1}.context_module.main.qkv.conv.weight" not in keys
    assert f"backbone.stages.1.op_list.{depth[2] - 1}.main.point_conv.norm.weight" in keys
    assert f"backbone.stages.1.op_list.{depth[2]}.main.point_conv.norm.weight" not in keys
    assert "head.op_list.3.linear.bias" in keys


@pytest.mark.parametrize("name,expected", [
    ("b1-r224", ("b1", 224)), ("B2-R288", ("b2", 288)), ("efficientvit-b3-r256", ("b3", 256)),
    ("b0", ("b0", 224)), ("b1_r64", ("b1", 64))])
def test_parse_model_name(name, expected):
    assert parse_model_name(name) == expected


@pytest.mark.parametrize("name", ["b4", "l1-r224", "b1-r16", "b1-224", "", "resnet50"])
def test_parse_model_name_rejects(name):
    with pytest.raises(ValueError, match="model name|too small"):
        parse_model_name(name)


def test_create_model_forward_any_resolution():
    torch.manual_seed(0)
    model, res = create_model("b0-r64", num_classes=10)
    assert res == 64 and model.resolution == 64 and model.variant == "b0"
    model.eval()
    with torch.no_grad():
        for r in (64, 96, 80):
            y = model(torch.randn(2, 3, r, r))
            assert y.shape == (2, 10) and torch.isfinite(y).all()
        feats = model.backbone(torch.randn(1, 3, 96, 96))
    assert feats["stage_final"].shape == (1, 128, 3, 3)
    assert feats["stage1"].shape == (1, 16, 24, 24)


def test_every_conv_is_convlayer_except_aggreg(b1):
    """Quantization hooks: every nn.Conv2d is a ConvLayer.conv, except LiteMLA.aggreg."""
    convs = {n for n, m in b1.named_modules() if isinstance(m, torch.nn.Conv2d)}
    in_layers = {n + ".conv" for n, m in b1.named_modules() if isinstance(m, ConvLayer)}
    rest = convs - in_layers
    assert rest and all(".aggreg." in n for n in rest)
    n_mla = sum(isinstance(m, LiteMLA) for m in b1.modules())
    assert n_mla == 3 + 4 and len(rest) == 2 * n_mla


def _naive_eq4(qkv: np.ndarray, dim: int, eps: float) -> np.ndarray:
    """Paper Eq. 4 per head and per output token, with explicit loops (float64)."""
    c, h, w = qkv.shape
    groups = c // (3 * dim)
    x = qkv.reshape(groups, 3 * dim, h * w)
    out = np.zeros((groups, dim, h * w))
    for g in range(groups):
        q = np.maximum(x[g, :dim], 0)
        k = np.maximum(x[g, dim:2 * dim], 0)
        v = x[g, 2 * dim:]
        for n in range(h * w):
            num = np.zeros(dim)
            den = 0.0
            for m in range(h * w):
                s = float(np.dot(k[:, m], q[:, n]))
                num += v[:, m] * s
                den += s
            out[g, :, n] = num / (den + eps)
    return out.reshape(groups * dim, h, w)


def test_linear_attention_matches_naive_eq4():
    torch.manual_seed(1)
    mla = LiteMLA(32, 32, dim=8).double().eval()
    x = torch.randn(2, 32, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        qkv = mla.multi_scale_qkv(x)
        assert qkv.shape == (2, 2 * 3 * 32, 5, 4)
        out = mla.relu_linear_att(qkv)
    assert out.shape == (2, 64, 5, 4)
    for b in range(2):
        ref = _naive_eq4(qkv[b].numpy(), 8, 1e-15)
        np.testing.assert_allclose(out[b].numpy(), ref, rtol=1e-10, atol=1e-12)


def test_quadratic_path_equals_linear_path():
    """Official dispatch uses the quadratic form when H*W <= dim; same function."""
    torch.manual_seed(2)
    mla = LiteMLA(32, 32, dim=16).eval()
    x = torch.randn(3, 32, 4, 4)  # 16 tokens <= dim 16 -> quadratic in "auto" mode
    with torch.no_grad():
        auto = mla(x)
        mla.attention_mode = "linear"
        lin = mla(x)
        qkv = mla.multi_scale_qkv(x)
        np.testing.assert_allclose(mla.relu_quadratic_att(qkv).numpy(),
                                   mla.relu_linear_att(qkv).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(auto.numpy(), lin.numpy(), rtol=1e-4, atol=1e-5)


def test_attention_divisor_eps_and_ones_row():
    """All-zero ReLU(K) gives a zero divisor: output is 0/eps = 0, never NaN."""
    mla = LiteMLA(16, 16, dim=8).eval()
    qkv = torch.randn(1, 2 * 3 * 16, 3, 3).reshape(1, 4, 24, 3, 3)
    qkv[:, :, 8:16] = -qkv[:, :, 8:16].abs() - 0.1  # every k < 0 -> ReLU(K) = 0
    qkv[:, :, 16:24] += 5.0                          # v far from 0
    qkv = qkv.reshape(1, 96, 3, 3)
    with torch.no_grad():
        out = mla.relu_linear_att(qkv)
    assert torch.isfinite(out).all() and float(out.abs().max()) == 0.0
    assert mla.eps == 1e-15


def test_half_precision_attention_computed_in_float32():
    torch.manual_seed(3)
    mla = LiteMLA(16, 16, dim=8).eval()
    qkv = torch.randn(1, 96, 4, 4)
    with torch.no_grad():
        ref = mla.relu_linear_att(qkv)
        out = mla.relu_linear_att(qkv.bfloat16())
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0.1, atol=0.05)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert mla.relu_linear_att(qkv).dtype == torch.float32  # autocast off inside
        assert torch.equal(mla.relu_linear_att(qkv), ref)


def test_set_attention_mode(b1):
    b1.set_attention_mode("linear")
    assert all(m.attention_mode == "linear" for m in b1.modules() if isinstance(m, LiteMLA))
    b1.set_attention_mode("auto")
    with pytest.raises(ValueError):
        b1.set_attention_mode("softmax")


# ---------------------------------------------------------------- random init + BN calibration

def _bn_inputs(model, images):
    """Inputs of every BatchNorm2d during an eval-mode forward pass (forward pre-hooks)."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(
                lambda mod, inp, name=name: seen.__setitem__(name, inp[0].detach().clone())))
    with torch.no_grad():
        out = model(images)
    for h in handles:
        h.remove()
    return seen, out


def test_bn_calibrate_single_batch_matches_input_statistics():
    import copy

    from quant.bn_calib import bn_calibrate, random_init
    from quant.data import calibration_images

    model, _ = create_model("b0-r64")
    random_init(model, seed=0)
    images = calibration_images(None, 6, 64, seed=0)
    reference = copy.deepcopy(model).train()  # PyTorch's own train-mode BN: batch statistics
    with torch.no_grad():
        train_out = reference(images)
    bn_calibrate(model, images)
    assert not model.training
    inputs, eval_out = _bn_inputs(model, images)
    assert len(inputs) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    mods = dict(model.named_modules())
    for name, x in inputs.items():
        x = x.double().numpy()
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))  # biased, as in the official reset_bn
        np.testing.assert_allclose(mods[name].running_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mods[name].running_var.numpy(), var, rtol=1e-3, atol=1e-6)
    # eval mode on the calibration batch == train mode (batch statistics) of the original
    np.testing.assert_allclose(eval_out.numpy(), train_out.numpy(), rtol=1e-3, atol=1e-4)


def test_bn_calibrate_two_batches_averages_stem_statistics():
    import torch.nn.functional as F

    from quant.bn_calib import bn_calibrate, random_init
    from quant.data import calibration_images

    model, _ = create_model("b0-r64")
    random_init(model, seed=1)
    images = calibration_images(None, 6, 64, seed=1)
    bn_calibrate(model, images, batch_size=4)  # batches of 4 and 2
    stem = model.backbone.input_stem.op_list[0]
    with torch.no_grad():
        y = F.conv2d(images, stem.conv.weight, None, 2, 1).double()
    m1, m2 = y[:4].mean(dim=(0, 2, 3)), y[4:].mean(dim=(0, 2, 3))
    v1 = ((y[:4] - m1.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    v2 = ((y[4:] - m2.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    np.testing.assert_allclose(stem.norm.running_mean.numpy(), ((4 * m1 + 2 * m2) / 6).numpy(),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stem.norm.running_var.numpy(), ((4 * v1 + 2 * v2) / 6).numpy(),
                               rtol=1e-4, atol=1e-6)
    assert all(type(m).forward is torch.nn.BatchNorm2d.forward and "forward" not in vars(m)
               for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_random_calibrated_model_has_sane_activations():
    from quant.bn_calib import random_calibrated_model
    from quant.data import calibration_images

    model, res = random_calibrated_model("b1-r64", seed=0, n_images=8)
    assert res == 64 and not model.training
    held_out = calibration_images(None, 4, 64, seed=99)
    feats = {}
    with torch.no_grad():
        out = model.backbone(held_out)
        logits = model.head(out)
    for k in ("stage0", "stage1", "stage2", "stage3", "stage4"):
        s = float(out[k].std())
        assert 0.2 < s < 20, (k, s)
        feats[k] = s
    assert torch.isfinite(logits).all() and 0.05 < float(logits.std()) < 10
    # different seeds give different weights; the same seed the same model
    again, _ = random_calibrated_model("b1-r64", seed=0, n_images=8)
    other, _ = random_calibrated_model("b1-r64", seed=1, n_images=8)
    with torch.no_grad():
        assert torch.equal(again(held_out), logits)
        assert not torch.allclose(other(held_out), logits)


# ---------------------------------------------------------------- the complete official key list

def _official_state_shapes(variant, n_classes=1000):
    """Every state_dict entry (name -> shape), in registration order, enumerated from the
    official structure (backbone.py / ops.py / cls.py as summarised at the top of this file),
    without using the code under test. This is what an official checkpoint file holds."""
    cfg = {"b0": ((8, 16, 32, 64, 128), (1, 2, 2, 2, 2), 16, (1024, 1280)),
           "b1": ((16, 32, 64, 128, 256), (1, 2, 3, 3, 4), 16, (1536, 1600)),
           "b2": ((24, 48, 96, 192, 384), (1, 3, 4, 4, 6), 32, (2304, 2560)),
           "b3": ((32, 64, 128, 256, 512), (1, 4, 6, 6, 9), 32, (2304, 2560))}[variant]
    width, depth, dim, head = cfg
    out = []

    def conv(p, cin, cout, k, groups=1, bias=False, norm=True):
        out.append((f"{p}.conv.weight", (cout, cin // groups, k, k)))
        if bias:
            out.append((f"{p}.conv.bias", (cout,)))
        if norm:
            out.extend((f"{p}.norm.{n}", (cout,))
                       for n in ("weight", "bias", "running_mean", "running_var"))
            out.append((f"{p}.norm.num_batches_tracked", ()))

    def mbconv(p, cin, cout, fewer):
        mid = 4 * cin
        conv(f"{p}.inverted_conv", cin, mid, 1, bias=fewer, norm=not fewer)
        conv(f"{p}.depth_conv", mid, mid, 3, groups=mid, bias=fewer, norm=not fewer)
        conv(f"{p}.point_conv", mid, cout, 1)

    conv("backbone.input_stem.op_list.0", 3, width[0], 3)
    for i in range(1, depth[0] + 1):
        conv(f"backbone.input_stem.op_list.{i}.main.depth_conv", width[0], width[0], 3,
             groups=width[0])
        conv(f"backbone.input_stem.op_list.{i}.main.point_conv", width[0], width[0], 1)
    cin = width[0]
    for s in (0, 1):
        for i in range(depth[s + 1]):
            mbconv(f"backbone.stages.{s}.op_list.{i}.main", cin, width[s + 1], False)
            cin = width[s + 1]
    for s in (2, 3):
        w = width[s + 1]
        mbconv(f"backbone.stages.{s}.op_list.0.main", cin, w, True)
        cin = w
        for j in range(1, depth[s + 1] + 1):
            p = f"backbone.stages.{s}.op_list.{j}"
            conv(f"{p}.context_module.main.qkv", w, 3 * w, 1, norm=False)
            out.append((f"{p}.context_module.main.aggreg.0.0.weight", (3 * w, 1, 5, 5)))
            out.append((f"{p}.context_module.main.aggreg.0.1.weight", (3 * w, dim, 1, 1)))
            conv(f"{p}.context_module.main.proj", 2 * w, w, 1)
            mbconv(f"{p}.local_module.main", w, w, True)
    conv("head.op_list.0", cin, head[0], 1)
    out += [("head.op_list.2.linear.weight", (head[1], head[0])),
            ("head.op_list.2.norm.weight", (head[1],)), ("head.op_list.2.norm.bias", (head[1],)),
            ("head.op_list.3.linear.weight", (n_classes, head[1])),
            ("head.op_list.3.linear.bias", (n_classes,))]
    return out


@pytest.mark.parametrize("variant", ["b0", "b1", "b2", "b3"])
def test_complete_state_dict_matches_official_enumeration(variant):
    model, _ = create_model(variant)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    expected = _official_state_shapes(variant)
    assert len(got) == len(expected)
    assert got == expected
