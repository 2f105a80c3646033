"""quant's Python API (quant.quantize / QuantizedModel / quant.load) and the compact .qmodel."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import quant
from quant.reconstruct import FAST

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imagenet-sample"
MODEL, RES = "b0-r64", 64


def _images(n, seed=0):
    from quant.data import SyntheticImages, make_loader
    if DATA.exists():
        return torch.cat([x for x, _ in make_loader(DATA, RES, batch_size=n, limit=n)])
    ds = SyntheticImages(n, RES, seed=seed)
    return ds.images()


@pytest.fixture(scope="module")
def qm():
    """B0-R64, random BN-calibrated, calibrated on 8 images given as a DataLoader, with a short
    block reconstruction (so that some layers carry AdaRound's hardened codes)."""
    from torch.utils.data import DataLoader, TensorDataset
    x = _images(8)
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=4)
    cfg = quant.QuantConfig(reconstruction=dataclasses.replace(FAST, iters=2, max_images=8))
    return quant.quantize(quant.float_model(MODEL), loader, cfg)


@pytest.mark.parametrize("field, value, pattern", [
    ("w_bits", 12, r"w_bits must be an int in \[2, 8\], got 12"),
    ("a_bits", True, r"a_bits must be an int in \[2, 8\], got True"),
    ("stem_head_bits", 9, r"stem_head_bits must be None or an int"),
    ("observer", "max", r"observer must be one of .*'max'"),
    ("divisor", "log3", r"divisor must be one of"),
    ("reconstruction", "slow", r"reconstruction must be one of"),
    ("migration", 1, r"migration must be True or False"),
    ("calib_images", 0, r"calib_images must be None or an int >= 1"),
    ("batch_size", -1, r"batch_size must be an int >= 1"),
    ("device", "gpu9", r"device must be a torch device name"),
])
def test_config_rejects_bad_fields_with_the_field_named(field, value, pattern):
    with pytest.raises(quant.ConfigError, match=pattern) as e:
        quant.QuantConfig(**{field: value})
    assert "\n" not in str(e.value) and f"QuantConfig.{field}" in str(e.value)
    # weights only: the reconstruction rounds the weights only (the authors' script without
    # --act_quant; `python -m quant quantize --no-act-quant` has always run it)
    assert quant.QuantConfig(act_quant=False).recon() == FAST
    assert quant.QuantConfig(act_quant=False, reconstruction="off").qconfig().act_quant is False


@pytest.mark.parametrize("field, value", [
    ("iters", -1), ("iters", 2.5), ("batch_size", 0), ("max_images", 0), ("iters_a", 0),
    ("lr_w", -1e-3), ("lr_a", float("nan")), ("reg", -1.0), ("p", 0.0), ("p_a", -2.0),
    ("warmup", 1.5), ("holdout", 1.0), ("beta", (20.0,)), ("beta", (20.0, -2.0)), ("fisher", 1),
])
def test_config_rejects_bad_reconstruction_fields(field, value):
    with pytest.raises(quant.ConfigError,
                       match=rf"^QuantConfig\.reconstruction\.{field} must be .*got") as e:
        quant.QuantConfig(reconstruction=dataclasses.replace(FAST, **{field: value}))
    assert "\n" not in str(e.value)


def test_config_accepts_the_shipped_reconstruction_settings():
    from quant.reconstruct import PAPER
    for rc in (FAST, PAPER, dataclasses.replace(FAST, iters=0, iters_a=None, p_a=None)):
        assert quant.QuantConfig(reconstruction=rc).reconstruction == rc


def test_quantize_rejects_bad_inputs():
    m = quant.float_model(MODEL)
    with pytest.raises(quant.ConfigError, match="no images"):
        quant.quantize(m, [], quant.QuantConfig(reconstruction="off"))
    with pytest.raises(quant.ConfigError, match=r"\(B, 3, R, R\)"):
        quant.quantize(m, [torch.zeros(2, 3, 64, 32)], quant.QuantConfig(reconstruction="off"))
    with pytest.raises(quant.ConfigError, match="EfficientViT"):
        quant.quantize(torch.nn.Linear(2, 2), [torch.zeros(1, 3, 64, 64)])
    with pytest.raises(quant.ConfigError, match="config must be"):
        quant.quantize(m, [torch.zeros(1, 3, 64, 64)], {"w_bits": 8})


