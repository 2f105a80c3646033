"""The activation layout rule (sim.compile.layout: act_offset, act_elems, pack, unpack) against
the layouts written out from their definition, and the Binary's input / output path through it."""

import numpy as np
import pytest

from sim.compile import layout as lay
from sim.config import AccelConfig


def _blocked_ref(x, B):
    """[ceil(C/B)][H][W][B] by numpy reshapes (docs/global-buffers.md): pad C to a multiple of
    B with zeros, split the channel axis, move the in-block channel innermost."""
    c, h, w = x.shape
    cp = -(-c // B) * B
    xp = np.zeros((cp, h, w), dtype=x.dtype)
    xp[:c] = x
    return xp.reshape(cp // B, B, h, w).transpose(0, 2, 3, 1).reshape(-1)


@pytest.mark.parametrize("shape,B", [((3, 4, 5), 8), ((16, 7, 7), 8), ((13, 2, 3), 4),
                                     ((8, 1, 1), 8), ((24, 3, 1), 8), ((5, 6, 6), 1)])
def test_pack_matches_the_definition(shape, B):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=shape)
    got = lay.pack(x, layout="blocked", block=B)
    ref = (_blocked_ref(x, B) & 0xFF).astype(np.uint8)
    assert got.tobytes() == ref.tobytes()
    assert got.size == lay.act_elems(shape[0], shape[1] * shape[2], layout="blocked", block=B)
    back = lay.unpack(got, shape, signed=True, layout="blocked", block=B)
    assert np.array_equal(back, x)


def test_planar_is_channel_major_and_unsigned_roundtrip():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(6, 3, 4))
    got = lay.pack(x)
    assert got.tobytes() == x.astype(np.uint8).reshape(-1).tobytes()
    assert np.array_equal(lay.unpack(got, x.shape, signed=False), x)


def test_one_pixel_blocked_is_planar_and_int32():
    """npix = 1 (linear layers, the logits): blocked == planar, no padding."""
    x = np.array([-5, 70000, 3, -2 ** 31, 9], dtype=np.int64)
    for layout in lay.LAYOUTS:
        raw = lay.pack(x, layout=layout, block=8, bits=32)
        assert raw.size == 20
        assert np.array_equal(raw.view(np.int32), x)
        assert np.array_equal(lay.unpack(raw, x.shape, signed=True, layout=layout, block=8,
                                         bits=32), x)


def test_offset_rule_elements():
    # channel 10, pixel 3 of a 16 x (2 x 3) tensor, B = 8: block 1, pixel 3, lane 2
    assert lay.act_offset(10, 3, npix=6, layout="blocked", block=8) == 1 * 6 * 8 + 3 * 8 + 2
    assert lay.act_offset(10, 3, npix=6) == 63
    # B channels of one pixel are one aligned B-byte run; M pixels of one channel stride B
    offs = lay.act_offset(np.arange(8, 16), 5, npix=49, layout="blocked", block=8)
    assert list(np.diff(offs)) == [1] * 7 and offs[0] % 8 == 0
    offs = lay.act_offset(3, np.arange(8), npix=49, layout="blocked", block=8)
    assert list(np.diff(offs)) == [8] * 7


def test_bad_layout_refused():
    with pytest.raises(ValueError, match="layout must be one of"):
        lay.act_offset(0, 0, npix=1, layout="nhwc")
    with pytest.raises(ValueError, match="block must be a positive int"):
        lay.act_elems(3, 4, layout="blocked", block=0)


def test_activation_block():
    assert lay.activation_block(AccelConfig.from_string("paper")) == 8
    assert lay.activation_block(AccelConfig(N=4, M=4, T=4, S=4, L=1)) == 4
    assert lay.activation_block(AccelConfig(N=6, M=4, T=3, S=6, L=1)) == 8


def test_binary_io_follows_the_symbol_layout():
    """write_input / read_outputs (funcsim, tb, runtime read through them) use the symbol's
    layout: a symbol marked blocked is written and read blocked, one without the fields planar."""
    from sim import zoo
    from sim.compile import compile as compile_
    prog = zoo.tiny()
    b = compile_(prog, AccelConfig.from_string("small"), stem="taps")   # (planar input)
    sym = b.symbols[f"tensor:{prog.inputs[0]}"]
    assert (sym["layout"], sym["block"]) == ("planar", 1)
    rng = np.random.default_rng(3)
    t = prog.tensors[prog.inputs[0]]
    x = rng.integers(-128, 128, size=t.shape)
    dram = b.dram.copy()
    b.write_input(dram, x)
    assert np.array_equal(dram[sym["addr"]:sym["addr"] + x.size].view(np.int8).reshape(x.shape),
                          x)
    sym["layout"], sym["block"] = "blocked", 8
    dram = b.dram.copy()
    b.write_input(dram, x)
    ref = (_blocked_ref(x, 8) & 0xFF).astype(np.uint8)
    assert dram[sym["addr"]:sym["addr"] + ref.size].tobytes() == ref.tobytes()
    # an output symbol marked blocked is read back by the rule
    out = prog.outputs[0]
    osym = b.symbols[f"tensor:{out}"]
    ot = prog.tensors[out]
    y = rng.integers(-128, 128, size=ot.shape) if ot.bits <= 8 else \
        rng.integers(-2 ** 31, 2 ** 31, size=ot.shape)
    for layout, blk in (("planar", 1), ("blocked", 8)):
        osym["layout"], osym["block"] = layout, blk
        raw = lay.pack(y, layout=layout, block=blk, bits=ot.bits)
        dram[osym["addr"]:osym["addr"] + raw.size] = raw
        assert np.array_equal(b.read_outputs(dram)[out], y)
    del osym["layout"], osym["block"]        # a Binary from before the fields: planar
    assert np.array_equal(b.read_outputs(dram)[out], y)
