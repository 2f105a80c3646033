"""The Python API of the Trio-ViT quantizer, in the style of torch.ao / NVIDIA ModelOpt.

::

    import quant
    model = quant.float_model("b0-r64")                 # or your EfficientViT with its weights
    cfg = quant.QuantConfig(reconstruction="off")       # W8A8, migration, shifting, log2 divisor
    qm = quant.quantize(model, loader, cfg)             # calibrates by running the model
    qm.evaluate(loader)                                 # dict: top-1, SQNR / agreement vs float
    qm.export_intprogram("m.npz"); qm.export_onnx("m.onnx"); qm.save("m.qmodel")
    qm2 = quant.load("m.qmodel")                        # the same deployed integers

``calib_data`` / ``data``: a DataLoader or any iterable of batches, each an image tensor
``(B, 3, R, R)`` or a ``(images, labels, ...)`` tuple/list (what a DataLoader of
:class:`quant.data.ImageDataset` yields), or one ``(N, 3, R, R)`` tensor, or (``evaluate``) an
image folder / ``labels.csv`` path. Calibration runs the float model on every batch twice
(statistics, then observers), so an iterable is materialised once into memory (as the CLI
does with its calibration images).

The command line (``python -m quant quantize / evaluate / export``) is a thin layer over this
module: its flags become a :class:`QuantConfig`, and it calls :func:`float_model`,
:func:`quantize`, :func:`load` and the :class:`QuantizedModel` methods (same ``.qmodel`` files,
:mod:`quant.qfile`; same IntProgram for the same settings, seed and images).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .qmodel import ATTENTION_MODES, QConfig, QGraph, sqnr_db
from .reconstruct import FAST, PAPER, ReconConfig

__all__ = ["QuantConfig", "ConfigError", "QuantizedModel", "quantize", "load", "float_model"]

OBSERVERS = ("minmax", "ema", "percentile", "omse")
RECONSTRUCTION = ("fast", "paper", "off")


class ConfigError(ValueError):
    """An invalid :class:`QuantConfig` field or quantize argument (one line, names the field)."""


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_recon(r: ReconConfig):
    """Every knob of a :class:`quant.reconstruct.ReconConfig` in its range (ConfigError)."""
    def bad(name, want):
        raise ConfigError(f"QuantConfig.reconstruction.{name} must be {want}, "
                          f"got {getattr(r, name)!r}")

    def num(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
            and np.isfinite(v)
    if not _is_int(r.iters) or r.iters < 0:
        bad("iters", "an int >= 0")
    for k in ("batch_size", "max_images"):
        if not _is_int(getattr(r, k)) or getattr(r, k) < 1:
            bad(k, "an int >= 1")
    if r.iters_a is not None and (not _is_int(r.iters_a) or r.iters_a < 1):
        bad("iters_a", "None or an int >= 1")
    for k in ("lr_w", "lr_a", "reg"):
        if not num(getattr(r, k)) or getattr(r, k) < 0:
            bad(k, "a finite number >= 0")
    if not num(r.p) or r.p <= 0:
        bad("p", "a finite number > 0")
    if r.p_a is not None and (not num(r.p_a) or r.p_a <= 0):
        bad("p_a", "None or a finite number > 0")
    if not num(r.warmup) or not 0 <= r.warmup <= 1:
        bad("warmup", "a number in [0, 1]")
    if not num(r.holdout) or not 0 <= r.holdout < 1:
        bad("holdout", "a number in [0, 1)")
    if not (isinstance(r.beta, (tuple, list)) and len(r.beta) == 2
            and all(num(b) and b > 0 for b in r.beta)):
        bad("beta", "two numbers > 0 (start, end)")
    for k in ("fisher", "guard", "lr_a_relative", "rec_sum_channels", "separate", "lr_a_cosine"):
        if not isinstance(getattr(r, k), bool):
            bad(k, "True or False")


@dataclass(frozen=True)
class QuantConfig:
    """What :func:`quantize` does. Every field is checked when the object is made.

    The defaults are the Trio-ViT setting of the command line: W8A8, filter-wise weight scales,
    stem and head at 8 bits, MinMax observers, channel-wise migration (Eq. 6-8), filter-wise
    shifting (Eq. 9-10), 4-bit log2 attention divisors, the fast block reconstruction.
    """
    w_bits: int = 8                      #: weight bits, 2..8 (filter-wise symmetric)
    a_bits: int = 8                      #: activation bits, 2..8 (per tensor)
    channel_wise: bool = True            #: one weight scale per output filter (else per layer)
    act_quant: bool = True               #: quantize activations (False: weights only, not
    #: exportable; reconstruction then rounds the weights only, the authors' default)
    stem_head_bits: int | None = 8       #: bits of the stem and head layers (None: as the rest)
    observer: str = "minmax"             #: minmax | ema | percentile | omse
    migration: bool = True               #: channel-wise migration of depthwise inputs
    shifting: bool = True                #: filter-wise shifting of second-pointwise inputs
    divisor: str = "log2"                #: log2 (exportable) | uniform | float (ablation rows)
    reconstruction: str | ReconConfig = "fast"   #: fast | paper | off | a ReconConfig
    calib_images: int | None = None      #: use at most this many calibration images
    batch_size: int = 16                 #: calibration batch size
    seed: int = 0                        #: reconstruction seed
    device: str = "cpu"                  #: torch device

    def __post_init__(self):
        def bad(name, want):
            raise ConfigError(f"QuantConfig.{name} must be {want}, got {getattr(self, name)!r}")
        for k in ("w_bits", "a_bits"):
            v = getattr(self, k)
            if not _is_int(v) or not 2 <= v <= 8:
                bad(k, "an int in [2, 8]")
        sh = self.stem_head_bits
        if sh is not None and (not _is_int(sh) or not 2 <= sh <= 8):
            bad("stem_head_bits", "None or an int in [2, 8]")
        for k in ("channel_wise", "act_quant", "migration", "shifting"):
            if not isinstance(getattr(self, k), bool):
                bad(k, "True or False")
        if self.observer not in OBSERVERS:
            bad("observer", f"one of {OBSERVERS}")
        if self.divisor not in ATTENTION_MODES:
            bad("divisor", f"one of {ATTENTION_MODES}")
        r = self.reconstruction
        if not isinstance(r, ReconConfig) and r not in RECONSTRUCTION:
            bad("reconstruction", f"one of {RECONSTRUCTION} or a quant.reconstruct.ReconConfig")
        if isinstance(r, ReconConfig):
            _check_recon(r)
        if self.calib_images is not None and (not _is_int(self.calib_images)
                                              or self.calib_images < 1):
            bad("calib_images", "None or an int >= 1")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            bad("batch_size", "an int >= 1")
        if not _is_int(self.seed):
            bad("seed", "an int")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            bad("device", "a torch device name such as 'cpu' or 'cuda'")

    def qconfig(self) -> QConfig:
        """The graph-level :class:`quant.qmodel.QConfig`."""
        return QConfig(w_bits=self.w_bits, a_bits=self.a_bits, channel_wise=self.channel_wise,
                       act_quant=self.act_quant, stem_head_bits=self.stem_head_bits,
                       observer=self.observer, migration=self.migration, shifting=self.shifting,
                       attention=self.divisor)

    def recon(self) -> ReconConfig | None:
        r = self.reconstruction
        if isinstance(r, ReconConfig):
            return r if r.iters > 0 else None
        return {"fast": FAST, "paper": PAPER, "off": None}[r]

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(self.reconstruction, ReconConfig):
            d["reconstruction"] = asdict(self.reconstruction)
        return d

    @classmethod
    def from_qconfig(cls, q: QConfig, **kw) -> "QuantConfig":
        return cls(w_bits=q.w_bits, a_bits=q.a_bits, channel_wise=q.channel_wise,
                   act_quant=q.act_quant, stem_head_bits=q.stem_head_bits, observer=q.observer,
                   migration=q.migration, shifting=q.shifting, divisor=q.attention, **kw)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------

def _batch_images(b, what):
    if isinstance(b, torch.Tensor):
        return b, None
    if isinstance(b, (tuple, list)) and b and isinstance(b[0], torch.Tensor):
        return b[0], (torch.as_tensor(b[1]).view(-1) if len(b) > 1 else None)
    raise ConfigError(f"{what}: each batch must be an image tensor (B, 3, R, R) or an (images, "
                      f"labels) tuple, got {type(b).__name__}")


def _batches(data, what, *, resolution=None, batch_size=16, limit=None):
    """``[(images, labels or None)]`` from a tensor, an iterable of batches or a path."""
    if isinstance(data, (str, Path)):
        from .data import DataError, make_loader
        if resolution is None:
            raise ConfigError(f"{what}: a path needs the model's resolution")
        try:
            data = make_loader(data, resolution, batch_size=batch_size, limit=limit)
        except DataError as e:
            raise ConfigError(f"{what}: {e}") from None
    if isinstance(data, torch.Tensor):
        data = list(data.split(batch_size))
    try:
        it = iter(data)
    except TypeError:
        raise ConfigError(f"{what}: expected a DataLoader, an iterable of batches, an image "
                          f"tensor or a path, got {type(data).__name__}") from None
    out, seen = [], 0
    for b in it:
        x, y = _batch_images(b, what)
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ConfigError(f"{what}: images must be (B, 3, R, R), got {tuple(x.shape)}")
        if limit is not None:
            x = x[: limit - seen]
            y = None if y is None else y[: limit - seen]
        if len(x):
            out.append((x.float(), y))
            seen += len(x)
        if limit is not None and seen >= limit:
            break
    if not out:
        raise ConfigError(f"{what}: no images")
    res = {b[0].shape[-1] for b in out}
    if len(res) != 1:
        raise ConfigError(f"{what}: the images have several sizes {sorted(res)}")
    return out


# ------------------------------------------------------------------------------------------------
# the quantized model
# ------------------------------------------------------------------------------------------------

class QuantizedModel(nn.Module):
    """A quantized EfficientViT: calling it runs the fake-quant model, whose values are the
    deployed integer model's (deploy-exact, :meth:`quant.qmodel.QGraph.exact_active`), on
    float images ``(B, 3, R, R)`` and returns float logits ``(B, classes)``.

    ``graph`` is the :class:`quant.qmodel.QGraph`; ``float_reference`` says whether the graph's
    float mode is the original float model (False after loading a file whose float source is
    unavailable: the float weights are then the dequantized int8 codes)."""

    def __init__(self, graph: QGraph, config: QuantConfig, info: dict | None = None, *,
                 float_source: dict | None = None, float_reference: bool = True):
        super().__init__()
        self.graph = graph
        self.config = config
        self.info = dict(info or {})
        self.float_source = float_source
        self.float_reference = float_reference
        self._prog = None

    @property
    def resolution(self) -> int:
        return int(self.graph.meta["resolution"])

    @property
    def model_name(self) -> str | None:
        return self.graph.meta.get("model_name")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph.set_mode("fake")(x)

    @torch.no_grad()
    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the float (BN-folded) reference model."""
        try:
            return self.graph.set_mode("float")(x)
        finally:
            self.graph.set_mode("fake")

    # -- exports ----------------------------------------------------------------------------------
    def intprogram(self):
        """The :class:`sim.intprogram.IntProgram` (exported once and cached)."""
        if self._prog is None:
            from .export import export
            self._prog = export(self.graph)
        return self._prog

    def export_intprogram(self, path) -> "object":
        """Write the IntProgram (``.npz``) for ``sim``/``hw``; returns it."""
        prog = self.intprogram()
        prog.save(Path(path))
        return prog

    def export_onnx(self, path, **kw):
        """Write the ONNX QDQ model (:func:`quant.onnx_export.export_onnx`); returns the
        ``onnx.ModelProto``."""
        from .onnx_export import export_onnx
        return export_onnx(self, path, **kw)

    def save(self, path) -> Path:
        """Write a ``.qmodel`` (format 3: deployed int8 codes and scales; :mod:`quant.qfile`)."""
        from .qfile import save
        if not self.model_name:
            raise ConfigError("save needs a model whose variant is known (an EfficientViTCls "
                              "made by quant.float_model or quant.models.create_model): the file "
                              "names the architecture to rebuild")
        info = dict(self.info)
        info.setdefault("api_config", self.config.as_dict())
        return save(path, self.graph, info, float_source=self.float_source)

    # -- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, data, *, golden: bool = False, int_exact: bool = False,
                 limit: int | None = None, batch_size: int = 16) -> dict:
        """Run the float reference, the fake-quant model and optionally the integer-exact
        executor (``int_exact``) and :func:`sim.golden.run` (``golden``) on ``data``.

        Returns ``{"n", "float", "fake"[, "int"][, "golden"][, "agreement"]}``; each mode has
        ``top1``/``top5`` (% on labelled images, None without labels), ``sqnr_vs_float_db`` and
        ``top1_agreement_with_float`` (None when there is no float reference);
        ``agreement`` compares int and fake with golden (top-1 fraction, max |logit diff| in
        LSBs of the int32 logits)."""
        batches = _batches(data, "evaluate data", resolution=self.resolution,
                           batch_size=batch_size, limit=limit)
        prog = self.intprogram() if (int_exact or golden) else None
        from .export import quantize_images, run_int
        logits = {"float": [], "fake": [], "int": [], "golden": []}
        labels = []
        for x, y in batches:
            labels.append(torch.full((len(x),), -1, dtype=torch.int64) if y is None else y.long())
            if self.float_reference:
                logits["float"].append(self.float_forward(x).double())
            logits["fake"].append(self(x).double())
            if prog is not None:
                s_logit = prog.tensors[prog.outputs[0]].channel_scale()
                xi = quantize_images(prog, x)
                logits["int"].append(torch.from_numpy(run_int(prog, xi) * s_logit))
                if golden:
                    from sim import golden as gm
                    gl = np.stack([gm.run(prog, v)[prog.outputs[0]] for v in xi])
                    logits["golden"].append(torch.from_numpy(gl * s_logit))
        labels = torch.cat(labels)
        keep = labels >= 0
        ref = torch.cat(logits["float"]) if logits["float"] else None
        out = dict(n=len(labels), float_reference=self.float_reference)
        for k, v in logits.items():
            if not v:
                continue
            lg = torch.cat(v)
            top1 = float((lg.argmax(1)[keep] == labels[keep]).double().mean() * 100) \
                if keep.any() else None
            top5 = float((lg.topk(min(5, lg.shape[1]), 1).indices[keep] == labels[keep, None])
                         .any(1).double().mean() * 100) if keep.any() else None
            vs = ref is not None and k != "float"
            out[k] = dict(top1=top1, top5=top5,
                          sqnr_vs_float_db=sqnr_db(ref, lg) if vs else None,
                          top1_agreement_with_float=float((lg.argmax(1) == ref.argmax(1))
                                                          .double().mean()) if vs else None)
            out[f"_{k}_logits"] = lg
        if golden:
            lsb = torch.from_numpy(np.asarray(prog.tensors[prog.outputs[0]].channel_scale(),
                                              np.float64))
            gl, li, fk = out["_golden_logits"], out["_int_logits"], out["_fake_logits"]
            out["agreement"] = dict(
                top1_int_vs_golden=float((li.argmax(1) == gl.argmax(1)).double().mean()),
                max_abs_logit_diff_lsb=float(((li - gl).abs() / lsb).max()),
                top1_fake_vs_golden=float((fk.argmax(1) == gl.argmax(1)).double().mean()),
                max_abs_logit_diff_fake_vs_golden_lsb=float(((fk - gl).abs() / lsb).max()),
                fake_mode="deploy-exact" if self.graph.exact_active() else "float-scale")
        for k in [k for k in out if k.startswith("_")]:
            del out[k]
        return out


