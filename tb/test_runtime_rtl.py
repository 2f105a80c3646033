"""The board runtime (``runtime.run``) against the RTL accelerator (``tb.system.cocotb_runtime``).

The exact code that runs on the ZCU102 (``runtime.Accelerator``: check, load, start, wait with
the host's LayerNorm, outputs, counters) runs here through
:class:`runtime.cocotb_device.CocotbDevice`: ``sim.zoo.tiny`` at L = 1, bit-exact with
``sim.golden``, the counters equal the registers and the Binary's transfers; a Binary for
another config is refused and a too-short timeout is reported. Same config and Accelerator as
``tb/test_accelerator_rtl.py::test_tiny_network[1]``, so the Verilator build is shared.
"""

import json
import os

import numpy as np
import pytest

from sim import compile as sc
from sim import golden, zoo
from sim.config import PRESETS
from tb.rtl import REPO_ROOT, run_cocotb
from tb.system.run import accelerator_for

SMALL_L1 = PRESETS["small"].replace(L=1)


def _run(tmp_path, simulator, **extra):
    prog = zoo.tiny()
    t = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(t.shape[-1], seed=3), t)
    binary = sc.compile(prog, SMALL_L1)
    bad = sc.compile(prog, SMALL_L1.replace(L=2))
    paths = {k: tmp_path / f"{k}.npz" for k in ("binary", "bad_binary")}
    binary.save(paths["binary"])
    bad.save(paths["bad_binary"])
    np.save(tmp_path / "x.npy", x)
    if extra.pop("bad_binary", False):
        extra["bad_binary"] = str(paths["bad_binary"])
    run_cocotb(component=accelerator_for(SMALL_L1, binary), name="accelerator",
               test_module="tb.system.cocotb_runtime", simulator=simulator, timeout_s=1800,
               params=dict(binary=str(paths["binary"]), input=str(tmp_path / "x.npy"),
                           **extra))
    runs = sorted((REPO_ROOT / "build" / "rtl" / simulator).glob(
        f"accelerator-*/run-{os.getpid()}/runtime.json"), key=lambda f: f.stat().st_mtime)
    return json.loads(runs[-1].read_text()), paths


@pytest.mark.rtl
@pytest.mark.slow
def test_runtime_runs_tiny_network_on_rtl(tmp_path):
    rec, paths = _run(tmp_path, "verilator", bad_binary=True, short_timeout_s=1e-6)
    assert rec["status"] == "done" and rec["host_requests"] == 1
    assert "another config" in rec["bad_binary"] and "\n" not in rec["bad_binary"]
    assert rec["timeout"].startswith("timeout") and "\n" not in rec["timeout"]
    print(f"\nruntime on RTL: {rec['counters']}")


@pytest.mark.rtl
@pytest.mark.regress
def test_runtime_polling_on_rtl(tmp_path, simulator):
    rec, _ = _run(tmp_path, simulator, poll=True)
    assert rec["status"] == "done" and rec["host_requests"] == 1
