"""Whole synthetic heads for evaluation: a FreeSurfer-numbered label map -> (image, labels) on the
map's own grid (numpy + SimpleITK), in T1-, T2- or FLAIR-like contrast. Training uses
synth.py's batched torch generator instead; this one makes a few full-size heads to score
the whole-head path against label-map truth (evaluate_wholehead --synthetic).
"""
from __future__ import annotations

import numpy as np

from .synth import _GREY, _T1_MEANS

_CSF_LABELS = (4, 5, 14, 15, 24, 43, 44, 72)


def synthesize_head(label_path, contrast: str = "t1", seed: int = 0):
    """A whole-head synthetic scan from a FreeSurfer-numbered label map (numpy + SimpleITK), for
    evaluation: (image, labels) on the label map's own grid. `contrast`: "t1" (the tissue
    prior), "t2" (inverted: CSF bright, white matter dark) or "flair" (T2-like with dark CSF).
    Non-brain labels get random intensities, every label mild texture, the image a slight blur."""
    import SimpleITK as sitk

    labels = sitk.ReadImage(str(label_path))
    array = np.rint(sitk.GetArrayViewFromImage(labels)).astype(np.int32)
    values = np.unique(array)
    rng = np.random.default_rng(seed)
    t1 = np.array([_T1_MEANS.get(int(v), _GREY) for v in values]) + rng.normal(0, 0.02, len(values))
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
    image = lookup[array] + rng.normal(0, 0.03, array.shape) * (array > 0)
    out = sitk.GetImageFromArray(np.clip(image, 0, None).astype(np.float32))
    out.CopyInformation(labels)
    out = sitk.SmoothingRecursiveGaussian(out, 0.5)
    integer_labels = sitk.GetImageFromArray(array.astype(np.int16))
    integer_labels.CopyInformation(labels)
    return out, integer_labels
