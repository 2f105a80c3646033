"""The accelerator on a ZCU102 as a Vivado block design: ``python -m hw build zcu102``.

:func:`write_zcu102` writes a build tree (atomically, :func:`sim.fileio.atomic_dir`) that a
machine with Vivado turns into a bitstream and a hardware platform (``.xsa``):

``hdl/trio_accel.v``
    Amaranth's Verilog of :class:`hw.system.Accelerator` for the config (module ``trio_accel``),
    hierarchical (:mod:`hw.hier`): the core converted once as module ``trio_core`` and
    instantiated L times, the global buffers as module ``trio_buffers``; when the buffers are
    too wide for an Amaranth ``Instance`` (``paper``, ``zcu102``) the cores and the buffers
    are module ``trio_cluster``, written as Verilog directly (:mod:`hw.system.cluster`), so
    that a cold tree takes seconds (``hierarchy=False``: one flat tree, every core in full).
``hdl/trio_vit_top.v``
    The top for Vivado's module reference (:func:`top_verilog`): the accelerator's ports under
    the names Vivado infers interfaces from (``s_axi_awaddr`` ..., ``m_axi_araddr`` ...,
    ``aclk``, ``aresetn``, ``interrupt``), each with its ``X_INTERFACE_INFO`` (and
    ``X_INTERFACE_PARAMETER`` on the clock: ``ASSOCIATED_BUSIF m_axi:s_axi``, on the reset:
    active low, on the interrupt: level high). ``rst`` of the accelerator is ``~aresetn``.
``bd.tcl``
    The block design ``trio_bd`` (:func:`bd_tcl`): ``zynq_ultra_ps_e`` with the ZCU102 board
    preset; ``M_AXI_HPM0_FPD`` (32-bit) -> SmartConnect -> the register block ``s_axi``, at
    :data:`REGS_BASE` (4 KiB); the accelerator's ``m_axi`` (128-bit) -> SmartConnect ->
    ``S_AXI_HP0_FPD`` (128-bit, non-coherent DDR access; every HP0 segment, the DDR included,
    assigned), and with ``axi_ports`` = P > 1 each further manager ``m_axi{k}`` (an LD
    engine's reads) through a SmartConnect of its own to ``S_AXI_HP{k}_FPD`` (:data:`HP_PORTS`);
    ``interrupt`` -> ``pl_ps_irq0``; ``pl_clk0`` at the config's ``clock_mhz`` for
    everything in the PL, with a ``proc_sys_reset`` from ``pl_resetn0``.
``build.tcl``, ``build.sh``
    Project, block design, wrapper, synthesis, implementation, bitstream, ``write_hw_platform
    -include_bit``; reports (hierarchical utilisation, timing summary, power) under
    ``reports/``; outputs under ``out/``. ``./build.sh`` runs it in batch mode.
``trio_regmap.h``, ``trio_regmap.py``, ``regmap.md``
    The register map (``hw.system.regmap.REGMAP``: C header, the runtime's module, the table).
``trio-accel.dtsi``
    A device-tree fragment for the board's Linux: the register window as ``generic-uio`` with
    the interrupt, and a u-dma-buf buffer (what :mod:`runtime.mmio` opens).
``config.json``, ``manifest.json``, ``README.md``
    The AccelConfig, what was built (hash, clock, addresses, files, Vivado versions), and what
    to run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sim.isa import SEM_IDS

__all__ = ["write_zcu102", "top_verilog", "bd_tcl", "build_tcl", "top_ports", "REGS_BASE",
           "VIVADO_VERSIONS", "BoardError", "PL_PS_IRQ0_SPI", "HP_PORTS"]

REGS_BASE = 0xA000_0000     #: the register block in the PS's M_AXI_HPM0_FPD window
VIVADO_VERSIONS = "2022.2 .. 2023.2"   #: written for (the Tcl uses unversioned IP VLNVs)
PL_PS_IRQ0_SPI = 89         #: GIC SPI of pl_ps_irq0[0] on the Zynq UltraScale+ (IRQ 121)
#: the PS's four 128-bit HP ports into the DDR controller: (interface, PS config index of
#: ``PSU__USE__S_AXI_GP<n>`` / ``PSU__SAXIGP<n>__DATA_WIDTH``, its clock pin, its address
#: segments), the accelerator's ``m_axi{k}`` on entry ``k``
HP_PORTS = tuple((f"S_AXI_HP{k}_FPD", k + 2, f"saxihp{k}_fpd_aclk", f"SAXIGP{k + 2}")
                 for k in range(4))
TOP = "trio_vit_top"
INNER = "trio_accel"
BD = "trio_bd"
CELL = "accel"              #: the accelerator's cell in the block design (and the report's row)
PROJECT = "trio_zcu102"


class BoardError(ValueError):
    """A build that cannot be written (bad config or parameter)."""


def top_ports(acc) -> list:
    """``[(interface or None, name on the top, inner port, direction, width), ...]`` of
    :func:`top_verilog`: the AXI ports of ``acc`` renamed ``<bus>_<signal>``, then clock,
    reset and interrupt."""
    from amaranth import Shape
    from amaranth.lib import wiring
    ports = []
    for path, member, _value in acc.signature.flatten(acc):
        if len(path) == 1:
            continue                    # irq, below
        bus, sig = path
        # flow as seen from the accelerator: s_axi is In(manager signature) -> flipped
        out = (member.flow == wiring.Out)
        ports.append((bus, f"{bus}_{sig}", f"{bus}__{sig}", "output" if out else "input",
                      Shape.cast(member.shape).width))
    ports += [(None, "aclk", "clk", "input", 1), (None, "aresetn", None, "input", 1),
              (None, "interrupt", "irq", "output", 1)]
    return ports


def top_verilog(acc) -> str:
    """The Verilog top ``trio_vit_top`` around module ``trio_accel`` (see the module doc)."""
    lines = ["// Generated by `python -m hw build zcu102` (hw/board/system.py); do not edit.",
             "// Vivado's module reference of the Trio-ViT accelerator: AXI port names and",
             "// X_INTERFACE_INFO for interface inference; the accelerator's reset is ~aresetn.",
             "`timescale 1ns / 1ps", "", f"module {TOP} ("]
    decl = []
    first = set()
    buses = ":".join(sorted({b for b, *_ in top_ports(acc) if b is not None},
                            key=lambda b: (b.startswith("s_"), b)))
    for bus, name, _inner, d, w in top_ports(acc):
        attrs = []
        if bus is not None:
            sig = name[len(bus) + 1:].upper()
            attrs.append(f'(* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 {bus} {sig}" *)')
            if bus not in first:
                first.add(bus)
                proto = "AXI4LITE" if bus == "s_axi" else "AXI4"
                attrs.append(f'(* X_INTERFACE_PARAMETER = "XIL_INTERFACENAME {bus}, PROTOCOL '
                             f'{proto}" *)')
        elif name == "aclk":
            attrs += ['(* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)',
                      f'(* X_INTERFACE_PARAMETER = "XIL_INTERFACENAME aclk, ASSOCIATED_BUSIF '
                      f'{buses}, ASSOCIATED_RESET aresetn" *)']
        elif name == "aresetn":
            attrs += ['(* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)',
                      '(* X_INTERFACE_PARAMETER = "XIL_INTERFACENAME aresetn, POLARITY '
                      'ACTIVE_LOW" *)']
        else:
            attrs += ['(* X_INTERFACE_INFO = "xilinx.com:signal:interrupt:1.0 interrupt '
                      'INTERRUPT" *)',
                      '(* X_INTERFACE_PARAMETER = "XIL_INTERFACENAME interrupt, SENSITIVITY '
                      'LEVEL_HIGH" *)']
        rng = f"[{w - 1}:0] " if w > 1 else ""
        decl.append("\n".join(f"    {a}" for a in attrs) + f"\n    {d} wire {rng}{name}")
    lines.append(",\n".join(decl))
    lines += [");", "", f"    {INNER} u_accel ("]
    conns = [f"        .{inner}({name})" for _b, name, inner, _d, _w in top_ports(acc)
             if inner is not None]
    conns.append("        .rst(~aresetn)")
    lines += [",\n".join(conns), "    );", "", "endmodule", ""]
    return "\n".join(lines)


def bd_tcl(*, clock_mhz: float, regs_range: int, axi_ports: int = 1) -> str:
    """The block design (see the module doc) as a Tcl procedure ``trio_create_bd``, for an
    accelerator with ``axi_ports`` (1..4) AXI managers, manager ``k`` on HP port ``k``."""
    from ..params import check_int
    check_int("axi_ports", axi_ports, 1, len(HP_PORTS))
    ps = "zynq_ultra_ps_e_0"
    f = f"{float(clock_mhz):g}"
    hp = HP_PORTS[:axi_ports]
    mgr = ["m_axi"] + [f"m_axi{k}" for k in range(1, axi_ports)]
    sc = ["smartconnect_mem"] + [f"smartconnect_mem{k}" for k in range(1, axi_ports)]
    use = "".join(f"        CONFIG.PSU__USE__S_AXI_GP{n} {{1}} \\\n"
                  f"        CONFIG.PSU__SAXIGP{n}__DATA_WIDTH {{128}} \\\n"
                  for _i, n, _c, _s in hp)
    mk_sc = "".join(f"    set sc_mem [create_bd_cell -type ip -vlnv "
                    f"xilinx.com:ip:smartconnect {c}]\n"
                    f"    set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] "
                    f"$sc_mem\n" for c in sc)
    clk = "".join(f" \\\n        [get_bd_pins {c}/aclk]" for c in sc) + "".join(
        f" \\\n        [get_bd_pins {ps}/{pin}]" for _i, _n, pin, _s in hp)
    rstn = "".join(f" \\\n        [get_bd_pins {c}/aresetn]" for c in sc)
    buses = "".join(
        f"    connect_bd_intf_net [get_bd_intf_pins {CELL}/{m}] [get_bd_intf_pins {c}/S00_AXI]\n"
        f"    connect_bd_intf_net [get_bd_intf_pins {c}/M00_AXI] [get_bd_intf_pins {ps}/{i}]\n"
        for m, c, (i, _n, _p, _s) in zip(mgr, sc, hp))
    addrs = "".join(f"    assign_bd_address -target_address_space /{CELL}/{m} "
                    f"[get_bd_addr_segs {ps}/{seg}/*]\n" for m, (_i, _n, _p, seg) in zip(mgr, hp))
    return f"""# Generated by `python -m hw build zcu102` (hw/board/system.py); do not edit.
