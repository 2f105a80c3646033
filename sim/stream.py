"""Streaming: the same Binary replayed frame after frame, and what keeps the replay correct.

In streaming mode (``sim.perf.simulate(binary, frames=F)``) the dispatcher appends frame k+1's
copy of every unit queue behind frame k's, so a unit starts frame k+1 as soon as it has finished
its own part of frame k while other units still work on frame k (e.g. the LD unit loads the next
frame's input and stem weights while the MAT runs the head's linears and the host its
LayerNorm). Two things keep such a replay correct, and the cycle model enforces both:

1. **Semaphores per frame.** Every SIGNAL and WAIT of frame k acts on frame k's copy of its
   semaphore (counters start at 0 for every frame). The hardware needs one bank of the
   semaphore file per frame in flight, selected by the frame number modulo the number of
   banks, and a bank cleared when its frame has completed. (Counting semaphores without banks
   would be wrong: with one counter, a unit of frame k+1 can signal before a unit of frame k
   has, and release a frame-k WAIT early.) ``sim.perf`` reports the most frames in flight at
   once (``PerfReport.frames_in_flight``): that many banks are needed.
2. **Buffer and DRAM hazards across frames.** Within a frame the compiler's semaphores order
   every access; across frames nothing in the Binary does. So an instruction of frame k+1 that
   *writes* a location (a buffer byte range of B, C, OUT, a core's A, AUX, DIV, or a DRAM range)
   waits until every instruction of frame k that reads or writes an overlapping range has
   completed (compute: drained; LOAD / STORE: landed; HOST_LN: done). Reads of frame k+1 need
   no extra rule: each follows a write of frame k+1 in the same frame, which already waited.
   Locations are the instructions' exact footprints, taken from the functional simulator
   (:class:`sim.funcsim._Machine` executing the Binary once), rounded out to 16-byte blocks
   (64 bytes in DRAM) and, for strided accesses, to the hull of the access. In hardware this is
   a per-unit "frame fence": before the first write of frame k+1 to a region, WAIT on a
   semaphore that frame k's last users of that region signal; the compiler (or the
   dispatcher) must emit these, this module lists them (:func:`frame_hazards`).

Not modelled: the host writing frame k+1's image into the input region and reading frame k's
logits. The Binary has one input and one output region; a streaming host must double-buffer
them (two base addresses, alternated per frame) so that writing the next image never waits for
the accelerator, and this costs no accelerator cycles. The hazard rule above treats the input
region as read-only, which is what double buffering gives.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .funcsim import _Machine, build_queues, host_ln
from .isa import BUF_NAMES, BUFS

__all__ = ["footprints", "frame_hazards", "fence_counts", "phase_fences", "has_fences",
           "BUF_BLOCK", "DRAM_BLOCK"]

BUF_BLOCK = 16      #: bytes per hazard block in the on-chip buffers
DRAM_BLOCK = 64     #: bytes per hazard block in DRAM


class _Recorder(_Machine):
    """The functional simulator, recording every buffer / DRAM range an instruction touches."""

    def __init__(self, binary):
        super().__init__(binary)
        self.cur = None

    def _mem(self, stream, bid, store=None):
        name = BUF_NAMES[bid]
        if name in self.glob:
            return name
        return (stream, store or name)

    def _rec(self, mem, lo, hi, write):
        if self.cur is not None and hi > lo:
            self.cur.append((mem, int(lo), int(hi), bool(write)))

    def _span(self, stream, bid, store, addr, nch, n, cstride, bpe, block, write):
        """Record the range from the first to the last byte the access touches
        (``_Machine.index``: planar or blocked)."""
        if nch and n:
            idx = self.index(addr, nch, n, cstride, bpe, block)
            self._rec(self._mem(stream, bid, store), idx.min(), idx.max() + 1, write)

    def read(self, stream, bid, addr, nch, n, cstride, signed, bpe=1, store=None, block=0):
        self._span(stream, bid, store, addr, nch, n, cstride, bpe, block, False)
        return super().read(stream, bid, addr, nch, n, cstride, signed, bpe, store, block)

    def write(self, stream, bid, addr, arr, cstride, bpe=1, store=None, block=0):
        a = np.asarray(arr).reshape(np.asarray(arr).shape[0], -1)
        self._span(stream, bid, store, addr, a.shape[0], a.shape[1], cstride, bpe, block, True)
        return super().write(stream, bid, addr, arr, cstride, bpe, store, block)

    def params(self, stream, addr, n):
        self._rec("C", addr, addr + 32 * n, False)
        return super().params(stream, addr, n)

    def cread(self, addr, n):
        self._rec("C", addr, addr + n, False)
        return super().cread(addr, n)

    def dma(self, stream, ins, store):
        f = ins.f
        if f["buf"] == BUFS["A"]:
            mem = (f"core{f.get('core', 0)}", "A")
        else:
            mem = BUF_NAMES[f["buf"]]
        cnt, ln = f["count"], f["length"]
        if cnt and ln:
            self._rec(mem, f["buf_addr"], f["buf_addr"] + cnt * ln, not store)
            self._rec("DRAM", f["dram_addr"], f["dram_addr"] + (cnt - 1) * f["stride"] + ln, store)
        return super().dma(stream, ins, store)

    def host_ln(self, ins):
        def read(a, n):
            self._rec("DRAM", a, a + n, False)
            return self.dram[a:a + n]

        def write(a, data):
            self._rec("DRAM", a, a + len(data), True)
            self._dram_write(a, data)
        host_ln(ins.f, read=read, write=write)


def footprints(binary) -> dict:
    """``{(stream, unit): [[(mem, lo, hi, write), ...] per instruction of that queue]}``: the
    byte ranges every instruction of ``binary`` reads and writes (``mem``: ``"B"``, ``"C"``,
    ``"OUT"``, ``"DRAM"`` or ``(core stream, "A" | "AUX" | "AUX_A" | "DIV")``), from one run of
    the functional simulator on a zero input (addresses do not depend on the data)."""
    from . import golden
    prog = binary.prog
    t = prog.tensors[prog.inputs[0]]
    x = np.zeros(t.shape, dtype=np.int64)
    m = _Recorder(binary)
    binary.write_input(m.dram, golden._check_input(prog, x))
    queues = build_queues(binary)
    keys = list(queues)
    out = {k: [None] * len(q) for k, q in queues.items()}
    pc = {k: 0 for k in keys}
    while True:
        progress = False
        for k in keys:
            q = queues[k]
            while pc[k] < len(q):
                m.cur = []
                if not m.step(k[0], k[1], q[pc[k]][0]):
                    break
                out[k][pc[k]] = m.cur
                pc[k] += 1
                progress = True
        if all(pc[k] == len(queues[k]) for k in keys):
            break
        if not progress:
            raise RuntimeError("footprints: the functional simulator deadlocked")
    return out


def frame_hazards(binary, fp: dict | None = None) -> dict:
    """``{(stream, unit): {pc: [(other key, other pc), ...]}}``: for every instruction that
    writes, the instructions of the *previous* frame it must wait for (module doc, rule 2): per
    queue only the last one touching an overlapping block (a unit completes its instructions
    in order, so the last one's completion implies the others')."""
    fp = footprints(binary) if fp is None else fp
    keys = list(fp)
    kidx = {k: i for i, k in enumerate(keys)}
    spans = defaultdict(list)        # mem -> [(key index, pc, lo block, hi block)]
    for k, per in fp.items():
        for pc, acc in enumerate(per):
            for mem, lo, hi, _w in acc or ():
                blk = DRAM_BLOCK if mem == "DRAM" else BUF_BLOCK
                spans[mem].append((kidx[k], pc, lo // blk, -(-hi // blk)))
    last = {}                         # mem -> (queue rows, [rows x blocks] last pc touching)
    for mem, lst in spans.items():
        rows = sorted({s[0] for s in lst})
        ridx = {r: i for i, r in enumerate(rows)}
        nb = max(s[3] for s in lst)
        arr = np.full((len(rows), nb), -1, dtype=np.int64)
        for ki, pc, lo, hi in lst:           # in queue order per key: assignment = max
            arr[ridx[ki], lo:hi] = pc
        last[mem] = (rows, arr)
    out = {}
    for k, per in fp.items():
        dk = {}
        for pc, acc in enumerate(per):
            need = {}
            for mem, lo, hi, w in acc or ():
                if not w:
                    continue
                blk = DRAM_BLOCK if mem == "DRAM" else BUF_BLOCK
                rows, arr = last[mem]
                mx = arr[:, lo // blk: -(-hi // blk)].max(axis=1)
                for r, v in zip(rows, mx):
                    if v >= 0 and v > need.get(r, -1):
                        need[r] = int(v)
            if need:
                dk[pc] = [(keys[r], v) for r, v in need.items()]
        out[k] = dk
    return out


def has_fences(binary) -> bool:
    """Whether ``binary`` carries its own frame fences (WAITs with ``prev`` = 1, written by
    ``compile(..., stream=True)``: :func:`sim.compile.streaming.insert_fences`)."""
    return any(i.op == "WAIT" and i.get("prev", 0) for s in binary.streams.values() for i in s)


def _layer_phases(binary) -> dict:
    """layer index -> its ``phase`` (set by ``compile(..., stream=True)``; empty otherwise)."""
    return {i: ly["phase"] for i, ly in enumerate(binary.layers) if "phase" in ly}


def fence_counts(binary, hz: dict | None = None, phases: dict | None = None) -> dict:
    """How many frame fences ``binary`` needs (``hz``: :func:`frame_hazards`, computed when
    None): ``fences``, the instructions of frame k+1 that wait for frame k; ``backward``, those
    that wait for an instruction of a *later* layer than their own (only these can hold frame
    k+1 back while frame k finishes; the others wait for work frame k did before it); and, with
    layer phases (``phases``: layer index -> ``"front"`` / ``"middle"`` / ``"tail"``, by default
    the ``phase`` of ``binary.layers``, set by ``compile(..., stream=True)``), ``front_tail``:
    fences of a front instruction against a tail one, and ``front_middle``."""
    hz = frame_hazards(binary) if hz is None else hz
    if phases is None:
        phases = _layer_phases(binary)
    q = build_queues(binary)
    out = {"fences": 0, "backward": 0}
    if phases:
        out.update(front_tail=0, front_middle=0)
    for k, d in hz.items():
        for pc, lst in d.items():
            li = q[k][pc][1]
            others = [q[ok][opc][1] for ok, opc in lst]
            out["fences"] += 1
            out["backward"] += any(o > li for o in others)
            if phases and phases.get(li) == "front":
                ph = {phases.get(o) for o in others}
                out["front_tail"] += "tail" in ph
                out["front_middle"] += "middle" in ph
    return out


def phase_fences(binary) -> dict:
    """Coarse frame fences for a Binary compiled with ``stream=True`` (its layers carry a
    ``phase``), in the format of :func:`frame_hazards`: in every queue, the first instruction
    of frame k+1's front waits for the last instruction of each queue's front and middle in
    frame k, and the first instruction of its middle (or of its tail, when the queue has no
    middle) for the last instruction of each queue of frame k. Two WAITs per queue and frame,
    on a semaphore of the previous frame's bank, in place of the exact per-instruction fences:
    they imply every one of them, since the front's regions are disjoint from the tail's
    (``tests/test_stream_regions.py`` checks that they cover :func:`frame_hazards`)."""
    phases = _layer_phases(binary)
    if not phases:
        raise ValueError("phase_fences: the Binary was not compiled with stream=True")
    q = build_queues(binary)

    def ph(tag):
        return phases.get(tag, "middle")      # untagged (HALT): ordered like the middle
    last_fm, last = {}, {}
    for k, ins in q.items():
        fm = [pc for pc, (_, tag) in enumerate(ins) if ph(tag) != "tail"]
        if fm:
            last_fm[k] = fm[-1]
        if ins:
            last[k] = len(ins) - 1
    out = {}
    for k, ins in q.items():
        d = {}
        tags = [ph(tag) for _, tag in ins]
        if "front" in tags:
            d[tags.index("front")] = sorted(last_fm.items())
        rest = [pc for pc, t in enumerate(tags) if t != "front"]
        if rest:
            d[rest[0]] = sorted(last.items())
        out[k] = d
    return out
