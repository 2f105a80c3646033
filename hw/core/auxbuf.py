"""The per-core auxiliary buffer, banked so that it maps onto simple dual-port RAMs.

The AUX buffer carries the attention's intermediates (docs/isa.md): ``S = ReLU(K)^T V`` (int8,
``d x d`` row-major, written by ``ATT_KV_*`` on an engine, read by ``ATT_OUT`` as the MAT's
weight operand: a window of ``T`` rows x ``S`` consecutive columns per cycle) and ``ksum8``
(written one byte per cycle by ``ATT_KSUM`` on the AUX unit, read by ``ATT_DIV`` as the MAT's
broadcast operand: ``T`` consecutive bytes per cycle). Served literally (one memory port per
gathered byte, ``S*T + T`` read ports on a 4 KB array) no synthesis tool can map it to RAM.

Layout (decision, docs/hw-core.md "AUX buffer"): two stores share AUX's address range.

* **E** (engine store): written by the MAT's and the R-MAC's output ports, read by the MAT's
  weight port. ``banks`` = the power of two >= max(S, M) banks, byte ``a`` in bank
  ``a mod banks``, so any ``banks`` consecutive bytes are in distinct banks; ``T`` copies (one
  per element of the weight port: element ``k`` reads the line of consecutive bytes at
  ``addr + k * elem_stride`` from copy ``k``). Every copy takes every write.
* **A** (adder-tree store): written by the AUX unit, read by the MAT's broadcast port; banks =
  the power of two >= T, one copy.

So a read sees the bytes written through the same store: the MAT's weight port reads what the
engines wrote and its broadcast port what the adder tree wrote, which is how the attention
steps use AUX (``sim.funcsim`` checks it: it keeps the two stores apart too). Each bank copy is
a ``lib.memory.Memory`` with one write and one read port (a BRAM18 or LUTRAM); the paper's 4 KB
at T = S = M = 8 is 8 x 4 KB (E) + 4 KB (A) of storage instead of 73 replicas.

Access rules (else the ``error`` bit of the requesting unit is set, sticky): a line is at most
``banks`` bytes at stride 1, so the MAT's weight port needs ``row_stride == 1`` (its rows are the
line), its broadcast port and every output port ``elem_stride == 1``; the MAT and the R-MAC must
not write E in the same cycle to the same bank. Bytes outside the buffer read as 0; writes to
them are dropped (the contract of ``hw.core.ports``).
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..params import check_int, check_pow2
from .ports import ADDR_BITS, gather_read_signature, scatter_write_signature

__all__ = ["AuxBuffer", "BankedStore"]


def _pow2_at_least(n: int) -> int:
    return max(2, 1 << (n - 1).bit_length())


def line_write_signature(banks: int) -> wiring.Signature:
    """Write up to ``banks`` consecutive bytes at ``addr`` (byte ``j`` where ``mask[j]``)."""
    return wiring.Signature({"en": Out(1), "addr": Out(ADDR_BITS), "mask": Out(banks),
                             "data": Out(data.ArrayLayout(unsigned(8), banks))})


def line_read_signature(banks: int) -> wiring.Signature:
    """Read ``banks`` consecutive bytes at ``addr``; ``data`` one cycle after ``en``."""
    return wiring.Signature({"en": Out(1), "addr": Out(ADDR_BITS),
                             "data": In(data.ArrayLayout(unsigned(8), banks))})


class BankedStore(wiring.Component):
    """``depth`` bytes in ``banks`` banks (byte ``a`` in bank ``a mod banks``) x ``copies``.

    Ports (seen from the store): ``write[i]`` (``writers`` line writes; on a bank hit by two
    writers in one cycle the lower-numbered one wins and ``conflict[i]`` of the other pulses),
    ``read[c]`` (one line read per copy, latency 1). Lines wrap at ``2**ADDR_BITS`` like
    the gather ports; bytes at or past ``depth`` read 0 and are not written.
    ``aligned_writes``: every write is of the whole line that holds ``addr`` (the low
    ``log2(banks)`` address bits are ignored; byte ``k`` of ``data`` goes to bank ``k``), which
    saves the ``banks``-way byte multiplexer in front of each bank.
    """

    def __init__(self, *, depth: int, banks: int, copies: int = 1, writers: int = 1,
                 aligned_writes: bool = False):
        if not isinstance(aligned_writes, bool):
            raise TypeError(f"aligned_writes must be a bool, got {aligned_writes!r}")
        self.aligned_writes = aligned_writes
        self.depth = check_int("depth", depth, 1, 1 << 16)
        self.banks = check_pow2("banks", banks, lo=2, hi=64)
        self.copies = check_int("copies", copies, 1, 64)
        self.writers = check_int("writers", writers, 1, 4)
        self.bank_depth = -(-depth // banks)
        self.mems = [[Memory(shape=unsigned(8), depth=self.bank_depth, init=[])
                      for _ in range(banks)] for _ in range(copies)]
        super().__init__({
            "write": In(line_write_signature(banks)).array(writers),
            "read": In(line_read_signature(banks)).array(copies),
            "conflict": Out(writers),
        })

    def elaborate(self, platform):
        m = Module()
        P, lg = self.banks, self.banks.bit_length() - 1
        row_bits = ADDR_BITS - lg
        # bank b holds bytes b, b + P, ...: its local rows below lim[b] are inside the buffer
        lim = [-(-(self.depth - b) // P) for b in range(P)]

        def local_row(addr, b, name):
            """Bank ``b``'s local row in the line at ``addr`` (banks below ``addr mod P`` hold
            the line's tail, one row further)."""
            la = Signal(row_bits, name=f"{name}_la{b}")
            m.d.comb += la.eq(addr[lg:] + (b < addr[:lg]))
            return la

        for c, bank_mems in enumerate(self.mems):
            for b, mem in enumerate(bank_mems):
                m.submodules[f"c{c}_b{b}"] = mem
        # writes: every copy of bank b takes the highest-priority writer that hits b
        for b in range(P):
            hits, sel = [], []
            for i, w in enumerate(self.write):
                hit = Signal(name=f"w{i}_hit{b}")
                if self.aligned_writes:
                    la = w.addr[lg:]
                    m.d.comb += hit.eq(w.en & w.mask[b] & (la < lim[b]))
                    sel.append((la, w.data[b]))
                else:
                    la = local_row(w.addr, b, f"w{i}")
                    j = Signal(lg, name=f"w{i}_j{b}")   # the line's byte that lands in bank b
                    m.d.comb += [j.eq(b - w.addr[:lg]),
                                 hit.eq(w.en & w.mask.bit_select(j, 1) & (la < lim[b]))]
                    sel.append((la, Array(w.data[k] for k in range(P))[j]))
                hits.append(hit)
                for h in hits[:-1]:
                    with m.If(h & hit):
                        m.d.comb += self.conflict[i].eq(1)
            addr, byte = Signal(row_bits, name=f"wa{b}"), Signal(8, name=f"wd{b}")
            en = Signal(name=f"we{b}")
            for hit, (la, d) in reversed(list(zip(hits, sel))):
                with m.If(hit):
                    m.d.comb += [addr.eq(la), byte.eq(d)]
            m.d.comb += en.eq(Cat(*hits).any())
            for c in range(self.copies):
                wp = self.mems[c][b].write_port()
                m.d.comb += [wp.addr.eq(addr), wp.data.eq(byte), wp.en.eq(en)]
        # reads: copy c reads its line from all banks, rotated back into line order
        for c, r in enumerate(self.read):
            rot_q = Signal(lg, name=f"r{c}_rot")
            m.d.sync += rot_q.eq(r.addr[:lg])
            outs = []
            for b in range(P):
                la = local_row(r.addr, b, f"r{c}")
                ok_q = Signal(name=f"r{c}_ok{b}")
                rp = self.mems[c][b].read_port()
                m.d.comb += [rp.addr.eq(la), rp.en.eq(r.en)]
                m.d.sync += ok_q.eq(la < lim[b])
                outs.append(Mux(ok_q, rp.data, 0))
            sel = Array(outs)
            for j in range(P):
                m.d.comb += r.data[j].eq(sel[(rot_q + j)[:lg]])
        return m

    def contents(self, ctx, copy: int = 0) -> np.ndarray:
        """The store's ``depth`` bytes in a testbench (``ctx`` of ``amaranth.sim``)."""
        mems = self.mems[copy]
        out = np.zeros(self.bank_depth * self.banks, np.uint8)
        for b, mem in enumerate(mems):
            out[b::self.banks] = [ctx.get(mem.data[i]) for i in range(self.bank_depth)]
        return out[:self.depth]


