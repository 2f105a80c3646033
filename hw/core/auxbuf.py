"""The per-core auxiliary buffer, banked so that it maps onto simple dual-port RAMs.

The AUX buffer carries the attention's intermediates (docs/isa.md): ``S = ReLU(K)^T V`` (int8,
``d x d`` in tiles of T rows x S columns, one tile per line, ``sim.isa.att_s_offsets``; written
by ``ATT_KV_*`` on an engine, read by ``ATT_OUT`` as the MAT's weight operand: one tile, an
aligned line, per cycle) and ``ksum8``
(written one byte per cycle by ``ATT_KSUM`` on the AUX unit, read by ``ATT_DIV`` as the MAT's
broadcast operand: ``T`` consecutive bytes per cycle). Served literally (one memory port per
gathered byte, ``S*T + T`` read ports on a 4 KB array) no synthesis tool can map it to RAM.

Layout (decision, docs/hw-core.md "AUX buffer"): two stores share AUX's address range.

* **E** (engine store): written by the MAT's and the R-MAC's output ports, read by the MAT's
  weight port. One line of ``sim.isa.att_s_line(S, T)`` bytes (a T x S tile of S) in banks of
  ``W``-byte words (:class:`BankedStore`: byte ``a`` in lane ``a mod W`` of word ``a // W``, in
  bank ``(a // W) mod banks``; ``W`` = :func:`e_word_bytes`, ``banks`` = line / W,
  :func:`aux_layout`), **one copy**: the weight read is the aligned line (no rotation), a write
  at most S consecutive bytes (a tile row), at the writer's ``write_align``. (Until issue #14's
  "AUX without copies" S was row-major and E had T copies of max(S, M)-byte banks.)
* **A** (adder-tree store): written by the AUX unit, read by the MAT's broadcast port; banks
  enough for T bytes at any address, one copy.

So a read sees the bytes written through the same store: the MAT's weight port reads what the
engines wrote and its broadcast port what the adder tree wrote, which is how the attention
steps use AUX (``sim.funcsim`` checks it: it keeps the two stores apart too). Each bank is a
``lib.memory.Memory`` with one write port (byte enables) and one read port: with the default
32-bit words (:data:`AUX_WORD_BYTES`) a BRAM18 in simple dual-port mode, or LUTRAM when shallow.
The paper's 4 KB at T = S = M = 8 is 16 banks of 64 words (E, LUTRAM in yosys) + 4 banks of
256 words (A, 4 RAMB18); before, E was 4 banks x 8 copies of 256 words (32 RAMB18).

Access rules (else the ``error`` bit of the requesting unit is set, sticky): the MAT's weight
port reads a tile: ``row_stride == 1``, ``elem_stride == S``, ``addr`` a multiple of the line;
its broadcast port and every output port ``elem_stride == 1``; E writes at multiples of their
writer's ``write_align`` and no byte past the S-th (an R-MAC with M > S); the MAT and the R-MAC
must not write E in the same cycle to the same bank (a bank of words: bytes ``4w .. 4w + 3``
for every word ``w`` of that bank). Bytes outside the buffer read as 0; writes to
them are dropped (the contract of ``hw.core.ports``).
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sim.isa import att_kv_fits, att_s_line

from ..params import check_int, check_pow2
from .ports import ADDR_BITS, gather_read_signature, scatter_write_signature

__all__ = ["AUX_WORD_BYTES", "AuxBuffer", "BankedStore", "a_word_bytes", "aux_layout",
           "e_word_bytes", "kv_write_align", "max_unaligned_bytes", "span_words"]


def _pow2_at_least(n: int) -> int:
    return max(2, 1 << (n - 1).bit_length())


def span_words(n: int, word_bytes: int) -> int:
    """Words of ``word_bytes`` bytes that ``n`` consecutive bytes at any address can touch."""
    return (word_bytes - 1 + n - 1) // word_bytes + 1


def max_unaligned_bytes(banks: int, word_bytes: int) -> int:
    """The most consecutive bytes at any address that lie in distinct banks of a
    :class:`BankedStore` (one word per bank): ``(banks - 1) * word_bytes + 1``."""
    return (banks - 1) * word_bytes + 1


def a_word_bytes(line: int, n: int, widest: int = 4) -> int:
    """Bytes per bank word of buffer A (``hw.core.Core.a_store``) for a ``line``-byte write port
    and ``n``-byte readers: the widest power of two up to ``widest`` (4: the 32 data bits of a
    BRAM18 in simple dual-port mode) that leaves at least two banks and still serves ``n``
    consecutive bytes at any address in one read (:func:`max_unaligned_bytes`); 1 (byte banks)
    when no wider word does."""
    check_pow2("line", line, lo=2, hi=64 * 8)
    check_int("n", n, 1, line)
    w = check_pow2("widest", widest, lo=1, hi=8)
    while w > 1 and not (line // w >= 2 and n <= max_unaligned_bytes(line // w, w)):
        w //= 2
    return w


#: bytes per bank word of the AUX buffer's stores (``AuxBuffer(word_bytes=)``'s default): the 32
#: data bits of a BRAM18 in simple dual-port mode (docs/hw-core.md "Buffer A in BRAM, AUX in
#: 32-bit words")
AUX_WORD_BYTES = 4


def e_word_bytes(S: int, T: int, widest: int = AUX_WORD_BYTES) -> int:
    """Bytes per bank word of the AUX engine store E: :func:`a_word_bytes` for its line
    (``sim.isa.att_s_line(S, T)``, one T x S tile of the attention's S) and S-byte writes."""
    return a_word_bytes(att_s_line(S, T), S, widest)


def aux_layout(S: int, T: int, M: int, word_bytes: int = AUX_WORD_BYTES) -> dict:
    """The banks, copies and word bytes of :class:`AuxBuffer`'s stores: ``{"E": (banks,
    copies, word_bytes), "A": (...)}`` (E: one line of ``sim.isa.att_s_line(S, T)`` bytes in
    words of at most ``word_bytes``, one copy; A: enough banks for T bytes at any address, one
    copy). ``M`` is not needed any more (the R-MAC writes at most S bytes of a tile row); kept
    for the callers' signature."""
    ew = e_word_bytes(S, T, word_bytes)
    return {"E": (att_s_line(S, T) // ew, 1, ew),
            "A": (_pow2_at_least(span_words(T, word_bytes)), 1, word_bytes)}


def kv_write_align(S: int, T: int, R: int) -> int:
    """The alignment (bytes) of a unit's ``ATT_KV_*`` writes into E: they carry ``R`` (its
    requant lanes) consecutive columns of one row of an S tile (``hw.core.attention``), at a
    multiple of R inside a line: R's largest power-of-two divisor, at most the line
    (``sim.isa.att_s_line(S, T)``). Only when R divides S (else the unit cannot run ATT_KV)."""
    return min(R & -R, att_s_line(S, T)) if att_kv_fits(S, R) else 1


def line_write_signature(banks: int) -> wiring.Signature:
    """Write up to ``banks`` consecutive bytes at ``addr`` (byte ``j`` where ``mask[j]``)."""
    return wiring.Signature({"en": Out(1), "addr": Out(ADDR_BITS), "mask": Out(banks),
                             "data": Out(data.ArrayLayout(unsigned(8), banks))})


def line_read_signature(banks: int) -> wiring.Signature:
    """Read ``banks`` consecutive bytes at ``addr``; ``data`` one cycle after ``en``."""
    return wiring.Signature({"en": Out(1), "addr": Out(ADDR_BITS),
                             "data": In(data.ArrayLayout(unsigned(8), banks))})


class BankedStore(wiring.Component):
    """``depth`` bytes in ``banks`` banks of ``word_bytes``-byte words, x ``copies``.

    Layout: byte ``a`` is lane ``a mod word_bytes`` of word ``w = a // word_bytes``, which is
    row ``w // banks`` of bank ``w mod banks``; so ``banks`` consecutive words (a *line* of
    ``banks * word_bytes`` bytes) lie in distinct banks, and so do any
    :func:`max_unaligned_bytes` consecutive bytes. ``word_bytes = 1`` is the byte-banked
    layout (AUX); wider words let a wide line live in few deep memories (buffer A: 4-byte words
    are a 32-bit SDP BRAM18, see docs/hw-core.md "Buffer A in BRAM").

    Parameters (keyword-only): ``depth`` (bytes, 1..65536), ``banks`` (power of two, 2..64),
    ``word_bytes`` (power of two, 1..8), ``copies`` (1..64), ``writers`` (1..4),
    ``aligned_writes``, ``aligned_reads`` (bools), ``read_bytes`` and ``write_bytes`` (the width
    of the read and write ports in bytes; default and maximum :func:`max_unaligned_bytes`,
    which is ``banks`` when ``word_bytes = 1``; with ``aligned_writes`` the write port may be
    the whole line, with ``aligned_reads`` the read port is, by default).

    Ports (seen from the store): ``write[i]`` (``writers`` writes of ``write_bytes`` consecutive
    bytes at ``addr``, byte ``j`` where ``mask[j]``; on a bank hit by two writers in one cycle
    the lower-numbered one wins and ``conflict[i]`` of the other pulses), ``read[c]`` (one read
    of ``read_bytes`` consecutive bytes at ``addr`` per copy; ``data`` one cycle after ``en``,
    not seeing the same cycle's write). Addresses wrap at ``2**ADDR_BITS`` like the gather
    ports; bytes at or past ``depth`` read 0 and are not written. ``aligned_writes``: every
    write is of the line that holds ``addr`` (its low ``log2(banks * word_bytes)`` bits are
    ignored; byte ``k`` of ``data`` goes to lane ``k mod word_bytes`` of bank
    ``k // word_bytes``), which saves the byte multiplexer in front of each bank.
    ``aligned_reads``: likewise every read is of the line that holds ``addr`` (byte ``k`` of
    ``data`` from lane ``k mod word_bytes`` of bank ``k // word_bytes``): no rotation.
    ``write_align`` (a tuple, one power of two per writer, at most the line; default all 1):
    writer ``i``'s addresses are multiples of ``write_align[i]`` (their low bits are ignored);
    with ``write_align[i] >= word_bytes`` its writes are whole words, and each bank picks its
    word among the few the alignment leaves (no byte multiplexer).

    Each bank of each copy is one ``lib.memory.Memory`` of ``word_bytes``-byte words with one
    write port (byte enables) and one read port.
    """

    def __init__(self, *, depth: int, banks: int, word_bytes: int = 1, copies: int = 1,
                 writers: int = 1, aligned_writes: bool = False, aligned_reads: bool = False,
                 read_bytes: int | None = None, write_bytes: int | None = None,
                 write_align: tuple | None = None):
        for k, v in dict(aligned_writes=aligned_writes, aligned_reads=aligned_reads).items():
            if not isinstance(v, bool):
                raise TypeError(f"{k} must be a bool, got {v!r}")
        self.aligned_writes = aligned_writes
        self.aligned_reads = aligned_reads
        self.depth = check_int("depth", depth, 1, 1 << 16)
        self.banks = check_pow2("banks", banks, lo=2, hi=64)
        self.word_bytes = check_pow2("word_bytes", word_bytes, lo=1, hi=8)
        self.copies = check_int("copies", copies, 1, 64)
        self.writers = check_int("writers", writers, 1, 4)
        self.line = banks * word_bytes
        most = max_unaligned_bytes(banks, word_bytes)
        self.read_bytes = (self.line if aligned_reads else most) if read_bytes is None else \
            check_int("read_bytes", read_bytes, 1, self.line if aligned_reads else most)
        self.write_bytes = most if write_bytes is None else check_int(
            "write_bytes", write_bytes, 1, self.line if aligned_writes else most)
        if write_align is None:
            write_align = (1,) * writers
        if not isinstance(write_align, tuple) or len(write_align) != writers:
            raise TypeError(f"write_align must be a tuple of {writers} alignments, got "
                            f"{write_align!r}")
        self.write_align = tuple(check_pow2(f"write_align[{i}]", v, lo=1, hi=self.line)
                                 for i, v in enumerate(write_align))
        words = -(-depth // word_bytes)
        self.bank_depth = -(-words // banks)
        self.mems = [[Memory(shape=unsigned(8 * word_bytes), depth=self.bank_depth, init=[])
                      for _ in range(banks)] for _ in range(copies)]
        super().__init__({
            "write": In(line_write_signature(self.write_bytes)).array(writers),
            "read": In(line_read_signature(self.read_bytes)).array(copies),
            "conflict": Out(writers),
        })

    def _limits(self):
        """``lim[b][l]``: bank ``b``'s rows below it hold bytes of lane ``l`` inside the buffer."""
        P, W = self.banks, self.word_bytes
        lim = []
        for b in range(P):
            row = []
            for lane in range(W):
                nw = -(-(self.depth - lane) // W)       # words whose lane `lane` is inside
                row.append(max(0, -(-(nw - b) // P)))
            lim.append(row)
        return lim

    def elaborate(self, platform):
        m = Module()
        P, W = self.banks, self.word_bytes
        lgp, lgw = P.bit_length() - 1, W.bit_length() - 1
        lgl = lgp + lgw
        abits = max(1, (self.bank_depth - 1).bit_length())     # a bank memory's address
        lim = self._limits()
        lims = sorted({v for per_bank in lim for v in per_bank})

        def access(addr, name, aligned=False):
            """Per bank: the row an access at ``addr`` uses (banks below the first word's bank
            hold the access's tail, one row further; truncated to the memory's address) and,
            per lane, whether that row is inside the buffer. The range checks are shared: for
            each distinct limit ``v``, ``row0 < v`` and ``row0 + 1 < v`` (with the wrap at
            ``2**ADDR_BITS``); each bank picks one by its increment."""
            row0 = addr[lgl:]
            c0, c1 = {}, {}
            top = Signal(name=f"{name}_top")
            m.d.comb += top.eq(row0.all())          # row0 + 1 wraps to row 0
            for v in lims:
                c0[v], c1[v] = Signal(name=f"{name}_lt{v}"), Signal(name=f"{name}_lt{v}m1")
                m.d.comb += [c0[v].eq(row0 < v),
                             c1[v].eq((row0 < v - 1) | (top & (v > 0)) if v > 0 else 0)]
            rows, oks = [], []
            for b in range(P):
                la = Signal(abits, name=f"{name}_la{b}")
                if aligned:
                    m.d.comb += la.eq(row0)
                    oks.append([c0[v] for v in lim[b]])
                else:
                    inc = Signal(name=f"{name}_inc{b}")
                    m.d.comb += [inc.eq(b < addr[lgw:lgl]), la.eq(row0 + inc)]
                    oks.append([Mux(inc, c1[v], c0[v]) for v in lim[b]])
                rows.append(la)
            return rows, oks

        for c, bank_mems in enumerate(self.mems):
            for b, mem in enumerate(bank_mems):
                m.submodules[f"c{c}_b{b}"] = mem
        # writes: every copy of bank b takes the highest-priority writer that hits b
        wacc = [access(w.addr, f"w{i}", self.aligned_writes) for i, w in enumerate(self.write)]
        for b in range(P):
            hits, sels = [], []
            for i, w in enumerate(self.write):
                n = self.write_bytes
                la, oks = wacc[i][0][b], wacc[i][1][b]
                lane_en, lane_d = [], []
                al = self.write_align[i]
                if not self.aligned_writes and al >= W:
                    # whole words from a word boundary: the access's word q = (b - first bank)
                    # mod P lies in this bank; the alignment fixes q mod (al / W), so the bank
                    # picks among the source words q0, q0 + al/W, ... below ceil(n / W)
                    nwords, step = -(-n // W), al // W
                    rel = Signal(lgp, name=f"w{i}_rel{b}")
                    m.d.comb += rel.eq(b - w.addr[lgw:lgl])
                    cands = list(range(b % step, nwords, step))
                    for lane in range(W):
                        en_l, d_l = Const(0), Const(0, 8)
                        for q in cands:
                            k = q * W + lane
                            if k < n:
                                sel = rel == q
                                en_l = Mux(sel, w.mask[k], en_l)
                                d_l = Mux(sel, w.data[k], d_l)
                        lane_en.append(en_l & oks[lane])
                        lane_d.append(d_l)
                elif self.aligned_writes:
                    for lane in range(W):
                        k = b * W + lane
                        if k < n:
                            lane_en.append(w.mask[k] & oks[lane])
                            lane_d.append(w.data[k])
                        else:
                            lane_en.append(0)
                            lane_d.append(0)
                else:
                    rel = Signal(lgp, name=f"w{i}_rel{b}")     # this bank's word in the access
                    m.d.comb += rel.eq(b - w.addr[lgw:lgl])
                    src = Array(w.data[k] for k in range(n))
                    for lane in range(W):
                        # the access's byte that lands in this lane: rel * W + lane - (addr mod W)
                        t = Signal(range(-W, self.line + 1), name=f"w{i}_t{b}_{lane}")
                        j = Signal(range(max(2, n)), name=f"w{i}_j{b}_{lane}")
                        m.d.comb += [t.eq(Cat(Const(lane, lgw), rel) - w.addr[:lgw]), j.eq(t)]
                        lane_en.append((t >= 0) & (t < n) & w.mask.bit_select(j, 1) & oks[lane])
                        lane_d.append(src[j])
                hit = Signal(name=f"w{i}_hit{b}")
                ens = Signal(W, name=f"w{i}_en{b}")
                m.d.comb += [ens.eq(Cat(*lane_en) & w.en.replicate(W)), hit.eq(ens.any())]
                hits.append(hit)
                sels.append((la, ens, Cat(*lane_d)))
                for h in hits[:-1]:
                    with m.If(h & hit):
                        m.d.comb += self.conflict[i].eq(1)
            # the lowest-priority writer drives the bank unless a higher one hits it (no
            # zeroing of the address and data when nobody writes: the byte enables say so)
            addr = Signal(abits, name=f"wa{b}")
            word = Signal(8 * W, name=f"wd{b}")
            en = Signal(W, name=f"we{b}")
            la, ens, d = sels[-1]
            m.d.comb += [addr.eq(la), word.eq(d), en.eq(ens)]
            for hit, (la, ens, d) in reversed(list(zip(hits, sels))[:-1]):
                with m.If(hit):
                    m.d.comb += [addr.eq(la), word.eq(d), en.eq(ens)]
            for c in range(self.copies):
                wp = self.mems[c][b].write_port(granularity=8)
                m.d.comb += [wp.addr.eq(addr), wp.data.eq(word), wp.en.eq(en)]
        # reads: copy c reads one word per bank, rotates the words of the access into order
        # (by the first word's bank), zeroes the bytes outside the buffer and shifts out its
        # bytes (by the address's lane); an aligned read takes the line's words as they are
        K = span_words(self.read_bytes, W)
        for c, r in enumerate(self.read):
            if self.aligned_reads:
                rows, oks = access(r.addr, f"r{c}", aligned=True)
                for b in range(P):
                    rp = self.mems[c][b].read_port()
                    m.d.comb += [rp.addr.eq(rows[b]), rp.en.eq(r.en)]
                    for lane in range(W):
                        k = b * W + lane
                        if k >= self.read_bytes:
                            continue
                        ok_q = Signal(name=f"r{c}_ok{b}_{lane}")
                        m.d.sync += ok_q.eq(oks[b][lane])
                        m.d.comb += r.data[k].eq(Mux(ok_q, rp.data.word_select(lane, 8), 0))
                continue
            rot_q = Signal(lgp, name=f"r{c}_rot")
            off_q = Signal(max(1, lgw), name=f"r{c}_off")
            m.d.sync += rot_q.eq(r.addr[lgw:lgl])
            if W > 1:
                m.d.sync += off_q.eq(r.addr[:lgw])
            rows, oks = access(r.addr, f"r{c}")
            words, word_oks = [], []
            for b in range(P):
                ok_q = Signal(W, name=f"r{c}_ok{b}")
                rp = self.mems[c][b].read_port()
                m.d.comb += [rp.addr.eq(rows[b]), rp.en.eq(r.en)]
                m.d.sync += ok_q.eq(Cat(*oks[b]))
                words.append(rp.data)
                word_oks.append(ok_q)
            sel, sel_ok = Array(words), Array(word_oks)
            got = []
            for j in range(K):
                idx = Signal(lgp, name=f"r{c}_idx{j}")
                wj, okj = Signal(8 * W, name=f"r{c}_word{j}"), Signal(W, name=f"r{c}_wok{j}")
                m.d.comb += [idx.eq(rot_q + j), wj.eq(sel[idx]), okj.eq(sel_ok[idx])]
                got += [Mux(okj[lane], wj.word_select(lane, 8), 0) for lane in range(W)]
            for k in range(self.read_bytes):
                if W > 1:
                    m.d.comb += r.data[k].eq(Array(got[k + o] for o in range(W))[off_q])
                else:
                    m.d.comb += r.data[k].eq(got[k])
        return m

    def contents(self, ctx, copy: int = 0) -> np.ndarray:
        """The store's ``depth`` bytes in a testbench (``ctx`` of ``amaranth.sim``)."""
        P, W = self.banks, self.word_bytes
        words = np.zeros((self.bank_depth, P), np.uint64)
        for b, mem in enumerate(self.mems[copy]):
            words[:, b] = [ctx.get(mem.data[i]) for i in range(self.bank_depth)]
        out = ((words.reshape(-1, 1) >> (8 * np.arange(W, dtype=np.uint64))) & 0xFF)
        return out.reshape(-1).astype(np.uint8)[:self.depth]


class AuxBuffer(wiring.Component):
    """The AUX buffer of one core: stores E and A (see the module doc).

    Parameters (keyword-only): ``depth`` (bytes, 16..65536), ``S``, ``T`` (MAT engine: lanes,
    multipliers), ``M`` (R-MAC lanes), each 1..64; ``word_bytes`` (bytes per bank word of both
    stores at most, a power of two 1..8; default :data:`AUX_WORD_BYTES` = 4, a 32-bit BRAM18);
    ``write_align`` (the MAT's and the R-MAC's E writes are at multiples of these, powers of two
    up to the line; default ``(1, 1)``, any address; the core passes :func:`kv_write_align`).

    Ports (the unit ports of ``hw.core.unit.Unit`` the core routes here; ``en`` is already
    qualified by ``buf == AUX``): ``mat_x`` (broadcast read, 1 x T bytes), ``mat_w`` (weight
    read, S x T bytes), ``mat_o`` (S outputs), ``rmac_o`` (M outputs), ``aux_o`` (1 output);
    ``error`` (3 bits: mat, rmac, aux; sticky) for an access outside the rules of the module doc.
    """

    def __init__(self, *, depth: int = 4096, S: int = 8, T: int = 8, M: int = 8,
                 word_bytes: int = AUX_WORD_BYTES, write_align: tuple = (1, 1)):
        self.depth = check_int("depth", depth, 16, 1 << 16)
        for k, v in dict(S=S, T=T, M=M).items():
            check_int(k, v, 1, 64)
        self.word_bytes = check_pow2("word_bytes", word_bytes, lo=1, hi=8)
        self.S, self.T, self.M = S, T, M
        lay = aux_layout(S, T, M, word_bytes)
        self.line = att_s_line(S, T)
        self.e_store = BankedStore(depth=depth, banks=lay["E"][0], word_bytes=lay["E"][2],
                                   copies=lay["E"][1], writers=2, aligned_reads=True,
                                   read_bytes=T * S, write_bytes=S, write_align=write_align)
        self.write_align = self.e_store.write_align
        self.a_store = BankedStore(depth=depth, banks=lay["A"][0], word_bytes=lay["A"][2],
                                   copies=lay["A"][1], writers=1, read_bytes=T, write_bytes=1)
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
            n = min(elems, len(line.data))
            m.d.comb += [line.en.eq(port.en & ~port.wide), line.addr.eq(port.addr),
                         line.mask.eq(port.mask[:n])]
            for j in range(n):
                m.d.comb += line.data[j].eq(port.data[j][:8])
            if elems > 1:
                bad[bit].append(port.en & (port.elem_stride != 1))
            if elems > n:       # bytes past a tile row of S (an R-MAC with M > S)
                bad[bit].append(port.en & port.mask[n:].any())
            bad[bit].append(port.en & port.wide)

        writer(self.mat_o, e.write[0], self.S, 0)
        writer(self.rmac_o, e.write[1], self.M, 1)
        for port, al, bit in ((self.mat_o, self.write_align[0], 0),
                              (self.rmac_o, self.write_align[1], 1)):
            if al > 1:      # a write E cannot place (its words are picked by the alignment)
                bad[bit].append(port.en & (port.addr[:al.bit_length() - 1] != 0))
        writer(self.aux_o, a.write[0], 1, 2)
        bad[1].append(e.conflict[1])
        # weight port: one T x S tile of S, an aligned line: element k of row r is byte k*S + r
        w = self.mat_w
        m.d.comb += [e.read[0].en.eq(w.en), e.read[0].addr.eq(w.addr)]
        for k in range(self.T):
            for r in range(self.S):
                m.d.comb += w.data[r][k].eq(e.read[0].data[k * self.S + r])
        lgl = self.line.bit_length() - 1
        bad[0].append(w.en & (w.addr[:lgl] != 0))
        if self.S > 1:
            bad[0].append(w.en & (w.row_stride != 1))
        if self.T > 1:
            bad[0].append(w.en & (w.elem_stride != self.S))
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
