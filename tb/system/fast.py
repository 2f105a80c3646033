"""The real accelerator with its DRAM in HDL: whole networks in RTL without Python per beat.

``FastSystem`` puts :class:`hw.system.Accelerator` (dispatcher, LD/ST DMA as AXI4 managers,
register block, semaphores, global buffers, L cores: the synthesizable design, unchanged) and
:class:`tb.system.axi_mem.AxiMemory` (a simulation-only AXI4 memory on its ``m_axi``) in one
design. Python plays only the CPU, as the board runtime does (``runtime.Accelerator`` over
:class:`runtime.cocotb_device.CocotbMemoryDevice`, ``tb.system.cocotb_fast``): register accesses
over AXI4-Lite, the Binary placed into the memory and the outputs read back through its debug
port, the HOST_LN served on a ``HOST_REQ`` interrupt; between those the simulator runs alone.

:func:`run_fast` compiles (or takes) a Binary, builds the Verilog (one build per config and
memory size, whatever the Binary: nothing of it is in the design), runs it on Icarus or
Verilator, checks the outputs bit for bit against ``sim.golden`` and ``sim.funcsim`` (inside the
cocotb test) and returns the record with ``sim.perf``'s cycles for the same Binary at the
memory's read latency (``sim.timing.axi_system(axi_ports)`` as :func:`model_env` adapts it to this
memory's AR queue). ``python -m tb.system.fast`` is its command
line. docs/system.md, "The DRAM in HDL".
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.params import check_int, check_pow2
from hw.system.axi import axi4_lite_signature
from sim.isa import SEM_IDS

from .axi_mem import STORAGES, AxiMemory

__all__ = ["FastSystem", "run_fast", "model_env", "memory_bytes", "BASE", "MIN_MEMORY", "OPTS", "DEFAULT_OPT",
           "PAPER16", "PAPER16_BUILD"]

BASE = 0x1000           #: bus address of the runtime's buffer (4 KiB aligned; 0 stays unused)
MIN_MEMORY = 1 << 20    #: smallest memory built, so that small Binaries share one build
#: the C++ optimisation levels of the Verilator model :func:`run_fast` accepts (``-CFLAGS``,
#: after ``tb.rtl``'s ``-O0``: the last one counts)
OPTS = (0, 1, 2)
DEFAULT_OPT = 0
#: the paper's point (N = M = T = S = 8, L = 16) with the DRAM this testbench has: one 128-bit
#: AXI port, 16 B per cycle. (``paper`` itself assumes four HP ports, 64 B/cycle; the config's
#: figure sets buffer A's line and the compiler's schedule, so it must match what the ports move.)
PAPER16 = "paper:dram_bytes_per_cycle=16"
#: :func:`run_fast`'s build options for every network on :data:`PAPER16`, so that they share one
#: Verilator build (most of an hour): a memory for B1-R224's 17.6 MB, the board build's semaphore
#: file, a 1 KiB debug port (loading costs one clock cycle of the whole design per access) and
#: the C++ at -O1
PAPER16_BUILD = dict(mem_bytes=32 << 20, sems=SEM_IDS, dbg_words=64, opt=1)


def memory_bytes(binary) -> int:
    """The memory a Binary needs: a power of two holding :data:`BASE` plus the runtime's
    layout of it (instruction image, then the data image), at least :data:`MIN_MEMORY`."""
    from runtime.runner import layout
    need = BASE + layout(binary).end
    return max(MIN_MEMORY, 1 << (need - 1).bit_length())


class FastSystem(wiring.Component):
    """``Accelerator`` + ``AxiMemory`` (see the module doc).

    Parameters (keyword-only)
    -------------------------
    accelerator : hw.system.Accelerator
        The accelerator (any ``axi_ports``: its ``m_axi`` on the memory's ``bus``, each
        further, read-only, manager ``m_axi{k}`` on the memory's read port ``rbus{k}``: one
        DDR behind several HP ports).
    mem_bytes : int
        Memory size in bytes (power of two, at least 64 KiB), from bus address 0.
    latency : int
        The memory's read latency in cycles (AR handshake to first beat) and write-response
        latency (last W beat to B).
    outstanding : int
        Read (and write) requests the memory queues.
    dbg_words : int
        128-bit words per debug access.
    storage : "verilog" or "memory"
        The memory's array (``tb.system.axi_mem``): ``verilog`` for cocotb runs (the module
        :data:`tb.system.axi_mem.VERILOG` must be built with the design), ``memory`` for
        ``amaranth.sim``.

    Ports
    -----
    s_axi : In(AXI4-Lite, 12-bit address, 32-bit data)   the accelerator's register block
    irq : Out(1)   its interrupt
    dbg_addr, dbg_rdata, dbg_wdata, dbg_wstrb   the memory's debug port (word addresses)
    """

    def __init__(self, *, accelerator, mem_bytes: int, latency: int = 16,
                 outstanding: int = 8, dbg_words: int = 8, storage: str = "verilog"):
        from hw.system.accelerator import DATA_WIDTH, Accelerator
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be a hw.system.Accelerator, got {accelerator!r}")
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.acc = accelerator
        self.mem_bytes = check_pow2("mem_bytes", mem_bytes, lo=1 << 16,
                                    hi=1 << min(accelerator.addr_width, 34))
        self.latency = check_int("latency", latency, 1, 4096)
        self.dbg_words = check_int("dbg_words", dbg_words, 1, 64)
        self.mem = AxiMemory(depth=mem_bytes // (DATA_WIDTH // 8), data_width=DATA_WIDTH,
                             addr_width=accelerator.addr_width, latency=latency,
                             outstanding=outstanding, dbg_words=dbg_words, storage=storage,
                             read_ports=accelerator.axi_ports)
        super().__init__({"s_axi": In(axi4_lite_signature(addr_width=12, data_width=32)),
                          "irq": Out(1),
                          **{n: self.mem.signature.members[n] for n in
                             ("dbg_addr", "dbg_rdata", "dbg_wdata", "dbg_wstrb")}})

    @property
    def modules(self) -> dict:
        """The accelerator's modules converted once each (``hw.hier``; empty when it is flat):
        ``hw.hier.convert`` emits them beside this top."""
        return getattr(self.acc, "modules", None) or {}

    def clocked(self, module: str, flag: bool) -> None:
        """Passed on to the accelerator (``hw.hier.convert_modules``)."""
        self.acc.clocked(module, flag)

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = acc = self.acc
        m.submodules.mem = mem = self.mem
        wiring.connect(m, acc.m_axi, mem.bus)
        for k in range(1, acc.axi_ports):
            wiring.connect(m, getattr(acc, f"m_axi{k}"), getattr(mem, f"rbus{k}"))
        wiring.connect(m, wiring.flipped(self.s_axi), acc.s_axi)
        m.d.comb += [self.irq.eq(acc.irq), mem.dbg_addr.eq(self.dbg_addr),
                     self.dbg_rdata.eq(mem.dbg_rdata), mem.dbg_wdata.eq(self.dbg_wdata),
                     mem.dbg_wstrb.eq(self.dbg_wstrb)]
        return m


def _top_only_vlt(directory, top: str) -> Path:
    """A Verilator control file making the signals of module ``top`` (its ports) public and
    writable: with ``--no-public-flat-rw`` everything else is then Verilator's to optimise."""
    from sim.fileio import atomic_write
    path = Path(directory) / f"{top}_ports.vlt"
    text = f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n'
    if not path.exists() or path.read_text() != text:
        atomic_write(path, text)
    return path


