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

from .qmodel import QAttention, QConfig, QConv, QGraph, sqnr_db

__all__ = ["ROWS", "STRENGTHS", "inject_statistics", "run_ablation", "run_sweep", "format_ablation"]

#: (row, QConfig fields, arithmetic). Baselines: no Trio-ViT technique, float attention, each
#: observer (MinMax, percentile, OMSE, and the authors' asymmetric 80-step grid search); then
#: Table V's rows with the base observer (``--observer``, MinMax by default); then the rows
#: with an integer form in the deployed (deploy-exact) arithmetic as well.
ROWS = [
    ("vanilla minmax", dict(migration=False, shifting=False, attention="float", observer="minmax"), "float-scale"),
    ("vanilla percentile", dict(migration=False, shifting=False, attention="float", observer="percentile"), "float-scale"),
    ("vanilla omse", dict(migration=False, shifting=False, attention="float", observer="omse"), "float-scale"),
    ("vanilla asym-grid", dict(migration=False, shifting=False, attention="float", observer="asym-grid"), "float-scale"),
    ("+migration", dict(migration=True, shifting=False, attention="float"), "float-scale"),
    ("+shifting", dict(migration=False, shifting=True, attention="float"), "float-scale"),
    ("+both", dict(migration=True, shifting=True, attention="float"), "float-scale"),
    ("+uniform divisor", dict(migration=True, shifting=True, attention="uniform"), "float-scale"),
    ("+log2 divisor", dict(migration=True, shifting=True, attention="log2"), "float-scale"),
    ("vanilla, log2 divisor", dict(migration=False, shifting=False, attention="log2"), "float-scale"),
    ("vanilla, log2 divisor", dict(migration=False, shifting=False, attention="log2"), "integer"),
    ("+log2 divisor", dict(migration=True, shifting=True, attention="log2"), "integer"),
]
BASELINES = [r[0] for r in ROWS if r[0].startswith("vanilla ") and r[1]["attention"] == "float"]

#: Injection strengths swept by :func:`run_sweep` (``inject_statistics`` keyword arguments; None:
#: the random model as it is). "paper" is the magnitude of Sec. IV-A (DW inputs: ~90 % of values
#: in a few % of the bins; PW2 channels in narrow intervals at different places); the divisor
#: spread (per-head factor on Q, ``exp(N(0, head_spread))``) is this project's choice: the paper
#: gives no figure for the divisors' range, only that uniform 8-bit divisors fail.
STRENGTHS = {
    "none": None,
    "paper": dict(spread=0.9, compress=0.15, max_offset=3.2, head_spread=1.0),
    "strong": dict(spread=1.5, compress=0.05, max_offset=6.0, head_spread=2.0),
}


@torch.no_grad()
def inject_statistics(g: QGraph, seed: int = 0, *, spread: float = 0.9, compress: float = 0.15,
                      max_offset: float = 3.2, head_spread: float = 0.0) -> QGraph:
    """Give every MBConv of the float graph the paper's DW/PW2 input statistics and every
    LiteMLA's attention per-head divisor magnitudes spread by ``exp(N(0, head_spread))`` (in
    place). The attention's output ``num / den`` does not change with a per-head factor on Q
    (both scale with it); its divisors' range across heads grows."""
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
    if head_spread > 0:
        for a in g.nodes:
            if not isinstance(a, QAttention):
                continue
            p = a.name[: -len(".relu_linear_att")]
            qkv = by_name[f"{p}.qkv"]
            heads_qkv = qkv.weight.shape[0] // (3 * a.dim)
            f = torch.exp(torch.randn(a.heads, generator=gen) * head_spread)

            def q_rows(conv, fac_of_head):
                rows = torch.arange(conv.weight.shape[0])
                h, r = rows // (3 * a.dim), rows % (3 * a.dim)
                return torch.where(r < a.dim, fac_of_head[h], torch.ones(()))
            # multi-scale qkv = concat(qkv, aggreg_i(qkv)): heads [0, heads_qkv) are qkv's own;
            # the aggregation (DW then grouped PW, per q/k/v group) sees qkv's factor on its input
            own = f[:heads_qkv]
            fq = q_rows(qkv, own)
            qkv.weight.mul_(fq.reshape(-1, 1, 1, 1))
            qkv.bias.mul_(fq)
            for i in range(a.heads // heads_qkv - 1):
                dwc, pwc = by_name[f"{p}.aggreg.{i}.0"], by_name[f"{p}.aggreg.{i}.1"]
                dwc.bias.mul_(fq)
                new = f[heads_qkv * (i + 1): heads_qkv * (i + 2)]
                pwc.weight.mul_(q_rows(pwc, new / own).reshape(-1, 1, 1, 1))
                pwc.bias.mul_(q_rows(pwc, new))
    return g


def _row_eval(g: QGraph, images, ref) -> dict:
    for a in g._attn():
        a.zero_divisors = a.divisors = 0
    g.set_mode("fake")
    try:
        with torch.no_grad():
            out = torch.cat([g(x) for x in images.split(8)]).float()
    except (ValueError, OverflowError) as e:      # no integer form (e.g. a dyadic out of range)
        return {"sqnr_db": float("nan"), "nan_reason": f"no integer form: {str(e).splitlines()[0]}",
                "top1_agreement_with_float": None}
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
                 progress: bool = True, log=None, rows=None) -> dict:
    """The ablation rows (:data:`ROWS`) on graph ``g`` (float weights; calibrated anew per
    observer / technique). Rows marked ``float-scale`` run the float-scale fake quant
    (``g.exact = False``: float requant scales; the float/uniform divisor rows have no integer
    form), rows marked ``integer`` the deploy-exact fake quant (the exported integer model's
    values, :meth:`QGraph.exact_active`)."""
    base = base or QConfig()
    rows = ROWS if rows is None else rows
    g.exact = False
    g.set_mode("float")
    with torch.no_grad():
        ref = torch.cat([g(x) for x in evals.split(8)]).float()
    out, calibrated = [], None
    t0 = time.time()
    try:
        for name, kw, arith in rows:
            cfg = QConfig(**{**base.as_dict(), **kw})
            key = (cfg.observer, cfg.migration, cfg.shifting)
            if key == calibrated:         # same calibration, only the attention mode differs
                g.cfg = cfg
            else:
                g.prepare(cfg)
                g.calibrate(list(calib.split(8)), progress=progress)
                calibrated = key
            g.exact = arith == "integer"
            g.invalidate_deploy()
            r = _row_eval(g, evals, ref)
            r.update(row=name, arithmetic=arith, observer=cfg.observer, migration=cfg.migration,
                     shifting=cfg.shifting, attention=cfg.attention)
            out.append(r)
            if log:
                log(format_row(r))
    finally:
        g.exact = True
        g.invalidate_deploy()
    res = {"rows": out, "seconds": time.time() - t0, "calib_images": int(calib.shape[0]),
           "eval_images": int(evals.shape[0])}
    res.update(_summary(out))
    return res


