"""The MAT engine: S PE lanes x T multipliers, a pipelined adder tree and an accumulator per lane
(paper Sec. V-A1 Design Choice #1, Fig. 7 (a)).

Each cycle with ``valid`` takes one input vector ``x`` of T 9-bit activations (T consecutive
elements of a reduction, e.g. T input channels of one pixel; an int8 or uint8 byte sign- or
zero-extended by the feeder), broadcast to all S lanes, and one weight
vector per lane ``w[s]`` (the same T elements of lane s's filter: one output channel per
lane). Lane s multiplies element-wise (registered products), sums the T products in an
``hw.units.AdderTree`` and adds the sum to its accumulator (``first`` clears it). After the
``last`` vector, ``out[s]`` holds the dot product of lane s's filter with all input vectors
from ``first`` to ``last`` and ``out_valid`` pulses for one cycle, ``LATENCY = P + 1 +
AdderTree.latency`` cycles after the ``last`` input cycle, where ``P`` is the product latency
(1: a product register; 2 with ``packed=True``: operand registers and product register). The
pipeline never stalls: one vector per cycle, any number of idle (``valid = 0``) cycles in
between.

``packed=True`` computes the products of lanes 2p and 2p+1 (same input element, two weights) in
one packed multiply (one DSP48E2, ``hw.engines.packed``: ``sim.numerics.packed_dual_multiply``
with the 9-bit shared operand at shift 18, the numerics of ``hw.units.PackedDualMultiplier``);
the weights are registered before the pre-adder (16 bits per pair instead of its 27-bit sum).
It needs an even S.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.units import AdderTree
from sim.numerics import PACK_SHIFT

from ..params import check_bool, check_int
from .packed import PACKED_LATENCY, packed_products

__all__ = ["MATEngine"]


class MATEngine(wiring.Component):
    """S lanes x T multipliers, adder tree and accumulator per lane; inputs broadcast to lanes.

    Parameters (keyword-only)
    -------------------------
    lanes : int, 1..64
        S, the number of PE lanes (output channels in parallel).
    multipliers : int, 1..256
        T, multipliers per lane (reduction elements per cycle).
    acc_width : int, 16..64
        Accumulator width (32 = ``sim.numerics.ACC_BITS``); the sum of T products
        (``PROD_BITS + ceil_log2(T)`` bits) must fit.
    register_every : int, 0..8
        Adder-tree levels between pipeline registers (see ``hw.units.AdderTree``).
    packed : bool
        Two 9 x 8-bit products per packed multiply (one DSP48E2; lanes 2p, 2p+1); needs an
        even S.

    Ports
    -----
    valid : In(1)
        This cycle carries an input vector.
    first : In(1)
        With ``valid``: first vector of an accumulation (clears the accumulator).
    last : In(1)
        With ``valid``: last vector of an accumulation (schedules ``out_valid``).
    x : In(ArrayLayout(signed(9), T))
        Input vector (activations, input LSBs: int8 or uint8 values), broadcast to all lanes.
    w : In(ArrayLayout(ArrayLayout(signed(8), T), S))
        Weights: ``w[s][t]`` multiplies ``x[t]`` in lane s (weight LSBs).
    out : Out(ArrayLayout(signed(acc_width), S))
        Dot products (product LSBs = input scale x weight scale), valid with ``out_valid``.
    out_valid : Out(1)
        One-cycle pulse ``LATENCY`` cycles after the ``last`` input cycle.
    """

    X_BITS = 9      #: activation operand: an int8 or uint8 byte, sign- or zero-extended
    W_BITS = 8      #: weights: int8
    PROD_BITS = X_BITS + W_BITS     #: one product (17 bits)

    def __init__(self, *, lanes: int = 8, multipliers: int = 8, acc_width: int = 32,
                 register_every: int = 1, packed: bool = False):
        self.lanes = check_int("lanes", lanes, 1, 64)
        self.multipliers = check_int("multipliers", multipliers, 1, 256)
        self.acc_width = check_int("acc_width", acc_width, 16, 64)
        self.register_every = check_int("register_every", register_every, 0, 8)
        self.packed = check_bool("packed", packed)
        if packed and lanes % 2:
            raise ValueError(f"packed=True needs an even number of lanes, got lanes={lanes}")
        tree_bits = self.PROD_BITS + (multipliers - 1).bit_length()
        if tree_bits > acc_width:
            raise ValueError(f"acc_width must be >= {tree_bits} for multipliers={multipliers}, "
                             f"got {acc_width}")
        # one adder tree per lane, built here so that the latency is known up front
        self._trees = [AdderTree(width=self.PROD_BITS, count=multipliers,
                                 register_every=register_every)
                       for _ in range(lanes)]
        self.tree_latency = self._trees[0].latency
        self.product_latency = PACKED_LATENCY if packed else 1
        self.LATENCY = self.product_latency + 1 + self.tree_latency
        s8 = signed(self.W_BITS)
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "x": In(data.ArrayLayout(signed(self.X_BITS), multipliers)),
            "w": In(data.ArrayLayout(data.ArrayLayout(s8, multipliers), lanes)),
            "out": Out(data.ArrayLayout(signed(acc_width), lanes)),
            "out_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        S, T = self.lanes, self.multipliers

        # stage 1..P: registered products
        prods = [[Signal(signed(self.PROD_BITS), name=f"prod_{s}_{t}") for t in range(T)]
                 for s in range(S)]
        if self.packed:
            # operand registers (the DSP48E2's B and A/D input registers: the 9-bit x[t] shared
            # by every lane pair, the two 8-bit weights before the pre-adder), then one packed
            # multiply per lane pair and element (hw.engines.packed)
            x_r = [Signal(signed(self.X_BITS), name=f"x_r{t}") for t in range(T)]
            w_r = [[Signal(signed(self.W_BITS), name=f"w_r{s}_{t}") for t in range(T)]
                   for s in range(S)]
            for t in range(T):
                m.d.sync += x_r[t].eq(self.x[t])
                for s in range(S):
                    m.d.sync += w_r[s][t].eq(self.w[s][t])
            for p in range(S // 2):
                for t in range(T):
                    p_hi, p_lo = packed_products(m, x_r[t], w_r[2 * p + 1][t], w_r[2 * p][t],
                                                 shift=PACK_SHIFT, name=f"pprod_{p}_{t}")
                    m.d.comb += [prods[2 * p + 1][t].eq(p_hi), prods[2 * p][t].eq(p_lo)]
        else:
            for s in range(S):
                for t in range(T):
                    m.d.sync += prods[s][t].eq(self.x[t] * self.w[s][t])
        v1, f1, l1 = self.valid, self.first, self.last
        for k in range(self.product_latency):
            nv, nf, nl = Signal(name=f"valid_p{k + 1}"), Signal(name=f"first_p{k + 1}"), \
                Signal(name=f"last_p{k + 1}")
            m.d.sync += [nv.eq(v1), nf.eq(f1), nl.eq(l1)]
            v1, f1, l1 = nv, nf, nl

        # stage 2..: adder trees; first/last travel alongside
        trees = []
        for s in range(S):
            tree = self._trees[s]
            m.submodules[f"tree_{s}"] = tree
            trees.append(tree)
            m.d.comb += tree.in_valid.eq(v1)
            for t in range(T):
                m.d.comb += tree.inputs[t].eq(prods[s][t])
        f, l = f1, l1
        for k in range(self.tree_latency):
            nf, nl = Signal(name=f"first_t{k + 1}"), Signal(name=f"last_t{k + 1}")
            m.d.sync += [nf.eq(f), nl.eq(l)]
            f, l = nf, nl
        tv = trees[0].out_valid

        # last stage: accumulators
        with m.If(tv):
            for s in range(S):
                # (first ? 0 : acc) + x: the zeroing folds into the adder's LUTs (one LUT per
                # bit; a Mux after the adder costs a second one), the DSP48E2 Z-mux form
                m.d.sync += self.out[s].eq(Mux(f, 0, self.out[s]) + trees[s].output)
        m.d.sync += self.out_valid.eq(tv & l)
        return m
