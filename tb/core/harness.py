"""The world around one :class:`hw.core.Core`, in plain Python, cycle by cycle.

:class:`CoreEnv` plays everything outside the core for a :class:`sim.compile.Binary` compiled
for ``L = 1``: the DRAM image (with the input written where the Binary's symbol table says),
the global buffers B, C, OUT (byte arrays behind the core's gather / scatter ports), the LD and
ST DMA units executing the Binary's global stream (LOAD/STORE/SIGNAL/WAIT, in zero time; a
LOAD into the core's buffer A goes through the core's ``a_load`` port, one line of
``sim.timing.a_line_bytes`` per cycle as ``sim.perf`` times it, and the LD unit goes on when
its last line is written), the
global semaphores behind the units' wait / signal streams and the dispatcher that splits the
core's stream into the three unit queues (``sim.funcsim.build_queues``).

It is simulator-agnostic: :meth:`CoreEnv.edge` takes the core's outputs sampled just before a
clock edge (``{port name: int}``, names as in the emitted Verilog, e.g. ``mat_x__addr``) and
returns the inputs to drive for the next cycle. ``tests/test_hw_core.py`` drives it from
``amaranth.sim``, ``tb/core/cocotb_core.py`` from cocotb (Icarus, Verilator).

With ``ready=q`` the environment plays a buffer with backpressure for a core built with
``stall=True`` (``hw.core.ports``): every gather / scatter port's ``ready`` is high with
probability ``q`` in each cycle (random, ``seed``), a request is served only in a cycle where
its ``ready`` is high, and a gather's data is driven in the next cycle only.

The per-core AUX and DIV buffers are inside the core (``hw.core.Core``): a request for them on
a port of the core is a :class:`HarnessError`. :func:`simulate_amaranth` can read them at the
end of a run (``local_buffers``) to check the attention intermediates.
"""

from __future__ import annotations

import numpy as np

from hw.core.ports import ADDR_BITS
from hw.core.unit import MAX_KERNEL
from sim import golden, timing
from sim.funcsim import build_queues
from sim.isa import BUF_NAMES, encode

__all__ = ["CoreEnv", "HarnessError", "UNITS"]

UNITS = (("mat", "MAT"), ("rmac", "RMAC"), ("aux", "AUX"))
COMPUTE = ("mat", "rmac")


class HarnessError(RuntimeError):
    """The core (or the binary) did something the environment cannot serve."""


