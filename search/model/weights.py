"""Check a ``model.safetensors`` file against the network its config describes, reading only its header.

safetensors files start with an 8-byte little-endian header length and a JSON header that gives
every tensor's dtype, shape and byte range. :func:`read_header` parses that header under strict
limits (a bounded length, contiguous ranges that exactly fill the file) and :func:`mismatch`
compares it with the tensors the architecture needs, which come from building the network on
PyTorch's ``meta`` device (shapes only, no memory). A file that passes both holds exactly the
expected tensors, so loading it allocates no more than the network itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from space import Architecture, build_model

MAX_HEADER_BYTES = 1 << 20  # a few kB for any fsearch network; safetensors itself allows 100 MB
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
_ITEM_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


class WeightsFormatError(ValueError):
    """The file is not a well-formed safetensors file (the message says what is wrong)."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return _ITEM_BYTES.get(self.dtype, 0) * math.prod(self.shape)


def expected_tensors(arch: Architecture) -> dict[str, TensorInfo]:
    """Name, dtype and shape of every tensor ``build_model(arch)`` saves, without allocating any.

    ``build_model`` checks the architecture's bounds (by arithmetic) before it creates a layer;
    on the meta device the layers it creates hold no memory.
    """
    with torch.device("meta"):
        model: nn.Module = build_model(arch)
    return {
        name: TensorInfo(_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape)) for name, t in model.state_dict().items()
    }


def read_header(path: Path) -> dict[str, TensorInfo]:
    """The tensors listed in the header of the safetensors file ``path``; raises :class:`WeightsFormatError`."""
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise WeightsFormatError(f"{size} bytes, too short for a header")
        length = int.from_bytes(prefix, "little")
        if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
            raise WeightsFormatError(f"header length {length:,} is impossible for a {size:,}-byte file")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WeightsFormatError(f"header is not JSON: {type(exc).__name__}") from None
    if not isinstance(header, dict):
        raise WeightsFormatError("header is not a JSON object")
    header.pop("__metadata__", None)
    tensors: dict[str, TensorInfo] = {}
    ranges = []
    for name, entry in header.items():
        info, begin, end = _entry(name, entry)
        if end - begin != info.nbytes:
            raise WeightsFormatError(
                f"tensor {name!r} spans {end - begin:,} bytes, its dtype and shape need {info.nbytes:,}"
            )
        tensors[name] = info
        ranges.append((begin, end))
    position = 0
    for begin, end in sorted(ranges):  # the data must be contiguous and fill the rest of the file exactly
        if begin != position:
            raise WeightsFormatError("tensor data ranges overlap or leave gaps")
        position = end
    if 8 + length + position != size:
        raise WeightsFormatError(f"header accounts for {8 + length + position:,} bytes, the file has {size:,}")
    return tensors


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate keys")  # two readers could each pick a different one
    return dict(pairs)


def _entry(name: str, entry: object) -> tuple[TensorInfo, int, int]:
    if not isinstance(entry, dict):
        raise WeightsFormatError(f"tensor {name!r} has no description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _ITEM_BYTES:
        raise WeightsFormatError(f"tensor {name!r} has dtype {dtype!r}, not one fsearch saves")
    if not isinstance(shape, list) or len(shape) > 8 or not all(_is_count(d) for d in shape):
        raise WeightsFormatError(f"tensor {name!r} has a malformed shape")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise WeightsFormatError(f"tensor {name!r} has malformed data offsets")
    begin, end = offsets
    if end < begin:
        raise WeightsFormatError(f"tensor {name!r} ends before it begins")
    return TensorInfo(str(dtype), tuple(shape)), begin, end


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 48


def mismatch(found: dict[str, TensorInfo], expected: dict[str, TensorInfo]) -> str | None:
    """How the file's tensors differ from the architecture's, in load_state_dict's words, or None."""
    missing = [name for name in expected if name not in found]
    if missing:
        return f"Missing key(s) in the weights: {', '.join(missing[:5])}"
    unexpected = [name for name in found if name not in expected]
    if unexpected:
        return f"Unexpected key(s) in the weights: {', '.join(unexpected[:5])}"
    for name, want in expected.items():
        got = found[name]
        if got.shape != want.shape:
            return (
                f"size mismatch for {name}: the file has {list(got.shape)}, the architecture needs {list(want.shape)}"
            )
        if got.dtype != want.dtype:
            return f"dtype mismatch for {name}: the file has {got.dtype}, the architecture needs {want.dtype}"
    return None


def expected_file_bytes(expected: dict[str, TensorInfo]) -> int:
    """An upper bound on the size of a well-formed weights file for ``expected`` (data plus the largest header)."""
    return 8 + MAX_HEADER_BYTES + sum(info.nbytes for info in expected.values())