# Block design {BD}: the Trio-ViT accelerator beside the Zynq UltraScale+ PS of a ZCU102.
# Needs the project's board_part set to the ZCU102 (build.tcl does it).

proc trio_create_bd {{}} {{
    create_bd_design {BD}

    # the PS with the ZCU102 preset (DDR4, MIO, clocks), then the ports this design uses
    set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e {ps}]
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {{apply_board_preset "1"}} $ps
    set_property -dict [list \\
        CONFIG.PSU__USE__M_AXI_GP0 {{1}} \\
        CONFIG.PSU__MAXIGP0__DATA_WIDTH {{32}} \\
        CONFIG.PSU__USE__M_AXI_GP1 {{0}} \\
        CONFIG.PSU__USE__M_AXI_GP2 {{0}} \\
{use}        CONFIG.PSU__USE__IRQ0 {{1}} \\
        CONFIG.PSU__FPGA_PL0_ENABLE {{1}} \\
        CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {{{f}}} \\
    ] $ps

    # the accelerator (module reference of hdl/{TOP}.v)
    set accel [create_bd_cell -type module -reference {TOP} {CELL}]

    # reset of the PL from the PS
    set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset proc_sys_reset_0]

    # HPM0 (32-bit AXI4) -> AXI4-Lite register block; accelerator's AXI4 master k -> HPk
    set sc_regs [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect smartconnect_regs]
    set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] $sc_regs
{mk_sc}
    # clock: pl_clk0 at {f} MHz for the whole PL side
    connect_bd_net [get_bd_pins {ps}/pl_clk0] \\
        [get_bd_pins {CELL}/aclk] \\
        [get_bd_pins proc_sys_reset_0/slowest_sync_clk] \\
        [get_bd_pins smartconnect_regs/aclk] \\
        [get_bd_pins {ps}/maxihpm0_fpd_aclk]{clk}
    connect_bd_net [get_bd_pins {ps}/pl_resetn0] [get_bd_pins proc_sys_reset_0/ext_reset_in]
    connect_bd_net [get_bd_pins proc_sys_reset_0/peripheral_aresetn] \\
        [get_bd_pins {CELL}/aresetn] \\
        [get_bd_pins smartconnect_regs/aresetn]{rstn}

    # buses
    connect_bd_intf_net [get_bd_intf_pins {ps}/M_AXI_HPM0_FPD] [get_bd_intf_pins smartconnect_regs/S00_AXI]
    connect_bd_intf_net [get_bd_intf_pins smartconnect_regs/M00_AXI] [get_bd_intf_pins {CELL}/s_axi]
{buses}
    # interrupt
    connect_bd_net [get_bd_pins {CELL}/interrupt] [get_bd_pins {ps}/pl_ps_irq0]

    # addresses: the register block at 0x{REGS_BASE:08X} ({regs_range} bytes) in the PS's view;
    # each of the accelerator's managers sees every segment of its HP port (DDR low and high)
    assign_bd_address -target_address_space /{ps}/Data -offset 0x{REGS_BASE:08X} \\
        -range {regs_range} [get_bd_addr_segs {CELL}/s_axi/reg0]
{addrs}
    # the PL clock the PS can make (its PLL dividers are integers): check it is the config's
    set act [get_property CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ $ps]
    puts "trio: pl_clk0 requested {f} MHz, the PS makes $act MHz"
    if {{abs($act - {f}) > 0.01 * {f}}} {{
        puts "CRITICAL WARNING: trio: pl_clk0 is $act MHz, not {f} MHz; the runtime's latency figures assume {f}"
    }}

    validate_bd_design
    save_bd_design
}}
"""


def build_tcl(*, part: str) -> str:
    """The project / build script (see the module doc) for ``part``."""
    return f"""# Generated by `python -m hw build zcu102` (hw/board/system.py); do not edit.
