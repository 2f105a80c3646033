"""cocotb test modules of the arithmetic units (``hw.units``), run by ``tb/test_units_rtl.py``.

Each ``cocotb_<unit>.py`` reads its parameters with :func:`tb.rtl.params`, drives random vectors
(numpy ``default_rng(seed)``) plus corner cases through the unit one per clock cycle, and
compares every output against the :mod:`sim.numerics` reference.
"""
