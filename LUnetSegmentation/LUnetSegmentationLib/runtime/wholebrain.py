"""Segment both hippocampi of a whole-head or whole-brain T1 in one call (SimpleITK + numpy).

    result = segment_head(segmenter, image)   # segmenter: engine.Segmenter, image: sitk.Image

A crop-sized input (the size of the Decathlon crops the model was trained on) is segmented
directly, as before. Anything larger is localized (localizer.py: a small network over the whole
scan on a 4 mm grid, any contrast; the affine registration to an MNI template of localize.py
only where no localizer is installed or the network finds neither hippocampus), each
hippocampus box is cropped and segmented, and the results are combined on the input's grid
with side-specific labels. A side the localizer cannot trust (missing, unconfident, cut by the
field of view) is reported as failed with its reason and the other side goes on:

    1 Left hippocampus anterior    2 Left hippocampus posterior    (hippocampus-lunet)
    3 Right hippocampus anterior   4 Right hippocampus posterior
    17 Left hippocampus            53 Right hippocampus            (hippocampus-whole-lunet,
                                                                    FreeSurfer's values: side_label_table)

Left and right come from the MNI template's sides mapped through the registration, i.e. from
physical (RAS) space, never from array order.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .contrast import check_model_contrast
from .engine import segment_confidence
from .localize import BOX_MM, Localization, LocalizationError, localize, looks_like_crop
from .localizer import LearnedLocalization, LocalizerUnavailable, largest_component, localize_learned
from .pipeline import SegmentSpec, measure_volumes, specs_from_card
from .resample import resample_argmax

__all__ = ["HeadSegmentation", "LocalizationError", "segment_head", "side_label_table"]

SIDES = ("left", "right")
# Right-side colours are lighter tints of the model's left ones, so the four parts stay apart.
_TINT = 0.45


@dataclass
class HeadSegmentation:
    labels: sitk.Image  # uint8 on the input grid: values of label_table (0 background)
    label_table: list[SegmentSpec]  # value -> structure, colour, side
    volumes_mm3: dict[str, float]  # segment name -> volume (mm3) on the input grid
    side_volumes_mm3: dict[str, float]  # "left"/"right" -> whole hippocampus (mm3); empty for a crop
    mode: str  # "whole-head" (localized) or "crop" (segmented directly)
    localization: Localization | LearnedLocalization | None
    seconds: float
    device: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds ("localize_s", "network_s")
    confidence: dict[str, dict] = field(default_factory=dict)  # side -> _confidence() figures
    failed_sides: dict[str, str] = field(default_factory=dict)  # side -> why it was not segmented


def side_label_table(card) -> list[SegmentSpec]:
    """The side-specific labels of a whole head, built from the model card's structures. A
    label whose card entry has "sides" takes each side's value and colour from there (the
    whole-hippocampus card: FreeSurfer's 17 and 53 with its LUT colour, so our labelmaps overlay
    FreeSurfer's). Otherwise left keeps the card's value and right adds the number of card
    labels, in a lighter tint: the anterior/posterior card gives 1 left anterior, 2 left
    posterior, 3 right anterior, 4 right posterior. Segment names come from the structure and
    the side ("Left hippocampus anterior", "Left hippocampus"), never from string surgery."""
    table = []
    for offset, side in ((0, "left"), (len(card.labels), "right")):
        for entry in card.labels:
            declared = entry.get("sides", {}).get(side)
            if declared is not None:
                table.append(SegmentSpec(int(declared["value"]), entry["name"],
                                         tuple(round(float(c), 3) for c in declared["color"]), side))
                continue
            colour = np.asarray(entry.get("color", (1.0, 1.0, 0.0)), dtype=float)
            if side == "right":
                colour = colour + (1 - colour) * _TINT
            table.append(SegmentSpec(int(entry["value"]) + offset, entry["name"], tuple(round(float(c), 3) for c in colour), side))
    return table


def side_output_values(card) -> dict[tuple[str, int], int]:
    """(side, the network's class value) -> the value written on the input grid (side_label_table's)."""
    return {(spec.side, int(entry["value"])): spec.value
            for spec, entry in zip(side_label_table(card), list(card.labels) * 2)}


def place_side(out: np.ndarray, side: str, labels: np.ndarray, box, output_values: dict) -> None:
    """Write one side's labels (the network's class values on the scan's index `box`) into the
    whole-scan array `out` with that side's values; voxels the other side already holds stay."""
    start, stop = box
    target = out[tuple(slice(a, b) for a, b in zip(start[::-1], stop[::-1]))]
    write = (labels > 0) & (target == 0)
    lookup = np.zeros(256, dtype=np.uint8)
    for (which, value), written in output_values.items():
        if which == side:
            lookup[value] = written
    target[write] = lookup[labels[write]]


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """Zero every foreground voxel outside the largest 26-connected component of the
    foreground. One box holds one hippocampus; stray islands are false positives."""
    return np.where(largest_component(labels > 0), labels, 0).astype(labels.dtype)


