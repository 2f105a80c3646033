"""The computing core's Verilog on Icarus and Verilator (cocotb), running compiled Binaries.

Each case emits ``hw.core.Core`` for the case's config, builds it (cached in build/rtl/) and runs
tb/core/cocotb_core.py: the Binary compiled by sim.compile for a one-core config runs against
the tb.core harness and the output must equal sim.golden bit for bit; the cycle count must equal
sim.perf's on the same Binary with the harness's timing (``sim.timing.PYTHON_HARNESS``: a
satisfied WAIT takes 2 cycles with the harness's registered ready, DMA takes no time), which is
also the amaranth.sim count (tests/test_hw_core.py checks it instruction by instruction).

Default: a pointwise, a depthwise, a pooling and a generic 3x3 stride-2 conv case (all three
units, the stem's tap-major im2col path) and the same conv as the dense stem (a pointwise conv
over the 27 channels of the host-unfolded input, sim.compile.stem), both simulators, in one simulation each (run_cocotb's build
cache is keyed by Verilog *and* params, so cases share a simulation rather than a build). ``-m regress``: every case of tb.core.cases.CASES on both.
"""

import json
import os

import pytest

from hw.core import Core
from sim import perf, timing
from tb.core.cases import CASES, compile_case, make_case
from tb.conftest import ICARUS_IN_REGRESS
from tb.rtl import REPO_ROOT, run_cocotb

pytestmark = pytest.mark.rtl

DEFAULT = ("pw_relu", "dw3_s2", "pool", "conv3_s2", "conv3_s2_im2col")


def _run(cases, simulator, prefetch=False, layout="planar"):
    """Run ``cases`` (same engine sizes) in one simulation; check outputs (in cocotb) and cycles
    (``prefetch``: the Binaries compiled with the cross-layer weight prefetch; ``layout``: with
    that activation layout)."""
    cfgs = {make_case(c)[1] for c in cases}
    assert len({_core_key(c) for c in cfgs}) == 1, "one engine configuration per run"
    cfg = next(iter(cfgs))
    run_cocotb(component=Core.from_config(cfg), name="core", test_module="tb.core.cocotb_core",
               simulator=simulator, params=dict(cases=list(cases), seed=0, max_cycles=20000,
                                                prefetch=prefetch, layout=layout),
               timeout_s=1800)
    # the cocotb test wrote the cycle counts into its run directory
    runs = sorted((REPO_ROOT / "build" / "rtl" / simulator).glob(
        f"core-*/run-{os.getpid()}/core_cycles.json"), key=lambda f: f.stat().st_mtime)
    rec = json.loads(runs[-1].read_text())
    assert sorted(rec) == sorted(cases)
    for case in cases:
        prog, cfg, x = make_case(case)
        model = perf.simulate(compile_case(case, prog, cfg, prefetch=prefetch, layout=layout),
                              env=timing.PYTHON_HARNESS).cycles
        got = rec[case]["cycles"]
        print(f"{case} on {simulator}: {got} cycles, sim.perf {model} (harness timing)")
        assert got == model, f"{case} on {simulator}: {got} cycles, sim.perf {model}"


def _core_key(cfg):
    """What the core's Verilog depends on among a case's config fields."""
    return (cfg.N, cfg.M, cfg.T, cfg.S, cfg.dsp_packing, cfg.requant_lanes("MAT"),
            cfg.requant_lanes("RMAC"), cfg.requant_res_lanes())


def _by_core(cases):
    """``cases`` grouped by the core they need (one simulation each)."""
    groups = {}
    for c in cases:
        groups.setdefault(_core_key(make_case(c)[1]), []).append(c)
    return list(groups.values())


def test_core_rtl(simulator):
    """A pointwise layer (MAT and R-MAC units at once), a depthwise 3x3 stride-2 layer (R-MAC
    self-accumulation), global average pooling (AUX unit) and a generic 3x3 stride-2 conv with
    padding (the stem's shape; im2col on both down-forward paths), tap-major and as the dense
    stem."""
    _run(DEFAULT, simulator)


