# amaranth: UnusedElaboratable=no
"""hw.system.dma under amaranth.sim: LoadDMA / StoreDMA against sim.funcsim's LOAD / STORE.

The testbench plays an AXI4 memory (a Python model with random ready / valid pauses and random
read latency) and the buffers. Random descriptors (fixed seed: unaligned DRAM and buffer
offsets, lengths 1..300, counts 1..5, strides >= length, some placed across 4 KB boundaries)
run through the engine; the same descriptors run through ``sim.funcsim``'s ``_Machine.dma`` on
a copy of the same DRAM and buffers, and the final DRAM and buffers must be identical. Every
AR / AW is checked for legality (INCR, size, length <= max_burst, no 4 KB crossing), every burst
must get all its beats / its response, ``idle`` must be low while anything is in flight.
"""

from collections import deque
import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.system.axi import BOUNDARY_BYTES, BURST_INCR, RESP_OKAY, RESP_SLVERR
from hw.system.dma import FAULT_RESP, FAULT_WINDOW, LoadDMA, StoreDMA
from sim.isa import BUFS
from tb.system import dma_cases as cases
from tb.system.dma_cases import buffers as _buffers, machine, reference

BASE = 0x1_2345_0000        # DRAM image base: above 4 GB, so the 40-bit address path is used
DRAM_BYTES = 64 * 1024


def _machine(rng):
    """A reference machine over a random DRAM image, with random buffer contents."""
    return machine(rng.integers(0, 256, DRAM_BYTES, dtype=np.uint8), rng=rng)


def random_descriptors(rng, n, *, store):
    return cases.random_descriptors(rng, n, dram_bytes=DRAM_BYTES, a_loads=0.0 if store else 0.2)


