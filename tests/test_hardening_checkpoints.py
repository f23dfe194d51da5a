"""Hostile model directories: pickles, torch.save zips, corrupt safetensors headers, absurd configs.

Each is refused with one ModelError line before any code in the file runs, before safetensors reads
tensor data and before any layer of the network is allocated. fsearch has no ``torch.load``; a test
pins that any future one passes ``weights_only=True`` literally (an environment variable cannot
override an explicit argument), and bandit's B614 check flags one that does not.
"""

from __future__ import annotations

import ast
import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from search.errors import ModelError
from search.model import export
from search.model.export import CONFIG_FILE, WEIGHTS_FILE, load_model, sha256_file
from tests.support import REPO, PicklePayload, fsearch, save_small_model

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _no_weights_only_escape_hatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs with the variable that turns weights_only off for torch.load calls without it."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_small_model(tmp_path / "model")[1]


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[], None]:
    """Spies that fail the test if a layer is allocated, safetensors parses the file, or the pickle payload ran."""
    marker = tmp_path / "pwned"
    calls: list[str] = []
    real_conv = torch.nn.Conv2d

    class CountingConv(real_conv):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.weight.device.type != "meta":  # shapes only: the header check builds the network there
                calls.append("conv")

    monkeypatch.setattr("space.model.nn.Conv2d", CountingConv)

    def spy_load_file(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        calls.append("load_file")
        return safetensors.torch.load_file(*args, **kwargs)

    monkeypatch.setattr(export, "load_file", spy_load_file)

    def check() -> None:
        assert not marker.exists(), "a pickle payload ran"
        assert calls == [], f"got as far as {calls}"

    return check


def _rewrite(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads((directory / CONFIG_FILE).read_text())
    change(meta)
    (directory / CONFIG_FILE).write_text(json.dumps(meta))


def _replace_weights(directory: Path, content: bytes) -> None:
    """Swap in new weights and record their SHA-256, as someone who edits both files would."""
    (directory / WEIGHTS_FILE).write_bytes(content)
    _rewrite(directory, lambda m: m["weights"].update(sha256=sha256_file(directory / WEIGHTS_FILE)))


def _refused(directory: Path, pattern: str) -> str:
    with pytest.raises(ModelError, match=pattern) as info:
        load_model(directory, device=CPU)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "weights.pkl", "last.ckpt", "pytorch_model.bin"])
def test_a_malicious_pickle_under_any_name_is_refused_unopened(
    name: str, tmp_path: Path, nothing_runs: Callable[[], None]
) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"state_dict": PicklePayload(tmp_path / "pwned")}, folder / name)  # a zip with a pickle inside
    _refused(folder, rf"holds {name} but no model\.safetensors; .*never from pickle files")
    nothing_runs()


def _torch_save_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda p: _torch_save_bytes({"w": PicklePayload(p)}), id="torch.save-zip-with-payload"),
        pytest.param(lambda p: _torch_save_bytes({"0.0.weight": torch.zeros(8, 1, 3, 3)}), id="torch.save-zip-tensors"),
        pytest.param(lambda p: __import__("pickle").dumps(PicklePayload(p)), id="raw-pickle"),
    ],
)
def test_a_torch_save_zip_named_like_safetensors_is_refused(
    content: Callable[[Path], bytes], saved: Path, tmp_path: Path, nothing_runs: Callable[[], None]
) -> None:
    data = content(tmp_path / "pwned")
    assert data[:2] in (b"PK", b"\x80\x04", b"\x80\x05")  # really a zip or a pickle
    _replace_weights(saved, data)
    _refused(saved, r"is not a valid safetensors file \(header length .* is impossible")
    nothing_runs()


def _safetensors(
    header: Any, data: bytes = b"", *, raw_header: bytes | None = None, length: int | None = None
) -> bytes:
    blob = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


def _valid_header(directory: Path) -> tuple[dict[str, Any], bytes]:
    raw = (directory / WEIGHTS_FILE).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _shift(header: dict[str, Any], name: str, begin: int, end: int) -> dict[str, Any]:
    return header | {name: header[name] | {"data_offsets": [begin, end]}}


