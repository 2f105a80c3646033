"""Trio-ViT's arithmetic units (paper Sec. IV-D and V), as Amaranth components.

Each unit is a :class:`amaranth.lib.wiring.Component` with keyword-only, validated parameters
whose defaults are the paper's widths; its behaviour is defined by the matching function of
:mod:`sim.numerics` (the tests check it bit for bit). ``UNITS`` maps the CLI names
(``python -m hw verilog NAME``) to the classes.
"""

from .adder_tree import AdderTree
from .log2 import Log2Quantizer
from .packed_mult import PackedDualMultiplier
from .requant import Requant
from .shifter import ShifterArray

__all__ = ["AdderTree", "Log2Quantizer", "PackedDualMultiplier", "Requant", "ShifterArray", "UNITS"]

UNITS: dict[str, type] = {
    "log2": Log2Quantizer,
    "requant": Requant,
    "shifter": ShifterArray,
    "adder_tree": AdderTree,
    "packed_mult": PackedDualMultiplier,
}
