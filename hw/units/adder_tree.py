"""Pipelined signed adder tree (the MAT engine's reduction and the auxiliary row-sum unit)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..params import check_int

__all__ = ["AdderTree"]


class AdderTree(wiring.Component):
    """Sum of ``count`` signed ``width``-bit inputs, as a free-running pipelined binary tree.

    The tree has ``levels = ceil_log2(count)`` levels of two-input adders; each level widens its
    operands by one bit, so the sum is exact (no overflow is possible) at
    ``width + ceil_log2(count)`` bits. A ``count`` that is not a power of two is padded with zeros.

    Pipelining: a register follows every ``register_every``-th level, and the last level is
    always registered, so ``latency == ceil(levels / register_every)`` cycles
    (``register_every=0``: purely combinational, latency 0; ``count=1`` has no adder level and
    latency 0). The pipeline never stalls: a new input vector may be presented every cycle and
    its sum appears ``latency`` cycles later, with ``out_valid`` following ``in_valid``.

    Parameters (keyword-only)
    -------------------------
    width : int, >= 1
        Bits of each two's-complement input.
    count : int, >= 1
        Number of inputs.
    register_every : int, >= 0
        Adder levels between pipeline registers (0 = no registers).

    Ports
    -----
    inputs : In(ArrayLayout(signed(width), count))
        The addends, in input LSBs.
    in_valid : In(1)
        Marks a cycle whose ``inputs`` are meaningful; delayed by ``latency`` to ``out_valid``.
    output : Out(signed(width + ceil_log2(count)))
        The exact sum, in input LSBs.
    out_valid : Out(1)
        ``in_valid`` delayed by ``latency`` cycles.
    """

    def __init__(self, *, width: int = 16, count: int = 8, register_every: int = 1):
        self.width = check_int("width", width, lo=1, hi=256)
        self.count = check_int("count", count, lo=1, hi=4096)
        self.register_every = check_int("register_every", register_every, lo=0, hi=64)
        self.levels = ceil_log2(count)
        super().__init__({
            "inputs": In(data.ArrayLayout(signed(width), count)),
            "in_valid": In(1),
            "output": Out(signed(width + self.levels)),
            "out_valid": Out(1),
        })

    def _registered(self, level: int) -> bool:
        """Whether the outputs of adder level ``level`` (1-based) go through a register."""
        if self.register_every == 0:
            return False
        return level % self.register_every == 0 or level == self.levels

    @property
    def latency(self) -> int:
        """Cycles from ``inputs`` to ``output`` (and from ``in_valid`` to ``out_valid``)."""
        return sum(self._registered(level) for level in range(1, self.levels + 1))

    def elaborate(self, platform):
        m = Module()
        stage = [self.inputs[i] for i in range(self.count)]
        valid = self.in_valid
        size = 1 << self.levels
        for level in range(1, self.levels + 1):
            w = self.width + level
            nxt = []
            for j in range(size >> level):
                a = stage[2 * j] if 2 * j < len(stage) else None
                b = stage[2 * j + 1] if 2 * j + 1 < len(stage) else None
                if a is None:          # both operands are padding: drop the branch
                    continue
                s = Signal(signed(w), name=f"sum_l{level}_{j}")
                m.d.comb += s.eq(a if b is None else a + b)
                nxt.append(s)
            if self._registered(level):
                regs = []
                for j, s in enumerate(nxt):
                    r = Signal(signed(w), name=f"reg_l{level}_{j}")
                    m.d.sync += r.eq(s)
                    regs.append(r)
                nxt = regs
                v = Signal(name=f"valid_l{level}")
                m.d.sync += v.eq(valid)
                valid = v
            stage = nxt
        m.d.comb += [self.output.eq(stage[0]), self.out_valid.eq(valid)]
        return m
