"""``python -m quant``: quantize, evaluate, ablation, export, synthetic.

The authors' script's flag names (github.com/shihuihong214/Trio-ViT ``main_imagenet.py``, BRECQ's:
--n_bits_w, --n_bits_a, --channel_wise, --act_quant, --disable_8bit_head_stem, --num_samples,
--iters_w, --iters_a, --weight, --lr, --p, --b_start, --b_end, --warmup, --batch_size,
--data_path, --weight_url, --test_before_calibration) are accepted as aliases of the flags with
the same meaning (:data:`AUTHOR_ALIASES`; table in docs/quant.md).
User errors (bad paths, bad files, bad options) exit with status 2 and a one-line message; no
output file is ever half-written (temp file + rename).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

from .qfile import FORMAT, VERSION  # noqa: F401  (the .qmodel format lives in quant.qfile)
REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "imagenet-sample"


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``error: <command>: <message>``, exit 2) instead of
    the usage block; ``--help`` still prints the full usage. Sub-parsers inherit the class."""

    def error(self, message):
        msg = " ".join(str(message).split())
        self.exit(2, f"error: {self.prog}: {msg} (see {self.prog} --help)\n")


#: The authors' flag -> this CLI's flag of the same meaning (docs/quant.md has the table).
AUTHOR_ALIASES = {
    "--n_bits_w": "--w-bits", "--n_bits_a": "--a-bits", "--channel_wise": "--channel-wise",
    "--act_quant": "--act-quant", "--disable_8bit_head_stem": "--disable-8bit-head-stem",
    "--test_before_calibration": "--test-before-calibration", "--num_samples": "--calib-size",
    "--iters_w": "--recon-iters", "--iters_a": "--recon-iters-a", "--weight": "--recon-reg",
    "--lr": "--recon-lr-a", "--p": "--recon-p-a", "--b_start": "--recon-b-start",
    "--b_end": "--recon-b-end", "--warmup": "--recon-warmup", "--batch_size": "--batch-size",
    "--data_path": "--data", "--weight_url": "--checkpoint",
}


def _count(minimum: int):
    """argparse type: an integer >= ``minimum``."""
    def conv(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v
    conv.__name__ = f"integer >= {minimum}"
    return conv


def _device(name: str):
    """The torch device ``name``, or a UserError if it does not exist here."""
    import torch
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"--device {name!r}: {_msg(e)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name!r}: this torch has no usable CUDA device (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: only cpu and cuda devices are supported")
    return dev


def _check_output(path) -> Path:
    """Fail early (before any work) when ``path`` cannot be written: an existing folder, or a
    parent that is a file."""
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{out}: is a folder, expected a file name to write")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{out}: cannot write: {parent} is not a folder")
            break
    return out


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _log(args, msg):
    if not getattr(args, "json", False):
        print(msg, flush=True)
    else:
        print(msg, file=sys.stderr, flush=True)


def _default_data():
    return str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None


def _atomic_write(path: Path, write):
    """Call ``write(tmp)`` and rename the temporary file to ``path`` only if it succeeds."""
    from sim.fileio import atomic_path
    with atomic_path(path) as tmp:
        write(str(tmp))


