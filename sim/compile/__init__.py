"""The compiler: IntProgram + AccelConfig -> Binary (instruction streams + DRAM image).

A package of passes with one job each (docs/compiler.md):

=================  ==========================================================================
:mod:`.stem`       the dense stem: a generic conv stem as a pointwise conv over the input the
                   host writes unfolded (``im2col`` input layout; ``stem=``)
:mod:`.layout`     DRAM layout and allocation (tensors, concat aliases, constant blocks)
:mod:`.records`    the parameter records and host blocks written into the DRAM image
:mod:`.fusion`     fused chains ``[PW1?, DW, PW2]`` and tensors kept in a B slot
:mod:`.tiling`     tiling plans: chunks x row tiles, the split over cores and engines
:mod:`.cost`       engine cycle counts the tiling balances with
:mod:`.schedule`   buffer slots, synchronisation events, DMA, RAW through DRAM
:mod:`.residency`  tensors passed between layers through a B slot
:mod:`.ops`        instruction emission per op kind (conv, depthwise, chain, attention,
                   pool, host; the blocked layout's conv and depthwise: blocked)
:mod:`.emitter`    the instruction streams with their field and register checks
:mod:`.assemble`   HALTs and the DRAM image: the :class:`Binary`
:mod:`.pipeline`   the order of the passes: :func:`compile`
:mod:`.binary`     the Binary and its file format
=================  ==========================================================================
"""

from .binary import BINARY_VERSION, Binary
from .common import PARAM_RECORD, CompileError
from .cost import conv_cycles, dw_cycles
from .pipeline import compile

# names callers imported from the former single module (sim.perf: _cdiv; tests: _Em)
from .common import cdiv as _cdiv  # noqa: E402,F401
from .emitter import Emitter as _Em  # noqa: E402,F401

__all__ = ["CompileError", "Binary", "compile", "BINARY_VERSION", "PARAM_RECORD",
           "conv_cycles", "dw_cycles"]
