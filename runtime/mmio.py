"""The board backend: the accelerator on a ZCU102 running Linux (PetaLinux / Ubuntu for ZynqMP).

Registers (the 4 KiB AXI4-Lite window the block design puts on ``M_AXI_HPM0_FPD``), either

* **UIO** (preferred): a device-tree node ``compatible = "generic-uio"`` over the window with
  the interrupt (``uio_pdrv_genirq`` loaded with ``of_id=generic-uio``) gives ``/dev/uioN``.
  The window is ``maps/map0`` of ``/sys/class/uio/uioN`` (its ``size`` read there), mapped
  from ``/dev/uioN`` at offset 0. The interrupt follows the UIO protocol: write a 32-bit 1 to
  ``/dev/uioN`` (unmask), wait until it is readable (``select``), read the 32-bit event count;
  ``uio_pdrv_genirq`` masks the line again on each interrupt;
* **/dev/mem** at the window's physical address (``mem_addr``, e.g. 0xA0000000 as
  ``python -m hw build zcu102`` assigns it): no interrupt, the runtime polls ``STATUS``.

The buffer: a **u-dma-buf** (``udmabuf``) device, ``/dev/udmabufN``, a physically contiguous
buffer allocated by the kernel module (``insmod u-dma-buf.ko udmabuf0=<bytes>``). Its bus
address and size come from sysfs (``/sys/class/u-dma-buf/udmabufN/phys_addr`` and ``size``;
older versions of the module use ``/sys/class/udmabuf/``). It is opened with ``O_SYNC``, which
maps it uncached (the module's default ``sync_mode``), so no cache maintenance is needed
between the CPU and the accelerator's HP port (which is not coherent).

Register accesses are single aligned 32-bit loads and stores (a ``memoryview`` cast to
``"I"``), never byte copies: the register block honours byte strobes.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import time
from pathlib import Path

from .device import Device, DeviceError

__all__ = ["MmioDevice", "UioIrq", "uio_map_size", "find_uio", "udmabuf_info"]

UDMABUF_CLASSES = ("u-dma-buf", "udmabuf")


def _read_sysfs_int(path: Path, what: str) -> int:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise DeviceError(f"{what}: {path} not found") from None
    except OSError as e:
        raise DeviceError(f"{what}: cannot read {path}: {e.strerror}") from None
    try:
        return int(text, 0)
    except ValueError:
        raise DeviceError(f"{what}: {path} holds {text!r}, not a number") from None


def _dev_name(dev) -> str:
    return Path(dev).name


def uio_map_size(uio, *, index: int = 0, sysfs="/sys") -> int:
    """Size in bytes of ``maps/map<index>`` of UIO device ``uio`` (``/dev/uio0`` or ``uio0``)."""
    return _read_sysfs_int(Path(sysfs) / "class" / "uio" / _dev_name(uio) / "maps" /
                           f"map{index}" / "size", f"UIO device {_dev_name(uio)}")


def find_uio(name: str, *, sysfs="/sys") -> str:
    """``/dev/uioN`` of the UIO device whose ``name`` (the device-tree node's name) is ``name``."""
    root = Path(sysfs) / "class" / "uio"
    found = []
    for d in sorted(root.glob("uio*")):
        try:
            if (d / "name").read_text().strip() == name:
                return f"/dev/{d.name}"
            found.append(f"{d.name}={(d / 'name').read_text().strip()}")
        except OSError:
            continue
    raise DeviceError(f"no UIO device named {name!r} under {root} "
                      f"(found: {', '.join(found) or 'none'}; is uio_pdrv_genirq loaded?)")


def udmabuf_info(dev, *, sysfs="/sys") -> tuple[int, int]:
    """``(phys_addr, size)`` of u-dma-buf device ``dev`` (``/dev/udmabuf0`` or ``udmabuf0``)."""
    name = _dev_name(dev)
    for cls in UDMABUF_CLASSES:
        d = Path(sysfs) / "class" / cls / name
        if d.is_dir():
            return (_read_sysfs_int(d / "phys_addr", f"udmabuf {name}"),
                    _read_sysfs_int(d / "size", f"udmabuf {name}"))
    raise DeviceError(f"udmabuf {name}: no {' or '.join(f'{sysfs}/class/{c}/{name}' for c in UDMABUF_CLASSES)}"
                      f" (is the u-dma-buf module loaded with {name}=<bytes>?)")


class UioIrq:
    """The UIO interrupt protocol on an open file descriptor ``fd`` of ``/dev/uioN``."""

    def __init__(self, fd: int):
        self.fd = fd
        self.count = None

    def unmask(self) -> None:
        os.write(self.fd, struct.pack("=I", 1))

    def wait(self, timeout_s: float) -> bool:
        """Unmask, then wait up to ``timeout_s`` for an interrupt; True if one came."""
        self.unmask()
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout_s))
        if not r:
            return False
        data = os.read(self.fd, 4)
        if len(data) != 4:
            raise DeviceError(f"UIO read returned {len(data)} bytes, expected 4")
        self.count = struct.unpack("=I", data)[0]
        return True


