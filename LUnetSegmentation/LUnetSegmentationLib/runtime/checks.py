"""The single entry check: is this image one the model can segment? (SimpleITK and numpy only)

Every caller (Slicer panel, console `segment`, batch `segmentFiles`, CLI, BIDS App, web panel)
calls `check_input(image, name)` once, right after the image is read or taken from its node and
before any work. It raises InputError for an image that must be refused, with a message that
says what is wrong and what to do, and returns warnings (strings) for an image that can be
segmented but whose result deserves caution; callers show the warnings with the result.

The messages are those of the earlier `engine.check_image` and `api.checkVoxels`, unchanged
(Testing/test_bad_input.py asserts them).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .preprocess import InputError, check_finite

MIN_VOXELS_PER_AXIS = 4  # fewer along any axis: a 2D slice or a stack too thin to segment
MAX_SPACING_MM = 6.0  # coarser voxels cannot resolve a ~4 cm long hippocampus
MAX_ANISOTROPY = 12.0


def check_geometry(image: sitk.Image, what: str = "volume") -> None:
    """Components, dimension, size and spacing: the checks that need no voxel values."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"The {what} has {image.GetNumberOfComponentsPerPixel()} components per voxel (a vector or colour "
            "volume). Convert it to a scalar volume first (Slicer: 'Vector to Scalar Volume')."
        )
    if image.GetDimension() != 3:
        raise InputError(f"The {what} is {image.GetDimension()}D; the model needs a 3D MRI volume.")
    size = image.GetSize()
    if min(size) < MIN_VOXELS_PER_AXIS:
        raise InputError(
            f"The {what} is {size[0]}x{size[1]}x{size[2]} voxels: a 2D slice or a slab too thin to segment. "
            f"The model needs a 3D volume with at least {MIN_VOXELS_PER_AXIS} voxels along every axis."
        )
    spacing = np.asarray(image.GetSpacing())
    if not np.all(np.isfinite(spacing)) or spacing.min() <= 0:
        raise InputError(
            "The voxel spacing {} mm of the {} is not a positive size; its header is damaged. Fix the header "
            "(or export the volume again).".format("x".join(f"{s:g}" for s in spacing), what)
        )
    if spacing.max() > MAX_SPACING_MM or spacing.max() / spacing.min() > MAX_ANISOTROPY:
        raise InputError(
            "The voxel spacing {} mm is too coarse or too anisotropic (limit: {} mm, ratio {}) to resolve the "
            "hippocampus. Use a 3D T1 acquisition (about 1 mm isotropic) instead.".format(
                "x".join(f"{s:g}" for s in spacing), MAX_SPACING_MM, MAX_ANISOTROPY
            )
        )


def check_input(image: sitk.Image, name: str) -> list[str]:
    """Refuse (InputError) an image the model cannot use; the warnings for one it can.

    Refused: not scalar, not 3D, under 4 voxels along an axis, spacing not positive, coarser
    than 6 mm or more anisotropic than 12:1, no voxels, NaN/Inf voxels, constant.
    """
    what = f"volume {name!r}"
    check_geometry(image, what)
    array = sitk.GetArrayViewFromImage(image)
    check_finite(array, what=what)
    low, high = array.min(), array.max()
    if low == high:
        raise InputError(
            f"The volume {name!r} is constant (every voxel is {float(low):g}), so there is nothing to "
            "segment. Check that the right volume is selected and that it loaded completely."
        )
    warnings: list[str] = []
    return warnings
