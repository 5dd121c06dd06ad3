"""The segmentation engine: image in, labels on the same grid out (torch, numpy, SimpleITK).

Knows nothing of Slicer: the MRML adapter turns a volume node into a SimpleITK image (voxels
plus full geometry) and the labels back into segments. Checks every input before any work,
so bad input fails fast with a message that says what to do.
"""
from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .preprocess import InputError, PreprocessingConfig, check_finite, normalize_intensity
from .resample import physical_corners, probabilities_to_input_grid, to_model_grid
from .weights import ModelCard, find_model, load_network

log = logging.getLogger("LUnetSegmentation")

MIN_VOXELS_PER_AXIS = 4  # fewer along any axis: a 2D slice or a stack too thin to segment
MAX_SPACING_MM = 6.0  # coarser voxels cannot resolve a ~4 cm long hippocampus
MAX_ANISOTROPY = 12.0


@dataclass
class SegmentationResult:
    labels: sitk.Image  # uint8, on the input's grid (same size, spacing, origin, direction)
    card: ModelCard
    device: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def volumes_mm3(self) -> dict[int, float]:
        """Volume of each model label (mm3), measured on the input grid."""
        voxel = float(np.prod(self.labels.GetSpacing()))
        counts = np.bincount(sitk.GetArrayViewFromImage(self.labels).ravel(), minlength=len(self.card.labels) + 1)
        return {entry["value"]: float(counts[entry["value"]]) * voxel for entry in self.card.labels}


def choose_device(device: str = "auto") -> str:
    import torch

    if device in ("auto", None, ""):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise InputError("A GPU (CUDA) was requested but none is available to PyTorch here. Choose 'auto' or 'cpu'.")
        return "cuda"
    if device == "cpu":
        return "cpu"
    raise InputError(f"Unknown device {device!r}: use 'auto', 'cuda' (GPU) or 'cpu'.")


def available_memory_bytes() -> int:
    """Memory the OS can give us now: Linux MemAvailable (free plus reclaimable page cache)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_image(image: sitk.Image, what: str = "volume") -> None:
    """Refuse inputs the model cannot handle, with a message that says what to do."""
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
    if spacing.max() > MAX_SPACING_MM or spacing.max() / spacing.min() > MAX_ANISOTROPY:
        raise InputError(
            "The voxel spacing {} mm is too coarse or too anisotropic (limit: {} mm, ratio {}) to resolve the "
            "hippocampus. Use a 3D T1 acquisition (about 1 mm isotropic) instead.".format(
                "x".join(f"{s:g}" for s in spacing), MAX_SPACING_MM, MAX_ANISOTROPY
            )
        )


class Segmenter:
    """A loaded model, ready to segment many images (load once, segment a cohort)."""

    def __init__(self, model: str | None = None, device: str = "auto", mirror: bool | None = None, verify: bool = True):
        self.card = find_model(model)
        self.device = choose_device(device)
        self.network = load_network(self.card, self.device, verify=verify)
        self.preprocessing = PreprocessingConfig.from_dict(self.card.data["preprocessing"])
        inference = self.card.data.get("inference", {})
        self.mirror = inference.get("mirror", True) if mirror is None else mirror
        self.tile_size = int(inference.get("tile_size", 96))

    def estimate_bytes(self, model_grid_shape) -> int:
        """Peak memory (bytes) to segment a region of this shape (voxels on the model grid)."""
        voxels = int(np.prod(model_grid_shape))
        classes = self.network.config.num_classes
        tile = int(np.prod([min(int(s), self.tile_size) for s in model_grid_shape]))
        width = max(self.network.config.level_channels())
        # input + probability sums + per-class resampling copies, plus one tile's activations
        return voxels * (4 + 4 * classes * 3) + tile * width * 4 * 6

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

    def segment_image(
        self,
        image: sitk.Image,
        index_box: tuple[list[int], list[int]] | None = None,
        progress: Callable[[float], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> SegmentationResult:
        """Labels for `image` (or only inside an index box [start, stop) of it) on its own grid."""
        import torch

        from .inference import predict_probabilities

        started = time.time()
        notes: list[str] = []
        check_image(image)
        if index_box is not None:
            start, stop = (np.clip(np.asarray(b, dtype=int), 0, image.GetSize()) for b in index_box)
            if np.any(stop - start < MIN_VOXELS_PER_AXIS):
                raise InputError("The region of interest does not overlap the volume (or is too thin). Move or resize it.")
            index_box = (start.tolist(), stop.tolist())
        self.check_memory(image, index_box)
        check_finite(sitk.GetArrayViewFromImage(image))
        model_grid = to_model_grid(image, self.preprocessing, index_box)
        volume = normalize_intensity(sitk.GetArrayFromImage(model_grid), self.preprocessing)
        run = dict(mirror=self.mirror, tile_size=self.tile_size, pad_value=self.preprocessing.pad_value, progress=progress, cancelled=cancelled)
        device = self.device
        try:
            probabilities = predict_probabilities(self.network, volume, device=device, **run)
        except torch.cuda.OutOfMemoryError:
            # Retry this image on a CPU copy; the loaded model stays on the GPU for later,
            # smaller inputs.
            torch.cuda.empty_cache()
            device = "cpu"
            message = "GPU ran out of memory; this volume was segmented on the CPU instead."
            log.warning(message)
            notes.append(message)
            probabilities = predict_probabilities(copy.deepcopy(self.network).to("cpu"), volume, device="cpu", **run)
        reference = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        reference.CopyInformation(image)
        labels = sitk.GetImageFromArray(probabilities_to_input_grid(probabilities, model_grid, reference))
        labels.CopyInformation(image)
        return SegmentationResult(labels, self.card, device, time.time() - started, notes)
