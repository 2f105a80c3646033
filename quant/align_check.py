"""``python -m quant.align_check``: how often the float-scale fake quant (plain, and aligned on
chosen node kinds, :attr:`quant.qmodel.QGraph.align`) predicts the integer model's top-1 class.

::

    python -m quant.align_check --model b1-r224 --calib-size 16 --images 32 --json

Random BN-calibrated weights (seed 0) unless ``--checkpoint``; MinMax, no reconstruction; the
first ``--calib-size`` images of ``--data`` calibrate, the next ``--images`` are compared. The
integer model is the deploy-exact forward (== ``sim.golden``, docs/quant.md). Each variant: top-1
agreement with the integer model, logit SQNR against it, and the share of logits that differ.
Errors: one line, exit 2.
"""

from __future__ import annotations

import sys
import time

__all__ = ["VARIANTS", "measure", "main"]

#: variant name -> node kinds aligned (``quant.qmodel.ALIGN_KINDS``); "plain" is the float-scale
#: forward as it was
VARIANTS = {
    "plain": (),
    "input": ("input",),
    "hswish": ("input", "hswish"),
    "conv": ("input", "conv"),
    "conv+hswish": ("input", "conv", "hswish"),
    "conv+hswish+attention": ("input", "conv", "hswish", "linear_attention"),
    "all": ("input", "conv", "hswish", "global_avgpool", "linear_attention", "linear",
            "layernorm"),
}


def measure(name: str, images: int, *, data, checkpoint=None, calib: int = 16,
            variants=tuple(VARIANTS)) -> dict:
    """The figures of the module docstring as a dict."""
    import numpy as np
    import torch

    import quant
    from quant.data import make_loader
    from quant.onnx_check import agreement
    t0 = time.time()
    model = quant.float_model(name, checkpoint=checkpoint)
    res = int(model.trio_vit_name.split("-r")[1])
    qm = quant.quantize(model, make_loader(data, res, batch_size=16, limit=calib),
                        quant.QuantConfig(reconstruction="off", calib_images=calib))
    g = qm.graph.set_mode("fake")
    loader = make_loader(data, res, batch_size=8, limit=calib + images)
    batches = [x for x, _ in loader]
    x = torch.cat(batches)[calib:]
    if len(x) == 0:
        raise ValueError(f"no images left after the {calib} calibration images")
    batches = list(torch.split(x, 8))

    def logits():
        with torch.no_grad():
            return np.concatenate([g(b).double().cpu().numpy() for b in batches])

    g.exact, g.align = True, frozenset()
    ref = logits()
    r = dict(model=qm.model_name, weights="checkpoint" if checkpoint else "random",
             calibration_images=calib, images=len(ref), variants={})
    g.exact = False
    for v in variants:
        g.align = frozenset(VARIANTS[v])
        t1 = time.time()
        got = logits()
        agree = agreement(ref, got)
        r["variants"][v] = dict(
            aligned=list(VARIANTS[v]), top1_agreement=agree["top1_agreement"],
            sqnr_vs_int_db=agree["sqnr_db"],
            logits_differing=float((got != ref).mean()), seconds=round(time.time() - t1, 1))
    g.exact, g.align = True, frozenset()
    r["seconds"] = round(time.time() - t0, 1)
    return r


def main(argv=None) -> int:
    from .onnx_check import check_error, check_parser, run_measure
    ap = check_parser("python -m quant.align_check", __doc__, model="b1-r224", images=32)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated, of {', '.join(VARIANTS)} (default all)")
    a = ap.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    err = check_error(a) or (f"--variants from {list(VARIANTS)}" + (f" (not {bad})" if bad else "")
                             if bad or not variants else None)
    if err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    r = run_measure(a, measure, a.model, a.images, data=a.data, checkpoint=a.checkpoint,
                    calib=a.calib_size, variants=variants)
    if not isinstance(r, dict):
        return r
    print(f"{r['model']} ({r['weights']} weights), {r['calibration_images']} calibration "
          f"images, {r['images']} compared with the integer model:")
    for v, f in r["variants"].items():
        print(f"  float-scale {v:22s} top-1 agreement {100 * f['top1_agreement']:5.1f} %, "
              f"logit SQNR vs integer {f['sqnr_vs_int_db']:6.1f} dB, logits differing "
              f"{100 * f['logits_differing']:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
