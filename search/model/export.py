"""A model directory: ``model.safetensors`` plus ``config.json``, saved and loaded safely.

The weights are stored with safetensors, a format that holds tensors and nothing else, so
loading a model can never run code (a pickle-based ``*.pt`` checkpoint can). ``config.json``
carries everything needed to rebuild the network from the directory alone, in nanoGPT's
spirit: the architecture and training config, the normalisation constants, the class names,
the provenance and the test result, plus the SHA-256 of the weights so that a truncated or
swapped weights file is caught before it is parsed.

A model directory is treated as untrusted input: nothing in it is ever unpickled (``*.pt`` and
other pickle files are refused unopened; fsearch has no ``torch.load`` call), config.json is read
under a size limit and checked field by field, the architecture it asks for is bounded by
arithmetic before any layer exists, and the weights file's header is checked against that
architecture (see :mod:`search.model.weights`) before its data is read.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from search.augment import normalize
from search.device import resolve_device
from search.errors import ModelError, one_line
from search.model.tta import FLIP, with_tta
from search.model.weights import WeightsFormatError, expected_file_bytes, expected_tensors, mismatch, read_header
from space import ArchitectureError, TrialConfig, build_model, from_dict, to_dict

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Files that would be unpickled by torch.load: never opened, only named in the refusal.
UNSAFE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
MAX_CONFIG_BYTES = 1 << 20  # config.json is a few kB; a bigger one is not fsearch's
INPUT = (1, 28)  # the input every fsearch model takes: one channel, 28x28 (what predict and evaluate feed)


@dataclass(frozen=True)
class LoadedModel:
    """A network rebuilt from a model directory, in eval mode on its device: as it ships, i.e. averaged with
    the mirror images when config.json's ``test_time_augmentation`` is ``"flip"`` (:mod:`search.model.tta`)."""

    model: nn.Module
    cfg: TrialConfig
    mean: float
    std: float
    classes: tuple[str, ...]
    meta: dict[str, Any]  # the whole config.json
    directory: Path

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax over the classes for uint8 images ``(N, 1, 28, 28)``, normalised like training."""
        device = next(self.model.parameters()).device
        x = normalize(images.to(device), self.mean, self.std)
        return torch.softmax(self.model(x).float(), dim=1).cpu()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(
    directory: Path,
    model: nn.Module,
    *,
    cfg: TrialConfig,
    mean: float,
    std: float,
    classes: tuple[str, ...],
    extra: dict[str, Any],
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory``; return the config path.

    ``extra`` (provenance, test results, ...) is merged into config.json. Each file is written
    to a temporary name and renamed, so an interrupted save never leaves a half-written file
    under the real name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors wants contiguous CPU tensors; channels_last weights are reordered here and
    # the loaded model is identical once moved back to the same memory format.
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    tmp = weights.with_name(weights.name + ".tmp")
    # Serialised in memory and written like any file (save_file creates it owner-only).
    tmp.write_bytes(save(tensors, metadata={"format": "pt", "fsearch_format_version": str(FORMAT_VERSION)}))
    os.replace(tmp, weights)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(weights)},
        "config": to_dict(cfg),
        "normalization": {"mean": mean, "std": std},
        "input": "uint8 grayscale 28x28, light garment on a dark background; x / 255, then (x - mean) / std",
        "classes": list(classes),
        **extra,
    }
    write_json(directory / CONFIG_FILE, meta)
    return directory / CONFIG_FILE


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _refuse_unsafe(directory: Path) -> None:
    unsafe = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in UNSAFE_SUFFIXES)
    if unsafe:
        raise ModelError(
            f"{directory} holds {', '.join(unsafe)} but no {WEIGHTS_FILE}; fsearch loads weights only from "
            f"safetensors, never from pickle files (they can run code when loaded): re-export the model "
            f"with 'fsearch export-best' or 'fsearch train'"
        )


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; re-export the model with 'fsearch export-best'")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{path} is {path.stat().st_size:,} bytes, over the {MAX_CONFIG_BYTES:,} a model config needs")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: also JSONDecodeError
        raise ModelError(f"{path} is not readable JSON ({one_line(str(exc))[:200]}); re-export the model") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ModelError(
            f"{path} has model format version {version!r}, this fsearch reads version {FORMAT_VERSION}; "
            f"re-export the model"
        )
    return meta


def _parse_meta(meta: dict[str, Any], path: Path) -> tuple[TrialConfig, float, float, tuple[str, ...], str, str | None]:
    tta = meta.get("test_time_augmentation")  # absent in models exported before it existed: none
    if tta not in (None, FLIP):
        raise ModelError(f"{path} asks for test-time augmentation {tta!r}, which fsearch does not know; re-export")
    try:
        cfg = from_dict(meta["config"])
        mean, std = float(meta["normalization"]["mean"]), float(meta["normalization"]["std"])
        classes = tuple(str(c) for c in meta["classes"])
        sha = str(meta["weights"]["sha256"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = one_line(f"{type(exc).__name__}: {exc}")[:200]
        raise ModelError(f"{path} is incomplete or malformed ({detail}); re-export the model") from None
    if len(classes) != cfg.arch.num_classes or not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ModelError(f"{path} is inconsistent (classes or normalisation); re-export the model")
    if (cfg.arch.in_channels, cfg.arch.image_size) != INPUT:
        raise ModelError(
            f"{path} describes a network for {cfg.arch.in_channels}-channel {cfg.arch.image_size}x"
            f"{cfg.arch.image_size} images; fsearch models take 1-channel 28x28 images: re-export the model"
        )
    return cfg, mean, std, classes, sha, tta


def load_model(directory: Path | str, *, device: torch.device | str = "auto") -> LoadedModel:
    """Rebuild the network saved in ``directory`` on ``device`` (eval mode; ``auto``, ``cpu``, ``cuda``, ...).

    Raises :class:`ModelError` with one line naming the problem when the directory is missing,
    holds only a pickle checkpoint, or its files are truncated, tampered with or inconsistent.
    """
    directory = Path(directory)
    if isinstance(device, str):
        device = resolve_device(device)
    if not directory.exists():
        raise ModelError(f"model directory {directory} not found; run 'fsearch export-best' first or pass --model DIR")
    if not directory.is_dir():
        raise ModelError(f"{directory} is not a model directory; pass the folder that holds {WEIGHTS_FILE}")
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        _refuse_unsafe(directory)
        raise ModelError(f"{weights} is missing; re-export the model with 'fsearch export-best'")
    config_path = directory / CONFIG_FILE
    meta = _read_meta(directory)
    cfg, mean, std, classes, sha, tta = _parse_meta(meta, config_path)
    try:  # bounded by arithmetic on the config, then built on the meta device: nothing allocated yet
        expected = expected_tensors(cfg.arch)
    except ArchitectureError as exc:
        raise ModelError(
            f"{config_path} asks for a network fsearch does not build ({exc}); re-export the model"
        ) from None
    if weights.stat().st_size > expected_file_bytes(expected):
        raise ModelError(
            f"{weights} is {weights.stat().st_size:,} bytes, far more than the network in {config_path} needs; "
            f"re-export the model"
        )
    # The checksum is checked before the file is parsed: a truncated or swapped file stops here.
    if sha256_file(weights) != sha:
        raise ModelError(
            f"{weights} does not match the SHA-256 recorded in {config_path} (truncated or changed); "
            f"re-export the model"
        )
    try:  # the header alone, against the architecture, before safetensors reads any tensor data
        found = read_header(weights)
    except (WeightsFormatError, OSError) as exc:
        raise ModelError(f"{weights} is not a valid safetensors file ({exc}); re-export the model") from None
    problem = mismatch(found, expected)
    if problem is not None:
        raise ModelError(f"{weights} does not fit the architecture in {config_path} ({problem}); re-export the model")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{weights} is not a valid safetensors file ({exc}); re-export the model") from None
    try:
        model = build_model(cfg.arch)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(
            f"{weights} does not fit the architecture in {config_path} ({_first_detail(exc)}); re-export the model"
        ) from None
    shipped = with_tta(model, tta).to(device).eval()
    return LoadedModel(model=shipped, cfg=cfg, mean=mean, std=std, classes=classes, meta=meta, directory=directory)


def _first_detail(exc: Exception) -> str:
    """The first informative line of a (multi-line) torch error, e.g. the first size mismatch."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    detail = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
    return detail if len(detail) <= 200 else detail[:197] + "..."
