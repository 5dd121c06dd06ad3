"""The segmentation engine: image in, labels on the same grid out (numpy, SimpleITK; a backend runs the network).

Knows nothing of Slicer: the MRML adapter turns a volume node into a SimpleITK image (voxels
plus full geometry) and the labels back into segments. Checks every input before any work,
so bad input fails fast with a message that says what to do.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .checks import MIN_VOXELS_PER_AXIS, check_geometry
from .memory import available_memory_bytes
from .preprocess import InputError, PreprocessingConfig, normalize_intensity
from .resample import physical_corners, probabilities_to_input_grid, to_model_grid
from .weights import ModelCard, find_model

log = logging.getLogger("LUnetSegmentation")


@dataclass
class SegmentationResult:
    labels: sitk.Image  # uint8, on the input's grid (same size, spacing, origin, direction)
    card: ModelCard
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    confidence: dict = field(default_factory=dict)  # segment_confidence() on the model grid

    def volumes_mm3(self) -> dict[int, float]:
        """Volume of each model label (mm3), measured on the input grid."""
        voxel = float(np.prod(self.labels.GetSpacing()))
        counts = np.bincount(sitk.GetArrayViewFromImage(self.labels).ravel(), minlength=len(self.card.labels) + 1)
        return {entry["value"]: float(counts[entry["value"]]) * voxel for entry in self.card.labels}


def cuda_driver_present() -> bool:
    """Whether an NVIDIA driver is installed, checked without importing torch (which costs about
    2.5 CPU-seconds): the command line on a machine without a GPU never needs torch."""
    import ctypes.util
    import sys

    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
    if sys.platform == "win32":
        return ctypes.util.find_library("nvcuda") is not None
    return False  # macOS: no CUDA


def choose_device(device: str = "auto") -> str:
    if device == "cpu":
        return "cpu"
    if device in ("auto", None, ""):
        if not cuda_driver_present():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError("A GPU (CUDA) was requested but none is available to PyTorch here. Choose 'auto' or 'cpu'.")
        return "cuda"
    raise InputError(f"Unknown device {device!r}: use 'auto', 'cuda' (GPU) or 'cpu'.")


def segment_confidence(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """How sure the network is of one side's segment: the mean foreground probability inside
    it and the mean normalised entropy there (0 certain, 1 uniform). Used by the presence
    check and the cohort report's uncertainty flag."""
    inside = labels > 0
    if not inside.any():
        return {"voxels": 0, "mean_probability": 0.0, "mean_entropy": 1.0}
    probs = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1.0)
    entropy = -(probs * np.log(probs)).sum(axis=0) / np.log(probs.shape[0])
    return {
        "voxels": int(inside.sum()),
        "mean_probability": round(float(1.0 - probs[0][inside].mean()), 4),
        "mean_entropy": round(float(entropy[inside].mean()), 4),
    }


