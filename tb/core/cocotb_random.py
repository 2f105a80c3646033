"""cocotb test of hw.core.Core on random programs given by file (``tb/test_random_rtl.py``).

params: ``programs`` (a list of ``[IntProgram .npz, input .npy]``), ``config`` (AccelConfig as
JSON), ``max_cycles``. Each program runs from reset through tb.core.cocotb_core.run_program
(output == sim.golden bit for bit, no X on the status outputs); ``random_cycles.json`` in the run
directory gets the cycle counts.
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
async def core_runs_random_programs(dut):
    p = params()
    cfg = AccelConfig.from_string(p["config"])
    await start_clock(dut)
    results = []
    for prog_path, x_path in p["programs"]:
        prog = IntProgram.load(prog_path)
        res = await run_program(dut, prog_path, prog, cfg, np.load(x_path),
                                max_cycles=p["max_cycles"], stem=p.get("stem"))
        results.append(res["cycles"])
    with open("random_cycles.json", "w") as f:
        json.dump(results, f)
