"""The request geometry the core really issues: every gather / scatter request of the RTL core,
recorded in ``amaranth.sim``, classified by how it falls on word-interleaved banks.

:class:`RecordingEnv` is :class:`tb.core.harness.CoreEnv` that also logs each *accepted*
request of the core's gather / scatter ports (unit, port, buffer, address, strides, shape,
mask, the opcode of the unit's current compute instruction). :func:`classify` sorts one
request by the words of ``word`` bytes its byte lanes touch (addresses as the port contract
forms them, wrapped at ``ADDR_BITS``; lanes outside the buffer count, as a buffer would have
to decide that they are outside):

* ``word``: every lane in one aligned word;
* ``rows``: more than one word, but every *row* (elements at element stride 1) lies in
  ``ceil(elems / word)`` whole words from an offset that is a multiple of the row's width
  (rounded up to a power of two, at most ``word``): the request is ``rows`` such runs
  (a line when the rows are consecutive words);
* ``columns``: the row stride is 1 and every *column* (the rows of one element) lies in
  ``ceil(rows / word)`` words from an offset that is a multiple of its width: the depthwise
  ``xr`` row segment of a blocked Binary (the channels of one pixel per column);
* ``elements``: one row (gathers) or a scatter whose elements (1 or 4 bytes) are each within
  one word but not one run: e.g. one channel of several pixels or tokens at the block stride;
* ``straddle``: contiguous rows (or columns), but one crosses a word boundary it need not
  (its offset is not a multiple of its width);
* ``bytes``: anything else (lanes of one row in different words at a non-unit stride).

:func:`summarise` counts them per (opcode, port) with the words per request and the stride
values seen. ``tests/test_word_buffers.py::test_request_geometry`` runs it on blocked Binaries
(docs/global-buffers.md, "Request geometry of blocked Binaries").
"""

from __future__ import annotations

import collections

import numpy as np

from hw.core.ports import ADDR_BITS
from sim.isa import BUF_NAMES

from .harness import UNITS, CoreEnv

__all__ = ["CLASSES", "RecordingEnv", "classify", "format_table", "summarise"]

CLASSES = ("word", "rows", "columns", "elements", "straddle", "bytes")
COMPUTE_PREFIX = ("CONV", "DW", "ATT", "POOL")
MASK = (1 << ADDR_BITS) - 1


class RecordingEnv(CoreEnv):
    """``CoreEnv`` that logs every accepted gather / scatter request in ``self.requests``
    (dicts: unit, port, kind, buf, addr, row_stride, elem_stride, rows, elems, mask, wide,
    op, cycle)."""

    def __init__(self, *args, **kw):
        self.requests: list = []
        self.cur_op = {u: None for u, _ in UNITS}
        super().__init__(*args, **kw)

    def edge(self, s):
        # the opcode each unit executes in this cycle: its latest fetched compute instruction
        drv = self.driven()
        for u, _ in UNITS:
            if drv[f"{u}_instr__valid"] and s[f"{u}_instr__ready"]:
                op = self.instrs[u][self.pc[u]].op
                if op.startswith(COMPUTE_PREFIX):
                    self._next_op = getattr(self, "_next_op", {}) | {u: op}
        out = super().edge(s)
        for u, op in getattr(self, "_next_op", {}).items():
            self.cur_op[u] = op
        self._next_op = {}
        return out

    def _log(self, p, kind, s, rows, elems, mask=None, wide=0):
        u = p.split("_")[0]
        buf = s[f"{p}__buf"]
        self.requests.append({
            "unit": u, "port": p, "kind": kind, "buf": BUF_NAMES.get(buf, buf),
            "addr": s[f"{p}__addr"], "row_stride": s.get(f"{p}__row_stride", 0),
            "elem_stride": s[f"{p}__elem_stride"], "rows": rows, "elems": elems,
            "mask": (1 << elems) - 1 if mask is None else mask, "wide": wide,
            "op": self.cur_op[u], "cycle": self.cycle})

    def gather(self, p, rows, elems, s):
        self._log(p, "gather", s, rows, elems)
        return super().gather(p, rows, elems, s)

    def scatter(self, p, n, s):
        self._log(p, "scatter", s, 1, n, mask=s[f"{p}__mask"], wide=s[f"{p}__wide"])
        return super().scatter(p, n, s)


