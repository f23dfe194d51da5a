"""Fashion-MNIST on the device: fetch, verify, parse IDX, split, once per process.

The four official ``.gz`` files live in ``<data_dir>/FashionMNIST/raw/`` (torchvision's layout).
They are downloaded with torchvision's own mirrors and md5 checks when missing, and parsed here
(no torchvision ``processed`` cache). Three layers of checks run before anything trains:

- the official md5 sum of each of the four files, on every load, unless ``verify=False``
  (``--no-verify-data``, meant for the tests' tiny files): this is what catches any flipped byte;
- gzip's own CRC-32 and length, always: without the md5, a flipped or missing byte in the
  compressed data still fails (only the gzip header's timestamp and OS bytes are unprotected,
  and they do not touch the data);
- the IDX header against the data's size and shape, and the labels' range, always.

Only the ``.gz`` files are read. The unpacked ``*-ubyte`` files torchvision may leave beside
them are never opened, so a corrupt unpacked copy cannot be read in their place.

Images stay uint8 on the device (47 MB for all 60,000); the training loop normalises and
augments per batch on the device. The test set is loaded only by :func:`load_test`.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from search.errors import ConfigError, DataError

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# Official file names and md5 sums (the ones torchvision verifies).
FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
ENV_VAR = "FSEARCH_DATA_DIR"
_IDX_DTYPE = {0x08: np.uint8}
# The largest IDX payload accepted: the training images are 47,040,016 bytes. A file whose header
# claims more (a gzip bomb, a corrupt header) is refused before it is decompressed.
MAX_IDX_BYTES = 64 << 20
_FIX = "delete it and download it again, or point --data-dir at a good copy"


def default_data_dir() -> Path:
    """``$FSEARCH_DATA_DIR`` if set, else a per-user cache folder for this platform."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "fsearch" / "data"


def resolve_data_dir(data_dir: Path | None) -> Path:
    """The data folder a command uses: ``data_dir`` (which must exist), else :func:`default_data_dir`."""
    if data_dir is None:
        return default_data_dir()
    if not data_dir.is_dir():
        raise ConfigError(f"data dir {data_dir} does not exist; pass a folder holding FashionMNIST/raw/*.gz")
    return data_dir


def raw_dir(data_dir: Path) -> Path:
    return data_dir / "FashionMNIST" / "raw"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(folder: Path, name: str, md5: str) -> None:
    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.utils import download_url

    errors = []
    for mirror in FashionMNIST.mirrors:
        try:
            download_url(f"{mirror}{name}", root=str(folder), filename=name, md5=md5)
            return
        except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
            errors.append(f"{mirror}: {exc}")
    raise DataError(
        f"could not download {name} to {folder} ({'; '.join(errors)}); check the network, "
        f"or point --data-dir / {ENV_VAR} at a folder holding FashionMNIST/raw/*.gz"
    )


def ensure_files(
    data_dir: Path, *, verify: bool = True, download: bool = True, names: tuple[str, ...] = tuple(FILES)
) -> Path:
    """Make sure the files ``names`` (default: all four) are in ``data_dir``, downloading what is missing;
    return their folder.

    Raises :class:`DataError` naming the file and the fix when one is missing or corrupt.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"data dir {data_dir} is not a folder; point --data-dir at a folder")
    folder = raw_dir(data_dir)
    for name in names:
        md5 = FILES[name]
        path = folder / name
        if not path.is_file():
            if not download:
                unpacked = " (fsearch reads only the md5-checked .gz files, not the unpacked copy there)"
                note = unpacked if (folder / name.removesuffix(".gz")).exists() else ""
                raise DataError(f"{name} not found in {folder}{note}; run without --no-download to fetch it")
            folder.mkdir(parents=True, exist_ok=True)
            _download(folder, name, md5)
        elif verify:
            try:
                actual = _md5(path)
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror}; check its permissions") from exc
            if actual != md5:
                raise DataError(
                    f"{path} is corrupt (md5 {actual}, expected {md5}); delete it so fsearch downloads "
                    f"it again, or point --data-dir at a good copy"
                )
    return folder


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzip'd IDX file (the MNIST format), validating its header against its size.

    The header is read first and the payload it announces (at most :data:`MAX_IDX_BYTES`) is read
    exactly; reading on to the end of the stream makes gzip check its CRC-32 and length.
    """
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path} is empty (an interrupted download?); {_FIX}")
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPE or not 1 <= head[3] <= 4:
                raise DataError(f"{path} is not an IDX file (bad magic number); {_FIX}")
            ndim = head[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataError(f"{path} is truncated (incomplete header); {_FIX}")
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
            size = math.prod(shape)
            if size > MAX_IDX_BYTES:
                raise DataError(f"{path} announces {size:,} bytes of data, over the limit of {MAX_IDX_BYTES:,}; {_FIX}")
            payload = f.read(size)
            trailing = len(f.read(1))  # also makes gzip verify its CRC-32 and length
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file or is corrupt ({exc}); {_FIX}") from None
    header = 4 + 4 * ndim
    if len(payload) != size or trailing:
        actual = "more" if trailing else f"{header + len(payload):,}"
        raise DataError(f"{path} holds {actual} bytes but its header says {header + size:,}; {_FIX}")
    return np.frombuffer(payload, dtype=_IDX_DTYPE[head[2]]).reshape(shape)


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 ``(N, 1, 28, 28)`` and labels as int64 ``(N,)``, on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.x[index], self.y[index])


