"""The dense stem (issue #16, ``sim.compile.stem``): the ``im2col`` input layout of
``sim.compile.layout`` against an im2col written here from the definition, the unfolded program
against the original in ``sim.golden``, and Binaries compiled with it through ``sim.funcsim``
against ``sim.golden`` bit for bit (single stems at odd sizes, random programs starting with an
RGB stem, ``sim.zoo.tiny``, streaming frames; B0/B1-R224 under ``make regress``); what
``Binary.load`` refuses; ``stem="auto"``'s choice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from sim import funcsim, golden, zoo
from sim.compile import Binary, CompileError, compile
from sim.compile.layout import check_layout, im2col, im2col_shape, pack, unpack
from sim.compile.stem import choose_stem, stem_node, unfold_stem
from sim.config import AccelConfig
from sim.isa import REGS
from tb.core.cases import generic_program, pointwise_program, small_config
from tb.core.random_programs import cases
from tests.testprogs import assert_runs_like_golden


def reference_im2col(x, k, s, p):
    """Output pixel (oy, ox), tap (ky, kx) of channel c reads input (oy*s - p + ky,
    ox*s - p + kx), zero outside the image; channel c*k*k + ky*k + kx. Loop by loop."""
    c, h, w = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((c * k * k, ho, wo), dtype=np.int64)
    for ci in range(c):
        for ky in range(k):
            for kx in range(k):
                for oy in range(ho):
                    for ox in range(wo):
                        y, xx = oy * s - p + ky, ox * s - p + kx
                        if 0 <= y < h and 0 <= xx < w:
                            out[ci * k * k + ky * k + kx, oy, ox] = x[ci, y, xx]
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("hw", [(5, 7), (6, 6), (1, 9), (9, 4)])
def test_pack_im2col_matches_reference(k, s, hw):
    """Every padding below the kernel; int8 extremes; the bytes are the reference unfolded
    tensor, planar, two's complement."""
    rng = np.random.default_rng(k * 100 + s * 10 + hw[0])
    for p in range(k):
        h, w = hw
        if h + 2 * p < k or w + 2 * p < k:
            with pytest.raises(ValueError, match="smaller than"):
                pack(np.zeros((2, h, w)), layout="im2col", kernel=k, stride=s, padding=p)
            continue
        x = rng.integers(-128, 128, (3, h, w))
        x[0, 0, 0], x[-1, -1, -1] = -128, 127
        ref = reference_im2col(x, k, s, p)
        assert im2col_shape(x.shape, kernel=k, stride=s, padding=p) == ref.shape
        np.testing.assert_array_equal(im2col(x, kernel=k, stride=s, padding=p), ref)
        got = pack(x, layout="im2col", kernel=k, stride=s, padding=p)
        np.testing.assert_array_equal(got, ref.reshape(-1).astype(np.int8).view(np.uint8))


def test_pack_im2col_uint8():
    x = np.random.default_rng(1).integers(0, 256, (2, 7, 5))
    got = pack(x, layout="im2col", kernel=3, stride=2, padding=1)
    np.testing.assert_array_equal(got, reference_im2col(x, 3, 2, 1).reshape(-1).astype(np.uint8))


@pytest.mark.parametrize("geom, match", [
    (dict(), "needs ints"),
    (dict(kernel=3, stride=2), "needs ints"),
    (dict(kernel=3.0, stride=2, padding=1), "needs ints"),
    (dict(kernel=3, stride=0, padding=1), "needs ints"),
    (dict(kernel=3, stride=2, padding=-1), "needs ints"),
    (dict(kernel=3, stride=2, padding=3), "smaller than kernel"),
    (dict(kernel=True, stride=2, padding=0), "needs ints"),
])
def test_check_layout_refuses_bad_im2col(geom, match):
    with pytest.raises(ValueError, match=match):
        check_layout("im2col", 1, **geom)


def test_check_layout_im2col_rules():
    check_layout("im2col", 1, kernel=3, stride=2, padding=1)
    check_layout("im2col", 8, kernel=3, stride=2, padding=1)     # blocked compile: B = 8
    for bad in (6, 0, True, 2.0):
        with pytest.raises(ValueError, match="block must be a power of two"):
            check_layout("im2col", bad, kernel=3, stride=2, padding=1)
    with pytest.raises(ValueError, match="im2col layout only"):
        check_layout("planar", 1, kernel=3, stride=2, padding=1)
    with pytest.raises(ValueError, match="never unpacked"):
        unpack(np.zeros(100, np.uint8), (1, 2, 2), signed=True, layout="im2col")


