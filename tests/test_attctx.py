"""The attention context modules kept on chip (sim.compile.attctx and the emitters that carry
out its plan): the plan on hand-written modules (what stays in B, when it falls back), and the
compiled Binaries run by sim.funcsim against sim.golden, on and off (``attn_onchip``), with
the DRAM traffic the plan removes counted from the Binary's own DMA instructions."""

import numpy as np
import pytest

from sim import golden, zoo
from sim.compile import compile as compile_
from sim.compile.attctx import plan_context_modules
from sim.compile.layout import concat_aliases
from sim.config import AccelConfig
from sim.funcsim import run
from sim.isa import BUFS
from test_funcsim import Builder

SMALL = AccelConfig.from_string("small")


def context_module(qkv=48, gpw=48, dim=8, hw=(6, 6), residual=True, seed=0):
    """x (16 ch) -> qkv PW -> DW 5x5 -> grouped PW (6 groups) -> concat(qkv, agg) -> ReLU
    linear attention -> proj PW + residual x: EfficientViT's LiteMLA context module
    (``residual=False``: proj without the residual)."""
    b = Builder(seed)
    x = b.input("x", (16,) + hw)
    q = b.conv("qkv", x, qkv)
    d = b.conv("dw", q, qkv, k=5, s=1, p=2, dw=True)
    g = b.conv("agg", d, gpw, g=6)
    c = b.concat("cat", [q, g])
    a = b.attention("att", c, dim)
    b.conv("proj", a, 16, residual=x if residual else None)
    p = b.prog()
    return p, b.env[p.inputs[0]]


def _plan(prog, cfg):
    return plan_context_modules(prog, cfg, concat_aliases(prog))


def test_plan_keeps_the_whole_module_in_b_when_it_fits():
    prog, _ = context_module()
    plan = _plan(prog, SMALL)
    # B slot of small: 32 KiB / 3 = 10922 bytes; the largest tensor is 48 x 36 = 1728 bytes
    assert plan.keep == {"qkv": False, "dw": False, "agg": False, "att": False}
    assert plan.readers == {"qkv": 2, "dw": 1, "agg": 1, "att": 1}   # qkv: DW and attention
    assert "dw" in plan.unfuse                      # the [DW, GPW] chain is dropped


def test_plan_falls_back_when_a_tensor_does_not_fit_a_slot():
    # 12 x 12 tokens: qkv, the DW output and the aggregation are 48 x 144 = 6912 bytes each,
    # the attention output 32 x 144 = 4608 (proj without a residual)
    prog, _ = context_module(hw=(12, 12), residual=False)
    plan = _plan(prog, SMALL.replace(buf_b_bytes=21504))         # B slot 7168: everything
    assert set(plan.keep) == {"qkv", "dw", "agg", "att"}
    plan = _plan(prog, SMALL.replace(buf_b_bytes=15360))         # slot 5120: the output only
    assert plan.keep == {"att": False} and plan.readers == {"att": 1} and not plan.unfuse
    plan = _plan(prog, SMALL.replace(buf_b_bytes=12288))         # slot 4096: nothing
    assert plan.keep == {} and not plan.unfuse
    # with proj's residual (16 x 144 bytes in proj's input slot) the output needs 6912 too
    prog, _ = context_module(hw=(12, 12))
    assert _plan(prog, SMALL.replace(buf_b_bytes=15360)).keep == {}


def test_plan_keeps_head_groups_inside_the_concat_inputs():
    # qkv 24 channels (one head of d = 8) + aggregation 72 (three heads): two heads per group
    # (attention_plan's choice) would straddle channel 24, so the plan takes one
    prog, x = context_module(qkv=24, gpw=72)
    plan = _plan(prog, SMALL)
    assert plan.heads_per_group == {"att": 1} and "qkv" in plan.keep
    b = compile_(prog, SMALL)
    assert len([i for s in b.streams.values() for i in s if i.op == "ATT_OUT"]) == 4
    np.testing.assert_array_equal(run(b, x, order="ld_last")["proj"], golden.run(prog, x)["proj"])
    # the EfficientViT shape (halves of equal heads) keeps attention_plan's two groups
    assert _plan(*context_module()[:1], SMALL).heads_per_group == {"att": 2}


