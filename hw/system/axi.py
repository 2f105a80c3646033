"""AXI4 and AXI4-Lite interface signatures (AMBA AXI and ACE Protocol Specification, IHI 0022).

The members carry the specification's signal names without the interface prefix, so a port
named ``m_axi`` appears in the Verilog as ``m_axi__araddr``, ``m_axi__arvalid``, ...; a
cocotbext-axi bus model binds to it with ``AxiBus.from_prefix(dut, "m_axi_")`` (its
``prefix + "_" + name`` gives the double underscore), and the Vivado top (``hw.board``) renames
them to the ``m_axi_araddr`` form Vivado infers interfaces from.

Both signatures are written from the **manager's** (master's) side: ``Out`` members are driven
by the manager. A manager port is ``Out(axi4_signature(...))``, a subordinate (slave) port
``In(axi4_lite_signature(...))``.

Only INCR bursts are used (``awburst``/``arburst`` = 1); ``*cache`` and ``*prot`` are members so
that the Zynq's HP ports see defined values (``0b0011``: normal non-cacheable bufferable;
``0b000``: data, secure, unprivileged).
"""

from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import check_int, check_pow2

__all__ = ["axi4_signature", "axi4_lite_signature", "BURST_INCR", "RESP_OKAY", "RESP_SLVERR",
           "RESP_DECERR", "MAX_BURST_BEATS", "BOUNDARY_BYTES"]

BURST_INCR = 1          #: AxBURST encoding of an incrementing burst
RESP_OKAY = 0           #: xRESP: OKAY
RESP_SLVERR = 2         #: xRESP: subordinate error
RESP_DECERR = 3         #: xRESP: decode error
MAX_BURST_BEATS = 256   #: longest INCR burst of AXI4 (AxLEN = 255)
BOUNDARY_BYTES = 4096   #: no burst may cross a 4 KB address boundary


def axi4_signature(*, addr_width: int = 40, data_width: int = 128,
                   id_width: int = 1) -> wiring.Signature:
    """A full AXI4 manager interface: AW, W, B, AR, R channels.

    ``addr_width`` 12..64 bits (the Zynq UltraScale+ HP ports take 49; 40 covers its DDR
    windows), ``data_width`` a power of two 32..1024 bits, ``id_width`` 1..16 bits.
    """
    check_int("addr_width", addr_width, 12, 64)
    check_pow2("data_width", data_width, lo=32, hi=1024)
    check_int("id_width", id_width, 1, 16)
    strb = data_width // 8
    return wiring.Signature({
        # write address
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awlock": Out(1), "awcache": Out(4), "awprot": Out(3),
        "awvalid": Out(1), "awready": In(1),
        # write data
        "wdata": Out(data_width), "wstrb": Out(strb), "wlast": Out(1),
        "wvalid": Out(1), "wready": In(1),
        # write response
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        # read address
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arlock": Out(1), "arcache": Out(4), "arprot": Out(3),
        "arvalid": Out(1), "arready": In(1),
        # read data
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


def axi4_lite_signature(*, addr_width: int = 12, data_width: int = 32) -> wiring.Signature:
    """An AXI4-Lite manager interface (``data_width`` 32 or 64 bits)."""
    check_int("addr_width", addr_width, 4, 64)
    if data_width not in (32, 64):
        raise ValueError(f"data_width of AXI4-Lite must be 32 or 64, got {data_width}")
    return wiring.Signature({
        "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
        "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })
