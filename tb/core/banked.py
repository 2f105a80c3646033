"""One core with backpressure on the banked global buffers, in ``amaranth.sim``.

:class:`BankedCoreTop` joins a ``hw.core.Core(stall=True)`` to a
:class:`hw.system.banked.BankedBuffers` (one core, its DMA line ports idle). :class:`BankedEnv`
is :class:`tb.core.harness.CoreEnv` without its own global buffers: the core's gather / scatter
ports go to the banked buffers in the simulation, and the environment's LD / ST DMA units
(zero time, as in ``CoreEnv``) read and write the bank memories directly (``ctx.get`` /
``ctx.set``: the testbench's back door, one word at a time, read-modify-write). The rest
(instruction queues, semaphores, buffer A's line port) is ``CoreEnv``'s.

This checks the banked buffers with the real request streams of the core (strides, bursts of
requests from both engines and the AUX unit at once) layer by layer, and measures what their
bank conflicts cost against ``sim.perf`` (which has none), much faster than the whole
accelerator on an RTL simulator.
"""

from __future__ import annotations

import numpy as np
from amaranth import Elaboratable, Module
from amaranth.lib import wiring

from hw.core import Core
from hw.system.banked import BankedBuffers
from hw.system.wordbanked import WordBankedBuffers
from sim.isa import BUF_NAMES

from .harness import CoreEnv, HarnessError, _lookup

__all__ = ["BankedCoreTop", "BankedEnv", "simulate_banked"]

LINE = 16


class BankedCoreTop(Elaboratable):
    """``core`` (``stall=True``) on ``BankedBuffers`` (``buffers="banked"``) or
    ``WordBankedBuffers`` (``buffers="word"``) of ``cfg``'s sizes with ``banks`` banks of
    ``word`` bytes; ``p_reuse``: the core's (``hw.core.Core``; None: its default, on)."""

    def __init__(self, cfg, *, banks: int = 8, word: int = 8, buffers: str = "banked",
                 p_reuse: bool | None = None):
        if buffers not in ("banked", "word"):
            raise ValueError(f"buffers must be 'banked' or 'word', got {buffers!r}")
        self.core = Core.from_config(cfg, stall=True, p_reuse=p_reuse)
        kind = BankedBuffers if buffers == "banked" else WordBankedBuffers
        self.bufs = kind(core_signature=self.core.signature, cores=1, line=LINE,
                         banks=banks, word=word,
                         sizes={"B": cfg.buf_b_bytes, "C": cfg.buf_c_bytes,
                                "OUT": cfg.buf_out_bytes})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.bufs = bufs = self.bufs
        for name, *_ in bufs.gathers + bufs.scatters:
            wiring.connect(m, getattr(core, name), getattr(bufs, f"c0_{name}"))
        m.d.comb += [bufs.ld.valid.eq(0), bufs.st_en.eq(0)]
        return m


