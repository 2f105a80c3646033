"""The world around the accelerator in a cocotb test: clock, reset, the DDR and the CPU's bus.

``await axi_env(dut, end)`` quiets the register bus, starts the clock with reset (after the
Icarus time-0 workaround), and returns ``(ram, cpu)``: cocotbext-axi's ``AxiRam`` on ``m_axi``
(the DDR, at least ``end`` bytes: a power of two) and ``AxiLiteMaster`` on ``s_axi`` (the CPU).
"""

from __future__ import annotations

import cocotb
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from tb.core.icarus import kick_comb_blocks
from tb.units.stream import start_clock

__all__ = ["axi_env"]


async def axi_env(dut, end: int):
    if cocotb.SIM_NAME.lower().startswith("icarus"):
        await kick_comb_blocks(dut)
    dut.s_axi__awvalid.value = 0
    dut.s_axi__wvalid.value = 0
    dut.s_axi__arvalid.value = 0
    await start_clock(dut)
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst,
                 size=1 << (end - 1).bit_length())
    cpu = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)
    return ram, cpu