def _pow2ceil(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _runs_ok(starts, length: int, word: int) -> bool:
    """Runs of ``length`` consecutive bytes at ``starts``, each from an offset that is a
    multiple of its width (``length`` rounded up to a power of two, at most ``word``)."""
    g = min(_pow2ceil(length), word)
    return all(a % g == 0 for a in starts)


def classify(req: dict, *, word: int) -> tuple[str, int]:
    """``(class, distinct words)`` of one request (module doc)."""
    rows, elems = req["rows"], req["elems"]
    a, rs, es = req["addr"], req["row_stride"], req["elem_stride"]
    if req["kind"] == "scatter":
        nb = 4 if req["wide"] else 1
        ats = [(a + e * es) & MASK for e in range(elems) if (req["mask"] >> e) & 1]
        if not ats:
            return "word", 0
        words = {x // word for at in ats for x in (at, at + nb - 1)}
        if any(at // word != (at + nb - 1) // word for at in ats):
            return "straddle", len(words)
        if len(words) == 1:
            return "word", 1
        if es == nb:
            if _runs_ok([ats[0]], ats[-1] + nb - ats[0], word):
                return "rows", len(words)
            return "straddle", len(words)
        return "elements", len(words)
    idx = (a + np.arange(rows)[:, None] * rs + np.arange(elems)[None, :] * es) & MASK
    words = set((idx // word).reshape(-1).tolist())
    if len(words) == 1:
        return "word", 1
    if elems == 1 or es == 1:
        if _runs_ok(idx[:, 0].tolist(), elems, word):
            return "rows", len(words)
        if not (rows > 1 and rs == 1):
            return "straddle", len(words)
    if rows == 1:
        return "elements", len(words)
    if rs == 1:
        if _runs_ok(idx[0, :].tolist(), rows, word):
            return "columns", len(words)
        return "straddle", len(words)
    return "bytes", len(words)


def summarise(requests, *, word: int) -> dict:
    """``{(op, port, buf): {"n", "classes": Counter, "words": Counter, "rs": Counter,
    "es": Counter, "shape"}}`` over ``requests``."""
    out: dict = {}
    for r in requests:
        key = (r["op"] or "-", r["port"], r["buf"])
        d = out.setdefault(key, {"n": 0, "classes": collections.Counter(),
                                     "words": collections.Counter(), "rs": collections.Counter(),
                                     "es": collections.Counter(),
                                     "shape": f"{r['rows']}x{r['elems']}"})
        c, w = classify(r, word=word)
        d["n"] += 1
        d["classes"][c] += 1
        d["words"][w] += 1
        d["rs"][r["row_stride"]] += 1
        d["es"][r["elem_stride"]] += 1
    return out


def _top(counter, n=3):
    tot = sum(counter.values())
    return " ".join(f"{k}:{v / tot:.2f}" for k, v in counter.most_common(n)) + \
        (" .." if len(counter) > n else "")


def format_table(summary: dict) -> str:
    """One line per (opcode, port, buffer): requests, shape, class shares, words per request,
    the row and element strides seen (value:share)."""
    lines = [(f"{'op':9} {'port':8} {'buf':4} {'requests':>8} {'shape':6} "
             f"{'classes':32} {'words/req':20} {'row stride':22} elem stride")]
    for (op, port, buf), d in sorted(summary.items()):
        lines.append(f"{op:9} {port:8} {buf:4} {d['n']:8d} {d['shape']:6} "
                     f"{_top(d['classes']):32} {_top(d['words']):20} {_top(d['rs']):22} "
                     f"{_top(d['es'])}")
    return "\n".join(lines)