@pytest.mark.parametrize("cin, k, stride, h, w, signed", [
    (3, 3, 2, 9, 7, True), (3, 3, 2, 8, 11, False), (3, 3, 1, 5, 6, True),
    (2, 5, 2, 11, 9, True), (4, 2, 2, 7, 7, False)])
def test_unfolded_program_in_golden(cin, k, stride, h, w, signed):
    """The rewritten program (pointwise conv over C*k*k channels, weights reshaped) on the
    reference-unfolded input gives the original program's output in sim.golden."""
    prog = generic_program(cin=cin, cout=5, h=h, w=w, k=k, stride=stride, x_signed=signed,
                           seed=k + h)
    p2, geom = unfold_stem(prog)
    assert geom == dict(kernel=k, stride=stride, padding=k // 2)
    assert p2.nodes[0].kind == "pointwise" and prog.nodes[0].kind == "generic"
    rng = np.random.default_rng(h * w)
    x = rng.integers(-128, 128, (cin, h, w)) if signed else rng.integers(0, 256, (cin, h, w))
    want = golden.run(prog, x)["y"]
    np.testing.assert_array_equal(golden.run(p2, reference_im2col(x, k, stride, k // 2))["y"],
                                  want)


def test_stem_node_rules():
    assert stem_node(generic_program()) is not None
    assert stem_node(generic_program(cin=8, cout=4)) is None            # 72 > 64 channels
    assert stem_node(generic_program(cin=4, cout=4, groups=2)) is None  # grouped
    assert stem_node(pointwise_program()) is None
    assert unfold_stem(pointwise_program()) is None


def _setr_values(binary, reg):
    return {i["value"] for st, q in binary.streams.items() if st != "global"
            for i in q if i.op == "SETR" and i["reg"] == REGS[reg]}


@pytest.mark.parametrize("h, w", [(9, 9), (7, 11), (13, 5), (12, 13), (3, 3)])
@pytest.mark.parametrize("engines", [4, 8])
def test_single_stem_funcsim_equals_golden(h, w, engines):
    """A 3x3 stride-2 stem on 3 channels at odd and even sizes (every padding edge), compiled
    with the dense stem: a pointwise conv (KERNEL 1) over 27 channels, the input symbol in the
    im2col layout with the unfolded image's bytes; funcsim == golden in both unit orders."""
    prog = generic_program(cin=3, cout=16, h=h, w=w, k=3, stride=2, act="hswish", seed=h)
    cfg = small_config(N=engines, M=engines, T=engines, S=engines)
    b = compile(prog, cfg, stem="im2col")
    sym = b.symbols["tensor:x"]
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    assert (sym["layout"], sym["kernel"], sym["stride"], sym["padding"]) == ("im2col", 3, 2, 1)
    assert sym["shape"] == [3, h, w] and sym["nbytes"] == 27 * ho * wo
    assert _setr_values(b, "KERNEL") == {1} and b.layers[0]["stem"] == "im2col"
    assert b.prog is prog
    x = np.random.default_rng(w).integers(-128, 128, (3, h, w))
    assert_runs_like_golden(b, prog, x)
    taps = compile(prog, cfg, stem="taps")
    assert _setr_values(taps, "KERNEL") == {3} and taps.symbols["tensor:x"]["layout"] == "planar"


_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.filter_too_much])


@settings(max_examples=30, **_SETTINGS)
@given(case=cases(stem=True, max_layers=3, max_hw=8))
def test_random_programs_with_stem(case):
    """Random small programs starting with an RGB stem at odd sizes, on random configs,
    compiled with the dense stem: funcsim == golden (a buffer too small is the only refusal)."""
    prog, cfg, x = case
    try:
        b = compile(prog, cfg, stem="im2col")
    except CompileError as e:
        assert "does not fit" in str(e), e
        return
    assert b.symbols[f"tensor:{prog.inputs[0]}"]["layout"] == "im2col"
    try:
        ref = golden.run(prog, x)
    except ArithmeticError:
        return
    out = funcsim.run(b, x)
    for k in prog.outputs:
        np.testing.assert_array_equal(out[k], ref[k])


@pytest.fixture(scope="module")
def tiny():
    prog = zoo.tiny(seed=2, calib_images=2)
    t = prog.tensors[prog.inputs[0]]
    return prog, golden.quantize_input(zoo.random_image(64, seed=3), t)


@pytest.mark.parametrize("config", ["paper", "small"])
def test_tiny_dense_stem(tiny, config):
    """sim.zoo.tiny's stem (3x3 stride 2 on 3 channels) unfolded: funcsim == golden; the
    Binary saved and loaded keeps the layout and still runs bit-exact."""
    prog, x = tiny
    cfg = AccelConfig.from_string(config)
    b = compile(prog, cfg, stem="im2col")
    assert b.layers[0]["stem"] == "im2col"
    assert_runs_like_golden(b, prog, x)


def test_binary_roundtrip_and_refusals(tiny, tmp_path):
    prog, x = tiny
    b = compile(prog, AccelConfig.from_string("small"), stem="im2col")
    b2 = Binary.load(b.save(tmp_path / "ok.npz"))
    assert b2.symbols["tensor:input"]["layout"] == "im2col"
    ref = golden.run(prog, x)
    out = funcsim.run(b2, x)
    assert all(np.array_equal(out[k], ref[k]) for k in prog.outputs)
    sym = b.symbols["tensor:input"]
    out_sym = b.symbols[f"tensor:{prog.outputs[0]}"]
    for change, match in [
            (lambda: sym.update(kernel=5), "geometry"),
            (lambda: sym.update(stride=1), "geometry"),
            (lambda: sym.update(nbytes=sym["nbytes"] - 1), "bytes"),
            (lambda: sym.update(shape=[3, 32, 32]), "shape"),
            (lambda: sym.pop("padding"), "needs ints"),
            (lambda: out_sym.update(layout="im2col", kernel=3, stride=2, padding=1),
             "not the graph input")]:
        saved = {k: dict(v) for k, v in b.symbols.items()}
        change()
        with pytest.raises(CompileError, match=match):
            Binary.load(b.save(tmp_path / "bad.npz"))
        b.symbols = saved
        sym, out_sym = b.symbols["tensor:input"], b.symbols[f"tensor:{prog.outputs[0]}"]


def test_stream_frames_with_dense_stem(tiny):
    """Frames back to back (compile stream=True, funcsim.run_frames): each frame reads its own
    unfolded input (the double-buffered input region is the symbol's bytes, not the image's)."""
    prog, x = tiny
    b = compile(prog, AccelConfig.from_string("small"), stem="im2col", stream=True)
    xs = [x, golden.quantize_input(zoo.random_image(64, seed=9), prog.tensors["input"])]
    for xi, got in zip(xs, funcsim.run_frames(b, xs)):
        ref = golden.run(prog, xi)
        assert all(np.array_equal(got[k], ref[k]) for k in prog.outputs)


def test_auto_picks_the_faster(tiny):
    """``stem="auto"`` (the default) picks, for tiny on two configs and for a stem whose
    unfolded input is expensive to load (DRAM at 1 byte per cycle), the mapping with fewer
    cycles of the whole network by sim.perf."""
    from sim.perf import simulate
    prog, _ = tiny
    for cfg in (AccelConfig.from_string("paper"), AccelConfig.from_string("small"),
                AccelConfig.from_string("small").replace(dram_bytes_per_cycle=1)):
        full = {s: simulate(compile(prog, cfg, stem=s)).cycles for s in ("taps", "im2col")}
        choice, probe = choose_stem(prog, cfg)
        assert choice == min(full, key=full.get), (cfg.describe(), full, probe)
        b = compile(prog, cfg)
        assert b.layers[0]["stem"] == choice and b.layers[0]["stem_probe_cycles"] == probe
    assert choose_stem(pointwise_program(), cfg) == ("taps", {})


@pytest.mark.regress
@pytest.mark.parametrize("model", ["b0-r224", "b1-r224"])
def test_dense_stem_network_funcsim_equals_golden(model):
    prog = zoo.build(model, seed=0, calib_images=2)
    x = golden.quantize_input(zoo.random_image(224, seed=4), prog.tensors[prog.inputs[0]])
    b = compile(prog, AccelConfig.from_string("paper"), stem="im2col")
    assert b.layers[0]["stem"] == "im2col"
    ref = golden.run(prog, x)
    out = funcsim.run(b, x)
    for k in prog.outputs:
        np.testing.assert_array_equal(out[k], ref[k])


def test_bench_stem_costs_small():
    """`python -m tb.bench stem`'s function on B0-R64: the unfolded input is 27 * 32 * 32
    bytes (the 64 x 64 image's 3 * 64 * 64 times 9/4) and auto chooses the faster mapping."""
    from tb.bench import stem_costs
    r = stem_costs(["b0-r64"], AccelConfig.from_string("paper"), repeat=2)
    assert r["b0_r64_input_bytes"] == 3 * 64 * 64 and r["b0_r64_im2col_bytes"] == 27 * 32 * 32
    assert r["b0_r64_auto"] == ("im2col" if r["b0_r64_im2col_cycles"] < r["b0_r64_taps_cycles"]
                                else "taps")
    assert r["b0_r64_im2col_ms"] > 0


# -- the stem block fused (issue #16, stem2 round) ----------------------------------------------

def _dma_bytes(binary, op, buf):
    """Bytes moved by the Binary's ``op`` (LOAD / STORE) instructions to / from buffer
    ``buf``."""
    from sim.isa import BUFS
    return sum(i["count"] * i["length"] for i in binary.streams["global"]
               if i.op == op and i["buf"] == BUFS[buf])


@pytest.mark.parametrize("config", ["paper", "small"])
def test_stem_block_is_one_chain_and_moves_only_its_input_and_output(config):
    """EfficientViT's input stem (3x3 stride-2 conv, then a DSConv whose pointwise conv adds
    the stem's output) with the dense stem: one fused chain ``[stem, DW, PW]``. From first
    principles, the activations that cross DRAM are the unfolded input, loaded once plus the
    two halo rows of each tile boundary (``27 * Wo * (Ho + 2 * (tiles - 1))`` bytes), and the
    block's output, stored once (``C * Ho * Wo``); the stem's output never leaves the chip (it
    was stored and loaded again before: the stem alone, then ``[DW, PW]``). funcsim == golden
    in both unit orders."""
    from tb.core.cases import stem_block_program
    prog = stem_block_program(c=16, h=40, w=36, seed=3)
    cfg = AccelConfig.from_string(config)
    b = compile(prog, cfg, stem="im2col")
    assert [lay.get("fused_into") for lay in b.layers] == [None, "stem", "stem"]
    c, ho, wo = prog.tensors["y"].shape
    tiles = b.layers[0]["tiles"]
    assert tiles >= 2
    assert _dma_bytes(b, "STORE", "OUT") == c * ho * wo
    assert _dma_bytes(b, "LOAD", "B") == 27 * wo * (ho + 2 * (tiles - 1))
    x = np.random.default_rng(5).integers(-128, 128, (3, 40, 36))
    assert_runs_like_golden(b, prog, x)


def test_stem_block_residual_pw_balances_its_engines_by_the_rtl_timing():
    """The DSConv's pointwise conv (16 -> 16 + the stem's output as residual) on the `paper`
    engines: the R-MAC drains a residual vector through its 2 residual requant lanes
    (``requant_rmac_res``), 4 cycles per vector of 2 steps, the MAT's through 4 lanes, 2 cycles.
    Per core and tile the split between the engines (``tiling.plan_conv(res=True)``) must end
    both within a few cycles by the cycle model's (the RTL's) time of each instruction; a split
    by engine steps alone gave the R-MAC twice the MAT's time (B1-R224 on `zcu102`: 3,212
    against 1,648 cycles per core, the layer's "fixed" 1,636 in ``--losses``)."""
    from sim.perf import simulate
    from tb.core.cases import stem_block_program
    prog = stem_block_program(c=16, h=64, w=64, seed=4)
    b = compile(prog, AccelConfig.from_string("paper"), stem="im2col")
    trace = []
    simulate(b, trace=trace)
    busy = {}
    for st, unit, op, layer, t0, t1 in trace:
        if layer == 2 and op in ("CONV_MAT", "CONV_RDF"):
            busy.setdefault(st, {}).setdefault(unit, []).append(t1 - t0)
    assert len(busy) == 16
    for st, t in busy.items():
        assert set(t) == {"MAT", "RMAC"} and len(t["MAT"]) == len(t["RMAC"]), (st, t)
        for m, r in zip(t["MAT"], t["RMAC"]):
            assert abs(m - r) <= 8, (st, t)


def test_stem_program_is_the_stem_block():
    """``choose_stem`` probes the stem with the layers up to the last one reading its output
    (the unfolded stem is fused with them): EfficientViT's stem + DSConv; the stem and its one
    reader; the stem alone when a reader is more than ``STEM_BLOCK_MAX`` nodes away."""
    from sim.compile.stem import STEM_BLOCK_MAX, stem_program
    from tb.core.cases import stem_block_program
    from tests.test_funcsim import Builder
    prog = stem_block_program(c=8, h=9, w=9)
    assert [n.name for n in stem_program(prog).nodes] == ["stem", "dw", "pw"]
    assert stem_program(prog).outputs == ["y"]
    b = Builder()
    x = b.input("x", (3, 9, 9))
    s = b.conv("s", x, 8, k=3, s=2, p=1, act="hswish")
    c = b.conv("c1", s, 8)
    b.conv("c2", c, 8)
    one = b.prog()
    assert [n.name for n in stem_program(one).nodes] == ["s", "c1"]
    for i in range(2, STEM_BLOCK_MAX + 1):
        c = b.conv(f"d{i}", c, 8)
    b.conv("far", c, 8, residual=s)
    far = b.prog()
    assert [n.name for n in stem_program(far).nodes] == ["s"]
