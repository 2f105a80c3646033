"""The computing core of the Trio-ViT accelerator (paper Sec. V-B): instruction-driven MAT,
R-MAC and AUX units around the engines, with requant lanes on the way out. See docs/hw-core.md."""

from .core import Core
from .unit import Unit

__all__ = ["Core", "Unit", "UNITS"]

#: name -> component class, for hw.registry (``python -m hw verilog/estimate core``)
UNITS: dict[str, type] = {"core": Core}
