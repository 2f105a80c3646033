"""hw.system.regmap: the map's content against the specification (issue #13's register list,
written out here), its validation, and the emitters: docs/regmap.md is the current Markdown,
the C header compiles with gcc and holds Python's values, the standalone Python module imports
without trio-vit and holds every constant.
"""

import ast
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hw.cli import main as hw_main
from hw.system.regmap import (ERROR_CODES, REGMAP, RO, RW, W1C, W1P, ErrCode, ErrorCode, Field,
                              Register, RegisterMap, RegMapError, config_constants, config_hash)
from sim.config import PRESETS

REPO = Path(__file__).resolve().parents[1]

#: the specification: word name -> (offset, access of the register)
SPEC_WORDS = {
    "ID": (0x000, RO), "VERSION": (0x004, RO), "CONFIG_HASH": (0x008, RO),
    "CONFIG_NMTS": (0x00C, RO), "CONFIG_L": (0x010, RO), "CONFIG_SEMS": (0x014, RO),
    "CTRL": (0x020, RW),
    "STATUS": (0x024, RO), "IRQ_STATUS": (0x028, W1C), "ERR_CODE": (0x02C, RO),
    "ERR_PC": (0x030, RO), "INSTR_TABLE_LO": (0x040, RW), "INSTR_TABLE_HI": (0x044, RW),
    "DATA_BASE_LO": (0x048, RW), "DATA_BASE_HI": (0x04C, RW), "DATA_SIZE": (0x050, RW),
    "WATCHDOG": (0x054, RW), "FRAMES": (0x058, RW), "HOST_INSTR0": (0x060, RO), "HOST_INSTR1": (0x064, RO),
    "HOST_INSTR2": (0x068, RO), "HOST_INSTR3": (0x06C, RO), "HOST_ACK": (0x070, W1P),
}
for _i, _n in enumerate(["CYCLES", "BUSY_MAT", "BUSY_RMAC", "BUSY_AUX", "DRAM_RD_BYTES",
                         "DRAM_WR_BYTES", "STALL_CYCLES", "INSTR_FETCHED"]):
    SPEC_WORDS[f"{_n}_LO"] = (0x100 + 8 * _i, RO)
    SPEC_WORDS[f"{_n}_HI"] = (0x104 + 8 * _i, RO)

#: (register, field) -> (lsb, width, access, reset)
SPEC_FIELDS = {
    ("CONFIG_NMTS", "N"): (0, 8, RO, None), ("CONFIG_NMTS", "M"): (8, 8, RO, None),
    ("CONFIG_NMTS", "T"): (16, 8, RO, None), ("CONFIG_NMTS", "S"): (24, 8, RO, None),
    ("CONFIG_L", "L"): (0, 8, RO, None), ("CONFIG_L", "PACKED"): (8, 1, RO, None),
    ("CONFIG_L", "AXI_PORTS"): (9, 3, RO, None), ("CONFIG_L", "DATA_BYTES"): (16, 8, RO, None),
    ("CONFIG_SEMS", "IDS"): (0, 17, RO, None),
    ("CTRL", "START"): (0, 1, W1P, 0), ("CTRL", "SOFT_RESET"): (1, 1, W1P, 0),
    ("CTRL", "IRQ_EN"): (2, 1, RW, 0),
    ("STATUS", "BUSY"): (0, 1, RO, 0), ("STATUS", "DONE"): (1, 1, RO, 0),
    ("STATUS", "ERROR"): (2, 1, RO, 0), ("STATUS", "HOST_REQ"): (3, 1, RO, 0),
    ("IRQ_STATUS", "DONE"): (0, 1, W1C, 0), ("IRQ_STATUS", "ERROR"): (1, 1, W1C, 0),
    ("IRQ_STATUS", "HOST_REQ"): (2, 1, W1C, 0),
    ("ERR_CODE", "CODE"): (0, 8, RO, 0), ("ERR_CODE", "QUEUE"): (8, 16, RO, 0),
    ("ERR_CODE", "UNIT"): (24, 8, RO, 0), ("WATCHDOG", "CYCLES"): (0, 32, RW, 0),
    ("HOST_ACK", "ACK"): (0, 1, W1P, 0), ("FRAMES", "COUNT"): (0, 16, RW, 0),
}

SPEC_ERRORS = {0: "NONE", 1: "ILLEGAL_OPCODE", 2: "DMA_WINDOW", 3: "AXI_RESP", 4: "WATCHDOG",
               5: "START_BUSY", 6: "UNIT_ERROR", 7: "SEM_RANGE", 8: "BUFFER_RANGE"}


