"""Random rotation on the device (issue 13), and the preset it makes possible: the reference lenet-aug."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import search.augment
from search.augment import normalize, prepare_batch, random_crop, random_rotate, rotate
from search.data import Splits
from search.runtime import Runtime
from search.train import train
from space import Augment, build_model, count_parameters, from_dict, preset_config, to_dict
from space.model import feature_shape

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MEAN, STD = 0.2860, 0.3530


def _images(n: int, dtype: torch.dtype = torch.uint8, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    return x.to(device=device, dtype=dtype)


def _blob(dtype: torch.dtype) -> torch.Tensor:
    """A centred Gaussian blob (sigma 4 px) with peak 200: rotation-symmetric, well inside the frame."""
    r = torch.arange(28, dtype=torch.float32) - 13.5
    blob = 200 * torch.exp(-(r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) / (2 * 4.0**2))
    return blob.round().expand(8, 1, 28, 28).to(dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_rotation_by_zero_is_the_identity(dtype: torch.dtype) -> None:
    x = _images(6, dtype)
    if dtype == torch.uint8:
        assert torch.equal(random_rotate(x, 0.0), x) and torch.equal(rotate(x, torch.zeros(6)), x)
    else:  # float resampling at the pixel centres: exact up to float rounding (0.01 of a grey level)
        torch.testing.assert_close(random_rotate(x, 0.0), x, atol=0.01, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shape_dtype_and_device_are_kept(device: str, dtype: torch.dtype) -> None:
    x = _images(5, dtype, device)
    out = random_rotate(x, 15.0)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


@pytest.mark.parametrize(("k", "degrees"), [(1, 90.0), (-1, -90.0), (2, 180.0)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_quarter_turns_equal_rot90(k: int, degrees: float, dtype: torch.dtype) -> None:
    # Pixel centres land on pixel centres: pins the direction (counter-clockwise, as rot90) and that the
    # bilinear sampling is aligned with the pixel grid (no half-pixel shift).
    x = _images(4, dtype)
    out = rotate(x, torch.full((4,), degrees))
    expected = torch.rot90(x, k, dims=(-2, -1))
    if dtype == torch.uint8:
        assert torch.equal(out, expected)
    else:
        torch.testing.assert_close(out, expected, atol=0.01, rtol=0)


def test_rotation_matches_torchvision_bilinear_rotate() -> None:
    # Imported here: torchvision takes ~2 s to import, which every xdist worker would pay to collect this module.
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    x = _images(3, torch.float32)
    angles = [30.0, -12.5, 7.0]
    out = rotate(x, torch.tensor(angles))
    for img, got, angle in zip(x, out, angles, strict=True):
        want = TF.rotate(img, angle, interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(got, want, atol=0.01, rtol=0)


def test_each_image_gets_its_own_angle_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor] = []

    def recording_rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
        seen.append(degrees)
        return rotate(x, degrees)

    monkeypatch.setattr(search.augment, "rotate", recording_rotate)
    x = torch.zeros(2000, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 12:16, 4:24] = 255  # a horizontal bar: any turn shows
    out = random_rotate(x, 10.0)
    (degrees,) = seen
    assert degrees.shape == (2000,) and degrees.abs().max() <= 10.0
    assert degrees.min() < -9.5 and degrees.max() > 9.5 and abs(degrees.mean().item()) < 0.5  # uniform, centred
    assert len({tuple(img.flatten().tolist()) for img in out[:50]}) > 40  # the images differ, not one angle for all


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_rotating_a_centred_blob_keeps_its_mass(dtype: torch.dtype) -> None:
    x = _blob(dtype)
    out = random_rotate(x, 45.0)
    mass, rotated = x.double().sum((1, 2, 3)), out.double().sum((1, 2, 3))
    assert torch.allclose(rotated, mass, rtol=0.01)
    assert (out.double() - x.double()).abs().max() <= 0.05 * 200  # symmetric: it barely changes anywhere


def test_prepare_batch_rotates_only_when_asked() -> None:
    x = _images(16)
    state = torch.get_rng_state()
    plain = prepare_batch(x, Augment(), MEAN, STD)
    # No rotation asked: no random number drawn, so configurations from before rotation replay exactly.
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(plain, normalize(x, MEAN, STD))

    torch.manual_seed(3)
    rotated = prepare_batch(x, Augment(rotate=15.0), MEAN, STD)
    torch.manual_seed(3)
    assert torch.equal(rotated, normalize(random_rotate(x, 15.0), MEAN, STD))
    assert not torch.equal(rotated, plain)

    # Rotation comes before the crop (both on uint8, then normalisation).
    torch.manual_seed(4)
    both = prepare_batch(x, Augment(rotate=15.0, crop_pad=2), MEAN, STD)
    torch.manual_seed(4)
    assert torch.equal(both, normalize(random_crop(random_rotate(x, 15.0), 2), MEAN, STD))
    assert torch.equal(prepare_batch(x, None, MEAN, STD), plain)  # evaluation never augments


def test_rotate_round_trips_through_config_and_defaults_for_old_configs() -> None:
    cfg = preset_config("lenet-aug")
    data = to_dict(cfg)
    assert data["train"]["augment"]["rotate"] == 10.0 and from_dict(data) == cfg
    old = copy.deepcopy(data)
    del old["train"]["augment"]["rotate"]  # a config.json written before rotation existed
    assert from_dict(old).train.augment.rotate == 0.0


def _reference_lenet_aug() -> nn.Module:
    """REFERENCES.md's lenet-aug as written: both 3x3 convs unpadded."""
    return nn.Sequential(
        *(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 3), nn.ReLU(), nn.MaxPool2d(2)),
        *(nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)),
    )


def test_lenet_aug_preset_is_the_documented_recipe() -> None:
    cfg = preset_config("lenet-aug")
    train_cfg, aug = cfg.train, cfg.train.augment
    assert (train_cfg.optimizer, train_cfg.lr, train_cfg.batch_size, train_cfg.epochs) == ("adam", 1e-3, 64, 5)
    assert (aug.rotate, aug.flip, aug.crop_pad, aug.erasing) == (10.0, True, 0, 0.0)
    assert feature_shape(cfg.arch) == (16, 5) and cfg.arch.dense == (120, 84)  # FC 400-120-84-10
    model = build_model(cfg.arch)
    # The preset's extra 16->16 3x3 conv (2,320 parameters) is what keeps the FC at 400 (see space/presets.py).
    assert count_parameters(model) == 62_394 == count_parameters(_reference_lenet_aug()) + 2_320
    assert count_parameters(_reference_lenet_aug()) == 60_074


def test_lenet_aug_trains(tiny_splits: Splits) -> None:
    cfg = preset_config("lenet-aug", epochs=1)  # 200 images in batches of 64: 3 steps, rotated and flipped
    model = build_model(cfg.arch)
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, cfg.train, tiny_splits, runtime=Runtime(device=torch.device("cpu")), seed=0)
    (stats,) = result.history
    assert stats.images == 3 * 64 and torch.isfinite(torch.tensor(stats.train_loss))
    assert all(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True))
