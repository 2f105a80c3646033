"""The reconfigurable multiply-accumulate unit (R-MAC, paper Sec. V-A1, Fig. 7 (b)-(d)).

One R-MAC is an ``in_width`` x ``in_width`` signed multiplier, a high-bit adder and a psum
register. The adder's second operand is chosen by the accumulation mode:

* **down-forward** (``self_acc == 0``, Fig. 7 (c)): ``psum <= psum_in + a * w``. ``psum_in`` is the
  psum register of the R-MAC above in the same PE lane (0 for the top one), so a lane of N
  R-MACs is a systolic reduction along the input channels.
* **self-accumulation** (``self_acc == 1``, Fig. 7 (d)): ``psum <= (clear ? 0 : psum) + a * w``,
  a temporal accumulation of the taps of one depthwise sliding window.

The register only changes on cycles with ``en`` set. With ``multiplier=False`` the R-MAC has no
multiplier of its own and takes the finished product on ``product`` instead; the engines use
this when two R-MACs share one packed DSP multiplier (``packed=True``).
"""

from __future__ import annotations

from amaranth import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import check_bool, check_int

__all__ = ["RMAC"]


class RMAC(wiring.Component):
    """One reconfigurable MAC: multiplier, high-bit adder, psum register.

    Parameters (keyword-only)
    -------------------------
    in_width : int, 2..18
        Width of the signed operands ``a`` and ``w`` (8 for Trio-ViT).
    acc_width : int, >= 2*in_width
        Width of the signed psum register and of ``psum_in`` (32, ``sim.numerics.ACC_BITS``).
    multiplier : bool
        ``True``: the R-MAC multiplies ``a * w`` itself. ``False``: the product comes in on
        ``product`` (from a shared, packed multiplier).

    Ports
    -----
    a : In(signed(in_width))
        Activation (input pixel), integer LSBs of the input scale.
    w : In(signed(in_width))
        Weight, integer LSBs of the weight scale. (``a`` and ``w`` exist only with
        ``multiplier=True``.)
    product : In(signed(2*in_width))
        The product ``a * w`` computed outside (only with ``multiplier=False``).
    psum_in : In(signed(acc_width))
        Down-forward mode: the psum arriving from the R-MAC above (in product LSBs).
    self_acc : In(1)
        Accumulation mode: 0 = down-forward, 1 = self-accumulation.
    clear : In(1)
        Self-accumulation mode: the first tap of a window; the register loads the product
        instead of adding it to the old psum. Ignored in down-forward mode.
    en : In(1)
        Clock enable of the psum register.
    psum : Out(signed(acc_width))
        The psum register (product LSBs), updated on the clock edge after ``en``.
    """

    def __init__(self, *, in_width: int = 8, acc_width: int = 32, multiplier: bool = True):
        self.in_width = check_int("in_width", in_width, 2, 18)
        self.acc_width = check_int("acc_width", acc_width, 2 * in_width)
        self.multiplier = check_bool("multiplier", multiplier)
        ports = {}
        if multiplier:
            ports["a"] = In(signed(in_width))
            ports["w"] = In(signed(in_width))
        else:
            ports["product"] = In(signed(2 * in_width))
        ports.update({
            "psum_in": In(signed(acc_width)),
            "self_acc": In(1),
            "clear": In(1),
            "en": In(1),
            "psum": Out(signed(acc_width)),
        })
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        product = (self.a * self.w) if self.multiplier else self.product
        base = Mux(self.self_acc, Mux(self.clear, 0, self.psum), self.psum_in)
        with m.If(self.en):
            m.d.sync += self.psum.eq(base + product)
        return m