# vivado -mode batch -source build.tcl [-tclargs JOBS]   (build.sh does this)
# Written for Vivado {VIVADO_VERSIONS} with the ZCU102 board files installed.

set here [file dirname [file normalize [info script]]]
set jobs [expr {{[llength $argv] > 0 ? [lindex $argv 0] : 4}}]
set part {part}
file mkdir $here/reports $here/out

create_project -force {PROJECT} $here/vivado -part $part
set bp [lindex [lsort -dictionary [get_board_parts -quiet xilinx.com:zcu102:*]] end]
if {{$bp eq ""}} {{
    error "trio: no ZCU102 board part (xilinx.com:zcu102:*) in this Vivado: install the board files"
}}
set_property board_part $bp [current_project]
add_files -norecurse [list $here/hdl/{INNER}.v $here/hdl/{TOP}.v]
update_compile_order -fileset sources_1

source $here/bd.tcl
trio_create_bd
set wrapper [make_wrapper -files [get_files {BD}.bd] -top]
add_files -norecurse $wrapper
set_property top {BD}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {{[get_property PROGRESS [get_runs synth_1]] ne "100%"}} {{ error "trio: synthesis failed" }}
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{ error "trio: implementation failed" }}

open_run impl_1
report_utilization -hierarchical -hierarchical_depth 4 -file $here/reports/utilization_hierarchical.rpt
report_utilization -file $here/reports/utilization.rpt
report_timing_summary -max_paths 10 -file $here/reports/timing_summary.rpt
report_power -file $here/reports/power.rpt
write_hw_platform -fixed -include_bit -force -file $here/out/{PROJECT}.xsa
file copy -force [get_property DIRECTORY [get_runs impl_1]]/{BD}_wrapper.bit $here/out/{PROJECT}.bit
puts "trio: done: $here/out/{PROJECT}.xsa, $here/out/{PROJECT}.bit, $here/reports/"
"""


BUILD_SH = """#!/bin/sh
# Generated by `python -m hw build zcu102`: run the Vivado build of this tree (batch mode).
# VIVADO=/path/to/vivado overrides `vivado` on PATH; JOBS (default 4) parallel runs.
set -e
cd "$(dirname "$0")"
exec "${VIVADO:-vivado}" -mode batch -notrace -source build.tcl -log build.log -journal build.jou \\
    -tclargs "${JOBS:-4}"
