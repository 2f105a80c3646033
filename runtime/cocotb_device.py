"""The simulation backends: the RTL accelerator (``hw.system.Accelerator``) in a cocotb test.

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

:class:`CocotbMemoryDevice` is the same with the DRAM in HDL (``tb.system.fast``: the
accelerator and ``tb.system.axi_mem.AxiMemory`` in one design, no Python on the AXI4 path):

* registers: a minimal AXI4-Lite manager on ``s_axi`` written here (it touches the bus only
  during an access; cocotbext-axi's models sample their channels every cycle, which is what
  makes a simulation slow);
* the buffer: ``AxiMemory``'s debug port (``dbg_addr``, ``dbg_rdata``, ``dbg_wdata``,
  ``dbg_wstrb``): ``dbg_words`` words per access, reads combinational, writes one access per
  clock cycle with byte strobes;
* the interrupt and ``sleep``: as :class:`CocotbDevice`.
"""

from __future__ import annotations

import numpy as np
from cocotb.task import resume
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer

from .device import Device

__all__ = ["CocotbDevice", "CocotbMemoryDevice"]


class _SimulatedTime(Device):
    """The interrupt (``dut.irq``) and ``sleep`` in simulated time."""

    time_unit = "s of simulated time"

    def _init_time(self, dut, irq: bool):
        self.dut = dut
        self.has_irq = irq
        self._wait = resume(self._wait_irq)
        self._sleep = resume(self._sleep_ns)

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


class CocotbDevice(_SimulatedTime):
    """``cpu``: cocotbext-axi ``AxiLiteMaster`` on the register block; ``ram``: ``AxiRam`` on
    the AXI4 master; ``dut``: the simulated top (its ``irq``); ``base``/``size``: the buffer in
    ``ram`` (bus addresses; default from ``base`` to the RAM's end); ``irq``: whether to wait
    for the interrupt (False: the runtime polls)."""

    def __init__(self, cpu, ram, dut, *, base: int = 0, size: int | None = None,
                 irq: bool = True, regmap=None):
        super().__init__(regmap)
        self._init_time(dut, irq)
        self.cpu, self.ram = cpu, ram
        self.buffer_addr = base
        self.buffer_size = (ram.size - base) if size is None else size
        self._read = resume(cpu.read_dword)
        self._write = resume(cpu.write_dword)

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


class CocotbMemoryDevice(_SimulatedTime):
    """``dut``: the simulated top with ``s_axi__*`` (the register block), ``irq`` and
    ``AxiMemory``'s debug port ``dbg_*`` of ``dbg_words`` words of ``word_bytes`` bytes;
    ``base``/``size``: the buffer in that memory (bus addresses); ``irq``: whether to wait for
    the interrupt (False: the runtime polls)."""

    def __init__(self, dut, *, base: int, size: int, dbg_words: int, word_bytes: int = 16,
                 irq: bool = True, regmap=None):
        super().__init__(regmap)
        self._init_time(dut, irq)
        self.buffer_addr, self.buffer_size = base, size
        self.word, self.chunk = word_bytes, dbg_words * word_bytes
        self._read = resume(self._lite_read)
        self._write = resume(self._lite_write)
        self._rbuf = resume(self._dbg_read)
        self._wbuf = resume(self._dbg_write)

    # -- registers: AXI4-Lite. Signals are driven after a falling edge and sampled 1 ns later
    # (stable until the rising edge in the middle of the cycle, whatever the simulator shows
    # right at a rising edge), so a handshake seen there happened at that rising edge.
    async def _lite_write(self, offset: int, value: int) -> None:
        d = self.dut
        await FallingEdge(d.clk)
        d.s_axi__awaddr.value, d.s_axi__awprot.value, d.s_axi__awvalid.value = offset, 0, 1
        d.s_axi__wdata.value, d.s_axi__wstrb.value, d.s_axi__wvalid.value = value, 0xF, 1
        d.s_axi__bready.value = 1
        await Timer(1, unit="ns")
        aw = w = False
        while True:
            aw_fire = not aw and int(d.s_axi__awready.value)
            w_fire = not w and int(d.s_axi__wready.value)
            b_fire = aw and w and int(d.s_axi__bvalid.value)
            await FallingEdge(d.clk)
            if aw_fire:
                aw, d.s_axi__awvalid.value = True, 0
            if w_fire:
                w, d.s_axi__wvalid.value = True, 0
            if b_fire:
                break
            await Timer(1, unit="ns")
        d.s_axi__bready.value = 0

    async def _lite_read(self, offset: int) -> int:
        d = self.dut
        await FallingEdge(d.clk)
        d.s_axi__araddr.value, d.s_axi__arprot.value, d.s_axi__arvalid.value = offset, 0, 1
        d.s_axi__rready.value = 1
        await Timer(1, unit="ns")
        ar = False
        while True:
            ar_fire = not ar and int(d.s_axi__arready.value)
            r_fire = ar and int(d.s_axi__rvalid.value)
            v = int(d.s_axi__rdata.value) if r_fire else None
            await FallingEdge(d.clk)
            if ar_fire:
                ar, d.s_axi__arvalid.value = True, 0
            if r_fire:
                break
            await Timer(1, unit="ns")
        d.s_axi__rready.value = 0
        return v

    def read_word(self, offset: int) -> int:
        return self._read(offset)

    def write_word(self, offset: int, value: int) -> None:
        self._write(offset, value & 0xFFFFFFFF)

    # -- the buffer: the memory's debug port --------------------------------------------------
    def _chunks(self, addr: int, n: int):
        """``(word address, first byte of the chunk, lo, hi)`` of the debug accesses covering
        ``[addr, addr + n)``: bytes ``lo..hi`` of the chunk are in the range."""
        first = addr // self.word * self.word
        for c in range(first, addr + n, self.chunk):
            yield c // self.word, c, max(addr, c) - c, min(addr + n, c + self.chunk) - c

    async def _dbg_read(self, addr: int, n: int) -> bytes:
        d, out = self.dut, bytearray()
        for word, _c, lo, hi in self._chunks(addr, n):
            d.dbg_addr.value = word
            await Timer(1, unit="ns")
            out += int(d.dbg_rdata.value).to_bytes(self.chunk, "little")[lo:hi]
        return bytes(out)

    async def _dbg_write(self, addr: int, data: bytes) -> None:
        d = self.dut
        await FallingEdge(d.clk)
        for word, c, lo, hi in self._chunks(addr, len(data)):
            buf = bytearray(self.chunk)
            buf[lo:hi] = data[c + lo - addr:c + hi - addr]
            mask = np.zeros(self.chunk, np.uint8)
            mask[lo:hi] = 1
            d.dbg_addr.value = word
            d.dbg_wdata.value = int.from_bytes(buf, "little")
            d.dbg_wstrb.value = int.from_bytes(np.packbits(mask, bitorder="little").tobytes(),
                                               "little")
            await FallingEdge(d.clk)      # written at the rising edge in between
        d.dbg_wstrb.value = 0

    def read_buffer(self, offset: int, n: int) -> bytes:
        self._check_range(offset, n)
        return self._rbuf(self.buffer_addr + offset, n) if n else b""

    def write_buffer(self, offset: int, data) -> None:
        data = bytes(data)
        self._check_range(offset, len(data))
        if data:
            self._wbuf(self.buffer_addr + offset, data)
