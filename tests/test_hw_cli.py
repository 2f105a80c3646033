"""``python -m hw``: list, verilog, estimate, and its user errors (exit code 2, one-line message)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Fragment

from hw import registry
from hw.cli import main
from hw.units import UNITS as UNIT_CLASSES

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "hw", *args], cwd=cwd, capture_output=True, text=True)


def test_registry_has_every_unit():
    for name, cls in UNIT_CLASSES.items():
        assert registry.UNITS[name] is cls
    assert set(UNIT_CLASSES) == {"log2", "requant", "shifter", "adder_tree", "packed_mult"}


def test_params_are_keyword_only_constructor_params():
    ps = registry.params_of(UNIT_CLASSES["requant"])
    assert ps["out_bits"] == 8 and ps["signed"] is True and ps["acc_bits"] == 32


def test_build_parses_ints_and_bools():
    comp = registry.build("requant", {"out_bits": "0x10", "signed": "false", "hswish": "no"})
    assert (comp.out_bits, comp.signed, comp.hswish) == (16, False, False)
    assert comp.latency == 3
    assert len(comp.out) == 16 and not hasattr(comp, "hswish_en")     # the ports follow
    Fragment.get(comp, None)                                            # and it elaborates


def test_verilog_writes_file(tmp_path):
    r = run("verilog", "shifter", "--param", "lanes=4", "-p", "width=12", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "shifter.v").read_text()
    assert "module shifter" in text
    assert "input [47:0] x" in text.replace("wire ", "")       # 4 lanes x 12 bits
    assert not list(tmp_path.glob("*.tmp"))


def test_verilog_all_in_process(tmp_path, capsys):
    assert main(["verilog", "all", "-o", str(tmp_path), "-q"]) == 0
    written = {p.stem for p in tmp_path.glob("*.v")}
    assert set(UNIT_CLASSES) <= written
    assert "module packed_mult" in (tmp_path / "packed_mult.v").read_text()


@pytest.mark.parametrize("args,message", [
    (["verilog", "nosuchunit"], "unknown component 'nosuchunit'; choose one of:"),
    (["verilog", "shifter", "--param", "lans=4"], "shifter has no parameter 'lans'; valid parameters: lanes=8"),
    (["verilog", "shifter", "--param", "lanes=6"], "lanes must be a power of two"),
    (["verilog", "adder_tree", "--param", "width=0"], "width must be in [1, 256], got 0"),
    (["verilog", "adder_tree", "--param", "width=abc"], "parameter width takes an integer, got 'abc'"),
    (["verilog", "requant", "--param", "signed=maybe"], "parameter signed takes a bool"),
    (["verilog", "shifter", "--param", "lanes"], "expected KEY=VALUE"),
    (["verilog", "all", "--param", "width=8"], "--param cannot be combined with `all`"),
    (["estimate", "log2", "--param", "width=1"], "width must be in [2, 64], got 1"),
])
def test_user_errors_exit_2(args, message, tmp_path):
    r = run(*args, "-o", str(tmp_path)) if args[0] == "verilog" else run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())        # nothing written


def test_list_names_every_unit():
    r = run("list")
    assert r.returncode == 0
    for name in UNIT_CLASSES:
        assert name in r.stdout


@pytest.mark.slow
def test_estimate_packed_mult_json_one_dsp():
    """The packed dual multiplier maps its two products onto exactly one DSP48E2."""
    r = run("estimate", "packed_mult", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["DSP48E2"] == 1
    # the defaults: a 9-bit activation operand (int8 or uint8) times an int8 weight, fields 18
    # bits apart (docs/hw-engines.md)
    assert res["name"] == "packed_mult"
    assert res["params"] == {"a_bits": 9, "w_bits": 8, "shift": 18, "mixed": False}
    for key in ("LUT", "FF", "BRAM", "CARRY"):
        assert isinstance(res[key], int) and res[key] >= 0
    assert res["FF"] > 0


@pytest.mark.slow
def test_estimate_text_and_cache():
    """A small adder tree (fast to synthesize): text output; a second run reuses the result:
    yosys does not run again (its log and the stat file in the work directory are untouched)
    and the figures are the same."""
    r = run("estimate", "adder_tree", "-p", "width=4", "-p", "count=2")
    assert r.returncode == 0, r.stderr
    assert "adder_tree: LUT" in r.stdout and "DSP48E2 0" in r.stdout
    work = REPO / r.stdout.rsplit("work dir ", 1)[1].split(")")[0]
    stamps = {f: (work / f).stat().st_mtime_ns for f in ("yosys.log", "stat.json", "synth.ys")}
    r2 = run("estimate", "adder_tree", "-p", "width=4", "-p", "count=2", "--json")
    res = json.loads(r2.stdout)
    assert REPO / res["dir"] == work
    assert {f: (work / f).stat().st_mtime_ns for f in stamps} == stamps     # a cache hit
    assert res["DSP48E2"] == 0
    assert f"LUT {res['LUT']}  FF {res['FF']}" in r.stdout


def test_core_from_config_has_buffer_a_line_of_the_dram_channel():
    """hw.registry builds the core a config describes, buffer A's line included: 64 bytes at
    the paper's 64 B/cycle DRAM, 16 at 16 B/cycle (sim.timing.a_line_bytes)."""
    from hw.core import Core
    from sim.config import PRESETS
    cfg = PRESETS["paper"]
    params = registry.from_config("core", cfg)
    assert params["a_line"] == 64 and params["a_bytes"] == cfg.buf_a_bytes
    assert Core.config_params(cfg) == params
    assert registry.from_config("core", cfg.replace(dram_bytes_per_cycle=16))["a_line"] == 16
    # as the CLI passes them: strings, parsed by the type of the default (None: derived)
    assert registry.config_params("core", "paper")["a_line"] == "64"
    small = {"N": "2", "M": "2", "T": "2", "S": "2"}
    core = registry.build("core", {**small, "a_line": "32"})
    assert core.a_line == 32 and len(core.a_load.mask) == 32
    Fragment.get(core, None)                     # the core it built elaborates



@pytest.mark.slow
@pytest.mark.parametrize("params", [
    pytest.param(["-p", "count=16", "-p", "ports=6"], id="16x6"),
    pytest.param(["-p", "count=16", "-p", "ports=6", "-p", "banks=2"], id="16x6-banks2"),
    pytest.param([], id="paper", marks=pytest.mark.regress),
    pytest.param(["-p", "banks=2"], id="paper-banks2", marks=pytest.mark.regress),
])
def test_estimate_semaphore_file_doc_commands(params):
    """docs/system.md's `python -m hw estimate semaphore_file --mapper abc [-p count=16 -p
    ports=6]`: the counters live in RAM, so the LUT count stays far below one 16-bit counter and
    adder per id (16 ids x 16 bits alone would be 256 FF); no DSP."""
    r = run("estimate", "semaphore_file", "--mapper", "abc", *params, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    kv = dict(p.split("=") for p in params[1::2])
    count, banks = int(kv.get("count", "2048")), int(kv.get("banks", "1"))
    assert res["params"]["count"] == count and res["params"]["banks"] == banks
    assert res["DSP48E2"] == 0
    assert res["FF"] < 16 * count * banks       # not a register per counter bit
