"""sim.zoo: topology and workload of the EfficientViT IntPrograms against closed-form counts
derived here from the official configuration, the published MAC figures, and sanity of the
random-but-calibrated parameters under the golden model."""


import numpy as np
import pytest

from sim import golden, zoo

# official EfficientViT-B configs (backbone.py / cls.py), restated independently of sim.zoo
OFFICIAL = {
    "b0": ((8, 16, 32, 64, 128), (1, 2, 2, 2, 2), 16, (1024, 1280)),
    "b1": ((16, 32, 64, 128, 256), (1, 2, 3, 3, 4), 16, (1536, 1600)),
    "b2": ((24, 48, 96, 192, 384), (1, 3, 4, 4, 6), 32, (2304, 2560)),
    "b3": ((32, 64, 128, 256, 512), (1, 4, 6, 6, 9), 32, (2304, 2560)),
}
# published GMACs of the classifiers (EfficientViT paper, Table of ImageNet results)
PUBLISHED_GMACS = {("b0", 224): 0.10, ("b1", 224): 0.52, ("b1", 256): 0.68, ("b1", 288): 0.86,
                   ("b2", 224): 1.6, ("b3", 224): 3.9}


def expected_workload(model, r, classes=1000):
    """Closed-form node counts and MACs per kind of the official graph."""
    width, depth, dim, head = OFFICIAL[model]
    n = dict.fromkeys(["generic", "pointwise", "grouped_pointwise", "depthwise", "attention",
                       "matmul", "concat", "pool", "layernorm"], 0)
    m = dict.fromkeys(["generic", "pointwise", "grouped_pointwise", "depthwise", "attention",
                       "matmul"], 0)

    def add(kind, macs):
        n[kind] += 1
        m[kind] += macs

    h = r // 2
    add("generic", 3 * width[0] * 9 * h * h)
    for _ in range(depth[0]):                                  # DSConv
        add("depthwise", width[0] * 9 * h * h)
        add("pointwise", width[0] * width[0] * h * h)
    cin = width[0]

    def mbconv(cin, cout, h, stride):
        mid = 4 * cin
        ho = h // stride
        add("pointwise", cin * mid * h * h)
        add("depthwise", mid * 9 * ho * ho)
        add("pointwise", mid * cout * ho * ho)
        return ho

    for w, d in zip(width[1:3], depth[1:3]):
        for i in range(d):
            h = mbconv(cin, w, h, 2 if i == 0 else 1)
            cin = w
    for w, d in zip(width[3:], depth[3:]):
        h = mbconv(cin, w, h, 2)
        cin = w
        heads, tokens = w // dim, h * h
        for _ in range(d):
            add("pointwise", w * 3 * w * tokens)              # qkv
            add("depthwise", 3 * w * 25 * tokens)             # aggreg 5x5
            add("grouped_pointwise", 3 * w * dim * tokens)    # aggreg 1x1, groups 3*heads
            n["concat"] += 1
            add("attention", 2 * heads * (2 * dim * dim * tokens + dim * tokens))
            add("pointwise", 2 * w * w * tokens)              # proj
            mbconv(w, w, h, 1)
    add("pointwise", cin * head[0] * h * h)
    n["pool"] += 1
    add("matmul", head[0] * head[1])
    n["layernorm"] += 1
    add("matmul", head[1] * classes)
    return n, m


BUILDS = [("b0", 224), ("b1", 224), ("b2", 224), ("b3", 224), ("b1", 256), ("b1", 288)]


@pytest.fixture(scope="module")
def progs():
    return {}


def get(progs, model, r):
    if (model, r) not in progs:
        # B2/B3 are only checked for topology here: one calibration image halves their build
        progs[(model, r)] = zoo.build(f"{model}-r{r}", calib_images=1 if model in ("b2", "b3") else 2)
    return progs[(model, r)]