# ------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------

def float_model(name: str = "b1-r224", *, checkpoint=None, seed: int = 0,
                bn_images: int = 16) -> nn.Module:
    """An EfficientViT float model by name (``"b0"`` .. ``"b3"``, optional ``-rRES``): the
    official ``checkpoint`` if given, else random weights with BatchNorm statistics calibrated
    on ``bn_images`` synthetic images (accuracy is then meaningless). The model remembers its
    source, so a saved :class:`QuantizedModel` can rebuild its float reference."""
    from .models import create_model, parse_model_name
    try:
        variant, res = parse_model_name(name)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    full = f"{variant}-r{res}"
    if checkpoint is not None:
        from .checkpoint import load_checkpoint
        model, _ = create_model(full)
        load_checkpoint(model, checkpoint)
        source = dict(checkpoint=str(checkpoint))
    else:
        from .bn_calib import random_calibrated_model
        model, _ = random_calibrated_model(full, seed=seed, n_images=bn_images)
        source = dict(random_init=True, seed=seed, n_images=bn_images)
    model.trio_vit_source = source
    model.trio_vit_name = full
    model.set_attention_mode("linear")
    return model.eval()


def quantize(model: nn.Module, calib_data, config: QuantConfig | None = None, *,
             progress: bool = False, log=None) -> QuantizedModel:
    """Quantize a float EfficientViT classifier (with BatchNorm; not modified) with Trio-ViT PTQ:
    fold BN, lower to the integer-ready graph, calibrate by running the model on ``calib_data``
    (two passes: channel statistics for migration and shifting, then the observers), then block
    reconstruction as ``config.reconstruction`` says. Returns a :class:`QuantizedModel`.

    ``info`` of the result: ``model``, ``resolution``, ``calib_images``, ``qconfig``, ``source``,
    ``reconstruction`` (kept / reverted blocks, held-out images, median held-out MSE ratio,
    seconds, config, phases, per-block figures), ``sqnr_logits_db_calib`` (logit SQNR vs float
    on the last up to 16 calibration images, named by ``sqnr_images``) and ``seconds``.
    ``log(message)`` receives the progress lines (the command line prints them)."""
    from .fold import fold_bn
    from .qmodel import lower
    config = QuantConfig() if config is None else config
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"config must be a quant.QuantConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module) or not hasattr(model, "backbone"):
        raise ConfigError("model must be an EfficientViT classifier (quant.models."
                          f"EfficientViTCls or quant.float_model(...)), got {type(model).__name__}")
    t0 = time.time()
    batches = _batches(calib_data, "calib_data", batch_size=config.batch_size,
                       limit=config.calib_images)
    images = torch.cat([x for x, _ in batches])
    res = int(images.shape[-1])
    if res < 32 or res % 32:
        raise ConfigError(f"calib_data: image size {res} is not a positive multiple of 32")
    ref = copy.deepcopy(model).eval()
    if hasattr(ref, "set_attention_mode"):
        ref.set_attention_mode("linear")
    g = lower(fold_bn(ref), resolution=res)
    variant = getattr(model, "trio_vit_name", None) or (
        f"{model.variant}-r{res}" if getattr(model, "variant", "") else None)
    if variant is not None:
        variant = f"{variant.split('-r')[0]}-r{res}"
    g.meta["model_name"] = variant
    dev = torch.device(config.device)
    g.to(dev)
    g.prepare(config.qconfig())
    g.calibrate([x.to(dev) for x in images.split(config.batch_size)], progress=progress)
    info = dict(model=variant, resolution=res, calib_images=len(images),
                qconfig=g.cfg.as_dict())
    src = getattr(model, "trio_vit_source", None)
    if src is not None:
        info["source"] = src
    log = log or (lambda m: None)
    rc = config.recon()
    if rc is not None:
        from .reconstruct import reconstruct
        log(f"block reconstruction: {len(g.blocks)} blocks x {rc.iters} iterations "
            f"(batch {rc.batch_size}, {'Fisher' if rc.fisher else 'MSE'} loss)")
        rec = reconstruct(g, images, rc, device=dev, progress=progress, seed=config.seed, log=log)
        ratios = [b["mse_after"] / b["mse_before"] for b in rec["blocks"]
                  if b["mse_before"] and b["mse_after"] is not None]
        med = statistics.median(ratios) if ratios else None
        info["reconstruction"] = dict(kept=rec["kept"], reverted=rec["reverted"],
                                      held_out_images=rec["held_out_images"],
                                      median_mse_ratio=med, seconds=rec["seconds"],
                                      config=dict(rc.__dict__), phases=rec.get("phases"),
                                      blocks=rec["blocks"])
        log(f"block reconstruction: {rec['kept']} blocks kept, {rec['reverted']} reverted "
            f"(held-out MSE guard on {rec['held_out_images']} images"
            + ("" if med is None else f"; median held-out MSE after/before {med:.3f}")
            + f"), {rec['seconds']:.1f} s")
    # logit SQNR vs float on the last (up to 16) calibration images: with the default
    # reconstruction settings, the reconstruction's held-out ones
    with torch.no_grad():
        ev = images[-min(16, len(images)):].to(dev)
        ref_logits = g.set_mode("float")(ev)
        q_logits = g.set_mode("fake")(ev)
    info["sqnr_logits_db_calib"] = sqnr_db(ref_logits.cpu(), q_logits.cpu())
    info["sqnr_images"] = f"calibration images {len(images) - len(ev)}..{len(images) - 1}"
    g.set_mode("fake")
    info["seconds"] = time.time() - t0
    from .qfile import float_source_of
    fs = float_source_of(src, variant) if variant else None
    return QuantizedModel(g, config, info, float_source=fs, float_reference=True)


