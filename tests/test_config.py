"""AccelConfig: the paper preset, derived figures, validation and (de)serialisation."""
import json

import pytest

from sim.config import PRESETS, AccelConfig, ConfigError


def test_paper_preset_matches_the_paper():
    c = AccelConfig.from_string("paper")
    assert (c.N, c.M, c.T, c.S, c.L) == (8, 8, 8, 8, 16)
    # (N*M + T*S) * L = (64 + 64) * 16 = 2048 int8 multipliers, two per DSP48E2 -> 1024 DSPs
    assert c.multipliers == 2048 and c.dsps == 1024
    assert c.clock_mhz == 200.0 and c.dsp_packing
    # 2048 MAC/cycle * 200 MHz = 409.6 GMAC/s; 64 B/cycle * 200 MHz = 12.8 GB/s
    assert c.peak_gmacs == pytest.approx(409.6)
    assert c.dram_gbytes_per_s == pytest.approx(12.8)


def test_json_round_trip_and_file(tmp_path):
    for c in PRESETS.values():
        assert AccelConfig.from_json(c.to_json()) == c
    p = tmp_path / "c.json"
    p.write_text(PRESETS["small"].to_json())
    assert AccelConfig.from_string(str(p)) == PRESETS["small"]
    assert AccelConfig.from_string(PRESETS["small"].to_json()) == PRESETS["small"]


def test_overrides():
    c = AccelConfig.from_string("paper:L=8,dram_bytes_per_cycle=32,dsp_packing=false")
    assert c.L == 8 and c.dram_bytes_per_cycle == 32 and c.dsp_packing is False
    assert c.multipliers == 1024 and c.dsps == 1024


@pytest.mark.parametrize("kw, field", [
    (dict(N=0), "N"), (dict(L=65), "L"), (dict(T=2.5), "T"), (dict(S=True), "S"),
    (dict(buf_b_bytes=10), "buf_b_bytes"), (dict(dram_bytes_per_cycle=0), "dram_bytes_per_cycle"),
    (dict(clock_mhz=0), "clock_mhz"), (dict(clock_mhz="fast"), "clock_mhz"),
    (dict(dsp_packing=1), "dsp_packing"), (dict(N=3, M=3), "dsp_packing"),
])
def test_validation_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        AccelConfig(**kw)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="unknown config"):
        AccelConfig.from_string("zcu999")
    with pytest.raises(ConfigError, match="unknown config field"):
        AccelConfig.from_dict({"N": 8, "Q": 1})
    with pytest.raises(ConfigError, match="not valid JSON"):
        AccelConfig.from_json("{N: 8")
    with pytest.raises(ConfigError, match="key=value"):
        AccelConfig.from_string("paper:L")
    with pytest.raises(ConfigError, match="unknown config field"):
        PRESETS["paper"].replace(X=1)
    with pytest.raises(ConfigError, match="JSON object"):
        AccelConfig.from_dict(json.loads("[1, 2]"))
