"""Synthetic MRI from label maps, in the spirit of SynthSeg (Billot et al., MedIA 2023): pure torch,
batched on the training device, deterministic under a seed.

    generator = SyntheticGenerator(crops, values, SynthConfig())
    images, targets = generator.sample(batch_size, torch.Generator().manual_seed(0))

`crops` are uint8 label crops around one hippocampus each (scripts/make_synth_crops.py: compact
label indices, `values` maps index -> FreeSurfer label). Per sample, on the whole batch at once:
1. a random smooth deformation (rotation, per-axis scaling, translation, elastic field) and
   left-right mirroring, sampling the labels (nearest) into the training patch on a grid
   `supersample` times finer than 1 mm;
2. pathology and size on those labels (synth_pathology.py: atrophy, growth, resection
   cavities, lesions), so the truth follows the tissue;
3. an intensity per label: a T1-like draw (tissue means with jitter), T2-like (inverted),
   FLAIR-like (inverted, dark CSF), PD-like (inverted, flat) or a uniformly random contrast;
   lesions get an intensity of their own; Gaussian texture inside each label; non-brain labels
   (values >= 500) blanked at times to imitate skull-stripped scans;
   then the fine grid is averaged down to 1 mm: partial volume at every boundary, as a real
   acquisition has it, and the target is the hippocampus where it fills at least half a voxel
   (so the target's volume is the tissue's volume, not a shape's);
3b. a smooth multiplicative bias field and noise;
4. an acquisition resolution: Gaussian blur with the slice profile of a random voxel size (up to
   3.5 mm isotropic or a 2-6 mm thick axis), subsampled to that grid and linearly resampled
   back to 1 mm, which is exactly what inference does with a coarse scan;
5. a random gamma, then the inference path's own normalisation (percentile clip, z-score).
The target is the whole hippocampus (FreeSurfer labels 17 and 53) of the deformed label map.

Why not TorchIO's RandomLabelsToImage: it transforms one subject at a time on the CPU through
SimpleITK/NumPy, while this runs the whole batch on the GPU when one is lent (the lent machine
may not have TorchIO installed) and keeps training a pure-torch loop.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from .augment import _rotation_matrices
from .synth_pathology import LabelClasses, PathologyConfig, apply_pathology, with_lesion_value

HIPPOCAMPUS_LABELS = (17, 53)

# T1 tissue means on a 0..1 scale (white matter bright, grey matter mid, CSF dark), by
# FreeSurfer label; every draw jitters them. Unlisted brain labels get grey matter's value.
_T1_MEANS = {
    0: 0.02, 2: 0.85, 41: 0.85, 7: 0.80, 46: 0.80, 16: 0.75, 28: 0.72, 60: 0.72, 85: 0.80,
    3: 0.55, 42: 0.55, 8: 0.55, 47: 0.55, 17: 0.53, 53: 0.53, 18: 0.53, 54: 0.53,
    10: 0.68, 49: 0.68, 11: 0.58, 50: 0.58, 12: 0.62, 51: 0.62, 13: 0.74, 52: 0.74, 26: 0.58, 58: 0.58,
    4: 0.15, 43: 0.15, 5: 0.18, 44: 0.18, 14: 0.15, 15: 0.15, 24: 0.15, 72: 0.15,
    30: 0.5, 62: 0.5, 31: 0.45, 63: 0.45,
}
_GREY = 0.55
_CSF_VALUES = (4, 5, 14, 15, 24, 43, 44, 72)


@dataclass
class SynthConfig:
    patch_size: tuple = (48, 64, 48)  # z, y, x voxels (1 mm)
    rotation_degrees: float = 15.0
    scale_range: float = 0.12
    translation_mm: float = 6.0  # localization error of the whole-head path
    elastic_mm: float = 3.0  # std of the smooth displacement field
    t1_probability: float = 0.45  # then T2-, FLAIR- and PD-like with these, else random
    t2_probability: float = 0.12
    flair_probability: float = 0.12
    pd_probability: float = 0.06
    jitter: float = 0.07  # std of per-label mean jitter around the T1 prior
    texture: float = 0.05  # max std of intensity inside a label
    skull_strip_probability: float = 0.25
    bias_std: float = 0.3
    noise_max: float = 0.05
    resolution_probability: float = 0.5
    max_iso_mm: float = 3.5
    max_thick_mm: float = 6.0
    gamma_std: float = 0.3
    supersample: int = 2  # labels and intensities on a grid this many times finer, then averaged
    pathology: PathologyConfig = field(default_factory=PathologyConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SynthConfig":
        data = dict(data)
        pathology = PathologyConfig(**data.pop("pathology", {}))
        if "patch_size" in data:
            data["patch_size"] = tuple(data["patch_size"])
        return cls(pathology=pathology, **data)


def _uniform(shape, low, high, generator, device):
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def _gaussian_blur_axis(volume: torch.Tensor, sigma: torch.Tensor, axis: int) -> torch.Tensor:
    """Blur (B, 1, z, y, x) along one spatial axis with a per-sample sigma (voxels)."""
    radius = int(math.ceil(3 * float(sigma.max()))) if float(sigma.max()) > 0 else 0
    if radius == 0:
        return volume
    offsets = torch.arange(-radius, radius + 1, device=volume.device, dtype=volume.dtype)
    kernels = torch.exp(-0.5 * (offsets[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    batch = volume.shape[0]
    shape = [batch, 1, 1, 1, 1]
    shape[2 + axis] = 2 * radius + 1
    pad = [0, 0, 0, 0, 0, 0]
    pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
    padded = F.pad(volume, pad, mode="replicate")
    # Grouped convolution: one kernel per sample.
    out = F.conv3d(padded.transpose(0, 1), kernels.view(shape), groups=batch)
    return out.transpose(0, 1)


class SyntheticGenerator:
    def __init__(self, crops: np.ndarray, values: np.ndarray, config: SynthConfig | None = None, device="cpu"):
        self.config = config or SynthConfig()
        self.device = torch.device(device)
        self.crops = torch.as_tensor(np.asarray(crops), dtype=torch.uint8, device=self.device)
        values = with_lesion_value(values)
        self.values = values
        self.classes = LabelClasses(values, self.device)
        self.t1_means = torch.tensor([_T1_MEANS.get(int(v), _GREY) for v in values], dtype=torch.float32, device=self.device)
        self.non_brain = torch.tensor(values >= 500, device=self.device)
        self.is_hippocampus = torch.tensor(np.isin(values, HIPPOCAMPUS_LABELS), device=self.device)

    # ------------------------------------------------------------------ spatial

    def _fine_size(self) -> tuple:
        return tuple(int(s) * self.config.supersample for s in self.config.patch_size)

    def _sample_labels(self, indices: torch.Tensor, generator) -> torch.Tensor:
        """Deformed label patches (B, z, y, x) on the supersampled grid, as compact label indices."""
        config, device = self.config, self.device
        batch = len(indices)
        crop_shape = torch.tensor(self.crops.shape[1:], dtype=torch.float32, device=device)  # z, y, x
        patch = torch.tensor(config.patch_size, dtype=torch.float32, device=device)
        angles = _uniform((batch, 3), -1, 1, generator, device) * math.radians(config.rotation_degrees)
        scales = _uniform((batch, 3), 1 - config.scale_range, 1 + config.scale_range, generator, device)
        shifts = _uniform((batch, 3), -1, 1, generator, device) * config.translation_mm
        mirror = torch.where(torch.rand(batch, generator=generator, device=device) < 0.5, -1.0, 1.0)
        # Affine in voxel units around the crop centre; affine_grid works in (x, y, z) order
        # on normalised [-1, 1] coordinates, so build the matrix there.
        linear = _rotation_matrices(angles) * scales[:, None, :]
        flip = torch.ones(batch, 3, device=device)
        flip[:, 0] = mirror  # x (R-L): mirror the hemisphere
        half_patch = (patch.flip(0) - 1) / 2  # x, y, z
        half_crop = (crop_shape.flip(0) - 1) / 2
        theta = linear * flip[:, None, :] * half_patch[None, None, :] / half_crop[None, :, None]
        translation = shifts / half_crop[None, :]
        fine = self._fine_size()
        grid = F.affine_grid(torch.cat([theta, translation[:, :, None]], dim=2), [batch, 1, *fine], align_corners=True)
        if config.elastic_mm > 0:
            coarse = torch.randn((batch, 3, 4, 5, 4), generator=generator, device=device) * config.elastic_mm
            displacement = F.interpolate(coarse, size=fine, mode="trilinear", align_corners=True)
            grid = grid + (displacement.permute(0, 2, 3, 4, 1) / half_crop)
        crops = self.crops[indices].float()[:, None]
        return F.grid_sample(crops, grid, mode="nearest", padding_mode="zeros", align_corners=True)[:, 0].long()

    # ------------------------------------------------------------------ intensity

    def _label_means(self, batch: int, generator) -> torch.Tensor:
        config, device = self.config, self.device
        count = len(self.values)
        t1 = (self.t1_means[None] + torch.randn((batch, count), generator=generator, device=device) * config.jitter).clamp(0, 1)
        random = torch.rand((batch, count), generator=generator, device=device)
        # Non-brain head tissue (fat, muscle, skull, eyes) varies a lot even between T1 scans.
        t1 = torch.where(self.non_brain[None], random, t1)
        choice = torch.rand((batch, 1), generator=generator, device=device)
        inverted = (1 - t1).clamp(0, 1)
        csf = torch.as_tensor(np.isin(self.values, _CSF_VALUES), device=device)
        flair = torch.where(csf[None], t1 * 0.3, inverted)  # T2 weighting with the fluid signal nulled
        pd = 0.45 + 0.45 * inverted  # proton density: fluid brightest, little grey-white contrast
        lesion = torch.as_tensor(self.values == self.values[self.classes.lesion], device=device)
        # Lesions: dark on T1, bright on T2/FLAIR/PD, with a wide spread (oedema, gliosis, tumour).
        lesion_t1 = torch.rand((batch, 1), generator=generator, device=device) * 0.4 + 0.1
        t1 = torch.where(lesion[None], lesion_t1, t1)
        bright = 1 - lesion_t1 * 0.6
        inverted = torch.where(lesion[None], bright, inverted)
        flair = torch.where(lesion[None], bright, flair)
        pd = torch.where(lesion[None], bright, pd)
        for contrast in (inverted, flair, pd):
            contrast[:, 0] = t1[:, 0]  # background stays dark in every contrast
        edges = np.cumsum([config.t1_probability, config.t2_probability, config.flair_probability, config.pd_probability])
        means = torch.where(choice < edges[0], t1, torch.where(choice < edges[1], inverted, torch.where(
            choice < edges[2], flair, torch.where(choice < edges[3], pd, random))))
        strip = torch.rand((batch, 1), generator=generator, device=device) < config.skull_strip_probability
        means = torch.where(strip & self.non_brain[None], torch.zeros_like(means), means)
        return means

    def _resolution(self, images: torch.Tensor, generator) -> torch.Tensor:
        """Blur to a random acquisition voxel size, subsample, resample back to 1 mm (linear)."""
        config, device = self.config, self.device
        batch = images.shape[0]
        out = []
        for b in range(batch):
            image = images[b:b + 1]
            if float(torch.rand((), generator=generator, device=device)) >= config.resolution_probability:
                sigma = _uniform((3,), 0.0, 0.6, generator, device)  # a mildly smooth 1 mm scan
                spacing = torch.ones(3, device=device)
            elif float(torch.rand((), generator=generator, device=device)) < 0.5:
                spacing = _uniform((1,), 1.0, config.max_iso_mm, generator, device).repeat(3)
                sigma = spacing / 2.355
            else:
                spacing = _uniform((3,), 0.8, 1.3, generator, device)
                axis = int(torch.randint(0, 3, (1,), generator=generator, device=device))
                spacing[axis] = _uniform((1,), 2.0, config.max_thick_mm, generator, device)[0]
                sigma = spacing / 2.355
            for axis in range(3):
                image = _gaussian_blur_axis(image, sigma[axis:axis + 1], axis)
            if bool((spacing > 1.05).any()):
                size = [max(4, int(round(s / float(sp)))) for s, sp in zip(config.patch_size, spacing)]
                image = F.interpolate(image, size=size, mode="trilinear", align_corners=True)
                image = F.interpolate(image, size=tuple(config.patch_size), mode="trilinear", align_corners=True)
            out.append(image)
        return torch.cat(out)

    def sample(self, batch_size: int, generator: torch.Generator, indices: torch.Tensor | None = None):
        """(images (B, 1, z, y, x) float32 normalised as at inference, targets (B, z, y, x) int64)."""
        config, device = self.config, self.device
        if indices is None:
            indices = torch.randint(0, len(self.crops), (batch_size,), generator=generator, device=device)
        labels = self._sample_labels(indices, generator)
        labels = apply_pathology(labels, self.classes, config.pathology, generator, voxel_mm=1.0 / config.supersample)
        batch = labels.shape[0]
        means = self._label_means(batch, generator)
        texture = torch.rand((batch, len(self.values)), generator=generator, device=device) * config.texture
        flat = labels.view(batch, -1)
        images = torch.gather(means, 1, flat) + torch.gather(texture, 1, flat) * torch.randn(flat.shape, generator=generator, device=device)
        images = images.view(batch, 1, *labels.shape[1:])
        # Partial volume: average the fine grid down to the 1 mm patch; the target is the
        # hippocampus where it fills at least half of a 1 mm voxel.
        hippocampus = self.is_hippocampus[labels].float()[:, None]
        if config.supersample > 1:
            images = F.avg_pool3d(images, config.supersample)
            hippocampus = F.avg_pool3d(hippocampus, config.supersample)
        targets = (hippocampus[:, 0] >= 0.5).long()
        bias = F.interpolate(torch.randn((batch, 1, 3, 4, 3), generator=generator, device=device) * config.bias_std,
                             size=tuple(config.patch_size), mode="trilinear", align_corners=True)
        images = images * torch.exp(bias)
        noise = torch.rand((batch, 1, 1, 1, 1), generator=generator, device=device) * config.noise_max
        images = images + noise * torch.randn(images.shape, generator=generator, device=device)
        images = self._resolution(images.clamp_min(0), generator)
        low = images.amin(dim=(1, 2, 3, 4), keepdim=True)
        high = images.amax(dim=(1, 2, 3, 4), keepdim=True)
        gamma = torch.exp(torch.randn((batch, 1, 1, 1, 1), generator=generator, device=device) * config.gamma_std)
        images = ((images - low) / (high - low).clamp_min(1e-6)).clamp(0, 1) ** gamma
        return normalise(images), targets


def normalise(images: torch.Tensor, percentiles=(0.5, 99.5)) -> torch.Tensor:
    """preprocess.normalize_intensity for a batch: clip to percentiles, z-score per sample."""
    flat = images.flatten(1)
    q = torch.quantile(flat, torch.tensor([p / 100 for p in percentiles], device=images.device), dim=1)  # (2, B)
    clipped = torch.maximum(torch.minimum(flat, q[1][:, None]), q[0][:, None])
    mean = clipped.mean(dim=1, keepdim=True)
    std = clipped.std(dim=1, unbiased=False, keepdim=True).clamp_min(1e-6)
    return ((clipped - mean) / std).view_as(images)