def test_attention_stores_resident_parts_when_a_group_straddles_them(monkeypatch):
    """The emitter's own guard: handed head groups that straddle qkv | aggregation (a plan
    that disagrees with it), it stores the resident parts of its input and loads every group
    from DRAM, and the result is still golden's."""
    import sim.compile.pipeline as pipeline
    prog, x = context_module(qkv=24, gpw=72)

    def bad_plan(*a):
        p = plan_context_modules(*a)
        p.heads_per_group = {"att": 2}
        return p
    monkeypatch.setattr(pipeline, "plan_context_modules", bad_plan)
    b = compile_(prog, SMALL)
    assert _touches(b, "cat", prog)                 # stored and loaded after all
    np.testing.assert_array_equal(run(b, x, order="ld_last")["proj"], golden.run(prog, x)["proj"])


def test_no_resident_input_for_a_fused_chain():
    """Found by tests/test_random_programs.py: an attention whose output feeds the first PW of
    a fused [PW, DW, PW] chain. The chain's emitter loads its input from DRAM, so the output
    must not stay in B (it did, and the chain read a DRAM block never written)."""
    b = Builder(3)
    x = b.input("x", (12, 4, 4))
    q = b.conv("qkv", x, 12)
    a = b.attention("att", q, 2)
    e = b.conv("e", a, 16)
    d = b.conv("d", e, 16, k=3, s=1, p=1, dw=True)
    b.conv("y", d, 8)
    prog, x = b.prog(), b.env["x"]
    cfg = AccelConfig.from_string("small")
    from sim.compile.fusion import find_chains
    chains = find_chains(prog, concat_aliases(prog), cfg.buf_c_bytes // 2)
    assert "e" in chains                            # [e, d, y] is fused
    assert plan_context_modules(prog, cfg, concat_aliases(prog), chains).keep == {}
    assert "att" in _plan(prog, cfg).keep           # (without the chains it would be kept)
    bn = compile_(prog, cfg)
    np.testing.assert_array_equal(run(bn, x, order="ld_last")["y"], golden.run(prog, x)["y"])


def _dma(b, op, buf=None):
    return [i for i in b.streams["global"] if i.op == op and (buf is None or i["buf"] == BUFS[buf])]


def _touches(b, tensor, prog):
    """The LOAD/STORE instructions whose DRAM range meets ``tensor``'s block."""
    s = b.symbols[f"tensor:{tensor}"]
    lo, hi = s["addr"], s["addr"] + int(np.prod(prog.tensors[tensor].shape))
    out = []
    for i in _dma(b, "LOAD") + _dma(b, "STORE"):
        a0 = i["dram_addr"]
        a1 = a0 + (i["count"] - 1) * i["stride"] + i["length"]
        if a0 < hi and lo < a1:
            out.append(i)
    return out


#: (config, what stays on chip): everything; the attention output only; nothing
CONFIGS = [("small", "all"), ("paper:buf_a_bytes=8192", "all"), ("small:L=1", "all"),
           ("small:L=3,buf_b_bytes=21504", "all"), ("small:L=3,buf_b_bytes=15360", "att"),
           ("small:L=3,buf_b_bytes=12288", "none")]


@pytest.mark.parametrize("cfg,onchip", CONFIGS)
def test_module_on_and_off_chip_runs_like_golden(cfg, onchip):
    """funcsim == golden in both unit orders (ld_last: a missing WAIT shows) with the plan on
    and off; with it on, what fits B slots does not go through DRAM."""
    prog, x = context_module(hw=(12, 12), residual=False)
    c = AccelConfig.from_string(cfg)
    ref = golden.run(prog, x)["proj"]
    bins = {}
    for on in (False, True):
        b = compile_(prog, c, attn_onchip=on)
        bins[on] = b
        for order in ("ld_first", "ld_last"):
            np.testing.assert_array_equal(run(b, x, order=order)["proj"], ref)
    assert _touches(bins[False], "cat", prog) and _touches(bins[False], "att", prog)
    assert bool(_dma(bins[False], "LOAD", "A")) == (c.buf_a_bytes > 0)
    assert bool(_touches(bins[True], "cat", prog)) == (onchip != "all")
    assert bool(_touches(bins[True], "att", prog)) == (onchip == "none")
    # a head group read from B has its K there too (buffer A is filled only from DRAM)
    assert bool(_dma(bins[True], "LOAD", "A")) == (onchip != "all")
    if onchip == "none":        # nothing fits: the former Binary, instruction by instruction
        for s in bins[False].streams:
            assert [(i.op, i.f) for i in bins[True].streams[s]] == \
                [(i.op, i.f) for i in bins[False].streams[s]]


def test_tiny_model_moves_fewer_bytes_and_stays_bit_exact():
    """The whole tiny network: both context modules on chip, funcsim == golden; the DRAM bytes
    of the Binary (LOAD + STORE lengths) drop by at least the concat's and the attention
    output's round trips."""
    prog = zoo.tiny(seed=1)
    x = golden.quantize_input(zoo.random_image(64, seed=2), prog.tensors[prog.inputs[0]])
    y = prog.outputs[0]
    ref = golden.run(prog, x)[y]
    nbytes = {}
    for on in (False, True):
        b = compile_(prog, AccelConfig.from_string("paper"), attn_onchip=on)
        np.testing.assert_array_equal(run(b, x, order="ld_last")[y], ref)
        nbytes[on] = sum(i["count"] * i["length"] for i in _dma(b, "LOAD") + _dma(b, "STORE"))
    atts = [n for n in prog.nodes if n.op == "linear_attention"]
    # per module at least: concat stored (its two halves) and loaded, attention output
    # stored and loaded
    saved = sum(2 * int(np.prod(prog.tensors[a.inputs[0]].shape)) +
                2 * int(np.prod(prog.tensors[a.output].shape)) for a in atts)
    assert nbytes[False] - nbytes[True] >= saved


# -- command lines (docs/perf.md) ----------------------------------------------------------------

def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True,
                          timeout=600)


