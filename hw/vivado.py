"""Vivado projects for the ZCU102: write the build tree of a component, run it where Vivado is
installed, and read the figures back.

``python -m hw vivado core --config paper`` writes ``build/vivado/core/`` with Amaranth's Xilinx
platform (:class:`hw.board.ZCU102Platform`): the Verilog of :class:`hw.board.CharacterizationTop`
around the component, the XDC (pins, the 125 MHz input clock), the Tcl script (synthesis,
placement, routing, reports, bitstream), ``build_<name>.sh`` and ``manifest.json`` (the
component's parameters, the clock, the harness's size). With ``--run`` the script is executed
(``vivado`` on PATH or ``$VIVADO``; an hour or more for a core at the paper's size); ``--report
DIR`` reads an executed tree, also one run on another machine, and prints the DUT's placed
utilisation and the routed timing.

Vivado is not installed on the machines this project is tested on, so the report readers are
tested on report text written in Vivado's table format, not on real runs (docs/vivado.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from sim.fileio import atomic_dir

__all__ = ["VivadoError", "write_project", "run_project", "read_results",
           "parse_utilization", "parse_timing_summary", "parse_power", "find_vivado"]


class VivadoError(RuntimeError):
    """A build tree that cannot be written, run or read."""


def find_vivado() -> str | None:
    """Path of the Vivado executable: ``$VIVADO`` if set, else ``vivado`` on PATH, else None."""
    env = os.environ.get("VIVADO")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    return shutil.which("vivado")


def write_project(component, *, name: str, outdir: Path, clock_mhz: float = 200.0,
                  params: dict | None = None) -> dict:
    """Write the ZCU102 build tree of ``component`` (a ``wiring.Component``) to ``outdir``.

    The tree is written to a temporary directory next to ``outdir`` and renamed into place, so
    an interrupted or failed call leaves no half-written tree (an existing ``outdir`` is
    replaced only on success). Returns the manifest (also written as ``manifest.json``).
    """
    from amaranth import __version__ as amaranth_version

    from .board import CharacterizationTop, ZCU102Platform
    from .board.zcu102 import PART

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise VivadoError(f"name must be a Verilog identifier, got {name!r}")
    top = CharacterizationTop(dut=component, clock_mhz=clock_mhz)
    outdir = Path(outdir)
    with atomic_dir(outdir) as tmp:
        plan = ZCU102Platform().build(top, name=name, do_build=False)
        plan.extract(str(tmp))
        manifest = {
            "name": name, "part": PART, "board": "ZCU102",
            "component": type(component).__name__, "params": params or {},
            "clock_mhz_target": clock_mhz, "clock_mhz": top.clock_mhz_actual,
            "mmcm_clkout0_divide": top.divider,
            "dut_input_bits": top.in_bits, "dut_output_bits": top.out_bits,
            "harness_ff_approx": top.harness_flops,
            "amaranth": amaranth_version,
            "script": f"build_{name}.sh",
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        script = tmp / f"build_{name}.sh"
        mode = script.stat().st_mode
        os.chmod(script, mode | (mode & 0o444) >> 2)      # `chmod +x`: x wherever r is set
    return manifest


def run_project(outdir: Path) -> None:
    """Execute the build script of the tree in ``outdir`` (needs Vivado)."""
    outdir = Path(outdir)
    man = _manifest(outdir)
    vivado = find_vivado()
    if vivado is None:
        raise VivadoError("Vivado not found (put `vivado` on PATH or set VIVADO=/path/to/vivado); "
                          f"the tree in {outdir} can be copied to a machine that has it and run "
                          f"with ./{man['script']}")
    env = dict(os.environ, VIVADO=vivado)
    r = subprocess.run(["/bin/sh", man["script"]], cwd=outdir, env=env)
    if r.returncode:
        raise VivadoError(f"Vivado failed (exit {r.returncode}); see {outdir / (man['name'] + '.log')}")


def _manifest(outdir: Path) -> dict:
    p = Path(outdir) / "manifest.json"
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise VivadoError(f"{outdir} is not a build tree of `python -m hw vivado` or "
                          "`python -m hw build` (no manifest.json)") from None
    except json.JSONDecodeError as e:
        raise VivadoError(f"{p} is not valid JSON: {e}") from None


def _table_rows(text: str):
    """The rows of Vivado's ``+---+`` / ``| a | b |`` tables as lists of cell strings."""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|") and s.endswith("|"):
            yield [c.strip() for c in s[1:-1].split("|")]


#: our names -> the column headers Vivado's hierarchical utilisation report uses
_UTIL_COLUMNS = {"LUT": "Total LUTs", "FF": "FFs", "RAMB36": "RAMB36", "RAMB18": "RAMB18",
                 "URAM": "URAM", "DSP": "DSP Blocks"}


