"""Fuzzing the image decoding of ``fsearch predict``: no crash, no traceback, one line per bad file, bounded memory.

Hypothesis generates files of every kind: random bytes (with and without a PNG or JPEG signature),
valid PNGs and JPEGs in every mode (1, L, LA, P, P with transparency, RGB, RGBA, 16-bit, CMYK) with
and without an EXIF orientation, the same images truncated or with bytes flipped, inserted or
deleted, PNG headers claiming any size (0xN up to 2^31-1 square) and JPEGs whose frame header
claims any size. Each must decode to a 1x28x28 uint8 image or be refused with one ImageError line
naming the file. The default suite tries 300 files; the slow suite 10,000. The strategies are in
tests/image_fuzz.py.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from search.errors import one_line
from search.model.images import _orient, read_image
from tests.support import REPO, fsearch, png_chunk, save_small_model


def test_fuzzed_images_never_crash(tmp_path: Path) -> None:
    from tests.image_fuzz import fuzz  # hypothesis takes ~1 s to import: only the process that runs this

    outcomes = fuzz(tmp_path, 300)
    print(f"\n{sum(outcomes.values())} fuzzed images: {dict(outcomes)}, 0 crashes")
    assert sum(outcomes.values()) >= 300 and outcomes["decoded"] and outcomes["refused"]


@pytest.mark.slow
def test_ten_thousand_fuzzed_images_never_crash(tmp_path: Path) -> None:
    from tests.image_fuzz import fuzz

    outcomes = fuzz(tmp_path, 10_000)
    print(f"\n{sum(outcomes.values())} fuzzed images: {dict(outcomes)}, 0 crashes")
    assert sum(outcomes.values()) >= 10_000


def _bad_files(folder: Path) -> dict[str, bytes]:
    png = io.BytesIO()
    Image.fromarray(np.full((40, 30), 200, np.uint8)).save(png, "PNG")
    jpeg = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 0, 0, 50)).save(jpeg, "JPEG")
    header = struct.pack(">IIBBBBB", 0, 7, 8, 0, 0, 0, 0)
    return {
        "empty.png": b"",
        "text.png": b"hello, not an image",
        "cut.png": png.getvalue()[:50],
        "cut-cmyk.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "zero-width.png": b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b""),
        "huge.png": b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 6, 0, 0, 0)),
        "huge.jpg": jpeg.getvalue().replace(b"\x00\x1e\x00\x28", b"\xff\xff\xff\xff", 1),
        "image.gif": b"GIF89a" + bytes(100),
        "escape\x1b[31m\nnewline.png": b"\x89PNG\r\n\x1a\n" + bytes(30),
    }


def test_each_bad_file_is_one_line_and_the_rest_are_classified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = save_small_model(tmp_path / "model")[1]
    good = tmp_path / "good.png"
    Image.fromarray(np.pad(np.full((20, 10), 220, np.uint8), 4)).save(good)
    bad = _bad_files(tmp_path)
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    paths = [str(good), *(str(tmp_path / n) for n in bad), str(good)]
    code, out, err = fsearch(["predict", "--model", str(model), "--json", *paths], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == len(bad)  # one line per bad file, even the one whose name holds a newline
    for line, name in zip(lines, bad, strict=True):
        assert line.startswith(f"Error: {tmp_path / one_line(name)}: "), line
    assert "\x1b" not in err and "escape\\x1b[31m newline.png" in err  # shown, not obeyed
    results = json.loads(out)
    assert [r["image"] for r in results] == paths
    assert [("error" in r) for r in results] == [False, *[True] * len(bad), False]


def test_exif_orientation_matches_pillow() -> None:
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        Image.fromarray(pixels, "L").save(buffer, "PNG", exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(buffer)))
        assert np.array_equal(_orient(pixels.astype(np.float32), orientation).astype(np.uint8), expected), orientation


def test_a_corrupt_exif_orientation_is_read_unrotated_without_a_warning(tmp_path: Path) -> None:
    # An IFD whose orientation tag (0x0112) claims 100 SHORTs at offset 1000, past the end of the block.
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 3, 100, 1000) + struct.pack("<I", 0)
    pixels = np.arange(40 * 30, dtype=np.uint32).reshape(30, 40).astype(np.uint8)
    corrupt, plain = tmp_path / "corrupt.jpg", tmp_path / "plain.jpg"
    Image.fromarray(pixels, "L").save(corrupt, "JPEG", exif=b"Exif\x00\x00" + tiff, quality=95)
    Image.fromarray(pixels, "L").save(plain, "JPEG", quality=95)
    with pytest.warns(UserWarning, match="Tag data larger than file"):
        Image.open(corrupt).getexif()  # Pillow itself warns: the file is corrupt as meant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(read_image(corrupt), read_image(plain))


def test_a_large_image_is_reduced_first_and_gives_nearly_the_same_input(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:3000, 0:2400]
    garment = ((yy - 1500) / 1100) ** 2 + ((xx - 1200) / 700) ** 2 <= 1
    big = np.where(garment, 210, 15).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    Image.fromarray(big).resize((600, 750), Image.Resampling.BOX).save(tmp_path / "small.png")
    difference = read_image(tmp_path / "big.png").int() - read_image(tmp_path / "small.png").int()
    assert int(difference.abs().max()) <= 8


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures the peak with Linux's /proc")
def test_memory_for_the_largest_allowed_image_is_bounded(tmp_path: Path) -> None:
    """A 40-megapixel RGBA PNG (the limit) costs under 10 bytes a pixel on top of the process (about 8 measured)."""
    side = 6324  # 6324^2 = 39,992,976 pixels: just under MAX_PIXELS
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        import numpy as np
        from PIL import Image
        path = Path({str(tmp_path / "big.png")!r})
        rgba = np.zeros(({side}, {side}, 4), np.uint8)
        rgba[1000:5000, 2000:4000] = 200
        Image.fromarray(rgba, "RGBA").save(path, compress_level=1)
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=300)
    measure = textwrap.dedent(
        f"""
        from pathlib import Path
        from search.model.images import read_image

        def status(field):
            line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
            return int(line.split()[1])  # kB

        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
        before = status("VmRSS:")
        x = read_image(Path({str(tmp_path / "big.png")!r}))
        print(tuple(x.shape), (status("VmHWM:") - before) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", measure], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    shape, megabytes = done.stdout.rsplit(" ", 1)
    print(f"\npeak memory for a {side}x{side} RGBA PNG: +{megabytes.strip()} MB")
    assert shape == "(1, 28, 28)" and int(megabytes) < 10 * side * side / 2**20  # 10 bytes a pixel: 381 MB
