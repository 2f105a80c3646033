"""The global stream's units: LD and ST (front ends of the DMA engines) and HOST.

Each runs its in-order queue (``sim.image``: queues 0, 1, 2) as ``sim.funcsim`` does:

* ``NOP``, ``SETR`` (no layer registers here: ignored), ``HALT`` (``halted`` = 1);
* ``WAIT`` / ``SIGNAL`` on the semaphore streams (``hw.core.ports.SEM_LAYOUT``); a SIGNAL of LD
  or ST waits until the DMA engine is ``idle`` (every transfer before it has landed: the buffer
  written, or every DRAM write response received), which is what "SIGNAL after the transfer"
  means in docs/isa.md;
* ``LOAD`` (LD) / ``STORE`` (ST): one descriptor to the DMA engine's ``cmd`` stream, its DRAM
  address the instruction's offset plus ``data_base`` (the data image's base address);
* ``HOST_LN`` (HOST): the instruction is shown on ``host_word`` with ``host_req`` set until the
  CPU acknowledges (``host_ack``, a pulse: it ran ``sim.funcsim.host_ln`` on the data image);
* any other opcode (or a LOAD in ST's queue, ...) sets the sticky ``error`` and halts.

``pc`` counts the instructions consumed (the failing one's index on an error).
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.isa import FORMATS, OPCODE_BITS

from ..core.ports import SEM_LAYOUT
from ..core.unit import field_slices
from ..params import check_int

__all__ = ["GlobalUnit"]

KINDS = {"LD": "LOAD", "ST": "STORE", "HOST": "HOST_LN"}


def _field(word, op, name):
    pos, bits, sgn = field_slices(op)[name]
    v = word[pos:pos + bits]
    return v.as_signed() if sgn else v


class GlobalUnit(wiring.Component):
    """One unit of the global stream (see the module doc).

    Parameters (keyword-only): ``kind`` ("LD", "ST" or "HOST"), ``addr_width`` (DRAM address
    bits), ``descriptor`` (the DMA engine's command layout, a ``lib.data.StructLayout`` with
    ``dram_addr, buf, core, buf_addr, count, length, stride``; LD/ST only).

    Ports: ``instr`` (In stream of 128-bit words), ``wait``, ``signal`` (Out streams),
    ``halted``, ``error`` (Out(1)), ``pc`` (Out(32)); LD/ST: ``cmd`` (Out stream of
    descriptors), ``dma_idle`` (In(1)), ``data_base`` (In(addr_width)); HOST: ``host_req``
    (Out(1)), ``host_word`` (Out(128)), ``host_ack`` (In(1)).
    """

    def __init__(self, *, kind: str, addr_width: int = 40,
                 descriptor: data.StructLayout | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        self.kind = kind
        self.addr_width = check_int("addr_width", addr_width, 13, 64)
        sig = {"instr": In(stream.Signature(unsigned(128))),
               "wait": Out(stream.Signature(SEM_LAYOUT)),
               "signal": Out(stream.Signature(SEM_LAYOUT)),
               "halted": Out(1), "error": Out(1), "pc": Out(32)}
        if kind == "HOST":
            sig.update(host_req=Out(1), host_word=Out(128), host_ack=In(1))
        else:
            if not isinstance(descriptor, data.StructLayout):
                raise TypeError(f"{kind} needs descriptor=, the DMA engine's command layout")
            missing = {"dram_addr", "buf", "core", "buf_addr", "count", "length", "stride"} \
                - set(dict(descriptor.members))
            if missing:
                raise ValueError(f"the descriptor layout lacks {sorted(missing)}")
            sig.update(cmd=Out(stream.Signature(descriptor)), dma_idle=In(1),
                       data_base=In(addr_width))
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        pay = self.instr.payload
        op = pay[:OPCODE_BITS]
        code = {n: FORMATS[n][0] for n in FORMATS}
        xop = KINDS[self.kind]
        valid = self.instr.valid & ~self.halted
        take = Signal()
        m.d.comb += self.instr.ready.eq(take)
        with m.If(take):
            m.d.sync += self.pc.eq(self.pc + 1)

        m.d.comb += [self.wait.payload.sem.eq(_field(pay, "WAIT", "sem")),
                     self.wait.payload.count.eq(_field(pay, "WAIT", "count")),
                     self.signal.payload.sem.eq(_field(pay, "SIGNAL", "sem")),
                     self.signal.payload.count.eq(_field(pay, "SIGNAL", "count"))]
        drained = Signal(init=1)
        if self.kind != "HOST":
            sent = Signal()         # a descriptor went out last cycle: idle may lag by one
            m.d.sync += sent.eq(self.cmd.valid & self.cmd.ready)
            m.d.comb += drained.eq(self.dma_idle & ~sent)
            cmd = self.cmd.payload
            m.d.comb += [cmd.dram_addr.eq(self.data_base + _field(pay, xop, "dram_addr")),
                         cmd.buf.eq(_field(pay, xop, "buf")),
                         cmd.core.eq(_field(pay, xop, "core")),
                         cmd.buf_addr.eq(_field(pay, xop, "buf_addr")),
                         cmd.count.eq(_field(pay, xop, "count")),
                         cmd.length.eq(_field(pay, xop, "length")),
                         cmd.stride.eq(_field(pay, xop, "stride"))]
        with m.If(valid):
            with m.Switch(op):
                with m.Case(code["NOP"], code["SETR"]):
                    m.d.comb += take.eq(1)
                with m.Case(code["HALT"]):
                    m.d.comb += take.eq(1)
                    m.d.sync += self.halted.eq(1)
                with m.Case(code["WAIT"]):
                    m.d.comb += [self.wait.valid.eq(1), take.eq(self.wait.ready)]
                with m.Case(code["SIGNAL"]):
                    m.d.comb += [self.signal.valid.eq(drained),
                                 take.eq(drained & self.signal.ready)]
                with m.Case(code[xop]):
                    if self.kind == "HOST":
                        m.d.comb += [self.host_req.eq(1), self.host_word.eq(pay)]
                        with m.If(self.host_ack):
                            m.d.comb += take.eq(1)
                    else:
                        m.d.comb += [self.cmd.valid.eq(1), take.eq(self.cmd.ready)]
                with m.Default():
                    m.d.sync += [self.error.eq(1), self.halted.eq(1)]
        return m
