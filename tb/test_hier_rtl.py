"""The accelerator's hierarchical Verilog (``hw.hier``: the core and the global buffers as
modules of their own, what ``python -m hw build zcu102`` writes) on both simulators, and the
same logic as the flat Verilog: ``sim.zoo.tiny`` through both on Verilator gives the same
outputs (each bit-exact with ``sim.golden`` and ``sim.funcsim``, checked inside the cocotb test)
and the same performance counters, cycle for cycle."""

import pytest

from hw.system.regmap import ErrCode
from sim import golden, zoo
from sim.config import PRESETS
from tb.system.run import run_accelerator

SMALL = PRESETS["small"]


def _tiny(seed=3):
    prog = zoo.tiny()
    img = zoo.random_image(prog.tensors[prog.inputs[0]].shape[-1], seed=seed)
    return prog, golden.quantize_input(img, prog.tensors[prog.inputs[0]])


@pytest.mark.rtl
@pytest.mark.slow
def test_hierarchical_accelerator_stops_on_an_illegal_opcode(tmp_path, simulator):
    """A short run of the hierarchical Verilog on each simulator: the LD queue's second word
    is corrupted, the error is read through the register block (code, queue, index)."""
    prog, x = _tiny()
    rec = run_accelerator(prog, SMALL.replace(L=1), x, simulator, tmp_path,
                          case="illegal_opcode", hierarchy=True)
    assert rec["status"] == "error" and rec["err_code"] == ErrCode.ILLEGAL_OPCODE, rec
    assert rec["err_queue"] == 0 and rec["err_pc"] == 1, rec


@pytest.mark.rtl
@pytest.mark.slow
def test_cluster_accelerator_stops_on_an_illegal_opcode(tmp_path, simulator, monkeypatch):
    """The same short run with the cores and the buffers as one ``trio_cluster`` written as
    Verilog directly (``hw.system.cluster``, the ``paper`` path; here forced at ``small:L=1``
    by lowering the Instance limit to 2,048 bits)."""
    import hw.hier as hier
    import hw.system.accelerator as accmod
    monkeypatch.setattr(accmod, "MAX_INSTANCE_OUTPUT_BITS", 2048)
    monkeypatch.setattr(hier, "MAX_INSTANCE_OUTPUT_BITS", 2048)
    prog, x = _tiny()
    rec = run_accelerator(prog, SMALL.replace(L=1), x, simulator, tmp_path,
                          case="illegal_opcode", hierarchy=True)
    assert rec["status"] == "error" and rec["err_code"] == ErrCode.ILLEGAL_OPCODE, rec
    assert rec["err_queue"] == 0 and rec["err_pc"] == 1, rec


@pytest.mark.rtl
@pytest.mark.regress
@pytest.mark.parametrize("L", [1, 2])
def test_hierarchical_equals_flat_on_the_tiny_network(tmp_path, L):
    """The whole sim.zoo.tiny through the flat and the hierarchical Verilog (Verilator): both
    bit-exact, every performance counter equal."""
    prog, x = _tiny()
    recs = {}
    for hier in (False, True):
        work = tmp_path / ("hier" if hier else "flat")
        work.mkdir()
        recs[hier] = run_accelerator(prog, SMALL.replace(L=L), x, "verilator", work,
                                     hierarchy=hier)
        assert recs[hier]["status"] == "done" and recs[hier]["host_requests"] == 1
    assert recs[True]["counters"] == recs[False]["counters"]


@pytest.mark.rtl
@pytest.mark.regress
def test_cluster_equals_instances_on_the_tiny_network(tmp_path, monkeypatch, simulator):
    """The cores and the global buffers as one module ``trio_cluster`` written as Verilog
    directly (``hw.system.cluster``: what ``paper``'s buffers, too wide for an Instance, take;
    here forced at ``small:L=1`` by lowering the limit to 2,048 bits) against the accelerator as
    built (``trio_buffers`` converted by Amaranth): ``sim.zoo.tiny`` through
    ``tb.system.fast`` on both, each bit-exact with ``sim.golden`` and ``sim.funcsim`` (inside
    the cocotb test), every performance counter equal."""
    import hw.hier as hier
    import hw.system.accelerator as accmod
    from sim import compile as sc
    from tb.system.fast import run_fast
    prog, x = _tiny()
    binary = sc.compile(prog, SMALL.replace(L=1))
    recs = {}
    for cluster in (False, True):
        if cluster:
            monkeypatch.setattr(accmod, "MAX_INSTANCE_OUTPUT_BITS", 2048)
            monkeypatch.setattr(hier, "MAX_INSTANCE_OUTPUT_BITS", 2048)
        work = tmp_path / ("cluster" if cluster else "instances")
        recs[cluster] = run_fast(binary, x, simulator, work, latency=16)
        assert recs[cluster]["status"] == "done" and recs[cluster]["host_requests"] == 1
    assert recs[True]["counters"] == recs[False]["counters"]
