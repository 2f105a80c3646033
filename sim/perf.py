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

Per layer (IntProgram node) the report gives MACs, the cycles attributed to the layer
(:func:`attribute`: each cycle shared among the layers running in it, in proportion to the
multipliers of their busy engines, so the column sums to the total and no layer's utilisation
exceeds 100 %), the busiest unit's occupancy (a core unit: the cycles its compute instructions
hold it, fixed costs included; the DMA units: DRAM cycles), MAC utilisation and what bounds it.
The bounds that do not depend on the compiler are :mod:`sim.bounds` (``PerfReport.bounds``);
``binary_roofline_fps`` (per layer ``max(MACs / multipliers, bytes / dram_bytes_per_cycle)``
summed with the bytes *this Binary* moves) is a figure of the Binary, not a bound.

Streaming mode (``frames`` > 1, :func:`stream`): the Binary replayed back to back with
per-frame semaphores and cross-frame buffer hazards (:mod:`sim.stream`).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import timing
from .compile import _cdiv
from .funcsim import build_queues
from .isa import BUFS, REG_NAMES, Instr, wait_passes

__all__ = ["PerfReport", "LayerPerf", "simulate", "stream", "attribute", "instr_cycles", "BEAT"]

BEAT = timing.BEAT   #: bytes per AXI beat of one HP port


@dataclass
class LayerPerf:
    name: str
    kind: str
    macs: int
    cycles: float          # attributed (sim.perf.attribute: shares of the cycles it ran in)
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
    frame_done: list = field(default_factory=list)   # completion cycle of each frame
    frames_in_flight: int = 1
    bounds: object = None        # sim.bounds.Bounds of the IntProgram on the config
    streaming: dict | None = None    # set by stream(): steady-state figures

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
    def binary_roofline_fps(self):
        """FPS of ``sum over layers max(MACs / multipliers, bytes this Binary moves for the layer
        / DRAM rate)``: a figure of *this Binary*, not a bound (more traffic raises it). Kept to
        compare schedules; the bounds are :attr:`bounds` (:mod:`sim.bounds`)."""
        return self.clock_mhz * 1e6 / self.roofline_cycles

    def bound_fractions(self) -> dict:
        """Latency-mode FPS / bound FPS for each bound of :mod:`sim.bounds` (<= 1 unless a bound
        or the model is wrong; ``per_layer`` assumes no cross-layer prefetch)."""
        return self.bounds.fractions(self.cycles) if self.bounds is not None else {}

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
        d = {"model": self.model, "config": self.config.get("name"), "cycles": self.cycles,
             "latency_ms": self.latency_ms, "fps": self.fps, "gops": self.gops,
             "gmacs_per_s": self.gmacs, "gops_per_dsp": self.gops / self.dsps,
             "mac_utilization": self.utilization, "macs": self.macs,
             "binary_roofline_fps": self.binary_roofline_fps,
             "fps_over_binary_roofline": self.fps / self.binary_roofline_fps,
             "dram_bytes": self.dram_bytes, "multipliers": self.multipliers, "dsps": self.dsps,
             "op_breakdown": self.breakdown()}
        if self.bounds is not None:
            b = self.bounds
            d["bounds"] = b.summary()
            d["fps_over_bound"] = self.bound_fractions()
        if self.streaming is not None:
            d["streaming"] = dict(self.streaming)
            if self.bounds is not None:
                cpf = self.streaming["cycles_per_frame"]
                d["streaming"]["fps_over_bound"] = {
                    "compute": self.bounds.compute_cycles / cpf,
                    "traffic": self.bounds.traffic_cycles / cpf}
        return d

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
    return t.steps, t.pre + t.stall + t.post


def _dma_bytes(f):
    return f["count"] * _cdiv(f["length"], BEAT) * BEAT


