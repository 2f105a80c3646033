"""AccelConfig: the parameters of one Trio-ViT accelerator instance (paper Sec. V, Fig. 8).

The compiler (:mod:`sim.compile`), the functional simulator, the cycle model (:mod:`sim.perf`)
and the RTL generator all take the same :class:`AccelConfig`.

Parallelism (paper notation, Fig. 7-8)
--------------------------------------
* ``N`` R-MACs per PE lane and ``M`` PE lanes in the R-MAC engine (``M * N`` multipliers),
* ``T`` multipliers per PE lane and ``S`` PE lanes in the MAT engine (``S * T`` multipliers),
* ``L`` computing cores. Multipliers in total: ``(N*M + T*S) * L``.

The paper's point is ``(8, 8, 8, 8, 16)``: 2048 int8 multipliers at 200 MHz; with DSP packing
(two int8 products sharing one operand per DSP48E2) that is 1024 DSPs.

DRAM (the ``paper`` preset)
---------------------------
The ZCU102's PS DDR4 is 64 bit at 2400 MT/s: 19.2 GB/s peak. The programmable logic reaches it
through the four 128-bit ``S_AXI_HP`` ports; at the accelerator's 200 MHz clock one port moves at
most 16 B/cycle (3.2 GB/s), four ports 64 B/cycle = **12.8 GB/s**, i.e. two thirds of the DDR
peak, which is also about the sustained DDR4 efficiency (refresh, bank conflicts, read/write
turnarounds) reported for streaming DMA on Zynq UltraScale+. We therefore assume 64 B/cycle
usable, shared by all cores, and a 64-cycle (320 ns) access latency (PL -> HP port -> DDR
controller -> PL round trip), paid once per DMA burst sequence (a LOAD/STORE instruction).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from .isa import BUF_MAX_BYTES

__all__ = ["AccelConfig", "ConfigError", "PRESETS", "PRESET_BUFFERS", "PAPER_REQUANT",
           "PAPER_DENSITY", "ZCU102_BUFFERS"]


class ConfigError(ValueError):
    """An invalid accelerator configuration (the message names the field and the allowed range)."""


# field -> (min, max) for integers
_RANGES = {
    "N": (1, 64), "M": (1, 64), "T": (1, 64), "S": (1, 64), "L": (1, 64),
    # the global buffers: at most what the instructions address (sim.isa.BUF_MAX_BYTES)
    "buf_b_bytes": (1024, BUF_MAX_BYTES["B"]), "buf_c_bytes": (1024, BUF_MAX_BYTES["C"]),
    "buf_out_bytes": (1024, BUF_MAX_BYTES["OUT"]), "buf_aux_bytes": (256, 1 << 22),
    "buf_div_bytes": (64, 1 << 20), "buf_a_bytes": (0, 1 << 16),
    "dram_bytes_per_cycle": (1, 4096), "dram_latency_cycles": (0, 100000),
    "host_cycles_per_elem": (0, 10000),
    "host_overhead_cycles": (0, 10 ** 7),
    "requant_mat": (0, 64), "requant_rmac": (0, 64), "requant_rmac_res": (0, 64),
}


@dataclass(frozen=True)
class AccelConfig:
    """One accelerator instance. All sizes are in bytes, all times in accelerator clock cycles.

    ``buf_b_bytes``/``buf_c_bytes``/``buf_out_bytes`` are the global buffers B (activations),
    C (weights + per-channel requant parameters) and the output buffer, shared by the L cores;
    ``buf_aux_bytes``, ``buf_div_bytes`` and ``buf_a_bytes`` are per core (auxiliary buffer
    between the R-MAC and MAT engines; divisor buffer of the attention; buffer A, the broadcast
    operand of the R-MAC engine and the adder tree, which holds the attention's K: the compiler
    falls back to B for a head whose K does not fit).

    ``requant_mat`` / ``requant_rmac``: at most this many requant lanes in the MAT / R-MAC unit
    (``0``, the default: one per engine lane, R = S / M); the unit gets the largest divisor R of
    its lanes (S / M) that is not above it (:meth:`requant_lanes`), so the field stays valid
    when S or M is overridden (``paper:S=6`` gives the MAT 3 of ``paper``'s 4). The engine's
    output vector is held in the unit's staging register and drained R channels per cycle
    (``lanes / R`` cycles per vector), the engine waiting when the staging is still being
    drained; :mod:`sim.timing` models it (docs/hw-core.md, "Requant lanes").
    ``requant_rmac_res``: at most this many of the R-MAC's requant lanes have the residual path
    (``0``, the default: all of them; :meth:`requant_res_lanes`, a divisor of
    ``requant_lanes("RMAC")``); a ``CONV_RDF`` or ``DW_RSA`` with a residual input drains through
    those only, ``M / R_res`` cycles per vector (docs/hw-core.md, "issue #14, round 4").

    The pipeline latencies of the core (requant lanes, engines, log2 module) are
    properties of the RTL, not of the configuration: :mod:`sim.timing` states them. (A former
    field ``requant_latency`` is dropped; JSON written with it still loads, see
    :meth:`from_dict`.)
    """
    N: int = 8
    M: int = 8
    T: int = 8
    S: int = 8
    L: int = 16
    buf_b_bytes: int = 384 * 1024
    buf_c_bytes: int = 192 * 1024
    buf_out_bytes: int = 64 * 1024
    buf_aux_bytes: int = 4 * 1024
    buf_div_bytes: int = 1024
    buf_a_bytes: int = 8 * 1024
    dram_bytes_per_cycle: int = 64
    dram_latency_cycles: int = 64
    clock_mhz: float = 200.0
    dsp_packing: bool = True
    host_cycles_per_elem: int = 4
    host_overhead_cycles: int = 2000
    requant_mat: int = 0
    requant_rmac: int = 0
    requant_rmac_res: int = 0
    name: str = "custom"

    def __post_init__(self):
        for f, (lo, hi) in _RANGES.items():
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{f} must be an integer, got {v!r}")
            if not lo <= v <= hi:
                raise ConfigError(f"{f} must lie in [{lo}, {hi}], got {v}")
        if 0 < self.buf_a_bytes < 64:
            raise ConfigError("buf_a_bytes must be 0 (no buffer A: K read from B) or lie in "
                              f"[64, {1 << 16}], got {self.buf_a_bytes}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) \
                or not 1.0 <= float(self.clock_mhz) <= 2000.0:
            raise ConfigError(f"clock_mhz must be a number in [1, 2000], got {self.clock_mhz!r}")
        if not isinstance(self.dsp_packing, bool):
            raise ConfigError(f"dsp_packing must be true or false, got {self.dsp_packing!r}")
        if self.dsp_packing and (self.N * self.M) % 2 or self.dsp_packing and (self.T * self.S) % 2:
            raise ConfigError("dsp_packing pairs two multipliers per DSP: N*M and T*S must be even"
                              f" (got N*M={self.N * self.M}, T*S={self.T * self.S})")
        if not isinstance(self.name, str):
            raise ConfigError("name must be a string")

    def requant_lanes(self, unit: str) -> int:
        """The requant lanes R of core unit ``unit`` ("MAT" or "RMAC"): the largest divisor of
        the unit's engine lanes (S / M) that is at most ``requant_mat`` / ``requant_rmac``; all
        of them when that field is 0."""
        if unit not in ("MAT", "RMAC"):
            raise ValueError(f"unit must be 'MAT' or 'RMAC', got {unit!r}")
        lanes, r = (self.S, self.requant_mat) if unit == "MAT" else (self.M, self.requant_rmac)
        if not r or r >= lanes:
            return lanes
        return max(d for d in range(1, r + 1) if lanes % d == 0)

    def requant_res_lanes(self) -> int:
        """The R-MAC unit's requant lanes with the residual path: the largest divisor of its
        requant lanes (:meth:`requant_lanes`) that is at most ``requant_rmac_res``; all of them
        when that field is 0."""
        lanes, r = self.requant_lanes("RMAC"), self.requant_rmac_res
        if not r or r >= lanes:
            return lanes
        return max(d for d in range(1, r + 1) if lanes % d == 0)

    # -- derived quantities -------------------------------------------------------------------
    @property
    def mults_per_core(self) -> int:
        return self.N * self.M + self.T * self.S

    @property
    def multipliers(self) -> int:
        """int8 multipliers in the whole accelerator: ``(N*M + T*S) * L``."""
        return self.mults_per_core * self.L

    @property
    def dsps(self) -> int:
        """DSP48E2 slices for the multipliers (two per DSP with packing)."""
        return self.multipliers // 2 if self.dsp_packing else self.multipliers

    @property
    def peak_gmacs(self) -> float:
        return self.multipliers * self.clock_mhz / 1000.0

    @property
    def dram_gbytes_per_s(self) -> float:
        return self.dram_bytes_per_cycle * self.clock_mhz / 1000.0

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "AccelConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        if "requant_latency" in d:
            # backward compatibility: configs (and Binaries) written before sim.timing carry
            # requant_latency (default 3); the cycle model now uses the RTL's latency
            d = {k: v for k, v in d.items() if k != "requant_latency"}
            warnings.warn("config field 'requant_latency' is ignored: sim.perf uses the RTL's "
                          "requant latency (sim.timing.REQUANT_LATENCY)", DeprecationWarning,
                          stacklevel=2)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "AccelConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def from_string(cls, spec: str) -> "AccelConfig":
        """A preset name (``paper``, ``small``, ...), a JSON object, a path to a JSON file, or
        ``preset:key=value,key=value`` (e.g. ``paper:L=8,dram_bytes_per_cycle=32``)."""
        spec = spec.strip()
        if spec.startswith("{"):
            return cls.from_json(spec)
        base, _, over = spec.partition(":")
        if base in PRESETS:
            cfg = PRESETS[base]
            if over:
                kv = {}
                for item in over.split(","):
                    k, eq, v = item.partition("=")
                    if not eq:
                        raise ConfigError(f"override {item!r} is not key=value")
                    kv[k.strip()] = _parse_value(v.strip())
                cfg = cfg.replace(**kv)
            return cfg
        p = Path(spec)
        if p.suffix == ".json" or p.exists():
            try:
                return cls.from_json(p.read_text())
            except OSError as e:
                raise ConfigError(f"cannot read config file {spec}: {e}") from None
        raise ConfigError(f"unknown config {spec!r}: expected one of {sorted(PRESETS)},"
                          " a JSON object, or a path to a .json file")

    def replace(self, **kw) -> "AccelConfig":
        known = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(kw) - known)
        if bad:
            raise ConfigError(f"unknown config field(s) {bad}; known: {sorted(known)}")
        if "name" not in kw:
            kw["name"] = f"{self.name}*"
        return dataclasses.replace(self, **kw)

    def describe(self) -> str:
        return (f"{self.name}: (N,M,T,S,L)=({self.N},{self.M},{self.T},{self.S},{self.L}), "
                f"{self.multipliers} mults ({self.dsps} DSP), {self.clock_mhz:g} MHz, "
                f"DRAM {self.dram_bytes_per_cycle} B/cycle = {self.dram_gbytes_per_s:.1f} GB/s")


def _parse_value(v: str):
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


#: the requant lanes of the paper's point (issue #14, docs/hw-core.md "Requant lanes"): the MAT
#: unit drains its 8-lane vectors through 4 lanes (B1-R224: 409,278 cycles instead of 409,235,
#: -0.01 % FPS); the R-MAC keeps 8 (with 4 its depthwise 3x3 tiles wait: -2.8 % FPS), 2 of
#: them with the residual path (docs/hw-core.md "issue #14, round 4": B1-R224 387,918 cycles
#: instead of 388,251; its residual convs on the R-MAC wait, its depthwise convs have none)
PAPER_REQUANT = dict(requant_mat=4, requant_rmac_res=2)

#: the paper's point as built (issue #14): its requant lanes and no buffer A (``buf_a_bytes=0``).
#: Every attention head group of B0/B1/B2 at R224 and B1-R288 reads q|k|v from a tensor
#: resident in B (docs/perf.md "Attention context modules on chip"), so K never went to A:
#: ``sim.perf`` gives the same cycles with and without A (docs/hw-core.md "Buffer A"), and A
#: cost 32 RAMB18 per core.
PAPER_DENSITY = dict(PAPER_REQUANT, buf_a_bytes=0)

#: the global buffer sizes of the ZCU102 build: B and C at the ISA's limits
#: (``sim.isa.BUF_MAX_BYTES``: 512 KiB, 2 MiB), OUT 128 KiB (docs/perf.md "Buffer C beyond
#: 512 KiB": 672 BRAM36 by capacity, the whole accelerator 716 of the ZCU102's 912)
ZCU102_BUFFERS = dict(buf_b_bytes=512 * 1024, buf_c_bytes=2048 * 1024, buf_out_bytes=128 * 1024)

PRESETS = {
    "paper": AccelConfig(name="paper", **PAPER_DENSITY),
    # a small instance for fast tests and the RTL (2 cores, 4x4 engines)
    "small": AccelConfig(N=4, M=4, T=4, S=4, L=2, buf_b_bytes=32 * 1024, buf_c_bytes=32 * 1024,
                         buf_out_bytes=16 * 1024, buf_aux_bytes=8 * 1024, buf_div_bytes=512,
                         dram_bytes_per_cycle=16, dram_latency_cycles=32, name="small"),
    # one core of the paper's point
    "paper-1core": AccelConfig(L=1, name="paper-1core", **PAPER_DENSITY),
    # the paper's point with the global buffers the ZCU102 build uses (issue #16, docs/perf.md
    # "Buffer sizes of the ZCU102 build", "Buffer C beyond 512 KiB"): B 512, C 2048 (the
    # prefetch arena), OUT 128 KiB, 672 BRAM36 by capacity instead of paper's 160 (the whole
    # accelerator 716 of 912)
    "zcu102": AccelConfig(name="zcu102", **ZCU102_BUFFERS, **PAPER_DENSITY),
    # the first build that fits a ZCU102 today (docs/board.md "A first build that fits"): one
    # paper core on the word-banked global buffers (hw.system.wordbanked; the build's default
    # buffers for it: hw.system.accelerator.default_buffers) with the ZCU102 build's buffer
    # sizes, and the DRAM bandwidth of the one HP port the build uses (axi_ports 1: 16 B per
    # cycle at 128 bit; the word buffers take at most one LD engine)
    "zcu102-l1": AccelConfig(L=1, dram_bytes_per_cycle=16, name="zcu102-l1", **ZCU102_BUFFERS,
                             **PAPER_DENSITY),
}

#: the global buffers (``hw.system.Accelerator(buffers=...)``) a preset is built with when none
#: is given; presets not named here: "behavioural". A config made from a preset with overrides
#: (``zcu102-l1:clock_mhz=150``, named ``zcu102-l1*``) keeps its preset's.
PRESET_BUFFERS = {"zcu102-l1": "word"}
