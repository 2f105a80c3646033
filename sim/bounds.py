"""Compiler-independent performance bounds of one IntProgram on one AccelConfig.

Everything here is computed from the :class:`sim.intprogram.IntProgram` and the
:class:`sim.config.AccelConfig` only, never from a compiled Binary or a perf trace, so a compiler
change cannot move a bound (only the cycles measured against it).

What counts as a MAC (:func:`sim.zoo.node_macs`, the one definition)
--------------------------------------------------------------------
* ``conv`` (generic kxk, pointwise, grouped pointwise, depthwise): one MAC per weight per output
  pixel, ``Cout * Cin/groups * k * k * Ho * Wo`` (depthwise: ``C * k * k * Ho * Wo``; zero padding
  taps count, as the engines spend a multiplier on them);
* ``linear``: ``Cout * Cin``;
* ``linear_attention``: per head, step i ``ReLU(K)^T V`` (``d * d * n``), step iii ``Q S``
  (``d * d * n``) and step iv ``Q ksum`` (``d * n``), ``n = H * W`` tokens; the row sums of
  ReLU(K) (adder tree), the log2 quantisation and the division (a shift) are not MACs;
* ``global_avgpool``, ``concat``, ``layernorm``: no MACs (additions, aliasing, the host).

Multipliers: ``AccelConfig.multipliers = (N*M + T*S) * L``, every int8 multiplier of the R-MAC
(M lanes x N) and MAT (S lanes x T) engines of every core, one MAC per multiplier per cycle
(paper Sec. V: the R-MAC and MAT engines are the only multipliers; with DSP packing two of them
share one DSP48E2 and still do one MAC each per cycle). The adder tree of the auxiliary
processor is not a multiplier.

The bounds (cycles at the config clock; FPS = clock / cycles)
------------------------------------------------------------
compute
    ``ceil(total MACs / multipliers)``: every multiplier busy every cycle. A lower bound on the
    cycles of one frame for any schedule, and on the steady-state cycles per frame of any
    stream of frames.
traffic
    ``ceil(compulsory bytes / dram_bytes_per_cycle)``: every int8 weight once, every 32-byte
    parameter record once (:data:`sim.compile.PARAM_RECORD`: one per output channel of a conv,
    linear and pool, one per attention head), the network input once, the network outputs once
    (int32 logits: 4 bytes each), and the host LayerNorm's round trip (the accelerator has no
    normaliser, so the LN's input is stored to DRAM and its output loaded back, once each; the
    host's own float parameters are read by the CPU, not the accelerator's DMA, and do not
    count). A lower bound on one frame, and per frame of a stream in which each frame brings
    its weights on chip once (the same Binary replayed: ~5 MB of weights do not stay on chip).
per_layer
    ``sum over nodes of max(compute_l, compulsory_bytes_l / dram_bytes_per_cycle)``, with
    ``compute_l = MACs_l / multipliers`` (the host LayerNorm: its
    ``host_overhead_cycles + host_cycles_per_elem * C``) and the node's own compulsory bytes
    (its weights and parameter records, plus the network input / outputs / LN round trip where
    the node reads or writes them; activations between nodes stay on chip). It is the latency
    of a schedule that runs the nodes one after the other and overlaps each node's compulsory
    traffic with its own compute only. It is **not** a lower bound for every schedule: a
    compiler that prefetches a node's weights during an earlier compute-bound node can beat it
    (``sim.perf`` today does not; ``tests/test_bounds.py`` checks that).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Bounds", "LayerBound", "bounds", "node_compulsory_bytes", "param_records"]


@dataclass
class LayerBound:
    name: str
    kind: str
    macs: int
    compute_cycles: float      # MACs / multipliers (host LN: its host cycles)
    bytes: int                 # compulsory DRAM bytes of this node
    traffic_cycles: float      # bytes / dram_bytes_per_cycle
    cycles: float              # max of the two


@dataclass
class Bounds:
    model: str
    clock_mhz: float
    multipliers: int
    dram_bytes_per_cycle: int
    macs: int
    bytes: dict                # weights, params, input, output, host_ln -> bytes
    compute_cycles: int
    traffic_cycles: int
    per_layer_cycles: int
    layers: list

    @property
    def traffic_bytes(self) -> int:
        return int(sum(self.bytes.values()))

    def fps(self, cycles) -> float:
        return self.clock_mhz * 1e6 / cycles if cycles else float("inf")

    @property
    def compute_fps(self) -> float:
        return self.fps(self.compute_cycles)

    @property
    def traffic_fps(self) -> float:
        return self.fps(self.traffic_cycles)

    @property
    def per_layer_fps(self) -> float:
        return self.fps(self.per_layer_cycles)

    def fractions(self, cycles) -> dict:
        """Bound cycles / measured cycles (= measured FPS / bound FPS) for each bound."""
        return {"compute": self.compute_cycles / cycles, "traffic": self.traffic_cycles / cycles,
                "per_layer": self.per_layer_cycles / cycles}

    def summary(self) -> dict:
        return {"model": self.model, "macs": self.macs, "multipliers": self.multipliers,
                "dram_bytes_per_cycle": self.dram_bytes_per_cycle,
                "traffic_bytes": self.traffic_bytes, "traffic_bytes_by_kind": dict(self.bytes),
                "compute_cycles": self.compute_cycles, "compute_fps": self.compute_fps,
                "traffic_cycles": self.traffic_cycles, "traffic_fps": self.traffic_fps,
                "per_layer_cycles": self.per_layer_cycles, "per_layer_fps": self.per_layer_fps}

    def to_dict(self) -> dict:
        d = self.summary()
        d["layers"] = [asdict(l) for l in self.layers]
        return d


def param_records(prog, node) -> int:
    """32-byte parameter records the node needs on chip: one per output channel of a conv,
    linear or pool, one per attention head, none otherwise."""
    if node.op in ("conv", "linear"):
        return int(np.asarray(node.params["weight"]).shape[0])
    if node.op == "global_avgpool":
        return int(prog.tensors[node.output].shape[0])
    if node.op == "linear_attention":
        return int(prog.tensors[node.inputs[0]].shape[0] // (3 * int(node.attrs["dim"])))
    return 0


def _tensor_bytes(prog, name) -> int:
    t = prog.tensors[name]
    return int(np.prod(t.shape)) * (1 if t.bits <= 8 else 4)


def node_compulsory_bytes(prog, node) -> dict:
    """The node's compulsory DRAM bytes by kind (module doc, ``traffic``)."""
    from .compile import PARAM_RECORD
    out = {"weights": 0, "params": 0, "input": 0, "output": 0, "host_ln": 0}
    if node.op in ("conv", "linear"):
        out["weights"] = int(np.asarray(node.params["weight"]).size)
    out["params"] = PARAM_RECORD * param_records(prog, node)
    if node.op == "layernorm":
        # stored by the accelerator for the host, loaded back after it
        out["host_ln"] = _tensor_bytes(prog, node.inputs[0]) + _tensor_bytes(prog, node.output)
    for t in node.inputs:
        if t in prog.inputs:
            out["input"] += _tensor_bytes(prog, t)
    if node.output in prog.outputs:
        out["output"] += _tensor_bytes(prog, node.output)
    return out


