"""Find the left and right hippocampus in a whole-head or whole-brain T1 (SimpleITK + numpy).

How: a fast affine registration of the scan to a small MNI-space T1 template (ICBM 2009a, 2 mm,
committed under Resources/Templates, derived by scripts/make_template.py), then each
hippocampus region, known in MNI coordinates, is mapped into the scan and returned as an index
box [start, stop) of the scan. Everything happens in physical space, so the scan may be stored
in any orientation (LPS, RAS, LIA, oblique) and left stays left.

Registration is template (fixed) -> scan (moving): the metric samples the template's brain only
(it is skull-stripped), so whole-head and skull-stripped scans both work. Mattes mutual
information makes raw, normalised, uint8 or float64 intensities equivalent.

A failed localization raises LocalizationError with a message, never a silent empty result:
the affine must be plausible (no reflection, head-like scale, modest rotation), the aligned
scan must correlate with the template inside the brain (a T1 of a head), and both boxes must
lie inside the field of view.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .resources import RESOURCES_DIR
from .preprocess import InputError

TEMPLATE_PATH = RESOURCES_DIR / "Templates" / "mni_icbm152_2009a_t1_2mm.nii.gz"

# Hippocampus box centres in the template's MNI space (RAS mm). Derived from data, not copied:
# two labelled scans were registered to this template with localize() itself and their
# reference hippocampus mapped back into template space (scripts/measure_wholebrain.py writes
# these numbers to docs/results/wholebrain.json, "template_space"):
#   Colin27 + AAL 37/38 (mricron-data; Holmes et al. 1998, Tzourio-Mazoyer et al. 2002):
#       centroid left (-26.7, -22.6, -11.6), right (28.0, -21.4, -11.4);
#       1st..99th percentile box left x -37.8..-13.1, y -40.8..-4.5, z -26.7..8.8
#   FreeSurfer norm.mgz + aseg 17/53 (niivue demo):
#       centroid left (-23.8, -23.3, -14.8), right (24.7, -23.0, -15.8);
#       box left x -36.8..-9.9, y -41.5..-7.1, z -28.0..3.0
# (AAL's own centroid in Colin27's MNI coordinates is (-26.0, -20.7, -10.1), close.) We use
# the mean of the four boxes' mid-points, |x| averaged over the sides because the template is
# symmetric: the tail rises above the centroid, so the box mid-point (z -10.6) sits higher than
# the centroid (z -13.4). Around it the hippocampus spans about +-14 (x), +-18 (y), +-18 (z) mm.
HIPPOCAMPUS_MNI_RAS = {
    "left": (-24.7, -23.2, -10.6),
    "right": (24.7, -23.2, -10.6),
}

# Box around each centre, in the scan's physical mm (R-L, A-P, S-I). The model was trained on
# Decathlon crops of about 36x50x36 mm with the hippocampus (about 22x38x26 mm) near their
# centre. Dice barely depends on the box (both hippocampi: colin27 0.588/0.588/0.588, fs_norm
# 0.780/0.787/0.783 for 36x50x36, 44x60x44, 52x68x52 mm: docs/results/wholebrain.json
# "box_comparison"), so we take
# the size that leaves 4-12 mm around the hippocampus (above) for registration error and
# anatomy, and stays small for speed.
BOX_MM = (44.0, 60.0, 44.0)

# Plausibility limits of the template -> scan affine (measured on the 8 whole-brain scans: scales
# 0.80-1.01, rotations up to 15 degrees, plus the tests' 20-degree turn).
MIN_SCALE, MAX_SCALE = 0.6, 1.6
MAX_ROTATION_DEGREES = 45.0
# Pearson correlation of template and aligned scan inside the (eroded) brain. Measured: the
# whole-brain scans 0.43 (otsu_t1: noisy, strong bias field) to 0.77 (colin27); a head-sized
# uniform ellipsoid 0.06, noise about 0 (Testing/test_localize.py).
MIN_CORRELATION = 0.25
# Scans of other contrasts (T2: r about -0.5 to -0.65; FLAIR: about -0.3) pass instead on the
# share of their variance inside the brain explained by the template's three tissue classes
# (dark, mid, bright thirds of the T1 template): T2 0.18-0.30, FLAIR 0.18-0.21, T1 0.38, noise
# 0.000, a uniform head-sized ellipsoid 0.08 (held-out synthetic heads and the tests' phantoms).
MIN_TISSUE_CONTRAST = 0.14
# A head is larger than this along at least two axes (mm); Decathlon crops are 31-59 mm.
MIN_HEAD_EXTENT_MM = 100.0

REGISTRATION_SPACING_MM = 2.0


@dataclass(frozen=True)
class RegistrationSettings:
    """How hard the registration works; the defaults are chosen in experiments/localize_speed.py
    (time against box-centre agreement with a slow, thorough setting on the shared scans)."""

    sampling: float = 0.3  # fraction of the template's brain voxels sampled by the metric
    similarity_shrink: tuple = (3, 2)  # pyramid levels of the similarity stage (template voxels)
    similarity_sigmas: tuple = (4.0, 2.0)  # mm
    similarity_iterations: int = 60
    affine_shrink: tuple = (2, 1)
    affine_sigmas: tuple = (2.0, 1.0)
    affine_iterations: int = 60
    lifts_mm: tuple = (0.0, 25.0)  # start positions above the foreground centre (whole heads with neck)
    # Bring the scan to ~2 mm by block averaging (sitk.BinShrink) rather than a Gaussian and a
    # resampling: both anti-alias; the block average costs a fraction on a 256^3 volume.
    block_average: bool = False
    # Register at this spacing (mm): the scan is block-averaged to about it and the template
    # (2 mm) shrunk to match, so the metric's fixed costs (smoothing, sampling set-up) shrink too.
    # The correlation check always runs on the 2 mm template.
    spacing_mm: float = 2.0


THOROUGH = RegistrationSettings()  # version 1.0's registration: about 4-7 CPU-seconds
# About 0.5-0.9 CPU-seconds, box centres within about 1-2 mm of THOROUGH's on the shared scans
# (experiments/localize_speed.py -> docs/results/localize_speed.json); localize() falls back to
# THOROUGH when this one fails its plausibility checks.
FAST = RegistrationSettings(spacing_mm=4.0, block_average=True, sampling=0.3, similarity_shrink=(2, 1),
                            similarity_sigmas=(4.0, 0.0), similarity_iterations=40, affine_shrink=(1,),
                            affine_sigmas=(0.0,), affine_iterations=30)


class LocalizationError(InputError):
    """The hippocampi could not be found; the message says why and what to do."""


class RegistrationFailed(LocalizationError):
    """The registration ended implausibly (diverged, flipped, or the scan does not match the
    template afterwards): a more thorough registration may still succeed."""


@dataclass
class Localization:
    boxes: dict[str, tuple[list[int], list[int]]]  # side -> index box [start, stop) in the scan
    centres_lps: dict[str, list[float]]  # side -> hippocampus centre, scan physical LPS mm
    transform: sitk.Transform  # maps template (MNI, LPS) points to scan points
    metric: float  # final Mattes MI (negative; lower is better)
    correlation: float  # template vs aligned scan inside the brain
    scales: list[float]  # singular values of the affine's linear part
    rotation: list[list[float]]  # 3x3 rotation part of the affine: template axes -> scan (LPS) axes
    rotation_degrees: float
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "boxes": {side: [list(map(int, b[0])), list(map(int, b[1]))] for side, b in self.boxes.items()},
            "centres_ras": {side: [-c[0], -c[1], c[2]] for side, c in self.centres_lps.items()},
            "metric": round(self.metric, 4),
            "correlation": round(self.correlation, 3),
            "scales": [round(s, 3) for s in self.scales],
            "rotation_degrees": round(self.rotation_degrees, 1),
            "seconds": round(self.seconds, 2),
        }


def load_template() -> sitk.Image:
    if not TEMPLATE_PATH.is_file():
        raise LocalizationError(
            f"The MNI template {TEMPLATE_PATH.name} is missing from {TEMPLATE_PATH.parent}; reinstall the extension."
        )
    return sitk.Cast(sitk.ReadImage(str(TEMPLATE_PATH)), sitk.sitkFloat32)


def physical_extent_mm(image: sitk.Image) -> np.ndarray:
    """Size of the image's field of view along its own axes (mm)."""
    return np.asarray(image.GetSize(), dtype=float) * np.asarray(image.GetSpacing())


