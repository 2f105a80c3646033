"""Run a network through the whole accelerator's RTL (``hw.system.Accelerator``) in cocotb.

``run_accelerator(prog, cfg, x, simulator, workdir)`` compiles ``prog`` for ``cfg``, builds the
accelerator's Verilog for ``cfg`` (one build per config and simulator, whatever the Binary:
nothing of the Binary is in the bitstream), runs ``tb.system.cocotb_accel`` (the CPU and the DDR
as cocotbext-axi models) and returns its record (status, error code, performance counters, wall
time) with ``perf_cycles``, the cycle model's count for the same Binary (its shared-channel
DRAM model at the config's latency), and ``perf_axi_cycles``, the AXI-level model
(``sim.timing.axi_system(axi_ports)``) of the same run: at the shortest read latency the AXI memory model
showed, and with the testbench CPU's measured service time of a ``HOST_LN`` (``STATUS.HOST_REQ``
high, ``tb.system.trace.host_service``) in place of the config's board-CPU figure
(``host_overhead_cycles + host_cycles_per_elem * C``): the model then describes the machine the
RTL ran in, not a ZCU102's CPU.

``trace=True`` also records when every instruction was taken (``tb.system.trace.record``) and
adds ``trace_diff``, the per-queue comparison with ``sim.perf``'s own times
(``python -m tb.system.run --trace``, docs/system.md "Cycles"); ``trace="bursts"`` also adds
``read_bursts``, every read burst on ``m_axi`` (AR cycle, manager, address, beats, first and
last data cycle).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["run_accelerator", "accelerator_for", "model_config"]


def accelerator_for(cfg, binary=None, **kw):
    """The Accelerator for ``cfg``, with a semaphore file large enough for ``binary``;
    hierarchical (``hw.hier``, as the board build writes it) unless ``hierarchy=False``."""
    kw.setdefault("hierarchy", True)
    from hw.system.accelerator import Accelerator
    from sim.funcsim import build_queues
    sems = kw.pop("sems", None)
    if sems is None:
        used = [i["sem"] for v in build_queues(binary).values() for i, _ in v
                if i.op in ("WAIT", "SIGNAL")] if binary is not None else [0]
        sems = max(64, 1 << max(used).bit_length())
    return Accelerator(config=cfg, sems=sems, **kw)


def run_accelerator(prog, cfg, x, simulator: str, workdir, *, case: str = "run",
                    pause: bool = False, seed: int = 1, timeout_s: float = 3600,
                    sems: int | None = None, extra: dict | None = None,
                    axi_ports: int = 1, buffers: str = "behavioural",
                    banks: int = 8, hierarchy: bool = True, trace: bool = False) -> dict:
    """Compile ``prog`` for ``cfg``, run it on input ``x`` through the Accelerator's Verilog on
    ``simulator`` (cocotb: ``tb.system.cocotb_accel`` checks the outputs bit for bit) and return
    its record (counters, cycles, ``perf_cycles``, ``perf_axi_cycles``). ``buffers`` and
    ``banks``: the Accelerator's global-buffer implementation, ``axi_ports`` its AXI manager
    ports (``hw.system.accelerator``); ``hierarchy``: the Verilog with the core and the global
    buffers as modules of their own (``hw.hier``: what ``python -m hw verilog accelerator`` and
    ``hw build zcu102`` write; the default) or flat (False); ``trace``: see the module doc."""
    from sim import compile as sc
    from sim import perf, timing
    from tb.rtl import REPO_ROOT, run_cocotb

    workdir = Path(workdir)
    binary = sc.compile(prog, cfg)
    if axi_ports > 2:       # several LD engines: the compiler's guarantee they rely on
        from sim.checks import check_ld_order
        check_ld_order(binary)
    bpath, xpath = workdir / "binary.npz", workdir / "x.npy"
    binary.save(bpath)
    np.save(xpath, np.asarray(x))
    kw = {"buffers": buffers, "banks": banks}   # explicit: a preset may default to others
    acc = accelerator_for(cfg, binary, sems=sems, axi_ports=axi_ports, hierarchy=hierarchy,
                          **kw)
    name = "accelerator"
    run_cocotb(component=acc, name=name, test_module="tb.system.cocotb_accel",
               simulator=simulator, timeout_s=timeout_s, seed=seed,
               params=dict(binary=str(bpath), input=str(xpath), case=case, pause=pause,
                           seed=seed, **({"trace": trace if trace == "bursts" else 1}
                                         if trace else {}), **(extra or {})))
    runs = sorted((REPO_ROOT / "build" / "rtl" / simulator).glob(
        f"{name}-*/run-{os.getpid()}/accel.json"), key=lambda f: f.stat().st_mtime)
    rec = json.loads(runs[-1].read_text())
    rec["perf_cycles"] = int(perf.simulate(binary).cycles)
    if rec.get("read_latency_min") is not None:
        # the AXI-level model with the memory model's latency as seen in this run: the shortest
        # AR-to-first-beat time (longer ones include waiting behind earlier bursts, which the
        # model adds itself), and the testbench CPU's host time (model_config)
        b2 = dataclasses.replace(binary, cfg=model_config(cfg, rec))
        env = timing.axi_system(axi_ports)
        rec["perf_axi_cycles"] = int(perf.simulate(b2, env=env).cycles)
        if rec.get("trace") is not None:
            from tb.system.trace import diff, model_takes
            rec["trace_diff"] = diff(b2, rec["trace"], model_takes(b2, env))
    return rec


def model_config(cfg, rec: dict):
    """``cfg`` as the RTL run of ``rec`` saw it, for ``sim.perf`` at the AXI level: the memory
    model's shortest read latency, and the testbench CPU's mean HOST_LN service time as the
    host's whole cost (the config's figures describe the board's CPU)."""
    kw = {"dram_latency_cycles": int(rec["read_latency_min"])}
    host = rec.get("host_service_cycles")
    if host:
        kw.update(host_overhead_cycles=round(sum(host) / len(host)), host_cycles_per_elem=0)
    return cfg.replace(**kw)


