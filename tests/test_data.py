"""Data: IDX parsing and validation, md5 checks, the stratified split, one clear error per fault."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from search import data
from search.data import DataError, default_data_dir, ensure_files, load_splits, raw_dir, read_idx, read_split
from tests.support import TINY_TRAIN, write_idx

CPU = torch.device("cpu")


def test_read_idx_round_trips(tmp_path: Path) -> None:
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)


def test_truncated_idx_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros((3, 28, 28), dtype=np.uint8))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DataError, match=r"x\.gz holds .* bytes but its header says"):
        read_idx(path)


def test_bad_magic_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x01\x02\x03\x04" + bytes(100)))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


def test_not_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(path)


def test_md5_mismatch_names_the_file_and_the_fix(tiny_data_dir: Path) -> None:
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is corrupt \(md5 .*delete it"):
        ensure_files(tiny_data_dir, verify=True, download=False)


def test_missing_file_without_download_is_named(tiny_data_dir: Path) -> None:
    (raw_dir(tiny_data_dir) / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz not found in"):
        ensure_files(tiny_data_dir, verify=False, download=False)


def test_missing_files_are_downloaded_with_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[tuple[str, str]] = []

    def fake_download(folder: Path, name: str, md5: str) -> None:
        fetched.append((name, md5))
        (folder / name).write_bytes(b"")

    monkeypatch.setattr(data, "_download", fake_download)
    ensure_files(tmp_path / "fresh", verify=True, download=True)
    assert fetched == list(data.FILES.items())  # every file, with its official md5 for torchvision to check


def test_reading_the_test_split_fetches_only_its_files_and_the_training_split_all_four(
    tiny_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []

    def fake_download(folder: Path, name: str, md5: str) -> None:  # a mirror serving the tiny files
        fetched.append(name)
        (folder / name).write_bytes((raw_dir(tiny_files) / name).read_bytes())

    monkeypatch.setattr(data, "_download", fake_download)
    assert len(read_split(tmp_path / "fresh", "test", verify=False)) == 50  # `fsearch evaluate` on a new machine
    assert fetched == list(data.SPLIT_FILES["test"])
    read_split(tmp_path / "fresh", "train", verify=False)  # a search: the export will test what it finds
    assert fetched == list(data.SPLIT_FILES["test"]) + list(data.SPLIT_FILES["train"])


def test_a_file_where_the_data_dir_should_be_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("oops")
    with pytest.raises(DataError, match="is not a folder"):
        ensure_files(tmp_path / "data", verify=False, download=False)


def test_labels_must_match_images(tiny_data_dir: Path) -> None:
    write_idx(raw_dir(tiny_data_dir) / "train-labels-idx1-ubyte.gz", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataError, match="does not match"):
        read_split(tiny_data_dir, "train", verify=False, download=False)


def test_default_data_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSEARCH_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("FSEARCH_DATA_DIR")
    assert default_data_dir().parts[-2:] == ("fsearch", "data")


def test_split_is_stratified_disjoint_and_seeded(tiny_data_dir: Path) -> None:
    splits = load_splits(tiny_data_dir, device=CPU, val_size=100, verify=False, download=False)
    assert splits.val is not None
    assert len(splits.train) == TINY_TRAIN - 100 and len(splits.val) == 100
    assert torch.bincount(splits.val.y, minlength=10).tolist() == [10] * 10
    assert splits.train.x.dtype == torch.uint8 and splits.train.x.shape[1:] == (1, 28, 28)
    # disjoint: no validation image appears in the training split
    train_rows = {bytes(x.numpy()) for x in splits.train.x}
    assert not any(bytes(x.numpy()) in train_rows for x in splits.val.x)
    again = load_splits(tiny_data_dir, device=CPU, val_size=100, verify=False, download=False)
    assert torch.equal(again.val.y, splits.val.y) and torch.equal(again.val.x, splits.val.x)  # type: ignore[union-attr]
    other = load_splits(tiny_data_dir, device=CPU, val_size=100, seed=1, verify=False, download=False)
    assert not torch.equal(other.val.x, splits.val.x)  # type: ignore[union-attr]


def test_train_subset_is_a_stratified_prefix(tiny_data_dir: Path) -> None:
    splits = load_splits(tiny_data_dir, device=CPU, val_size=100, train_subset=50, verify=False, download=False)
    assert len(splits.train) == 50
    assert torch.bincount(splits.train.y, minlength=10).tolist() == [5] * 10
    with pytest.raises(DataError, match="--train-subset must be within"):
        load_splits(tiny_data_dir, device=CPU, val_size=100, train_subset=10_000, verify=False, download=False)


def test_normalisation_uses_the_training_images(tiny_data_dir: Path) -> None:
    splits = load_splits(tiny_data_dir, device=CPU, val_size=100, verify=False, download=False)
    full = read_split(tiny_data_dir, "train", verify=False, download=False)
    pixels = full.x.float() / 255
    assert splits.mean == pytest.approx(float(pixels.mean()))
    assert splits.std == pytest.approx(float(pixels.std()))


def test_val_size_must_leave_training_images(tiny_data_dir: Path) -> None:
    with pytest.raises(DataError, match="--val-size must be below"):
        load_splits(tiny_data_dir, device=CPU, val_size=TINY_TRAIN, verify=False, download=False)


@pytest.mark.slow
def test_real_data_is_verified_and_split(real_data_dir: Path) -> None:
    splits = load_splits(real_data_dir, device=CPU)
    assert splits.val is not None
    assert len(splits.train) == 50_000 and len(splits.val) == 10_000
    assert torch.bincount(splits.val.y).tolist() == [1_000] * 10
    assert splits.mean == pytest.approx(0.2860, abs=1e-3) and splits.std == pytest.approx(0.3530, abs=1e-3)
    test = data.load_test(real_data_dir, device=CPU)
    assert len(test) == 10_000 and torch.bincount(test.y).tolist() == [1_000] * 10
