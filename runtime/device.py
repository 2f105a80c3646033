"""The one interface the runtime drives: a register window, a DMA buffer and an interrupt.

A :class:`Device` is what the runtime needs of an accelerator, whatever carries it:

* **registers** by the register map's names (``read("STATUS")``, ``write("CTRL", v)``,
  ``read64("CYCLES")``): 32-bit words at byte offsets of the AXI4-Lite register block; the
  backends implement only ``read_word(offset)`` / ``write_word(offset, value)``;
* a **buffer** the accelerator reaches over its AXI4 master: ``buffer_addr`` (its bus address,
  physical on the board), ``buffer_size`` (bytes), ``read_buffer(offset, n) -> bytes`` and
  ``write_buffer(offset, data)`` (offsets from the buffer's start). On the board it is
  physically contiguous (udmabuf) and mapped uncached;
* the **interrupt**: ``wait_irq(timeout_s) -> bool`` returns True once the interrupt line is
  (or was) raised, False after ``timeout_s`` seconds of device time without it; a backend
  without an interrupt sets ``has_irq = False`` and the runtime polls ``STATUS`` instead.

Backends: :class:`runtime.mmio.MmioDevice` (the board's Linux: UIO or ``/dev/mem``, udmabuf) and
:class:`runtime.cocotb_device.CocotbDevice` (the RTL accelerator in a cocotb simulation).
"""

from __future__ import annotations

from .regmap import RegMap, load_regmap

__all__ = ["Device", "DeviceError"]


class DeviceError(RuntimeError):
    """A device that cannot be opened or used (the message names the file or the cause)."""


class Device:
    """Base class of the backends (see the module doc). ``regmap``: a :class:`RegMap`
    (default: :func:`runtime.regmap.load_regmap`)."""

    has_irq = True
    #: how long one unit of ``wait_irq``'s timeout is, for messages ("s" on the board)
    time_unit = "s"

    def __init__(self, regmap: RegMap | None = None):
        self.regmap = regmap if regmap is not None else load_regmap()

    # -- what a backend implements ----------------------------------------------------------
    def read_word(self, offset: int) -> int:
        raise NotImplementedError

    def write_word(self, offset: int, value: int) -> None:
        raise NotImplementedError

    buffer_addr: int = 0
    buffer_size: int = 0

    def read_buffer(self, offset: int, n: int) -> bytes:
        raise NotImplementedError

    def write_buffer(self, offset: int, data) -> None:
        raise NotImplementedError

    def wait_irq(self, timeout_s: float) -> bool:
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass (between two polls)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- registers by name ----------------------------------------------------------------------
    def read(self, name: str) -> int:
        return self.read_word(self.regmap.offset(name)) & 0xFFFFFFFF

    def write(self, name: str, value: int) -> None:
        self.write_word(self.regmap.offset(name), value & 0xFFFFFFFF)

    def read64(self, name: str) -> int:
        """A 64-bit register: ``_LO`` first (it latches ``_HI``), then ``_HI``."""
        lo = self.read(f"{name}_LO")
        return lo | self.read(f"{name}_HI") << 32

    def write64(self, name: str, value: int) -> None:
        self.write(f"{name}_LO", value)
        self.write(f"{name}_HI", value >> 32)

    def _check_range(self, offset: int, n: int) -> None:
        if offset < 0 or n < 0 or offset + n > self.buffer_size:
            raise DeviceError(f"buffer access [{offset:#x}, {offset + n:#x}) outside the "
                              f"{self.buffer_size}-byte buffer")
