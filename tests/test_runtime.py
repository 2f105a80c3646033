"""The runtime without a board: register map from the generated module, the MMIO backend over
files standing in for /dev/uioN, /dev/mem, /dev/udmabufN and sysfs, the UIO interrupt protocol,
and ``runtime.run``'s checks and error messages against a scripted register model.
(``tb/test_runtime_rtl.py`` runs the same code against the RTL accelerator.)"""

import socket
import struct

import numpy as np
import pytest

import runtime
from hw.system.regmap import ERROR_CODES, ID_MAGIC, REGMAP, REGMAP_VERSION, config_hash
from runtime.__main__ import main
from runtime.device import Device, DeviceError
from runtime.mmio import MmioDevice, UioIrq, find_uio, udmabuf_info, uio_map_size
from runtime.regmap import RegMapFileError, load_regmap
from sim import compile as sc
from sim import golden, zoo
from sim.compile.layout import pack, tensor_layout
from sim.config import PRESETS
from sim.image import instruction_image, parse_table
from sim.isa import SEM_IDS, encode

CFG = PRESETS["small"].replace(L=1)


@pytest.fixture(scope="module")
def tiny():
    prog = zoo.tiny()
    t = prog.tensors[prog.inputs[0]]
    x = golden.quantize_input(zoo.random_image(t.shape[-1], seed=3), t)
    return sc.compile(prog, CFG), x


# -- register map ------------------------------------------------------------------------------

def _words():
    return {n: off for n, off, _r, _i in REGMAP.words()}


def test_regmap_default_is_the_one_description():
    rm = load_regmap()
    assert rm.registers == _words()
    assert rm.magic == ID_MAGIC and rm.version == REGMAP_VERSION and rm.size == REGMAP.size
    for r in REGMAP:
        for f in r.fields:
            assert rm.mask(f"{r.name}.{f.name}") == f.mask
    for c in ERROR_CODES:
        assert rm.error_name(c.value) == c.name and rm.error_text(c.value) == c.text


def test_regmap_from_generated_file_and_env(tmp_path, monkeypatch):
    from hw.cli import main as hw_main
    path = tmp_path / "trio_regmap.py"
    assert hw_main(["regmap", "--format", "py", "-o", str(path)]) == 0
    rm = load_regmap(path)
    assert rm.source == str(path) and rm.registers == _words()
    monkeypatch.setenv("TRIOVIT_REGMAP", str(path))
    assert load_regmap().source == str(path)


def test_regmap_bad_files(tmp_path):
    with pytest.raises(RegMapFileError, match="not found"):
        load_regmap(tmp_path / "nope.py")
    p = tmp_path / "other.py"
    p.write_text("REGISTERS = {}\n")
    with pytest.raises(RegMapFileError, match="missing FIELDS"):
        load_regmap(p)
    p.write_text("syntax error (\n")
    with pytest.raises(RegMapFileError, match="cannot be loaded"):
        load_regmap(p)


# -- MMIO backend over stand-in files ----------------------------------------------------------

def _board(tmp_path, *, map_size="0x00001000", buf_size=1 << 16, phys=0x7_8000_0000,
           cls="u-dma-buf"):
    """A sysfs tree and device files as a ZCU102 with the bitstream's drivers would have."""
    sysfs = tmp_path / "sys"
    m = sysfs / "class" / "uio" / "uio3"
    (m / "maps" / "map0").mkdir(parents=True)
    (m / "name").write_text("trio_accel\n")
    (m / "maps" / "map0" / "size").write_text(map_size + "\n")
    u = sysfs / "class" / cls / "udmabuf0"
    u.mkdir(parents=True)
    (u / "phys_addr").write_text(f"0x{phys:016x}\n")
    (u / "size").write_text(f"{buf_size}\n")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "uio3").write_bytes(bytes(4096))
    (dev / "udmabuf0").write_bytes(bytes(buf_size))
    (dev / "mem").write_bytes(bytes(0x3000))
    return sysfs, dev


