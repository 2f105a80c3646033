"""The attention steps of a computing core (paper Sec. V-B, intra-layer pipeline; docs/isa.md).

Integer semantics: :func:`sim.golden.attention_steps` (one head: ``d = DIM`` channels of Q, K, V
each, ``n = NTOK`` tokens, channel stride ``XSTRIDE``; ``ATT_KV_*`` read K at ``x_addr`` in
``XBUF`` (buffer A, or B) and V at ``w_addr`` in B, ``ATT_DIV``/``ATT_OUT`` read Q at ``x_addr``
in ``XBUF`` (B); one 32-byte record at ``p_addr``: ``s_b, s_c, ks_b, ks_c, log2_offset,
log2_emin, out_b, out_c`` as int32). This module builds the sequencer of the steps
that run on an engine; it is elaborated into a MAT or R-MAC :class:`hw.core.unit.Unit` and
shares that unit's engine, gather/scatter ports and requant lanes (``ATT_KSUM`` runs on the AUX
unit's adder tree, in ``Unit._pool``). A unit builds only the steps ``sim.isa.FORMATS`` assigns
to it (``ATT_OPS``): the R-MAC unit has ``ATT_KV_RDF`` alone, the MAT unit all three.

``lanes`` = L (S or M), ``width`` = W (T or N); ``relu(v)`` of an int8 is 0..127.

* ``ATT_KV_MAT`` / ``ATT_KV_RDF`` (step i): ``S[j, i] = requant(sum_n relu(K[j, n]) V[i, n],
  s_b/2^s_c)`` int8. Loop: for each row ``j`` of S, for each block of L columns ``i``,
  ``ceil(n/W)`` steps. Broadcast operand ``x`` = W tokens of row j of K (ReLU'd), weights ``w``
  = the same W tokens of L rows of V. The L results of a block go through the unit's requant
  lanes and are written to ``obuf`` (AUX) in S's tiles of T x S (the MAT engine's; decision,
  docs/isa.md "S in AUX", :func:`sim.isa.att_s_offsets`): ``o_addr + (i // S) * pitch + (j // T)
  * line + (j % T) * S + i % S``, R consecutive bytes of one tile row per write (an R-MAC unit
  whose R does not divide S cannot: ``ok`` low). Busy cycles ``d * ceil(d/L) * ceil(n/W)``
  (= ``sim.perf``).
* ``ATT_DIV`` (step iv, MAT): ``den[t] = sum_j relu(Q[j, t]) * ksum8[j]`` on lane 0 (as
  ``sim.perf``: one lane), ``ceil(d/W)`` steps per token. ``x`` = W entries of ksum8 (uint8, read
  from AUX at ``w_addr``), ``w`` lane 0 = the W values of column t of Q (ReLU'd). ``den`` goes
  through :class:`hw.units.Log2Quantizer` (``log2_offset``, ``log2_emin``); the DIV entry of
  token t, one byte at ``o_addr + t`` of ``obuf`` (DIV), is ``code | (den == 0) << 4``
  (decision: the zero flag the divider needs, ``golden.attention_steps`` step 5, is kept next to
  the 4-bit code; ``sim.funcsim`` stores the bare code, the harness compares ``& 15``).
  Busy cycles ``n * ceil(d/W)``.
* ``ATT_OUT`` (steps iii + v, MAT): ``num[i, t] = sum_j relu(Q[j, t]) S[j, i]``; loop: for each
  block of L rows i, for each token t, ``ceil(d/W)`` steps; ``x`` = W values of column t of Q
  (ReLU'd), ``w[l][k]`` = ``S[j0 + k, i0 + l]`` from AUX: the tile at ``w_addr + (i0 // S) *
  pitch + (j0 // T) * line`` (row stride 1, element stride S: one aligned line). The engine's
  ``num[i0:i0+L, t]`` goes through the unit's requant lanes as a KV vector does (R rows per
  cycle, the drain of ``Unit``), each sub-block with the DIV entry of token t read beside it
  (port ``r``, DIV address t: ``ATT_DIV`` of this head wrote it at ``o_addr`` = 0, as the
  compiler emits and ``sim.funcsim`` reads): ``requant(num,
  Dyadic(out_b, out_c + log2_emin + code))`` (the lane's product and round-half-up shift: one
  rounding), saturated to int8, and 0 where the zero flag is set (the lane's multiplier is then
  0). Written to ``obuf`` at ``o_addr + i*n + t``. Busy cycles ``ceil(d/L) * n * ceil(d/W)``
  (+ the drain's waits when ``ceil(d/W) < L/R``, ``sim.timing``). Decision (issue #14, round
  3): the lanes instead of a shifter array and L ``num * out_b`` products of its own, which
  cost 16 DSP48E2s and about 2 k LUT at S = 8 (docs/hw-core.md).

Registers used: ``DIM``, ``NTOK``, ``XSTRIDE``, ``XBUF``, ``BLOCK`` (channel-blocked K, Q, V
and output, ``sim.isa``: channel ``c``, token ``t`` at ``(c >> b) * XSTRIDE + (t << b) + (c &
(2**b - 1))``, the output's block stride ``NTOK << b``; ``DIM`` whole blocks, the step's L rows
/ W channels inside one); ``XSIGNED = 1``, ``OBITS = 8``, ``OSIGNED = 1`` are required (else
``ok`` is low and the unit stops with ``error``). ksum8
(uint8) is the broadcast operand of ``ATT_DIV``: it needs the engines' 9-bit activation operand.
"""

