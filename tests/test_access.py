"""sim.access: port strides, widths, rates and sharing, checked against first principles.

The hand-built Binary below is written instruction by instruction (no compiler): two cores run
one pointwise conv tile each, 16 -> 12 channels over 6 pixels of a (16, 2, 3) block in B whose
channel stride is 6 bytes, so every figure follows from the layout:

* MAT (S = T = 8): x is 8 channels of one pixel at stride XSTRIDE = 6; 2 reduction steps per
  pixel (16 / 8), 2 channel blocks (12 / 8 rounded up), 6 pixels: 24 steps, one x and one w
  access each; w is 8 rows (output channels) of 8 bytes at row stride K = CIN = 16;
  the output vectors are 2 blocks x 6 pixels = 12, one p (8 records, row stride 32) and one o
  access each; the second block carries 4 of 8 lanes, so 6 lanes on average.
"""
import numpy as np
import pytest

from sim import access, zoo
from sim.compile import Binary, compile as compile_
from sim.config import AccelConfig
from sim.isa import BUFS, REGS, UNITS, Instr
from test_funcsim import Builder

CFG = AccelConfig.from_string("paper:L=2")


def _setr(unit, **regs):
    return [Instr("SETR", dict(unit=UNITS[unit], reg=REGS[k], value=v)) for k, v in regs.items()]


PW = dict(CIN=16, WIN=1, WOUT=1, KERNEL=1, STRIDE=1, GROUPS=1, PAD_L=0, PAD_R=0, ACT=0, OBITS=8,
          OSIGNED=1, MIDBITS=16, THREE=0, RES_ADDR=-1, NOEPI=0, XSTRIDE=6, OSTRIDE=6, RSTRIDE=6,
          XSIGNED=1, RSIGNED=1, XBUF=0)


def _conv(op, **f):
    base = dict(x_addr=0, w_addr=0, p_addr=4096, o_addr=0, nco=12, hin=6, ho=6, pad_t=0,
                pad_b=0, obuf=BUFS["OUT"])
    base.update(f)
    return Instr(op, base)


def _tiny_prog():
    b = Builder(0)
    b.conv("y", b.input("x", (16, 2, 3)), 12)
    return b.prog()


def hand_binary(core1_x_addr=0, core1_w_addr=0):
    """Two cores, one CONV_MAT each (see the module doc); core 1's x / w base addresses given."""
    halt = lambda u: Instr("HALT", dict(unit=UNITS[u]))       # noqa: E731
    streams = {"global": [halt("LD"), halt("ST"), halt("HOST")]}
    for c, (xa, wa) in enumerate([(0, 0), (core1_x_addr, core1_w_addr)]):
        streams[f"core{c}"] = (_setr("MAT", **PW) + [_conv("CONV_MAT", x_addr=xa, w_addr=wa,
                                                          o_addr=64 * c)]
                               + [halt("MAT"), halt("RMAC"), halt("AUX")])
    tags = {k: [-1] * len(v) for k, v in streams.items()}
    return Binary(CFG, _tiny_prog(), streams, tags, np.zeros(64, np.uint8), {},
                  [dict(name="y")])


def _port(rep, unit, op, port, buf):
    rows = [p for p in rep["ports"] if (p["unit"], p["op"], p["port"], p["buf"])
            == (unit, op, port, buf)]
    assert len(rows) == 1, rows
    return rows[0]


def test_pointwise_ports_from_first_principles():
    ports = {p.port: p for p in access.instruction_ports(
        CFG, "MAT", "CONV_MAT", PW, _conv("CONV_MAT").f)}
    assert set(ports) == {"x", "w", "p", "o"}          # no residual: RES_ADDR = -1
    x, w, p, o = ports["x"], ports["w"], ports["p"], ports["o"]
    assert (x.buf, x.elem_stride, x.rows, x.elems, x.accesses, x.used) == ("B", 6, 1, 8, 24, 8)
    # pre-tiled weights (sim.isa): one line of 8 rows x 8 bytes, row stride W = 8
    assert (w.buf, w.row_stride, w.elem_stride, w.rows, w.elems, w.accesses) == \
        ("C", 8, 1, 8, 8, 24)
    assert w.used == 6 * 8                              # 12 channels in 2 blocks of 8 lanes
    assert (p.buf, p.row_stride, p.rows, p.elems, p.accesses, p.used) == \
        ("C", 32, 8, 32, 12, 6 * 32)
    assert (o.buf, o.elem_stride, o.accesses, o.write, o.elem_bytes) == ("OUT", 6, 12, True, 1)


