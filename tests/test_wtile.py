"""Pre-tiled weights (issue #13 phase 2, #14; sim.isa, docs/isa.md "Weight layouts"): the
packing against a byte-by-byte reference written from the spec, the DRAM image and the
instructions the compiler emits, and the alignment each step's line has in buffer C."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sim import isa
from sim.compile import compile as compile_
from sim.compile import tiling
from sim.config import AccelConfig
from test_funcsim import case
from tests.testprogs import tiny_with_input


def cdiv(a, b):
    return -(-a // b)


def conv_reference(w, groups, lanes, width):
    """The spec, one byte at a time: weight ``w[g*cout_g + b*lanes + l][c*width + e][ky][kx]``
    at byte ``((((g*nb + b)*k*k + ky*k + kx)*nc + c)*lanes + l)*width + e``, zero where the
    filter or channel does not exist."""
    cout, cin_g, k, _ = w.shape
    cout_g = cout // groups
    nb, nc = cdiv(cout_g, lanes), cdiv(cin_g, width)
    out = np.zeros(groups * nb * k * k * nc * lanes * width, dtype=np.int8)
    for g, b, ky, kx, c, ln, e in itertools.product(range(groups), range(nb), range(k), range(k),
                                                   range(nc), range(lanes), range(width)):
        co, ci = b * lanes + ln, c * width + e
        if co < cout_g and ci < cin_g:
            at = ((((g * nb + b) * k * k + ky * k + kx) * nc + c) * lanes + ln) * width + e
            out[at] = w[g * cout_g + co, ci, ky, kx]
    return out


def dw_reference(w, n):
    """Depthwise: channel ``c``'s tap ``t`` at byte ``(c // n * k*k + t) * n + c % n``."""
    ch, k = w.shape[0], w.shape[-1]
    out = np.zeros(cdiv(ch, n) * k * k * n, dtype=np.int8)
    for c, t in itertools.product(range(ch), range(k * k)):
        out[(c // n * k * k + t) * n + c % n] = w[c, 0, t // k, t % k]
    return out


@pytest.mark.parametrize("cout,cin_g,k,groups,lanes,width", [
    (16, 8, 1, 1, 8, 8), (12, 3, 3, 1, 4, 4), (5, 7, 3, 1, 4, 2), (18, 5, 1, 3, 4, 4),
    (48, 16, 1, 3, 8, 8), (1, 1, 1, 1, 3, 5), (10, 27, 5, 2, 2, 6)])
def test_conv_packing_is_the_spec(cout, cin_g, k, groups, lanes, width):
    rng = np.random.default_rng(cout * 1000 + cin_g * 10 + k)
    w = rng.integers(-128, 128, (cout, cin_g, k, k)).astype(np.int8)
    ref = conv_reference(w, groups, lanes, width)
    got = isa.pack_conv_weights(w, groups=groups, lanes=lanes, width=width)
    assert got.size == isa.conv_weight_bytes(cout=cout, cin_g=cin_g, k=k, groups=groups,
                                             lanes=lanes, width=width) == ref.size
    assert np.array_equal(got, ref)
    back = isa.unpack_conv_weights(np.concatenate([ref, np.full(7, 99, np.int8)]), cout=cout,
                                   cin_g=cin_g, k=k, groups=groups, lanes=lanes, width=width)
    assert np.array_equal(back, w)


@pytest.mark.parametrize("ch,k,n", [(16, 3, 8), (13, 5, 4), (3, 3, 8), (24, 5, 6)])
def test_dw_packing_is_the_spec(ch, k, n):
    rng = np.random.default_rng(ch * 100 + k * 10 + n)
    w = rng.integers(-128, 128, (ch, 1, k, k)).astype(np.int8)
    ref = dw_reference(w, n)
    got = isa.pack_dw_weights(w, n=n)
    assert got.size == isa.dw_weight_bytes(ch, k, n) == ref.size
    assert np.array_equal(got, ref)
    assert np.array_equal(isa.unpack_dw_weights(ref, channels=ch, k=k, n=n), w)


@pytest.mark.parametrize("cfgname", ["paper", "small", "small:S=2,T=6"])
@pytest.mark.parametrize("name", ["grouped_pointwise", "generic_3x3_s2", "dw5_s2", "linear"])
def test_dram_image_holds_the_tiled_weights(cfgname, name):
    """Each weight chunk in DRAM is the reference packing of its filters, once per engine
    shape (MAT S x T, then R-MAC M x N when they differ, each 64-byte aligned); a depthwise
    conv's for the R-MAC's N."""
    cfg = AccelConfig.from_string(cfgname)
    prog, _ = case(name)
    b = compile_(prog, cfg, stem="taps")     # (the generic conv's own k x k weight tiling)
    n = prog.nodes[0]
    s = b.symbols[f"weight:{n.name}"]
    data = b.dram[s["addr"]:s["addr"] + s["nbytes"]].view(np.int8)
    w = np.asarray(n.params["weight"], np.int8)
    w = w.reshape(w.shape + (1, 1)) if w.ndim == 2 else w       # linear: (cout, cin)
    if n.kind == "depthwise":
        assert np.array_equal(data, dw_reference(w, cfg.N))
        return
    g = int(n.attrs.get("groups", 1))
    shapes = [(cfg.S, cfg.T)] + ([(cfg.M, cfg.N)] if (cfg.M, cfg.N) != (cfg.S, cfg.T) else [])
    for (c0, c1), off in zip(s["chunks"], s["offsets"]):
        if g > 1:
            assert c0 % (w.shape[0] // g) == 0 and c1 % (w.shape[0] // g) == 0
        for lanes, width in shapes:
            ref = conv_reference(w[c0:c1], (c1 - c0) // (w.shape[0] // g), lanes, width)
            assert np.array_equal(data[off:off + ref.size], ref)
            off += cdiv(ref.size, 64) * 64


@pytest.mark.parametrize("cfgname", ["paper", "small", "small:L=3"])
def test_every_step_reads_an_aligned_line(cfgname):
    """Every CONV_MAT / CONV_RDF of tiny starts its weights on a line of lanes x width bytes
    and every DW_RSA on a word of N bytes (the C slots and the blocks are aligned), so each
    step's line is aligned in buffer C (one bank row of a line-wide C)."""
    cfg = AccelConfig.from_string(cfgname)
    prog, _ = tiny_with_input()
    b = compile_(prog, cfg)
    seen = set()
    for st, instrs in b.streams.items():
        for ins in instrs:
            if ins.op in ("CONV_MAT", "CONV_RDF"):
                lanes, width = isa.engine_shape(cfg, "MAT" if ins.op == "CONV_MAT" else "RMAC")
                assert ins.f["w_addr"] % (lanes * width) == 0, (st, ins)
                seen.add(ins.op)
            elif ins.op == "DW_RSA":
                assert ins.f["w_addr"] % cfg.N == 0, (st, ins)
                seen.add(ins.op)
    assert seen == {"CONV_MAT", "CONV_RDF", "DW_RSA"}


@pytest.mark.parametrize("cfgname", ["paper", "small", "small:S=2,M=3,T=2,N=2,L=3"])
@pytest.mark.parametrize("nco,nr", [(16, 6), (40, 1), (7, 13), (64, 300), (12, 2)])
def test_dense_splits_are_whole_blocks(cfgname, nco, nr):
    """A dense conv's filters are split between cores and engines only at multiples of
    lcm(S, M): every instruction starts on a whole block of either engine's layout."""
    cfg = AccelConfig.from_string(cfgname)
    gran = tiling.filter_gran(cfg)
    assert gran % cfg.S == 0 and gran % cfg.M == 0
    for _, _, (ca, cb), _ in tiling.plan_conv(cfg, nco, nr, 3, 64, 1, nco):
        assert ca % gran == 0 and (cb % gran == 0 or cb == nco)


def test_chunks_leave_room_for_padded_blocks():
    # 10 filters of a 3x3 conv on 3 channels, W = 8: 9 lines of 8 x 8 per block of 8 filters,
    # 2 blocks = 1,152 bytes (not 10 * 27 = 270) + 10 records
    wl = tiling.conv_chunk("n", cout=10, g=1, K=27, c_slot=1152 + 320,
                           wbytes=lambda n: cdiv(n, 8) * 8 * 9 * 8, gran=8)
    assert wl == 10
    assert tiling.conv_chunk("n", cout=10, g=1, K=27, c_slot=1152 + 319,
                             wbytes=lambda n: cdiv(n, 8) * 8 * 9 * 8, gran=8) == 8
    with pytest.raises(Exception, match="one block of 8 filters"):
        tiling.conv_chunk("n", cout=10, g=1, K=27, c_slot=600,
                          wbytes=lambda n: cdiv(n, 8) * 8 * 9 * 8, gran=8)
