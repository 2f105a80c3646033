"""``python -m hw build zcu102``: the tree's structure checked without Vivado (every port of
the top connected, addresses assigned, pl_clk0 = the config's clock, the register map in the
header / Tcl / device tree / runtime from the one description), its atomicity, its errors, and
the report readers of ``python -m hw vivado --report`` on a system tree."""

import json
import os
import re

import pytest

from hw import vivado
from hw.board.system import REGS_BASE, _verilog_key, write_zcu102
from hw.cli import main as hw_main
from hw.system.regmap import REGMAP, config_hash
from runtime.regmap import load_regmap
from sim.config import AccelConfig

SPEC = "small:L=1,clock_mhz=150"     # a clock other than the default, so the check means something
#: the ZCU102 build's preset (the paper's engines, B / C 512 KiB): a cold tree in seconds since
#: the global buffers are written as Verilog directly (hw.system.cluster)
ZCU = "zcu102"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("zcu102") / "tree"
    assert hw_main(["build", "zcu102", "--config", SPEC, "-o", str(out), "--no-cache"]) == 0
    return out


@pytest.fixture(scope="module")
def zcu_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("zcu102") / "preset"
    assert hw_main(["build", "zcu102", "--config", ZCU, "-o", str(out), "--no-cache"]) == 0
    return out


#: both trees: (config string, fixture)
TREES = pytest.mark.parametrize("spec,fixture", [(SPEC, "tree"), (ZCU, "zcu_tree")],
                                ids=["small", "zcu102"])


def _ports(verilog: str, module: str):
    """``{name: direction}`` of ``module``'s ANSI port list or of its old-style header."""
    body = verilog[verilog.index(f"module {module}"):]
    body = body[:body.index(";")] if "input" not in body[:body.index(";")] else \
        body[:body.index(");")]
    ansi = dict((n, d) for d, n in re.findall(r"\b(input|output)\s+wire\s+(?:\[\d+:0\]\s*)?(\w+)", body))
    if ansi:
        return ansi
    names = re.findall(r"[(,]\s*(\w+)", body)
    return {n: re.search(rf"\b(input|output)\b[^;]*\b{n}\s*;", verilog).group(1) for n in names}


def _silence(obj, seen=None):
    """Mark ``obj`` and every elaboratable it holds (cores, units, memories built in its
    constructor) as deliberately never elaborated (no UnusedElaboratable warning when the GC
    collects them later, in another test)."""
    from amaranth.hdl import Elaboratable
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Elaboratable):
        obj._MustUse__silence = True
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) \
        else vars(obj).values() if isinstance(obj, Elaboratable) else ()
    for v in items:
        if isinstance(v, (Elaboratable, list, tuple, dict)):
            _silence(v, seen)


@TREES
def test_tree_files_and_manifest(spec, fixture, request):
    tree = request.getfixturevalue(fixture)
    man = json.loads((tree / "manifest.json").read_text())
    cfg = AccelConfig.from_string(spec)
    assert man["config_hash"] == config_hash(cfg) and man["clock_mhz"] == cfg.clock_mhz
    assert AccelConfig.from_string(str(tree / "config.json")) == cfg
    for f in man["files"]:
        assert (tree / f).is_file(), f
    assert os.access(tree / "build.sh", os.X_OK)
    assert "vivado" in (tree / "build.sh").read_text() and "build.tcl" in (tree / "build.sh").read_text()
    for rpt in man["reports"].values():          # the reader's files are the ones written
        assert rpt in (tree / "build.tcl").read_text()
    for out in man["outputs"]:
        assert out in (tree / "build.tcl").read_text()
    assert "write_hw_platform -fixed -include_bit" in (tree / "build.tcl").read_text()


