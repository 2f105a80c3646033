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
* ``CONV_MAT`` (MAT unit) / ``CONV_RDF`` (R-MAC unit, down-forward mode): a pointwise conv or
  linear tile (``KERNEL = 1``, ``STRIDE = 1``, no padding, ``GROUPS = 1``), see below;
* anything else sets ``error`` (sticky) with the opcode in ``error_op`` and halts.

Conv tile schedule (``K = CIN``, ``npix = ho * WOUT``; lanes = S (MAT) or M (R-MAC), width =
T or N): for each output-channel group of ``lanes`` channels, for each pixel, ``ceil(K/width)``
steps; a step reads ``width`` input channels of one pixel (gather port ``x``: stride XSTRIDE)
and ``lanes x width`` weights (port ``w``: row stride K) and feeds the engine. When the engine
delivers a vector of ``lanes`` dot products, the unit reads the ``lanes`` parameter records
(port ``p``, 32 bytes each: bias, mult_b, mult_c, offset, res_b, res_c, hsw_b, hsw_c as in
``sim.compile``) and the residual bytes (port ``r``), adds the bias and runs one
``hw.units.Requant`` per lane (ReLU / Hardswish / residual); the 8-bit results are written to
the OUT (or B/AUX) buffer through the scatter port ``o`` (stride OSTRIDE). ``NOEPI`` writes the
int32 accumulators plus bias instead (the logits).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.engines import MATEngine, RMACEngine
from hw.units import Requant
from sim.isa import ACTS, FORMATS, OPCODE_BITS, REGS

from .ports import ADDR_BITS, SEM_LAYOUT, gather_read_signature, scatter_write_signature

__all__ = ["Unit", "field_slices", "REC_FIELDS"]

#: the 8 int32 fields of a per-channel parameter record (sim.compile.param_block)
REC_FIELDS = ("bias", "mult_b", "mult_c", "offset", "res_b", "res_c", "hsw_b", "hsw_c")
KINDS = ("MAT", "RMAC", "AUX")


def field_slices(op: str) -> dict:
    """``{field: (offset, bits, signed)}`` of opcode ``op`` in the 128-bit word (from sim.isa)."""
    pos, out = OPCODE_BITS, {}
    for name, bits, sgn in FORMATS[op][2]:
        out[name] = (pos, bits, sgn)
        pos += bits
    return out


