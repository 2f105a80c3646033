"""Sharing one AXI4 manager port between several readers.

``ReadArbiter`` puts the AR/R channels of ``n`` read managers (the dispatcher, the LD DMA
engine) on one port: a manager's request is granted whole (its address and length stay on the
port until ``arready``; a lower index wins when several ask at once and none is being held), the
port's ``arid`` names the manager, and each read beat goes back to the manager its ``rid``
names. The managers' own ``arid`` values are not used. Write channels are not arbitrated: the
port's AW/W/B belong to the one writer the accelerator connects there.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import check_int
from .axi import axi4_signature

__all__ = ["ReadArbiter"]

AR = ("araddr", "arlen", "arsize", "arburst", "arlock", "arcache", "arprot")


class ReadArbiter(wiring.Component):
    """``n`` read managers on one AXI4 port (see the module doc).

    Parameters (keyword-only): ``n`` (2..8 managers), ``addr_width``, ``data_width``.

    Ports: ``up[i]`` (In(AXI4)): manager i (only AR and R are used); ``down`` (Out(AXI4) with
    an ``arid`` wide enough for ``n``): the shared port's read channels (its AW/W/B members
    are left for the accelerator to drive).
    """

    def __init__(self, *, n: int = 2, addr_width: int = 40, data_width: int = 128):
        self.n = check_int("n", n, 2, 8)
        self.id_width = max(1, (n - 1).bit_length())
        sig_up = axi4_signature(addr_width=addr_width, data_width=data_width)
        sig_down = axi4_signature(addr_width=addr_width, data_width=data_width,
                                  id_width=self.id_width)
        self._read_members = AR + ("arvalid", "arready", "arid", "rid", "rdata", "rresp",
                                   "rlast", "rvalid", "rready")
        super().__init__({"up": In(sig_up).array(n), "down": Out(sig_down)})

    def elaborate(self, platform):
        m = Module()
        up, down = self.up, self.down
        held = Signal()
        owner = Signal(range(self.n))
        pick = Signal(range(self.n))
        for i in reversed(range(self.n)):
            with m.If(up[i].arvalid):
                m.d.comb += pick.eq(i)
        sel = Mux(held, owner, pick)
        with m.If(down.arvalid & ~down.arready):
            m.d.sync += [held.eq(1), owner.eq(sel)]
        with m.Elif(down.arready):
            m.d.sync += held.eq(0)
        for i in range(self.n):
            on = sel == i
            with m.If(on):
                m.d.comb += [getattr(down, f).eq(getattr(up[i], f)) for f in AR]
                m.d.comb += down.arvalid.eq(up[i].arvalid)
            m.d.comb += [up[i].arready.eq(on & down.arready),
                         up[i].rdata.eq(down.rdata), up[i].rresp.eq(down.rresp),
                         up[i].rlast.eq(down.rlast), up[i].rid.eq(0),
                         up[i].rvalid.eq(down.rvalid & (down.rid == i))]
            with m.If(down.rid == i):
                m.d.comb += down.rready.eq(up[i].rready)
        m.d.comb += down.arid.eq(sel)
        return m
