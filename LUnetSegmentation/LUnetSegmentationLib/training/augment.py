"""Batched MRI augmentation that runs on the training device (torch only).

All random draws are tensors on the device and every operation works on the whole batch, so
a GPU step needs no host round trip. Spatial: one affine resampling per batch (rotation,
anisotropic scaling, translation, mirroring). Intensity: brightness, contrast, gamma and
Gaussian noise, the usual set for MRI whose scale and contrast vary between scanners.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F


@dataclass
class AugmentConfig:
    rotation_degrees: float = 15.0
    scale_range: float = 0.15  # scale in [1 - r, 1 + r]
    translation_voxels: float = 6.0
    mirror: bool = True  # flip each axis with p = 0.5
    brightness: float = 0.15  # multiply by 1 +- b
    contrast: float = 0.25
    gamma: float = 0.3  # gamma in [1 - g, 1 + g]
    noise_std: float = 0.1
    spatial_probability: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)


def _rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles in radians -> (B, 3, 3) rotation matrices."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])
    rx = torch.stack([one, zero, zero, zero, cos[:, 0], -sin[:, 0], zero, sin[:, 0], cos[:, 0]], 1).view(-1, 3, 3)
    ry = torch.stack([cos[:, 1], zero, sin[:, 1], zero, one, zero, -sin[:, 1], zero, cos[:, 1]], 1).view(-1, 3, 3)
    rz = torch.stack([cos[:, 2], -sin[:, 2], zero, sin[:, 2], cos[:, 2], zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, config: AugmentConfig, num_classes: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, 1, D, H, W) float, labels (B, D, H, W) long -> augmented copies."""
    batch, device = images.shape[0], images.device

    def uniform(*shape, low=-1.0, high=1.0):
        return torch.rand(*shape, device=device, generator=generator) * (high - low) + low

    # Spatial: sample the source grid through a random affine, in normalised coordinates.
    angles = uniform(batch, 3) * math.radians(config.rotation_degrees)
    scales = 1.0 + uniform(batch, 3) * config.scale_range
    matrix = _rotation_matrices(angles) * scales[:, None, :]
    if config.mirror:
        flips = torch.where(uniform(batch, 3) > 0, 1.0, -1.0)
        matrix = matrix * flips[:, None, :]
    size = torch.tensor(images.shape[2:][::-1], device=device, dtype=images.dtype)  # x, y, z
    # Normalised coordinates stretch each axis to [-1, 1]; conjugate by the size so rotations
    # are rigid in voxel space even for non-cubic volumes.
    matrix = matrix * size[None, None, :] / size[None, :, None]
    shift = uniform(batch, 3) * config.translation_voxels * 2.0 / size
    keep = uniform(batch) * 0.5 + 0.5 > config.spatial_probability  # identity for some samples
    identity = torch.eye(3, device=device).expand(batch, 3, 3)
    if config.mirror:
        identity = identity * flips[:, None, :]
    matrix = torch.where(keep[:, None, None], identity, matrix)
    shift = torch.where(keep[:, None], torch.zeros_like(shift), shift)
    theta = torch.cat([matrix, shift[:, :, None]], dim=2).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Labels through one-hot + linear sampling + argmax: smoother than nearest for rotations.
    one_hot = F.one_hot(labels, num_classes).permute(0, 4, 1, 2, 3).to(images.dtype)
    one_hot = F.grid_sample(one_hot, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    one_hot[:, 0] += 1e-3  # outside the volume -> background
    labels = one_hot.argmax(dim=1)

    # Intensity (per sample), on the z-scored image.
    shape = (batch, 1, 1, 1, 1)
    brightness = 1.0 + uniform(*shape) * config.brightness
    mean = images.mean(dim=(2, 3, 4), keepdim=True)
    contrast = 1.0 + uniform(*shape) * config.contrast
    images = (images - mean) * contrast + mean
    low = images.amin(dim=(2, 3, 4), keepdim=True)
    high = images.amax(dim=(2, 3, 4), keepdim=True)
    span = (high - low).clamp_min(1e-6)
    gamma = 1.0 + uniform(*shape) * config.gamma
    images = ((images - low) / span).clamp_min(0).pow(gamma) * span + low
    images = images * brightness
    images = images + torch.randn(images.shape, device=device, generator=generator, dtype=images.dtype) * (
        uniform(*shape, low=0.0, high=1.0) * config.noise_std
    )
    return images, labels
