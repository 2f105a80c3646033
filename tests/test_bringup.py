# amaranth: UnusedElaboratable=no
"""The first build that fits a ZCU102 (issues #13 and #15; docs/board.md "A first build that
fits"): the ``zcu102-l1`` preset and its default global buffers (the word-banked ones).

Checked here without building anything large: the preset's parameters against the paper core's
and the ZCU102's BRAM by capacity; ``default_buffers`` by preset name; and that every way the
accelerator is built for the preset takes the word buffers (``hw.system.Accelerator``, ``python
-m hw build zcu102``, ``python -m hw verilog accelerator``, ``python -m hw estimate
accelerator``), each stopped before the Verilog conversion. The RTL run of a blocked network on
the word buffers is tb/test_fast_rtl.py::test_tiny_network_word_buffers_fast.
"""

from __future__ import annotations

import gc
import math
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from hw.system.accelerator import Accelerator, default_buffers
from sim.config import (
    PAPER_DENSITY,
    PRESET_BUFFERS,
    PRESETS,
    ZCU102_BUFFERS,
    AccelConfig,
)

#: the ZCU102's XCZU9EG (the board's part, xczu9eg-ffvb1156-2-e)
ZCU102_BRAM36 = 912


def _facts(run):
    """``run()``'s result, with the hardware it built collected before returning: the tests stop
    the CLIs before the Verilog conversion, so that hardware is never elaborated, which Amaranth
    reports (at garbage collection, i.e. in some later test) unless it is collected here with
    that warning off. ``run`` returns plain values, no reference to the hardware."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            return run()
        finally:
            gc.collect()


def test_preset_is_one_paper_core_with_the_zcu102_buffers():
    cfg, paper = PRESETS["zcu102-l1"], PRESETS["paper"]
    assert (cfg.N, cfg.M, cfg.T, cfg.S, cfg.L) == (paper.N, paper.M, paper.T, paper.S, 1)
    for k, v in {**PAPER_DENSITY, **ZCU102_BUFFERS}.items():
        assert getattr(cfg, k) == v, k
    # the DRAM the build has: one 128-bit HP port (axi_ports 1), 16 bytes per cycle
    assert cfg.dram_bytes_per_cycle == 16
    assert cfg.clock_mhz == paper.clock_mhz and cfg.dsp_packing
    # B, C, OUT by capacity (4 KiB per BRAM36) leave room for the core's own memories
    by_size = sum(math.ceil(getattr(cfg, f"buf_{b}_bytes") / 4096) for b in ("b", "c", "out"))
    assert by_size == 672 and by_size < ZCU102_BRAM36
    assert cfg.dsps == 64       # (8 x 8 + 8 x 8) int8 multipliers, two per DSP48E2


@pytest.mark.parametrize("spec,want", [("zcu102-l1", "word"), ("zcu102-l1:clock_mhz=150", "word"),
                                       ("paper", "behavioural"), ("small:L=1", "behavioural"),
                                       ("zcu102", "behavioural")])
def test_default_buffers(spec, want):
    # the Accelerator itself is not built here: hardware made only to read an attribute is
    # reported by Amaranth as never elaborated; that Accelerator(buffers=None) takes this
    # choice, and that an explicit one wins, is checked on the Verilog the CLIs write (below)
    assert default_buffers(AccelConfig.from_string(spec)) == want


def test_preset_buffers_names_presets():
    assert set(PRESET_BUFFERS) <= set(PRESETS)
    with pytest.raises(ValueError, match="buffers must be one of"):
        Accelerator(config="small", buffers="bytes")


class _Stop(Exception):
    """Raised by a stand-in at the Verilog conversion, carrying what it was given."""


def test_build_zcu102_uses_word_buffers(tmp_path, monkeypatch):
    """``python -m hw build zcu102 --config zcu102-l1`` builds its accelerator with the word
    buffers (the core with backpressure; the buffers a module of their own)."""
    import hw.hier
    from hw.cli import main
    from hw.core import Core
    from hw.system.wordbanked import WordBankedBuffers

    def convert(acc, **kw):
        core = acc.modules["trio_core"]
        raise _Stop({
            "buffers": acc.buffers, "name": acc.cfg.name, "L": acc.L,
            "word": isinstance(acc.modules["trio_buffers"], WordBankedBuffers),
            "core": isinstance(core, Core),
            "ready": "ready" in core.signature.members["mat_r"].signature.members})
    monkeypatch.setattr(hw.hier, "convert_modules", convert)

    def run():
        with pytest.raises(_Stop) as e:
            main(["build", "zcu102", "--config", "zcu102-l1", "--no-cache", "-o",
                  str(tmp_path / "t")])
        return e.value.args[0]
    got = _facts(run)
    assert got == {"buffers": "word", "name": "zcu102-l1", "L": 1, "word": True, "core": True, "ready": True}
    assert not (tmp_path / "t").exists()


def test_verilog_and_estimate_accelerator_use_word_buffers(tmp_path, monkeypatch):
    """``hw verilog accelerator --config zcu102-l1`` and ``hw estimate accelerator --config
    zcu102-l1`` take the preset's word buffers unless ``--param buffers=...`` says otherwise."""
    import hw.cli
    import hw.hier
    import hw.system.estimate

    def convert(acc, **kw):
        raise _Stop(acc.buffers)
    monkeypatch.setattr(hw.hier, "convert", convert)

    def buffers(*extra):
        def run():
            with pytest.raises(_Stop) as e:
                hw.cli.main(["verilog", "accelerator", "--config", "zcu102-l1", "-o",
                             str(tmp_path), *extra])
            return e.value.args[0]
        return _facts(run)
    assert buffers() == "word"
    assert buffers("--param", "buffers=behavioural") == "behavioural"

    seen = []

    def estimate(cfg, **kw):
        seen.append((cfg.name, kw["buffers"]))
        raise _Stop()
    monkeypatch.setattr(hw.system.estimate, "estimate_accelerator", estimate)
    for argv, want in ((["--config", "zcu102-l1"], ("zcu102-l1", "word")),
                       (["--config", "zcu102-l1", "--param", "buffers=banked"],
                        ("zcu102-l1", "banked")),
                       (["--config", "small"], ("small", "behavioural"))):
        with pytest.raises(_Stop):
            hw.cli.main(["estimate", "accelerator", *argv])
        assert seen[-1] == want
