"""The ``.qmodel`` file: a quantized model as deployed, not as trained.

Format version 3 (written by :func:`save`, read by :func:`load`; one ``torch.save`` dict, loaded
with ``weights_only=True``):

* ``format``, ``version``, ``model`` (e.g. ``"b1-r224"``), ``resolution``, ``qconfig``
  (:class:`quant.qmodel.QConfig` as a dict), ``info`` (the quantize report, JSON-able);
* ``act``: per quantized tensor its bits, sign, migration factors and shift centres;
* ``fixed_weights``: the names of every conv / linear node: each one's weights are stored as
  its deployed **int8 codes** (``state["nodes.<i>.wq.codes"]``, the IntProgram's weights) and
  its filter-wise scale (``nodes.<i>.wq.scale``);
* ``state``: the graph's state dict *without* the float weight tensors: codes, filter scales,
  float biases, LayerNorm parameters, LSQ steps, the Hardswish intermediates' calibrated
  ranges, the attention's per-head scales and log2 window. Everything
  :func:`quant.export.export` reads, so the IntProgram (int8 weights, int32 biases, dyadic
  multipliers, log2 divisor parameters) derived from a loaded file is the one of the model
  that was saved, array by array (``tests/test_quant_api.py``); its SHA-256 at save time is
  ``program_sha256``;
* ``float_source``: how to rebuild the *float reference* model (for "SQNR vs float" and top-1
  agreement with float): ``{"kind": "random", "name", "seed", "n_images"}`` (a random
  BN-calibrated model, regenerated from its seed), ``{"kind": "checkpoint", "path",
  "sha256"}``, or ``None``. If it cannot be rebuilt (checkpoint moved or changed), the loaded
  model's float weights are the dequantized int8 codes and ``g.float_reference`` is ``False``.

No float AdaRound state (``V``, floor tensors) and no float copy of the weights is stored: a
B1-R224 file is about the size of its IntProgram (docs/quant.md), where version 2 stored the
float weights as well.

Version 2 files (float weights + the codes of reconstructed layers) are still read (their
float weights are the float reference); :meth:`quant.api.QuantizedModel.save` writes them
back as version 3 (the converter: ``quant.load("old.qmodel").save("new.qmodel")``). Version 1
(AdaRound's float ``V``) is refused with a message.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

__all__ = ["FORMAT", "VERSION", "READS", "QModelError", "save", "load", "float_source_of",
           "rebuild_float_model"]

FORMAT = "trio-vit.qmodel"
VERSION = 3     #: 3: int8 codes of every layer, no float weights; 2: float weights + codes
READS = (2, 3)


class QModelError(ValueError):
    """A ``.qmodel`` file that cannot be read: one line, naming the file."""


def _msg(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"missing {e}"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _weight_nodes(g):
    from .qmodel import QConv, QLinear
    return [(i, n) for i, n in enumerate(g.nodes) if isinstance(n, (QConv, QLinear))]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def float_source_of(source: dict | None, model_name: str, *, n_images: int = 16) -> dict | None:
    """The ``float_source`` entry for a quantize report's ``source`` (``{"checkpoint": path}`` or
    ``{"random_init": True, "seed": s}``); None when unknown (a user's own model)."""
    if not source:
        return None
    if source.get("checkpoint"):
        p = Path(source["checkpoint"])
        return dict(kind="checkpoint", path=str(p.resolve()),
                    sha256=file_sha256(p) if p.is_file() else None)
    if source.get("random_init"):
        return dict(kind="random", name=model_name, seed=int(source.get("seed", 0)),
                    n_images=int(source.get("n_images", n_images)))
    return None


def rebuild_float_model(fs: dict | None, model_name: str):
    """The float reference model described by ``fs`` (eval mode, linear attention), or None
    with a warning if it cannot be rebuilt."""
    if not fs:
        return None
    from .models import create_model
    try:
        if fs.get("kind") == "random":
            from .bn_calib import random_calibrated_model
            model, _ = random_calibrated_model(fs["name"], seed=int(fs["seed"]),
                                               n_images=int(fs["n_images"]))
        elif fs.get("kind") == "checkpoint":
            from .checkpoint import load_checkpoint
            p = Path(fs["path"])
            if not p.is_file():
                raise FileNotFoundError(f"checkpoint {p} is gone")
            if fs.get("sha256") and file_sha256(p) != fs["sha256"]:
                raise ValueError(f"checkpoint {p} changed since quantization (SHA-256 differs)")
            model, _ = create_model(model_name)
            load_checkpoint(model, p)
        else:
            return None
    except Exception as e:      # noqa: BLE001 - the reference is optional; say why it is missing
        warnings.warn(f"float reference model not available ({_msg(e)}); float rows use the "
                      "dequantized int8 weights", stacklevel=3)
        return None
    model.set_attention_mode("linear")
    return model.eval()


def save(path, g, info: dict, *, float_source: dict | None = None) -> Path:
    """Write ``g`` (a calibrated QGraph) as a version-3 ``.qmodel`` (atomically). AdaRound
    quantizers still soft are hardened first (as before); round-to-nearest layers are stored as
    their int8 codes too."""
    import torch
    from sim.fileio import atomic_path
    from .cli import _jsonable
    from .quantizers import FixedWeightQuantizer
    g.harden_adaround()
    state = {k: v.detach().cpu() for k, v in g.state_dict().items()}
    names = []
    for i, n in _weight_nodes(g):
        names.append(n.name)
        del state[f"nodes.{i}.weight"]
        if not isinstance(n.wq, FixedWeightQuantizer):
            if n.w_bits > 8:
                raise ValueError(f"{n.name}: {n.w_bits}-bit weights do not fit int8 codes")
            state[f"nodes.{i}.wq.codes"] = n.wq.int_weight(n.weight).detach().cpu().to(torch.int8)
    act = {}
    for k, q in g.act_q.items():
        act[k] = dict(bits=q.bits, signed=q.signed,
                      channel_factor=None if q.channel_factor is None else q.channel_factor.cpu(),
                      center=None if q.center is None else q.center.cpu())
    sha = None
    if g.cfg.act_quant and len(g.act_q) and g.cfg.attention == "log2":
        from .export import ExportError, export
        try:
            sha = _program_sha(export(g))
        except (ExportError, ValueError, OverflowError):
            sha = None
    payload = dict(format=FORMAT, version=VERSION, model=g.meta.get("model_name"),
                   resolution=g.meta["resolution"], qconfig=g.cfg.as_dict(), act=act,
                   fixed_weights=names, state=state, float_source=float_source,
                   program_sha256=sha, info=_jsonable(info))
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, str(tmp))
    return path