CORRUPT_HEADERS: dict[str, tuple[Callable[[dict[str, Any], bytes], bytes], str]] = {
    "empty file": (lambda h, d: b"", r"0 bytes, too short for a header"),
    "length 2^63": (lambda h, d: _safetensors(h, d, length=1 << 63), "header length .* is impossible"),
    "length past the end": (lambda h, d: _safetensors(h, d, length=10**6), "header length .* is impossible"),
    "length zero": (lambda h, d: _safetensors(h, d, length=0), "header length 0 is impossible"),
    "not JSON": (lambda h, d: _safetensors(None, d, raw_header=b"{not json" + b" " * 40), "header is not JSON"),
    "not UTF-8": (lambda h, d: _safetensors(None, d, raw_header=b"\xff\xfe" * 20), "header is not JSON"),
    "deeply nested": (lambda h, d: _safetensors(None, d, raw_header=b"[" * 100_000 + b"]" * 100_000), "not JSON"),
    "a list": (lambda h, d: _safetensors([1, 2], d), "header is not a JSON object"),
    "duplicate key": (
        lambda h, d: _safetensors(None, d, raw_header=b'{"a": {}, "a": {}}' + b" " * 8),
        "header is not JSON",
    ),
    "pickle dtype": (lambda h, d: _safetensors(h | {"0.0.weight": h["0.0.weight"] | {"dtype": "O"}}, d), "dtype 'O'"),
    "huge shape": (
        lambda h, d: _safetensors(h | {"0.0.weight": h["0.0.weight"] | {"shape": [10**12, 10**12]}}, d),
        "spans .* bytes, its dtype and shape need",
    ),
    "negative shape": (
        lambda h, d: _safetensors(h | {"0.0.weight": h["0.0.weight"] | {"shape": [-1, 8]}}, d),
        "malformed shape",
    ),
    "offsets past the end": (
        lambda h, d: _safetensors(_shift(h, "0.0.weight", 10**9, 10**9 + 288), d),
        "spans|overlap|accounts for",
    ),
    "offsets reversed": (lambda h, d: _safetensors(_shift(h, "0.0.weight", 288, 0), d), "ends before it begins"),
    "offsets overlap": (lambda h, d: _safetensors(_shift(h, "0.0.weight", 4, 292), d), "overlap or leave gaps"),
    "offsets as strings": (lambda h, d: _safetensors(_shift(h, "0.0.weight", "0", "288"), d), "malformed data offsets"),  # type: ignore[arg-type]
    "trailing bytes": (lambda h, d: _safetensors(h, d + b"\0" * 64), "header accounts for"),
}


@pytest.mark.parametrize("case", list(CORRUPT_HEADERS))
def test_a_corrupt_safetensors_header_is_refused_before_its_data_is_read(
    case: str, saved: Path, nothing_runs: Callable[[], None]
) -> None:
    header, data = _valid_header(saved)
    make, pattern = CORRUPT_HEADERS[case]
    _replace_weights(saved, make(header, data))
    message = _refused(saved, rf"is not a valid safetensors file \(.*({pattern})")
    assert message.startswith(str(saved / WEIGHTS_FILE)) and message.endswith("re-export the model")
    nothing_runs()


MISFITS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]], str]] = {
    "a tensor missing": (lambda t: {k: v for k, v in t.items() if k != "1.1.bias"}, r"Missing key.*1\.1\.bias"),
    "an extra tensor": (lambda t: t | {"evil": torch.zeros(1000)}, r"Unexpected key.*evil"),
    "a wrong shape": (lambda t: t | {"0.0.weight": torch.zeros(8, 1, 5, 5)}, r"size mismatch for 0\.0\.weight"),
    "a wrong dtype": (lambda t: t | {"0.0.weight": t["0.0.weight"].half()}, r"dtype mismatch for 0\.0\.weight"),
}


@pytest.mark.parametrize("case", list(MISFITS))
def test_a_well_formed_file_that_does_not_fit_the_architecture_is_refused_before_loading(
    case: str, saved: Path, nothing_runs: Callable[[], None]
) -> None:
    change, pattern = MISFITS[case]
    tensors = safetensors.torch.load_file(str(saved / WEIGHTS_FILE))
    _replace_weights(saved, safetensors.torch.save(change(tensors)))
    _refused(saved, rf"does not fit the architecture in .*config\.json \({pattern}")
    nothing_runs()


ABSURD: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "10^6 filters": (lambda a: a["blocks"][0].update(filters=10**6), r"filters/convs out of range \(1000000"),
    "10^6 convs": (lambda a: a["blocks"][0].update(convs=10**6), "filters/convs out of range"),
    "kernel 1001": (lambda a: a["blocks"][0].update(kernel=1001), "kernel must be 1, 3, 5 or 7"),
    "10^9 dense units": (lambda a: a.update(dense=[10**9]), "dense layers of 1..16384 units"),
    "1000 dense layers": (lambda a: a.update(dense=[8] * 1000), "at most 8 dense layers"),
    "1000 blocks": (lambda a: a.update(blocks=a["blocks"] * 500), "1000 blocks out of range"),
    "each bound kept, product huge": (
        lambda a: a.update(blocks=[{"filters": 4096, "convs": 8, "kernel": 7, "padding": "same", "pool": "none"}] * 4),
        r"would have [\d,]+ parameters and [\d,]+ MACs per image, over the limits",
    ),
    "wide flatten head": (
        lambda a: a.update(
            blocks=[{"filters": 4096, "convs": 1, "kernel": 1, "padding": "same", "pool": "none"}], dense=[16384]
        ),
        "over the limits",
    ),
    "image 10^6 pixels wide": (lambda a: a.update(image_size=10**6), "take 1-channel 28x28 images"),
    "10^6 input channels": (lambda a: a.update(in_channels=10**6), "take 1-channel 28x28 images"),
    "filters as text": (lambda a: a["blocks"][0].update(filters="64"), "filters must be an integer"),
    "filters as float": (lambda a: a["blocks"][0].update(filters=8.0), "filters must be an integer"),
    "filters as bool": (lambda a: a["blocks"][0].update(filters=True), "filters must be an integer"),
    "dropout NaN": (lambda a: a.update(conv_dropout=float("nan")), "conv_dropout must be a finite number"),
    "unknown activation": (lambda a: a.update(activation="os.system"), "activation must be one of"),
    "unknown padding": (lambda a: a["blocks"][0].update(padding="reflect"), "padding must be one of"),
    "blocks not a list": (lambda a: a.update(blocks={"0": {}}), "arch.blocks must be a list"),
}


