"""BRECQ-style block reconstruction: AdaRound for weights, LSQ for activation steps.

Blocks (``QGraph.blocks``): the stem conv, every residual block (DSConv / MBConv / LiteMLA
context module) and the head. Blocks are reconstructed in order; block ``k`` sees the *quantized*
outputs of blocks ``< k`` as its input and is trained to reproduce the *float* model's output of
block ``k`` (from the float input), as in BRECQ (Li et al., ICLR 2021):

    loss = sum_b  F_b * (y_q - y_fp)^2  +  lam * sum_w (1 - |2 h(V_w) - 1|^beta)

with ``F_b = 1`` (plain MSE, the fast default) or the diagonal Fisher approximation
``F = (dL/dy)^2`` of the float model's cross-entropy against its own prediction (``fisher=True``,
the paper's objective). ``beta`` anneals from 20 to 2 after a 20 % warm-up without the
regulariser; AdaRound's ``V`` uses Adam at ``lr_w``, the LSQ steps Adam at ``lr_a``. After the
last iteration every rounding decision is hardened.

Settings: :data:`FAST` (the default: 40 AdaRound iterations per block at batch 4 on at most 32
cached images, LSQ steps at a learning rate of 1e-2 relative to each step; B1-R224 in a few CPU
minutes; see the comment at FAST) and :data:`PAPER` (the authors' code's settings, BRECQ's
scripts: 20000 AdaRound iterations then 5000 LSQ iterations
per block, batch 32, up to 1024 images; hours on a CPU, use ``--device cuda``).

If the learned steps make the block unexportable (a requant ratio reaching ``2**16``, beyond
:func:`sim.numerics.to_dyadic`'s 16-bit multiplier), the block's steps from before its
reconstruction are restored with a warning and its hardened weights are kept (then judged by
the guard as usual). An absolute LSQ rate can drive a small step towards 0. (The attention's
``out_mult``, which used to cross 2**16 when a step change flipped ``round(log2(s_q s_ks))``, now
moves the excess power of two into the log2 offset: :func:`quant.export.attention_plan`.)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .qmodel import QConv, QGraph, QLinear, _key
from .quantizers import AdaRoundWeightQuantizer

__all__ = ["ReconConfig", "FAST", "PAPER", "PAPER_SEED", "reconstruct", "rec_error", "lsq_schedule"]


def lsq_schedule(opt: torch.optim.Optimizer, iters: int, *, constant_groups: int = 0):
    """Cosine annealing to 0 over ``iters`` steps (``lr_i = lr_0 (1 + cos(pi i / iters)) / 2``,
    as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=iters, eta_min=0)`` in the authors'
    ``block_recon.py``) of every parameter group but the first ``constant_groups`` (AdaRound's
    ``V`` in a joint pass keeps its rate)."""
    n = max(1, int(iters))
    cos = lambda i: 0.5 * (1 + math.cos(math.pi * min(i, n) / n))  # noqa: E731
    const = lambda i: 1.0  # noqa: E731
    k = len(opt.param_groups)
    return torch.optim.lr_scheduler.LambdaLR(opt, [const] * constant_groups + [cos] * (k - constant_groups))


def rec_error(y: torch.Tensor, t: torch.Tensor, p: float = 2.0, *, sum_channels: bool = False,
              fisher: torch.Tensor | None = None) -> torch.Tensor:
    """The reconstruction error of a block output ``y`` vs its float target ``t``:
    ``|y - t|^p`` averaged over all elements, or summed over the channel axis (dim 1) and
    averaged over the rest (``sum_channels``, BRECQ's ``lp_loss``); with ``fisher`` the squared
    error weighted by it, summed per sample and averaged over the batch."""
    if fisher is not None:
        return ((y - t) ** 2 * fisher).sum() / y.shape[0]
    d = (y - t).abs().pow(p) if p != 2 else (y - t) ** 2
    return d.sum(1).mean() if sum_channels and d.dim() > 1 else d.mean()


@dataclass
class ReconConfig:
    iters: int = 20             #: iterations per block
    batch_size: int = 4
    max_images: int = 64        #: images whose block inputs/targets are cached
    lr_w: float = 1e-3          #: AdaRound V
    lr_a: float = 4e-5          #: LSQ steps
    reg: float = 0.01           #: rounding regulariser weight (lambda)
    beta: tuple = (20.0, 2.0)
    warmup: float = 0.2
    fisher: bool = False
    guard: bool = True          #: revert a block whose held-out output MSE did not improve
    holdout: float = 0.25       #: fraction of the cached images held out for the guard
    lr_a_relative: bool = False  #: lr_a relative to each step's initial s0 (Adam lr = lr_a s0)
    p: float = 2.0              #: exponent of the reconstruction error |y_q - y_fp|^p
    rec_sum_channels: bool = False  #: error summed over channels, mean over the rest (BRECQ's
    #: lp_loss; sets the scale lambda is weighed against) instead of the mean over all elements
    separate: bool = False      #: two passes per block: AdaRound (LSQ frozen), then LSQ (weights hard)
    iters_a: int | None = None  #: LSQ iterations of the second pass (separate); None: iters
    p_a: float | None = None    #: exponent of the LSQ pass's error (separate); None: p
    lr_a_cosine: bool = False   #: cosine annealing of the LSQ rate to 0 over its iterations


#: The fast default (tuned on a random BN-calibrated B1-R224, 64 real images; docs/quant.md):
#: 40 iterations per block, AdaRound lr 3e-2 (with lr 1e-3, 20-40 Adam steps move V by < 0.04,
#: so no rounding decision away from a tie can change), regulariser weight 1e-4 (at 0.01 the
#: rounding term, a sum over every weight, outweighs the per-element mean MSE by 10^3-10^5 once
#: the warm-up ends and freezes the decisions reached after 8 steps), 32 cached images (24
#: train, 8 held out for the guard). LSQ steps at a *relative* rate of 1e-2 (Adam moves a
#: parameter by about lr per step whatever its gradient's size, so one absolute rate moves the
#: steps of 1e-3..1 by wildly different fractions; relative, each moves by about 1 % per
#: iteration). Measured: 17 blocks kept (14 with the steps frozen), median held-out MSE ratio
#: 0.984 (0.997). Before the offset term of the shifted tensors' step gradient was fixed
#: (quant.quantizers.LSQActQuantizer) this setting raised every DSConv/MBConv block's MSE
#: 14-740x (all reverted by the guard), so the steps had been frozen.
FAST = ReconConfig(iters=40, lr_w=3e-2, reg=1e-4, max_images=32, lr_a=1e-2, lr_a_relative=True)
#: The authors' code (github.com/shihuihong214/Trio-ViT, ``main_imagenet.py`` and
#: ``quant/block_recon.py``, BRECQ's scripts): every setting and its source in docs/quant.md.
PAPER = ReconConfig(iters=20000, batch_size=32, fisher=False, max_images=1024, lr_w=1e-3,
                    reg=0.01, beta=(20.0, 2.0), warmup=0.2, p=2.0, rec_sum_channels=True,
                    separate=True, iters_a=5000, p_a=2.4, lr_a=4e-4, lr_a_relative=False,
                    lr_a_cosine=True)
#: The seed of the authors' ``main_imagenet.py`` (``--seed`` default, ``seed_all``).
PAPER_SEED = 1005


def _readers(g: QGraph):
    last = {}
    for i, n in enumerate(g.nodes):
        for t in n.reads():
            last[t] = i
    return last


def _run(g, env, s, e, mode):
    g.set_mode(mode)
    g.run_nodes(env, s, e)
    return env


def _prune(envs, last, upto):
    for env in envs:
        for t in list(env):
            if last.get(t, -1) < upto and t != "input":
                del env[t]


def _restore_steps_if_unexportable(g: QGraph, saved_a: dict, name: str, log=None) -> bool:
    """If ``g`` (activations quantized, log2 divisor: an exportable configuration) no longer
    exports with its current LSQ steps -- a dyadic multiplier out of the 16-bit range
    (:func:`sim.numerics.to_dyadic` raises) -- restore the steps ``saved_a`` (``{act_q key:
    step}``, the block's steps from before its reconstruction), warn, and return True. An
    error that persists with the restored steps is not the steps' doing and is raised."""
    if not (g.cfg.act_quant and g.cfg.attention == "log2"):
        return False
    try:
        g.invalidate_deploy().deploy_program()    # cached: the guard runs this program next
        return False
    except ValueError as e:
        why = str(e).splitlines()[0]
    with torch.no_grad():
        for k, v in saved_a.items():
            g.act_q[k].scale.copy_(v)
    g.invalidate_deploy().deploy_program()
    msg = (f"{name}: the learned activation steps make the model unexportable ({why}); "
           f"restored the block's steps from before reconstruction")
    warnings.warn(msg, RuntimeWarning, stacklevel=2)
    if log:
        log(f"  WARNING {msg}")
    return True


def _split(x, size):
    return list(x.split(size)) if len(x) else []


@torch.no_grad()
def _block_eval(g, q_envs, f_envs, s, e, out):
    """Run block ``[s, e)`` (current quantizers, fake mode: deploy-exact when exportable) on
    copies of the cached envs; returns the MSE of its output vs the float targets and the
    copies (holding the block's outputs, so that a kept state need not be recomputed)."""
    g.set_mode("fake")
    err = n = 0.0
    outs = []
    for qe, fe in zip(q_envs, f_envs):
        env = dict(qe)
        g.run_nodes(env, s, e)
        err += float(((env[out].double() - fe[out].double()) ** 2).sum())
        n += fe[out].numel()
        outs.append(env)
    return err / max(n, 1), outs


@torch.no_grad()
def _block_mse(g, q_envs, f_envs, s, e, out):
    """Mean squared error of block ``[s, e)`` (current quantizers, fake mode, deploy-exact when
    exportable) vs the float targets, over the given cached envs."""
    return _block_eval(g, q_envs, f_envs, s, e, out)[0]


class _Clock:
    """CPU seconds (process time, all threads) and wall seconds per phase."""

    def __init__(self):
        self.cpu, self.wall = {}, {}

    def __call__(self, phase):
        clock = self

        class _Phase:
            def __enter__(self):
                self.c, self.w = time.process_time(), time.perf_counter()

            def __exit__(self, *exc):
                clock.cpu[phase] = clock.cpu.get(phase, 0.0) + time.process_time() - self.c
                clock.wall[phase] = clock.wall.get(phase, 0.0) + time.perf_counter() - self.w
        return _Phase()

    def report(self):
        return {k: dict(cpu_s=round(self.cpu[k], 2), wall_s=round(self.wall[k], 2))
                for k in self.cpu}


def reconstruct(g: QGraph, images: torch.Tensor, cfg: ReconConfig = FAST, *, device="cpu",
                progress: bool = True, seed: int = 0, log=None) -> dict:
    """Reconstruct every block of the calibrated graph ``g`` on ``images`` ``(N, 3, R, R)``.

    The first ``N - H`` images train, the last ``H = round(N * cfg.holdout)`` (at least 1 when
    ``N >= 2`` and the guard is on) are held out: each block's output MSE vs the float target is
    measured on them, in the deployed (deploy-exact fake-quant) arithmetic, before and after the
    block's reconstruction, and the reconstruction is *reverted* (round-to-nearest weights and
    the LSQ steps from before) when it raised that MSE.

    Where exactness is not needed it is not paid for: the training images' block inputs are
    propagated with the float-scale fake quant in float32 (it differs from the deployed
    arithmetic by sub-LSB amounts, 48-65 dB per node, docs/quant.md), the held-out images' in
    the deploy-exact arithmetic (float64), and the guard's "after" evaluation is reused as the
    propagated held-out state when the block is kept (its "before" one when reverted). With
    the LSQ steps frozen (``lr_a = 0``) hardening/reverting re-exports only the block's weight
    nodes (:meth:`QGraph.refresh_deploy_weights`), not the whole graph.

    Returns ``{"blocks": [dict(name, loss_before, loss_after, mse_before, mse_after, kept,
    seconds, steps_restored)], "kept": k, "reverted": r, "held_out_images": H, "seconds": total,
    "phases": {phase: {cpu_s, wall_s}}}``.
    """
    if cfg.iters <= 0:
        return {"blocks": [], "kept": 0, "reverted": 0, "seconds": 0.0}
    gen = torch.Generator().manual_seed(seed)
    g.to(device)
    clock = _Clock()
    imgs = images[: cfg.max_images]
    n_all = imgs.shape[0]
    n_hold = min(max(1, round(n_all * cfg.holdout)), n_all - 1) if (cfg.guard and n_all >= 2) else 0
    csize = max(cfg.batch_size * 4, 16)
    train_chunks = _split(imgs[: n_all - n_hold], csize)
    hold_chunks = _split(imgs[n_all - n_hold:], csize)
    nt = len(train_chunks)
    last = _readers(g)
    exact0 = g.exact
    g.set_mode("fake")
    g.invalidate_deploy()
    with torch.no_grad(), clock("setup"):
        g.exact = False
        t_envs = [{"input": g.quant_input(c.to(device)).float()} for c in train_chunks]
        g.exact = exact0
        h_envs = [{"input": g.quant_input(c.to(device))} for c in hold_chunks]
        ft_envs = [{"input": c.to(device)} for c in train_chunks]
        fh_envs = [{"input": c.to(device)} for c in hold_chunks]
    report, t_all = [], time.time()
    bar = None
    if progress:
        from tqdm import tqdm
        per_block = cfg.iters + ((cfg.iters_a or cfg.iters) if cfg.separate else 0)
        bar = tqdm(total=len(g.blocks) * per_block, desc="reconstruction", unit="it", leave=False)
    for name, s, e in g.blocks:
        t0 = time.time()
        out = g.nodes[e - 1].output
        with torch.no_grad(), clock("float targets"):
            for env in ft_envs + fh_envs:
                _run(g, env, s, e, "float")
        mse0 = None
        if n_hold:
            with torch.no_grad(), clock("guard"):
                mse0, h_before = _block_eval(g, h_envs, fh_envs, s, e, out)
        qnodes = [n for n in g.nodes[s:e] if isinstance(n, (QConv, QLinear))]
        saved_wq = {n.name: n.wq for n in qnodes}
        a_keys = [_key(n.output) for n in g.nodes[s:e] if _key(n.output) in g.act_q]
        saved_a = {k: g.act_q[k].scale.detach().clone() for k in a_keys}
        with clock("train"):
            fisher = _fisher(g, ft_envs, e, out) if cfg.fisher else None
        g.use_adaround((s, e))
        w_params = [n.wq.alpha for n in qnodes if isinstance(n.wq, AdaRoundWeightQuantizer)]
        a_params = [g.act_q[k].scale for k in a_keys]
        lsq = bool(a_params and g.cfg.act_quant and cfg.lr_a > 0)
        a_groups = []
        if lsq and cfg.lr_a_relative:
            # Adam moves every parameter by about lr per step whatever its gradient's size, so
            # a relative rate (lr_a times the step's initial value) treats steps of 1e-3 and of
            # 1 alike; one absolute rate would freeze the large ones and scramble the small ones
            a_groups = [{"params": [p], "lr": cfg.lr_a * float(p.detach().abs())} for p in a_params]
        elif lsq:
            a_groups = [{"params": a_params, "lr": cfg.lr_a}]
        if cfg.separate:
            # the authors' order: AdaRound with the steps frozen, then LSQ on hardened weights
            passes = [([{"params": w_params, "lr": cfg.lr_w}], cfg.iters, cfg.p, True, False)]
            if a_groups:
                passes.append((a_groups, cfg.iters_a or cfg.iters,
                               cfg.p if cfg.p_a is None else cfg.p_a, False, cfg.lr_a_cosine))
        else:
            passes = [([{"params": w_params, "lr": cfg.lr_w}] + a_groups, cfg.iters, cfg.p, True,
                       cfg.lr_a_cosine)]
        loss0 = loss = None
        g.set_mode("fake")
        # training runs the float-scale fake quant (soft AdaRound, LSQ gradients) in float32;
        # the guard and the held-out propagation use the deployed arithmetic
        g.exact = False
        try:
            with clock("train"):
                for pi, (groups, iters, p_exp, round_reg, cosine) in enumerate(passes):
                    if pi == 1:
                        g.harden_adaround((s, e), scales_unchanged=True)
                    opt = torch.optim.Adam(groups)
                    # only the LSQ groups anneal (BRECQ's CosineAnnealingLR on the LSQ optimizer)
                    sched = lsq_schedule(opt, iters, constant_groups=0 if pi == 1 else 1) \
                        if cosine else None
                    for it in range(iters):
                        ci = int(torch.randint(nt, (1,), generator=gen))
                        nb = train_chunks[ci].shape[0]
                        idx = torch.randperm(nb, generator=gen)[:min(cfg.batch_size, nb)]
                        env = {k: v[idx] for k, v in t_envs[ci].items()}
                        g.run_nodes(env, s, e)
                        rec = rec_error(env[out], ft_envs[ci][out][idx], p_exp,
                                        sum_channels=cfg.rec_sum_channels,
                                        fisher=None if fisher is None else fisher[ci][idx])
                        frac = it / iters
                        reg = torch.zeros((), device=rec.device)
                        if round_reg and frac >= cfg.warmup and w_params and cfg.reg > 0:
                            beta = cfg.beta[1] + (cfg.beta[0] - cfg.beta[1]) * (
                                1 - (frac - cfg.warmup) / (1 - cfg.warmup))
                            reg = cfg.reg * sum(n.wq.regularizer(beta) for n in qnodes
                                                if isinstance(n.wq, AdaRoundWeightQuantizer))
                        total = rec + reg
                        opt.zero_grad()
                        total.backward()
                        opt.step()
                        if sched is not None:
                            sched.step()
                        if loss0 is None:
                            loss0 = float(rec.detach())
                        loss = float(rec.detach())
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(block=name.split("backbone.")[-1][:28], loss=f"{loss:.3g}")
        finally:
            g.exact = exact0
        restored = False
        with clock("export"):
            g.harden_adaround((s, e), scales_unchanged=not lsq)
            if lsq:
                restored = _restore_steps_if_unexportable(g, saved_a, name, log)
            if n_hold and g.exact_active():
                g.deploy_program()
        kept = True
        mse1 = None
        if n_hold:
            with torch.no_grad(), clock("guard"):
                mse1, h_after = _block_eval(g, h_envs, fh_envs, s, e, out)
            if mse1 > mse0:
                kept = False
                with clock("export"):
                    for n in qnodes:
                        n.wq = saved_wq[n.name]
                    with torch.no_grad():
                        for k, v in saved_a.items():
                            g.act_q[k].scale.copy_(v)
                    if lsq:
                        g.invalidate_deploy()
                    else:
                        g.refresh_deploy_weights((s, e))
            h_envs = h_after if kept else h_before
            del h_before, h_after
        with torch.no_grad(), clock("propagate"):
            g.exact = False
            try:
                for env in t_envs:
                    _run(g, env, s, e, "fake")
            finally:
                g.exact = exact0
        _prune(t_envs + h_envs, last, e)
        _prune(ft_envs + fh_envs, last, e)
        dt = time.time() - t0
        report.append(dict(name=name, loss_before=loss0, loss_after=loss, mse_before=mse0,
                           mse_after=mse1, kept=kept, seconds=dt, steps_restored=restored))
        if log:
            g_txt = ("" if mse0 is None else
                     f", held-out MSE {mse0:.4g} -> {mse1:.4g} {'kept' if kept else 'REVERTED'}")
            log(f"  {name}: loss {loss0:.4g} -> {loss:.4g}{g_txt} ({dt:.1f} s)")
    if bar is not None:
        bar.close()
    g.set_mode("fake")
    nk = sum(r["kept"] for r in report)
    return {"blocks": report, "kept": nk, "reverted": len(report) - nk,
            "held_out_images": n_hold, "seconds": time.time() - t_all, "phases": clock.report()}


def _fisher(g: QGraph, f_envs, e, out):
    """Squared gradient of the float model's CE (vs its own argmax) w.r.t. block output ``out``."""
    fis = []
    g.set_mode("float")
    for env in f_envs:
        y = env[out].detach().clone().requires_grad_(True)
        e2 = {k: v for k, v in env.items()}
        e2[out] = y
        g.run_nodes(e2, e, None)
        logits = e2[g.output_name]
        loss = F.cross_entropy(logits, logits.argmax(1).detach(), reduction="sum")
        (gr,) = torch.autograd.grad(loss, y)
        fis.append((gr ** 2).detach() * 1e3 + 1e-8)
    return fis
