"""The CPU's side of a run, in a cocotb testbench: what a board runtime does, over AXI models.

``Host`` drives the accelerator's register block through cocotbext-axi's ``AxiLiteMaster`` and
places the images in the ``AxiRam`` that plays the DDR:

* ``load``: the instruction image (``sim.image``) at ``TABLE_BASE`` (4 KB aligned: the
  dispatcher reads the table in one burst), the data image (``Binary.dram`` with the input
  written in) at the next 4 KB boundary, and the registers ``INSTR_TABLE``, ``DATA_BASE``,
  ``DATA_SIZE``;
* ``start``: ``CTRL.START`` with ``CTRL.IRQ_EN``;
* ``wait``: sleeps until the interrupt; a ``HOST_REQ`` is served (``sim.funcsim.host_ln`` on
  the data image, then ``HOST_ACK``), ``DONE`` or ``ERROR`` ends the run; returns the status,
  the error code and the performance counters.

Register offsets and fields come from ``hw.system.regmap.REGMAP`` (the one description).
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import First, RisingEdge, Timer

from hw.system.regmap import REGMAP, ID_MAGIC, ErrCode, config_hash
from sim import funcsim
from sim.image import instruction_image
from sim.isa import decode, encode

__all__ = ["Host", "TABLE_BASE", "HostError", "layout"]

TABLE_BASE = 0x1000             #: where the instruction image goes (4 KB aligned)
PAGE = 4096
PERIOD_NS = 10


class HostError(AssertionError):
    """The accelerator did something the host does not accept (wrong ID, timeout)."""


def _word(name: str) -> int:
    for n, off, _reg, _i in REGMAP.words():
        if n == name:
            return off
    raise KeyError(name)


def _mask(path: str) -> int:
    return REGMAP.field_of(path).mask


def layout(binary) -> tuple[int, int]:
    """``(data_base, end)``: where the data image of ``binary`` goes (the next 4 KB boundary
    after the instruction image at ``TABLE_BASE``) and the first byte past it."""
    img, _ = instruction_image(binary)
    data_base = -(-(TABLE_BASE + img.size) // PAGE) * PAGE
    return data_base, data_base + binary.dram.size


class Host:
    def __init__(self, cpu, ram, dut):
        self.cpu, self.ram, self.dut = cpu, ram, dut
        self.table_base = TABLE_BASE
        self.data_base = None
        self.data_size = 0

    async def read(self, name: str) -> int:
        return await self.cpu.read_dword(_word(name))

    async def write(self, name: str, value: int) -> None:
        await self.cpu.write_dword(_word(name), value & 0xFFFFFFFF)

    async def read64(self, name: str) -> int:
        lo = await self.read(f"{name}_LO")      # latches _HI
        hi = await self.read(f"{name}_HI")
        return lo | hi << 32

    async def check_id(self, cfg) -> None:
        ident, h = await self.read("ID"), await self.read("CONFIG_HASH")
        if ident != ID_MAGIC:
            raise HostError(f"ID reads 0x{ident:08x}, not a Trio-ViT accelerator")
        if h != config_hash(cfg):
            raise HostError(f"CONFIG_HASH 0x{h:08x}: the accelerator was built for another "
                            f"config than the Binary's (0x{config_hash(cfg):08x})")

    async def load(self, binary, xq, *, corrupt: str | None = None) -> None:
        img, entries = instruction_image(binary)
        img = img.copy()
        if corrupt == "illegal_opcode":        # an unknown opcode (31) at LD's second word
            off, _n = entries[0]
            img[off + 16] = (img[off + 16] & 0xE0) | 31
        elif corrupt == "endless_wait":         # core 0 MAT's first WAIT asks for 4095 events
            off, n = entries[3]
            words = img[off:off + 16 * n].view("<u8").reshape(n, 2)
            ins = [decode(int(lo) | int(hi) << 64) for lo, hi in words]
            i = next(k for k, w in enumerate(ins) if w.op == "WAIT")
            ins[i].f["count"] = 4095
            w = encode(ins[i])
            words[i] = (w & (2**64 - 1), w >> 64)
        elif corrupt is not None and corrupt != "dma_window":
            raise ValueError(f"unknown corruption {corrupt!r}")
        self.ram.write(self.table_base, img.tobytes())
        self.data_base, _end = layout(binary)
        data = binary.dram.copy()
        binary.write_input(data, xq)
        self.ram.write(self.data_base, data.tobytes())
        self.data_size = data.size
        if corrupt == "dma_window":             # a window one byte short of the image
            self.data_size -= 1 + binary.dram.size // 2
        await self.write("INSTR_TABLE_LO", self.table_base)
        await self.write("INSTR_TABLE_HI", self.table_base >> 32)
        await self.write("DATA_BASE_LO", self.data_base)
        await self.write("DATA_BASE_HI", self.data_base >> 32)
        await self.write("DATA_SIZE", self.data_size)

    async def start(self) -> None:
        await self.write("CTRL", _mask("CTRL.START") | _mask("CTRL.IRQ_EN"))

    async def soft_reset(self) -> None:
        await self.write("CTRL", _mask("CTRL.SOFT_RESET") | _mask("CTRL.IRQ_EN"))

    def _dram_read(self, addr, n):
        return np.frombuffer(self.ram.read(self.data_base + addr, n), dtype=np.uint8)

    def _dram_write(self, addr, data):
        self.ram.write(self.data_base + addr, np.asarray(data, dtype=np.uint8).tobytes())

    async def wait(self, *, max_cycles: int) -> dict:
        """Serve the interrupt until the run ends; ``{"status": "done"|"error", ...}``."""
        dut = self.dut
        host_reqs = 0
        while True:
            if not int(dut.irq.value):
                t = Timer(max_cycles * PERIOD_NS, unit="ns")
                if await First(RisingEdge(dut.irq), t) is t:
                    st = await self.read("STATUS")
                    raise HostError(f"no interrupt within {max_cycles} cycles (STATUS 0x{st:x})")
            irq = await self.read("IRQ_STATUS")
            await self.write("IRQ_STATUS", irq)             # W1C what we saw
            if irq & _mask("IRQ_STATUS.HOST_REQ"):
                word = 0
                for i in range(4):
                    word |= await self.read(f"HOST_INSTR{i}") << (32 * i)
                ins = decode(word)
                if ins.op != "HOST_LN":
                    raise HostError(f"HOST_REQ with {ins} in HOST_INSTR")
                funcsim.host_ln(ins.f, read=self._dram_read, write=self._dram_write)
                await self.write("HOST_ACK", _mask("HOST_ACK.ACK"))
                host_reqs += 1
            if irq & (_mask("IRQ_STATUS.DONE") | _mask("IRQ_STATUS.ERROR")):
                break
        status = await self.read("STATUS")
        code = await self.read("ERR_CODE")
        res = {"status": "error" if status & _mask("STATUS.ERROR") else
               "done" if status & _mask("STATUS.DONE") else f"0x{status:x}",
               "err_code": (code & _mask("ERR_CODE.CODE")),
               "err_name": ErrCode(code & _mask("ERR_CODE.CODE")).name,
               "err_queue": (code & _mask("ERR_CODE.QUEUE")) >> 8,
               "err_unit": (code & _mask("ERR_CODE.UNIT")) >> 24,
               "err_pc": await self.read("ERR_PC"), "host_requests": host_reqs}
        res["counters"] = {n: await self.read64(n) for n in
                           ("CYCLES", "BUSY_MAT", "BUSY_RMAC", "BUSY_AUX", "DRAM_RD_BYTES",
                            "DRAM_WR_BYTES", "STALL_CYCLES", "INSTR_FETCHED")}
        return res

    def read_outputs(self, binary) -> dict:
        dram = self._dram_read(0, binary.dram.size).copy()
        return binary.read_outputs(dram)
