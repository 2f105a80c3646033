# amaranth: UnusedElaboratable=no
"""sim.timing states the core's RTL latencies without importing hw (sim is numpy-only and hw
depends on sim). These tests check every latency sim.timing assumes against the hw objects the
core actually instantiates, so the two cannot drift apart silently. The FSM states and output
stages around them (SETUP, GROUPS, the output latch, the DW hold-bank drain) are checked by the
whole-run comparisons in tests/test_hw_core.py: every instruction's fetch cycle in amaranth.sim
equals sim.perf's.
"""

import pytest
from amaranth.hdl import Fragment

from hw.core import Core
from hw.engines import MATEngine, RMACEngine
from hw.units import AdderTree, Log2Quantizer, PackedDualMultiplier, Requant
from sim import timing
from sim.config import AccelConfig, ConfigError
from sim.isa import FORMATS



def _elaborated_units(core):
    """{unit kind: [every elaboratable in that unit's hierarchy]}: the core elaborated once, as
    it is for Verilog (Fragment.get), and each fragment's origins collected below its unit."""
    owner = {id(u): kind for kind, u in core.units.items()}
    found = {kind: [] for kind in core.units}

    def walk(frag, kind):
        for obj in getattr(frag, "origins", None) or ():
            kind = owner.get(id(obj), kind)
            if kind is not None:
                found[kind].append(obj)
        for sub, _name, _src in frag.subfragments:
            walk(sub, kind)

    walk(Fragment.get(core, None), None)
    return found


CONFIGS = [dict(N=4, M=4, T=4, S=4), dict(N=8, M=8, T=8, S=8), dict(N=2, M=6, T=5, S=2),
           dict(N=3, M=4, T=1, S=2), dict(N=8, M=8, T=8, S=8, requant_mat=2, requant_rmac=4),
           dict(N=2, M=6, T=5, S=2, requant_mat=1, requant_rmac=3)]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "N{N}M{M}T{T}S{S}".format(**kw)
                         + ("R{requant_mat}_{requant_rmac}".format(**kw) if "requant_mat" in kw
                            else ""))
def test_core_latencies_match_sim_timing(kw, packed):
    """Each unit of Core.from_config(cfg): its engine's latencies, every requant lane and the
    log2 module have the latencies sim.timing uses for cfg (ATT_OUT runs on the MAT's requant
    lanes: no shifter array is built)."""
    cfg = AccelConfig(L=1, dsp_packing=packed, **kw)
    core = Core.from_config(cfg)
    seen = {}
    for kind, objs in _elaborated_units(core).items():
        for name, obj in enumerate(objs):
            seen[type(obj).__name__] = seen.get(type(obj).__name__, 0) + 1
            if isinstance(obj, Requant):
                assert obj.latency == timing.REQUANT_LATENCY, (kind, name)
            elif isinstance(obj, Log2Quantizer):
                assert obj.latency == timing.LOG2_LATENCY, (kind, name)
            elif isinstance(obj, MATEngine):
                assert obj.packed == cfg.dsp_packing
                assert obj.LATENCY == timing.mat_latency(cfg), kind
            elif isinstance(obj, RMACEngine):
                assert obj.packed == cfg.dsp_packing
                assert obj.DF_LATENCY == timing.rmac_df_latency(cfg), kind
                assert obj.DW_LATENCY == timing.rmac_dw_latency(cfg), kind
    # all of them were found: the requant lanes (one per engine lane unless requant_mat /
    # requant_rmac say fewer; + the AUX unit's), one engine
    # per compute unit, the log2 module of each unit that executes ATT_DIV (sim.isa.FORMATS:
    # the MAT unit alone), no shifter array
    assert seen["Requant"] == cfg.requant_lanes("MAT") + cfg.requant_lanes("RMAC") + 1
    assert core.units["mat"].drain == timing.drain_cycles(cfg, "MAT")
    assert core.units["rmac"].drain == timing.drain_cycles(cfg, "RMAC")
    assert seen["MATEngine"] == 1 and seen["RMACEngine"] == 1
    kinds = [u.kind for u in core.units.values()]
    assert seen["Log2Quantizer"] == sum(FORMATS["ATT_DIV"][1] == k for k in kinds) == 1
    assert "ShifterArray" not in seen


def test_building_blocks():
    assert PackedDualMultiplier.latency == timing.PACKED_PRODUCT_LATENCY
    for count in range(1, 70):
        assert AdderTree(count=count).latency == timing.adder_tree_latency(count), count
    assert Requant(hswish=True).latency == timing.REQUANT_LATENCY


