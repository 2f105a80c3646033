"""Layer cases and whole networks through the real accelerator with its DRAM in HDL.

Each case compiles a ``tb.core.cases`` program for its one-core config (L = 1) with the DRAM
model :data:`DRAM`, and runs it through ``tb.system.fast.FastSystem`` (``hw.system.Accelerator``
with ``tb.system.axi_mem.AxiMemory`` as the DDR, the board runtime as the CPU): the outputs
must equal ``sim.golden`` and ``sim.funcsim`` bit for bit (checked inside the cocotb test) and
the accelerator's ``CYCLES`` counter must be within the bound below of ``sim.perf``'s count for
the same Binary (AXI-level DMA, ``sim.timing.AXI_SYSTEM``, at the memory's read latency).

Default: the fused MBConv (MAT, R-MAC pointwise + depthwise, LD/ST DMA with several transfers)
on both simulators. ``-m regress``: single-layer cases and whole networks (Verilator).
"""

from __future__ import annotations

import pytest

from tb.core.cases import compile_case, make_case
from tb.system.fast import run_fast

pytestmark = pytest.mark.rtl

#: the DRAM of the tests: one 16-byte AXI beat per cycle, 16 cycles read latency (the memory's
#: ``latency``, and ``sim.perf``'s)
DRAM = dict(dram_bytes_per_cycle=16, dram_latency_cycles=16)


#: cases whose cycle count is known to lie outside the bound (outputs still bit-exact, asserted
#: before): what sim.perf's AXI model misses there (docs/hw-core.md); xfail only for the cycles
MODEL_GAPS = {
    "tiny_net_8x8": "+6.5 % measured; likely (not verified): at 8x8 the network waits on "
                    "instruction fetch and DMA more than sim.perf's AXI model charges (one "
                    "read beat per instruction, no queue refills)",
}


def system_case(name: str, **dram):
    """(Binary, input) of tb.core.cases case ``name`` with the DRAM model ``dram``
    (default :data:`DRAM`)."""
    prog, cfg, x = make_case(name)
    return compile_case(name, prog, cfg.replace(**(dram or DRAM))), x


def _check(case, simulator, tmp_path):
    binary, x = system_case(case)
    rec = run_fast(binary, x, simulator, tmp_path, latency=binary.cfg.dram_latency_cycles)
    got, model = rec["cycles"], rec["perf_cycles"]
    print(f"\n{case} on {simulator}: {got} cycles, sim.perf {model} "
          f"({(got - model) / model:+.1%}), {rec['cycles_per_s']:.0f} cycles/s")
    # docs/system.md, "The DRAM in HDL": sim.perf's AXI-level model against the accelerator,
    # within 3 % plus a fixed 250 cycles (start, the dispatcher's first fetches, the last
    # store's response: what dominates a layer of a few hundred cycles)
    within = abs(got - model) <= 0.03 * model + 250
    if not within and case in MODEL_GAPS:
        pytest.xfail(f"{case}: outputs bit-exact; {got} cycles vs sim.perf {model}: "
                     f"{MODEL_GAPS[case]}")
    assert within, (got, model)
    return rec


def test_system_rtl(simulator, tmp_path):
    """The fused MBConv through the accelerator: outputs bit-exact, cycles close to sim.perf."""
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
    """A whole network: sim.zoo.tiny up to its head's LayerNorm, 39 layers including two
    EfficientViT modules, on one core. Verilator only (Icarus runs the accelerator at tens of
    cycles per second)."""
    _check(case, "verilator", tmp_path)
