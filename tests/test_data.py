"""Image sources, the official eval preprocessing, calibration sets and top-k evaluation."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from quant.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    EvalTransform,
    SyntheticImages,
    calibration_images,
    center_crop,
    load_image,
    make_loader,
    open_dataset,
    read_labels_csv,
    resize_shorter,
)
from quant.evaluate import evaluate, predict, topk_correct

SAMPLE = Path("/work/shared/data/imagenet-sample")


def _norm(rgb):
    """ImageNet normalisation of one RGB uint8 colour, written out."""
    return np.array([(rgb[c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] for c in range(3)])


def _write_images(root: Path, names_colors):
    root.mkdir(parents=True, exist_ok=True)
    for name, color in names_colors:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (90, 70), color).save(root / name)


# ---------------------------------------------------------------- preprocessing

@pytest.mark.parametrize("res,resize", [(224, 236), (256, 270), (288, 304), (64, 68)])
def test_resize_size_from_crop_ratio(res, resize):
    # ceil(res / 0.95), the official eval script's Resize argument
    assert EvalTransform(res).resize_size == resize == math.ceil(res / 0.95)


@pytest.mark.parametrize("size_in,size_out", [((300, 200), (102, 68)), ((200, 300), (68, 102)),
                                              ((68, 90), (68, 90)), ((500, 375), (90, 68))])
def test_resize_shorter_side(size_in, size_out):
    img = Image.new("RGB", size_in, (10, 20, 30))
    assert resize_shorter(img, 68).size == size_out


def test_center_crop_offsets():
    img = Image.fromarray(np.arange(10 * 7, dtype=np.uint8).reshape(7, 10))  # w=10, h=7
    crop = np.asarray(center_crop(img, 4))
    # top = round(3/2) = 2 (Python rounds half to even), left = round(6/2) = 3
    np.testing.assert_array_equal(crop, np.arange(70).reshape(7, 10)[2:6, 3:7])


def test_uniform_image_exact_values():
    color = (124, 116, 104)
    x = EvalTransform(64)(Image.new("RGB", (300, 200), color))
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(_norm(color)[:, None, None],
                                                          (3, 64, 64)), atol=1e-6)


def test_geometry_left_red_right_blue():
    """A 200x100 image, left half red, right half blue: resized to 136x68 and cropped at
    x in [36, 100), the red/blue boundary (x = 68 after resizing) falls at crop column 32."""
    a = np.zeros((100, 200, 3), np.uint8)
    a[:, :100] = (255, 0, 0)
    a[:, 100:] = (0, 0, 255)
    x = EvalTransform(64)(Image.fromarray(a)).numpy()
    red, blue = _norm((255, 0, 0)), _norm((0, 0, 255))
    np.testing.assert_allclose(x[:, :, :29], np.broadcast_to(red[:, None, None], (3, 64, 29)),
                               atol=1e-6)
    np.testing.assert_allclose(x[:, :, 36:], np.broadcast_to(blue[:, None, None], (3, 64, 28)),
                               atol=1e-6)
    mid = x[0, 32, 30:35]  # red channel falls across the boundary
    assert mid[0] > mid[-1]


def test_grayscale_and_rgba_converted(tmp_path):
    Image.new("L", (80, 80), 128).save(tmp_path / "g.png")
    Image.new("RGBA", (80, 80), (1, 2, 3, 4)).save(tmp_path / "a.png")
    for name in ("g.png", "a.png"):
        assert load_image(tmp_path / name, 32).shape == (1, 3, 32, 32)
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(DataError, match="cannot read image"):
        load_image(tmp_path / "bad.png", 32)


# ---------------------------------------------------------------- sources

@pytest.mark.skipif(not (SAMPLE / "labels.csv").is_file(), reason="sample images not present")
def test_sample_labels_csv():
    items, names = read_labels_csv(SAMPLE / "labels.csv")
    with open(SAMPLE / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) >= {"file", "wnid", "class_index", "class_name"}
    assert len(items) == len(rows) == 125
    assert items[0] == (SAMPLE / rows[0]["file"], int(rows[0]["class_index"]))
    assert all(0 <= y < 1000 and p.is_file() for p, y in items)
    assert names[int(rows[0]["class_index"])] == rows[0]["class_name"]
    ds = open_dataset(SAMPLE, 64)
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and y == int(rows[0]["class_index"])


def test_labels_csv_in_tmp_folder(tmp_path):
    _write_images(tmp_path / "imgs", [("a.png", (255, 0, 0)), ("b.jpg", (0, 255, 0))])
    (tmp_path / "labels.csv").write_text(
        "file,wnid,class_index,class_name\nimgs/a.png,n1,7,seven\nimgs/b.jpg,n2,3,three\n")
    for src in (tmp_path, tmp_path / "labels.csv"):
        ds = open_dataset(src, 32)
        assert len(ds) == 2 and ds.labels == [7, 3]
        assert ds.classes[7] == "seven" and ds.classes[3] == "three"
        x, y = ds[0]
        assert x.shape == (3, 32, 32) and y == 7
        np.testing.assert_allclose(x[:, 5, 5].numpy(), _norm((255, 0, 0)), atol=1e-6)


@pytest.mark.parametrize("content,match", [
    ("name,label\na.png,1\n", "needs the columns 'file' and 'class_index'"),
    ("file,class_index\na.png,x\n", r"labels.csv:2: class_index 'x' is not an integer"),
    ("file,class_index\nmissing.png,1\n", r"1 listed image\(s\) not found"),
    ("file,class_index\n", "no rows")])
def test_labels_csv_errors(tmp_path, content, match):
    _write_images(tmp_path, [("a.png", (0, 0, 0))])
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(DataError, match=match):
        open_dataset(tmp_path, 32)


def test_image_folder_classes_sorted(tmp_path):
    _write_images(tmp_path, [("zebra/1.png", (0, 0, 0)), ("ant/1.png", (0, 0, 0)),
                             ("ant/2.JPEG", (0, 0, 0))])
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = open_dataset(tmp_path, 32)
    assert ds.classes == ["ant", "zebra"]
    assert [(p.name, y) for p, y in ds.items] == [("1.png", 0), ("2.JPEG", 0), ("1.png", 1)]


def test_flat_folder_unlabelled_and_empty(tmp_path):
    _write_images(tmp_path / "flat", [("x.png", (1, 1, 1)), ("y.png", (2, 2, 2))])
    assert open_dataset(tmp_path / "flat", 32).labels == [-1, -1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        open_dataset(tmp_path / "empty", 32)
    with pytest.raises(DataError, match="no such file"):
        open_dataset(tmp_path / "absent", 32)
    with pytest.raises(DataError, match="expected a .csv"):
        open_dataset(tmp_path / "flat" / "x.png", 32)


def test_synthetic_images_deterministic_and_natural():
    a, b = SyntheticImages(3, 48, seed=1), SyntheticImages(3, 48, seed=1)
    x0, y0 = a[0]
    assert x0.shape == (3, 48, 48) and 0 <= y0 < 1000
    assert torch.equal(x0, b[0][0]) and a[1][1] == b[1][1]
    assert not torch.equal(x0, a[1][0])
    assert not torch.equal(x0, SyntheticImages(3, 48, seed=2)[0][0])
    # pixel values in [0, 1] before normalisation; channels correlated like real images
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pix = x0 * std + mean
    assert pix.min() >= -1e-6 and pix.max() <= 1 + 1e-6 and 0.1 < float(pix.std()) < 0.35
    assert np.corrcoef(pix[0].flatten(), pix[2].flatten())[0, 1] > 0.5
    with pytest.raises(IndexError):
        a[3]


def test_calibration_images_synthetic_and_folder(tmp_path):
    cal = calibration_images(None, 5, 40, seed=3)
    assert cal.shape == (5, 3, 40, 40)
    assert torch.equal(cal, calibration_images(None, 5, 40, seed=3))
    _write_images(tmp_path, [(f"c{i}/{i}.png", (20 * i, 0, 0)) for i in range(6)])
    pick = calibration_images(tmp_path, 3, 32, seed=0)
    assert pick.shape == (3, 3, 32, 32)
    assert torch.equal(pick, calibration_images(tmp_path, 3, 32, seed=0))
    # the red channel identifies the image: the picked ones are distinct and in file order
    reds = [round(float(v)) for v in (pick[:, 0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0])
            * 255 / 20]
    assert reds == sorted(set(reds))
    with pytest.warns(UserWarning, match="asked for 10 images, the source has 6"):
        assert calibration_images(tmp_path, 10, 32).shape[0] == 6


def test_make_loader_batches_and_limit(tmp_path):
    loader = make_loader(None, resolution=32, batch_size=4, synthetic_n=10)
    shapes = [tuple(x.shape) for x, _ in loader]
    assert shapes == [(4, 3, 32, 32), (4, 3, 32, 32), (2, 3, 32, 32)]
    assert sum(len(y) for _, y in make_loader(None, 32, batch_size=4, synthetic_n=10,
                                              limit=7)) == 7


# ---------------------------------------------------------------- evaluation

class _Lookup(torch.nn.Module):
    """A "model" whose logits for input i are row i of a fixed table."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def forward(self, idx):
        return self.table[idx.long().view(-1)]


