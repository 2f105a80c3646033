"""Cycle-accurate (instruction-level) performance model of a :class:`sim.compile.Binary`.

The same per-unit in-order queues as the functional simulator (:func:`sim.funcsim.build_queues`)
run against a clock. The core units (MAT, R-MAC, AUX of every core stream) are timed as the RTL
core ``hw.core`` is built; that timing lives in :mod:`sim.timing` (per-opcode fixed costs, the
engines' and requant lanes' latencies, the unit serialisation rule), and tests/test_hw_core.py
checks it instruction by instruction against amaranth.sim. In short:

* a core unit fetches one instruction at a time. ``SETR``, ``NOP``, ``SIGNAL`` take 1 cycle
  (the semaphore counter shows a SIGNAL from ``env.signal_latency`` cycles later: the next
  cycle, or 2 with ``hw.system``'s counter RAM); a ``WAIT`` is consumed in the first cycle its
  counter has reached ``count`` (1 cycle; ``env.wait_extra`` more when the semaphore was already
  satisfied: the Python harness's registered ``ready``, ``hw.system``'s look-up); a compute
  instruction (``CONV_*``, ``DW_RSA``, ``POOL``, ``ATT_*``) takes
  :func:`sim.timing.compute_timing` ``pre + steps + post`` cycles: the fetch/setup states, one
  engine step per cycle, and the output pipeline (gather read, engine latency, parameter latch,
  requant / log2 / shifter stages) until its last output is written. **The unit drains each
  compute instruction before it fetches the next one**, so a SIGNAL after it means "outputs in
  place".
* the global stream's units (LD, ST DMA; HOST) are not RTL: ``LOAD``/``STORE`` use one DRAM
  shared by all units, moving ``dram_bytes_per_cycle`` bytes per cycle; every chunk of a
  transfer is rounded up to whole 16-byte beats (the 128-bit AXI data width of one HP port). A
  transfer occupies the DRAM for ``beats*16 / dram_bytes_per_cycle`` cycles, first-come
  first-served, and its data is in the buffer ``dram_latency_cycles`` later; the DMA unit
  issues the next transfer as soon as the DRAM accepted this one (outstanding transactions), so
  latency is paid once per dependency, not per transfer. A DMA ``SIGNAL`` is posted: it fires
  when the unit's transfers have landed; DMA ``WAIT`` takes no cycle, ``SETR`` one.
  ``HOST_LN``: ``host_overhead_cycles + host_cycles_per_elem * C`` on the host CPU (interrupt,
  cache flush, LN, write back). With ``env=sim.timing.PYTHON_HARNESS`` the DMA takes no time
  (as ``tb.core.harness`` plays it), for comparisons with the RTL runs; with
  ``env=sim.timing.AXI_SYSTEM`` the DMA is timed as ``hw.system.Accelerator`` builds it, at the
  AXI level (:class:`sim.timing.AxiDma`: separate read and write channels of one port, bursts,
  outstanding requests, the memory's latency ``dram_latency_cycles``, non-posted DMA SIGNALs,
  and the semaphore file's latencies for the global units' WAITs and SIGNALs too).

Per layer (IntProgram node) the report gives MACs, the cycles attributed to the layer (its
completion time minus the previous layer's completion time, so the column sums to the total),
the busiest unit's occupancy (a core unit: the cycles its compute instructions hold it,
fixed costs included; the DMA units: DRAM cycles), MAC utilisation and what bounds it.
Roofline: per layer ``max(MACs / multipliers, bytes / dram_bytes_per_cycle)`` summed, with the
layer's actual DRAM bytes in this binary (and, as a second figure, the compulsory bytes: each
tensor, weight and parameter block once).
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field

import numpy as np

from . import timing
from .compile import _cdiv
from .funcsim import build_queues
from .isa import BUFS, REG_NAMES

__all__ = ["PerfReport", "LayerPerf", "simulate", "instr_cycles", "BEAT"]

BEAT = timing.BEAT   #: bytes per AXI beat of one HP port


@dataclass
class LayerPerf:
    name: str
    kind: str
    macs: int
    cycles: int            # attributed (completion-to-completion)
    span: int              # first start to last completion
    busy: dict             # unit -> max over cores of occupied cycles (pre + steps + post)
    dram_cycles: int
    dram_bytes: int
    compulsory_bytes: int
    roofline_cycles: float
    utilization: float
    bound: str


@dataclass
class PerfReport:
    config: dict
    model: str
    cycles: int
    clock_mhz: float
    multipliers: int
    dsps: int
    macs: int
    layers: list
    dram_bytes: int
    roofline_cycles: float
    roofline_compulsory_cycles: float
    unit_busy: dict = field(default_factory=dict)

    @property
    def latency_ms(self):
        return self.cycles / (self.clock_mhz * 1e3)

    @property
    def fps(self):
        return 1e3 / self.latency_ms

    @property
    def gops(self):
        """Giga-operations per second, one MAC = 2 operations."""
        return 2 * self.macs / (self.latency_ms * 1e6)

    @property
    def gmacs(self):
        return self.macs / (self.latency_ms * 1e6)

    @property
    def utilization(self):
        return self.macs / (self.cycles * self.multipliers)

    @property
    def roofline_fps(self):
        return self.clock_mhz * 1e6 / self.roofline_cycles

    @property
    def roofline_ratio(self):
        return self.fps / self.roofline_fps

    def breakdown(self) -> dict:
        """MAC share per op type (generic / pointwise / depthwise / matmul: the paper's classes,
        with grouped pointwise counted as pointwise and attention + linear as matmul)."""
        cls = {"generic": "generic", "pointwise": "pointwise", "grouped_pointwise": "pointwise",
               "depthwise": "depthwise", "attention": "matmul", "matmul": "matmul"}
        out = {"generic": 0, "pointwise": 0, "depthwise": 0, "matmul": 0}
        for l in self.layers:
            if l.kind in cls:
                out[cls[l.kind]] += l.macs
        tot = sum(out.values()) or 1
        return {k: v / tot for k, v in out.items()}

    def summary(self) -> dict:
        return {"model": self.model, "config": self.config.get("name"), "cycles": self.cycles,
                "latency_ms": self.latency_ms, "fps": self.fps, "gops": self.gops,
                "gmacs_per_s": self.gmacs, "gops_per_dsp": self.gops / self.dsps,
                "mac_utilization": self.utilization, "macs": self.macs,
                "roofline_fps": self.roofline_fps, "fps_over_roofline": self.roofline_ratio,
                "roofline_compulsory_fps": self.clock_mhz * 1e6 / self.roofline_compulsory_cycles,
                "dram_bytes": self.dram_bytes, "multipliers": self.multipliers, "dsps": self.dsps,
                "op_breakdown": self.breakdown()}

    def to_dict(self) -> dict:
        d = self.summary()
        d["config_full"] = self.config
        d["unit_busy"] = self.unit_busy
        d["layers"] = [asdict(l) for l in self.layers]
        return d


def instr_cycles(cfg, ins, regs) -> tuple[int, int]:
    """(engine steps, fixed cycles) of a compute instruction given the unit's registers: the
    unit fetches its next instruction ``steps + fixed`` cycles after this one
    (:func:`sim.timing.compute_timing`)."""
    t = timing.compute_timing(cfg, ins.op, regs, ins.f)
    return t.steps, t.pre + t.post


def _dma_bytes(f):
    return f["count"] * _cdiv(f["length"], BEAT) * BEAT


def simulate(binary, *, trace: list | None = None,
             env: timing.SemaphoreTiming = timing.SYSTEM) -> PerfReport:
    """Run the timed model of ``binary``; returns a :class:`PerfReport`. With ``trace`` (a
    list), every executed instruction is appended as (stream, unit, op, layer, start, end):
    ``start`` is the cycle the instruction is fetched (for a WAIT: consumed), ``end`` the cycle
    its unit can fetch the next one (for LOAD/STORE: the DRAM accepted it).
    ``env``: :data:`sim.timing.SYSTEM` (the accelerator) or :data:`sim.timing.PYTHON_HARNESS`
    (the timing of ``tb.core.harness``: registered WAIT ready, DMA in zero time)."""
    cfg = binary.cfg
    queues = build_queues(binary)
    keys = list(queues)
    nl = len(binary.layers)
    pc = {k: 0 for k in keys}
    free = {k: 0 for k in keys}     # issue time
    drain = {k: 0 for k in keys}    # completion of everything started (DMA units)
    regs = {k: {} for k in keys}
    sems = {}                        # sem -> counter
    parked = {}                      # sem -> [(count, key, head time)]
    dram_free = 0
    l_start = np.full(nl, np.iinfo(np.int64).max, dtype=np.int64)
    l_end = np.zeros(nl, dtype=np.int64)
    l_busy = [dict() for _ in range(nl)]       # (unit) -> {stream: cycles}
    l_dram = np.zeros(nl, dtype=np.int64)
    l_bytes = np.zeros(nl, dtype=np.int64)
    unit_busy = {k: 0 for k in keys}
    heap = [(0, i, k) for i, k in enumerate(keys)]
    last_signal = 0
    heapq.heapify(heap)
    order = {k: i for i, k in enumerate(keys)}
    head = {}                       # key -> head time of a WAIT woken by a SIGNAL
    wx = env.wait_extra
    sl = env.signal_latency
    zero_dma = env.dma_zero_time
    axi = env.axi
    ch_free = {"LD": 0, "ST": 0}        # AXI: the read / write data channel is free
    inflight = {"LD": [], "ST": []}     # AXI: completion times of the bursts in flight
    accept = {"LD": 0, "ST": 0}         # AXI: the engine takes its next descriptor
    a_line = timing.a_line_bytes(cfg.N, cfg.dram_bytes_per_cycle)

    def note(tag, t0, t1, unit, stream, busy):
        if tag < 0:
            return
        l_start[tag] = min(l_start[tag], t0)
        l_end[tag] = max(l_end[tag], t1)
        if busy:
            d = l_busy[tag].setdefault(unit, {})
            d[stream] = d.get(stream, 0) + busy

    while heap:
        t, _, k = heapq.heappop(heap)
        if k[0] == "__sig__":
            _, sm, cnt = k
            sems[sm] = sems.get(sm, 0) + cnt
            still = []
            for need, wk, h in parked.pop(sm, []):
                if sems[sm] >= need:
                    head[wk] = h
                    heapq.heappush(heap, (t, order[wk], wk))
                else:
                    still.append((need, wk, h))
            if still:
                parked[sm] = still
            last_signal = max(last_signal, t)
            continue
        q = queues[k]
        if pc[k] >= len(q):
            continue
        ins, tag = q[pc[k]]
        op = ins.op
        stream, unit = k
        core = stream != "global"
        start = t
        if op == "WAIT":
            h = head.pop(k, t)
            if sems.get(ins["sem"], 0) < ins["count"]:
                parked.setdefault(ins["sem"], []).append((ins["count"], k, h))
                continue
            if core:        # consumed at max(head + wait_extra, visible); one cycle
                start = max(h + wx, t)
                nxt = start + 1
            elif axi is not None:   # the RTL's global units wait on the same semaphore file
                start = max(h + wx, t)
                nxt = start
            else:
                nxt = t
        elif op == "SIGNAL":
            if core:        # the counter shows it from t + signal_latency (1: the next cycle)
                heapq.heappush(heap, (t + sl, -1, ("__sig__", ins["sem"], ins["count"])))
                nxt = t + 1
            elif axi is not None and unit in ch_free:
                # not posted: the unit waits for its transfers, then signals (next cycle)
                ts = max(t, drain[k])
                heapq.heappush(heap, (ts + sl, -1, ("__sig__", ins["sem"], ins["count"])))
                start, nxt = ts, ts + 1
            else:           # posted: fires when the unit's transfers have landed
                ts = t if zero_dma else max(t, drain[k])
                heapq.heappush(heap, (ts, -1, ("__sig__", ins["sem"], ins["count"])))
                nxt = t
        elif op == "SETR":
            regs[k][REG_NAMES[ins["reg"]]] = ins["value"]
            nxt = t if (zero_dma and not core) else t + 1
        elif op in ("NOP", "HALT"):
            nxt = t + 1 if core else t
        elif op in ("LOAD", "STORE"):
            nbytes = _dma_bytes(ins.f)
            if tag >= 0:
                l_bytes[tag] += ins["count"] * ins["length"]
            # a LOAD into a core's buffer A moves at most one line per cycle (its write port)
            to_a = ins["buf"] == BUFS["A"]
            if zero_dma:
                nxt = t + (_cdiv(ins["count"] * ins["length"], a_line) if to_a else 0)
                note(tag, t, nxt, unit, stream, 0)
            elif axi is not None:
                start, nxt, done, xfer = _axi_transfer(axi, cfg, ins, t, unit, ch_free,
                                                       inflight, accept)
                drain[k] = max(drain[k], done)
                unit_busy[k] += xfer
                note(tag, start, done, unit, stream, xfer)
                if tag >= 0:
                    l_dram[tag] += xfer
            else:
                xfer = _cdiv(nbytes, min(cfg.dram_bytes_per_cycle, a_line) if to_a
                             else cfg.dram_bytes_per_cycle)
                start = max(t, dram_free)
                dram_free = start + xfer
                nxt = start + xfer
                done = nxt + cfg.dram_latency_cycles
                drain[k] = max(drain[k], done)
                unit_busy[k] += xfer
                note(tag, start, done, unit, stream, xfer)
                if tag >= 0:
                    l_dram[tag] += xfer
        elif op == "HOST_LN":
            busy = cfg.host_overhead_cycles + cfg.host_cycles_per_elem * ins["channels"]
            # the host reads and writes DRAM too (C bytes in and out), negligible next to busy
            nxt = t + busy
            drain[k] = max(drain[k], nxt)
            unit_busy[k] += busy
            note(tag, t, nxt, unit, stream, busy)
        else:
            # a core unit drains each compute instruction before it fetches the next one
            ct = timing.compute_timing(cfg, op, regs[k], ins.f)
            nxt = t + ct.cycles
            unit_busy[k] += ct.cycles
            note(tag, t, nxt, unit, stream, ct.cycles)
        if axi is not None:
            # the dispatcher fetched this instruction word over the read channel: one beat
            ch_free["LD"] = max(ch_free["LD"], start) + 1
        if trace is not None:
            trace.append((stream, unit, op, tag, int(start), int(nxt)))
        free[k] = nxt
        pc[k] += 1
        if pc[k] < len(q):
            heapq.heappush(heap, (nxt, order[k], k))
    stuck = [f"{k[0]}/{k[1]}: {queues[k][pc[k]][0]}" for k in keys if pc[k] < len(queues[k])]
    if stuck:
        raise RuntimeError(f"perf model deadlock: {stuck[:6]}")
    total = int(max(max(drain.values()), max(free.values()), last_signal))
    return _report(binary, total, l_start, l_end, l_busy, l_dram, l_bytes, unit_busy)


def _axi_transfer(axi, cfg, ins, t, unit, ch_free, inflight, accept):
    """One LOAD / STORE on the AXI model (:class:`sim.timing.AxiDma`): ``(start, next fetch
    of the unit, landed, data-channel cycles)``; updates the channel state in place."""
    f = ins.f
    if f["count"] == 0 or f["length"] == 0:
        return t, t + 1, t, 0
    lat = cfg.dram_latency_cycles
    start = max(t, accept[unit])
    req = start + 1                    # the window check
    fly, free = inflight[unit], ch_free[unit]
    beats = 0
    last_chunk = -1
    for chunk, n in axi.bursts(f["dram_addr"], f["count"], f["length"], f["stride"]):
        if chunk != last_chunk:
            req += axi.chunk_cycles
            last_chunk = chunk
        fly.sort()
        while fly and fly[0] <= req:
            fly.pop(0)
        if len(fly) >= axi.outstanding:
            req = max(req, fly.pop(0))
        if unit == "LD":
            first = max(req + lat, free)
            free = first + n
            fly.append(free)
        else:                          # W beats follow the AW; the response comes later
            first = max(req + 1, free)
            free = first + n
            fly.append(free + lat)
        beats += n
        req += 1
    ch_free[unit] = free
    accept[unit] = req
    landed = free + axi.landing if unit == "LD" else max(fly)
    return start, req, landed, beats


def _compulsory_bytes(binary, li) -> int:
    n = binary.prog.nodes[li]
    if n.op == "concat":
        return 0
    p = binary.prog
    tot = 0
    for t in n.inputs + ([n.epilogue.residual] if n.epilogue and n.epilogue.residual else []):
        tot += int(np.prod(p.tensors[t].shape)) * (1 if p.tensors[t].bits <= 8 else 4)
    yt = p.tensors[n.output]
    tot += int(np.prod(yt.shape)) * (1 if yt.bits <= 8 else 4)
    for kind in ("weight", "param"):
        s = binary.symbols.get(f"{kind}:{n.name}")
        if s and n.op != "layernorm":
            tot += s["nbytes"]
    return tot


def _report(binary, total, l_start, l_end, l_busy, l_dram, l_bytes, unit_busy) -> PerfReport:
    from .zoo import node_macs
    cfg, prog = binary.cfg, binary.prog
    layers = []
    prev_end = 0
    roof = roofc = 0.0
    for li, n in enumerate(prog.nodes):
        macs = node_macs(prog, n)
        end = int(l_end[li]) if l_start[li] < np.iinfo(np.int64).max else prev_end
        cyc = max(0, end - prev_end)
        start = int(l_start[li]) if l_start[li] < np.iinfo(np.int64).max else end
        prev_end = max(prev_end, end)
        busy = {u: max(d.values()) for u, d in l_busy[li].items()}
        eng = max([busy.get(u, 0) for u in ("MAT", "RMAC", "AUX", "HOST")] + [0])
        comp = _compulsory_bytes(binary, li)
        r = max(macs / cfg.multipliers, l_bytes[li] / cfg.dram_bytes_per_cycle)
        rc = max(macs / cfg.multipliers, comp / cfg.dram_bytes_per_cycle)
        roof += r
        roofc += rc
        if cyc == 0:
            bound = "overlapped"
        elif eng >= 0.75 * cyc and eng >= l_dram[li]:
            bound = "compute"
        elif l_dram[li] >= 0.75 * cyc:
            bound = "DRAM"
        else:
            bound = "dependency"
        layers.append(LayerPerf(n.name, n.kind, int(macs), int(cyc), int(end - start), busy,
                                int(l_dram[li]), int(l_bytes[li]), int(comp), float(r),
                                float(macs / (cyc * cfg.multipliers)) if cyc else 0.0, bound))
    # fused chains (one tile loop computes several layers): share the group's cycles among
    # its layers in proportion to their MACs; the bound is the group's
    groups = {}
    for li, info in enumerate(binary.layers):
        head = info.get("fused_into")
        if head is not None:
            groups.setdefault(head, []).append(li)
    for li, info in enumerate(binary.layers):
        if info["name"] in groups:
            members = [li] + groups[info["name"]]
            cyc = sum(layers[m].cycles for m in members)
            macs = sum(layers[m].macs for m in members) or 1
            eng = max(max(layers[m].busy.values(), default=0) for m in members)
            dram = sum(layers[m].dram_cycles for m in members)
            bound = ("compute" if eng >= 0.75 * cyc and eng >= dram else
                     "DRAM" if dram >= 0.75 * cyc else "dependency") + " (fused)"
            for m in members:
                lm = layers[m]
                lm.cycles = int(round(cyc * lm.macs / macs))
                lm.utilization = lm.macs / (lm.cycles * cfg.multipliers) if lm.cycles else 0.0
                lm.bound = bound
    ub = {}
    for (s, u), v in unit_busy.items():
        key = u if s != "global" else f"global.{u}"
        ub[key] = max(ub.get(key, 0), int(v))
    return PerfReport(cfg.to_dict(), binary.prog.meta.get("name", "?"), int(total), cfg.clock_mhz,
                      cfg.multipliers, cfg.dsps, int(sum(l.macs for l in layers)), layers,
                      int(l_bytes.sum()), roof, roofc, ub)
