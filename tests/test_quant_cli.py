"""The `python -m quant` command line: help, user errors (exit 2, nothing written), a tiny flow."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from quant.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imagenet-sample"


def run(*args):
    return subprocess.run([sys.executable, "-m", "quant", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_help_lists_subcommands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("quantize", "evaluate", "export", "ablation", "synthetic"):
        assert cmd in r.stdout
    r = run("quantize", "--help")
    for flag in ("--w-bits", "--a-bits", "--channel-wise", "--no-act-quant", "--keep-stem-head-8bit",
                 "--test-before-calibration", "--calib-size", "--recon-iters", "--device", "--paper",
                 "--recon-lr-a", "--recon-lr-a-relative"):
        assert flag in r.stdout
    # an absolute and a relative LSQ rate at once is a usage error
    r = run("quantize", "--recon-lr-a", "0", "--recon-lr-a-relative", "1e-2", "-o", "never.qmodel")
    assert r.returncode == 2 and "not allowed with" in r.stderr


def test_bad_checkpoint_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "o.qmodel"
    assert main(["quantize", "--model", "b0-r64", "--checkpoint", str(bad), "-o", str(out)]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]
    assert main(["quantize", "--model", "b0-r64", "--checkpoint", str(tmp_path / "missing.pt"),
                 "-o", str(out)]) == 2
    assert not out.exists()


def test_bad_data_and_model_exit_2(tmp_path, capsys):
    out = tmp_path / "o.qmodel"
    assert main(["quantize", "--model", "b0-r64", "--data", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "data" in capsys.readouterr().err
    assert main(["quantize", "--model", "b9", "-o", str(out)]) == 2
    assert main(["quantize", "--model", "b0-r64", "--w-bits", "12", "-o", str(out)]) == 2
    assert not out.exists()


def test_bad_qmodel_files_exit_2(tmp_path, capsys):
    junk = tmp_path / "junk.qmodel"
    junk.write_text("hello")
    assert main(["export", str(junk), "-o", str(tmp_path / "x.npz")]) == 2
    assert main(["export", str(tmp_path / "missing.qmodel"), "-o", str(tmp_path / "x.npz")]) == 2
    assert main(["ablation", "--model", "b0-r64"]) == 2      # needs --synthetic or --checkpoint
    assert not (tmp_path / "x.npz").exists()


def test_synthetic_json(capsys):
    assert main(["synthetic", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["attention_divisor"]["uniform8"]["sqnr_db"] is None       # NaN -> null in JSON
    assert r["attention_divisor"]["uniform8"]["nan_reason"]


def test_ablation_reports_torch_threads(capsys, monkeypatch):
    """The ablation's report names torch's thread count (its float32 figures depend on it,
    docs/quant.md); the sweep itself is stubbed here (the real one is minutes)."""
    import torch

    import quant.ablation
    seen = []

    def sweep(make_graph, calib, evals, **kw):
        seen.append((calib.shape[0], evals.shape[0]))
        return {"strengths": [], "seconds": 0.0, "calib_images": calib.shape[0],
                "eval_images": evals.shape[0]}
    monkeypatch.setattr(quant.ablation, "run_sweep", sweep)
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert main(["ablation", "--model", "b0-r64", "--synthetic", "--calib-size", "2",
                         "--eval-size", "3", "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["torch_threads"] == n
    finally:
        torch.set_num_threads(before)
    assert seen == [(2, 3), (2, 3)]


def test_quantize_export_flow(tmp_path, capsys):
    q, npz = tmp_path / "b0.qmodel", tmp_path / "b0.npz"
    assert main(["quantize", "--model", "b0-r64", "--data", "", "--calib-size", "8",
                 "--recon-iters", "2", "--json", "-o", str(q)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["source"]["random_init"] is True and q.exists()
    assert main(["export", str(q), "-o", str(npz)]) == 0
    from sim.intprogram import IntProgram
    prog = IntProgram.load(npz)
    assert prog.meta["model_name"] == "b0-r64" and prog.tensors["input"].shape == (3, 64, 64)
    # reconstruction guard reported; hardened weights stored as int8 codes, not AdaRound's V
    rec = r["reconstruction"]
    assert rec["kept"] + rec["reverted"] == len(rec["blocks"]) > 0
    # the fast default learns the LSQ steps at a rate relative to each step
    assert rec["config"]["lr_a_relative"] is True and rec["config"]["lr_a"] == 1e-2
    import torch
    d = torch.load(q, weights_only=True)
    assert not any(k.endswith(".alpha") or k.endswith(".w_floor") for k in d["state"])
    kept = [b["name"] for b in rec["blocks"] if b["kept"]]
    codes = [k for k in d["state"] if k.endswith(".wq.codes")]
    assert all(d["state"][k].dtype == torch.int8 for k in codes) and (codes or not kept)
    # the loaded model exports the very codes stored
    from quant.cli import load_qmodel
    g, _ = load_qmodel(q)
    for n in prog.nodes:
        k = f"nodes.{[m.name for m in g.nodes].index(n.name)}.wq.codes"
        if k in d["state"]:
            assert (d["state"][k].numpy() == n.params["weight"]).all()
    # a weights-only model cannot be exported
    q2 = tmp_path / "w.qmodel"
    assert main(["quantize", "--model", "b0-r64", "--data", "", "--calib-size", "4",
                 "--recon-iters", "0", "--no-act-quant", "-o", str(q2)]) == 0
    capsys.readouterr()
    assert main(["export", str(q2), "-o", str(tmp_path / "w.npz")]) == 2
    assert "quantized activations" in capsys.readouterr().err
    assert not (tmp_path / "w.npz").exists()


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/imagenet-sample")
def test_evaluate_golden_fake_quant_identical(tmp_path, capsys):
    """`evaluate --golden`: the (deploy-exact) fake-quant model gives sim.golden's logits."""
    q = tmp_path / "b0.qmodel"
    assert main(["quantize", "--model", "b0-r64", "--data", str(DATA), "--calib-size", "8",
                 "--recon-iters", "2", "--json", "-o", str(q)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(q), "--data", str(DATA / "labels.csv"), "--limit", "6",
                 "--golden", "--json"]) == 0
    ag = json.loads(capsys.readouterr().out)["agreement"]
    assert ag["fake_mode"] == "deploy-exact"
    assert ag["top1_fake_vs_golden"] == 1.0 and ag["max_abs_logit_diff_fake_vs_golden_lsb"] == 0
    assert ag["top1_int_vs_golden"] == 1.0 and ag["max_abs_logit_diff_lsb"] == 0


