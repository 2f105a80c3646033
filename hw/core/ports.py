"""Port signatures of a computing core: buffer access ports and semaphore handshakes.

Buffer ports (decision, see docs/hw-core.md): the global buffers B (activations), C (weights and
per-channel parameters) and OUT are shared by the L cores and live outside the core. A core
unit reaches them through *gather read* and *scatter write* ports:

* a gather read port returns, one cycle after a cycle with ``en`` (synchronous read, latency 1),
  ``data[r][e] = buf[addr + r * row_stride + e * elem_stride]`` (bytes) for every row ``r`` and
  element ``e``; addresses outside the buffer read as 0. ``buf`` names the buffer (``sim.isa.BUFS``).
  The hardware reading of this is a buffer banked by the stride (e.g. B banked by channel so
  that T channels of one pixel come out in one cycle); the core only relies on the contract.
* a scatter write port writes, on a cycle with ``en``, element ``e`` (where ``mask[e]``) at
  ``addr + e * elem_stride``: one byte (the low 8 bits of ``data[e]``) or, with ``wide``, four
  bytes little-endian (int32 accumulators: the logits).

Backpressure (``stall=True`` variants of both signatures, issue #13): the port gains ``ready``
(In to the requester, driven by the buffer). A request (a cycle with ``en``) is *accepted* in a
cycle with ``ready``; ``en`` and the request's fields stay constant until then. A gather's
``data`` is valid exactly one cycle after the accepting cycle (for that one cycle only: the
requester keeps it); a scatter's bytes are in place after the accepting cycle. ``ready`` may
depend on ``en`` and the fields (a banked buffer asserts it in the cycle its last bank conflict
is served); ``en`` must not depend on ``ready``. A buffer that never stalls drives ``ready = 1``
and is then exactly the contract above. ``hw.core.unit.Unit(stall=True)`` is the requester side:
it freezes the whole unit while one of its requests waits (see there).

Semaphores (``sim.isa`` SIGNAL/WAIT) are global, shared by all streams; they live outside the
core. A unit executes ``WAIT(sem, count)`` by offering ``{sem, count}`` on its ``wait`` stream
until the semaphore file sets ``ready`` (counter >= count), and ``SIGNAL(sem, count)`` by
offering it on its ``signal`` stream (the file adds ``count`` on the transfer).
"""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sim.isa import ADDR_BITS

__all__ = ["ADDR_BITS", "SEM_LAYOUT", "gather_read_signature", "scatter_write_signature"]

# ADDR_BITS (sim.isa): byte addresses and strides of the buffers, the widest buffer address of
# the instructions (C up to 2 MiB); the ports and the address arithmetic behind them wrap there

#: payload of the wait / signal streams (field widths as in sim.isa: sem 16 bits, count 12)
SEM_LAYOUT = data.StructLayout({"sem": unsigned(16), "count": unsigned(12)})


def gather_read_signature(*, rows: int, elems: int, addr_bits: int = ADDR_BITS,
                          stall: bool = False) -> wiring.Signature:
    """A read port returning ``rows x elems`` bytes at two strides (see module doc); the
    signature is seen from the core (the requester): Out = driven by the core. With ``stall``,
    the port has ``ready`` (In, 1 bit: the request is accepted in this cycle; module doc)."""
    return wiring.Signature(({"ready": In(1)} if stall else {}) | {
        "en": Out(1),
        "buf": Out(3),
        "addr": Out(addr_bits),
        "row_stride": Out(addr_bits),
        "elem_stride": Out(addr_bits),
        "data": In(data.ArrayLayout(data.ArrayLayout(unsigned(8), elems), rows)),
    })


def scatter_write_signature(*, elems: int, addr_bits: int = ADDR_BITS,
                            stall: bool = False) -> wiring.Signature:
    """A write port storing ``elems`` values at one stride, byte or int32 each (see module doc);
    with ``stall``, it has ``ready`` (In, 1 bit: the write is accepted in this cycle)."""
    return wiring.Signature(({"ready": In(1)} if stall else {}) | {
        "en": Out(1),
        "buf": Out(3),
        "addr": Out(addr_bits),
        "elem_stride": Out(addr_bits),
        "wide": Out(1),
        "mask": Out(elems),
        "data": Out(data.ArrayLayout(signed(32), elems)),
    })
