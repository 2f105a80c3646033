"""The lock-step group stream (sim.lockstep.group_binary / expand, SETC, Binary.groups).

The independent checks: a hand-written group stream expands to the per-core fields that the
SETC rules give by hand (offset added, share bounded, mask in force); a compiled network's
group form run by sim.funcsim is bit-exact with sim.golden (the encoding loses nothing the
arithmetic needs) and its expansion gives back every core's queue; sim.perf times it equal to
the Barrier replay of the per-core Binary (the slots are carried by the stream).
"""
import itertools

import numpy as np
import pytest
from test_access import PW, _conv, _setr
from test_lockstep import _binary, _halt

from sim import funcsim, golden, lockstep, zoo
from sim.compile import Binary
from sim.compile import compile as compile_
from sim.config import AccelConfig
from sim.isa import FORMATS, UNITS, Instr, IsaError, decode, encode
from sim.perf import simulate

CFG2 = AccelConfig.from_string("paper:L=2")


def test_setc_round_trip_field_edges():
    code, unit, fields = FORMATS["SETC"]
    assert code == 17 and unit == "*"
    assert [n for n, _, _ in fields] == ["unit", "core", "reg", "value"]
    edges = []
    for _n, bits, signed in fields:
        lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
        edges.append(sorted({lo, lo + 1, 0, hi - 1, hi}))
    for vals in itertools.product(*edges):          # every combination of every field's edges
        f = dict(zip([n for n, _, _ in fields], vals))
        assert decode(encode(Instr("SETC", f))).f == f
    for name, bits, signed in fields:
        lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
        for bad in (lo - 1, hi + 1):
            with pytest.raises(IsaError, match=f"SETC.{name}"):
                encode(Instr("SETC", {name: bad}))


def _setc(reg, value, core=0, unit="MAT"):
    return Instr("SETC", dict(unit=UNITS[unit], core=core, reg=lockstep.CORE_REGS[reg],
                              value=value))


def _group(instrs, G=2):
    """A group Binary on ``paper:L=2`` whose one group runs ``instrs`` (then HALTs)."""
    b = _binary([[], []])
    streams = {"global": b.streams["global"],
               "group0": list(instrs) + [_halt("MAT"), _halt("RMAC"), _halt("AUX")]}
    tags = {"global": b.tags["global"], "group0": [0] * len(instrs) + [-1] * 3}
    return Binary(CFG2, b.prog, streams, tags, b.dram, b.symbols, b.layers, groups=G)


def test_expand_applies_offsets_bounds_and_mask():
    a = _conv("CONV_MAT", x_addr=100, o_addr=200, nco=12, hin=6, ho=6, pad_t=1)
    stream = (_setr("MAT", **PW) + [_setc("X_OFF", 7, core=1), _setc("O_OFF", -50, core=1),
                                    _setc("HO", 4, core=1), _setc("HIN", 5, core=1),
                                    _setc("PAD_T_OFF", -1, core=1), a,
                                    _setc("MASK", 0b10), a, _setc("NCO", 20, core=1), a])
    e, pr = lockstep.expand(_group(stream))
    q0 = [i for i in e.streams["core0"] if i.op == "CONV_MAT"]
    q1 = [i for i in e.streams["core1"] if i.op == "CONV_MAT"]
    assert [i.f for i in q0] == [a.f]                 # core 0: the first slot only, as written
    own = dict(a.f, x_addr=107, o_addr=150, ho=4, hin=5, pad_t=0)
    assert [i.f for i in q1] == [own, own, own]        # a bound above the field changes nothing
    # the SETRs before the first MASK went to both cores, the MAT's HALT (mask 0b10) to core 1
    # only; the mask is the MAT's: the other units' HALTs go to both cores
    assert sum(i.op == "SETR" for i in e.streams["core0"]) == len(PW)
    assert [i.unit for i in e.streams["core0"] if i.op == "HALT"] == ["RMAC", "AUX"]
    assert [i.unit for i in e.streams["core1"] if i.op == "HALT"] == ["RMAC", "MAT", "AUX"]
    assert [len(p) for p in pr.slots[(0, "MAT")]] == [2, 1, 1]


