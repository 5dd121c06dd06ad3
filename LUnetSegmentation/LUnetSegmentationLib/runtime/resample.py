"""Geometry: move images onto the network's grid and labels back (SimpleITK).

The network was trained on axis-aligned grids with one fixed direction and spacing. Any input
(oblique, LPS or RAS stored, permuted axes, other voxel sizes) is resampled onto such a grid
that covers the same physical box, and results go back onto the input's own grid, so labels
land on the right voxels in physical (RAS) space whatever the input's storage.
"""
from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

from .preprocess import InputError, PreprocessingConfig

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])  # Slicer and NIfTI use RAS, ITK uses LPS


def image_from_ijk_to_ras(voxels_kji: np.ndarray, ijk_to_ras: np.ndarray, name: str = "volume") -> sitk.Image:
    """Voxels (k, j, i order) and a 4x4 IJK-to-RAS matrix (Slicer node, NIfTI affine) -> a
    SimpleITK image with the same geometry in ITK's LPS convention."""
    lps = RAS_TO_LPS @ np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"{name!r} has a zero voxel spacing; its geometry is broken.")
    image = sitk.GetImageFromArray(np.ascontiguousarray(voxels_kji))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps / spacing).flatten().tolist())
    image.SetOrigin((RAS_TO_LPS @ np.asarray(ijk_to_ras, dtype=float)[:3, 3]).tolist())
    return image


def _direction(config: PreprocessingConfig) -> np.ndarray:
    return np.asarray(config.direction, dtype=float).reshape(3, 3)


def physical_corners(image: sitk.Image, index_box: tuple[list[int], list[int]] | None = None) -> np.ndarray:
    """The 8 corners (LPS mm) of the image or of an index box [start, stop) inside it."""
    start, stop = index_box if index_box else ([0, 0, 0], list(image.GetSize()))
    corners = []
    for choice in itertools.product(*[(a - 0.5, b - 0.5) for a, b in zip(start, stop)]):
        corners.append(image.TransformContinuousIndexToPhysicalPoint([float(c) for c in choice]))
    return np.array(corners)


def is_on_model_grid(image: sitk.Image, config: PreprocessingConfig, tolerance: float = 1e-3) -> bool:
    return bool(
        np.allclose(image.GetSpacing(), config.spacing, atol=tolerance)
        and np.allclose(np.reshape(image.GetDirection(), (3, 3)), _direction(config), atol=tolerance)
    )


def model_grid_for_box(corners_lps: np.ndarray, config: PreprocessingConfig) -> sitk.Image:
    """An empty image on the model's direction and spacing that covers the given points."""
    direction = _direction(config)
    spacing = np.asarray(config.spacing, dtype=float)
    # Coordinates of the corners along the model grid's axes.
    local = corners_lps @ direction  # row p -> D^T p
    low, high = local.min(axis=0), local.max(axis=0)
    size = np.maximum(np.ceil((high - low) / spacing - 1e-6).astype(int), 1)
    # Voxel centres start half a voxel inside the box.
    origin = direction @ (low + spacing / 2)
    grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    grid.SetSpacing(spacing.tolist())
    grid.SetDirection(direction.flatten().tolist())
    grid.SetOrigin(origin.tolist())
    return grid