from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal, signed

from hw.units import Log2Quantizer
from sim.isa import (
    BUFS,
    FORMATS,
    REG_LIMITS,
    SHAPE_LIMITS,
    WIDTHS,
    att_kv_fits,
    att_s_line,
)
from sim.numerics import MULT_BITS

from .ports import ADDR_BITS

__all__ = ["AttentionSequencer", "ATT_OPS", "ATT_STEP", "REC_FIELDS"]

KV, DIV, OUT = 0, 1, 2
#: the step each engine attention opcode performs (``ATT_KSUM`` runs on the AUX unit's adder
#: tree, ``Unit._pool``, not here)
ATT_STEP = {"ATT_KV_MAT": KV, "ATT_KV_RDF": KV, "ATT_DIV": DIV, "ATT_OUT": OUT}
#: the engine attention opcodes each unit kind executes, read from the unit column of
#: ``sim.isa.FORMATS``; a unit builds the hardware of these steps only (the R-MAC unit runs
#: ``ATT_KV_RDF`` alone: no log2 module there)
ATT_OPS = {kind: tuple(op for op, (_, unit, _) in FORMATS.items()
                       if unit == kind and op in ATT_STEP)
           for kind in ("MAT", "RMAC")}
#: the 8 int32 fields of an attention head's parameter record (sim.compile.records.attention_block)
REC_FIELDS = ("s_b", "s_c", "ks_b", "ks_c", "log2_offset", "log2_emin", "out_b", "out_c")
CNT = 24        #: token counter bits (SHAPE_LIMITS["att_tokens"] is 1..2**CNT - 1: test_contract)


