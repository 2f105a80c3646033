"""Checkpoint loading: round trips in the official layouts and clear errors on bad files."""

import torch
import pytest

from quant.checkpoint import (
    CheckpointError,
    guess_variant,
    load_checkpoint,
    read_state_dict,
    save_checkpoint,
)
from quant.models import create_model

# A few key names as the official release spells them (mit-han-lab/efficientvit, ops.py /
# backbone.py / cls.py; see tests/test_models.py for the full list and the reasoning), for B0
# (depth [1, 2, 2, 2, 2]).
OFFICIAL_B0_KEYS = [
    "backbone.input_stem.op_list.0.conv.weight",
    "backbone.input_stem.op_list.1.main.point_conv.norm.running_var",
    "backbone.stages.1.op_list.1.main.depth_conv.conv.weight",
    "backbone.stages.3.op_list.2.context_module.main.aggreg.0.1.weight",
    "backbone.stages.3.op_list.2.local_module.main.point_conv.norm.bias",
    "head.op_list.2.norm.weight",
    "head.op_list.3.linear.bias",
]


def _perturbed(name="b0", seed=0, **kw):
    torch.manual_seed(seed)
    model, res = create_model(name, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval(), res


@pytest.fixture(scope="module")
def src():
    return _perturbed(seed=0)[0]


@pytest.fixture(scope="module")
def saved(src, tmp_path_factory):
    return save_checkpoint(src, tmp_path_factory.mktemp("ckpt") / "b0.pt")


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_nested_official_layout(src, saved):
    raw = torch.load(saved, weights_only=True)
    assert set(raw) == {"state_dict"}
    for k in OFFICIAL_B0_KEYS:
        assert k in raw["state_dict"], k
    dst = _perturbed(seed=1)[0]
    assert not _same(src, dst)
    assert load_checkpoint(dst, saved) is dst
    assert _same(src, dst)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


@pytest.mark.parametrize("layout", ["plain", "model", "ema_nested", "module_prefix"])
def test_round_trip_other_layouts(src, tmp_path, layout):
    sd = src.state_dict()
    obj = {"plain": sd, "model": {"model": sd, "epoch": 7},
           "ema_nested": {"ema": {"state_dict": sd}, "optimizer": {}},
           "module_prefix": {"state_dict": {"module." + k: v for k, v in sd.items()}}}[layout]
    path = tmp_path / "c.pt"
    torch.save(obj, path)
    dst = _perturbed(seed=2)[0]
    load_checkpoint(dst, path)
    assert _same(src, dst)


def test_dtype_converted_and_num_batches_tracked_tolerated(src, tmp_path):
    sd = {k: (v.double() if v.is_floating_point() else v) for k, v in src.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    save_checkpoint(sd, tmp_path / "d.pt", nested=False)
    dst = _perturbed(seed=3)[0]
    load_checkpoint(dst, tmp_path / "d.pt")
    p = dst.state_dict()["head.op_list.3.linear.weight"]
    assert p.dtype == torch.float32
    assert torch.equal(p, src.state_dict()["head.op_list.3.linear.weight"])


def test_missing_key_named(src, tmp_path):
    sd = dict(src.state_dict())
    del sd["backbone.stages.3.op_list.1.context_module.main.qkv.conv.weight"]
    save_checkpoint(sd, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): backbone\.stages\.3\.op_list"
                                              r"\.1\.context_module\.main\.qkv\.conv\.weight"):
        load_checkpoint(_perturbed()[0], tmp_path / "m.pt")


def test_unexpected_key_named(src, tmp_path):
    sd = dict(src.state_dict())
    sd["backbone.stages.4.op_list.0.main.inverted_conv.conv.weight"] = torch.zeros(1)
    save_checkpoint(sd, tmp_path / "u.pt")
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): backbone\.stages\.4"):
        load_checkpoint(_perturbed()[0], tmp_path / "u.pt")


def test_shape_mismatch_named(tmp_path):
    ten, _ = _perturbed(num_classes=10)
    save_checkpoint(ten, tmp_path / "s.pt")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(_perturbed()[0], tmp_path / "s.pt")
    msg = str(exc.value)
    assert "2 shape mismatch(es)" in msg
    assert "head.op_list.3.linear.weight: checkpoint (10, 1280) vs model (1000, 1280)" in msg
    assert "head.op_list.3.linear.bias: checkpoint (10,) vs model (1000,)" in msg


def test_wrong_variant_lists_first_keys_and_counts(saved):
    b1, _ = create_model("b1")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(b1, saved)
    msg = str(exc.value)
    assert "looks like EfficientViT-B0" in msg
    assert "missing key(s)" in msg and "more)" in msg and "shape mismatch(es)" in msg


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(_perturbed()[0], bad)


@pytest.mark.parametrize("kind", ["text", "list", "no_state_dict", "empty", "dir", "absent",
                                  "url", "pickled_object"])
def test_not_a_checkpoint(tmp_path, kind, src):
    path = tmp_path / "x.pt"
    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "no_state_dict":
        torch.save({"epoch": 3, "lr": 0.1}, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "dir":
        path.mkdir()
    elif kind == "url":
        path = "https://example.com/b0-r224.pt"
    elif kind == "pickled_object":
        torch.save({"state_dict": src.state_dict(), "args": __import__("argparse").Namespace()},
                   path)
    expected = {"text": "not a torch checkpoint", "list": "holds a list",
                "no_state_dict": r"no state dict found.*'epoch'", "empty": "empty file",
                "dir": "is a directory", "absent": "no such file", "url": "no such file",
                "pickled_object": "Python objects"}[kind]
    with pytest.raises(CheckpointError, match=expected):
        read_state_dict(path)


def test_trusted_opt_in_reads_pickled_objects(src, tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"state_dict": src.state_dict(), "args": __import__("argparse").Namespace(a=1)},
               path)
    with pytest.raises(CheckpointError, match="trusted=True"):
        load_checkpoint(_perturbed(seed=5)[0], path)
    dst = load_checkpoint(_perturbed(seed=5)[0], path, trusted=True)
    assert _same(src, dst)


def test_guess_variant(src):
    assert guess_variant(src.state_dict()) == "b0"
    b2, _ = create_model("b2")
    assert guess_variant(b2.state_dict()) == "b2"
    assert guess_variant({"foo": torch.zeros(1)}) is None


def test_save_is_atomic_no_temp_left(src, tmp_path):
    save_checkpoint(src, tmp_path / "a.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
