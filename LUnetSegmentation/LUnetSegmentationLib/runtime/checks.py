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

from .preprocess import InputError, check_finite, float32_offset

MIN_VOXELS_PER_AXIS = 4  # fewer along any axis: a 2D slice or a stack too thin to segment
MAX_SPACING_MM = 6.0  # coarser voxels cannot resolve a ~4 cm long hippocampus
MAX_ANISOTROPY = 12.0
# Finer voxels than any MRI of a whole hippocampus (ex vivo scans reach about 0.1 mm): a header in
# metres or micrometres. Read as millimetres, such a scan is a speck the model sees as constant.
MIN_SPACING_MM = 0.05
# Largest |cos| between two axes of the voxel grid still taken as a right angle: 1e-3 is 0.06
# degrees, above the rounding of float32 headers and far below any real shear.
ORTHOGONAL_TOLERANCE = 1e-3


def shear_degrees(direction) -> float:
    """How far from 90 degrees the most oblique pair of grid axes meet (0 for an orthonormal
    direction matrix). `direction`: ITK's row-major direction, one axis per column."""
    n = int(round(len(direction) ** 0.5))
    axes = np.asarray(direction, dtype=float).reshape(n, n)
    axes = axes / np.linalg.norm(axes, axis=0)
    worst = 0.0
    for a in range(n):
        for b in range(a + 1, n):
            worst = max(worst, abs(float(axes[:, a] @ axes[:, b])))
    return 90.0 - float(np.degrees(np.arccos(min(worst, 1.0))))


def sheared_grid_message(name: str, degrees: float) -> str:
    """The one refusal of a sheared grid, for every format and caller."""
    return (
        f"{name} has a sheared voxel grid: two of its axes meet {degrees:.2f} degrees away from a right angle "
        "(its direction matrix is not orthonormal). ITK-based readers (Slicer's too) refuse it or silently straighten "
        "it, and the labels would then not overlay the scan. Resample it onto a regular grid first (e.g. FreeSurfer "
        "mri_vol2vol, ANTs antsApplyTransforms or FSL flirt -applyxfm), then run again."
    )


def check_orthogonal(image: sitk.Image, name: str) -> None:
    """Refuse a non-orthonormal direction matrix (a sheared grid): NRRD, MetaImage and MGH
    readers pass one through, and nothing after them can resample it faithfully."""
    if image.GetDimension() < 2:
        return
    axes = np.asarray(image.GetDirection(), dtype=float).reshape(image.GetDimension(), -1)
    if not np.all(np.isfinite(axes)) or np.any(np.linalg.norm(axes, axis=0) == 0):
        raise InputError(f"{name} has a broken direction matrix ({np.round(axes, 3).tolist()}); its header is damaged. "
                         "Fix the header (or export the volume again).")
    degrees = shear_degrees(image.GetDirection())
    if np.sin(np.radians(degrees)) > ORTHOGONAL_TOLERANCE:
        raise InputError(sheared_grid_message(name, degrees))


def complex_voxels_message(name: str, kind: str) -> str:
    return (
        f"{name} holds complex numbers ({kind}: raw k-space, or magnitude and phase together); the model needs a "
        "real-valued T1 magnitude image. Save its magnitude first (e.g. numpy.abs, or FSL fslcomplex -realabs), "
        "then run again."
    )


def check_real_valued(image: sitk.Image, name: str) -> None:
    """Refuse complex voxels (k-space, or magnitude and phase in one): the model reads magnitude."""
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(complex_voxels_message(name, image.GetPixelIDTypeAsString()))


def check_geometry(image: sitk.Image, what: str = "volume") -> None:
    """Components, complex values, dimension, size, spacing and shear: the checks that need no
    voxel values."""
    check_real_valued(image, f"The {what}")
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
    if spacing.min() < MIN_SPACING_MM:
        raise InputError(
            "The voxel spacing {} mm of the {} is finer than any MRI of a hippocampus (limit: {} mm): its header is "
            "probably in metres or micrometres instead of millimetres, so the scan would be read as a speck of "
            "{} mm. Set the right spacing in its header (Slicer: Volumes module, Volume Information, Image "
            "Spacing; then save it), then run again.".format(
                "x".join(f"{s:g}" for s in spacing), what, MIN_SPACING_MM,
                "x".join(f"{e:.3g}" for e in spacing * np.asarray(size)))
        )
    check_orthogonal(image, f"The {what}")


def float32_safe(image: sitk.Image) -> sitk.Image:
    """The image itself, or, when it is float64 (or 32/64-bit integer) with values float32
    cannot tell apart (a T1 stored as 1e9 + intensity), a float32 copy less a robust offset
    (preprocess.float32_offset). Every later step (localisation, resampling) casts to float32,
    which would otherwise flatten such a scan's contrast into steps of 64. The geometry is kept;
    intensities move by a constant, which normalisation ignores."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        return image
    voxels = sitk.GetArrayViewFromImage(image)
    offset = float32_offset(voxels)
    if offset == 0.0:
        return image
    shifted = np.empty(voxels.shape, dtype=np.float32)
    np.subtract(voxels, offset, out=shifted, dtype=np.float64, casting="unsafe")
    result = sitk.GetImageFromArray(shifted)
    result.CopyInformation(image)
    return result


def check_input(image: sitk.Image, name: str) -> list[str]:
    """Refuse (InputError) an image the model cannot use; the warnings for one it can.

    Refused: complex or not scalar, not 3D, under 4 voxels along an axis, spacing not positive,
    coarser than 6 mm, finer than 0.05 mm or more anisotropic than 12:1, a sheared grid, no
    voxels, NaN/Inf voxels, constant.
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
