"""The command lines on damaged inputs (issue #18): every expected failure is one line naming the
file and the cause with exit 2, an unexpected exception exits 1 with a short message (the
traceback under ``--debug``), and nothing is half-written."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sim.__main__ as sim_cli
from sim import compile as sc
from sim.intprogram import digest
from sim.isa import Instr, encode_stream
from tb.core.cases import pointwise_program, small_config


def sim_main(argv, capsys):
    """``python -m sim ARGV`` in process: (exit code, stderr)."""
    with pytest.raises(SystemExit) as ex:
        sim_cli.main(argv)
        raise SystemExit(0)
    return ex.value.code, capsys.readouterr().err


def read_arrays(path) -> tuple[dict, dict]:
    z = np.load(path, allow_pickle=False)
    arrays = {k: z[k] for k in z.files}
    return json.loads(arrays.pop("__manifest__").tobytes()), arrays


def write_arrays(path, manifest, arrays, *, redigest=True):
    """Rewrite an .npz (with a matching SHA-256 unless ``redigest`` is False: a damaged file)."""
    manifest = dict(manifest)
    if redigest:
        manifest["sha256"] = digest(arrays, manifest)
    arrays = dict(arrays, __manifest__=np.frombuffer(json.dumps(manifest).encode(), np.uint8))
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def binary_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("bin") / "pw.bin.npz"
    sc.compile(pointwise_program(cin=8, cout=4, h=2, w=2), small_config()).save(p)
    return p


def one_line(err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_good_binary_runs(binary_file, capsys):
    code, err = sim_main(["run", str(binary_file)], capsys)
    assert code == 0, err


def _stream_patch(binary_file, tmp_path, fn, name="core0"):
    m, a = read_arrays(binary_file)
    words = a[f"s.{name}"].copy()
    fn(words)
    a[f"s.{name}"] = words
    out = tmp_path / "patched.bin.npz"
    write_arrays(out, m, a)
    return out


def _replace_instr(words, pred, new):
    from sim.isa import decode_stream
    ins = decode_stream(words)
    i = next(k for k, x in enumerate(ins) if pred(x))
    words[i] = encode_stream([new])[0]


@pytest.mark.parametrize("case, pattern", [
    ("truncated", r"truncated or damaged Binary file"),
    ("bitflip", r"damaged Binary file \(its arrays or manifest do not match the manifest's"),
    ("opcode", r"bad instruction \(unknown opcode 31"),
    ("register", r"cannot execute SETR\(unit=4, reg=200.*unknown key 200"),
    ("address", r"leaves buffer"),
    ("semaphore", r"deadlock: every unit waits"),
    ("missing", r"missing member 'dram'"),
    ("manifest", r"manifest is not valid JSON"),
    ("short_dram", r"DRAM image is \d+ bytes, shorter than symbol"),
    ("intprogram", r"is not 'trio-vit.binary' \(an IntProgram: compile it"),
    ("offset", r"offset = 70000 outside \[-65536, 65535\]"),
])
def test_damaged_binary_is_one_line_exit_2(case, pattern, binary_file, tmp_path, capsys):
    """The issue's findings: each of these printed a traceback (cmd_run caught only
    CompileError), or a misleading message (a truncated Binary read as its embedded IntProgram;
    a short dram reported as an input error)."""
    m, a = read_arrays(binary_file)
    out = tmp_path / "bad.bin.npz"
    if case == "truncated":
        data = binary_file.read_bytes()
        out.write_bytes(data[:len(data) - 300])
    elif case == "bitflip":
        a["dram"] = a["dram"].copy()
        sym = m["symbols"]["weight:pw"]
        a["dram"][sym["addr"]] ^= 0x10
        write_arrays(out, m, a, redigest=False)
    elif case == "opcode":
        out = _stream_patch(binary_file, tmp_path, lambda w: w.__setitem__((0, 0), w[0, 0] | 31))
    elif case == "register":
        out = _stream_patch(binary_file, tmp_path, lambda w: _replace_instr(
            w, lambda i: i.op == "SETR", Instr("SETR", dict(unit=4, reg=200, value=1))))
    elif case == "address":
        out = _stream_patch(binary_file, tmp_path, lambda w: _replace_instr(
            w, lambda i: i.op == "CONV_MAT" or i.op == "CONV_RDF",
            Instr("CONV_MAT", dict(x_addr=(1 << 19) - 1, nco=4, hin=1, ho=1))))
    elif case == "semaphore":
        out = _stream_patch(binary_file, tmp_path, lambda w: _replace_instr(
            w, lambda i: i.op == "SETR", Instr("WAIT", dict(unit=4, sem=65000, count=1))))
    elif case == "missing":
        del a["dram"]
        write_arrays(out, m, a)
    elif case == "manifest":
        a["__manifest__"] = np.frombuffer(b"{not json", np.uint8)
        np.savez(out, **a)
    elif case == "short_dram":
        a["dram"] = a["dram"][:64]
        write_arrays(out, m, a)
    elif case == "intprogram":
        pointwise_program(cin=8, cout=4, h=2, w=2).save(out)
    elif case == "offset":
        a["dram"] = a["dram"].copy()
        sym = m["symbols"]["param:pw"]
        rec = a["dram"][sym["addr"]:sym["addr"] + sym["nbytes"]].view(np.int32).reshape(-1, 8)
        rec[:, 3] = 70000
        write_arrays(out, m, a)
    code, err = sim_main(["run", str(out)], capsys)
    line = one_line(err)
    assert code == 2 and str(out) in line, line
    assert __import__("re").search(pattern, line), line


def test_compile_failure_writes_nothing(tmp_path, capsys):
    prog = pointwise_program(cin=8, cout=4, h=2, w=2)
    src = tmp_path / "p.npz"
    prog.save(src)
    m, a = read_arrays(src)
    m["tensors"][0]["bits"] = 16           # x: a 16-bit input (the finding)
    write_arrays(src, m, a)
    out = tmp_path / "never.bin.npz"
    code, err = sim_main(["compile", str(src), "--config", "small", "-o", str(out)], capsys)
    assert code == 2 and str(src) in one_line(err) and "bits = 16" in err
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_unexpected_error_is_short_and_debug_shows_traceback(binary_file, capsys, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("simulated bug\nsecond line")
    monkeypatch.setattr("sim.funcsim.run", boom)
    code, err = sim_main(["run", str(binary_file)], capsys)
    assert code == 1
    assert one_line(err) == ("internal error: RuntimeError: simulated bug (rerun with --debug"
                             " for the traceback)")
    with pytest.raises(RuntimeError, match="simulated bug"):
        sim_cli.main(["--debug", "run", str(binary_file)])


# -- quant export / evaluate on damaged .qmodel files ----------------------------------------------

@pytest.fixture(scope="module")
def qmodel(tmp_path_factory):
    from quant.cli import main
    q = tmp_path_factory.mktemp("q") / "b0.qmodel"
    assert main(["quantize", "--model", "b0-r64", "--data", "", "--calib-size", "2",
                 "--recon-iters", "0", "-o", str(q)]) == 0
    return q


def _damage(qmodel, tmp_path, fn):
    import torch
    d = torch.load(qmodel, weights_only=True)
    fn(d)
    out = tmp_path / "bad.qmodel"
    torch.save(d, out)
    return out


def _first_weight(d):
    """The first conv's int8 weight codes (a .qmodel stores codes, not float weights)."""
    return next(k for k in d["state"] if k.endswith(".wq.codes") and d["state"][k].ndim == 4)