def test_map_matches_the_specification():
    words = {n: (off, r.access) for n, off, r, _ in REGMAP.words()}
    assert words == SPEC_WORDS
    for (reg, name), (lsb, width, access, reset) in SPEC_FIELDS.items():
        f = REGMAP[reg].field(name)
        assert (f.lsb, f.width, f.access, f.reset) == (lsb, width, access, reset), (reg, name)
    assert REGMAP.field_of("ID.ID").reset == int.from_bytes(b"TVIT", "big") == 0x54564954
    assert REGMAP.field_of("VERSION.VERSION").reset == REGMAP.version == 3
    assert {c.value: c.name for c in ERROR_CODES} == SPEC_ERRORS
    assert ErrCode.WATCHDOG == 4 and ErrCode(7).name == "SEM_RANGE"
    assert REGMAP.error_text(2).startswith("DMA outside the data window")
    for r in REGMAP:            # every register fits the 4 KiB window, no two words overlap
        assert r.end <= 4096
    assert [r.latched for r in REGMAP if r.width > 32].count(True) == 9   # 8 counters + HOST


def test_config_hash_and_constants():
    for name, cfg in PRESETS.items():
        assert config_hash(cfg) == int(hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8], 16)
    assert config_hash(PRESETS["paper"]) != config_hash(PRESETS["paper"].replace(L=8))
    c = config_constants(PRESETS["paper"], axi_ports=4, data_bytes=16)
    assert (c["CONFIG_NMTS.N"], c["CONFIG_L.L"], c["CONFIG_L.PACKED"],
            c["CONFIG_L.AXI_PORTS"], c["CONFIG_L.DATA_BYTES"]) == (8, 16, 1, 4, 16)
    # every build-time constant of the map is given
    assert set(c) == {f"{r.name}.{f.name}" for r in REGMAP for f in r.fields
                      if f.const and f.reset is None}
    with pytest.raises(ValueError, match="axi_ports"):
        config_constants(PRESETS["paper"], axi_ports=0)
    with pytest.raises(ValueError, match="data_bytes"):
        config_constants(PRESETS["paper"], data_bytes=256)
    assert config_constants(PRESETS["paper"].replace(L=64))["CONFIG_L.L"] == 64  # largest L
    # the semaphore file: 8192 ids by default, 65536 (the ISA's 16-bit sem field) at most
    assert c["CONFIG_SEMS.IDS"] == 8192
    assert config_constants(PRESETS["paper"], sems=1 << 16)["CONFIG_SEMS.IDS"] == 65536
    for bad in (0, (1 << 16) + 1):
        with pytest.raises(ValueError, match="sems"):
            config_constants(PRESETS["paper"], sems=bad)


def _reg(name="R", offset=0, access=RW, fields=None, **kw):
    return Register(name, offset, access, fields or [Field("X", 0, 8, RW)], **kw)


def _wide(name, offset):
    return Register(name, offset, RW, [Field("X", 0, 64, RW)], width=64)


@pytest.mark.parametrize("make,msg", [
    (lambda: Field("x", 0, 1, RW), "upper-case identifier"),
    (lambda: Field("X", 0, 0, RW), "width must be an int >= 1"),
    (lambda: Field("X", 0, 1, "WO"), "access must be one of"),
    (lambda: Field("X", 0, 4, RW, 16), "reset 16 does not fit 4 bits"),
    (lambda: Field("X", 0, 2, W1P), "W1P fields are one bit wide"),
    (lambda: Field("X", 0, 1, W1C, 1), "has reset 0"),
    (lambda: Field("X", 0, 8, RW, const=True), "only RO fields can be constant"),
    (lambda: Field("X", 0, 8, RW, None), "reset None"),
    (lambda: _reg(offset=2), "multiple of 4"),
    (lambda: _reg(width=48), "width must be 32, 64 or 128"),
    (lambda: _reg(fields=[Field("A", 0, 8, RW), Field("B", 7, 2, RW)]), "overlap"),
    (lambda: _reg(fields=[Field("A", 0, 8, RW), Field("A", 8, 2, RW)]), "duplicate field"),
    (lambda: _reg(fields=[Field("A", 30, 4, RW)]), "exceeds the register's 32 bits"),
    (lambda: _reg(access=RO), "an RO register has only RO fields"),
    (lambda: _reg(fields=[Field("A", 0, 8, RO)]), "every field is RO"),
    (lambda: _reg(width=64, fields=[Field("A", 0, 32, RW), Field("B", 32, 32, RW)]),
     "holds exactly one"),
    (lambda: RegisterMap(registers=[_reg("A", 0), _reg("B", 0)]), "overlap"),
    (lambda: RegisterMap(registers=[_wide("A", 0), _reg("B", 4)]), "overlap"),
    (lambda: RegisterMap(registers=[_reg("A", 0), _reg("A", 4)]), "duplicate register"),
    (lambda: RegisterMap(registers=[_reg("A", 4096)]), "outside the 4096-byte window"),
    (lambda: RegisterMap(registers=[_wide("A", 0), _reg("A_LO", 8)]), "collides"),
    (lambda: RegisterMap(registers=[_reg("A_B", 0, fields=[Field("C", 0, 1, RW)]),
                                    _reg("A", 4, fields=[Field("B_C", 0, 1, RW)])]), "collides"),
    (lambda: RegisterMap(registers=[_reg("BUS", 0, fields=[Field("BUS", 0, 1, RW)])]),
     "collides"),
    (lambda: RegisterMap(registers=[_reg("E", 0, RO, [Field("C", 0, 2, RO)])],
                         error_codes=[ErrorCode(4, "FOUR", "x")], error_field="E.C"),
     "does not fit"),
    (lambda: RegisterMap(registers=[_reg("E", 0, RO, [Field("C", 0, 2, RO)])],
                         error_codes=[ErrorCode(1, "A", "x"), ErrorCode(1, "B", "y")],
                         error_field="E.C"), "unique"),
    (lambda: RegisterMap(registers=[_reg("A", 0)], irq_enable="A.X", irq_status="A"),
     "one-bit RW"),
    (lambda: RegisterMap(registers=[_reg("A", 0)], irq_enable="A.X"), "both"),
    (lambda: RegisterMap(registers=[_reg("A", 0)], size=3000), "power of two"),
])
def test_validation_rejects(make, msg):
    with pytest.raises(RegMapError, match=msg):
        make()


