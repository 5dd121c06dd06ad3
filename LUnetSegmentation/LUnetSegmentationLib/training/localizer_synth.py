"""Synthetic whole heads on the localizer's 4 mm grid (pure torch, batched, seeded).

    generator = HeadGenerator(heads, values, HeadConfig())
    images, targets, icv_mm3 = generator.sample(batch_size, torch.Generator().manual_seed(0))

`heads` are 2 mm label maps (scripts/make_head_maps.py: (N, z, y, x) = (S, A, R) compact label
indices, `values` maps index -> FreeSurfer label). Per sample:
1. a random head pose in the field of view (rotation in every axis, so oblique too, scaling,
   translation, left-right mirroring with the sides' targets swapped), sampled (nearest) on a
   grid `supersample` times finer than 4 mm covering the localizer's 256 mm cube;
2. pathology (synth_pathology.py: atrophy, enlarged ventricles, cavities, MS-like and
   tumour-like lesions);
3. intensities from the segmentation generator's contrasts (T1-, T2-, FLAIR-, PD-like or
   random), skull and scalp dropped at random (skull-stripped inputs), averaged down to 4 mm
   when supersampled (partial volume), bias field, an acquisition blur (thick slices along any axis), noise;
4. a random field of view: cut at the neck, at the vertex, tight around the brain, or through
   one side of the head; everything outside is 0, as the localizer's resampling pads it;
5. normalise_tensor: the inference path's own scaling (runtime.localizer.normalise), written
   here in torch so that training needs neither SimpleITK nor the runtime (a lent GPU has
   neither).
Targets per 4 mm voxel: 0 outside the head's intracranial space, 1 intracranial (every label
below 500 but the hippocampi: brain, ventricles, CSF, lesions), 2 left and 3 right hippocampus
(a hippocampus filling a third of the voxel wins it; grown by `hippocampus_dilation` voxels into
the intracranial space around it). `icv_mm3` is the visible intracranial
volume on the sampling grid, the truth for the localizer's intracranial estimate.

Why `supersample` defaults to 1: at 2 mm the generator costs about 1 CPU-second a head, four
times a training step on 2 CPU cores; the localizer needs positions and a coarse volume, and
the thick-slice blur below still gives it partial volume. Atrophy is one 4 mm peeling step
with most of the boundary kept (a 4 mm step would otherwise take most of a hippocampus).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from .augment import _rotation_matrices
from .synth import SynthConfig, SyntheticGenerator, _gaussian_blur_axis
from .synth_pathology import PathologyConfig, apply_pathology

BACKGROUND, INTRACRANIAL, LEFT, RIGHT = 0, 1, 2, 3


def normalise_tensor(images, inside):
    """runtime.localizer.normalise() for a torch batch (B, 1, z, y, x) with a float mask of the field of view."""
    out = images.clone()
    for b in range(images.shape[0]):
        mask = inside[b] > 0
        values = images[b][mask]
        if values.numel() == 0:
            out[b] = 0
            continue
        low, high = (float(q) for q in values.float().quantile(values.new_tensor([0.005, 0.995])))
        out[b] = ((images[b] - low) / max(high - low, 1e-6)).clamp(0, 1) * mask
    return out


@dataclass
class HeadConfig:
    grid: int = 64  # output voxels per axis at 4 mm (the localizer's 256 mm cube)
    rotation_degrees: float = 25.0
    scale_range: float = 0.12
    translation_mm: float = 30.0
    elastic_mm: float = 2.0
    skull_strip_probability: float = 0.3
    field_of_view_probability: float = 0.5
    thick_slice_probability: float = 0.5
    bias_std: float = 0.35
    noise_max: float = 0.06
    gamma_std: float = 0.3
    hippocampus_weight: float = 2.0  # a hippocampus filling 1/3 of a voxel wins it over the rest
    # The hippocampus targets are dilated by this many 4 mm voxels (a 3x3x3 cube per step): a
    # 55-voxel target was too rare to learn in the steps 2 CPU cores afford (after 200 steps the
    # network still gave it 4 % probability everywhere); the dilated region keeps its centre, and
    # the localizer needs the centre (the box) and the side's presence, not the outline.
    hippocampus_dilation: int = 1
    supersample: int = 1
    pathology: PathologyConfig = field(default_factory=lambda: PathologyConfig(
        atrophy_probability=0.2, atrophy_max_steps=1, atrophy_keep=(0.6, 0.9), ventricle_max_steps=1, growth_probability=0.0,
        large_lesion_probability=0.12))

    def to_dict(self) -> dict:
        return asdict(self)


class HeadGenerator(SyntheticGenerator):
    """Reuses the segmentation generator's label tables and contrasts on whole heads."""

    def __init__(self, heads: np.ndarray, values: np.ndarray, config: HeadConfig | None = None, device="cpu"):
        self.head_config = config or HeadConfig()
        contrast = SynthConfig(skull_strip_probability=self.head_config.skull_strip_probability)
        super().__init__(heads, values, contrast, device)
        lookup = np.zeros(len(self.values), dtype=np.int64)
        lookup[(self.values > 0) & (self.values < 500)] = INTRACRANIAL
        lookup[self.values == 17] = LEFT
        lookup[self.values == 53] = RIGHT
        self.target_of_label = torch.as_tensor(lookup, device=self.device)

    def _head_labels(self, indices, generator):
        """(B, sg, sg, sg) labels (s = supersample) in a random pose, and whether each sample was mirrored."""
        config, device = self.head_config, self.device
        batch = len(indices)
        angles = (torch.rand((batch, 3), generator=generator, device=device) * 2 - 1) * math.radians(config.rotation_degrees)
        scales = 1 + (torch.rand((batch, 3), generator=generator, device=device) * 2 - 1) * config.scale_range
        shifts = (torch.rand((batch, 3), generator=generator, device=device) * 2 - 1) * config.translation_mm
        mirrored = torch.rand(batch, generator=generator, device=device) < 0.5
        linear = _rotation_matrices(angles) * scales[:, None, :]
        flip = torch.ones(batch, 3, device=device)
        flip[:, 0] = torch.where(mirrored, -1.0, 1.0)  # x: R-L
        fine = config.supersample * config.grid
        extent = 2.0 * np.asarray(self.crops.shape[1:][::-1], dtype=np.float32)  # x, y, z (mm) of the 2 mm maps
        out_extent = 4.0 * config.grid
        # Normalised output coords (out_extent/2 mm) -> normalised map coords (extent/2 mm).
        ratio = torch.as_tensor(out_extent / extent, device=device)
        theta = linear * flip[:, None, :] * ratio[None, :, None]
        translation = shifts / torch.as_tensor(extent / 2, device=device)[None]
        grid = F.affine_grid(torch.cat([theta, translation[:, :, None]], dim=2), [batch, 1, fine, fine, fine], align_corners=False)
        if config.elastic_mm > 0:
            coarse = torch.randn((batch, 3, 5, 5, 5), generator=generator, device=device) * config.elastic_mm
            displacement = F.interpolate(coarse, size=(fine,) * 3, mode="trilinear", align_corners=True)
            grid = grid + displacement.permute(0, 2, 3, 4, 1) / torch.as_tensor(extent / 2, device=device)
        maps = self.crops[indices].float()[:, None]
        labels = F.grid_sample(maps, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].long()
        return labels, mirrored

    def _field_of_view(self, targets_fine, generator) -> torch.Tensor:
        """(B, 1, g, g, g) float mask of the simulated field of view on the 4 mm grid."""
        config, device = self.head_config, self.device
        batch, g = targets_fine.shape[0], config.grid
        mask = torch.ones((batch, 1, g, g, g), device=device)
        brain = F.max_pool3d((targets_fine > 0).float()[:, None], config.supersample)[:, 0] > 0
        for b in range(batch):
            if float(torch.rand((), generator=generator, device=device)) >= config.field_of_view_probability:
                continue
            where = torch.nonzero(brain[b])
            if where.numel() == 0:
                continue
            low, high = where.min(dim=0).values, where.max(dim=0).values
            kind = float(torch.rand((), generator=generator, device=device))
            if kind < 0.35:  # cut at the neck: the field of view starts a little below the brain
                z0 = int(low[0]) - int(torch.randint(0, 6, (), generator=generator, device=device))
                mask[b, :, :max(z0, 0)] = 0
            elif kind < 0.55:  # cut at the vertex: the top of the brain is missing
                z1 = int(high[0]) - int(torch.randint(0, 8, (), generator=generator, device=device))
                mask[b, :, z1 + 1:] = 0
            elif kind < 0.85:  # tight around the brain (a brain-only crop)
                margin = int(torch.randint(0, 4, (), generator=generator, device=device))
                keep = torch.zeros((g, g, g), device=device)
                lo = (low - margin).clamp_min(0)
                hi = (high + margin + 1).clamp_max(g)
                keep[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
                mask[b, 0] = keep
            else:  # one side of the head cut away, at a random depth (may take a hippocampus)
                x = int(torch.randint(int(low[2]), int(high[2]) + 1, (), generator=generator, device=device))
                if float(torch.rand((), generator=generator, device=device)) < 0.5:
                    mask[b, :, :, :, :x] = 0
                else:
                    mask[b, :, :, :, x:] = 0
        return mask

    def sample(self, batch_size: int, generator: torch.Generator, indices: torch.Tensor | None = None):
        """(images (B, 1, g, g, g), targets (B, g, g, g) int64, visible intracranial mm3 (B,))."""
        config, device = self.head_config, self.device
        if indices is None:
            indices = torch.randint(0, len(self.crops), (batch_size,), generator=generator, device=device)
        labels, mirrored = self._head_labels(indices, generator)
        labels = apply_pathology(labels, self.classes, config.pathology, generator, voxel_mm=4.0 / config.supersample)
        batch = labels.shape[0]
        means = self._label_means(batch, generator)
        texture = torch.rand((batch, len(self.values)), generator=generator, device=device) * self.config.texture
        flat = labels.view(batch, -1)
        fine_images = torch.gather(means, 1, flat) + torch.gather(texture, 1, flat) * torch.randn(flat.shape, generator=generator, device=device)
        images = F.avg_pool3d(fine_images.view(batch, 1, *labels.shape[1:]).clamp_min(0), config.supersample)
        # Targets from the 2 mm classes' shares of each 4 mm voxel.
        fine_targets = self.target_of_label[labels]
        # A mirrored head has its left hippocampus on the right: the sides' targets follow the anatomy's place.
        swap = mirrored[:, None, None, None] & (fine_targets >= LEFT)
        fine_targets = torch.where(swap, (LEFT + RIGHT) - fine_targets, fine_targets)
        if config.supersample > 1:
            shares = F.avg_pool3d(F.one_hot(fine_targets, 4).permute(0, 4, 1, 2, 3).float(), config.supersample)
            weights = torch.tensor([1.0, 1.0, config.hippocampus_weight, config.hippocampus_weight], device=device)
            targets = (shares * weights[None, :, None, None, None]).argmax(dim=1)
        else:
            targets = fine_targets
        for _ in range(config.hippocampus_dilation):
            for side in (LEFT, RIGHT):
                grown = F.max_pool3d((targets == side).float()[:, None], 3, stride=1, padding=1)[:, 0] > 0
                targets = torch.where(grown & (targets == INTRACRANIAL), torch.full_like(targets, side), targets)
        bias = F.interpolate(torch.randn((batch, 1, 4, 4, 4), generator=generator, device=device) * config.bias_std,
                             size=(config.grid,) * 3, mode="trilinear", align_corners=True)
        images = images * torch.exp(bias)
        for b in range(batch):  # thick slices along one axis: up to 6 mm at 4 mm voxels
            if float(torch.rand((), generator=generator, device=device)) < config.thick_slice_probability:
                axis = int(torch.randint(0, 3, (), generator=generator, device=device))
                sigma = torch.rand(1, generator=generator, device=device) * 0.6
                images[b:b + 1] = _gaussian_blur_axis(images[b:b + 1], sigma, axis)
        noise = torch.rand((batch, 1, 1, 1, 1), generator=generator, device=device) * config.noise_max
        images = (images + noise * torch.randn(images.shape, generator=generator, device=device)).clamp_min(0)
        high = images.flatten(1).amax(dim=1).clamp_min(1e-6)[:, None, None, None, None]
        gamma = torch.exp(torch.randn((batch, 1, 1, 1, 1), generator=generator, device=device) * config.gamma_std)
        images = (images / high) ** gamma
        inside = self._field_of_view(fine_targets, generator)
        self.last_field_of_view = inside[:, 0] > 0  # for evaluation: which voxels the "scan" covers
        images = images * inside
        targets = torch.where(inside[:, 0] > 0, targets, torch.zeros_like(targets))
        visible = F.interpolate(inside, scale_factor=config.supersample, mode="nearest")[:, 0] > 0
        icv_mm3 = ((fine_targets > 0) & visible).flatten(1).sum(dim=1).float() * (4.0 / config.supersample) ** 3
        return normalise_tensor(images, inside), targets, icv_mm3
