"""Frame fences as instructions (issue #16, docs/perf.md "What the dispatcher must provide"):
the WAIT ``prev`` flag (``sim.isa.wait_passes``), the fences and register restores that
``compile(..., stream=True)`` writes (``sim.compile.streaming.insert_fences`` /
``insert_restores``), frames back to back in the functional simulator (``sim.funcsim.run_frames``)
against ``sim.golden`` for every frame, and ``sim.perf`` taking its fences from the Binary."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from sim import golden
from sim.compile import CompileError, compile as compile_
from sim.config import AccelConfig
from sim.funcsim import CORE_UNITS, GLOBAL_UNITS, FuncSimError, build_queues, run_frames
from sim.isa import Instr, decode, encode, wait_passes
from sim.perf import simulate
from sim.stream import has_fences, phase_fences
from tb.core.random_programs import cases
from testprogs import program_cache, tiny_with_input

CFGS = {"small": AccelConfig.from_string("small"), "paper": AccelConfig.from_string("paper")}
_prog = program_cache({"tiny": tiny_with_input})


def _binary(cfg_name, **kw):
    prog, _ = _prog("tiny")
    return compile_(prog, CFGS[cfg_name], stream=True, **kw)


def _inputs(n, seed=5):
    """tiny's input and ``n - 1`` random ones (uniform over the input tensor's integer range)."""
    prog, x = _prog("tiny")
    t = prog.tensors[prog.inputs[0]]
    lo, hi = (-128, 127) if t.signed else (0, 255)
    rng = np.random.default_rng(seed)
    return [x] + [rng.integers(lo, hi, t.shape, endpoint=True) for _ in range(n - 1)]


def _same(got, ref):
    return all(np.array_equal(got[k], ref[k]) for k in ref)


# -- the ISA ------------------------------------------------------------------------------------

def test_wait_prev_bit_position_and_round_trip():
    # WAIT = opcode 2; unit [7:5]; sem [23:8]; count [35:24]; prev [36]
    w = encode(Instr("WAIT", dict(unit=4, sem=7, count=51, prev=1)))
    assert w == 2 | (4 << 5) | (7 << 8) | (51 << 24) | (1 << 36)
    assert decode(w).f == dict(unit=4, sem=7, count=51, prev=1)
    # an old WAIT word (no prev bit) decodes with prev = 0
    assert decode(2 | (7 << 8) | (3 << 24)).f["prev"] == 0


def test_wait_passes_semantics():
    """Frame f's own counter; prev: frame f - 1's, and frame 0 passes at once."""
    counters = {(0, 9): 3, (1, 9): 1}

    def c(f, s):
        return counters.get((f, s), 0)
    own = Instr("WAIT", dict(unit=0, sem=9, count=2))
    prev = Instr("WAIT", dict(unit=0, sem=9, count=2, prev=1))
    assert wait_passes(own, 0, c) and not wait_passes(own, 1, c)   # 3 >= 2, 1 < 2
    assert wait_passes(prev, 0, c)                  # no previous frame
    assert wait_passes(prev, 1, c)                  # frame 0's counter: 3 >= 2
    assert not wait_passes(prev, 2, c)              # frame 1's counter: 1 < 2
    assert not wait_passes(Instr("WAIT", dict(unit=0, sem=8, count=1, prev=1)), 1, c)


# -- what the compiler writes ----------------------------------------------------------------------

@pytest.mark.parametrize("cfg_name", sorted(CFGS))
def test_every_queue_gets_its_four_fences(cfg_name):
    """Per queue: WAIT prev F_MID before the first front instruction, WAIT prev F_END before
    the first other one, SIGNAL F_MID after the last front/middle instruction and after that
    WAIT, SIGNAL F_END just before the HALT; counts = the number of queues; fresh ids."""
    b = _binary(cfg_name)
    cfg = CFGS[cfg_name]
    nq = len(GLOBAL_UNITS) + len(CORE_UNITS) * cfg.L
    phase = {i: ly["phase"] for i, ly in enumerate(b.layers)}
    plain = _prog("tiny")[0]
    # the fences' ids are two new ones after the Binary's last (the streaming compile may use
    # more events than the plain one: its phases change the schedule); every SIGNAL / WAIT on
    # them must sit where the structure below says
    used = sorted({i["sem"] for s in b.streams.values() for i in s
                   if i.op in ("SIGNAL", "WAIT")})
    ids = set(used[:-2])
    fence_ids = set()
    for k, q in build_queues(b).items():
        ops = [(i, phase.get(t, "middle")) for i, t in q]
        prevs = [pc for pc, (i, _) in enumerate(ops) if i.op == "WAIT" and i.get("prev", 0)]
        fences = [pc for pc, (i, _) in enumerate(ops)
                  if i.op in ("WAIT", "SIGNAL") and i["sem"] not in ids]
        assert ops[-1][0].op == "HALT"
        work = [pc for pc, (i, _) in enumerate(ops) if pc not in fences and i.op != "HALT"]
        front = [pc for pc in work if ops[pc][1] == "front"]
        rest = [pc for pc in work if ops[pc][1] != "front"] + [len(ops) - 1]
        nontail = [pc for pc in work if ops[pc][1] != "tail"]
        w_end = max(prevs)
        assert ops[w_end][0].op == "WAIT" and ops[w_end][0]["sem"] not in ids
        # right before the first non-front instruction (only fences between)
        assert w_end < rest[0] and all(pc in fences for pc in range(w_end, rest[0]))
        assert not front or front[-1] < w_end
        if front:
            w_mid = front[0] - 1
            assert ops[w_mid][0].op == "WAIT" and ops[w_mid][0].get("prev") == 1
            assert ops[w_mid][0]["sem"] != ops[w_end][0]["sem"]
            assert sorted(prevs) == [w_mid, w_end]
        else:
            assert prevs == [w_end]
        sig = [pc for pc in fences if ops[pc][0].op == "SIGNAL"]
        assert len(sig) == 2 and sig[1] == len(ops) - 2
        s_mid = sig[0]
        assert s_mid > w_end and (not nontail or s_mid > nontail[-1])
        for pc in prevs:
            assert ops[pc][0]["count"] == nq
        for pc in sig:
            assert ops[pc][0]["count"] == 1
        fence_ids |= {ops[pc][0]["sem"] for pc in fences}
    assert len(fence_ids) == 2 and min(fence_ids) > max(ids)
    assert has_fences(b) and not has_fences(compile_(plain, cfg))


# -- frames back to back in the functional simulator -------------------------------------------

@pytest.mark.parametrize("cfg_name", sorted(CFGS))
@pytest.mark.parametrize("order", ["oldest", "youngest"])
def test_frames_back_to_back_run_like_golden(cfg_name, order):
    """Three frames with different inputs, two contexts: every frame's outputs == golden."""
    prog, _ = _prog("tiny")
    b = _binary(cfg_name)
    xs = _inputs(3)
    refs = [golden.run(prog, x) for x in xs]
    assert not _same(refs[1], refs[2])          # the frames really differ
    got = run_frames(b, xs, order=order)
    assert [_same(g, r) for g, r in zip(got, refs)] == [True] * 3