def test_every_core_setc_forms_expand_by_hand():
    # G = 4 as 2 channel parts x 2 row parts: core r = part * 2 + row part
    a = _conv("CONV_MAT", x_addr=100, o_addr=200, w_addr=0, hin=6, ho=6)
    S, A = lockstep.ALL_SET, lockstep.ALL_ADD
    stream = (_setr("MAT", **PW) + [_setc("O_OFF", 10, core=S + 1),    # (r mod 2) * 10
                                    _setc("O_OFF", 1000, core=A + 1),  # + (r >> 1) * 1000
                                    _setc("W_OFF", 64, core=A + 1),    # 0 + (r >> 1) * 64
                                    _setc("X_OFF", 3, core=S + 5),     # r * 3 (j >= log2 G)
                                    _setc("HO", 4, core=S), a,         # every core's bound
                                    _setc("X_OFF", 0, core=S), a])     # every offset 0
    gb = _group(stream, G=4)
    gb = type(gb)(AccelConfig.from_string("paper:L=4"), gb.prog, gb.streams, gb.tags, gb.dram,
                  gb.symbols, gb.layers, groups=4)
    e, _pr = lockstep.expand(gb)
    for r in range(4):
        q = [i.f for i in e.streams[f"core{r}"] if i.op == "CONV_MAT"]
        own = dict(a.f, o_addr=200 + (r % 2) * 10 + (r >> 1) * 1000, w_addr=(r >> 1) * 64,
                   ho=4)
        assert q == [dict(own, x_addr=100 + 3 * r), dict(own, x_addr=100)]
    for bad, match in ((_setc("HO", 4, core=A), "offsets only"),
                       (_setc("X_OFF", 1, core=S + 6), "neither a core"),
                       (_setc("MASK", 1, core=S), "core must be 0")):
        with pytest.raises(lockstep.LockstepError, match=match):
            lockstep.expand(_group(_setr("MAT", **PW) + [bad, _conv("CONV_MAT")]))


@pytest.mark.parametrize("bad, match", [
    (_setc("X_OFF", 1, core=2), "core 2 of a group of G = 2"),
    (_setc("MASK", 0b100), "bits at or above G = 2"),
    (_setc("MASK", 1, core=1), "core must be 0"),
    (Instr("SETC", dict(unit=UNITS["MAT"], core=0, reg=99, value=0)), "unknown per-core"),
])
def test_malformed_setc_refused(bad, match):
    with pytest.raises(lockstep.LockstepError, match=match):
        lockstep.expand(_group(_setr("MAT", **PW) + [bad, _conv("CONV_MAT")]))


def test_slot_without_participant_refused():
    gb = _group(_setr("MAT", **PW) + [_setc("MASK", 0), _conv("CONV_MAT")])
    with pytest.raises(lockstep.LockstepError, match="a slot with no participant"):
        lockstep.expand(gb)
    # an expanded field that leaves its bits: an offset taking x_addr below 0
    with pytest.raises(lockstep.LockstepError, match="x_addr = -1 leaves"):
        lockstep.expand(_group(_setr("MAT", **PW) + [_setc("X_OFF", -1), _conv("CONV_MAT")]))
    # a per-core stream with a SETC, a group Binary through build_queues
    with pytest.raises(funcsim.FuncSimError, match="group"):
        funcsim.build_queues(gb)


def test_group_binary_refuses_mixed_slots_and_g1_inputs():
    a, b = _conv("CONV_MAT"), _conv("CONV_MAT")
    bn = _binary([_setr("MAT", **PW) + [a], _setr("MAT", **dict(PW, KERNEL=3)) + [b]])
    with pytest.raises(lockstep.LockstepError, match="mixed"):
        lockstep.group_binary(bn, 2)
    gb = lockstep.group_binary(_binary([_setr("MAT", **PW) + [a]] * 2), 2)
    with pytest.raises(lockstep.LockstepError, match="per-core Binary"):
        lockstep.group_binary(gb, 2)


def _input(prog, seed=0):
    t = prog.tensors[prog.inputs[0]]
    lo, hi = (-128, 128) if t.signed else (0, 256)
    return np.random.default_rng(seed).integers(lo, hi, size=t.shape)