class AxiMemory:
    """The AXI subordinate of the testbench: DRAM bytes at ``BASE``; one call per cycle.

    ``pause``: probability that a ready / valid the model drives is held low in a cycle;
    ``latency``: (lo, hi) cycles from AR acceptance to the burst's first beat.
    Records every burst and checks its legality against the engine's parameters."""

    def __init__(self, dut, mem, rng, *, pause, latency, err_range=None):
        self.dut, self.mem, self.rng = dut, mem, rng
        self.pause, self.latency = pause, latency
        self.lanes = dut.data_width // 8
        self.err_range = err_range          # [lo, hi) DRAM byte range that answers SLVERR
        self.r_queue = deque()              # (cycle ready, data, resp, last)
        self.r_cur = None
        self.w_bursts = deque()             # [addr, beats left, resp]
        self.b_queue = deque()              # (cycle ready, resp)
        self.b_cur = None
        self.bursts = 0
        self.beats = 0                      # beats transferred (R or W)
        self.beats_owed = 0                 # R beats or W beats not yet transferred
        self.resp_owed = 0                  # B responses not yet transferred

    def go(self):
        return self.rng.random() >= self.pause

    def check_burst(self, addr, length, size, burst):
        n = self.lanes
        beats = length + 1
        assert burst == BURST_INCR, f"burst type {burst}"
        assert size == n.bit_length() - 1, f"size {size} for {n}-byte beats"
        assert beats <= self.dut.max_burst, f"{beats} beats > max_burst {self.dut.max_burst}"
        assert addr % BOUNDARY_BYTES + beats * n <= BOUNDARY_BYTES, \
            f"burst at {addr:#x} of {beats} beats crosses 4 KB"
        lo = addr - BASE
        assert 0 <= lo and lo + beats * n <= self.mem.size, f"burst at {addr:#x} outside DRAM"
        self.bursts += 1
        return lo, beats

    def _resp(self, lo, hi):
        if self.err_range and lo < self.err_range[1] and hi > self.err_range[0]:
            return RESP_SLVERR
        return RESP_OKAY

    async def drive(self, ctx, t):
        """Set the subordinate's outputs for cycle ``t`` (before reading the engine)."""
        bus = self.dut.bus
        ctx.set(bus.arready, self.go())
        ctx.set(bus.awready, self.go())
        ctx.set(bus.wready, self.go())
        if self.r_cur is None and self.r_queue and self.r_queue[0][0] <= t and self.go():
            self.r_cur = self.r_queue.popleft()
        if self.r_cur is not None:
            _, dat, resp, last = self.r_cur
            ctx.set(bus.rdata, dat)
            ctx.set(bus.rresp, resp)
            ctx.set(bus.rlast, last)
        else:
            ctx.set(bus.rdata, int(self.rng.integers(0, 1 << 62)))
        ctx.set(bus.rvalid, self.r_cur is not None)
        if self.b_cur is None and self.b_queue and self.b_queue[0][0] <= t and self.go():
            self.b_cur = self.b_queue.popleft()
        ctx.set(bus.bvalid, self.b_cur is not None)
        ctx.set(bus.bresp, self.b_cur[1] if self.b_cur else 0)

    async def edge(self, ctx, t):
        """Sample the engine's outputs in cycle ``t`` and perform the handshakes of the edge."""
        bus, n = self.dut.bus, self.lanes
        if ctx.get(bus.arvalid) and ctx.get(bus.arready):
            lo, beats = self.check_burst(ctx.get(bus.araddr), ctx.get(bus.arlen),
                                         ctx.get(bus.arsize), ctx.get(bus.arburst))
            start = t + int(self.rng.integers(*self.latency))
            for b in range(beats):
                a = lo + b * n
                word = int.from_bytes(self.mem[a:a + n].tobytes(), "little")
                self.r_queue.append((start, word, self._resp(a, a + n), b == beats - 1))
            self.beats_owed += beats
        if self.r_cur is not None and ctx.get(bus.rready):
            self.r_cur = None
            self.beats_owed -= 1
            self.beats += 1
        if ctx.get(bus.awvalid) and ctx.get(bus.awready):
            lo, beats = self.check_burst(ctx.get(bus.awaddr), ctx.get(bus.awlen),
                                         ctx.get(bus.awsize), ctx.get(bus.awburst))
            self.w_bursts.append([lo, beats, self._resp(lo, lo + beats * n)])
            self.beats_owed += beats
            self.resp_owed += 1
        if ctx.get(bus.wvalid) and ctx.get(bus.wready):
            assert self.w_bursts, "W beat without an accepted AW"
            cur = self.w_bursts[0]
            dat, strb = ctx.get(bus.wdata), ctx.get(bus.wstrb)
            raw = dat.to_bytes(n, "little")
            for j in range(n):
                if strb >> j & 1:
                    self.mem[cur[0] + j] = raw[j]
            cur[0] += n
            cur[1] -= 1
            self.beats_owed -= 1
            self.beats += 1
            assert bool(ctx.get(bus.wlast)) == (cur[1] == 0), "wlast not on the burst's last beat"
            if cur[1] == 0:
                self.w_bursts.popleft()
                self.b_queue.append((t + int(self.rng.integers(*self.latency)), cur[2]))
        if self.b_cur is not None and ctx.get(bus.bready):
            self.b_cur = None
            self.resp_owed -= 1

    def busy(self):
        return bool(self.beats_owed or self.resp_owed or self.r_cur or self.b_cur)