class Segmenter:
    """A loaded model, ready to segment many images (load once, segment a cohort)."""

    def __init__(self, model: str | None = None, device: str = "auto", mirror: bool | None = None, verify: bool = True):
        from .backends import load_backend

        self.card = find_model(model)
        self.device = choose_device(device)
        self.backend = load_backend(self.card, self.device, verify=verify)
        self.preprocessing = PreprocessingConfig.from_dict(self.card.data["preprocessing"])
        inference = self.card.data.get("inference", {})
        # Test-time passes: the card's "passes" (1 = none, 8 = every flip) or its older "mirror" flag.
        self.mirror = inference.get("passes", inference.get("mirror", True)) if mirror is None else mirror
        self.tile_size = int(inference.get("tile_size", 96))

    def estimate_bytes(self, model_grid_shape) -> int:
        """Peak memory (bytes) to segment a region of this shape (voxels on the model grid)."""
        voxels = int(np.prod(model_grid_shape))
        classes = self.backend.num_classes
        tile = int(np.prod([min(int(s), self.tile_size) for s in model_grid_shape]))
        # input + probability sums + per-class resampling copies, plus one tile's activations
        return voxels * (4 + 4 * classes * 3) + tile * self.backend.width * 4 * 6

    def check_memory(self, image: sitk.Image, index_box=None) -> None:
        """Refuse, before any work, a region too large for the memory available now."""
        corners = physical_corners(image, index_box)
        extent = corners.max(axis=0) - corners.min(axis=0)
        shape = np.ceil(extent / np.asarray(self.preprocessing.spacing)).astype(int)
        needed, free = self.estimate_bytes(shape), available_memory_bytes()
        if needed > free:
            raise InputError(
                f"Segmenting this volume would need about {needed / 2**30:.1f} GiB of memory and {free / 2**30:.1f} GiB "
                "is available. Restrict it with a region of interest (ROI) around the hippocampi, or crop it first."
            )

    def _predict(self, volumes: np.ndarray, progress, cancelled) -> tuple[np.ndarray, str, list[str]]:
        """Probabilities for a batch of normalised volumes; the device that did the work; notes."""
        from . import inference

        probabilities = inference.predict_batch(
            self.backend, volumes, mirror=self.mirror, tile_size=self.tile_size, pad_value=self.preprocessing.pad_value,
            progress=progress, cancelled=cancelled,
        )
        if getattr(self.backend, "fell_back", False):
            return probabilities, "cpu", ["GPU ran out of memory; this volume was segmented on the CPU instead."]
        return probabilities, self.device, []

    def segment_image(
        self,
        image: sitk.Image,
        index_box: tuple[list[int], list[int]] | None = None,
        progress: Callable[[float], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> SegmentationResult:
        """Labels for `image` (or only inside an index box [start, stop) of it) on its own grid."""
        started = time.time()
        # Geometry only (cheap): the voxel checks ran once at the pipeline's entry
        # (checks.check_input), and normalisation checks the region actually segmented.
        check_geometry(image)
        if index_box is not None:
            start, stop = (np.clip(np.asarray(b, dtype=int), 0, image.GetSize()) for b in index_box)
            if np.any(stop - start < MIN_VOXELS_PER_AXIS):
                raise InputError("The region of interest does not overlap the volume (or is too thin). Move or resize it.")
            index_box = (start.tolist(), stop.tolist())
        self.check_memory(image, index_box)
        model_grid = to_model_grid(image, self.preprocessing, index_box)
        volume = normalize_intensity(sitk.GetArrayFromImage(model_grid), self.preprocessing)
        probabilities, device, notes = self._predict(volume[None], progress, cancelled)
        confidence = segment_confidence(probabilities[0].argmax(axis=0), probabilities[0])
        reference = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        reference.CopyInformation(image)
        labels = sitk.GetImageFromArray(probabilities_to_input_grid(probabilities[0], model_grid, reference))
        labels.CopyInformation(image)
        return SegmentationResult(labels, self.card, device, time.time() - started, notes, confidence)

    def segment_crops(self, crops: list, progress=None, cancelled=None) -> tuple[list[np.ndarray], np.ndarray, str, list[str]]:
        """Labels (uint8 arrays on each crop's own grid) for crops already on the model's grid
        (the whole-head path's aligned boxes), run as one batch when they share a shape; also
        the probabilities (for confidence figures), the device and notes."""
        volumes = [normalize_intensity(sitk.GetArrayFromImage(crop), self.preprocessing) for crop in crops]
        if len({v.shape for v in volumes}) == 1:
            probabilities, device, notes = self._predict(np.stack(volumes), progress, cancelled)
        else:  # different shapes (never on the whole-head path): one at a time
            parts = [self._predict(v[None], progress, cancelled) for v in volumes]
            probabilities = [p[0][0] for p in parts]
            device, notes = parts[-1][1], [n for p in parts for n in p[2]]
        labels = [np.asarray(p).argmax(axis=0).astype(np.uint8) for p in probabilities]
        return labels, probabilities, device, notes
