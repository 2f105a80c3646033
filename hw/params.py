"""Up-front validation of the keyword parameters of every hardware component.

Every unit, engine and core checks its parameters in ``__init__`` with these helpers, so a bad value fails at
construction with a message naming the parameter and the allowed range, never deep inside
elaboration.
"""

from __future__ import annotations

__all__ = ["check_int", "check_bool", "check_pow2"]


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[lo, hi]``; else raise.

    Raises ``TypeError`` for a non-integer and ``ValueError`` naming ``name`` and the range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = (f"[{lo}, {hi}]" if lo is not None and hi is not None
               else f">= {lo}" if lo is not None else f"<= {hi}")
        raise ValueError(f"{name} must be {'in ' if hi is not None and lo is not None else ''}"
                         f"{rng}, got {value}")
    return value


def check_bool(name: str, value) -> bool:
    """Return ``value`` if it is a bool; else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True/False), got {type(value).__name__} {value!r}")
    return value


def check_pow2(name: str, value, *, lo: int = 1, hi: int | None = None) -> int:
    """Like :func:`check_int`, and additionally require a power of two."""
    check_int(name, value, lo=lo, hi=hi)
    if value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {lo}"
                         f"{'' if hi is None else f' and <= {hi}'}, got {value}")
    return value