"""


def dtsi(*, regs_range: int, buffer_bytes: int) -> str:
    return f"""/* Generated by `python -m hw build zcu102`: device-tree fragment for the ZCU102's Linux
 * (add it to the PL overlay / system-user.dtsi). The register window and its interrupt as a
 * UIO device (boot with uio_pdrv_genirq.of_id=generic-uio), and a u-dma-buf buffer for the
 * Binary (module u-dma-buf). pl_ps_irq0[0] is GIC SPI {PL_PS_IRQ0_SPI}, level high. */
&amba {{
    trio_accel: trio_accel@{REGS_BASE:x} {{
        compatible = "generic-uio";
        reg = <0x0 0x{REGS_BASE:08x} 0x0 0x{regs_range:x}>;
        interrupt-parent = <&gic>;
        interrupts = <0 {PL_PS_IRQ0_SPI} 4>;
    }};
    udmabuf0 {{
        compatible = "ikwzm,u-dma-buf";
        device-name = "udmabuf0";
        size = <0x{buffer_bytes:x}>;
    }};
}};
"""


def _managers(hp_ports) -> str:
    return ", ".join(f"m_axi{k or ''} -> {p}" for k, p in enumerate(hp_ports))


def _readme(man: dict) -> str:
    c = man["config"]
    return f"""# Trio-ViT accelerator on a ZCU102: Vivado build tree