@TREES
def test_every_port_connected(spec, fixture, request):
    tree = request.getfixturevalue(fixture)
    top = (tree / "hdl" / "trio_vit_top.v").read_text()
    inner = (tree / "hdl" / "trio_accel.v").read_text()
    tcl = (tree / "bd.tcl").read_text()
    # the top instantiates trio_accel with every one of its ports
    inner_ports = _ports(inner, "trio_accel")
    conns = dict(re.findall(r"\.(\w+)\(([^)]*)\)", top))
    assert set(conns) == set(inner_ports), set(conns) ^ set(inner_ports)
    # every top port is in an interface or a net of the block design
    top_ports = _ports(top, "trio_vit_top")
    assert {"aclk", "aresetn", "interrupt", "s_axi_awaddr", "m_axi_araddr", "m_axi_rdata"} <= set(top_ports)
    for p, q in conns.items():            # same direction on both sides (rst is ~aresetn)
        q = q.lstrip("~")
        assert top_ports[q] == inner_ports[p], (p, q)
    intf = {}
    for m in re.finditer(r'X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 (\w+) (\w+)" \*\)'
                         r'(?:\s*\(\*[^*]*\*\))?\s*(?:input|output) wire (?:\[\d+:0\] )?(\w+)', top):
        intf[m.group(3)] = m.group(1)
        assert m.group(3) == f"{m.group(1)}_{m.group(2).lower()}"
    connected_intf = set(re.findall(r"get_bd_intf_pins accel/(\w+)", tcl))
    connected_pins = set(re.findall(r"get_bd_pins accel/(\w+)", tcl))
    for p in top_ports:
        assert intf.get(p) in connected_intf or p in connected_pins, p
    assert connected_intf == {"s_axi", "m_axi"} and connected_pins == {"aclk", "aresetn", "interrupt"}
    # the PS side: HPM0 to the registers, HP0 from the master, the interrupt, the PL clock
    for s in ("zynq_ultra_ps_e_0/M_AXI_HPM0_FPD", "zynq_ultra_ps_e_0/S_AXI_HP0_FPD",
              "zynq_ultra_ps_e_0/pl_ps_irq0", "zynq_ultra_ps_e_0/pl_clk0",
              "zynq_ultra_ps_e_0/maxihpm0_fpd_aclk", "zynq_ultra_ps_e_0/saxihp0_fpd_aclk",
              "proc_sys_reset_0/peripheral_aresetn", "apply_board_preset"):
        assert s in tcl, s
    assert tcl.count("{") == tcl.count("}") and tcl.count("[") == tcl.count("]")


@TREES
def test_clock_and_addresses(spec, fixture, request):
    tree = request.getfixturevalue(fixture)
    tcl = (tree / "bd.tcl").read_text()
    want = {SPEC: "150", ZCU: "200"}[spec]        # the config's clock_mhz
    assert f"{AccelConfig.from_string(spec).clock_mhz:g}" == want
    assert re.findall(r"PL0_REF_CTRL__FREQMHZ \{([\d.]+)\}", tcl) == [want]
    m = re.search(r"assign_bd_address -target_address_space /zynq_ultra_ps_e_0/Data -offset "
                  r"(0x[0-9A-F]+) \\\s*-range (\d+) \[get_bd_addr_segs accel/s_axi/reg0\]", tcl)
    assert m and int(m.group(1), 16) == REGS_BASE and int(m.group(2)) == REGMAP.size
    assert "assign_bd_address -target_address_space /accel/m_axi" in tcl
    dts = (tree / "trio-accel.dtsi").read_text()
    assert f"reg = <0x0 0x{REGS_BASE:08x} 0x0 0x{REGMAP.size:x}>" in dts
    assert "generic-uio" in dts and "u-dma-buf" in dts
    assert "ASSOCIATED_BUSIF m_axi:s_axi" in (tree / "hdl" / "trio_vit_top.v").read_text()


@TREES
def test_register_map_from_the_one_description(spec, fixture, request):
    tree = request.getfixturevalue(fixture)
    assert (tree / "trio_regmap.h").read_text() == REGMAP.to_c_header()
    assert (tree / "regmap.md").read_text() == REGMAP.to_markdown()
    rm = load_regmap(tree / "trio_regmap.py")          # what the board's runtime loads
    assert rm.registers == {n: off for n, off, _r, _i in REGMAP.words()}
    assert rm.size == REGMAP.size == json.loads((tree / "manifest.json").read_text())["regs_range"]
    # the Verilog's register block is built from the same map: its constants are in it
    man = json.loads((tree / "manifest.json").read_text())
    assert man["regmap_version"] == REGMAP.version


