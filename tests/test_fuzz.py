"""Property-based fuzzing of everything a user hands the tools (issue #18), with ``hypothesis``:
IntProgram files, Binary files, ``.qmodel`` files and configs are mutated (bit flips, truncation,
wrong dtypes, out-of-range values, missing members) and each must give either a clean error (the
tool's own exception type, one line) or a result equal to ``sim.golden``: never another
exception, never a silent difference.

``make test`` runs a bounded number of examples per target (``FAST``), ``make regress`` the
``@pytest.mark.regress`` variants with more (``REGRESS``). Examples are derandomized
(reproducible in CI). Counts per target: see ``FAST`` / ``REGRESS``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import compile as sc
from sim import funcsim, golden
from sim.config import AccelConfig, ConfigError
from sim.intprogram import IntProgram, IntProgramError, digest
from tb.core.cases import depthwise_program, pointwise_program, pool_program, small_config

#: examples per target: make test / make regress
FAST = {"intprogram_bytes": 50, "intprogram_fields": 100, "binary_bytes": 50, "binary_fields": 60,
        "config": 40, "qmodel": 3}
REGRESS = {k: v * (10 if k == "qmodel" else 5) for k, v in FAST.items()}

_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])


def _programs():
    return [pointwise_program(act="relu", cin=8, cout=4, h=2, w=3),
            pointwise_program(act="hswish", cin=4, cout=4, h=2, w=2, seed=2),
            depthwise_program(c=4, h=4, w=4),
            pool_program(c=4, h=2, w=3)]


PROGRAMS = _programs()


def _input(prog, seed=0):
    t = prog.tensors[prog.inputs[0]]
    lo, hi = (-128, 128) if t.signed else (0, 256)
    return np.random.default_rng(seed).integers(lo, hi, t.shape)


def _agree_or_clean(prog, cfg, x):
    """Compile ``prog`` for ``cfg``, run funcsim and golden: a clean refusal (CompileError /
    IntProgramError) is fine; a compiled program must run and equal golden bit for bit (or both
    executors refuse the same run-time overflow)."""
    try:
        b = sc.compile(prog, cfg)
    except (sc.CompileError, IntProgramError):
        return "refused"
    try:
        ref = golden.run(prog, x)
    except (ValueError, ArithmeticError):
        with pytest.raises(funcsim.FuncSimError):
            funcsim.run(b, x)
        return "overflow"
    out = funcsim.run(b, x)
    for k in prog.outputs:
        np.testing.assert_array_equal(out[k], ref[k])
    return "ok"


def _rewrite(path, fn, *, redigest=True):
    z = np.load(path, allow_pickle=False)
    arrays = {k: z[k] for k in z.files}
    m = json.loads(arrays.pop("__manifest__").tobytes())
    fn(m, arrays)
    if redigest:
        m["sha256"] = digest(arrays, m)
    arrays["__manifest__"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    np.savez(path, **arrays)


# -- byte-level damage -------------------------------------------------------------------------

_damage = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
)


def _damaged_bytes(data: bytes, dmg) -> bytes:
    kind, where, bit = dmg
    i = int(where * len(data))
    if kind == "truncate":
        return data[:i]
    b = bytearray(data)
    b[i] ^= 1 << bit
    return bytes(b)


def _intprogram_bytes(tmp_path, which, dmg):
    prog = PROGRAMS[which]
    p = tmp_path / "p.npz"
    prog.save(p)
    p.write_bytes(_damaged_bytes(p.read_bytes(), dmg))
    try:
        loaded = IntProgram.load(p)
    except IntProgramError as e:
        assert str(p) in str(e) and "\n" not in str(e)
        return
    _agree_or_clean(loaded, small_config(), _input(loaded))


def _load_and_run(p):
    """Load a (damaged) Binary file and run it in funcsim: ``(binary, x, outputs)``, or None when
    the loader or funcsim refused it cleanly (a one-line CompileError naming the file, or a
    FuncSimError)."""
    try:
        b = sc.Binary.load(p)
    except sc.CompileError as e:
        assert str(p) in str(e) and "\n" not in str(e)
        return None
    x = _input(b.prog)
    try:
        return b, x, funcsim.run(b, x)
    except funcsim.FuncSimError:
        return None


def _binary_bytes(tmp_path, which, dmg):
    prog = PROGRAMS[which]
    p = tmp_path / "b.npz"
    sc.compile(prog, small_config()).save(p)
    p.write_bytes(_damaged_bytes(p.read_bytes(), dmg))
    loaded = _load_and_run(p)
    if loaded is None:
        return
    b, x, out = loaded
    ref = golden.run(b.prog, x)
    for k in b.prog.outputs:
        np.testing.assert_array_equal(out[k], ref[k])


@settings(max_examples=FAST["intprogram_bytes"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), dmg=_damage)
def test_fuzz_intprogram_bytes(tmp_path, which, dmg):
    _intprogram_bytes(tmp_path, which, dmg)


@pytest.mark.regress
@settings(max_examples=REGRESS["intprogram_bytes"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), dmg=_damage)
def test_fuzz_intprogram_bytes_regress(tmp_path, which, dmg):
    _intprogram_bytes(tmp_path, which, dmg)


@settings(max_examples=FAST["binary_bytes"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), dmg=_damage)
def test_fuzz_binary_bytes(tmp_path, which, dmg):
    _binary_bytes(tmp_path, which, dmg)


@pytest.mark.regress
@settings(max_examples=REGRESS["binary_bytes"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), dmg=_damage)
def test_fuzz_binary_bytes_regress(tmp_path, which, dmg):
    _binary_bytes(tmp_path, which, dmg)


# -- field-level mutations (a file rewritten with a valid digest: a wrong exporter) ------------

_values = st.one_of(
    st.integers(-(1 << 40), 1 << 40), st.integers(-3, 300), st.floats(allow_nan=True),
    st.none(), st.booleans(), st.text(max_size=3), st.lists(st.integers(-2, 9), max_size=4),
)


@st.composite
def _array_mutation(draw, keys):
    key = draw(st.sampled_from(sorted(keys)))
    kind = draw(st.sampled_from(["value", "dtype", "delete", "shape"]))
    return key, kind, draw(st.integers(-(1 << 33), 1 << 33)), \
        draw(st.sampled_from(["float64", "int16", "uint8", "int64", "bool", "float32"]))


def _apply_array_mutation(arrays, mut):
    key, kind, value, dtype = mut
    a = arrays[key]
    if kind == "delete":
        del arrays[key]
    elif kind == "dtype":
        arrays[key] = a.astype(dtype) if a.dtype != np.uint8 or key != "program" else a
        if dtype == "float64" and a.size:
            arrays[key] = arrays[key] + 0.5
    elif kind == "shape":
        arrays[key] = np.concatenate([a.reshape(-1), a.reshape(-1)[:1]]) if a.size else a
    else:
        b = a.astype(np.int64).copy() if a.dtype.kind in "iub" else a.copy()
        if b.size:
            b.reshape(-1)[value % b.size] = value
        arrays[key] = b


def _mutate_manifest(m, path, value):
    """Set (or delete, for value ``"<del>"``) the entry at ``path`` (a list of keys / indices)."""
    node = m
    for k in path[:-1]:
        node = node[k]
    if value == "<del>":
        del node[path[-1]]
    else:
        node[path[-1]] = value


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _intprogram_fields(tmp_path, which, data):
    prog = PROGRAMS[which]
    p = tmp_path / "p.npz"
    prog.save(p)
    z = np.load(p)
    m0 = json.loads(z["__manifest__"].tobytes())
    keys = [k for k in z.files if k != "__manifest__"]
    paths = [q for q in _paths(m0) if q[0] not in ("sha256",)]
    if data.draw(st.booleans(), label="array?"):
        mut = data.draw(_array_mutation(keys), label="array mutation")
        _rewrite(p, lambda m, a: _apply_array_mutation(a, mut))
    else:
        path = data.draw(st.sampled_from(paths), label="manifest path")
        value = data.draw(st.one_of(st.just("<del>"), _values), label="value")
        _rewrite(p, lambda m, a: _mutate_manifest(m, path, value))
    try:
        loaded = IntProgram.load(p)
    except IntProgramError as e:
        assert str(p) in str(e) and "\n" not in str(e)
        return
    _agree_or_clean(loaded, small_config(), _input(loaded))


@settings(max_examples=FAST["intprogram_fields"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), data=st.data())
def test_fuzz_intprogram_fields(tmp_path, which, data):
    _intprogram_fields(tmp_path, which, data)


@pytest.mark.regress
@settings(max_examples=REGRESS["intprogram_fields"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), data=st.data())
def test_fuzz_intprogram_fields_regress(tmp_path, which, data):
    _intprogram_fields(tmp_path, which, data)


def _binary_fields(tmp_path, which, data):
    prog = PROGRAMS[which]
    p = tmp_path / "b.npz"
    sc.compile(prog, small_config()).save(p)
    z = np.load(p)
    m0 = json.loads(z["__manifest__"].tobytes())
    if data.draw(st.booleans(), label="array?"):
        keys = [k for k in z.files if k not in ("__manifest__", "program", "dram")]
        mut = data.draw(_array_mutation(keys), label="array mutation")
        _rewrite(p, lambda m, a: _apply_array_mutation(a, mut))
    else:
        paths = [q for q in _paths(m0) if q[0] in ("config", "streams", "symbols", "format",
                                                   "version")]
        path = data.draw(st.sampled_from(paths), label="manifest path")
        value = data.draw(st.one_of(st.just("<del>"), _values), label="value")
        _rewrite(p, lambda m, a: _mutate_manifest(m, path, value))
    loaded = _load_and_run(p)
    if loaded is None:
        return
    b, x, out = loaded
    # a Binary edited consistently (valid digest) may compute something else: it is still one
    # the executors agree on; the golden comparison holds for whatever the tools report equal
    ref = golden.run(b.prog, x)
    for k in b.prog.outputs:
        if not np.array_equal(out[k], ref[k]):
            # a silent difference is only acceptable when the instructions were edited
            assert mut_is_semantic(locals()), (k, out[k], ref[k])


def mut_is_semantic(loc) -> bool:
    """An edited instruction stream or symbol table with a matching digest is a different
    program, not a damaged file: funcsim runs what it says (the RTL would too)."""
    mut = loc.get("mut")
    if mut is not None:
        return mut[0].startswith("s.")
    return loc.get("path", ("",))[0] in ("symbols", "config")


@settings(max_examples=FAST["binary_fields"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), data=st.data())
def test_fuzz_binary_fields(tmp_path, which, data):
    _binary_fields(tmp_path, which, data)


@pytest.mark.regress
@settings(max_examples=REGRESS["binary_fields"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), data=st.data())
def test_fuzz_binary_fields_regress(tmp_path, which, data):
    _binary_fields(tmp_path, which, data)


# -- configs ------------------------------------------------------------------------------------

_CFG_KEYS = sorted(small_config().to_dict())


def _config(which, key, value):
    d = small_config().to_dict()
    if value == "<del>":
        del d[key]
    else:
        d[key] = value
    try:
        cfg = AccelConfig.from_dict(d)
    except ConfigError:
        return
    _agree_or_clean(PROGRAMS[which], cfg, _input(PROGRAMS[which]))


_cfg_values = st.one_of(st.just("<del>"), st.integers(-4, 70), st.integers(0, 1 << 24),
                        st.sampled_from([0.5, 1.5, float("nan"), "8", None, True, [1]]))


@settings(max_examples=FAST["config"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), key=st.sampled_from(_CFG_KEYS),
       value=_cfg_values)
def test_fuzz_config(which, key, value):
    _config(which, key, value)


@pytest.mark.regress
@settings(max_examples=REGRESS["config"], **_SETTINGS)
@given(which=st.integers(0, len(PROGRAMS) - 1), key=st.sampled_from(_CFG_KEYS),
       value=_cfg_values)
def test_fuzz_config_regress(which, key, value):
    _config(which, key, value)


# -- .qmodel files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qmodel(tmp_path_factory):
    from quant.cli import main
    q = tmp_path_factory.mktemp("q") / "b0.qmodel"
    assert main(["quantize", "--model", "b0-r64", "--data", "", "--calib-size", "2",
                 "--recon-iters", "0", "-o", str(q)]) == 0
    return q


_QMODEL_KEYS = ["model", "resolution", "qconfig", "act", "state", "fixed_weights", "format",
                "version"]


def _qmodel(qmodel, tmp_path, data):
    import torch

    from quant.cli import UserError, load_qmodel
    from quant.export import export
    kind = data.draw(st.sampled_from(["member", "state", "bytes"]), label="kind")
    bad = tmp_path / "bad.qmodel"
    if kind == "bytes":
        bad.write_bytes(_damaged_bytes(qmodel.read_bytes(), data.draw(_damage, label="dmg")))
    else:
        d = torch.load(qmodel, weights_only=True)
        if kind == "member":
            key = data.draw(st.sampled_from(_QMODEL_KEYS), label="member")
            value = data.draw(st.one_of(st.just("<del>"), _values), label="value")
            if value == "<del>":
                del d[key]
            else:
                d[key] = value
        else:
            keys = sorted(d["state"])
            key = data.draw(st.sampled_from(keys), label="state key")
            t = d["state"][key]
            op = data.draw(st.sampled_from(["nan", "dtype", "shape", "delete", "scale"]))
            if op == "nan" and t.is_floating_point() and t.numel():
                t = t.clone()
                t.view(-1)[0] = float("nan")
            elif op == "dtype":
                t = t.to(torch.float64 if t.dtype != torch.float64 else torch.int32)
            elif op == "shape":
                t = t.reshape(-1)[:max(t.numel() - 1, 0)].clone()
            elif op == "scale" and t.is_floating_point():
                t = t * data.draw(st.sampled_from([-1.0, 0.0, 1e30]))
            if op == "delete":
                del d["state"][key]
            else:
                d["state"][key] = t
        torch.save(d, bad)
    try:
        g, _ = load_qmodel(bad)
        prog = export(g)
    except UserError as e:
        assert str(bad) in str(e) and "\n" not in str(e)
        return
    except (ValueError, OverflowError) as e:    # what cmd_export reports as one line, exit 2
        assert "\n" not in str(e).strip()
        return
    prog.validate()
    x = _input(prog)
    golden.run(prog, x)


@settings(max_examples=FAST["qmodel"], **_SETTINGS)
@given(data=st.data())
def test_fuzz_qmodel(qmodel, tmp_path, data):
    _qmodel(qmodel, tmp_path, data)


@pytest.mark.regress
@settings(max_examples=REGRESS["qmodel"], **_SETTINGS)
@given(data=st.data())
def test_fuzz_qmodel_regress(qmodel, tmp_path, data):
    _qmodel(qmodel, tmp_path, data)