def to_model_grid(image: sitk.Image, config: PreprocessingConfig, index_box=None) -> sitk.Image:
    """Resample (linear) the image, or an index box of it, onto the model's grid.

    An image already on the model's grid is cropped, never interpolated.
    """
    image = sitk.Cast(image, sitk.sitkFloat32)
    if is_on_model_grid(image, config):
        if index_box is None:
            return image
        start, stop = index_box
        return sitk.RegionOfInterest(image, [int(b - a) for a, b in zip(start, stop)], [int(a) for a in start])
    reference = model_grid_for_box(physical_corners(image, index_box), config)
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def probabilities_to_input_grid(probabilities: np.ndarray, model_grid: sitk.Image, target: sitk.Image) -> np.ndarray:
    """Map per-class probabilities (C, z, y, x on the model grid) onto the target grid and
    take the arg-max there; voxels outside the model grid become background (0).

    Interpolating probabilities rather than labels gives smooth boundaries when the target
    grid is finer or rotated.
    """
    # Where the model grid sits on the target's lattice (continuous target index of its origin).
    position = np.asarray(target.TransformPhysicalPointToContinuousIndex(model_grid.GetOrigin()))
    if is_on_model_grid(target, _config_of(model_grid)) and np.allclose(position, np.round(position), atol=1e-3):
        # Same lattice: paste without interpolation.
        offset = np.round(position).astype(int)
        out = np.zeros(target.GetSize()[::-1], dtype=np.uint8)
        labels = probabilities.argmax(axis=0).astype(np.uint8)
        src = [slice(max(0, -o), min(n, t - o)) for o, n, t in zip(offset[::-1], labels.shape, out.shape)]
        dst = [slice(max(0, o), max(0, o) + (s.stop - s.start)) for o, s in zip(offset[::-1], src)]
        if all(s.stop > s.start for s in src):
            out[tuple(dst)] = labels[tuple(src)]
        return out
    return resample_argmax(probabilities, model_grid, target)


def resample_argmax(maps: np.ndarray, source: sitk.Image, target: sitk.Image) -> np.ndarray:
    """Per-class maps (C, z, y, x on `source`'s grid) -> uint8 labels on `target`'s grid: each
    map is resampled linearly and the arg-max taken there (outside the source, class 0 wins).
    Smoother than nearest-neighbour label resampling when the target grid is finer or rotated."""
    best, best_value = None, None
    for label in range(maps.shape[0]):
        channel = sitk.GetImageFromArray(np.asarray(maps[label], dtype=np.float32))
        channel.CopyInformation(source)
        default = 1.0 if label == 0 else 0.0
        resampled = sitk.GetArrayFromImage(
            sitk.Resample(channel, target, sitk.Transform(), sitk.sitkLinear, default, sitk.sitkFloat32)
        )
        if best is None:
            best, best_value = np.zeros(resampled.shape, dtype=np.uint8), resampled
        else:
            better = resampled > best_value
            best[better] = label
            best_value = np.where(better, resampled, best_value)
    return best


def _config_of(image: sitk.Image) -> PreprocessingConfig:
    return PreprocessingConfig(spacing=list(image.GetSpacing()), direction=list(image.GetDirection()))


def index_box_for_ras_box(image: sitk.Image, center_ras, size_mm) -> tuple[list[int], list[int]]:
    """The index box [start, stop) of `image` covering an axis-aligned RAS box (centre, size in
    mm), as the command line's and batch's `--roi` give it; refuses a box outside the image."""
    center = np.asarray(center_ras, dtype=float)
    half = np.asarray(size_mm, dtype=float) / 2
    if center.shape != (3,) or half.shape != (3,) or np.any(half <= 0):
        raise InputError("A region of interest needs a centre (R, A, S mm) and three positive sizes (mm).")
    indices = []
    for corner in itertools.product(*[(-h, h) for h in half]):
        lps = RAS_TO_LPS @ (center + np.asarray(corner))
        indices.append(image.TransformPhysicalPointToContinuousIndex(lps.tolist()))
    indices = np.asarray(indices)
    size = np.asarray(image.GetSize())
    # Voxel v covers [v - 0.5, v + 0.5]: take every voxel whose centre region meets the box.
    start = np.clip(np.floor(indices.min(axis=0) + 0.5).astype(int), 0, size)
    stop = np.clip(np.ceil(indices.max(axis=0) + 0.5).astype(int), 0, size)
    if np.any(stop <= start):
        raise InputError(
            "The region of interest (centre {} mm RAS, size {} mm) does not overlap the volume. Check its "
            "coordinates: they are RAS millimetres, as Slicer shows them.".format(
                ", ".join(f"{c:g}" for c in center), "x".join(f"{2 * h:g}" for h in half))
        )
    return start.tolist(), stop.tolist()
