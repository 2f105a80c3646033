"""Issue #17: the authors' flag names as aliases, and ``--paper`` = the authors' code's settings.

The expected values are read off the authors' code (github.com/shihuihong214/Trio-ViT:
``main_imagenet.py`` argparse defaults and ``quant/block_recon.py``, which are BRECQ's), not off
this project's code.
"""

import math

import numpy as np
import torch

from quant.cli import _qconfig, _recon_config, _resolve_seed, build_parser, main
from quant.reconstruct import ReconConfig, lsq_schedule, rec_error


def parse(*argv):
    return _resolve_seed(build_parser().parse_args(list(argv)))


def test_authors_command_line_is_accepted_with_their_meaning():
    a = parse("quantize", "-o", "x.qmodel", "--n_bits_w", "4", "--channel_wise", "--n_bits_a", "6",
              "--act_quant", "--disable_8bit_head_stem", "--num_samples", "32", "--iters_w", "100",
              "--weight", "0.5", "--lr", "4e-4", "--p", "2.4", "--iters_a", "50", "--b_start", "10",
              "--b_end", "3", "--warmup", "0.1", "--batch_size", "8", "--data_path", "/d",
              "--weight_url", "w.pt", "--test_before_calibration")
    q = _qconfig(a)
    assert (q.w_bits, q.a_bits, q.channel_wise, q.act_quant) == (4, 6, True, True)
    assert q.stem_head_bits is None            # --disable_8bit_head_stem: stem/head not forced to 8
    assert (a.calib_size, a.batch_size, a.data, a.checkpoint) == (32, 8, "/d", "w.pt")
    assert a.test_before_calibration
    r = _recon_config(a)
    assert (r.iters, r.iters_a, r.reg, r.lr_a, r.lr_a_relative, r.p_a) == (100, 50, 0.5, 4e-4, False, 2.4)
    assert r.beta == (10.0, 3.0) and r.warmup == 0.1
    assert r.separate                          # --iters_a / --p belong to the separate LSQ pass


def test_defaults_and_stem_head_flags():
    q = _qconfig(parse("quantize", "-o", "x"))
    assert q.act_quant and q.stem_head_bits == 8 and q.channel_wise
    assert _qconfig(parse("quantize", "-o", "x", "--keep-stem-head-8bit")).stem_head_bits == 8
    assert _qconfig(parse("quantize", "-o", "x", "--no-act-quant")).act_quant is False
    assert main(["quantize", "-o", "x", "--keep-stem-head-8bit", "--disable_8bit_head_stem"]) == 2


def test_paper_is_the_authors_settings():
    a = parse("quantize", "-o", "x", "--paper")
    r = _recon_config(a)
    # main_imagenet.py: --iters_w 20000, --weight 0.01, --b_start 20, --b_end 2, --warmup 0.2,
    # --iters_a 5000, --lr 4e-4, --p 2.4, --num_samples 1024, --seed 1005; block_recon.py:
    # batch_size 32, Adam() at its default lr 1e-3 for AdaRound, CosineAnnealingLR(T_max=iters,
    # eta_min=0) for LSQ, lp_loss (sum over channels, mean over the rest) with p=2 in the weight
    # pass (main passes p only to the activation pass), opt_mode 'mse', weight and activation
    # passes separate
    assert (r.iters, r.iters_a, r.batch_size, r.max_images) == (20000, 5000, 32, 1024)
    assert (r.lr_w, r.lr_a, r.lr_a_relative, r.lr_a_cosine) == (1e-3, 4e-4, False, True)
    assert (r.p, r.p_a, r.rec_sum_channels, r.fisher) == (2.0, 2.4, True, False)
    assert (r.reg, r.beta, r.warmup, r.separate) == (0.01, (20.0, 2.0), 0.2, True)
    assert a.seed == 1005 and parse("quantize", "-o", "x").seed == 0
    assert parse("quantize", "-o", "x", "--paper", "--seed", "3").seed == 3
    # a flag still overrides --paper
    assert _recon_config(parse("quantize", "-o", "x", "--paper", "--iters_w", "7")).iters == 7


def test_rec_error_is_brecq_lp_loss():
    rng = np.random.default_rng(0)
    y, t = rng.normal(size=(3, 5, 4, 4)), rng.normal(size=(3, 5, 4, 4))
    for p in (2.0, 2.4):
        ref = (np.abs(y - t) ** p).sum(axis=1).mean()          # lp_loss(reduction='none')
        got = rec_error(torch.from_numpy(y), torch.from_numpy(t), p, sum_channels=True)
        assert math.isclose(float(got), ref, rel_tol=1e-12)
    assert math.isclose(float(rec_error(torch.from_numpy(y), torch.from_numpy(t))),
                        ((y - t) ** 2).mean(), rel_tol=1e-12)


def test_lsq_schedule_is_cosine_annealing():
    w, s = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    ref_s = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w], "lr": 1e-3}, {"params": [s], "lr": 4e-4}])
    ref = torch.optim.SGD([ref_s], lr=4e-4)
    sched = lsq_schedule(opt, 10, constant_groups=1)
    ref_sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=10, eta_min=0.0)
    for _ in range(10):
        assert opt.param_groups[0]["lr"] == 1e-3
        assert math.isclose(opt.param_groups[1]["lr"], ref.param_groups[0]["lr"], abs_tol=1e-12)
        opt.step(), ref.step()
        sched.step(), ref_sched.step()
    assert opt.param_groups[1]["lr"] < 1e-12