class AuxBuffer(wiring.Component):
    """The AUX buffer of one core: stores E and A (see the module doc).

    Parameters (keyword-only): ``depth`` (bytes, 16..65536), ``S``, ``T`` (MAT engine: lanes,
    multipliers), ``M`` (R-MAC lanes), each 1..64.

    Ports (the unit ports of ``hw.core.unit.Unit`` the core routes here; ``en`` is already
    qualified by ``buf == AUX``): ``mat_x`` (broadcast read, 1 x T bytes), ``mat_w`` (weight
    read, S x T bytes), ``mat_o`` (S outputs), ``rmac_o`` (M outputs), ``aux_o`` (1 output);
    ``error`` (3 bits: mat, rmac, aux; sticky) for an access outside the rules of the module doc.
    """

    def __init__(self, *, depth: int = 4096, S: int = 8, T: int = 8, M: int = 8):
        self.depth = check_int("depth", depth, 16, 1 << 16)
        for k, v in dict(S=S, T=T, M=M).items():
            check_int(k, v, 1, 64)
        self.S, self.T, self.M = S, T, M
        self.e_store = BankedStore(depth=depth, banks=_pow2_at_least(max(S, M)), copies=T,
                                   writers=2)
        self.a_store = BankedStore(depth=depth, banks=_pow2_at_least(T), copies=1, writers=1)
        super().__init__({
            "mat_x": In(gather_read_signature(rows=1, elems=T)),
            "mat_w": In(gather_read_signature(rows=S, elems=T)),
            "mat_o": In(scatter_write_signature(elems=S)),
            "rmac_o": In(scatter_write_signature(elems=M)),
            "aux_o": In(scatter_write_signature(elems=1)),
            "error": Out(3),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.e_store = e = self.e_store
        m.submodules.a_store = a = self.a_store
        bad = {0: [], 1: [], 2: []}     # error bit -> conditions

        def writer(port, line, elems, bit):
            m.d.comb += [line.en.eq(port.en & ~port.wide), line.addr.eq(port.addr),
                         line.mask.eq(port.mask)]
            for j in range(elems):
                m.d.comb += line.data[j].eq(port.data[j][:8])
            if elems > 1:
                bad[bit].append(port.en & (port.elem_stride != 1))
            bad[bit].append(port.en & port.wide)

        writer(self.mat_o, e.write[0], self.S, 0)
        writer(self.rmac_o, e.write[1], self.M, 1)
        writer(self.aux_o, a.write[0], 1, 2)
        bad[1].append(e.conflict[1])
        # weight port: element k = the line of rows at addr + k*elem_stride, from copy k
        w = self.mat_w
        for k in range(self.T):
            m.d.comb += [e.read[k].en.eq(w.en), e.read[k].addr.eq(w.addr + k * w.elem_stride)]
            for r in range(self.S):
                m.d.comb += w.data[r][k].eq(e.read[k].data[r])
        if self.S > 1:
            bad[0].append(w.en & (w.row_stride != 1))
        x = self.mat_x
        m.d.comb += [a.read[0].en.eq(x.en), a.read[0].addr.eq(x.addr)]
        for j in range(self.T):
            m.d.comb += x.data[0][j].eq(a.read[0].data[j])
        if self.T > 1:
            bad[0].append(x.en & (x.elem_stride != 1))
        for bit, conds in bad.items():
            if conds:
                with m.If(Cat(*conds).any()):
                    m.d.sync += self.error[bit].eq(1)
        return m

    def contents(self, ctx) -> dict:
        """``{"E": bytes of the engine store, "A": bytes of the adder-tree store}`` (numpy
        uint8, ``depth`` each) in an ``amaranth.sim`` testbench."""
        return {"E": self.e_store.contents(ctx), "A": self.a_store.contents(ctx)}
