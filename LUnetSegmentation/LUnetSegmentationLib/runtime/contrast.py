"""Does a whole-head scan look T1-weighted? Asked only for a model trained on T1 alone (numpy and
SimpleITK; the intracranial space comes from the learned localizer, localizer.py).

A T1-only network shown a FLAIR does not fail quietly: it outlines some other grey structure in
the crop with confidence (measured: hippocampus-lunet on a synthetic FLAIR reported a 977 mm3
left hippocampus at Dice 0.003). So such a model refuses a scan that does not look T1-weighted,
and says which model to use instead.

The sign read: in a T1-weighted scan the white matter, which fills the deep part of the brain, is
the brightest tissue; the cortical ribbon and the CSF of the sulci near the brain's surface are
darker. In FLAIR, T2 and PD the cortex is as bright as the white matter or brighter. So the rank
of the deep part's median intensity among the voxels of the outer shell is high in a T1 (0.56 to
0.89 on the 8 real T1 heads we have, in three poses each) and low in a FLAIR (0.08 to 0.31 on 12
synthetic ones; T2 spreads over 0.27 to 0.61, so half of those pass). Ranks are unchanged by any
monotonic intensity scaling (bias, offset, units). experiments/contrast_gate.py measures it
(docs/results/contrast_gate.json); the threshold lives in the model's card
(quality.contrast.min_deep_brightness_rank). Where the field of view cuts the intracranial space
its cut face counts as surface, which pulls the rank towards the middle: a gate that errs
towards letting the scan through.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .preprocess import InputError

DEEP_MM = 20.0  # at least this far inside the intracranial space: mostly white matter (and ventricles)
OUTER_MM = (4.0, 12.0)  # this band below the intracranial surface: cortex and sulcal CSF


def deep_brightness_rank(array: np.ndarray, intracranial: np.ndarray, spacing_mm: float) -> float | None:
    """The rank (0..1) of the deep intracranial median intensity among the outer shell's voxels,
    on an isotropic grid of `spacing_mm`. None when the space is too small to have both parts."""
    if not intracranial.any():
        return None
    # One empty voxel around the grid: where the field of view cuts the space, the cut face is a
    # surface too (without it ITK measures no distance to the grid's edge, and a space filling
    # the grid has no surface at all: the float maximum everywhere).
    mask = sitk.GetImageFromArray(np.pad(intracranial, 1).astype(np.uint8))
    # Negative inside with insideIsPositive=False: the depth is minus the signed distance.
    distance = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=False, squaredDistance=False, useImageSpacing=False)
    depth = -sitk.GetArrayViewFromImage(distance)[1:-1, 1:-1, 1:-1].astype(np.float64) * spacing_mm
    deep = intracranial & (depth >= DEEP_MM)
    outer = intracranial & (depth >= OUTER_MM[0]) & (depth <= OUTER_MM[1])
    if not deep.any() or not outer.any():
        return None
    return float(np.mean(array[outer] < np.median(array[deep])))


def check_model_contrast(rank: float | None, card) -> None:
    """Refuse a scan that does not look T1-weighted for a model whose card sets
    quality.contrast.min_deep_brightness_rank (a T1-only model). No rank (no learned localizer,
    too small a head): nothing to say, the scan goes on."""
    limit = card.data.get("quality", {}).get("contrast", {}).get("min_deep_brightness_rank")
    if limit is None or rank is None or rank >= limit:
        return
    trained = ", ".join(card.data.get("contrasts", [])) or "T1"
    raise InputError(
        f"This scan does not look {trained}-weighted: its deep white matter is not brighter than its cortex "
        f"(the deep brain's median is brighter than {rank:.1%} of the outer brain; a T1 gives at least {limit:.1%}), "
        f"as in a FLAIR, T2 or PD scan. The model {card.model_id} was trained on {trained} scans only and on another "
        "contrast it outlines other structures as hippocampus. Segment this scan with hippocampus-whole-lunet (the "
        "default model, made for any contrast), or give this model a T1-weighted scan of the same head.")
