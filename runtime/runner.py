"""Running a Binary on an accelerator through a :class:`runtime.device.Device` (board or RTL).

What the CPU does (``docs/system.md``, ``docs/board.md``):

1. **check** (:meth:`Accelerator.check`): ``ID`` is the magic, ``VERSION`` the register map's,
   ``CONFIG_HASH`` the Binary's config (:func:`hw.system.regmap.config_hash`) and
   ``CONFIG_SEMS`` at least the Binary's semaphore ids; otherwise the Binary is for another
   bitstream and is not started;
2. **load** (:meth:`Accelerator.load`): the instruction image (:mod:`sim.image`) at the start of
   the device's buffer (its bus address must be 4 KiB aligned: the dispatcher ignores the low
   12 bits of ``INSTR_TABLE``, ``hw.system.dispatch``), the data image (``Binary.dram`` with the input written in) at the next
   4 KiB boundary (:func:`layout`), then ``INSTR_TABLE``, ``DATA_BASE`` (bus addresses) and
   ``DATA_SIZE``, and ``WATCHDOG``;
3. **start**: ``CTRL.START`` with ``CTRL.IRQ_EN`` (the enable is harmless when polling);
4. **wait** (:meth:`Accelerator.wait`): sleep until the interrupt (or poll ``STATUS``); read and
   clear ``IRQ_STATUS``; a ``HOST_REQ`` is served (``HOST_INSTR`` decoded, the ``HOST_LN`` run
   by :func:`sim.funcsim.host_ln` on the data image in the buffer, ``HOST_ACK``); ``DONE`` or
   ``ERROR`` ends the run;
5. **read** the outputs from the data image (``Binary.read_outputs``) and the performance
   counters (every 64-bit read-only register of the map, ``_LO`` then ``_HI``).

:func:`run` does all of it and raises :class:`RunError` (one line naming the cause) on a
mismatching config, a timeout, or an error code of the accelerator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .device import Device, DeviceError

__all__ = ["RunError", "Layout", "layout", "Accelerator", "Result", "run", "PAGE"]

PAGE = 4096     #: the data image starts on this boundary (bursts never cross 4 KiB anyway)


class RunError(RuntimeError):
    """A run that cannot start or did not finish; ``cause`` is one of ``"config"``,
    ``"device"``, ``"timeout"``, ``"accelerator"``, ``"host"``; ``code`` the error code."""

    def __init__(self, message: str, *, cause: str, code: int | None = None):
        super().__init__(message)
        self.cause, self.code = cause, code


@dataclass(frozen=True)
class Layout:
    """Where a Binary sits in the device's buffer (byte offsets from its start)."""
    table: int          #: the instruction image (its queue table first), 16-byte aligned
    image_bytes: int
    data: int           #: the data image
    data_bytes: int

    @property
    def end(self) -> int:
        return self.data + self.data_bytes


def layout(binary, *, table: int = 0) -> Layout:
    """The buffer layout of ``binary`` with its instruction image at offset ``table``."""
    from sim.image import instruction_image
    if table % PAGE:
        raise ValueError(f"table offset must be a multiple of {PAGE} (the dispatcher ignores the "
                         f"low 12 bits of INSTR_TABLE), got {table}")
    img, _ = instruction_image(binary)
    data = -(-(table + img.size) // PAGE) * PAGE
    return Layout(table, int(img.size), data, int(binary.dram.size))


@dataclass
class Result:
    """One run: ``status`` ("done" / "error"), the error fields (``err_code``, ``err_name``,
    ``err_text``, ``err_queue``, ``err_unit``, ``err_pc``), ``host_requests`` served,
    ``counters`` (name -> int, read after the run) and ``outputs`` (name -> int64 array,
    filled by :func:`run` / :meth:`Accelerator.read_outputs`)."""
    status: str
    err_code: int = 0
    err_name: str = "NONE"
    err_text: str = ""
    err_queue: int = 0
    err_unit: int = 0
    err_pc: int = 0
    host_requests: int = 0
    counters: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("status", "err_code", "err_name", "err_text",
                                            "err_queue", "err_unit", "err_pc", "host_requests")}
        d["counters"] = dict(self.counters)
        return d


