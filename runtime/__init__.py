"""trio-vit runtime: run a compiled Binary on the accelerator, on the board or in RTL simulation.

* :class:`Device` (:mod:`runtime.device`): registers by name, a DMA buffer, the interrupt;
  backends :class:`runtime.mmio.MmioDevice` (ZCU102 Linux: UIO or ``/dev/mem``, u-dma-buf) and
  :class:`runtime.cocotb_device.CocotbDevice` (the RTL accelerator in cocotb; imported from its
  module, it needs cocotb);
* :func:`run` (:mod:`runtime.runner`): check the config, load, start, wait (serving the host's
  LayerNorm), read outputs and performance counters; :class:`RunError` names the cause;
* the register map through the generated module (:mod:`runtime.regmap`);
* ``python -m runtime run MODEL.bin.npz --image x.jpg`` (``python -m runtime --help``).
"""

from .device import Device, DeviceError
from .mmio import MmioDevice
from .regmap import RegMap, load_regmap
from .runner import Accelerator, Layout, Result, RunError, layout, run

__all__ = ["Device", "DeviceError", "MmioDevice", "RegMap", "load_regmap", "Accelerator",
           "Layout", "Result", "RunError", "layout", "run"]
