"""Dataset integrity: every flipped byte or truncation in the four .gz files is caught before training.

With the md5 check (the default) every corruption is refused, naming the file and the fix. Without
it (``--no-verify-data``), gzip's CRC-32 and the IDX checks refuse every corruption that changes the
data; the few bytes they do not cover (the gzip header's flags, timestamp, file name and OS) are
shown to leave the loaded data identical. The unpacked ``*-ubyte`` files are never read.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from search import data
from search.data import check_split, load_splits, raw_dir, read_idx, read_split
from search.errors import DataError
from search.model import retrain
from tests.support import fsearch, write_idx

SPLIT_OF = {name: "train" if name.startswith("train") else "test" for name in data.FILES}
FIX = "delete it and download it again, or point --data-dir at a good copy"


def _gzip_header_length(raw: bytes) -> int:
    """Bytes of the gzip member header (10 fixed bytes, then the NUL-terminated name Python writes)."""
    assert raw[3] & 0x08  # FNAME: gzip.open records the file name
    return raw.index(b"\0", 10) + 1


def corruptions(raw: bytes, seed: int) -> Iterator[tuple[str, bytes]]:
    """Single-byte flips (every header and trailer byte, 40 spread over the deflate stream) and truncations."""
    rng = np.random.default_rng(seed)
    header = _gzip_header_length(raw)
    body = sorted({*range(header, min(header + 16, len(raw) - 8)), *rng.integers(header, len(raw) - 8, 40).tolist()})
    for i in [*range(header), *body, *range(len(raw) - 8, len(raw))]:
        yield f"flip byte {i}", raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :]
    for n in sorted({0, 1, 9, header, len(raw) // 2, len(raw) - 8, len(raw) - 4, len(raw) - 1}):
        yield f"truncate to {n} bytes", raw[:n]


@pytest.fixture
def official_tiny(tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny files made 'official': their md5 sums replace the real ones, as a fresh download's would."""
    folder = raw_dir(tiny_data_dir)
    sums = {name: hashlib.md5((folder / name).read_bytes(), usedforsecurity=False).hexdigest() for name in data.FILES}
    monkeypatch.setattr(data, "FILES", sums)
    return tiny_data_dir


def _load(data_dir: Path, split: str, *, verify: bool) -> Any:
    return read_split(data_dir, split, verify=verify, download=False)


@pytest.mark.parametrize("verify", [True, False], ids=["md5", "no-md5"])
def test_every_corruption_of_every_file_is_refused_or_harmless(official_tiny: Path, verify: bool) -> None:
    folder = raw_dir(official_tiny)
    tried = refused = harmless = 0
    for seed, name in enumerate(data.FILES):
        path = folder / name
        original = path.read_bytes()
        good = _load(official_tiny, SPLIT_OF[name], verify=False)
        header = _gzip_header_length(original)
        for what, corrupt in corruptions(original, seed):
            path.write_bytes(corrupt)
            tried += 1
            try:
                loaded = _load(official_tiny, SPLIT_OF[name], verify=verify)
            except DataError as exc:
                message = str(exc)
                assert message.startswith(str(path)) and ("delete it" in message or FIX in message), (what, message)
                refused += 1
                continue
            # Only without the md5, and only in the gzip header's metadata: the data must be the same.
            assert not verify, f"{name}: {what} was not detected"
            assert what.startswith("flip byte") and int(what.split()[-1]) < header, f"{name}: {what}"
            assert torch.equal(loaded.x, good.x) and torch.equal(loaded.y, good.y), f"{name}: {what} changed the data"
            harmless += 1
        path.write_bytes(original)
    print(f"\n{'md5' if verify else 'no md5'}: {refused}/{tried} corruptions refused, {harmless} harmless")
    assert tried >= 350
    if verify:
        assert refused == tried  # the md5 catches every one
    else:
        assert refused + harmless == tried and refused > harmless  # harmless: gzip header metadata only (above)