class Accelerator:
    """The runtime's view of one accelerator behind ``device`` (the steps of the module doc).

    ``table_offset``: where in the buffer the instruction image goes (default 0)."""

    def __init__(self, device: Device, *, table_offset: int = 0):
        self.dev = device
        self.rm = device.regmap
        self.table_offset = table_offset
        self.layout: Layout | None = None
        self.binary = None

    # -- 1. check ---------------------------------------------------------------------------
    def check(self, cfg, *, sem_ids: int = 0) -> None:
        """Raise :class:`RunError` unless the device is a Trio-ViT accelerator with this
        register map, built for ``cfg``, whose semaphore file (``CONFIG_SEMS``) holds
        ``sem_ids`` ids (a Binary's :attr:`~sim.compile.Binary.sem_ids`)."""
        from hw.system.regmap import config_hash
        d, rm = self.dev, self.rm
        ident = d.read("ID")
        if ident != rm.magic:
            raise RunError(f"ID register reads 0x{ident:08x}, not a Trio-ViT accelerator "
                           f"(0x{rm.magic:08x}): wrong address or no bitstream loaded",
                           cause="device")
        ver = d.read("VERSION")
        if ver != rm.version:
            raise RunError(f"register map version {ver} in the bitstream, {rm.version} in the "
                           f"runtime's map ({rm.source}): rebuild one of them", cause="config")
        have, want = d.read("CONFIG_HASH"), config_hash(cfg)
        if have != want:
            raise RunError(f"the Binary was compiled for another config than the bitstream's "
                           f"(CONFIG_HASH 0x{have:08x}, Binary 0x{want:08x} = {cfg.name or 'custom'}"
                           f" L={cfg.L}): recompile it for the bitstream's config",
                           cause="config")
        ids = d.read("CONFIG_SEMS")
        if sem_ids > ids:
            raise RunError(f"the Binary uses {sem_ids} semaphore ids, the bitstream's semaphore "
                           f"file has {ids} (CONFIG_SEMS): rebuild the accelerator with --sems "
                           f">= {sem_ids}", cause="config")

    # -- 2. load ----------------------------------------------------------------------------
    def load(self, binary, xq, *, watchdog: int = 0) -> Layout:
        """Place ``binary`` with the integer input ``xq`` in the buffer and write the base
        registers; returns the :class:`Layout`."""
        from sim.image import instruction_image
        d = self.dev
        lay = layout(binary, table=self.table_offset)
        if lay.end > d.buffer_size:
            raise RunError(f"the Binary needs {lay.end} bytes of buffer, the device has "
                           f"{d.buffer_size}", cause="device")
        if d.buffer_addr % PAGE:
            raise RunError(f"the buffer's bus address 0x{d.buffer_addr:x} is not 4 KiB aligned "
                           f"(the dispatcher reads the queue table from a 4 KiB boundary)",
                           cause="device")
        img, _ = instruction_image(binary)
        data = binary.dram.copy()
        binary.write_input(data, xq)
        d.write_buffer(lay.table, img.tobytes())
        d.write_buffer(lay.data, data.tobytes())
        d.write64("INSTR_TABLE", d.buffer_addr + lay.table)
        d.write64("DATA_BASE", d.buffer_addr + lay.data)
        d.write("DATA_SIZE", lay.data_bytes)
        d.write("WATCHDOG", watchdog)
        self.layout, self.binary = lay, binary
        return lay

    # -- 3. start ---------------------------------------------------------------------------
    def start(self) -> None:
        self.dev.write("CTRL", self.rm.mask("CTRL.START") | self.rm.mask("CTRL.IRQ_EN"))

    def soft_reset(self) -> None:
        self.dev.write("CTRL", self.rm.mask("CTRL.SOFT_RESET") | self.rm.mask("CTRL.IRQ_EN"))

    # -- 4. wait ----------------------------------------------------------------------------
    def _dram_read(self, addr, n):
        return np.frombuffer(self.dev.read_buffer(self.layout.data + addr, n), dtype=np.uint8)

    def _dram_write(self, addr, data):
        self.dev.write_buffer(self.layout.data + addr, np.asarray(data, np.uint8).tobytes())

    def _serve_host(self) -> None:
        from sim import funcsim
        from sim.isa import decode
        word = 0
        for i in range(4):
            word |= self.dev.read(f"HOST_INSTR{i}") << (32 * i)
        ins = decode(word)
        if ins.op != "HOST_LN":
            raise RunError(f"HOST_REQ with {ins.op} in HOST_INSTR (only HOST_LN is the CPU's)",
                           cause="host")
        funcsim.host_ln(ins.f, read=self._dram_read, write=self._dram_write)
        self.dev.write("HOST_ACK", self.rm.mask("HOST_ACK.ACK"))

    def wait(self, *, timeout_s: float = 10.0, poll: bool | None = None,
             poll_interval_s: float = 1e-4) -> Result:
        """Run to the end (serving HOST_REQ); ``poll``: None = interrupt if the device has one.
        ``timeout_s``: the longest wait for one event (interrupt or status change), in the
        device's time. Returns the :class:`Result` without outputs; raises :class:`RunError`
        (cause ``"timeout"``) when nothing happens for ``timeout_s``."""
        d, rm = self.dev, self.rm
        poll = (not d.has_irq) if poll is None else poll
        if not poll and not d.has_irq:
            raise RunError("the device has no interrupt: poll", cause="device")
        m_done, m_err, m_req = (rm.mask(f"IRQ_STATUS.{n}") for n in ("DONE", "ERROR", "HOST_REQ"))
        hosts = 0
        while True:
            if poll:
                waited = 0.0
                irq = d.read("IRQ_STATUS")
                while not irq and waited < timeout_s:
                    d.sleep(poll_interval_s)
                    waited += poll_interval_s
                    irq = d.read("IRQ_STATUS")
                if not irq:
                    self._timeout(timeout_s, "IRQ_STATUS event (DONE, ERROR or HOST_REQ)")
            else:
                if not d.wait_irq(timeout_s):
                    self._timeout(timeout_s, "the interrupt")
                irq = d.read("IRQ_STATUS")
            d.write("IRQ_STATUS", irq)          # W1C what we saw
            if irq & m_req:
                self._serve_host()
                hosts += 1
            if irq & (m_done | m_err):
                break
        return self.status(host_requests=hosts)

    def _timeout(self, timeout_s, what):
        st = self.dev.read("STATUS")
        raise RunError(f"timeout: no {what} within {timeout_s:g} {self.dev.time_unit} "
                       f"(STATUS 0x{st:x}, CYCLES {self.dev.read64('CYCLES')}): the "
                       f"accelerator is stuck or the interrupt is not wired", cause="timeout")

    def status(self, *, host_requests: int = 0) -> Result:
        d, rm = self.dev, self.rm
        st, code = d.read("STATUS"), d.read("ERR_CODE")
        c = rm.field(code, "ERR_CODE.CODE")
        return Result(
            status=("error" if st & rm.mask("STATUS.ERROR") else
                    "done" if st & rm.mask("STATUS.DONE") else
                    "busy" if st & rm.mask("STATUS.BUSY") else f"0x{st:x}"),
            err_code=c, err_name=rm.error_name(c), err_text=rm.error_text(c),
            err_queue=rm.field(code, "ERR_CODE.QUEUE"), err_unit=rm.field(code, "ERR_CODE.UNIT"),
            err_pc=d.read("ERR_PC"), host_requests=host_requests, counters=self.counters())

    # -- 5. read ----------------------------------------------------------------------------
    def counter_names(self) -> list:
        """The performance counters: the map's 64-bit read-only registers, by offset."""
        wide = {reg for (reg, _f), (_l, w, acc) in self.rm.fields.items() if w == 64 and acc == "RO"}
        return sorted(wide, key=lambda r: self.rm.offset(f"{r}_LO"))

    def counters(self) -> dict:
        return {n: self.dev.read64(n) for n in self.counter_names()}

    def read_outputs(self, binary=None) -> dict:
        binary = binary if binary is not None else self.binary
        raw = self.dev.read_buffer(self.layout.data, self.layout.data_bytes)
        return binary.read_outputs(np.frombuffer(raw, dtype=np.uint8).copy())

    def error_message(self, res: Result) -> str:
        from sim.image import queue_names
        qn = queue_names(self.binary.cfg.L) if self.binary is not None else []
        q = (f"{qn[res.err_queue][0]} {qn[res.err_queue][1]}" if res.err_queue < len(qn)
             else f"queue {res.err_queue}")
        return (f"accelerator error {res.err_name} ({res.err_code}): {res.err_text}; "
                f"at {q}, instruction {res.err_pc}")


def run(device: Device, binary, x, *, timeout_s: float = 10.0, poll: bool | None = None,
        watchdog: int = 0) -> Result:
    """Run ``binary`` (a :class:`sim.compile.Binary`) on integer input ``x`` (the input
    tensor's shape and range, e.g. from :func:`sim.golden.quantize_input`) on ``device``.

    Returns the :class:`Result` with ``outputs`` (name -> int64 array, as ``sim.golden.run``)
    and ``counters``. Raises :class:`RunError` (one line naming the cause) for another config's
    Binary, a timeout, an error code of the accelerator; ``ValueError``/``TypeError`` for an
    input of the wrong shape or range."""
    from sim.golden import _check_input
    xq = _check_input(binary.prog, x)
    acc = Accelerator(device)
    try:
        acc.check(binary.cfg, sem_ids=binary.sem_ids)
        acc.load(binary, xq, watchdog=watchdog)
        acc.start()
        res = acc.wait(timeout_s=timeout_s, poll=poll)
    except DeviceError as e:
        raise RunError(str(e), cause="device") from None
    if res.status != "done":
        raise RunError(acc.error_message(res), cause="accelerator", code=res.err_code)
    res.outputs = acc.read_outputs(binary)
    return res
