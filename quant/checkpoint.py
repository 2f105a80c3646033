"""Load and save EfficientViT checkpoints by path (never downloads anything).

Accepted layouts of a checkpoint file (``torch.save`` output):

* a plain ``state_dict`` (a mapping from parameter name to tensor);
* a dict holding it under ``"state_dict"`` (the official release's layout), ``"model"``,
  ``"ema"`` or ``"model_ema"`` (the first of these that holds a state dict wins, in that
  order; nested one level further is accepted too, e.g. ``{"ema": {"state_dict": ...}}``).

Names are normalised by removing ``module.`` (DataParallel/DDP) and ``_orig_mod.``
(``torch.compile``) prefixes. Missing ``num_batches_tracked`` buffers are tolerated (they do not
affect evaluation). Anything else that does not match the model exactly - a missing key, an
unexpected key, a shape mismatch - raises :class:`CheckpointError` naming the first few keys and
the counts. Files are read with ``torch.load(weights_only=True)``, which refuses to run arbitrary
pickled code.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn

from sim.fileio import atomic_open

__all__ = ["CheckpointError", "read_state_dict", "extract_state_dict", "check_state_dict",
           "load_checkpoint", "save_checkpoint", "guess_variant"]

NESTED_KEYS = ("state_dict", "model", "ema", "model_ema")
STRIP_PREFIXES = ("module.", "_orig_mod.")
SHOW = 5  # how many key names an error message lists


class CheckpointError(Exception):
    """A checkpoint file that cannot be read, or whose contents do not fit the model."""


def _is_state_dict(obj) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in STRIP_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def extract_state_dict(obj, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint object, with prefixes stripped."""
    found = None
    if _is_state_dict(obj):
        found = obj
    elif isinstance(obj, Mapping):
        for key in NESTED_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                found = inner
                break
            if isinstance(inner, Mapping):
                for key2 in NESTED_KEYS:
                    if _is_state_dict(inner.get(key2)):
                        found = inner[key2]
                        break
            if found is not None:
                break
    if found is None:
        if isinstance(obj, Mapping):
            keys = [str(k) for k in list(obj)[:SHOW]]
            raise CheckpointError(
                f"{source}: no state dict found: expected a mapping of parameter names to "
                f"tensors, or one under {', '.join(repr(k) for k in NESTED_KEYS)}; the file "
                f"holds a mapping with {len(obj)} key(s) {keys}")
        raise CheckpointError(f"{source}: not a checkpoint: the file holds a "
                              f"{type(obj).__name__}, not a state dict")
    out: dict[str, torch.Tensor] = {}
    for k, v in found.items():
        name = _strip(k)
        if name in out:
            raise CheckpointError(f"{source}: key {k!r} collides with another after removing "
                                  f"the prefixes {STRIP_PREFIXES}")
        out[name] = v
    return out


def read_state_dict(path: Union[str, os.PathLike],
                    trusted: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its state dict (see the module docstring).

    ``trusted=True`` reads with ``torch.load(weights_only=False)``, which executes whatever the
    pickle contains: only for files from a source you trust that hold other Python objects."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as e:  # torch raises many types (RuntimeError, KeyError, EOFError, ...)
        text = str(e)
        msg = (text.split(". ")[0].splitlines()[0] if text else "") or type(e).__name__
        if "Weights only load failed" in text:
            raise CheckpointError(
                f"{path}: the file contains Python objects other than tensors and plain "
                f"containers, which are not loaded for safety (torch.load weights_only=True); "
                f"re-save it as a plain state dict, or pass trusted=True if you trust its "
                f"source") from None
        if "central directory" in text or isinstance(e, EOFError) or "EOF" in text:
            hint = "truncated or corrupt file"
        elif zipfile.is_zipfile(path):
            hint = "a zip archive, but not a readable torch checkpoint"
        else:
            hint = "not a torch checkpoint, or a truncated one"
        raise CheckpointError(f"{path}: cannot read ({size} bytes; {hint}): "
                              f"{type(e).__name__}: {msg}") from None
    return extract_state_dict(obj, str(path))


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOW])
    more = f", ... (+{len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return f"{shown}{more}"


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                     source: str = "checkpoint") -> list[str]:
    """Compare ``state_dict`` with ``model.state_dict()``; raise :class:`CheckpointError` on any
    mismatch. Returns the tolerated missing keys (``num_batches_tracked`` only)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    tolerated = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
    if problems:
        variant = getattr(model, "variant", "") or type(model).__name__
        guess = guess_variant(state_dict)
        hint = (f" (the checkpoint looks like EfficientViT-{guess.upper()})"
                if guess and guess != getattr(model, "variant", None) else "")
        raise CheckpointError(f"{source} does not fit model {variant} "
                              f"({len(state_dict)} tensors in the file, {len(expected)} in the "
                              f"model){hint}: " + "; ".join(problems))
    return tolerated


def load_checkpoint(model: nn.Module, path: Union[str, os.PathLike],
                    trusted: bool = False) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (strict, see the module docstring) and
    return the model. Tensors are converted to the model's dtype and device. ``trusted``: see
    :func:`read_state_dict`."""
    sd = read_state_dict(path, trusted=trusted)
    check_state_dict(model, sd, str(path))
    model.load_state_dict(sd, strict=False)
    return model


def save_checkpoint(model_or_state: Union[nn.Module, Mapping[str, torch.Tensor]],
                    path: Union[str, os.PathLike], nested: bool = True,
                    extra: Optional[dict] = None) -> Path:
    """Save a state dict (under ``"state_dict"`` when ``nested``, the official layout) to
    ``path`` atomically (temporary file + rename). ``extra`` entries (plain values) are stored
    next to it when nested. Returns the path."""
    path = Path(path)
    sd = (model_or_state.state_dict() if isinstance(model_or_state, nn.Module)
          else dict(model_or_state))
    obj = {"state_dict": sd, **(extra or {})} if nested else sd
    with atomic_open(path) as f:
        torch.save(obj, f)
    return path


def guess_variant(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """``"b0"``..``"b3"`` from the stem width and the stage depths of a state dict, or None."""
    from .models.efficientvit import MODEL_CONFIGS

    w = state_dict.get("backbone.input_stem.op_list.0.conv.weight")
    if w is None or w.dim() != 4:
        return None
    depth4 = {int(k.split(".")[3]) for k in state_dict
              if k.startswith("backbone.stages.3.op_list.") and k.split(".")[3].isdigit()}
    for name, cfg in MODEL_CONFIGS.items():
        if cfg["width"][0] == w.shape[0] and (not depth4 or max(depth4) == cfg["depth"][4]):
            return name
    return None
