"""Programmable-logic resources of the boards the design-space exploration checks a point against.

Figures are AMD's, stated here (nothing is fetched at run time):

* ZCU102 (XCZU9EG), ZCU104 (XCZU7EV), Ultra96-V2 (XCZU3EG): AMD DS891, *Zynq UltraScale+ MPSoC
  Data Sheet: Overview*, Table "Zynq UltraScale+ MPSoC: EG Device Feature Summary" and "EV Device
  Feature Summary" (CLB LUTs, CLB flip-flops, block RAM blocks of 36 Kb, DSP slices). The ZCU102
  row also equals the "Available" row of the paper's Table III.
* Kria K26 SOM (XCK26): AMD DS987, *Kria K26 SOM Data Sheet*, Table "Programmable Logic
  Features" (the K26's device is not in DS891).

UltraRAM (ZCU104: 96 blocks, K26: 64) is listed but the resource model maps every buffer to block
RAM, so a point that fits only by moving its global buffers to UltraRAM is reported as not fitting.
"""

from __future__ import annotations

__all__ = ["BOARDS", "fits", "fitting_boards"]

BOARDS = {
    "zcu102": {"device": "XCZU9EG", "LUT": 274080, "FF": 548160, "DSP48E2": 2520, "BRAM36": 912,
               "URAM": 0, "source": "AMD DS891 (Zynq UltraScale+ MPSoC Overview), EG device table"},
    "zcu104": {"device": "XCZU7EV", "LUT": 230400, "FF": 460800, "DSP48E2": 1728, "BRAM36": 312,
               "URAM": 96, "source": "AMD DS891 (Zynq UltraScale+ MPSoC Overview), EV device table"},
    "kv260": {"device": "XCK26 (Kria K26 SOM)", "LUT": 117120, "FF": 234240, "DSP48E2": 1248,
              "BRAM36": 144, "URAM": 64, "source": "AMD DS987 (Kria K26 SOM Data Sheet), "
                                                   "programmable logic features"},
    "ultra96": {"device": "XCZU3EG", "LUT": 70560, "FF": 141120, "DSP48E2": 360, "BRAM36": 216,
                "URAM": 0, "source": "AMD DS891 (Zynq UltraScale+ MPSoC Overview), EG device table"},
}

_KEYS = ("LUT", "FF", "DSP48E2", "BRAM36")


def fits(res: dict, board: str, *, max_util: float = 1.0) -> bool:
    """Whether resources ``res`` (LUT, FF, DSP48E2, BRAM36) fit ``board`` with every resource
    at most ``max_util`` of the device's."""
    b = BOARDS[board]
    return all(res[k] <= max_util * b[k] for k in _KEYS)


def fitting_boards(res: dict, *, max_util: float = 1.0) -> list[str]:
    return [name for name in BOARDS if fits(res, name, max_util=max_util)]