def test_requant_latency_config_field_dropped():
    """Configs and Binaries written before sim.timing carry ``requant_latency`` (default 3): they
    still load (the value is ignored, with a DeprecationWarning); asking for it now is an error."""
    d = AccelConfig(name="paper").to_dict()
    assert "requant_latency" not in d
    with pytest.warns(DeprecationWarning, match="requant_latency"):
        cfg = AccelConfig.from_dict(dict(d, requant_latency=3))
    assert cfg == AccelConfig(name="paper")
    with pytest.raises(ConfigError, match="requant_latency"):
        AccelConfig(name="paper").replace(requant_latency=3)


def test_semaphore_latencies_match_sim_timing():
    """The semaphore file's uncontended latencies, measured in amaranth.sim, are the ones
    ``sim.timing.AXI_SYSTEM`` charges: a SIGNAL taken in cycle t answers a waiter from
    t + SEM_SIGNAL_LATENCY; a WAIT offered in h on a sufficient counter is taken in
    h + SEM_WAIT_EXTRA."""
    from amaranth.sim import Simulator

    from hw.system.semaphores import SemaphoreFile
    assert SemaphoreFile.SIGNAL_LATENCY == timing.SEM_SIGNAL_LATENCY
    assert SemaphoreFile.WAIT_LATENCY == timing.SEM_WAIT_EXTRA
    assert timing.AXI_SYSTEM.signal_latency == timing.SEM_SIGNAL_LATENCY
    assert timing.AXI_SYSTEM.wait_extra == timing.SEM_WAIT_EXTRA
    dut = SemaphoreFile(count=8, ports=3)
    seen = {}

    async def bench(ctx):
        w, s = dut.wait[1], dut.signal[2]
        for _ in range(10):                     # past the clearing sweep
            await ctx.tick()
        ctx.set(w.valid, 1)                     # blocked on sem 5 >= 2
        ctx.set(w.payload.sem, 5)
        ctx.set(w.payload.count, 2)
        for _ in range(4):
            await ctx.tick()
        ctx.set(s.valid, 1)
        ctx.set(s.payload.sem, 5)
        ctx.set(s.payload.count, 2)
        assert ctx.get(s.ready)                 # taken in the cycle it is offered
        await ctx.tick()
        ctx.set(s.valid, 0)
        cyc = 1
        while not ctx.get(w.ready):
            await ctx.tick()
            cyc += 1
        seen["signal"] = cyc
        await ctx.tick()                        # taken; the next WAIT, already satisfied
        ctx.set(w.payload.count, 1)
        cyc = 0
        while not ctx.get(w.ready):
            await ctx.tick()
            cyc += 1
        seen["wait"] = cyc

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"signal": timing.SEM_SIGNAL_LATENCY, "wait": timing.SEM_WAIT_EXTRA}


def _sem_contention_binary():
    """A Binary of ``sim.zoo.tiny`` at ``small:L=2`` whose six core queues are replaced by
    WAIT / SIGNAL / SETR sequences that make the units meet at the semaphore file in the same
    cycles: six look-ups at once (twice), five WAITs woken by one broadcast, SIGNALs staggered
    by one cycle and then six at once, WAITs on their sums."""
    import dataclasses

    from sim import compile as sc
    from sim import zoo
    from sim.config import PRESETS
    from sim.image import queue_names
    from sim.isa import UNITS, Instr

    def op(name, u, **f):
        return Instr(name, {"unit": UNITS[u], **f})
    cfg = PRESETS["small"].replace(L=2)
    units = [k for k in queue_names(2) if k[0] != "global"]
    queues = {}
    for i, (c, u) in enumerate(units):
        q = [op("WAIT", u, sem=0, count=0)]
        if i == 0:
            q += [op("SETR", u, reg=0, value=0)] * 3 + [op("SIGNAL", u, sem=1, count=1)]
        else:
            q += [op("WAIT", u, sem=1, count=1)]
        q += [op("WAIT", u, sem=0, count=0)]
        q += [op("SETR", u, reg=0, value=0)] * i + [op("SIGNAL", u, sem=2, count=1)]
        q += [op("SIGNAL", u, sem=3, count=1), op("WAIT", u, sem=3, count=6),
              op("SIGNAL", u, sem=4, count=1), op("WAIT", u, sem=4, count=6 - i)]
        queues[(c, u)] = q
    streams = {"global": []}
    for c in ("core0", "core1"):
        streams[c] = [x for (cc, _u), q in queues.items() if cc == c for x in q]
    b = sc.compile(zoo.tiny(), cfg)
    return dataclasses.replace(b, streams=streams,
                               tags={s: [-1] * len(v) for s, v in streams.items()}), units