def test_markdown_is_committed_and_complete():
    md = REGMAP.to_markdown()
    assert (REPO / "docs" / "regmap.md").read_text() == md, \
        "docs/regmap.md is stale: run `python -m hw regmap --format md -o docs/regmap.md`"
    for n, off in SPEC_WORDS.items():
        assert f"| 0x{off[0]:03X} | [`{n}`]" in md
    for c in ERROR_CODES:
        assert f"| {c.value} | {c.name} | {c.text} |" in md
    assert "| 2 | IRQ_EN | RW | 0x0 | `ctrl_irq_en` |" in md


def _expected_constants():
    """Every constant the header and the module must hold, from the map's objects."""
    want = {"REGMAP_VERSION": 3, "REGMAP_SIZE": 4096}
    for n, off, r, _ in REGMAP.words():
        want[n] = off
    for r in REGMAP:
        if r.width > 32:
            want[r.name] = r.offset
            continue
        for f in r.fields:
            stem = r.name if f.name == r.name else f"{r.name}_{f.name}"
            want[f"{stem}_SHIFT"] = f.lsb
            want[f"{stem}_MASK"] = ((1 << f.width) - 1) << f.lsb
    want["ID_VALUE"], want["VERSION_VALUE"] = 0x54564954, 3
    for v, n in SPEC_ERRORS.items():
        want[f"ERR_{n}"] = v
    return want


def test_c_header_compiles_and_matches(tmp_path):
    assert shutil.which("gcc"), "this test needs gcc (apt-get install gcc)"
    (tmp_path / "triovit_regs.h").write_text(REGMAP.to_c_header())
    want = _expected_constants()
    checks = "\n".join(f'    printf("{k} %llu\\n", (unsigned long long)TRIOVIT_{k});'
                       for k in want)
    (tmp_path / "t.c").write_text(f"""
#include <stdio.h>
#include "triovit_regs.h"
#include "triovit_regs.h"   /* the include guard works */
_Static_assert(TRIOVIT_CTRL == 0x020u, "CTRL");
_Static_assert(TRIOVIT_CTRL_START_MASK == 1u && TRIOVIT_CTRL_IRQ_EN_SHIFT == 2u, "CTRL fields");
_Static_assert(TRIOVIT_CYCLES_HI == 0x104u, "CYCLES_HI");
_Static_assert(TRIOVIT_ERR_WATCHDOG == 4u, "watchdog code");
_Static_assert(TRIOVIT_ID_VALUE == 0x54564954u, "magic");
int main(void) {{
{checks}
    return 0;
}}
""")
    exe = tmp_path / "t"
    r = subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-o", str(exe), "t.c"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    got = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    assert got == want
    # nothing in the header beyond these (and the guard)
    defines = [ln.split()[1] for ln in REGMAP.to_c_header().splitlines()
               if ln.startswith("#define")]
    assert sorted(defines) == sorted(["TRIOVIT_REGMAP_H"] + [f"TRIOVIT_{k}" for k in want])
    assert "#define MY_CTRL 0x020u" in REGMAP.to_c_header(prefix="MY")


def test_python_module_is_standalone_and_matches(tmp_path):
    (tmp_path / "triovit_regs.py").write_text(REGMAP.to_python())
    # -I -S: no site-packages, no PYTHONPATH: only the standard library is importable
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import triovit_regs as m; "
            "print(repr({k: v for k, v in vars(m).items() if k.isupper()}))")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = ast.literal_eval(r.stdout)
    regs = got.pop("REGISTERS")
    fields = got.pop("FIELDS")
    errors = got.pop("ERROR_TEXT")
    assert got == _expected_constants()
    assert regs == {n: off for n, (off, _) in SPEC_WORDS.items()}
    assert fields == {(r.name, f.name): (f.lsb, f.width, f.access) for r in REGMAP
                      for f in r.fields}
    assert errors == {c.value: c.text for c in ERROR_CODES}


def test_cli_emits_each_format(tmp_path, capsys):
    assert hw_main(["regmap"]) == 0
    assert capsys.readouterr().out == REGMAP.to_markdown()
    for fmt, emit in (("c", REGMAP.to_c_header), ("py", REGMAP.to_python)):
        out = tmp_path / f"regs.{fmt}"
        assert hw_main(["regmap", "--format", fmt, "-o", str(out)]) == 0
        assert out.read_text() == emit()
