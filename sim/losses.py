"""Where a layer's cycles go beyond its MACs: a per-layer loss breakdown of one timed Binary.

``python -m sim perf --model b1-r224 --config zcu102 --losses`` prints it for the depthwise,
grouped-pointwise and attention layers (``--losses KIND,KIND`` for others; docs/perf.md
"Depthwise and attention utilisation"). Everything is read from the Binary's instructions
(the layer registers each unit holds at a compute instruction, its fields) timed by
:func:`sim.timing.compute_timing`, the instructions' fetch cycles of one :func:`sim.perf.simulate`
trace and the layer's attributed cycles (:func:`sim.perf.attribute`); nothing is estimated.

For a layer whose compute instructions run on the cores' MAT and R-MAC, the levels are

* ``ideal`` = MACs / all multipliers (``(N*M + T*S) * L``): the layer's term of the compute
  bound;
* ``unit`` = max over the engine kinds ``u`` it uses of MACs on ``u`` / multipliers of ``u``:
  a depthwise conv runs on the R-MAC only, so it is 2 x ideal at N*M = T*S (the MAT idles);
* ``padded`` = max over ``u`` of the engine steps on ``u`` averaged over the L cores: the
  lanes a step does not fill (14 pixels of a row on two passes of M = 8 lanes; channels in
  blocks of N; an attention's ATT_DIV on one MAT lane, ``ceil(d/T)`` steps per token);
* ``slowest`` = max over cores and units of the steps: the split over the cores;
* ``fixed`` = max over cores and units of the unit's busy cycles (steps + each instruction's
  pre, post, drain and drain stalls): the per-tile fill and drain;
* ``path`` = max over cores of the cycles in which at least one unit of the core runs a
  compute instruction of the layer: adds the serialisation of the core's units inside the
  layer (the attention's ATT_OUT on the MAT waits for ATT_KV on the R-MAC of the same head);
* ``cycles`` = the attributed cycles of the per-layer table (each cycle shared among the
  layers running in it): differs from ``path`` by the cycles no unit of the slowest core
  works on the layer but that are charged to it (waits for DRAM, a slot, another core) and,
  negatively, by other layers running at the same time (a fused chain, the attention's
  first heads beside the aggregation).

Each loss is the difference of consecutive levels, so ``ideal`` + the losses = ``cycles``.
The MACs per instruction (``instr_macs``: products the instruction forms, padding lanes
excluded) sum to :func:`sim.zoo.node_macs` of the layer, or more where a fused chain's first
pointwise conv recomputes the depthwise conv's halo rows (that excess counts as padding).
"""

from __future__ import annotations

from collections import defaultdict

from . import timing
from .funcsim import CORE_UNITS, build_queues
from .isa import REG_NAMES

__all__ = ["instr_macs", "layer_losses", "LOSS_COLUMNS", "print_losses", "DEFAULT_KINDS"]

#: the layer kinds ``--losses`` shows without an argument
DEFAULT_KINDS = ("depthwise", "grouped_pointwise", "attention")

#: (key, header): the levels after ``ideal``, the loss column of each is ``level - previous``
LOSS_COLUMNS = (("unit", "1 engine"), ("padded", "padding"), ("slowest", "cores"),
                ("fixed", "fixed"), ("path", "serial"), ("cycles", "other"))


def instr_macs(op: str, regs: dict, f: dict) -> int:
    """Multiply-accumulates of compute instruction ``op`` that the IntProgram counts (padding
    lanes and channels excluded): conv ``nco * CIN * k*k * pixels`` (``CIN`` per group),
    depthwise ``nco * k*k * pixels``, attention step i and iii ``d*d*n``, the divisor
    ``Q . ksum`` ``d*n``; the adder tree's sums (ATT_KSUM, POOL) are no MACs."""
    if op in ("CONV_MAT", "CONV_RDF"):
        k = regs["KERNEL"]
        return f["nco"] * regs["CIN"] * k * k * f["ho"] * regs["WOUT"]
    if op == "DW_RSA":
        return f["nco"] * regs["KERNEL"] ** 2 * f["ho"] * regs["WOUT"]
    if op in ("ATT_KV_RDF", "ATT_KV_MAT", "ATT_OUT"):
        return regs["DIM"] ** 2 * regs["NTOK"]
    if op == "ATT_DIV":
        return regs["DIM"] * regs["NTOK"]
    return 0


def _union(iv) -> int:
    """Cycles covered by the intervals ``[a, b)``."""
    tot, end = 0, None
    for a, b in sorted(iv):
        if end is None or a >= end:
            tot, end = tot + b - a, b
        elif b > end:
            tot, end = tot + b - end, b
    return tot


