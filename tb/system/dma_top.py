"""A test-only top for the cocotb tests of the DMA engines: a LoadDMA and a StoreDMA around one
buffer memory, so that a LOAD followed by a STORE round-trips DRAM -> buffer -> DRAM.

* ``ld_bus`` / ``st_bus``: the two engines' AXI4 manager ports (Verilog ``ld_bus__araddr``, ...;
  cocotbext-axi ``AxiBus.from_prefix(dut, "ld_bus_")``).
* ``ld_cmd`` / ``st_cmd``: the engines' descriptor streams; ``win_lo`` / ``win_hi``: the DRAM
  window of both.
* ``wr_stall`` (In(1)): holds the buffer's write port not ready (back-pressure on the LoadDMA's
  ``wr`` stream, driven randomly by the testbench).
* ``ld_fault``, ``ld_idle``, ``rd_bytes``, ``st_fault``, ``st_idle``, ``wr_bytes``: the engines'
  status outputs.

The buffer is a ``lib.memory.Memory`` of ``buf_bytes`` bytes in lines of ``data_width`` bits
with a byte-granular write port (the LoadDMA's masked lines) and a synchronous read port (the
StoreDMA's BRAM-latency port); the ``buf`` / ``core`` fields are ignored (one buffer).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_pow2
from hw.system.axi import axi4_signature
from hw.system.dma import LoadDMA, StoreDMA, descriptor_layout

__all__ = ["DmaTop"]


class DmaTop(wiring.Component):
    """LoadDMA + StoreDMA + one ``buf_bytes`` buffer (ports: see the module docstring)."""

    def __init__(self, *, addr_width: int = 40, data_width: int = 128, max_burst: int = 64,
                 outstanding: int = 4, buf_bytes: int = 16384):
        check_pow2("buf_bytes", buf_bytes, lo=data_width // 8, hi=1 << 20)
        kw = dict(addr_width=addr_width, data_width=data_width, max_burst=max_burst,
                  outstanding=outstanding)
        self.ld, self.st = LoadDMA(**kw), StoreDMA(**kw)
        self.data_width, self.buf_bytes = data_width, buf_bytes
        self.max_burst, self.outstanding = max_burst, outstanding
        axi = axi4_signature(addr_width=addr_width, data_width=data_width)
        desc = descriptor_layout(addr_width)
        super().__init__({
            "ld_bus": Out(axi), "st_bus": Out(axi),
            "ld_cmd": In(stream.Signature(desc)), "st_cmd": In(stream.Signature(desc)),
            "win_lo": In(addr_width), "win_hi": In(addr_width), "wr_stall": In(1),
            "ld_fault": Out(2), "ld_idle": Out(1), "rd_bytes": Out(64),
            "st_fault": Out(2), "st_idle": Out(1), "wr_bytes": Out(64),
        })

    def elaborate(self, platform):
        m = Module()
        ld, st = self.ld, self.st
        m.submodules.ld, m.submodules.st = ld, st
        lanes = self.data_width // 8
        lg = lanes.bit_length() - 1
        m.submodules.buf = buf = memory.Memory(shape=self.data_width,
                                               depth=self.buf_bytes // lanes, init=[])
        wp = buf.write_port(granularity=8)
        rp = buf.read_port()
        depth_bits = (self.buf_bytes // lanes).bit_length() - 1

        wiring.connect(m, wiring.flipped(self.ld_bus), ld.bus)
        wiring.connect(m, wiring.flipped(self.st_bus), st.bus)
        wiring.connect(m, wiring.flipped(self.ld_cmd), ld.cmd)
        wiring.connect(m, wiring.flipped(self.st_cmd), st.cmd)
        m.d.comb += [ld.win_lo.eq(self.win_lo), ld.win_hi.eq(self.win_hi),
                     st.win_lo.eq(self.win_lo), st.win_hi.eq(self.win_hi),
                     self.ld_fault.eq(ld.fault), self.ld_idle.eq(ld.idle),
                     self.rd_bytes.eq(ld.rd_bytes),
                     self.st_fault.eq(st.fault), self.st_idle.eq(st.idle),
                     self.wr_bytes.eq(st.wr_bytes)]
        # LoadDMA.wr -> byte-masked write port
        m.d.comb += [ld.wr.ready.eq(~self.wr_stall),
                     wp.addr.eq(ld.wr.payload.addr[lg:lg + depth_bits]),
                     wp.data.eq(ld.wr.payload.data),
                     wp.en.eq(ld.wr.payload.mask & ld.wr.valid.replicate(lanes)
                              & (~self.wr_stall).replicate(lanes))]
        # StoreDMA's read port: data in the cycle after rd_en
        m.d.comb += [rp.en.eq(st.rd_en), rp.addr.eq(st.rd_addr[lg:lg + depth_bits]),
                     st.rd_data.eq(rp.data)]
        return m
