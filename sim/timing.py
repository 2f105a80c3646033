"""The computing core's timing as built in RTL (``hw.core``), in one place, for :mod:`sim.perf`.

``sim`` does not import ``hw`` (``hw`` depends on ``sim``): the latencies of the hardware blocks
are restated here as constants and functions, and ``tests/test_timing.py`` checks them against
the ``hw`` objects (``hw.units.Requant(...).latency``, ``MATEngine.LATENCY``,
``RMACEngine.DF_LATENCY`` / ``DW_LATENCY``, the ``Log2Quantizer`` latency) so
the two cannot drift apart silently; ``tests/test_hw_core.py`` compares whole runs.

The unit serialisation rule
---------------------------
A core unit (MAT, R-MAC, AUX: ``hw.core.unit.Unit``) executes its in-order queue one
instruction at a time, and a compute instruction returns the unit to its FETCH state only in
the cycle after its **last output is written**: the unit drains its output pipeline before it
fetches the next instruction (so a SIGNAL after it means "outputs in place"). With the fetch of
an instruction at cycle ``t`` the next instruction is fetched at ``t + cycles``:

* ``SETR``, ``NOP``: 1 (the fetch cycle; SETR writes its register at the end of it).
* ``SIGNAL``: 1; the semaphore counter shows the increment from cycle ``t + 1``.
* ``WAIT``: reaches the head of the queue at ``h``; it is consumed in cycle
  ``c = max(h + wait_extra, v)`` where ``v`` is the first cycle the counter shows ``count``,
  and the next instruction is fetched at ``c + 1``. ``wait_extra`` is 0 for a semaphore file
  that answers combinationally (the core's contract, ``hw.core.ports``) and 1 for the Python
  harness ``tb.core.harness`` whose ``ready`` is registered (:data:`PYTHON_HARNESS`).
* ``HALT``: the unit reports ``halted`` from cycle ``t + 1``.
* compute instructions: ``pre + steps + post`` (:func:`compute_timing`): ``pre`` cycles from
  the fetch to the first engine step (the fetch cycle included), ``steps`` engine steps, one
  per cycle, never stalled, and ``post`` cycles from the last step to the last output write
  (the write cycle included). The first step is issued at ``t + pre``, the last output is
  written at ``t + pre + steps - 1 + post`` and the next fetch is at ``t + pre + steps + post``.

Pipeline stages (``hw/core/unit.py``, ``hw/core/attention.py``; ``P`` = product latency)
-------------------------------------------------------------------------------------------
* gather read ports: one cycle from the request to the data (:data:`GATHER_LATENCY`,
  ``hw.core.ports``), so an engine step is seen by the engine one cycle after its issue;
* ``MATEngine``: ``LATENCY = P + 1 + AdderTree.latency`` (``P`` = 1, 2 packed; the tree of T
  inputs has ``ceil(log2 T)`` registered levels) (:func:`mat_latency`);
* ``RMACEngine`` down-forward: ``DF_LATENCY = N + 1 + P`` (``P`` = 0, 2 packed: the partial sum
  ripples down the N R-MACs of a lane); self-accumulation: ``DW_LATENCY = 1 + P``;
* the output stage: the engine's result is latched while the parameter records (and
  residuals) are read (1 cycle, ``o1``), then the requant lane ``hw.units.Requant`` with its
  Hardswish stage, built into every lane, :data:`REQUANT_LATENCY` = 6 cycles whatever the
  activation (``ACT``) or residual; ``NOEPI`` (int32 logits) writes the latched sum directly;
* ``DW_RSA``: the engine's N x M tile results go into a hold bank and are requantized one
  channel (M pixels) per cycle: the last tile adds N cycles (the channel-serial drain);
* **fewer requant lanes** (``AccelConfig.requant_mat`` / ``requant_rmac``: R lanes, a divisor
  of the unit's L engine lanes; :func:`drain_cycles` ``D = L / R``): the engine's output vector
  stays in the latch (``o1``) and goes through the lanes R channels per cycle, D cycles per
  vector, so the last vector adds ``D - 1`` cycles to ``post``; the sequencer holds a vector's
  last engine step until ``D`` cycles after the previous vector's (the latch is free again
  when its result arrives), which costs :func:`drain_stall` cycles when a vector takes fewer
  than D steps. A depthwise tile (N channels x M pixels) is drained in ``N * M / R`` cycles
  (``N`` with R = M), and a tile's last step waits until ``N * M / R + 1`` cycles after the
  previous tile's (with R = M the unit requires ``k*k >= N + 1``, so it never waits). A deeper
  staging buffer would change no cycle count: a unit drains each instruction before its next
  fetch, and within an instruction every vector takes the same number of steps, so the drain
  is the bottleneck from the first vector on either way (docs/hw-core.md, "Requant lanes").
  With ``AccelConfig.requant_rmac_res`` only R_res of the R-MAC's lanes have the residual
  path: a ``CONV_RDF`` (not NOEPI) or ``DW_RSA`` whose ``RES_ADDR >= 0`` drains with
  ``D = M / R_res`` (``drain_cycles(cfg, "RMAC", residual=True)``), every rule above unchanged;
* ``POOL`` / ``ATT_KSUM`` (AUX unit): the adder tree is combinational, the channel total is
  held one cycle (parameter read), then the requant lane;
* ``ATT_DIV``: ``Log2Quantizer`` (registered, :data:`LOG2_LATENCY`) after ``o1``;
  ``ATT_OUT``: ``o1`` (DIV entry read with each sub-block), then the MAT unit's requant lanes
  (``requant(num, Dyadic(out_b, out_c + log2_emin + code))``, :data:`REQUANT_LATENCY`), drained
  as the KV step's (``D = S / R``; issue #14 round 3: no shifter array and no ``num * out_b``
  products of its own).

Per opcode (``L`` lanes and ``W`` width of the unit's engine; ``G = GROUPS``; ``cout_g = nco/G``):

=====================  ==========================================  ================================
opcode                 pre (fetch ... first step)                   post (last step ... last write)
=====================  ==========================================  ================================
CONV_MAT / CONV_RDF    3: FETCH, SETUP, GROUPS (+ ``cout_g + 1``    1 gather + engine latency + 1
                       DIVIDE cycles when ``G > 1``)                (o1) + 6 requant (0 with NOEPI)
                                                                    + D - 1 (drain)
DW_RSA                 2: FETCH, SETUP                              1 gather + DW_LATENCY + N*M/R
                                                                    (hold bank drain) + 1 + 6
POOL / ATT_KSUM        2: FETCH, PSETUP                             1 gather + 1 (total held,
                                                                    parameter read) + 1 + 6
ATT_KV_MAT / _RDF      2: FETCH, ASETUP (the head's record read)    1 gather + engine latency + 1 + 6
                                                                    + D - 1 (drain)
ATT_DIV                2                                            1 gather + MAT latency + 1 + 1
                                                                    (log2 module)
ATT_OUT                2                                            1 gather + MAT latency + 1 + 6
                                                                    + D - 1 (drain)
=====================  ==========================================  ================================

plus ``stall`` (:func:`drain_stall`, 0 with one requant lane per engine lane): CONV with a vector
every ``k*k * ceil(CIN / W)`` steps and gap ``D``, ATT_KV_* every ``ceil(NTOK / W)`` steps and gap
``D``, ATT_OUT every ``ceil(DIM / T)`` steps and gap ``D``, DW_RSA a tile every ``k*k`` steps and
gap ``N*M/R + 1``.

Engine steps (:func:`compute_steps`): a conv tile is ``G * ceil(cout_g / L) * pixels *
k*k * ceil(CIN / W)`` (the im2col row of a pixel in tap-major order: one step per tap and block
of ``W`` input channels), i.e. :func:`sim.compile.conv_cycles`, which the compiler balances the
engines with; depthwise :func:`sim.compile.dw_cycles`; the attention steps and POOL as in
docs/isa.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["GATHER_LATENCY", "REQUANT_LATENCY", "LOG2_LATENCY",
           "PACKED_PRODUCT_LATENCY", "SemaphoreTiming", "SYSTEM",
           "SEM_SIGNAL_LATENCY", "SEM_WAIT_EXTRA",
           "AxiDma", "AxiFetch", "AXI_SYSTEM", "axi_system",
           "PYTHON_HARNESS", "adder_tree_latency", "mat_latency", "rmac_df_latency",
           "rmac_dw_latency", "compute_steps", "compute_timing", "ComputeTiming", "COMPUTE_OPS",
           "drain_cycles", "drain_stall",
           "BEAT", "A_MAX_LINE", "a_line_bytes"]

#: cycles from a gather read request to its data (the port contract of ``hw.core.ports``)
GATHER_LATENCY = 1
#: ``hw.units.Requant(hswish=True).latency``: multiply, round, saturate + the Hardswish stages;
#: every requant lane of the core is built with the Hardswish stage, so this holds for any ACT
REQUANT_LATENCY = 6
#: ``hw.units.Log2Quantizer(registered=True).latency`` (ATT_DIV)
LOG2_LATENCY = 1
#: ``hw.units.PackedDualMultiplier.latency`` (the DSP's input and M/P registers)
PACKED_PRODUCT_LATENCY = 2
#: the latched engine result + parameter-record / residual / DIV-entry read (``o1``)
OUTPUT_LATCH = 1

#: bytes of one beat of the DMA's AXI ports (the unit in which DRAM transfers are counted)
BEAT = 16
#: the widest line of buffer A's write port (64 banks): wider would only add multiplexers
A_MAX_LINE = 64


def a_line_bytes(N: int, dram_bytes_per_cycle: int) -> int:
    """Bytes per line of a core's buffer A (``hw.core.Core.a_line``): its banks, the width of
    its ``a_load`` write port and of its read lines. A power of two that is at least one DMA
    beat (16), at least the ``N`` tokens the R-MAC and the adder tree read per cycle, and as wide
    as the DRAM channel (up to :data:`A_MAX_LINE`) so that a LOAD into A moves at the channel's
    rate. A LOAD into A starts on a line boundary and moves one line per cycle."""
    pow2 = lambda v: 1 << (max(1, v) - 1).bit_length()      # noqa: E731
    return max(BEAT, pow2(N), min(A_MAX_LINE, pow2(dram_bytes_per_cycle)))


COMPUTE_OPS = ("CONV_MAT", "CONV_RDF", "DW_RSA", "POOL", "ATT_KV_MAT", "ATT_KV_RDF", "ATT_KSUM",
               "ATT_DIV", "ATT_OUT")


@dataclass(frozen=True)
class AxiDma:
    """The DMA of ``hw.system.Accelerator`` at the AXI level, for :mod:`sim.perf`.

    One AXI4 port of ``beat`` bytes: reads (LOAD) and writes (STORE) on their own channels, one
    beat per cycle each. A LOAD / STORE descriptor is split as the engines split it
    (``hw.system.dma``): per chunk the beats from ``floor(addr / beat)`` to the chunk's last
    byte's beat, in INCR bursts of at most ``max_burst`` beats never crossing a 4 KB boundary;
    the burst generator takes a descriptor and checks its window in ``accept_cycles`` (its IDLE
    and CHECK states), then spends ``chunk_cycles`` per chunk plus one cycle per burst request, at
    most ``outstanding`` bursts are in flight; a read burst's first beat comes
    ``cfg.dram_latency_cycles`` after its request (the memory's read latency) and no earlier
    than the channel is free; a write burst's response comes ``cfg.dram_latency_cycles``
    after its last beat. The engine takes the next descriptor when this one's last burst is
    requested. A SIGNAL of LD / ST is **not posted** (as ``hw.system.globalunit`` builds it):
    the unit waits until every transfer before it has landed (``landing`` cycles after the last
    read beat: the realigner and the buffer write; the last write response for a STORE).
    The dispatcher's instruction fetches share the read channel: :class:`AxiFetch` (with it, a
    unit also waits for its queue to be refilled); without it, one read beat per instruction,
    counted when the instruction starts.

    ``ports`` (``hw.system.Accelerator(axi_ports=...)``, 1..4): with more than one, the
    dispatcher's fetch has port 0's read channel to itself (ST keeps its write channel) and
    there are :attr:`ld_engines` = ``ports - 1`` LD engines, each with the read channel of a
    port of its own. A LOAD goes through the dealer (``hw.system.dma.DescriptorDealer``): it
    is taken in the first cycle ``h`` the dealer is free (no descriptor held, or the cycle its
    previous one's last piece is handed over), the LD unit fetches its next instruction at
    ``h + 1``; from ``h + 1`` on the dealer hands its pieces (:meth:`pieces`) one per cycle at
    the earliest, piece ``j`` of the whole stream to engine ``j mod ld_engines``, each when
    that engine takes a descriptor (when its previous one's last burst is requested). A
    SIGNAL of LD waits until every engine's transfers have landed."""
    beat: int = 16
    max_burst: int = 64
    outstanding: int = 4
    accept_cycles: int = 2
    chunk_cycles: int = 1
    landing: int = 2
    store_data_cycles: int = 6
    ar_queue: int | None = 2
    ports: int = 1

    def __post_init__(self):
        if not (isinstance(self.ports, int) and 1 <= self.ports <= 4):
            raise ValueError(f"AxiDma.ports must be 1..4 (the accelerator's AXI ports), "
                             f"got {self.ports!r}")

    @property
    def ld_engines(self) -> int:
        """LD DMA engines of an accelerator with :attr:`ports` AXI ports."""
        return max(1, self.ports - 1)

    #: a LOAD of one chunk is split by bytes only with at least this many beats per engine
    #: (``hw.system.dma.SPLIT_MIN_BEATS``)
    split_min_beats: int = 4

    def pieces(self, f: dict, engines: int, buf_a: int) -> list[dict]:
        """The pieces ``hw.system.dma.DescriptorDealer`` makes of LOAD fields ``f`` for
        ``engines`` engines (``buf_a``: the buffer id of buffer A, never split): runs of
        ``ceil(count / engines)`` chunks when ``count >= 2``; runs of ``beat * ceil(beats /
        engines)`` bytes of a single chunk of at least ``split_min_beats * engines`` beats;
        else ``[f]``."""
        c, ln = f["count"], f["length"]
        if engines < 2 or f["buf"] == buf_a:
            return [f]
        out = []
        if c >= 2:
            q = -(-c // engines)
            for lo in range(0, c, q):
                out.append(dict(f, dram_addr=f["dram_addr"] + lo * f["stride"],
                                buf_addr=f["buf_addr"] + lo * ln, count=min(q, c - lo)))
            return out
        beats = -(-ln // self.beat)
        if c == 1 and beats >= self.split_min_beats * engines:
            q = self.beat * -(-beats // engines)
            for lo in range(0, ln, q):
                out.append(dict(f, dram_addr=f["dram_addr"] + lo, buf_addr=f["buf_addr"] + lo,
                                length=min(q, ln - lo)))
            return out
        return [f]

    def bursts(self, dram_addr: int, count: int, length: int, stride: int):
        """``[(chunk, beats), ...]`` of one descriptor: the bursts the engine requests."""
        out = []
        for i in range(count):
            a = dram_addr + i * stride
            first, last = a // self.beat, (a + length - 1) // self.beat
            w = first
            while w <= last:
                to_4k = 4096 // self.beat - (w % (4096 // self.beat))
                n = min(last - w + 1, self.max_burst, to_4k)
                out.append((i, n))
                w += n
        return out

    def flushes(self, dram_addr: int, buf_addr: int, length: int) -> bool:
        """Whether a LOAD chunk of ``length`` bytes from DRAM ``dram_addr`` to buffer byte
        ``buf_addr`` ends with a flush word (``hw.system.dma.Realigner``): the chunk spans
        ``n_in`` beats and ``n_out`` buffer lines; the first beat makes no line when the
        chunk's first byte sits in a higher lane of the beat than of its line (``late``), every
        other beat one line, and a last line left over is written from the carry register in
        a cycle of its own, in which the engine takes no read beat."""
        src, dst = dram_addr % self.beat, buf_addr % self.beat
        n_in = (src + length - 1) // self.beat + 1
        n_out = (dst + length - 1) // self.beat + 1
        return n_out == n_in - (dst < src) + 1


@dataclass(frozen=True)
class AxiFetch:
    """The instruction fetch of ``hw.system.Accelerator`` (``hw.system.dispatch.Dispatcher``)
    at the AXI level, for :mod:`sim.perf`.

    The run starts (cycle 0 = the first cycle the ``CYCLES`` counter counts) with the START's
    bus drain, the units' reset and the dispatcher's start; the queue table's first read
    burst is handed to the bus ``table_ar`` cycles later (``Accelerator``: run_rst, go,
    started, arvalid), its further bursts (of at most ``max_burst`` entries) two cycles apart.
    The cycle after the table's last beat the round robin begins at queue 0: each cycle it
    looks at one queue and, if that queue has words left, room for
    ``n = min(words left, free slots, beats to the 4 KB boundary, max_burst)`` words, ``n`` at
    least ``min(words left, depth // 2, beats to the boundary)`` and fewer than
    ``outstanding`` bursts in flight, requests ``n`` words: the AR handshake is the next cycle
    (the round robin looks at the next queue in the cycle after it). Free slots are
    ``depth`` minus the words requested and not yet taken by the unit. Read data follow the
    bursts requested before on the shared read channel (the LD engine's too), the memory's
    latency after the AR; a word is in the FIFO's output register ``fifo_latency`` cycles after
    its beat (``lib.fifo.SyncFIFOBuffered``), and its unit cannot take it earlier."""
    depth: int = 16
    max_burst: int = 16
    outstanding: int = 4
    table_ar: int = 3
    fifo_latency: int = 2


@dataclass(frozen=True)
class SemaphoreTiming:
    """How the world outside the core answers (see the module doc).

    ``wait_extra``: extra cycles of a WAIT whose semaphore is already satisfied when it reaches
    the head of its queue (0: a combinational semaphore file; 1: a registered ``ready``; 2:
    ``hw.system.semaphores``, a counter RAM looked up by the waiter).
    ``signal_latency``: a SIGNAL taken in cycle ``t`` is seen by WAITs from ``t +
    signal_latency`` (1: counters in registers; 2: ``hw.system.semaphores``, read-modify-write
    of the counter RAM then a registered ``ready``).
    ``dma_zero_time``: the global stream (LD/ST DMA units) runs in zero time (a LOAD's data is in
    the buffer when it is issued; its SIGNAL is seen by a core WAIT with ``wait_extra``), as the
    Python harness plays it; ``False``: the DRAM model of :mod:`sim.perf`.
    ``axi``: the DMA as ``hw.system`` builds it (:class:`AxiDma`) instead of the shared-channel
    DRAM model; ``fetch``: with ``axi``, the dispatcher's instruction fetch (:class:`AxiFetch`)
    instead of one read beat per instruction.
    ``arbiters``: the semaphore file's two round-robin arbiters (``hw.system.semaphores``): one
    WAIT look-up and one SIGNAL per cycle over all units, the lowest unit (queue index) after
    the last one served first; a WAIT is then taken ``wait_extra`` cycles after its look-up is
    granted (not after it is offered), and a SIGNAL is seen ``signal_latency`` cycles after it
    is granted, its unit going on the cycle after the grant. ``False``: every unit's look-up
    and SIGNAL served in the cycle it is offered (no contention)."""
    wait_extra: int = 0
    signal_latency: int = 1
    dma_zero_time: bool = False
    axi: AxiDma | None = None
    fetch: AxiFetch | None = None
    arbiters: bool = False


#: the accelerator: a combinational semaphore file, DMA through the DRAM model
SYSTEM = SemaphoreTiming()
#: ``hw.system.semaphores.SemaphoreFile`` (counters in a RAM, docs/system.md "Semaphore file"):
#: a SIGNAL taken in cycle t is arbitrated and its counter read in t, added and written in t + 1
#: (and broadcast to the waiters' watch registers), so ``wait.ready`` (a register) rises in
#: t + 2; a WAIT offered in h on a sufficient counter has its look-up granted in h, the data
#: compared in h + 1, ``ready`` in h + 2 (``SemaphoreFile.SIGNAL_LATENCY`` / ``WAIT_LATENCY``,
#: checked by tests/test_timing.py). Several units offering in one cycle are served one per
#: cycle by the file's arbiters (``SemaphoreTiming.arbiters``, on in :data:`AXI_SYSTEM`).
SEM_SIGNAL_LATENCY = 2
SEM_WAIT_EXTRA = 2
#: ``hw.system.Accelerator``: the semaphore file above (with its arbiters), the DMA engines on
#: one AXI4 port
AXI_SYSTEM = SemaphoreTiming(wait_extra=SEM_WAIT_EXTRA, signal_latency=SEM_SIGNAL_LATENCY,
                             axi=AxiDma(), fetch=AxiFetch(), arbiters=True)


def axi_system(ports: int = 1) -> SemaphoreTiming:
    """:data:`AXI_SYSTEM` for an accelerator built with ``axi_ports=ports`` (1..4,
    :attr:`AxiDma.ports`)."""
    from dataclasses import replace
    return replace(AXI_SYSTEM, axi=replace(AXI_SYSTEM.axi, ports=ports))


#: ``tb.core.harness.CoreEnv``: registered ``wait.ready`` (a satisfied WAIT takes 2 cycles) and
#: the LD/ST DMA units executed in zero time at the clock edge
PYTHON_HARNESS = SemaphoreTiming(wait_extra=1, dma_zero_time=True)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def adder_tree_latency(count: int) -> int:
    """``hw.units.AdderTree(count=count, register_every=1).latency``: one register per level,
    ``ceil(log2 count)`` levels (0 for one input)."""
    return math.ceil(math.log2(count)) if count > 1 else 0


def mat_latency(cfg) -> int:
    """``hw.engines.MATEngine(lanes=S, multipliers=T, packed=...).LATENCY``: product register
    (2 with DSP packing), accumulator, T-input adder tree."""
    return (PACKED_PRODUCT_LATENCY if cfg.dsp_packing else 1) + 1 + adder_tree_latency(cfg.T)


def rmac_df_latency(cfg) -> int:
    """``hw.engines.RMACEngine(...).DF_LATENCY``: the partial sum ripples down the N R-MACs of a
    lane (+ the packed product's 2 registers)."""
    return cfg.N + 1 + (PACKED_PRODUCT_LATENCY if cfg.dsp_packing else 0)


def rmac_dw_latency(cfg) -> int:
    """``hw.engines.RMACEngine(...).DW_LATENCY`` (self-accumulation)."""
    return 1 + (PACKED_PRODUCT_LATENCY if cfg.dsp_packing else 0)


def compute_steps(cfg, op: str, regs: dict, f: dict) -> int:
    """Engine steps (cycles of the RUN state, one step per cycle) of compute instruction ``op``
    with fields ``f`` given the unit's layer registers ``regs``."""
    from .compile import conv_cycles, dw_cycles     # the compiler balances with the same counts
    if op in ("CONV_MAT", "CONV_RDF"):
        # per pixel: the im2col row in tap-major order, ceil(CIN / width) steps per tap
        k = regs["KERNEL"]
        return conv_cycles(cfg, "MAT" if op == "CONV_MAT" else "RMAC", K=regs["CIN"] * k * k,
                           nco=f["nco"], npix=f["ho"] * regs["WOUT"],
                           groups=regs.get("GROUPS", 1), k=k)
    if op == "DW_RSA":
        return dw_cycles(cfg, nch=f["nco"], ho=f["ho"], wo=regs["WOUT"], k=regs["KERNEL"])
    if op in ("ATT_KV_RDF", "ATT_KV_MAT"):
        L, W = (cfg.M, cfg.N) if op == "ATT_KV_RDF" else (cfg.S, cfg.T)
        d, n = regs["DIM"], regs["NTOK"]
        return d * _cdiv(d, L) * _cdiv(n, W)
    if op == "ATT_KSUM":
        return regs["DIM"] * _cdiv(regs["NTOK"], cfg.N)
    if op == "ATT_DIV":
        return regs["NTOK"] * _cdiv(regs["DIM"], cfg.T)
    if op == "ATT_OUT":
        d = regs["DIM"]
        return _cdiv(d, cfg.S) * regs["NTOK"] * _cdiv(d, cfg.T)
    if op == "POOL":
        return f["nco"] * _cdiv(regs["NTOK"], cfg.N)
    raise ValueError(f"no core timing for {op}")


@dataclass(frozen=True)
class ComputeTiming:
    """``pre`` + ``steps`` + ``stall`` + ``post`` cycles from the fetch of a compute instruction
    to the fetch of the next instruction of its unit (see the module doc); ``stall``: cycles the
    sequencer waits for the requant drain (:func:`drain_stall`; 0 with one lane per engine
    lane)."""
    pre: int
    steps: int
    post: int
    stall: int = 0

    @property
    def cycles(self) -> int:
        return self.pre + self.steps + self.stall + self.post


def drain_cycles(cfg, unit: str, residual: bool = False) -> int:
    """Cycles the requant lanes of ``unit`` ("MAT" / "RMAC") take for one engine output vector:
    ``lanes / R`` (``sim.config.AccelConfig.requant_lanes``); 1 with one lane per engine lane.
    ``residual``: an instruction with a residual input, which on the R-MAC drains through its
    ``requant_res_lanes()`` lanes with the residual path only."""
    if unit == "RMAC" and residual:
        return cfg.M // cfg.requant_res_lanes()
    return (cfg.S if unit == "MAT" else cfg.M) // cfg.requant_lanes(unit)


def drain_stall(vectors: int, per_vector: int, gap: int) -> int:
    """Stall cycles of an engine loop that produces ``vectors`` output vectors (or depthwise
    tiles), one every ``per_vector`` engine steps, when the issue of a vector's last step must
    come at least ``gap`` cycles after the previous one's (the staging register is still being
    drained): ``(vectors - 1) * max(0, gap - per_vector)``."""
    return max(0, vectors - 1) * max(0, gap - per_vector)


def conv_pre_post(cfg, engine: str, *, nco: int, groups: int = 1,
                  noepi: bool = False) -> tuple[int, int]:
    """``(pre, post)`` fixed cycles of a ``CONV_MAT`` (``engine="MAT"``) or ``CONV_RDF``
    (``"RMAC"``) tile of ``nco`` output channels in ``groups`` groups; ``noepi``: raw int32
    outputs (no requant lane). Also what ``sim.compile`` adds per tile when it balances the MAT
    and the R-MAC."""
    pre = 3 + ((nco // groups + 1) if groups > 1 else 0)
    lat = mat_latency(cfg) if engine == "MAT" else rmac_df_latency(cfg)
    post = GATHER_LATENCY + lat + (OUTPUT_LATCH if noepi else OUTPUT_LATCH + REQUANT_LATENCY)
    return pre, post


def compute_timing(cfg, op: str, regs: dict, f: dict) -> ComputeTiming:
    """The RTL timing of compute instruction ``op`` (fields ``f``, the unit's registers
    ``regs``) on an engine configuration ``cfg`` (``N, M, T, S, dsp_packing``)."""
    steps = compute_steps(cfg, op, regs, f)
    rq = OUTPUT_LATCH + REQUANT_LATENCY
    stall = 0
    if op in ("CONV_MAT", "CONV_RDF"):
        unit = "MAT" if op == "CONV_MAT" else "RMAC"
        pre, post = conv_pre_post(cfg, unit, nco=f["nco"],
                                  groups=regs.get("GROUPS", 1), noepi=bool(regs.get("NOEPI", 0)))
        # requant drain: a vector every k*k*ceil(CIN/W) steps, drained in D cycles
        noepi = bool(regs.get("NOEPI", 0))
        D = drain_cycles(cfg, unit, not noepi and regs.get("RES_ADDR", -1) >= 0)
        per = regs["KERNEL"] ** 2 * _cdiv(regs["CIN"], cfg.T if unit == "MAT" else cfg.N)
        stall = drain_stall(steps // per, per, D)
        post += D - 1
    elif op == "DW_RSA":
        # the tile's N x M results are drained D = N * M / R cycles (channel by channel, M / R
        # cycles per channel); a tile's last step comes at least D + 1 cycles after the last one's
        pre = 2
        D = cfg.N * drain_cycles(cfg, "RMAC", regs.get("RES_ADDR", -1) >= 0)
        k = regs["KERNEL"]
        stall = drain_stall(steps // (k * k), k * k, D + 1)
        post = GATHER_LATENCY + rmac_dw_latency(cfg) + D + rq
    elif op in ("POOL", "ATT_KSUM"):
        pre = 2
        post = GATHER_LATENCY + 1 + rq
    elif op in ("ATT_KV_MAT", "ATT_KV_RDF"):
        pre = 2
        post = GATHER_LATENCY + (mat_latency(cfg) if op == "ATT_KV_MAT"
                                 else rmac_df_latency(cfg)) + rq
        unit = "MAT" if op == "ATT_KV_MAT" else "RMAC"
        D = drain_cycles(cfg, unit)
        per = _cdiv(regs["NTOK"], cfg.T if unit == "MAT" else cfg.N)
        stall = drain_stall(steps // per, per, D)
        post += D - 1
    elif op == "ATT_DIV":
        pre = 2
        post = GATHER_LATENCY + mat_latency(cfg) + OUTPUT_LATCH + LOG2_LATENCY
    elif op == "ATT_OUT":
        # the MAT's requant lanes (shift out_c + log2_emin + code), drained as a KV step's
        pre = 2
        post = GATHER_LATENCY + mat_latency(cfg) + rq
        D = drain_cycles(cfg, "MAT")
        per = _cdiv(regs["DIM"], cfg.T)
        stall = drain_stall(steps // per, per, D)
        post += D - 1
    else:
        raise ValueError(f"no core timing for {op}")
    return ComputeTiming(pre, steps, post, stall)
