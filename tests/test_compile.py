"""Compiler: Binary save/load, DRAM image contents, work split over the cores, errors."""
import json

import numpy as np
import pytest

from sim import golden, zoo
from sim.compile import PARAM_RECORD, Binary, CompileError, compile as compile_
from sim.config import AccelConfig
from sim.funcsim import run
from test_funcsim import Builder, case


def test_save_load_round_trip(tmp_path):
    prog, x = case("mbconv_fused")
    b = compile_(prog, AccelConfig.from_string("small"))
    path = b.save(tmp_path / "m.bin.npz")
    b2 = Binary.load(path)
    assert b2.cfg == b.cfg and np.array_equal(b2.dram, b.dram)
    assert list(b2.streams) == list(b.streams)
    for s in b.streams:
        assert [(i.op, i.f) for i in b2.streams[s]] == [(i.op, i.f) for i in b.streams[s]]
        assert b2.tags[s] == b.tags[s]
    assert b2.symbols == json.loads(json.dumps(b.symbols))
    ref = golden.run(prog, x)
    got = run(b2, x)
    assert all(np.array_equal(got[k], ref[k]) for k in ref)


def test_load_errors(tmp_path):
    with pytest.raises(CompileError, match="no such file"):
        Binary.load(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CompileError, match="not a Binary"):
        Binary.load(tmp_path / "junk.npz")
    prog, _ = case("pool")
    p = compile_(prog, AccelConfig.from_string("small")).save(tmp_path / "v.npz")
    z = dict(np.load(p))
    m = json.loads(z["__manifest__"].tobytes())
    m["version"] = 99
    z["__manifest__"] = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v2.npz", **z)
    with pytest.raises(CompileError, match="version 99"):
        Binary.load(tmp_path / "v2.npz")


def test_dram_image_holds_weights_and_params():
    prog, _ = case("grouped_pointwise")
    b = compile_(prog, AccelConfig.from_string("paper"))
    n = prog.nodes[0]
    s = b.symbols[f"weight:{n.name}"]      # pre-tiled: tests/test_wtile.py checks the bytes
    assert s["kind"] == "weight" and s["layout"] == "tiled"
    s = b.symbols[f"param:{n.name}"]
    rec = b.dram[s["addr"]:s["addr"] + s["nbytes"]].view(np.int32).reshape(-1, 8)
    assert rec.shape == (48, PARAM_RECORD // 4)
    assert np.array_equal(rec[:, 0], n.params["bias"])
    assert np.array_equal(rec[:, 1], np.broadcast_to(n.epilogue.mult.b, 48))
    assert np.array_equal(rec[:, 2], np.broadcast_to(n.epilogue.mult.c, 48))
    # every block is 64-byte aligned
    assert all(v["addr"] % 64 == 0 for v in b.symbols.values() if v["kind"] != "alias")


def test_concat_inputs_alias_the_output():
    prog, _ = case("aggreg_concat")
    b = compile_(prog, AccelConfig.from_string("paper"))
    c = b.symbols["tensor:c"]
    q, g = b.symbols["tensor:q"], b.symbols["tensor:g"]
    assert q["addr"] == c["addr"] and g["addr"] == c["addr"] + 96 * 25
    assert q["kind"] == g["kind"] == "alias"


def test_work_is_split_over_all_cores_and_engines():
    prog = Builder(0)
    prog.conv("y", prog.input("x", (64, 14, 14)), 128)
    b = compile_(prog.prog(), AccelConfig.from_string("paper"))
    for i in range(16):
        ops = {ins.op for ins in b.streams[f"core{i}"]}
        assert {"CONV_MAT", "CONV_RDF"} <= ops, (i, ops)


def test_fusion_keeps_intermediates_on_chip():
    prog, _ = case("mbconv_fused")
    b = compile_(prog, AccelConfig.from_string("paper"))
    assert [l.get("on_chip", False) for l in b.layers] == [True, True, False]
    # no STORE writes the expanded or depthwise tensors
    stores = [i["dram_addr"] for i in b.streams["global"] if i.op == "STORE"]
    for t in ("e", "d"):
        s = b.symbols[f"tensor:{t}"]
        assert not any(s["addr"] <= a < s["addr"] + s["nbytes"] for a in stores)


def test_resident_tensors_skip_dram_when_weights_are_too_big_to_fuse():
    prog, x = case("mbconv_fused")
    b = compile_(prog, AccelConfig.from_string("small:buf_c_bytes=6144,buf_b_bytes=49152"))
    assert not any(l.get("fused_into") for l in b.layers)
    assert [l.get("on_chip", False) for l in b.layers] == [True, True, False]
    stores = [i["dram_addr"] for i in b.streams["global"] if i.op == "STORE"]
    loads = [i["dram_addr"] for i in b.streams["global"] if i.op == "LOAD"]
    for t in ("e", "d"):
        s = b.symbols[f"tensor:{t}"]
        assert not any(s["addr"] <= a < s["addr"] + s["nbytes"] for a in stores + loads)
    ref = golden.run(prog, x)
    assert all(np.array_equal(run(b, x)[k], ref[k]) for k in ref)


def test_buffers_too_small_is_a_clear_error():
    b = Builder(0)
    b.linear("y", b.input("x", (2048,)), 8)
    cfg = AccelConfig.from_string("small:buf_c_bytes=2048")
    with pytest.raises(CompileError, match="does not fit a C slot"):
        compile_(b.prog(), cfg)


def test_b0_r64_binary_encodes(tmp_path):
    prog = zoo.build("b0-r64", seed=0)
    b = compile_(prog, AccelConfig.from_string("paper"))
    p = b.save(tmp_path / "b0.npz")
    assert Binary.load(p).n_instructions == b.n_instructions


@pytest.mark.parametrize("op", ["CONV_MAT", "CONV_RDF"])
def test_register_limits_are_checked_at_emit(op):
    """A compute instruction is refused when a register it uses is outside what the core units
    implement (sim.isa.REG_LIMITS, e.g. CIN <= 65535: the 16-bit operand of CIN * k*k)."""
    from sim.compile.emitter import Emitter
    from sim.isa import FORMATS, REG_LIMITS
    unit = FORMATS[op][1]
    tile = dict(x_addr=0, w_addr=0, p_addr=0, o_addr=0, nco=1, hin=1, ho=1, obuf=2)
    for reg, (lo, hi) in REG_LIMITS[op].items():
        for bad in (lo - 1, hi + 1):
            em = Emitter(AccelConfig())
            em.setr("core0", unit, **{reg: hi})
            em.emit("core0", op, **tile)          # in range: accepted
            em.setr("core0", unit, **{reg: bad})
            with pytest.raises(CompileError, match=f"{reg} in {lo}..{hi}.*got {bad}"):
                em.emit("core0", op, **tile)