# --- names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [("b1-r224", ("b1", 224)), ("B2-R256", ("b2", 256)),
                                           ("b0", ("b0", 224)), ("b3_r288", ("b3", 288)),
                                           ("b1r320", ("b1", 320))])
def test_parse_name(name, expected):
    assert zoo.parse_name(name) == expected


@pytest.mark.parametrize("bad", ["b4-r224", "l1", "b1-r225", "b1-r0", "b1-224", "", "b1-r224x"])
def test_parse_name_rejects(bad):
    with pytest.raises(ValueError, match="b1|resolution"):
        zoo.parse_name(bad)


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resolution"):
        zoo.build("b0", 100)
    with pytest.raises(ValueError, match="num_classes"):
        zoo.build("b0", num_classes=1)
    with pytest.raises(ValueError, match="seed"):
        zoo.build("b0", seed=-1)
    with pytest.raises(TypeError):
        zoo.parse_name(224)
    assert zoo.MODELS == ("b0", "b1", "b2", "b3")


# --- topology and workload ------------------------------------------------------------------------------

@pytest.mark.parametrize("model,r", BUILDS)
def test_topology_and_macs_match_official_graph(progs, model, r):
    prog = get(progs, model, r)
    assert prog.validate() is prog
    assert prog.meta["model"] == model and prog.meta["resolution"] == r
    n_exp, m_exp = expected_workload(model, r)
    kinds = {}
    for nd in prog.nodes:
        kinds[nd.kind] = kinds.get(nd.kind, 0) + 1
    assert kinds == {k: v for k, v in n_exp.items() if v}
    macs = zoo.macs(prog)
    assert {k: v for k, v in macs.items() if k != "total"} == {k: v for k, v in m_exp.items() if v}
    assert macs["total"] == sum(m_exp.values())
    # and the totals agree with the published figures of the official models
    assert macs["total"] / 1e9 == pytest.approx(PUBLISHED_GMACS[(model, r)], rel=0.03)
    # logits are raw int32 with 1000 classes
    out = prog.tensors[prog.outputs[0]]
    assert out.shape == (1000,) and out.bits == 32


def test_b1_r224_op_shares_close_to_paper(progs):
    """Paper Sec. VI-C: generic / PW / DW / MatMul = 1.1 / 91.9 / 5.4 / 1.6 % of B1-R224 MACs.
    The head's two linear layers (0.8 %) are not in the paper's MatMul share; counted with PW."""
    s = zoo.mac_shares(get(progs, "b1", 224))
    assert sum(s.values()) == pytest.approx(100.0)
    assert s["generic"] == pytest.approx(1.1, abs=0.3)
    assert s["pointwise"] + s["linear"] == pytest.approx(91.9, abs=0.6)
    assert s["depthwise"] == pytest.approx(5.4, abs=0.5)
    assert s["matmul"] == pytest.approx(1.6, abs=0.2)


def test_official_module_names(progs):
    prog = get(progs, "b1", 224)
    names = [n.name for n in prog.nodes]
    for expected in ["backbone.input_stem.op_list.0",
                     "backbone.input_stem.op_list.1.main.depth_conv",
                     "backbone.input_stem.op_list.1.main.point_conv",
                     "backbone.stages.0.op_list.0.main.inverted_conv",
                     "backbone.stages.1.op_list.2.main.point_conv",
                     "backbone.stages.2.op_list.0.main.depth_conv",
                     "backbone.stages.2.op_list.1.context_module.main.qkv",
                     "backbone.stages.2.op_list.1.context_module.main.aggreg.0.0",
                     "backbone.stages.2.op_list.1.context_module.main.aggreg.0.1",
                     "backbone.stages.2.op_list.1.context_module.main.proj",
                     "backbone.stages.3.op_list.4.local_module.main.point_conv",
                     "head.op_list.0", "head.op_list.2.linear", "head.op_list.2.norm",
                     "head.op_list.3.linear"]:
        assert expected in names
    assert not any(nm.startswith("backbone.stages.3.op_list.5") for nm in names)
    assert len(set(names)) == len(names)