Written by `{man['command']}` in {man['seconds_to_write']:.1f} s.

* config `{man['config']['name']}`: (N, M, T, S, L) = ({c['N']}, {c['M']}, {c['T']}, {c['S']}, {c['L']}), CONFIG_HASH 0x{man['config_hash']:08x} (`config.json`)
* pl_clk0 {man['clock_mhz']:g} MHz, part {man['part']}
* written for Vivado {VIVADO_VERSIONS}; not run where it was generated (no Vivado there)

## Run

    ./build.sh                      # = vivado -mode batch -source build.tcl (JOBS=4, VIVADO=...)
    python -m hw vivado --report .  # utilisation (accelerator and whole design), timing, power

## Out

* `out/{PROJECT}.bit`, `out/{PROJECT}.xsa` (hardware platform with the bitstream, for PetaLinux
  or Vitis); `reports/utilization_hierarchical.rpt`, `reports/utilization.rpt`,
  `reports/timing_summary.rpt`, `reports/power.rpt`; the project under `vivado/`, `build.log`.

## Addresses

* register block (`s_axi`): 0x{REGS_BASE:08X}, {man['regs_range']} bytes, on M_AXI_HPM0_FPD;
  map version {man['regmap_version']} (`trio_regmap.h`, `trio_regmap.py`, `regmap.md`)
* the accelerator's AXI4 master(s), 128-bit, to the DDR: {_managers(man['hp_ports'])};
  interrupt: pl_ps_irq0 (SPI {PL_PS_IRQ0_SPI})
* Linux: `trio-accel.dtsi` (UIO + u-dma-buf); then
  `python -m runtime run MODEL.bin.npz --image x.jpg --regmap trio_regmap.py`

