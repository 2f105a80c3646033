"""cocotb helper for Icarus runs of Amaranth's Verilog (used by every core testbench)."""

from __future__ import annotations

from cocotb.triggers import Timer

__all__ = ["kick_comb_blocks"]


async def kick_comb_blocks(dut) -> int:
    """Icarus with ``-g2012`` (as cocotb builds it) gives declaration initialisers no time-0
    event, so yosys' trigger register ``dump_module$1`` (read by every ``always @*`` block it
    writes) never changes and a block whose real inputs stay constant is never evaluated: its
    outputs stay X for the whole run (e.g. the R-MAC unit's mode decode while only pointwise
    tiles run). Toggle every such register once, in every module instance; returns how many."""
    from cocotb.handle import HierarchyObject

    def triggers():
        todo = [dut]
        while todo:
            scope = todo.pop()
            for child in scope:
                if isinstance(child, HierarchyObject):
                    todo.append(child)
                elif "dump_module" in child._name:
                    yield child

    regs = list(triggers())
    for value in (1, 0):
        if not regs:
            break
        for r in regs:
            r.value = value
        await Timer(1, unit="ns")
    return len(regs)
