"""The loop's CUDA options, on the CPU: what each Runtime turns on where, the fused optimiser's arithmetic, and
the CUDA-graph capture's bookkeeping (with torch's capture replaced by a stand-in that runs the model as it would)."""

from __future__ import annotations

import dataclasses
import gc
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from search.data import Splits
from search.graphs import training_graphs
from search.model.retrain import RetrainOptions
from search.optim import make_optimizer
from search.runtime import Runtime
from search.speed import TIMED_IMAGES, seconds_per_image
from search.train import TrainResult, train
from search.tune.session import SearchOptions
from space import Architecture, ConvBlock, TrainConfig, build_model, preset_config

SMALL = Architecture(blocks=(ConvBlock(8), ConvBlock(16)), dense=(32,), batch_norm=True)
CUDA = torch.device("cuda")  # a device object needs no GPU; nothing here runs on it


def test_each_option_is_on_where_it_was_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = Runtime(), Runtime(device=CUDA)
    assert cuda.use_fused_optimizer and not cpu.use_fused_optimizer  # the CPU keeps the loop it was measured with
    assert cuda.use_cuda_graphs and not cpu.use_cuda_graphs
    assert not Runtime(device=CUDA, cuda_graphs=False).use_cuda_graphs
    assert not Runtime(cuda_graphs=True).use_cuda_graphs  # CUDA only, whatever is asked
    assert (
        Runtime(fused_optimizer=True).use_fused_optimizer
        and not Runtime(device=CUDA, fused_optimizer=False).use_fused_optimizer
    )
    monkeypatch.setattr("search.runtime.describe", lambda device: f"{device} (simulated)")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert Runtime(device=CUDA, cuda_graphs=True).describe() == "cuda (simulated), bf16 autocast, CUDA graphs"
    assert Runtime(device=CUDA, cuda_graphs=False).describe() == "cuda (simulated), bf16 autocast"


@pytest.mark.parametrize("name", ["sgd", "adamw", "adam"])
def test_the_fused_optimiser_takes_the_same_steps(name: str) -> None:
    cfg = TrainConfig(optimizer=name, lr=0.05 if name == "sgd" else 3e-3, weight_decay=5e-4)  # type: ignore[arg-type]
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    params = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = build_model(SMALL)
        opt = make_optimizer(model, cfg, fused=fused)
        assert opt.defaults["fused"] is (True if fused else None)  # off leaves torch's own choice
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    # The same steps up to rounding: on an AMD EPYC (AVX-512, one thread) fused Adam's arithmetic rounds otherwise,
    # and 81 of 26,722 weights ended up to 1.9e-4 apart after 3 steps of 3e-3 (6% of a step); elsewhere all agree.
    close = torch.isclose(params[0], params[1], rtol=1e-4, atol=1e-6)
    assert close.float().mean() > 0.99 and (params[0] - params[1]).abs().max() < 0.1 * cfg.lr


def test_cuda_graphs_off_leave_the_loop_as_it_was(tiny_splits: Splits) -> None:
    cfg = TrainConfig(optimizer="adamw", lr=3e-3, batch_size=32, epochs=1)
    runs = []
    for runtime in (Runtime(), Runtime(cuda_graphs=True)):  # asked for on the CPU: not used
        torch.manual_seed(1)
        runs.append(train(build_model(SMALL), cfg, tiny_splits, runtime=runtime, seed=3).history[0])
    assert runs[0].train_loss == runs[1].train_loss and runs[0].val_acc == runs[1].val_acc


def test_the_capture_sees_the_batch_shape_and_leaves_the_model_as_it_found_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def capture(model: nn.Module, args: tuple[torch.Tensor, ...]) -> nn.Module:
        """torch's capture warms up and captures by running the model in training mode; then replaces forward."""
        x = args[0]
        cl = x.is_contiguous(memory_format=torch.channels_last)
        calls.append({"shape": tuple(x.shape), "channels_last": cl, "cache": torch.is_autocast_cache_enabled(),
                      "training": model.training, "gc": gc.isenabled()})  # fmt: skip
        for _ in range(4):
            model(*args)
        original = model.forward
        model.forward = lambda x: original(x)  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", capture)
    runtime = dataclasses.replace(Runtime(), cuda_graphs=True)
    monkeypatch.setattr(Runtime, "use_cuda_graphs", property(lambda self: bool(self.cuda_graphs)))
    model = build_model(SMALL).eval()
    before = {name: b.clone() for name, b in model.named_buffers()}
    with training_graphs(model, runtime, (32, 1, 28, 28)):
        assert "forward" in model.__dict__  # the captured forward is in place within the block
        assert model.training is False  # the mode the model came in with
        assert all(torch.equal(b, before[name]) for name, b in model.named_buffers())  # batch norm as it was
    assert "forward" not in model.__dict__  # a plain module again
    # No garbage collection during the capture (a dead graph freed then invalidates it), and on again after it.
    assert calls == [{"shape": (32, 1, 28, 28), "channels_last": True, "cache": False, "training": True, "gc": False}]
    assert gc.isenabled()