def model_env(outstanding: int, axi_ports: int = 1):
    """``sim.perf``'s environment for a :class:`FastSystem` whose memory queues ``outstanding``
    read requests per port, for an accelerator with ``axi_ports`` ports:
    ``sim.timing.axi_system(axi_ports)`` (whose ``AxiDma.ar_queue = 2`` is cocotbext-axi
    ``AxiRam``'s AR queue) without the AR-queue limit when the memory has room for every read
    burst the accelerator can have in flight on a port (the LD engine's and the dispatcher's):
    then ``AxiMemory`` never refuses an AR."""
    from sim import timing
    env = timing.axi_system(axi_ports)
    if outstanding >= env.axi.outstanding + env.fetch.outstanding:
        env = dataclasses.replace(env, axi=dataclasses.replace(env.axi, ar_queue=None))
    return env


def run_fast(binary, x, simulator: str, workdir, *, latency: int = 16,
             mem_bytes: int | None = None, dbg_words: int = 8, timeout_s: float = 3600,
             max_cycles: int = 100_000_000, seed: int = 1, public: bool = False,
             opt: int = DEFAULT_OPT, frames: int = 1, **acc_kw) -> dict:
    """Run ``binary`` (a :class:`sim.compile.Binary`) on integer input ``x`` through
    :class:`FastSystem` on ``simulator``; the cocotb test asserts the outputs equal
    ``sim.golden`` and ``sim.funcsim``. ``acc_kw``: further ``Accelerator`` parameters.

    Returns the cocotb test's record: ``status``, ``counters`` (the register block's, read by
    the runtime), ``cycles`` (``CYCLES``), ``host_requests``, the wall times of the load, the
    run and the read-out (``load_s``, ``run_s``, ``read_s``), ``cycles_per_s`` (simulated
    cycles per wall second of the run), and ``perf_cycles`` (``sim.perf`` with the AXI-level
    DMA, :func:`model_env`, at the memory's ``latency``). Verilator is built with
    ``--no-public-flat-rw`` and only the top's ports public (all this testbench touches), so it
    optimises the inside: about 9x the simulated cycles per CPU second of a ``--public-flat-rw``
    build (docs/system.md); ``public=True`` builds as every other model. ``opt``: the C++
    compiler's optimisation level of the Verilator model (:data:`OPTS`, ``-O<opt>``; ``tb.rtl``
    builds every model at ``-O0``, which compiles fastest and runs slowest);
    Icarus ignores it. ``frames``: run the Binary that many times back to back (``FRAMES``;
    ``perf_cycles`` is then ``sim.perf``'s with ``frames``, ``perf_frame_done`` its frames'
    completion cycles)."""
    from sim import perf
    from tb.rtl import REPO_ROOT, run_cocotb
    from tb.system.axi_mem import write_verilog
    from tb.system.run import accelerator_for

    if opt not in OPTS:
        raise ValueError(f"opt must be one of {OPTS}, got {opt!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bpath, xpath = workdir / "binary.npz", workdir / "x.npy"
    binary.save(bpath)
    np.save(xpath, np.asarray(x))
    size = mem_bytes or memory_bytes(binary)
    acc = accelerator_for(binary.cfg, binary, **acc_kw)
    top = FastSystem(accelerator=acc, mem_bytes=size, latency=latency, dbg_words=dbg_words)
    models = REPO_ROOT / "build" / "rtl" / "models"
    ram_v = write_verilog(models)
    name = "fast_system"
    sources = [ram_v]
    private = simulator == "verilator" and not public
    if private:
        sources.append(_top_only_vlt(models, name))
    import time
    t0 = time.perf_counter()
    run_cocotb(component=top, name=name, test_module="tb.system.cocotb_fast",
               simulator=simulator, timeout_s=timeout_s, seed=seed, sources=sources,
               verilator_args=(("--no-public-flat-rw",) if private else ())
               + (("-CFLAGS", f"-O{opt}") if simulator == "verilator" and opt else ()),
               params=dict(binary=str(bpath), input=str(xpath), base=BASE, mem_bytes=size,
                           dbg_words=dbg_words, max_cycles=max_cycles, frames=frames))
    runs = sorted((REPO_ROOT / "build" / "rtl" / simulator).glob(
        f"{name}-*/run-{os.getpid()}/fast.json"), key=lambda f: f.stat().st_mtime)
    rec = json.loads(runs[-1].read_text())
    # the rest of run_cocotb's wall time: the Verilog conversion, the build when it is not
    # cached, the simulator's start and the cocotb test's set-up
    rec["setup_s"] = time.perf_counter() - t0 - rec["load_s"] - rec["run_s"] - rec["read_s"]
    cfg = binary.cfg.replace(dram_latency_cycles=latency)
    host = rec.get("host_service_cycles")
    if host:        # the testbench CPU's measured HOST_LN time, as tb.system.run.model_config
        cfg = cfg.replace(host_overhead_cycles=round(sum(host) / len(host)),
                          host_cycles_per_elem=0)
    b2 = dataclasses.replace(binary, cfg=cfg)
    rep = perf.simulate(b2, env=model_env(top.mem.outstanding, acc.axi_ports), frames=frames)
    rec["perf_cycles"] = int(rep.frame_done[-1]) if frames > 1 else int(rep.cycles)
    rec["perf_frame_done"] = rep.frame_done
    rec.update(latency=latency, mem_bytes=size, dbg_words=dbg_words, opt=opt,
               sems=acc.sems, axi_ports=acc.axi_ports)
    return rec


def main(argv=None) -> int:
    """``python -m tb.system.fast``: one network through the accelerator with the DRAM in HDL."""
    import argparse
    import tempfile
    import time

    from sim import compile as sc
    from tb.system.run import add_network_args, network_from_args
    ap = argparse.ArgumentParser(prog="python -m tb.system.fast", description=(
        "Run a sim.zoo network through the whole accelerator's Verilog (hw.system.Accelerator) "
        "with the DRAM in HDL (tb.system.axi_mem.AxiMemory) and the board runtime as the CPU; "
        "compare the outputs bit for bit with sim.golden and sim.funcsim and report the RTL's "
        "cycle counter next to sim.perf (AXI-level DMA at the memory's latency). The build is "
        "cached per config and memory size under build/rtl/ (the first run of a config builds "
        "for several minutes)."))
    add_network_args(ap)
    ap.add_argument("--latency", type=int, default=16,
                    help="the memory's read latency in cycles (default 16)")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--public", action="store_true",
                    help="build Verilator with --public-flat-rw as every other model (about 9x "
                         "slower; default: only the top's ports public)")
    ap.add_argument("--opt", type=int, default=DEFAULT_OPT, choices=OPTS,
                    help=f"C++ optimisation level of the Verilator model (default "
                         f"{DEFAULT_OPT}; 1 builds longer and runs faster: docs/system.md)")
    ap.add_argument("--dbg-words", type=int, default=8,
                    help="128-bit words per access of the memory's debug port, through which the "
                         "Binary is loaded (default 8; 64 loads 8x faster; part of the build)")
    ap.add_argument("--mem-bytes", type=int, default=None,
                    help="memory size in bytes, a power of two (default: the smallest holding "
                         "the Binary, at least 1 MiB; part of the build)")
    ap.add_argument("--sems", type=int, default=None,
                    help="semaphores of the accelerator (default: enough for the Binary; part "
                         "of the build)")
    ap.add_argument("--axi-ports", type=int, default=1, choices=(1, 2, 3, 4),
                    help="the accelerator's AXI ports (P > 1: P - 1 LD engines, each on a read "
                         "port of the memory of its own; default 1; part of the build)")
    ap.add_argument("--buffers", default=None, choices=("behavioural", "banked", "word"),
                    help="the accelerator's global buffers (default: the config's, "
                         "hw.system.accelerator.default_buffers: word for zcu102-l1, else "
                         "behavioural; part of the build)")
    ap.add_argument("--layout", default=None, choices=("planar", "blocked"),
                    help="the compile's activation layout (default: blocked on word buffers, "
                         "which serve blocked Binaries only, else planar)")
    ap.add_argument("--timeout", type=float, default=3600,
                    help="wall-clock limit of the simulation in seconds (default 3600)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    cfg, prog, x = network_from_args(ap, args)
    from hw.system.accelerator import default_buffers
    buffers = args.buffers or default_buffers(cfg)
    layout = args.layout or ("blocked" if buffers == "word" else "planar")
    t0 = time.perf_counter()
    binary = sc.compile(prog, cfg, layout=layout)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rec = run_fast(binary, x, args.simulator, tmp, latency=args.latency,
                           public=args.public, opt=args.opt, dbg_words=args.dbg_words,
                           mem_bytes=args.mem_bytes, sems=args.sems, timeout_s=args.timeout,
                           axi_ports=args.axi_ports, buffers=buffers)
        except AssertionError as e:
            msg = str(e).splitlines()[0][:500]
            print(json.dumps({"ok": False, "error": msg}) if args.json else f"FAILED: {msg}")
            return 1
    out = {"ok": rec["status"] == "done", "model": args.model, "config": cfg.describe(),
           "bit_exact": True, "rtl_cycles": rec["cycles"], "perf_cycles": rec["perf_cycles"],
           "cycle_diff": (rec["cycles"] - rec["perf_cycles"]) / rec["perf_cycles"],
           "latency": args.latency, "sim_cycles_per_s": rec["cycles_per_s"],
           "sim_cycles_per_cpu_s": rec["cycles_per_cpu_s"],
           "load_s": rec["load_s"], "run_s": rec["run_s"], "read_s": rec["read_s"],
           "setup_s": rec["setup_s"], "cpu_s": rec["cpu_s"], "opt": args.opt,
           "dbg_words": args.dbg_words, "mem_bytes": rec["mem_bytes"], "sems": rec["sems"],
           "total_s": time.perf_counter() - t0, "host_requests": rec["host_requests"],
           "axi_ports": args.axi_ports, "buffers": buffers, "layout": layout,
           "counters": rec["counters"]}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.model} on {out['config']}: outputs bit-exact with sim.golden and "
              f"sim.funcsim; RTL {out['rtl_cycles']} cycles, sim.perf {out['perf_cycles']} "
              f"({out['cycle_diff']:+.1%}, read latency {args.latency}); "
              f"{out['sim_cycles_per_s']:.0f} simulated cycles/s, "
              f"{out['sim_cycles_per_cpu_s']:.0f} per CPU second (run {out['run_s']:.1f} s, "
              f"load {out['load_s']:.1f} s, read-out {out['read_s']:.1f} s)")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