def layer_losses(binary, report, trace) -> list[dict]:
    """Per layer of ``report`` (:func:`sim.perf.simulate` of ``binary`` with ``trace``, one
    frame) with compute instructions: ``{"name", "kind", "macs", "ideal", "unit", "padded",
    "slowest", "fixed", "path", "cycles", "units"}`` (the levels of the module doc, in cycles;
    ``units``: the engine kinds it ran on)."""
    cfg = binary.cfg
    mult = {"MAT": cfg.S * cfg.T, "RMAC": cfg.N * cfg.M}
    total_mult = (mult["MAT"] + mult["RMAC"]) * cfg.L
    # fetch / next-fetch of every instruction, per queue in program order
    times = defaultdict(list)
    for e in trace:
        times[(e[0], e[1])].append((e[4], e[5]))
    steps = defaultdict(int)            # (layer, core, unit) -> engine steps
    busy = defaultdict(int)             # (layer, core, unit) -> occupied cycles
    macs_u = defaultdict(int)           # (layer, unit) -> MACs
    ivs = defaultdict(list)             # (layer, core) -> [(fetch, next fetch)] of its units
    for (s, u), q in build_queues(binary).items():
        if u not in CORE_UNITS:
            continue
        regs, tq = {}, times[(s, u)]
        if len(tq) != len(q):
            raise ValueError(f"{s}/{u}: the trace has {len(tq)} instructions, the queue "
                             f"{len(q)} (a trace of one frame is needed)")
        for (ins, tag), (t0, t1) in zip(q, tq):
            if ins.op == "SETR":
                regs[REG_NAMES[ins["reg"]]] = ins["value"]
                continue
            if ins.op not in timing.COMPUTE_OPS or tag < 0:
                continue
            ct = timing.compute_timing(cfg, ins.op, regs, ins.f)
            steps[(tag, s, u)] += ct.steps
            busy[(tag, s, u)] += ct.cycles
            macs_u[(tag, u)] += instr_macs(ins.op, regs, ins.f)
            ivs[(tag, s)].append((t0, t1))
    out = []
    for li, lp in enumerate(report.layers):
        units = sorted({u for (t, u) in macs_u if t == li} |
                       {u for (t, _, u) in steps if t == li})
        if not units:
            continue
        macs = sum(macs_u[(li, u)] for u in units)
        if macs < lp.macs:
            raise ValueError(f"{lp.name}: the instructions' MACs {macs} < the layer's "
                             f"{lp.macs}")
        # a fused chain's first PW recomputes the DW's halo rows (more MACs than the layer's):
        # the layer's MACs split over the units as formed, the recomputation is padding
        sc = lp.macs / macs if macs else 0.0
        eng = [u for u in units if u in mult]
        ideal = lp.macs / total_mult
        unit = max([sc * macs_u[(li, u)] / (mult[u] * cfg.L) for u in eng] or [0.0])
        padded = max([sum(v for (t, _, uu), v in steps.items() if t == li and uu == u) / cfg.L
                      for u in units] or [0.0])
        slowest = max(v for (t, _, _), v in steps.items() if t == li)
        fixed = max(v for (t, _, _), v in busy.items() if t == li)
        path = max(_union(v) for (t, _), v in ivs.items() if t == li)
        # each level at least the previous (the MAT-less AUX steps of an attention are no
        # engine steps but still set the padded level)
        lv = [ideal, max(ideal, unit)]
        for v in (padded, slowest, fixed, path):
            lv.append(max(lv[-1], v))
        out.append(dict(name=lp.name, kind=lp.kind, macs=lp.macs, ideal=lv[0], unit=lv[1],
                        padded=lv[2], slowest=lv[3], fixed=lv[4], path=lv[5],
                        cycles=float(lp.cycles), units="+".join(units)))
    return out


def print_losses(rows: list[dict], *, kinds=DEFAULT_KINDS, console=None, title: str = ""):
    """The loss table of :func:`layer_losses` for the layers of ``kinds``, with a total row."""
    from rich.console import Console
    from rich.table import Table
    con = console or Console(width=220)
    sel = [r for r in rows if r["kind"] in kinds]
    t = Table(title=title or "cycles per cause (sim.losses; each loss = level - previous "
              "level, ideal + losses = cycles)")
    for c in ("layer", "kind", "units", "MMAC", "ideal") + tuple(h for _, h in LOSS_COLUMNS) \
            + ("cycles", "util %"):
        t.add_column(c, justify="left" if c in ("layer", "kind", "units") else "right")

    def cells(r):
        prev, out = r["ideal"], []
        for k, _ in LOSS_COLUMNS:
            out.append(f"{r[k] - prev:.0f}")
            prev = r[k]
        return out
    tot = defaultdict(float)
    for r in sel:
        t.add_row(r["name"][-56:], r["kind"], r["units"], f"{r['macs'] / 1e6:.2f}",
                  f"{r['ideal']:.0f}", *cells(r), f"{r['cycles']:.0f}",
                  f"{100 * r['ideal'] / r['cycles']:.0f}" if r["cycles"] else "-")
        for k in ("macs", "ideal") + tuple(k for k, _ in LOSS_COLUMNS):
            tot[k] += r[k]
    if sel:
        t.add_row("total", "", "", f"{tot['macs'] / 1e6:.2f}", f"{tot['ideal']:.0f}",
                  *cells(tot), f"{tot['cycles']:.0f}",
                  f"{100 * tot['ideal'] / tot['cycles']:.0f}" if tot["cycles"] else "-")
    con.print(t)