def _program_sha(prog) -> str:
    """SHA-256 of an IntProgram's serialisation (its arrays and manifest)."""
    return hashlib.sha256(prog.to_bytes()).hexdigest()


def load(path, *, float_model=None):
    """Rebuild the QGraph of a ``.qmodel`` file (version 2 or 3). Returns ``(graph, dict)``.
    ``float_model``: the float reference to use (else rebuilt from ``float_source``).
    Raises :class:`QModelError` (one line, naming the file) on anything wrong with the file."""
    import torch
    from .fold import fold_bn
    from .models import create_model
    from .qmodel import QConfig, lower
    from .quantizers import FixedWeightQuantizer, LSQActQuantizer
    p = Path(path)
    if not p.is_file():
        raise QModelError(f"{p}: no such quantized-model file")
    try:
        d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:      # noqa: BLE001 - any unreadable file is the user's problem
        raise QModelError(f"{p}: not a quantized-model file or damaged ({_msg(e)})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise QModelError(f"{p}: not a trio-vit quantized-model file (write one with "
                          "`python -m quant quantize`)")
    version = d.get("version")
    if version not in READS:
        raise QModelError(f"{p}: quantized-model version {version} is not supported (this "
                          f"trio-vit reads versions {', '.join(map(str, READS))}); re-run "
                          "`python -m quant quantize`")
    missing = [k for k in ("model", "resolution", "qconfig", "act", "state", "fixed_weights")
               if k not in d]
    if missing:
        raise QModelError(f"{p}: damaged quantized-model file: missing member(s) {missing}")
    name = d["model"]
    if not isinstance(name, str):
        raise QModelError(f"{p}: model {name!r}: not a model name")
    try:
        model, _ = create_model(name)
    except (ValueError, KeyError, TypeError) as e:
        raise QModelError(f"{p}: model {name!r}: {_msg(e)}") from None
    res = d["resolution"]
    if isinstance(res, bool) or not isinstance(res, int) or res < 32 or res % 32:
        raise QModelError(f"{p}: resolution {res!r} is not a positive multiple of 32")
    if not isinstance(d["qconfig"], dict):
        raise QModelError(f"{p}: qconfig is not a dict")
    try:
        cfg = QConfig(**d["qconfig"])
    except (TypeError, ValueError) as e:
        raise QModelError(f"{p}: qconfig: {_msg(e)}") from None
    state = d["state"]
    if not isinstance(state, dict) or not isinstance(d["fixed_weights"], (list, tuple)):
        raise QModelError(f"{p}: state is not a dict of tensors")
    ref = None
    if version == 3:
        ref = float_model if float_model is not None else \
            rebuild_float_model(d.get("float_source"), name)
        if ref is not None:
            model = ref
    try:
        g = lower(fold_bn(model), resolution=res)
        g.meta["model_name"] = name
        g.prepare(cfg)
        for k, a in d["act"].items():
            g.act_q[k] = LSQActQuantizer(1.0, a["bits"], a["signed"],
                                         channel_factor=a["channel_factor"], center=a["center"],
                                         enabled=g.cfg.act_quant)
        wnodes = _weight_nodes(g)
        if version == 3 and set(d["fixed_weights"]) != {n.name for _, n in wnodes}:
            raise QModelError(f"{p}: fixed_weights does not list exactly the model's "
                              f"{len(wnodes)} conv/linear layers")
        for _, n in wnodes:
            if n.name in d["fixed_weights"]:
                n.wq = FixedWeightQuantizer.empty(n.weight.shape, n.wq.scale, n.w_bits)
        want = g.state_dict()
        skip = {f"nodes.{i}.weight" for i, _ in wnodes} if version == 3 else set()
        for k, v in state.items():
            if k in skip:
                raise QModelError(f"{p}: state {k!r}: a version-3 file stores int8 codes, "
                                  "not float weights")
            if k in want and isinstance(v, torch.Tensor) and v.dtype != want[k].dtype:
                raise QModelError(f"{p}: state {k!r} has dtype {v.dtype}, expected "
                                  f"{want[k].dtype} (a damaged or foreign file; it is not cast)")
    except QModelError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise QModelError(f"{p}: inconsistent quantized-model file ({_msg(e)})") from None
    try:
        if version == 3:
            full = dict(state)
            for k in skip:
                full[k] = want[k]           # the float reference's (or placeholder) weights
            g.load_state_dict(full)
        else:
            g.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        raise QModelError(f"{p}: inconsistent quantized-model file ({_msg(e)})") from None
    if version == 3 and ref is None:
        # no float reference: the float weights are the dequantized codes
        for _, n in wnodes:
            n.weight.copy_(n.wq(None).to(n.weight.dtype))
    # (attributes, not g.meta: the meta goes into the exported IntProgram)
    g.float_reference = bool(version == 2 or ref is not None)
    g.qmodel_version = version
    g.invalidate_deploy()
    g.set_mode("fake")
    return g, d
