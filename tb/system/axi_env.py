"""The world around the accelerator in a cocotb test: clock, reset, the DDR and the CPU's bus.

``await axi_env(dut, end)`` quiets the register bus, starts the clock with reset (after the
Icarus time-0 workaround), and returns ``(ram, cpu)``: cocotbext-axi's ``AxiRam`` on ``m_axi``
(the DDR, at least ``end`` bytes: a power of two) and ``AxiLiteMaster`` on ``s_axi`` (the CPU);
``extra_ports(dut, ram)`` binds the further manager ports (``axi_ports`` > 1) to the same memory.
"""

from __future__ import annotations

import cocotb
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from tb.core.icarus import kick_comb_blocks
from tb.units.stream import start_clock

__all__ = ["axi_env", "extra_ports"]


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


def extra_ports(dut, ram) -> list:
    """``[(prefix, AxiRam)]`` for the accelerator's further AXI ports (``m_axi1_``, ...: the
    ``axi_ports`` parameter), each an ``AxiRam`` on the same memory as ``ram`` (one DDR behind
    several HP ports)."""
    out = []
    for k in range(1, 4):
        prefix = f"m_axi{k}_"
        if not hasattr(dut, f"{prefix}_araddr"):
            break
        out.append((prefix, AxiRam(AxiBus.from_prefix(dut, prefix), dut.clk, dut.rst,
                                   size=ram.size, mem=ram.mem)))
    return out
