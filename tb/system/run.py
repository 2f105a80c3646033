"""Run a network through the whole accelerator's RTL (``hw.system.Accelerator``) in cocotb.

``run_accelerator(prog, cfg, x, simulator, workdir)`` compiles ``prog`` for ``cfg``, builds the
accelerator's Verilog for ``cfg`` (one build per config and simulator, whatever the Binary:
nothing of the Binary is in the bitstream), runs ``tb.system.cocotb_accel`` (the CPU and the DDR
as cocotbext-axi models) and returns its record (status, error code, performance counters, wall
time) with ``perf_cycles``, the cycle model's count for the same Binary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["run_accelerator", "accelerator_for"]


def accelerator_for(cfg, binary=None, **kw):
    """The Accelerator for ``cfg``, with a semaphore file large enough for ``binary``."""
    from hw.system.accelerator import Accelerator
    from sim.funcsim import build_queues
    sems = kw.pop("sems", None)
    if sems is None:
        used = [i["sem"] for v in build_queues(binary).values() for i, _ in v
                if i.op in ("WAIT", "SIGNAL")] if binary is not None else [0]
        sems = max(64, 1 << max(used).bit_length())
    return Accelerator(config=cfg, sems=sems, **kw)


def run_accelerator(prog, cfg, x, simulator: str, workdir, *, case: str = "run",
                    pause: bool = False, seed: int = 1, timeout_s: float = 3600,
                    sems: int | None = None, extra: dict | None = None) -> dict:
    from sim import compile as sc
    from sim import perf
    from tb.rtl import REPO_ROOT, run_cocotb

    workdir = Path(workdir)
    binary = sc.compile(prog, cfg)
    bpath, xpath = workdir / "binary.npz", workdir / "x.npy"
    binary.save(bpath)
    np.save(xpath, np.asarray(x))
    acc = accelerator_for(cfg, binary, sems=sems)
    name = "accelerator"
    run_cocotb(component=acc, name=name, test_module="tb.system.cocotb_accel",
               simulator=simulator, timeout_s=timeout_s, seed=seed,
               params=dict(binary=str(bpath), input=str(xpath), case=case, pause=pause,
                           seed=seed, **(extra or {})))
    runs = sorted((REPO_ROOT / "build" / "rtl" / simulator).glob(
        f"{name}-*/run-{os.getpid()}/accel.json"), key=lambda f: f.stat().st_mtime)
    rec = json.loads(runs[-1].read_text())
    rec["perf_cycles"] = int(perf.simulate(binary).cycles)
    return rec