@pytest.mark.parametrize("case", list(ABSURD))
def test_an_absurd_config_is_refused_before_anything_is_built(
    case: str, saved: Path, nothing_runs: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[Path] = []

    def spy_sha256(path: Path) -> str:
        hashed.append(path)
        return "0" * 64

    monkeypatch.setattr(export, "sha256_file", spy_sha256)
    change, pattern = ABSURD[case]
    _rewrite(saved, lambda m: change(m["config"]["arch"]))
    message = _refused(saved, pattern)
    assert message.startswith(str(saved / CONFIG_FILE))
    assert hashed == []  # refused on the config's arithmetic: the weights file was not even read
    nothing_runs()


def test_other_config_faults_are_one_line(saved: Path, nothing_runs: Callable[[], None]) -> None:
    config = saved / CONFIG_FILE
    original = config.read_bytes()
    faults = {
        b"x" * (2 << 20): r"is 2,097,152 bytes, over the 1,048,576 a model config needs",
        b"[" * 50_000 + b"]" * 50_000: r"is not readable JSON \(maximum recursion depth",
        b'{"format_version": 1, "x": ' + b"9" * 5000 + b"}": r"is not readable JSON \(Exceeds the limit",
        b"\xff\xfe{}": r"is not readable JSON \('utf-8' codec",
        original.replace(b'"std": 0.353', b'"std": NaN'): r"is inconsistent \(classes or normalisation\)",
        original.replace(b'"mean": 0.286', b'"mean": Infinity'): r"is inconsistent \(classes or normalisation\)",
        original.replace(b'"config": {', b'"config": {"extra": 1, '): r"incomplete or malformed \(TypeError: ",
        original.replace(b'"classes": [', b'"classes": ["eleventh", '): r"is inconsistent \(classes",
    }
    for content, pattern in faults.items():
        assert content != original
        config.write_bytes(content)
        _refused(saved, pattern)
    nothing_runs()
    config.write_bytes(original)
    assert load_model(saved, device=CPU).cfg.arch.blocks  # the untouched directory still loads


def test_a_hostile_model_directory_is_one_error_line_in_the_cli(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    _replace_weights(saved, _torch_save_bytes({"w": PicklePayload(tmp_path / "pwned")}))
    code, out, err = fsearch(["predict", "--model", str(saved), str(tmp_path / "img.png")], capsys, monkeypatch)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"Error: {saved / WEIGHTS_FILE} is not a valid safetensors file")
    assert not (tmp_path / "pwned").exists()


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.endswith(("torch.load", "jit.load", "pickle.load", "pickle.loads", "dill.load", "joblib.load")):
                found.append((name, node))
    return found


def test_no_code_path_unpickles_and_any_torch_load_passes_weights_only_true() -> None:
    sources = sorted((REPO / "search").rglob("*.py")) + sorted((REPO / "space").rglob("*.py"))
    seen = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                   for alias in node.names} | {node.module for node in ast.walk(tree)
                                               if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip
        assert not imports & {"pickle", "dill", "joblib", "cloudpickle"}, path
        for name, call in _calls(tree):
            seen.append((path.name, name))
            if name.endswith("torch.load"):
                flag = {kw.arg: kw.value for kw in call.keywords}.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, (
                    f"{path.name}:{call.lineno}: torch.load without an explicit weights_only=True"
                )
            elif name.endswith("jit.load"):
                # The only TorchScript load checks the archive fsearch has just serialised, from memory.
                assert path.name == "graph.py" and ast.unparse(call.args[0]).startswith("io.BytesIO("), path
            else:
                raise AssertionError(f"{path.name}:{call.lineno}: {name} unpickles")
    assert seen == [("graph.py", "torch.jit.load")]


def test_an_explicit_weights_only_true_beats_the_environment_variable(tmp_path: Path) -> None:
    """What the pinned rule buys: torch.load(weights_only=True) refuses a payload even with the override set."""
    path = tmp_path / "evil.pt"
    torch.save({"w": PicklePayload(tmp_path / "pwned")}, path)
    assert zipfile.is_zipfile(path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)
    assert not (tmp_path / "pwned").exists()
