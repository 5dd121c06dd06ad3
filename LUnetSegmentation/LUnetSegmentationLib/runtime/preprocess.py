"""Intensity preprocessing shared by training and inference (numpy only).

Every parameter lives in `PreprocessingConfig`, which is stored in the model card, so
inference repeats exactly what training did and never guesses.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


class InputError(ValueError):
    """The input cannot be segmented as it is; the message says why and what to do."""


@dataclass
class PreprocessingConfig:
    # Voxel spacing (mm, x/y/z) the network works at. Decathlon hippocampus is 1 mm isotropic.
    spacing: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    # ITK (LPS) direction of the grid the network was trained on, row-major 3x3. Inputs in any
    # other orientation are resampled onto an axis-aligned grid with this direction first.
    direction: list[float] = field(default_factory=lambda: [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0])
    # Intensities are clipped to these percentiles of the volume, then z-scored. MRI has no
    # absolute scale and the Decathlon crops range from 100 to 1.7 million at their maximum,
    # so each volume is normalised on its own; clipping makes that robust to hot voxels.
    clip_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    # Value used where the network input is padded (0 is the mean after z-scoring).
    pad_value: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessingConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def check_finite(array: np.ndarray, what: str = "volume") -> None:
    if array.size == 0:
        raise InputError(f"The {what} is empty (no voxels). Select a volume that contains image data.")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise InputError(
            f"The {what} has {bad} NaN or infinite voxel(s). Replace them first, e.g. with "
            "Slicer's 'Threshold Scalar Volume' or numpy.nan_to_num, then run again."
        )


def normalize_intensity(array: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """Clip to robust percentiles and z-score; returns float32."""
    check_finite(array)
    data = np.asarray(array, dtype=np.float32)
    low, high = np.percentile(data, config.clip_percentiles)
    if not high > low:
        raise InputError(
            "The volume is constant (all voxels about equal to "
            f"{float(low):g}), so there is nothing to segment. Check that the right volume is selected."
        )
    data = np.clip(data, np.float32(low), np.float32(high))
    mean, std = float(data.mean()), float(data.std())
    return ((data - mean) / max(std, 1e-6)).astype(np.float32, copy=False)
