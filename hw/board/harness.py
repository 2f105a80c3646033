"""A top level that puts any ``wiring.Component`` on the ZCU102 for a Vivado run.

Resource and timing figures of a block (a core, an engine) need the block placed and routed as
it would be in the accelerator: its inputs coming from flip-flops, its outputs going to
flip-flops, one clock at the target frequency, and nothing that lets synthesis simplify it away.
:class:`CharacterizationTop` builds exactly that around a device under test (``dut``):

* **clock**: the board's 125 MHz oscillator into an MMCME4 (VCO 1000 MHz) whose output 0 runs
  the ``sync`` domain at ``clock_mhz`` (the nearest legal divider; :attr:`clock_mhz_actual`);
  reset from the CPU_RESET button and the MMCM lock, synchronised;
* **stimulus**: every input bit of the DUT is one stage of a shift register fed by a 64-bit
  maximal-length LFSR, so no two inputs are provably equal or constant (equal inputs would let
  Vivado merge duplicated multipliers and report too little logic);
* **observation**: every output bit of the DUT is registered, XOR-folded 32 bits per register
  and then into the eight LEDs, so no output is unloaded.

The harness costs about one flip-flop per DUT input bit plus one per output bit; Vivado's
hierarchical utilisation report lists the DUT instance (``dut``) on its own line, and
:mod:`hw.vivado` reads the DUT's figures from that line.
"""

from __future__ import annotations

from amaranth import Cat, ClockDomain, Const, Elaboratable, Instance, Module, Signal, Value
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["CharacterizationTop", "mmcm_divider", "input_bits", "output_bits"]

VCO_MHZ = 1000.0     #: 125 MHz x 8: inside the MMCME4 VCO range (800..1600 MHz) of a -2 part
LFSR_TAPS = (64, 63, 61, 60)   #: x^64 + x^63 + x^61 + x^60 + 1, a maximal-length polynomial


def mmcm_divider(clock_mhz: float) -> float:
    """The MMCME4 ``CLKOUT0_DIVIDE_F`` (2.0 .. 128.0 in steps of 1/8) nearest to
    ``VCO_MHZ / clock_mhz``; ``ValueError`` if the frequency is out of that range."""
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)):
        raise TypeError(f"clock_mhz must be a number, got {clock_mhz!r}")
    lo, hi = VCO_MHZ / 128.0, VCO_MHZ / 2.0
    if not lo <= clock_mhz <= hi:
        raise ValueError(f"clock_mhz must lie in [{lo:g}, {hi:g}] (MMCM output range from a "
                         f"{VCO_MHZ:g} MHz VCO), got {clock_mhz}")
    return min(128.0, max(2.0, round(VCO_MHZ / clock_mhz * 8) / 8))


def _ports(dut, flow):
    return [Value.cast(v) for _, member, v in dut.signature.flatten(dut) if member.flow == flow]


def input_bits(dut) -> int:
    """Number of input bits of ``dut`` (the stimulus shift register's length)."""
    return sum(len(v) for v in _ports(dut, wiring.In))


def output_bits(dut) -> int:
    """Number of output bits of ``dut``."""
    return sum(len(v) for v in _ports(dut, wiring.Out))


class CharacterizationTop(Elaboratable):
    """ZCU102 top level around ``dut`` (a ``wiring.Component``), see the module docstring.

    Parameters (keyword-only): ``dut``; ``clock_mhz`` (target frequency of the ``sync`` domain,
    7.8125 .. 500).
    """

    def __init__(self, *, dut, clock_mhz: float = 200.0):
        if not isinstance(dut, wiring.Component):
            raise TypeError(f"dut must be an amaranth wiring.Component, got {type(dut).__name__}")
        self.divider = mmcm_divider(clock_mhz)
        self.clock_mhz = float(clock_mhz)
        self.clock_mhz_actual = VCO_MHZ / self.divider
        self.dut = dut
        self.in_bits = input_bits(dut)
        self.out_bits = output_bits(dut)
        if self.in_bits == 0 or self.out_bits == 0:
            raise ValueError("dut needs at least one input and one output port")

    @property
    def harness_flops(self) -> int:
        """Flip-flops of the harness around the DUT: the stimulus chain (one per input bit), the
        output register (one per output bit), the 32-bit fold registers, the LEDs and the LFSR."""
        return self.in_bits + self.out_bits + (self.out_bits + 31) // 32 + 8 + 64

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")

        clk_in = platform.request("clk125", 0, dir="-")
        m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_in)
        rst_in = platform.request("rst", 0, dir="-")
        m.submodules.rst_buf = rst_buf = io.Buffer("i", rst_in)

        fb, clk_mmcm, locked = Signal(), Signal(), Signal()
        m.submodules.mmcm = Instance(
            "MMCME4_BASE",
            p_CLKIN1_PERIOD=8.0, p_DIVCLK_DIVIDE=1, p_CLKFBOUT_MULT_F=VCO_MHZ / 125.0,
            p_CLKOUT0_DIVIDE_F=self.divider,
            i_CLKIN1=clk_buf.i, i_CLKFBIN=fb, o_CLKFBOUT=fb, o_CLKOUT0=clk_mmcm,
            o_LOCKED=locked, i_RST=rst_buf.i, i_PWRDWN=Const(0))
        m.submodules.bufg = Instance("BUFG", i_I=clk_mmcm, o_O=cd.clk)
        m.submodules.rst_sync = ResetSynchronizer(rst_buf.i | ~locked, domain="sync")

        m.submodules.dut = dut = self.dut

        lfsr = Signal(64, init=1)
        fbit = lfsr[LFSR_TAPS[0] - 1]
        for t in LFSR_TAPS[1:]:
            fbit = fbit ^ lfsr[t - 1]
        m.d.sync += lfsr.eq(Cat(fbit, lfsr[:-1]))

        ins = _ports(dut, wiring.In)
        chain = Signal(self.in_bits)
        m.d.sync += chain.eq(Cat(lfsr[-1], chain[:-1]))
        pos = 0
        for v in ins:
            m.d.comb += v.eq(chain[pos:pos + len(v)])
            pos += len(v)

        outs = Signal(self.out_bits)
        m.d.sync += outs.eq(Cat(*_ports(dut, wiring.Out)))
        folds = [outs[i:i + 32].xor() for i in range(0, self.out_bits, 32)]
        fold_reg = Signal(len(folds))
        m.d.sync += fold_reg.eq(Cat(*folds))
        leds = Signal(8)
        m.d.sync += leds.eq(Cat(*[fold_reg[i::8].xor() if i < len(folds) else Const(0)
                                  for i in range(8)]))
        for i in range(8):
            led = platform.request("led", i, dir="-")
            buf = io.Buffer("o", led)
            m.submodules[f"led_buf{i}"] = buf
            m.d.comb += buf.o.eq(leds[i])
        return m