def looks_like_crop(image: sitk.Image) -> bool:
    """True for a crop around one hippocampus (fewer than two axes as large as a head)."""
    return int(np.sum(physical_extent_mm(image) >= MIN_HEAD_EXTENT_MM)) < 2


def _prepare_scan(image: sitk.Image, block_average: bool = False, spacing_mm: float = REGISTRATION_SPACING_MM) -> sitk.Image:
    """Smooth and resample the scan to ~2 mm on its own axes, intensities robustly rescaled to
    0..1, so registration costs the same for every input size and type."""
    spacing = np.asarray(image.GetSpacing())
    if block_average:
        factors = np.maximum(np.floor(spacing_mm / spacing + 0.25), 1).astype(int)
        small = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), [int(f) for f in factors])
        return _rescale(small)
    image = sitk.Cast(image, sitk.sitkFloat32)
    target = np.maximum(spacing, REGISTRATION_SPACING_MM)
    sigma = np.sqrt(np.maximum(target**2 - spacing**2, 0.0)) / 2.355  # FWHM of the coarser grid
    if np.any(sigma > 0):
        image = sitk.SmoothingRecursiveGaussian(image, [float(max(s, 1e-3)) for s in sigma])
    size = np.maximum(np.round(np.asarray(image.GetSize()) * spacing / target), 1).astype(int)
    reference = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    reference.SetDirection(image.GetDirection())
    reference.SetSpacing(target.tolist())
    corner = np.asarray(image.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))
    direction = np.reshape(image.GetDirection(), (3, 3))
    reference.SetOrigin((corner + direction @ (target / 2)).tolist())
    small = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    return _rescale(small)