def _check_int(name, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


class Unit(wiring.Component):
    """A core unit (decoder + registers + engine sequencer). See the module doc.

    Parameters (keyword-only)
    -------------------------
    kind : "MAT", "RMAC" or "AUX"
        Which unit; ``AUX`` has no engine yet (it executes SETR/WAIT/SIGNAL/NOP/HALT only).
    lanes : int, 1..64
        Output channels per step: S (MAT) or M (R-MAC).
    width : int, 1..64
        Reduction elements per step: T (MAT) or N (R-MAC).
    packed : bool
        Use the engine's DSP-packing variant.

    Ports
    -----
    instr : In(stream of 128-bit words)   this unit's instruction queue
    wait, signal : Out(stream of {sem, count})   semaphore handshakes (hw.core.ports)
    x, w, p, r : gather read ports (input pixels, weights, parameter records, residual)
    o : scatter write port (outputs)
    halted : Out(1)   the unit executed HALT (or stopped on an error)
    error : Out(1), error_op : Out(5)   sticky: an unsupported instruction / register setting
    busy_cycles : Out(32)   cycles spent executing compute instructions (for cycle reports)
    """

    def __init__(self, *, kind: str, lanes: int = 8, width: int = 8, packed: bool = False):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.lanes = _check_int("lanes", lanes, 1, 64)
        self.width = _check_int("width", width, 1, 64)
        if not isinstance(packed, bool):
            raise TypeError(f"packed must be a bool, got {packed!r}")
        self.packed = packed
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
            sig.update(x=Out(gather_read_signature(rows=1, elems=width)),
                       w=Out(gather_read_signature(rows=lanes, elems=width)),
                       p=Out(gather_read_signature(rows=lanes, elems=32)),
                       r=Out(gather_read_signature(rows=1, elems=lanes)),
                       o=Out(scatter_write_signature(elems=lanes)))
        super().__init__(sig)

    def _engine(self):
        if self.kind == "MAT":
            e = MATEngine(lanes=self.lanes, multipliers=self.width, packed=self.packed)
            return e, e.x, e.w, e.out, e.out_valid, e.LATENCY
        e = RMACEngine(lanes=self.lanes, macs_per_lane=self.width, packed=self.packed)
        return e, e.df_x, e.df_w, e.lane_out, e.lane_valid, e.DF_LATENCY

    def elaborate(self, platform):
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

        regs = {n: Signal(signed(32), name=f"reg_{n.lower()}") for n in REGS}
        code = {n: FORMATS[n][0] for n in FORMATS}
        compute_op = {"MAT": "CONV_MAT", "RMAC": "CONV_RDF", "AUX": None}[self.kind]

        busy = Signal()
        with m.If(busy):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)

        # ---- conv sequencer state (unused by AUX) ------------------------------------------
        if compute_op is not None:
            eng, e_x, e_w, e_out, e_valid, _lat = self._engine()
            m.submodules.engine = eng
            if self.kind == "RMAC":
                m.d.comb += [eng.mode.eq(RMACEngine.DOWN_FORWARD), eng.load.eq(0)]
            K = Signal(32)          # reduction length
            npix = Signal(24)
            k0 = Signal(32)
            pix = Signal(24)
            co = Signal(13)
            xk = Signal(ADDR_BITS + 12)
            wco = Signal(ADDR_BITS + 12)
            # output side counters
            pix_o, co_o = Signal(24), Signal(13)
            pco_o, rco_o = Signal(ADDR_BITS + 12), Signal(ADDR_BITS + 12)
            pix_w, co_w = Signal(24), Signal(13)
            oco_w = Signal(ADDR_BITS + 12)
            tf = lambda n: fld(word, compute_op, n)
            nco = tf("nco")
            has_res = regs["RES_ADDR"] >= 0
            noepi = regs["NOEPI"][0]
            wide = noepi | (regs["OBITS"] > 8)

            # step tags (stage 1 = the cycle the gather data arrive)
            v1, f1, l1 = Signal(), Signal(), Signal()
            mask1 = Signal(W)
            m.d.sync += v1.eq(0)
            m.d.comb += [eng.valid.eq(v1), eng.first.eq(f1), eng.last.eq(l1)]
            for t in range(W):
                m.d.comb += e_x[t].eq(Mux(mask1[t], self.x.data[0][t].as_signed(), 0))
                for s in range(L):
                    m.d.comb += e_w[s][t].eq(self.w.data[s][t].as_signed())
            m.d.comb += [self.x.buf.eq(regs["XBUF"][:3]), self.x.elem_stride.eq(regs["XSTRIDE"]),
                         self.x.row_stride.eq(0), self.x.addr.eq(xk + pix),
                         self.w.buf.eq(1), self.w.row_stride.eq(K), self.w.elem_stride.eq(1),
                         self.w.addr.eq(wco + k0)]

            # output stage 0: engine result -> acc register, parameter / residual reads
            acc = [Signal(signed(32), name=f"acc_{s}") for s in range(L)]
            o1 = Signal()
            m.d.sync += o1.eq(e_valid)
            with m.If(e_valid):
                m.d.sync += [acc[s].eq(e_out[s]) for s in range(L)]
            m.d.comb += [self.p.en.eq(e_valid), self.p.buf.eq(1), self.p.addr.eq(pco_o),
                         self.p.row_stride.eq(32), self.p.elem_stride.eq(1),
                         self.r.en.eq(e_valid & has_res), self.r.buf.eq(0),
                         self.r.addr.eq(rco_o + pix_o), self.r.row_stride.eq(0),
                         self.r.elem_stride.eq(regs["RSTRIDE"])]
            # output stage 1: bias add, requant lanes
            rq_valid = Signal()
            results = []
            for s in range(L):
                rec = self.p.data[s].as_value()
                f = {n: rec[32 * i:32 * i + 32] for i, n in enumerate(REC_FIELDS)}
                tot = Signal(signed(32), name=f"sum_{s}")
                m.d.comb += tot.eq(acc[s] + f["bias"].as_signed())
                rq = Requant(out_bits=16, signed=True, residual=True, hswish=True,
                             hswish_in_bits=16)
                m.submodules[f"requant_{s}"] = rq
                m.d.comb += [rq.acc.eq(tot), rq.b.eq(f["mult_b"][:16]), rq.c.eq(f["mult_c"][:6]),
                             rq.offset.eq(f["offset"].as_signed()),
                             rq.relu_en.eq(regs["ACT"] == ACTS["relu"]),
                             rq.hswish_en.eq(regs["ACT"] == ACTS["hswish"]),
                             rq.three.eq(regs["THREE"][:16]), rq.hb.eq(f["hsw_b"][:16]),
                             rq.hc.eq(f["hsw_c"][:6]), rq.in_valid.eq(o1 & ~noepi),
                             rq.res.eq(self.r.data[0][s].as_signed()),
                             rq.rb.eq(Mux(has_res, f["res_b"][:16], 0)),
                             rq.rc.eq(Mux(has_res, f["res_c"][:6], 0))]
                if s == 0:
                    m.d.comb += rq_valid.eq(rq.out_valid)
                y = Signal(signed(32), name=f"y_{s}")
                lo = Mux(regs["OSIGNED"][0], -128, 0)
                hi = Mux(regs["OSIGNED"][0], 127, 255)
                m.d.comb += y.eq(Mux(rq.out < lo, lo, Mux(rq.out > hi, hi, rq.out)))
                results.append((tot, y))
            # write stage
            wr = Signal()
            m.d.comb += wr.eq(Mux(noepi, o1, rq_valid))
            m.d.comb += [self.o.en.eq(wr), self.o.buf.eq(tf("obuf")), self.o.wide.eq(wide),
                         self.o.elem_stride.eq(regs["OSTRIDE"]),
                         self.o.addr.eq(oco_w + Mux(wide, pix_w << 2, pix_w))]
            for s, (tot, y) in enumerate(results):
                m.d.comb += [self.o.data[s].eq(Mux(noepi, tot, y)),
                             self.o.mask[s].eq(co_w + s < nco)]
            # output-side counters advance in output order (channel group outer, pixel inner)
            with m.If(e_valid):
                with m.If(pix_o + 1 == npix):
                    m.d.sync += [pix_o.eq(0), co_o.eq(co_o + L), pco_o.eq(pco_o + 32 * L),
                                 rco_o.eq(rco_o + regs["RSTRIDE"] * L)]
                with m.Else():
                    m.d.sync += pix_o.eq(pix_o + 1)
            last_write = Signal()
            m.d.comb += last_write.eq(wr & (pix_w + 1 == npix) & (co_w + L >= nco))
            with m.If(wr):
                with m.If(pix_w + 1 == npix):
                    m.d.sync += [pix_w.eq(0), co_w.eq(co_w + L),
                                 oco_w.eq(oco_w + regs["OSTRIDE"] * L)]
                with m.Else():
                    m.d.sync += pix_w.eq(pix_w + 1)

            supported = Signal()
            m.d.comb += supported.eq((regs["KERNEL"] == 1) & (regs["STRIDE"] == 1)
                                     & (regs["PAD_L"] == 0) & (regs["PAD_R"] == 0)
                                     & (tf("pad_t") == 0) & (tf("pad_b") == 0)
                                     & (regs["GROUPS"] == 1) & (regs["XSIGNED"] == 1)
                                     & (~has_res | (regs["RSIGNED"] == 1))
                                     & (noepi | ((regs["OBITS"] == 8)
                                                 & ((regs["ACT"] != ACTS["hswish"])
                                                    | (regs["MIDBITS"] == 16))))
                                     & (nco > 0) & (tf("ho") > 0))

        # ---- the decoder -------------------------------------------------------------------
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
                            with m.Switch(fld(pay, "SETR", "reg")):
                                for n, idx in REGS.items():
                                    with m.Case(idx):
                                        m.d.sync += regs[n].eq(fld(pay, "SETR", "value"))
                        with m.Case(code["WAIT"], code["SIGNAL"]):
                            pass
                        with m.Case(code["HALT"]):
                            m.next = "HALTED"
                        if compute_op is not None:
                            with m.Case(code[compute_op]):
                                m.next = "SETUP"
                        with m.Default():
                            fail(op_now)
            with m.State("HALTED"):
                m.d.comb += self.halted.eq(1)
            if compute_op is not None:
                with m.State("SETUP"):
                    m.d.comb += busy.eq(1)
                    with m.If(~supported):
                        fail(op)
                    with m.Else():
                        m.d.sync += [K.eq(regs["CIN"] * regs["KERNEL"] * regs["KERNEL"]),
                                     npix.eq(tf("ho") * regs["WOUT"]),
                                     k0.eq(0), pix.eq(0), co.eq(0), xk.eq(tf("x_addr")),
                                     wco.eq(tf("w_addr")),
                                     pix_o.eq(0), co_o.eq(0), pco_o.eq(tf("p_addr")),
                                     rco_o.eq(regs["RES_ADDR"]), pix_w.eq(0), co_w.eq(0),
                                     oco_w.eq(tf("o_addr"))]
                        m.next = "RUN"
                with m.State("RUN"):
                    m.d.comb += [busy.eq(1), self.x.en.eq(1), self.w.en.eq(1)]
                    last_k = Signal()
                    m.d.comb += last_k.eq(k0 + W >= K)
                    m.d.sync += [v1.eq(1), f1.eq(k0 == 0), l1.eq(last_k),
                                 mask1.eq(Cat(*[(k0 + t) < K for t in range(W)]))]
                    with m.If(last_k):
                        m.d.sync += [k0.eq(0), xk.eq(tf("x_addr"))]
                        with m.If(pix + 1 == npix):
                            m.d.sync += [pix.eq(0), co.eq(co + L), wco.eq(wco + K * L)]
                            with m.If(co + L >= nco):
                                m.next = "DRAIN"
                        with m.Else():
                            m.d.sync += pix.eq(pix + 1)
                    with m.Else():
                        m.d.sync += [k0.eq(k0 + W), xk.eq(xk + regs["XSTRIDE"] * W)]
                with m.State("DRAIN"):
                    m.d.comb += busy.eq(1)
                    with m.If(last_write):
                        m.next = "FETCH"
        return m