def test_residuals_and_activations_as_official(progs):
    prog = get(progs, "b1", 224)
    width, depth, dim, _ = OFFICIAL["b1"]
    res = [n for n in prog.nodes if n.epilogue is not None and n.epilogue.residual]
    # DSConv of the stem, MBConvs 2.. of stages 0/1, and both modules of every EfficientViT block
    assert len(res) == depth[0] + (depth[1] - 1) + (depth[2] - 1) + 2 * (depth[3] + depth[4])
    for n in res:
        assert n.name.endswith(("point_conv", "proj"))
        # the residual is the block input: the tensor the block's first node reads
        block = n.name.rsplit(".main.", 1)[0]
        first = next(m for m in prog.nodes if m.name.startswith(block + ".main."))
        assert n.epilogue.residual == first.inputs[0]
    for n in prog.nodes:
        if n.name.endswith(("inverted_conv", "depth_conv")) or n.name in ("backbone.input_stem.op_list.0",
                                                                          "head.op_list.0"):
            assert n.epilogue.act == "hswish", n.name
        elif n.op == "conv":
            assert n.epilogue.act == "none", n.name
    att = [n for n in prog.nodes if n.op == "linear_attention"]
    for n in att:
        c = prog.tensors[n.inputs[0]].shape[0]
        w = prog.tensors[n.output].shape[0] // 2
        assert int(n.attrs["dim"]) == dim and c == 6 * w        # 2 scales x 3 x heads x dim
    grouped = [n for n in prog.nodes if n.kind == "grouped_pointwise"]
    for n in grouped:
        assert n.attrs["groups"] * dim == prog.tensors[n.output].shape[0]


def test_deterministic_for_a_seed():
    a, b, c = zoo.tiny(seed=0), zoo.tiny(seed=0), zoo.tiny(seed=1)
    same = all(np.array_equal(np.asarray(pa[k]), np.asarray(pb[k]))
               for na, nb in zip(a.nodes, b.nodes) for pa, pb in [(na.params, nb.params)] for k in pa)
    assert same
    assert not np.array_equal(a.nodes[0].params["weight"], c.nodes[0].params["weight"])
    x = golden.quantize_input(zoo.random_image(64, 5), a.tensors["input"])
    np.testing.assert_array_equal(golden.run(a, x)[a.outputs[0]], golden.run(b, x)[b.outputs[0]])


# --- sanity of the random parameters ----------------------------------------------------------------------

def _saturation_and_nonzero(prog, out):
    stats = {}
    for n in prog.nodes:
        t = prog.tensors[n.output]
        if t.bits != 8:
            continue
        v = out[n.output]
        lo, hi = (-128, 127) if t.signed else (0, 255)
        stats[n.name] = (np.mean((v == lo) | (v == hi)), np.mean(v != 0))
    return stats


@pytest.mark.parametrize("model,r", [("b1", 224), ("b0", 224)])
def test_golden_activations_sane_on_unseen_images(progs, model, r):
    prog = get(progs, model, r)
    logits = []
    for seed in (101, 102):
        x = golden.quantize_input(zoo.random_image(r, seed), prog.tensors["input"])
        out = golden.run(prog, x, keep=True)
        for name, (sat, nz) in _saturation_and_nonzero(prog, out).items():
            assert sat < 0.05, f"{name}: {sat:.1%} saturated"
            assert nz > 0.20, f"{name}: only {nz:.1%} non-zero"
        lg = out[prog.outputs[0]]
        assert len(np.unique(lg)) > 500 and lg.std() > 100
        logits.append(lg)
    assert not np.array_equal(logits[0], logits[1])


