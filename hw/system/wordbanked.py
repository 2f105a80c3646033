"""The global buffers B, C and OUT on word-interleaved banks, serving **whole words** (issue #13
phase 2, docs/global-buffers.md "Word-banked buffers").

:class:`hw.system.banked.BankedBuffers` serves any gather / scatter by its *byte lanes*: per
lane a ``banks * word``-to-1 byte multiplexer and a term in every bank's priority encoder. With
channel-blocked activations (``compile(..., layout="blocked")``) and pre-tiled weights the
core's requests are (measured, ``tb.core.geometry``) a few aligned *runs of bytes*, each inside
one word. :class:`WordBankedBuffers` has the same ports, address map, banks, DMA lines, round-
robin arbitration and stall contract, but decomposes each request into **chunks**, one word
read (or write) each, and arbitrates chunks instead of bytes:

* **rows** (a gather whose element stride is 1, or that has one element): row ``r`` is
  ``ceil(elems / g)`` chunks of ``g = min(pow2(elems), word)`` consecutive bytes at
  ``addr + r * row_stride + k * g``; the x word, the w line (rows of 8 bytes), the p records
  (rows of 32 bytes = 4 words), the r / o words of a conv;
* **columns** (ports named in ``columns``, a gather whose row stride is 1 and element stride
  is not): column ``e`` is ``ceil(rows / g)`` chunks of ``g = min(pow2(rows), word)`` bytes at
  ``addr + e * elem_stride + k * g``: the depthwise ``xr`` segment of a blocked Binary (N
  channels of one pixel per column), the attention's V rows, and with one row the one-byte
  elements of a pooled or residual channel at a pixel stride;
* **elements** (scatters): element ``e`` (1 byte, or 4 with ``wide``) at
  ``addr + e * elem_stride``, one chunk;

every chunk must start at a multiple of its width ``g`` (so it lies in one word, at one of
``word / g`` offsets). Each cycle every pending request asks, per bank, for the row of its
first unserved chunk there; a granted request is served every chunk in that bank row at once
(chunks of one word share one read). The data path is then, per chunk, a ``banks``-to-1
multiplexer of ``g``-byte slices of the bank words (a byte lane takes its chunk's byte at a
position fixed at elaboration, the mode selects between the rows and columns position), and
per bank write byte a multiplexer over the port's elements: no per-lane ``banks * word``-to-1
byte crossbar, and priority encoders over chunks, not bytes.

Requests outside these patterns (an element stride other than 1 where columns are not built
or the row stride is not 1 either, a chunk not aligned to its width, an int32 element not
aligned to 4) are **not served**: the request is accepted at once, its data reads 0 and
nothing is written, and the sticky flag ``violation`` is set with ``violation_port`` = the
first such port's index (``core * len(ports) + k`` over :attr:`ports`), for the accelerator
to report as an error. They never return wrong data silently.
"""

from __future__ import annotations

from amaranth import Cat, Const, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ..core.ports import ADDR_BITS
from .banked import BankedBuffers, _first, _Lanes
from .buffers import core_buffer_ports

__all__ = ["DEFAULT_COLUMNS", "WordBankedBuffers", "chunk_plan", "core_chunks"]

