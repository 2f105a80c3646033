"""The accelerator's view of a Binary in DRAM: the instruction image and its queue table.

The system top (``hw.system.Accelerator``) has no instruction ROM: its dispatcher fetches every
unit's instruction queue from DRAM, so one bitstream runs any Binary compiled for its config.
This module fixes how a :class:`sim.compile.Binary` is laid out for it; the RTL testbenches and
a board runtime use it, the dispatcher implements the reading side.

Queues
------
A Binary's streams split into in-order unit queues (``sim.funcsim.build_queues``, the
dispatcher's split). The accelerator has ``3 + 3 L`` of them, always in this order
(:func:`queue_names`)::

    0: global LD    1: global ST    2: global HOST
    3 + 3c + 0: core c MAT    3 + 3c + 1: core c RMAC    3 + 3c + 2: core c AUX

Instruction image (:func:`instruction_image`)
---------------------------------------------
One byte array, placed in DRAM on a 4 KB boundary (``TABLE_ALIGN``: the dispatcher reads the
table in bursts that must not cross one, and ignores the low 12 bits of ``INSTR_TABLE``):

* the **queue table** at offset 0: one 16-byte entry per queue, in queue order:
  ``offset`` (uint32, little-endian: the queue's first word, in bytes from the table's start, a
  multiple of 16), ``words`` (uint32: its number of 128-bit instructions), 8 bytes zero;
* then each queue's instructions, 16 bytes each (``sim.isa.encode``, little-endian: bits 63:0
  first), each queue starting on a 64-byte boundary (``QUEUE_ALIGN``: a burst of whole cache
  lines).

A queue that is empty has ``words = 0``. The image is position independent (offsets are relative
to the table), so a runtime may place it on any 4 KB boundary.

Data image
----------
``Binary.dram`` with the input written in (``Binary.write_input``) is the *data image*; every
DRAM address in the Binary's instructions (LOAD/STORE ``dram_addr``, HOST_LN ``src``/``dst``/
``param``) is an offset in it. The accelerator adds its ``DATA_BASE`` register to them and
refuses a transfer that leaves ``[0, DATA_SIZE)``.
"""

from __future__ import annotations

import numpy as np

from .funcsim import CORE_UNITS, GLOBAL_UNITS, build_queues
from .isa import encode_stream

__all__ = ["ENTRY_BYTES", "QUEUE_ALIGN", "TABLE_ALIGN", "queue_names", "n_queues",
           "instruction_image", "parse_table"]

ENTRY_BYTES = 16        #: one queue-table entry (= one 128-bit word)
QUEUE_ALIGN = 64        #: each queue's first word is 64-byte aligned in the image
TABLE_ALIGN = 4096      #: the image (its table) is placed on this boundary in DRAM
#: unit order inside a core's three queues (the accelerator's queue index 3 + 3c + i)
CORE_QUEUE_UNITS = ("MAT", "RMAC", "AUX")


def queue_names(L: int) -> list:
    """``[(stream, unit), ...]`` of the ``3 + 3 L`` queues, in the accelerator's order."""
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"L must be a positive int, got {L!r}")
    assert set(CORE_QUEUE_UNITS) == set(CORE_UNITS)
    return ([("global", u) for u in GLOBAL_UNITS]
            + [(f"core{c}", u) for c in range(L) for u in CORE_QUEUE_UNITS])


def n_queues(L: int) -> int:
    return len(queue_names(L))


def instruction_image(binary) -> tuple[np.ndarray, list]:
    """``(image, entries)``: the instruction image of ``binary`` (uint8, see the module doc) and
    ``[(offset, words), ...]`` per queue in :func:`queue_names` order."""
    names = queue_names(binary.cfg.L)
    q = build_queues(binary)
    extra = sorted(set(q) - set(names))
    if extra:
        raise ValueError(f"the Binary has queues the accelerator does not: {extra}")
    table = len(names) * ENTRY_BYTES
    off = -(-table // QUEUE_ALIGN) * QUEUE_ALIGN
    entries, chunks = [], []
    for k in names:
        words = encode_stream([i for i, _ in q.get(k, [])])
        entries.append((off if len(words) else 0, len(words)))
        if len(words):
            chunks.append((off, words.astype("<u8").view(np.uint8).reshape(-1)))
            off += -(-words.size * 8 // QUEUE_ALIGN) * QUEUE_ALIGN
    img = np.zeros(off, dtype=np.uint8)
    tab = np.zeros((len(names), 4), dtype=np.uint32)
    tab[:, 0] = [o for o, _ in entries]
    tab[:, 1] = [w for _, w in entries]
    img[:table] = tab.astype("<u4").view(np.uint8).reshape(-1)
    for o, b in chunks:
        img[o:o + b.size] = b
    return img, entries


def parse_table(image, L: int) -> list:
    """``[(offset, words), ...]`` read back from the table of an instruction image (the
    dispatcher's view; used by tests and by a runtime to check what it wrote)."""
    n = n_queues(L)
    tab = np.frombuffer(bytes(np.asarray(image, dtype=np.uint8)[:n * ENTRY_BYTES]),
                        dtype="<u4").reshape(n, 4)
    return [(int(o), int(w)) for o, w, _, _ in tab]
