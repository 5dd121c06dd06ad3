"""Scans as they might have been acquired: coarser voxels, thick slices, a crop a user would load.

For evaluation and experiments (resolution robustness, the presence check), not for
segmentation: the runtime never resamples a user's scan this way.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def simulate_acquisition(image: sitk.Image, mm: float, axis: str | None = None) -> sitk.Image:
    """The same head as if acquired with coarser voxels: `mm` along every axis (axis=None) or
    only along the image axis closest to the physical axis "R", "A" or "S" (thick slices).
    A Gaussian slice profile (FWHM = the new voxel size) then linear resampling onto a grid
    covering the same field of view. For tests and evaluation of resolution robustness."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    target = spacing.copy()
    if axis is None:
        target[:] = mm
    else:
        row = {"R": 0, "A": 1, "S": 2}[axis.upper()]  # LPS rows: x (R-L), y (A-P), z (S-I)
        direction = np.reshape(image.GetDirection(), (3, 3))
        target[int(np.argmax(np.abs(direction[row])))] = mm
    sigma = np.sqrt(np.maximum(target**2 - spacing**2, 0.0)) / 2.355
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), [float(max(s, 1e-3)) for s in sigma])
    size = np.maximum(np.round(np.asarray(image.GetSize()) * spacing / target), 1).astype(int)
    corner = np.asarray(image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))
    direction = np.reshape(image.GetDirection(), (3, 3))
    origin = corner + direction @ (target / 2)
    return sitk.Resample(smooth, [int(s) for s in size], sitk.Transform(), sitk.sitkLinear, origin.tolist(),
                         target.tolist(), image.GetDirection(), 0.0, sitk.sitkFloat32)


def crop_around_point(image: sitk.Image, centre_lps, size_mm) -> sitk.Image:
    """A 1 mm crop of `size_mm` (x, y, z) around a physical point, on the RAS-aligned grid the
    models work on (linear; outside the image 0): the shape of a crop a user would load."""
    grid = sitk.Image([int(s) for s in size_mm], sitk.sitkFloat32)
    grid.SetDirection([-1, 0, 0, 0, -1, 0, 0, 0, 1])
    grid.SetOrigin((np.asarray(centre_lps) - np.diag([-1, -1, 1]) @ ((np.asarray(size_mm) - 1) / 2)).tolist())
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0)
