"""Per-batch preprocessing on the device: augmentation on uint8, then normalisation.

No per-sample Python transforms: a whole batch is rotated with one resampling, cropped with one
gather, flipped with one ``where`` and erased with one mask, all with the device's own random numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from space.config import Augment


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image ``i`` by ``degrees[i]`` counter-clockwise about its centre (as ``torch.rot90`` and
    torchvision's ``rotate``): bilinear, with zeros outside the image (Fashion-MNIST's background).

    Works in float32; a uint8 batch comes back rounded to uint8, any other dtype as it came.
    """
    rad = degrees.to(device=x.device, dtype=torch.float32).deg2rad()
    cos, sin = rad.cos(), rad.sin()
    zero = torch.zeros_like(cos)
    # affine_grid maps each output pixel to the input point it samples from, i.e. the inverse rotation;
    # with y pointing down, that is [[cos, -sin], [sin, cos]] for a counter-clockwise turn on screen.
    # Images are square, so the normalised [-1, 1] coordinates are isotropic and need no aspect fix.
    theta = torch.stack((cos, -sin, zero, sin, cos, zero), dim=1).view(-1, 2, 3)
    src = x.float()
    grid = F.affine_grid(theta, list(src.shape), align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if x.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(x.dtype)


def random_rotate(x: torch.Tensor, max_degrees: float) -> torch.Tensor:
    """Rotate each image by its own angle, uniform in [-max_degrees, max_degrees]."""
    degrees = (torch.rand(x.shape[0], device=x.device) * 2 - 1) * max_degrees
    return rotate(x, degrees)


def random_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels (zero padding, Fashion-MNIST's background)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
    flat = padded.reshape(n, c, -1)
    index = (rows * (w + 2 * pad) + cols).reshape(n, 1, -1).expand(n, c, h * w)
    return flat.gather(2, index).reshape(n, c, h, w)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror half of the images left-right."""
    mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(mask, x.flip(-1), x)


def random_erase(x: torch.Tensor, p: float, scale: tuple[float, float] = (0.02, 0.33)) -> torch.Tensor:
    """With probability ``p`` per image, zero a random rectangle (torchvision's RandomErasing, batched).

    Applied after normalisation, so the erased area takes the dataset mean (value 0).
    """
    n, _, h, w = x.shape
    dev = x.device
    area = torch.empty(n, device=dev).uniform_(*scale) * h * w
    log_ratio = torch.empty(n, device=dev).uniform_(math.log(0.3), math.log(1 / 0.3))
    ratio = torch.exp(log_ratio)
    eh = torch.sqrt(area * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(area / ratio).round().clamp(1, w).long()
    y0 = (torch.rand(n, device=dev) * (h - eh + 1)).long()
    x0 = (torch.rand(n, device=dev) * (w - ew + 1)).long()
    r = torch.arange(h, device=dev).view(1, h, 1)
    c = torch.arange(w, device=dev).view(1, 1, w)
    box = (r >= y0.view(n, 1, 1)) & (r < (y0 + eh).view(n, 1, 1)) & (c >= x0.view(n, 1, 1))
    box &= c < (x0 + ew).view(n, 1, 1)
    box &= (torch.rand(n, device=dev) < p).view(n, 1, 1)
    return x.masked_fill(box.unsqueeze(1), 0.0)


def normalize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 pixels to float32 with the dataset's mean and std."""
    return x.float().mul_(1 / (255 * std)).sub_(mean / std)


def prepare_batch(x: torch.Tensor, aug: Augment | None, mean: float, std: float) -> torch.Tensor:
    """A training batch (``aug`` set) or an evaluation batch (``aug=None``), normalised."""
    if aug is not None and aug.rotate > 0:
        x = random_rotate(x, aug.rotate)
    if aug is not None and aug.crop_pad > 0:
        x = random_crop(x, aug.crop_pad)
    if aug is not None and aug.flip:
        x = random_flip(x)
    out = normalize(x, mean, std)
    if aug is not None and aug.erasing > 0:
        out = random_erase(out, aug.erasing)
    return out
