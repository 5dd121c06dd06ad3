"""Pathology and size on synthetic label maps (pure torch, batched, deterministic under a seed):
what teaches a network that a hippocampus is tissue, not a shape.

Both synthetic generators (synth.py for the segmentation crops, localizer_synth.py for the
coarse whole heads) call `apply_pathology` on their deformed label patches before intensities
are drawn, so the label map stays the truth: voxels turned into fluid or lesion are no longer
hippocampus, and the target follows.

Per sample, each with its own probability (PathologyConfig):
- atrophy: the hippocampus loses boundary voxels to the temporal horn's CSF in up to a few
  smooth, random steps (a 3,500 mm3 hippocampus can end near 600 mm3), and the ventricles widen
  into the surrounding tissue;
- growth: the hippocampus gains boundary voxels from the white matter and cortex around it, so
  large hippocampi are as common as small ones and the network cannot learn one typical size
  (the cause of a volume slope well below 1: small ones pulled up, large ones pulled down);
- cavity: the hippocampus, dilated by 0-3 mm and whole or cut by a random plane, becomes CSF (a
  resection);
- lesions: ellipsoids of lesion tissue (FreeSurfer's "Left-Lesion" value 25, with an intensity
  of its own) or of CSF: small ones scattered like MS plaques, or one large one like a tumour or
  a cavity next to or over the hippocampus.

Label indices are compact (see scripts/make_synth_crops.py); `LabelClasses` finds the indices of
the FreeSurfer values these operations need.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

HIPPOCAMPUS_VALUES = (17, 53)
LESION_VALUE = 25  # FreeSurfer's "Left-Lesion": a tissue class of its own, inside the brain
CSF_VALUE = 24
TEMPORAL_HORN_VALUES = (5, 44)
VENTRICLE_VALUES = (4, 43, 5, 44)
GROWTH_SOURCE_VALUES = (2, 41, 3, 42)  # white matter and cortex around the hippocampus


@dataclass
class PathologyConfig:
    atrophy_probability: float = 0.3
    atrophy_max_steps: int = 4  # 1 mm boundary-peeling steps
    atrophy_keep: tuple = (0.2, 0.7)  # share of each boundary layer kept, drawn per sample
    ventricle_max_steps: int = 2
    growth_probability: float = 0.2
    growth_max_steps: int = 2
    cavity_probability: float = 0.08
    lesion_probability: float = 0.2
    large_lesion_probability: float = 0.08

    def to_dict(self) -> dict:
        return asdict(self)


class LabelClasses:
    """Compact indices of the FreeSurfer values the pathology needs, for one `values` table.
    `values` must already contain LESION_VALUE (generators append it: see with_lesion_value)."""

    def __init__(self, values, device="cpu"):
        values = np.asarray(values, dtype=np.int64)
        self.values = values

        def indices(wanted):
            return torch.tensor(np.flatnonzero(np.isin(values, wanted)), dtype=torch.long, device=device)

        def table(wanted):  # index -> bool; indexing a table is several times faster than isin
            return torch.as_tensor(np.isin(values, wanted), device=device)

        def one(wanted, fallback):
            found = np.flatnonzero(np.isin(values, wanted))
            if found.size == 0:
                found = np.flatnonzero(np.isin(values, fallback))
            if found.size == 0:
                raise ValueError(f"none of the label values {wanted} or {fallback} is in the table")
            return int(found[0])

        self.hippocampus = indices(HIPPOCAMPUS_VALUES)  # compact indices of the two sides' labels
        self.csf = one((CSF_VALUE,), (4, 43, 5, 44))
        self.horn = one(TEMPORAL_HORN_VALUES, (CSF_VALUE, 4, 43))
        self.lesion = one((LESION_VALUE,), ())
        self.is_hippocampus = table(HIPPOCAMPUS_VALUES)
        self.is_ventricle = table(VENTRICLE_VALUES)
        self.is_growth_source = table(GROWTH_SOURCE_VALUES)
        self.is_brain = table(values[(values > 0) & (values < 500)])


def with_lesion_value(values) -> np.ndarray:
    """The label table with the lesion value appended if it is missing (its index is last)."""
    values = np.asarray(values, dtype=np.int64)
    return values if LESION_VALUE in values else np.append(values, LESION_VALUE)


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """(B, z, y, x) bool -> 6-connected dilation by one voxel (a cross, not a cube: rounder)."""
    m = mask.float()[:, None]
    out = m.clone()
    for axis in range(3):
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = 1
        shape = [1, 1, 1]
        shape[axis] = 3
        out = torch.maximum(out, F.max_pool3d(F.pad(m, pad), kernel_size=tuple(shape), stride=1))
    return out[:, 0] > 0


def _erode(mask: torch.Tensor) -> torch.Tensor:
    return ~_dilate(~mask)


def _smooth_noise(shape, generator, device) -> torch.Tensor:
    """Uniform-ish noise in [0, 1] that varies smoothly over ~8 voxels: random peeling then
    removes patches of boundary, not salt and pepper."""
    batch, size = shape[0], shape[1:]
    coarse = torch.rand((batch, 1, *[max(2, s // 8) for s in size]), generator=generator, device=device)
    return F.interpolate(coarse, size=tuple(size), mode="trilinear", align_corners=True)[:, 0]


def _per_sample(mask_1d: torch.Tensor) -> torch.Tensor:
    return mask_1d[:, None, None, None]


def _random_steps(batch, max_steps, active, generator, device) -> torch.Tensor:
    steps = torch.randint(1, max_steps + 1, (batch,), generator=generator, device=device)
    return torch.where(active, steps, torch.zeros_like(steps))


def _peel(labels, region_of, into, steps, keep_fraction, generator, voxel_scale, allowed=None):
    """Move boundary voxels of `region_of(labels)` into label `into` for `steps` (per sample)
    steps, keeping a smooth random share `keep_fraction` (per sample) of each boundary.
    `allowed` (a function of labels) limits growth to some neighbours."""
    device = labels.device
    total = int(steps.max()) * voxel_scale if steps.numel() else 0
    for step in range(total):
        rows = torch.nonzero(steps * voxel_scale > step).flatten()  # only the samples still peeling
        if rows.numel() == 0:
            break
        sub = labels[rows]
        region = region_of(sub)
        if allowed is None:  # peel: the region's outer layer leaves it
            boundary = region & ~_erode(region)
        else:  # grow: a layer of allowed neighbours joins it
            boundary = _dilate(region) & ~region & allowed(sub)
        chosen = boundary & (_smooth_noise(sub.shape, generator, device) > _per_sample(keep_fraction[rows]))
        labels[rows] = torch.where(chosen, into(sub) if callable(into) else torch.full_like(sub, into), sub)
    return labels


def _ellipsoids(shape, centres, radii, generator, device) -> torch.Tensor:
    """(B, z, y, x) bool: one ellipsoid per sample (centres, radii (B, 3) in voxels), with a
    wobbly surface so lesions are not perfect spheres."""
    grids = torch.meshgrid(*[torch.arange(s, device=device, dtype=torch.float32) for s in shape[1:]], indexing="ij")
    distance = sum(((g[None] - centres[:, a, None, None, None]) / radii[:, a, None, None, None]) ** 2 for a, g in enumerate(grids))
    return distance <= 1.0 + 0.4 * (_smooth_noise(shape, generator, device) - 0.5)


def _one_hippocampus(labels, classes, generator) -> torch.Tensor:
    """(B, z, y, x) bool: one hippocampus per sample, picked at random among those in view (a
    whole head has two; a resection or a tumour takes one side)."""
    present = torch.stack([(labels == index).flatten(1).any(dim=1) for index in classes.hippocampus], dim=1)
    scores = torch.rand(present.shape, generator=generator, device=labels.device) * present
    chosen = classes.hippocampus[scores.argmax(dim=1)]
    return labels == chosen[:, None, None, None]


def _centres(mask: torch.Tensor) -> torch.Tensor:
    """(B, 3) voxel centre of each sample's mask (patch centre where it is empty)."""
    mask = mask.float()
    grids = torch.meshgrid(*[torch.arange(s, device=mask.device, dtype=torch.float32) for s in mask.shape[1:]], indexing="ij")
    count = mask.sum(dim=(1, 2, 3)).clamp_min(1)
    centres = torch.stack([(mask * g[None]).sum(dim=(1, 2, 3)) / count for g in grids], dim=1)
    middle = torch.tensor([(s - 1) / 2 for s in mask.shape[1:]], device=mask.device)
    return torch.where(mask.sum(dim=(1, 2, 3))[:, None] > 0, centres, middle[None])


