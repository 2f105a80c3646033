"""sim.perf's group controllers (``simulate(..., controller="plain" | "shadow")``): a lock-step
group's unit issues its stream in order, one word per cycle.

Independent checks: a hand-written two-core group stream gives the cycles the issue rule
gives by hand (one cycle per SETR / SETC, a slot as long as its longest participant's
``sim.timing.compute_timing``, the next word after the drain or, with shadow registers, in
the cycle after the slot starts; a group SIGNAL counts once per core of the mask); at G = 1
(each core a group of one) the plain controller runs today's ``sim.perf`` instruction for
instruction.
"""
import pytest
from test_access import PW, _conv, _setr
from test_lockstep import _binary
from test_lockstep_group import CFG2, _group, _setc

from sim import lockstep, timing, zoo
from sim.compile import compile as compile_
from sim.config import AccelConfig
from sim.isa import UNITS, Instr
from sim.perf import simulate


def _sig(unit, sem, count):
    return Instr("SIGNAL", dict(unit=UNITS[unit], sem=sem, count=count))


def _wait(unit, sem, count):
    return Instr("WAIT", dict(unit=UNITS[unit], sem=sem, count=count, prev=0))


def _own(f):
    return timing.compute_timing(CFG2, "CONV_MAT", PW, f).cycles


def _events(trace):
    return [(u, op, t0, t1) for st, u, op, _tag, t0, t1 in trace if st == "group0"]


@pytest.mark.parametrize("controller", ["plain", "shadow"])
def test_two_core_group_stream_cycles_follow_the_issue_rule(controller):
    a = _conv("CONV_MAT", hin=6, ho=6)
    stream = (_setr("MAT", **PW)
              + [_setc("X_OFF", 7, core=1), a,                         # slot 1: both cores
                 _setc("O_OFF", 64, core=1), _setc("HO", 3, core=1),    # core 1: 3 rows
                 _setc("HIN", 3, core=1), a,                            # slot 2
                 _sig("MAT", 5, 1),                                     # once per core: 2
                 _wait("RMAC", 5, 2)])
    tr = []
    rep = simulate(_group(stream), trace=tr, controller=controller)
    n = len(PW)
    # by hand: core 1's own instructions of the two slots (offsets added, shares bounded)
    d1 = max(_own(a.f), _own(dict(a.f, x_addr=7)))
    d2 = max(_own(a.f), _own(dict(a.f, x_addr=7, o_addr=64, ho=3, hin=3)))
    assert d2 == _own(a.f) > _own(dict(a.f, ho=3, hin=3))       # the longer share holds it
    s1 = n + 1                          # the SETRs and one SETC, one cycle each
    e1 = s1 + d1
    if controller == "plain":           # the next word when the slot has drained
        s2 = e1 + 3
        sig = s2 + d2                   # the SIGNAL after slot 2 has drained
        halt = sig + 1
    else:                               # three SETCs while slot 1 runs, latched at slot 2
        s2 = max(s1 + 1 + 3, e1)
        sig = s2 + 1                    # fetched in the cycle after slot 2 starts (posted)
        halt = s2 + d2                  # halted once drained
    e2 = s2 + d2
    ev = _events(tr)
    mat = [e for e in ev if e[0] == "MAT"]
    assert [e for e in mat if e[1] == "CONV_MAT"] == [("MAT", "CONV_MAT", s1, e1),
                                                      ("MAT", "CONV_MAT", s2, e2)]
    assert [e[2] for e in mat if e[1] in ("SIGNAL", "HALT")] == [sig, halt]
    # the RMAC's WAIT for a count of 2 passes when the SIGNAL (seen one cycle after the slot
    # drained) has counted for both cores of the mask
    assert [e[2] for e in ev if e[:2] == ("RMAC", "WAIT")] == [e2 + 1]
    assert rep.cycles == max(halt + 1, e2 + 3)      # RMAC: the WAIT, then its HALT


def test_posted_signal_fifo_depth():
    # two SIGNALs after a slot: with a FIFO of one entry the second waits for the drain (and
    # with it the WAIT behind it), with two both go at once; depth 0 is the blocking SIGNAL
    a = _conv("CONV_MAT", hin=6, ho=6)
    stream = _setr("MAT", **PW) + [a, _sig("MAT", 5, 1), _sig("MAT", 6, 1), _setc("X_OFF", 1)]
    s1 = len(PW)
    e1 = s1 + _own(a.f)

    def at(depth):
        tr = []
        simulate(_group(stream), trace=tr, controller="shadow", posted=depth)
        return [t0 for _st, u, op, _tag, t0, _t1 in tr if u == "MAT" and op in ("SIGNAL",
                                                                                  "SETC")]
    assert at(None) == at(2) == [s1 + 1, s1 + 2, s1 + 3]
    assert at(1) == [s1 + 1, e1, e1 + 1]
    assert at(0) == [e1, e1 + 1, e1 + 2]
    for bad, ctl in ((-1, "shadow"), (1, "plain"), (True, "shadow")):
        with pytest.raises(ValueError, match="posted"):
            simulate(_group(stream), controller=ctl, posted=bad)


def test_group_signal_counts_once_per_core_of_the_mask():
    # under a one-core mask the SIGNAL counts once: a WAIT for 2 never passes
    stream = (_setr("MAT", **PW) + [_setc("MASK", 0b01), _sig("MAT", 5, 1),
                                    _setc("MASK", 0b11), _wait("RMAC", 5, 2)])
    with pytest.raises(RuntimeError, match="deadlock"):
        simulate(_group(stream))
    assert simulate(_group(stream[:-1] + [_wait("RMAC", 5, 1)])).cycles > 0


@pytest.mark.parametrize("model, cfg", [("tiny", "paper"), ("b0-r64", "paper")])
def test_g1_plain_controller_is_todays_perf(model, cfg):
    prog = zoo.tiny(seed=0) if model == "tiny" else zoo.build(model, seed=0)
    b = compile_(prog, AccelConfig.from_string(cfg))
    t0, t1 = [], []
    r0 = simulate(b, trace=t0)
    r1 = simulate(b, trace=t1, controller="plain")
    assert t1 == t0 and r1.cycles == r0.cycles
    assert [lay.cycles for lay in r1.layers] == [lay.cycles for lay in r0.layers]


def test_controller_refusals():
    bn = _binary([_setr("MAT", **PW) + [_conv("CONV_MAT")]] * 2)
    gb = lockstep.group_binary(bn, 2)
    with pytest.raises(ValueError, match="controller must be"):
        simulate(gb, controller="latched")
    with pytest.raises(ValueError, match="lockstep must be None"):
        simulate(gb, lockstep=lockstep.Barrier(lockstep.pair(bn, 2)))
    with pytest.raises(ValueError, match="arbiters"):
        simulate(gb, env=timing.AXI_SYSTEM)
    # a SETC in a per-core Binary stays refused under a controller too
    bad = _binary([_setr("MAT", **PW) + [_setc("X_OFF", 1), _conv("CONV_MAT")]] * 2)
    with pytest.raises(ValueError, match="SETC"):
        simulate(bad, controller="shadow")
    # a malformed SETC in a group stream: ValueError naming the instruction
    with pytest.raises(ValueError, match="core 2 of a group of G = 2"):
        simulate(_group(_setr("MAT", **PW) + [_setc("X_OFF", 1, core=2), _conv("CONV_MAT")]))