@pytest.mark.regress
def test_core_rtl_regress(simulator):
    """Every small-config case, one simulation per simulator and core (the ``*_rq`` cases
    need a core with fewer requant lanes)."""
    for group in _by_core([c for c in CASES if not c.endswith(("8x8", "packed"))]):
        _run(group, simulator)


@pytest.mark.regress
def test_core_rtl_regress_8x8(simulator):
    """The paper's engine sizes N = M = T = S = 8."""
    _run([c for c in CASES if c.endswith("8x8")], simulator)


@pytest.mark.regress
def test_core_rtl_regress_packed(simulator):
    """DSP packing (two int8 products per multiplier) in both engines."""
    _run([c for c in CASES if c.endswith("packed")], simulator)


def test_core_rtl_attention(simulator):
    """One LiteMLA attention (2 heads): ATT_KV_RDF, ATT_KSUM, ATT_DIV, ATT_OUT through the AUX and
    DIV memories inside the core."""
    _run(("att",), simulator)


@ICARUS_IN_REGRESS
def test_core_rtl_context_module(simulator):
    """The LiteMLA context module with its activations in buffer B (sim.compile.attctx): qkv,
    the aggregation's DW output, the aggregated qkv and the attention output never leave the
    chip; output bit-exact with sim.golden, cycles equal to sim.perf's. ``litemla_ctx_pipe``
    (8x8 tokens): the qkv written in the aggregation DW's row pieces (attctx.PIPE_QKV)."""
    _run(("litemla_ctx", "litemla_ctx_pipe"), simulator)


@ICARUS_IN_REGRESS
def test_core_rtl_prefetch(simulator):
    """A LiteMLA module (qkv, DW 5x5, grouped PW, attention, projection: 8 weight groups) at
    8x8 compiled with the cross-layer weight prefetch (buffer C as one arena and weight groups
    moved up the LD queue: other C addresses, waits and LD order than without): output
    bit-exact, cycles equal to sim.perf's on that Binary."""
    _run(("litemla_8x8",), simulator, prefetch=True)


def test_core_rtl_requant_lanes(simulator):
    """Fewer requant lanes than engine lanes (tb.core.cases.REQUANT: the MAT unit drains a vector
    in 2 cycles, the R-MAC unit in 4): a pointwise layer with one step per vector (both units'
    sequencers wait for the drain), a residual one and a depthwise 3x3 stride 2 (the R-MAC waits
    between tiles); outputs bit-exact, cycles equal to sim.perf's."""
    _run(("pw_rq", "pw_residual_rq", "dw3_s2_rq"), simulator)


def test_core_rtl_residual_lanes(simulator):
    """The residual path on 1 of the R-MAC's 4 requant lanes (tb.core.cases.RES_LANES; like
    ``paper``, one requant lane per engine lane otherwise): a residual pointwise conv and a
    residual depthwise 3x3 drain through the one residual lane and wait, a plain pointwise conv
    through all four at once; outputs bit-exact, cycles equal to sim.perf's."""
    _run(("pw_residual_rr", "dw3_s1_res_rr", "pw_rr"), simulator)


def test_core_rtl_blocked(simulator):
    """Layers compiled with ``layout="blocked"`` (channel-blocked activations, the units' BLOCK
    register = 2 at B = 4): pointwise plain, with a residual, with uint8 input, a fused MBConv
    (PW, depthwise 3x3, PW + residual on one B tile), the stem (its 3-channel input a padded
    block), a global average pool and two LiteMLA attentions (every step reading BLOCK);
    outputs bit-exact, cycles equal to sim.perf's."""
    _run(("pw_relu", "pw_residual", "pw_u8_res", "mbconv", "conv3_s2", "pool_c12", "att",
          "att_d8"), simulator, layout="blocked")


def test_core_rtl_blocked_stem_block(simulator):
    """The stem block (stem 3x3 stride 2 -> DSConv, the PW adding the stem's output) compiled
    ``layout="blocked"`` with the dense stem: one fused chain on the unfolded input stored
    blocked, its 27 channels in 28 (B = 4: a pointwise conv with ``BLOCK`` whose ``CIN`` is not
    whole blocks), one residual requant lane; outputs bit-exact, cycles equal to sim.perf's."""
    _run(("stem_block_im2col",), simulator, layout="blocked")