def test_a_search_refuses_corrupt_data_before_training_and_leaves_no_database(
    official_tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[object] = []
    monkeypatch.setattr("search.tune.objective.train", lambda *a, **k: trained.append(a))
    for name in data.FILES:
        path = raw_dir(official_tiny) / name
        original = path.read_bytes()
        path.write_bytes(original[: len(original) // 2])
        for verify in (["--verify-data"], ["--no-verify-data"]):
            db = tmp_path / "s.db"
            args = ["run", "--trials", "1", "--data-dir", str(official_tiny), "--val-size", "100", "--storage",
                    f"sqlite:///{db}", "--device", "cpu", "--budget", "0", *verify]  # fmt: skip
            code, out, err = fsearch(args, capsys, monkeypatch)
            if name.startswith("t10k") and verify == ["--no-verify-data"]:
                assert code == 0, err  # a search never reads the test files; only their md5 is checked
                db.unlink()
                continue
            assert code == 2 and out == "", err
            [line] = err.splitlines()
            assert line.startswith(f"Error: {path} ") and "delete it" in line, line
            assert not db.exists()  # the corrupt file was found before the study was created
        path.write_bytes(original)
    assert len(trained) == 2  # only the two runs with intact training files (and an unchecked test file) trained


def test_export_checks_the_test_files_before_training(official_tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(retrain, "train", no_training)
    path = raw_dir(official_tiny) / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    opts = retrain.RetrainOptions(out=Path("out"), data_dir=official_tiny, device="cpu", verify_data=False)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is not a readable gzip file or is corrupt"):
        retrain.retrain_preset("lenet5", opts, epochs=1)
    assert not Path("out").exists()


def test_unpacked_files_are_never_read(official_tiny: Path) -> None:
    folder = raw_dir(official_tiny)
    good = load_splits(official_tiny, device=torch.device("cpu"), val_size=100, download=False)
    for name in data.FILES:  # corrupt unpacked copies, as a damaged torchvision extraction would leave
        (folder / name.removesuffix(".gz")).write_bytes(b"\0\0\x08\x03garbage")
    again = load_splits(official_tiny, device=torch.device("cpu"), val_size=100, download=False)
    assert torch.equal(again.train.x, good.train.x) and torch.equal(again.train.y, good.train.y)
    (folder / "train-images-idx3-ubyte.gz").unlink()  # only the unpacked copy is left: it is not used instead
    with pytest.raises(DataError) as info:
        check_split(official_tiny, "train", download=False)
    assert str(info.value) == (
        f"train-images-idx3-ubyte.gz not found in {folder} (fsearch reads only the md5-checked .gz files, "
        f"not the unpacked copy there); run without --no-download to fetch it"
    )


def test_a_header_announcing_a_huge_payload_is_refused_before_decompressing(tmp_path: Path) -> None:
    path = tmp_path / "bomb.gz"
    header = bytes([0, 0, 0x08, 3]) + (1_000_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    path.write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(DataError, match=r"announces 784,000,000 bytes of data, over the limit"):
        read_idx(path)
    (tmp_path / "empty.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.gz is empty \(an interrupted download\?\)"):
        read_idx(tmp_path / "empty.gz")
    write_idx(tmp_path / "extra.gz", np.zeros((2, 28, 28), np.uint8))
    raw = gzip.decompress((tmp_path / "extra.gz").read_bytes())
    (tmp_path / "extra.gz").write_bytes(gzip.compress(raw + b"\0"))
    with pytest.raises(DataError, match=r"holds more bytes but its header says 1,584"):
        read_idx(tmp_path / "extra.gz")


def test_the_checks_do_not_depend_on_assert_they_hold_with_asserts_stripped(
    tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # search/data.py compiled the way ``python -O`` compiles it (optimize=1 strips every assert) and run in this
    # process: a ``python -O`` child would compile torch from source (pip ships no .opt-1.pyc), ~8 s here.
    exec(compile("assert False", "<check>", "exec", optimize=1))  # raises AssertionError if asserts stayed
    stripped = types.ModuleType("search_data_without_asserts")
    stripped.__file__ = data.__file__
    monkeypatch.setitem(sys.modules, stripped.__name__, stripped)  # its dataclasses look their module up
    source = Path(data.__file__).read_text(encoding="utf-8")
    exec(compile(source, data.__file__, "exec", optimize=1), stripped.__dict__)
    refused = 0
    for path in sorted(raw_dir(tiny_data_dir).glob("*.gz")):
        original = path.read_bytes()
        bad = [original[: len(original) // 2], original[:-1], original[:40] + bytes([original[40] ^ 0xFF])
               + original[41:], b"", b"not gzip"]  # fmt: skip
        try:
            for corrupt in bad:
                path.write_bytes(corrupt)
                with pytest.raises(DataError):
                    stripped.read_split(tiny_data_dir, SPLIT_OF[path.name], verify=False, download=False)
                refused += 1
        finally:
            path.write_bytes(original)
    assert refused == 20  # 4 files x 5 corruptions