def test_cli_is_a_thin_layer_over_the_api(tmp_path, capsys):
    """Issue #17: `quantize` + `export` on the command line and quant.quantize +
    export_intprogram in Python, same seed, same images, the same settings written once as
    flags (the authors' aliases among them) and once as a QuantConfig, give the same IntProgram
    array by array and the same reconstruction decisions."""
    import dataclasses

    import numpy as np

    import quant
    from quant.data import SyntheticImages, calibration_images
    from quant.reconstruct import FAST
    from sim.intprogram import IntProgram

    seed, n = 5, 8
    q, npz = tmp_path / "cli.qmodel", tmp_path / "cli.npz"
    data = ["--data", str(DATA)] if DATA.exists() else ["--data", ""]
    assert main(["quantize", "--model", "b0-r64", *data, "--num_samples", str(n), "--seed", str(seed),
                 "--n_bits_w", "6", "--disable_8bit_head_stem", "--observer", "percentile",
                 "--no-shifting", "--iters_w", "3", "--iters_a", "2", "--weight", "0.001",
                 "--b_start", "10", "--recon-images", "8", "--json", "-o", str(q)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert main(["export", str(q), "-o", str(npz)]) == 0

    # the same run in Python: what the flags mean, written out (not through the CLI's parser)
    images = calibration_images(DATA, n, 64, seed=seed) if DATA.exists() else \
        SyntheticImages(n, 64, seed=seed).images()
    cfg = quant.QuantConfig(w_bits=6, stem_head_bits=None, observer="percentile", shifting=False,
                            reconstruction=dataclasses.replace(
                                FAST, iters=3, iters_a=2, separate=True, reg=1e-3,
                                beta=(10.0, FAST.beta[1]), max_images=8),
                            seed=seed)
    qm = quant.quantize(quant.float_model("b0-r64", seed=seed), images, cfg)
    api_npz = tmp_path / "api.npz"
    qm.export_intprogram(api_npz)

    a, b = np.load(npz), np.load(api_npz)
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert IntProgram.load(npz).to_bytes() == IntProgram.load(api_npz).to_bytes()
    rec = qm.info["reconstruction"]
    assert (rep["reconstruction"]["kept"], rep["reconstruction"]["reverted"]) == \
        (rec["kept"], rec["reverted"])
    assert [x["kept"] for x in rep["reconstruction"]["blocks"]] == [x["kept"] for x in rec["blocks"]]
    assert rep["sqnr_logits_db_calib"] == qm.info["sqnr_logits_db_calib"]