def _open(path, flags, what):
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise DeviceError(f"{what} {path} not found") from None
    except PermissionError:
        raise DeviceError(f"{what} {path}: permission denied (run as root or give the user "
                          f"access to it)") from None
    except OSError as e:
        raise DeviceError(f"{what} {path}: {e.strerror}") from None


class MmioDevice(Device):
    """The accelerator on the board (see the module doc).

    Parameters (keyword-only)
    -------------------------
    uio : str or None
        ``/dev/uioN`` of the register window (with the interrupt). Exclusive with ``mem_addr``.
    mem_addr : int or None
        Physical address of the register window, mapped through ``/dev/mem`` (polling).
    udmabuf : str
        The u-dma-buf device of the buffer (default ``/dev/udmabuf0``).
    sysfs : str
        Root of sysfs (``/sys``; tests point it at a directory tree standing in for it).
    mem_dev : str
        The physical-memory device for ``mem_addr`` (``/dev/mem``).
    irq_fd : int or None
        A file descriptor speaking the UIO interrupt protocol instead of ``uio`` itself (tests).
    regmap : runtime.regmap.RegMap or None
        The register map (default :func:`runtime.regmap.load_regmap`).
    """

    def __init__(self, *, uio: str | None = None, mem_addr: int | None = None,
                 udmabuf: str = "/dev/udmabuf0", sysfs: str = "/sys", mem_dev: str = "/dev/mem",
                 irq_fd: int | None = None, regmap=None):
        super().__init__(regmap)
        if (uio is None) == (mem_addr is None):
            raise ValueError("give exactly one of uio (/dev/uioN) and mem_addr (an address)")
        self._fds, self._maps = [], []
        try:
            if uio is not None:
                size = uio_map_size(uio, sysfs=sysfs)
                if size < self.regmap.size:
                    raise DeviceError(f"UIO device {uio}: map0 is {size} bytes, the register "
                                      f"window needs {self.regmap.size}")
                fd = self._keep(_open(uio, os.O_RDWR | os.O_SYNC, "UIO device"))
                self._regs = self._map(fd, self.regmap.size, 0, f"UIO device {uio}")
                self._irq = UioIrq(fd if irq_fd is None else irq_fd)
                self.has_irq = True
            else:
                if isinstance(mem_addr, bool) or not isinstance(mem_addr, int) or mem_addr < 0 \
                        or mem_addr % mmap.PAGESIZE:
                    raise ValueError(f"mem_addr must be a page-aligned address, got {mem_addr!r}")
                fd = self._keep(_open(mem_dev, os.O_RDWR | os.O_SYNC, "physical memory device"))
                self._regs = self._map(fd, self.regmap.size, mem_addr, f"{mem_dev} at {mem_addr:#x}")
                self._irq = None
                self.has_irq = False
            self.buffer_addr, self.buffer_size = udmabuf_info(udmabuf, sysfs=sysfs)
            fd = self._keep(_open(udmabuf, os.O_RDWR | os.O_SYNC, "udmabuf device"))
            self._buf = self._map(fd, self.buffer_size, 0, f"udmabuf {udmabuf}")
        except BaseException:
            self.close()
            raise
        self._words = memoryview(self._regs).cast("I")

    def _keep(self, fd):
        self._fds.append(fd)
        return fd

    def _map(self, fd, size, offset, what):
        try:
            m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                          offset=offset)
        except (OSError, ValueError) as e:
            raise DeviceError(f"{what}: cannot map {size} bytes: {e}") from None
        self._maps.append(m)
        return m

    def read_word(self, offset: int) -> int:
        return self._words[offset >> 2]

    def write_word(self, offset: int, value: int) -> None:
        self._words[offset >> 2] = value & 0xFFFFFFFF

    def read_buffer(self, offset: int, n: int) -> bytes:
        self._check_range(offset, n)
        return self._buf[offset:offset + n]

    def write_buffer(self, offset: int, data) -> None:
        data = bytes(data)
        self._check_range(offset, len(data))
        self._buf[offset:offset + len(data)] = data

    def wait_irq(self, timeout_s: float) -> bool:
        if self._irq is None:
            raise DeviceError("this device has no interrupt (opened through /dev/mem): poll")
        return self._irq.wait(timeout_s)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        w = getattr(self, "_words", None)
        if w is not None:
            w.release()
            self._words = None
        for m in self._maps:
            m.close()
        for fd in self._fds:
            os.close(fd)
        self._maps, self._fds = [], []