def test_cli_attctx_ab_in_one_run():
    import json
    r = _cli("attctx", "--models", "b0-r64", "--frames", "2", "--json")
    assert r.returncode == 0, r.stderr
    off, on = json.loads(r.stdout)
    assert (off["model"], off["attn_onchip"], on["attn_onchip"]) == ("b0-r64", False, True)
    assert on["dram_mb"] < off["dram_mb"]           # the round trips are gone
    assert on["onchip_layers"] > off["onchip_layers"]
    for k in ("compute_bound_fps", "traffic_bound_fps", "per_layer_bound_fps"):
        assert on[k] == off[k]                      # bounds of the program, not the Binary
    assert on["streaming_fps"] > 0 and on["latency_over_compute"] <= 1


def test_cli_bufsweep_budget_table_csv_plot(tmp_path):
    import json
    pp = zoo.tiny(seed=0).save(tmp_path / "tiny.npz")
    args = ("bufsweep", "--program", str(pp), "--config", "small", "--b", "24,32", "--c", "32",
            "--out-kb", "16", "--csv", str(tmp_path / "b.csv"), "--plot", str(tmp_path / "b.png"))
    r = _cli(*args, "--budget-kb", "72", "--ab", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    # 24 + 32 + 16 = 72 KiB is within the budget, 32 + 32 + 16 is not
    assert [(x["b_kb"], x["c_kb"], x["out_kb"]) for x in rows] == [(24, 32, 16)]
    assert rows[0]["latency_fps"] > 0 and rows[0]["latency_fps_dram"] > 0
    assert (tmp_path / "b.csv").read_text().startswith("b_kb,c_kb,out_kb,total_kb")
    assert (tmp_path / "b.png").stat().st_size > 1000
    r = _cli(*args, "--budget-kb", "40")
    assert r.returncode == 2 and "no (B, C, OUT) combination" in r.stderr


# -- the aggregation pipelined: DW row pieces on the R-MACs, the grouped PW on the MATs -------

def _layer_ops(b, prog, name):
    li = [n.name for n in prog.nodes].index(name)
    return [(s, i.op) for s, ins in b.streams.items() for i, t in zip(ins, b.tags[s])
            if t == li and i.op not in ("SETR", "WAIT", "SIGNAL", "NOP")]


@pytest.mark.parametrize("cfg,qkv,dim", [("paper:buf_a_bytes=8192", 192, 16),
                                         ("paper:L=4", 192, 16), ("small", 48, 8)])
def test_aggregation_runs_in_row_pieces_like_golden(cfg, qkv, dim, monkeypatch):
    """With the module on chip, the aggregation's DW writes its output in row pieces and the
    grouped PW reads each on the MAT engines only: funcsim == golden in both unit orders, more
    DW instructions than without the pipeline, and fewer cycles in sim.perf."""
    from sim.compile import attctx
    from sim.perf import simulate
    prog, x = context_module(qkv=qkv, gpw=qkv, dim=dim, hw=(12, 12), residual=False)
    c = AccelConfig.from_string(cfg)
    ref = golden.run(prog, x)["proj"]
    bins = {}
    for pipe in (False, True):
        monkeypatch.setattr(attctx, "PIPE_AGGREGATION", pipe)
        b = bins[pipe] = compile_(prog, c)
        for order in ("ld_first", "ld_last"):
            np.testing.assert_array_equal(run(b, x, order=order)["proj"], ref)
    core = ("DW_RSA", "CONV_MAT", "CONV_RDF")
    dw = {p: [o for _, o in _layer_ops(bins[p], prog, "dw") if o in core] for p in bins}
    agg = {p: [o for _, o in _layer_ops(bins[p], prog, "agg") if o in core] for p in bins}
    assert set(dw[True]) == {"DW_RSA"} and len(dw[True]) > len(dw[False])
    # the first pieces' conv on the MAT while the R-MAC still runs the DW
    assert agg[True][0] == "CONV_MAT" and agg[True].count("CONV_MAT") > agg[False].count(
        "CONV_MAT")
    assert simulate(bins[True]).cycles < simulate(bins[False]).cycles


def test_pipe_pieces_cover_the_rows_in_order():
    from sim.compile.tiling import pipe_pieces
    cfg = AccelConfig.from_string("zcu102")
    for ho, wo, nch in ((14, 14, 384), (7, 7, 768), (3, 3, 48)):
        ps, tasks = pipe_pieces(cfg, nch=nch, ho=ho, wo=wo, k=5, cout=nch, cin_g=16,
                                groups=nch // 16)
        assert ps[0][0] == 0 and ps[-1][1] == ho
        assert all(a < b for a, b in ps) and all(p[1] == q[0] for p, q in zip(ps, ps[1:]))
        # the reader's tasks of each piece cover its pixels x all channels exactly once
        for (r0, r1), ts in zip(ps, tasks):
            cover = np.zeros((nch, ho * wo), dtype=int)
            for _, _, (ca, cb), (pa, pb) in ts:
                cover[ca:cb, pa:pb] += 1
            assert (cover[:, r0 * wo:r1 * wo] == 1).all() and cover.sum() == nch * (r1 - r0) * wo
    # B1's stage-2 aggregation (384 channels, 14 x 14, 5 x 5): the R-MAC's 2,100 steps per core
    # against the MAT's ~600: pipelined in several pieces
    assert len(pipe_pieces(cfg, nch=384, ho=14, wo=14, k=5, cout=384, cin_g=16,
                           groups=24)[0]) > 1


# -- the qkv pointwise in row pieces ahead of the aggregation DW (attctx.PIPE_QKV) -----------

@pytest.mark.parametrize("cfg,qkv,dim", [("small", 48, 8), ("zcu102", 384, 16)])
def test_qkv_runs_in_row_pieces_like_golden(cfg, qkv, dim, monkeypatch):
    """The qkv pointwise writes its on-chip output in the aggregation DW's row pieces (a
    SIGNAL per piece), its last pieces on the MAT engines alone while the R-MACs start the DW:
    funcsim == golden in both unit orders (ld_last: a missing WAIT shows) with it on and off,
    and fewer cycles in sim.perf with it on."""
    from sim.compile import attctx
    from sim.perf import simulate
    prog, x = context_module(qkv=qkv, gpw=qkv, dim=dim, hw=(14, 14), residual=False)
    c = AccelConfig.from_string(cfg)
    ref = golden.run(prog, x)["proj"]
    bins = {}
    for on in (False, True):
        monkeypatch.setattr(attctx, "PIPE_AGGREGATION", True)
        monkeypatch.setattr(attctx, "PIPE_QKV", on)
        b = bins[on] = compile_(prog, c)
        for order in ("ld_first", "ld_last"):
            np.testing.assert_array_equal(run(b, x, order=order)["proj"], ref)
    li = [n.name for n in prog.nodes].index("qkv")

    def qkv_ops(b, op):
        return [(s, i) for s, ins in b.streams.items() for i, t in zip(ins, b.tags[s])
                if t == li and i.op == op]
    assert len(qkv_ops(bins[True], "SIGNAL")) > len(qkv_ops(bins[False], "SIGNAL"))
    # the R-MACs' last qkv rows end before the MATs': the late pieces run on the MATs alone
    # (planar output in the B slot: channel * 196 + pixel from the slot's base; pixels as rows)
    convs = qkv_ops(bins[True], "CONV_MAT") + qkv_ops(bins[True], "CONV_RDF")
    base = min(i["o_addr"] for _, i in convs)
    last = {}
    for s, i in convs:
        last.setdefault(i.op, []).append((i["o_addr"] - base) % 196 + i["ho"])
    assert max(last["CONV_MAT"]) == 196 > max(last.get("CONV_RDF", [0]))
    assert simulate(bins[True]).cycles < simulate(bins[False]).cycles


def test_qkv_pieces_cover_every_row_once_with_the_halo():
    """tiling.pre_pipe_plan / pre_pipe_needs against the spec: the pieces partition the rows,
    each piece's tasks write its pixels x all qkv channels exactly once, and DW piece j waits
    for exactly the qkv pieces that meet its rows widened by k//2 (clipped to the map)."""
    from sim.compile.common import split
    from sim.compile.tiling import dw_piece_times, pre_pipe_needs, pre_pipe_plan
    for ho in range(1, 16):
        for n in range(1, ho + 1):
            for k in (3, 5):
                ps = split(ho, n)
                assert [r for a, b in ps for r in range(a, b)] == list(range(ho))
                for (r0, r1), need in zip(ps, pre_pipe_needs(ps, k)):
                    lo, hi = max(0, r0 - k // 2), min(ho, r1 + k // 2)
                    rows = sorted(r for i in need for r in range(*ps[i]))
                    assert set(range(lo, hi)) <= set(rows)
                    # no piece outside the window
                    assert all(ps[i][0] < hi and ps[i][1] > lo for i in need)
    cfg = AccelConfig.from_string("zcu102")
    for ho, wo, nco, K in ((14, 14, 384, 128), (8, 8, 48, 16)):
        ps = split(ho, 4)
        plan = pre_pipe_plan(cfg, ps, dw_piece_times(cfg, ps, nch=nco, wo=wo, k=5), k=5,
                             wo=wo, nco=nco, K=K, then=dict(cout=nco, cin_g=16,
                                                            groups=nco // 16))
        if plan is None:
            continue
        tasks, ends, _ = plan
        assert all(a < b for a, b in zip(ends, ends[1:]))
        cover = np.zeros((nco, ho * wo), dtype=int)
        for (r0, r1), ts in zip(ps, tasks):
            for _, _, (ca, cb), (pa, pb) in ts:
                assert r0 * wo <= pa < pb <= r1 * wo
                cover[ca:cb, pa:pb] += 1
        assert (cover == 1).all()


def test_tiny_network_with_the_qkv_in_row_pieces_like_golden(monkeypatch):
    """The whole tiny network at resolution 128 on ``small`` (its stage-2 context module at
    8x8 tokens: the qkv in row pieces; at 64 the maps are too small for pieces): funcsim ==
    golden in both unit orders with the pipeline on, and on / off differ only there."""
    from sim.compile import attctx
    prog = zoo.tiny(seed=1, resolution=128)
    x = golden.quantize_input(zoo.random_image(128, seed=2), prog.tensors[prog.inputs[0]])
    y = prog.outputs[0]
    ref = golden.run(prog, x)[y]
    qkv = [i for i, n in enumerate(prog.nodes) if n.name.endswith("context_module.main.qkv")]
    signals = {}
    for on in (False, True):
        monkeypatch.setattr(attctx, "PIPE_AGGREGATION", True)
        monkeypatch.setattr(attctx, "PIPE_QKV", on)
        b = compile_(prog, SMALL)
        if on:
            for order in ("ld_first", "ld_last"):
                np.testing.assert_array_equal(run(b, x, order=order)[y], ref)
        signals[on] = [sum(1 for s, ins in b.streams.items() for i, t in zip(ins, b.tags[s])
                           if t == li and i.op == "SIGNAL") for li in qkv]
    assert any(a > b for a, b in zip(signals[True], signals[False]))
