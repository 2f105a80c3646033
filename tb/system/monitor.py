"""A protocol monitor for an AXI4 manager port in cocotb: every burst legal, every beat consumed.

``AxiMonitor(dut, prefix, max_burst=256)`` samples the port at every rising clock edge and
asserts, on each AR / AW handshake, that the burst is INCR, at most ``max_burst`` beats, of the
full data width, and crosses no 4 KB boundary; it counts the beats and responses still owed and
``check_quiet()`` asserts at the end that every read burst received its ``rlast`` beat with as
many beats as asked, every write burst sent as many W beats as its AWLEN says (``wlast`` on the
last) and got its B response. ``latencies`` holds, per read burst, the cycles from its AR
handshake to its first R beat (what the memory model's read latency is, for ``sim.perf``).
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge

from hw.system.axi import BOUNDARY_BYTES, BURST_INCR

__all__ = ["AxiMonitor"]


class AxiMonitor:
    def __init__(self, dut, prefix: str, *, max_burst: int = 256):
        self.dut, self.max_burst = dut, max_burst
        self.s = {n: getattr(dut, f"{prefix}_{n}") for n in (
            "araddr", "arlen", "arsize", "arburst", "arvalid", "arready", "rvalid", "rready",
            "rlast", "awaddr", "awlen", "awsize", "awburst", "awvalid", "awready", "wvalid",
            "wready", "wlast", "bvalid", "bready", "rdata")}
        self.size = (len(self.s["rdata"]) // 8).bit_length() - 1
        self.reads = []          # beats still owed per read burst, in order
        self.read_started = []   # per read burst in flight: (cycle of its AR, first beat seen)
        self.latencies = []      # cycles from each AR handshake to its burst's first R beat
        self.cycle = 0
        self.aw, self.w = [], []  # beats per AW burst / per W burst (to wlast), not yet paired
        self.w_run = 0
        self.b_owed = 0
        self.bursts = 0
        self.errors = []
        cocotb.start_soon(self._run())

    def _burst(self, kind, addr, length, size, burst):
        beats = length + 1
        if burst != BURST_INCR:
            self.errors.append(f"{kind} burst type {burst} at 0x{addr:x} (INCR expected)")
        if size != self.size:
            self.errors.append(f"{kind} size {size} at 0x{addr:x} (full width {self.size})")
        if beats > self.max_burst:
            self.errors.append(f"{kind} burst of {beats} beats at 0x{addr:x} > {self.max_burst}")
        if addr % BOUNDARY_BYTES + (beats << size) > BOUNDARY_BYTES:
            self.errors.append(f"{kind} burst 0x{addr:x} + {beats << size} bytes crosses 4 KB")
        self.bursts += 1
        return beats

    async def _run(self):
        s = self.s
        v = lambda n: int(s[n].value) if s[n].value.is_resolvable else 0  # noqa: E731
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1
            if v("arvalid") and v("arready"):
                self.reads.append(self._burst("read", v("araddr"), v("arlen"), v("arsize"),
                                              v("arburst")))
                self.read_started.append([self.cycle, False])
            if v("rvalid") and v("rready"):
                if not self.reads:
                    self.errors.append("read beat with no burst outstanding")
                else:
                    if not self.read_started[0][1]:
                        self.read_started[0][1] = True
                        self.latencies.append(self.cycle - self.read_started[0][0])
                    self.reads[0] -= 1
                    if (self.reads[0] == 0) != bool(v("rlast")):
                        self.errors.append("rlast does not mark the burst's last beat")
                    if self.reads[0] == 0:
                        self.reads.pop(0)
                        self.read_started.pop(0)
            if v("awvalid") and v("awready"):
                self.aw.append(self._burst("write", v("awaddr"), v("awlen"), v("awsize"),
                                           v("awburst")))
                self.b_owed += 1
            if v("wvalid") and v("wready"):
                self.w_run += 1
                if v("wlast"):
                    self.w.append(self.w_run)
                    self.w_run = 0
            # W bursts may run ahead of their AW: compare in order as both become known
            while self.aw and self.w:
                a, w = self.aw.pop(0), self.w.pop(0)
                if a != w:
                    self.errors.append(f"write burst of {a} beats got {w} W beats (wlast)")
            if v("bvalid") and v("bready"):
                self.b_owed -= 1
            assert not self.errors, "; ".join(self.errors[:5])

    def quiet(self) -> bool:
        """No burst owes a beat or a response."""
        return not (self.reads or self.aw or self.w or self.w_run or self.b_owed)

    def check_quiet(self) -> None:
        assert not self.errors, "; ".join(self.errors[:5])
        assert not self.reads, f"read bursts still owed beats: {self.reads[:5]}"
        assert not self.aw and not self.w and not self.w_run, \
            f"unpaired write bursts: AW {self.aw[:5]}, W {self.w[:5]} (+{self.w_run} beats)"
        assert self.b_owed == 0, f"{self.b_owed} write responses not received"