def _first_bias(d):
    return next(k for k in d["state"] if k.endswith(".bias") and d["state"][k].is_floating_point())


@pytest.mark.parametrize("case, pattern", [
    ("no_state", r"missing member\(s\) \['state'\]"),
    ("no_act", r"missing member\(s\) \['act'\]"),
    ("qconfig", r"qconfig: TypeError: .*unexpected keyword argument 'bogus'"),
    ("model", r"model 'b9-r1'"),
    ("resolution", r"resolution -64 is not a positive multiple of 32"),
    ("dtype", r"has dtype torch.float64, expected torch.int8 \(.*it is not cast\)"),
    ("nan", r"bias has 1 non-finite value\(s\)"),
])
def test_damaged_qmodel_is_one_line_exit_2(case, pattern, qmodel, tmp_path, capsys):
    """The issue's findings: tracebacks on a damaged .qmodel, a NaN weight exported as 0, a
    wrong-dtype weight state cast silently."""
    import re

    from quant.cli import main

    def fn(d):
        if case == "no_state":
            del d["state"]
        elif case == "no_act":
            del d["act"]
        elif case == "qconfig":
            d["qconfig"]["bogus"] = 1
        elif case == "model":
            d["model"] = "b9-r1"
        elif case == "resolution":
            d["resolution"] = -64
        elif case == "dtype":
            k = _first_weight(d)
            d["state"][k] = d["state"][k].double()
        elif case == "nan":
            k = _first_bias(d)
            d["state"][k] = d["state"][k].clone()
            d["state"][k].view(-1)[3] = float("nan")
    bad = _damage(qmodel, tmp_path, fn)
    out = tmp_path / "never.npz"
    assert main(["export", str(bad), "-o", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(bad) in line and re.search(pattern, line), line
    assert not out.exists()


def test_compile_reports_semaphore_ids_and_a_file_too_small(tmp_path, capsys, monkeypatch):
    """`python -m sim compile` prints the Binary's semaphore ids (its largest SIGNAL / WAIT id +
    1, counted here from the saved streams) and warns when they exceed the default file."""
    src, out = tmp_path / "pw.npz", tmp_path / "pw.bin.npz"
    pointwise_program(cin=8, cout=4, h=2, w=2).save(src)
    code, err = sim_main(["compile", str(src), "--config", "small", "-o", str(out)], capsys)
    assert code == 0 and err == ""
    b = sc.Binary.load(out)
    ids = {i.f["sem"] for s in b.streams.values() for i in s if i.op in ("SIGNAL", "WAIT")}
    assert b.sem_ids == max(ids) + 1
    monkeypatch.setattr(sim_cli, "SEM_IDS", b.sem_ids - 1)
    code, err = sim_main(["compile", str(src), "--config", "small", "-o", str(out)], capsys)
    assert code == 0
    assert f"uses {b.sem_ids} semaphore ids, more than the {b.sem_ids - 1}" in one_line(err)
    assert f"--sems {b.sem_ids}" in err