def test_save_needs_a_known_architecture(tmp_path):
    """A model of unknown variant quantizes and evaluates, but cannot be saved (the file names
    the architecture to rebuild): a one-line ConfigError, nothing written."""
    m = quant.float_model(MODEL)
    del m.trio_vit_name
    m.variant = ""
    q = quant.quantize(m, _images(2), quant.QuantConfig(reconstruction="off"))
    assert q.model_name is None and "fake" in q.evaluate(_images(2))
    with pytest.raises(quant.ConfigError, match="variant is known"):
        q.save(tmp_path / "x.qmodel")
    assert not list(tmp_path.iterdir())


def test_calibration_runs_the_model_on_the_data():
    """The input tensor's MinMax scale is max|x| / 127 of exactly the calibration images given
    (a generator of bare tensors here), and calib_images caps them."""
    x = _images(6)
    cfg = quant.QuantConfig(reconstruction="off", calib_images=4)
    q = quant.quantize(quant.float_model(MODEL), (b for b in x.split(3)), cfg)
    s = float(q.graph.act_q["input"].scale.detach())
    assert s == pytest.approx(float(x[:4].abs().max()) / 127, rel=1e-6)
    assert q.info["calib_images"] == 4
    # the caller's model is not modified (BN still there, softmax-free attention untouched)
    m = quant.float_model(MODEL)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    quant.quantize(m, x[:2], quant.QuantConfig(reconstruction="off"))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_evaluate_agrees_with_golden(qm):
    """The model's own evaluation: fake-quant and the integer executor against sim.golden."""
    x = _images(4)
    r = qm.evaluate([(x, torch.arange(4))], golden=True)
    ag = r["agreement"]
    assert r["n"] == 4 and ag["fake_mode"] == "deploy-exact"
    assert ag["top1_fake_vs_golden"] == 1.0 and ag["max_abs_logit_diff_fake_vs_golden_lsb"] == 0
    assert ag["top1_int_vs_golden"] == 1.0 and ag["max_abs_logit_diff_lsb"] == 0
    # the SQNR vs float, recomputed from the two forwards
    with torch.no_grad():
        ref, fk = qm.float_forward(x).double(), qm(x).double()
    sq = 10 * np.log10(float((ref ** 2).sum()) / float(((ref - fk) ** 2).sum()))
    assert r["fake"]["sqnr_vs_float_db"] == pytest.approx(sq, abs=1e-9)
    assert r["fake"]["top1"] == pytest.approx(100 * float((fk.argmax(1) == torch.arange(4))
                                                          .double().mean()))


def _assert_same_program(a, b):
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    for t in a.tensors:
        assert np.array_equal(a.tensors[t].scale, b.tensors[t].scale), t
    for na, nb in zip(a.nodes, b.nodes):
        assert na.attrs == nb.attrs and sorted(na.params) == sorted(nb.params), na.name
        for k in na.params:
            assert na.params[k].dtype == nb.params[k].dtype, (na.name, k)
            assert np.array_equal(na.params[k], nb.params[k]), (na.name, k)
        if na.epilogue is not None:
            ea, eb = na.epilogue._arrays(""), nb.epilogue._arrays("")
            assert sorted(ea) == sorted(eb) and na.epilogue._meta() == nb.epilogue._meta()
            for k in ea:
                assert np.array_equal(ea[k], eb[k]), (na.name, k)
    assert a.meta == b.meta