def _ranked_logits(labels, ranks, classes=10):
    """Logits in which ``label`` is at 1-based position ``rank`` (descending)."""
    rows = []
    for y, r in zip(labels, ranks):
        order = [c for c in range(classes) if c != y]
        order.insert(r - 1, y)
        row = np.zeros(classes)
        row[order] = np.arange(classes, 0, -1)
        rows.append(row)
    return np.stack(rows)


def test_evaluate_topk_against_hand_count():
    labels = [3, 0, 9, 4, 4, 7, 2]
    ranks = [1, 1, 3, 5, 6, 10, 2]  # top-1 hits: 2 of 7; top-5 hits: 5 of 7
    model = _Lookup(_ranked_logits(labels, ranks))
    loader = DataLoader(TensorDataset(torch.arange(7), torch.tensor(labels)), batch_size=3)
    res = evaluate(model, loader, progress=False)
    assert res["n"] == 7
    assert res["top1"] == pytest.approx(100 * 2 / 7) and res["top5"] == pytest.approx(100 * 5 / 7)
    assert evaluate(model, loader, progress=False, limit=4) == {
        "top1": pytest.approx(50.0), "top5": pytest.approx(100.0), "n": 4}
    logits, y = predict(model, loader, progress=False)
    assert logits.shape == (7, 10) and y.tolist() == labels
    assert topk_correct(logits, y, 1) == 2 and topk_correct(logits, y, 5) == 5


def test_evaluate_unlabelled_not_counted():
    model = _Lookup(_ranked_logits([1, 2, 3], [1, 1, 1]))
    loader = DataLoader(TensorDataset(torch.arange(3), torch.tensor([1, -1, 5])), batch_size=2)
    res = evaluate(model, loader, progress=False)
    assert res["n"] == 2 and res["top1"] == pytest.approx(50.0)
    none = DataLoader(TensorDataset(torch.arange(2), torch.tensor([-1, -1])), batch_size=2)
    assert evaluate(model, none, progress=False) == {"top1": None, "top5": None, "n": 0}
