"""Turn a user's PNG or JPEG into a Fashion-MNIST-like 28x28 uint8 image for ``fsearch predict``.

Preprocessing, in order (it follows how Fashion-MNIST itself was made from product photos:
trim, resize the longest edge to 28, centre, negate, 8-bit grayscale):

1. Only PNG and JPEG are opened (no other decoder runs on untrusted files). Images over
   :data:`MAX_PIXELS` pixels (or with no pixels) are refused before decoding, and so is anything
   Pillow flags as a decompression bomb. An image whose longer side is over :data:`WORK_SIZE` is
   reduced by an integer factor right after decoding (a JPEG is decoded at 1/2, 1/4 or 1/8 scale
   to begin with), so one image costs about twice its decoded size at most (docs/security.md). The EXIF
   orientation of photos is applied. Whatever goes wrong while decoding (the files are
   untrusted) is one :class:`ImageError` for that file.
2. Grayscale: 16-bit images are scaled (65535 -> 255), not clipped; transparent images
   (RGBA, LA, palette with transparency) are composited onto black if their opaque part is
   light on average, else onto white, so the garment stands out either way; every other mode
   (1, P, RGB, CMYK, ...) is converted with Pillow's ITU-R 601-2 luma.
3. Polarity: Fashion-MNIST shows light garments on a dark background. If the border pixels
   (an outer ring 2% of the shorter side wide, at least 1 pixel) are light on average, the
   image is inverted.
4. Background to black: the median border value becomes 0 and the rest is stretched linearly.
5. Trim to the bounding box of the pixels brighter than 5% of full scale (the garment).
6. Resize, keeping the aspect ratio, so the longer side is 28 pixels (Lanczos), and centre it
   on a black 28x28 canvas (the padding).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from search.errors import ImageError

SIZE = 28
MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB of RGB: enough, and bounded
WORK_SIZE = 2048  # longer side an image is reduced to before its float conversion (the output is 28x28)
FORMATS = ("PNG", "JPEG")
BORDER_FRACTION = 0.02
TRIM_THRESHOLD = 0.05 * 255  # Fashion-MNIST trimmed edges within 5% of the background
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


def read_image(path: Path) -> torch.Tensor:
    """The image at ``path`` as uint8 ``(1, 28, 28)``, preprocessed as the module docstring says.

    Raises :class:`ImageError` with one line naming the file and the problem.
    """
    try:  # stat can fail too: a folder on the way that this user may not enter
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if path.is_dir():
            raise ImageError(f"{path}: a folder, not an image")
        if not path.is_file():
            raise ImageError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file")
    except OSError as exc:
        raise ImageError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit and raises above twice that: both are refusals here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # A corrupt EXIF block makes Pillow warn and skip the tag ("Tag data larger than file"): the image
            # is then read as unrotated, and the user sees the prediction, not a library's warning.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
            with Image.open(path, formats=FORMATS) as img:
                width, height = img.size
                if width < 1 or height < 1:
                    raise ImageError(f"{path}: the image is {width}x{height} pixels: there is nothing to classify")
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{path}: {width}x{height} pixels is over the limit of {MAX_PIXELS:,}; shrink the image first"
                    )
                orientation = img.getexif().get(_ORIENTATION, 1)
                gray = _orient(_decoded_gray(img), orientation)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a PNG or JPEG image") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode the image") from None
    except Exception as exc:
        # Pillow parses untrusted bytes, and a corrupt file can surface as almost any exception
        # (OSError, SyntaxError, ValueError, struct.error, IndexError, ...): each is this file's
        # problem, reported as one line; the chained exception is there for --debug.
        raise ImageError(f"{path}: cannot decode the image ({type(exc).__name__}: {exc})") from exc
    return torch.from_numpy(fashion_mnist_like(gray)).unsqueeze(0)


_ORIENTATION = 0x0112  # the EXIF orientation tag
_REDUCIBLE = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F")  # modes Image.reduce averages


def _decoded_gray(img: Image.Image) -> np.ndarray:
    """Decode ``img`` into float grayscale, reduced first when its longer side is over :data:`WORK_SIZE`."""
    factor = math.ceil(max(img.size) / WORK_SIZE)
    if factor > 1 and img.format == "JPEG":
        img.draft(img.mode, (img.width // factor, img.height // factor))  # DCT scaling while decoding
        factor = math.ceil(max(img.size) / WORK_SIZE)
    if factor <= 1:
        return to_gray(img)
    if img.mode in _SIXTEEN_BIT:  # 32-bit integers reduce; keep the 16-bit scaling of to_gray
        reduced16: np.ndarray = np.asarray(img.convert("I").reduce(factor), dtype=np.float32) / 257.0
        return reduced16
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode not in _REDUCIBLE:  # palette indices must not be averaged: to RGB(A) first
        transparent = img.mode in _ALPHA or "transparency" in img.info
        img = img.convert("RGBA" if transparent else "RGB")
    return to_gray(img.reduce(factor))


def _orient(gray: np.ndarray, orientation: object) -> np.ndarray:
    """Apply an EXIF orientation (2-8) to a decoded image, as ``ImageOps.exif_transpose`` would."""
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: a.T,
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].T,
        8: lambda a: np.rot90(a, 1),
    }
    turn = turns.get(orientation) if isinstance(orientation, int) else None
    return np.ascontiguousarray(turn(gray)) if turn is not None else gray


def to_gray(img: Image.Image) -> np.ndarray:
    """Float32 ``(H, W)`` grayscale in [0, 255] from any Pillow mode."""
    if img.mode in _SIXTEEN_BIT:
        return np.asarray(img, dtype=np.float32) / 257.0  # scale, since convert("L") would clip at 255
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        peak = float(arr.max()) if arr.size else 0.0
        return np.clip(arr * (255.0 / peak) if peak > 255 else arr, 0, 255)
    if img.mode in _ALPHA or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        luma = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        opaque_mean = float((luma * alpha).sum() / alpha.sum()) if alpha.sum() > 0 else 0.0
        # The transparent part is background: make it the opposite of the (opaque) garment.
        background = 0.0 if opaque_mean > 127.5 else 255.0
        composited: np.ndarray = luma * alpha + background * (1.0 - alpha)
        return composited
    return np.asarray(img.convert("L"), dtype=np.float32)


def border(gray: np.ndarray) -> np.ndarray:
    """The pixels of the outer ring of the image."""
    ring = max(1, round(BORDER_FRACTION * min(gray.shape)))
    mask = np.zeros(gray.shape, dtype=bool)
    mask[:ring, :] = mask[-ring:, :] = True
    mask[:, :ring] = mask[:, -ring:] = True
    return gray[mask]


def fashion_mnist_like(gray: np.ndarray) -> np.ndarray:
    """Steps 3-6 of the module docstring: ``(H, W)`` float grayscale to uint8 ``(28, 28)``."""
    edge = border(gray)
    if float(edge.mean()) > 127.5:  # light background: invert to Fashion-MNIST's polarity
        gray, edge = 255.0 - gray, 255.0 - edge
    background = float(np.median(edge))
    gray = np.clip((gray - background) * (255.0 / max(255.0 - background, 1.0)), 0, 255)
    rows = np.flatnonzero((gray > TRIM_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((gray > TRIM_THRESHOLD).any(axis=0))
    if rows.size:  # a blank image has nothing to trim to
        gray = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = gray.shape
    scale = SIZE / max(h, w)
    new_w, new_h = max(1, min(SIZE, round(w * scale))), max(1, min(SIZE, round(h * scale)))
    as_float = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32))  # mode F: no rounding before resizing
    resized = as_float.resize((new_w, new_h), Image.Resampling.LANCZOS)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = (SIZE - new_h) // 2, (SIZE - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized, dtype=np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
