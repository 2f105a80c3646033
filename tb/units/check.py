"""``python -m tb.units.check``: run every arithmetic unit's cocotb check on Icarus and Verilator
and print a table (unit x simulator: pass/FAIL and seconds). Exit code 1 if anything failed.

    python -m tb.units.check [--sim icarus] [--unit requant] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tb.rtl import SIMULATORS, run_cocotb
from tb.units.cases import DEFAULT_CASES

__all__ = ["check_units", "main"]


def check_units(simulators=SIMULATORS, cases=DEFAULT_CASES, progress=None) -> list[dict]:
    """Run ``cases`` on ``simulators``; one dict per run: case, unit, simulator, ok, seconds, error."""
    rows = []
    for case in cases:
        for sim in simulators:
            unit = case.make()
            t0 = time.monotonic()
            err = None
            try:
                run_cocotb(component=unit, name=case.name, test_module=f"tb.units.cocotb_{case.name}",
                           simulator=sim, params=case.test_params(unit), timeout_s=600)
            except AssertionError as e:
                err = str(e).splitlines()[0][:300]
            rows.append(dict(case=case.id, unit=case.name, simulator=sim, ok=err is None,
                             seconds=round(time.monotonic() - t0, 1), error=err))
            if progress:
                progress(rows[-1])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tb.units.check", description=__doc__.split("\n\n")[0])
    p.add_argument("--sim", choices=SIMULATORS, action="append", help="simulator (repeatable; default both)")
    p.add_argument("--unit", action="append", help="only cases of this unit (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object per run")
    a = p.parse_args(argv)
    cases = [c for c in DEFAULT_CASES if not a.unit or c.name in a.unit]
    if not cases:
        p.error(f"no case for unit(s) {a.unit}; units: {sorted({c.name for c in DEFAULT_CASES})}")

    def show(r):
        if a.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"{r['case']:<28} {r['simulator']:<10} {'pass' if r['ok'] else 'FAIL':<5} "
                  f"{r['seconds']:>6.1f} s" + (f"  {r['error']}" if r['error'] else ""), flush=True)

    rows = check_units(tuple(a.sim or SIMULATORS), cases, progress=show)
    if not a.json:
        bad = sum(not r["ok"] for r in rows)
        print(f"{len(rows) - bad}/{len(rows)} unit checks passed")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