@pytest.mark.parametrize("cls", ["u-dma-buf", "udmabuf"])
def test_sysfs_parsing(tmp_path, cls):
    sysfs, _ = _board(tmp_path, cls=cls)
    assert uio_map_size("/dev/uio3", sysfs=sysfs) == 4096
    assert udmabuf_info("/dev/udmabuf0", sysfs=sysfs) == (0x7_8000_0000, 1 << 16)
    assert find_uio("trio_accel", sysfs=sysfs) == "/dev/uio3"
    with pytest.raises(DeviceError, match="no UIO device named 'other'.*uio3=trio_accel"):
        find_uio("other", sysfs=sysfs)
    with pytest.raises(DeviceError, match="udmabuf1.*u-dma-buf module"):
        udmabuf_info("/dev/udmabuf1", sysfs=sysfs)
    with pytest.raises(DeviceError, match=r"uio0: .*uio0/maps/map0/size not found"):
        uio_map_size("uio0", sysfs=sysfs)
    (sysfs / "class" / "uio" / "uio3" / "maps" / "map0" / "size").write_text("lots\n")
    with pytest.raises(DeviceError, match="holds 'lots', not a number"):
        uio_map_size("uio3", sysfs=sysfs)


def test_mmio_registers_and_buffer_through_uio(tmp_path):
    sysfs, dev = _board(tmp_path)
    with MmioDevice(uio=str(dev / "uio3"), udmabuf=str(dev / "udmabuf0"), sysfs=str(sysfs)) as d:
        assert (d.buffer_addr, d.buffer_size) == (0x7_8000_0000, 1 << 16)
        d.write("DATA_SIZE", 0x12345678)
        d.write64("DATA_BASE", 0x0123_4567_89AB_CDEF)
        d.write_buffer(100, b"trio")
        assert d.read_buffer(99, 6) == b"\0trio\0"
        with pytest.raises(DeviceError, match="outside the 65536-byte buffer"):
            d.write_buffer((1 << 16) - 2, b"abc")
    regs = (dev / "uio3").read_bytes()
    w = _words()
    assert struct.unpack_from("<I", regs, w["DATA_SIZE"])[0] == 0x12345678
    assert struct.unpack_from("<II", regs, w["DATA_BASE_LO"]) == (0x89ABCDEF, 0x01234567)
    assert (dev / "udmabuf0").read_bytes()[100:104] == b"trio"
    # reading goes to the same words
    with MmioDevice(uio=str(dev / "uio3"), udmabuf=str(dev / "udmabuf0"), sysfs=str(sysfs)) as d:
        assert d.read64("DATA_BASE") == 0x0123_4567_89AB_CDEF


def test_mmio_dev_mem_polls(tmp_path):
    sysfs, dev = _board(tmp_path)
    with MmioDevice(mem_addr=0x2000, mem_dev=str(dev / "mem"), udmabuf=str(dev / "udmabuf0"),
                    sysfs=str(sysfs)) as d:
        assert not d.has_irq
        d.write("WATCHDOG", 77)
        with pytest.raises(DeviceError, match="no interrupt"):
            d.wait_irq(0.1)
    assert struct.unpack_from("<I", (dev / "mem").read_bytes(), 0x2000 + _words()["WATCHDOG"])[0] == 77
    with pytest.raises(ValueError, match="page-aligned"):
        MmioDevice(mem_addr=0x2004, mem_dev=str(dev / "mem"), sysfs=str(sysfs))


