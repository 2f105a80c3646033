# amaranth: UnusedElaboratable=no
"""The ZCU102 Vivado flow: build tree contents, MMCM divider, atomic writes, report readers.

Vivado itself is not installed here: the readers are checked on report text laid out as
Vivado's ``report_utilization -hierarchical`` and ``report_timing_summary`` lay it out.
"""

import json
import re

import pytest

from amaranth import Value
from amaranth.hdl import Fragment
from amaranth.lib import wiring

from hw import vivado
from hw.board import CharacterizationTop, ZCU102Platform
from hw.board.harness import mmcm_divider
from hw.cli import main as hw_main
from hw.core import Core
from hw.units import AdderTree


def _port_bits(comp, flow):
    total = 0
    for name, member in comp.signature.members.items():
        v = getattr(comp, name)
        if member.is_port:
            if member.flow == flow:
                total += len(Value.cast(v))
        else:   # a sub-interface (In(sig) exposes sig flipped: flows as seen by comp)
            for sname, sub in member.signature.members.items():
                assert sub.is_port, "one level of nesting in these components"
                sv = getattr(v, sname)
                if sub.flow == flow:
                    total += len(Value.cast(sv))
    return total


@pytest.mark.parametrize("mhz, div", [(200, 5.0), (125, 8.0), (250, 4.0), (500, 2.0),
                                      (150, 6.625), (7.8125, 128.0), (300, 3.375)])
def test_mmcm_divider(mhz, div):
    assert mmcm_divider(mhz) == div
    # the divider is a multiple of 1/8 and the frequency error below half a step
    assert (div * 8) == int(div * 8)
    assert abs(1000 / div - mhz) <= 1000 / div - 1000 / (div + 0.125)


@pytest.mark.parametrize("mhz", [0, 7.7, 501, -5])
def test_mmcm_divider_range(mhz):
    with pytest.raises(ValueError, match="clock_mhz must lie in"):
        mmcm_divider(mhz)


def test_harness_counts_ports_and_rejects_non_components():
    core = Core(N=2, M=2, T=2, S=2)
    top = CharacterizationTop(dut=core, clock_mhz=200)
    assert top.in_bits == _port_bits(core, wiring.In)
    assert top.out_bits == _port_bits(core, wiring.Out)
    assert top.in_bits > 1000 and top.out_bits > 100
    Fragment.get(top, ZCU102Platform())          # and the top elaborates, with the core inside
    with pytest.raises(TypeError, match="wiring.Component"):
        CharacterizationTop(dut=object())


def test_write_project_tree(tmp_path):
    out = tmp_path / "at"
    comp = AdderTree(width=8, count=4)
    man = vivado.write_project(comp, name="trio_adder", outdir=out, clock_mhz=250)
    files = {p.name for p in out.iterdir()}
    assert {"trio_adder.v", "trio_adder.tcl", "trio_adder.xdc", "build_trio_adder.sh",
            "manifest.json"} <= files
    tcl = (out / "trio_adder.tcl").read_text()
    assert "-part xczu9eg-ffvb1156-2-e" in tcl and "synth_design -top trio_adder" in tcl
    assert "report_utilization -hierarchical" in tcl
    xdc = (out / "trio_adder.xdc").read_text()
    for pin in ("G21", "F21", "AM13", "AG14", "AF13", "AE13", "AJ14", "AJ15", "AH13", "AH14",
                "AL12"):
        assert re.search(rf"LOC {pin} ", xdc), pin
    assert "LVDS_25" in xdc and re.search(r"create_clock .*-period 8\.0", xdc)
    v = (out / "trio_adder.v").read_text()
    assert "MMCME4_BASE" in v and ".CLKOUT0_DIVIDE_F(4.0)" in v and ".CLKFBOUT_MULT_F(8.0)" in v
    assert re.search(r"\badder_tree\b|\bdut\b", v)
    assert json.loads((out / "manifest.json").read_text()) == man
    assert man["clock_mhz"] == 250.0 and man["dut_input_bits"] == _port_bits(comp, wiring.In)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp dirs left


