"""Optional exported graphs (``--format onnx`` / ``torchscript``), each checked against PyTorch.

The graph includes the normalisation, so other runtimes feed it float32 pixels in [0, 1]
(what torchvision's ``ToTensor`` gives), shape ``(N, 1, 28, 28)``, and get logits (log-probabilities
for a model that ships flip test-time augmentation: the graph averages each image with its mirror
image, as :mod:`search.model.tta` does in PyTorch). After
writing, the graph is loaded back with the runtime that would serve it (onnxruntime,
``torch.jit.load``) and its outputs on real test images are compared with the PyTorch model's.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from search.defaults import GRAPH_FORMATS
from search.errors import ConfigError, ModelError

FORMATS = GRAPH_FORMATS
GRAPH_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # exporter (torch.onnx dynamo) and checker
TOLERANCE = 1e-4  # max absolute difference of logits, PyTorch vs the exported graph


class Normalized(nn.Module):
    """The network with its input normalisation, taking pixels in [0, 1]."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model = model
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model((x - self.mean) / self.std)
        return out


def check_formats(formats: tuple[str, ...]) -> None:
    """Fail before any training when a format is unknown or its packages are not installed."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
        if fmt == "onnx":
            missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
            if missing:
                raise ConfigError(
                    f"--format onnx needs the package(s) {', '.join(missing)}; "
                    f"install them with 'pip install {' '.join(missing)}' (or pip install 'fsearch[onnx]')"
                )


def export_graph(fmt: str, directory: Path, model: nn.Module, *, mean: float, std: float, sample: torch.Tensor) -> Path:
    """Write the graph of ``model`` (on the CPU, eval mode) and check it on ``sample`` (uint8 images)."""
    net = Normalized(model, mean, std).to("cpu").eval()
    x = sample.to("cpu").float().div(255).contiguous()
    with torch.inference_mode():
        expected = net(x)
    path = directory / GRAPH_FILES[fmt]
    if fmt == "torchscript":
        got = _torchscript(net, x, path)
    elif fmt == "onnx":
        got = _onnx(net, x, path)
    else:
        raise ConfigError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    diff = float((got - expected).abs().max()) if expected.numel() else 0.0
    if not diff <= TOLERANCE:
        raise ModelError(f"the {fmt} graph in {path} differs from PyTorch by {diff:.2e} (over {TOLERANCE:g})")
    return path


def _torchscript(net: nn.Module, x: torch.Tensor, path: Path) -> torch.Tensor:
    # Tracing is enough: the networks have no data-dependent control flow. TorchScript is
    # deprecated in PyTorch but still what libtorch (C++) loads, so its warnings are silenced.
    # The archive is checked from the bytes in memory and those same bytes are written: fsearch
    # never loads a TorchScript file from disk, where someone could have put another one.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        traced = torch.jit.trace(net, x[:2])  # type: ignore[no-untyped-call]
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()), map_location="cpu")  # type: ignore[no-untyped-call]
        out = loaded(x)
    path.write_bytes(buffer.getvalue())
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"the TorchScript graph for {path} returned {type(out).__name__}, not a tensor")
    return out


def _onnx(net: nn.Module, x: torch.Tensor, path: Path) -> torch.Tensor:
    import onnxruntime

    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        torch.onnx.export(
            net, (x[:2],), str(path), dynamo=True, external_data=False,
            input_names=["pixels"], output_names=["logits"], dynamic_shapes=({0: batch},),
        )  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["logits"], {"pixels": x.numpy()})
    return torch.from_numpy(out)
