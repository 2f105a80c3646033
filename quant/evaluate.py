"""Top-1 / top-5 accuracy of a classifier over a DataLoader of ``(images, labels)``."""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn as nn
from tqdm import tqdm

__all__ = ["evaluate", "predict", "topk_correct", "RANDOM_WEIGHTS_NOTE", "weights_origin"]

#: What every report of accuracy says, once, when the model was not loaded from a checkpoint
#: (``python -m quant quantize`` without ``--checkpoint``, the demo's default).
RANDOM_WEIGHTS_NOTE = ("no checkpoint was given: the weights are random, so accuracy (top-1/top-5)"
                       " is meaningless; SQNR and agreement between float, fake-quant and golden"
                       " are not")


def weights_origin(source: Optional[dict]) -> str:
    """``"checkpoint"``, ``"random"`` or ``"unknown"`` for the ``source`` entry that
    ``python -m quant quantize`` records (``{"checkpoint": path}`` or ``{"random_init": True,
    "seed": s}``; absent in files written before it was recorded)."""
    if not source:
        return "unknown"
    if source.get("checkpoint"):
        return "checkpoint"
    return "random" if source.get("random_init") else "unknown"


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many rows of ``logits`` have their label among the ``k`` largest entries
    (ties broken by ``torch.topk``)."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == labels.view(-1, 1)).any(dim=1).sum())


@torch.no_grad()
def predict(model: nn.Module, loader, device: Union[str, torch.device] = "cpu",
            progress: bool = True, desc: str = "predict") -> tuple[torch.Tensor, torch.Tensor]:
    """All logits ``(N, classes)`` (float32, on the CPU) and labels ``(N,)`` of ``loader``."""
    model.eval().to(device)
    outs, labels = [], []
    for images, y in tqdm(loader, desc=desc, disable=not progress, unit="batch", leave=False):
        outs.append(model(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(y).view(-1).cpu())
    if not outs:
        raise ValueError("the loader yielded no batches")
    return torch.cat(outs), torch.cat(labels)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: Union[str, torch.device] = "cpu",
             progress: bool = True, desc: str = "eval",
             limit: Optional[int] = None) -> dict:
    """Accuracy of ``model`` on ``loader``: ``{"top1": %, "top5": %, "n": images counted}``.

    Images with a negative label (unlabelled) are not counted; if no image has a label,
    ``top1``/``top5`` are ``None``. ``limit`` stops after that many images. The model is put in
    eval mode and moved to ``device``.
    """
    model.eval().to(device)
    n = c1 = c5 = seen = 0
    bar = tqdm(loader, desc=desc, disable=not progress, unit="batch", leave=False)
    for images, labels in bar:
        labels = torch.as_tensor(labels).view(-1)
        if limit is not None:
            if seen >= limit:
                break
            images, labels = images[: limit - seen], labels[: limit - seen]
        seen += len(labels)
        logits = model(images.to(device)).float().cpu()
        keep = labels >= 0
        if keep.any():
            c1 += topk_correct(logits[keep], labels[keep], 1)
            c5 += topk_correct(logits[keep], labels[keep], 5)
            n += int(keep.sum())
        if n:
            bar.set_postfix(top1=f"{100.0 * c1 / n:.2f}", top5=f"{100.0 * c5 / n:.2f}")
    if n == 0:
        return {"top1": None, "top5": None, "n": 0}
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "n": n}
