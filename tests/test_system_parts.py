# amaranth: UnusedElaboratable=no
"""hw.system's own parts in amaranth.sim: dispatcher, read arbiter, global units (the semaphore
file: tests/test_semaphores.py).

References are written from the contracts, not from the HDL: the dispatcher's queues must equal
``sim.funcsim.build_queues`` of a real compiled Binary laid out by ``sim.image`` (a byte-array
DRAM answers its AXI reads with random latency and back-pressure; every burst is checked
against the AXI rules), the arbiter a per-manager record of what was asked and what came
back.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.system.arbiter import ReadArbiter
from hw.system.dispatch import Dispatcher
from hw.system.globalunit import GlobalUnit
from sim import compile as sc
from sim import zoo
from sim.config import PRESETS
from sim.funcsim import build_queues
from sim.image import instruction_image, parse_table, queue_names
from sim.isa import encode


def _run(dut, *benches, procs=(), deadline=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for b in benches:
        sim.add_testbench(b)
    for p in procs:
        sim.add_process(p)
    if deadline:
        sim.run_until(deadline)
    else:
        sim.run()


class AxiReadMemory:
    """A DRAM byte array behind the AR/R channels of ``bus`` (amaranth.sim process): takes a
    request when a random draw allows, answers each burst in order after a random latency,
    one beat per cycle unless a random pause; records every burst for the rules check."""

    def __init__(self, mem: bytes, *, base: int, beat: int = 16, seed: int = 0,
                 p_stall: float = 0.3, latency=(1, 12)):
        self.mem, self.base, self.beat = bytearray(mem), base, beat
        self.rng = random.Random(seed)
        self.p_stall, self.latency = p_stall, latency
        self.bursts = []

    def process(self, bus):
        async def proc(ctx):
            pending = []        # [ready_cycle, addr, beats_left, id]
            cycle = 0
            trig = ctx.tick().sample(bus.arvalid, bus.araddr, bus.arlen, bus.arsize,
                                     bus.arburst, bus.arid, bus.rready)
            async for _clk, _rst, arvalid, araddr, arlen, arsize, arburst, arid, rready in trig:
                cycle += 1
                # the outputs set in the previous cycle were seen at this edge
                if self._ar_ready and arvalid:
                    self.bursts.append((araddr, arlen + 1, arsize, arburst))
                    lat = self.rng.randint(*self.latency)
                    pending.append([cycle + lat, araddr, arlen + 1, arid])
                if self._r_valid and rready:
                    p = pending[0]
                    p[1] += self.beat
                    p[2] -= 1
                    if p[2] == 0:
                        pending.pop(0)
                self._ar_ready = self.rng.random() >= self.p_stall
                ctx.set(bus.arready, self._ar_ready)
                self._r_valid = bool(pending) and pending[0][0] <= cycle \
                    and self.rng.random() >= self.p_stall
                ctx.set(bus.rvalid, self._r_valid)
                if self._r_valid:
                    p = pending[0]
                    off = p[1] - self.base
                    data = bytes(self.mem[off:off + self.beat]).ljust(self.beat, b"\0")
                    ctx.set(bus.rdata, int.from_bytes(data, "little"))
                    ctx.set(bus.rlast, p[2] == 1)
                    ctx.set(bus.rid, p[3])
                    ctx.set(bus.rresp, 0)
        self._ar_ready = False
        self._r_valid = False
        return proc

    def check_bursts(self, *, max_burst: int):
        for addr, ln, size, burst in self.bursts:
            assert burst == 1 and size == 4, (addr, ln, size, burst)
            assert 1 <= ln <= max_burst
            assert addr % 4096 + ln * 16 <= 4096, f"burst 0x{addr:x} x {ln} crosses 4 KB"


async def _take_words(ctx, dut, got, rng, cycles, p_ready, want=None):
    """Offer ``ready`` on each of the dispatcher's queue streams with probability ``p_ready``
    for up to ``cycles`` cycles, appending each word taken to ``got[q]``; with ``want`` (a
    count per queue), queue ``q`` stops taking at ``want[q]`` words and the loop ends when
    every queue has them."""
    Q = len(got)
    for _ in range(cycles):
        for q in range(Q):
            take = rng.random() < p_ready and (want is None or len(got[q]) < want[q])
            ctx.set(dut.instr[q].ready, take)
        await ctx.delay(1e-9)
        for q in range(Q):
            s = dut.instr[q]
            if ctx.get(s.ready) and ctx.get(s.valid):
                got[q].append(ctx.get(s.payload))
        await ctx.tick()
        if want is not None and all(len(g) >= n for g, n in zip(got, want)):
            break


@pytest.mark.parametrize("L,depth,burst,seed", [(1, 8, 16, 0), (2, 4, 3, 1), (1, 16, 256, 2)])
def test_dispatcher_delivers_every_queue_in_order(L, depth, burst, seed):
    binary = sc.compile(zoo.tiny(), PRESETS["small"].replace(L=L))
    img, entries = instruction_image(binary)
    assert parse_table(img, L) == entries
    want = [[encode(i) for i, _ in build_queues(binary)[k]] for k in queue_names(L)]
    # the first queues' words, enough to see several refills of every FIFO
    limit = 150
    base = 0x3000
    mem = AxiReadMemory(img.tobytes(), base=base, seed=seed)
    Q = len(want)
    dut = Dispatcher(queues=Q, depth=depth, max_burst=burst, outstanding=3)
    got = [[] for _ in range(Q)]
    rng = random.Random(seed)

    async def bench(ctx):
        ctx.set(dut.table_base, base)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await _take_words(ctx, dut, got, rng, 20000, 0.5,
                          want=[min(limit, len(w)) for w in want])
        for q in range(Q):
            n = min(limit, len(want[q]))
            assert got[q][:n] == want[q][:n], f"queue {queue_names(L)[q]} differs"
        assert ctx.get(dut.fault) == 0
        assert ctx.get(dut.fetched) >= sum(min(limit, len(w)) for w in want)

    _run(dut, bench, procs=[mem.process(dut.bus)])
    mem.check_bursts(max_burst=burst)
    # the table was read first, from the 4 KB page of table_base, in order
    assert mem.bursts[0][0] == base and mem.bursts[0][1] == min(Q, burst)


def test_dispatcher_refuses_misaligned_queue():
    """A table entry whose offset is not a multiple of 16 is a fault, and nothing is fetched
    for that queue."""
    tab = np.zeros((2, 4), np.uint32)
    tab[0] = (64, 2, 0, 0)
    tab[1] = (72, 1, 0, 0)          # not 16-byte aligned
    img = np.zeros(128, np.uint8)
    img[:32] = tab.view(np.uint8).reshape(-1)
    img[64:96] = np.arange(32, dtype=np.uint8)
    mem = AxiReadMemory(img.tobytes(), base=0, seed=5, p_stall=0.0)
    dut = Dispatcher(queues=2, depth=4)
    seen = []

    async def bench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.instr[0].ready, 1)
        ctx.set(dut.instr[1].ready, 1)
        for _ in range(100):
            await ctx.tick()
            if ctx.get(dut.instr[1].valid):
                seen.append(1)
        assert ctx.get(dut.fault) == 1
        assert not seen

    _run(dut, bench, procs=[mem.process(dut.bus)])


def test_read_arbiter_routes_each_manager_its_own_data():
    """Two managers each read their own pattern through one port: every manager gets exactly
    the beats of its own bursts, in order, whatever the interleaving."""
    img = bytes(range(256)) * 64
    mem = AxiReadMemory(img, base=0, seed=11)
    dut = ReadArbiter(n=2)
    rng = random.Random(3)
    asked = {0: [], 1: []}
    got = {0: [], 1: []}

    async def bench(ctx):
        todo = {0: [(16 * rng.randrange(0, 500), rng.randint(1, 4)) for _ in range(15)],
                1: [(16 * rng.randrange(0, 500), rng.randint(1, 4)) for _ in range(15)]}
        cur = {0: None, 1: None}
        for _ in range(3000):
            for i in (0, 1):
                up = dut.up[i]
                if cur[i] is None and todo[i]:
                    cur[i] = todo[i].pop(0)
                    asked[i].append(cur[i])
                if cur[i] is not None:
                    ctx.set(up.arvalid, 1)
                    ctx.set(up.araddr, cur[i][0])
                    ctx.set(up.arlen, cur[i][1] - 1)
                    ctx.set(up.arsize, 4)
                    ctx.set(up.arburst, 1)
                else:
                    ctx.set(up.arvalid, 0)
                ctx.set(up.rready, rng.random() < 0.7)
            await ctx.delay(1e-10)
            done = {}
            for i in (0, 1):
                up = dut.up[i]
                done[i] = ctx.get(up.arvalid) and ctx.get(up.arready)
                if ctx.get(up.rvalid) and ctx.get(up.rready):
                    got[i].append(ctx.get(up.rdata))
            await ctx.tick()
            for i in (0, 1):
                if done[i]:
                    cur[i] = None
        for i in (0, 1):
            want = [int.from_bytes(img[a + 16 * k:a + 16 * k + 16], "little")
                    for a, n in asked[i] for k in range(n)]
            assert got[i] == want

    _run(dut, bench, procs=[mem.process(dut.down)])


def _I(op, **f):
    from sim.isa import Instr
    return Instr(op, f)


def _desc_layout():
    from amaranth import unsigned
    from amaranth.lib import data
    return data.StructLayout({"dram_addr": unsigned(40), "buf": unsigned(3),
                              "core": unsigned(6), "buf_addr": unsigned(20),
                              "count": unsigned(16), "length": unsigned(20),
                              "stride": unsigned(26)})


def test_ld_unit_executes_its_queue():
    """LD: descriptors carry the instruction's fields with the data base added; a SIGNAL waits
    for the DMA to be idle and is held until the semaphore file takes it; a WAIT for its
    semaphore; an illegal opcode is an error at its index
    (not consumed), and nothing after it runs."""
    dut = GlobalUnit(kind="LD", descriptor=_desc_layout())
    prog = [_I("SETR", unit=0, reg=1, value=5), _I("NOP"),
            _I("LOAD", buf=0, dram_addr=0x1234, buf_addr=77, count=3, length=20, stride=40,
                  core=0),
            _I("SIGNAL", unit=0, sem=9, count=2),
            _I("WAIT", unit=0, sem=4, count=3),
            _I("LOAD", buf=5, dram_addr=0x40, buf_addr=128, count=1, length=64, stride=64,
                  core=2)]
    words = [encode(i) for i in prog] + [31, encode(_I("HALT", unit=0))]
    log = []

    async def bench(ctx):
        ctx.set(dut.data_base, 0x10_0000_0000)
        ctx.set(dut.dma_idle, 1)
        ctx.set(dut.cmd.ready, 1)
        pc, busy_until = 0, -1
        for cyc in range(80):
            ctx.set(dut.instr.valid, pc < len(words))
            ctx.set(dut.instr.payload, words[pc] if pc < len(words) else 0)
            ctx.set(dut.dma_idle, cyc >= busy_until)
            ctx.set(dut.wait.ready, cyc >= 40)
            ctx.set(dut.signal.ready, cyc % 3 == 0)     # the semaphore file's arbiter stalls
            await ctx.delay(1e-10)
            if ctx.get(dut.cmd.valid):
                c = ctx.get(dut.cmd.payload)
                log.append(("cmd", cyc, c.dram_addr, c.buf, c.core, c.buf_addr, c.count,
                            c.length, c.stride))
                busy_until = cyc + 10       # the DMA is busy for 10 cycles
            if ctx.get(dut.signal.valid) and ctx.get(dut.signal.ready):
                log.append(("signal", cyc, ctx.get(dut.signal.payload.sem),
                            ctx.get(dut.signal.payload.count)))
            if ctx.get(dut.wait.valid) and ctx.get(dut.wait.ready):
                log.append(("wait", cyc))
            if ctx.get(dut.instr.ready) and ctx.get(dut.instr.valid):
                pc += 1
            await ctx.tick()
        assert ctx.get(dut.error) == 1 and ctx.get(dut.halted) == 1
        assert ctx.get(dut.pc) == len(prog)     # the bad word is not consumed

    _run(dut, bench)
    kinds = [e[0] for e in log]
    assert kinds == ["cmd", "signal", "wait", "cmd"], log
    assert log[0][2:] == (0x10_0000_1234, 0, 0, 77, 3, 20, 40)
    assert log[1][1] >= log[0][1] + 10 and log[1][2:] == (9, 2)    # after the DMA drained
    assert log[2][1] >= 40
    assert log[3][2:] == (0x10_0000_0040, 5, 2, 128, 1, 64, 64)


def test_host_unit_waits_for_the_cpu():
    dut = GlobalUnit(kind="HOST")
    ln = _I("HOST_LN", src=100, dst=200, param=300, channels=16, act=1)
    words = [encode(ln), encode(_I("SIGNAL", unit=2, sem=1, count=1)),
             encode(_I("HALT", unit=2))]

    async def bench(ctx):
        pc = 0
        reqs = 0
        for cyc in range(40):
            ctx.set(dut.instr.valid, pc < len(words))
            ctx.set(dut.instr.payload, words[pc] if pc < len(words) else 0)
            ctx.set(dut.signal.ready, 1)
            ctx.set(dut.host_ack, cyc == 20)
            await ctx.delay(1e-10)
            if ctx.get(dut.host_req):
                reqs += 1
                assert ctx.get(dut.host_word) == words[0]
            if ctx.get(dut.signal.valid):
                assert cyc > 20
            if ctx.get(dut.instr.ready) and ctx.get(dut.instr.valid):
                pc += 1
            await ctx.tick()
        # shown from cycle 0 up to and including the acknowledging cycle 20
        assert reqs == 21 and pc == 3 and ctx.get(dut.halted) and not ctx.get(dut.error)

    _run(dut, bench)


def test_accelerator_axi_ports_are_checked_and_bound():
    """``axi_ports``: 1 (one manager port) or 2 (``m_axi1`` for the LD engine's reads); 0 and
    5 are out of range (3 and 4: tests/test_ldports.py)."""
    from amaranth.hdl import Fragment

    from hw.system.accelerator import Accelerator
    for bad, exc in ((0, ValueError), (5, ValueError), (True, TypeError)):
        with pytest.raises(exc, match="axi_ports"):
            Accelerator(config="small:L=1", sems=16, axi_ports=bad)
    one = Accelerator(config="small:L=1", sems=16)
    two = Accelerator(config="small:L=1", sems=16, axi_ports=2)
    assert "m_axi1" not in one.signature.members and "m_axi1" in two.signature.members
    Fragment.get(one, None)
    Fragment.get(two, None)


@pytest.mark.parametrize("frames,seed", [(3, 7), (1, 8), (0, 9)])
def test_dispatcher_fetches_every_queue_frames_times(frames, seed):
    """FRAMES: each queue's words again from its table entry, ``frames`` times in all (0: once),
    in order, no burst spanning two copies (a copy is a separate run of addresses)."""
    words = [5, 1, 0, 12]
    tab = np.zeros((len(words), 4), np.uint32)
    off = 256
    data = []
    for q, n in enumerate(words):
        tab[q] = (off, n, 0, 0)
        data.append([(q << 32) | (i << 8) | 0xA5 for i in range(n)])
        off += 16 * n
    img = np.zeros(off, np.uint8)
    img[:tab.nbytes] = tab.view(np.uint8).reshape(-1)
    for q, n in enumerate(words):
        for i, w in enumerate(data[q]):
            a = int(tab[q][0]) + 16 * i
            img[a:a + 16] = np.frombuffer(w.to_bytes(16, "little"), np.uint8)
    mem = AxiReadMemory(img.tobytes(), base=0, seed=seed)
    Q = len(words)
    dut = Dispatcher(queues=Q, depth=4, max_burst=4, outstanding=2)
    got = [[] for _ in range(Q)]
    want = [d * max(frames, 1) for d in data]
    rng = random.Random(seed)

    async def bench(ctx):
        ctx.set(dut.frames, frames)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await _take_words(ctx, dut, got, rng, 3000, 0.6)
        assert got == want
        assert ctx.get(dut.fault) == 0 and ctx.get(dut.busy) == 0
        assert ctx.get(dut.fetched) == sum(map(len, want))

    _run(dut, bench, procs=[mem.process(dut.bus)])
    mem.check_bursts(max_burst=4)
    for addr, ln, _, _ in mem.bursts[1:]:      # within one queue's words
        q = next(q for q in range(Q) if tab[q][0] <= addr < tab[q][0] + 16 * words[q])
        assert addr + 16 * ln <= tab[q][0] + 16 * words[q]


def test_frame_tracker_counts_frames_and_tags_the_semaphores():
    """hw.system.contexts.FrameTracker against sim.isa: words pass through but every HALT
    before the last frame's, which it takes and counts; the unit's WAIT / SIGNAL go to the
    file with their frame (a ``prev`` WAIT: the previous one; in frame 0 ``free``)."""
    from hw.system.contexts import FrameTracker
    from sim.isa import Instr
    dut = FrameTracker()
    frames = 3
    prog = [Instr("WAIT", dict(unit=4, sem=5, count=2, prev=1)),
            Instr("SIGNAL", dict(unit=4, sem=6, count=1)),
            Instr("WAIT", dict(unit=4, sem=6, count=1)),
            Instr("HALT", dict(unit=4))]
    words = [encode(i) for i in prog] * frames
    seen = []                   # (frame, word) the unit got
    sems = []                   # (kind, sem, count, frame, free)

    async def bench(ctx):
        ctx.set(dut.frames, frames)
        i = 0
        for _ in range(200):
            if i == len(words):
                break
            ctx.set(dut.up.valid, 1)
            ctx.set(dut.up.payload, words[i])
            ctx.set(dut.down.ready, 0)
            ins = prog[i % len(prog)]
            # the unit: a WAIT / SIGNAL offered from the head, the word taken when accepted
            w, s = dut.unit_wait, dut.unit_signal
            ctx.set(w.valid, ctx.get(dut.down.valid) and ins.op == "WAIT")
            ctx.set(s.valid, ctx.get(dut.down.valid) and ins.op == "SIGNAL")
            for port in (w, s):
                ctx.set(port.payload.sem, ins.get("sem", 0))
                ctx.set(port.payload.count, ins.get("count", 0))
            ctx.set(dut.file_wait.ready, 1)
            ctx.set(dut.file_signal.ready, 1)
            ctx.set(dut.down.ready, ins.op == "HALT")
            await ctx.delay(1e-9)
            f = ctx.get(dut.frame)
            for kind, port in (("WAIT", dut.file_wait), ("SIGNAL", dut.file_signal)):
                if ctx.get(port.valid):
                    p = port.payload
                    sems.append((kind, ctx.get(p.sem), ctx.get(p.count), ctx.get(p.frame),
                                 ctx.get(p.free)))
                    ctx.set(dut.down.ready, 1)
            if ctx.get(dut.down.valid) and ctx.get(dut.down.ready):
                seen.append((f, ctx.get(dut.down.payload)))
            if ctx.get(dut.up.ready):
                i += 1
            await ctx.tick()
        assert i == len(words)
        assert ctx.get(dut.frame) == frames - 1

    _run(dut, bench)
    halt = encode(prog[-1])
    assert [w for _, w in seen] == [encode(x) for x in prog[:3]] * frames + [halt]
    assert [f for f, _ in seen] == [0] * 3 + [1] * 3 + [2] * 4
    want = []
    for f in range(frames):
        want += [("WAIT", 5, 2, (f - 1) % 4, int(f == 0)), ("SIGNAL", 6, 1, f % 4, 0),
                 ("WAIT", 6, 1, f % 4, 0)]
    assert sems == want