See docs/board.md of trio-vit for what to check first on the board.
"""


def _hierarchy(text: str, core: str, buffers: str, lanes: str, cluster: str) -> str:
    """What the accelerator's Verilog ``text`` holds as modules of their own (read from it, so
    that a cached text is described the same way)."""
    import re
    if not re.search(rf"^module {core}\(", text, re.M):
        return "flat"
    if re.search(rf"^module {cluster}\(", text, re.M):
        n = len(re.findall(rf"^  {core} core\d+ \(", text, re.M))
        k = len(re.findall(rf"^  {lanes} lanes\d+ \(", text, re.M))
        return (f"{core} converted once, x {n}, with the global buffers in module {cluster} "
                f"(Verilog written directly: the {n} cores, module {buffers} and its lane "
                f"addresses {lanes}, x {k})")
    n = len(re.findall(rf"^  {core} u \(", text, re.M))
    if re.search(rf"^module {buffers}\(", text, re.M):
        bufs = f"; {buffers} converted once"
    else:
        bufs = "; the global buffers in the top module (too wide for an Instance)"
        if re.search(rf"^module {lanes}\(", text, re.M):
            k = len(re.findall(rf"^  {lanes} u \(", text, re.M))
            bufs += f", their lane addresses {lanes} converted once, x {k}"
    return f"{core} converted once, x {n}{bufs}"


def _cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (Amaranth's Yosys)."""
    import resource
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(jobs, into: dict):
    """``jobs`` (``[(module, component)]`` of :func:`hw.hier.convert_modules`) passed through,
    each conversion's wall and CPU seconds (Yosys included) recorded in ``into[module]``."""
    for mod, comp in jobs:
        w, c = time.perf_counter(), _cpu_seconds()
        yield mod, comp
        into[mod] = {"seconds": round(time.perf_counter() - w, 2),
                     "cpu_seconds": round(_cpu_seconds() - c, 2)}