def test_attention_nodes_track_the_float_formula(progs):
    """Each B1 attention node, dequantised, follows the official float ReLU linear attention on
    its dequantised input (the integer steps only add quantisation error)."""
    prog = get(progs, "b1", 224)
    x = golden.quantize_input(zoo.random_image(224, 7), prog.tensors["input"])
    out = golden.run(prog, x, keep=True)
    for n in (n for n in prog.nodes if n.op == "linear_attention"):
        d = int(n.attrs["dim"])
        ti, to = prog.tensors[n.inputs[0]], prog.tensors[n.output]
        xin = out[n.inputs[0]] * ti.channel_scale()[:, None, None]
        heads = ti.shape[0] // (3 * d)
        t = xin.reshape(heads, 3 * d, -1)
        q, k, v = np.maximum(t[:, :d], 0), np.maximum(t[:, d:2 * d], 0), t[:, 2 * d:]
        num = (v @ np.swapaxes(k, 1, 2)) @ q
        den = np.einsum("hjn,hj->hn", q, k.sum(axis=2))[:, None, :]
        ref = (num / (den + 1e-15)).reshape(heads * d, -1)
        got = out[n.output].reshape(heads * d, -1) * float(to.scale)
        ok = np.abs(ref) < 127 * float(to.scale)        # outside the output range it saturates
        corr = np.corrcoef(got[ok], ref[ok])[0, 1]
        assert corr > 0.9, f"{n.name}: correlation {corr:.3f}"


def test_tiny_covers_every_op_kind():
    prog = zoo.tiny()
    assert {n.kind for n in prog.nodes} == {"generic", "pointwise", "grouped_pointwise", "depthwise",
                                            "concat", "attention", "pool", "matmul", "layernorm"}
    assert any(n.epilogue is not None and n.epilogue.residual for n in prog.nodes)
    x = golden.quantize_input(zoo.random_image(64, 1), prog.tensors["input"])
    out = golden.run(prog, x, keep=True)
    for name, (sat, nz) in _saturation_and_nonzero(prog, out).items():
        assert sat < 0.05 and nz > 0.2, name


def test_cli(tmp_path, capsys):
    import json

    from sim.intprogram import IntProgram
    out = tmp_path / "t.npz"
    assert zoo.main(["tiny", "--json", "-o", str(out)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["nodes"] == 41 and rep["macs"]["total"] == sum(
        v for k, v in rep["macs"].items() if k != "total")
    prog = IntProgram.load(out)
    assert zoo.macs(prog) == rep["macs"]
    assert zoo.main(["b9-r224"]) == 2
    assert "bad model name" in capsys.readouterr().err
    assert zoo.main(["b0", "-r", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


def test_b1_integer_program_tracks_its_float_network(progs):
    """Per node, B1-R224's integer output vs the float op on the same (dequantized) inputs: the
    4-bit log2 divisor costs the attention ~12 dB (divisor off by a factor in [0.75, 1.5)),
    everything else keeps > 18 dB. End to end the logits keep a positive SQNR vs the float
    network the file describes."""
    prog = get(progs, "b1", 224)
    img = zoo.random_image(224, 11)
    x = golden.quantize_input(img, prog.tensors["input"])
    out = golden.run(prog, x, keep=True)
    deq = {k: v * prog.tensors[k].channel_scale().reshape((-1,) + (1,) * (v.ndim - 1))
           for k, v in out.items()}
    att = []
    for n in prog.nodes:
        db = golden.sqnr_db(golden.float_node(prog, n, deq), deq[n.output])
        if n.kind == "attention":
            att.append(db)
            assert db > 9.0, f"{n.name}: {db:.1f} dB"
        elif n.kind != "concat":
            assert db > 18.0, f"{n.name} ({n.kind}): {db:.1f} dB"
    assert np.mean(att) < 16.0            # the divisor rounding is visible, as expected
    fl = golden.float_reference(prog, deq["input"])[prog.outputs[0]]
    lg = deq[prog.outputs[0]]
    assert golden.sqnr_db(fl, lg) > 5.0
