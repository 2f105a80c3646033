"""``compile(..., stream=True)`` (sim.compile.streaming): the first layers' and the last
layers' buffer regions are disjoint, checked on the byte ranges every instruction really
touches (sim.stream.footprints, from the functional simulator, not from the compiler's plan),
rounded to the blocks of the frame-fence rule; every such Binary runs like sim.golden in both
unit orders; and with the option off the compiler never enters the pass."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from sim import golden, zoo
from sim.compile import CompileError, compile as compile_
from sim.compile import pipeline, schedule
from sim.config import AccelConfig
from sim.funcsim import build_queues
from sim.isa import BUFS
from sim.stream import BUF_BLOCK, DRAM_BLOCK, fence_counts, footprints, frame_hazards
from tb.core.random_programs import cases
from test_funcsim import Builder
from test_random_programs import CAPACITY
from testprogs import assert_runs_like_golden, program_cache, tiny_with_input

PAPER = AccelConfig.from_string("paper")
SMALL = AccelConfig.from_string("small")


def _head_net(seed=0):
    """A stem at 16x16, an MBConv (fused chain), a stage of resident PW layers at 8x8, then a
    head like EfficientViT's: PW, pool, linear, LayerNorm, linear."""
    b = Builder(seed)
    x = b.input("x", (3, 16, 16))
    s = b.conv("stem", x, 16, k=3, s=2, p=1, act="hswish")
    e = b.conv("e", s, 48, act="hswish")
    d = b.conv("d", e, 48, k=3, s=1, p=1, act="hswish", dw=True)
    y = b.conv("y", d, 16, residual=s)
    w = b.conv("wide", y, 64, act="hswish")
    n = b.conv("narrow", w, 32)
    h = b.conv("head", n, 96, act="hswish")
    o = b.pool("pool", h)
    f = b.linear("fc1", o, 80, act="none")
    ln = b.layernorm("ln", f)
    b.linear("fc2", ln, 10, epilogue=False)
    prog = b.prog()
    return prog, b.env[prog.inputs[0]]


PROGRAMS = {"head_net": _head_net, "tiny": tiny_with_input}
_prog = program_cache(PROGRAMS)


RUNS = {"head_net-small": ("head_net", SMALL), "head_net-paper": ("head_net", PAPER),
        "tiny-small": ("tiny", SMALL), "tiny-paper": ("tiny", PAPER)}


def _phase_of(b_stream, b):
    """Layer index of ``b`` -> the phase ``b_stream`` (compiled with stream=True) gave the node
    of the same name."""
    by_name = {ly["name"]: ly["phase"] for ly in b_stream.layers}
    return {i: by_name[ly["name"]] for i, ly in enumerate(b.layers)}