def _summary(rows) -> dict:
    """The best baseline (highest SQNR among the vanilla observers) and whether Trio-ViT (the
    float-scale +log2 divisor row) beats it."""
    by = {(r["row"], r["arithmetic"]): r for r in rows}
    base = [by[(b, "float-scale")] for b in BASELINES if (b, "float-scale") in by]
    ok = [r for r in base if r["nan_reason"] is None]
    best = max(ok, key=lambda r: r["sqnr_db"]) if ok else None
    trio = by.get(("+log2 divisor", "float-scale"))
    beats = None
    if trio is not None and best is not None:
        beats = bool(trio["nan_reason"] is None and trio["sqnr_db"] > best["sqnr_db"])
    return {"best_baseline": None if best is None else best["row"],
            "best_baseline_sqnr_db": None if best is None else best["sqnr_db"],
            "trio_beats_best_baseline": beats}


def run_sweep(make_graph, calib: torch.Tensor, evals: torch.Tensor, *, seed: int = 0,
              strengths=None, base: QConfig | None = None, progress: bool = True, log=None) -> dict:
    """:func:`run_ablation` for every injection strength (:data:`STRENGTHS`); ``make_graph()``
    returns a fresh float graph each time (the injection changes it in place)."""
    strengths = list(STRENGTHS) if strengths is None else strengths
    out, t0 = [], time.time()
    for name in strengths:
        g = make_graph()
        kw = STRENGTHS[name]
        if kw is not None:
            inject_statistics(g, seed, **kw)
        if log:
            log(f"injection {name}: {kw}")
        r = run_ablation(g, calib, evals, base=base, progress=progress, log=log)
        r.update(injection=name, injection_params=kw)
        out.append(r)
        del g
    return {"strengths": out, "seconds": time.time() - t0, "calib_images": int(calib.shape[0]),
            "eval_images": int(evals.shape[0])}


def format_row(r: dict) -> str:
    v = "    NaN" if r["nan_reason"] else f"{r['sqnr_db']:7.2f} dB"
    extra = f"  ({r['nan_reason']})" if r["nan_reason"] else \
        f"  top-1 agreement with float {100 * r['top1_agreement_with_float']:3.0f}%"
    return f"  {r['row']:22s} {r['arithmetic']:11s} {v}{extra}"


def format_ablation(res: dict, title: str = "") -> str:
    lines = [title or "Table V ablation: SQNR of logits vs float",
             f"  ({res['calib_images']} calibration / {res['eval_images']} evaluation images, "
             f"{res['seconds']:.0f} s)"]
    for part in res.get("strengths", [res]):
        if "injection" in part:
            lines.append(f" injected statistics: {part['injection']} {part['injection_params'] or ''}")
        lines += [format_row(r) for r in part["rows"]]
        if part.get("best_baseline"):
            lines.append(f"  best baseline: {part['best_baseline']} "
                         f"({part['best_baseline_sqnr_db']:.2f} dB); Trio-ViT (+log2 divisor) "
                         f"beats it: {'yes' if part['trio_beats_best_baseline'] else 'no'}")
    return "\n".join(lines)
