"""``fsearch predict``: preprocessing of odd images, one error line per bad file, exit code 2."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from search.data import CLASSES
from search.errors import ImageError
from search.model import images as imageio
from search.model.images import read_image
from tests.support import fsearch, save_small_model


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (and holds none): a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _garment(h: int, w: int, *, light_background: bool = False) -> np.ndarray:
    """A bright filled ellipse on a dark background (or a dark one on a light background)."""
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - h / 2) / (h * 0.35)) ** 2 + ((xx - w / 2) / (w * 0.3)) ** 2 <= 1
    img = np.where(inside, 220, 10).astype(np.uint8)
    return 255 - img if light_background else img


def _good_images(folder: Path) -> list[Path]:
    folder.mkdir()
    rgb = np.stack([_garment(40, 30)] * 3, axis=-1)
    rgba = np.dstack([rgb, np.where(_garment(40, 30) > 100, 255, 0).astype(np.uint8)])
    images = {
        "rgb.png": Image.fromarray(rgb, "RGB"),
        "rgba.png": Image.fromarray(rgba, "RGBA"),
        "gray.jpg": Image.fromarray(_garment(28, 28), "L"),
        "palette.png": Image.fromarray(rgb, "RGB").convert("P"),
        "bilevel.png": Image.fromarray(_garment(50, 50)).convert("1"),
        "sixteen.png": Image.fromarray(_garment(30, 30).astype(np.uint16) * 257),
        "tiny.png": Image.fromarray(_garment(5, 40), "L"),
        "large.jpg": Image.fromarray(np.stack([_garment(300, 200)] * 3, axis=-1), "RGB"),
        "light.png": Image.fromarray(_garment(60, 40, light_background=True), "L"),
    }
    paths = []
    for name, img in images.items():
        img.save(folder / name)
        paths.append(folder / name)
    assert Image.open(folder / "sixteen.png").mode.startswith("I")  # really 16-bit on disk
    return paths


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return save_small_model(tmp_path / "model")[1]


def test_predict_prints_good_images_and_one_error_line_per_bad_one(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _good_images(tmp_path / "in")
    bad = {
        "notes.txt": b"not an image at all",
        "empty.png": b"",
        "bomb.png": _png_header(100_000, 100_000),
        "cut.png": (tmp_path / "in" / "rgb.png").read_bytes()[:60],
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    paths = [*good[:4], *(tmp_path / n for n in bad), tmp_path / "missing.png", *good[4:]]
    code, out, err = fsearch(
        ["predict", "--model", str(model_dir), "--top", "3", "--json", *map(str, paths)], capsys, monkeypatch
    )
    assert code == 2
    assert err.splitlines() == [
        f"Error: {tmp_path}/notes.txt: not a PNG or JPEG image",
        f"Error: {tmp_path}/empty.png: empty file",
        f"Error: {tmp_path}/bomb.png: refused as a possible decompression bomb (Image size (10000000000 pixels) "
        "exceeds limit of 178956970 pixels, could be decompression bomb DOS attack.)",
        err.splitlines()[3],  # Pillow's own wording for a truncated file; checked below
        f"Error: {tmp_path}/missing.png: no such file",
    ]
    assert err.splitlines()[3].startswith(f"Error: {tmp_path}/cut.png: cannot decode the image (")
    results = json.loads(out)
    assert [r["image"] for r in results] == list(map(str, paths))
    predicted = [r for r in results if "error" not in r]
    assert [r["image"] for r in predicted] == list(map(str, good))
    for r in predicted:
        assert r["class"] in CLASSES and 0 < r["confidence"] <= 1 and len(r["top"]) == 3
        assert r["top"][0] == {"class": r["class"], "probability": r["confidence"]}
        assert r["top"][0]["probability"] >= r["top"][1]["probability"] >= r["top"][2]["probability"]


def test_predict_human_output_and_all_good_exits_0(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    good = _good_images(tmp_path / "in")
    code, out, err = fsearch(["predict", "--model", str(model_dir), *map(str, good[:2])], capsys, monkeypatch)
    assert code == 0 and err == ""
    assert "rgb.png" in out and "rgba.png" in out and "confidence" in out


def test_a_model_folder_given_as_an_image_is_named_as_such_and_the_images_are_still_classified(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _good_images(tmp_path / "in")
    # A model's folder among the images, as `fsearch predict MODEL IMAGE` (the default model beside it) has it.
    args = ["predict", "--model", str(model_dir), "--json", str(model_dir), str(good[0])]
    code, out, err = fsearch(args, capsys, monkeypatch)
    assert code == 2
    assert err.splitlines() == [
        f"Error: {model_dir}: a saved model's folder, not an image; name the model with --model"
    ]
    assert [r["image"] for r in json.loads(out) if "class" in r] == [str(good[0])]


def test_the_preprocessing_gives_fashion_mnist_polarity_and_framing(tmp_path: Path) -> None:
    paths = {p.name: p for p in _good_images(tmp_path / "in")}
    for name, path in paths.items():
        x = read_image(path)
        assert x.shape == (1, 28, 28) and x.dtype == torch.uint8, name
        ring = torch.cat([x[0, 0], x[0, -1], x[0, :, 0], x[0, :, -1]])
        assert ring.float().mean() < 40, name  # dark background, as in Fashion-MNIST
        assert x.max() > 150, name  # a bright garment (the 16-bit image is scaled, not clipped to white)
    light = read_image(paths["light.png"])[0]
    dark = read_image(paths["rgb.png"])[0]
    assert light[14, 14] > 150 and dark[14, 14] > 150  # the dark garment on white was inverted
    tall = read_image(paths["large.jpg"])[0]  # 300x200 ellipse: fills the height, centred, padded left and right
    rows, cols = torch.nonzero(tall > 40, as_tuple=True)
    assert rows.min() <= 1 and rows.max() >= 26 and 3 <= cols.min() <= 8 and 19 <= cols.max() <= 24
    wide = read_image(paths["tiny.png"])[0]  # 5x40 becomes about 28x4, centred vertically
    rows, cols = torch.nonzero(wide > 40, as_tuple=True)
    assert cols.max() - cols.min() >= 20 and rows.max() - rows.min() <= 5 and 10 <= rows.min() <= 14


def test_a_fashion_mnist_image_passes_through_unchanged(tmp_path: Path) -> None:
    img = np.zeros((28, 28), dtype=np.uint8)  # Fashion-MNIST: background exactly 0, the long side fills 28
    img[:, 6:22] = np.random.default_rng(0).integers(100, 256, size=(28, 16))
    path = tmp_path / "fm.png"
    Image.fromarray(img, "L").save(path)
    assert int((read_image(path)[0].int() - torch.from_numpy(img).int()).abs().max()) <= 2


def test_transparent_images_get_a_background_that_contrasts_with_the_garment(tmp_path: Path) -> None:
    alpha = np.where(_garment(40, 30) > 100, 255, 0).astype(np.uint8)
    for name, value in (("light.png", 230), ("dark.png", 20)):
        Image.fromarray(np.dstack([np.full((40, 30), value, np.uint8), alpha]), "LA").save(tmp_path / name)
        x = read_image(tmp_path / name)[0]
        assert x[20 * 28 // 40, 14] > 200 and x[0, 0] == 0, name


def test_images_over_the_pixel_limits_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(_garment(300, 200), "L").save(path)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 50_000)
    with pytest.raises(ImageError, match=r"big\.png: 200x300 pixels is over the limit of 50,000; shrink the image"):
        read_image(path)
    # Between Pillow's limit and twice it, Pillow only warns: that is a refusal too.
    monkeypatch.setattr(imageio, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)
    with pytest.raises(ImageError, match="refused as a possible decompression bomb"):
        read_image(path)


def test_only_png_and_jpeg_are_decoded(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    Image.fromarray(_garment(20, 20), "L").save(path)
    with pytest.raises(ImageError, match=r"anim\.gif: not a PNG or JPEG image"):
        read_image(path)
    with pytest.raises(ImageError, match="a folder, not an image"):
        read_image(tmp_path)


def test_a_path_that_cannot_be_looked_at_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As a folder on the way that this user may not enter: stat raises, where a missing file returns False.
    def denied(self: Path, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "stat", denied)
    with pytest.raises(ImageError, match=r"x\.png: cannot read it \(Permission denied\)"):
        read_image(tmp_path / "x.png")