class AttentionSequencer:
    """The attention sequencer of one MAT / R-MAC unit (see the module doc).

    Built by ``Unit.elaborate`` into the unit's module ``m`` *after* the conv and depthwise
    paths: while ``attmode`` is high its combinational assignments override theirs on the shared
    gather/scatter ports, the engine inputs and the requant lanes' controls.

    ``ctx`` (from the unit): ``regs``, ``tf`` (a tile field of the current instruction word),
    ``op`` (its opcode), ``code`` (opcode numbers), ``eng``, ``e_x``, ``e_w`` (engine operands),
    ``e_valid`` (engine result pulse), ``acc`` (the results latched at ``e_valid``), ``o1``
    (``e_valid`` one cycle later), ``rq_lanes`` and ``results`` (the requant lanes and their
    ``(sum, saturated output)`` signals), ``attmode`` (a register the unit sets while an ATT
    instruction runs). Hooks for the unit's FSM: ``setup()`` (in the setup state: reads the
    parameter record, resets the counters), ``issue()`` (one engine step; returns "last step"),
    ``ok`` (the register settings are supported), ``last_write`` (the instruction's last
    output is written this cycle).
    """

    def __init__(self, unit, m, ctx):
        self.unit = unit
        L, W = unit.lanes, unit.width
        regs, tf, op, code = ctx["regs"], ctx["tf"], ctx["op"], ctx["code"]
        e_x, e_w = ctx["e_x"], ctx["e_w"]
        acc, o1, e_valid = ctx["acc"], ctx["o1"], ctx["e_valid"]
        attmode = ctx["attmode"]
        drain = ctx["drain"]        # the unit's requant drain (Unit._elaborate_datapath)
        R = unit.requant_lanes
        x, w, p, r, o = unit.x, unit.w, unit.p, unit.r, unit.o
        a = lambda v: v[:ADDR_BITS]         # noqa: E731  (address arithmetic wraps at ADDR_BITS)

        from .unit import _above  # (hw.core.unit imports this module)

        # widths (docs/hw-core.md "The attention sequencer at its widths"): DIM < 2**12
        # (SHAPE_LIMITS["dim"], checked in `ok`), NTOK < 2**CNT (SHAPE_LIMITS["att_tokens"]);
        # a channel counter holds a position < DIM or, after its last step, one step beyond
        # (< 2**12 + max(L, W)): `ch` bits; a token counter `CNT` bits
        dmax = SHAPE_LIMITS["dim"][1]
        ch = (dmax - 1 + max(L, W)).bit_length()
        d, n, xs = regs["DIM"][:ch], regs["NTOK"][:CNT], a(regs["XSTRIDE"])
        # BLOCK = b (sim.isa.REG_LIMITS): channel c, token t of K, Q, V at (c >> b) * XSTRIDE +
        # (t << b) + (c & (2**b - 1)), of the output at (c >> b) * (NTOK << b) + ...: tokens
        # 2**b apart, the channels of one engine access (L rows, W channels: whole blocks,
        # sim.isa.block_unit_ok) 1 apart, and the running channel sums below step by
        # `cstep`. b = 0: every address is the planar one, at the same cycles.
        blk = regs["BLOCK"][:3]
        blocked = Signal(name="att_blocked")
        bsz = Signal(8, name="att_bsz")
        m.d.comb += [blocked.eq(blk != 0), bsz.eq(Const(1, 8) << blk)]

        def cstep(c, k, stride):
            """Increment of a running channel sum at channel ``c`` stepping by ``k``: planar
            ``k * stride``; blocked ``k`` inside a block, to the next block's base at its end.
            (``bsz - 1`` < 2**7: only the low 7 bits of ``c + k`` count.)"""
            return Mux(blocked, Mux(((c[:7] + k)[:7] & (bsz - 1)[:7]) == 0, stride - bsz + k, k),
                       stride * k)
        # S in AUX in tiles of TS x SS (the MAT engine's T x S; sim.isa.att_s_offsets): a tile
        # is a line of `line` bytes, a column block of SS columns is `pitch` = ceil(d/TS) lines
        SS, TS = unit.aux_tile
        line = att_s_line(SS, TS)
        R_w = R if unit.drain > 1 else L            # columns one KV write carries
        # a KV write stays inside one tile row when R_w divides SS (MAT: always); else this
        # unit cannot run ATT_KV (ok low: the unit stops with error)
        kv_fits = att_kv_fits(SS, R_w)
        nt = Signal(range(-(-(1 << 12) // TS) + 1), name="att_ntiles")     # ceil(d / TS)
        pitch = Signal(ADDR_BITS, name="att_pitch")
        if TS & (TS - 1) == 0:
            m.d.comb += nt.eq((d + TS - 1) >> (TS.bit_length() - 1))
        else:
            m.d.comb += nt.eq((d + TS - 1) // TS)
        m.d.comb += pitch.eq(nt << (line.bit_length() - 1))
        # the steps this unit executes (sim.isa.FORMATS): only their hardware is built
        ops = ATT_OPS[unit.kind]
        steps = sorted({ATT_STEP[name] for name in ops})
        has_div, has_out = DIV in steps, OUT in steps
        aop = Signal(2, name="att_op")
        if len(steps) == 1:
            m.d.comb += aop.eq(steps[0])
        else:
            with m.Switch(op):
                for name in ops:
                    with m.Case(code[name]):
                        m.d.comb += aop.eq(ATT_STEP[name])
        is_kv, is_div, is_out = aop == KV, aop == DIV, aop == OUT

        def sel(vals):
            """The value of ``{step: value}`` for the running step (steps this unit builds)."""
            items = [(st, v) for st, v in vals.items() if st in steps]
            out = items[0][1]
            for st, v in items[1:]:
                out = Mux(aop == st, v, out)
            return out
        # the steps whose results go through the unit's requant lanes (R at a time: the drain)
        on_lanes = (is_kv | is_out) if has_out else is_kv
        if drain["start"] is not None:
            with m.If(attmode):
                m.d.comb += drain["start"].eq(e_valid & on_lanes)

        # ---- parameter record: read in setup, latched the next cycle -----------------------
        # only the bits the lanes and the log2 module take (sim.isa.LIMITS: s_b, out_b
        # MULT_BITS unsigned, s_c 6 bits, log2_offset, log2_emin 8 bits signed); ATT_OUT's
        # shift keeps 6 bits of out_c + log2_emin + code, so the sum of the first two (6 bits)
        # is formed once here. ks_b / ks_c are ATT_KSUM's (the AUX unit's adder tree).
        fld = {f: p.data[0].as_value()[32 * i:32 * i + 32] for i, f in enumerate(REC_FIELDS)}
        rec = {"s_b": Signal(MULT_BITS, name="att_s_b"), "s_c": Signal(6, name="att_s_c"),
               "log2_offset": Signal(signed(8), name="att_log2_offset"),
               "log2_emin": Signal(signed(8), name="att_log2_emin"),
               "out_b": Signal(MULT_BITS, name="att_out_b_rec"),
               "out_ce": Signal(6, name="att_out_ce")}
        p_pend = Signal()
        m.d.sync += p_pend.eq(0)
        with m.If(p_pend):
            m.d.sync += [rec[f].eq(fld[f][:len(rec[f])]) for f in
                         ("s_b", "s_c", "log2_offset", "log2_emin", "out_b")]
            m.d.sync += rec["out_ce"].eq(fld["out_c"][:6] + fld["log2_emin"][:6])

        # ---- loop limits per step: (outer, middle) loop of output vectors, inner reduction --
        tok_mid = has_div or has_out        # the middle loop counts tokens (DIV, OUT)
        mw = CNT if tok_mid else ch
        o_lim, o_step = Signal(ch, name="att_o_lim"), Signal(ch, name="att_o_step")
        m_lim, m_step = Signal(mw, name="att_m_lim"), Signal(ch, name="att_m_step")
        i_lim = Signal(CNT, name="att_i_lim")
        with m.Switch(aop):
            with m.Case(KV):        # rows j of S, blocks of L columns i, tokens
                m.d.comb += [o_lim.eq(d), o_step.eq(1), m_lim.eq(d), m_step.eq(L), i_lim.eq(n)]
            if has_div:
                with m.Case(DIV):   # tokens, channels of Q
                    m.d.comb += [o_lim.eq(1), o_step.eq(1), m_lim.eq(n), m_step.eq(1),
                                 i_lim.eq(d)]
            if has_out:
                with m.Case(OUT):   # blocks of L rows i, tokens, channels of Q
                    m.d.comb += [o_lim.eq(d), o_step.eq(L), m_lim.eq(n), m_step.eq(1),
                                 i_lim.eq(d)]

        def ends(lim, pos, by, name):
            """``pos + k >= lim`` with ``k = by[step]`` (a constant per step), from one
            difference and a thermometer code of it (``_above``), not an adder and a
            comparator."""
            rem = Signal(signed(max(len(lim), len(pos)) + 1), name=f"att_{name}_rem")
            m.d.comb += rem.eq(lim - pos)
            th = _above(rem, max(by.values()) + 1)
            return sel({st: ~th[k] for st, k in by.items()})

        def lasts(outer, mid, name):
            """(last middle position, last position) of an (outer, middle) loop position."""
            last_m, last = Signal(name=f"att_{name}_last_m"), Signal(name=f"att_{name}_last")
            m.d.comb += [last_m.eq(ends(m_lim, mid, {KV: L, DIV: 1, OUT: 1}, name + "_m")),
                         last.eq(last_m & ends(o_lim, outer, {KV: 1, DIV: 1, OUT: L},
                                               name + "_o"))]
            return last_m, last

        def step(outer, mid, last_m):
            """Advance an (outer, middle) loop position."""
            with m.If(last_m):
                m.d.sync += [mid.eq(0), outer.eq(outer + o_step)]
            with m.Else():
                m.d.sync += mid.eq(mid + m_step)

        # ---- issue side ---------------------------------------------------------------------
        # oc: channels (KV rows j, OUT blocks of L rows); mc: KV blocks of L channels, DIV and
        # OUT tokens; ic: KV tokens, DIV and OUT channels
        oc, mc, ic = Signal(ch, name="att_oc"), Signal(mw, name="att_mc"), Signal(CNT,
                                                                                  name="att_ic")
        # address sums as running sums, stepped with their index (mod 2^ADDR_BITS), each
        # register shared by steps that never run at once, the first two with the operand's
        # base address folded in (reset to it, not to 0: one adder less per address):
        # ocx: KV x_addr + oc * XSTRIDE, OUT w_addr + (oc / SS) * pitch (its tile column of S);
        # mcx: KV w_addr + mc * XSTRIDE, DIV and OUT x_addr + (mc << b) (the token); icx: KV
        # ic << b (the token), DIV and OUT ic * XSTRIDE; icl: OUT (ic / TS) * line (its tile
        # row of S)
        ocx, mcx, icx = (Signal(ADDR_BITS, name=f"att_{s}") for s in ("ocx", "mcx", "icx"))
        icl = Signal(range(-(-(1 << 12) // W) * line + 1), name="att_icl")
        # the engine step's stage-1 tags (valid, first, last, element mask) are the conv
        # sequencer's registers (``stage1``: the unit runs one instruction at a time, and an
        # instruction's last step is tagged long before its last write ends it)
        v1, f1, l1, mask1 = ctx["stage1"]
        div1 = Signal()
        xb, wb = a(tf("x_addr")), a(tf("w_addr"))
        ocx0, mcx0 = sel({KV: xb, DIV: xb, OUT: wb}), sel({KV: wb, DIV: xb, OUT: xb})
        xbuf = regs["XBUF"][:3]
        with m.If(attmode):
            m.d.comb += [x.row_stride.eq(0), p.buf.eq(BUFS["C"]), p.addr.eq(tf("p_addr")),
                         p.row_stride.eq(0), p.elem_stride.eq(1), p.en.eq(0), r.en.eq(0)]
            with m.Switch(aop):
                with m.Case(KV):    # x: row j of K (XBUF) from token t0; w: rows i0.. of V (B)
                    m.d.comb += [x.buf.eq(xbuf), x.addr.eq(a(ocx + icx)),
                                 x.elem_stride.eq(bsz),
                                 w.buf.eq(BUFS["B"]), w.addr.eq(a(mcx + icx)),
                                 w.row_stride.eq(Mux(blocked, 1, xs)), w.elem_stride.eq(bsz)]
                if has_div:
                    with m.Case(DIV):   # x: ksum8[j0..] from AUX; w: column t of Q (every lane)
                        m.d.comb += [x.buf.eq(BUFS["AUX"]), x.addr.eq(a(wb + ic)),
                                     x.elem_stride.eq(1),
                                     w.buf.eq(xbuf), w.addr.eq(a(mcx + icx)),
                                     w.row_stride.eq(0),
                                     w.elem_stride.eq(Mux(blocked, 1, xs))]
                if has_out:
                    with m.Case(OUT):   # x: column t of Q; w: the tile of S[j0.., i0..] in AUX
                        m.d.comb += [x.buf.eq(xbuf), x.addr.eq(a(mcx + icx)),
                                     x.elem_stride.eq(Mux(blocked, 1, xs)),
                                     w.buf.eq(BUFS["AUX"]), w.addr.eq(a(ocx + icl)),
                                     w.row_stride.eq(1), w.elem_stride.eq(SS)]
        # engine operands (stage 1: the gather data of the step issued last cycle)
        relu = lambda b: Mux(b[7], 0, b).as_signed()      # noqa: E731  int8 -> 0..127
        if len(e_x[0]) < 9:
            raise ValueError("the attention steps need the engines' 9-bit activation operand "
                             "(ksum8 is uint8)")
        # x: ReLU'd K / Q (KV, OUT), or ATT_DIV's broadcast operand ksum8, uint8 zero-extended:
        # the unit's operand expression with its two mode bits (``x_mode``), masked by mask1
        att_relu, att_raw = ctx["x_mode"]
        m.d.comb += [att_relu.eq(attmode & ~div1), att_raw.eq(attmode & div1)]
        # w: the unit's (V, S: int8 as they are); ATT_DIV reads lane 0's sum alone (den; the
        # other lanes' sums go nowhere: no requant pulse, each vector starts with `first`), so
        # only lane 0 ReLUs Q
        if has_div:
            with m.If(attmode):
                for t in range(W):
                    wd = w.data[0][t]
                    m.d.comb += e_w[0][t].eq(Mux(div1, relu(wd), wd.as_signed()))

        def setup():
            m.d.comb += [p.en.eq(1), p.buf.eq(BUFS["C"]), p.addr.eq(tf("p_addr")),
                         p.row_stride.eq(0), p.elem_stride.eq(1)]
            m.d.sync += [p_pend.eq(1), oc.eq(0), mc.eq(0), ic.eq(0), ro.eq(0), rm.eq(0),
                         wo.eq(0), wm.eq(0), ocx.eq(ocx0), mcx.eq(mcx0), icx.eq(0),
                         icl.eq(0), wox.eq(ob), wsn.eq(0), wjr.eq(0), wcp.eq(0), wcs.eq(0)]

        # the inner loop: "channel / token ic + t exists" (the engine element's mask) and "ic +
        # W >= i_lim" (the vector's last step) from one difference i_lim - ic
        i_rem = Signal(signed(CNT + 1), name="att_i_rem")
        m.d.comb += i_rem.eq(i_lim - ic)
        i_th = _above(i_rem, W + 1)
        i_last = Signal(name="att_i_last")
        m.d.comb += i_last.eq(~i_th[W])
        i_mask = Cat(*i_th[:W])
        iss_last_m, iss_last = lasts(oc, mc, "iss")

        def issue():
            last_i = i_last
            # KV, OUT: a vector's last step waits until the unit's staging register is free
            # (the requant drain, R < L); DIV does not use the requant lanes
            if unit.drain == 1:
                return issue_step(last_i)
            hold = Signal(name="att_hold")
            m.d.comb += hold.eq(last_i & on_lanes & drain["gap_busy"])
            with m.If(last_i & on_lanes & ~hold):
                drain["arm_gap"]()
            with m.If(~hold):
                last = issue_step(last_i)
            return last & ~hold

        def issue_step(last_i):
            m.d.comb += [x.en.eq(1), w.en.eq(1)]
            if has_div:
                m.d.sync += div1.eq(is_div)
            m.d.sync += [v1.eq(1), f1.eq(ic == 0), l1.eq(last_i), mask1.eq(i_mask)]
            last = Signal(name="att_last_step")
            m.d.comb += last.eq(0)
            with m.If(last_i):
                m.d.sync += [ic.eq(0), icx.eq(0), icl.eq(0)]
                m.d.comb += last.eq(iss_last)
                step(oc, mc, iss_last_m)
                # ocx, mcx follow (oc, mc) as step() moves them (KV: o_step = 1, m_step = L;
                # DIV, OUT: mcx the token's offset, m_step = 1); OUT's ocx moves to the next
                # column block of S
                with m.If(iss_last_m):
                    m.d.sync += [mcx.eq(mcx0),
                                 ocx.eq(a(ocx + sel({KV: cstep(oc, 1, xs), DIV: 0,
                                                     OUT: pitch})))]
                with m.Else():
                    m.d.sync += mcx.eq(a(mcx + sel({KV: cstep(mc, L, xs), DIV: bsz,
                                                    OUT: bsz})))
            with m.Else():
                m.d.sync += [ic.eq(ic + W),
                             icx.eq(a(icx + sel({KV: Const(W, 7) << blk,
                                                 DIV: cstep(ic, W, xs),
                                                 OUT: cstep(ic, W, xs)})))]
                if has_out:
                    m.d.sync += icl.eq(icl + line)
            return last

        # ---- result side: DIV entry read for OUT (port r), the requant lanes ----------------
        # OUT reads token t's DIV entry with each sub-block of the drain (``rd``: the cycle its
        # parameter record would be read in a conv), so it arrives with the sub-block (``o1s``);
        # the token counter (ro, rm) steps after the vector's last sub-block is read
        ro, rm = Signal(ch, name="att_ro"), Signal(CNT, name="att_rm")
        if has_out:
            rd_last_m, _ = lasts(ro, rm, "rd")
            with m.If(attmode & drain["rd"]):
                m.d.comb += [r.en.eq(is_out), r.buf.eq(BUFS["DIV"]), r.addr.eq(rm),
                             r.row_stride.eq(0), r.elem_stride.eq(1)]
                with m.If(drain["rd_last"]):
                    step(ro, rm, rd_last_m)
            ent = r.data[0][0]
            # requant(num, Dyadic(out_b, out_c + log2_emin + code)): the shift of the lanes; a
            # zero divisor (flag, bit 4) forces the output to 0 through a zero multiplier
            shift = Signal(6, name="att_shift")
            out_b = Signal(MULT_BITS, name="att_out_b")
            m.d.comb += [shift.eq((rec["out_ce"] + ent[:4])[:6]),
                         out_b.eq(Mux(ent[4], 0, rec["out_b"]))]
        # KV: the unit's requant lanes with s_b / 2^s_c; OUT: with the shift above; no bias,
        # offset, residual or activation (R at a time: the drain's sub-block of the staged
        # vector, ``acc_sel``); the outputs are saturated to int8 (OSIGNED = 1, OBITS = 8)
        with m.If(attmode):
            for s, rq in enumerate(ctx["rq_lanes"]):
                # (the lane's sum is the conv's, acc_sel with the bias gated off in attmode)
                m.d.comb += [rq.b.eq(Mux(is_out, out_b, rec["s_b"]) if has_out
                                     else rec["s_b"]),
                             rq.c.eq(Mux(is_out, shift, rec["s_c"]) if has_out
                                     else rec["s_c"]),
                             rq.offset.eq(0), rq.relu_en.eq(0),
                             rq.hswish_en.eq(0), rq.in_valid.eq(drain["o1s"] & on_lanes)]
                if rq.residual:     # (an R-MAC unit's lanes without it: requant_res_lanes)
                    m.d.comb += [rq.rb.eq(0), rq.rc.eq(0), rq.res.eq(0)]
        # written-vector pulse of each step present (KV, OUT: the requant lanes)
        done = {KV: ctx["rq_lanes"][0].out_valid}
        if has_out:
            done[OUT] = ctx["rq_lanes"][0].out_valid
        if has_div:     # DIV: the log2 module on lane 0, and the zero flag
            # the divisor is below 2**WIDTHS["divisor"] (sim.isa): the accumulator's low bits
            dbits = WIDTHS["divisor"]
            lg = Log2Quantizer(width=dbits, exp_bits=8)
            m.submodules.att_log2 = lg
            zero = Signal(name="att_den_zero")
            m.d.comb += [lg.x.eq(acc[0][:dbits]), lg.offset.eq(rec["log2_offset"]),
                         lg.emin.eq(rec["log2_emin"]),
                         lg.in_valid.eq(attmode & o1 & is_div)]
            m.d.sync += zero.eq(~acc[0][:dbits].any())
            done[DIV] = lg.out_valid

        # ---- write side -----------------------------------------------------------------------
        wo, wm = Signal(ch, name="att_wo"), Signal(mw, name="att_wm")
        wox = Signal(ADDR_BITS, name="att_wox")     # o_addr + KV: row wo's place in its tile,
        #                                             (wo / TS) * line + (wo % TS) * SS; OUT:
        #                                             wo's block offset (wo * n planar); DIV: 0
        wjr = Signal(range(TS), name="att_wjr")     # KV: wo % TS
        wcp = Signal(ADDR_BITS, name="att_wcp")     # KV: (col / SS) * pitch + col % SS;
        #                                             DIV: wm; OUT: wm << b (the token)
        wcs = Signal(range(SS), name="att_wcs")     # KV: col % SS
        wsn = Signal(ADDR_BITS, name="att_wsn")     # OUT: wch * n (the drain's sub-block rows)
        wr = Signal(name="att_wr")
        with m.Switch(aop):
            for st, pulse in done.items():
                with m.Case(st):
                    m.d.comb += wr.eq(attmode & pulse)
        ob = a(tf("o_addr"))
        w_last_m, w_last = lasts(wo, wm, "wr")
        self.last_write = Signal(name="att_last_write")
        # "row / column base + s exists" (s < R): KV column wm + wch + s < d, OUT row wo + wch
        # + s < d, from one difference (KV: wm < d is a channel, its low `ch` bits)
        wch = drain["wch"] if unit.drain > 1 else 0
        o_rem = Signal(signed(ch + 1), name="att_o_rem")
        m.d.comb += o_rem.eq(d - (sel({KV: wm[:ch], DIV: 0, OUT: wo}) + wch))
        o_th = _above(o_rem, R)

        def low(s):
            """Lane s's output word: the saturated byte, the bits above it from the sum, as the
            conv's (the port writes the low byte of an element, ``o.wide = 0``: the upper bits
            are never written, and equal to the conv's they need no multiplexer)."""
            return Cat(ctx["results"][s][1][:8], ctx["results"][s][0][8:])
        with m.If(attmode):
            # every step writes at wox + wcp + wsn (wox from o_addr; each term 0 where a step
            # has none)
            m.d.comb += [o.en.eq(wr), o.buf.eq(tf("obuf")), o.wide.eq(0),
                         o.addr.eq(a(wox + wcp + wsn))]
            with m.Switch(aop):
                with m.Case(KV):    # R columns wm + wch .. of the drain's sub-block
                    m.d.comb += o.elem_stride.eq(1)
                    for s in range(L):
                        if s < R:
                            m.d.comb += [o.mask[s].eq(o_th[s]), o.data[s].eq(low(s))]
                        else:
                            m.d.comb += o.mask[s].eq(0)
                if has_div:
                    with m.Case(DIV):
                        m.d.comb += [o.elem_stride.eq(1), o.mask.eq(1),
                                     o.data[0].eq(Cat(lg.code, zero, Const(0, 3),
                                                      ctx["results"][0][0][8:]))]
                if has_out:
                    with m.Case(OUT):   # R rows wo + wch .. of the drain's sub-block, token wm
                        m.d.comb += o.elem_stride.eq(Mux(blocked, 1, n))
                        for s in range(L):
                            if s < R:
                                m.d.comb += [o.mask[s].eq(o_th[s]),
                                             o.data[s].eq(low(s))]
                            else:
                                m.d.comb += o.mask[s].eq(0)
        if has_out and unit.drain > 1:
            with m.If(wr & is_out):
                m.d.sync += wsn.eq(Mux(drain["w_last"], 0, a(wsn + Mux(blocked, R, n * R))))
        # KV, OUT: a vector's last sub-block
        with m.If(wr & (drain["w_last"] | is_div) if unit.drain > 1 else wr):
            m.d.comb += self.last_write.eq(w_last)
            step(wo, wm, w_last_m)
            if tok_mid:     # DIV, OUT: wcp follows the token wm
                with m.If(~is_kv):
                    m.d.sync += wcp.eq(Mux(w_last_m, 0, a(wcp + sel({DIV: 1, OUT: bsz}))))
            with m.If(w_last_m):
                if has_out:
                    with m.If(is_out):
                        # cstep(wo, L, n << b): planar L * n; blocked L inside a block, else
                        # to the next block's base, (n << b) - 2**b + L = wcp + L (wcp holds the
                        # last token's (n - 1) << b now): no shifter of the token count
                        end = ((wo[:7] + L)[:7] & (bsz - 1)[:7]) == 0
                        m.d.sync += wox.eq(a(wox + Mux(blocked, Mux(end, wcp + L, L), n * L)))
                with m.If(is_kv):   # next row of S: next row of the tile, or the next tile
                    with m.If(wjr == TS - 1):
                        m.d.sync += [wjr.eq(0), wox.eq(wox + (line - (TS - 1) * SS))]
                    with m.Else():
                        m.d.sync += [wjr.eq(wjr + 1), wox.eq(wox + SS)]
        # KV: every write moves the column by R_w (within a tile row, R_w | SS), the row's last
        # write back to column 0
        with m.If(wr & is_kv):
            row_end = w_last_m
            if unit.drain > 1:
                row_end = row_end & drain["w_last"]
            with m.If(row_end):
                m.d.sync += [wcp.eq(0), wcs.eq(0)]
            with m.Elif(wcs + R_w >= SS):
                m.d.sync += [wcp.eq(wcp + pitch - (SS - R_w)), wcs.eq(0)]
            with m.Else():
                m.d.sync += [wcp.eq(wcp + R_w), wcs.eq(wcs + R_w)]

        self.ok = Signal(name="att_ok")
        # BLOCK: in range, and 0 or a block holding the step's channel accesses (KV: L rows of
        # V; DIV: W channels of Q; OUT: W channels of Q, L output rows) and whole heads
        lo_b, hi_b = REG_LIMITS["ATT_OUT"]["BLOCK"]

        def fits(*widths):
            if any(v & (v - 1) for v in widths):
                return blk == 0
            return (blk == 0) | (blk >= max(v.bit_length() - 1 for v in widths))
        wfit = Signal(name="att_block_fits")
        with m.Switch(aop):
            with m.Case(KV):
                m.d.comb += wfit.eq(fits(L))
            if has_div:
                with m.Case(DIV):
                    m.d.comb += wfit.eq(fits(W))
            if has_out:
                with m.Case(OUT):
                    m.d.comb += wfit.eq(fits(L, W))
        blk_ok = Signal(name="att_block_ok")
        m.d.comb += blk_ok.eq((regs["BLOCK"] >= lo_b) & (regs["BLOCK"] <= hi_b) & wfit
                              & ((regs["DIM"][:12] & (bsz - 1)) == 0))
        m.d.comb += self.ok.eq(blk_ok & (d > 0) & (n > 0) & (regs["DIM"] < (1 << 12))
                               & (regs["XSIGNED"] == 1) & (regs["OBITS"] == 8)
                               & (regs["OSIGNED"] == 1) & (~is_kv if not kv_fits else 1))
        self.setup, self.issue = setup, issue