def parse_utilization(text: str, instance: str | None = "dut") -> dict:
    """Figures of ``instance`` from a ``report_utilization -hierarchical`` report (``None``: the
    first row, the whole design's top).

    Returns ``{"LUT", "FF", "RAMB36", "RAMB18", "URAM", "DSP", "BRAM36_equiv"}`` (integers;
    ``BRAM36_equiv = RAMB36 + RAMB18 / 2``, the unit of the paper's Table III).
    """
    header, row = None, None
    for cells in _table_rows(text):
        if header is None and "Instance" in cells and "Total LUTs" in cells:
            header = cells
        elif header is not None and len(cells) == len(header) and (
                cells[0] == instance or instance is None):
            row = cells
            break
    if header is None:
        raise VivadoError("not a hierarchical utilisation report (no 'Instance | ... | Total LUTs' "
                          "header)")
    if row is None:
        raise VivadoError(f"instance {instance!r} not in the utilisation report"
                          if instance is not None else "no rows in the utilisation report")
    out = {}
    for key, col in _UTIL_COLUMNS.items():
        if col in header:
            v = row[header.index(col)]
            try:
                out[key] = int(float(v))
            except ValueError:
                raise VivadoError(f"column {col!r} of {instance!r} is not a number: {v!r}") from None
        else:
            out[key] = 0
    out["BRAM36_equiv"] = out["RAMB36"] + out["RAMB18"] / 2
    return out


def parse_timing_summary(text: str) -> dict:
    """WNS/TNS/WHS/THS (ns) from the 'Design Timing Summary' table of
    ``report_timing_summary``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "WNS(ns)" in line and "TNS(ns)" in line:
            names = re.split(r"\s{2,}", line.strip())     # "TNS Failing Endpoints" is one column
            for nxt in lines[i + 1:i + 4]:
                vals = nxt.split()
                if len(vals) == len(names) and not set(nxt.strip()) <= {"-", " "}:
                    try:
                        rec = dict(zip(names, (float(v) for v in vals)))
                    except ValueError:
                        continue
                    return {"WNS": rec["WNS(ns)"], "TNS": rec["TNS(ns)"],
                            "WHS": rec.get("WHS(ns)"), "THS": rec.get("THS(ns)")}
    raise VivadoError("no 'WNS(ns) TNS(ns) ...' table in the timing summary")


def parse_power(text: str) -> dict:
    """``{"total_w", "dynamic_w", "static_w"}`` from the summary table of ``report_power``."""
    rows = {}
    for cells in _table_rows(text):
        if len(cells) >= 2:
            rows.setdefault(cells[0], cells[1])
    out = {}
    for key, label in (("total_w", "Total On-Chip Power (W)"), ("dynamic_w", "Dynamic (W)"),
                       ("static_w", "Device Static (W)")):
        if label not in rows:
            raise VivadoError(f"no '{label}' row in the power report")
        try:
            out[key] = float(rows[label].rstrip("*"))
        except ValueError:
            raise VivadoError(f"'{label}' is not a number: {rows[label]!r}") from None
    return out


def _read_system(outdir: Path, man: dict) -> dict:
    """The reports of a ``python -m hw build zcu102`` tree (manifest kind ``zcu102-system``):
    the accelerator's cell and the whole design placed, routed timing, power."""
    paths = {k: outdir / v for k, v in man["reports"].items()}
    for p in paths.values():
        if not p.exists():
            raise VivadoError(f"{p.relative_to(outdir)} missing in {outdir}: has ./build.sh run?")
    util = paths["utilization"].read_text(errors="replace")
    return {"manifest": man,
            "dut": parse_utilization(util, man["accelerator_instance"]),
            "total": parse_utilization(util, None),
            "timing": parse_timing_summary(paths["timing"].read_text(errors="replace")),
            "power": parse_power(paths["power"].read_text(errors="replace"))}


def read_results(outdir: Path) -> dict:
    """The DUT's placed utilisation and the routed timing of an executed build tree (for a
    system build of ``python -m hw build``: also the whole design and the power)."""
    outdir = Path(outdir)
    man = _manifest(outdir)
    if man.get("kind") == "zcu102-system":
        res = _read_system(outdir, man)
        _fmax(res, man["clock_mhz"])
        return res
    name = man["name"]
    util = outdir / f"{name}_utilization_hierarchical_place.rpt"
    timing = outdir / f"{name}_timing.rpt"
    for p in (util, timing):
        if not p.exists():
            raise VivadoError(f"{p.name} missing in {outdir}: has the build run (--run)?")
    res = {"manifest": man, "dut": parse_utilization(util.read_text(errors="replace")),
           "timing": parse_timing_summary(timing.read_text(errors="replace"))}
    _fmax(res, man["clock_mhz"])
    return res


def _fmax(res: dict, clock_mhz: float) -> None:
    period = 1000.0 / clock_mhz
    res["timing"]["fmax_mhz"] = 1000.0 / (period - res["timing"]["WNS"])
    res["timing"]["met"] = res["timing"]["WNS"] >= 0 and (res["timing"]["WHS"] or 0) >= 0