def run_engine(dut, descs, m, rng, *, store, pause=0.3, latency=(1, 8), window=None,
               err_range=None, max_cycles=100_000):
    """Run ``descs`` (funcsim field dicts) through ``dut`` with DRAM ``m.dram`` and the machine's
    buffers (both modified in place). Returns {"memory": AxiMemory, "fault", "bytes", "cycles"}."""
    bufs = _buffers(m)
    mem = AxiMemory(dut, m.dram, rng, pause=pause, latency=latency, err_range=err_range)
    n = dut.data_width // 8
    lo, hi = window if window else (BASE, BASE + m.dram.size)
    res = {"memory": mem}

    async def bench(ctx):
        ctx.set(dut.win_lo, lo)
        ctx.set(dut.win_hi, hi)
        todo = deque(descs)
        rd_pending = None
        quiet, t = 0, 0
        while quiet < 20:
            assert t < max_cycles, "engine hung"
            await mem.drive(ctx, t)
            if todo:
                d = dict(todo[0])
                d["dram_addr"] += BASE
                ctx.set(dut.cmd.payload, d)
                ctx.set(dut.cmd.valid, 1)
            else:
                ctx.set(dut.cmd.valid, 0)
            if store:
                line = rd_pending
                ctx.set(dut.rd_data, line if line is not None
                        else int(rng.integers(0, 1 << 62)))
            else:
                ctx.set(dut.wr.ready, mem.go())
            # -- sample and do the handshakes of this edge
            if todo and ctx.get(dut.cmd.ready):
                todo.popleft()
            if store:
                rd_pending = None
                if ctx.get(dut.rd_en):
                    a, b = ctx.get(dut.rd_addr), ctx.get(dut.rd_buf)
                    assert a % n == 0, f"rd_addr {a} not line-aligned"
                    buf = bufs[(b, 0)]
                    seg = buf[a:a + n] if a + n <= buf.size else \
                        np.concatenate([buf[a:], np.zeros(a + n - buf.size, np.uint8)])
                    rd_pending = int.from_bytes(seg.tobytes(), "little")
            elif ctx.get(dut.wr.valid) and ctx.get(dut.wr.ready):
                w = ctx.get(dut.wr.payload)
                assert w.addr % n == 0, f"wr.addr {w.addr} not line-aligned"
                buf = bufs[(w.buf, w.core)]
                raw = int(w.data).to_bytes(n, "little")
                for j in range(n):
                    if w.mask >> j & 1:
                        buf[w.addr + j] = raw[j]
            busy = mem.busy()
            await mem.edge(ctx, t)
            idle = ctx.get(dut.idle)
            if busy or mem.busy():
                assert not idle, f"idle high at cycle {t} with bursts in flight"
            quiet = quiet + 1 if (not todo and idle and not mem.busy()) else 0
            await ctx.tick()
            t += 1
        res["fault"] = ctx.get(dut.fault)
        res["bytes"] = ctx.get(dut.wr_bytes if store else dut.rd_bytes)
        res["cycles"] = t

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return res


def _check_against_funcsim(engine, seed, ndesc, *, store, **run_kw):
    rng = np.random.default_rng(seed)
    got = _machine(np.random.default_rng(seed + 1000))
    want = _machine(np.random.default_rng(seed + 1000))
    descs = random_descriptors(rng, ndesc, store=store)
    res = run_engine(engine, descs, got, rng, store=store, **run_kw)
    reference(want, descs, store=store)
    assert np.array_equal(got.dram, want.dram), "DRAM differs from funcsim"
    for key, buf in _buffers(want).items():
        diff = np.flatnonzero(_buffers(got)[key] != buf)
        assert diff.size == 0, f"buffer {key} differs from funcsim at {diff[:8]}"
    assert res["fault"] == 0
    assert res["bytes"] == sum(d["count"] * d["length"] for d in descs)
    assert res["memory"].bursts >= sum(d["count"] for d in descs)
    return res


ENGINES = [
    ("default", {}),
    ("w32-b4-o1", {"data_width": 32, "max_burst": 4, "outstanding": 1}),
    ("w64-b256-o16", {"data_width": 64, "max_burst": 256, "outstanding": 16}),
]


@pytest.mark.parametrize("name,kw", ENGINES, ids=[e[0] for e in ENGINES])
def test_load_matches_funcsim(name, kw):
    _check_against_funcsim(LoadDMA(**kw), 11, 12, store=False)


@pytest.mark.parametrize("name,kw", ENGINES, ids=[e[0] for e in ENGINES])
def test_store_matches_funcsim(name, kw):
    _check_against_funcsim(StoreDMA(**kw), 22, 12, store=True)


