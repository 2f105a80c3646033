"""The simulation backend: the RTL accelerator (``hw.system.Accelerator``) in a cocotb test.

The runtime is synchronous, as on the board. Inside a cocotb test it runs in a thread started
with :func:`cocotb.task.bridge` (``await bridge(runtime.run)(device, binary, x)``); each
register access and each wait of :class:`CocotbDevice` hands control back to the simulator
with :func:`cocotb.task.resume` and blocks until the AXI4-Lite transaction (cocotbext-axi's
``AxiLiteMaster`` on ``s_axi``) or the wait is over. So :func:`runtime.run` and
:class:`runtime.Accelerator`, the code that runs on the board, run here against the simulated
accelerator, unchanged.

* registers: ``cpu.read_dword`` / ``cpu.write_dword`` of an ``AxiLiteMaster`` (32-bit accesses);
* the buffer: ``[base, base + size)`` of the cocotbext-axi ``AxiRam`` on ``m_axi`` (the DDR),
  read and written directly (the simulator is paused while the runtime's thread runs);
* the interrupt: the DUT's ``irq`` (level): returns at once if it is high, else waits for its
  rising edge or the timeout; time is **simulated** time (``time_unit``), and
  ``sleep`` (between polls) waits simulated time too.
"""

from __future__ import annotations

from cocotb.task import resume
from cocotb.triggers import First, RisingEdge, Timer

from .device import Device

__all__ = ["CocotbDevice"]


class CocotbDevice(Device):
    """``cpu``: cocotbext-axi ``AxiLiteMaster`` on the register block; ``ram``: ``AxiRam`` on
    the AXI4 master; ``dut``: the simulated top (its ``irq``); ``base``/``size``: the buffer in
    ``ram`` (bus addresses; default from ``base`` to the RAM's end); ``irq``: whether to wait
    for the interrupt (False: the runtime polls)."""

    time_unit = "s of simulated time"

    def __init__(self, cpu, ram, dut, *, base: int = 0, size: int | None = None,
                 irq: bool = True, regmap=None):
        super().__init__(regmap)
        self.cpu, self.ram, self.dut = cpu, ram, dut
        self.buffer_addr = base
        self.buffer_size = (ram.size - base) if size is None else size
        self.has_irq = irq
        self._read = resume(cpu.read_dword)
        self._write = resume(cpu.write_dword)
        self._wait = resume(self._wait_irq)
        self._sleep = resume(self._sleep_ns)

    def read_word(self, offset: int) -> int:
        return self._read(offset)

    def write_word(self, offset: int, value: int) -> None:
        self._write(offset, value & 0xFFFFFFFF)

    def read_buffer(self, offset: int, n: int) -> bytes:
        self._check_range(offset, n)
        return bytes(self.ram.read(self.buffer_addr + offset, n))

    def write_buffer(self, offset: int, data) -> None:
        data = bytes(data)
        self._check_range(offset, len(data))
        self.ram.write(self.buffer_addr + offset, data)

    async def _wait_irq(self, timeout_s: float) -> bool:
        if int(self.dut.irq.value):
            return True
        t = Timer(max(1, round(timeout_s * 1e9)), unit="ns")
        return await First(RisingEdge(self.dut.irq), t) is not t

    async def _sleep_ns(self, seconds: float) -> None:
        await Timer(max(1, round(seconds * 1e9)), unit="ns")

    def wait_irq(self, timeout_s: float) -> bool:
        return self._wait(timeout_s)

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)
