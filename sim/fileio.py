"""Writing files so that a failure never leaves a half-written one behind.

Every tool of trio-vit that writes a result (IntProgram, Binary, checkpoints, reports, Verilog,
CSV) goes through :func:`atomic_path`: the data go to a temporary file in the target folder,
which is renamed over the target only when writing succeeded.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_open", "atomic_write"]


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on normal exit rename it to ``path``, on an
    exception delete it. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path, mode: str = "wb"):
    """``open(path, mode)`` that only replaces ``path`` when the ``with`` block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def atomic_write(path, data: str | bytes) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)