def test_semaphore_arbiters_match_the_file():
    """sim.perf with the semaphore file's arbiters (``SemaphoreTiming.arbiters``, on in
    AXI_SYSTEM) against hw.system.semaphores.SemaphoreFile in amaranth.sim, units that meet at
    the file in the same cycles (:func:`_sem_contention_binary`): every WAIT is taken, every
    SIGNAL granted and every SETR executed in the cycle the model says. The bench plays each
    core unit as the core does (one instruction offered per cycle; a WAIT or SIGNAL held
    until its ``ready``, the next instruction offered the cycle after)."""
    from amaranth.sim import Simulator

    from hw.system.semaphores import SemaphoreFile
    from sim import perf
    from sim.funcsim import build_queues
    from sim.image import queue_names
    assert timing.AXI_SYSTEM.arbiters
    binary, units = _sem_contention_binary()
    env = timing.SemaphoreTiming(wait_extra=timing.SEM_WAIT_EXTRA,
                                 signal_latency=timing.SEM_SIGNAL_LATENCY, arbiters=True)
    tr = []
    perf.simulate(binary, env=env, trace=tr)
    # the cycle each instruction is done with: a WAIT taken (its start), a SIGNAL granted (the
    # cycle before its unit goes on), a SETR executed
    model = {u: [] for u in units}
    for stream, unit, op, _tag, start, nxt in tr:
        model[(stream, unit)].append(nxt - 1 if op == "SIGNAL" else start)
    queues = build_queues(binary)
    ports = {k: i for i, k in enumerate(queue_names(2))}
    dut = SemaphoreFile(count=8, ports=len(ports))
    rtl = {u: [] for u in units}
    T0 = 12                                     # past the clearing sweep (8 entries)

    async def bench(ctx):
        for _ in range(T0):
            await ctx.tick()
        pc = {u: 0 for u in units}
        offer = {u: 0 for u in units}           # the cycle its current instruction is offered
        c = 0
        while any(pc[u] < len(queues[u]) for u in units) and c < 200:
            for u in units:
                w, s = dut.wait[ports[u]], dut.signal[ports[u]]
                ins = queues[u][pc[u]][0] if pc[u] < len(queues[u]) else None
                on = ins is not None and offer[u] <= c
                for port, kind in ((w, "WAIT"), (s, "SIGNAL")):
                    ctx.set(port.valid, on and ins.op == kind)
                    if on and ins.op == kind:
                        ctx.set(port.payload.sem, ins["sem"])
                        ctx.set(port.payload.count, ins["count"])
            for u in units:
                ins = queues[u][pc[u]][0] if pc[u] < len(queues[u]) else None
                if ins is None or offer[u] > c:
                    continue
                port = {"WAIT": dut.wait, "SIGNAL": dut.signal}.get(ins.op)
                if port is None or ctx.get(port[ports[u]].ready):
                    rtl[u].append(c)
                    pc[u] += 1
                    offer[u] = c + 1
            await ctx.tick()
            c += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert all(len(rtl[u]) == len(queues[u]) for u in units), rtl
    assert rtl == model, "\n".join(f"{u}: rtl {rtl[u]} model {model[u]}" for u in units)
    # the cases the Binary is for happened: look-ups served one per cycle, a WAIT woken by the
    # broadcast in the cycle the counter shows the SIGNAL
    firsts = sorted(v[0] for v in rtl.values())
    assert firsts == list(range(firsts[0], firsts[0] + 6))
    signal = rtl[units[0]][4]                  # granted in this cycle, shown 2 later
    assert sorted(rtl[u][1] for u in units[1:]).count(signal + timing.SEM_SIGNAL_LATENCY) >= 4


def test_requant_lanes_config():
    """requant_mat / requant_rmac: 0 (one lane per engine lane, the default) or at most that
    many lanes: the largest divisor of S / M not above it, so that overriding S or M on a preset
    that sets them stays valid; the drain takes lanes / R cycles per output vector."""
    cfg = AccelConfig()
    assert (cfg.requant_mat, cfg.requant_rmac) == (0, 0)
    assert cfg.requant_lanes("MAT") == cfg.S and cfg.requant_lanes("RMAC") == cfg.M
    assert timing.drain_cycles(cfg, "MAT") == timing.drain_cycles(cfg, "RMAC") == 1
    c2 = AccelConfig.from_string("paper:requant_mat=2,requant_rmac=4")
    assert (c2.requant_lanes("MAT"), timing.drain_cycles(c2, "MAT")) == (2, 4)
    assert (c2.requant_lanes("RMAC"), timing.drain_cycles(c2, "RMAC")) == (4, 2)
    assert AccelConfig.from_json(c2.to_json()) == c2
    # at most: S = 8 -> 2 of 3; S = 6 -> 3 of 4; S = 2 -> 2 of 4; S = 5 -> 1 of 4; 64 -> all
    for S, r, want in ((8, 3, 2), (6, 4, 3), (2, 4, 2), (5, 4, 1), (8, 64, 8), (8, 8, 8)):
        c = AccelConfig(S=S, requant_mat=r, dsp_packing=False)
        assert c.requant_lanes("MAT") == want, (S, r)
        assert c.S % c.requant_lanes("MAT") == 0
    assert AccelConfig.from_string("paper:N=2,M=4,T=2,S=2").requant_lanes("MAT") == 2
    for bad in (dict(requant_mat=-1), dict(requant_rmac=65), dict(requant_mat=2.0)):
        with pytest.raises(ConfigError, match="requant_"):
            AccelConfig(**bad)
    with pytest.raises(ValueError, match="unit"):
        cfg.requant_lanes("AUX")