def throughput(store: bool, length: int, count: int) -> tuple[int, int]:
    """(cycles, beats) of one descriptor (DRAM 4096 + 5, buffer 77, stride length + 16) on a
    memory without pauses and with 1-cycle latency, default engine parameters (docs/system.md:
    ``python -c "from tests.test_dma import throughput; print(throughput(False, 8000, 1))"``)."""
    dut = StoreDMA() if store else LoadDMA()
    rng = np.random.default_rng(3)
    m = _machine(rng)
    d = {"buf": BUFS["B"], "dram_addr": 4096 + 5, "buf_addr": 77, "count": count,
         "length": length, "stride": length + 16, "core": 0}
    res = run_engine(dut, [d], m, rng, store=store, pause=0.0, latency=(1, 2))
    return res["cycles"] - 20, res["memory"].beats      # minus the 20 idle cycles that end a run


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_full_rate_without_backpressure(store):
    """One long unaligned chunk, no pauses, latency 1: about one beat per cycle."""
    cycles, beats = throughput(store, 8000, 1)
    assert beats == 8000 // 16 + 1
    # fixed costs: descriptor check, one cycle per burst start, the flush, latency
    assert cycles < beats + 40, f"{cycles} cycles for {beats} beats"


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_window_fault_issues_nothing(store):
    dut = StoreDMA() if store else LoadDMA()
    rng = np.random.default_rng(4)
    m = _machine(rng)
    before = (m.dram.copy(), {k: v.copy() for k, v in _buffers(m).items()})
    inside = {"buf": BUFS["B"], "dram_addr": 1000, "buf_addr": 3, "count": 3, "length": 100,
              "stride": 300, "core": 0}
    # extent [1000, 1000 + 2*300 + 100) = [1000, 1700): a window ending at 1699 excludes it
    window = (BASE + 1000, BASE + 1699)
    res = run_engine(dut, [inside], m, rng, store=store, window=window)
    assert res["fault"] == FAULT_WINDOW
    assert res["memory"].bursts == 0, "a request was issued for a descriptor outside the window"
    assert res["bytes"] == 0
    assert np.array_equal(m.dram, before[0])
    assert all(np.array_equal(v, before[1][k]) for k, v in _buffers(m).items())
    # below win_lo
    dut = StoreDMA() if store else LoadDMA()
    res = run_engine(dut, [inside], m, rng, store=store, window=(BASE + 1001, BASE + 4000))
    assert res["fault"] == FAULT_WINDOW and res["memory"].bursts == 0
    # exactly the extent: accepted
    dut = StoreDMA() if store else LoadDMA()
    res = run_engine(dut, [inside], m, rng, store=store, window=(BASE + 1000, BASE + 1700))
    assert res["fault"] == 0 and res["memory"].bursts == 3


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_error_response_sets_fault(store):
    dut = StoreDMA() if store else LoadDMA()
    rng = np.random.default_rng(5)
    m = _machine(rng)
    d = {"buf": BUFS["C"], "dram_addr": 2000, "buf_addr": 0, "count": 1, "length": 64,
         "stride": 64, "core": 0}
    res = run_engine(dut, [d], m, rng, store=store, err_range=(2000, 2001))
    assert res["fault"] == FAULT_RESP


@pytest.mark.parametrize("cls", [LoadDMA, StoreDMA])
@pytest.mark.parametrize("kw,msg", [({"max_burst": 0}, "max_burst"),
                                    ({"max_burst": 257}, "max_burst"),
                                    ({"outstanding": 17}, "outstanding"),
                                    ({"data_width": 96}, "data_width"),
                                    ({"addr_width": 8}, "addr_width")])
def test_parameters_are_checked(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**kw)


@pytest.mark.regress
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
@pytest.mark.parametrize("name,kw", ENGINES + [("w256-b2-o2", {"data_width": 256, "max_burst": 2,
                                                             "outstanding": 2})],
                         ids=[e[0] for e in ENGINES] + ["w256-b2-o2"])
def test_soak(name, kw, store, seed):
    """More descriptors, more pauses, several seeds and shapes."""
    engine = StoreDMA(**kw) if store else LoadDMA(**kw)
    _check_against_funcsim(engine, 100 + seed, 40, store=store, pause=0.5, latency=(0, 20))