def test_mmio_missing_devices(tmp_path):
    sysfs, dev = _board(tmp_path, map_size="0x800")
    with pytest.raises(DeviceError, match="map0 is 2048 bytes, the register window needs 4096"):
        MmioDevice(uio=str(dev / "uio3"), sysfs=str(sysfs))
    sysfs, dev = _board(tmp_path / "b")
    with pytest.raises(DeviceError, match="UIO device .*uio3 not found"):
        (dev / "uio3").unlink()
        MmioDevice(uio=str(dev / "uio3"), sysfs=str(sysfs))
    with pytest.raises(DeviceError, match="udmabuf device .*udmabuf7 not found"):
        (sysfs / "class" / "u-dma-buf" / "udmabuf0").rename(sysfs / "class" / "u-dma-buf" / "udmabuf7")
        MmioDevice(mem_addr=0, mem_dev=str(dev / "mem"), udmabuf=str(dev / "udmabuf7"),
                   sysfs=str(sysfs))
    with pytest.raises(ValueError, match="exactly one"):
        MmioDevice(sysfs=str(sysfs))


def test_uio_interrupt_protocol():
    a, b = socket.socketpair()
    try:
        irq = UioIrq(a.fileno())
        assert irq.wait(0.05) is False                       # nothing came
        assert struct.unpack("=I", b.recv(4))[0] == 1       # but it unmasked first
        b.send(struct.pack("=I", 7))                        # the kernel's event count
        assert irq.wait(1.0) is True and irq.count == 7
        assert struct.unpack("=I", b.recv(4))[0] == 1
    finally:
        a.close()
        b.close()


# -- runtime.run against a scripted register model ---------------------------------------------

class ScriptedAccel(Device):
    """Registers as plain words; on START it plays ``script`` (a list of IRQ_STATUS events with
    the STATUS / ERR_CODE / HOST_INSTR to show), one per interrupt."""

    def __init__(self, *, cfg, script, irq=True, ident=ID_MAGIC, sems=SEM_IDS):
        super().__init__()
        self.w = {off: 0 for off in _words().values()}
        self.w[_words()["ID"]] = ident
        self.w[_words()["VERSION"]] = REGMAP_VERSION
        self.w[_words()["CONFIG_HASH"]] = config_hash(cfg)
        self.w[_words()["CONFIG_SEMS"]] = sems
        self.buffer_addr, self.buffer_size = 0x4000_0000, 1 << 20
        self.buf = bytearray(self.buffer_size)
        self.script, self.started, self.acks, self.log = list(script), 0, 0, []
        self.has_irq = irq

    def read_word(self, off):
        self.log.append(("r", off))
        return self.w[off]

    def write_word(self, off, v):
        self.log.append(("w", off, v))
        w = _words()
        if off == w["CTRL"] and v & REGMAP.field_of("CTRL.START").mask:
            self.started += 1
            self._next()
        elif off == w["IRQ_STATUS"]:
            self.w[off] &= ~v
        elif off == w["HOST_ACK"]:
            self.acks += 1
            self._next()
        else:
            self.w[off] = v

    def _next(self):
        if self.script:
            ev = self.script.pop(0)
            for k, v in ev.items():
                self.w[_words()[k]] = v

    def read_buffer(self, off, n):
        self._check_range(off, n)
        return bytes(self.buf[off:off + n])

    def write_buffer(self, off, data):
        self._check_range(off, len(data))
        self.buf[off:off + len(data)] = data

    def wait_irq(self, timeout_s):
        return bool(self.w[_words()["IRQ_STATUS"]])

    def sleep(self, s):
        pass


def _irq(name):
    return REGMAP.field_of(f"IRQ_STATUS.{name}").mask


def _st(name):
    return REGMAP.field_of(f"STATUS.{name}").mask


