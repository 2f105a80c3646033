"""CoreSystem (tb.core.system: the core with DRAM, buffers, queues, semaphores and DMA in HDL) on
Icarus and Verilator: a compiled Binary runs without Python per cycle.

Each case compiles a tb.core.cases program for its one-core config with a DRAM of
:data:`DRAM` (so the DMA takes time, as on the board), builds CoreSystem for that Binary and
input, and runs tb/core/cocotb_system.py: the outputs read back from the DRAM must equal
sim.golden and sim.funcsim bit for bit (checked in cocotb), and the cycle count must be within
2 % (+ 10 cycles) of sim.perf's for the same Binary and config.

Default: the fused MBConv (MAT, R-MAC pointwise + depthwise, LD/ST DMA with several transfers
and posted signals) on both simulators. ``-m regress``: single-layer cases too.
"""

from __future__ import annotations

import pytest

from sim import compile as sc
from tb.core.cases import make_case
from tb.core.system import CoreSystem, run_system

pytestmark = pytest.mark.rtl

#: DRAM model of the tests: 16 bytes (one AXI beat) per cycle, 16 cycles latency
DRAM = dict(dram_bytes_per_cycle=16, dram_latency_cycles=16)


def system_case(name: str, **dram):
    """(program, config, input) of tb.core.cases case ``name`` with the DRAM model ``dram``
    (default :data:`DRAM`)."""
    prog, cfg, x = make_case(name)
    return prog, cfg.replace(**(dram or DRAM)), x


def _check(case, simulator, tmp_path):
    prog, cfg, x = system_case(case)
    rec = run_system(prog, cfg, x, simulator, tmp_path)
    got, model = rec["cycles"], rec["perf_cycles"]
    print(f"{case} on {simulator}: {got} cycles, sim.perf {model} ({(got - model) / model:+.1%}),"
          f" {rec['cycles_per_s']:.0f} cycles/s")
    # sim.perf times the core as built (sim.timing); the DMA model here costs about one cycle
    # more per transfer than sim.perf's, and shares the DRAM channel slightly differently
    # (docs/hw-core.md, CoreSystem): within 2 % + 10 cycles either way
    assert abs(got - model) <= 0.02 * model + 10, (got, model)


def test_system_rtl(simulator, tmp_path):
    """The fused MBConv through CoreSystem: outputs bit-exact, cycles close to sim.perf."""
    _check("mbconv", simulator, tmp_path)


@pytest.mark.regress
@pytest.mark.parametrize("case", ["pw_relu", "dw3_s2", "pool", "linear_logits", "pw_8x8",
                                  "mbconv_s2"])
def test_system_rtl_regress(case, simulator, tmp_path):
    """Single-layer cases (pointwise, depthwise, pooling, int32 logits, 8x8) and MBConv stride 2."""
    _check(case, simulator, tmp_path)


@pytest.mark.regress
@pytest.mark.parametrize("case", ["tiny_net_8x8", "tiny_net"])
def test_system_rtl_whole_network(case, tmp_path):
    """A whole network in RTL: sim.zoo.tiny up to its head's LayerNorm (the host's), 39 layers
    including two EfficientViT modules, on one core with DRAM and DMA (23k cycles at 8x8, 60k at
    4x4). Verilator only: Icarus runs CoreSystem at about 7 cycles/s."""
    _check(case, "verilator", tmp_path)


def test_system_rejects():
    """Clear errors for what CoreSystem cannot model."""
    prog, cfg, x = system_case("pw_relu")
    b = sc.compile(prog, cfg.replace(L=2))
    with pytest.raises(ValueError, match="L = 1"):
        CoreSystem(binary=b, x=x)
    b = sc.compile(prog, cfg)
    with pytest.raises(ValueError, match="dbg_bytes"):
        CoreSystem(binary=b, x=x, dbg_bytes=0)


def test_system_dma_fault():
    """A LOAD that runs past the end of its buffer raises the DMA fault bit (amaranth.sim, a few
    dozen cycles) instead of writing into the next buffer."""
    import copy

    from amaranth.sim import Simulator

    from tb.core.system import FAULTS

    prog, cfg, x = system_case("pw_relu")
    b = copy.deepcopy(sc.compile(prog, cfg))
    ld = next(i for i in b.streams["global"] if i.op == "LOAD")
    size = getattr(cfg, {0: "buf_b_bytes", 1: "buf_c_bytes", 2: "buf_out_bytes"}[ld["buf"]])
    ld.f["buf_addr"] = size - ld["count"] * ld["length"] + 1      # one byte too far
    dut = CoreSystem(binary=b, x=x)
    seen = {}

    async def bench(ctx):
        for _ in range(200):
            await ctx.tick()
            if ctx.get(dut.fault):
                break
        seen["fault"] = ctx.get(dut.fault)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["fault"] == 1 << FAULTS.index(
        "DMA access past the end of a buffer or of the DRAM image")