#: the core ports that may be served in column mode (tb.core.geometry on blocked Binaries):
#: the depthwise row segment (xr: channels of a pixel per column), the attention's V rows
#: (rmac_w of ATT_KV) and K tokens (rmac_x), the residual of a depthwise channel (rmac_r)
#: and the AUX unit's pooled / summed channel (aux_x): tokens or pixels at the block stride
DEFAULT_COLUMNS = ("rmac_xr", "rmac_w", "rmac_x", "rmac_r", "aux_x")


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def chunk_plan(rows: int, elems: int, word: int) -> dict:
    """The chunks of a ``rows x elems`` gather in each mode: ``{mode: (width g, chunks per
    row / column, chunks)}``."""
    gr, gc = min(_pow2(elems), word), min(_pow2(rows), word)
    kr, kc = -(-elems // gr), -(-rows // gc)
    return {"rows": (gr, kr, rows * kr), "columns": (gc, kc, elems * kc)}


def core_chunks(core_signature, *, word: int = 8, columns=None) -> dict:
    """``{"chunks", "lanes"}`` of one core: the chunks :class:`WordBankedBuffers` decomposes
    its ports into (per gather port the larger of its modes, one per scatter element) and the
    byte lanes :class:`hw.system.banked.BankedBuffers` serves (gather bytes, 4 per scatter
    element)."""
    gathers, scatters = core_buffer_ports(core_signature)
    cols = set(DEFAULT_COLUMNS if columns is None else columns)
    chunks = lanes = 0
    for name, rows, elems, _s in gathers:
        plan = chunk_plan(rows, elems, word)
        chunks += max(plan["rows"][2], plan["columns"][2] if name in cols and elems > 1 else 0)
        lanes += rows * elems
    for _name, elems, _s in scatters:
        chunks += elems
        lanes += 4 * elems
    return {"chunks": chunks, "lanes": lanes}


class WordBankedBuffers(BankedBuffers):
    """B, C and OUT in ``banks`` word-interleaved simple dual-port banks, serving whole-word
    chunks (module doc).

    Parameters (keyword-only): those of :class:`hw.system.banked.BankedBuffers` (``banks``,
    ``word``, ``line``, ``sizes``, ``cores``, ``core_signature`` with backpressure), plus
    ``columns``: names of the core's gather ports that may be served in column mode (default
    None: those of :data:`DEFAULT_COLUMNS` the core has; a name the core does not have is an
    error).

    Ports: those of ``BankedBuffers``, plus ``violation`` (Out(1), sticky) and
    ``violation_port`` (the index of the first port that issued an unsupported request:
    ``core * len(self.ports) + k``, ``self.ports[k]`` its name).
    """

    def __init__(self, *, core_signature, cores: int, sizes: dict, line: int = 16,
                 banks: int = 8, word: int = 8, ld_ports: int = 1,
                 columns=None):
        # checked before the banks (lib.memory) are made
        names = {n for n, *_ in core_buffer_ports(core_signature)[0]} \
            if isinstance(core_signature, wiring.Signature) else set()
        if columns is None:
            columns = sorted(set(DEFAULT_COLUMNS) & names)
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"columns must be a collection of port names, got {columns!r}")
        bad = sorted(set(columns) - names)
        if bad:
            raise ValueError(f"columns names {bad}: not gather ports of the core "
                             f"({sorted(names)})")
        super().__init__(core_signature=core_signature, cores=cores, sizes=sizes, line=line,
                         banks=banks, word=word, ld_ports=ld_ports)
        self.columns = frozenset(columns)

    def _extra_ports(self) -> dict:
        #: every core port, in the order of violation_port
        self.ports = [n for n, *_ in self.gathers] + [n for n, *_ in self.scatters]
        n = self.cores * len(self.ports)
        return {"violation": Out(1), "violation_port": Out(range(max(n, 2)))}

    def _requesters(self, m, fault):
        P, Wd, G = self.banks, self.word, self.gbits
        viol = []          # per port (core-major, ports in self.ports order): unsupported
        reads, writes = [], []
        for c in range(self.cores):
            for name, rows, elems, port, tag, base, size, known in \
                    self._gather_ports(m, c, fault):
                plan = chunk_plan(rows, elems, Wd)
                modes = ["rows"] + (["columns"] if name in self.columns and elems > 1 else [])
                rowm = Signal(name=f"{tag}_rowm")
                colm = Signal(name=f"{tag}_colm")
                m.d.comb += rowm.eq((port.elem_stride == 1) if elems > 1 else 1)
                if "columns" in modes:
                    m.d.comb += colm.eq(~rowm & ((port.row_stride == 1) if rows > 1 else 1))
                n = max(plan[md][2] for md in modes)
                chunks, oks, aligned = [], [], []
                for i in range(n):
                    ca = Signal(ADDR_BITS, name=f"{tag}_ca{i}")
                    act = Signal(name=f"{tag}_act{i}")
                    al = Signal(name=f"{tag}_al{i}")
                    g, k, cnt = plan["rows"]
                    r, q = divmod(i, k)
                    row_a = port.addr + port.row_stride * r + q * g
                    row_al = (row_a[:(g - 1).bit_length()] == 0) if g > 1 else Const(1)
                    if "columns" in modes:
                        gc, kc, cntc = plan["columns"]
                        e, qc = divmod(i, kc)
                        col_a = port.addr + port.elem_stride * e + qc * gc
                        col_al = (col_a[:(gc - 1).bit_length()] == 0) if gc > 1 else Const(1)
                        m.d.comb += [ca.eq(Mux(colm, col_a, row_a)),
                                     act.eq(Mux(colm, i < cntc, i < cnt)),
                                     al.eq(Mux(colm, col_al, row_al))]
                    else:
                        m.d.comb += [ca.eq(row_a), act.eq(i < cnt), al.eq(row_al)]
                    chunks.append((ca, act))
                    aligned.append(al | ~act)
                bad = Signal(name=f"{tag}_bad")
                m.d.comb += bad.eq(port.en & known & (~(rowm | colm) | ~Cat(*aligned).all()))
                viol.append(bad)
                lanes = []
                for i, (ca, act) in enumerate(chunks):
                    gaddr = Signal(G, name=f"{tag}_g{i}")
                    ok = Signal(name=f"{tag}_ok{i}")
                    m.d.comb += [gaddr.eq(base + ca),
                                 ok.eq(known & act & ~bad & (ca < size))]
                    lanes.append((ok, gaddr))
                    oks.append(ok)
                ln = _Lanes(m, tag, lanes, banks=P, word=Wd, en=port.en, complete_en=port.en)
                m.d.comb += port.ready.eq(ln.complete)
                reads.append((tag, ln, (port, rows, elems, oks, plan, modes, colm)))
            for elems, port, tag, base, size, known in self._scatter_ports(m, c):
                pre, vals, mis = [], [], []
                for e in range(elems):
                    at, _act, inr = self._scatter_element(m, port, tag, e, size, known, fault)
                    g = Signal(G, name=f"{tag}_g{e}")
                    m.d.comb += g.eq(base + at)
                    mis.append(port.mask[e] & port.wide & (at[:2] != 0))
                    pre.append((port.mask[e] & inr, g))
                    vals.append(port.data[e])
                bad = Signal(name=f"{tag}_bad")
                m.d.comb += bad.eq(port.en & known & Cat(*mis).any())
                viol.append(bad)
                lanes = []
                for e, (a, g) in enumerate(pre):
                    on = Signal(name=f"{tag}_on{e}")
                    m.d.comb += on.eq(a & ~bad)
                    lanes.append((on, g))
                ln = _Lanes(m, tag, lanes, banks=P, word=Wd, en=port.en, complete_en=port.en)
                m.d.comb += port.ready.eq(ln.complete)
                writes.append((tag, ln, (port, vals)))

        # the sticky violation flag and the first violating port
        flag = Signal()
        where = Signal.like(self.violation_port)
        m.d.comb += [self.violation.eq(flag), self.violation_port.eq(where)]
        anyv, first = _first([(v, Const(i, range(max(len(viol), 2)))) for i, v in enumerate(viol)])
        with m.If(anyv & ~flag):
            m.d.sync += [flag.eq(1), where.eq(first)]
        return reads, writes

    @staticmethod
    def _write_hits(ln, extra, b, q):
        """Element ``j`` writes byte ``q`` of bank ``b``: its own byte (narrow) or byte
        ``q % 4`` of its int32 (``wide``, aligned to 4)."""
        port, vals = extra
        out = []
        for j in range(ln.n):
            at_q = Mux(port.wide, ln.off[j][2:] == (q >> 2), ln.off[j] == q)
            out.append((ln.srv[j] & (ln.bank[j] == b) & at_q,
                        Mux(port.wide, vals[j][8 * (q & 3):8 * (q & 3) + 8], vals[j][:8])))
        return out

    def _gather_data(self, m, reads, words):
        """Per chunk: the bank word one cycle after its service (a ``banks``-to-1 multiplexer of
        ``g``-byte slices), a register for chunks served before the accepting cycle; each byte
        lane its chunk's byte (rows or columns position by the request's mode)."""
        Wd = self.word
        wb, bb = (Wd - 1).bit_length(), (self.banks - 1).bit_length()
        for tag, ln, (port, rows, elems, oks, plan, modes, colm) in reads:
            srv_q = Signal(ln.n, name=f"{tag}_srv_q")
            ok_q = Signal(ln.n, name=f"{tag}_ok_q")
            colm_q = Signal(name=f"{tag}_colm_q")   # the mode of the request served last cycle
            m.d.sync += [srv_q.eq(ln.srv), colm_q.eq(colm)]
            with m.If(ln.complete):
                m.d.sync += ok_q.eq(Cat(*oks))
            width = max(plan[md][0] for md in modes)
            vals = []
            for i in range(ln.n):
                bq = Signal(bb if bb else 1, name=f"{tag}_bq{i}")
                oq = Signal(wb, name=f"{tag}_oq{i}")
                with m.If(ln.srv[i]):
                    m.d.sync += [bq.eq(ln.bank[i]), oq.eq(ln.off[i])]
                word = words[bq]
                slices = {}
                for md in modes:
                    g = plan[md][0]
                    lo = (g - 1).bit_length()
                    slices[md] = word if g == Wd else word.word_select(oq[lo:], 8 * g)
                cur = Signal(8 * width, name=f"{tag}_cur{i}")
                if len(modes) > 1:
                    m.d.comb += cur.eq(Mux(colm_q, slices["columns"], slices["rows"]))
                else:
                    m.d.comb += cur.eq(slices["rows"])
                keep = Signal(8 * width, name=f"{tag}_keep{i}")
                with m.If(srv_q[i]):
                    m.d.sync += keep.eq(cur)
                val = Signal(8 * width, name=f"{tag}_val{i}")
                m.d.comb += val.eq(Mux(ok_q[i], Mux(srv_q[i], cur, keep), 0))
                vals.append(val)
            gr, kr, _ = plan["rows"]
            gc, kc, _ = plan["columns"]
            for r in range(rows):
                for e in range(elems):
                    q_r, j_r = divmod(e, gr)
                    b_r = vals[r * kr + q_r].word_select(j_r, 8)
                    if len(modes) > 1:
                        q_c, j_c = divmod(r, gc)
                        b_c = vals[e * kc + q_c].word_select(j_c, 8)
                        m.d.comb += port.data[r][e].eq(Mux(colm_q, b_c, b_r))
                    else:
                        m.d.comb += port.data[r][e].eq(b_r)