def test_separate_passes_harden_then_learn_steps():
    """--paper's order on a small model: AdaRound with the steps frozen, then LSQ on hardened
    weights; the steps move in the second pass only."""
    from quant.bn_calib import random_calibrated_model
    from quant.data import SyntheticImages
    from quant.fold import fold_bn
    from quant.qmodel import QConfig, QConv, QLinear, lower
    from quant.quantizers import FixedWeightQuantizer
    from quant.reconstruct import reconstruct
    torch.manual_seed(0)
    m, _ = random_calibrated_model("b0-r64", seed=1, n_images=4)
    m.set_attention_mode("linear")
    g = lower(fold_bn(m), resolution=64)
    ds = SyntheticImages(6, 64, seed=5)
    imgs = ds.images()
    g.prepare(QConfig()).calibrate([imgs])
    before = {k: float(q.scale.detach()) for k, q in g.act_q.items()}
    cfg = ReconConfig(iters=2, iters_a=3, batch_size=2, max_images=6, separate=True, lr_a=1e-2,
                      lr_a_relative=True, lr_a_cosine=True, p_a=2.4, rec_sum_channels=True,
                      guard=False)
    calls = []
    orig = torch.optim.Adam.__init__

    def spy(self, groups, *a, **k):
        calls.append(len(list(groups)) if not isinstance(groups, list) else len(groups))
        return orig(self, groups, *a, **k)
    torch.optim.Adam.__init__ = spy
    try:
        rep = reconstruct(g, imgs, cfg, progress=False)
    finally:
        torch.optim.Adam.__init__ = orig
    assert len(calls) == 2 * len(rep["blocks"])          # two optimisers (passes) per block
    wnodes = [n for n in g.nodes if isinstance(n, (QConv, QLinear))]
    assert wnodes and all(isinstance(n.wq, FixedWeightQuantizer) for n in wnodes)
    moved = [k for k, q in g.act_q.items() if float(q.scale.detach()) != before[k]]
    assert moved, "the LSQ pass did not move any step"


# -- docs/quant.md's two tables against the code (a doc cannot drift from the parser silently) ---

def _section_table(heading: str, first_cell: str) -> list[list[str]]:
    """Rows (cells stripped) of the first markdown table under ``heading`` in docs/quant.md whose
    header row starts with ``first_cell``."""
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "docs" / "quant.md").read_text()
    sec = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = sec.splitlines()
    start = next(i for i, s in enumerate(lines) if s.startswith(f"| {first_cell} |"))
    rows = []
    for s in lines[start + 2:]:
        if not s.startswith("|"):
            break
        rows.append([c.strip() for c in s.strip().strip("|").split("|")])
    return rows


def test_docs_alias_table_is_the_parser_s():
    """Every row of the docs' alias table is an authors' flag that the ``quantize`` parser
    accepts as another name of the same option, and every alias the code lists is in the
    table."""
    import re

    from quant.cli import AUTHOR_ALIASES
    rows = _section_table("The authors' flags and `--paper`", "authors' flag")
    pairs = set()
    for row in rows:
        theirs = re.findall(r"`(--\w+)", row[0])
        ours = re.findall(r"`(--[\w-]+)", row[1])
        assert theirs and len(theirs) == len(ours), row
        pairs |= set(zip(theirs, ours))
    assert pairs == set(AUTHOR_ALIASES.items())
    sub = next(a for a in build_parser()._actions if a.dest == "cmd").choices["quantize"]
    by_flag = {s: a for a in sub._actions for s in a.option_strings}
    for theirs, ours in pairs:
        assert theirs in by_flag, f"{theirs} is not accepted"
        assert by_flag[theirs] is by_flag[ours], f"{theirs} is not another name of {ours}"


def test_docs_paper_table_is_paper():
    """The ``--paper`` column of the docs' settings table states PAPER's values (the values
    themselves are checked against the authors' code by test_paper_is_the_authors_settings)."""
    import re

    from quant.reconstruct import PAPER, PAPER_SEED
    rows = {r[0]: r[1] for r in _section_table("The authors' flags and `--paper`", "setting")}

    def nums(label):
        return [float(x) for x in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", rows[label])]
    assert nums("AdaRound iterations per block") == [PAPER.iters]
    assert nums("LSQ iterations per block") == [PAPER.iters_a] and PAPER.separate
    assert "separate" in rows["passes"] and PAPER.separate
    assert nums("AdaRound rate") == [PAPER.lr_w]
    assert nums("LSQ rate")[:1] == [PAPER.lr_a] and "absolute" in rows["LSQ rate"]
    assert "cosine" in rows["LSQ rate"] and PAPER.lr_a_cosine and not PAPER.lr_a_relative
    assert nums("reconstruction error")[-2:] == [PAPER.p, PAPER.p_a] and PAPER.rec_sum_channels
    assert nums("rounding regulariser")[:1] == [PAPER.reg]
    assert nums("beta, warm-up") == [PAPER.beta[0], PAPER.beta[1], 100 * PAPER.warmup]
    assert nums("batch, images") == [PAPER.batch_size, PAPER.max_images]
    assert nums("seed")[:1] == [PAPER_SEED]
