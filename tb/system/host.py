"""The CPU's side of a run in a cocotb testbench: a thin async adapter over the runtime.

The CPU logic exists once, in :mod:`runtime` (the code that runs on the board): ``Host`` puts
:class:`runtime.cocotb_device.CocotbDevice` (cocotbext-axi's ``AxiLiteMaster`` on ``s_axi``,
the ``AxiRam`` that plays the DDR, the DUT's ``irq``) under a :class:`runtime.Accelerator` and
calls its synchronous steps through :func:`cocotb.task.bridge`:

* ``check_id``: ``ID``, ``VERSION``, ``CONFIG_HASH`` against the Binary's config;
* ``load``: the instruction image (``sim.image``) at ``TABLE_BASE`` (the start of the buffer,
  4 KB aligned), the data image at the next 4 KB boundary, ``INSTR_TABLE``, ``DATA_BASE``,
  ``DATA_SIZE``, ``WATCHDOG`` (0); then, for the error cases of ``tb.test_accelerator_rtl``, a
  corruption of what was placed (``corrupt``), done here and not in the runtime;
* ``start``, ``soft_reset``; ``wait``: until DONE or ERROR, serving ``HOST_REQ``
  (``sim.funcsim.host_ln``); returns the status, the error fields and the counters as a dict.

Register offsets and fields come from the runtime's register map (generated from
``hw.system.regmap.REGMAP``, the one description).
"""

from __future__ import annotations

from cocotb.task import bridge

from runtime import Accelerator, RunError
from runtime.cocotb_device import CocotbDevice
from runtime.runner import layout as _layout
from sim.isa import decode, encode

__all__ = ["Host", "TABLE_BASE", "HostError", "layout"]

TABLE_BASE = 0x1000             #: bus address of the buffer (the instruction image goes first)
PERIOD_NS = 10


class HostError(AssertionError):
    """The accelerator did something the host does not accept (wrong ID, timeout)."""


def layout(binary) -> tuple[int, int]:
    """``(data_base, end)``: the bus address of the data image of ``binary`` and the first
    byte past it (the buffer starts at ``TABLE_BASE``; :func:`runtime.runner.layout`)."""
    lay = _layout(binary)
    return TABLE_BASE + lay.data, TABLE_BASE + lay.end


class Host:
    def __init__(self, cpu, ram, dut, *, irq: bool = True):
        self.cpu, self.ram, self.dut = cpu, ram, dut
        self.device = CocotbDevice(cpu, ram, dut, base=TABLE_BASE, irq=irq)
        self.acc = Accelerator(self.device)
        self.table_base = TABLE_BASE

    @property
    def data_base(self):
        return None if self.acc.layout is None else TABLE_BASE + self.acc.layout.data

    async def _call(self, fn, *args, **kw):
        try:
            return await bridge(fn)(*args, **kw)
        except RunError as e:
            raise HostError(str(e)) from None

    async def read(self, name: str) -> int:
        return await self._call(self.device.read, name)

    async def write(self, name: str, value: int) -> None:
        await self._call(self.device.write, name, value)

    async def read64(self, name: str) -> int:
        return await self._call(self.device.read64, name)

    async def check_id(self, cfg) -> None:
        await self._call(self.acc.check, cfg)

    async def load(self, binary, xq, *, corrupt: str | None = None) -> None:
        if corrupt not in (None, "illegal_opcode", "endless_wait", "dma_window"):
            raise ValueError(f"unknown corruption {corrupt!r}")
        lay = await self._call(self.acc.load, binary, xq)
        if corrupt == "illegal_opcode":        # an unknown opcode (31) at LD's second word
            off = self._entries(lay)[0][0] + 16
            b = self.device.read_buffer(lay.table + off, 1)[0]
            self.device.write_buffer(lay.table + off, bytes([(b & 0xE0) | 31]))
        elif corrupt == "endless_wait":         # core 0 MAT's first WAIT asks for 4095 events
            off, n = self._entries(lay)[3]
            raw = self.device.read_buffer(lay.table + off, 16 * n)
            for k in range(n):
                w = int.from_bytes(raw[16 * k:16 * k + 16], "little")
                ins = decode(w)
                if ins.op == "WAIT":
                    ins.f["count"] = 4095
                    self.device.write_buffer(lay.table + off + 16 * k,
                                             encode(ins).to_bytes(16, "little"))
                    break
        elif corrupt == "dma_window":           # a window one byte short of the image
            await self.write("DATA_SIZE", lay.data_bytes - 1 - binary.dram.size // 2)

    def _entries(self, lay):
        import numpy as np
        from sim.image import n_queues, parse_table
        L = self.acc.binary.cfg.L
        raw = self.device.read_buffer(lay.table, 16 * n_queues(L))
        return parse_table(np.frombuffer(raw, dtype=np.uint8), L)

    async def start(self) -> None:
        await self._call(self.acc.start)

    async def soft_reset(self) -> None:
        await self._call(self.acc.soft_reset)

    async def wait(self, *, max_cycles: int) -> dict:
        """Serve the interrupt until the run ends; ``{"status": "done"|"error", ...}``."""
        res = await self._call(self.acc.wait, timeout_s=max_cycles * PERIOD_NS * 1e-9)
        return res.as_dict()

    def read_outputs(self, binary) -> dict:
        return self.acc.read_outputs(binary)
