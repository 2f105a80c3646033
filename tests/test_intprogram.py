"""The IntProgram file format and its validation: round trip, and every error path."""

import copy
import json

import numpy as np
import pytest

from sim import golden, zoo
from sim import numerics as nx
from sim.intprogram import FORMAT_VERSION, IntProgram, IntProgramError, Node


@pytest.fixture(scope="module")
def prog():
    return zoo.tiny(seed=3)


def node(p, kind=None, op=None):
    for n in p.nodes:
        if (kind is None or n.kind == kind) and (op is None or n.op == op):
            return n
    raise LookupError(kind or op)


# --- round trip ----------------------------------------------------------------------------------

def test_save_load_round_trip(prog, tmp_path):
    path = prog.save(tmp_path / "sub" / "tiny.npz")
    assert path.exists() and not list(path.parent.glob(".*.tmp"))
    back = IntProgram.load(path)
    assert back.inputs == prog.inputs and back.outputs == prog.outputs and back.meta == prog.meta
    assert list(back.tensors) == list(prog.tensors)
    for name, t in prog.tensors.items():
        u = back.tensors[name]
        assert (u.shape, u.bits, u.signed) == (t.shape, t.bits, t.signed)
        np.testing.assert_array_equal(u.scale, t.scale)
    assert len(back.nodes) == len(prog.nodes)
    for a, b in zip(prog.nodes, back.nodes):
        assert (a.name, a.op, a.inputs, a.output, a.attrs) == (b.name, b.op, b.inputs, b.output, b.attrs)
        assert sorted(a.params) == sorted(b.params)
        for k in a.params:
            np.testing.assert_array_equal(np.asarray(a.params[k]), b.params[k])
        assert (a.epilogue is None) == (b.epilogue is None)
        if a.epilogue is not None:
            ea, eb = a.epilogue, b.epilogue
            assert (ea.act, ea.residual, ea.mid_bits, ea.three) == \
                (eb.act, eb.residual, eb.mid_bits, eb.three)
            for da, db in ((ea.mult, eb.mult), (ea.res_mult, eb.res_mult), (ea.hswish_mult, eb.hswish_mult)):
                assert (da is None) == (db is None)
                if da is not None:
                    np.testing.assert_array_equal(da.b, db.b)
                    np.testing.assert_array_equal(da.c, db.c)
            np.testing.assert_array_equal(ea.offset, eb.offset)
    # and it computes the same thing, bit for bit
    x = golden.quantize_input(zoo.random_image(64, seed=1), prog.tensors["input"])
    a, b = golden.run(prog, x, keep=True), golden.run(back, x, keep=True)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_save_of_invalid_program_writes_nothing(prog, tmp_path):
    bad = copy.deepcopy(prog)
    node(bad, "pointwise").params["weight"] = np.full((1, 1, 1, 1), 3, np.int8)
    target = tmp_path / "bad.npz"
    with pytest.raises(IntProgramError, match="weight shape"):
        bad.save(target)
    assert not target.exists() and not list(tmp_path.iterdir())


# --- file-level errors --------------------------------------------------------------------------------

def _rewrite(src, dst, *, manifest=None, drop=(), raw_manifest=None):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    m = json.loads(arrays["__manifest__"].tobytes().decode())
    if manifest is not None:
        manifest(m)
    arrays["__manifest__"] = np.frombuffer(
        raw_manifest if raw_manifest is not None else json.dumps(m).encode(), dtype=np.uint8)
    for k in drop:
        arrays.pop(k)
    np.savez(dst, **arrays)
    return dst


@pytest.fixture(scope="module")
def saved(prog, tmp_path_factory):
    return prog.save(tmp_path_factory.mktemp("ip") / "tiny.npz")


def test_bad_version(saved, tmp_path):
    p = _rewrite(saved, tmp_path / "v.npz", manifest=lambda m: m.update(version=FORMAT_VERSION + 1))
    with pytest.raises(IntProgramError, match=f"version {FORMAT_VERSION + 1} is not supported"):
        IntProgram.load(p)
    p = _rewrite(saved, tmp_path / "v0.npz", manifest=lambda m: m.pop("version"))
    with pytest.raises(IntProgramError, match="version None"):
        IntProgram.load(p)