@pytest.mark.parametrize("model, cfg, groups, setc", [
    ("tiny", "paper:L=2", (2,), "core"),
    ("b0-r64", "small", (2,), "core"),
    ("b0-r32", "paper", (4, 16), "core"),
    ("b0-r32", "paper", (4, 16), "affine"),
    ("b0-r32", "paper", (4, 16), "hoist"),
])
def test_group_binary_runs_bit_exact_and_times_as_the_barrier(model, cfg, groups, setc,
                                                              tmp_path):
    prog = zoo.tiny(seed=0) if model == "tiny" else zoo.build(model, seed=0)
    b = compile_(prog, AccelConfig.from_string(cfg), stem="taps")
    x = _input(prog)
    ref = golden.run(prog, x)
    for G in groups:
        gb = lockstep.group_binary(b, G, **lockstep.STREAM_VARIANTS[setc])
        if setc != "core":        # the every-core forms are used, and take fewer SETCs
            st, st0 = lockstep.stream_stats(gb), lockstep.stream_stats(lockstep.group_binary(b, G))
            assert any(i.op == "SETC" and i["core"] >= lockstep.ALL_SET
                       for i in gb.streams["group0"])
            assert sum(st["setc"].values()) < sum(st0["setc"].values())
        assert gb.groups == G and list(gb.streams) == ["global"] + [
            f"group{g}" for g in range(b.cfg.L // G)]
        # the expansion gives back every core's queues, instruction for instruction
        e, _pr = lockstep.expand(gb)
        qe, qb = funcsim.build_queues(e), funcsim.build_queues(b)
        if setc == "hoist":     # the SETRs moved, in their order; the rest in place
            def split(q):
                return ([x for x in q if x[0].op == "SETR"], [x for x in q if x[0].op != "SETR"])
            assert {k: split(q) for k, q in qe.items()} == {k: split(q) for k, q in qb.items()}
            assert qe != qb
        else:
            assert qe == qb
        out = funcsim.run(gb, x)
        assert all(np.array_equal(out[k], ref[k]) for k in ref), (model, G)
        # its slots are the replay's: the expansion under their barrier times as the Barrier
        # replay of the per-core Binary (sim.perf times the group Binary itself by its
        # controllers: tests/test_lockstep_controller.py)
        # (hoisted SETRs move in the cores' queues too: their replay differs)
        if setc != "hoist":
            assert simulate(e, lockstep=lockstep.Barrier(_pr)).cycles == \
                lockstep.replay(b, G)[0].cycles
        # saved and loaded like a per-core Binary
        p = gb.save(tmp_path / f"g{G}.npz")
        gl = Binary.load(p)
        assert gl.groups == G and gl.streams == gb.streams and gl.tags == gb.tags
    # G = 1 files carry no "groups" (byte-identical to before); they load with groups = 1
    p = b.save(tmp_path / "g1.npz")
    with np.load(p) as z:
        assert b'"groups"' not in z["__manifest__"].tobytes()
    assert Binary.load(p).groups == 1


def test_default_compile_with_the_fused_stem_pairs():
    # the default compile (stem auto: the dense stem fused with its DSConv, the chain's DW
    # dealt to some cores only) conflicts when tiles are keyed by their loads alone; keyed by
    # every event more than one core waits on it pairs, and its group form runs bit-exact
    prog = zoo.tiny(seed=0)
    b = compile_(prog, AccelConfig.from_string("paper"))
    assert b.layers[0].get("stem") == "im2col"
    with pytest.raises(lockstep.LockstepError, match="conflicting"):
        lockstep.pair(b, 4, events="dma")
    pr = lockstep.pair(b, 4)                    # auto: dma, then all where that conflicts
    assert pr.mixed == 0
    assert pr.fallback and {u for _g, u in pr.fallback} == {"RMAC"}   # the stem chain's DW
    gb = lockstep.group_binary(b, 4, pairing=pr)
    x = _input(prog)
    ref = golden.run(prog, x)
    out = funcsim.run(gb, x)
    assert all(np.array_equal(out[k], ref[k]) for k in ref)
    e, epr = lockstep.expand(gb)
    assert simulate(e, lockstep=lockstep.Barrier(epr)).cycles == \
        lockstep.replay(b, 4, pairing=pr)[0].cycles
    with pytest.raises(ValueError, match="events must be"):
        lockstep.pair(b, 4, events="some")


def test_setc_in_a_per_core_binary_refused():
    bn = _binary([_setr("MAT", **PW) + [_setc("X_OFF", 1), _conv("CONV_MAT")]] * 2)
    with pytest.raises(ValueError, match="SETC"):
        simulate(bn)
    m = funcsim._Machine(bn)
    with pytest.raises(funcsim.FuncSimError, match="SETC"):
        m.step("core0", "MAT", _setc("X_OFF", 1))


def test_issue_load_counts_what_the_controller_adds():
    # two cores: the same SETRs, one pointwise tile each at different output addresses. The
    # group stream: the SETRs once (both cores, same cycles), one SETC (core 1's O_OFF), the
    # slot: one instruction more between slots than either core issues
    a, b = _conv("CONV_MAT"), _conv("CONV_MAT", o_addr=64)
    bn = _binary([_setr("MAT", **PW) + [a], _setr("MAT", **PW) + [b]])
    gb = lockstep.group_binary(bn, 2)
    mat = [i for i in gb.streams["group0"] if i.unit == "MAT"]
    assert [i.op for i in mat] == ["SETR"] * len(PW) + ["SETC", "CONV_MAT", "HALT"]
    assert mat[len(PW)].f == dict(unit=UNITS["MAT"], core=1, reg=lockstep.CORE_REGS["O_OFF"],
                                  value=64)
    il = lockstep.issue_load(gb)
    assert (il["slots"], il["group"], il["core"]) == (1, len(PW) + 1, len(PW))
    assert il["extra_drained"] == 1 and il["extra_latched"] == 0


def test_fallback_keys_only_the_stem_chain_by_core_events():
    # where the loads alone conflict (the fused stem chain), only the chain's layers are keyed
    # by the cores' own events: every other layer's tiles stay keyed by their loads (keying all
    # of a unit's layers so mispaired B2-R224's attention heads: -1.7 % at G = 16)
    prog = zoo.tiny(seed=0)
    b = compile_(prog, AccelConfig.from_string("paper"))
    pr = lockstep.pair(b, 4)
    assert pr.fallback
    dma = {i["sem"] for i in b.streams["global"] if i.op == "SIGNAL"}
    chain = {i for i, lay in enumerate(b.layers)
             if lay.get("stem") or lay.get("fused_into") == b.layers[0]["name"]}
    assert chain and b.layers[0].get("stem")
    own = False
    for gk in pr.fallback:
        for tag, _op, ctx, _j in pr.keys[gk]:
            if tag not in chain:
                assert set(ctx) <= dma, (gk, tag, ctx)
            own |= not set(ctx) <= dma
    assert own            # the chain is keyed by an event the cores signal each other
