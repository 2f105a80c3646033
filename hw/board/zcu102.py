"""The Xilinx ZCU102 evaluation board (Zynq UltraScale+ XCZU9EG-2FFVB1156E) as an Amaranth
platform, with the few programmable-logic pins the Vivado runs of this project use.

Pins (ZCU102 user guide UG1182): the 125 MHz LVDS system clock ``CLK_125`` on G21/F21 (bank 67,
LVDS_25), the ``CPU_RESET`` push button on AM13 (active high) and the eight ``GPIO_LED`` pins
(3.3 V bank). The DDR4 of the board belongs to the processing system; a design that streams
activations from it needs the PS block (see ``docs/vivado.md``), which this platform does not
describe.
"""

from __future__ import annotations

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource
from amaranth.vendor import XilinxPlatform

__all__ = ["ZCU102Platform", "PART"]

#: the part string Vivado is given (device, package, speed grade)
PART = "xczu9eg-ffvb1156-2-e"

_LEDS = "AG14 AF13 AE13 AJ14 AJ15 AH13 AH14 AL12"


class ZCU102Platform(XilinxPlatform):
    """ZCU102 (rev 1.0 and later): ``clk125`` (125 MHz), ``rst`` (CPU_RESET), ``led`` 0..7."""

    device = "xczu9eg"
    package = "ffvb1156"
    speed = "2-e"
    default_clk = "clk125"
    default_rst = "rst"
    resources = [
        Resource("clk125", 0, DiffPairs("G21", "F21", dir="i"), Clock(125e6),
                 Attrs(IOSTANDARD="LVDS_25")),
        Resource("rst", 0, Pins("AM13", dir="i"), Attrs(IOSTANDARD="LVCMOS33")),
        *[Resource("led", i, Pins(p, dir="o"), Attrs(IOSTANDARD="LVCMOS33", SLEW="SLOW", DRIVE="8"))
          for i, p in enumerate(_LEDS.split())],
    ]
    connectors = []