def test_wrong_magic(saved, tmp_path):
    p = _rewrite(saved, tmp_path / "m.npz", manifest=lambda m: m.update(format="other"))
    with pytest.raises(IntProgramError, match="format 'other'"):
        IntProgram.load(p)


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (len(data) // 2, 100, 0):
        p = tmp_path / f"cut{cut}.npz"
        p.write_bytes(data[:cut])
        with pytest.raises(IntProgramError, match="not an IntProgram .npz file"):
            IntProgram.load(p)


def test_missing_file_and_non_npz(tmp_path):
    with pytest.raises(IntProgramError, match="no such file"):
        IntProgram.load(tmp_path / "nope.npz")
    (tmp_path / "t.npz").write_text("hello")
    with pytest.raises(IntProgramError, match="not an IntProgram"):
        IntProgram.load(tmp_path / "t.npz")


def test_missing_or_broken_manifest(saved, tmp_path):
    p = _rewrite(saved, tmp_path / "nm.npz", drop=("__manifest__",))
    with pytest.raises(IntProgramError, match="no __manifest__"):
        IntProgram.load(p)
    p = _rewrite(saved, tmp_path / "bj.npz", raw_manifest=b"{not json")
    with pytest.raises(IntProgramError, match="not valid JSON"):
        IntProgram.load(p)
    p = _rewrite(saved, tmp_path / "nn.npz", manifest=lambda m: m.pop("nodes"))
    with pytest.raises(IntProgramError, match="incomplete or inconsistent"):
        IntProgram.load(p)


def test_missing_array_in_file(saved, tmp_path):
    p = _rewrite(saved, tmp_path / "ma.npz", drop=("n0.p.weight",))
    with pytest.raises(IntProgramError, match="incomplete or inconsistent.*n0.p.weight"):
        IntProgram.load(p)


def test_missing_tensor_in_file(saved, tmp_path):
    def drop_tensor(m):
        m["tensors"] = [t for t in m["tensors"] if t["name"] != m["nodes"][3]["output"]]
    p = _rewrite(saved, tmp_path / "mt.npz", manifest=drop_tensor)
    with pytest.raises(IntProgramError, match="node 3 .*has no tensor entry"):
        IntProgram.load(p)


def test_file_with_out_of_range_weights(saved, tmp_path):
    with np.load(saved) as z:
        arrays = {k: z[k] for k in z.files}
    w = arrays["n0.p.weight"].astype(np.int16)
    w.flat[0] = 200
    arrays["n0.p.weight"] = w
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(IntProgramError, match=r"node 0 .*weight values must lie in \[-128, 127\]"):
        IntProgram.load(tmp_path / "w.npz")


# --- validation errors on in-memory programs -----------------------------------------------------------

def expect(p, pattern):
    with pytest.raises(IntProgramError, match=pattern):
        p.validate()


def test_valid_program_validates(prog):
    assert prog.validate() is prog


def test_missing_tensor(prog):
    p = copy.deepcopy(prog)
    node(p, "depthwise").inputs = ["nowhere"]
    expect(p, "input 'nowhere' is not produced before this node")
    p = copy.deepcopy(prog)
    p.inputs = ["ghost"]
    expect(p, "graph input 'ghost' has no tensor entry")
    p = copy.deepcopy(prog)
    p.outputs = ["input2"]
    expect(p, "graph output 'input2' is never produced")


def test_order_and_duplicates(prog):
    p = copy.deepcopy(prog)
    p.nodes[1], p.nodes[2] = p.nodes[2], p.nodes[1]
    expect(p, "is not produced before this node")
    p = copy.deepcopy(prog)
    dup = copy.deepcopy(p.nodes[0])
    p.nodes.insert(1, dup)
    expect(p, "produced twice")
    p = copy.deepcopy(prog)
    p.nodes[0].op = "softmax"
    expect(p, "unknown op")


def test_wrong_weight_shape_and_range(prog):
    p = copy.deepcopy(prog)
    n = node(p, "depthwise")
    n.params["weight"] = n.params["weight"][:, :, :2, :2]
    expect(p, "weight shape")
    p = copy.deepcopy(prog)
    n = node(p, "pointwise")
    w = n.params["weight"].astype(np.int16)
    w.flat[3] = -129
    n.params["weight"] = w
    expect(p, r"weight values must lie in \[-128, 127\], got \[-129")
    p = copy.deepcopy(prog)
    n = node(p, "pointwise")
    n.params["weight"] = n.params["weight"].astype(np.float32)
    expect(p, "must be an integer array")
    p = copy.deepcopy(prog)
    n = node(p, "pointwise")
    n.params["bias"] = n.params["bias"][:-1]
    expect(p, "bias shape")
    p = copy.deepcopy(prog)
    del node(p, "pointwise").params["bias"]
    expect(p, "malformed .*KeyError.*bias")


def test_conv_geometry(prog):
    p = copy.deepcopy(prog)
    node(p, "generic").attrs["stride"] = 1
    expect(p, "does not follow from input")
    p = copy.deepcopy(prog)
    node(p, "grouped_pointwise").attrs["groups"] = 5
    expect(p, "groups 5 must divide")
    p = copy.deepcopy(prog)
    node(p, "generic").attrs["padding"] = -1
    expect(p, "out of range")
    p = copy.deepcopy(prog)
    node(p, "generic").epilogue = None
    expect(p, "conv needs an epilogue")


def test_epilogue_errors(prog):
    p = copy.deepcopy(prog)
    n = node(p, "pointwise")
    n.epilogue.mult = nx.Dyadic(np.full(3, 40000), np.full(3, 20))
    expect(p, "epilogue mult must be a scalar or have shape")
    p = copy.deepcopy(prog)
    n = next(n for n in p.nodes if n.epilogue is not None and n.epilogue.act == "hswish")
    n.epilogue.hswish_mult = None
    expect(p, "hswish epilogue needs")
    p = copy.deepcopy(prog)
    n = next(n for n in p.nodes if n.epilogue is not None and n.epilogue.act == "hswish")
    n.epilogue.mid_bits = 30
    expect(p, "mid_bits 30 out of range")
    p = copy.deepcopy(prog)
    n = next(n for n in p.nodes if n.epilogue is not None and n.epilogue.act == "hswish")
    n.epilogue.act = "gelu"
    expect(p, "act 'gelu'")
    p = copy.deepcopy(prog)
    n = next(n for n in p.nodes if n.epilogue is not None and n.epilogue.residual)
    n.epilogue.residual = "input"
    expect(p, "residual 'input' shape")
    p = copy.deepcopy(prog)
    n = next(n for n in p.nodes if n.epilogue is not None and n.epilogue.residual)
    n.epilogue.res_mult = nx.Dyadic(n.epilogue.res_mult.b, n.epilogue.mult.c + 1)
    expect(p, "rc <= c")


def test_attention_errors(prog):
    p = copy.deepcopy(prog)
    n = node(p, op="linear_attention")
    n.params["out_mult_c"] = n.params["out_mult_c"].copy()
    n.params["log2_emin"] = -n.params["out_mult_c"] - 1
    expect(p, r"out_mult_c \+ log2_emin must lie in")
    p = copy.deepcopy(prog)
    n = node(p, op="linear_attention")
    n.params["log2_emin"] = nx.MAX_SHIFT - n.params["out_mult_c"] - 14
    expect(p, r"out_mult_c \+ log2_emin must lie in")
    p = copy.deepcopy(prog)
    n = node(p, op="linear_attention")
    n.params["s_mult_b"] = n.params["s_mult_b"][:1]
    n.params["s_mult_c"] = n.params["s_mult_c"][:1]
    expect(p, "one value per head")
    p = copy.deepcopy(prog)
    node(p, op="linear_attention").attrs["dim"] = 7
    expect(p, "not a multiple of 3\\*dim")
    p = copy.deepcopy(prog)
    node(p, op="linear_attention").params["s_mult_c"] = np.full(4, 60)
    expect(p, "dyadic shift must be in")


def test_other_op_errors(prog):
    p = copy.deepcopy(prog)
    node(p, op="concat").inputs = node(p, op="concat").inputs[:1]
    expect(p, "concat inputs must agree")
    p = copy.deepcopy(prog)
    node(p, op="global_avgpool").epilogue = None
    expect(p, "global_avgpool needs an epilogue")
    p = copy.deepcopy(prog)
    n = node(p, op="layernorm")
    n.params["gamma"] = n.params["gamma"][:-1]
    expect(p, "gamma must have shape")
    p = copy.deepcopy(prog)
    node(p, op="layernorm").attrs["act"] = "relu"
    expect(p, "layernorm act")
    p = copy.deepcopy(prog)
    p.tensors[p.outputs[0]].bits = 16
    expect(p, "raw int32 accumulators")
    p = copy.deepcopy(prog)
    n = node(p, op="linear")
    n.params["weight"] = n.params["weight"][:, :-1]
    expect(p, "does not map")


def test_errors_name_the_node(prog):
    p = copy.deepcopy(prog)
    idx = next(i for i, n in enumerate(p.nodes) if n.kind == "depthwise")
    p.nodes[idx].params["weight"] = p.nodes[idx].params["weight"][:1]
    with pytest.raises(IntProgramError) as ei:
        p.validate()
    assert f"node {idx} ({p.nodes[idx].name!r}, op 'conv')" in str(ei.value)


def test_node_kind_and_summary(prog):
    kinds = {n.kind for n in prog.nodes}
    assert kinds == {"generic", "pointwise", "grouped_pointwise", "depthwise", "concat",
                     "attention", "pool", "matmul", "layernorm"}
    s = prog.summary()
    assert s.splitlines()[0].startswith(f"IntProgram v{FORMAT_VERSION}: {len(prog.nodes)} nodes")
    assert isinstance(prog.node_producing(prog.outputs[0]), Node)
    assert prog.node_producing("nothing") is None


def test_tensor_errors(prog):
    p = copy.deepcopy(prog)
    t = p.tensors[node(p, "depthwise").output]
    t.scale = np.float64(np.nan)
    expect(p, "scales must be finite and > 0")
    p = copy.deepcopy(prog)
    p.tensors["input"].scale = np.float64(-0.1)
    expect(p, "tensor 'input': scales must be finite")
    p = copy.deepcopy(prog)
    t = p.tensors[node(p, "pointwise").output]
    t.scale = np.ones(t.shape[0] + 1)
    expect(p, "scale must be a scalar or have shape")
    p = copy.deepcopy(prog)
    p.tensors[node(p, "pointwise").output].bits = 0
    expect(p, "bits 0 out of range")
    p = copy.deepcopy(prog)
    p.tensors[node(p, "pointwise").output].shape = (0, 4, 4)
    expect(p, "positive sizes")
