"""The computing core (paper Sec. V-B, Fig. 8): three instruction-driven units.

``Core`` holds the MAT unit (MAT engine, S lanes x T multipliers), the R-MAC unit (R-MAC engine,
M lanes x N R-MACs, down-forward mode so far) and the AUX unit (synchronisation only so far),
each a :class:`hw.core.unit.Unit` with its own instruction queue, layer registers and requant
lanes. The units run concurrently and meet only through the global semaphores (SIGNAL/WAIT) and
the buffers, exactly as ``sim.funcsim`` and ``sim.perf`` execute a :class:`sim.compile.Binary`.

Interface decisions (docs/hw-core.md):

* instructions come in as three streams of 128-bit words, ``mat_instr``, ``rmac_instr``,
  ``aux_instr``: the per-unit split of the core's stream (``sim.funcsim.build_queues``), i.e. the
  dispatcher sits in front of the core (in the top level, or the test harness);
* the global buffers B, C, OUT are outside the core (shared by L cores) and reached through
  gather read / scatter write ports (``hw.core.ports``); the harness plays them and the LD/ST
  DMA units;
* semaphores are outside too (global): ``*_wait`` / ``*_signal`` streams.
"""

from __future__ import annotations

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import check_int
from .unit import Unit

__all__ = ["Core", "UNIT_NAMES"]

UNIT_NAMES = ("mat", "rmac", "aux")


class Core(wiring.Component):
    """One computing core.

    Parameters (keyword-only): ``N, M`` (R-MAC engine: M lanes x N R-MACs), ``T, S`` (MAT
    engine: S lanes x T multipliers), each 1..64; ``packed`` (DSP packing in both engines;
    needs even M and S). ``Core.from_config(cfg)`` takes them from a ``sim.config.AccelConfig``.

    Ports: for ``u`` in mat, rmac, aux: ``u_instr`` (In stream, 128-bit words), ``u_wait``,
    ``u_signal`` (Out streams of {sem, count}); for mat and rmac: ``u_x``, ``u_w``, ``u_p``,
    ``u_r`` (gather read ports: inputs, weights, parameter records, residuals) and ``u_o``
    (scatter write port); ``halted`` (3 bits, mat/rmac/aux), ``done`` (all halted),
    ``error`` (3 bits, sticky), ``mat_busy``, ``rmac_busy`` (compute cycles, 32 bits).
    """

    def __init__(self, *, N: int = 8, M: int = 8, T: int = 8, S: int = 8, packed: bool = False):
        for k, v in dict(N=N, M=M, T=T, S=S).items():
            check_int(k, v, 1, 64)
        if not isinstance(packed, bool):
            raise TypeError(f"packed must be a bool, got {packed!r}")
        if packed and (M % 2 or S % 2):
            raise ValueError(f"packed=True needs even M and S, got M={M}, S={S}")
        self.N, self.M, self.T, self.S, self.packed = N, M, T, S, packed
        self.units = {"mat": Unit(kind="MAT", lanes=S, width=T, packed=packed),
                      "rmac": Unit(kind="RMAC", lanes=M, width=N, packed=packed),
                      "aux": Unit(kind="AUX", lanes=1, width=N)}
        sig = {}
        for u, unit in self.units.items():
            for name, member in unit.signature.members.items():
                if name in ("halted", "error", "error_op", "busy_cycles"):
                    continue
                sig[f"{u}_{name}"] = member
        sig.update(halted=Out(3), done=Out(1), error=Out(3), mat_busy=Out(32),
                   rmac_busy=Out(32))
        super().__init__(sig)

    @classmethod
    def from_config(cls, cfg, *, packed: bool | None = None) -> "Core":
        return cls(N=cfg.N, M=cfg.M, T=cfg.T, S=cfg.S,
                   packed=cfg.dsp_packing if packed is None else packed)

    def elaborate(self, platform):
        m = Module()
        for u, unit in self.units.items():
            m.submodules[u] = unit
            for name, member in unit.signature.members.items():
                if name in ("halted", "error", "error_op", "busy_cycles"):
                    continue
                outer = getattr(self, f"{u}_{name}")
                inner = getattr(unit, name)
                wiring.connect(m, wiring.flipped(outer), inner)
        us = [self.units[u] for u in UNIT_NAMES]
        m.d.comb += [self.halted.eq(Cat(*[u.halted for u in us])),
                     self.done.eq(Cat(*[u.halted for u in us]).all()),
                     self.error.eq(Cat(*[u.error for u in us])),
                     self.mat_busy.eq(self.units["mat"].busy_cycles),
                     self.rmac_busy.eq(self.units["rmac"].busy_cycles)]
        return m
