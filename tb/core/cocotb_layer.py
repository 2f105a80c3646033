"""cocotb test of hw.core.Core on one layer given by file (used by ``tb.layer_rtl``).

params: ``program`` (single-layer IntProgram .npz), ``input`` (.npy), ``config`` (AccelConfig
as JSON), ``max_cycles``. Writes ``layer_cycles.json`` into the run directory.
"""

import json

import cocotb
import numpy as np

from sim.config import AccelConfig
from sim.intprogram import IntProgram
from tb.core.cocotb_core import run_program
from tb.rtl import params
from tb.units.stream import start_clock


@cocotb.test()
async def core_runs_layer(dut):
    p = params()
    prog = IntProgram.load(p["program"])
    cfg = AccelConfig.from_string(p["config"])
    x = np.load(p["input"])
    await start_clock(dut)
    res = await run_program(dut, prog.nodes[0].name, prog, cfg, x, max_cycles=p["max_cycles"])
    with open("layer_cycles.json", "w") as f:
        json.dump(res, f)