class BankedEnv(CoreEnv):
    """``CoreEnv`` whose global buffers are ``top.bufs`` (see the module doc)."""

    def __init__(self, binary, x, top: BankedCoreTop):
        self.hw = top.bufs
        self.ctx = None
        self.backlog = []           # LOADs executed before the simulation started
        super().__init__(binary, x)

    # the core's buffer ports are served by the hardware, not by the environment
    def gathers(self):
        return []

    def scatters(self):
        return []

    def _words(self, g0, n):
        hw = self.hw
        W, P = hw.word, hw.banks
        for w in range(g0 // W, (g0 + n + W - 1) // W):
            yield w, hw.bank_mems[w % P], w // P

    def _get(self, g0, n) -> np.ndarray:
        W = self.hw.word
        out = np.zeros(n, np.uint8)
        for w, mem, row in self._words(g0, n):
            v = np.frombuffer(self.ctx.get(mem.data[row]).to_bytes(W, "little"), np.uint8)
            lo, hi = max(g0, w * W), min(g0 + n, (w + 1) * W)
            out[lo - g0:hi - g0] = v[lo - w * W:hi - w * W]
        return out

    def _put(self, g0, data: np.ndarray):
        W, n = self.hw.word, data.size
        for w, mem, row in self._words(g0, n):
            v = bytearray(self.ctx.get(mem.data[row]).to_bytes(W, "little"))
            lo, hi = max(g0, w * W), min(g0 + n, (w + 1) * W)
            v[lo - w * W:hi - w * W] = data[lo - g0:hi - g0].tobytes()
            self.ctx.set(mem.data[row], int.from_bytes(bytes(v), "little"))

    def dma(self, ins):
        f = ins.f
        name = BUF_NAMES.get(f["buf"])
        if name == "A" or name not in self.bufs:
            return super().dma(ins)
        g0, n = self.hw.base[name] + f["buf_addr"], f["count"] * f["length"]
        if ins.op == "STORE":
            if self.ctx is None:
                raise HarnessError("a STORE before the simulation started")
            self.bufs[name][f["buf_addr"]:f["buf_addr"] + n] = self._get(g0, n)
            return super().dma(ins)
        super().dma(ins)
        data = self.bufs[name][f["buf_addr"]:f["buf_addr"] + n].copy()
        if self.ctx is None:
            self.backlog.append((g0, data))
        else:
            self._put(g0, data)

    def start(self, ctx):
        self.ctx = ctx
        for g0, data in self.backlog:
            self._put(g0, data)
        self.backlog = []


def simulate_banked(top: BankedCoreTop, env: BankedEnv, *, max_cycles: int = 200_000) -> int:
    """Run ``top`` against ``env`` until the Binary finished and the core halted (as
    ``tb.core.harness.simulate_amaranth``); returns the cycle count. ``env.unit_stalls``: the
    cycles each unit was frozen by a bank conflict (its ``stall_cycles``), {unit: cycles};
    ``env.port_waits``: per buffer port of the core, {port: [requests accepted, cycles a
    request waited (en and not ready)]}."""
    from amaranth.sim import Simulator

    core = top.core
    ports = [n for n, *_ in top.bufs.gathers + top.bufs.scatters]
    names = env.sampled_names()
    names += [f"{p}__{f}" for p in ports for f in ("en", "ready") if f"{p}__{f}" not in names]
    sigs = [_lookup(core, n) for n in names]
    env.port_waits = {p: [0, 0] for p in ports}
    drv_sigs = {n: _lookup(core, n) for n in env.driven()}
    result = {}

    async def bench(ctx):
        env.start(ctx)
        for n, v in env.driven().items():
            ctx.set(drv_sigs[n], v)
        async for clk, rst, *vals in ctx.tick().sample(*sigs):
            s = dict(zip(names, (int(v) for v in vals)))
            for p in ports:
                if s[f"{p}__en"]:
                    env.port_waits[p][0 if s[f"{p}__ready"] else 1] += 1
            if s["halted"] == 0b111 and env.done():
                result["cycles"] = env.cycle
                result["fault"] = ctx.get(top.bufs.fault)
                env.unit_stalls = {u: ctx.get(unit.stall_cycles)
                                   for u, unit in core.units.items()}
                if hasattr(top.bufs, "violation") and ctx.get(top.bufs.violation):
                    result["violation"] = top.bufs.ports[ctx.get(top.bufs.violation_port)]
                return
            if env.cycle >= max_cycles:
                raise HarnessError(f"no completion after {max_cycles} cycles; queues at "
                                   f"{env.pc}, global at {env.gpc}")
            for n, v in env.edge(s).items():
                ctx.set(drv_sigs[n], v)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    if result["fault"]:
        raise HarnessError(f"the banked buffers flagged fault {result['fault']:03b}")
    if result.get("violation"):
        raise HarnessError(f"the word buffers flagged an unsupported request of port "
                           f"{result['violation']!r}")
    return result["cycles"]