def _rescale(small: sitk.Image) -> sitk.Image:
    """Intensities robustly to 0..1 (1st to 99.5th percentile)."""
    array = sitk.GetArrayFromImage(small)
    if not np.isfinite(array).all():
        raise LocalizationError("The volume has NaN or infinite voxels; replace them before segmenting.")
    low, high = np.percentile(array, [1.0, 99.5])
    if not high > low:
        raise LocalizationError(
            "The volume is (almost) constant, so it cannot be a head MRI. Check that the right volume is selected."
        )
    array = np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(small)
    return out


# Fixed-image mask for the metric, in template voxels (2 mm): negative erodes the brain mask.
# Eroding keeps the skull and scalp of whole-head scans out of the samples, so MI cannot align
# the template's brain outline with the scalp (measured: dilating by 2 voxels scaled the
# template up by ~15% onto the skull of the 1.75 mm hippodeep example).
MASK_RADIUS = -2


def _metric_mask(template: sitk.Image) -> sitk.Image:
    brain = sitk.BinaryFillhole(sitk.Cast(template > 8, sitk.sitkUInt8))
    if MASK_RADIUS > 0:
        return sitk.BinaryDilate(brain, [MASK_RADIUS] * 3)
    if MASK_RADIUS < 0:
        return sitk.BinaryErode(brain, [-MASK_RADIUS] * 3)
    return brain


def _foreground_centre(image: sitk.Image) -> np.ndarray:
    """Centre of mass (LPS mm) of the Otsu foreground, i.e. of the head or brain."""
    mask = sitk.OtsuThreshold(image, 0, 1)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if not stats.HasLabel(1):
        raise LocalizationError("No foreground (head or brain) was found in the volume.")
    return np.asarray(stats.GetCentroid(1))


def _affine_parts(transform: sitk.Transform) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Singular values, determinant, rotation angle (degrees) and rotation matrix (polar
    decomposition) of the composite's linear part."""
    matrix = np.eye(3)
    for index in range(transform.GetNumberOfTransforms() if isinstance(transform, sitk.CompositeTransform) else 1):
        part = transform.GetNthTransform(index) if isinstance(transform, sitk.CompositeTransform) else transform
        if hasattr(part, "GetMatrix"):
            matrix = np.reshape(part.GetMatrix(), (3, 3)) @ matrix
    u, s, vt = np.linalg.svd(matrix)
    rotation = u @ vt
    angle = float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))))
    return s, float(np.linalg.det(matrix)), angle, rotation