def apply_pathology(labels: torch.Tensor, classes: LabelClasses, config: PathologyConfig, generator,
                    voxel_mm: float = 1.0) -> torch.Tensor:
    """Pathology on (B, z, y, x) compact label indices on a grid of `voxel_mm` voxels (0.5 on
    the segmentation generator's supersampled grid, 4 on the localizer's). Peeling steps are
    1 mm (at least one voxel), lesion sizes in mm. Returns new labels; the input is kept."""
    batch, device = labels.shape[0], labels.device
    labels = labels.clone()
    voxel_scale = max(1, int(round(1.0 / voxel_mm)))  # voxels per 1 mm peeling step
    per_mm = 1.0 / voxel_mm

    def draw(probability):
        return torch.rand(batch, generator=generator, device=device) < probability

    def hippocampus(l):
        return classes.is_hippocampus[l]

    def brain_not_hippocampus(l):
        return classes.is_brain[l] & ~classes.is_hippocampus[l] & (l != classes.lesion)

    # Atrophy: the hippocampus shrinks into the temporal horn, the ventricles widen.
    atrophy = draw(config.atrophy_probability)
    if bool(atrophy.any()):
        steps = _random_steps(batch, config.atrophy_max_steps, atrophy, generator, device)
        low, high = config.atrophy_keep
        keep = torch.rand(batch, generator=generator, device=device) * (high - low) + low
        labels = _peel(labels, hippocampus, classes.horn, steps, keep, generator, voxel_scale)
        widen = _random_steps(batch, config.ventricle_max_steps, atrophy, generator, device)
        labels = _peel(labels, lambda l: classes.is_ventricle[l], classes.horn, widen,
                       torch.full((batch,), 0.4, device=device), generator, voxel_scale, allowed=brain_not_hippocampus)

    # Growth: a larger hippocampus than the map's, from the tissue around it.
    growth = draw(config.growth_probability) & ~atrophy
    if bool(growth.any()):
        steps = _random_steps(batch, config.growth_max_steps, growth, generator, device)
        keep = torch.rand(batch, generator=generator, device=device) * 0.5 + 0.3
        side = classes.hippocampus[0]

        def into_hippocampus(l):  # the nearest hippocampus label (left or right) takes the voxel
            grown = _dilate(l == classes.hippocampus[-1]) if len(classes.hippocampus) > 1 else torch.zeros_like(l, dtype=torch.bool)
            return torch.where(grown, classes.hippocampus[-1], side).expand_as(l)

        labels = _peel(labels, hippocampus, into_hippocampus, steps, keep, generator, voxel_scale,
                       allowed=lambda l: classes.is_growth_source[l])

    # Cavity: a resected hippocampus, whole or in part, becomes CSF.
    cavity = draw(config.cavity_probability)
    if bool(cavity.any()):
        region = _one_hippocampus(labels, classes, generator)
        centres = _centres(region)
        margin = int(round(int(torch.randint(0, 4, (), generator=generator, device=device)) * per_mm))
        for _ in range(margin):
            region = _dilate(region) & (labels != 0)
        normal = torch.randn((batch, 3), generator=generator, device=device)
        grids = torch.meshgrid(*[torch.arange(s, device=device, dtype=torch.float32) for s in labels.shape[1:]], indexing="ij")
        side = sum(normal[:, a, None, None, None] * (g[None] - centres[:, a, None, None, None]) for a, g in enumerate(grids))
        whole = _per_sample(draw(0.5))
        offset = _per_sample((torch.rand(batch, generator=generator, device=device) - 0.5) * 10 * per_mm)
        part = whole | (side > offset)
        labels = torch.where(region & part & _per_sample(cavity), torch.full_like(labels, classes.csf), labels)

    # Lesions: scattered small ones (MS-like) anywhere in the brain, or one large one near the
    # hippocampus (tumour, or a fluid cavity), which removes the tissue it covers.
    lesion = draw(config.lesion_probability)
    if bool(lesion.any()):
        for _ in range(6):
            centres = torch.rand((batch, 3), generator=generator, device=device) * torch.tensor(
                [s - 1 for s in labels.shape[1:]], device=device, dtype=torch.float32)
            radii = ((torch.rand((batch, 3), generator=generator, device=device) * 3 + 1) * per_mm).clamp_min(0.6)
            blob = _ellipsoids(labels.shape, centres, radii, generator, device) & classes.is_brain[labels]
            labels = torch.where(blob & _per_sample(lesion), torch.full_like(labels, classes.lesion), labels)
    large = draw(config.large_lesion_probability)
    if bool(large.any()):
        sites = _centres(_one_hippocampus(labels, classes, generator))
        centres = sites + torch.randn((batch, 3), generator=generator, device=device) * 8 * per_mm
        radii = (torch.rand((batch, 3), generator=generator, device=device) * 10 + 5) * per_mm
        fluid = _per_sample(draw(0.4))
        blob = _ellipsoids(labels.shape, centres, radii, generator, device) & (labels != 0) & _per_sample(large)
        value = torch.where(fluid, torch.full_like(labels, classes.csf), torch.full_like(labels, classes.lesion))
        labels = torch.where(blob, value, labels)
    return labels