def _aligned_crop(image: sitk.Image, centre_lps, rotation, box_mm, segmenter) -> tuple[sitk.Image, sitk.Image]:
    """The box around one hippocampus resampled onto a 1 mm grid whose axes follow the MNI
    template's axes in the scan (the registration's rotation), returned twice: with that true
    geometry, and with the same voxels labelled as lying on the model's own grid direction.

    Why: the network saw hippocampi in roughly standard head orientation (training rotations
    up to 15 degrees). A head tilted 20 degrees in the scanner, segmented on an axis-aligned
    grid, shows the network a hippocampus at 20+ degrees and it fails (measured: Dice 0 on
    colin27 turned 20 degrees). Presenting every crop in template orientation removes the tilt.
    """
    config = segmenter.preprocessing
    spacing = np.asarray(config.spacing, dtype=float)
    model_direction = np.reshape(config.direction, (3, 3))
    size = np.maximum(np.round(np.asarray(box_mm) / spacing), 4).astype(int)
    direction = np.asarray(rotation) @ model_direction
    origin = np.asarray(centre_lps) - direction @ ((size - 1) / 2 * spacing)
    grid = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    grid.SetSpacing(spacing.tolist())
    grid.SetDirection(direction.flatten().tolist())
    grid.SetOrigin(origin.tolist())
    true_crop = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0)
    canonical = sitk.Image(true_crop)
    canonical.SetDirection(model_direction.flatten().tolist())
    return true_crop, canonical


