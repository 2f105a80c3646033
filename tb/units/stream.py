"""Drive a free-running pipelined unit with one input vector per cycle and collect its outputs.

Timing convention (the same on Icarus and Verilator): inputs are written just after the falling
edge of ``clk`` and outputs are sampled 1 ns later, so a registered output seen in cycle ``t``
belongs to the vector driven in cycle ``t - latency`` (``latency = 0``: purely combinational,
the output belongs to the vector of the same cycle).
"""

from __future__ import annotations

from typing import Callable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

__all__ = ["start_clock", "run_stream", "pack", "unpack_signed", "to_unsigned"]

PERIOD_NS = 10


def to_unsigned(value: int, width: int) -> int:
    """Two's-complement bit pattern of ``value`` in ``width`` bits."""
    return int(value) & ((1 << width) - 1)


def pack(values, width: int) -> int:
    """Concatenate ``values`` (element 0 at the LSBs) as ``width``-bit two's-complement fields,
    the layout of an Amaranth ``ArrayLayout(signed(width), n)`` port."""
    word = 0
    for i, v in enumerate(values):
        word |= to_unsigned(v, width) << (i * width)
    return word


def unpack_signed(word: int, width: int, count: int) -> list[int]:
    """Inverse of :func:`pack`: split ``word`` into ``count`` signed ``width``-bit fields."""
    out = []
    for i in range(count):
        f = (word >> (i * width)) & ((1 << width) - 1)
        out.append(f - (1 << width) if f >> (width - 1) else f)
    return out


def _has(dut, name: str) -> bool:
    try:
        getattr(dut, name)
        return True
    except AttributeError:
        return False


async def start_clock(dut) -> None:
    """Start a 100 MHz clock on ``clk`` and pulse ``rst`` for two cycles (if the ports exist:
    a purely combinational unit has neither). Returns after reset, just after a falling edge."""
    if not _has(dut, "clk"):
        return
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False))
    if _has(dut, "rst"):
        dut.rst.value = 1
        for _ in range(2):
            await FallingEdge(dut.clk)
        dut.rst.value = 0


async def run_stream(dut, *, n: int, latency: int, drive: Callable[[int | None], None],
                     sample: Callable[[], object], valid_in: str | None = "in_valid",
                     valid_out: str | None = "out_valid") -> list:
    """Drive vectors ``0..n-1``, one per cycle, and return the ``n`` outputs in order.

    ``drive(i)`` writes vector ``i`` to the input ports (``drive(None)``: idle cycle, inputs
    left as they are); ``sample()`` reads the output ports and returns anything. When
    ``valid_in``/``valid_out`` name ports, ``valid_in`` is raised with each vector and
    ``valid_out`` is checked to be 1 exactly in the cycles that carry a result.
    """
    has_clk = _has(dut, "clk")
    if latency and not has_clk:
        raise AssertionError(f"latency {latency} but the design has no clk port")
    results = []
    for t in range(n + latency):
        i = t if t < n else None
        drive(i)
        if valid_in:
            getattr(dut, valid_in).value = int(i is not None)
        await Timer(1, unit="ns")
        k = t - latency
        if valid_out:
            v = int(getattr(dut, valid_out).value)
            want = int(0 <= k < n)
            assert v == want, f"cycle {t}: {valid_out}={v}, expected {want}"
        if 0 <= k < n:
            results.append(sample())
        if has_clk:
            await FallingEdge(dut.clk)
        else:
            await Timer(PERIOD_NS - 1, unit="ns")
    return results
