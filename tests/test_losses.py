"""The per-layer loss breakdown (sim.losses, ``python -m sim perf --losses``).

Hand derivations on ``paper-1core`` ((N, M, T, S, L) = (8, 8, 8, 8, 1): R-MAC and MAT 64
multipliers each, 128 in all): the levels are counted from the spec of the engines (a
depthwise pass covers N channels x M pixels of a row in k*k steps; the attention's steps as in
docs/isa.md), the busy cycles from the instructions' fetch cycles in the trace.
"""
import json

import pytest

from sim.compile import compile as compile_
from sim.config import AccelConfig
from sim.losses import LOSS_COLUMNS, layer_losses
from sim.perf import simulate
from test_funcsim import Builder

ONE = AccelConfig.from_string("paper-1core")


def _losses(prog, cfg=ONE):
    b = compile_(prog, cfg)
    trace = []
    rep = simulate(b, trace=trace)
    return b, rep, trace, {r["name"]: r for r in layer_losses(b, rep, trace)}


def test_depthwise_5x5_on_14_columns():
    b = Builder(3)
    x = b.input("x", (16, 14, 14))
    b.conv("dw", x, 16, k=5, s=1, p=2, dw=True)
    _, rep, trace, rows = _losses(b.prog())
    r = rows["dw"]
    # MACs 16 * 25 * 14 * 14 = 78,400; ideal / 128, on the R-MAC alone / 64
    assert r["macs"] == 78_400
    assert r["ideal"] == pytest.approx(78_400 / 128)
    assert r["unit"] == pytest.approx(78_400 / 64)
    # passes: 2 blocks of N = 8 channels x 14 rows x 2 passes of M = 8 lanes over 14 columns,
    # 25 steps each = 1,400 steps (16 of them per row where 14 pixels are useful)
    assert r["padded"] == 1400 and r["slowest"] == 1400
    assert r["units"] == "RMAC"
    # the busy level: the DW instructions' fetch-to-next-fetch cycles in the trace
    dw = [e for e in trace if e[2] == "DW_RSA"]
    assert dw and r["fixed"] == sum(e[5] - e[4] for e in dw)
    assert r["fixed"] > r["slowest"]
    # one core: every cycle the core works on the layer is a DW cycle of its R-MAC
    assert r["path"] == r["fixed"]
    assert r["cycles"] == pytest.approx(rep.layers[0].cycles)


def test_attention_levels():
    b = Builder(4)
    # 2 heads of d = 16 on 7x7 tokens (n = 49)
    x = b.input("x", (96, 7, 7))
    b.attention("att", x, 16)
    _, rep, trace, rows = _losses(b.prog())
    r = rows["att"]
    d, n, heads = 16, 49, 2
    kv = out = d * d * n
    div = d * n
    assert r["macs"] == heads * (kv + out + div)
    assert r["ideal"] == pytest.approx(r["macs"] / 128)
    # step i on the R-MAC, ATT_DIV and ATT_OUT on the MAT
    assert r["unit"] == pytest.approx(heads * max(kv, out + div) / 64)
    # engine steps per head: KV d * ceil(d/M) * ceil(n/N) = 16 * 2 * 7 = 224 (R-MAC);
    # DIV n * ceil(d/T) = 98 and OUT ceil(d/S) * n * ceil(d/T) = 196 (MAT); KSUM on the
    # adder tree d * ceil(n/N) = 112 (AUX)
    assert r["padded"] == heads * (98 + 196)
    # the core serialises KV -> OUT of a head: more cycles than its busiest unit alone
    assert r["path"] > r["fixed"]
    assert set(r["units"].split("+")) == {"AUX", "MAT", "RMAC"}


@pytest.mark.parametrize("model", ["tiny", "b0-r64"])
def test_levels_telescope_on_zoo_models(model):
    from sim import zoo
    cfg = AccelConfig.from_string("paper")
    prog = zoo.tiny(seed=0) if model == "tiny" else zoo.build(model, seed=0)
    b, rep, trace, rows = _losses(prog, cfg)
    by_name = {lp.name: lp for lp in rep.layers}
    assert rows
    for r in rows.values():
        lv = [r["ideal"]] + [r[k] for k, _ in LOSS_COLUMNS[:-1]]
        assert lv == sorted(lv), r                        # each loss >= 0 up to "path"
        assert r["cycles"] == pytest.approx(by_name[r["name"]].cycles)
        assert r["ideal"] == pytest.approx(by_name[r["name"]].macs / rep.multipliers)
        # a depthwise conv has all its MACs on the R-MAC: half the multipliers
        if r["kind"] == "depthwise":
            assert r["unit"] == pytest.approx(2 * r["ideal"])


def test_a_trace_of_another_binary_is_refused():
    b = Builder(5)
    x = b.input("x", (16, 8, 8))
    b.conv("dw", x, 16, k=3, s=1, p=1, dw=True)
    bin_ = compile_(b.prog(), ONE)
    trace = []
    rep = simulate(bin_, trace=trace)
    with pytest.raises(ValueError, match="trace"):
        layer_losses(bin_, rep, trace[:-3])


def test_cli_losses(capsys):
    from sim.__main__ import main
    assert main(["perf", "--model", "b0-r64", "--config", "paper", "--no-layers", "--frames",
                 "1", "--losses"]) in (0, None)
    out = capsys.readouterr().out
    assert "cycles per cause" in out and "depthwise" in out
    assert main(["perf", "--model", "b0-r64", "--config", "paper", "--frames", "1", "--json",
                 "--losses", "depthwise,pointwise"]) in (0, None)
    d = json.loads(capsys.readouterr().out)
    assert d["losses"] and {r["kind"] for r in d["losses"]} <= {"depthwise", "pointwise"}
