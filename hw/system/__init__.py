"""The accelerator as it sits on a Zynq UltraScale+ (paper Fig. 8 plus the system around it).

``hw.system`` holds the synthesizable parts of the top level: the AXI signatures
(:mod:`hw.system.axi`), the register map described once (:mod:`hw.system.regmap`) and its
AXI4-Lite register block, the LD / ST DMA engines (AXI4 masters), the instruction dispatcher,
the semaphore file and the :class:`Accelerator` that joins them to the L computing cores.
"""

from .accelerator import Accelerator  # noqa: E402
from .contexts import FrameTracker  # noqa: E402
from .dispatch import Dispatcher  # noqa: E402
from .semaphores import SemaphoreFile  # noqa: E402

__all__ = ["Accelerator", "Dispatcher", "FrameTracker", "SemaphoreFile", "UNITS"]

#: components of this package the CLI builds (``python -m hw verilog accelerator --config ...``,
#: ``python -m hw estimate semaphore_file --param count=2048 --param ports=51 --param banks=2``,
#: ``python -m hw estimate dispatcher --param queues=51 --param depth=16``)
UNITS: dict[str, type] = {"accelerator": Accelerator, "semaphore_file": SemaphoreFile,
                          "dispatcher": Dispatcher, "frame_tracker": FrameTracker}