def simulate(binary, *, trace: list | None = None,
             env: timing.SemaphoreTiming = timing.SYSTEM, frames: int = 1,
             hazards: dict | None = None, contexts: int = 1,
             ld_priority: str = "oldest", lockstep=None, core_switch: str = "wait",
             controller: str | None = None, posted: int | None = None) -> PerfReport:
    """Run the timed model of ``binary``; returns a :class:`PerfReport`. With ``trace`` (a
    list), every executed instruction is appended as (stream, unit, op, layer, start, end):
    ``start`` is the cycle the instruction is fetched (for a WAIT: consumed), ``end`` the cycle
    its unit can fetch the next one (for LOAD/STORE: the DRAM accepted it).
    ``env``: :data:`sim.timing.SYSTEM` (the accelerator) or :data:`sim.timing.PYTHON_HARNESS`
    (the timing of ``tb.core.harness``: registered WAIT ready, DMA in zero time).

    ``frames`` > 1: streaming, the Binary replayed ``frames`` times back to back
    (:mod:`sim.stream`: each unit's queue repeated, semaphores per frame). What orders frame
    k+1 after frame k: the Binary's own fence WAITs (``prev`` = 1, ``sim.isa.wait_passes``),
    which ``compile(..., stream=True)`` writes; a Binary without them gets every write of
    frame k+1 after frame k's last overlapping access (:func:`sim.stream.frame_hazards`,
    computed when ``hazards`` is None). An explicit ``hazards`` (e.g.
    :func:`sim.stream.phase_fences`, or ``{}``: no fence at all, a what-if) replaces the
    Binary's fences: its ``prev`` WAITs then pass at once. The per-layer figures are those of frame 0; ``frame_done`` lists each
    frame's completion cycle. ``trace`` entries then carry the frame as a 7th element.
    ``contexts`` > 1 (a what-if: the RTL has one context): each unit holds that many frames'
    queues at once and issues from any of them whose head is ready (the oldest frame first),
    except that a core unit, whose contexts would share its layer registers, leaves its
    current frame's queue only when its head WAIT has been refused (``wait_extra`` + 1 cycles
    after it was offered: the semaphore file's look-up, one bubble) or that queue has ended
    (a Binary compiled with ``stream=True`` restores the registers after every WAIT where
    frames interleave, so this is where a switch is safe); frame f starts when frame
    f - contexts has completed. ``ld_priority="youngest"`` (with contexts): the LD unit issues
    from the youngest ready frame instead (the next frame's first loads ahead of the current
    frame's weight stream; the other units stay oldest first). ``core_switch="any"`` (with
    contexts; a what-if of a second register set per unit, which the compiler's restores do
    not need today): a core unit takes the oldest frame's ready instruction at any
    instruction boundary, not only after a refused WAIT (``"wait"``, the default).

    ``lockstep`` (a what-if, latency mode only): a :class:`sim.lockstep.Barrier` of this Binary.
    A core unit's compute instruction then does not start when its unit is ready: the unit
    *arrives* at the instruction's group slot, and the slot starts when every core of the group
    that takes part in it has arrived and the group's previous slot on that unit kind has
    ended; it lasts the longest of its participants' :func:`sim.timing.compute_timing` cycles
    (the barrier's rules: :mod:`sim.lockstep`). Everything else is timed as without it.
    **Group controllers** (``controller``; a lock-step group Binary, ``groups`` > 1,
    :func:`sim.lockstep.group_binary`, is always timed so, ``"plain"`` by default): each group
    stream's unit is one controller that issues its stream in order, one instruction word per
    cycle (SETR, SETC, NOP, SIGNAL, HALT one cycle; a WAIT as a core's, when its condition
    holds; a group SIGNAL adds its count once per core of the mask). A compute instruction
    (a slot) expands to its participants' own instructions (the mask, offsets and bounds in
    force: :meth:`sim.lockstep.GroupUnit.core_instr`, their own layer registers: a SETR writes
    those of the cores of the mask) and holds the group's datapath for the longest of their
    :func:`sim.timing.compute_timing` cycles; it starts when the controller has fetched it
    (every SETC / SETR before it issued) and the unit's previous slot has drained.
    ``"plain"``: the controller fetches the next word when the slot has drained (today's unit
    rule, :mod:`sim.timing`: so a per-core Binary with ``controller="plain"``, each core a
    group of one, gives today's cycles). ``"shadow"``: the per-core and layer registers are
    double-buffered and latched at a slot's start: the controller fetches the next word in the
    cycle after the slot starts and issues SETC, SETR, WAIT, NOP while it runs; the next slot
    waits for it to drain, and a SIGNAL or HALT too (a SIGNAL after a slot means its outputs
    are in place). Latency mode only, without the dispatcher's fetch model and the semaphore
    arbiters (``env.fetch`` / ``env.arbiters``). ``trace`` entries of a slot end when its
    datapath drains. ``posted`` (``"shadow"``): the depth of the posted-SIGNAL FIFO of a
    controller (None: unbounded); a SIGNAL that finds it full waits for the slot's drain. ``controller=None`` on a per-core Binary: today's core units."""
    grouped = getattr(binary, "groups", 1) != 1
    if controller not in (None, "plain", "shadow"):
        raise ValueError(f"controller must be None, 'plain' or 'shadow', got {controller!r}")
    if grouped and controller is None:
        controller = "plain"
    if controller is not None:
        if lockstep is not None:
            raise ValueError("the group controllers bring their own slots: lockstep must be None")
        if frames != 1 or contexts != 1:
            raise ValueError("the group controller model is latency mode: frames = contexts = 1")
        if env.fetch is not None or env.arbiters:
            raise ValueError("the group controller model has no dispatcher fetch model and no "
                             "semaphore arbiters (env.fetch / env.arbiters)")
    shadow = controller == "shadow"
    if posted is not None and (not isinstance(posted, int) or isinstance(posted, bool)
                               or posted < 0 or not shadow):
        raise ValueError(f"posted (the posted-SIGNAL FIFO depth) must be an integer >= 0 with "
                         f"controller='shadow', got {posted!r} with {controller!r}")
    cfg = binary.cfg
    if lockstep is not None and frames != 1:
        raise ValueError("lockstep is a latency-mode what-if: it needs frames = 1")
    released = {}                    # lockstep: key -> (start, end) of its released slot
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    if not isinstance(contexts, int) or contexts < 1:
        raise ValueError(f"contexts must be a positive integer, got {contexts!r}")
    if ld_priority not in ("oldest", "youngest"):
        raise ValueError(f"ld_priority must be 'oldest' or 'youngest', got {ld_priority!r}")
    if core_switch not in ("wait", "any"):
        raise ValueError(f"core_switch must be 'wait' or 'any', got {core_switch!r}")
    ctx = contexts > 1 and frames > 1
    gstate = None                   # group controllers: (stream, unit) -> its GroupUnit
    if controller is not None:
        from .lockstep import GroupUnit, LockstepError, group_queues
        G = getattr(binary, "groups", 1)
        base = group_queues(binary) if grouped else build_queues(binary)
        gstate = {k: GroupUnit(G) for k in base if k[0] != "global"}
        gregs = {k: [{} for _ in range(G)] for k in gstate}    # each core's layer registers
        dp_free = {k: 0 for k in gstate}                       # the datapath drains at
        pending = {k: [] for k in gstate}       # shadow: when the posted SIGNALs fire
    else:
        base = build_queues(binary)
    keys = list(base)
    nq = {k: len(base[k]) for k in keys}
    # the Binary's own frame fences (compile(..., stream=True)): WAITs on the previous frame's
    # counters; with ``hazards`` given they are replaced by that replay (they pass at once)
    from .stream import has_fences
    skip_prev = frames > 1 and hazards is not None and has_fences(binary)
    if frames > 1:
        from .stream import frame_hazards
        if hazards is None:
            hz = {} if has_fences(binary) else frame_hazards(binary)
        else:
            hz = hazards
        comp = [{k: np.full(nq[k], -1, dtype=np.int64) for k in keys} for _ in range(frames)]
        if ctx:       # one queue per (stream, unit, frame), sharing the unit
            queues = {(k[0], k[1], f): base[k] for f in range(frames) for k in keys}
        else:
            queues = {k: base[k] * frames for k in keys}
    else:
        hz, queues, comp = {}, base, None
    ukeys = keys                     # the units (stream, unit)
    keys = list(queues)
    ubusy = {k: 0 for k in ukeys}    # contexts: the unit is free from
    on, blocked, others = {}, {}, {}   # contexts, core units: frame issued from, its WAIT
    switch = env.wait_extra + 1        # refused since, keys of the other context waiting
    remaining = [sum(nq.values())] * frames
    fdone = np.zeros(frames, dtype=np.int64)
    fstart = np.full(frames, np.iinfo(np.int64).max, dtype=np.int64)
    hzpark = {}                      # (frame, key, pc) -> [keys parked on its completion]
    spans = []                       # (layer, start, end, multipliers of the unit or -1)
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
    unit_busy = {k: 0 for k in ukeys}
    heap = [(0, i, k) for i, k in enumerate(keys) if not ctx or k[2] < contexts]
    last_signal = 0
    heapq.heapify(heap)
    order = {k: i for i, k in enumerate(keys)}
    if ctx and ld_priority == "youngest":    # ties at the LD unit: the youngest frame first
        for k in [k for k in keys if k[1] == "LD" and k[2] < frames // 2]:
            j = (k[0], k[1], frames - 1 - k[2])        # swap the LD frames' places only
            order[k], order[j] = order[j], order[k]
    head = {}                       # key -> head time of a WAIT woken by a SIGNAL
    wx = env.wait_extra
    sl = env.signal_latency
    zero_dma = env.dma_zero_time
    axi = env.axi
    ch_free = {"LD": 0, "ST": 0}        # AXI: the read / write data channel is free
    inflight = {"LD": [], "ST": []}     # AXI: completion times of the bursts in flight
    accept = {"LD": 0, "ST": 0}         # AXI: the engine takes its next descriptor
    a_line = timing.a_line_bytes(cfg.N, cfg.dram_bytes_per_cycle)

    # AXI: the read channels the LD engine shares with the dispatcher (one port); with more
    # ports the dispatcher's own, and per LD engine (axi.ld_engines) a port and its state
    # (ch_free, inflight, accept, read port), the LOADs dealt round-robin (ld_turn)
    port = _ReadPort(cfg.dram_latency_cycles, axi.ar_queue) if axi is not None else None
    ld_eng = None
    ld_turn = {}                        # LD unit -> pieces dealt so far
    deal_free = {}                      # LD unit -> the dealer takes a descriptor from
    if axi is not None and axi.ports > 1:
        ld_eng = [({"LD": 0}, {"LD": []}, {"LD": 0},
                   _ReadPort(cfg.dram_latency_cycles, axi.ar_queue))
                  for _ in range(axi.ld_engines)]
        for e in ld_eng:
            e[3].low = math.inf
    fetch = _Fetch(env.fetch, binary, port, frames) \
        if axi is not None and env.fetch is not None and not ctx else None
    if port is not None and fetch is None:
        port.low = math.inf             # no dispatcher burst passes an LD burst

    # the semaphore file's arbiters (env.arbiters): WAIT look-ups (0) and SIGNALs (1), one
    # grant per cycle each, after every unit event of the cycle (order past the units')
    arbs = [_Arbiter(), _Arbiter()] if (env.arbiters and not ctx and lockstep is None) else None
    arb_at = [set(), set()]         # cycles with an arbiter event in the heap
    arb_order = len(keys) + 1
    if arbs is not None:
        from .image import queue_names
        port_of = {kk: i for i, kk in enumerate(queue_names(cfg.L))}
    looked = {}                     # key -> cycle its WAIT's look-up was granted
    look_parked = set()             # keys parked on a WAIT whose look-up is still pending
    look_wait = {}                  # sem -> {key: offered} of sufficient WAITs not granted yet
    sig_vis = {}                    # sem -> cycles SIGNALs not yet shown will show in
    signalled = {}                  # key -> (offered, granted) of its SIGNAL

    def arb_schedule(a, c):
        if c not in arb_at[a]:
            arb_at[a].add(c)
            heapq.heappush(heap, (c, arb_order + a, ("__arb__", a)))

    cur = [0]                       # the frame of the instruction being executed
    ld_job = {}                     # LD unit -> [its transfer's _axi_steps, next burst's AR]

    def note(tag, t0, t1, unit, stream, busy):
        if tag < 0 or cur[0]:
            return
        l_start[tag] = min(l_start[tag], t0)
        l_end[tag] = max(l_end[tag], t1)
        if busy:
            d = l_busy[tag].setdefault(unit, {})
            d[stream] = d.get(stream, 0) + busy

    while heap:
        t, _, k = heapq.heappop(heap)
        if k[0] == "__arb__":
            a = k[1]
            arb_at[a].discard(t)
            g = arbs[a].grant(t)
            if g is not None:
                gk, offered = g
                if a == 0 and gk in look_parked:    # parked: the look-up only takes the slot
                    look_parked.discard(gk)
                elif a == 0:
                    looked[gk] = t
                    for lw in look_wait.values():
                        lw.pop(gk, None)
                    heapq.heappush(heap, (t, order[gk], gk))
                else:
                    signalled[gk] = (offered, t)
                    heapq.heappush(heap, (t, order[gk], gk))
            nc = arbs[a].next_cycle(t)
            if nc is not None:
                arb_schedule(a, nc)
            continue
        if k[0] == "__sig__":
            _, sm, cnt = k
            sems[sm] = sems.get(sm, 0) + cnt
            if arbs is not None:
                if t in sig_vis.get(sm, ()):
                    sig_vis[sm].remove(t)
                # a WAIT waiting for its look-up sees this SIGNAL's broadcast (the cycle before)
                # if it was offered by then: ready now, the look-up withdrawn
                lw = look_wait.get(sm, {})
                for wk, h in [(wk, h) for wk, h in lw.items() if t >= h + 1]:
                    del lw[wk]
                    arbs[0].cancel(port_of[wk[:2]])
                    head[wk] = h
                    heapq.heappush(heap, (t, order[wk], wk))
            still = []
            for need, wk, h in parked.pop(sm, []):
                if sems[sm] >= need:
                    head[wk] = h
                    if wk in look_parked:       # the broadcast came first: no look-up
                        look_parked.discard(wk)
                        arbs[0].cancel(port_of[wk[:2]])
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
        su = k[:2]
        fr, lpc = (k[2], pc[k]) if ctx else divmod(pc[k], nq[k])
        op = ins.op
        stream, unit = su
        core = stream != "global"
        if ctx and ubusy[su] > t:
            heapq.heappush(heap, (ubusy[su], order[k], k))
            continue
        if ctx and core and core_switch == "wait":
            # a core unit's contexts share its registers: it leaves its current frame's
            # queue only when that queue's head WAIT was refused (after the look-up and one
            # bubble cycle) or the queue has ended (docs/perf.md, "Built: ...")
            c = on.setdefault(su, fr)
            if c != fr:
                qc = (stream, unit, c)
                if pc[qc] >= len(queues[qc]):
                    at = t
                elif blocked.get(su) is not None:
                    at = blocked[su] + switch
                else:
                    others.setdefault(su, []).append(k)
                    continue
                if at > t:
                    heapq.heappush(heap, (at, order[k], k))
                    continue
                on[su] = fr
                blocked[su] = None
        if fr > 0 and lpc in hz.get(su, ()):
            # streaming: a write waits for the previous frame's overlapping accesses
            ready = t
            for kj, pj in hz[su][lpc]:
                c = comp[fr - 1][kj][pj]
                if c < 0:
                    hzpark.setdefault((fr - 1, kj, pj), []).append(k)
                    ready = None
                    break
                ready = max(ready, int(c))
            if (ready is None or ready > t) and ctx and core and on.get(su) == fr:
                blocked[su] = t         # a replayed fence: as a refused WAIT
                for ok in others.pop(su, ()):
                    heapq.heappush(heap, (t + switch, order[ok], ok))
            if ready is None:
                continue
            if ready > t:
                heapq.heappush(heap, (ready, order[k], k))
                continue
        if fetch is not None:
            # the unit takes the word from its dispatcher FIFO: not before it is there
            fetch.advance(t)
            qi = fetch.index[su]
            a = fetch.avail(qi, pc[k])          # (one context: frame after frame)
            if a is None or a > t:
                heapq.heappush(heap, (t + 1 if a is None else a, order[k], k))
                continue
        if frames > 1:
            fstart[fr] = min(fstart[fr], t)
        cur[0] = fr
        start = t
        fin = None                   # completion (data landed / outputs written)
        took = False                 # the word's take is recorded (an LD transfer's)
        if op == "WAIT":
            wsem = (fr - ins.get("prev", 0), ins["sem"])     # the counter it waits on
            passes = bool(skip_prev and ins.get("prev", 0)) or wait_passes(
                ins, fr, lambda f, sm: sems.get((f, sm), 0))
            h = head.pop(k, None)
            # woken by a SIGNAL's broadcast after it was offered in h: with the semaphore
            # file's watch registers it is ready the cycle the counter shows the SIGNAL (at
            # least one cycle after it was offered), without a look-up
            woke = h is not None and arbs is not None
            if h is None:
                h = looked.pop(k, None)
                if h is not None:
                    # its look-up granted in h: taken wait_extra cycles later, or the cycle
                    # after a broadcast on its counter in h
                    woke = (h + 1) in sig_vis.get(wsem, ())
                else:
                    h = t
                    if arbs is not None:    # offered: the look-up waits for the arbiter
                        arbs[0].request(t, port_of[su], k)
                        arb_schedule(0, t)
                        if passes:
                            look_wait.setdefault(wsem, {})[k] = t
                            continue        # taken wait_extra cycles after its grant
                        look_parked.add(k)  # and watches the broadcasts meanwhile
            if not passes:
                parked.setdefault(wsem, []).append((ins["count"], k, h))
                if ctx and core and on.get(su) == fr:       # refused: the other may go
                    blocked[su] = h
                    for ok in others.pop(su, ()):
                        heapq.heappush(heap, (h + switch, order[ok], ok))
                continue
            if core or axi is not None:
                # consumed at max(head + wait_extra, visible); one cycle (the RTL's global
                # units wait on the same semaphore file and take one instruction per cycle)
                start = max(h + (1 if woke else wx), t)
                nxt = start + 1
            else:
                nxt = t
        elif op == "SIGNAL":
            if core or (axi is not None and unit in ch_free):
                cnt = ins["count"]
                if k in signalled:      # granted by the arbiter in cycle g
                    ts, g = signalled.pop(k)
                elif gstate is not None:
                    # a group SIGNAL: its count once per core of the mask, when the slot before
                    # it has drained; "shadow": posted (the controller goes on at once)
                    cnt *= len(_gcores(gstate[su], ins, stream, unit, pc[k]))
                    drained = max(t, dp_free[su])
                    ts = g = t if shadow else drained
                    if shadow and posted is not None:     # a FIFO of ``posted`` entries
                        pend = pending[su] = [f for f in pending[su] if f > t]
                        if len(pend) >= posted:
                            ts = g = drained                # full: wait for the drain
                        else:
                            pend.append(drained)
                else:
                    ts = t
                    if not core:
                        # not posted: the unit waits for its transfers, then signals
                        ts = max(t, drain[k])
                        if unit == "LD" and fetch is not None:    # data behind fetch bursts
                            ts = max(ts, port.ld_end + axi.landing)
                    g = ts
                    if arbs is not None:    # offered in ts: the signal arbiter grants it
                        arbs[1].request(ts, port_of[su], k, ts)
                        arb_schedule(1, ts)
                        continue
                # the counter shows it from g + signal_latency (1: the next cycle); the unit
                # goes on in the cycle after the grant
                seen = (drained if gstate is not None and core else g) + sl
                heapq.heappush(heap, (seen, -1, ("__sig__", (fr, ins["sem"]), cnt)))
                if arbs is not None:
                    sig_vis.setdefault((fr, ins["sem"]), []).append(g + sl)
                start, nxt = ts, g + 1
            else:           # posted: fires when the unit's transfers have landed
                ts = t if zero_dma else max(t, drain[k])
                heapq.heappush(heap, (ts, -1, ("__sig__", (fr, ins["sem"]), ins["count"])))
                nxt = t
        elif op == "SETR":
            if gstate is not None and core:     # the layer registers of the cores of the mask
                for r in _gcores(gstate[su], ins, stream, unit, pc[k]):
                    gregs[su][r][REG_NAMES[ins["reg"]]] = ins["value"]
            else:
                regs[k][REG_NAMES[ins["reg"]]] = ins["value"]
            nxt = t if (zero_dma and not core) else t + 1
        elif op == "SETC" and grouped and core:
            try:
                gstate[su].setc(ins, f"{stream}/{unit} instruction {pc[k]} (SETC)")
            except LockstepError as e:
                raise ValueError(str(e)) from None
            nxt = t + 1
        elif op == "SETC":
            raise ValueError(f"{stream}/{unit}: SETC (a lock-step group's per-core register) "
                             "in a per-core stream: it belongs to a group Binary (sim.lockstep)")
        elif op in ("NOP", "HALT"):
            if op == "HALT" and gstate is not None and core:    # halted once drained
                start = max(t, dp_free[su])
            nxt = start + 1 if core else t
        elif op in ("LOAD", "STORE"):
            nbytes = _dma_bytes(ins.f)
            if tag >= 0 and fr == 0:
                l_bytes[tag] += ins["count"] * ins["length"]
            # a LOAD into a core's buffer A moves at most one line per cycle (its write port)
            to_a = ins["buf"] == BUFS["A"]
            if zero_dma:
                nxt = t + (_cdiv(ins["count"] * ins["length"], a_line) if to_a else 0)
                note(tag, t, nxt, unit, stream, 0)
            else:
                if ld_eng is not None and unit == "LD":
                    # the dealer takes the LOAD, the unit goes on; its pieces go to the
                    # engines round-robin, one per cycle at most, each when its engine takes it
                    # (one engine: no dealer, the unit hands the LOAD to the engine itself)
                    one = len(ld_eng) == 1
                    start = t if one else max(t, deal_free.get(su, 0))
                    tt = start if one else start + 1
                    done = xfer = 0
                    for f in axi.pieces(ins.f, len(ld_eng), BUFS["A"]):
                        n = ld_turn.get(su, 0)
                        ld_turn[su] = n + 1
                        cf, fl, ac, rp = ld_eng[n % len(ld_eng)]
                        s0, _nx, dn, xf = _axi_transfer(axi, cfg, Instr("LOAD", f), tt, unit,
                                                        cf, fl, ac, rp)
                        deal_free[su], tt = s0, s0 + 1
                        done, xfer = max(done, dn), xfer + xf
                    if one:
                        start = s0
                    nxt = start + 1
                elif axi is not None and fetch is not None and unit == "LD":
                    # the engine's bursts in time order with the dispatcher's: each placed
                    # when the model has reached the cycle it is presented in
                    if k not in ld_job:
                        ld_job[k] = [_axi_steps(axi, cfg, ins, t, unit, ch_free, inflight,
                                                accept, port), None]
                        fetch.take(qi, max(t, accept[unit]))    # the engine took the word
                    job = ld_job[k]
                    try:
                        while True:
                            if job[1] is not None and job[1] - 1 > t:
                                # back one cycle before it: the dispatcher's requests of
                                # that cycle are placed first (they win the tie)
                                heapq.heappush(heap, (job[1] - 1, order[k], k))
                                break
                            job[1] = next(job[0])
                    except StopIteration as res:
                        del ld_job[k]
                        start, nxt, done, xfer = res.value
                        took = True
                    else:
                        continue
                elif axi is not None:
                    start, nxt, done, xfer = _axi_transfer(axi, cfg, ins, t, unit, ch_free,
                                                           inflight, accept, port)
                else:
                    xfer = _cdiv(nbytes, min(cfg.dram_bytes_per_cycle, a_line) if to_a
                                 else cfg.dram_bytes_per_cycle)
                    start = max(t, dram_free)
                    dram_free = start + xfer
                    nxt = start + xfer
                    done = nxt + cfg.dram_latency_cycles
                drain[k] = max(drain[k], done)
                fin = done
                if fr == 0:
                    unit_busy[su] += xfer
                    spans.append((tag, start, done, -1))
                note(tag, start, done, unit, stream, xfer)
                if tag >= 0 and fr == 0:
                    l_dram[tag] += xfer
        elif op == "HOST_LN":
            busy = cfg.host_overhead_cycles + cfg.host_cycles_per_elem * ins["channels"]
            # the host reads and writes DRAM too (C bytes in and out), negligible next to busy
            nxt = t + busy
            drain[k] = max(drain[k], nxt)
            if fr == 0:
                unit_busy[su] += busy
                spans.append((tag, t, nxt, -1))
            note(tag, t, nxt, unit, stream, busy)
        elif gstate is not None:
            # one slot of a group: its participants' own instructions, the longest holds the
            # datapath; it starts once fetched and the unit's previous slot has drained
            gs = gstate[su]
            where = f"{stream}/{unit} instruction {pc[k]} ({op})"
            cs = _gcores(gs, ins, stream, unit, pc[k])
            try:
                held = max(timing.compute_timing(
                    cfg, op, gregs[su][r],
                    (gs.core_instr(ins, r, where) if grouped else ins).f).cycles for r in cs)
            except LockstepError as e:
                raise ValueError(str(e)) from None
            start = max(t, dp_free[su])
            fin = dp_free[su] = start + held
            nxt = start + 1 if shadow else fin
            unit_busy[su] += held
            spans.append((tag, start, fin, len(cs) * {"MAT": cfg.S * cfg.T,
                                                       "RMAC": cfg.N * cfg.M}.get(unit, 0)))
            note(tag, start, fin, unit, stream, held)
        else:
            # a core unit drains each compute instruction before it fetches the next one
            ct = timing.compute_timing(cfg, op, regs[k], ins.f)
            held = ct.cycles
            if lockstep is not None:
                rel = released.pop(k, None)
                if rel is None:         # arrived at the barrier: wait for the group's slot
                    for kk, s0, s1 in lockstep.arrive(k, pc[k], t, ct.cycles):
                        released[kk] = (s0, s1)
                        heapq.heappush(heap, (s0, order[kk], kk))
                    continue
                start, nxt = rel        # popped again at the slot's start (t == start)
                held = nxt - start
            else:
                nxt = t + held
            if fr == 0:
                unit_busy[su] += held
                spans.append((tag, t, nxt, {"MAT": cfg.S * cfg.T, "RMAC": cfg.N * cfg.M}.get(
                    unit, 0)))
            note(tag, t, nxt, unit, stream, held)
        if fetch is not None and not took:
            # the unit took the word (a HOST_LN leaves the FIFO when the CPU acknowledges it)
            fetch.take(qi, nxt if op == "HOST_LN" else start)
        elif axi is not None and fetch is None:
            # the dispatcher fetched this instruction word over the read channel: one beat
            # (with the fetch model the words move in its own bursts; an LD transfer's take
            # is recorded by its branch, ``took``)
            port.end = max(port.end, start) + 1
        if trace is not None:
            trace.append((stream, unit, op, tag, int(start), int(fin if shadow and fin is not None
                                                                and op in timing.COMPUTE_OPS
                                                                else nxt))
                         + ((fr,) if frames > 1 else ()))
        fin = nxt if fin is None else fin
        fdone[fr] = max(fdone[fr], fin)
        if comp is not None:
            comp[fr][su][lpc] = fin
            for wk in hzpark.pop((fr, su, lpc), ()):
                heapq.heappush(heap, (max(t, fin), order[wk], wk))
        if ctx:
            ubusy[su] = max(ubusy[su], nxt)
            if core:
                blocked[su] = None
                if pc[k] + 1 >= len(q):             # its queue has ended: the other may go
                    for ok in others.pop(su, ()):
                        heapq.heappush(heap, (nxt, order[ok], ok))
            remaining[fr] -= 1
            if remaining[fr] == 0 and fr + contexts < frames:    # its contexts take a frame
                for kk in ukeys:
                    nk = (kk[0], kk[1], fr + contexts)
                    heapq.heappush(heap, (max(t, int(fdone[fr])), order[nk], nk))
        free[k] = nxt
        pc[k] += 1
        if pc[k] < len(q):
            heapq.heappush(heap, (nxt, order[k], k))
    stuck = [f"{k[0]}/{k[1]}: {queues[k][pc[k]][0]}" for k in keys if pc[k] < len(queues[k])]
    if stuck:
        raise RuntimeError(f"perf model deadlock: {stuck[:6]}")
    total = int(max(max(drain.values()), max(free.values()), last_signal,
                    max(dp_free.values(), default=0) if gstate is not None else 0))
    fdone[-1] = max(fdone[-1], total)
    rep = _report(binary, total, l_start, l_end, l_busy, l_dram, l_bytes, unit_busy, spans,
                  int(fdone[0]) if frames > 1 else total)
    rep.frame_done = [int(v) for v in fdone]
    from .bounds import bounds
    rep.bounds = bounds(binary.prog, cfg)
    # frames with instructions in progress at once (the start of some frame is a maximum)
    rep.frames_in_flight = max(sum(1 for j in range(frames) if fstart[j] <= fstart[i] < fdone[j])
                               for i in range(frames)) if frames > 1 else 1
    return rep


def _gcores(gs, ins, stream: str, unit: str, pc: int) -> list:
    """The cores of a group controller's mask in force for ``ins`` (ValueError: none)."""
    from .lockstep import LockstepError
    try:
        return gs.cores(ins, f"{stream}/{unit} instruction {pc} ({ins.op})")
    except LockstepError as e:
        raise ValueError(str(e)) from None


def stream(binary, *, frames: int = 3, env: timing.SemaphoreTiming = timing.SYSTEM,
           hazards: dict | None = None, contexts: int = 1,
           ld_priority: str = "oldest", core_switch: str = "wait") -> dict:
    """Streaming mode (:mod:`sim.stream`): the Binary replayed ``frames`` (>= 2) times back to
    back; steady state = ``(done(last frame) - done(first frame)) / (frames - 1)`` cycles per
    frame. Returns ``{frames, frame_done, cycles_per_frame, fps, frames_in_flight}``."""
    if not isinstance(frames, int) or frames < 2:
        raise ValueError(f"streaming needs frames >= 2, got {frames!r}")
    rep = simulate(binary, env=env, frames=frames, hazards=hazards, contexts=contexts,
                   ld_priority=ld_priority, core_switch=core_switch)
    d = rep.frame_done
    cpf = (d[-1] - d[0]) / (frames - 1)
    return {"frames": frames, "frame_done": d, "cycles_per_frame": cpf,
            "fps": binary.cfg.clock_mhz * 1e6 / cpf, "frames_in_flight": rep.frames_in_flight}


class _Arbiter:
    """One of ``hw.system.semaphores.SemaphoreFile``'s round-robin arbiters (the WAIT look-ups
    or the SIGNALs) for :func:`simulate`: one grant per cycle among the ports requesting in it,
    the lowest port after the last one granted first (wrapping). :meth:`request` registers a
    port's request from cycle ``t``; :meth:`grant` (called once per cycle that has requests,
    after every unit event of that cycle) returns the granted ``(key, payload)`` or None;
    :meth:`cancel` withdraws a request (a WAIT satisfied by a SIGNAL's broadcast before its
    look-up was granted)."""

    def __init__(self):
        self.pending = {}       # port -> (from cycle, key, payload)
        self.last = -1

    def request(self, t: int, port: int, key, payload=None) -> None:
        self.pending[port] = (t, key, payload)

    def cancel(self, port: int) -> None:
        self.pending.pop(port, None)

    def grant(self, c: int):
        ready = [p for p, v in self.pending.items() if v[0] <= c]
        if not ready:
            return None
        after = [p for p in ready if p > self.last]
        p = min(after) if after else min(ready)
        self.last = p
        _t, key, payload = self.pending.pop(p)
        return key, payload

    def next_cycle(self, c: int):
        """The next cycle (after ``c``) with a request, or None."""
        return max(c + 1, min(v[0] for v in self.pending.values())) if self.pending else None


class _Fetch:
    """``hw.system.dispatch.Dispatcher`` run alongside :func:`simulate` (:class:`sim.timing.
    AxiFetch` states the rules): :meth:`advance` simulates its cycles up to ``t`` (the takes of
    every unit before ``t`` are known then: the model runs in time order), :meth:`avail` says
    from which cycle a unit can take the word ``i`` of its queue (``None``: not requested yet),
    :meth:`take` records a unit's take (it frees a FIFO slot). ``frames``: each queue is
    fetched that many times back to back (one context: ``hw.system.dispatch``'s FRAMES), a
    burst never spanning two copies."""

    def __init__(self, fd, binary, port: "_ReadPort", frames: int = 1):
        from bisect import bisect_left
        from .image import QUEUE_ALIGN, TABLE_ALIGN, instruction_image, queue_names
        self.fd, self.port = fd, port
        port.low = 0                    # the dispatcher presents bursts from now on
        self._bisect = bisect_left
        names = queue_names(binary.cfg.L)
        self.index = {k: i for i, k in enumerate(names)}
        _img, entries = instruction_image(binary)
        assert TABLE_ALIGN % 4096 == 0 and QUEUE_ALIGN % timing.BEAT == 0
        self.word0 = [o // timing.BEAT for o, _ in entries]   # word address in the 4 KB page
        self.words = [w for _, w in entries]      # per copy
        self.total = [w * frames for w in self.words]
        Q = self.Q = len(names)
        self.req = [0] * Q
        self.takes = [[] for _ in range(Q)]
        self.arrive = [[] for _ in range(Q)]
        self.tags = []                  # last-beat cycles of the queue bursts in flight
        # the table: bursts of at most max_burst entries, each requested the cycle after the
        # previous one's AR handshake
        r, left = fd.table_ar, Q
        while left:
            n = min(left, fd.max_burst)
            h, _first, end = port.burst(r, n, insert=True)
            left -= n
            r = h + 2
        self.c = end                    # the round robin's first cycle (table_ok)
        self.ptr = 0
        self.left_total = sum(self.total)

    def advance(self, t: int) -> None:
        fd, D = self.fd, self.fd.depth
        while self.c <= t and self.left_total:
            c, q = self.c, self.ptr
            self.port.low = c           # its next burst is presented in c + 1 at the earliest
            self.ptr = q + 1 if q + 1 < self.Q else 0
            left = 0
            if self.total[q] - self.req[q]:
                left = self.words[q] - self.req[q] % self.words[q]    # in this copy
            if left:
                if self.tags and self.tags[0] < c:
                    self.tags = [e for e in self.tags if e >= c]
                free = D - self.req[q] + self._bisect(self.takes[q], c)
                to_4k = 256 - (self.word0[q] + self.req[q] % self.words[q]) % 256
                n = min(left, free, to_4k, fd.max_burst)
                if n > 0 and n >= min(left, D // 2, to_4k) and len(self.tags) < fd.outstanding:
                    h, first, end = self.port.burst(c + 1, n, insert=True)
                    self.arrive[q].extend(range(first + fd.fifo_latency,
                                                first + fd.fifo_latency + n))
                    self.tags.append(end - 1)
                    self.req[q] += n
                    self.left_total -= n
                    self.c = h + 1          # the round robin waits for the AR handshake
                    continue
            self.c = c + 1
        if not self.left_total:
            self.port.low = math.inf    # every word requested: no dispatcher burst any more

    def avail(self, q: int, i: int):
        a = self.arrive[q]
        return a[i] if i < len(a) else None

    def take(self, q: int, t: int) -> None:
        self.takes[q].append(t)


class _ReadPort:
    """The read channels of the accelerator's AXI port (:class:`sim.timing.AxiDma`): bursts of
    the dispatcher and of the LD engine in the order of their AR handshakes; the memory answers
    in order, one beat per cycle, a burst's first beat ``lat`` cycles after its AR at the
    earliest, and takes a new AR only while fewer than ``ar_queue`` accepted bursts wait for
    their data to start (a waiting burst leaves that queue about ``lat`` cycles before its
    first beat). The LD engine's bursts are placed when its LOAD is modelled, possibly ahead
    of the cycle the dispatcher has been simulated to; a dispatcher burst (``insert``) presented
    in cycle ``r`` goes before those whose AR handshake comes later *and* that were presented
    from ``r`` on (``hw.system.arbiter.ReadArbiter``: the dispatcher wins a tie, but an LD
    request presented earlier and held back by the memory's AR queue keeps the port until its
    handshake), and their data move back behind it (``ld_end``: the end of the LD engine's last
    burst, which its SIGNAL waits for).

    Every burst a later dispatcher burst may still pass stays in the history: the LD engine
    runs ahead of the dispatcher by up to a whole LOAD (thousands of beats, hundreds of
    bursts), and a dispatcher burst placed against a truncated history would share the
    channel's cycles with the forgotten LD bursts (issue #13: with the last 16 bursts kept,
    the model packed B0-R64's read channel fuller than one beat per cycle at L = 16). ``low``
    is the cycle before which no burst is presented any more (:class:`_Fetch` moves it with
    its round robin; 0, the default, keeps every burst; infinite, with no dispatcher, keeps
    only the last ones); bursts presented before it are forgotten, except the last
    ``ar_queue`` of them (the AR queue's and the channel order's state)."""

    def __init__(self, lat: int, ar_queue: int | None, end: int = 0):
        self.lat, self.end, self.q = lat, end, ar_queue
        self.ld_end = end
        self.low = 0
        # [AR, first beat, end, beats, LD?, presented] of the bursts not forgotten, by AR
        self.hist = []

    def burst(self, r: int, n: int, insert: bool = False,
              stall: int = 0) -> tuple[int, int, int]:
        """A burst of ``n`` beats presented from cycle ``r`` (``insert``: by the dispatcher):
        ``(AR handshake, first beat, the cycle after its last beat)``. ``stall``: cycles the
        manager holds ``rready`` low after the last beat (the LD realigner's flush word),
        in which the channel moves nothing."""
        hist = self.hist
        if insert:
            i = len(hist)
            while i and hist[i - 1][0] >= r and hist[i - 1][5] >= r:
                i -= 1
        else:
            i = len(hist)
        before = hist[:i]
        h = max(r, before[-1][0] + 1) if before else r
        if self.q and len(before) >= self.q:
            h = max(h, before[-self.q][1] - self.lat + 1)
        prev = before[-1][2] if before else (0 if insert else self.end)
        if not insert:
            prev = max(prev, self.end)
        first = max(h + self.lat, prev)
        mine = first + n
        end = mine + stall
        hist.insert(i, [h, first, end, n + stall, not insert, r])
        for b in hist[i + 1:]:          # the bursts behind it in AR order
            b[1] = max(b[1], end)
            b[2] = end = b[1] + b[3]
            if b[4]:
                self.ld_end = max(self.ld_end, end)
        if not insert:
            self.ld_end = max(self.ld_end, end)
        self.end = max(self.end, end)
        keep = max(self.q or 1, 1)
        j = 0
        while j < len(hist) and hist[j][5] < self.low:
            j += 1
        if j > keep:
            del hist[:j - keep]
        return h, first, mine


def _axi_transfer(axi, cfg, ins, t, unit, ch_free, inflight, accept, port=None):
    """One LOAD / STORE on the AXI model (:class:`sim.timing.AxiDma`): ``(start, next fetch
    of the unit, landed, data-channel cycles)``; updates the channel state in place. ``port``:
    the :class:`_ReadPort` the LD engine's bursts share with the dispatcher (default: one of
    its own, from ``ch_free``). All bursts are placed now (see :func:`_axi_steps` for the
    LD engine's bursts placed in time order with the dispatcher's)."""
    steps = _axi_steps(axi, cfg, ins, t, unit, ch_free, inflight, accept, port)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value


def _axi_steps(axi, cfg, ins, t, unit, ch_free, inflight, accept, port=None):
    """:func:`_axi_transfer` as a generator: before it places each LD burst it yields the
    cycle the engine presents it (its AR request), so that :func:`simulate` can first run the
    dispatcher up to that cycle (its requests of the same cycle win the arbiter's tie and
    those of earlier cycles go before); it returns ``_axi_transfer``'s tuple."""
    f = ins.f
    if f["count"] == 0 or f["length"] == 0:
        return t, t + 1, t, 0
    lat = cfg.dram_latency_cycles
    own = port is None and unit == "LD"
    if own:
        port = _ReadPort(lat, axi.ar_queue, ch_free["LD"])
        port.low = math.inf
    start = max(t, accept[unit])
    req = start + axi.accept_cycles    # taken (IDLE), the window check (CHECK)
    fly, free = inflight[unit], ch_free[unit]
    beats = 0
    last_chunk = -1
    bursts = axi.bursts(f["dram_addr"], f["count"], f["length"], f["stride"])
    for j, (chunk, n) in enumerate(bursts):
        if chunk != last_chunk:
            data = req + axi.store_data_cycles     # a STORE chunk's first line on W
            req += axi.chunk_cycles
            last_chunk = chunk
        fly.sort()
        while fly and fly[0] <= req:
            fly.pop(0)
        if len(fly) >= axi.outstanding:
            req = max(req, fly.pop(0))
        if unit == "LD":
            yield req
            # the realigner's flush word holds R for a cycle after the chunk's last beat
            stall = int(axi.flushes(f["dram_addr"] + chunk * f["stride"],
                                    f["buf_addr"] + chunk * f["length"], f["length"])
                        and (j + 1 == len(bursts) or bursts[j + 1][0] != chunk))
            req, _first, free = port.burst(req, n, stall=stall)
            fly.append(free)
        else:                          # W beats follow the AW; the response comes later
            first = max(req + 1, free, data)
            free = first + n
            data = free
            fly.append(free + lat)
        beats += n
        req += 1
    if unit == "LD":
        free = port.end
        if own:
            ch_free["LD"] = free
    else:
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


def attribute(spans, total: int, l_end, nl: int) -> np.ndarray:
    """Cycles attributed to each layer, summing to ``total``, such that no layer gets fewer
    cycles than its MACs need at full rate (utilisation <= 100 % by construction).

    ``spans``: ``(layer, start, end, w)`` per instruction of the frame; ``w`` = the int8
    multipliers of the core unit running a compute instruction (MAT ``S*T``, R-MAC ``N*M``,
    AUX 0), ``-1`` for a DMA transfer (issue to landed) or the host. Each cycle is shared out
    in three tiers: (1) among the compute instructions with multipliers running in that cycle,
    in proportion to their units' multipliers; (2) if there are none, equally among all other
    instructions in progress (AUX, DMA, host); (3) if nothing runs (a latency gap), to the first
    layer in program order that has not completed. A layer's MACs in one cycle are at most its
    units' multipliers ``w_l`` and the cycle's multipliers in use ``W <= multipliers``, so its
    share ``w_l / W`` of the cycle is at least ``MACs_l / multipliers``: summed, the attributed
    cycles are at least MACs / multipliers."""
    out = np.zeros(nl, dtype=np.float64)
    if total <= 0:
        return out
    sp = [s for s in spans if s[0] >= 0 and s[2] > s[1]]
    pts = np.unique(np.array([0, total] + [min(s[1], total) for s in sp]
                             + [min(s[2], total) for s in sp] + [int(e) for e in l_end
                                                                 if 0 < e < total], np.int64))
    seg = np.diff(pts).astype(np.float64)
    if not len(seg):
        return out
    tag = np.array([s[0] for s in sp], np.int64)
    a = np.searchsorted(pts, np.minimum([s[1] for s in sp], total))
    b = np.searchsorted(pts, np.minimum([s[2] for s in sp], total))
    w = np.array([s[3] for s in sp], np.float64)
    w1 = np.where(w > 0, w, 0.0)
    c2 = np.where(w > 0, 0.0, 1.0)

    def level(wt):
        d = np.zeros(len(pts) + 1)
        np.add.at(d, a, wt)
        np.add.at(d, b, -wt)
        return np.cumsum(d)[:len(seg)]
    W1, W2 = level(w1), level(c2)
    t1 = W1 > 0
    t2 = ~t1 & (W2 > 0)
    f1 = np.concatenate([[0.0], np.cumsum(np.where(t1, seg / np.where(t1, W1, 1), 0))])
    f2 = np.concatenate([[0.0], np.cumsum(np.where(t2, seg / np.where(t2, W2, 1), 0))])
    share = w1 * (f1[b] - f1[a]) + c2 * (f2[b] - f2[a])
    np.add.at(out, tag, share)
    idle = ~t1 & ~t2
    if idle.any():
        ends = np.asarray(l_end[:nl], dtype=np.int64)
        for i in np.nonzero(idle)[0]:
            pend = np.nonzero(ends > pts[i])[0]
            out[pend[0] if len(pend) else nl - 1] += seg[i]
    return out


def _report(binary, total, l_start, l_end, l_busy, l_dram, l_bytes, unit_busy, spans=(),
            total0=None) -> PerfReport:
    from .zoo import node_macs
    cfg, prog = binary.cfg, binary.prog
    total0 = total if total0 is None else total0
    nl = len(prog.nodes)
    ran = l_start < np.iinfo(np.int64).max
    att = attribute(spans, total0, np.where(ran, l_end, 0), nl)
    layers = []
    prev_end = 0
    roof = roofc = 0.0
    for li, n in enumerate(prog.nodes):
        macs = node_macs(prog, n)
        end = int(l_end[li]) if ran[li] else prev_end
        cyc = float(att[li])
        start = int(l_start[li]) if ran[li] else end
        prev_end = max(prev_end, end)
        busy = {u: max(d.values()) for u, d in l_busy[li].items()}
        eng = max([busy.get(u, 0) for u in ("MAT", "RMAC", "AUX", "HOST")] + [0])
        comp = _compulsory_bytes(binary, li)
        r = max(macs / cfg.multipliers, l_bytes[li] / cfg.dram_bytes_per_cycle)
        rc = max(macs / cfg.multipliers, comp / cfg.dram_bytes_per_cycle)
        roof += r
        roofc += rc
        if cyc < 0.5:
            bound = "overlapped"
        elif eng >= 0.75 * cyc and eng >= l_dram[li]:
            bound = "compute"
        elif l_dram[li] >= 0.75 * cyc:
            bound = "DRAM"
        else:
            bound = "dependency"
        layers.append(LayerPerf(n.name, n.kind, int(macs), cyc, int(end - start), busy,
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
                lm.cycles = cyc * lm.macs / macs
                lm.utilization = lm.macs / (lm.cycles * cfg.multipliers) if lm.cycles else 0.0
                lm.bound = bound
    ub = {}
    for (s, u), v in unit_busy.items():
        key = u if s != "global" else f"global.{u}"
        ub[key] = max(ub.get(key, 0), int(v))
    return PerfReport(cfg.to_dict(), binary.prog.meta.get("name", "?"), int(total0), cfg.clock_mhz,
                      cfg.multipliers, cfg.dsps, int(sum(l.macs for l in layers)), layers,
                      int(l_bytes.sum()), roof, roofc, ub)