@dataclass(frozen=True)
class Splits:
    """The training data of one process: what trains, what validates, and how to normalise."""

    train: ImageSet
    val: ImageSet | None
    mean: float
    std: float


def read_split(data_dir: Path, split: str, *, verify: bool = True, download: bool = True) -> ImageSet:
    """One split (``train`` or ``test``) on the CPU, checked for consistency.

    Reading the training split fetches all four files: what trains is exported and tested later, perhaps offline.
    Reading the test split alone (``evaluate``, a saved model's test) fetches only its two.
    """
    names = SPLIT_FILES["test"] if split == "test" else tuple(FILES)
    folder = ensure_files(data_dir, verify=verify, download=download, names=names)
    images_name, labels_name = SPLIT_FILES[split]
    images, labels = read_idx(folder / images_name), read_idx(folder / labels_name)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{folder / images_name} holds images of shape {images.shape[1:]}, not 28x28; {_FIX}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{folder / labels_name} does not match {images_name} ({labels.shape} vs {images.shape}); {_FIX}"
        )
    if labels.size and labels.max() >= len(CLASSES):
        raise DataError(f"{folder / labels_name} has a label above {len(CLASSES) - 1}; {_FIX}")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    return ImageSet(x, torch.from_numpy(labels.astype(np.int64)))


def check_split(data_dir: Path, split: str, *, verify: bool = True, download: bool = True) -> None:
    """Check that one split's files are intact and consistent, without keeping the images.

    ``export-best`` checks the test files this way before it trains, so a corrupt file stops it
    before the training, not after; the test images themselves are still read only after training.
    """
    read_split(data_dir, split, verify=verify, download=download)


def stratified_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A permutation whose every prefix holds the classes in (nearly) their overall proportions.

    Each image gets its rank within its class (in a seeded random order) divided by the class
    size; sorting by that fraction interleaves the classes evenly.
    """
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=gen)
    shuffled = labels[perm]
    by_class = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(by_class)
    rank[by_class] = torch.arange(len(labels)) - starts[shuffled[by_class]]
    fraction = (rank.double() + 0.5) / counts[shuffled].double()
    return perm[torch.argsort(fraction, stable=True)]


def load_splits(
    data_dir: Path,
    *,
    device: torch.device,
    val_size: int = 10_000,
    train_subset: int | None = None,
    seed: int = 0,
    verify: bool = True,
    download: bool = True,
) -> Splits:
    """Training split minus a stratified validation split of ``val_size`` (0 = train on all)."""
    full = read_split(data_dir, "train", verify=verify, download=download)
    if not 0 <= val_size < len(full):
        raise DataError(f"--val-size must be below the {len(full):,} training images, got {val_size:,}")
    order = stratified_order(full.y, seed)
    val_idx, train_idx = order[:val_size], order[val_size:]
    if train_subset is not None:
        if not 0 < train_subset <= len(train_idx):
            raise DataError(f"--train-subset must be within 1..{len(train_idx):,}, got {train_subset:,}")
        train_idx = train_idx[:train_subset]  # still a stratified prefix
    # Normalisation constants come from all training images (never the test set).
    pixels = full.x.float().div_(255)
    mean, std = float(pixels.mean()), float(pixels.std())
    val = full.take(val_idx) if val_size else None
    return Splits(
        train=_to(full.take(train_idx), device),
        val=_to(val, device) if val is not None else None,
        mean=mean,
        std=std,
    )


def load_test(data_dir: Path, *, device: torch.device, verify: bool = True, download: bool = True) -> ImageSet:
    """The 10,000 test images: read by ``export-best`` and ``evaluate`` only, never by a search."""
    return _to(read_split(data_dir, "test", verify=verify, download=download), device)


def _to(data: ImageSet, device: torch.device) -> ImageSet:
    return ImageSet(data.x.to(device).contiguous(), data.y.to(device))