@pytest.mark.parametrize("cfg_name", ["paper", "zcu102"])
def test_frames_back_to_back_with_the_prefetch_arena(cfg_name):
    """compile(..., stream=True, prefetch=True): the weight arena in the tail's part of C, the
    LD hoist above the fences: three frames in both orders == golden."""
    prog, _ = _prog("tiny")
    b = compile_(prog, AccelConfig.from_string(cfg_name), stream=True, prefetch=True)
    xs = _inputs(3)
    refs = [golden.run(prog, x) for x in xs]
    for order in ("oldest", "youngest"):
        got = run_frames(b, xs, order=order)
        assert [_same(g, r) for g, r in zip(got, refs)] == [True] * 3, order


def test_b0_r64_frames_back_to_back_run_like_golden():
    """A zoo network (B0 at 64 x 64: stem block, fused chains, context modules on chip, the
    head) compiled with stream=True on `zcu102` (with its default weight prefetch arena) and
    on `paper`: three frames, two contexts, both orders, every frame == golden (about 40 s)."""
    from sim import zoo
    prog = zoo.build("b0-r64", seed=0)
    xs = [golden.quantize_input(zoo.random_image(64, seed=s), prog.tensors[prog.inputs[0]])
          for s in (1, 2, 3)]
    refs = [golden.run(prog, x) for x in xs]
    assert not _same(refs[1], refs[2])
    for cfg_name, order in (("zcu102", "oldest"), ("paper", "youngest")):
        b = compile_(prog, AccelConfig.from_string(cfg_name), stream=True)
        assert {ly.get("phase") for ly in b.layers} == {"front", "middle", "tail"}
        got = run_frames(b, xs, order=order)
        assert [_same(g, r) for g, r in zip(got, refs)] == [True] * 3, cfg_name


def _outcome(b, xs, refs, **kw):
    try:
        got = run_frames(b, xs, **kw)
    except FuncSimError as e:
        return f"error: {e}"
    return [_same(g, r) for g, r in zip(got, refs)]


@pytest.mark.parametrize("cfg_name", sorted(CFGS))
def test_without_fences_or_restores_the_frames_go_wrong(cfg_name):
    """The same run with the fences dropped, or with the register restores left out, gives a
    wrong frame or an illegal access in some unit order: the test above can fail."""
    from sim.compile import pipeline
    prog, _ = _prog("tiny")
    xs = _inputs(3)
    refs = [golden.run(prog, x) for x in xs]
    b = _binary(cfg_name)
    bad = [_outcome(b, xs, refs, order=o, fences=False) for o in ("oldest", "youngest")]
    assert any(r != [True] * 3 for r in bad), bad
    orig = pipeline.insert_restores
    try:
        pipeline.insert_restores = lambda binary: 0
        nr = _binary(cfg_name)
    finally:
        pipeline.insert_restores = orig
    assert nr.n_instructions < b.n_instructions
    bad = [_outcome(nr, xs, refs, order=o) for o in ("oldest", "youngest")]
    assert any(r != [True] * 3 for r in bad), bad