def add_network_args(ap) -> None:
    """``--model``, ``--config``, ``--seed``: the network run by ``python -m tb.system.run``
    and ``python -m tb.system.fast``."""
    ap.add_argument("--model", default="tiny",
                    help="sim.zoo network: tiny (default) or an EfficientViT name like b0-r64")
    ap.add_argument("--config", default="small:L=1",
                    help="accelerator config (default small:L=1: N=M=T=S=4, one core)")
    ap.add_argument("--seed", type=int, default=3, help="random input image seed (default 3)")


def network_from_args(ap, args):
    """``(cfg, prog, x)`` of :func:`add_network_args`' options: the config, the ``sim.zoo``
    program and its quantized random input; a bad config or model name exits 2 in one line."""
    from sim import golden, zoo
    from sim.config import AccelConfig, ConfigError
    try:
        cfg = AccelConfig.from_string(args.config)
        prog = zoo.tiny() if args.model == "tiny" else zoo.build(args.model)
    except (ConfigError, ValueError) as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    t = prog.tensors[prog.inputs[0]]
    return cfg, prog, golden.quantize_input(zoo.random_image(t.shape[-1], seed=args.seed), t)


def main(argv=None) -> int:
    """``python -m tb.system.run``: one network through the whole accelerator's RTL."""
    import argparse
    import tempfile
    import time

    ap = argparse.ArgumentParser(prog="python -m tb.system.run", description=(
        "Run a sim.zoo network through the whole accelerator's Verilog (hw.system.Accelerator "
        "on Verilator, cocotbext-axi AxiRam as the DDR and AxiLiteMaster as the CPU) and compare "
        "its outputs bit for bit with sim.golden and sim.funcsim; report the RTL's cycle "
        "counter next to sim.perf. The Verilator build is cached per config under build/rtl/ "
        "(the first run of a config builds for several minutes)."))
    add_network_args(ap)
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--pause", action="store_true", help="random AXI back-pressure")
    ap.add_argument("--axi-ports", type=int, default=1, choices=(1, 2, 3, 4),
                    help="AXI4 manager ports (P > 1: fetch and ST on m_axi, P - 1 LD engines "
                         "on the others; default 1)")
    ap.add_argument("--buffers", default="behavioural", choices=("behavioural", "banked"),
                    help="global buffers: behavioural (default) or banked (BRAM-like banks, "
                         "cores with backpressure)")
    ap.add_argument("--banks", type=int, default=8, help="banks of the banked buffers (8)")
    ap.add_argument("--flat", action="store_true",
                    help="flat Verilog (every core in full) instead of the core and the global "
                         "buffers as modules of their own (hw.hier, the default)")
    ap.add_argument("--trace", action="store_true",
                    help="record every instruction's take cycle and print where the RTL and "
                         "sim.perf differ, per queue (tb.system.trace)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    cfg, prog, x = network_from_args(ap, args)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rec = run_accelerator(prog, cfg, x, args.simulator, tmp, pause=args.pause,
                                  seed=args.seed, axi_ports=args.axi_ports,
                                  buffers=args.buffers, banks=args.banks,
                                  hierarchy=not args.flat, trace=args.trace)
        except AssertionError as e:
            msg = str(e).splitlines()[0][:500]
            print(json.dumps({"ok": False, "error": msg}) if args.json else f"FAILED: {msg}")
            return 1
    c = rec["counters"]
    out = {"ok": rec["status"] == "done", "model": args.model, "config": cfg.describe(),
           "buffers": args.buffers if args.buffers == "behavioural" else
           f"banked ({args.banks} banks)",
           "bit_exact": True, "rtl_cycles": c["CYCLES"], "perf_cycles": rec["perf_cycles"],
           "cycle_diff": (c["CYCLES"] - rec["perf_cycles"]) / rec["perf_cycles"],
           "perf_axi_cycles": rec.get("perf_axi_cycles"),
           "axi_cycle_diff": (c["CYCLES"] - rec["perf_axi_cycles"]) / rec["perf_axi_cycles"]
           if rec.get("perf_axi_cycles") else None,
           "read_latency": rec.get("read_latency_min"),
           "host_service_cycles": rec.get("host_service_cycles"),
           "sim_cycles_per_s": rec["cycles_per_s"], "run_seconds": rec["wall_s"],
           "total_seconds": time.perf_counter() - t0, "host_requests": rec["host_requests"],
           "axi_bursts": rec["bursts"], "bursts_per_port": rec.get("bursts_per_port"),
           "axi_ports": rec.get("axi_ports"),
           "counters": c}
    if args.trace and rec.get("trace_diff") is not None:
        from tb.system.trace import format_diff
        out["trace_diff"] = rec["trace_diff"]
        if not args.json:
            print(format_diff(rec["trace_diff"]))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.model} on {out['config']}: outputs bit-exact with sim.golden and "
              f"sim.funcsim; RTL {out['rtl_cycles']} cycles, sim.perf at the AXI level "
              f"{out['perf_axi_cycles']} ({out['axi_cycle_diff']:+.2%}; read latency "
              f"{out['read_latency']}, host LayerNorm {out['host_service_cycles']} cycles), "
              f"sim.perf's DRAM model {out['perf_cycles']} "
              f"({out['cycle_diff']:+.1%}); {out['sim_cycles_per_s']:.0f} simulated cycles/s; "
              f"{out['axi_bursts']} AXI bursts")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