def _cross_conflicts(b, phase):
    """``[(mem, block)]``: blocks (16 bytes on chip, 64 in DRAM, as the fence rule rounds)
    that a front instruction and a tail instruction both touch, at least one of them writing;
    from the footprints of every instruction of ``b``."""
    fp = footprints(b)
    q = build_queues(b)
    touched = {}              # (phase, mem) -> (accessed blocks, written blocks)
    for k, per in fp.items():
        for pc, acc in enumerate(per):
            ph = phase.get(q[k][pc][1])
            if ph not in ("front", "tail"):
                continue
            for mem, lo, hi, w in acc:
                blk = DRAM_BLOCK if mem == "DRAM" else BUF_BLOCK
                a, r = touched.setdefault((ph, mem), (set(), set()))
                rng = range(lo // blk, -(-hi // blk))
                a.update(rng)
                if w:
                    r.update(rng)
    out = []
    mems = {m for _, m in touched}
    for m in mems:
        fa, fw = touched.get(("front", m), (set(), set()))
        ta, tw = touched.get(("tail", m), (set(), set()))
        out += [(m, x) for x in sorted((fw & ta) | (tw & fa))]
    return out


@pytest.mark.parametrize("run_id", sorted(RUNS))
def test_front_and_tail_regions_are_disjoint(run_id):
    name, cfg = RUNS[run_id]
    prog, _ = _prog(name)
    b = compile_(prog, cfg, stream=True)
    phase = {i: ly["phase"] for i, ly in enumerate(b.layers)}
    assert {"front", "tail"} <= set(phase.values()), phase
    assert _cross_conflicts(b, phase) == []
    # ... and so no frame fence of a front instruction waits for a tail one
    assert fence_counts(b)["front_tail"] == 0
    # without the option the same layers share buffer blocks: the check can fail
    plain = compile_(prog, cfg)
    pp = _phase_of(b, plain)
    assert _cross_conflicts(plain, pp) != []
    assert fence_counts(plain, frame_hazards(plain), pp)["front_tail"] > 0


@pytest.mark.parametrize("run_id", sorted(RUNS))
def test_stream_binaries_run_like_golden(run_id):
    name, cfg = RUNS[run_id]
    prog, x = _prog(name)
    b = compile_(prog, cfg, stream=True)
    assert_runs_like_golden(b, prog, x)


def test_phases_respect_chains_and_resident_tensors():
    """A boundary never splits a fused chain or a tensor kept on chip from its readers; the
    tail starts after the last layer with a feature-map output; the front is not empty."""
    for name, cfg in RUNS.values():
        prog, _ = _prog(name)
        b = compile_(prog, cfg, stream=True)
        ph = [ly["phase"] for ly in b.layers]
        pos = {ly["name"]: i for i, ly in enumerate(b.layers)}
        assert ph[0] == "front" and ph[-1] == "tail"
        assert ph == sorted(ph, key=["front", "middle", "tail"].index)     # in this order
        for i, ly in enumerate(b.layers):
            if "fused_into" in ly:
                assert ph[i] == ph[pos[ly["fused_into"]]], ly
        readers = {}
        for i, n in enumerate(prog.nodes):
            res = [n.epilogue.residual] if n.epilogue is not None and n.epilogue.residual \
                else []
            for t in list(n.inputs) + res:
                readers.setdefault(t, []).append(i)
        for i, n in enumerate(prog.nodes):
            if b.layers[i].get("on_chip") and "fused_into" not in b.layers[i]:
                assert all(ph[j] == ph[i] for j in readers.get(n.output, [])), n.name
        fmap = max(i for i, n in enumerate(prog.nodes)
                   if n.op != "concat" and len(prog.tensors[n.output].shape) == 3
                   and prog.tensors[n.output].shape[1:] != (1, 1))
        # the tail starts after the last feature map, later only past tensors kept on chip
        # (head_net: the head conv's output stays in B for the pool, which joins the middle)
        tail = ph.index("tail")
        assert tail >= fmap + 1
        for t in range(fmap + 1, tail):
            assert any(b.layers[i].get("on_chip") and max(readers.get(n.output, [0])) >= t
                       for i, n in enumerate(prog.nodes[:t])), (name, t)


def test_option_off_never_enters_the_pass(monkeypatch):
    """stream=False (the default) neither plans phases nor changes slots: the Binary is the
    one the compiler gave before the pass existed (the pass is the only caller of both)."""
    prog, _ = _prog("tiny")
    on = compile_(prog, PAPER, stream=True)

    def boom(*a, **k):
        raise AssertionError("the streaming pass ran with stream=False")
    monkeypatch.setattr(pipeline, "plan_stream", boom)
    monkeypatch.setattr(schedule.Scheduler, "use_regions", boom)
    off = compile_(prog, PAPER, stream=False)
    dflt = compile_(prog, PAPER)
    assert off.streams == dflt.streams and np.array_equal(off.dram, dflt.dram)
    assert not any("phase" in ly for ly in off.layers)
    assert off.streams != on.streams


def test_bad_options_are_refused():
    prog, _ = _prog("tiny")
    with pytest.raises(ValueError, match="stream must be True or False"):
        compile_(prog, PAPER, stream="yes")


def test_a_program_without_a_middle_is_a_compile_error():
    """conv -> pool -> linear: the tail (pool, linear) reads the conv's output, so no front can
    be cut whose writes frame k's tail does not still read; compiling says so in one line."""
    b = Builder(0)
    x = b.input("x", (8, 4, 4))
    c = b.conv("c", x, 16, act="relu")
    o = b.pool("pool", c)
    b.linear("fc", o, 10, epilogue=False)
    with pytest.raises(CompileError, match="no front/tail split"):
        compile_(b.prog(), SMALL, stream=True)
    compile_(b.prog(), SMALL)          # (it compiles without the option)


def test_cli_compile_and_table7_take_stream(tmp_path):
    from sim.__main__ import main
    from sim.compile import Binary
    prog, _ = _prog("tiny")
    src, out = tmp_path / "tiny.npz", tmp_path / "tiny.bin.npz"
    prog.save(src)
    assert main(["compile", str(src), "--config", "paper", "--stream", "-o", str(out)]) in (0, None)
    b = Binary.load(out)
    assert {ly["phase"] for ly in b.layers} == {"front", "middle", "tail"}
    assert main(["table7", "--models", "b0-r64", "--frames", "2", "--stream", "--contexts",
                 "2", "--json"]) in (0, None)


def test_cli_stream_flag():
    r = subprocess.run([sys.executable, "-m", "sim", "perf", "--model", "b0-r64", "--config",
                        "paper", "--frames", "2", "--contexts", "2", "--stream", "--no-layers"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "frame fences" in r.stdout and "front_tail 0" in r.stdout


@pytest.mark.regress
@pytest.mark.parametrize("model,cfg_name", [("b0-r224", "paper"), ("b1-r224", "paper"),
                                            ("b2-r224", "paper"), ("b1-r224", "zcu102")])
def test_zoo_models_with_stream_run_like_golden(model, cfg_name):
    """Whole zoo models compiled with stream=True (on `zcu102` with its default weight
    prefetch arena): funcsim == golden in both unit orders, and no front/tail block shared
    (about 1 min per model and order for B1-R224). Today's schedules (stem block, pointwise
    chains, context modules on chip, pool input kept in B) compile without refusal."""
    prog = zoo.build(model, seed=0)
    x = golden.quantize_input(zoo.random_image(224, seed=2), prog.tensors[prog.inputs[0]])
    b = compile_(prog, AccelConfig.from_string(cfg_name), stream=True)
    assert _cross_conflicts(b, {i: ly["phase"] for i, ly in enumerate(b.layers)}) == []
    assert_runs_like_golden(b, prog, x)


def test_ld_priority_youngest_issues_the_next_frames_loads_first():
    """sim.perf's 2-context what-if with ``ld_priority="youngest"``: each context still issues
    its own queue in order, the interleaving of the frames at the LD unit differs from the
    oldest-first one; without contexts it changes nothing."""
    from sim.perf import simulate
    prog, _ = _prog("tiny")
    b = compile_(prog, PAPER, stream=True)
    ld = {}
    for pr in ("oldest", "youngest"):
        tr = []
        simulate(b, frames=3, contexts=2, ld_priority=pr, trace=tr)
        ld[pr] = [e for e in tr if e[:2] == ("global", "LD")]
    assert [e[6] for e in ld["youngest"]] != [e[6] for e in ld["oldest"]]
    q = [i.op for i, _ in build_queues(b)[("global", "LD")]]
    for f in range(3):
        assert [e[2] for e in ld["youngest"] if e[6] == f] == q
    assert simulate(b, frames=2, ld_priority="youngest").frame_done == \
        simulate(b, frames=2).frame_done
    with pytest.raises(ValueError, match="ld_priority"):
        simulate(b, frames=2, contexts=2, ld_priority="newest")


@pytest.mark.parametrize("run_id", sorted(RUNS))
def test_phase_fences_cover_every_exact_fence(run_id):
    """The two coarse fences per queue (sim.stream.phase_fences) imply every exact frame fence
    of sim.stream.frame_hazards: for each exact (writer, earlier-frame instruction) pair, the
    writer's queue has a coarse fence at or before it whose targets include, in the other
    queue, an instruction at or after the exact one."""
    from sim.stream import phase_fences
    name, cfg = RUNS[run_id]
    prog, _ = _prog(name)
    b = compile_(prog, cfg, stream=True)
    coarse = phase_fences(b)
    assert sum(len(d) for d in coarse.values()) <= 2 * len(coarse)
    n = 0
    for k, d in frame_hazards(b).items():
        fences = sorted(coarse[k].items())
        for pc, lst in d.items():
            before = [dict(t) for p, t in fences if p <= pc]
            assert before, (k, pc)
            for other, opc in lst:
                assert any(t.get(other, -1) >= opc for t in before), (k, pc, other, opc)
                n += 1
    assert n > 0
    with pytest.raises(ValueError, match="stream=True"):
        phase_fences(compile_(prog, cfg))


def test_plan_lists_what_crosses_when_every_cut_does():
    """When every front boundary crosses something kept on chip, plan_stream still cuts (the
    first legal boundary at or after the covering prefix) and lists exactly what crosses it
    in ``cut``, for the pipeline to degrade; with nothing kept, ``cut`` is empty."""
    from sim.compile.streaming import _spans, plan_stream
    prog, _ = _prog("head_net")
    names = [n.name for n in prog.nodes]
    tail = names.index("fc1")
    keep = {n.output: False for n in prog.nodes[:names.index("pool")]}   # every cut crossed
    plan = plan_stream(prog, PAPER, {}, keep)
    assert plan.tail_start == tail and 0 < plan.front_end < tail
    f = plan.front_end
    assert plan.cut == {w for a, e, w in _spans(prog, {}, keep) if a < f <= e} != set()
    assert plan_stream(prog, PAPER, {}, {}).cut == frozenset()


def test_a_chain_across_the_front_boundary_is_compiled_unfused(monkeypatch):
    """The pipeline degrades what a boundary crosses rather than refusing: with the front
    forced to end inside head_net's fused chain [e, d, y], the chain is emitted layer by layer
    (its tensors through DRAM), the front and the tail still share no block, and the Binary
    runs like golden."""
    from sim.compile.streaming import _spans
    orig = pipeline.plan_stream

    def forced(prog, cfg, chains, keep, cycles=None):
        plan = orig(prog, cfg, chains, keep, cycles)
        f = [n.name for n in prog.nodes].index("d")
        cut = frozenset(w for a, e, w in _spans(prog, chains, keep) if a < f <= e)
        return dataclasses.replace(plan, front_end=f, cut=cut)
    monkeypatch.setattr(pipeline, "plan_stream", forced)
    prog, x = _prog("head_net")
    assert "e" in pipeline.find_chains(prog, {}, 1 << 20)
    b = compile_(prog, PAPER, stream=True)
    ly = {ly_["name"]: ly_ for ly_ in b.layers}
    assert ly["e"]["phase"] == "front" and ly["d"]["phase"] == "middle"
    assert "fused_into" not in ly["d"] and "fused_into" not in ly["y"]
    assert not ly["e"]["on_chip"]
    assert _cross_conflicts(b, {i: l_["phase"] for i, l_ in enumerate(b.layers)}) == []
    assert_runs_like_golden(b, prog, x)


@pytest.mark.parametrize("name,cfg_name", [("head_net", "paper"), ("tiny", "zcu102")])
def test_stream_with_the_prefetch_arena(name, cfg_name):
    """stream=True with prefetch=True: the front keeps two C slots of its own, the middle and
    the tail share the weight arena in the rest of C; the front and the tail still touch no
    common block, no weight group is hoisted above the front's last LD instruction (the
    fences stay where they belong), and the Binary runs like golden."""
    from sim.compile.streaming import regions
    cfg = AccelConfig.from_string(cfg_name)
    prog, x = _prog(name)
    b = compile_(prog, cfg, stream=True, prefetch=True)
    phase = {i: ly["phase"] for i, ly in enumerate(b.layers)}
    assert _cross_conflicts(b, phase) == []
    assert fence_counts(b)["front_tail"] == 0
    g, tg = b.streams["global"], b.tags["global"]
    ld = [(phase.get(t, "middle"), i) for i, (i_, t) in enumerate(zip(g, tg))
          if i_.unit == "LD" and i_.op == "LOAD"]
    last_front = max(i for p, i in ld if p == "front")
    assert all(i > last_front for p, i in ld if p != "front")
    lo, hi = regions(cfg)["tail"]["C"]
    c_loads = [(phase.get(t), i_) for i_, t in zip(g, tg)
               if i_.op == "LOAD" and i_["buf"] == BUFS["C"]]
    assert any(p == "middle" for p, _ in c_loads)
    for p, i_ in c_loads:
        if p != "front":
            assert lo <= i_["buf_addr"] and i_["buf_addr"] + i_["length"] <= hi, (p, i_)
    assert_runs_like_golden(b, prog, x)


# -- random programs (tb.core.random_programs), as tests/test_random_programs.py ------------------

@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(case=cases(max_layers=6))
def test_random_programs_with_stream(case):
    """Random valid programs on random small configs compiled with stream=True: refused only
    for capacity or for want of a front/tail cut; otherwise funcsim == golden in both unit
    orders and no front/tail block shared (of the first 30 examples, 12 compile, 5 of them
    with a tail)."""
    _check_streamed(*case, prefetch=None)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(case=cases(max_layers=6))
def test_random_programs_with_stream_and_prefetch(case):
    """As above with the weight prefetch arena (the middle and the tail share it beyond the
    front's two C slots): refused only for capacity or for want of a cut; otherwise funcsim ==
    golden in both unit orders and no front/tail block shared."""
    _check_streamed(*case, prefetch=True)


def _check_streamed(prog, cfg, x, *, prefetch):
    """Compile ``prog`` with ``stream=True``: refused only for capacity or for want of a cut;
    otherwise no front/tail block shared and funcsim == golden in both unit orders."""
    try:
        b = compile_(prog, cfg, stream=True, prefetch=prefetch)
    except CompileError as e:
        assert CAPACITY.search(str(e)) or "no front/tail split" in str(e), str(e)
        return
    phase = {i: ly["phase"] for i, ly in enumerate(b.layers)}
    assert _cross_conflicts(b, phase) == []
    try:
        ref = golden.run(prog, x)
    except ArithmeticError:          # golden's overflow checks: funcsim must refuse as well
        return
    assert_runs_like_golden(b, prog, x, ref)