def test_torchs_two_capture_warnings_are_quiet_within_the_block_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two once-per-process warnings graphed callables give (harmless) do not reach the live display; any other
    warning does, and after the block so do they."""
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", lambda model, args: model)
    monkeypatch.setattr(Runtime, "use_cuda_graphs", property(lambda self: bool(self.cuda_graphs)))
    quiet = ("The AccumulateGrad node's stream does not match the stream of the node that produced the incoming "
             "gradient.", "Attempting to run cuBLAS, but there was no current CUDA context! Attempting to set the "
             "primary context...")  # fmt: skip
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with training_graphs(build_model(SMALL), Runtime(cuda_graphs=True), (8, 1, 28, 28)):
            for message in (*quiet, "something else"):
                warnings.warn(message, UserWarning, stacklevel=1)
        for message in quiet:
            warnings.warn(message, UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else", *quiet]


def test_the_capture_is_timed_apart_from_the_steps(monkeypatch: pytest.MonkeyPatch, tiny_splits: Splits) -> None:
    """train() reports the capture's seconds as setup, and the speed timing leaves them out (a one-time cost)."""
    clock = iter([0.0, 7.0])  # the capture starts at 0 and is over at 7 (a stand-in clock, not the wall)
    monkeypatch.setattr("search.graphs.time", SimpleNamespace(perf_counter=lambda: next(clock)))
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", lambda model, args: model)
    monkeypatch.setattr(Runtime, "use_cuda_graphs", property(lambda self: bool(self.cuda_graphs)))
    cfg = TrainConfig(optimizer="adamw", lr=3e-3, batch_size=32, epochs=1)
    result = train(build_model(SMALL), cfg, tiny_splits, runtime=Runtime(cuda_graphs=True), seed=0)
    assert result.setup_seconds == 7.0
    assert train(build_model(SMALL), cfg, tiny_splits, runtime=Runtime(), seed=0).setup_seconds == 0.0

    ticks = iter([0.0, 100.0, 200.0, 300.0])  # each timed run takes 100 s by this clock, 40 of them setup
    monkeypatch.setattr("search.speed.time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    monkeypatch.setattr("search.speed.train", lambda *a, **k: TrainResult(history=(), setup_seconds=40.0))
    per_image = seconds_per_image(preset_config("lenet5"), tiny_splits, Runtime(), threads=1, evals_per_epoch=0)
    assert per_image == pytest.approx(60.0 / min(TIMED_IMAGES, len(tiny_splits.train)))


@pytest.mark.parametrize(
    ("args", "target", "expected"),
    [
        (["run"], "search.tune.runner.run_search", None),  # the default: on for CUDA (Runtime decides)
        (["run", "--no-cuda-graphs"], "search.tune.runner.run_search", False),
        (["export-best", "--no-cuda-graphs"], "search.model.best.export_best", False),
        (["train", "--preset", "lenet5", "--cuda-graphs"], "search.model.retrain.retrain_preset", True),
    ],
)
def test_each_training_command_hands_its_cuda_graphs_switch_on(
    args: list[str], target: str, expected: bool | None, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A way out where a GPU's capture fails: --no-cuda-graphs reaches the options every Runtime is built from."""
    from search.errors import ConfigError
    from tests.support import fsearch

    seen: list[Any] = []

    def stand_in(*args: Any, **kwargs: Any) -> None:
        seen.append(kwargs.get("opts") or next(a for a in args if hasattr(a, "cuda_graphs")))
        raise ConfigError("stopped here")

    monkeypatch.setattr(target, stand_in)
    code, _, err = fsearch(args, capsys, monkeypatch)
    assert (code, err.strip()) == (2, "Error: stopped here")
    assert seen[0].cuda_graphs is expected


def test_the_search_and_the_export_build_their_runtimes_with_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's timing, the calibration and the retraining each pass the switch into the Runtime they build."""
    from search import speed
    from search.tune import calibrate as calibration

    built: list[bool | None] = []

    def timed(cfg: Any, splits: Any, runtime: Runtime, **kwargs: Any) -> float:
        built.append(runtime.cuda_graphs)
        return 1e-3

    monkeypatch.setattr(speed, "seconds_per_image", timed)
    monkeypatch.setattr(calibration, "seconds_per_image", timed)
    cfg, cpu = preset_config("lenet5"), torch.device("cpu")
    speed.export_timing(cfg, RetrainOptions(out=Path(), device="cpu", cuda_graphs=False).runtime())
    splits = speed.random_splits(64, cpu)
    runtime = SearchOptions(cuda_graphs=False).runtime(cpu)
    calibration.calibrate(cfg, splits, runtime=runtime, worker_threads=1, evals_per_epoch=1)
    # Both memory formats timed on the CPU (TIMING_ROUNDS each), then the calibration's export and worker timings.
    assert built == [False] * (2 * speed.TIMING_ROUNDS + 2)