@pytest.mark.parametrize("irq", [True, False])
def test_run_places_the_binary_serves_host_and_reads_counters(tiny, irq):
    binary, x = tiny
    host = next(i for i in binary.streams["global"] if i.op == "HOST_LN")
    word = encode(host)
    req = {"IRQ_STATUS": _irq("HOST_REQ"), "STATUS": _st("BUSY") | _st("HOST_REQ"),
           **{f"HOST_INSTR{i}": (word >> 32 * i) & 0xFFFFFFFF for i in range(4)}}
    done = {"IRQ_STATUS": _irq("DONE"), "STATUS": _st("DONE"), "CYCLES_LO": 5,
            "CYCLES_HI": 1, "INSTR_FETCHED_LO": 99}
    dev = ScriptedAccel(cfg=CFG, script=[req, done], irq=irq)
    res = runtime.run(dev, binary, x)
    assert res.status == "done" and res.host_requests == 1 and dev.acks == 1
    assert res.counters["CYCLES"] == (1 << 32) + 5 and res.counters["INSTR_FETCHED"] == 99
    assert set(res.counters) == {"CYCLES", "BUSY_MAT", "BUSY_RMAC", "BUSY_AUX", "DRAM_RD_BYTES",
                                 "DRAM_WR_BYTES", "STALL_CYCLES", "INSTR_FETCHED"}
    w = _words()
    lay = runtime.layout(binary)
    img, entries = instruction_image(binary)
    assert dev.w[w["INSTR_TABLE_LO"]] | dev.w[w["INSTR_TABLE_HI"]] << 32 == dev.buffer_addr
    assert dev.w[w["DATA_BASE_LO"]] == dev.buffer_addr + lay.data and lay.data % 4096 == 0
    assert dev.w[w["DATA_SIZE"]] == binary.dram.size
    assert parse_table(dev.buf[:len(img)], 1) == entries
    # the input in the symbol's layout (tiny's stem compiles dense: the image unfolded,
    # sim.compile.stem; tests/test_stem.py checks pack's im2col against a reference)
    sym = binary.symbols[f"tensor:{binary.prog.inputs[0]}"]
    assert sym["layout"] == "im2col"
    want = pack(x, **tensor_layout(sym))
    got = np.frombuffer(dev.buf, np.uint8)[lay.data + sym["addr"]:][:sym["nbytes"]]
    assert want.size == sym["nbytes"] and np.array_equal(got, want)
    # a 64-bit counter is read _LO first (it latches _HI)
    reads = [off for kind, off, *_ in dev.log if kind == "r"]
    assert reads.index(w["CYCLES_LO"]) < reads.index(w["CYCLES_HI"])
    # the host LayerNorm wrote its output into the data image
    assert np.frombuffer(dev.buf, np.uint8)[lay.data + host.f["dst"]:][:host.f["channels"]].any()


def test_run_refuses_another_config(tiny):
    binary, x = tiny
    dev = ScriptedAccel(cfg=CFG.replace(L=2), script=[])
    with pytest.raises(runtime.RunError, match="compiled for another config") as e:
        runtime.run(dev, binary, x)
    assert e.value.cause == "config" and dev.started == 0


def test_run_refuses_a_binary_with_more_semaphore_ids_than_the_file(tiny):
    binary, x = tiny
    # the ids the Binary's SIGNAL / WAIT name, counted here from the decoded streams
    used = {i.f["sem"] for s in binary.streams.values() for i in s if i.op in ("SIGNAL", "WAIT")}
    assert binary.sem_ids == max(used) + 1 > 1
    dev = ScriptedAccel(cfg=CFG, script=[], sems=binary.sem_ids - 1)
    with pytest.raises(runtime.RunError, match=rf"uses {binary.sem_ids} semaphore ids.* has "
                                               rf"{binary.sem_ids - 1} \(CONFIG_SEMS\)") as e:
        runtime.run(dev, binary, x)
    assert e.value.cause == "config" and dev.started == 0
    assert "\n" not in str(e.value)
    # exactly enough ids: started
    done = {"IRQ_STATUS": _irq("DONE"), "STATUS": _st("DONE")}
    dev = ScriptedAccel(cfg=CFG, script=[done], sems=binary.sem_ids)
    assert runtime.run(dev, binary, x).status == "done" and dev.started == 1


def test_run_refuses_no_accelerator(tiny):
    binary, x = tiny
    with pytest.raises(runtime.RunError, match="not a Trio-ViT accelerator"):
        runtime.run(ScriptedAccel(cfg=CFG, script=[], ident=0), binary, x)


