"""Images for evaluation and calibration: folders, labels.csv files, synthetic images.

Preprocessing is the official EfficientViT evaluation transform (the ``eval_efficientvit_cls``
script of mit-han-lab/efficientvit, written here with PIL and numpy; torchvision is not needed):

1. resize so that the shorter side is ``ceil(resolution / crop_ratio)`` (``crop_ratio`` 0.95),
   bicubic, the longer side ``int(short * long / short_in)`` (torchvision's rule);
2. center crop ``resolution x resolution`` (top/left offset ``round((size - crop) / 2)``);
3. to float in ``[0, 1]`` (``/ 255``), then ``(x - mean) / std`` with the ImageNet
   ``mean = (0.485, 0.456, 0.406)``, ``std = (0.229, 0.224, 0.225)``.

Sources (:func:`open_dataset`):

* a ``.csv`` file with at least the columns ``file`` and ``class_index`` (like
  ``/work/shared/data/imagenet-sample/labels.csv``: ``file,wnid,class_index,class_name``);
  ``file`` is relative to the csv's folder;
* a folder holding such a ``labels.csv``;
* an ImageNet-style folder with one sub-folder per class (labels = sorted sub-folder index, as
  torchvision's ``ImageFolder``); a folder with images and no sub-folders gives label ``-1``
  (unlabelled: usable for calibration, not for accuracy);
* ``None``: :class:`SyntheticImages`, deterministic smooth random images (for tests and the
  ``--synthetic`` flows; no accuracy meaning).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DEFAULT_CROP_RATIO", "IMAGE_EXTENSIONS",
           "DataError", "resize_shorter", "center_crop", "normalize", "EvalTransform",
           "ImageDataset", "SyntheticImages", "read_labels_csv", "scan_folder", "open_dataset",
           "make_loader", "calibration_images", "load_image"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_RATIO = 0.95
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
LABELS_CSV = "labels.csv"

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
    """An image source that cannot be used (missing files, bad csv, empty folder, ...)."""


# ----------------------------------------------------------------------------------------------
# preprocessing
# ----------------------------------------------------------------------------------------------

def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize (bicubic) so that the shorter side is ``size``, keeping the aspect ratio the way
    torchvision does (the longer side is truncated to an int)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.BICUBIC)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The central ``size x size`` window (zero padding if the image is smaller)."""
    w, h = img.size
    if w < size or h < size:
        canvas = Image.new(img.mode, (max(w, size), max(h, size)))
        canvas.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
        img, (w, h) = canvas, canvas.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def normalize(array_hwc_uint8: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, H, W)``, ``/255`` then ImageNet mean/std."""
    x = torch.from_numpy(np.array(array_hwc_uint8, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


class EvalTransform:
    """PIL image -> normalised ``(3, resolution, resolution)`` float32 tensor (module docstring)."""

    def __init__(self, resolution: int, crop_ratio: float = DEFAULT_CROP_RATIO):
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
        if not 0 < crop_ratio <= 1:
            raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio!r}")
        self.resolution = resolution
        self.crop_ratio = crop_ratio
        self.resize_size = int(math.ceil(resolution / crop_ratio))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img.convert("RGB")
        img = center_crop(resize_shorter(img, self.resize_size), self.resolution)
        return normalize(np.asarray(img, dtype=np.uint8))

    def __repr__(self) -> str:
        return (f"EvalTransform(resize={self.resize_size} bicubic, crop={self.resolution}, "
                f"mean={IMAGENET_MEAN}, std={IMAGENET_STD})")


def load_image(path: PathLike, resolution: int,
               crop_ratio: float = DEFAULT_CROP_RATIO) -> torch.Tensor:
    """One preprocessed image as a ``(1, 3, R, R)`` batch."""
    try:
        with Image.open(path) as img:
            return EvalTransform(resolution, crop_ratio)(img).unsqueeze(0)
    except (OSError, Image.UnidentifiedImageError) as e:
        raise DataError(f"{path}: cannot read image: {e}") from None


# ----------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------

class ImageDataset(Dataset):
    """``(path, label)`` items read with PIL and passed through ``transform``.

    ``__getitem__`` returns ``(image_tensor, label)``; ``classes`` are the class names if known.
    """

    def __init__(self, items: Sequence[tuple[Path, int]], transform: Callable,
                 classes: Optional[Sequence[str]] = None, source: str = ""):
        self.items = list(items)
        self.transform = transform
        self.classes = list(classes) if classes is not None else None
        self.source = source

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        try:
            with Image.open(path) as img:
                x = self.transform(img)
        except (OSError, Image.UnidentifiedImageError) as e:
            raise DataError(f"{path}: cannot read image: {e}") from None
        return x, label

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]


class SyntheticImages(Dataset):
    """``n`` deterministic synthetic images, already normalised like real ones.

    Each image is "pink" noise with the ``1/f`` amplitude spectrum of natural images (a
    luminance field shared by the three channels plus weaker colour fields), scaled to a pixel
    standard deviation of about 0.22 around a random mean near 0.45, clipped to ``[0, 1]`` and
    normalised with the ImageNet mean/std. Its statistics (spectrum, contrast, channel
    correlation) resemble natural images much more than white noise or smooth fields do, so
    BatchNorm statistics calibrated on it carry over to real images reasonably. Image ``i``
    depends only on ``(seed, i)``. Labels are uniform random in ``[0, num_classes)``.
    """

    def __init__(self, n: int, resolution: int, seed: int = 0, num_classes: int = 1000):
        if n < 1 or resolution < 1:
            raise ValueError(f"need n >= 1 and resolution >= 1, got n={n}, "
                             f"resolution={resolution}")
        self.n, self.resolution, self.seed, self.num_classes = n, resolution, seed, num_classes

    def __len__(self) -> int:
        return self.n

    def image(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        r = self.resolution
        fy = np.fft.fftfreq(r).reshape(-1, 1)
        fx = np.fft.rfftfreq(r).reshape(1, -1)
        amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / r)
        amp[0, 0] = 0.0

        def field():
            spec = np.fft.rfft2(rng.standard_normal((r, r))) * amp
            f = np.fft.irfft2(spec, s=(r, r))
            return f / (f.std() + 1e-12)

        lum = field()
        img = np.stack([lum + 0.35 * field() for _ in range(3)])
        img = 0.45 + rng.uniform(-0.1, 0.1, size=(3, 1, 1)) + 0.22 * img / img.std()
        img = np.clip(img, 0.0, 1.0)
        mean = np.asarray(IMAGENET_MEAN).reshape(3, 1, 1)
        std = np.asarray(IMAGENET_STD).reshape(3, 1, 1)
        return torch.from_numpy(((img - mean) / std).astype(np.float32))

    def images(self) -> torch.Tensor:
        """All ``n`` images as one ``(n, 3, resolution, resolution)`` float32 tensor."""
        return torch.stack([self.image(i) for i in range(self.n)])

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        label = int(np.random.default_rng([self.seed, index, 1]).integers(self.num_classes))
        return self.image(index), label


def read_labels_csv(csv_path: PathLike) -> tuple[list[tuple[Path, int]], dict[int, str]]:
    """Items ``(image path, class_index)`` of a labels csv (columns ``file`` and
    ``class_index`` required, ``class_name`` optional); paths are relative to the csv's folder.
    Returns the items and ``{class_index: class_name}``."""
    csv_path = Path(csv_path)
    root = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            need = {"file", "class_index"}
            if not need <= set(fields):
                raise DataError(f"{csv_path}: needs the columns 'file' and 'class_index'; "
                                f"found {fields}")
            items, names, missing = [], {}, []
            for line, row in enumerate(reader, start=2):
                try:
                    label = int(row["class_index"])
                except (TypeError, ValueError):
                    raise DataError(f"{csv_path}:{line}: class_index {row['class_index']!r} "
                                    f"is not an integer") from None
                if label < 0:
                    raise DataError(f"{csv_path}:{line}: negative class_index {label}")
                path = root / row["file"]
                if not path.is_file():
                    missing.append(row["file"])
                items.append((path, label))
                if row.get("class_name"):
                    names[label] = row["class_name"]
    except OSError as e:
        raise DataError(f"{csv_path}: cannot read: {e}") from None
    if missing:
        raise DataError(f"{csv_path}: {len(missing)} listed image(s) not found in {root}: "
                        f"{missing[:5]}")
    if not items:
        raise DataError(f"{csv_path}: no rows")
    return items, names


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def scan_folder(root: PathLike) -> tuple[list[tuple[Path, int]], list[str]]:
    """Items of an ImageNet-style folder (class sub-folders, sorted -> label 0, 1, ...) or of a
    flat folder of images (label -1). Returns the items and the class names."""
    root = Path(root)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    items: list[tuple[Path, int]] = []
    classes: list[str] = []
    if subdirs:
        for label, d in enumerate(subdirs):
            classes.append(d.name)
            for p in sorted(d.rglob("*")):
                if _is_image(p):
                    items.append((p, label))
    else:
        items = [(p, -1) for p in sorted(root.iterdir()) if _is_image(p)]
    if not items:
        raise DataError(f"{root}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return items, classes


def open_dataset(path: PathLike, resolution: int,
                 crop_ratio: float = DEFAULT_CROP_RATIO) -> ImageDataset:
    """An :class:`ImageDataset` for a labels csv, a folder holding ``labels.csv``, or an image
    folder (module docstring)."""
    path = Path(path)
    transform = EvalTransform(resolution, crop_ratio)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(f"{path}: expected a .csv labels file or an image folder")
        items, names = read_labels_csv(path)
        classes = [names.get(i, str(i)) for i in range(max(names, default=-1) + 1)]
        return ImageDataset(items, transform, classes if names else None, str(path))
    if (path / LABELS_CSV).is_file():
        return open_dataset(path / LABELS_CSV, resolution, crop_ratio)
    items, classes = scan_folder(path)
    return ImageDataset(items, transform, classes or None, str(path))


def _as_dataset(source, resolution: int, crop_ratio: float, synthetic_n: int,
                seed: int) -> Dataset:
    if source is None:
        return SyntheticImages(synthetic_n, resolution, seed=seed)
    if isinstance(source, Dataset):
        return source
    return open_dataset(source, resolution, crop_ratio)


def make_loader(source: Union[None, PathLike, Dataset] = None, resolution: int = 224,
                batch_size: int = 32, num_workers: int = 0, limit: Optional[int] = None,
                crop_ratio: float = DEFAULT_CROP_RATIO, synthetic_n: int = 64, seed: int = 0,
                shuffle: bool = False) -> DataLoader:
    """A DataLoader of ``(images, labels)`` batches from ``source`` (a path, a Dataset, or
    ``None`` for ``synthetic_n`` synthetic images). ``limit`` keeps the first ``limit`` items."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = _as_dataset(source, resolution, crop_ratio, synthetic_n, seed)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        ds = Subset(ds, range(min(limit, len(ds))))
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      generator=gen, drop_last=False)


def calibration_images(path: Union[None, PathLike, Dataset], n: int, resolution: int,
                       seed: int = 0, crop_ratio: float = DEFAULT_CROP_RATIO) -> torch.Tensor:
    """``n`` preprocessed images as one ``(n, 3, R, R)`` tensor, a seeded random choice (in
    file order) from ``path``; ``path=None`` gives ``n`` synthetic images. If the source has
    fewer than ``n`` images, all of them are returned with a warning (the paper calibrates on
    1024 training images; the sample folder here has 125)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ds = _as_dataset(path, resolution, crop_ratio, n, seed)
    if len(ds) < n:
        warnings.warn(f"calibration: asked for {n} images, the source has {len(ds)}; using "
                      f"all {len(ds)}", stacklevel=2)
        idx = list(range(len(ds)))
    elif len(ds) == n:
        idx = list(range(n))
    else:
        rng = np.random.default_rng(seed)
        idx = sorted(rng.choice(len(ds), size=n, replace=False).tolist())
    return torch.stack([ds[i][0] for i in idx])
