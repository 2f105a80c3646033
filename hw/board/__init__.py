"""Board support: the Xilinx ZCU102 platform and the top level used for Vivado runs."""

from .harness import CharacterizationTop
from .zcu102 import ZCU102Platform

__all__ = ["ZCU102Platform", "CharacterizationTop"]
