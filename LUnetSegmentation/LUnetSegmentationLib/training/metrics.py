"""Segmentation metrics on label arrays (numpy and scipy-free SimpleITK distance maps)."""
from __future__ import annotations

import numpy as np


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (nothing to find, nothing found)."""
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, reference).sum()) / total


def hausdorff95(prediction: np.ndarray, reference: np.ndarray, spacing_zyx=(1.0, 1.0, 1.0)) -> float:
    """95th percentile symmetric surface distance in mm; inf when exactly one mask is empty,
    0 when both are."""
    import SimpleITK as sitk

    prediction, reference = prediction.astype(bool), reference.astype(bool)
    if not prediction.any() and not reference.any():
        return 0.0
    if not prediction.any() or not reference.any():
        return float("inf")

    def surface_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        image_b = sitk.GetImageFromArray(b.astype(np.uint8))
        image_b.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
        distance = sitk.GetArrayFromImage(
            sitk.SignedMaurerDistanceMap(image_b, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
        )
        image_a = sitk.GetImageFromArray(a.astype(np.uint8))
        contour = sitk.GetArrayFromImage(sitk.LabelContour(image_a, fullyConnected=False)).astype(bool)
        return np.abs(distance[contour])

    distances = np.concatenate([surface_distances(prediction, reference), surface_distances(reference, prediction)])
    return float(np.percentile(distances, 95))