def test_write_project_failure_leaves_previous_tree(tmp_path, monkeypatch):
    out = tmp_path / "t"
    vivado.write_project(AdderTree(width=8, count=2), name="a", outdir=out)
    before = sorted(p.name for p in out.iterdir())

    def boom(self, top, *a, **k):
        Fragment.get(top, self)             # the design elaborates, then the toolchain fails
        raise RuntimeError("toolchain exploded")
    monkeypatch.setattr(ZCU102Platform, "build", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        vivado.write_project(AdderTree(width=8, count=4), name="a", outdir=out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["t"]
    with pytest.raises(vivado.VivadoError, match="Verilog identifier"):
        vivado.write_project(AdderTree(width=8, count=2), name="1bad", outdir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


UTIL = """\
1. Utilization by Hierarchy
---------------------------

+--------------+---------------+------------+------------+---------+------+-------+--------+--------+------+------------+
|   Instance   |     Module    | Total LUTs | Logic LUTs | LUTRAMs | SRLs |  FFs  | RAMB36 | RAMB18 | URAM | DSP Blocks |
+--------------+---------------+------------+------------+---------+------+-------+--------+--------+------+------------+
| trio_core    |         (top) |      41000 |      40500 |       0 |  500 | 31000 |      0 |      0 |    0 |        261 |
|   (trio_core)|         (top) |       5000 |       4500 |       0 |  500 |  8000 |      0 |      0 |    0 |          0 |
|   dut        | trio_core_dut |      36000 |      36000 |       0 |    0 | 23000 |     12 |      3 |    0 |        261 |
|     mat      |  mat_unit     |      15000 |      15000 |       0 |    0 |  9000 |      0 |      0 |    0 |         80 |
+--------------+---------------+------------+------------+---------+------+-------+--------+--------+------+------------+
"""

TIMING = """\
------------------------------------------------------------------------------------------------
| Design Timing Summary
| ---------------------
------------------------------------------------------------------------------------------------

    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  THS Failing Endpoints  THS Total Endpoints     WPWS(ns)     TPWS(ns)  TPWS Failing Endpoints  TPWS Total Endpoints
    -------      -------  ---------------------  -------------------      -------      -------  ---------------------  -------------------     --------     --------  ----------------------  --------------------
     -0.250       -3.100                     17                45678        0.012        0.000                      0                45678        1.958        0.000                       0                 20000
"""


def test_parse_utilization_and_timing():
    d = vivado.parse_utilization(UTIL)
    assert (d["LUT"], d["FF"], d["DSP"], d["RAMB36"], d["RAMB18"]) == (36000, 23000, 261, 12, 3)
    assert d["BRAM36_equiv"] == 13.5
    assert vivado.parse_utilization(UTIL, "mat")["LUT"] == 15000
    with pytest.raises(vivado.VivadoError, match="'nope' not in"):
        vivado.parse_utilization(UTIL, "nope")
    with pytest.raises(vivado.VivadoError, match="not a hierarchical"):
        vivado.parse_utilization("hello")
    t = vivado.parse_timing_summary(TIMING)
    assert t == {"WNS": -0.25, "TNS": -3.1, "WHS": 0.012, "THS": 0.0}
    with pytest.raises(vivado.VivadoError, match="WNS"):
        vivado.parse_timing_summary("nothing")


def test_read_results_and_cli_report(tmp_path, capsys):
    out = tmp_path / "t"
    vivado.write_project(AdderTree(width=8, count=2), name="trio_x", outdir=out)
    with pytest.raises(SystemExit) as e:      # not run yet: no reports
        hw_main(["vivado", "--report", str(out)])
    assert e.value.code == 2
    (out / "trio_x_utilization_hierarchical_place.rpt").write_text(UTIL)
    (out / "trio_x_timing.rpt").write_text(TIMING)
    res = vivado.read_results(out)
    assert res["dut"]["DSP"] == 261
    assert res["timing"]["fmax_mhz"] == pytest.approx(1000 / 5.25)
    assert res["timing"]["met"] is False
    capsys.readouterr()
    assert hw_main(["vivado", "--report", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dut"]["FF"] == 23000


def test_cli_errors_exit_2(tmp_path):
    for argv in (["vivado", "core", "--config", "bogus", "-o", str(tmp_path / "a")],
                 ["vivado", "log2", "--config", "paper", "-o", str(tmp_path / "b")],
                 ["vivado", "core", "--clock-mhz", "900", "-o", str(tmp_path / "c")],
                 ["vivado", "--report", str(tmp_path)],
                 ["vivado"]):
        with pytest.raises(SystemExit) as e:
            hw_main(argv)
        assert e.value.code == 2, argv
    assert list(tmp_path.iterdir()) == []


def test_cli_config_sets_core_widths(tmp_path):
    assert hw_main(["verilog", "core", "--config", "paper:N=2,M=4,T=2,S=2", "-o", str(tmp_path),
                    "-q"]) == 0
    v = (tmp_path / "core.v").read_text()
    # the MAT unit's weight gather port carries S lanes x T bytes, the R-MAC unit's M x N
    assert re.search(r"input \[31:0\] mat_w__data", v)
    assert re.search(r"input \[63:0\] rmac_w__data", v)
