"""The default RTL check of every arithmetic unit: one list used by ``tb/test_units_rtl.py`` and
by ``python -m tb.units.check`` (the demo's "each unit on both simulators" table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hw.units import AdderTree, Log2Quantizer, PackedDualMultiplier, Requant, ShifterArray

__all__ = ["Case", "DEFAULT_CASES", "REGRESS_CASES", "REQUANT_DEFAULT", "SEED"]

SEED = 20260523

REQUANT_DEFAULT = dict(acc_bits=32, mult_bits=16, shift_bits=6, out_bits=8, signed=True,
                       residual=True, hswish=True, hswish_in_bits=16)


@dataclass(frozen=True)
class Case:
    """One unit configuration: ``make()`` builds the component, ``name`` selects the Verilog top
    and the cocotb module ``tb.units.cocotb_<name>``, ``params`` go to the cocotb test."""
    id: str
    name: str
    make: Callable[[], object]
    params: dict = field(default_factory=dict)

    def test_params(self, unit) -> dict:
        return dict(seed=SEED, latency=unit.latency, **self.params)


def _adder(width, count, register_every, n=400):
    return Case(f"adder_tree-{width}x{count}-r{register_every}", "adder_tree",
                lambda: AdderTree(width=width, count=count, register_every=register_every),
                dict(width=width, count=count, n=n))


def _log2(width, n=600):
    return Case(f"log2-{width}", "log2", lambda: Log2Quantizer(width=width),
                dict(width=width, exp_bits=8, code_bits=4, n=n))


def _shifter(lanes, width, shift_bits, n=400):
    return Case(f"shifter-{lanes}x{width}-s{shift_bits}", "shifter",
                lambda: ShifterArray(lanes=lanes, width=width, shift_bits=shift_bits),
                dict(lanes=lanes, width=width, shift_bits=shift_bits, n=n))


def _packed(a_bits=9, w_bits=8, n=1500):
    return Case(f"packed_mult-{a_bits}x{w_bits}", "packed_mult",
                lambda: PackedDualMultiplier(a_bits=a_bits, w_bits=w_bits),
                dict(a_bits=a_bits, w_bits=w_bits, n=n))


def _requant(tag, n=600, **over):
    cfg = {**REQUANT_DEFAULT, **over}
    return Case(f"requant-{tag}", "requant", lambda: Requant(**cfg), dict(n=n, **cfg))


DEFAULT_CASES = [
    _adder(16, 8, 1), _adder(8, 5, 2),
    _log2(32), _log2(16),
    _shifter(8, 16, 4), _shifter(4, 8, 4),
    _packed(),
    _requant("full"), _requant("unsigned-plain", signed=False, residual=False, hswish=False),
]

REGRESS_CASES = [
    _adder(8, 64, 3, 300), _adder(24, 3, 0, 300), _adder(4, 16, 1, 300),
    _log2(8, 1000), _log2(24, 1000), _log2(48, 1000),
    _shifter(16, 12, 5, 500), _shifter(1, 32, 6, 500), _shifter(2, 4, 3, 500),
    _packed(8, 8, 3000), _packed(10, 8, 3000), _packed(4, 4, 3000),
    _requant("out16", 1000, out_bits=16), _requant("acc24", 1000, acc_bits=24, mult_bits=12, hswish=False),
    _requant("unsigned-x12", 1000, signed=False, hswish_in_bits=12),
    _requant("core-pool", 1000, out_bits=16, residual=False),   # a core unit's pool/ksum requant
]
