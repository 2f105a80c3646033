"""Buffer C larger than two weight groups (issue #16, docs/perf.md "Why a larger C was slower"):
no weight group grows with C (``sim.compile.tiling.WEIGHT_GROUP_MAX``), so without prefetch a
larger C gives the same Binary, and with prefetch the arena spans the whole of C."""

import functools

import pytest

from sim import golden, zoo
from sim.compile import CompileError, compile as compile_
from sim.compile.common import align
from sim.compile.pipeline import _emitted, default_prefetch
from sim.compile.prefetch import WeightArena, reserve_groups, weight_groups
from sim.compile.tiling import WEIGHT_GROUP_MAX, c_slot_bytes
from sim.config import AccelConfig
from sim.isa import BUF_MAX_BYTES, BUFS
from testprogs import assert_runs_like_golden, tiny_with_input

KB = 1024


@functools.cache
def _b0_r64():
    prog = zoo.build("b0-r64", seed=0)
    x = golden.quantize_input(zoo.random_image(64, seed=2), prog.tensors[prog.inputs[0]])
    return prog, x


def _paper(c_kb):
    return AccelConfig.from_string(f"paper:buf_c_bytes={c_kb * KB}")


def _group_bytes(b):
    """Bytes of every weight group (its LOADs into C), from the Binary's LD stream."""
    g = b.streams["global"]
    return [sum(g[i].f["count"] * g[i].f["length"] for i in range(j, k)
                if g[i].op == "LOAD") for j, k in weight_groups(g)]


def test_c_slots():
    assert c_slot_bytes(64 * KB) == 64 * KB
    assert c_slot_bytes(192 * KB) == 2 * WEIGHT_GROUP_MAX == 192 * KB
    assert c_slot_bytes(512 * KB) == 192 * KB


def test_a_larger_c_gives_the_same_binary_without_prefetch():
    """B0-R64 has weight layers far larger than a group (the head's linear: 1.3 MB) and a
    stage-3 MBConv whose three layers fit one chain in a 256 KiB slot: before the limit, C =
    512 KiB chunked and fused it differently (and ran slower)."""
    prog, _ = _b0_r64()
    ref = compile_(prog, _paper(192), prefetch=False)
    assert max(_group_bytes(ref)) <= WEIGHT_GROUP_MAX
    assert sum(_group_bytes(ref)) > 10 * WEIGHT_GROUP_MAX
    for c_kb in (256, 384, 512):
        assert compile_(prog, _paper(c_kb), prefetch=False).streams == ref.streams, c_kb


def test_prefetch_arena_spans_all_of_c_and_runs_like_golden():
    prog, x = _b0_r64()
    cfg = _paper(512)
    b = compile_(prog, cfg, prefetch=True)
    g = b.streams["global"]
    top = [i.f["buf_addr"] + i.f["count"] * i.f["length"] for i in g
           if i.op == "LOAD" and i.f["buf"] == BUFS["C"]]
    assert max(top) <= cfg.buf_c_bytes
    assert max(top) > c_slot_bytes(cfg.buf_c_bytes)        # beyond the two slots
    assert max(_group_bytes(b)) <= WEIGHT_GROUP_MAX
    assert_runs_like_golden(b, prog, x)


def test_arena_places_reserved_groups_at_the_top_without_waits():
    """Groups 6 and 7 reserved: they go one after the other to the top of the arena and wait
    for nothing; every group before them stays below the reserved bytes; later groups may use
    the whole arena again (and then wait for the reserved groups' users)."""
    sizes = [1000] * 6 + [900, 900] + [1000] * 6
    total = 8192
    ar = WeightArena(total, 2048, sizes, reserve={6, 7})
    top = total - 2 * align(900, ar.unit)
    for i, n in enumerate(sizes):
        h = ar.next()
        waits = ar.acquire(h, n)
        ar.busy[h] = [(100 + i, 1)]
        c = ar.base[h]
        if i in (6, 7):
            assert waits == [] and c == top + (i - 6) * align(900, ar.unit)
        elif i < 6:
            assert c + n <= top
        elif c < top + 2 * align(900, ar.unit) and c + n > top:   # over a reserved group
            assert any(s in (106, 107) for s, _ in waits)
    with pytest.raises(CompileError, match="reserved"):
        WeightArena(total, 2048, [3000, 3000, 1000], reserve={0, 1})


def test_reserve_groups_picks_the_head_linear():
    """On B0-R64 at C = 512 KiB the reservation holds consecutive groups of the weight-bound
    layer with the most weight bytes (the head's first linear), as many as fit C beyond its
    two slots; with C = 192 KiB there is no room and nothing is reserved."""
    prog, _ = _b0_r64()
    cfg = _paper(512)
    ctx = _emitted(prog, cfg, True, True, False)
    sizes, layers = ctx.sched.group_sizes, ctx.sched.group_layers
    room = cfg.buf_c_bytes - 2 * WEIGHT_GROUP_MAX
    res = sorted(reserve_groups(ctx.prog, cfg, sizes, layers, room))
    per = {}
    for n, li in zip(sizes, layers):
        per[li] = per.get(li, 0) + n
    head = max(per, key=per.get)
    assert prog.nodes[head].op == "linear"
    assert res == list(range(res[0], res[0] + len(res))) and len(res) > 1
    assert all(layers[i] == head for i in res) and layers[res[0] - 1] != head
    assert sum(sizes[i] for i in res) <= room < sum(sizes[i] for i in res + [res[-1] + 1])
    assert not reserve_groups(ctx.prog, _paper(192), sizes, layers, 0)