@pytest.mark.parametrize("irq", [True, False])
def test_run_timeout(tiny, irq):
    binary, x = tiny
    dev = ScriptedAccel(cfg=CFG, script=[], irq=irq)
    with pytest.raises(runtime.RunError, match=r"^timeout: no .* within 0.001 s") as e:
        runtime.run(dev, binary, x, timeout_s=1e-3)
    assert e.value.cause == "timeout" and dev.started == 1


@pytest.mark.parametrize("code", [c for c in ERROR_CODES if c.value])
def test_run_error_codes_are_one_line(tiny, code):
    binary, x = tiny
    err = {"IRQ_STATUS": _irq("ERROR"), "STATUS": _st("ERROR"),
           "ERR_CODE": code.value | 3 << 8, "ERR_PC": 17}
    with pytest.raises(runtime.RunError) as e:
        runtime.run(ScriptedAccel(cfg=CFG, script=[err]), binary, x)
    msg = str(e.value)
    assert e.value.cause == "accelerator" and e.value.code == code.value and "\n" not in msg
    assert msg == (f"accelerator error {code.name} ({code.value}): {code.text}; at core0 MAT, "
                   f"instruction 17")


# -- CLI --------------------------------------------------------------------------------------

def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--image" in out and "--uio" in out and "--mem-addr" in out and "CONFIG_HASH" in out


def _cli_err(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    return err


def test_cli_bad_input(tmp_path, tiny, capsys):
    binary, x = tiny
    bpath, xpath = tmp_path / "m.bin.npz", tmp_path / "x.npy"
    binary.save(bpath)
    np.save(xpath, x)
    sysfs, dev = _board(tmp_path)
    common = ["--sysfs", str(sysfs), "--udmabuf", str(dev / "udmabuf0")]
    assert "no such file" in _cli_err(capsys, ["run", str(tmp_path / "none.npz"), "--image",
                                               str(xpath)])
    assert "no such input file" in _cli_err(capsys, ["run", str(bpath), "--image",
                                                     str(tmp_path / "x.jpg")])
    assert "uio9" in _cli_err(capsys, ["run", str(bpath), "--image", str(xpath), "--uio",
                                       str(dev / "uio9"), *common])
    # found by name in (the stand-in) sysfs: /dev/uio3, absent on this machine
    assert "UIO device /dev/uio3 not found" in _cli_err(
        capsys, ["run", str(bpath), "--image", str(xpath), "--uio-name", "trio_accel", *common])
    # a device that answers but holds no accelerator (ID reads 0)
    assert "not a Trio-ViT accelerator" in _cli_err(
        capsys, ["run", str(bpath), "--image", str(xpath), "--uio", str(dev / "uio3"), *common])
    np.save(xpath, x[:, :2])
    assert "shape" in _cli_err(capsys, ["run", str(bpath), "--image", str(xpath), "--uio",
                                        str(dev / "uio3"), *common])


def test_cli_input_from_picture_and_float_npy(tmp_path, tiny):
    from PIL import Image

    from quant.data import load_image
    from runtime.__main__ import _input
    binary, _x = tiny
    t = binary.prog.tensors[binary.prog.inputs[0]]
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    q = _input(binary, tmp_path / "a.png")
    ref = golden.quantize_input(load_image(tmp_path / "a.png", t.shape[-1])[0].numpy(), t)
    assert q.shape == tuple(t.shape) and np.array_equal(q, ref)
    img = rng.normal(size=t.shape).astype(np.float32)          # a normalised image
    np.save(tmp_path / "f.npy", img)
    assert np.array_equal(_input(binary, tmp_path / "f.npy"), golden.quantize_input(img, t))


def test_run_refuses_an_unaligned_buffer(tiny):
    binary, x = tiny
    dev = ScriptedAccel(cfg=CFG, script=[])
    dev.buffer_addr += 16
    with pytest.raises(runtime.RunError, match="not 4 KiB aligned") as e:
        runtime.run(dev, binary, x)
    assert e.value.cause == "device" and dev.started == 0
    with pytest.raises(ValueError, match="multiple of 4096"):
        runtime.layout(binary, table=16)
