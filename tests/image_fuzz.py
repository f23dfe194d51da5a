"""The files tests/test_hardening_images.py fuzzes ``fsearch predict``'s image decoding with: Hypothesis
strategies for every kind of file the module's docstring lists, and the loop that decodes each.

A module of its own, imported inside the fuzzing tests: hypothesis takes ~1 s to import, which every xdist
worker paid at collection when these lived in the test module.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from search.errors import ImageError, one_line
from search.model.images import read_image
from tests.support import png_chunk

PNG_MODES = ("1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "I;16")
JPEG_MODES = ("L", "RGB", "CMYK")


def _image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    base = "RGBA" if mode == "P+transparency" else mode
    bands = len(Image.new(base, (1, 1)).getbands()) if base not in ("1", "P") else 1
    pixels = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)
    if base in ("1", "P"):
        return Image.fromarray(pixels[:, :, 0], "L").convert(base)
    img = Image.fromarray(pixels if bands > 1 else pixels[:, :, 0], base if bands > 1 else "L")
    return img.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P+transparency" else img


@st.composite
def encoded_images(draw: st.DrawFn) -> bytes:
    """A valid PNG or JPEG in any mode this decoder meets, 1-64 pixels a side, maybe with an EXIF orientation."""
    fmt = draw(st.sampled_from(["PNG", "JPEG"]))
    mode = draw(st.sampled_from(PNG_MODES if fmt == "PNG" else JPEG_MODES))
    img = _image(mode, draw(st.integers(1, 64)), draw(st.integers(1, 64)), draw(st.integers(0, 2**32 - 1)))
    options: dict[str, object] = {}
    if mode == "P+transparency":
        options["transparency"] = draw(st.integers(0, 255))
    orientation = draw(st.integers(0, 9))
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    if fmt == "JPEG":
        options |= {"quality": draw(st.integers(1, 95)), "progressive": draw(st.booleans())}
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A valid image truncated, or with bytes flipped, inserted or deleted."""
    data = bytearray(draw(encoded_images()))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@st.composite
def png_claims(draw: st.DrawFn) -> bytes:
    """A PNG with valid checksums whose header claims any size, depth and colour type, and a small payload."""
    side = st.one_of(st.integers(0, 80), st.integers(0, 2**31 - 1), st.sampled_from([6324, 6325, 65535, 2**31 - 1]))
    width, height = draw(side), draw(side)
    depth = draw(st.one_of(st.sampled_from([1, 2, 4, 8, 16]), st.integers(0, 255)))
    color = draw(st.one_of(st.sampled_from([0, 2, 3, 4, 6]), st.integers(0, 255)))
    interlace = draw(st.sampled_from([0, 1, 2]))
    raw = draw(st.binary(max_size=512))
    chunks = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))]
    if color == 3 or draw(st.booleans()):
        chunks.append(png_chunk(b"PLTE", draw(st.binary(max_size=96))))
    if draw(st.booleans()):
        chunks.append(png_chunk(b"tRNS", draw(st.binary(max_size=16))))
    chunks.append(png_chunk(b"IDAT", zlib.compress(raw) if draw(st.booleans()) else raw))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + png_chunk(b"IEND", b"")


@st.composite
def jpeg_claims(draw: st.DrawFn) -> bytes:
    """A small real JPEG whose frame header (SOF) is rewritten to claim any size from 0x0 to 65535x65535."""
    data = bytearray(draw(encoded_images().filter(lambda b: b[:2] == b"\xff\xd8")))
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    side = st.one_of(st.integers(0, 80), st.integers(0, 65535))
    data[sof + 5 : sof + 9] = struct.pack(">HH", draw(side), draw(side))
    return bytes(data)


def fuzzed_files() -> st.SearchStrategy[bytes]:
    signature = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF"])
    noise = st.tuples(signature, st.binary(max_size=4096)).map(lambda t: t[0] + t[1])
    return st.one_of(noise, encoded_images(), damaged_images(), png_claims(), jpeg_claims())


def check_one(folder: Path, content: bytes) -> str:
    """Decode one file: 'decoded' or 'refused'; anything else (an exception, a bad shape) fails the test."""
    path = folder / "fuzzed.img"
    path.write_bytes(content)
    try:
        x = read_image(path)
    except ImageError as exc:
        message = one_line(str(exc))
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        return "refused"
    assert x.shape == (1, 28, 28) and x.dtype == torch.uint8
    return "decoded"


def fuzz(folder: Path, examples: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=examples, deadline=None, database=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )  # fmt: skip
    @given(fuzzed_files())
    def decode(content: bytes) -> None:
        outcomes[check_one(folder, content)] += 1

    decode()
    return outcomes
