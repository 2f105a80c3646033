"""The R-MAC engine: M PE lanes x N R-MACs (paper Sec. V-A1 Design Choice #2, Fig. 7 (b)-(d)).

Two modes, chosen by ``mode`` for a whole tile (see docs/hw-engines.md for the full schedule):

**Down-forward** (``mode == DOWN_FORWARD``; generic conv, pointwise conv, grouped pointwise,
matmul). Each cycle with ``valid`` takes one input vector ``df_x`` of N 9-bit activations (N
consecutive elements of a reduction, broadcast to all M lanes; an int8 or uint8 byte sign- or
zero-extended by the feeder) and one weight vector per lane
``df_w[m]`` (the same N elements of lane m's filter). R-MAC ``(m, j)`` (lane m, position j from
the top) adds ``df_x[j] * df_w[m][j]`` to the psum from ``(m, j-1)``; the inputs of position j
are delayed by j cycles inside the engine (systolic skew), so the caller presents whole vectors.
The psum leaving the bottom of each lane goes into a per-lane accumulator, cleared by ``first``
and read out after ``last``: ``lane_out[m]`` is the dot product of lane m's filter with the
input vectors from the ``first`` cycle to the ``last`` cycle; ``lane_valid`` pulses for one cycle
``DF_LATENCY = N + 1 + P`` cycles after the ``last`` input cycle (``P`` = product latency: 0, or
2 with ``packed=True``).

**Self-accumulation** (``mode == SELF_ACC``; depthwise KxK, stride 1 or 2). R-MAC position j
works on channel j of a tile of N channels; lane m computes output pixel m of M consecutive
output pixels of a row. Each channel has an input shift register of ``M + max_kernel - 1``
pixels. On a cycle with ``load`` the register is (re)filled from ``dw_row[j]`` and the
multipliers already use the new values; every valid cycle the register then moves forward by
one pixel. Lane m multiplies pixel m of its channel's register by the weight ``dw_w[j]``,
broadcast to all lanes, and accumulates in its own psum register (``first`` clears it).
``pixel_out[j][m]`` is valid for the one cycle ``pixel_valid`` (``DW_LATENCY = 1 + P`` cycles
after the ``last`` input cycle). A KxK window takes K*K cycles: per kernel row, stride 1 loads the
M+K-1 pixels of that input row and shifts K times; stride 2 first loads the even input
columns (0-based; the paper's 1-based "odd" columns) and applies the even kernel columns, then
loads the odd ones and applies the odd kernel columns (Sec. V-A1: "first odd, then even").

Activations (``df_x``, ``dw_row``) are 9 bits, weights 8 bits: every product is 9 x 8 bits.
``packed=True`` computes the products of lanes 2p and 2p+1 at the same position in one packed
multiply (one DSP48E2; two products sharing one operand: the broadcast input in down-forward
mode, the broadcast weight in self-accumulation mode, where the two other operands are 9-bit
pixels), ``sim.numerics.packed_dual_multiply`` at shift 17, the numerics of
``hw.units.PackedDualMultiplier(a_bits=9, w_bits=9, shift=17, mixed=True)`` (both 9 x 8 and
8 x 9 products fit its 17-bit fields, a packed 9-bit pair fits the 27-bit pre-adder). It needs
an even M. The packed multiply is pipelined (2 cycles, the DSP48E2's input and product
registers), so the R-MACs' control (enable, clear) and the output pulses are delayed by those 2
cycles; the input schedule is the same. Its input registers are the engine's own: in
self-accumulation mode they are the pixel shift registers themselves (the operands of the next
step are the next pixels of this step's segment), so one register per pixel serves the shift,
the mode multiplexer and the DSP input (docs/hw-engines.md, "Accumulation and the DSP48E2").
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import check_bool, check_int
from .packed import PACKED_LATENCY, packed_products
from .rmac import RMAC

__all__ = ["RMACEngine"]


class RMACEngine(wiring.Component):
    """M PE lanes x N reconfigurable MACs, down-forward and self-accumulation modes.

    Parameters (keyword-only)
    -------------------------
    lanes : int, 1..64
        M, the number of PE lanes.
    macs_per_lane : int, 1..64
        N, the number of R-MACs in a lane.
    max_kernel : int, 1..15, odd
        Largest depthwise kernel K supported (sets the shift-register length M + K - 1).
    acc_width : int, 16..64
        Width of the lane accumulators and of the result ports (32 = ``sim.numerics.ACC_BITS``).
        The R-MACs' psum registers are ``psum_width`` bits (attribute): ``PROD_BITS +
        ceil_log2(max(N, max_kernel**2))``, capped at ``acc_width`` (22 at N = 8,
        max_kernel = 5), enough for the longest sum a psum holds (see ``first`` below).
    packed : bool
        Two products per packed multiply (one DSP48E2) for lanes 2p and 2p+1 (needs an even M).

    Ports (all integers signed two's complement; "LSB" = one unit of the integer code)
    -----
    mode : In(1)
        ``DOWN_FORWARD`` (0) or ``SELF_ACC`` (1); hold it constant from a tile's first input
        cycle until its output has appeared.
    valid : In(1)
        This cycle carries one input step of the current mode.
    first : In(1)
        With ``valid``: the first step of an accumulation (clears the accumulator/psum). In
        self-accumulation mode at most ``max_kernel**2`` steps may follow from ``first`` to
        ``last`` (one KxK window; the psum registers are sized for that).
    last : In(1)
        With ``valid``: the last step of an accumulation (schedules the output).
    load : In(1)
        Self-accumulation, with ``valid``: (re)load the input shift registers from ``dw_row``.
    df_x : In(ArrayLayout(signed(9), N))
        Down-forward input vector (activations: int8 or uint8 values), broadcast to all lanes.
    df_w : In(ArrayLayout(ArrayLayout(signed(8), N), M))
        Down-forward weights: ``df_w[m][j]`` multiplies ``df_x[j]`` in lane m.
    dw_row : In(ArrayLayout(ArrayLayout(signed(9), M + max_kernel - 1), N))
        Self-accumulation input row segments, ``dw_row[j][i]`` = pixel i of channel j's segment.
    dw_w : In(ArrayLayout(signed(8), N))
        Self-accumulation weights: ``dw_w[j]`` (channel j's current tap) broadcast to all lanes.
    lane_out : Out(ArrayLayout(signed(acc_width), M))
        Down-forward results, one dot product per lane (product LSBs); valid with ``lane_valid``.
    lane_valid : Out(1)
        One-cycle pulse, ``DF_LATENCY`` cycles after the ``last`` step.
    pixel_out : Out(ArrayLayout(ArrayLayout(signed(acc_width), M), N))
        Self-accumulation results ``pixel_out[j][m]`` = output pixel m of channel j.
    pixel_valid : Out(1)
        One-cycle pulse, ``DW_LATENCY`` cycles after the ``last`` step.
    """

    DOWN_FORWARD = 0
    SELF_ACC = 1
    X_BITS = 9      #: activation operand: an int8 or uint8 byte, sign- or zero-extended
    W_BITS = 8      #: weights: int8
    PROD_BITS = X_BITS + W_BITS     #: one product (17 bits)
    PACK_SHIFT = 17  #: packing shift of the shared multiplier (9 x 8 and 8 x 9 products)

    def __init__(self, *, lanes: int = 8, macs_per_lane: int = 8, max_kernel: int = 5,
                 acc_width: int = 32, packed: bool = False):
        self.lanes = check_int("lanes", lanes, 1, 64)
        self.macs_per_lane = check_int("macs_per_lane", macs_per_lane, 1, 64)
        self.max_kernel = check_int("max_kernel", max_kernel, 1, 15)
        if max_kernel % 2 == 0:
            raise ValueError(f"max_kernel must be odd, got {max_kernel}")
        self.acc_width = check_int("acc_width", acc_width, 16, 64)
        self.packed = check_bool("packed", packed)
        if packed and lanes % 2:
            raise ValueError(f"packed=True needs an even number of lanes, got lanes={lanes}")
        M, N = lanes, macs_per_lane
        self.row_len = M + max_kernel - 1
        # An R-MAC's psum never holds more than max(N, max_kernel**2) products: a down-forward
        # psum at position j sums the j+1 products of one input vector (the lane accumulator
        # sums the vectors), a self-accumulation psum the k*k <= max_kernel**2 taps of one
        # window. Each product is a 17-bit signed value (|p| <= 2**15), so PROD_BITS +
        # ceil_log2(count) bits hold every psum exactly (22 at N = 8, max_kernel = 5); the
        # outputs are sign-extended to acc_width.
        most = max(N, max_kernel * max_kernel)
        need = self.PROD_BITS + (most - 1).bit_length()
        self.psum_width = min(acc_width, max(need, 2 * self.X_BITS))   # RMAC: >= 2*in_width
        # packed: operand registers + product register (the DSP48E2's input and M registers,
        # the two stages of hw.units.PackedDualMultiplier); unpacked: combinational products
        self.product_latency = PACKED_LATENCY if packed else 0
        self.DF_LATENCY = N + 1 + self.product_latency
        self.DW_LATENCY = 1 + self.product_latency
        s8, s9 = signed(self.W_BITS), signed(self.X_BITS)
        super().__init__({
            "mode": In(1),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "load": In(1),
            "df_x": In(data.ArrayLayout(s9, N)),
            "df_w": In(data.ArrayLayout(data.ArrayLayout(s8, N), M)),
            "dw_row": In(data.ArrayLayout(data.ArrayLayout(s9, self.row_len), N)),
            "dw_w": In(data.ArrayLayout(s8, N)),
            "lane_out": Out(data.ArrayLayout(signed(acc_width), M)),
            "lane_valid": Out(1),
            "pixel_out": Out(data.ArrayLayout(data.ArrayLayout(signed(acc_width), M), N)),
            "pixel_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        M, N = self.lanes, self.macs_per_lane
        s8, s9 = signed(self.W_BITS), signed(self.X_BITS)
        dw = Signal(name="dw_mode")
        m.d.comb += dw.eq(self.mode == self.SELF_ACC)

        # ---- down-forward: skew the inputs of position j by j cycles ------------------------
        # stage k (k = 0..N) of the control pipeline: valid/first/last of the vector that
        # reaches position k this cycle (stage 0 = the ports).
        v_d = [self.valid & ~dw]
        f_d = [self.first]
        l_d = [self.last]
        P = self.product_latency
        for k in range(1, N + P + 1):
            v, f, l = Signal(name=f"df_valid_d{k}"), Signal(name=f"df_first_d{k}"), \
                Signal(name=f"df_last_d{k}")
            m.d.sync += [v.eq(v_d[-1]), f.eq(f_d[-1]), l.eq(l_d[-1])]
            v_d.append(v)
            f_d.append(f)
            l_d.append(l)
        x_sk = []      # x_sk[j]: df_x[j] delayed by j cycles
        w_sk = []      # w_sk[m][j]: df_w[m][j] delayed by j cycles
        for j in range(N):
            x = self.df_x[j]
            for k in range(j):
                nx = Signal(s9, name=f"df_x{j}_d{k + 1}")
                m.d.sync += nx.eq(x)
                x = nx
            x_sk.append(x)
        for lane in range(M):
            row = []
            for j in range(N):
                w = self.df_w[lane][j]
                for k in range(j):
                    nw = Signal(s8, name=f"df_w{lane}_{j}_d{k + 1}")
                    m.d.sync += nw.eq(w)
                    w = nw
                row.append(w)
            w_sk.append(row)

        # ---- operands of R-MAC (m, j): unpacked (activation, weight), combinational; packed
        # (the shared operand, the pair member's own operand), registered ----------------------
        if self.packed:
            a_op, w_op = self._packed_operands(m, dw, x_sk, w_sk)
        else:
            a_op, w_op = self._operands(m, dw, x_sk, w_sk)

        # self-accumulation control, delayed by the product latency P
        dw_valid, dw_first, dw_last = self.valid & dw, self.first, self.last
        for k in range(P):
            nv, nf, nl = Signal(name=f"dw_valid_d{k + 1}"), Signal(name=f"dw_first_d{k + 1}"), \
                Signal(name=f"dw_last_d{k + 1}")
            m.d.sync += [nv.eq(dw_valid), nf.eq(dw_first), nl.eq(dw_last)]
            dw_valid, dw_first, dw_last = nv, nf, nl

        # ---- the R-MAC array ----------------------------------------------------------------
        macs = [[None] * N for _ in range(M)]
        for lane in range(M):
            for j in range(N):
                mac = RMAC(in_width=self.X_BITS, acc_width=self.psum_width,
                           multiplier=not self.packed)
                m.submodules[f"rmac_{lane}_{j}"] = mac
                macs[lane][j] = mac
                m.d.comb += [
                    mac.self_acc.eq(dw),
                    mac.clear.eq(dw_first),
                    mac.en.eq(Mux(dw, dw_valid, v_d[j + P])),
                    mac.psum_in.eq(0 if j == 0 else macs[lane][j - 1].psum),
                ]
                if not self.packed:
                    m.d.comb += [mac.a.eq(a_op[lane][j]), mac.w.eq(w_op[lane][j])]
        if self.packed:
            self._packed_products(m, a_op, w_op, macs)

        # ---- down-forward lane accumulators ------------------------------------------------
        with m.If(v_d[N + P]):
            for lane in range(M):
                bottom = macs[lane][N - 1].psum
                # (first ? 0 : acc) + x: the zeroing folds into the adder's LUTs (one LUT per
                # bit; a Mux after the adder costs a second one), the DSP48E2 Z-mux form
                m.d.sync += self.lane_out[lane].eq(
                    Mux(f_d[N + P], 0, self.lane_out[lane]) + bottom)
        m.d.sync += self.lane_valid.eq(v_d[N + P] & l_d[N + P])

        # ---- self-accumulation outputs: the psum registers themselves ---------------------
        for j in range(N):
            for lane in range(M):
                m.d.comb += self.pixel_out[j][lane].eq(macs[lane][j].psum)
        m.d.sync += self.pixel_valid.eq(dw_valid & dw_last)
        return m

    def _operands(self, m, dw, x_sk, w_sk):
        """Unpacked R-MACs: combinational operands. Self-accumulation: per-channel input shift
        registers ``sr`` (loaded from ``dw_row`` with a bypass, shifted on every valid step)."""
        M, N, s9 = self.lanes, self.macs_per_lane, signed(self.X_BITS)
        opnd = []     # opnd[j][i]: pixel i of channel j used this cycle
        for j in range(N):
            sr = Signal(data.ArrayLayout(s9, self.row_len), name=f"dw_sr{j}")
            cur = Signal(data.ArrayLayout(s9, self.row_len), name=f"dw_cur{j}")
            m.d.comb += cur.eq(Mux(self.load, self.dw_row[j], sr))
            with m.If(self.valid & dw):
                for i in range(self.row_len - 1):
                    m.d.sync += sr[i].eq(cur[i + 1])
                m.d.sync += sr[self.row_len - 1].eq(0)
            opnd.append(cur)
        a_op = [[Mux(dw, opnd[j][lane], x_sk[j]) for j in range(N)] for lane in range(M)]
        w_op = [[Mux(dw, self.dw_w[j], w_sk[lane][j]) for j in range(N)] for lane in range(M)]
        return a_op, w_op

    def _packed_operands(self, m, dw, x_sk, w_sk):
        """Packed R-MACs: the multipliers' operand registers (the DSP48E2's input registers,
        one cycle after the ports as in ``PackedDualMultiplier``).

        ``shared[j]`` is the operand both R-MACs of a packed pair multiply by (``x_sk[j]`` in
        down-forward mode, ``dw_w[j]`` in self-accumulation mode). ``q[j][i]`` holds, in
        down-forward mode, lane i's skewed weight at position j (i < M), and in
        self-accumulation mode pixel i of channel j's row segment. In self-accumulation mode
        ``q[j]`` *is* the shift register: the operands one valid step later are pixels
        ``i + 1`` of this step's (loaded or shifted) segment, ``q[j][i + 1]``, so the pixel
        shift register, the mode multiplexer and the multipliers' input registers are one
        register per pixel (a 3:1 multiplexer in front: ``load ? dw_row : q[i + 1]`` or the
        skewed weight). It advances on every cycle in down-forward mode (a pipeline stage of
        the skew) and on valid steps only in self-accumulation mode.
        """
        M, N, s9 = self.lanes, self.macs_per_lane, signed(self.X_BITS)
        shared = [Signal(s9, name=f"opnd_shared{j}") for j in range(N)]
        q = [Signal(data.ArrayLayout(s9, self.row_len), name=f"opnd_q{j}") for j in range(N)]
        for j in range(N):
            m.d.sync += shared[j].eq(Mux(dw, self.dw_w[j], x_sk[j]))
            with m.If(~dw | self.valid):
                for i in range(self.row_len):
                    nxt = q[j][i + 1] if i + 1 < self.row_len else 0
                    seg = Mux(self.load, self.dw_row[j][i], nxt)
                    m.d.sync += q[j][i].eq(Mux(dw, seg, w_sk[i][j]) if i < M else seg)
        a_op = [[shared[j] for j in range(N)] for _ in range(M)]
        w_op = [[q[j][lane] for j in range(N)] for lane in range(M)]
        return a_op, w_op

    def _packed_products(self, m, a_op, w_op, macs):
        """One packed multiply (``hw.engines.packed``, the DSP48E2's pre-adder, multiplier and
        M register) per lane pair and position, on the operand registers."""
        M, N = self.lanes, self.macs_per_lane
        for p in range(M // 2):
            for j in range(N):
                lo, hi = 2 * p, 2 * p + 1
                p_hi, p_lo = packed_products(m, a_op[lo][j], w_op[hi][j], w_op[lo][j],
                                             shift=self.PACK_SHIFT, name=f"pprod_{p}_{j}")
                m.d.comb += [macs[lo][j].product.eq(p_lo), macs[hi][j].product.eq(p_hi)]