def test_run_frames_checks_its_arguments():
    b = _binary("small")
    with pytest.raises(ValueError, match="order"):
        run_frames(b, _inputs(1), order="newest")
    with pytest.raises(ValueError, match="at least one"):
        run_frames(b, [])


# -- the cycle model -------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg_name", sorted(CFGS))
@pytest.mark.parametrize("contexts", [1, 2])
def test_perf_takes_the_binarys_fences(cfg_name, contexts):
    """sim.perf on the Binary's own fences agrees with the replay of sim.stream.phase_fences
    (the same fences as a rule of the model) per frame: within 1 % on `small`, 3 % on
    `paper`, where tiny's frames are 9 k cycles and the fences' own instructions and
    semaphore latencies (51 queues) are 1-2 % of that (B1-R224: equal, docs/perf.md); with one
    frame the fence WAITs pass; without any fence (hazards={}) two contexts finish earlier
    (the fences act)."""
    b = _binary(cfg_name)
    own = simulate(b, frames=4, contexts=contexts).frame_done
    rep = simulate(b, frames=4, contexts=contexts, hazards=phase_fences(b)).frame_done
    tol = 0.01 if cfg_name == "small" else 0.03
    for a, r in zip(own, rep):
        assert abs(a - r) <= tol * r, (own, rep)
    none = simulate(b, frames=4, contexts=contexts, hazards={}).frame_done
    # (one context: the in-order queues already keep the frames apart, the fences never bind)
    assert none[-1] < own[-1] if contexts == 2 else none[-1] <= own[-1]
    one = simulate(b)
    assert one.cycles <= own[0]


# -- random programs (tb.core.random_programs), as tests/test_stream_regions.py --------------------

@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(case=cases(max_layers=6))
def test_random_programs_run_frames_back_to_back(case):
    """Random valid programs on random small configs compiled with stream=True (those that
    compile): three frames, the given input and two random ones, back to back in both orders;
    every frame == golden."""
    prog, cfg, x = case
    try:
        b = compile_(prog, cfg, stream=True)
    except CompileError:
        return
    t = prog.tensors[prog.inputs[0]]
    lo, hi = (-128, 127) if t.signed else (0, 255)
    rng = np.random.default_rng(0)
    xs = [x] + [rng.integers(lo, hi, t.shape, endpoint=True) for _ in range(2)]
    try:
        refs = [golden.run(prog, xx) for xx in xs]
    except ArithmeticError:          # golden's overflow checks (as test_stream_regions)
        return
    for order in ("oldest", "youngest"):
        got = run_frames(b, xs, order=order)
        assert [_same(g, r) for g, r in zip(got, refs)] == [True] * 3, order


def _core_switches(b, tr):
    """``(switches, unsafe)``: how often a core unit goes from one frame's queue to the
    other's in the trace ``tr`` of two contexts, and how often where the queue it leaves has
    neither a WAIT at its head nor ended."""
    q = build_queues(b)
    switches = unsafe = 0
    for key in q:
        if key[0] == "global":
            continue
        ev = sorted((e for e in tr if (e[0], e[1]) == key), key=lambda e: (e[4], e[5]))
        done = {}
        last = None
        for e in ev:
            f = e[6]
            if last is not None and f != last:
                nxt = done.get(last, 0)
                unsafe += not (nxt == len(q[key]) or q[key][nxt][0].op == "WAIT")
                switches += 1
            done[f] = done.get(f, 0) + 1
            assert q[key][done[f] - 1][0].op == e[2]
            last = f
    return switches, unsafe


@pytest.mark.parametrize("cfg_name", sorted(CFGS))
def test_perf_contexts_switch_core_units_only_at_a_refused_wait(cfg_name):
    """sim.perf's two contexts: a core unit goes from one frame's queue to the other's only
    where the one it leaves has a WAIT at its head (refused) or has ended, the points where
    shared registers are safe (insert_restores); and the frames do interleave."""
    b = _binary(cfg_name)
    tr = []
    simulate(b, frames=3, contexts=2, trace=tr)
    switches, unsafe = _core_switches(b, tr)
    assert switches > 0 and unsafe == 0


def test_perf_core_switch_any_is_a_what_if_of_a_second_register_set():
    """``core_switch="any"``: core units also switch frames where their queue has work at its
    head (the what-if the trace shows), never fewer frames done; a bad value is refused."""
    b = _binary("paper")
    tr = []
    d = simulate(b, frames=3, contexts=2, trace=tr, core_switch="any").frame_done
    switches, unsafe = _core_switches(b, tr)
    assert unsafe > 0 and len(d) == 3
    with pytest.raises(ValueError, match="core_switch"):
        simulate(b, frames=3, contexts=2, core_switch="always")
