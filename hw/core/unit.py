"""One instruction-driven unit of a computing core: decoder, layer registers, and (for the MAT
and R-MAC units) the down-forward convolution sequencer feeding its engine and the requant
lanes (paper Sec. V-B, Fig. 8).

A unit runs its in-order instruction queue (``sim.isa``: the per-unit split of a core's stream):

* ``SETR`` writes a layer register (one cycle), ``NOP`` does nothing (one cycle);
* ``WAIT`` / ``SIGNAL`` go out on the ``wait`` / ``signal`` streams (see :mod:`hw.core.ports`)
  straight from the head of the queue; the instruction is consumed when the semaphore file
  accepts (WAIT: the counter has reached ``count``). A compute instruction returns to the fetch
  state only after its last output is written, so a SIGNAL after it means "outputs in place";
* ``HALT`` stops the unit (``halted`` = 1);
* ``CONV_MAT`` (MAT unit) / ``CONV_RDF`` (R-MAC unit, down-forward mode): a (grouped)
  pointwise conv, linear or generic k x k conv tile (stride, padding), see below;
* ``DW_RSA`` (R-MAC unit, self-accumulation mode): a depthwise tile (see ``_depthwise``);
* ``POOL`` (AUX unit): global average pooling on the adder tree (see ``_pool``);
* ``ATT_KSUM`` (AUX unit, ``_pool``), ``ATT_KV_RDF`` (R-MAC), ``ATT_KV_MAT``, ``ATT_DIV``,
  ``ATT_OUT`` (MAT): the attention steps, sequenced by :mod:`hw.core.attention`;
* anything else sets ``error`` (sticky) with the opcode in ``error_op`` and halts.

Conv tile schedule (``npix = ho * WOUT``; lanes = S (MAT) or M (R-MAC), width = T or N): for
each output-channel group of ``lanes`` channels, for each output pixel ``(oy, ox)``, its im2col
row in tap-major order: for each tap ``(ky, kx)``, ``ceil(CIN/width)`` steps; a step reads
``width`` input channels of input pixel ``(oy*STRIDE + ky - pad_t, ox*STRIDE + kx - PAD_L)``
(gather port ``x``: stride XSTRIDE; zero in the padding) and ``lanes x width`` weights
``w[co][c][ky][kx]`` (port ``w``: one pre-tiled line of ``lanes * width`` bytes, row stride
``width``, element stride 1, the layout of ``sim.isa``: the lines of a block of output channels
in step order, so the address is one running line counter that returns to the block's first
line for each output pixel) and feeds the engine. Input bytes are sign- or zero-extended to the
engines' 9-bit activation operand by XSIGNED (residual bytes by RSIGNED). When the engine
delivers a vector of ``lanes`` dot products, the unit reads the ``lanes`` parameter records
(port ``p``, 32 bytes each: bias, mult_b, mult_c, offset, res_b, res_c, hsw_b, hsw_c as in
``sim.compile``) and the residual bytes (port ``r``), adds the bias and runs one
``hw.units.Requant`` per lane (ReLU / Hardswish / residual); the 8-bit results are written to
the OUT (or B/AUX) buffer through the scatter port ``o`` (stride OSTRIDE). ``NOEPI`` writes the
int32 accumulators plus bias instead (the logits).

Address generation (conv, depthwise, attention): the products of a loop index and a stride
(``ox * STRIDE``, ``c0 * XSTRIDE``, ``row * WIN``, ``cout_g * OSTRIDE``, ...) are running sums
that step with their index, kept to ``ADDR_BITS`` bits (the ports wrap there); the one
exception is the im2col row offset ``iy * WIN`` of the generic k x k conv (18 x 16 bits). The
other products are per-instruction, of narrowed operands: ``CIN * XSTRIDE`` (CIN <= 65535,
``sim.isa.REG_LIMITS``) and ``ho * WOUT`` (12 x 12 bits). The conv's weight address is one
running line counter (pre-tiled weights; no ``CIN * k*k`` product any more).

Channel-blocked activations (the ``BLOCK`` register ``b``, ``sim.isa``; docs/isa.md): the
x / r / o ports of the conv path and xr / r / o of the depthwise path address element
``(c, p)`` at ``base + (c >> b) * STRIDE + (p << b) + (c & (2**b - 1))``: the pixel offsets
(``iy * WIN + ix``, ``pix_o``, ``pix_w``, the depthwise row and column offsets) are shifted
left by ``b``, the channel lanes of a step (all in one block: ``sim.isa.block_unit_ok``) are
1 apart instead of ``STRIDE``, the depthwise pixel lanes ``2**b`` apart, and each channel
counter's running address steps by ``cstep`` (within a block by the channels, across a block
boundary to the next block's base). ``b = 0`` gives every planar address unchanged, at the
same cycles (the same steps). POOL and ATT_KSUM (the AUX unit's x port, ``_pool``) read the
tokens of a channel ``2**b`` apart, the attention steps address K, Q, V and their output the
same way (``hw.core.attention``). Units with ``b != 0`` and a step wider than a block, a grouped
conv, 32-bit outputs, or an attention head whose ``DIM`` is not whole blocks stop with their
error flag.

What a unit builds follows the unit column of ``sim.isa.FORMATS`` (``UNIT_OPS``): the MAT unit
has no depthwise path, the R-MAC unit no ``ATT_DIV`` / ``ATT_OUT`` hardware (the log2 module;
``ATT_OUT`` runs on the MAT's requant lanes), the AUX unit only the adder tree.

Layer registers (``SETR``): :class:`hw.core.regfile.RegisterFile` (``REG_STORE``: each at the
width its consumers need; the ``sim.isa.REG_LIMITS`` verdicts formed when a register is
written).
"""

from __future__ import annotations

from contextlib import nullcontext

from amaranth import Cat, Const, EnableInserter, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engines import MATEngine, RMACEngine
from hw.params import check_int
from hw.units import Requant
from sim.isa import ACTS, FORMATS, OPCODE_BITS, REG_LIMITS

from .attention import ATT_OPS, CNT, AttentionSequencer
from .ports import ADDR_BITS, SEM_LAYOUT, gather_read_signature, scatter_write_signature
from .regfile import REG_STORE, RegisterFile, _reg_store, field_slices  # noqa: F401

__all__ = ["Unit", "field_slices", "REC_FIELDS"]

#: the 8 int32 fields of a per-channel parameter record (sim.compile.records.param_block)
REC_FIELDS = ("bias", "mult_b", "mult_c", "offset", "res_b", "res_c", "hsw_b", "hsw_c")
#: the bits of a record the requant lanes use (``Unit(p_reuse=True)`` holds only these): bias
#: and offset whole, mult_b, res_b, hsw_b their low 16 bits, mult_c, res_c, hsw_c their low 6
REC_USED_BITS = dict(bias=32, mult_b=16, mult_c=6, offset=32, res_b=16, res_c=6, hsw_b=16,
                     hsw_c=6)
REC_USED = sum(((1 << REC_USED_BITS[f]) - 1) << (32 * i) for i, f in enumerate(REC_FIELDS))
KINDS = ("MAT", "RMAC", "AUX")
#: the compute opcodes of each unit kind, read from the unit column of ``sim.isa.FORMATS``: a
#: unit builds the datapath of these only (see ``CONV_OPS`` .. ``POOL_OPS`` for what each means)
UNIT_OPS = {kind: frozenset(op for op, (_, unit, _) in FORMATS.items() if unit == kind)
            for kind in KINDS}
CONV_OPS = ("CONV_MAT", "CONV_RDF")     #: down-forward conv / linear tile on the unit's engine
DW_OPS = ("DW_RSA",)                    #: depthwise, R-MAC self-accumulation mode
POOL_OPS = ("POOL", "ATT_KSUM")         #: the adder tree (Unit._pool)
MAX_KERNEL = 5      #: largest depthwise kernel of the R-MAC unit
#: bits of a depthwise sum held for the drain: at most MAX_KERNEL**2 products of a 9-bit
#: activation operand (|x| <= 2**8) and an int8 weight (|w| <= 2**7), |sum| <= 25 * 2**15 < 2**20,
#: so a signed 21-bit value holds every sum exactly (the engine's outputs are 32 bits wide)
DW_HOLD_BITS = (MAX_KERNEL ** 2 * (1 << (RMACEngine.X_BITS - 1))
                * (1 << (RMACEngine.W_BITS - 1))).bit_length() + 1


def _byte(v, signed_reg):
    """An activation byte as the engines' 9-bit operand: sign-extended if bit 0 of
    ``signed_reg`` (XSIGNED / RSIGNED) is set (int8), zero-extended otherwise (uint8)."""
    return Mux(signed_reg[0], v.as_signed(), v.as_unsigned())


def _above(x, n: int) -> list:
    """``[x > k for k in range(n)]`` (a thermometer code) for a Value ``x``, as LUT logic: the
    sign, "a bit above the low ``b`` bits is set" and equalities of the low ``b`` bits (``2**b >=
    n``), shared by the ``n`` outputs, instead of ``n`` comparators of ``x``'s full width (each a
    carry chain). Exact for every value of ``x``."""
    b = max(1, (n - 1).bit_length())
    sgn = x.shape().signed
    neg = x[-1] if sgn else Const(0, 1)
    top = len(x) - 1 if sgn else len(x)
    hi = x[b:top].any() if top > b else Const(0, 1)
    low = x[:min(b, top)]
    return [~neg & (hi | Cat(*[low == v for v in range(k + 1, 1 << len(low))]).any())
            if k + 1 < (1 << len(low)) else ~neg & hi for k in range(n)]


def _saturate8(v, osigned):
    """``v`` (a signed Value) saturated to int8 (``osigned``) or uint8, the compares with the
    bounds formed from the sign and the bits above the byte (no comparators of ``v``'s width
    against a bound that depends on ``osigned``)."""
    neg = v[-1]
    under = Mux(osigned, neg & ~v[7:-1].all(), neg)             # v < -128, v < 0
    over = ~neg & Mux(osigned, v[7:-1].any(), v[8:-1].any())    # v > 127, v > 255
    return Mux(under, Mux(osigned, -128, 0), Mux(over, Mux(osigned, 127, 255), v))


def _min_block(*widths):
    """The smallest ``BLOCK`` > 0 at which every one of ``widths`` (channel accesses of one
    step) divides ``2**BLOCK`` (``sim.isa.block_unit_ok``), or None when one of them is not a
    power of two (no blocked layout then)."""
    if any(w & (w - 1) for w in widths):
        return None
    return max(1, max(widths).bit_length() - 1)


def _block_ok(blk, *widths):
    """``BLOCK`` (``blk``, in range) is 0 or one the unit's channel accesses fit in a block."""
    b = _min_block(*widths)
    return (blk == 0) if b is None else ((blk == 0) | (blk >= b))