class CoreEnv:
    """Environment of core 0 of ``binary`` run on input ``x`` (see the module doc)."""

    def __init__(self, binary, x, *, core: int = 0, ready: float | None = None, seed: int = 0):
        cfg = binary.cfg
        if cfg.L != 1:
            raise HarnessError(f"the core harness runs single-core binaries (L = 1), got L={cfg.L}")
        self.cfg, self.binary = cfg, binary
        if ready is not None and not 0 < ready <= 1:
            raise ValueError(f"ready must be a probability in (0, 1], got {ready!r}")
        self.ready_p = ready
        self.rng = np.random.default_rng(seed)
        self.ready: dict = {}
        self.stalled = 0            # requests refused (cycles with en and not ready)
        self.N, self.M, self.T, self.S = cfg.N, cfg.M, cfg.T, cfg.S
        prog = binary.prog
        x = golden._check_input(prog, x)
        self.dram = binary.dram.copy()
        binary.write_input(self.dram, x)
        self.bufs = {"B": np.zeros(cfg.buf_b_bytes, np.uint8),
                     "C": np.zeros(cfg.buf_c_bytes, np.uint8),
                     "OUT": np.zeros(cfg.buf_out_bytes, np.uint8)}
        q = build_queues(binary)
        self.glob = [ins for ins, _ in q[("global", "LD")] + q[("global", "ST")]]
        self.gq = {u: [ins for ins, _ in q[("global", u)]] for u in ("LD", "ST", "HOST")}
        self.gpc = {u: 0 for u in self.gq}
        st = f"core{core}"
        self.queues = {u: [encode(ins) for ins, _ in q[(st, U)]] for u, U in UNITS}
        self.instrs = {u: [ins for ins, _ in q[(st, U)]] for u, U in UNITS}
        self.pc = {u: 0 for u, _ in UNITS}
        self.fetch_cycle = {u: [] for u, _ in UNITS}     # cycle of each instruction's fetch
        self.sems: dict = {}
        self.cycle = 0
        self.pending: dict = {}
        self.writes = 0
        self.a_lines: list = []         # pending (addr, mask, data) writes into buffer A
        self.a_line = timing.a_line_bytes(cfg.N, cfg.dram_bytes_per_cycle)
        self.core = core
        self.run_global()

    # -- port description ----------------------------------------------------------------------
    def gathers(self):
        """[(port prefix, rows, elems)] of every gather read port."""
        out = []
        for u, lanes, width in (("mat", self.S, self.T), ("rmac", self.M, self.N)):
            out += [(f"{u}_x", 1, width), (f"{u}_w", lanes, width), (f"{u}_p", lanes, 32),
                    (f"{u}_r", 1, lanes)]
        out.append(("rmac_xr", self.N, self.M + MAX_KERNEL - 1))
        out += [("aux_x", 1, self.N), ("aux_p", 1, 32)]
        return out

    def scatters(self):
        return [("mat_o", self.S), ("rmac_o", self.M), ("aux_o", 1)]

    def sampled_names(self) -> list:
        """Core outputs the environment needs before every clock edge."""
        names = []
        for u, _ in UNITS:
            names += [f"{u}_instr__ready", f"{u}_wait__valid", f"{u}_wait__payload",
                      f"{u}_signal__valid", f"{u}_signal__payload"]
        for p, _, _ in self.gathers():
            names += [f"{p}__en", f"{p}__buf", f"{p}__addr", f"{p}__row_stride",
                      f"{p}__elem_stride"]
        for p, _ in self.scatters():
            names += [f"{p}__en", f"{p}__buf", f"{p}__addr", f"{p}__elem_stride", f"{p}__wide",
                      f"{p}__mask", f"{p}__data"]
        return names + ["halted", "error"]

    def driven(self) -> dict:
        """The inputs to drive in the current cycle."""
        d = {}
        for u, _ in UNITS:
            q, i = self.queues[u], self.pc[u]
            d[f"{u}_instr__valid"] = int(i < len(q))
            d[f"{u}_instr__payload"] = q[i] if i < len(q) else 0
            d[f"{u}_signal__ready"] = 1
            d[f"{u}_wait__ready"] = self.pending.get(f"{u}_wait__ready", 0)
        for p, rows, elems in self.gathers():
            d[f"{p}__data"] = self.pending.get(f"{p}__data", 0)
        if self.ready_p is not None:
            for p in [g[0] for g in self.gathers()] + [w[0] for w in self.scatters()]:
                d[f"{p}__ready"] = self.ready.get(p, 1)
        a, mask, data = self.a_lines[0] if self.a_lines else (0, 0, 0)
        d.update(a_load__en=int(bool(self.a_lines)), a_load__addr=a, a_load__mask=mask,
                 a_load__data=data)
        return d

    # -- the DMA units and semaphores ----------------------------------------------------------
    def run_global(self):
        progress = True
        while progress:
            progress = False
            for u, q in self.gq.items():
                while self.gpc[u] < len(q) and not (u == "LD" and self.a_lines):
                    ins = q[self.gpc[u]]
                    if ins.op == "WAIT":
                        if self.sems.get(ins["sem"], 0) < ins["count"]:
                            break
                    elif ins.op == "SIGNAL":
                        self.sems[ins["sem"]] = self.sems.get(ins["sem"], 0) + ins["count"]
                    elif ins.op in ("LOAD", "STORE"):
                        self.dma(ins)
                    elif ins.op in ("HALT", "NOP", "SETR"):
                        pass
                    else:
                        raise HarnessError(f"the harness cannot run {ins}")
                    self.gpc[u] += 1
                    progress = True

    def dma(self, ins):
        f = ins.f
        cnt, ln, st = f["count"], f["length"], f["stride"]
        didx = f["dram_addr"] + np.arange(cnt)[:, None] * st + np.arange(ln)[None, :]
        if BUF_NAMES.get(f["buf"]) == "A":
            self.load_a(ins, self.dram[didx].reshape(-1))
            return
        mem = self.bufs[BUF_NAMES[f["buf"]]]
        bsl = slice(f["buf_addr"], f["buf_addr"] + cnt * ln)
        if ins.op == "STORE":
            self.dram[didx] = mem[bsl].reshape(cnt, ln)
        else:
            mem[bsl] = self.dram[didx].reshape(-1)

    def load_a(self, ins, raw):
        """Queue the DRAM bytes ``raw`` of a LOAD into buffer A as lines (one per cycle through
        ``a_load``)."""
        f = ins.f
        if ins.op != "LOAD" or f["core"] != self.core:
            raise HarnessError(f"{ins}: the harness plays core {self.core}'s buffer A, LOAD only")
        if f["buf_addr"] % self.a_line:
            raise HarnessError(f"{ins}: a LOAD into buffer A starts on a line boundary "
                               f"({self.a_line} bytes)")
        for o in range(0, raw.size, self.a_line):
            part = raw[o:o + self.a_line]
            self.a_lines.append((f["buf_addr"] + o, (1 << part.size) - 1,
                                 int.from_bytes(part.tobytes(), "little")))

    # -- one clock edge ------------------------------------------------------------------------
    def edge(self, s: dict) -> dict:
        """Apply what happens at a clock edge given the core outputs ``s`` sampled before it and
        the inputs that were driven (``self.driven()``); return the inputs for the next cycle."""
        drv = self.driven()
        if s["error"]:
            raise HarnessError(f"core flagged an error (units {s['error']:03b}) at cycle "
                               f"{self.cycle}; queues at {self.pc}")
        for u, _ in UNITS:
            if drv[f"{u}_instr__valid"] and s[f"{u}_instr__ready"]:
                self.fetch_cycle[u].append(self.cycle)
                self.pc[u] += 1
            if s[f"{u}_signal__valid"]:
                pl = s[f"{u}_signal__payload"]
                sem, cnt = pl & 0xFFFF, (pl >> 16) & 0xFFF
                self.sems[sem] = self.sems.get(sem, 0) + cnt
        def accepted(p):
            if not s[f"{p}__en"]:
                return False
            if self.ready_p is not None and not drv[f"{p}__ready"]:
                self.stalled += 1
                return False
            return True
        for p, n in self.scatters():
            if accepted(p):
                self.scatter(p, n, s)
        if drv["a_load__en"]:
            self.a_lines.pop(0)
        pend = {}
        for p, rows, elems in self.gathers():
            if accepted(p):
                pend[f"{p}__data"] = self.gather(p, rows, elems, s)
        if self.ready_p is not None:
            ports = [g[0] for g in self.gathers()] + [w[0] for w in self.scatters()]
            self.ready = {p: int(self.rng.random() < self.ready_p) for p in ports}
        self.run_global()
        for u, _ in UNITS:
            pl = s[f"{u}_wait__payload"]
            sem, cnt = pl & 0xFFFF, (pl >> 16) & 0xFFF
            taken = drv[f"{u}_wait__ready"] and s[f"{u}_wait__valid"]
            # ready for the next cycle reflects the request seen now; never right after a
            # transfer (the next request, possibly another WAIT, has not been seen yet)
            pend[f"{u}_wait__ready"] = int(bool(s[f"{u}_wait__valid"]) and not taken
                                           and self.sems.get(sem, 0) >= cnt)
        self.pending = pend
        self.cycle += 1
        return self.driven()

    def _buf(self, p, bid):
        name = BUF_NAMES.get(bid)
        if name not in self.bufs:
            raise HarnessError(f"{p}: access to buffer {name or bid} at cycle {self.cycle}: not a"
                               f" global buffer (AUX/DIV are inside the core)")
        return self.bufs[name], name

    def gather(self, p, rows, elems, s) -> int:
        mem, _ = self._buf(p, s[f"{p}__buf"])
        a, rs, es = s[f"{p}__addr"], s[f"{p}__row_stride"], s[f"{p}__elem_stride"]
        # addresses wrap at ADDR_BITS like the hardware's adders (a row segment that starts in
        # the left padding has a 'negative' base address)
        idx = (a + np.arange(rows)[:, None] * rs + np.arange(elems)[None, :] * es) \
            % (1 << ADDR_BITS)
        ok = idx < mem.size
        vals = np.where(ok, mem[np.where(ok, idx, 0)], 0).astype(np.uint8).reshape(-1)
        return int.from_bytes(vals.tobytes(), "little")

    def scatter(self, p, n, s):
        mem, name = self._buf(p, s[f"{p}__buf"])
        a, es, wide, mask = (s[f"{p}__addr"], s[f"{p}__elem_stride"], s[f"{p}__wide"],
                             s[f"{p}__mask"])
        data = s[f"{p}__data"]
        nb = 4 if wide else 1
        for e in range(n):
            if not (mask >> e) & 1:
                continue
            v = (data >> (32 * e)) & 0xFFFFFFFF
            at = a + e * es
            if at + nb > mem.size:
                raise HarnessError(f"{p}: write of {nb} bytes at {at} leaves buffer {name}")
            mem[at:at + nb] = np.frombuffer(v.to_bytes(4, "little")[:nb], np.uint8)
            self.writes += 1

    # -- results -------------------------------------------------------------------------------
    def done(self) -> bool:
        return not self.a_lines and all(self.gpc[u] == len(q) for u, q in self.gq.items())

    def outputs(self) -> dict:
        return self.binary.read_outputs(self.dram)

    def compute_spans(self) -> list:
        """[(unit, op, fetch cycle, next fetch cycle)] of every compute instruction."""
        spans = []
        for u, _ in UNITS:
            ins, fc = self.instrs[u], self.fetch_cycle[u]
            for i, x in enumerate(ins):
                if x.op.startswith(("CONV", "DW", "ATT", "POOL")) and i + 1 < len(fc):
                    spans.append((u, x.op, fc[i], fc[i + 1]))
        return spans