def test_int32_logits_and_residual():
    regs = dict(PW, NOEPI=1, OBITS=32, RES_ADDR=100, RSTRIDE=7)
    ports = {p.port: p for p in access.instruction_ports(
        CFG, "RMAC", "CONV_RDF", regs, _conv("CONV_RDF").f)}
    assert ports["o"].elem_bytes == 4 and ports["o"].width == 8 * 4
    assert (ports["r"].buf, ports["r"].addr, ports["r"].elem_stride, ports["r"].accesses) == \
        ("B", 100, 7, 12)


def test_generic_conv_strides():
    # 3x3 conv, CIN = 3: pre-tiled weights, one line of 8 x 8 per step (row stride W = 8,
    # element stride 1; 3 of 8 elements used); one step per tap (tap-major im2col), 9 per pixel
    regs = dict(PW, CIN=3, KERNEL=3, WIN=5, WOUT=5, STRIDE=1, PAD_L=1, XSTRIDE=25)
    f = _conv("CONV_MAT", nco=8, hin=5, ho=5, pad_t=1, pad_b=1).f
    ports = {p.port: p for p in access.instruction_ports(CFG, "MAT", "CONV_MAT", regs, f)}
    assert (ports["w"].elem_stride, ports["w"].row_stride) == (1, 8)
    assert ports["x"].accesses == 25 * 9 and ports["x"].used == 3
    assert ports["p"].accesses == 25


def test_depthwise_ports():
    # DW 3x3 stride 2 on N = M = 8: 16 channels, 4 output rows of 4 columns -> 2 x 4 x 1
    # passes of 9 steps; a row segment per (ky, phase): 6 per pass; 8 drained channels per pass
    regs = dict(PW, KERNEL=3, STRIDE=2, WIN=8, WOUT=4, XSTRIDE=64, PAD_L=1)
    f = _conv("DW_RSA", nco=16, hin=8, ho=4, pad_t=1).f
    ports = {p.port: p for p in access.instruction_ports(CFG, "RMAC", "DW_RSA", regs, f)}
    xr = ports["xr"]
    assert (xr.buf, xr.row_stride, xr.elem_stride, xr.rows, xr.elems) == ("B", 64, 2, 8, 12)
    assert xr.accesses == 8 * 6
    # the tap of 8 channels: one pre-tiled 8-byte word
    assert (ports["x"].buf, ports["x"].elem_stride, ports["x"].accesses) == ("C", 1, 8 * 9)
    assert ports["p"].accesses == ports["o"].accesses == 8 * 8


def test_dw_row_segment_matches_the_rmac_port():
    from hw.core.unit import MAX_KERNEL
    assert access.DW_ROW_EXTRA == MAX_KERNEL - 1


def test_attention_ports():
    regs = dict(PW, DIM=16, NTOK=49, XSTRIDE=49)
    f = _conv("ATT_OUT", x_addr=10, w_addr=0, obuf=BUFS["B"]).f
    ports = {p.port: p for p in access.instruction_ports(CFG, "MAT", "ATT_OUT", regs, f)}
    assert (ports["x"].buf, ports["x"].elem_stride, ports["x"].accesses) == ("B", 49, 2 * 49 * 2)
    assert (ports["o"].elem_stride, ports["o"].accesses) == (49, 2 * 49)
    assert ports["w"].buf == "AUX" and ports["r"].buf == "DIV" and ports["p"].accesses == 1


