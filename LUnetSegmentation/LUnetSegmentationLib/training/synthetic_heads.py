"""Whole synthetic heads for evaluation: a FreeSurfer-numbered label map -> (image, labels) on the
map's own grid (numpy + SimpleITK), in T1-, T2- or FLAIR-like contrast, healthy or with a
pathology made in the label map (so the truth is the modified map's hippocampus):

- `atrophy`: the ventricles widen by WIDEN_VENTRICLES_MM into the brain tissue around them, then
  each hippocampus is eroded from its surface inwards (the deepest voxels stay) into the inferior
  lateral ventricle (the temporal horn), the left down to ATROPHY_LEFT_MM3, the right to
  ATROPHY_RIGHT_FRACTION of its own volume: two sizes a study must tell apart.
- `resection` / `resection-right`: the left (right) hippocampus, dilated by RESECTION_MARGIN_VOXELS,
  becomes CSF (label 24), as after temporal-lobe epilepsy surgery; no hippocampus there any more.

`paint_pathology` makes the same change in a real scan (the changed voxels take intensities
sampled from the scan's own CSF), so real heads can be atrophied or resected too.

Training uses synth.py's batched torch generator instead; this one makes a few full-size heads
to score the whole-head path against label-map truth (evaluate_wholehead --synthetic).
"""
from __future__ import annotations

import numpy as np

_CSF_LABELS = (4, 5, 14, 15, 24, 43, 44, 72)
HIPPOCAMPUS = {"left": 17, "right": 53}
LATERAL_VENTRICLE = {"left": 4, "right": 43}
INFERIOR_LATERAL_VENTRICLE = {"left": 5, "right": 44}
CSF = 24
PATHOLOGIES = ("none", "atrophy", "resection", "resection-right")
ATROPHY_LEFT_MM3 = 600.0  # the extreme case: a true 636 mm3 hippocampus
ATROPHY_RIGHT_FRACTION = 0.55
WIDEN_VENTRICLES_MM = 2.0
RESECTION_MARGIN_VOXELS = 2


def resected_side(pathology: str) -> str | None:
    """The side whose hippocampus a pathology removes, None for the others."""
    return {"resection": "left", "resection-left": "left", "resection-right": "right"}.get(pathology)


def _check_pathology(pathology: str) -> None:
    if pathology not in PATHOLOGIES and pathology != "resection-left":
        raise ValueError(f"unknown pathology {pathology!r}: use one of {', '.join(PATHOLOGIES)}")


def _image(mask: np.ndarray, spacing):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing))
    return image


def _depth_mm(mask: np.ndarray, spacing) -> np.ndarray:
    """Distance (mm) from each voxel of `mask` to the nearest voxel outside it."""
    import SimpleITK as sitk

    distance = sitk.SignedMaurerDistanceMap(_image(mask, spacing), insideIsPositive=True, squaredDistance=False,
                                            useImageSpacing=True)
    return sitk.GetArrayFromImage(distance)


def _dilate(mask: np.ndarray, spacing, radius_voxels) -> np.ndarray:
    import SimpleITK as sitk

    radius = [int(r) for r in np.broadcast_to(radius_voxels, (3,))]
    dilated = sitk.BinaryDilate(_image(mask, spacing), radius, sitk.sitkBall, 0, 1)
    return sitk.GetArrayFromImage(dilated).astype(bool)


def erode_to_volume(labels: np.ndarray, spacing, label: int, into: int, target_mm3: float) -> np.ndarray:
    """Keep the `target_mm3` of `label` deepest inside it (distance to its surface, so it thins
    from every side as an atrophied structure does) and relabel the rest `into`. In place."""
    mask = labels == label
    voxel = float(np.prod(spacing))
    keep = int(round(max(target_mm3, 0.0) / voxel))
    if keep >= int(mask.sum()):
        return labels
    depth = _depth_mm(mask, spacing)[mask]
    order = np.argsort(-depth, kind="stable")  # deepest first; ties in storage order, so reproducible
    removed = np.zeros(depth.size, bool)
    removed[order[keep:]] = True
    where = np.flatnonzero(mask.ravel())[removed]
    labels.ravel()[where] = into
    return labels


def _tissue(labels: np.ndarray) -> np.ndarray:
    """Brain tissue a ventricle may grow into: labelled, not fluid, not a hippocampus, not one of
    SynthSeg's non-brain classes (500-999)."""
    return ((labels > 0) & ~np.isin(labels, _CSF_LABELS + tuple(HIPPOCAMPUS.values()))
            & ~((labels >= 500) & (labels < 1000)))


def atrophy(labels: np.ndarray, spacing, left_mm3: float = ATROPHY_LEFT_MM3,
            right_fraction: float = ATROPHY_RIGHT_FRACTION, widen_mm: float = WIDEN_VENTRICLES_MM) -> np.ndarray:
    """A copy of `labels` with widened ventricles and eroded hippocampi (module docstring)."""
    out = np.array(labels, copy=True)
    radius = np.maximum(np.rint(widen_mm / np.asarray(spacing, float)), 1).astype(int)  # x, y, z voxels
    for side in HIPPOCAMPUS:
        for ventricle in (LATERAL_VENTRICLE[side], INFERIOR_LATERAL_VENTRICLE[side]):
            grown = _dilate(out == ventricle, spacing, radius) & _tissue(out)
            out[grown] = ventricle
    voxel = float(np.prod(spacing))
    for side, label in HIPPOCAMPUS.items():
        volume = float((out == label).sum()) * voxel
        target = min(left_mm3, volume) if side == "left" else right_fraction * volume
        erode_to_volume(out, spacing, label, INFERIOR_LATERAL_VENTRICLE[side], target)
    return out