def _register(template: sitk.Image, mask: sitk.Image, scan: sitk.Image, initial: sitk.Transform,
              transform: sitk.Transform, shrink, sigmas, iterations: int, sampling: float) -> tuple[sitk.Transform, float]:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling, seed=1234)  # fixed seed: the same input gives the same boxes
    method.SetMetricFixedMask(mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=4.0, minStep=0.05, numberOfIterations=iterations, relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel(list(sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetMovingInitialTransform(initial)
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(template, scan)
    return transform, float(method.GetMetricValue())


def _correlation(template: sitk.Image, mask_array: np.ndarray, scan: sitk.Image, transform: sitk.Transform) -> tuple[float, float, float]:
    """Pearson correlation template vs aligned scan inside the brain, the fraction of the brain
    that lies inside the scan's field of view, and the tissue contrast: the share of the scan's
    variance there explained by the template's tissue classes (correlation ratio, any contrast)."""
    aligned = sitk.Resample(scan, template, transform, sitk.sitkLinear, -1.0)
    values = sitk.GetArrayViewFromImage(aligned)[mask_array]
    reference = sitk.GetArrayViewFromImage(template)[mask_array]
    inside = values >= 0
    fraction = float(inside.mean())
    if inside.sum() < 100 or values[inside].std() < 1e-6:
        return 0.0, fraction, 0.0
    values, reference = values[inside], reference[inside]
    classes = np.digitize(reference, np.quantile(reference, [1 / 3, 2 / 3]))
    mean = values.mean()
    between = sum(float((classes == k).sum()) * (float(values[classes == k].mean()) - mean) ** 2 for k in range(3) if (classes == k).any())
    contrast = between / max(float(((values - mean) ** 2).sum()), 1e-12)
    return float(np.corrcoef(values, reference)[0, 1]), fraction, float(contrast)


def mni_to_lps(point_ras) -> np.ndarray:
    x, y, z = point_ras
    return np.array([-x, -y, z], dtype=float)


def box_around(image: sitk.Image, centre_lps: np.ndarray, box_mm=BOX_MM, rotation=None) -> tuple[list[int], list[int]]:
    """Index box [start, stop) of `image` covering a physical box of size box_mm around
    centre_lps, its axes LPS-aligned or turned by `rotation` (3x3), clipped to the image."""
    half = np.asarray(box_mm, dtype=float) / 2
    turn = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
    corners = [centre_lps + turn @ (np.array([sx, sy, sz]) * half) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    index = np.array([image.TransformPhysicalPointToContinuousIndex(c.tolist()) for c in corners])
    start = np.floor(index.min(axis=0) + 0.5).astype(int)
    stop = np.ceil(index.max(axis=0) + 0.5).astype(int)
    size = np.asarray(image.GetSize())
    return np.clip(start, 0, size).tolist(), np.clip(stop, 0, size).tolist()


def localize(image: sitk.Image, box_mm=BOX_MM, settings: RegistrationSettings | None = None) -> Localization:
    """Index boxes around the left and right hippocampus of a whole-head or whole-brain T1.

    By default a fast registration at 4 mm first; if it ends implausibly (RegistrationFailed),
    the thorough 2 mm registration of version 1.0 runs instead, so hard scans (noisy, strong
    bias field, long neck) cost more time rather than a failure. `settings` runs one setting only.
    """
    if settings is not None:
        return _localize(image, box_mm, settings)
    started = time.time()
    try:
        return _localize(image, box_mm, FAST)
    except RegistrationFailed as fast_failure:
        found = _localize(image, box_mm, THOROUGH)
        found.notes.append(f"The fast localization failed its checks ({str(fast_failure).split('. ')[0]}); the "
                           "thorough registration found the hippocampi.")
        found.seconds = time.time() - started
        return found


def _localize(image: sitk.Image, box_mm, settings: RegistrationSettings) -> Localization:
    started = time.time()
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise LocalizationError("Localization needs a 3D scalar (single-component) T1 volume.")
    extent = physical_extent_mm(image)
    if looks_like_crop(image):
        raise LocalizationError(
            "The volume covers only {} mm, too small to be a whole head or brain, so the hippocampi cannot be "
            "localized in it. Segment it directly as a crop, or load the whole-head scan.".format("x".join(f"{e:.0f}" for e in extent))
        )
    template = load_template()
    mask = _metric_mask(template)
    # Correlation inside the eroded brain only: the brain's outline alone (which any head-sized
    # blob has) must not pass as anatomy; the interior contrast (white/grey matter, ventricles) must.
    mask_array = sitk.GetArrayFromImage(sitk.BinaryErode(mask, [2, 2, 2])).astype(bool)
    scan = _prepare_scan(image, settings.block_average, settings.spacing_mm)
    full_template = template
    template_shrink = max(1, int(round(settings.spacing_mm / REGISTRATION_SPACING_MM)))
    if template_shrink > 1:
        template = sitk.BinShrink(template, [template_shrink] * 3)
        mask = sitk.Cast(sitk.BinShrink(sitk.Cast(mask, sitk.sitkFloat32), [template_shrink] * 3) > 0.5, sitk.sitkUInt8)

    # Start: template brain centre on the scan's foreground centre, no rotation or scaling.
    # The foreground of a whole head (with neck) lies below the brain centre; the coarse levels
    # correct that (and the multi-start below guards against it).
    template_centre = _foreground_centre(template)
    scan_centre = _foreground_centre(scan)
    best = None
    for lift in settings.lifts_mm:  # mm up (superior; LPS +z) from the foreground centre
        initial = sitk.TranslationTransform(3, (scan_centre + [0, 0, lift] - template_centre).tolist())
        similarity = sitk.Similarity3DTransform()
        similarity.SetCenter(template_centre.tolist())
        similarity, metric = _register(template, mask, scan, initial, similarity, settings.similarity_shrink,
                                       settings.similarity_sigmas, settings.similarity_iterations, settings.sampling)
        if best is None or metric < best[2]:
            best = (initial, similarity, metric)
    initial, similarity, _ = best
    affine = sitk.AffineTransform(3)
    affine.SetCenter(template_centre.tolist())
    affine.SetMatrix(similarity.GetMatrix())
    affine.SetTranslation(similarity.GetTranslation())
    if settings.affine_iterations > 0:
        affine, metric = _register(template, mask, scan, initial, affine, settings.affine_shrink, settings.affine_sigmas,
                                   settings.affine_iterations, settings.sampling)
    else:
        metric = best[2]
    transform = sitk.CompositeTransform([initial, affine])

    scales, determinant, angle, rotation = _affine_parts(transform)
    correlation, in_view, tissue_contrast = _correlation(full_template, mask_array, scan, transform)
    what = "Check that the volume is an MRI of a head or brain, or place a region of interest by hand."
    if determinant <= 0 or scales.min() < MIN_SCALE or scales.max() > MAX_SCALE:
        raise RegistrationFailed(
            f"Registration to the MNI template diverged (scales {', '.join(f'{s:.2f}' for s in scales)}). {what}"
        )
    if angle > MAX_ROTATION_DEGREES:
        raise RegistrationFailed(
            f"Registration to the MNI template needed a rotation of {angle:.0f} degrees. If the head is stored turned "
            "(e.g. lying on its side or 90 degrees off), reorient it first (in Slicer: Transforms module, then Harden "
            f"transform; or fix the file's orientation header), then run again. {what}"
        )
    if correlation < MIN_CORRELATION and tissue_contrast < MIN_TISSUE_CONTRAST:
        raise RegistrationFailed(
            f"The volume does not match a brain MRI after registration (correlation with the T1 template "
            f"{correlation:.2f}, needs {MIN_CORRELATION}; tissue contrast {tissue_contrast:.2f}, needs "
            f"{MIN_TISSUE_CONTRAST}). {what}"
        )

    boxes, centres = {}, {}
    for side, centre_ras in HIPPOCAMPUS_MNI_RAS.items():
        centre = np.asarray(transform.TransformPoint(mni_to_lps(centre_ras).tolist()))
        inside = np.asarray(image.TransformPhysicalPointToContinuousIndex(centre.tolist()))
        if np.any(inside < -0.5) or np.any(inside > np.asarray(image.GetSize()) - 0.5):
            raise LocalizationError(
                f"The {side} hippocampus falls outside the volume's field of view after registration. "
                "Load a scan that covers the temporal lobes, or place a region of interest by hand."
            )
        start, stop = box_around(image, centre, box_mm, rotation)
        covered = _inside_fraction(image, centre, box_mm, rotation)
        if covered < 0.5:
            raise LocalizationError(
                f"Only {covered:.0%} of the region around the {side} hippocampus is inside the volume. "
                "Load a scan that covers the temporal lobes, or place a region of interest by hand."
            )
        boxes[side], centres[side] = (start, stop), centre.tolist()

    # Left must be on the scan's left in physical space (LPS: larger x), whatever the storage.
    if centres["left"][0] <= centres["right"][0]:
        raise RegistrationFailed(f"Registration flipped left and right. {what}")
    notes = []
    if in_view < 0.9:
        notes.append(f"Only {in_view:.0%} of the brain is inside the field of view.")
    return Localization(
        boxes, centres, transform, metric, correlation, scales.tolist(), rotation.tolist(), angle, time.time() - started, notes
    )


def _inside_fraction(image: sitk.Image, centre_lps, box_mm, rotation) -> float:
    """Fraction of the (turned) box, sampled every ~4 mm, that lies inside the image."""
    axes = [np.linspace(-b / 2, b / 2, max(int(b // 4), 2)) for b in box_mm]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    points = np.asarray(centre_lps) + grid @ np.asarray(rotation).T
    matrix = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    index = np.linalg.solve(matrix, (points - image.GetOrigin()).T).T
    inside = np.all((index >= -0.5) & (index <= np.asarray(image.GetSize()) - 0.5), axis=1)
    return float(inside.mean())
