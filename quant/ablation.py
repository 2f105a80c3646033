"""Table V of the paper as an SQNR ablation on what can be made here (issue #3, part b).

Rows (as in Table V; W8A8, per-tensor activations, filter-wise weights, MinMax observers):

=================  ==========  ===========  =============================================
row                migration   shifting     attention (K^T V, ksum, divisor)
=================  ==========  ===========  =============================================
vanilla            -           -            float (MatMuls kept in full precision)
+migration         yes         -            float
+shifting          -           yes          float
+both              yes         yes          float
+uniform divisor   yes         yes          8-bit, divisor uniform 8-bit (paper: NaN)
+log2 divisor      yes         yes          8-bit, divisor 4-bit log2 (= Trio-ViT)
=================  ==========  ===========  =============================================

The metric is the SQNR (dB) of the logits of the quantized model vs the float model on
evaluation images (not the calibration images). A non-finite result is reported as NaN with its
reason (how many divisors were rounded to zero), never as a number.

``--synthetic``: the float model is a randomly initialised, BN-calibrated EfficientViT
(:func:`quant.bn_calib.random_calibrated_model`) on synthetic images. Such a model has none of
the activation statistics that make EfficientViT hard to quantize, so :func:`inject_statistics`
gives it the ones the paper measures (Sec. IV-A), by rescaling parameters of the folded model:

* DW inputs of every MBConv: output channel ``j`` of the expansion conv scaled by
  ``f_j = exp(N(0, 0.9))`` and DW filter ``j`` by ``1/f_j`` (inter-channel variation: ~90 % of
  values in a few % of the bins);
* PW2 inputs of every MBConv: DW output channel ``j`` compressed by ``a = 0.15`` and offset by
  ``d_j ~ U(0, 3.2)`` before its Hardswish, PW2 column ``j`` scaled by ``1/a`` and its bias
  compensated for the offset (channels occupy narrow intervals at different places: the
  paper's (2.66, 3.11) vs (-0.38, 3.49)).

The injected model *is* the float reference of every row (the injection is not a transform of
the quantizer, it defines the network being quantized).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from .qmodel import QConfig, QConv, QGraph, sqnr_db

__all__ = ["ROWS", "inject_statistics", "run_ablation", "format_ablation"]

ROWS = [
    ("vanilla", dict(migration=False, shifting=False, attention="float")),
    ("+migration", dict(migration=True, shifting=False, attention="float")),
    ("+shifting", dict(migration=False, shifting=True, attention="float")),
    ("+both", dict(migration=True, shifting=True, attention="float")),
    ("+uniform divisor", dict(migration=True, shifting=True, attention="uniform")),
    ("+log2 divisor", dict(migration=True, shifting=True, attention="log2")),
]


@torch.no_grad()
def inject_statistics(g: QGraph, seed: int = 0, *, spread: float = 0.9, compress: float = 0.15,
                      max_offset: float = 3.2) -> QGraph:
    """Give every MBConv of the float graph the paper's DW/PW2 input statistics (in place)."""
    gen = torch.Generator().manual_seed(seed)
    by_name = {n.name: n for n in g.nodes}
    for n in g.nodes:
        if not (isinstance(n, QConv) and n.name.endswith(".inverted_conv")):
            continue
        p = n.name[: -len(".inverted_conv")]
        dw, pw = by_name[f"{p}.depth_conv"], by_name[f"{p}.point_conv"]
        c = n.weight.shape[0]
        f = torch.exp(torch.randn(c, generator=gen) * spread)
        n.weight.mul_(f.reshape(-1, 1, 1, 1))
        n.bias.mul_(f)
        dw.weight.div_(f.reshape(-1, 1, 1, 1))
        d = torch.rand(c, generator=gen) * max_offset
        dw.weight.mul_(compress)
        dw.bias.mul_(compress).add_(d)
        # PW2 sees hswish(a*y + d) ~ a*hswish-ish(y) + d: undo the scale and the mean offset
        pw.weight.div_(compress)
        pw.bias.sub_(pw.weight[:, :, 0, 0] @ F.hardswish(d))
    return g


def _row_sqnr(g: QGraph, images, ref) -> dict:
    for a in g._attn():
        a.zero_divisors = a.divisors = 0
    g.set_mode("fake")
    with torch.no_grad():
        out = torch.cat([g(x) for x in images.split(8)])
    s = sqnr_db(ref, out)
    reason = None
    if math.isnan(s):
        z = sum(a.zero_divisors for a in g._attn())
        n = sum(a.divisors for a in g._attn())
        bad = int((~torch.isfinite(out)).sum())
        reason = (f"{bad} of {out.numel()} logits are inf/NaN: {z} of {n} attention divisors "
                  "were rounded to 0 by the uniform 8-bit quantizer (division by zero)") if z else \
            f"{bad} of {out.numel()} logits are inf/NaN"
    top1 = float((out.argmax(1) == ref.argmax(1)).double().mean()) if reason is None else None
    return {"sqnr_db": s, "nan_reason": reason, "top1_agreement_with_float": top1}


def run_ablation(g: QGraph, calib: torch.Tensor, evals: torch.Tensor, *, base: QConfig | None = None,
                 progress: bool = True, log=None) -> dict:
    """All rows of Table V on graph ``g`` (float weights; calibrated anew per row).

    Every row runs the float-scale fake quant (``g.exact = False``): the rows with a float or
    uniform divisor have no integer form, and the rows must differ only in the technique."""
    base = base or QConfig()
    g.exact = False
    g.set_mode("float")
    with torch.no_grad():
        ref = torch.cat([g(x) for x in evals.split(8)])
    rows, done = [], {}
    t0 = time.time()
    for name, kw in ROWS:
        cfg = QConfig(**{**base.as_dict(), **kw})
        key = (cfg.migration, cfg.shifting)
        if key in done:         # same calibration, only the attention mode differs
            g.cfg = cfg
        else:
            g.prepare(cfg)
            g.calibrate(list(calib.split(8)), progress=progress)
            done[key] = True
        r = _row_sqnr(g, evals, ref)
        r.update(row=name, migration=cfg.migration, shifting=cfg.shifting,
                 attention=cfg.attention)
        rows.append(r)
        if log:
            log(format_row(r))
    return {"rows": rows, "seconds": time.time() - t0, "calib_images": int(calib.shape[0]),
            "eval_images": int(evals.shape[0])}


def format_row(r: dict) -> str:
    v = "NaN" if r["nan_reason"] else f"{r['sqnr_db']:7.2f} dB"
    extra = f"  ({r['nan_reason']})" if r["nan_reason"] else \
        f"  top-1 agreement with float {100 * r['top1_agreement_with_float']:.0f}%"
    return f"  {r['row']:18s} {v}{extra}"


def format_ablation(res: dict, title: str = "") -> str:
    lines = [title or "Table V ablation: SQNR of logits vs float",
             f"  ({res['calib_images']} calibration / {res['eval_images']} evaluation images, "
             f"{res['seconds']:.0f} s)"]
    lines += [format_row(r) for r in res["rows"]]
    return "\n".join(lines)