def test_requant_res_lanes_config():
    """requant_rmac_res: 0 (every R-MAC requant lane has the residual path) or at most that many
    of them (the largest divisor of the R-MAC's requant lanes not above it); a residual vector
    on the R-MAC drains in M / R_res cycles, any other vector, and the MAT's, as before."""
    paper = AccelConfig.from_string("paper")
    assert paper.requant_rmac_res == 2 and paper.requant_res_lanes() == 2   # round 4's choice
    assert paper.replace(requant_rmac_res=0).requant_res_lanes() == 8
    for k, want in ((8, 8), (4, 4), (3, 2), (2, 2), (1, 1), (64, 8)):
        c = paper.replace(requant_rmac_res=k)
        assert c.requant_res_lanes() == want, k
        assert timing.drain_cycles(c, "RMAC", True) == 8 // want
        assert timing.drain_cycles(c, "RMAC") == 1 and timing.drain_cycles(c, "MAT", True) == 2
    c = AccelConfig.from_string("paper:requant_rmac=4,requant_rmac_res=3")
    assert (c.requant_lanes("RMAC"), c.requant_res_lanes()) == (4, 2)
    assert AccelConfig.from_json(c.to_json()) == c
    for bad in (dict(requant_rmac_res=-1), dict(requant_rmac_res=65),
                dict(requant_rmac_res=1.0)):
        with pytest.raises(ConfigError, match="requant_rmac_res"):
            AccelConfig(**bad)


def test_residual_drain_timing():
    """CONV_RDF / DW_RSA with a residual (RES_ADDR >= 0) drain through the residual lanes: a
    1x1 conv of CIN = 8 (1 step per vector on the R-MAC, N = 8) over 10 pixels with 2 residual
    lanes of 8 waits 3 cycles per vector after the first (D_res = 4) and its drain adds
    D_res - 1 = 3; without the residual, or with NOEPI, it is as with all lanes."""
    base = AccelConfig.from_string("paper:requant_rmac_res=0")
    rr = base.replace(requant_rmac_res=2)
    regs = dict(KERNEL=1, CIN=8, COUT=8, GROUPS=1, NOEPI=0, RES_ADDR=0, HIN=1, WIN=10, STRIDE=1,
                PAD_T=0, PAD_L=0, HOUT=1, WOUT=10)
    f = dict(nco=8, ho=1)
    t0 = timing.compute_timing(base, "CONV_RDF", regs, f)
    t1 = timing.compute_timing(rr, "CONV_RDF", regs, f)
    vectors = t0.steps      # one step per vector
    assert t0.stall == 0
    assert (t1.stall, t1.post - t0.post, t1.pre, t1.steps) == (3 * (vectors - 1), 3, t0.pre,
                                                               t0.steps)
    for other in (dict(regs, RES_ADDR=-1), dict(regs, NOEPI=1)):
        assert timing.compute_timing(rr, "CONV_RDF", other, f) == \
            timing.compute_timing(base, "CONV_RDF", other, f)


def test_drain_stall_closed_form():
    """sim.timing.drain_stall against a cycle-by-cycle walk of the rule it states: the last step
    of a vector is issued at least ``gap`` cycles after the previous vector's last step, the
    other steps back to back."""
    for vectors in range(1, 6):
        for per in range(1, 7):
            for gap in range(1, 9):
                t, last = 0, None
                for _ in range(vectors):
                    t += per - 1                    # the vector's other steps
                    if last is not None:
                        t = max(t, last + gap)      # its last step waits for the staging
                    last = t
                    t += 1
                assert t - vectors * per == timing.drain_stall(vectors, per, gap), \
                    (vectors, per, gap)