def load(path, *, float_model: nn.Module | None = None) -> QuantizedModel:
    """Read a ``.qmodel`` (versions 2 and 3; :mod:`quant.qfile`). The float reference is
    ``float_model`` if given, else rebuilt from the file's recorded source when possible.
    Raises :class:`quant.qfile.QModelError` (a ValueError, one line) for a bad file."""
    from .qfile import load as _load
    if float_model is not None:
        float_model = copy.deepcopy(float_model).eval()
        if hasattr(float_model, "set_attention_mode"):
            float_model.set_attention_mode("linear")
    g, d = _load(path, float_model=float_model)
    info = d.get("info") or {}
    api = info.get("api_config") or {}
    kw = {k: v for k, v in api.items()
          if k in ("calib_images", "batch_size", "seed", "device") and v is not None}
    rec = api.get("reconstruction", "off")
    kw["reconstruction"] = rec if rec in RECONSTRUCTION else "off"
    try:
        cfg = QuantConfig.from_qconfig(g.cfg, **kw)
    except ConfigError:
        cfg = QuantConfig.from_qconfig(g.cfg, reconstruction="off")
    fs = d.get("float_source")
    if d.get("version") == 2:
        from .qfile import float_source_of
        fs = float_source_of(info.get("source"), d.get("model"))
    return QuantizedModel(g, cfg, info, float_source=fs, float_reference=g.float_reference)