def _lookup(core, name):
    """The amaranth Value of the Verilog-style port name ``name`` of ``core``."""
    parts = name.split("__")
    obj = getattr(core, parts[0])
    for p in parts[1:]:
        obj = getattr(obj, p)
    return obj.as_value() if hasattr(obj, "as_value") else obj


def simulate_amaranth(core, env: CoreEnv, *, max_cycles: int = 200_000, vcd: str | None = None,
                      local_buffers: dict | None = None):
    """Run ``core`` in ``amaranth.sim`` against ``env`` until the binary finished and all units
    halted; returns the number of cycles. Raises :class:`HarnessError` on a core error or when
    ``max_cycles`` pass. With a dict ``local_buffers``, the final contents of the core's AUX and
    DIV buffers and buffer A are stored in it (uint8 arrays: ``"AUX"`` the engine store and
    ``"AUX_A"`` the adder-tree store of :class:`hw.core.auxbuf.AuxBuffer`, ``"DIV"``, ``"A"``)."""
    from amaranth.sim import Simulator

    names = env.sampled_names()
    sigs = [_lookup(core, n) for n in names]
    drv_sigs = {n: _lookup(core, n) for n in env.driven()}
    result = {}

    async def bench(ctx):
        for n, v in env.driven().items():
            ctx.set(drv_sigs[n], v)
        async for clk, rst, *vals in ctx.tick().sample(*sigs):
            s = dict(zip(names, (int(v) for v in vals)))
            if s["halted"] == 0b111 and env.done():
                result["cycles"] = env.cycle
                if local_buffers is not None:
                    aux = core.aux_buf.contents(ctx)
                    local_buffers.update(AUX=aux["E"], AUX_A=aux["A"], DIV=np.array(
                        [ctx.get(core.div_mem.data[i]) for i in range(core.div_mem.depth)],
                        np.uint8), A=(core.a_store.contents(ctx) if core.a_store is not None
                                      else np.zeros(0, np.uint8)))
                return
            if env.cycle >= max_cycles:
                raise HarnessError(f"no completion after {max_cycles} cycles; queues at "
                                   f"{env.pc}, global at {env.gpc}")
            for n, v in env.edge(s).items():
                ctx.set(drv_sigs[n], v)

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return result["cycles"]
