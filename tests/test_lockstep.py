"""sim.lockstep: the lock-step replay, its pairing and the broadcast count.

The hand-built Binaries are written instruction by instruction (no compiler): on ``paper:L=2``
each core runs SETRs (one cycle each) and then pointwise conv tiles on its MAT (the tile of
tests/test_access.py: 16 -> 12 channels over a block whose channel stride is 6 bytes). What the
lock-step replay must give follows from the rules alone: a slot starts when the last of its
participants has arrived (its SETRs done) and the group's previous slot has ended, and lasts
the longest participant's own cycles; a core that lacks an instruction sits the slot out.
"""
import numpy as np
import pytest

from sim import lockstep, timing, zoo
from sim.compile import Binary, compile as compile_
from sim.config import AccelConfig
from sim.isa import Instr, UNITS
from sim.perf import simulate
from test_access import PW, _conv, _setr
from test_funcsim import Builder

CFG = AccelConfig.from_string("paper:L=2")


def _prog2():
    """Two pointwise convs (the hand-built Binaries' layer tags 0 and 1 name them)."""
    b = Builder(0)
    b.conv("z", b.conv("y", b.input("x", (16, 2, 3)), 12), 12)
    return b.prog()


def _halt(u):
    return Instr("HALT", dict(unit=UNITS[u]))


def _binary(per_core, tags=None):
    """Core ``c`` runs ``per_core[c]`` (a list of instructions) on its MAT, then HALTs."""
    streams = {"global": [_halt("LD"), _halt("ST"), _halt("HOST")]}
    tg = {"global": [-1] * 3}
    for c, instrs in enumerate(per_core):
        streams[f"core{c}"] = list(instrs) + [_halt("MAT"), _halt("RMAC"), _halt("AUX")]
        tg[f"core{c}"] = (list(tags[c]) if tags else [0] * len(instrs)) + [-1] * 3
    return Binary(CFG, _prog2(), streams, tg, np.zeros(64, np.uint8), {},
                  [dict(name="y"), dict(name="z")])


def _computes(trace, stream):
    return [(t0, t1) for st, u, op, _tag, t0, t1 in trace
            if st == stream and op in timing.COMPUTE_OPS]


def _own_cycles(regs, ins):
    return timing.compute_timing(CFG, ins.op, regs, ins.f).cycles


def test_two_cores_barrier_and_longest_share():
    # core 0: the 16 SETRs of PW, a 6-pixel tile; core 1: the same SETRs plus 3 more (it
    # arrives 3 cycles later), a 3-pixel tile (a shorter share)
    a = _conv("CONV_MAT", hin=6, ho=6)
    b = _conv("CONV_MAT", hin=3, ho=3, o_addr=64)
    extra = _setr("MAT", LINEAR=0, DIM=0, NTOK=0)
    core0 = _setr("MAT", **PW) + [a]
    core1 = _setr("MAT", **PW) + extra + [b]
    bn = _binary([core0, core1])
    n0, n1 = len(core0) - 1, len(core1) - 1            # arrival cycles (one SETR per cycle)
    c0, c1 = _own_cycles(PW, a), _own_cycles(PW, b)
    assert c0 > c1 and n1 == n0 + 3
    # today: each core on its own
    tr = []
    simulate(bn, trace=tr)
    assert _computes(tr, "core0") == [(n0, n0 + c0)]
    assert _computes(tr, "core1") == [(n1, n1 + c1)]
    # lock-step: both start when the later one arrives and hold the longer share's cycles
    tr = []
    rep, bar = lockstep.replay(bn, 2, trace=tr)
    assert _computes(tr, "core0") == _computes(tr, "core1") == [(n1, n1 + c0)]
    assert bar.wait == n1 - n0                # core 0 waited at the barrier
    assert bar.imbalance == c0 - c1           # core 1 held past its own end
    assert bar.busy == 2 * c0
    # a barrier of 2 cycles (the what-if of a registered AND of the ready signals)
    tr = []
    lockstep.replay(bn, 2, trace=tr, latency=2)
    assert _computes(tr, "core0") == _computes(tr, "core1") == [(n1 + 2, n1 + 2 + c0)]
    with pytest.raises(ValueError, match="latency"):
        lockstep.replay(bn, 2, latency=-1)
    # G = 1: the same as sim.perf
    tr1, tr0 = [], []
    assert lockstep.replay(bn, 1, trace=tr1)[0].cycles == simulate(bn, trace=tr0).cycles
    assert tr1 == tr0


