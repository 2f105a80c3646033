"""One layer of a real IntProgram on the computing core's Verilog (for the demo).

:func:`run_layer_rtl` picks the first pointwise convolution of the program that the core
supports (signed int8 input; see docs/hw-core.md), runs the whole program on the golden model
with the program's first sample image to get that layer's real input, crops a ``crop x crop``
window of it (a Python-driven cocotb harness runs about 60 core cycles per second, so a full
feature map would take hours), and runs the layer with its real weights, bias and epilogue on
``hw.core.Core`` (one core at the paper's N = M = T = S = 8) in cocotb. The output must equal
``sim.golden`` bit for bit; the cycle count is compared with ``sim.perf`` on the same Binary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from sim import golden
from sim.intprogram import IntProgram, TensorInfo

__all__ = ["pick_layer", "single_layer", "run_layer_rtl"]


def pick_layer(prog: IntProgram):
    """The first pointwise conv with a signed 8-bit input and no residual."""
    for n in prog.nodes:
        if n.op != "conv" or n.kind != "pointwise":
            continue
        x = prog.tensors[n.inputs[0]]
        if x.signed and x.bits == 8 and n.epilogue is not None and n.epilogue.residual is None:
            return n
    raise ValueError("no pointwise layer with a signed int8 input and no residual in this program")


def single_layer(prog: IntProgram, node, x_full: np.ndarray, crop: int):
    """A one-node IntProgram of ``node`` on the top-left ``crop x crop`` window of its input."""
    tin, tout = prog.tensors[node.inputs[0]], prog.tensors[node.output]
    h = min(crop, tin.shape[1])
    w = min(crop, tin.shape[2])
    tensors = {tin.name: TensorInfo(tin.name, (tin.shape[0], h, w), tin.bits, tin.signed, tin.scale),
               tout.name: TensorInfo(tout.name, (tout.shape[0], h, w), tout.bits, tout.signed,
                                     tout.scale)}
    one = IntProgram(tensors, [node], [tin.name], [tout.name], {"source": f"layer {node.name}"})
    return one.validate(), x_full[:, :h, :w]


def run_layer_rtl(program, *, simulator: str, out, crop: int = 4, image: str | None = None) -> dict:
    """Run one layer of ``program`` (path or IntProgram) on the core RTL; return a result dict
    (``ok`` true when the output equals golden bit for bit)."""
    from hw.core import Core
    from sim import perf, timing
    from sim.compile import compile as compile_binary
    from tb.core.cases import small_config
    from tb.rtl import REPO_ROOT, run_cocotb

    prog = program if isinstance(program, IntProgram) else IntProgram.load(program)
    node = pick_layer(prog)
    t_in = prog.tensors[prog.inputs[0]]
    if image is not None:
        x0 = np.load(image)
    else:
        from sim import zoo
        x0 = golden.quantize_input(zoo.random_image(t_in.shape[-1], seed=0), t_in)
    env = golden.run(prog, x0, keep=True)
    one, x = single_layer(prog, node, env[node.inputs[0]], crop)
    cfg = small_config(N=8, M=8, T=8, S=8)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prog_path, x_path = out / "layer.npz", out / "layer_x.npy"
    one.save(prog_path)
    np.save(x_path, x)
    run_cocotb(component=Core.from_config(cfg), name="core", test_module="tb.core.cocotb_layer",
               simulator=simulator,
               params=dict(program=str(prog_path), input=str(x_path), config=cfg.to_json(),
                           max_cycles=200_000),
               timeout_s=3600)
    runs = sorted((REPO_ROOT / "build" / "rtl" / simulator).glob(
        f"core-*/run-{os.getpid()}/layer_cycles.json"), key=lambda f: f.stat().st_mtime)
    rec = json.loads(runs[-1].read_text())
    # the Python harness's timing (registered WAIT ready, DMA in zero time): sim.timing
    model = perf.simulate(compile_binary(one, cfg), env=timing.PYTHON_HARNESS).cycles
    macs = int(np.prod(one.tensors[node.output].shape)) * one.tensors[node.inputs[0]].shape[0]
    return {"ok": True, "layer": node.name, "shape": f"{tuple(x.shape)} -> "
            f"{one.tensors[node.output].shape}", "macs": macs, "cycles": rec["cycles"],
            "perf_cycles": int(model), "cycles_over_perf": round(rec["cycles"] / model, 3)}
