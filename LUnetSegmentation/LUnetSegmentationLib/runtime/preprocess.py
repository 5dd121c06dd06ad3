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


def count_nonfinite(array: np.ndarray, block: int = 1 << 22) -> int:
    """NaN and infinite values in a float array (0 for integers), counted a block at a time so
    that a large volume needs no boolean copy of itself."""
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return 0
    flat = array.reshape(-1)
    return int(sum(int(flat[i:i + block].size - np.count_nonzero(np.isfinite(flat[i:i + block])))
                   for i in range(0, flat.size, block)))


def nonfinite_message(what: str, bad: int) -> str:
    return (f"The {what} has {bad} NaN or infinite voxel(s). Replace them first, e.g. with "
            "Slicer's 'Threshold Scalar Volume' or numpy.nan_to_num, then run again.")


def check_finite(array: np.ndarray, what: str = "volume") -> None:
    if array.size == 0:
        raise InputError(f"The {what} is empty (no voxels). Select a volume that contains image data.")
    bad = count_nonfinite(array)
    if bad:
        raise InputError(nonfinite_message(what, bad))


def _float32_is_coarse(array: np.ndarray) -> bool:
    """True for a type whose values float32 may not hold (float64, 32/64-bit integers)."""
    kind, size = array.dtype.kind, array.dtype.itemsize
    return (kind == "f" and size > 4) or (kind in "iu" and size >= 4)


# float32 keeps 24 bits; a volume keeps its contrast when one float32 step, at the size of its
# values, is below this share of the spread of its values (0.5 to 99.5 percentiles).
_FLOAT32_STEP_SHARE = 2.0**-14


def float32_offset(array: np.ndarray) -> float:
    """What to subtract from a volume before casting it to float32 (0.0 when nothing need be).

    A float64 (or 32/64-bit integer) T1 stored with a large offset, e.g. 1e9 + intensity, has
    values float32 cannot tell apart: at 1e9 one float32 step is 64, a T1's whole contrast is a
    few hundred, so every later float32 step (resampling, localisation, normalisation) would
    see a staircase. The offset returned is a low percentile of the values (the background of
    a head), so the shifted volume keeps its contrast and its background stays near 0.
    Percentiles come from a sample of about a million voxels: cheap on any volume."""
    if array.size == 0 or not _float32_is_coarse(array):
        return 0.0
    sample = np.asarray(array).ravel()[:: max(1, array.size // 1_000_000)]
    low, high = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if not high > low:
        low, high = float(np.min(sample)), float(np.max(sample))
    magnitude = max(abs(low), abs(high))
    if high <= low or float(np.spacing(np.float32(magnitude))) <= (high - low) * _FLOAT32_STEP_SHARE:
        return 0.0
    return float(np.floor(low)) if array.dtype.kind in "iu" else low


def to_float32(array: np.ndarray) -> np.ndarray:
    """The volume as float32 without losing its contrast: less `float32_offset` first, computed
    per block in the input's own precision (no float64 copy of the whole volume)."""
    offset = float32_offset(array)
    if offset == 0.0:
        return np.asarray(array, dtype=np.float32)
    out = np.empty(array.shape, dtype=np.float32)
    np.subtract(array, offset, out=out, dtype=np.float64, casting="unsafe")
    return out


def normalize_intensity(array: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """Clip to robust percentiles and z-score; returns float32 (a float64 input is brought to
    float32 without losing its contrast, see `to_float32`)."""
    check_finite(array)
    data = to_float32(array)
    low, high = np.percentile(data, config.clip_percentiles)
    if not high > low:
        raise InputError(
            "The volume is constant (all voxels about equal to "
            f"{float(low):g}), so there is nothing to segment. Check that the right volume is selected."
        )
    data = np.clip(data, np.float32(low), np.float32(high))
    mean, std = float(data.mean()), float(data.std())
    return ((data - mean) / max(std, 1e-6)).astype(np.float32, copy=False)
