"""cocotb test of hw.core.Core: run compiled single-layer Binaries on the emitted Verilog.

params: cases (names of tb.core.cases.CASES, all for the same engine sizes), seed,
max_cycles, prefetch (compiled with ``sim.compile``'s cross-layer weight prefetch), layout
(``sim.compile``'s activation layout, ``planar`` or ``blocked``). Each Binary is rebuilt here from its case (compilation is deterministic);
tb.core.harness.CoreEnv plays the DMA units, buffers and semaphores. Every cycle the core's
outputs are read at the falling edge (stable), the environment computes the next inputs and
they are written just after the rising edge. The core is reset between cases. Each case's DRAM
output must equal sim.golden bit for bit; the cycle counts go to ``core_cycles.json`` in the
run directory.
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from sim import golden
from tb.core.cases import compile_case, make_case
from tb.core.icarus import kick_comb_blocks
from tb.core.harness import CoreEnv
from tb.rtl import params
from tb.units.stream import start_clock


#: core outputs that must never read X or Z after reset, on any simulator: an X there would
#: read as 0 (no error, not halted) and hide a failure
STATUS = ("halted", "error")


def _read(h, n, x_reads):
    v = h.value
    if v.is_resolvable:
        return int(v)
    # read X/Z as 0 and count it; check_x_reads decides afterwards which counts are allowed
    x_reads[n] = x_reads.get(n, 0) + 1
    return int(str(v).lower().replace("x", "0").replace("z", "0"), 2)


def check_x_reads(case, x_reads):
    """Verilator is two-state: no X/Z read at all. Icarus (four-state) may leave an
    ``always @*`` output X until one of its inputs first changes (a time-0 artefact that
    tb.core.icarus.kick_comb_blocks mostly removes); a data or address output read as 0 would
    still show in the bit-exact output check, but the status outputs (STATUS) must never be X."""
    if cocotb.SIM_NAME.lower().startswith("verilator"):
        assert not x_reads, f"{case}: X/Z read on Verilator: {x_reads}"
    bad = {n: c for n, c in x_reads.items() if n in STATUS}
    assert not bad, f"{case}: status outputs read X/Z after reset: {bad}"


async def run_case(dut, case, p):
    prog, cfg, x = make_case(case, p.get("seed", 0))
    return await run_program(dut, case, prog, cfg, x, max_cycles=p.get("max_cycles", 100_000),
                             prefetch=p.get("prefetch", False),
                             layout=p.get("layout", "planar"))


async def run_program(dut, case, prog, cfg, x, *, max_cycles: int, prefetch=False,
                      layout="planar", stem=None):
    """Compile ``prog`` for ``cfg`` (``prefetch``, ``layout``, ``stem``: :func:`sim.compile.
    compile`'s options; ``stem=None``: the case's, :func:`tb.core.cases.compile_case`), run it
    on the core from reset with input ``x``, check the output against sim.golden and return the
    cycle count (and the Icarus X-read count)."""
    binary = compile_case(case, prog, cfg, prefetch=prefetch, layout=layout,
                          **({} if stem is None else dict(stem=stem)))
    env = CoreEnv(binary, x)
    names = env.sampled_names()
    handles = {n: getattr(dut, n) for n in names}
    drive = {n: getattr(dut, n) for n in env.driven()}
    x_reads = {}
    for n, v in env.driven().items():
        drive[n].value = v
    # Icarus: evaluate every always @* block once (a block whose inputs never change would
    # otherwise keep X outputs for the whole run, see tb.core.icarus)
    await kick_comb_blocks(dut)
    dut.rst.value = 1
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    while True:
        await FallingEdge(dut.clk)
        s = {n: _read(h, n, x_reads) for n, h in handles.items()}
        if s["halted"] == 0b111 and env.done():
            break
        assert env.cycle < max_cycles, f"{case}: core did not finish"
        nxt = env.edge(s)
        await RisingEdge(dut.clk)
        for n, v in nxt.items():
            drive[n].value = v
    check_x_reads(case, x_reads)
    out = env.outputs()[prog.outputs[0]]
    ref = golden.run(prog, x)[prog.outputs[0]]
    bad = np.argwhere(out != ref)
    assert bad.size == 0, f"{case}: {len(bad)} outputs differ from golden, first at {bad[0].tolist()}"
    dut._log.info(f"{case}: {env.cycle} cycles, output == golden; X reads {x_reads}")
    return {"cycles": env.cycle, "x_reads": x_reads,
            "spans": [list(s) for s in env.compute_spans()]}


@cocotb.test()
async def core_runs_binaries(dut):
    p = params()
    await start_clock(dut)
    results = {}
    for case in p["cases"]:
        results[case] = await run_case(dut, case, p)
    with open("core_cycles.json", "w") as f:
        json.dump(results, f)
