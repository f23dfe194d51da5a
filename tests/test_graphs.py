"""An exported ONNX graph runs in onnxruntime and gives the PyTorch model's logits (``pip install 'fsearch[onnx]'``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search.model.graph import GRAPH_FILES, TOLERANCE, export_graph
from tests.support import MEAN, STD, save_small_model, tiny_images


def test_an_onnx_graph_runs_in_onnxruntime_with_the_logits_of_pytorch(tmp_path: Path) -> None:
    for name in ("onnx", "onnxscript"):  # the exporter's packages
        pytest.importorskip(name)
    onnxruntime = pytest.importorskip("onnxruntime")
    model, _ = save_small_model(tmp_path / "m")  # batch norm with non-default running statistics
    images = torch.from_numpy(tiny_images(50, seed=5)[0]).unsqueeze(1)
    path = export_graph("onnx", tmp_path, model, mean=MEAN, std=STD, sample=images[:4])
    assert path == tmp_path / GRAPH_FILES["onnx"]

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [pixels] = session.get_inputs()
    assert pixels.name == "pixels" and pixels.shape[1:] == [1, 28, 28]
    # All 50 images in one batch, not the batch the graph was exported with: the batch size is dynamic.
    x = images.float() / 255
    (got,) = session.run(["logits"], {"pixels": x.numpy()})
    model.eval()
    with torch.inference_mode():
        expected = model((x - MEAN) / STD)  # the graph holds the normalisation; PyTorch is given it here
    assert got.shape == (50, 10)
    assert float((torch.from_numpy(got) - expected).abs().max()) <= TOLERANCE
    assert torch.equal(torch.from_numpy(got).argmax(1), expected.argmax(1))