def bounds(prog, cfg) -> Bounds:
    """The three bounds of ``prog`` on ``cfg`` (module doc)."""
    from .zoo import node_macs
    mults, rate = cfg.multipliers, cfg.dram_bytes_per_cycle
    tot = {"weights": 0, "params": 0, "input": 0, "output": 0, "host_ln": 0}
    layers, macs, per_layer = [], 0, 0.0
    seen_inputs = set()
    for n in prog.nodes:
        m = node_macs(prog, n)
        b = node_compulsory_bytes(prog, n)
        # a network input read by several nodes is loaded once in the whole-frame bound
        for t in n.inputs:
            if t in prog.inputs and t in seen_inputs:
                b["input"] -= _tensor_bytes(prog, t)
            seen_inputs.add(t)
        for k, v in b.items():
            tot[k] += v
        comp = m / mults
        if n.op == "layernorm":
            c = prog.tensors[n.inputs[0]].shape[0]
            comp = cfg.host_overhead_cycles + cfg.host_cycles_per_elem * c
        nb = sum(b.values())
        layers.append(LayerBound(n.name, n.kind, int(m), float(comp), int(nb), nb / rate,
                                 float(max(comp, nb / rate))))
        macs += m
        per_layer += max(comp, nb / rate)
    return Bounds(prog.meta.get("name", prog.meta.get("model", "?")), float(cfg.clock_mhz), mults,
                  rate, int(macs), tot, int(math.ceil(macs / mults)),
                  int(math.ceil(sum(tot.values()) / rate)), int(math.ceil(per_layer)), layers)
