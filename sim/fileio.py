"""Writing files so that a failure never leaves a half-written one behind.

Every tool of trio-vit that writes a result (IntProgram, Binary, quantized models, checkpoints,
reports, Verilog, CSV, Vivado build trees) goes through this module: the data go to a
temporary file (or folder) next to the target, which is renamed over the target only when
writing succeeded.

Permissions: the result gets the mode an ordinary ``open(path, "w")`` (or ``os.mkdir(path)``)
would give it, ``0o666 & ~umask`` for a file and ``0o777 & ~umask`` for a folder, so that a
colleague, a Vivado run under another account or a shared build folder can read it.
``tempfile.mkstemp``/``mkdtemp`` are not used because they create 0600/0700 on purpose. The
temporary file is instead created here with ``os.open(..., O_CREAT | O_EXCL, 0o666)`` (and a
folder with ``os.mkdir(..., 0o777)``): the kernel applies the process's umask (or the folder's
default ACL) exactly as it does for ``open``. The umask is never read: the only portable way to
read it, ``os.umask(0)`` followed by a restore, changes it for every thread of the process for a
moment, so a file created by another thread in that moment would get mode 0666.

A target that exists already is replaced by a new file with these permissions, not given the
old file's mode (earlier versions of these tools wrote 0600 files; rewriting one fixes it).
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_open", "atomic_write", "atomic_dir"]

_ATTEMPTS = 100


def _temporary(path: Path, make) -> Path:
    """``make(candidate)`` for hidden names ``.<name>.<random>.tmp`` next to ``path`` until one
    does not exist yet; returns the name created. ``make`` must fail with FileExistsError on an
    existing name (O_EXCL / mkdir), so two writers never share a temporary."""
    for _ in range(_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            make(tmp)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no unused temporary name next to {path} after {_ATTEMPTS} attempts")


def _new_file(tmp: Path) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    os.close(os.open(tmp, flags, 0o666))         # the kernel applies the umask, as open() does


@contextmanager
def atomic_path(path):
    """Yield a new empty temporary file next to ``path`` (mode ``0o666 & ~umask``); on normal
    exit rename it to ``path``, on an exception delete it. Creates the parent folder.

    Write the temporary by opening it (which keeps its mode) or by replacing it with a file of
    the same name; a writer that appends a suffix to the name it is given (``np.save`` adds
    ``.npy``) must be handed an open file instead (:func:`atomic_open`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, _new_file)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path, mode: str = "wb", **kw):
    """``open(path, mode, **kw)`` that only replaces ``path`` when the ``with`` block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kw) as f:
        yield f


def atomic_write(path, data: str | bytes) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


@contextmanager
def atomic_dir(path):
    """Yield a new empty temporary folder next to ``path`` (mode ``0o777 & ~umask``); on normal
    exit it replaces ``path`` (an existing folder there is moved aside, the new one renamed into
    place, then the old one deleted: ``path`` is never a half-written tree, only absent between
    the two renames), on an exception it is deleted and ``path`` is left as it was. Creates the
    parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, lambda p: os.mkdir(p, 0o777))   # umask applied, as by os.mkdir
    try:
        yield tmp
        old = _temporary(path, lambda p: _move(path, p)) if os.path.lexists(path) else None
        try:
            os.rename(tmp, path)
        except BaseException:
            if old is not None:
                os.rename(old, path)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with FileExistsError if ``dst`` exists (``rename``
    itself would replace an empty folder or a file there)."""
    if os.path.lexists(dst):
        raise FileExistsError(dst)
    os.rename(src, dst)