def _next_dw_tile(m, ox0, oy, c0, *, M: int, N: int, wout, ho, prow, cbase, cstep):
    """Step a depthwise output-tile position (first column ``ox0`` of M pixels, row ``oy``, first
    channel ``c0`` of N) to the next tile: along the row, then down, then to the next channels.
    The running products step with it: ``prow`` = ``oy * wout`` (pixels), ``cbase`` = ``c0 *
    stride`` (bytes, ``cstep`` = ``N * stride``)."""
    with m.If(ox0 + M < wout):
        m.d.sync += ox0.eq(ox0 + M)
    with m.Elif(oy + 1 < ho):
        m.d.sync += [ox0.eq(0), oy.eq(oy + 1), prow.eq(prow + wout)]
    with m.Else():
        m.d.sync += [ox0.eq(0), oy.eq(0), c0.eq(c0 + N), prow.eq(0), cbase.eq(cbase + cstep)]


class Unit(wiring.Component):
    """A core unit (decoder + registers + engine sequencer). See the module doc.

    Parameters (keyword-only)
    -------------------------
    kind : "MAT", "RMAC" or "AUX"
        Which unit; ``AUX`` has the adder tree (``POOL``, ``ATT_KSUM``).
    lanes : int, 1..64
        Output channels per step: S (MAT) or M (R-MAC).
    width : int, 1..64
        Reduction elements per step: T (MAT) or N (R-MAC).
    packed : bool
        Use the engine's DSP-packing variant.
    requant_lanes : int or None
        R, the requant lanes (``hw.units.Requant``) of a MAT / R-MAC unit; must divide
        ``lanes`` (None: ``lanes``, one per engine lane). With R < ``lanes`` the engine's output
        vector stays in the staging register ``acc`` and is drained R channels per cycle,
        ``lanes / R`` cycles per vector (parameter records, residuals and outputs through the
        first R rows / elements of ``p``, ``r``, ``o``); the sequencer holds a vector's last
        step until the staging is free (``sim.timing.drain_stall``). A depthwise tile is drained
        ``N * lanes / R`` cycles. The AUX unit has one lane whatever this is.
    requant_res_lanes : int or None
        R_res, how many of the R requant lanes have the residual path (an R-MAC unit; must
        divide R; None: all of them). An instruction with a residual input drains through
        those lanes only, ``lanes / R_res`` cycles per vector (a depthwise tile
        ``N * lanes / R_res``), the others through all R (``sim.timing.drain_cycles``).
    aux_tile : (int, int) or None
        ``(S, T)`` of the MAT engine, the tiles in which the attention's S lies in AUX
        (``sim.isa.att_s_offsets``; ``ATT_KV_*`` writes them, ``ATT_OUT`` reads one per step);
        None: ``(lanes, width)``, this unit's own engine (right for a MAT unit).
    stall : bool
        Buffer ports with backpressure (``ready``, :mod:`hw.core.ports`): while a request of
        the unit waits for ``ready``, the whole unit (decoder, sequencers, engine, accumulators,
        requant lanes) is frozen by a clock enable and its streams are held; see
        ``_elaborate_stalled``. With every ``ready`` high it runs cycle for cycle as without.
    p_reuse : bool or None
        Hold the parameter records the ``p`` port returned and do not issue a ``p`` request
        whose records are already held (a MAT / R-MAC unit: the conv / linear drain and the
        depthwise drain). The conv drain keeps one record per engine lane (the channels of
        the current output vector, each sub-block's records where the drain reads a vector
        in ``lanes / R`` sub-blocks) and reads them once per channel block instead of once
        per output pixel; the depthwise drain keeps the record of the channel it drains
        (read once per channel of a tile instead of once per sub-block). What is held is
        dropped at every compute instruction's setup (so an LD between instructions is never
        missed) and when the drain moves to the next channel block. The requant lanes take
        the held records where they took the port's data: results and, on ports that never
        stall, cycles are unchanged; on stalling buffers (``stall``) fewer requests mean fewer
        bank conflicts. Cost: the used bits of a record (130 of its 256: bias, offset 32 each,
        mult_b, res_b, hsw_b 16, their shifts 6) per lane of the engine, i.e. ``130 * lanes``
        flip-flops (the unused bits are constant 0 registers), plus one valid bit per
        sub-block; the depthwise drain's N records share them (``130 * (N - lanes)`` more
        when N > lanes) plus N valid bits: ~1,040 FF per unit at ``paper`` (8 lanes). Logic:
        a multiplexer of 130 bits in front of each requant lane (held record of its sub-block,
        the depthwise record, or the port) and the R-MAC's write selection: at ``paper`` ~0.5 k
        LUT on the MAT unit, ~2.5 k on the R-MAC (estimated from the structure, not
        synthesised). None (the default): on with ``stall``, off without (no cycle gain on
        ideal ports, so no reason to pay for it).

    Ports
    -----
    instr : In(stream of 128-bit words)   this unit's instruction queue
    wait, signal : Out(stream of {sem, count})   semaphore handshakes (hw.core.ports)
    x, w, p, r : gather read ports (input pixels, weights, parameter records, residual)
    o : scatter write port (outputs)
    halted : Out(1)   the unit executed HALT (or stopped on an error)
    error : Out(1), error_op : Out(5)   sticky: an unsupported instruction / register setting
    busy_cycles : Out(32)   cycles spent executing compute instructions (for cycle reports;
        with ``stall``, cycles frozen by a stall are not counted: see ``stall_cycles``)
    stall_cycles : Out(32)   (``stall`` only) cycles the unit was frozen by a port's stall
    """

    def __init__(self, *, kind: str, lanes: int = 8, width: int = 8, packed: bool = False,
                 requant_lanes: int | None = None, requant_res_lanes: int | None = None,
                 aux_tile: tuple[int, int] | None = None, stall: bool = False,
                 p_reuse: bool | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.lanes = check_int("lanes", lanes, 1, 64)
        self.width = check_int("width", width, 1, 64)
        if requant_lanes is None:
            requant_lanes = lanes
        self.requant_lanes = check_int("requant_lanes", requant_lanes, 1, lanes)
        if lanes % requant_lanes:
            raise ValueError(f"requant_lanes must divide lanes={lanes}, got {requant_lanes}")
        #: cycles the requant lanes take for one engine output vector
        self.drain = lanes // requant_lanes
        if requant_res_lanes is None:
            requant_res_lanes = requant_lanes
        self.requant_res_lanes = check_int("requant_res_lanes", requant_res_lanes, 1,
                                           requant_lanes)
        if requant_lanes % requant_res_lanes:
            raise ValueError(f"requant_res_lanes must divide requant_lanes={requant_lanes}, "
                             f"got {requant_res_lanes}")
        if requant_res_lanes != requant_lanes and kind != "RMAC":
            raise ValueError(f"requant_res_lanes: only an RMAC unit has lanes without the "
                             f"residual path (kind {kind!r})")
        #: ... for a vector with a residual input (through the R_res residual lanes)
        self.drain_res = lanes // requant_res_lanes
        if aux_tile is None:
            aux_tile = (lanes, width)
        if not isinstance(aux_tile, tuple) or len(aux_tile) != 2:
            raise TypeError(f"aux_tile must be a tuple (S, T), got {aux_tile!r}")
        self.aux_tile = (check_int("aux_tile[0] (S)", aux_tile[0], 1, 64),
                         check_int("aux_tile[1] (T)", aux_tile[1], 1, 64))
        if not isinstance(packed, bool):
            raise TypeError(f"packed must be a bool, got {packed!r}")
        self.packed = packed
        if not isinstance(stall, bool):
            raise TypeError(f"stall must be a bool, got {stall!r}")
        self.stall = stall
        if p_reuse is None:
            p_reuse = stall
        if not isinstance(p_reuse, bool):
            raise TypeError(f"p_reuse must be a bool or None, got {p_reuse!r}")
        #: the p port's records are held and not read again (the AUX unit: no effect)
        self.p_reuse = p_reuse
        gather = lambda **kw: gather_read_signature(stall=stall, **kw)      # noqa: E731
        scatter = lambda **kw: scatter_write_signature(stall=stall, **kw)   # noqa: E731
        sig = {
            "instr": In(stream.Signature(unsigned(128))),
            "wait": Out(stream.Signature(SEM_LAYOUT)),
            "signal": Out(stream.Signature(SEM_LAYOUT)),
            "halted": Out(1),
            "error": Out(1),
            "error_op": Out(5),
            "busy_cycles": Out(32),
        }
        if kind != "AUX":
            sig.update(x=Out(gather(rows=1, elems=width)),
                       w=Out(gather(rows=lanes, elems=width)),
                       p=Out(gather(rows=lanes, elems=32)),
                       r=Out(gather(rows=1, elems=lanes)),
                       o=Out(scatter(elems=lanes)))
        else:       # AUX: the adder tree (POOL) reads `width` tokens of one channel per cycle
            sig.update(x=Out(gather(rows=1, elems=width)),
                       p=Out(gather(rows=1, elems=32)),
                       o=Out(scatter(elems=1)))
        if kind == "RMAC":
            self.max_kernel = MAX_KERNEL
            self.row_len = lanes + MAX_KERNEL - 1
            sig.update(xr=Out(gather(rows=width, elems=self.row_len)))
        if stall:
            sig["stall_cycles"] = Out(32)
        super().__init__(sig)

    def _engine(self):
        if self.kind == "MAT":
            e = MATEngine(lanes=self.lanes, multipliers=self.width, packed=self.packed)
            return e, e.x, e.w, e.out, e.out_valid, e.LATENCY
        e = RMACEngine(lanes=self.lanes, macs_per_lane=self.width, max_kernel=MAX_KERNEL,
                        packed=self.packed)
        return e, e.df_x, e.df_w, e.lane_out, e.lane_valid, e.DF_LATENCY

    def buffer_ports(self) -> list:
        """Names of the unit's gather / scatter ports."""
        return [n for n in ("x", "w", "p", "r", "xr", "o") if n in self.signature.members]

    def elaborate(self, platform):
        if self.stall:
            return self._elaborate_stalled()
        return self._elaborate_datapath()

    def _elaborate_stalled(self):
        """The ``stall`` variant: the unit without backpressure (``inner``) under a clock enable
        ``~stall``, with a shim on every buffer port.

        ``stall`` = some port's request of the current *step* (the inner unit's current state)
        is not accepted yet. A shim passes its inner request out until it is accepted (``got``:
        accepted in an earlier, frozen cycle of this step; the port then stays quiet) and gives
        the inner unit, in the step after a request, the data of that request: straight from
        the port when the request was accepted in the step's last cycle (the no-stall case, so
        timing is unchanged when nothing stalls), else from ``cur``. A gather accepted while the
        unit is still frozen returns data the unit must not see before its next step: ``nxt``
        keeps it. The instruction stream is consumed and the wait / signal streams are offered
        only in advancing cycles, so nothing outside sees a frozen cycle as a step."""
        m = Module()
        inner = Unit(kind=self.kind, lanes=self.lanes, width=self.width, packed=self.packed,
                     requant_lanes=self.requant_lanes,
                     requant_res_lanes=self.requant_res_lanes, aux_tile=self.aux_tile,
                     p_reuse=self.p_reuse)
        stall = Signal()
        adv = Signal()
        m.d.comb += adv.eq(~stall)
        m.submodules.inner = EnableInserter({"sync": adv})(inner)
        self._inner = inner         # for debugging benches
        stalls = []
        for name in self.buffer_ports():
            ext, int_ = getattr(self, name), getattr(inner, name)
            gather = "row_stride" in ext.signature.members
            got = Signal(name=f"{name}_got")
            pst = Signal(name=f"{name}_stall")
            acc = Signal(name=f"{name}_acc")
            fields = [f for f in ext.signature.members if f not in ("en", "ready", "data")]
            if not gather:
                fields.append("data")
            m.d.comb += [getattr(ext, f).eq(getattr(int_, f)) for f in fields]
            m.d.comb += [ext.en.eq(int_.en & ~got), acc.eq(ext.en & ext.ready),
                         pst.eq(int_.en & ~got & ~ext.ready)]
            stalls.append(pst)
            with m.If(adv):
                m.d.sync += got.eq(0)
            with m.Elif(acc):
                m.d.sync += got.eq(1)
            if gather:
                shape = ext.data.shape()
                cur = Signal(shape, name=f"{name}_cur")
                nxt = Signal(shape, name=f"{name}_nxt")
                arr, arr_n = Signal(name=f"{name}_arr"), Signal(name=f"{name}_arr_n")
                m.d.sync += [arr.eq(acc & adv), arr_n.eq(acc & ~adv)]
                with m.If(arr):
                    m.d.sync += cur.eq(ext.data)
                with m.If(arr_n):
                    m.d.sync += nxt.eq(ext.data)
                with m.If(adv & got):
                    m.d.sync += cur.eq(Mux(arr_n, ext.data, nxt))
                m.d.comb += int_.data.eq(Mux(arr, ext.data, cur))
        m.d.comb += stall.eq(Cat(*stalls).any())
        with m.If(stall):
            m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
        m.d.comb += [inner.instr.valid.eq(self.instr.valid),
                     inner.instr.payload.eq(self.instr.payload),
                     self.instr.ready.eq(inner.instr.ready & adv)]
        for sname in ("wait", "signal"):
            ext, int_ = getattr(self, sname), getattr(inner, sname)
            m.d.comb += [ext.valid.eq(int_.valid & adv), ext.payload.eq(int_.payload),
                         int_.ready.eq(ext.ready)]
        m.d.comb += [self.halted.eq(inner.halted), self.error.eq(inner.error),
                     self.error_op.eq(inner.error_op), self.busy_cycles.eq(inner.busy_cycles)]
        return m

    def _elaborate_datapath(self):
        m = Module()
        L, W = self.lanes, self.width
        pay = self.instr.payload
        word = Signal(128)
        op_now = pay[:OPCODE_BITS]
        op = word[:OPCODE_BITS]

        def fld(src, opname, name):
            pos, bits, sgn = field_slices(opname)[name]
            v = src[pos:pos + bits]
            return v.as_signed() if sgn else v

        code = {n: FORMATS[n][0] for n in FORMATS}
        ops = UNIT_OPS[self.kind]
        # the layer registers, with the REG_LIMITS verdicts formed when they are written
        m.submodules.regs = rf = RegisterFile(ops=tuple(o for o in REG_LIMITS if o in ops))
        regs = rf.regs()
        conv = [o for o in CONV_OPS if o in ops]
        assert len(conv) <= 1, conv
        compute_op = conv[0] if conv else None
        has_dw = any(o in ops for o in DW_OPS)
        has_pool = any(o in ops for o in POOL_OPS)
        assert not has_dw or self.kind == "RMAC", "DW_RSA needs the R-MAC engine"
        att_ops = ATT_OPS.get(self.kind, ())

        busy = Signal()
        with m.If(busy):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)

        # ---- conv sequencer state (unused by AUX) ------------------------------------------
        if compute_op is not None:
            eng, e_x, e_w, e_out, e_valid, _lat = self._engine()
            m.submodules.engine = eng
            self._engine_inst = eng     # for debugging benches
            dwmode = Signal()       # the current compute instruction is a DW_RSA
            if self.kind == "RMAC":
                m.d.comb += eng.mode.eq(Mux(dwmode, RMACEngine.SELF_ACC,
                                            RMACEngine.DOWN_FORWARD))
            tf = lambda n: fld(word, compute_op, n)     # noqa: E731
            # Address arithmetic wraps at ADDR_BITS (the ports' width), so address registers and
            # the products behind them keep only ADDR_BITS bits; the products of loop indices
            # and strides are running sums, stepped with their index (no multiplier).
            A = ADDR_BITS
            # BLOCK = b (sim.isa.REG_LIMITS): channel-blocked activations on the x / r / o
            # ports (xr / r / o of DW_RSA): element (c, p) at base + (c >> b) * STRIDE + (p << b)
            # + (c & (2**b - 1)); the pixel offsets below are shifted by b, the lanes of a
            # step (one block: block_unit_ok) are 1 apart, and a channel counter's address steps
            # by cstep. With b = 0 every address is the planar one.
            blk = regs["BLOCK"][:3]
            blocked = Signal()
            bsz = Signal(8)         # 2**b
            m.d.comb += [blocked.eq(blk != 0), bsz.eq(Const(1, 8) << blk)]

            def cstep(c, n, stride):
                """The address increment of channel counter ``c`` stepping by ``n`` (a power of
                two dividing 2**b when blocked): planar ``n * stride``; blocked ``n`` inside a
                block, and to the next block's base (``+ stride - 2**b + n``) when ``c + n``
                completes one."""
                return Mux(blocked, Mux(((c + n) & (bsz - 1)) == 0, stride - bsz + n, n),
                           stride * n)
            cin = regs["CIN"][:16]  # CIN <= 65535 (checked: df_supported)
            npix = Signal(24)
            k0 = Signal(17)         # first input channel of this step's block of `width`
            pix = Signal(24)
            # generic k x k (im2col in tap-major order): tap (ky, kx) of output pixel (oy, ox)
            kd = regs["KERNEL"][:4]
            ky, kx = Signal(4), Signal(4)
            oy, ox = Signal(12), Signal(12)
            oys, oxs = Signal(16), Signal(16)   # oy * STRIDE, ox * STRIDE (running)
            # weights pre-tiled (sim.isa): one line of L*W bytes per step, the steps of a block
            # of L output channels on consecutive lines, the blocks (and groups) one after the
            # other: wl = the step's line (running), wco = the first line of the current block
            wl = Signal(A)
            iy, ix = Signal(signed(18)), Signal(signed(18))     # unpadded input row, column
            m.d.comb += [iy.eq(oys + ky - tf("pad_t")),
                         ix.eq(oxs + kx - regs["PAD_L"][:8])]
            co = Signal(13)
            xk = Signal(A)
            wco = Signal(A)
            # groups (grouped pointwise): cout_g = nco / GROUPS, found by repeated addition, and
            # with it the per-group increments cout_g * RSTRIDE, * OSTRIDE
            coutg, gsum = Signal(13), Signal(13)
            g, g_o, g_w = Signal(13), Signal(13), Signal(13)
            gx, gp, gr, go = (Signal(A, name=n) for n in ("gx", "gp", "gr", "go"))
            xg = Signal(A)
            # output side counters (with the group's base addresses)
            pix_o, co_o = Signal(24), Signal(13)
            pco_o, rco_o = Signal(A), Signal(A)
            pcg_o, rcg_o = Signal(A), Signal(A)
            pix_w, co_w = Signal(24), Signal(13)
            oco_w, ocg_w = Signal(A), Signal(A)
            nco = tf("nco")
            has_res = regs["RES_ADDR"] >= 0
            noepi = regs["NOEPI"][0]
            wide = noepi | (regs["OBITS"] > 8)

            # step tags (stage 1 = the cycle the gather data arrive)
            v1, f1, l1 = Signal(), Signal(), Signal()
            mask1 = Signal(W)
            m.d.sync += v1.eq(0)
            m.d.comb += [eng.valid.eq(v1), eng.first.eq(f1), eng.last.eq(l1)]
            # activation bytes sign- or zero-extended to 9 bits (XSIGNED); the attention steps
            # (hw.core.attention drives att_relu / att_raw) ReLU them (att_relu: KV, OUT: K, Q)
            # or take them as uint8 (ATT_DIV's ksum8): a byte, its sign bit unless either is
            # set, and zero when masked or ReLU'd negative (one expression for every mode)
            att_relu, att_raw = Signal(name="att_relu"), Signal(name="att_raw")
            for t in range(W):
                xd = self.x.data[0][t]
                m.d.comb += e_x[t].eq(Mux(mask1[t] & ~(att_relu & xd[7]),
                                          Cat(xd, xd[7] & regs["XSIGNED"][0]
                                              & ~att_relu & ~att_raw).as_signed(), 0))
                for s in range(L):
                    m.d.comb += e_w[s][t].eq(self.w.data[s][t].as_signed())
            # a step: `width` input channels of input pixel (iy, ix) for tap (ky, kx); their
            # weights w[co][k0 + t][ky][kx]: one pre-tiled line (row stride W, element stride 1)
            m.d.comb += [self.x.buf.eq(regs["XBUF"][:3]),
                         self.x.elem_stride.eq(Mux(blocked, 1, regs["XSTRIDE"])),
                         self.x.row_stride.eq(0),
                         self.x.addr.eq(xk + ((iy * regs["WIN"][:16] + ix) << blk)),
                         self.w.buf.eq(1), self.w.row_stride.eq(W), self.w.elem_stride.eq(1),
                         self.w.addr.eq(wl)]

            # output stage 0: engine result -> acc register (the staging of the requant drain),
            # parameter / residual reads. The drain: R = requant_lanes channels per cycle, D =
            # lanes / R cycles per vector; sub-block `sub` (channels sub*R ..) is read in the
            # cycle e_valid + sub and requantized one cycle later (stage 1: o1s, sub1).
            R, D = self.requant_lanes, self.drain
            Rr, Dr = self.requant_res_lanes, self.drain_res
            # rmode: this instruction drains through the Rr residual lanes (Rr < R only)
            rmode = Signal()
            attmode = Signal()      # an attention instruction runs (hw.core.attention)

            def dsel(normal, residual):
                """``normal``, or ``residual`` in residual mode (Rr < R)."""
                return normal if Rr == R else Mux(rmode, residual, normal)
            acc = [Signal(signed(32), name=f"acc_{s}") for s in range(L)]
            o1 = Signal()
            m.d.sync += o1.eq(e_valid)
            with m.If(e_valid):
                m.d.sync += [acc[s].eq(e_out[s]) for s in range(L)]
            if Dr > 1:
                # rd: a sub-block is read this cycle (sub: which), rd_last: the vector's last
                rd, sub, rd_last = Signal(), Signal(range(Dr)), Signal()
                o1s, sub1 = Signal(), Signal(range(Dr))
                # rsoff: sub * Rr * RSTRIDE (running; residual reads, planar only). Blocked, every
                # sub-block reads the vector's aligned residual word (channels 0 .. lanes - 1 of
                # the block) and its residual lanes pick channels rsel1 * Rr + s themselves: a
                # read from the sub-block's offset would straddle the word (issue #13; the word
                # buffers serve aligned words only, docs/global-buffers.md)
                rsoff = Signal(A)
                rsel1 = Signal(range(Dr))
                ract, rsub = Signal(), Signal(range(Dr))
                # start: an engine vector that goes through the lanes (the attention drives it
                # low for ATT_DIV's, which would otherwise still drain into the next step)
                start = Signal()
                m.d.comb += [start.eq(e_valid), rd.eq(start | ract),
                             sub.eq(Mux(start, 0, rsub)),
                             rd_last.eq(dsel(sub == D - 1, sub == Dr - 1))]
                m.d.sync += ract.eq(rd & ~rd_last)
                with m.If(rd):
                    m.d.sync += [rsub.eq(sub + 1),
                                 rsoff.eq(Mux(rd_last, 0, rsoff + Mux(
                                     blocked, Rr, regs["RSTRIDE"][:A] * Rr)))]
                m.d.sync += [o1s.eq(rd), sub1.eq(sub), rsel1.eq(Mux(rd & blocked, sub, 0))]
                # lane s takes channel j*R + s (residual mode: j*Rr + s) of sub-block j = sub1:
                # j < D in normal mode, j < Dr in residual mode on the Rr residual lanes (the
                # other lanes' outputs are masked then: their selection ignores the mode and
                # decodes only the bits of sub1 normal mode uses; a lane's value matters only
                # in a cycle with o1s)
                def by_channel(vals, name):
                    """Lane s's entry of ``vals`` (one per channel of the vector) in stage 1."""
                    sel = [Signal(vals[0].shape(), name=f"{name}_{s}") for s in range(R)]
                    for s in range(R):
                        res_lane = Rr < R and s < Rr
                        nq = Dr if res_lane else D
                        qb = (nq - 1).bit_length()
                        if not qb:
                            m.d.comb += sel[s].eq(vals[s])
                            continue
                        with m.Switch(sub1[:qb]):
                            for j in range(nq):
                                if j >= D:
                                    v = vals[j * Rr + s]
                                elif res_lane and j:
                                    v = dsel(vals[j * R + s], vals[j * Rr + s])
                                else:
                                    v = vals[j * R + s]
                                with m.Case(j):
                                    m.d.comb += sel[s].eq(v)
                    return sel
                acc_sel = by_channel(acc, "acc_sel")
                p_addr = pco_o + dsel(sub * (32 * R), sub * (32 * Rr))
                r_addr = rco_o + (pix_o << blk) + Mux(blocked, 0, rsoff)
                rd_vec = rd & rd_last       # the vector's last sub-block is read
            else:       # one lane per engine lane: the vector in one cycle
                rd, o1s, acc_sel, start = e_valid, o1, acc, None
                p_addr, r_addr, rd_vec = pco_o, rco_o + (pix_o << blk), e_valid
                sub, sub1 = Const(0, 1), Const(0, 1)
            # p_reuse: prec[c] holds the record of channel c of the vector (the used bits,
            # REC_USED), pv[j] says sub-block j's records are held (the current channel block);
            # a read whose sub-block is held is not issued (p_hit) and its lanes take prec
            # (p_hit1) instead of the port's data. pv is dropped at each instruction's setup
            # (p_drop) and when the drain leaves a channel block; the attention and depthwise
            # steps never hit (they drive p themselves).
            p_en = rd
            prec_rows = [self.p.data[s].as_value() for s in range(R)]
            if self.p_reuse:
                prec = [Signal(256, name=f"prec_{c}") for c in range(L)]
                pv = Signal(Dr, name="p_valid")
                p_hit, p_hit1, p_drop = Signal(), Signal(), Signal()
                p_fill = Signal()       # stage 1 of a read that was issued: capture its data
                m.d.comb += [p_hit.eq(pv.bit_select(sub, 1) & ~attmode & ~dwmode),
                             p_fill.eq(o1s & ~p_hit1 & ~dwmode)]
                p_en = rd & ~p_hit
                m.d.sync += p_hit1.eq(rd & p_hit)
                for c in range(L):
                    jn, sn = divmod(c, R)
                    src, cond = self.p.data[sn].as_value(), sub1 == jn
                    if Rr < R:
                        jr, sr = divmod(c, Rr)
                        src = Mux(rmode, self.p.data[sr].as_value(), src)
                        cond = Mux(rmode, sub1 == jr, cond)
                    with m.If(p_fill & cond):
                        m.d.sync += prec[c].eq(src & REC_USED)
                held = by_channel(prec, "prec_sel") if Dr > 1 else prec
                prec_rows = [Mux(p_hit1, held[s], prec_rows[s]) for s in range(R)]
                if has_dw:
                    # the depthwise drain's held record of the channel it drains (_depthwise):
                    # every lane takes it (the port's rows all hold that record, row stride 0)
                    dw_hit1, dw_rec = Signal(name="dw_p_hit1"), Signal(256, name="dw_prec")
                    prec_rows = [Mux(dw_hit1, dw_rec, prec_rows[s]) for s in range(R)]
                    p_share = dict(prec=prec, p_drop=p_drop, dw_hit1=dw_hit1, dw_rec=dw_rec)
            m.d.comb += [self.p.en.eq(p_en), self.p.buf.eq(1), self.p.addr.eq(p_addr),
                         self.p.row_stride.eq(32), self.p.elem_stride.eq(1),
                         self.r.en.eq(rd & has_res), self.r.buf.eq(0),
                         self.r.addr.eq(r_addr), self.r.row_stride.eq(0),
                         self.r.elem_stride.eq(Mux(blocked, 1, regs["RSTRIDE"]))]
            # output stage 1: bias add, requant lanes
            rq_valid = Signal()
            results, rq_lanes, lane_in = [], [], []
            for s in range(R):
                rec = prec_rows[s]
                # each field at the bits the lanes use (REC_USED_BITS, what p_reuse holds)
                f = {n: rec[32 * i:32 * i + REC_USED_BITS[n]] for i, n in enumerate(REC_FIELDS)}
                tot = Signal(signed(32), name=f"sum_{s}")
                # the lane's sum: acc_sel (conv), or a held depthwise sum (Unit._depthwise
                # drives lane_in in DW mode), plus the bias of the lane's record (none in an
                # attention step: its record has no bias; gating the addend costs no LUT of
                # its own, a multiplexer of the 32-bit sum would)
                lane_in.append(Signal(signed(32), name=f"lane_in_{s}"))
                m.d.comb += [lane_in[s].eq(acc_sel[s]),
                             tot.eq(lane_in[s] + Mux(attmode, 0, f["bias"].as_signed()))]
                rq = Requant(out_bits=16, signed=True, residual=s < Rr, hswish=True,
                             hswish_in_bits=16)
                m.submodules[f"requant_{s}"] = rq
                rq_lanes.append(rq)
                m.d.comb += [rq.acc.eq(tot), rq.b.eq(f["mult_b"]), rq.c.eq(f["mult_c"]),
                             rq.offset.eq(f["offset"].as_signed()),
                             rq.relu_en.eq(regs["ACT"] == ACTS["relu"]),
                             rq.hswish_en.eq(regs["ACT"] == ACTS["hswish"]),
                             rq.three.eq(regs["THREE"][:16]), rq.hb.eq(f["hsw_b"]),
                             rq.hc.eq(f["hsw_c"]), rq.in_valid.eq(o1s & ~noepi)]
                if s < Rr:
                    # the residual of lane s: element s of the r data (planar, or one sub-block),
                    # else element rsel1 * Rr + s of the vector's word (blocked, above)
                    r_s = self.r.data[0][s]
                    if Dr > 1:
                        r_s = Signal(8, name=f"res_sel_{s}")
                        with m.Switch(rsel1):
                            for j in range(Dr):
                                with m.Case(j):
                                    m.d.comb += r_s.eq(self.r.data[0][j * Rr + s])
                    m.d.comb += [rq.res.eq(_byte(r_s, regs["RSIGNED"])),
                                 rq.rb.eq(Mux(has_res, f["res_b"], 0)),
                                 rq.rc.eq(Mux(has_res, f["res_c"], 0))]
                if s == 0:
                    m.d.comb += rq_valid.eq(rq.out_valid)
                y = Signal(signed(32), name=f"y_{s}")
                m.d.comb += y.eq(_saturate8(rq.out, regs["OSIGNED"][0]))
                results.append((tot, y))
            ns = dict(acc=acc, results=results, o1=o1, npix=npix, co=co, nco=nco,
                            has_res=has_res, rmode=rmode, blk=blk, blocked=blocked, bsz=bsz,
                            regs_ok=getattr(rf, "ok_dw_rsa", None), lane_in=lane_in,
                            cstep=cstep, p_reuse=p_share if self.p_reuse and has_dw else None)
            # write stage: sub-block wsub of a vector (channels wch = wsub*R .., address
            # offset wsoff = wsub * R * OSTRIDE); attmode: the KV step's writes (its own pulse)
            wr = Signal()
            if Rr < R:      # (RES_ADDR may still be set from an earlier instruction)
                m.d.comb += rmode.eq(has_res & ~noepi & ~attmode)
            if Dr > 1:
                w_last = Signal()
                wsub, wch, wsoff = Signal(range(Dr)), Signal(range(L)), Signal(A)
                m.d.comb += wr.eq(Mux(noepi & ~attmode, o1s, rq_valid))
                o_addr, o_ch = oco_w + Mux(wide, pix_w << 2, pix_w << blk) + wsoff, co_w + wch
                wr_vec = wr & w_last        # the vector's last sub-block is written
            else:
                w_last, wch = 1, 0
                m.d.comb += wr.eq(Mux(noepi, o1, rq_valid))
                o_addr, o_ch, wr_vec = oco_w + Mux(wide, pix_w << 2, pix_w << blk), co_w, wr
            m.d.comb += [self.o.en.eq(wr), self.o.buf.eq(tf("obuf")), self.o.wide.eq(wide),
                         self.o.elem_stride.eq(Mux(blocked, 1, regs["OSTRIDE"])),
                         self.o.addr.eq(o_addr)]
            o_rem = Signal(signed(16))      # channel o_ch + s exists: coutg - o_ch > s
            m.d.comb += o_rem.eq(coutg - o_ch)
            o_left = _above(o_rem, len(results))
            # the port writes the low byte of data (4 bytes only with `wide`, i.e. NOEPI: the
            # raw sums; OBITS > 8 without NOEPI is refused), so only the low byte selects
            # between the sum and the saturated result (a depthwise tile has NOEPI = 0 too)
            for s, (tot, y) in enumerate(results):
                m.d.comb += [self.o.data[s].eq(Cat(Mux(noepi, tot[:8], y[:8]), tot[8:])),
                             self.o.mask[s].eq(o_left[s] if s < Rr else o_left[s] & ~rmode)]
            if Dr > 1:
                m.d.comb += w_last.eq(dsel(wsub == D - 1, wsub == Dr - 1))
                with m.If(wr):
                    m.d.sync += [wsub.eq(Mux(w_last, 0, wsub + 1)),
                                 wch.eq(Mux(w_last, 0, wch + dsel(R, Rr))),
                                 wsoff.eq(Mux(w_last, 0, wsoff + dsel(
                                     Mux(blocked, R, regs["OSTRIDE"][:A] * R),
                                     Mux(blocked, Rr, regs["OSTRIDE"][:A] * Rr))))]

                def reset_drain():
                    m.d.sync += [wsub.eq(0), wch.eq(0), wsoff.eq(0)]
            else:
                def reset_drain():
                    pass
            # issue side: a vector's last step waits until the staging is free, i.e. at least D
            # cycles after the previous vector's last step (gap counts them down)
            gap_busy = Signal()
            if Dr > 1:
                gap = Signal(range(Dr))
                m.d.comb += gap_busy.eq(gap != 0)
                with m.If(gap_busy):
                    m.d.sync += gap.eq(gap - 1)

                def arm_gap():
                    m.d.sync += gap.eq(dsel(D - 1, Dr - 1))
            else:
                def arm_gap():
                    pass
            ns.update(drain=dict(start=start, rd=rd, rd_last=rd_last if Dr > 1 else 1, o1s=o1s,
                                 acc_sel=acc_sel, wr=wr, w_last=w_last, wch=wch,
                                 gap_busy=gap_busy, arm_gap=arm_gap))
            # output-side counters advance in output order (channel group outer, pixel inner)
            with m.If(rd_vec):
                with m.If(pix_o + 1 == npix):
                    m.d.sync += pix_o.eq(0)
                    with m.If(co_o + L < coutg):
                        m.d.sync += [co_o.eq(co_o + L), pco_o.eq(pco_o + 32 * L),
                                     rco_o.eq(rco_o + cstep(co_o, L, regs["RSTRIDE"][:A]))]
                    with m.Else():              # next group
                        m.d.sync += [co_o.eq(0), g_o.eq(g_o + 1), pco_o.eq(pcg_o + gp),
                                     pcg_o.eq(pcg_o + gp), rco_o.eq(rcg_o + gr),
                                     rcg_o.eq(rcg_o + gr)]
                with m.Else():
                    m.d.sync += pix_o.eq(pix_o + 1)
            if self.p_reuse:
                with m.If(rd & ~p_hit & ~attmode & ~dwmode):
                    for j in range(Dr):
                        with m.If(sub == j):
                            m.d.sync += pv[j].eq(1)
                # (after the line above: a block's end or a setup drops everything)
                with m.If(p_drop | (rd_vec & (pix_o + 1 == npix))):
                    m.d.sync += pv.eq(0)
            else:
                p_drop = Signal()       # (driven by the setup states, unused)
            last_write = Signal()
            m.d.comb += last_write.eq(wr_vec & (pix_w + 1 == npix) & (co_w + L >= coutg)
                                      & (g_w + 1 == regs["GROUPS"]))
            with m.If(wr_vec & ~dwmode):
                with m.If(pix_w + 1 == npix):
                    m.d.sync += pix_w.eq(0)
                    with m.If(co_w + L < coutg):
                        m.d.sync += [co_w.eq(co_w + L),
                                     oco_w.eq(oco_w + cstep(co_w, L, regs["OSTRIDE"][:A]))]
                    with m.Else():
                        m.d.sync += [co_w.eq(0), g_w.eq(g_w + 1), oco_w.eq(ocg_w + go),
                                     ocg_w.eq(ocg_w + go)]
                with m.Else():
                    m.d.sync += pix_w.eq(pix_w + 1)

            df_supported = Signal()
            # the register ranges of sim.isa.REG_LIMITS, which the compiler checks too
            in_limits = getattr(rf, f"ok_{compute_op.lower()}")
            m.d.comb += df_supported.eq(in_limits
                                     & (tf("hin") > 0)
                                     & (regs["GROUPS"] >= 1) & (regs["GROUPS"] <= nco)
                                     & (noepi | ((regs["OBITS"] == 8)
                                                 & ((regs["ACT"] != ACTS["hswish"])
                                                    | (regs["MIDBITS"] == 16))))
                                     & (nco > 0) & (tf("ho") > 0)
                                     # blocked: one group, 8-bit outputs (sim.isa.block_unit_ok)
                                     & ((blk == 0) | (_block_ok(blk, W, L)
                                                      & (regs["GROUPS"] == 1) & ~wide)))
            supported = Signal()
            m.d.comb += supported.eq(df_supported)
            dw_last_write = Signal()
            if has_dw:
                dw_issue, dw_setup = self._depthwise(m, regs, tf, dwmode, eng, rq_lanes,
                                                     dw_last_write, supported, df_supported,
                                                     op, code, ns)

            # attention steps on the engine (hw.core.attention): overrides the ports while attmode
            att = AttentionSequencer(self, m, dict(
                regs=regs, tf=tf, op=op, code=code, eng=eng, e_x=e_x, e_w=e_w, e_valid=e_valid,
                acc=acc, o1=o1, rq_lanes=rq_lanes, results=results, attmode=attmode,
                drain=ns["drain"], stage1=(v1, f1, l1, mask1), x_mode=(att_relu, att_raw)))

        if has_pool:
            pool_issue, pool_setup, pool_last_write, pool_ok = self._pool(m, regs, word, fld,
                                                                          op == code["ATT_KSUM"])

        # ---- the decoder -------------------------------------------------------------------
        m.d.comb += [rf.reg.eq(fld(pay, "SETR", "reg")), rf.value.eq(fld(pay, "SETR", "value"))]
        def fail(opv):
            m.d.sync += [self.error.eq(1), self.error_op.eq(opv)]
            m.next = "HALTED"

        with m.FSM():
            with m.State("FETCH"):
                # WAIT and SIGNAL are executed straight from the queue head: the instruction is
                # taken when the semaphore file takes the request (one cycle each at best)
                with m.If(self.instr.valid & (op_now == code["WAIT"])):
                    m.d.comb += [self.wait.valid.eq(1),
                                 self.wait.payload.sem.eq(fld(pay, "WAIT", "sem")),
                                 self.wait.payload.count.eq(fld(pay, "WAIT", "count")),
                                 self.instr.ready.eq(self.wait.ready)]
                with m.Elif(self.instr.valid & (op_now == code["SIGNAL"])):
                    m.d.comb += [self.signal.valid.eq(1),
                                 self.signal.payload.sem.eq(fld(pay, "SIGNAL", "sem")),
                                 self.signal.payload.count.eq(fld(pay, "SIGNAL", "count")),
                                 self.instr.ready.eq(self.signal.ready)]
                with m.Else():
                    m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid & self.instr.ready):
                    m.d.sync += word.eq(pay)
                    with m.Switch(op_now):
                        with m.Case(code["NOP"]):
                            pass
                        with m.Case(code["SETR"]):
                            m.d.comb += rf.we.eq(1)
                        with m.Case(code["WAIT"], code["SIGNAL"]):
                            pass
                        with m.Case(code["HALT"]):
                            m.next = "HALTED"
                        if has_pool:
                            with m.Case(*[code[o] for o in POOL_OPS if o in ops]):
                                m.next = "PSETUP"
                        if att_ops:
                            with m.Case(*[code[a] for a in att_ops]):
                                m.next = "ASETUP"
                        if compute_op is not None:
                            with m.Case(*[code[o] for o in (compute_op, *DW_OPS) if o in ops]):
                                m.next = "SETUP"
                        with m.Default():
                            fail(op_now)
            with m.State("HALTED"):
                m.d.comb += self.halted.eq(1)
            if compute_op is not None:
                with m.State("SETUP"):
                    m.d.comb += [busy.eq(1), p_drop.eq(1)]
                    with m.If(~supported):
                        fail(op)
                    if has_dw:
                        with m.Elif(op == code["DW_RSA"]):
                            m.d.sync += dwmode.eq(1)
                            dw_setup()
                            m.next = "DWRUN"
                    with m.Else():
                        m.d.sync += dwmode.eq(0)
                        m.d.sync += [npix.eq(tf("ho") * regs["WOUT"][:12]),
                                     k0.eq(0), pix.eq(0), co.eq(0), g.eq(0), xk.eq(tf("x_addr")),
                                     ky.eq(0), kx.eq(0), oy.eq(0), ox.eq(0), oys.eq(0),
                                     oxs.eq(0), gr.eq(0), go.eq(0),
                                     xg.eq(tf("x_addr")), wco.eq(tf("w_addr")),
                                     wl.eq(tf("w_addr")),
                                     pix_o.eq(0), co_o.eq(0), g_o.eq(0), pco_o.eq(tf("p_addr")),
                                     pcg_o.eq(tf("p_addr")), rco_o.eq(regs["RES_ADDR"]),
                                     rcg_o.eq(regs["RES_ADDR"]), pix_w.eq(0), co_w.eq(0),
                                     g_w.eq(0), oco_w.eq(tf("o_addr")), ocg_w.eq(tf("o_addr"))]
                        reset_drain()
                        with m.If(regs["GROUPS"] == 1):
                            m.d.sync += coutg.eq(nco)
                            m.next = "GROUPS"
                        with m.Else():
                            m.d.sync += [coutg.eq(0), gsum.eq(0)]
                            m.next = "DIVIDE"
                with m.State("DIVIDE"):          # coutg = nco / GROUPS (exact, checked)
                    m.d.comb += busy.eq(1)
                    with m.If(gsum + regs["GROUPS"] <= nco):
                        m.d.sync += [gsum.eq(gsum + regs["GROUPS"]), coutg.eq(coutg + 1),
                                     gr.eq(gr + regs["RSTRIDE"][:A]),
                                     go.eq(go + regs["OSTRIDE"][:A])]
                    with m.Elif(gsum != nco):
                        fail(op)
                    with m.Else():
                        m.next = "GROUPS"
                with m.State("GROUPS"):          # per-group address increments
                    # (gw, gr, go: summed in DIVIDE; 0 with one group, where they are not used)
                    m.d.comb += busy.eq(1)
                    m.d.sync += [gx.eq(cin * regs["XSTRIDE"][:A]), gp.eq(coutg * 32)]
                    m.next = "RUN"
                with m.State("RUN"):
                    m.d.comb += [busy.eq(1), self.x.en.eq(1), self.w.en.eq(1)]
                    # innermost: channel blocks, then taps kx, ky, then output pixels
                    last_c, last_kx, last_ky, last_k = Signal(), Signal(), Signal(), Signal()
                    inb = Signal()      # the tap's input pixel is inside the tile (not padding)
                    # channel k0 + t exists: k0 + t < cin, i.e. cin - k0 > t
                    c_rem = Signal(signed(18))
                    m.d.comb += c_rem.eq(cin - k0)
                    c_left = _above(c_rem, W)
                    m.d.comb += [last_c.eq(k0 + W >= cin), last_kx.eq(kx + 1 == kd),
                                 last_ky.eq(ky + 1 == kd), last_k.eq(last_c & last_kx & last_ky),
                                 inb.eq((iy >= 0) & (iy < tf("hin")) & (ix >= 0)
                                        & (ix < regs["WIN"]))]
                    if Dr > 1:       # a vector's last step waits while the staging drains
                        with m.If(last_k & gap_busy):
                            m.d.comb += [self.x.en.eq(0), self.w.en.eq(0)]
                        with m.Elif(last_k):
                            arm_gap()
                    with (m.If(~(last_k & gap_busy)) if Dr > 1 else nullcontext()):
                        m.d.sync += [v1.eq(1), f1.eq((k0 == 0) & (kx == 0) & (ky == 0)),
                                     l1.eq(last_k),
                                     mask1.eq(Cat(*[inb & a for a in c_left]))]
                        with m.If(~last_k):     # the block's next line
                            m.d.sync += wl.eq(wl + L * W)
                        with m.Elif(pix + 1 == npix):   # the next block (or group) follows
                            m.d.sync += [wl.eq(wl + L * W), wco.eq(wl + L * W)]
                        with m.Else():          # the block's first line for the next pixel
                            m.d.sync += wl.eq(wco)
                        with m.If(~last_c):
                            m.d.sync += [k0.eq(k0 + W),
                                         xk.eq(xk + cstep(k0, W, regs["XSTRIDE"][:A]))]
                        with m.Elif(~last_kx):
                            m.d.sync += [k0.eq(0), xk.eq(xg), kx.eq(kx + 1)]
                        with m.Elif(~last_ky):
                            m.d.sync += [k0.eq(0), xk.eq(xg), kx.eq(0), ky.eq(ky + 1)]
                        with m.Else():
                            m.d.sync += [k0.eq(0), xk.eq(xg), kx.eq(0), ky.eq(0)]
                            with m.If(ox + 1 == regs["WOUT"]):
                                m.d.sync += [ox.eq(0), oxs.eq(0), oy.eq(oy + 1),
                                             oys.eq(oys + regs["STRIDE"][:4])]
                            with m.Else():
                                m.d.sync += [ox.eq(ox + 1), oxs.eq(oxs + regs["STRIDE"][:4])]
                            with m.If(pix + 1 == npix):
                                m.d.sync += [pix.eq(0), ox.eq(0), oy.eq(0), oxs.eq(0), oys.eq(0)]
                                with m.If(co + L < coutg):
                                    m.d.sync += co.eq(co + L)
                                with m.Else():      # next group: its input channels
                                    m.d.sync += [co.eq(0), g.eq(g + 1), xg.eq(xg + gx),
                                                 xk.eq(xg + gx)]
                                    with m.If(g + 1 == regs["GROUPS"]):
                                        m.next = "DRAIN"
                            with m.Else():
                                m.d.sync += pix.eq(pix + 1)
                with m.State("DRAIN"):
                    m.d.comb += busy.eq(1)
                    with m.If(Mux(dwmode, dw_last_write, last_write)):
                        m.next = "FETCH"
                with m.State("ASETUP"):          # attention step (hw.core.attention)
                    m.d.comb += [busy.eq(1), p_drop.eq(1)]
                    with m.If(~att.ok):     # (BLOCK checked there)
                        fail(op)
                    with m.Else():
                        att.setup()
                        reset_drain()
                        m.d.sync += [attmode.eq(1), dwmode.eq(0)]
                        m.next = "ARUN"
                with m.State("ARUN"):
                    m.d.comb += busy.eq(1)
                    with m.If(att.issue()):
                        m.next = "ADRAIN"
                with m.State("ADRAIN"):
                    m.d.comb += busy.eq(1)
                    with m.If(att.last_write):
                        m.d.sync += attmode.eq(0)
                        m.next = "FETCH"
                if has_dw:
                    with m.State("DWRUN"):
                        m.d.comb += busy.eq(1)
                        with m.If(dw_issue()):
                            m.next = "DRAIN"
            if has_pool:
                with m.State("PSETUP"):
                    m.d.comb += busy.eq(1)
                    with m.If(~pool_ok):
                        fail(op)
                    with m.Else():
                        pool_setup()
                        m.next = "PRUN"
                with m.State("PRUN"):
                    m.d.comb += busy.eq(1)
                    with m.If(pool_issue()):
                        m.next = "PDRAIN"
                with m.State("PDRAIN"):
                    m.d.comb += busy.eq(1)
                    with m.If(pool_last_write):
                        m.next = "FETCH"
        return m

    # ---- global average pooling on the AUX unit's adder tree ------------------------------------
    def _pool(self, m, regs, word, fld, ks):
        """POOL: per channel, sum NTOK tokens ``width`` at a time (one adder-tree pass per cycle,
        ``ceil(NTOK/width)`` cycles per channel, as sim.perf), then requant (no bias) and write
        one byte per channel at ``o_addr + channel``.

        ``ks`` high: ATT_KSUM (attention step ii, ``sim.golden.attention_steps``): the same on the
        ``DIM`` rows of K (at ``x_addr`` in ``XBUF``: the core's buffer A, or B) with ReLU on the
        inputs, the head's one parameter record (``ks_b``, ``ks_c``: fields 2, 3), no offset or
        activation, and uint8 saturation: ksum8, one byte per row."""
        W = self.width
        tf = lambda n: fld(word, "POOL", n)     # noqa: E731
        nco, ntok = Mux(ks, regs["DIM"][:12], tf("nco")), regs["NTOK"]
        c, t0 = Signal(13), Signal(CNT)     # tokens: SHAPE_LIMITS["pool_tokens"]
        xa = Signal(ADDR_BITS)              # the address of channel c's first token
        # BLOCK = b (sim.isa.REG_LIMITS): channel c, token t at xa + (t << b), the tokens of a
        # read 2**b apart; xa steps by 1 inside a block and to the next block's base
        # (XSTRIDE - 2**b + 1) when c + 1 completes one. b = 0: the planar addresses.
        blk = regs["BLOCK"][:3]
        bsz = Signal(8, name="pool_bsz")
        m.d.comb += bsz.eq(Const(1, 8) << blk)
        # tx = t0 << b, a running sum stepped with t0 (no shifter of the token count)
        tx = Signal(ADDR_BITS)
        m.d.comb += [self.x.buf.eq(regs["XBUF"][:3]), self.x.row_stride.eq(0),
                     self.x.elem_stride.eq(bsz),
                     self.x.addr.eq((xa + tx)[:ADDR_BITS])]
        v1, f1, l1, mask1 = Signal(), Signal(), Signal(), Signal(W)
        m.d.sync += v1.eq(0)
        xs = regs["XSIGNED"][0]
        vals = [Mux(mask1[i] & ~(ks & xs & self.x.data[0][i][7]),
                    _byte(self.x.data[0][i], regs["XSIGNED"]), 0)
                for i in range(W)]
        tot = Signal(signed(16 + W.bit_length()))
        m.d.comb += tot.eq(sum(vals))
        psum, hold = Signal(signed(32)), Signal(signed(32))
        d2 = Signal()
        with m.If(v1):
            m.d.sync += psum.eq(Mux(f1, tot, psum + tot))
        m.d.sync += d2.eq(v1 & l1)
        # channel totals: parameter read, then requant
        c_o, c_w = Signal(13), Signal(13)
        m.d.comb += [self.p.en.eq(d2), self.p.buf.eq(1),
                     self.p.addr.eq(tf("p_addr") + Mux(ks, 0, c_o * 32)),
                     self.p.row_stride.eq(0), self.p.elem_stride.eq(1)]
        d3 = Signal()
        m.d.sync += d3.eq(d2)
        with m.If(d2):
            m.d.sync += [hold.eq(psum), c_o.eq(c_o + 1)]
        rec = self.p.data[0].as_value()
        rq = Requant(out_bits=16, signed=True, residual=False, hswish=True, hswish_in_bits=16)
        m.submodules.requant = rq
        m.d.comb += [rq.acc.eq(hold), rq.b.eq(Mux(ks, rec[64:80], rec[32:48])),
                     rq.c.eq(Mux(ks, rec[96:102], rec[64:70])),
                     rq.offset.eq(Mux(ks, 0, rec[96:128].as_signed())),
                     rq.relu_en.eq(~ks & (regs["ACT"] == ACTS["relu"])),
                     rq.hswish_en.eq(~ks & (regs["ACT"] == ACTS["hswish"])),
                     rq.three.eq(regs["THREE"][:16]), rq.hb.eq(rec[192:208]),
                     rq.hc.eq(rec[224:230]), rq.in_valid.eq(d3)]
        y = Signal(signed(16))      # int8 (OSIGNED, not ATT_KSUM) or uint8
        m.d.comb += y.eq(_saturate8(rq.out, regs["OSIGNED"][0] & ~ks))
        m.d.comb += [self.o.en.eq(rq.out_valid), self.o.buf.eq(tf("obuf")), self.o.wide.eq(0),
                     self.o.elem_stride.eq(1), self.o.mask.eq(1), self.o.data[0].eq(y),
                     self.o.addr.eq(tf("o_addr") + c_w)]
        last_write = Signal()
        m.d.comb += last_write.eq(rq.out_valid & (c_w + 1 == nco))
        with m.If(rq.out_valid):
            m.d.sync += c_w.eq(c_w + 1)
        ok = Signal()
        lo_b, hi_b = REG_LIMITS["POOL"]["BLOCK"]
        m.d.comb += ok.eq((regs["BLOCK"] >= lo_b) & (regs["BLOCK"] <= hi_b)
                          & Mux(ks, (regs["DIM"] > 0) & (regs["DIM"] < (1 << 12)) & (ntok > 0)
                              & (regs["XSIGNED"] == 1)
                              & ((regs["DIM"][:12] & (bsz - 1)) == 0),
                              (nco > 0) & (ntok > 0) & (regs["RES_ADDR"] < 0)
                              & (regs["NOEPI"] == 0) & (regs["OBITS"] == 8)
                              & ((regs["ACT"] != ACTS["hswish"]) | (regs["MIDBITS"] == 16))))

        def setup():
            m.d.sync += [c.eq(0), t0.eq(0), tx.eq(0), c_o.eq(0), c_w.eq(0),
                         xa.eq(tf("x_addr"))]

        # token t0 + i exists (ntok - t0 > i) and the channel's last step (ntok - t0 <= W)
        # from one difference (_above), not W + 1 comparators of the token count
        t_rem = Signal(signed(len(ntok) + 1))
        m.d.comb += t_rem.eq(ntok - t0)
        t_left = _above(t_rem, W + 1)

        def issue():
            last_t = ~t_left[W]
            m.d.comb += self.x.en.eq(1)
            m.d.sync += [v1.eq(1), f1.eq(t0 == 0), l1.eq(last_t),
                         mask1.eq(Cat(*t_left[:W]))]
            with m.If(last_t):
                m.d.sync += [t0.eq(0), tx.eq(0), c.eq(c + 1),
                             xa.eq(xa + Mux(((c + 1) & (bsz - 1)) == 0,
                                            regs["XSTRIDE"] - bsz + 1, 1))]
            with m.Else():
                m.d.sync += [t0.eq(t0 + W), tx.eq(tx + (Const(W, 7) << blk))]
            return last_t & (c + 1 == nco)
        return issue, setup, last_write, ok

    # ---- depthwise (R-MAC self-accumulation) ---------------------------------------------------
    def _depthwise(self, m, regs, tf, dwmode, eng, rq_lanes, dw_last_write, supported,
                   df_supported, op, code, ns):
        """DW_RSA: N channels x M output columns of one output row per tile, k*k steps
        (stride 2: even columns then odd columns, docs/hw-engines.md); the tile's N x M results
        are held and requantized channel by channel, R pixels (the requant lanes) per cycle, each
        lane with the channel's parameter record from its own row of ``p`` (row stride 0):
        ``D = N * M / R`` cycles per tile. With R = M, N + 1 <= k*k is required (the hold bank is
        free again when the next tile's results arrive); with R < M a tile's last step waits
        until at least D + 1 cycles after the previous tile's (``sim.timing.drain_stall``).
        Returns ``(issue, setup)``: ``issue()`` emits one step's logic for the DWRUN state and
        returns "this is the last step"; ``setup()`` resets the tile counters."""
        N, M = self.width, self.lanes
        R, Rr = self.requant_lanes, self.requant_res_lanes
        MR = M // R             # drain cycles per channel
        MRr = M // Rr           # ... with a residual (through the Rr residual lanes)
        rmode = ns["rmode"]

        def dsel(normal, residual):
            return normal if Rr == R else Mux(rmode, residual, normal)
        kk = Signal(6)
        k = regs["KERNEL"][:3]
        st2 = regs["STRIDE"] == 2
        nco, npix = ns["nco"], ns["npix"]
        # tile counters at the widths of what they count (c0 < nco < 2**12, oy < ho < 2**11,
        # ox0 < WOUT <= 2**12: the 12- and 11-bit fields of sim.isa, the clamp of REG_STORE);
        # a counter steps only while it stays below its bound, except that c0 wraps after the
        # last tile, when nothing reads it any more
        c0, oy, ox0 = Signal(12), Signal(11), Signal(12)
        ky, ph, e = Signal(3), Signal(1), Signal(3)
        kx = Signal(3)
        m.d.comb += [kk.eq(k * k), kx.eq(Mux(st2, (e << 1) | ph, e))]
        ne = Signal(3)                       # taps in this phase
        m.d.comb += ne.eq(Mux(st2, Mux(ph, k >> 1, (k + 1) >> 1), k))
        last_e = e + 1 == ne
        last_ph = ~st2 | ph
        last_ky = ky + 1 == k
        last_ox = ox0 + M >= regs["WOUT"]
        last_oy = oy + 1 == tf("ho")
        last_c = c0 + N >= nco
        last_tap = last_e & last_ph & last_ky
        # R < M: the tile's last step waits until the hold bank is free (D + 1 cycles after the
        # previous tile's last step; dgap counts them down)
        dgap_busy = Signal()
        if MRr > 1:
            dgap = Signal(range(N * MRr + 1))
            m.d.comb += dgap_busy.eq(dgap != 0)
            with m.If(dgap_busy):
                m.d.sync += dgap.eq(dgap - 1)
        # row segment of this step: padded row iy = oy*s + ky, padded column start (s = 1 or 2)
        row = Signal(signed(14))            # -7 .. 2 * 2046 + 4
        m.d.comb += row.eq(Mux(st2, oy << 1, oy) + ky - tf("pad_t"))
        # -256 .. 2 * 4095 + 1 + 1 (REG_STORE keeps PAD_L in -1 .. 256: DW_RSA does not check it)
        col0 = Signal(signed(15))
        m.d.comb += col0.eq(Mux(st2, (ox0 << 1) + ph, ox0) - regs["PAD_L"])
        # column col0 + i*s (s = 1 or 2) is inside the row: -col0 <= i*s < WIN - col0
        c_negv, c_winv = Signal(signed(14)), Signal(signed(17))    # WIN <= 2**15
        m.d.comb += [c_negv.eq(-col0), c_winv.eq(regs["WIN"] - col0)]
        c_neg, c_win = _above(c_negv, 2 * self.row_len), _above(c_winv, 2 * self.row_len)
        rowok = Signal()        # the row is inside the input: 0 <= row < hin
        m.d.comb += rowok.eq(~row[-1] & (row < tf("hin")))
        # address products as running sums (mod 2^ADDR_BITS, the ports' width), each with its
        # base address folded in at setup (one adder fewer per port): c0x = x_addr + c0 *
        # XSTRIDE, yoff = row * WIN, ybase = (oy*s - pad_t) * WIN, c0kk = w_addr + c0 * k*k
        A = ADDR_BITS
        win, xst = regs["WIN"][:A], regs["XSTRIDE"][:A]
        blk, blocked, bsz, cstep = ns["blk"], ns["blocked"], ns["bsz"], ns["cstep"]
        swin = Mux(st2, win << 1, win)
        pt = tf("pad_t")
        padw = Signal(A)        # pad_t * WIN (pad_t: 3 bits, shift-and-add)
        m.d.comb += padw.eq(sum(Mux(pt[i], win << i, 0) for i in range(len(pt))))
        c0x, yoff, ybase, c0kk = (Signal(A, name=f"dw_{n}") for n in ("c0x", "yoff", "ybase",
                                                                      "c0kk"))
        xr = self.xr
        # blocked (BLOCK = b): the N channels 1 apart, pixels (columns, rows) shifted by b
        m.d.comb += [xr.buf.eq(regs["XBUF"][:3]),
                     xr.row_stride.eq(Mux(blocked, 1, regs["XSTRIDE"])),
                     xr.elem_stride.eq(Mux(st2, 2, 1) << blk),
                     xr.addr.eq(c0x + ((yoff + col0) << blk))]
        # stage-1 tags
        v1, f1, l1, ld1 = Signal(), Signal(), Signal(), Signal()
        colok1 = Signal(self.row_len)       # column i of the segment is read (row and column)
        m.d.sync += v1.eq(0)
        with m.If(dwmode):
            m.d.comb += [eng.valid.eq(v1), eng.first.eq(f1), eng.last.eq(l1), eng.load.eq(ld1)]
            # weights come through the x port from buffer C, pre-tiled (sim.isa): the tap
            # ky*k+kx of channels c0 .. c0+N-1 is one N-byte word at w_addr + (c0/N * k*k + tap)
            # * N, the first two terms in c0kk
            m.d.comb += [self.x.buf.eq(1), self.x.elem_stride.eq(1), self.x.row_stride.eq(0),
                         self.x.addr.eq(c0kk + (ky * k + kx) * N)]
        for j in range(N):
            m.d.comb += eng.dw_w[j].eq(self.x.data[0][j].as_signed())
            for i in range(self.row_len):
                m.d.comb += eng.dw_row[j][i].eq(Mux(colok1[i],
                                                    _byte(xr.data[j][i], regs["XSIGNED"]), 0))

        def issue():
            if MRr > 1:     # the tile's last step waits while the hold bank drains
                hold_ = Signal(name="dw_hold")
                m.d.comb += hold_.eq(last_tap & dgap_busy)
                with m.If(last_tap & ~hold_):
                    m.d.sync += dgap.eq(dsel(N * MR, N * MRr))
            with (m.If(~hold_) if MRr > 1 else nullcontext()):
                m.d.comb += [self.x.en.eq(1), xr.en.eq(e == 0)]
                m.d.sync += [v1.eq(1), f1.eq((ky == 0) & (e == 0) & (ph == 0)), l1.eq(last_tap),
                             ld1.eq(e == 0),
                             colok1.eq(Cat(*[rowok & Mux(st2, ~c_neg[2 * i] & c_win[2 * i],
                                                         ~c_neg[i] & c_win[i])
                                             for i in range(self.row_len)]))]
                with m.If(~last_e):
                    m.d.sync += e.eq(e + 1)
                with m.Elif(~last_ph):
                    m.d.sync += [e.eq(0), ph.eq(1)]
                with m.Elif(~last_ky):
                    m.d.sync += [e.eq(0), ph.eq(0), ky.eq(ky + 1), yoff.eq(yoff + win)]
                with m.Else():
                    m.d.sync += [e.eq(0), ph.eq(0), ky.eq(0)]
                    with m.If(~last_ox):
                        m.d.sync += [ox0.eq(ox0 + M), yoff.eq(ybase)]
                    with m.Elif(~last_oy):
                        m.d.sync += [ox0.eq(0), oy.eq(oy + 1), ybase.eq(ybase + swin),
                                     yoff.eq(ybase + swin)]
                    with m.Else():
                        m.d.sync += [ox0.eq(0), oy.eq(0), c0.eq(c0 + N),
                                     c0x.eq(c0x + cstep(c0, N, xst)),
                                     c0kk.eq(c0kk + kk * N), ybase.eq(-padw), yoff.eq(-padw)]
            last = last_tap & last_ox & last_oy & last_c
            return last & ~hold_ if MRr > 1 else last

        # output side: hold the tile, drain it channel by channel through the R requant lanes,
        # MR = M / R cycles per channel (sub-block ds: pixels ds*R ..)
        # the tile's sums at their exact width (DW_HOLD_BITS; issue #14 round 3)
        hold = [[Signal(signed(DW_HOLD_BITS), name=f"hold_{j}_{mm}") for mm in range(M)]
                for j in range(N)]
        draining, dj, dj1, dv1 = Signal(), Signal(range(N + 1)), Signal(range(N + 1)), Signal()
        if MRr > 1:     # ds: the sub-block of the channel being drained (pixels ds*R ..)
            ds, ds1 = Signal(range(MRr)), Signal(range(MRr))
            ds_last = Signal()
            m.d.comb += ds_last.eq(dsel(ds == MR - 1, ds == MRr - 1))
        # write-side tile counters (tile order = issue order)
        c0w, oyw, ox0w = Signal(12), Signal(11), Signal(12)
        c0r, oyr, ox0r = Signal(12), Signal(11), Signal(12)   # read (p/r request) side
        # running products (mod 2^A): prow_* = oy* * WOUT, cb_* = base + c0* * stride, and
        # ch_r = RES_ADDR + (c0r + dj) * RSTRIDE, ch_w = o_addr + (c0w + jw) * OSTRIDE for the
        # channel being drained (the base addresses folded in at setup)
        wout, rst, ost = regs["WOUT"][:A], regs["RSTRIDE"][:A], regs["OSTRIDE"][:A]
        prow_r, cb_r, ch_r, prow_w, cb_w, ch_w = (
            Signal(A, name=f"dw_{n}") for n in ("prow_r", "cb_r", "ch_r", "prow_w", "cb_w", "ch_w"))
        with m.If(eng.pixel_valid & dwmode):
            m.d.sync += [hold[j][mm].eq(eng.pixel_out[j][mm]) for j in range(N) for mm in range(M)]
            m.d.sync += [draining.eq(1), dj.eq(0), ch_r.eq(cb_r)]
            if MRr > 1:
                m.d.sync += ds.eq(0)
        with m.Elif(draining):
            if MRr > 1:
                m.d.sync += ds.eq(Mux(ds_last, 0, ds + 1))
            with (m.If(ds_last) if MRr > 1 else nullcontext()):
                m.d.sync += [dj.eq(dj + 1), ch_r.eq(ch_r + cstep(c0r + dj, 1, rst))]
                with m.If(dj + 1 == N):
                    m.d.sync += draining.eq(0)
                    _next_dw_tile(m, ox0r, oyr, c0r, M=M, N=N, wout=regs["WOUT"], ho=tf("ho"),
                                  prow=prow_r, cbase=cb_r, cstep=cstep(c0r, N, rst))
        m.d.sync += [dv1.eq(draining & dwmode), dj1.eq(dj)]
        if MRr > 1:
            m.d.sync += ds1.eq(ds)
        pixr = Signal(A)
        m.d.comb += pixr.eq(prow_r + ox0r)
        p_en = draining
        reuse = ns["p_reuse"]
        if reuse is not None:
            # p_reuse: the records of the tile's N channels (dprec, in the conv drain's prec
            # where it has them), read once per channel block (dpv[j]: channel c0r + j held)
            # instead of once per sub-block and tile; dropped at setup and when the read side
            # moves on to the next N channels
            prec = reuse["prec"]
            dprec = [prec[j] if j < len(prec) else Signal(256, name=f"dw_prec_{j}")
                     for j in range(N)]
            dpv, dhit = Signal(N, name="dw_p_valid"), Signal(name="dw_p_hit")
            m.d.comb += dhit.eq(dpv.bit_select(dj, 1))
            p_en = draining & ~dhit
            m.d.sync += reuse["dw_hit1"].eq(draining & dwmode & dhit)
            with m.If(draining & dwmode & ~dhit):
                for j in range(N):
                    with m.If(dj == j):
                        m.d.sync += dpv[j].eq(1)
            block_end = (draining & (ds_last if MRr > 1 else 1) & (dj + 1 == N)
                         & ~(ox0r + M < regs["WOUT"]) & ~(oyr + 1 < tf("ho")))
            with m.If(reuse["p_drop"] | block_end):
                m.d.sync += dpv.eq(0)
            with m.If(dv1 & ~reuse["dw_hit1"]):
                for j in range(N):
                    with m.If(dj1 == j):
                        m.d.sync += dprec[j].eq(self.p.data[0].as_value() & REC_USED)
            with m.Switch(dj1):
                for j in range(N):
                    with m.Case(j):
                        m.d.comb += reuse["dw_rec"].eq(dprec[j])
        with m.If(dwmode):
            # the channel's parameter record in every row of p (row stride 0): each requant
            # lane reads its fields from its own row, as in a conv (no per-lane multiplexer)
            m.d.comb += [self.p.en.eq(p_en), self.p.addr.eq(tf("p_addr") + (c0r + dj) * 32),
                         self.p.row_stride.eq(0),
                         self.r.en.eq(draining & ns["has_res"]),
                         self.r.elem_stride.eq(Mux(blocked, bsz, 1)),
                         self.r.addr.eq(ch_r + ((pixr + ds * Rr) << blk) if MRr > 1 else
                                        ch_r + (pixr << blk))]
            for mm, rq in enumerate(rq_lanes):
                # lane mm requantizes pixel q*R + mm (residual mode: q*Rr + mm) of channel dj1,
                # q = ds1 the sub-block: q < MR in normal mode, q < MRr in residual mode on the
                # Rr residual lanes (the other lanes' outputs are masked then: their selection
                # ignores the mode and decodes only the bits of ds1 normal mode uses)
                hsel = Signal(signed(DW_HOLD_BITS), name=f"hsel_{mm}")
                res_lane = Rr < R and mm < Rr
                nq = MRr if res_lane else MR
                qb = (nq - 1).bit_length()
                with m.Switch(Cat(ds1[:qb], dj1) if qb else dj1):
                    for j in range(N):
                        for q in range(nq):
                            if q >= MR:             # residual mode only
                                v = hold[j][q * Rr + mm]
                            elif res_lane and q:    # both modes, different pixels
                                v = dsel(hold[j][q * R + mm], hold[j][q * Rr + mm])
                            else:
                                v = hold[j][q * R + mm]
                            with m.Case((j << qb) | q):
                                m.d.comb += hsel.eq(v)
                # the lane's parameter fields and bias come from row mm of p, as for a conv:
                # every row holds the channel's record (row stride 0)
                m.d.comb += [ns["lane_in"][mm].eq(hsel), rq.in_valid.eq(dv1)]
            # writes: channel c0w + jw, R pixels of row oyw from column ox0w + ws*R
            jw = Signal(range(N + 1))
            wr = rq_lanes[0].out_valid
            if MRr > 1:      # ws: the sub-block being written, column x0 = ox0w + ws*R
                ws = Signal(range(MRr))
                ws_last = Signal()
                m.d.comb += ws_last.eq(dsel(ws == MR - 1, ws == MRr - 1))
                x0, wr_ch = ox0w + dsel(ws * R, ws * Rr), wr & ws_last
            else:
                x0, wr_ch = ox0w, wr
            m.d.comb += [self.o.en.eq(wr), self.o.wide.eq(0),
                         self.o.elem_stride.eq(Mux(blocked, bsz, 1)),
                         self.o.addr.eq(ch_w + ((prow_w + x0) << blk))]
            x_rem = Signal(signed(15))      # column x0 + mm exists: WOUT - x0 > mm
            m.d.comb += x_rem.eq(regs["WOUT"] - x0)
            x_left = _above(x_rem, R)
            for mm in range(M):
                if mm < R:
                    ok = x_left[mm] & (c0w + jw < nco)
                    m.d.comb += self.o.mask[mm].eq(ok if mm < Rr else ok & ~rmode)
                else:
                    m.d.comb += self.o.mask[mm].eq(0)
            tile_end = (jw + 1 == N) & ws_last if MRr > 1 else jw + 1 == N
            m.d.comb += dw_last_write.eq(wr & tile_end & (ox0w + M >= regs["WOUT"])
                                         & (oyw + 1 == tf("ho")) & (c0w + N >= nco))
            if MRr > 1:
                with m.If(wr):
                    m.d.sync += ws.eq(Mux(ws_last, 0, ws + 1))
            with m.If(wr_ch):
                m.d.sync += [jw.eq(jw + 1), ch_w.eq(ch_w + cstep(c0w + jw, 1, ost))]
                with m.If(tile_end):
                    # back to the tile's first channel, or on to the next N channels
                    last_tile_row = (ox0w + M >= regs["WOUT"]) & (oyw + 1 >= tf("ho"))
                    m.d.sync += [jw.eq(0), ch_w.eq(Mux(last_tile_row,
                                                       cb_w + cstep(c0w, N, ost), cb_w))]
                    _next_dw_tile(m, ox0w, oyw, c0w, M=M, N=N, wout=regs["WOUT"], ho=tf("ho"),
                                  prow=prow_w, cbase=cb_w, cstep=cstep(c0w, N, ost))
        dw_ok = Signal()
        m.d.comb += dw_ok.eq((regs["KERNEL"] >= 1) & (regs["KERNEL"] <= self.max_kernel)
                             & ((regs["STRIDE"] == 1) | (regs["STRIDE"] == 2))
                             & ((kk >= N + 1) if MRr == 1 else 1)   # k*k of KERNEL[:3] <= 25
                             & (regs["NOEPI"] == 0)
                             & (regs["OBITS"] == 8)
                             & ((regs["ACT"] != ACTS["hswish"]) | (regs["MIDBITS"] == 16))
                             & (nco > 0) & (tf("ho") > 0) & (regs["WOUT"] > 0)
                             & ns["regs_ok"]
                             & _block_ok(blk, N))
        m.d.comb += supported.eq(Mux(op == code["DW_RSA"], dw_ok, df_supported))

        def setup():
            m.d.sync += [c0.eq(0), oy.eq(0), ox0.eq(0), ky.eq(0), ph.eq(0), e.eq(0),
                         c0w.eq(0), oyw.eq(0), ox0w.eq(0), jw.eq(0), c0r.eq(0), oyr.eq(0),
                         ox0r.eq(0), c0x.eq(tf("x_addr")), c0kk.eq(tf("w_addr")),
                         ybase.eq(-padw), yoff.eq(-padw),
                         *([ds.eq(0), ws.eq(0), dgap.eq(0)] if MRr > 1 else []),
                         prow_r.eq(0), cb_r.eq(regs["RES_ADDR"][:A]), ch_r.eq(regs["RES_ADDR"][:A]),
                         prow_w.eq(0), cb_w.eq(tf("o_addr")), ch_w.eq(tf("o_addr"))]
        return issue, setup
