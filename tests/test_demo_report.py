"""The evaluate rows of the demo report (``tb.demo.evaluate_rows``) and what ``python -m quant
evaluate`` says about random weights: top-1 only with a checkpoint, the one sentence otherwise,
and the figures that mean something without a checkpoint (agreement with float, SQNR, golden).

The real evaluate output comes from a tiny model (b0 at 64x64, 4 calibration images, no
reconstruction) on 4 generated labelled images; about 30 s for the module."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from quant.cli import load_qmodel, main
from quant.data import make_loader
from quant.evaluate import RANDOM_WEIGHTS_NOTE, weights_origin
from tb.demo import evaluate_rows

MODEL, RES, N = "b0-r64", 64, 4


def _quiet(argv) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(argv) == 0, err.getvalue()
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An ImageNet-style folder: two classes, two random 80x80 images each (labels 0 and 1)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(21)
    for c in ("a", "b"):
        (root / c).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def runs(images, tmp_path_factory):
    """``{"random": (qmodel, evaluate JSON), "checkpoint": (...)}``: the same flow as the demo's
    steps 1-2, once without --checkpoint and once with a checkpoint file."""
    from quant.bn_calib import random_calibrated_model
    from quant.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("runs")
    ckpt = save_checkpoint(random_calibrated_model(MODEL, seed=3, n_images=4)[0], d / "m.pt")
    out = {}
    for kind, extra in (("random", []), ("checkpoint", ["--checkpoint", str(ckpt)])):
        q = d / f"{kind}.qmodel"
        _quiet(["quantize", "--model", MODEL, "--data", str(images), "--calib-size", "4",
                "--recon-iters", "0", "--json", "-o", str(q), *extra])
        out[kind] = q, _quiet(["evaluate", str(q), "--data", str(images), "--limit", str(N),
                               "--golden", "--json"])
    return out


def _rows(ev):
    rows, note = evaluate_rows(ev)
    assert all(stage == "evaluate" and isinstance(v, str) for stage, _, v in rows)
    return {name: v for _, name, v in rows}, note


def _sqnr_db(ref, test):
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    return 10 * math.log10(np.sum(ref ** 2) / np.sum((ref - test) ** 2))


def test_evaluate_json_says_where_the_weights_come_from(runs):
    _, ev = runs["random"]
    assert ev["weights"] == "random" and ev["note"] == RANDOM_WEIGHTS_NOTE
    _, ev = runs["checkpoint"]
    assert ev["weights"] == "checkpoint" and "note" not in ev
    assert weights_origin(None) == "unknown" and weights_origin({"seed": 1}) == "unknown"


def test_agreement_and_sqnr_with_float_match_a_direct_computation(runs):
    """The new per-mode figure (same top-1 as float) and the SQNR, recomputed here from the
    float and fake-quant logits of the saved model on the same images."""
    q, ev = runs["random"]
    g, _ = load_qmodel(q)
    loader = make_loader(ev["data"], RES, batch_size=N, limit=N)
    images = torch.cat([x for x, _ in loader])
    assert len(images) == ev["n"] == N
    with torch.no_grad():
        ref = g.set_mode("float")(images).double().numpy()
        fake = g.set_mode("fake")(images).double().numpy()
    same = float(np.mean(ref.argmax(1) == fake.argmax(1)))
    assert ev["fake"]["top1_agreement_with_float"] == same
    assert ev["fake"]["sqnr_vs_float_db"] == pytest.approx(_sqnr_db(ref, fake), abs=1e-9)
    assert ev["float"]["top1_agreement_with_float"] is None
    # golden is bit-exact with the deploy-exact fake-quant model, so it agrees with float alike
    assert ev["agreement"]["max_abs_logit_diff_fake_vs_golden_lsb"] == 0
    assert ev["golden"]["top1_agreement_with_float"] == same


def test_rows_without_checkpoint(runs):
    _, ev = runs["random"]
    rows, note = _rows(ev)
    assert note == RANDOM_WEIGHTS_NOTE
    assert not [n for n in rows if "top-1 float" in n]           # no accuracy row at all
    pct = lambda f: f"{100 * f:.3g}" if 100 * f < 100 else f"{100 * f:,.1f}"
    fa, ga = ev["fake"]["top1_agreement_with_float"], ev["golden"]["top1_agreement_with_float"]
    assert rows["images"] == str(N)
    assert rows["same top-1 as float: fake / golden (%)"] == f"{pct(fa)} / {pct(ga)}"
    fs, gs = ev["fake"]["sqnr_vs_float_db"], ev["golden"]["sqnr_vs_float_db"]
    assert rows["logit SQNR vs float: fake / golden (dB)"] == f"{fs:.3g} / {gs:.3g}"
    assert rows["fake vs golden: same top-1 %, max diff"] == "100.0 / 0 LSB"
    assert rows["int-exact vs golden: same top-1 %, max diff"] == "100.0 / 0 LSB"


def test_rows_with_checkpoint(runs):
    _, ev = runs["checkpoint"]
    rows, note = _rows(ev)
    assert note is None
    top1 = [ev[k]["top1"] for k in ("float", "fake", "golden")]
    assert all(t is not None and 0 <= t <= 100 for t in top1)       # percent, from the labels
    assert rows["top-1 float / fake / golden (%)"] == " / ".join(
        f"{t:.3g}" if t < 100 else f"{t:,.1f}" for t in top1)
    assert {"same top-1 as float: fake / golden (%)", "logit SQNR vs float: fake / golden (dB)",
            "fake vs golden: same top-1 %, max diff"} <= set(rows)


def test_top1_row_is_in_percent():
    """evaluate reports top-1 in percent; the row shows it as it is (it used to be multiplied
    by 100 again, invisible while every figure was 0)."""
    ev = {"n": 50, "weights": "checkpoint",
          "float": {"top1": 76.0, "top1_agreement_with_float": None, "sqnr_vs_float_db": None},
          "fake": {"top1": 74.0, "top1_agreement_with_float": 0.9, "sqnr_vs_float_db": 21.25},
          "golden": {"top1": 74.0, "top1_agreement_with_float": 0.9, "sqnr_vs_float_db": 21.25},
          "agreement": {"top1_fake_vs_golden": 0.98, "max_abs_logit_diff_fake_vs_golden_lsb": 3.0,
                        "top1_int_vs_golden": 1.0, "max_abs_logit_diff_lsb": 0.0}}
    rows, note = _rows(ev)
    assert note is None
    assert rows == {"images": "50", "top-1 float / fake / golden (%)": "76 / 74 / 74",
                    "same top-1 as float: fake / golden (%)": "90 / 90",
                    "logit SQNR vs float: fake / golden (dB)": "21.2 / 21.2",
                    "fake vs golden: same top-1 %, max diff": "98 / 3 LSB",
                    "int-exact vs golden: same top-1 %, max diff": "100.0 / 0 LSB"}


def test_quant_says_random_weights_once(runs, capsys):
    """Without --json, `quant evaluate` prints the sentence once before its figures; with a
    checkpoint it does not print it."""
    q, ev = runs["random"]
    assert main(["evaluate", str(q), "--data", ev["data"], "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count(RANDOM_WEIGHTS_NOTE) == 1
    assert out.index(RANDOM_WEIGHTS_NOTE) < out.index("top-1")
    q, ev = runs["checkpoint"]
    assert main(["evaluate", str(q), "--data", ev["data"], "--limit", "2"]) == 0
    assert "random" not in capsys.readouterr().out