def test_save_load_gives_the_same_integers(qm, tmp_path):
    """A saved and loaded model exports the same IntProgram, array by array, runs the same
    fake-quant logits, and the file holds int8 codes, no float weights or AdaRound state."""
    path = qm.save(tmp_path / "m.qmodel")
    prog = qm.export_intprogram(tmp_path / "m.npz")
    d = torch.load(path, weights_only=True)
    assert d["version"] == 3
    weights = [k for k in d["state"] if k.endswith(".weight")]
    assert not weights, weights
    assert not any(k.endswith((".alpha", ".w_floor")) for k in d["state"])
    codes = [k for k in d["state"] if k.endswith(".wq.codes")]
    assert len(codes) == len(d["fixed_weights"]) == sum(1 for n in prog.nodes
                                                        if n.op in ("conv", "linear"))
    assert all(d["state"][k].dtype == torch.int8 for k in codes)
    # about the IntProgram's size (the int8 weights dominate both)
    assert path.stat().st_size < 1.2 * (tmp_path / "m.npz").stat().st_size

    back = quant.load(path)
    assert back.float_reference and back.model_name == MODEL
    _assert_same_program(prog, back.intprogram())
    from sim.intprogram import IntProgram
    _assert_same_program(prog, IntProgram.load(tmp_path / "m.npz"))
    x = _images(3)
    with torch.no_grad():
        assert torch.equal(qm(x), back(x))
        # the float reference was rebuilt from the recorded seed
        assert torch.allclose(qm.float_forward(x), back.float_forward(x), rtol=1e-4, atol=1e-4)
    # without a float source the float weights are the dequantized codes, and it says so
    d["float_source"] = None
    torch.save(d, tmp_path / "nf.qmodel")
    nf = quant.load(tmp_path / "nf.qmodel")
    assert nf.float_reference is False and "float" not in nf.evaluate(x)
    _assert_same_program(prog, nf.intprogram())
    # saving the loaded model again gives the same file contents
    back.save(tmp_path / "again.qmodel")
    d2 = torch.load(tmp_path / "again.qmodel", weights_only=True)
    assert sorted(d2["state"]) == sorted(torch.load(path, weights_only=True)["state"])


def test_old_formats(qm, tmp_path):
    """A version-2 file (float weights in the state) is read and converted by saving; version 1
    is refused with one line naming the file and the versions read."""
    g = qm.graph
    from quant.qfile import FORMAT
    from quant.quantizers import FixedWeightQuantizer
    fixed = [n.name for n in g.nodes if isinstance(getattr(n, "wq", None), FixedWeightQuantizer)]
    act = {k: dict(bits=q.bits, signed=q.signed, channel_factor=q.channel_factor,
                   center=q.center) for k, q in g.act_q.items()}
    v2 = dict(format=FORMAT, version=2, model=MODEL, resolution=RES, qconfig=g.cfg.as_dict(),
              act=act, fixed_weights=fixed, state=dict(g.state_dict()), info={})
    torch.save(v2, tmp_path / "v2.qmodel")
    old = quant.load(tmp_path / "v2.qmodel")
    _assert_same_program(qm.intprogram(), old.intprogram())
    old.save(tmp_path / "v3.qmodel")
    _assert_same_program(qm.intprogram(), quant.load(tmp_path / "v3.qmodel").intprogram())
    assert (tmp_path / "v3.qmodel").stat().st_size < (tmp_path / "v2.qmodel").stat().st_size / 2
    v2["version"] = 1
    torch.save(v2, tmp_path / "v1.qmodel")
    from quant.qfile import QModelError
    with pytest.raises(QModelError) as e:
        quant.load(tmp_path / "v1.qmodel")
    assert re.search(r"v1\.qmodel: quantized-model version 1 is not supported \(this trio-vit "
                     r"reads versions 2, 3\)", str(e.value)) and "\n" not in str(e.value)


def test_docs_example_runs(tmp_path, monkeypatch):
    """The Python example of docs/quant.md, run as printed (in a scratch directory)."""
    text = (REPO / "docs" / "quant.md").read_text()
    m = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S)
    assert m, "docs/quant.md lost its API example"
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO))
    code = m.group(1)
    assert '"../shared/data/imagenet-sample"' in code
    if not DATA.exists():
        pytest.skip("needs ../shared/data/imagenet-sample")
    code = code.replace('"../shared/data/imagenet-sample"', repr(str(DATA)))   # run from tmp_path
    env = {"__name__": "__docs__"}
    exec(compile(code, "docs/quant.md", "exec"), env)     # noqa: S102
    for f in ("b0.qmodel", "b0.npz", "b0.onnx"):
        assert (tmp_path / f).is_file(), f


def test_weights_only_reconstruction_runs_and_is_not_exportable():
    """act_quant=False with a reconstruction: AdaRound on the weights only (what
    `quantize --no-act-quant` runs); the model has no integer form."""
    cfg = quant.QuantConfig(act_quant=False, seed=1,
                            reconstruction=dataclasses.replace(FAST, iters=2, max_images=4))
    qm = quant.quantize(quant.float_model(MODEL, seed=1), _images(4), cfg)
    rec = qm.info["reconstruction"]
    assert rec["kept"] + rec["reverted"] == len(rec["blocks"]) == len(qm.graph.blocks)
    assert not qm.graph.cfg.act_quant
    with pytest.raises(Exception, match="quantized activations"):
        qm.intprogram()