def test_c_beyond_512_kib_reserves_both_head_linears_and_runs_like_golden():
    """C at the ISA's 2 MiB (21-bit ``w_addr`` / ``p_addr`` / ``buf_addr``, sim.isa): on
    B0-R64 (two head linears of 1.35 MB each) the reservation runs on from the first linear
    into the second; the Binary loads and reads C above 1 MiB and funcsim == golden. The
    config is ``zcu102``, whose C is that size."""
    prog, x = _b0_r64()
    cfg = AccelConfig.from_string("zcu102")
    assert cfg.buf_c_bytes == BUF_MAX_BYTES["C"] and default_prefetch(cfg)
    ctx = _emitted(prog, cfg, True, True, False)
    sizes, layers = ctx.sched.group_sizes, ctx.sched.group_layers
    res = reserve_groups(ctx.prog, cfg, sizes, layers, cfg.buf_c_bytes - 2 * WEIGHT_GROUP_MAX)
    linears = [i for i, n in enumerate(prog.nodes) if n.op == "linear"]
    assert sorted({layers[i] for i in res}) == linears[-2:]
    assert {i for i, li in enumerate(layers) if li == linears[-2]} <= set(res)   # all of it
    b = compile_(prog, cfg)
    g = b.streams["global"]
    top = max(i.f["buf_addr"] + i.f["count"] * i.f["length"] for i in g
              if i.op == "LOAD" and i.f["buf"] == BUFS["C"])
    assert 1 << 20 < top <= cfg.buf_c_bytes
    assert max(i.f["w_addr"] for st in b.streams.values() for i in st if "w_addr" in i.f) \
        >= 1 << 20
    assert_runs_like_golden(b, prog, x)

def test_the_timed_run_chooses_how_much_of_the_reservation_pays(monkeypatch):
    """With a reservation of at least RESERVE_MIN_TRIAL groups, compile keeps whichever of the
    whole reservation and its RESERVE_TRIALS prefixes the cycle model times fastest (B0-R64 on
    zcu102 reserves 26 groups; the arena emission, which times its Binary once and returns
    the cycles with it, is stubbed with made-up cycles per reservation size, on B0-R64 itself
    all four give the same cycles)."""
    import types

    from sim.compile import pipeline
    prog, _ = _b0_r64()
    cfg = AccelConfig.from_string("zcu102")
    seen = []
    made_up = {}

    def arena(prog, cfg, fuse, attn_onchip, block, sizes, reserve, stream=None):
        seen.append(sorted(reserve))
        return types.SimpleNamespace(n=len(reserve)), made_up[len(reserve)]

    n = 26
    counts = [n] + [int(n * f) for f in pipeline.RESERVE_TRIALS]
    assert n >= pipeline.RESERVE_MIN_TRIAL and len(set(counts)) == 4
    monkeypatch.setattr(pipeline, "_arena", arena)
    for best in counts:
        made_up.clear()
        made_up.update({c: 1000 + 10 * abs(c - best) for c in counts})
        seen.clear()
        got = pipeline._compile_one(prog, cfg, True, True, True, False, 0)
        assert got.n == best and [len(r) for r in seen] == counts
        assert all(r == seen[0][:len(r)] for r in seen)        # prefixes of the reservation


def test_tiny_on_zcu102_with_prefetch_runs_like_golden():
    prog, x = tiny_with_input()
    cfg = AccelConfig.from_string("zcu102")
    assert (cfg.buf_b_bytes, cfg.buf_c_bytes, cfg.buf_out_bytes) == (512 * KB, 2048 * KB, 128 * KB)
    assert_runs_like_golden(compile_(prog, cfg, prefetch=True), prog, x)
    assert_runs_like_golden(compile_(prog, cfg), prog, x)


@pytest.mark.regress
@pytest.mark.parametrize("model", ["b0-r224", "b1-r224", "b2-r224"])
def test_zoo_models_on_zcu102_with_prefetch_run_like_golden(model):
    """The ZCU102 build's buffers with prefetch (the reserved head groups hoisted): funcsim ==
    golden in both unit orders (a few minutes per model)."""
    prog = zoo.build(model, seed=0)
    x = golden.quantize_input(zoo.random_image(224, seed=2), prog.tensors[prog.inputs[0]])
    assert_runs_like_golden(compile_(prog, AccelConfig.from_string("zcu102"), prefetch=True),
                            prog, x)


def test_prefetch_is_on_by_default_where_c_exceeds_its_two_slots():
    paper, zcu = AccelConfig.from_string("paper"), AccelConfig.from_string("zcu102")
    assert not default_prefetch(paper) and not default_prefetch(AccelConfig.from_string("small"))
    assert default_prefetch(zcu)
    assert default_prefetch(zcu, stream=True) and default_prefetch(zcu, layout="blocked")
    assert default_prefetch(zcu, stream=True, layout="blocked")
    with pytest.raises(ValueError, match="layout"):
        default_prefetch(zcu, layout="planer")
    prog, _ = tiny_with_input()
    assert compile_(prog, zcu).streams == compile_(prog, zcu, prefetch=True).streams
    assert compile_(prog, zcu).streams != compile_(prog, zcu, prefetch=False).streams
    assert compile_(prog, paper).streams == compile_(prog, paper, prefetch=False).streams