def _verilog_key(cfg, sems: int, hierarchy: bool = True, axi_ports: int = 1) -> str:
    """Cache key of the accelerator's Verilog: the config, ``sems``, the hierarchy, Amaranth's
    version and the text of every source file of ``hw`` and ``sim`` (any change of the
    generator misses)."""
    import hashlib

    from amaranth import __version__ as amaranth_version
    h = hashlib.sha256(f"{cfg.to_json()}\0{sems}\0{amaranth_version}\0{INNER}"
                       f"{'' if hierarchy else chr(0) + 'flat'}"
                       f"{'' if axi_ports == 1 else chr(0) + f'axi_ports={axi_ports}'}".encode())
    root = Path(__file__).resolve().parents[2]
    for pkg in ("hw", "sim"):
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def write_zcu102(config, *, outdir, sems: int = SEM_IDS, buffer_bytes: int = 64 << 20,
                 command: str | None = None, cache_dir=None, hierarchy: bool = True,
                 axi_ports: int = 1) -> dict:
    """Write the ZCU102 build tree of the accelerator for ``config`` (an AccelConfig or a
    config string) to ``outdir`` (atomically; see the module doc). ``sems``: the semaphore
    file's size; ``buffer_bytes``: the u-dma-buf size in the device-tree fragment;
    ``cache_dir``: where the accelerator's Verilog is kept between calls (keyed by config,
    ``sems``, Amaranth and the ``hw``/``sim`` sources; None: no cache); ``hierarchy``: the
    core and the global buffers as Verilog modules of their own (:mod:`hw.hier`, default) or
    one flat tree; ``axi_ports``: the accelerator's AXI managers (1..4, ``hw.system.Accelerator``),
    manager ``k`` on the PS's HP port ``k``. Returns the manifest (also ``manifest.json``)."""
    from amaranth import __version__ as amaranth_version

    from sim.config import AccelConfig, ConfigError
    from sim.fileio import atomic_dir

    from ..hier import convert_modules
    from ..system.accelerator import BUFFERS_MODULE, CLUSTER_MODULE, CORE_MODULE, Accelerator
    from ..system.buffers import LANES_MODULE
    from ..system.regmap import REGMAP, config_hash
    from .zcu102 import PART

    t0 = time.perf_counter()
    try:
        cfg = AccelConfig.from_string(config) if isinstance(config, str) else config
    except (ConfigError, TypeError, ValueError) as e:
        raise BoardError(str(e)) from None
    if isinstance(buffer_bytes, bool) or not isinstance(buffer_bytes, int) or buffer_bytes < 4096:
        raise BoardError(f"buffer_bytes must be an int >= 4096, got {buffer_bytes!r}")
    if not isinstance(hierarchy, bool):
        raise BoardError(f"hierarchy must be a bool, got {hierarchy!r}")
    if isinstance(axi_ports, bool) or axi_ports not in range(1, len(HP_PORTS) + 1):
        raise BoardError(f"axi_ports must be 1..{len(HP_PORTS)} (the ZCU102's HP ports), got "
                         f"{axi_ports!r}")
    outdir = Path(outdir)
    cached = None
    modules = {}                # {Verilog module: its conversion's seconds and size} (emitted)
    if cache_dir is not None:
        key = _verilog_key(cfg, sems, hierarchy, axi_ports)
        cached = (Path(cache_dir) / f"{INNER}-{key}.v", Path(cache_dir) / f"{TOP}-{key}.v")
    if cached is not None and all(p.is_file() for p in cached):
        # made from a valid Accelerator of this very config and sources: not built again
        inner, top, from_cache = cached[0].read_text(), cached[1].read_text(), True
    else:
        try:
            acc = Accelerator(config=cfg, sems=sems, hierarchy=hierarchy, axi_ports=axi_ports)
        except (ConfigError, TypeError, ValueError) as e:
            raise BoardError(str(e)) from None
        top = top_verilog(acc)
        texts = convert_modules(acc, name=INNER, progress=lambda jobs: _timed(jobs, modules),
                                compact_init=True)
        inner, from_cache = "\n".join(texts.values()), False
        for mod, text in texts.items():
            modules[mod]["mbytes"] = round(len(text) / 1e6, 2)
        if cached is not None:
            from sim.fileio import atomic_write
            atomic_write(cached[1], top)
            atomic_write(cached[0], inner)
    t_verilog = time.perf_counter() - t0
    with atomic_dir(outdir) as tmp:
        (tmp / "hdl").mkdir()
        (tmp / "hdl" / f"{INNER}.v").write_text(inner)
        (tmp / "hdl" / f"{TOP}.v").write_text(top)
        (tmp / "bd.tcl").write_text(bd_tcl(clock_mhz=cfg.clock_mhz, regs_range=REGMAP.size,
                                           axi_ports=axi_ports))
        (tmp / "build.tcl").write_text(build_tcl(part=PART))
        (tmp / "build.sh").write_text(BUILD_SH)
        mode = (tmp / "build.sh").stat().st_mode
        os.chmod(tmp / "build.sh", mode | (mode & 0o444) >> 2)
        (tmp / "trio_regmap.h").write_text(REGMAP.to_c_header())
        (tmp / "trio_regmap.py").write_text(REGMAP.to_python())
        (tmp / "regmap.md").write_text(REGMAP.to_markdown())
        (tmp / "trio-accel.dtsi").write_text(dtsi(regs_range=REGMAP.size,
                                                   buffer_bytes=buffer_bytes))
        (tmp / "config.json").write_text(cfg.to_json() + "\n")
        man = {
            "kind": "zcu102-system", "name": PROJECT, "board": "ZCU102", "part": PART,
            "top": f"{BD}_wrapper", "accelerator_instance": CELL,
            "config": json.loads(cfg.to_json()), "config_hash": config_hash(cfg),
            "clock_mhz": float(cfg.clock_mhz), "sems": sems, "regs_base": REGS_BASE,
            "axi_ports": axi_ports, "hp_ports": [i for i, *_ in HP_PORTS[:axi_ports]],
            "regs_range": REGMAP.size, "regmap_version": REGMAP.version,
            "buffer_bytes": buffer_bytes, "vivado_versions": VIVADO_VERSIONS,
            "amaranth": amaranth_version, "script": "build.sh",
            "reports": {"utilization": "reports/utilization_hierarchical.rpt",
                        "timing": "reports/timing_summary.rpt", "power": "reports/power.rpt"},
            "outputs": [f"out/{PROJECT}.xsa", f"out/{PROJECT}.bit"],
            "command": command or f"python -m hw build zcu102 --config {cfg.name}",
            "seconds_verilog": round(t_verilog, 2), "verilog_from_cache": from_cache,
            "verilog_modules": modules,
            "hierarchy": _hierarchy(inner, CORE_MODULE, BUFFERS_MODULE, LANES_MODULE,
                                    CLUSTER_MODULE),
        }
        man["seconds_to_write"] = round(time.perf_counter() - t0, 2)
        man["files"] = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) \
            + ["manifest.json", "README.md"]
        man["files"] = sorted(set(man["files"]))
        (tmp / "README.md").write_text(_readme(man))
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    return man
