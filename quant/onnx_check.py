"""``python -m quant.onnx_check``: quantize a model, write its ``.qmodel`` (version 3), the
version-2 equivalent of the same graph (float weights + state, for the size comparison), its
IntProgram and both ONNX forms, then run the ONNX models with onnxruntime and compare their
logits with the fake-quant model's on sample images (top-1 agreement, logit SQNR).

::

    python -m quant.onnx_check --model b1-r224 --images 125 --json

Random BN-calibrated weights unless ``--checkpoint``; 16 calibration images, no reconstruction
(``--recon-iters`` to change). Errors: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["measure", "main"]


def measure(name: str, images: int, *, data, checkpoint=None, calib: int = 16,
            recon_iters: int = 0, out_dir=None, forms=("exact", "qdq")) -> dict:
    """The figures of the module docstring as a dict."""
    import dataclasses

    import numpy as np
    import onnxruntime as ort
    import torch

    import quant
    from quant.data import make_loader
    from quant.reconstruct import FAST
    t0 = time.time()
    model = quant.float_model(name, checkpoint=checkpoint)
    res = int(model.trio_vit_name.split("-r")[1])
    rc = "off" if recon_iters == 0 else dataclasses.replace(FAST, iters=recon_iters)
    qm = quant.quantize(model, make_loader(data, res, batch_size=16, limit=calib),
                        quant.QuantConfig(reconstruction=rc))
    tmp = tempfile.TemporaryDirectory() if out_dir is None else None
    out = Path(out_dir or tmp.name)
    out.mkdir(parents=True, exist_ok=True)
    qm.save(out / "model.qmodel")
    qm.export_intprogram(out / "model.npz")
    g = qm.graph
    v2 = dict(format="trio-vit.qmodel", version=2, model=qm.model_name, resolution=res,
              qconfig=g.cfg.as_dict(), act={}, fixed_weights=[], state=dict(g.state_dict()))
    torch.save(v2, out / "v2-equivalent.qmodel")
    r = dict(model=qm.model_name, weights="checkpoint" if checkpoint else "random",
             calibration_images=calib, recon_iters=recon_iters,
             bytes=dict(qmodel_v3=(out / "model.qmodel").stat().st_size,
                        qmodel_v2_same_graph=(out / "v2-equivalent.qmodel").stat().st_size,
                        intprogram=(out / "model.npz").stat().st_size))
    batches = [x for x, _ in make_loader(data, res, batch_size=8, limit=images)]
    with torch.no_grad():
        fake = np.concatenate([qm(x).double().numpy() for x in batches])
    r["images"] = len(fake)
    for form in forms:
        path = out / f"model-{form}.onnx"
        qm.export_onnx(path, form=form)
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        got = np.concatenate([s.run(["logits"], {"images": x.numpy()})[0] for x in batches])
        got = got.astype(np.float64)
        r[form] = dict(**agreement(fake, got), onnx_bytes=path.stat().st_size)
    r["seconds"] = round(time.time() - t0, 1)
    if tmp is not None:
        tmp.cleanup()
    return r


def agreement(ref, got) -> dict:
    """``top1_agreement`` and ``sqnr_db`` (logit SQNR in dB) of the logits ``got`` against the
    logits ``ref`` (arrays of images x classes), in float64."""
    import numpy as np
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    err = float(((ref - got) ** 2).sum())
    return dict(top1_agreement=float((ref.argmax(1) == got.argmax(1)).mean()),
                sqnr_db=float("inf") if err == 0 else
                float(10 * np.log10(float((ref ** 2).sum()) / err)))


def check_parser(prog: str, doc: str, *, model: str, images: int) -> argparse.ArgumentParser:
    """The options the measuring commands share (``quant.onnx_check``, ``quant.qdq_precision``,
    ``quant.align_check``): ``--model``, ``--data``, ``--images``, ``--calib-size``, ``--json``."""
    from .cli import DEFAULT_DATA
    ap = argparse.ArgumentParser(prog=prog, description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=model)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="image folder or labels.csv")
    ap.add_argument("--images", type=int, default=images,
                    help=f"images compared (default {images})")
    ap.add_argument("--calib-size", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    return ap


def check_error(a) -> str | None:
    """The one-line error of :func:`check_parser`'s options, or None."""
    if a.images < 1 or a.calib_size < 1:
        return "--images and --calib-size must be >= 1"
    if not Path(a.data).exists():
        return f"data: {a.data}: no such file or folder"
    return None


def run_measure(a, measure, *args, **kw) -> dict | int:
    """``measure(*args, **kw)`` for a check's ``main`` (``a``: its parsed options): the result
    to print, or the exit code once it is reported: 2 after a one-line error, 0 after printing
    it as JSON (``--json``)."""
    try:
        r = measure(*args, **kw)
    except (ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r, allow_nan=True))
        return 0
    return r


def main(argv=None) -> int:
    ap = check_parser("python -m quant.onnx_check", __doc__, model="b1-r224", images=125)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--recon-iters", type=int, default=0)
    ap.add_argument("-o", "--output-dir", default=None, help="keep the files written here")
    a = ap.parse_args(argv)
    err = check_error(a) or ("--recon-iters must be >= 0" if a.recon_iters < 0 else None)
    if err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    r = run_measure(a, measure, a.model, a.images, data=a.data, checkpoint=a.checkpoint,
                    calib=a.calib_size, recon_iters=a.recon_iters, out_dir=a.output_dir)
    if not isinstance(r, dict):
        return r
    b = r["bytes"]
    print(f"{r['model']} ({r['weights']} weights): .qmodel v3 {b['qmodel_v3'] / 1e6:.1f} MB, "
          f"v2 (same graph) {b['qmodel_v2_same_graph'] / 1e6:.1f} MB, IntProgram "
          f"{b['intprogram'] / 1e6:.1f} MB")
    for form in ("exact", "qdq"):
        f = r[form]
        print(f"onnxruntime {form:5s} vs fake-quant on {r['images']} images: top-1 agreement "
              f"{100 * f['top1_agreement']:.1f} %, logit SQNR {f['sqnr_db']:.1f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