@pytest.mark.parametrize("stride,banks,expect", [(1, 8, 1), (6, 8, 2), (7, 8, 1), (8, 8, 8),
                                                (16, 64, 2), (49, 8, 1), (64, 64, 8)])
def test_bank_load_one_row(stride, banks, expect):
    # 8 bytes at an element stride: distinct banks = banks / gcd(stride, banks), capped at 8
    assert access.bank_load(1, 8, 0, stride, banks) == expect
    g = np.gcd(stride, banks)
    assert expect == -(-8 // min(8, banks // g))


def test_bank_load_rows():
    # 8 lines of 8 bytes at row stride 16 on 16 banks: every line falls on banks 0..7, so
    # each of them holds 8 of the 64 bytes; at row stride 8 on 64 banks all 64 are distinct;
    # at row stride 8 on 16 banks the lines alternate between banks 0..7 and 8..15: 4 per bank
    assert access.bank_load(8, 8, 16, 1, 16) == 8
    assert access.bank_load(8, 8, 8, 1, 64) == 1
    assert access.bank_load(8, 8, 8, 1, 16) == 4
    # row stride 0 (ATT_DIV: every lane reads the same bytes): one address per bank
    assert access.bank_load(8, 8, 0, 1, 8) == 1


def test_hand_binary_report_and_sharing():
    # the same x on both cores (channel split: each reads all input pixels), different weights
    rep = access.analyse(hand_binary(core1_x_addr=0, core1_w_addr=256))
    x = _port(rep, "MAT", "CONV", "x", "B")
    assert x["accesses"] == 48 and x["instructions"] == 2 and x["cores"] == 2
    assert x["per_step"] == 1.0 and x["elem_stride"] == [[6, 1.0]] and x["odd_elem_stride"] == 0
    assert x["cycles_per_access"][8] == 2          # stride 6 on 8 banks: 4 distinct banks
    sh = {(s["port"], s["buf"]): s for s in rep["sharing"]}
    assert sh[("x", "B")]["broadcast_factor"] == 2.0 and sh[("x", "B")]["shared_fraction"] == 1
    assert sh[("x", "B")]["start_skew_cycles"] == 0      # both start in the same cycle
    assert sh[("w", "C")]["broadcast_factor"] == 1.0 and sh[("w", "C")]["shared_fraction"] == 0
    assert sh[("p", "C")]["broadcast_factor"] == 2.0     # same records (same p_addr)
    # row split instead: the same weights, different pixels
    rep = access.analyse(hand_binary(core1_x_addr=3, core1_w_addr=0))
    sh = {(s["port"], s["buf"]): s for s in rep["sharing"]}
    assert sh[("x", "B")]["broadcast_factor"] == 1.0 and sh[("w", "C")]["broadcast_factor"] == 2.0


def test_hand_binary_rates():
    # one CONV_MAT per core: 3 fetch/setup + 24 steps + post; 24 x accesses of 8 bytes each
    rep = access.analyse(hand_binary())
    r = rep["rates"]["B.read"]
    assert r["ports_bytes_per_cycle"]["mean"] == pytest.approx(2 * 24 * 8 / rep["cycles"],
                                                               abs=0.01)
    assert r["distinct_bytes_per_cycle_mean"] == pytest.approx(24 * 8 / rep["cycles"], abs=0.01)
    assert "C.write" not in rep["rates"]          # no DMA, no compute writes into C


def test_compiled_tiny_every_compute_instruction_counted():
    cfg = AccelConfig.from_string("paper:L=4")
    b = compile_(zoo.tiny(), cfg)
    rep = access.analyse(b)
    n = sum(1 for s, ins in b.streams.items() if s != "global" for i in ins
            if i.op in ("CONV_MAT", "CONV_RDF", "DW_RSA", "POOL", "ATT_KV_RDF", "ATT_KV_MAT",
                        "ATT_KSUM", "ATT_DIV", "ATT_OUT"))
    # every compute instruction has a p port (parameter records or the head's record)
    assert sum(p["instructions"] for p in rep["ports"] if p["port"] == "p") == n
    # the engine-step ports make one access per step
    for p in rep["ports"]:
        if p["port"] in ("x", "w"):
            assert p["per_step"] == 1.0, p
    assert rep["cycles"] > 0 and set(rep["rates"]) >= {"B.read", "C.read"}


def test_forced_splits_change_sharing():
    cfg = AccelConfig.from_string("paper:L=4")
    prog = zoo.tiny()
    sh = {}
    for split in ("rows", "channels"):
        rep = access.analyse(access.compile_split(prog, cfg, split))
        sh[split] = {(s["port"], s["buf"]): s["broadcast_factor"] for s in rep["sharing"]}
    # rows: the cores share weights; channels: the cores share inputs
    assert sh["rows"][("w", "C")] > sh["channels"][("w", "C")]
    assert sh["channels"][("x", "B")] > sh["rows"][("x", "B")]
    with pytest.raises(ValueError, match="split"):
        access.compile_split(prog, cfg, "diagonal")


def test_cli_json(capsys):
    import json
    from sim.__main__ import main
    main(["access", "--model", "tiny", "--config", "paper:L=2", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rep["L"] == 2 and rep["ports"] and rep["sharing"]


def test_word_bank_load():
    """Word-interleaved banks (hw.system.banked): bytes of one word cost one access, words in
    the same bank one cycle each."""
    from sim.access import word_bank_load
    assert word_bank_load(0, 1, 8, 0, 1) == 1            # one aligned word
    assert word_bank_load(4, 1, 8, 0, 1) == 1            # two words, two banks
    assert word_bank_load(0, 1, 4, 0, 64) == 4           # stride 64 = 8 words: one bank
    assert word_bank_load(0, 1, 4, 0, 64, banks=16) == 2
    assert word_bank_load(0, 4, 32, 32, 1) == 2          # 128 contiguous bytes on 8 x 8
    assert word_bank_load(0, 8, 8, 128, 1, banks=8, word=8) == 8     # weight rows at K = 128


# -- the channel-blocked what-if (sim.access.relayout, docs/global-buffers.md section 5) -------
# [C/8][H][W][8]: channel c, pixel p of a tile of npix pixels at (c//8)*npix*8 + p*8 + c%8


def test_blocked_pointwise_x_and_o_become_one_word():
    ports = {p.port: access.relayout(p, "blocked", 8) for p in access.instruction_ports(
        CFG, "MAT", "CONV_MAT", PW, _conv("CONV_MAT", x_addr=70).f)}
    x, w, o = ports["x"], ports["w"], ports["o"]
    # 8 channels of one pixel: stride 1, 8 bytes, tile base rounded down to 64
    assert (x.elem_stride, x.rows, x.elems, x.addr, x.accesses) == (1, 1, 8, 64, 24)
    assert access.word_load(x.addr, x.rows, x.elems, x.row_stride, x.elem_stride) == (1, 1)
    assert (o.elem_stride, o.accesses) == (1, 12)
    # weights are not activations: relayout leaves the pre-tiled line (row stride W = 8) alone
    assert (w.row_stride, w.elem_stride) == (8, 1)
    # planar: the same x access is 8 bytes at stride 6 = 6 words over 6 banks
    px = next(p for p in access.instruction_ports(CFG, "MAT", "CONV_MAT", PW,
                                                  _conv("CONV_MAT").f) if p.port == "x")
    assert access.word_load(0, 1, 8, 0, px.elem_stride) == (6, 1)


def test_blocked_depthwise_row_segment_and_drain():
    regs = dict(PW, KERNEL=3, STRIDE=2, WIN=8, WOUT=4, XSTRIDE=64, PAD_L=1, RES_ADDR=0)
    f = _conv("DW_RSA", nco=16, hin=8, ho=4, pad_t=1).f
    ports = {p.port: access.relayout(p, "blocked", 8)
             for p in access.instruction_ports(CFG, "RMAC", "DW_RSA", regs, f)}
    xr, o, r = ports["xr"], ports["o"], ports["r"]
    # 8 channels x 12 pixels at pixel step 2: 12 words at a word stride of 2
    assert (xr.row_stride, xr.elem_stride, xr.rows, xr.elems) == (1, 16, 8, 12)
    assert access.word_load(0, 8, 12, 1, 16) == (12, 3)       # banks 0, 2, 4, 6: 3 each
    # the drain writes one channel x M = 8 pixels: 8 consecutive words (8 banks once)
    assert (o.elem_stride, r.elem_stride) == (8, 8)
    assert access.word_load(0, 1, 8, 0, 8) == (8, 1)
    assert ports["x"].elem_stride == 1      # DW weights (buffer C, pre-tiled words): unchanged


def test_blocked_attention_ports():
    regs = dict(PW, DIM=16, NTOK=49, XSTRIDE=49)
    out = {p.port: access.relayout(p, "blocked", 8) for p in access.instruction_ports(
        CFG, "MAT", "ATT_OUT", regs, _conv("ATT_OUT", obuf=BUFS["B"]).f)}
    assert out["x"].elem_stride == 1 and out["o"].elem_stride == 1    # channels of one token
    assert out["w"].buf == "AUX" and out["w"].elem_stride == 16       # local: unchanged
    kv = {p.port: access.relayout(p, "blocked", 8) for p in access.instruction_ports(
        CFG, "RMAC", "ATT_KV_RDF", regs, _conv("ATT_KV_RDF").f)}
    # K: 8 tokens of one channel -> stride 8; V: 8 channels x 8 tokens -> 8 words
    assert kv["x"].elem_stride == 8
    assert (kv["w"].row_stride, kv["w"].elem_stride) == (1, 8)


def test_blocked_refuses_wider_than_the_block():
    p = next(p for p in access.instruction_ports(CFG, "MAT", "CONV_MAT", PW, _conv("CONV_MAT").f)
             if p.port == "x")
    with pytest.raises(ValueError, match="exceed the block of 4"):
        access.relayout(p, "blocked", 4)
    with pytest.raises(ValueError, match="layout must be one of"):
        access.relayout(p, "nhwc", 8)
    assert access.relayout(p, "planar", 8) is p


def test_blocked_report_keeps_the_network_input_planar():
    """Compiled tiny: with the what-if every B / OUT activation port of the conv layers but the
    stem's input reads (the network image, kept planar) carries 8 channels in one word; counts
    and weights are those of the planar report."""
    cfg = AccelConfig.from_string("paper:L=2")
    prog = zoo.tiny()
    b = compile_(prog, cfg, stem="taps")     # (the stem reads the planar network image)
    trace = []
    from sim.perf import simulate
    simulate(b, trace=trace)
    pl = access.analyse(b, trace=trace)
    bl = access.analyse(b, layout="blocked")
    assert (pl["layout"], bl["layout"], bl["block"]) == ("planar", "blocked", 8)
    key = lambda p: (p["unit"], p["op"], p["port"], p["buf"])      # noqa: E731
    pp, bp = {key(p): p for p in pl["ports"]}, {key(p): p for p in bl["ports"]}
    assert pp.keys() == bp.keys()
    for k, p in bp.items():
        assert p["accesses"] == pp[k]["accesses"]
        if k[3] == "C":
            assert p["words_per_access"] == pp[k]["words_per_access"]
    for u in ("MAT", "RMAC"):
        for port in ("o", "r"):
            assert bp[(u, "CONV", port, "B")]["words_per_access"] == 1.0
        # x: one word except the stem's reads of the 3-channel image (planar, stride H*W)
        stem_share = sum(s for v, s in bp[(u, "CONV", "x", "B")]["elem_stride"] if v != 1)
        # (the stem's x stride is its row tile's rows x the image width)
        w_in = prog.tensors[prog.inputs[0]].shape[2]
        assert all(v % w_in == 0 for v, s in bp[(u, "CONV", "x", "B")]["elem_stride"]
                   if v != 1)
        assert stem_share < 1
    cli = access.format_report(bl)
    assert "what-if: activations blocked, B = 8" in cli


def test_blocked_dma_descriptors():
    """blocked_dma: a row tile of a (16, 4, 6) activation (channels 0..16, rows 1..3: 16 chunks
    of 12 bytes at stride 24) becomes 2 blocks x 12 pixels x 8 channels (2 chunks of 96 bytes
    at stride 24 * 8); whole channels merge into one run; other DRAM (weights) is unchanged."""
    b = Builder(0)
    b.conv("y", b.conv("h", b.input("x", (3, 4, 6)), 16), 12)
    prog = b.prog()
    cfg = AccelConfig.from_string("paper:L=1")
    bin_ = compile_(prog, cfg)
    h = bin_.symbols["tensor:h"]
    w = bin_.symbols["weight:y"]
    ld = lambda **f: Instr("LOAD", dict(buf=BUFS["B"], buf_addr=64, core=0, **f))  # noqa: E731
    halt = [Instr("HALT", dict(unit=UNITS[u])) for u in ("LD", "ST", "HOST")]
    g = [ld(dram_addr=h["addr"] + 6, count=16, length=12, stride=24),
         ld(dram_addr=h["addr"], count=1, length=16 * 24, stride=0),
         ld(dram_addr=h["addr"] + 24 * 9, count=1, length=24 * 3, stride=0),
         ld(dram_addr=w["addr"], count=1, length=48, stride=0)] + halt
    bin_.streams["global"], bin_.tags["global"] = g, [0] * len(g)
    out, stats = access.blocked_dma(bin_, 8)
    got = [(i.f["dram_addr"] - h["addr"], i.f["count"], i.f["length"], i.f["stride"],
            i.f["buf_addr"]) for i in out.streams["global"][:4]]
    assert got[0] == (6 * 8, 2, 12 * 8, 24 * 8, 64)
    assert got[1] == (0, 1, 2 * 24 * 8, 0, 64)
    # channels 9..11 (whole): their block, channels 8..15
    assert got[2] == (24 * 8, 1, 24 * 8, 0, 64)
    assert out.streams["global"][3] is g[3]
    assert stats == dict(converted=3, unchanged=1, descriptors=3)
    assert len(out.tags["global"]) == len(out.streams["global"])
    assert bin_.streams["global"] is g                  # the input Binary is not changed


def test_word_demand_per_step():
    """The words table of the hand Binary (module doc): per step x is 8 channels at stride 6
    (6 words planar, 1 blocked), w 8 rows of 8 bytes at row stride 16 (8 words), p 8 records
    (32 words) per output vector (12 vectors in 24 steps), o 8 lanes (12 vectors)."""
    for layout, xw, ow in (("planar", 6, 6), ("blocked", 1, 1)):
        rep = access.analyse(hand_binary(), layout=layout)
        (w,) = [w for w in rep["words"] if (w["unit"], w["op"]) == ("MAT", "CONV")]
        assert w["steps"] == 2 * 24
        pp = w["per_port"]
        assert pp["x.B"] == xw and pp["w.C"] == 8 and pp["p.C"] == 16
        # o: 12 vectors per 24 steps, each counted at the port's full 8 lanes (masked lanes
        # of the partial second block included: the model has one pattern per port)
        assert pp["o.OUT"] == (6 / 2 if layout == "planar" else 1 / 2)
        assert w["words_per_step"] == pytest.approx(sum(pp.values()), abs=0.02)


def test_bank_demand_hand_binary():
    """Two cores x 24 steps of the hand Binary: per step x 6 words (1 blocked), w 8; per vector
    (12 per core) p 32 and o 6 (1 blocked)."""
    for layout, xw, ow in (("planar", 6, 6), ("blocked", 1, 1)):
        d = access.bank_demand(hand_binary(), layout=layout)
        words = 2 * (24 * (xw + 8) + 12 * (32 + ow))
        assert d == dict(words=words, steps=48, cycles=-(-words // 8))