def _jsonable(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    return o


def _float_model(args):
    """The float torch model (checkpoint or random BN-calibrated: :func:`quant.api.float_model`)
    in eval mode, its resolution and its recorded source."""
    import torch
    from .api import ConfigError, float_model
    from .checkpoint import CheckpointError
    from .models import parse_model_name
    try:
        variant, res = parse_model_name(args.model)
        if getattr(args, "input_size", None):
            if args.input_size < 32 or args.input_size % 32:
                raise ValueError(f"--input-size must be a multiple of 32 and >= 32, got {args.input_size}")
            args.model = f"{variant}-r{args.input_size}"
            res = args.input_size
        elif res % 32:
            raise ValueError(f"model {args.model!r}: the resolution must be a multiple of 32, got {res}")
    except ValueError as e:
        raise UserError(str(e)) from None
    if not args.checkpoint:
        from .evaluate import RANDOM_WEIGHTS_NOTE
        _log(args, f"model {args.model}: random weights (seed {args.seed}) with BatchNorm "
                   f"statistics calibrated on synthetic images; {RANDOM_WEIGHTS_NOTE}")
    try:
        model = float_model(args.model, checkpoint=args.checkpoint or None, seed=args.seed)
    except ConfigError as e:
        raise UserError(str(e)) from None
    except (CheckpointError, FileNotFoundError, OSError) as e:
        raise UserError(f"checkpoint: {e}") from None
    if args.checkpoint:
        _log(args, f"model {args.model}: weights from {args.checkpoint}")
    torch.manual_seed(args.seed)
    return model, res, dict(model.trio_vit_source)


def _images(args, n, res, *, synthetic=False, seed=None):
    from .data import DataError, SyntheticImages, calibration_images
    seed = args.seed if seed is None else seed
    if synthetic or not args.data:
        ds = SyntheticImages(n, res, seed=seed)
        return ds.images(), "synthetic"
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            imgs = calibration_images(args.data, n, res, seed=seed)
        for x in w:
            _log(args, f"note: {x.message}")
        return imgs, str(args.data)
    except DataError as e:
        raise UserError(f"data: {e}") from None


def _quant_config(args, reconstruction=None):
    """The :class:`quant.api.QuantConfig` of the flags (``reconstruction``: the flags' own,
    :func:`_recon_config`, unless given); a bad value is a UserError naming the field."""
    from .api import ConfigError, QuantConfig
    sh = args.stem_head_bits
    if getattr(args, "disable_8bit_head_stem", False):
        if args.keep_stem_head_8bit:
            raise UserError("--keep-stem-head-8bit and --disable-8bit-head-stem contradict each other")
        sh = None                       # stem and head at --w-bits / --a-bits like the rest
    elif args.keep_stem_head_8bit:
        sh = 8
    if reconstruction is None:
        reconstruction = _recon_config(args)
    kw = dict(calib_images=args.calib_size, batch_size=args.batch_size) \
        if hasattr(args, "batch_size") else {}
    try:
        return QuantConfig(w_bits=args.w_bits, a_bits=args.a_bits, channel_wise=args.channel_wise,
                           act_quant=not args.no_act_quant, stem_head_bits=sh,
                           observer=args.observer, migration=not args.no_migration,
                           shifting=not args.no_shifting, divisor=args.divisor,
                           reconstruction=reconstruction, seed=args.seed, device=args.device,
                           **kw)
    except ConfigError as e:
        raise UserError(str(e)) from None


def _qconfig(args):
    """The graph-level :class:`quant.qmodel.QConfig` of the flags (ablation; no reconstruction)."""
    return _quant_config(args, reconstruction="off").qconfig()


# ------------------------------------------------------------------------------------------------
# quantized-model files
# ------------------------------------------------------------------------------------------------

def load_qmodel_api(path):
    """:func:`quant.api.load` with a bad file as a UserError (one line)."""
    from .api import load
    from .qfile import QModelError
    try:
        return load(path)
    except QModelError as e:
        raise UserError(str(e)) from None


def load_qmodel(path):
    """Rebuild the QGraph saved by ``quantize`` (:func:`quant.qfile.load`; versions 2 and 3)."""
    from .qfile import QModelError, load
    try:
        return load(path)
    except QModelError as e:
        raise UserError(str(e)) from None


# ------------------------------------------------------------------------------------------------
# subcommands
# ------------------------------------------------------------------------------------------------

def _recon_config(args):
    """The reconstruction settings: FAST or PAPER (``--paper``) with the flags' overrides."""
    from .reconstruct import FAST, PAPER, ReconConfig
    rc = PAPER if args.paper else FAST
    # --iters_a and --p belong to the authors' separate LSQ pass: they imply it
    separate = args.recon_separate or args.recon_iters_a is not None or args.recon_p_a is not None
    lr_a = {}
    if args.recon_lr_a is not None:
        lr_a = dict(lr_a=args.recon_lr_a, lr_a_relative=False)
    elif args.recon_lr_a_relative is not None:
        lr_a = dict(lr_a=args.recon_lr_a_relative, lr_a_relative=True)
    rc = ReconConfig(**{**rc.__dict__, **lr_a, **{k: v for k, v in dict(
        iters=args.recon_iters, batch_size=args.recon_batch, fisher=args.fisher or None,
        lr_w=args.recon_lr_w, max_images=args.recon_images, reg=args.recon_reg,
        iters_a=args.recon_iters_a, p=args.recon_p, p_a=args.recon_p_a, warmup=args.recon_warmup,
        separate=separate or None).items()
        if v is not None}})
    if args.recon_b_start is not None or args.recon_b_end is not None:
        b0, b1 = rc.beta
        rc = ReconConfig(**{**rc.__dict__, "beta": (
            b0 if args.recon_b_start is None else args.recon_b_start,
            b1 if args.recon_b_end is None else args.recon_b_end)})
    return rc


def cmd_quantize(args):
    """A thin layer over :func:`quant.api.quantize` and :meth:`QuantizedModel.save`: the flags
    become a QuantConfig, the result's ``info`` the printed / JSON report."""
    from .api import ConfigError
    from .api import quantize as api_quantize
    t0 = time.time()
    _resolve_seed(args)
    _device(args.device)
    cfg = _quant_config(args)
    if args.data and not Path(args.data).exists():
        raise UserError(f"data: {args.data}: no such file or folder")
    out = _check_output(args.output)
    model, res, source = _float_model(args)
    result = dict(command="quantize", model=args.model, resolution=res, source=source,
                  qconfig=cfg.qconfig().as_dict())
    if args.test_before_calibration:
        result["float_eval"] = _eval_float(args, model, res)
        _log(args, f"float model before calibration: {result['float_eval']}")
    calib, src = _images(args, args.calib_size, res)
    _log(args, f"calibration: {calib.shape[0]} images from {src}, observer {cfg.observer}, "
               f"W{cfg.w_bits}A{cfg.a_bits}, migration {cfg.migration}, shifting {cfg.shifting}, "
               f"divisor {cfg.divisor}")
    try:
        qm = api_quantize(model, calib, cfg, progress=not args.json, log=lambda m: _log(args, m))
    except ConfigError as e:
        raise UserError(str(e)) from None
    info = qm.info
    if "reconstruction" in info:
        result["reconstruction_seconds"] = info["reconstruction"]["seconds"]
        result["reconstruction"] = info["reconstruction"]
    result["sqnr_logits_db_calib"] = info["sqnr_logits_db_calib"]
    result["sqnr_images"] = info["sqnr_images"]
    result["seconds"] = time.time() - t0
    result["peak_rss_mb"] = _peak_rss_mb()
    qm.info.update(result)
    try:
        qm.save(out)
    except OSError as e:
        raise UserError(f"{out}: cannot write ({e.strerror or e})") from None
    result["output"] = str(out)
    _log(args, f"SQNR of logits vs float ({result['sqnr_images']}): "
               f"{result['sqnr_logits_db_calib']:.2f} dB")
    _log(args, f"wrote {out} ({result['seconds']:.1f} s)")
    return result


def _peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cmd_bench(args):
    """Time and peak memory of `quantize` with the fast defaults (one JSON line)."""
    with tempfile.TemporaryDirectory() as d:
        qa = build_parser().parse_args(["quantize", "--model", args.model, "--calib-size",
                                        str(args.calib_size), "--json", "-o", f"{d}/m.qmodel"]
                                       + (["--data", args.data] if args.data else []))
        r = cmd_quantize(_resolve_seed(qa))
    line = dict(name=f"quantize {args.model} (fast default, {args.calib_size} calibration images)",
                seconds=round(r["seconds"], 1), peak_rss_mb=round(r["peak_rss_mb"], 1),
                sqnr_logits_db=r["sqnr_logits_db_calib"])
    print(json.dumps(_jsonable(line)))
    return None


def _eval_float(args, model, res):
    from .data import DataError, make_loader
    from .evaluate import evaluate
    if not args.data:
        return {"top1": None, "top5": None, "n": 0, "note": "no --data"}
    try:
        loader = make_loader(args.data, res, batch_size=args.batch_size, limit=args.limit)
    except DataError as e:
        raise UserError(f"data: {e}") from None
    return evaluate(model, loader, device=args.device, progress=not args.json, desc="float")


def cmd_evaluate(args):
    """A thin layer over :meth:`quant.api.QuantizedModel.evaluate` (same figures, printed)."""
    from .api import ConfigError
    qm = load_qmodel_api(args.qmodel)
    if not qm.float_reference:
        _log(args, "  note: the float reference model could not be rebuilt; no float rows "
                   "(quant.load(path, float_model=...) supplies one)")
    if not args.data:
        raise UserError("evaluate needs --data (an image folder or labels.csv)")
    from .data import DataError, make_loader
    try:
        loader = make_loader(args.data, qm.resolution, batch_size=args.batch_size,
                             limit=args.limit)
    except DataError as e:
        raise UserError(f"data: {e}") from None
    from tqdm import tqdm
    try:
        r = qm.evaluate(tqdm(loader, desc="evaluate", disable=args.json, leave=False),
                        golden=args.golden, int_exact=args.mode == "int")
    except ConfigError as e:
        raise UserError(str(e)) from None
    from .evaluate import RANDOM_WEIGHTS_NOTE, weights_origin
    origin = weights_origin(qm.info.get("source"))
    res_ = dict(command="evaluate", qmodel=str(args.qmodel), data=str(args.data), weights=origin)
    res_.update(r)
    if origin == "random":
        res_["note"] = RANDOM_WEIGHTS_NOTE
        _log(args, f"  {RANDOM_WEIGHTS_NOTE}")
    for k in ("float", "fake", "int", "golden"):
        if k not in r:
            continue
        top1, top5 = r[k]["top1"], r[k]["top5"]
        line = (f"  {k:7s} top-1 {top1 if top1 is None else f'{top1:.2f}'}%  top-5 "
                f"{top5 if top5 is None else f'{top5:.2f}'}%")
        if r[k]["sqnr_vs_float_db"] is not None:
            line += (f"  SQNR vs float {r[k]['sqnr_vs_float_db']:.2f} dB  same top-1 as float on "
                     f"{100 * r[k]['top1_agreement_with_float']:.1f}%")
        _log(args, line)
    if args.golden:
        ag, n = r["agreement"], r["n"]
        _log(args, f"  integer-exact vs sim.golden: top-1 identical on "
                   f"{100 * ag['top1_int_vs_golden']:.1f}% of {n} images, max |logit diff| = "
                   f"{ag['max_abs_logit_diff_lsb']:.0f} LSB")
        _log(args, f"  fake-quant ({ag['fake_mode']}) vs sim.golden: top-1 identical on "
                   f"{100 * ag['top1_fake_vs_golden']:.1f}% of {n} images, max |logit diff|"
                   f" = {ag['max_abs_logit_diff_fake_vs_golden_lsb']:.3g} LSB")
    return res_


def cmd_export(args):
    """A thin layer over :func:`quant.api.load` and :meth:`QuantizedModel.export_intprogram`."""
    from sim.intprogram import IntProgramError
    from .export import ExportError
    out = _check_output(args.output)
    qm = load_qmodel_api(args.qmodel)
    try:
        prog = qm.export_intprogram(out)
    except (ExportError, IntProgramError, ValueError, OverflowError) as e:
        raise UserError(f"{args.qmodel}: export: {e}") from None
    except OSError as e:
        raise UserError(f"{out}: cannot write ({e.strerror or e})") from None
    _log(args, f"wrote {out}: {len(prog.nodes)} nodes, input {prog.tensors['input'].shape}")
    return dict(command="export", output=str(out), nodes=len(prog.nodes),
                model=qm.model_name, resolution=qm.resolution)


def cmd_ablation(args):
    from .ablation import STRENGTHS, format_ablation, run_ablation, run_sweep
    from .fold import fold_bn
    from .qmodel import lower
    if not args.synthetic and not args.checkpoint:
        raise UserError("ablation needs --checkpoint (a trained model) or --synthetic "
                        "(random BN-calibrated model with injected statistics)")
    if args.synthetic and args.checkpoint:
        raise UserError("--synthetic and --checkpoint exclude each other")
    strengths = args.injection.split(",") if args.injection else list(STRENGTHS)
    bad = [x for x in strengths if x not in STRENGTHS]
    if bad:
        raise UserError(f"--injection: unknown strength(s) {bad}; choose from {list(STRENGTHS)}")
    model, res, source = _float_model(args)
    n_cal, n_ev = args.calib_size, args.eval_size
    imgs, src = _images(args, n_cal + n_ev, res, synthetic=args.synthetic)
    base = _qconfig(args)

    def log(m):
        _log(args, m)

    if args.synthetic:
        r = run_sweep(lambda: lower(fold_bn(model), resolution=res), imgs[:n_cal], imgs[n_cal:],
                      seed=args.seed, strengths=strengths, base=base, progress=not args.json, log=log)
    else:
        r = run_ablation(lower(fold_bn(model), resolution=res), imgs[:n_cal], imgs[n_cal:],
                         base=base, progress=not args.json, log=log)
    # the float-scale rows' float32 reductions depend on torch's thread count, and one flipped
    # LSB moves a random network's figures (docs/quant.md): recorded with the result
    import torch
    r.update(command="ablation", model=args.model, source=source, images=src,
             injected_statistics=bool(args.synthetic), base_observer=base.observer,
             torch_threads=torch.get_num_threads())
    _log(args, format_ablation(r, f"Table V ablation on {args.model} "
                                  f"({'random BN-calibrated, injected statistics' if args.synthetic else 'checkpoint'}; "
                                  f"{r['torch_threads']} torch threads)"))
    return r


def cmd_synthetic(args):
    from .synthetic import format_synthetic, run_synthetic
    r = run_synthetic(args.seed)
    _log(args, format_synthetic(r))
    r["command"] = "synthetic"
    return r


# ------------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------------

def _common(p, *, model=True):
    if model:
        p.add_argument("--model", default="b1-r224",
                       help="EfficientViT variant and input size, e.g. b0, b1-r224, b2-r288 "
                            "(default b1-r224)")
        p.add_argument("--checkpoint", "--weight_url", metavar="PATH",
                       help="official checkpoint (.pt/.pth, plain state_dict or under "
                            "'state_dict'); without it --random-init is used")
        p.add_argument("--input-size", type=int, default=None,
                       help="input resolution (overrides the -rNNN of --model)")
        p.add_argument("--random-init", action="store_true",
                       help="random weights + BN calibration (the default when no --checkpoint)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default 0; 1005, the authors', with --paper)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _quant_flags(p):
    p.add_argument("--w-bits", "--n_bits_w", type=int, default=8, help="weight bits (default 8)")
    p.add_argument("--a-bits", "--n_bits_a", type=int, default=8,
                   help="activation bits (default 8)")
    p.add_argument("--channel-wise", "--channel_wise", dest="channel_wise", action="store_true",
                   default=True, help="filter-wise weight scales (default)")
    p.add_argument("--act-quant", "--act_quant", dest="no_act_quant", action="store_false", default=False,
                   help="quantize activations (the default here; the authors' script quantizes "
                        "weights only without it)")
    p.add_argument("--no-channel-wise", dest="channel_wise", action="store_false",
                   help="one weight scale per layer")
    p.add_argument("--no-act-quant", action="store_true", help="quantize weights only")
    p.add_argument("--stem-head-bits", type=int, default=8,
                   help="bits of the stem and head layers (default 8)")
    p.add_argument("--keep-stem-head-8bit", action="store_true",
                   help="same as --stem-head-bits 8 (the default)")
    p.add_argument("--disable-8bit-head-stem", "--disable_8bit_head_stem", action="store_true",
                   help="stem and head at --w-bits/--a-bits like every other layer (the authors' "
                        "flag; the opposite of --keep-stem-head-8bit)")
    p.add_argument("--observer", default="minmax", choices=["minmax", "ema", "percentile", "omse"],
                   help="activation range observer (default minmax)")
    p.add_argument("--no-migration", action="store_true",
                   help="disable channel-wise migration of DW inputs (Eq. 6-8)")
    p.add_argument("--no-shifting", action="store_true",
                   help="disable filter-wise shifting of PW2 inputs (Eq. 9-10)")
    p.add_argument("--divisor", default="log2", choices=["log2", "uniform", "float"],
                   help="attention divisor: 4-bit log2 (Trio-ViT, exportable), uniform 8-bit, "
                        "or float (default log2)")


def build_parser():
    ap = _Parser(
        prog="python -m quant",
        description="Trio-ViT post-training quantization of EfficientViT. Typical flow:\n"
                    "  python -m quant quantize --model b1-r224 --checkpoint W.pt -o b1.qmodel\n"
                    "  python -m quant evaluate b1.qmodel --golden\n"
                    "  python -m quant export b1.qmodel -o b1.npz\n"
                    "  python -m quant ablation --model b1-r224 --synthetic --json\n"
                    "  python -m quant synthetic\n"
                    "Without --checkpoint the model is random but BN-calibrated (said loudly).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true",
                    help="print the traceback of an unexpected error")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    dd = _default_data()

    q = sub.add_parser("quantize", help="calibrate (+ reconstruct) and write a quantized-model file",
                       description="Fold BN, calibrate on --calib-size images, optionally run "
                                   "BRECQ-style block reconstruction, write -o OUT.")
    _common(q)
    _quant_flags(q)
    q.add_argument("--data", "--data_path", default=dd,
                   help=f"image folder or labels.csv (default {dd})")
    q.add_argument("--calib-size", "--num_samples", type=_count(1), default=1024,
                   help="calibration images (default 1024 as in the paper; capped at what --data has)")
    q.add_argument("--batch-size", "--batch_size", type=_count(1), default=16,
                   help="batch size for calibration/eval")
    q.add_argument("--recon-iters", "--iters_w", type=_count(0), default=None,
                   help="block-reconstruction iterations per block (fast default 40, --paper "
                        "20000; 0 = off)")
    q.add_argument("--recon-iters-a", "--iters_a", type=_count(1), default=None,
                   help="iterations of the separate LSQ pass per block (--paper 5000)")
    q.add_argument("--recon-separate", action="store_true",
                   help="two passes per block as the authors' code: AdaRound with the steps "
                        "frozen, then LSQ on the hardened weights (--paper does this)")
    q.add_argument("--recon-reg", "--weight", type=float, default=None, metavar="LAMBDA",
                   help="weight of the rounding regulariser (fast 1e-4, --paper 0.01)")
    q.add_argument("--recon-p", type=float, default=None, metavar="P",
                   help="exponent of the reconstruction error (default 2)")
    q.add_argument("--recon-p-a", "--p", type=float, default=None, metavar="P",
                   help="exponent of the LSQ pass's error (--paper 2.4)")
    q.add_argument("--recon-b-start", "--b_start", type=float, default=None,
                   help="AdaRound temperature at the start (20)")
    q.add_argument("--recon-b-end", "--b_end", type=float, default=None,
                   help="AdaRound temperature at the end (2)")
    q.add_argument("--recon-warmup", "--warmup", type=float, default=None,
                   help="fraction of iterations without the regulariser (0.2)")
    q.add_argument("--recon-batch", type=_count(1), default=None, help="reconstruction batch size")
    q.add_argument("--recon-lr-w", type=float, default=None,
                   help="AdaRound learning rate (fast 3e-2, --paper 1e-3)")
    lr_a = q.add_mutually_exclusive_group()
    lr_a.add_argument("--recon-lr-a", "--lr", type=float, default=None, metavar="LR",
                      help="LSQ step learning rate, absolute (--paper 4e-4 with a cosine "
                           "schedule; 0 freezes the steps)")
    lr_a.add_argument("--recon-lr-a-relative", type=float, default=None, metavar="LR",
                      help="LSQ step learning rate relative to each step's initial value (Adam "
                           "lr = LR x initial step; fast default 1e-2; 0 freezes the steps)")
    q.add_argument("--recon-images", type=_count(1), default=None,
                   help="images cached for reconstruction (fast 32, --paper 1024)")
    q.add_argument("--paper", action="store_true",
                   help="the authors' code's reconstruction settings (docs/quant.md): 20000 "
                        "AdaRound it/block then 5000 LSQ it/block (lr 4e-4, cosine, p 2.4), "
                        "batch 32, seed 1005")
    q.add_argument("--fisher", action="store_true", help="Fisher-weighted reconstruction loss")
    q.add_argument("--test-before-calibration", "--test_before_calibration", action="store_true",
                   help="evaluate the float model on --data first")
    q.add_argument("--limit", type=_count(1), default=None, help="images for --test-before-calibration")
    q.add_argument("-o", "--output", required=True, help="quantized-model file to write")
    q.set_defaults(func=cmd_quantize)

    e = sub.add_parser("evaluate", help="top-1/top-5 of a quantized model (float, fake, integer)",
                       description="Evaluate a quantized-model file on --data: the float model, "
                                   "the fake-quant model and (--mode int or --golden) the integer "
                                   "graph; --golden also runs sim.golden and reports agreement.")
    e.add_argument("qmodel", help="file written by `quantize`")
    e.add_argument("--data", default=dd, help=f"image folder or labels.csv (default {dd})")
    e.add_argument("--mode", default="fake", choices=["fake", "int"],
                   help="int: also run the integer-exact graph")
    e.add_argument("--golden", action="store_true", help="also run sim.golden (agreement check)")
    e.add_argument("--batch-size", type=_count(1), default=16)
    e.add_argument("--limit", type=_count(1), default=None, help="first N images only")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="quantized-model file -> IntProgram (.npz)")
    x.add_argument("qmodel", help="file written by `quantize`")
    x.add_argument("-o", "--output", required=True, help="IntProgram file to write (.npz)")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_export)

    a = sub.add_parser("ablation", help="Table V rows: SQNR and top-1 agreement vs float per technique",
                       description="Baselines (MinMax, percentile, OMSE, asymmetric 80-step grid "
                                   "search), +migration, +shifting, +both, +uniform divisor, +log2 "
                                   "divisor, and the integer (deploy-exact) rows. --synthetic: random "
                                   "BN-calibrated model, swept over injected-statistics strengths "
                                   "none / paper / strong.")
    _common(a)
    _quant_flags(a)
    a.add_argument("--synthetic", action="store_true",
                   help="random BN-calibrated model + injected statistics + synthetic images")
    a.add_argument("--data", "--data_path", default=None, help="images (ignored with --synthetic)")
    a.add_argument("--calib-size", type=_count(1), default=16, help="calibration images (default 16)")
    a.add_argument("--eval-size", type=_count(1), default=16, help="evaluation images (default 16)")
    a.add_argument("--injection", default=None, metavar="LIST",
                   help="with --synthetic: injection strengths to sweep, comma-separated, from "
                        "none, paper, strong (default all three)")
    a.set_defaults(func=cmd_ablation)

    b = sub.add_parser("bench", help="time and peak memory of quantize (fast default), one JSON line")
    b.add_argument("--model", default="b1-r224")
    b.add_argument("--calib-size", type=_count(1), default=64)
    b.add_argument("--data", default=dd)
    b.set_defaults(func=cmd_bench, json=False)

    s = sub.add_parser("synthetic", help="part (a): the techniques on injected tensors")
    s.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_synthetic)
    return ap


def _msg(e: BaseException) -> str:
    """The first line of an exception as a short message (a KeyError names the missing key)."""
    if isinstance(e, KeyError):
        return f"missing {e}"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _resolve_seed(args):
    """``--seed`` not given: 0, or the authors' 1005 with ``--paper``."""
    if hasattr(args, "seed") and args.seed is None:
        from .reconstruct import PAPER_SEED
        args.seed = PAPER_SEED if getattr(args, "paper", False) else 0
    return args


def main(argv=None) -> int:
    ap = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv          # accepted anywhere, also after the command
    args = ap.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    _resolve_seed(args)
    try:
        res = args.func(args)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)     # one line
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:      # a bug, not a user error: short message, traceback on request
        if getattr(args, "debug", False):
            raise
        print(f"internal error: {_msg(e)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
    if getattr(args, "json", False) and res is not None:
        print(json.dumps(_jsonable(res), indent=1, allow_nan=False))
    return 0