def test_bad_config_exits_2_and_keeps_the_tree(tree, capsys):
    before = {p: p.stat().st_mtime_ns for p in tree.rglob("*")}
    with pytest.raises(SystemExit) as e:
        hw_main(["build", "zcu102", "--config", "small:L=99", "-o", str(tree)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "L" in err
    assert {p: p.stat().st_mtime_ns for p in tree.rglob("*")} == before


UTIL = """\
+----------------------------+-------------------+------------+------------+---------+------+--------+--------+--------+------+------------+
|          Instance          |       Module      | Total LUTs | Logic LUTs | LUTRAMs | SRLs |   FFs  | RAMB36 | RAMB18 | URAM | DSP Blocks |
+----------------------------+-------------------+------------+------------+---------+------+--------+--------+--------+------+------------+
| trio_bd_wrapper            |             (top) |      52000 |      51000 |     600 |  400 |  61000 |     40 |     12 |    0 |        210 |
|   trio_bd_i                |           trio_bd |      52000 |      51000 |     600 |  400 |  61000 |     40 |     12 |    0 |        210 |
|     accel                  |   trio_bd_accel_0 |      47000 |      46500 |     400 |  100 |  55000 |     40 |     12 |    0 |        210 |
|     smartconnect_mem       | trio_bd_sc_mem_0  |       3000 |       2900 |     200 |  300 |   5000 |      0 |      0 |    0 |          0 |
+----------------------------+-------------------+------------+------------+---------+------+--------+--------+--------+------+------------+
"""

POWER = """\
1. Summary
----------

+--------------------------+--------------+
| Total On-Chip Power (W)  | 4.567        |
| Design Power Budget (W)  | Unspecified* |
| Power Budget Margin (W)  | NA           |
| Dynamic (W)              | 3.812        |
| Device Static (W)        | 0.755        |
| Effective TJA (C/W)      | 1.0          |
+--------------------------+--------------+
"""


def test_report_readers_on_a_system_tree(tree, tmp_path, capsys):
    from tests.test_vivado import TIMING
    import shutil
    t = tmp_path / "t"
    shutil.copytree(tree, t)
    with pytest.raises(SystemExit) as e:          # not run: one line, exit 2
        hw_main(["vivado", "--report", str(t)])
    assert e.value.code == 2 and "has ./build.sh run" in capsys.readouterr().err
    (t / "reports").mkdir()
    (t / "reports" / "utilization_hierarchical.rpt").write_text(UTIL)
    (t / "reports" / "timing_summary.rpt").write_text(TIMING)
    (t / "reports" / "power.rpt").write_text(POWER)
    res = vivado.read_results(t)
    assert (res["dut"]["LUT"], res["dut"]["FF"], res["dut"]["DSP"]) == (47000, 55000, 210)
    assert res["total"]["LUT"] == 52000 and res["total"]["BRAM36_equiv"] == 46
    assert res["power"] == {"total_w": 4.567, "dynamic_w": 3.812, "static_w": 0.755}
    assert res["timing"]["fmax_mhz"] == pytest.approx(1000 / (1000 / 150 + 0.25))
    assert hw_main(["vivado", "--report", str(t)]) == 0
    out = capsys.readouterr().out
    assert "paper Table III" in out and "130628" in out and "4.567 W" in out
    with pytest.raises(vivado.VivadoError, match="Total On-Chip Power"):
        vivado.parse_power("nothing")


def test_verilog_cache_is_keyed_by_config_and_sems(tmp_path):
    cfg = AccelConfig.from_string(SPEC)
    key = _verilog_key(cfg, 64)
    assert key != _verilog_key(cfg, 128) and key != _verilog_key(cfg.replace(L=2), 64)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"trio_accel-{key}.v").write_text("// stands in for the cached Verilog\n")
    (cache / f"trio_vit_top-{key}.v").write_text("// and for the cached top\n")
    man = write_zcu102(cfg, outdir=tmp_path / "t", sems=64, cache_dir=cache)
    assert man["verilog_from_cache"] is True
    assert (tmp_path / "t" / "hdl" / "trio_accel.v").read_text().startswith("// stands in")
    assert (tmp_path / "t" / "hdl" / "trio_vit_top.v").read_text().startswith("// and for")


def test_tree_verilog_is_hierarchical(tree):
    """hdl/trio_accel.v: the top first, the core converted once as module trio_core with one
    instance per core, the global buffers once; the manifest says so; a flat tree has its own
    cache key."""
    man = json.loads((tree / "manifest.json").read_text())
    L = AccelConfig.from_string(SPEC).L
    assert man["hierarchy"] == f"trio_core converted once, x {L}; trio_buffers converted once"
    inner = (tree / "hdl" / "trio_accel.v").read_text()
    heads = re.findall(r"^module (\S+?)\(", inner, re.M)
    assert heads[0] == "trio_accel" and heads.count("trio_core") == 1
    assert heads.count("trio_buffers") == 1
    assert len(re.findall(r"^  trio_core u \(", inner, re.M)) == L
    # each module's conversion timed and sized; the zero memory inits written as loops
    mods = man["verilog_modules"]
    assert sorted(mods) == ["trio_accel", "trio_buffers", "trio_core"]
    for mod, t in mods.items():
        assert t["cpu_seconds"] > 0 and t["seconds"] > 0, mod
        assert t["mbytes"] == pytest.approx(len(re.search(
            rf"^module {mod}\(.*?^endmodule\n(?:.*?(?=^module (?!\\{mod}\.)\S+\()|.*\Z)",
            inner, re.M | re.S).group(0)) / 1e6, abs=0.02), mod
    assert "zero_init_1" in inner
    assert not re.search(r"^  initial begin\n    \S+ ?\[0\] = \d+'[bdh]0+;$", inner, re.M)
    cfg = AccelConfig.from_string(SPEC)
    assert _verilog_key(cfg, 2048, True) != _verilog_key(cfg, 2048, False)


def test_zcu102_preset_tree_is_one_cluster(zcu_tree):
    """The zcu102 preset (16 cores, B 512 KiB, C 2 MiB, OUT 128 KiB): the buffers are too wide for
    an Instance, so trio_accel instantiates module trio_cluster once, which holds the 16
    trio_core instances and module trio_buffers (written directly: its byte memory B + C +
    OUT + the zero byte, one trio_buflanes per core, also written directly); the manifest
    names each module."""
    man = json.loads((zcu_tree / "manifest.json").read_text())
    cfg = AccelConfig.from_string(ZCU)
    assert (cfg.L, cfg.buf_b_bytes, cfg.buf_c_bytes, cfg.buf_out_bytes) == \
        (16, 512 << 10, 2048 << 10, 128 << 10)
    assert AccelConfig.from_string(str(zcu_tree / "config.json")) == cfg
    assert man["hierarchy"].startswith("trio_core converted once, x 16, with the global "
                                       "buffers in module trio_cluster")
    assert sorted(man["verilog_modules"]) == ["trio_accel", "trio_cluster", "trio_core"]
    inner = (zcu_tree / "hdl" / "trio_accel.v").read_text()
    heads = re.findall(r"^module (\S+?)\(", inner, re.M)
    assert heads[0] == "trio_accel"
    for mod in ("trio_core", "trio_buflanes", "trio_cluster", "trio_buffers"):
        assert heads.count(mod) == 1, mod
    assert len(re.findall(r"^  trio_cluster u \(", inner, re.M)) == 1
    assert len(re.findall(r"^  trio_core core\d+ \(", inner, re.M)) == 16
    assert len(re.findall(r"^  trio_buflanes lanes\d+ \(", inner, re.M)) == 16
    assert len(re.findall(r"^  trio_buffers bufs \(", inner, re.M)) == 1
    total = cfg.buf_b_bytes + cfg.buf_c_bytes + cfg.buf_out_bytes
    assert f"  reg [7:0] mem [0:{total}];" in inner


def test_four_axi_ports_on_the_four_hp_ports():
    """``--axi-ports 4``: the top has ``m_axi`` .. ``m_axi3`` (each an AXI4 interface, all on
    ``aclk``), and the block design takes manager k through a SmartConnect of its own to
    ``S_AXI_HP{k}_FPD`` (enabled, 128-bit, clocked, its DDR segments assigned to that manager).
    Checked on the Tcl and the top alone (no Verilog conversion)."""
    from hw.board.system import HP_PORTS, bd_tcl, top_verilog
    from hw.system.accelerator import Accelerator
    acc = Accelerator(config="small:L=1", sems=16, axi_ports=4)
    _silence(acc)                       # only its ports are read
    top = top_verilog(acc)
    tcl = bd_tcl(clock_mhz=200, regs_range=REGMAP.size, axi_ports=4)
    assert "ASSOCIATED_BUSIF m_axi:m_axi1:m_axi2:m_axi3:s_axi" in top
    for k in range(4):
        bus = "m_axi" + (str(k) if k else "")
        sc = "smartconnect_mem" + (str(k) if k else "")
        hp, n, clk, seg = HP_PORTS[k]
        assert f"{bus}_araddr" in top and f"aximm:1.0 {bus} ARADDR" in top
        assert f"get_bd_intf_pins accel/{bus}] [get_bd_intf_pins {sc}/S00_AXI]" in tcl
        assert f"get_bd_intf_pins {sc}/M00_AXI] [get_bd_intf_pins zynq_ultra_ps_e_0/{hp}]" in tcl
        assert f"CONFIG.PSU__USE__S_AXI_GP{n} {{1}}" in tcl
        assert f"CONFIG.PSU__SAXIGP{n}__DATA_WIDTH {{128}}" in tcl
        assert f"zynq_ultra_ps_e_0/{clk}]" in tcl and f"{sc}/aclk]" in tcl and f"{sc}/aresetn]" in tcl
        assert (f"assign_bd_address -target_address_space /accel/{bus} "
                f"[get_bd_addr_segs zynq_ultra_ps_e_0/{seg}/*]") in tcl
    assert hp == "S_AXI_HP3_FPD" and "S_AXI_GP6" not in tcl
    assert tcl.count("{") == tcl.count("}") and tcl.count("[") == tcl.count("]")
    one = bd_tcl(clock_mhz=200, regs_range=REGMAP.size)
    assert "S_AXI_HP1_FPD" not in one and "smartconnect_mem1" not in one
    from hw.board.system import BoardError
    with pytest.raises(BoardError, match="axi_ports"):
        write_zcu102("small:L=1", outdir="/nonexistent/never", axi_ports=5)