def test_masked_slot_and_in_order_group():
    # core 0 runs two tiles of layer 0, core 1 only the first: the second slot is core 0's
    # alone (core 1 masked); then both run a tile of layer 1, which waits for the group's
    # previous slot (in order) although core 1 arrives at it early
    a, b = _conv("CONV_MAT", hin=6, ho=6), _conv("CONV_MAT", hin=2, ho=2, x_addr=8)
    c = _conv("CONV_MAT", hin=3, ho=3, o_addr=128)
    core0 = _setr("MAT", **PW) + [a, b, c]
    core1 = _setr("MAT", **PW) + [a, c]
    n = len(PW)
    tags = [[0] * n + [0, 0, 1], [0] * n + [0, 1]]
    bn = _binary([core0, core1], tags)
    pr = lockstep.pair(bn, 2)
    assert pr.n_slots == 3 and pr.masked == 1
    assert [len(p) for p in pr.slots[(0, "MAT")]] == [2, 1, 2]
    ca, cb, cc = (_own_cycles(PW, x) for x in (a, b, c))
    tr = []
    lockstep.replay(bn, 2, trace=tr, pairing=pr)
    s2 = n + ca + cb                      # slot 3 starts when core 0's second tile has ended
    assert _computes(tr, "core0") == [(n, n + ca), (n + ca, s2), (s2, s2 + cc)]
    assert _computes(tr, "core1") == [(n, n + ca), (s2, s2 + cc)]


def _signal(sem):
    return Instr("SIGNAL", dict(unit=UNITS["LD"], sem=sem, count=1))


def _wait(sem):
    return Instr("WAIT", dict(unit=UNITS["MAT"], sem=sem, count=1, prev=0))


def test_tiles_pair_by_their_dma_events():
    # two tiles of one layer, loaded as DMA events 0 and 1 (the LD unit SIGNALs them); core 0
    # runs a piece of both, core 1 only of the second: core 1's one instruction corresponds to
    # core 0's second (the same tile), and the first slot is core 0's alone
    a, b = _conv("CONV_MAT", hin=6, ho=6), _conv("CONV_MAT", hin=6, ho=6, x_addr=8)
    core0 = _setr("MAT", **PW) + [_wait(0), a, _wait(1), b]
    core1 = _setr("MAT", **PW) + [_wait(1), b]
    bn = _binary([core0, core1])
    bn.streams["global"][:0] = [_signal(0), _signal(1)]
    bn.tags["global"][:0] = [-1, -1]
    pr = lockstep.pair(bn, 2)
    assert [len(p) for p in pr.slots[(0, "MAT")]] == [1, 2]
    assert pr.slot_of[("core1", "MAT")] == {len(PW) + 1: ((0, "MAT"), 1)}
    assert pr.ragged == pr.mixed == 0


def test_ragged_and_mixed_slots():
    a, b = _conv("CONV_MAT", hin=6, ho=6), _conv("CONV_MAT", hin=3, ho=3)
    bn = _binary([_setr("MAT", **PW) + [a], _setr("MAT", **PW) + [b]])
    pr = lockstep.pair(bn, 2)
    assert (pr.ragged, pr.mixed) == (1, 0)          # a smaller share: a masked remainder
    bn = _binary([_setr("MAT", **PW) + [a], _setr("MAT", **dict(PW, CIN=8)) + [a]])
    pr = lockstep.pair(bn, 2)
    assert (pr.ragged, pr.mixed) == (0, 1)          # another reduction: not one stream


def test_conflicting_orders_are_refused():
    a, c = _conv("CONV_MAT"), _conv("CONV_MAT", o_addr=128)
    n = len(PW)
    bn = _binary([_setr("MAT", **PW) + [a, c], _setr("MAT", **PW) + [a, c]],
                 [[0] * n + [0, 1], [0] * n + [1, 0]])
    with pytest.raises(lockstep.LockstepError, match="conflicting orders"):
        lockstep.pair(bn, 2)
    assert lockstep.pair(bn, 1).n_slots == 4