def centre_intensity_rank(crop: np.ndarray, half_mm: float = 6.0, spacing_mm: float = 1.0) -> float:
    """Where the median intensity of the crop's central block (the expected hippocampus) ranks
    among all voxels of the crop, 0..1. A hippocampus is grey matter, in the middle of its
    surroundings in any contrast; fluid (a resection cavity, a widened temporal horn) is at an
    extreme: darkest in T1 and FLAIR, brightest in T2. Used to say why a side was not found."""
    inside = crop[crop != 0] if np.any(crop != 0) else crop.ravel()
    half = [max(1, int(round(half_mm / spacing_mm)))] * 3
    centre = [n // 2 for n in crop.shape]
    block = crop[tuple(slice(max(c - h, 0), c + h) for c, h in zip(centre, half))]
    return float(np.mean(inside < np.median(block)))


def _labels_to_box(labels: np.ndarray, crop: sitk.Image, image: sitk.Image, box) -> np.ndarray:
    """Labels on the aligned crop's grid -> labels on the scan's index box: each label's
    indicator resampled linearly and the arg-max taken, smoother than nearest neighbour."""
    start, stop = box
    region = sitk.Image([int(b - a) for a, b in zip(start, stop)], sitk.sitkFloat32)
    region.SetSpacing(image.GetSpacing())
    region.SetDirection(image.GetDirection())
    region.SetOrigin(image.TransformIndexToPhysicalPoint([int(a) for a in start]))
    indicators = np.stack([labels == value for value in range(int(labels.max()) + 1)])
    return resample_argmax(indicators, crop, region)


def find_hippocampi(image: sitk.Image, box_mm=BOX_MM):
    """The learned localizer; the template registration where no localizer is installed, or as
    a second opinion when the network finds neither hippocampus (LocalizationError if both fail)."""
    try:
        return localize_learned(image, box_mm)
    except LocalizerUnavailable:
        return localize(image, box_mm)
    except LocalizationError as learned:
        try:
            found = localize(image, box_mm)
        except LocalizationError as registration:
            raise LocalizationError(f"{learned} The template registration did not find them either: {registration}") from None
        found.notes.append("The learned localizer found no hippocampus with confidence; the template registration found both.")
        return found


def _scaled(progress, low, high):
    if progress is None:
        return None
    return lambda fraction: progress(low + (high - low) * float(fraction))


def segment_head(
    segmenter,
    image: sitk.Image,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    box_mm=BOX_MM,
    align: bool = True,
) -> HeadSegmentation:
    """Segment both hippocampi of `image` (any orientation and voxel size); see module doc.

    Raises LocalizationError (an InputError) with a message when the hippocampi cannot be
    found, and InterruptedError when `cancelled()` turns true. `align=False` segments each
    index box on the scan's own axes instead of in template orientation (for comparison).
    """
    started = time.time()
    card = segmenter.card
    if looks_like_crop(image):
        result = segmenter.segment_image(image, progress=progress, cancelled=cancelled)
        table = specs_from_card(card)
        notes = ["Crop-sized input: segmented directly, without localization (side unknown)."] + list(result.notes)
        return HeadSegmentation(
            result.labels, table, measure_volumes(result.labels, table), {}, "crop", None,
            time.time() - started, result.device, notes, {"network_s": round(result.seconds, 3)},
            {"crop": dict(result.confidence)},
        )

    if progress is not None:
        progress(0.0)
    cpu_started = time.process_time()
    found = find_hippocampi(image, box_mm)
    check_model_contrast(getattr(found, "deep_brightness_rank", None), card)  # a T1-only model refuses a FLAIR
    failed = dict(getattr(found, "failed", {}))
    sides = [side for side in SIDES if side in found.boxes]
    # Wall and CPU seconds: on a busy machine wall time measures the neighbours too.
    timings = {"localize_s": round(found.seconds, 3), "localize_cpu_s": round(time.process_time() - cpu_started, 3)}
    network_started, network_cpu = time.time(), time.process_time()
    if cancelled is not None and cancelled():
        raise InterruptedError("Segmentation cancelled")
    if progress is not None:
        progress(0.2)
    output_values = side_output_values(card)
    out = np.zeros(image.GetSize()[::-1], dtype=np.uint8)
    notes = list(found.notes)
    device = segmenter.device
    side_volumes, confidence = {}, {}
    voxel = float(np.prod(image.GetSpacing()))
    side_labels = {}
    if align:
        # Both boxes in template orientation share one shape: one batched network pass.
        crops = {side: _aligned_crop(image, found.centres_lps[side], found.rotation, box_mm, segmenter) for side in sides}
        crop_labels, probabilities, device, crop_notes = segmenter.segment_crops(
            [crops[side][1] for side in sides], progress=_scaled(progress, 0.2, 0.9), cancelled=cancelled
        )
        notes += crop_notes
        for side, labels, probs in zip(sides, crop_labels, probabilities):
            labels = keep_largest_component(labels)
            confidence[side] = segment_confidence(labels, probs)
            confidence[side]["centre_intensity_rank"] = round(centre_intensity_rank(sitk.GetArrayViewFromImage(crops[side][0])), 3)
            side_labels[side] = _labels_to_box(labels, crops[side][0], image, found.boxes[side])
    else:
        for number, side in enumerate(sides):
            start, stop = found.boxes[side]
            # A region-of-interest copy gives the same model grid as index_box=(start, stop) on
            # the whole image, but maps labels back onto the box only: faster for 256^3 inputs.
            crop = sitk.RegionOfInterest(image, [int(b - a) for a, b in zip(start, stop)], [int(a) for a in start])
            result = segmenter.segment_image(crop, progress=_scaled(progress, 0.2 + 0.4 * number, 0.6 + 0.4 * number), cancelled=cancelled)
            side_labels[side] = keep_largest_component(sitk.GetArrayFromImage(result.labels))
            device = result.device
            notes += result.notes
    for side in sides:
        labels = side_labels[side]
        if not labels.any():
            failed[side] = f"no {side} hippocampus was found in the region the localization chose"
            continue
        place_side(out, side, labels, found.boxes[side], output_values)
        side_volumes[side] = float(np.count_nonzero(labels)) * voxel
    if not side_volumes:
        raise LocalizationError(
            "No hippocampus was found in this volume ({}). Check that the volume is an MRI of a head, or place a "
            "region of interest around a hippocampus by hand.".format("; ".join(failed.values())))
    if progress is not None:
        progress(1.0)
    timings["network_s"] = round(time.time() - network_started, 3)
    timings["network_cpu_s"] = round(time.process_time() - network_cpu, 3)
    labels_image = sitk.GetImageFromArray(out)
    labels_image.CopyInformation(image)
    table = side_label_table(card)
    return HeadSegmentation(
        labels_image, table, measure_volumes(labels_image, table), side_volumes, "whole-head", found,
        time.time() - started, device, notes, timings, confidence, failed,
    )
