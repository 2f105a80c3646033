"""The global buffers B, C and OUT built from BRAM-like banks, with backpressure (issue #13,
docs/global-buffers.md "Phase 1").

Same ports and address map as the behavioural :class:`hw.system.buffers.GlobalBuffers` (B, C,
OUT at offsets in one byte space), but the storage is ``banks`` ``lib.memory`` memories of
``word`` bytes, each with **one read port and one write port** (a simple dual-port BRAM):
byte address ``g`` is byte ``g % word`` of word ``g // word``, which lives in bank
``(g // word) % banks`` at row ``g // (word * banks)`` (word-interleaved).

The cores' ports must have backpressure (``hw.core.Core(stall=True)``: ``ready`` in every
gather / scatter port, :mod:`hw.core.ports`). Each cycle:

* every pending request (a core port with ``en``) asks, for each bank, for the row of the
  first of its byte lanes that is still unserved and lives in that bank;
* each bank's read port (gathers) and write port (scatters) is given to one requester: the ST
  DMA engine (reads) and the LD DMA engine (writes) first (their line is ``line / word``
  consecutive words, so with ``banks * word >= line`` they never conflict with themselves and
  are served in the cycle they ask: they have no backpressure), then the cores' ports in
  round-robin order (the first requester at or after a pointer that advances every cycle, so
  every request finishes);
* a requester granted a bank is served every one of its pending lanes in that bank's granted
  row (all the bytes of one word at once); a request whose lanes are all served (this cycle or
  earlier ones; lanes outside the buffer need no bank and read as 0) is accepted: ``ready``.

A gather's bytes come back one cycle after the cycle that served them: bytes of the accepting
cycle straight from the banks, earlier ones from a per-lane register, so ``data`` is complete
one cycle after acceptance (the port contract). A request that touches ``k`` words of the
same bank needs ``k`` cycles at least (bank conflicts), more while other requesters hold its
banks.

Cost (this phase: correct for every layout, not cheap): per requester lane a byte multiplexer
from ``banks * word`` bytes and per bank a priority encoder over the lanes; phase 2 (channel-
blocked activations, pre-tiled weights: one word / line per request) removes both.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib.memory import Memory

from ..core.ports import ADDR_BITS
from ..params import check_int, check_pow2
from .buffers import GlobalBuffers

__all__ = ["BankedBuffers"]


def _first(items):
    """``(any, value)`` of the first ``(valid, value)`` pair whose ``valid`` is set, as a
    balanced tree of multiplexers (depth log2 of the count)."""
    items = list(items)
    if not items:
        return Const(0), Const(0)
    while len(items) > 1:
        nxt = []
        for i in range(0, len(items) - 1, 2):
            (va, xa), (vb, xb) = items[i], items[i + 1]
            nxt.append((va | vb, Mux(va, xa, xb)))
        if len(items) % 2:
            nxt.append(items[-1])
        items = nxt
    return items[0]


class _Lanes:
    """The byte lanes of one requester: each ``(active, global byte address)``; ``pend`` = not
    served yet; per bank the row of the first pending lane there (``want``, ``row``)."""

    def __init__(self, m, tag, lanes, *, banks, word, en, complete_en):
        self.n = len(lanes)
        wb, bb = (word - 1).bit_length(), (banks - 1).bit_length()
        self.off = [g[:wb] for _, g in lanes]
        self.bank = [g[wb:wb + bb] if bb else Const(0) for _, g in lanes]
        self.row = [g[wb + bb:] for _, g in lanes]
        self.done = Signal(self.n, name=f"{tag}_done")
        self.pend = Signal(self.n, name=f"{tag}_pend")
        m.d.comb += self.pend.eq(Cat(*[a for a, _ in lanes]) & ~self.done
                                 & Cat(*[en] * self.n))
        self.want, self.rows = [], []
        for b in range(banks):
            hits = [self.pend[i] & (self.bank[i] == b) for i in range(self.n)]
            v, r = _first(zip(hits, self.row))
            want, row = Signal(name=f"{tag}_want{b}"), Signal(len(self.row[0]) if self.n else 1,
                                                               name=f"{tag}_row{b}")
            m.d.comb += [want.eq(v), row.eq(r)]
            self.want.append(want)
            self.rows.append(row)
        self.grant = [Signal(name=f"{tag}_grant{b}") for b in range(banks)]
        self.srv = Signal(self.n, name=f"{tag}_srv")
        g_by_bank, r_by_bank = Array(self.grant), Array(self.rows)
        m.d.comb += self.srv.eq(Cat(*[
            self.pend[i] & g_by_bank[self.bank[i]] & (r_by_bank[self.bank[i]] == self.row[i])
            for i in range(self.n)]))
        self.complete = Signal(name=f"{tag}_complete")
        m.d.comb += self.complete.eq(complete_en & ((self.pend & ~self.srv) == 0))
        with m.If(~en | self.complete):
            m.d.sync += self.done.eq(0)
        with m.Else():
            m.d.sync += self.done.eq(self.done | self.srv)


class BankedBuffers(GlobalBuffers):
    """B, C and OUT in ``banks`` word-interleaved simple dual-port banks (see the module doc).

    Parameters (keyword-only): as :class:`hw.system.buffers.GlobalBuffers` (the core signature
    must have backpressure: ``hw.core.Core(stall=True).signature``), plus ``banks`` (a power
    of two 2..64) and ``word`` (bytes per bank word, a power of two 4..``line``); ``banks *
    word`` must be at least ``line`` and every size a multiple of ``line`` (DMA lines are then
    whole words and never conflict with themselves). ``bank_mems``: the ``lib.memory.Memory`` of each bank (benches).

    Ports: those of ``GlobalBuffers``; each core port's ``ready`` is driven (see the module
    doc); ``ld.ready`` is always 1 and ``st_data`` follows ``st_en`` by one cycle, as there.
    """

    def __init__(self, *, core_signature, cores: int, sizes: dict, line: int = 16,
                 banks: int = 8, word: int = 8, ld_ports: int = 1):
        if check_int("ld_ports", ld_ports, 1, 4) != 1:
            raise ValueError(f"ld_ports={ld_ports}: the banked buffers have one DMA line-write "
                             f"port (one LD engine: axi_ports 1 or 2); several need a write "
                             f"arbiter per bank (docs/system.md, \"AXI ports\")")
        self.banks = check_pow2("banks", banks, lo=2, hi=64)
        check_pow2("line", line, lo=4, hi=128)
        self.word = check_pow2("word", word, lo=4, hi=line)
        if banks * word < line:
            raise ValueError(f"banks * word ({banks * word}) must be at least line ({line})")
        for k, v in sizes.items():
            if isinstance(v, int) and v % line:
                raise ValueError(f"sizes[{k!r}] must be a multiple of line ({line}), got {v}")
        super().__init__(core_signature=core_signature, cores=cores, sizes=sizes, line=line)
        for name, *_, sig in self.gathers + self.scatters:
            if "ready" not in sig.members:
                raise ValueError(f"core port {name!r} has no backpressure (ready): build the "
                                 f"cores with stall=True")
        span = banks * word
        self.depth = (self.total + span - 1) // span
        self.gbits = max(1, (self.depth * span - 1).bit_length())
        self.bank_mems = [Memory(shape=unsigned(8 * word), depth=self.depth, init=[])
                          for _ in range(banks)]

    def _gather_ports(self, m, c, fault):
        """Core ``c``'s gather ports with their buffer selection: ``(name, rows, elems, port,
        tag, base, size, known)``; a request to no buffer sets ``fault``."""
        for name, rows, elems, _s in self.gathers:
            port, tag = getattr(self, f"c{c}_{name}"), f"c{c}_{name}"
            base, size, known = self._select(m, port.buf, tag)
            with m.If(port.en & ~known):
                m.d.sync += fault[0].eq(1)
            yield name, rows, elems, port, tag, base, size, known

    def _scatter_ports(self, m, c):
        """Core ``c``'s scatter ports with their buffer selection: ``(elems, port, tag, base,
        size, known)`` (a scatter's elements check the buffer: :meth:`_scatter_element`)."""
        for name, elems, _s in self.scatters:
            port, tag = getattr(self, f"c{c}_{name}"), f"c{c}_{name}"
            base, size, known = self._select(m, port.buf, tag)
            yield elems, port, tag, base, size, known

    def _requesters(self, m, fault):
        """The cores' gather and scatter requests as ``_Lanes`` of byte lanes: ``(reads,
        writes)``, lists of ``(tag, lanes, extra)`` (``extra``: what :meth:`_gather_data` and
        :meth:`_write_hits` need); drives each port's ``ready``."""
        P, Wd, G = self.banks, self.word, self.gbits
        reads, writes = [], []      # (tag, _Lanes, extra)
        for c in range(self.cores):
            for _name, rows, elems, port, tag, base, size, known in \
                    self._gather_ports(m, c, fault):
                lanes, oks = [], []
                for r in range(rows):
                    row = Signal(ADDR_BITS, name=f"{tag}_row{r}")
                    m.d.comb += row.eq(port.addr + port.row_stride * r)
                    for e in range(elems):
                        idx = Signal(ADDR_BITS, name=f"{tag}_i{r}_{e}")
                        g = Signal(G, name=f"{tag}_g{r}_{e}")
                        ok = Signal(name=f"{tag}_ok{r}_{e}")
                        m.d.comb += [idx.eq(row + port.elem_stride * e), g.eq(base + idx),
                                     ok.eq(known & (idx < size))]
                        lanes.append((ok, g))
                        oks.append(ok)
                ln = _Lanes(m, tag, lanes, banks=P, word=Wd, en=port.en, complete_en=port.en)
                m.d.comb += port.ready.eq(ln.complete)
                reads.append((tag, ln, (port, rows, elems, oks)))
            for elems, port, tag, base, size, known in self._scatter_ports(m, c):
                lanes, vals = [], []
                for e in range(elems):
                    at, _act, inr = self._scatter_element(m, port, tag, e, size, known, fault)
                    for k in range(4):
                        g = Signal(G, name=f"{tag}_g{e}_{k}")
                        on = Signal(name=f"{tag}_on{e}_{k}")
                        m.d.comb += [g.eq(base + at + k),
                                     on.eq(port.mask[e] & inr & (port.wide if k else 1))]
                        lanes.append((on, g))
                        vals.append(port.data[e][8 * k:8 * k + 8])
                ln = _Lanes(m, tag, lanes, banks=P, word=Wd, en=port.en, complete_en=port.en)
                m.d.comb += port.ready.eq(ln.complete)
                writes.append((tag, ln, vals))

        return reads, writes

    @staticmethod
    def _write_hits(ln, vals, b, q):
        """``[(hit, byte)]``: the served lanes of a scatter that write byte ``q`` of bank ``b``
        (the first one is taken)."""
        return [(ln.srv[j] & (ln.bank[j] == b) & (ln.off[j] == q), vals[j]) for j in range(ln.n)]

    def _gather_data(self, m, reads, words):
        """Drive each gather port's ``data`` from the bank words ``words`` (an ``Array`` of the
        read ports' data, one cycle after the request)."""
        wb, bb = (self.word - 1).bit_length(), (self.banks - 1).bit_length()
        # gather data: bytes served in the accepting cycle from the banks, the others from the
        # lane registers, 0 outside the buffer
        for tag, ln, (port, rows, elems, oks) in reads:
            srv_q = Signal(ln.n, name=f"{tag}_srv_q")
            ok_q = Signal(ln.n, name=f"{tag}_ok_q")
            m.d.sync += srv_q.eq(ln.srv)
            with m.If(ln.complete):
                m.d.sync += ok_q.eq(Cat(*oks))
            for i in range(ln.n):
                r, e = divmod(i, elems)
                bq = Signal(bb if bb else 1, name=f"{tag}_bq{i}")
                oq = Signal(wb, name=f"{tag}_oq{i}")
                with m.If(ln.srv[i]):
                    m.d.sync += [bq.eq(ln.bank[i]), oq.eq(ln.off[i])]
                byte = Signal(8, name=f"{tag}_b{i}")
                keep = Signal(8, name=f"{tag}_k{i}")
                m.d.comb += byte.eq(words[bq].word_select(oq, 8))
                with m.If(srv_q[i]):
                    m.d.sync += keep.eq(byte)
                m.d.comb += port.data[r][e].eq(Mux(ok_q[i], Mux(srv_q[i], byte, keep), 0))

    def elaborate(self, platform):
        m = Module()
        P, Wd = self.banks, self.word
        for b, mem in enumerate(self.bank_mems):
            m.submodules[f"bank{b}"] = mem
        rports = [mem.read_port(domain="sync") for mem in self.bank_mems]
        wports = [mem.write_port(granularity=8) for mem in self.bank_mems]
        fault = Signal(3)
        m.d.comb += self.fault.eq(fault)
        G = self.gbits

        reads, writes = self._requesters(m, fault)

        # ---- the DMA lines: ST reads, LD writes, first on their banks ----------------------
        wb, bb = (Wd - 1).bit_length(), (P - 1).bit_length()
        nwords = max(1, self.line // Wd)
        st_base, st_size, st_known = self._select(m, self.st_buf, "st")
        st_g = Signal(G + 1)
        st_ok = Signal()
        m.d.comb += [st_g.eq(st_base + self.st_addr),
                     st_ok.eq(st_known & (self.st_addr + self.line <= st_size))]
        with m.If(self.st_en & ~st_ok):
            m.d.sync += fault[2].eq(1)
        st_words = [Signal(G + 1, name=f"st_w{j}") for j in range(nwords)]
        for j, sw in enumerate(st_words):
            m.d.comb += sw.eq((st_g >> wb) + j)
        st_bank = [sw[:bb] for sw in st_words]
        st_use = [Signal(name=f"st_use{b}") for b in range(P)]
        st_row = [Signal(G, name=f"st_row{b}") for b in range(P)]
        for b in range(P):
            v, r = _first([(st_b == b, sw[bb:]) for st_b, sw in zip(st_bank, st_words)])
            m.d.comb += [st_use[b].eq(self.st_en & st_ok & v), st_row[b].eq(r)]

        ld = self.ld.payload
        m.d.comb += self.ld.ready.eq(1)
        lbase, lsize, lknown = self._select(m, ld.buf, "ld")
        ld_ok = Signal()
        ld_g = Signal(G + 1)
        m.d.comb += [ld_g.eq(lbase + ld.addr), ld_ok.eq(lknown & (ld.addr + self.line <= lsize))]
        with m.If(self.ld.valid & ~ld_ok & (ld.mask != 0)):
            m.d.sync += fault[2].eq(1)
        ld_use = [Signal(name=f"ld_use{b}") for b in range(P)]
        for b in range(P):
            wp = wports[b]
            hit = Signal(name=f"ld_hit{b}")
            parts = []
            for j in range(nwords):
                wa = Signal(G + 1, name=f"ld_w{j}_{b}")
                m.d.comb += wa.eq((ld_g >> wb) + j)
                sel = wa[:bb] == b
                parts.append((sel, wa, j))
            v, r = _first([(s, wa[bb:]) for s, wa, _ in parts])
            m.d.comb += [hit.eq(self.ld.valid & ld_ok & v), ld_use[b].eq(hit)]
            with m.If(hit):
                m.d.comb += wp.addr.eq(r)
                for s, wa, j in parts:
                    with m.If(s):
                        for q in range(Wd):
                            k = j * Wd + q
                            if k < self.line:
                                m.d.comb += [wp.data[8 * q:8 * q + 8].eq(ld.data[8 * k:8 * k + 8]),
                                             wp.en[q].eq(ld.mask[k])]

        # ---- round-robin arbitration of each bank's read and write port -------------------
        def arbitrate(reqs, taken, tag):
            """Grant each bank to one of ``reqs`` (``_Lanes``) unless ``taken[b]``; returns, per
            bank, the granted requester's index signal and whether any is granted."""
            n = len(reqs)
            ptr = Signal(range(max(n, 2)), name=f"{tag}_ptr")
            m.d.sync += ptr.eq(Mux(ptr == n - 1, 0, ptr + 1))
            out = []
            for b in range(P):
                w = [ln.want[b] for ln in reqs]
                hi = [wi & (i >= ptr) for i, wi in enumerate(w)]
                v_hi, i_hi = _first([(h, Const(i, range(max(n, 2)))) for i, h in enumerate(hi)])
                v_all, i_all = _first([(wi, Const(i, range(max(n, 2)))) for i, wi in enumerate(w)])
                who = Signal(range(max(n, 2)), name=f"{tag}_who{b}")
                any_ = Signal(name=f"{tag}_any{b}")
                m.d.comb += [who.eq(Mux(v_hi, i_hi, i_all)), any_.eq(v_all & ~taken[b])]
                for i, ln in enumerate(reqs):
                    m.d.comb += ln.grant[b].eq(any_ & (who == i))
                out.append((who, any_))
            return out

        rgrant = arbitrate([ln for _, ln, _ in reads], st_use, "rd")
        wgrant = arbitrate([ln for _, ln, _ in writes], ld_use, "wr")

        # bank read ports: ST's row, else the granted requester's
        for b in range(P):
            rp = rports[b]
            who, any_ = rgrant[b]
            row = st_row[b]
            for i, (_, ln, _) in enumerate(reads):
                row = Mux(any_ & (who == i), ln.rows[b], row)
            m.d.comb += [rp.en.eq(st_use[b] | any_), rp.addr.eq(row)]
        words = Array([rp.data for rp in rports])

        # bank write ports: LD's line (above), else the granted requester's served bytes
        for b in range(P):
            wp = wports[b]
            who, any_ = wgrant[b]
            for i, (tag, ln, extra) in enumerate(writes):
                with m.If(~ld_use[b] & any_ & (who == i)):
                    m.d.comb += wp.addr.eq(ln.rows[b])
                    for q in range(Wd):
                        v, d = _first(self._write_hits(ln, extra, b, q))
                        m.d.comb += [wp.en[q].eq(v), wp.data[8 * q:8 * q + 8].eq(d)]

        # ST data: the words of the line, one cycle later
        st_bank_q = [Signal(bb if bb else 1, name=f"st_bank_q{j}") for j in range(nwords)]
        m.d.sync += [q.eq(sb) for q, sb in zip(st_bank_q, st_bank)]
        st_ok_q = Signal()
        m.d.sync += st_ok_q.eq(st_ok)
        for j in range(self.line):
            wj, q = divmod(j, Wd)
            byte = words[st_bank_q[wj]].word_select(q, 8) if Wd * nwords >= self.line else 0
            m.d.comb += self.st_data[8 * j:8 * j + 8].eq(Mux(st_ok_q, byte, 0))

        self._gather_data(m, reads, words)
        return m
