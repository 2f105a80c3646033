"""Issue #17: every expected failure of a `python -m quant` command is one line on stderr naming
the file or the cause, exit status 2, and nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "quant", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                                       "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    (d / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"a": torch.zeros(2)}, d / "wrongkeys.pt")
    torch.save([1, 2], d / "list.pt")
    (d / "trunc.qmodel").write_bytes((d / "wrongkeys.pt").read_bytes()[:100])
    torch.save({"format": "trio-vit.qmodel", "version": 2}, d / "partial.qmodel")
    torch.save({"format": "trio-vit.qmodel", "version": 1}, d / "old.qmodel")
    return d


# (arguments, a word the message must contain); -o o.qmodel / x.npz must not appear
CASES = [
    (["quantize", "--model", "b0-r64", "--checkpoint", "junk.pt", "-o", "o.qmodel"], "junk.pt"),
    (["quantize", "--model", "b0-r64", "--checkpoint", "wrongkeys.pt", "-o", "o.qmodel"], "wrongkeys.pt"),
    (["quantize", "--model", "b0-r64", "--checkpoint", "list.pt", "-o", "o.qmodel"], "list.pt"),
    (["quantize", "--model", "b0-r64", "--checkpoint", "missing.pt", "-o", "o.qmodel"], "missing.pt"),
    (["quantize", "--model", "b7", "-o", "o.qmodel"], "b7"),
    (["quantize", "--model", "b0-r65", "-o", "o.qmodel"], "multiple of 32"),
    (["quantize", "--model", "b0-r64", "--w-bits", "12", "-o", "o.qmodel"], "w_bits"),
    (["quantize", "--model", "b0-r64", "--calib-size", "0", "-o", "o.qmodel"], "--calib-size"),
    (["quantize", "--model", "b0-r64", "--batch-size", "x", "-o", "o.qmodel"], "--batch-size"),
    (["quantize", "--model", "b0-r64", "--device", "nodevice", "-o", "o.qmodel"], "--device"),
    (["quantize", "--model", "b0-r64", "--recon-p", "-1", "-o", "o.qmodel"], "reconstruction.p "),
    (["quantize", "--model", "b0-r64", "--warmup", "2", "-o", "o.qmodel"], "reconstruction.warmup"),
    (["quantize", "--model", "b0-r64", "--data", "nope", "-o", "o.qmodel"], "nope"),
    (["quantize", "--model", "b0-r64", "-o", "junk.pt/o.qmodel"], "junk.pt"),
    (["quantize", "--model", "b0-r64", "--bogus", "-o", "o.qmodel"], "--bogus"),
    (["quantize", "--model", "b0-r64"], "--output"),
    (["frobnicate"], "frobnicate"),
    (["evaluate", "trunc.qmodel"], "trunc.qmodel"),
    (["evaluate", "partial.qmodel"], "partial.qmodel"),
    (["evaluate", "old.qmodel"], "version"),
    (["evaluate", "junk.pt"], "junk.pt"),
    (["export", "missing.qmodel", "-o", "x.npz"], "missing.qmodel"),
    (["export", "trunc.qmodel", "-o", "x.npz"], "trunc.qmodel"),
    (["ablation", "--model", "b0-r64"], "--synthetic"),
    (["ablation", "--model", "b0-r64", "--synthetic", "--eval-size", "0"], "--eval-size"),
    (["ablation", "--model", "b0-r64", "--checkpoint", "junk.pt", "--debug"], "junk.pt"),
    (["ablation", "--model", "b0-r64", "--synthetic", "--injection", "bogus"], "--injection"),
]


@pytest.mark.parametrize("args,word", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_quant_failure_is_one_line_exit_2(files, args, word):
    before = sorted(p.name for p in files.iterdir())
    r = run(*args, cwd=files)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert word in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert sorted(p.name for p in files.iterdir()) == before        # nothing (half-)written
