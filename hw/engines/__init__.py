"""Compute engines of a Trio-ViT computing core (paper Sec. V-A/B): the R-MAC, the R-MAC engine
(M lanes x N R-MACs) and the MAT engine (S lanes x T multipliers with adder trees)."""

from .rmac import RMAC
from .rmac_engine import RMACEngine
from .mat_engine import MATEngine

__all__ = ["RMAC", "RMACEngine", "MATEngine", "UNITS"]

#: name -> component class, collected by hw.registry for ``python -m hw verilog/estimate NAME``
UNITS: dict[str, type] = {
    "rmac": RMAC,
    "rmac_engine": RMACEngine,
    "mat_engine": MATEngine,
}
