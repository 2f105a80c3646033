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

Settings: :data:`FAST` (the default: 20 iterations per block at batch 4 on at most 64 cached
images, which keeps B1-R224 within minutes on 2 CPU cores; it nudges AdaRound/LSQ rather than
converging) and :data:`PAPER` (BRECQ's published setting: 20000 iterations per block, batch 32,
Fisher loss, up to 1024 images; hours on a CPU, use ``--device cuda``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .qmodel import QConv, QGraph, QLinear, _key
from .quantizers import AdaRoundWeightQuantizer

__all__ = ["ReconConfig", "FAST", "PAPER", "reconstruct"]


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


#: lr_a = 0: with only 20 Adam steps the absolute LSQ learning rate (4e-5) moves 0.01-sized
#: steps by several per cent without converging; measured slightly worse than frozen steps
#: (B0-R64, first 4 blocks: 21.37 dB without reconstruction, 21.20 with LSQ, 21.34 without).
FAST = ReconConfig(lr_a=0.0)
PAPER = ReconConfig(iters=20000, batch_size=32, fisher=True, max_images=1024)


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


def _split(x, size):
    return list(x.split(size)) if len(x) else []


@torch.no_grad()
def _block_mse(g, q_envs, f_envs, s, e, out):
    """Mean squared error of block ``[s, e)`` (current quantizers, fake mode, deploy-exact when
    exportable) vs the float targets, over the given cached envs."""
    g.set_mode("fake")
    err = n = 0.0
    for qe, fe in zip(q_envs, f_envs):
        env = dict(qe)
        g.run_nodes(env, s, e)
        err += float(((env[out].double() - fe[out].double()) ** 2).sum())
        n += fe[out].numel()
    return err / max(n, 1)


def reconstruct(g: QGraph, images: torch.Tensor, cfg: ReconConfig = FAST, *, device="cpu",
                progress: bool = True, seed: int = 0, log=None) -> dict:
    """Reconstruct every block of the calibrated graph ``g`` on ``images`` ``(N, 3, R, R)``.

    The first ``N - H`` images train, the last ``H = round(N * cfg.holdout)`` (at least 1 when
    ``N >= 2`` and the guard is on) are held out: each block's output MSE vs the float target is
    measured on them, in the deployed (deploy-exact fake-quant) arithmetic, before and after the
    block's reconstruction, and the reconstruction is *reverted* (round-to-nearest weights and
    the LSQ steps from before) when it raised that MSE.

    Returns ``{"blocks": [dict(name, loss_before, loss_after, mse_before, mse_after, kept,
    seconds)], "kept": k, "reverted": r, "seconds": total}``.
    """
    if cfg.iters <= 0:
        return {"blocks": [], "kept": 0, "reverted": 0, "seconds": 0.0}
    gen = torch.Generator().manual_seed(seed)
    g.to(device)
    imgs = images[: cfg.max_images]
    n_all = imgs.shape[0]
    n_hold = min(max(1, round(n_all * cfg.holdout)), n_all - 1) if (cfg.guard and n_all >= 2) else 0
    csize = max(cfg.batch_size * 4, 16)
    train_chunks = _split(imgs[: n_all - n_hold], csize)
    hold_chunks = _split(imgs[n_all - n_hold:], csize)
    nt = len(train_chunks)
    chunks = train_chunks + hold_chunks
    last = _readers(g)
    g.set_mode("fake")
    g.invalidate_deploy()
    with torch.no_grad():
        q_envs = [{"input": g.quant_input(c.to(device))} for c in chunks]
        f_envs = [{"input": c.to(device)} for c in chunks]
    report, t_all = [], time.time()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(g.blocks) * cfg.iters, desc="reconstruction", unit="it", leave=False)
    exact0 = g.exact
    for name, s, e in g.blocks:
        t0 = time.time()
        out = g.nodes[e - 1].output
        with torch.no_grad():
            for env in f_envs:
                _run(g, env, s, e, "float")
        mse0 = (_block_mse(g, q_envs[nt:], f_envs[nt:], s, e, out) if n_hold else None)
        qnodes = [n for n in g.nodes[s:e] if isinstance(n, (QConv, QLinear))]
        saved_wq = {n.name: n.wq for n in qnodes}
        a_keys = [_key(n.output) for n in g.nodes[s:e] if _key(n.output) in g.act_q]
        saved_a = {k: g.act_q[k].scale.detach().clone() for k in a_keys}
        fisher = _fisher(g, f_envs[:nt], e, out) if cfg.fisher else None
        g.use_adaround((s, e))
        w_params = [n.wq.alpha for n in qnodes if isinstance(n.wq, AdaRoundWeightQuantizer)]
        a_params = [g.act_q[k].scale for k in a_keys]
        opt_groups = [{"params": w_params, "lr": cfg.lr_w}]
        if a_params and g.cfg.act_quant and cfg.lr_a > 0:
            opt_groups.append({"params": a_params, "lr": cfg.lr_a})
        opt = torch.optim.Adam(opt_groups)
        loss0 = loss = None
        g.set_mode("fake")
        # training runs the float-scale fake quant (soft AdaRound, LSQ gradients) on the
        # deploy-exact block inputs; the guard and the propagation use the deployed arithmetic
        g.exact = False
        try:
            for it in range(cfg.iters):
                ci = int(torch.randint(nt, (1,), generator=gen))
                nb = chunks[ci].shape[0]
                idx = torch.randperm(nb, generator=gen)[:min(cfg.batch_size, nb)]
                env = {k: v[idx].float() for k, v in q_envs[ci].items()}
                g.run_nodes(env, s, e)
                diff = (env[out] - f_envs[ci][out][idx]) ** 2
                rec = ((diff * fisher[ci][idx]).sum() / len(idx) if fisher is not None
                       else diff.mean())
                frac = it / cfg.iters
                reg = torch.zeros((), device=rec.device)
                if frac >= cfg.warmup and w_params and cfg.reg > 0:
                    beta = cfg.beta[1] + (cfg.beta[0] - cfg.beta[1]) * (
                        1 - (frac - cfg.warmup) / (1 - cfg.warmup))
                    reg = cfg.reg * sum(n.wq.regularizer(beta) for n in qnodes
                                        if isinstance(n.wq, AdaRoundWeightQuantizer))
                total = rec + reg
                opt.zero_grad()
                total.backward()
                opt.step()
                if loss0 is None:
                    loss0 = float(rec.detach())
                loss = float(rec.detach())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(block=name.split("backbone.")[-1][:28], loss=f"{loss:.3g}")
        finally:
            g.exact = exact0
        g.harden_adaround((s, e))
        kept = True
        mse1 = None
        if n_hold:
            mse1 = _block_mse(g, q_envs[nt:], f_envs[nt:], s, e, out)
            if mse1 > mse0:
                kept = False
                for n in qnodes:
                    n.wq = saved_wq[n.name]
                with torch.no_grad():
                    for k, v in saved_a.items():
                        g.act_q[k].scale.copy_(v)
                g.invalidate_deploy()
        with torch.no_grad():
            for env in q_envs:
                _run(g, env, s, e, "fake")
        _prune(q_envs, last, e)
        _prune(f_envs, last, e)
        dt = time.time() - t0
        report.append(dict(name=name, loss_before=loss0, loss_after=loss, mse_before=mse0,
                           mse_after=mse1, kept=kept, seconds=dt))
        if log:
            g_txt = ("" if mse0 is None else
                     f", held-out MSE {mse0:.4g} -> {mse1:.4g} {'kept' if kept else 'REVERTED'}")
            log(f"  {name}: loss {loss0:.4g} -> {loss:.4g}{g_txt} ({dt:.1f} s)")
    if bar is not None:
        bar.close()
    g.set_mode("fake")
    nk = sum(r["kept"] for r in report)
    return {"blocks": report, "kept": nk, "reverted": len(report) - nk,
            "held_out_images": n_hold, "seconds": time.time() - t_all}


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