def resection(labels: np.ndarray, spacing, side: str = "left", margin_voxels: int = RESECTION_MARGIN_VOXELS) -> np.ndarray:
    """A copy of `labels` where one hippocampus, dilated by `margin_voxels`, is CSF."""
    out = np.array(labels, copy=True)
    cavity = _dilate(out == HIPPOCAMPUS[side], spacing, margin_voxels)
    out[cavity] = CSF
    return out


def apply_pathology(labels: np.ndarray, spacing, pathology: str) -> np.ndarray:
    """The label map (z, y, x array; `spacing` x, y, z as SimpleITK gives it) with `pathology`."""
    _check_pathology(pathology)
    if pathology == "none":
        return labels
    if pathology == "atrophy":
        return atrophy(labels, spacing)
    return resection(labels, spacing, resected_side(pathology))


def paint_pathology(image, before: np.ndarray, after: np.ndarray, seed: int = 0):
    """A real scan (SimpleITK image on the labels' grid) with the voxels whose label changed from
    `before` to `after` filled with intensities drawn from the scan's own CSF (the fluid labels of
    `before`, eroded by a voxel to leave partial volume out), then lightly blurred there so the
    new fluid has the scan's texture and edges."""
    import SimpleITK as sitk

    if image.GetSize() != before.shape[::-1]:
        raise ValueError(f"the scan ({image.GetSize()}) and its labels ({before.shape[::-1]}) are not on one grid")
    changed = before != after
    if not changed.any():
        return image
    spacing = image.GetSpacing()
    fluid = np.isin(before, _CSF_LABELS)
    pure = ~_dilate(~fluid, spacing, 1) & fluid
    source = pure if pure.sum() >= 100 else fluid
    if source.sum() == 0:
        raise ValueError("the labels have no CSF to take intensities from")
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    rng = np.random.default_rng(seed)
    painted = array.copy()
    painted[changed] = rng.choice(array[source], int(changed.sum()))
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(_like(painted, image), 0.5))
    near = _dilate(changed, spacing, 1)
    array = np.where(near, smooth, array)
    return _like(array.astype(sitk.GetArrayViewFromImage(image).dtype), image)


def _like(array: np.ndarray, reference):
    import SimpleITK as sitk

    out = sitk.GetImageFromArray(array)
    out.CopyInformation(reference)
    return out


def synthesize_head(label_path, contrast: str = "t1", seed: int = 0, pathology: str = "none"):
    """A whole-head synthetic scan from a FreeSurfer-numbered label map (numpy + SimpleITK), for
    evaluation: (image, labels) on the label map's own grid. `contrast`: "t1" (the tissue
    prior), "t2" (inverted: CSF bright, white matter dark) or "flair" (T2-like with dark CSF).
    Non-brain labels get random intensities, every label mild texture, the image a slight blur.
    `pathology` (PATHOLOGIES) changes the label map first; the returned labels are the changed
    map, the truth. The same map, contrast and seed give the same intensities with or without a
    pathology, so a change away from it leaves the rest of the image as it was."""
    import SimpleITK as sitk

    _check_pathology(pathology)
    labels = sitk.ReadImage(str(label_path))
    original = np.rint(sitk.GetArrayViewFromImage(labels)).astype(np.int32)
    array = apply_pathology(original, labels.GetSpacing(), pathology)
    rng = np.random.default_rng(seed)
    lookup = _label_intensities(np.unique(original), contrast, rng)
    extra = np.setdiff1d(np.unique(array), np.unique(original))
    if extra.size:  # labels the pathology brought in (e.g. CSF in a map without it): the prior itself
        lookup = np.pad(lookup, (0, max(0, int(extra.max()) + 1 - lookup.size)))
        lookup[extra] = _label_intensities(extra, contrast, np.random.default_rng(seed + 1), jitter=0.0)[extra]
    # Noise from the same stream right after the original map's label means, with or without a pathology.
    image = lookup[array] + rng.normal(0, 0.03, array.shape) * (array > 0)
    out = sitk.GetImageFromArray(np.clip(image, 0, None).astype(np.float32))
    out.CopyInformation(labels)
    out = sitk.SmoothingRecursiveGaussian(out, 0.5)
    integer_labels = sitk.GetImageFromArray(array.astype(np.int16))
    integer_labels.CopyInformation(labels)
    return out, integer_labels


def _label_intensities(values: np.ndarray, contrast: str, rng, jitter: float = 0.02) -> np.ndarray:
    """A lookup table label value -> mean intensity (0..1) for `values`, in `contrast`."""
    from .synth import _GREY, _T1_MEANS  # here: synth imports torch, which the CLI's parser must not

    t1 = np.array([_T1_MEANS.get(int(v), _GREY) for v in values]) + rng.normal(0, jitter, len(values))
    if contrast == "t1":
        means = t1
    elif contrast in ("t2", "flair"):
        means = 1.0 - t1
        if contrast == "flair":
            means[np.isin(values, _CSF_LABELS)] = 0.1
    else:
        raise ValueError(f"unknown contrast {contrast!r}: t1, t2 or flair")
    means[values == 0] = 0.0
    means[values >= 500] = rng.uniform(0.0, 1.0, int((values >= 500).sum()))
    lookup = np.zeros(int(values.max()) + 1)
    lookup[values] = np.clip(means, 0, 1)
    return lookup