def test_group_size_checked():
    bn = _binary([_setr("MAT", **PW) + [_conv("CONV_MAT")]] * 2)
    for g in (0, 3, 2.0, True):
        with pytest.raises(lockstep.LockstepError, match="G \\(cores per lock-step group\\)"):
            lockstep.pair(bn, g)
    with pytest.raises(ValueError, match="frames = 1"):
        simulate(bn, frames=2, lockstep=lockstep.Barrier(lockstep.pair(bn, 2)))


def test_broadcast_counts_one_read_per_shared_sequence():
    # both cores read the same weights and records (same w_addr, p_addr) and different inputs;
    # per core (tests/test_access.py's figures): C = 24 w accesses x 48 bytes + 12 p accesses
    # x 192 bytes, B = 24 x accesses x 8 bytes
    tile = lambda xa: _conv("CONV_MAT", x_addr=xa)          # noqa: E731
    bn = _binary([_setr("MAT", **PW) + [tile(0)], _setr("MAT", **PW) + [tile(256)]])
    pr = lockstep.pair(bn, 2)
    cyc = 1000
    r = lockstep.broadcast(bn, pr, cyc)
    c_core, b_core = 24 * 48 + 12 * 192, 24 * 8
    assert r["C"]["requested_bytes_per_cycle"] == pytest.approx(2 * c_core / cyc, abs=0.05)
    assert r["C"]["after_bytes_per_cycle"] == pytest.approx(c_core / cyc, abs=0.05)
    assert r["C"]["after_accesses_per_cycle"] == pytest.approx((24 + 12) / cyc, abs=0.005)
    assert r["B"]["requested_bytes_per_cycle"] == r["B"]["after_bytes_per_cycle"] \
        == pytest.approx(2 * b_core / cyc, abs=0.05)
    # at G = 1 nothing is shared
    r1 = lockstep.broadcast(bn, lockstep.pair(bn, 1), cyc)
    assert r1["C"]["after_bytes_per_cycle"] == r1["C"]["requested_bytes_per_cycle"]


def test_control_savings():
    per = sum(lockstep.CONTROL_LUT.values())
    assert lockstep.control_savings(16, 4) == dict(controllers=4, saved_copies=12,
                                                   lut=4 * per, saved_lut_upper=12 * per)
    assert lockstep.control_savings(16, 1)["saved_copies"] == 0


@pytest.mark.parametrize("model", ["tiny", "b0-r64"])
def test_replay_at_g1_equals_perf_and_groups_pair(model):
    """The tap-major stem: the fused dense stem block (issue #16) splits its chain's DW and
    PW2 over the cores by the cycle model, so the cores' R-MACs run them in different orders
    and :func:`sim.lockstep.pair` refuses it (docs/global-buffers.md, section 6, "What it
    does not model, and what is open")."""
    prog = zoo.tiny(seed=0) if model == "tiny" else zoo.build(model, seed=0)
    b = compile_(prog, AccelConfig.from_string("paper"), stem="taps")
    tr0 = []
    base = simulate(b, trace=tr0)
    tr1 = []
    rep, bar = lockstep.replay(b, 1, trace=tr1)
    assert rep.cycles == base.cycles and tr1 == tr0 and bar.wait == bar.imbalance == 0
    rows = lockstep.measure(b, (1, 4, 16))
    assert [r["G"] for r in rows] == [1, 4, 16] and rows[0]["vs_today"] == 0
    for r in rows[1:]:
        assert "error" not in r and r["mixed"] == 0
        assert r["cycles"] >= base.cycles          # a barrier never makes a core earlier
    # every slot of the G = 16 replay starts and ends in the same cycle on all participants
    pr = lockstep.pair(b, 16)
    tr = []
    lockstep.replay(b, 16, trace=tr, pairing=pr)
    per = {}
    for st, u, op, _tag, t0, t1 in tr:
        per.setdefault((st, u), []).append((t0, t1))
    when = {}
    for key, m in pr.slot_of.items():
        for i, slot in m.items():
            when.setdefault(slot, set()).add(per[key][i])
    assert all(len(v) == 1 for v in when.values())
