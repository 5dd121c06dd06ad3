"""One image in, labels and their meaning out: the MRML-free core every caller shares.

    result = label_image(image)                  # sitk.Image in, LabelResult out
    result.labels                                # uint8 on the input's own grid
    result.specs                                 # value -> segment name, colour, side, terminology

The Slicer module's child process, the command line, the BIDS App, the console API and the web
panel all call `label_image`; only the console API and the web panel then turn the result into
MRML segments (slicer_adapter/mrml.py). Nothing here imports slicer, Qt or (at import time) torch, so the
command line starts fast and this file runs under the plain Python that Slicer launches.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from . import terminology
from .preprocess import InputError

_CACHE_SIZE = 2  # a model or two per device; each is small (~0.5 MB of weights)
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class SegmentSpec:
    """One label value of a label image and the segment it becomes."""

    value: int
    name: str  # structure name from the model card, e.g. "Hippocampus anterior" or "Hippocampus"
    color: tuple  # (r, g, b), 0..1
    side: str | None = None  # "left"/"right" when known (whole-head path), else None

    @property
    def segment_name(self) -> str:
        return terminology.display_name(self.name, self.side)

    @property
    def terminology(self) -> str:
        return terminology.entry_string(self.name, self.side)


def specs_from_card(card, side: str | None = None) -> list[SegmentSpec]:
    """The card's own labels (crop or ROI mode: the side is unknown)."""
    return [SegmentSpec(int(e["value"]), e["name"], tuple(float(c) for c in e["color"]), side) for e in card.labels]


# ----------------------------------------------------------------------------- model cache


class LoadedModel:
    """A Segmenter and the lock that serialises its use (it may move itself to the CPU)."""

    def __init__(self, segmenter):
        self.segmenter = segmenter
        self.lock = threading.Lock()


def get_segmenter(model=None, device: str = "auto") -> LoadedModel:
    """Load a model once per (model, device, weights file state) and reuse it."""
    from .engine import Segmenter, choose_device
    from .weights import find_model

    card = find_model(model)
    resolved = choose_device(device)
    files = [card.weights_path] + ([card.path.parent / card.data["onnx"]["file"]] if "onnx" in card.data else [])
    # A changed weights file (or backend choice) must load again, never reuse a stale model.
    state = tuple((s.st_mtime_ns, s.st_size) if s else None for s in (f.stat() if f.is_file() else None for f in files))
    key = (str(card.path.resolve()), resolved, state, os.environ.get("LUNET_BACKEND", "auto"))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    loaded = LoadedModel(Segmenter(str(card.path), resolved))
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def clear_model_cache() -> None:
    with _cache_lock:
        _cache.clear()


# ----------------------------------------------------------------------------- labels


@dataclass
class LabelResult:
    labels: sitk.Image  # uint8 on the input grid
    specs: list  # [SegmentSpec], one per label value
    card: object  # weights.ModelCard
    device: str
    seconds: float
    notes: list = field(default_factory=list)
    volumes_mm3: dict = field(default_factory=dict)  # segment name -> mm3
    side_volumes_mm3: dict = field(default_factory=dict)  # "left"/"right" -> whole hippocampus mm3 (whole head)
    details: dict = field(default_factory=dict)  # JSON-able: mode, localization, stage timings
    warnings: list = field(default_factory=list)  # usable but less trustworthy input (e.g. thick slices)

    def summary(self) -> dict:
        """A JSON-able description (label table, volumes, provenance) for files and processes."""
        return {
            "model": {"id": self.card.model_id, "version": self.card.version, "weights_sha256": self.card.weights_sha256},
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "labels": [
                {"value": s.value, "structure": s.name, "segment_name": s.segment_name, "color": list(s.color),
                 "side": s.side, "terminology": s.terminology}
                for s in self.specs
            ],
            "volumes_mm3": {k: round(v, 1) for k, v in self.volumes_mm3.items()},
            "side_volumes_mm3": {k: round(v, 1) for k, v in self.side_volumes_mm3.items()},
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "details": self.details,
        }


def resolution_warnings(image: sitk.Image, card) -> list[str]:
    """A warning when the scan's voxels are coarser than the model was shown to be trustworthy
    for: along any axis (the card's "quality"/"trusted_max_spacing_mm") or in volume
    ("trusted_max_voxel_mm3"), where volumes drifted by more than 25 % on validation scans."""
    quality = card.data.get("quality", {})
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    limits = []
    if quality.get("trusted_max_spacing_mm") is not None and spacing.max() > float(quality["trusted_max_spacing_mm"]) + 1e-6:
        limits.append(f"{float(quality['trusted_max_spacing_mm']):g} mm along any axis")
    if quality.get("trusted_max_voxel_mm3") is not None and np.prod(spacing) > float(quality["trusted_max_voxel_mm3"]) + 1e-6:
        limits.append(f"{float(quality['trusted_max_voxel_mm3']):g} mm3 per voxel")
    if not limits:
        return []
    return [
        "The voxels are {} mm: coarser than this model was validated for ({}), so its volumes may be off by more "
        "than 25 %. Use a 3D scan with about 1 mm voxels where one exists.".format(
            "x".join(f"{v:.3g}" for v in spacing), " and ".join(limits))
    ]


def _outside_band(rank, band) -> bool:
    """A crop centre's intensity rank (wholebrain.centre_intensity_rank) outside (low, high):
    the darkest or brightest of its surroundings, as fluid is. No rank or no band: False."""
    return band is not None and rank is not None and not band[0] <= float(rank) <= band[1]


def fluid_centre(figures: dict, limits: dict) -> bool:
    """A side whose crop centre ranks outside the card's "centre_intensity_rank_band" (darkest or
    brightest of its surroundings, as a resection cavity is): set only for a model that never saw
    cavities and outlines one as a full-size hippocampus (hippocampus-lunet: 3,457-5,553 mm3 on
    resected synthetic T1 heads, evaluate-wholehead)."""
    return _outside_band(figures.get("centre_intensity_rank"), limits.get("centre_intensity_rank_band"))


def presence_failures(confidence: dict, card) -> dict[str, str]:
    """Where ("crop", "roi", "left", "right") the network is not sure of a hippocampus, and what
    it found there. Thresholds: the card's "quality"/"presence", for crops and regions ("crop")
    and for each side of a localized head ("whole_head"): min_volume_mm3 (on the 1 mm model
    grid), min_mean_probability and optionally max_mean_entropy inside the segment, and
    centre_intensity_rank_band (fluid_centre); chosen from experiments/presence_check.py and
    evaluate-wholehead figures."""
    presence = card.data.get("quality", {}).get("presence")
    failures = {}
    if not presence:
        return failures
    for where, figures in confidence.items():
        limits = presence.get("whole_head" if where in ("left", "right") else "crop", presence)
        volume, probability = float(figures.get("voxels", 0)), float(figures.get("mean_probability", 0.0))
        entropy = float(figures.get("mean_entropy", 1.0))
        if fluid_centre(figures, limits):
            failures[where] = (f"the network found {volume:.0f} mm3, but at the intensity of fluid, which this model (not "
                               "trained on resections or severe atrophy) does not tell from hippocampus")
            continue
        if (volume >= limits["min_volume_mm3"] and probability >= limits["min_mean_probability"]
                and entropy <= limits.get("max_mean_entropy", 1.0)):
            continue
        failures[where] = (
            f"the network found {volume:.0f} mm3 with a mean confidence of {probability:.2f} and entropy "
            f"{entropy:.2f}, where a hippocampus gives at least {limits['min_volume_mm3']:g} mm3 and "
            f"{limits['min_mean_probability']:.2f}" + (f", entropy at most {limits['max_mean_entropy']:.2f}"
                                                         if "max_mean_entropy" in limits else ""))
    return failures


def check_presence(confidence: dict, card, name: str) -> None:
    """Refuse to report a hippocampus the network is not sure of in a crop or region: one
    without a hippocampus (temporal cortex, cerebellum, a CT) otherwise comes back as a
    confident-looking volume. The sides of a whole head go through drop_failed_sides instead."""
    for where, found in presence_failures(confidence, card).items():
        raise InputError(
            f"No hippocampus was found in {name!r} ({found}). The volume or region does not seem to contain one: "
            "place the region of interest around a hippocampus, or segment the whole-head scan."
        )


# Outside this band the centre of a side's crop is at the darkest or brightest extreme of its
# surroundings, as fluid is (wholebrain.centre_intensity_rank).
FLUID_RANK_BAND = (0.12, 0.88)


def _fluid_hint(out: "LabelResult", side: str) -> str:
    rank = out.details.get("confidence", {}).get(side, {}).get("centre_intensity_rank")
    if not _outside_band(rank, FLUID_RANK_BAND):
        return ""
    return (f"; the region looks like fluid, {'darker' if rank < FLUID_RANK_BAND[0] else 'brighter'} than "
            f"{(1 - rank) if rank < FLUID_RANK_BAND[0] else rank:.0%} of its surroundings: a resection or severe atrophy?")


def check_one_hippocampus(labels: sitk.Image, name: str, min_share: float = 0.25) -> None:
    """A crop or region is segmented as one hippocampus of unknown side: a box around both
    would come back as one "Hippocampus" of twice the volume. Refuse when the labels form two
    large separate regions (the second holds at least `min_share` of the labelled volume)."""
    foreground = sitk.Cast(labels > 0, sitk.sitkUInt8)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(foreground, True), sortByObjectSize=True)
    sizes = np.bincount(sitk.GetArrayViewFromImage(components).ravel())[1:]
    if len(sizes) >= 2 and sizes[1] >= min_share * sizes.sum():
        voxel = float(np.prod(labels.GetSpacing()))
        raise InputError(
            f"The region of {name!r} seems to hold both hippocampi (two separate regions of {sizes[0] * voxel:.0f} and "
            f"{sizes[1] * voxel:.0f} mm3), which would be reported as one. Segment the whole-head scan (both sides are "
            "found and labelled left and right), or place the region of interest around one hippocampus.")


def drop_failed_sides(out: "LabelResult", failures: dict[str, str], name: str) -> None:
    """Remove the sides of a whole head that failed (localization or presence) from the labels
    and volumes, with a warning saying why; refuse the scan when no side is left. A side with no
    hippocampus tissue (a resection cavity, severe atrophy, a field of view that misses it) is
    then reported as missing, never as a normal-looking volume."""
    failed = dict(out.details.get("failed_sides", {}))
    for side, found in failures.items():
        failed[side] = f"no {side} hippocampus was found with confidence ({found})" + _fluid_hint(out, side)
    if not failed:
        return
    kept = [side for side in out.side_volumes_mm3 if side not in failed]
    if not kept:
        which = "hippocampus" if len(failed) > 1 else f"{next(iter(failed))} hippocampus"
        raise InputError(
            f"No {which} was found with confidence in {name!r} ({'; '.join(failed.values())}). Check that the volume is "
            "an MRI of a head that the model's card says it was trained for, or place a region of interest around the "
            "hippocampus by hand.")
    array = sitk.GetArrayFromImage(out.labels)
    for spec in out.specs:
        if spec.side in failed:
            array[array == spec.value] = 0
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(out.labels)
    out.labels = labels
    out.volumes_mm3 = measure_volumes(labels, out.specs)
    for side, reason in failed.items():
        out.side_volumes_mm3.pop(side, None)
        out.warnings.append(f"The {side} hippocampus was not segmented: {reason}. Only the "
                            f"{' and '.join(kept)} side is reported; if the {side} side matters, check the scan there "
                            "(resection, severe atrophy, field of view) or place a region of interest by hand.")
    out.details["failed_sides"] = failed


def measure_volumes(labels: sitk.Image, specs) -> dict[str, float]:
    """Segment name -> volume (mm3) of each label value, counted on the labels' own grid."""
    voxel = float(np.prod(labels.GetSpacing()))
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=256)
    return {spec.segment_name: float(counts[spec.value]) * voxel for spec in specs}


def label_image(
    image: sitk.Image,
    model=None,
    device: str = "auto",
    index_box=None,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    loaded: LoadedModel | None = None,
    name: str = "volume",
    checked: list | None = None,
) -> LabelResult:
    """Labels for one image. With an index box [start, stop) (the user's ROI) only that box is
    segmented, with the model's own labels. Without one, `wholebrain.segment_head` decides: a
    crop-sized input is segmented directly; a whole-head or whole-brain scan is localized and
    both hippocampi are segmented, with left/right labels. Raises InputError (bad input,
    hippocampi not found), WeightsError and InterruptedError (cancelled).

    The input is checked here, once, by checks.check_input (every caller comes through this
    function); a caller that already ran that check (the GUI does, before it starts the work)
    passes its warnings as `checked`."""
    from .checks import check_input, float32_safe
    from .memory import is_out_of_memory, out_of_memory_message

    started = time.time()
    warnings = list(checked) if checked is not None else check_input(image, name)
    # A Slicer node never goes through the file reader's offset: a float64 scan such as
    # 1e9 + intensity would lose its contrast in the float32 steps below.
    image = float32_safe(image)
    loaded = loaded or get_segmenter(model, device)
    try:
        out = _label(image, loaded, index_box, progress, cancelled)
    except Exception as error:  # an allocation failure in any library becomes one clear message
        if is_out_of_memory(error):
            raise InputError(out_of_memory_message(name)) from error
        raise
    return _finish(out, image, warnings, name, started)


def _label(image, loaded, index_box, progress, cancelled) -> LabelResult:
    """The network's labels: of the index box, or of a crop or whole head (segment_head)."""
    from .wholebrain import segment_head

    with loaded.lock:
        if index_box is not None:
            result = loaded.segmenter.segment_image(image, index_box, progress=progress, cancelled=cancelled)
            specs = specs_from_card(result.card)
            out = LabelResult(result.labels, specs, result.card, result.device, 0.0, list(result.notes),
                              volumes_mm3=measure_volumes(result.labels, specs),
                              details={"mode": "roi", "timings": {"network_s": round(result.seconds, 3)},
                                       "confidence": {"roi": dict(result.confidence)}})
        else:
            head = segment_head(loaded.segmenter, image, progress=progress, cancelled=cancelled)
            specs = list(head.label_table)
            details = {"mode": head.mode, "timings": dict(head.timings)}
            if head.confidence:
                details["confidence"] = dict(head.confidence)
            if head.localization is not None:
                details["localization"] = head.localization.summary()
            if head.failed_sides:
                details["failed_sides"] = dict(head.failed_sides)
            if getattr(head.localization, "intracranial_ml", None) is not None:
                details["intracranial"] = {"volume_ml": round(head.localization.intracranial_ml, 1),
                                           "cut_by_field_of_view": head.localization.intracranial_cut,
                                           "method": "learned localizer (summed intracranial probability)"}
            out = LabelResult(head.labels, specs, loaded.segmenter.card, head.device, 0.0, list(head.notes),
                              volumes_mm3=dict(head.volumes_mm3), side_volumes_mm3=dict(head.side_volumes_mm3),
                              details=details)
    return out


def _finish(out: LabelResult, image, warnings, name, started) -> LabelResult:
    """Warnings, the presence check (a whole head's failing sides dropped), notes, time."""
    out.warnings = warnings + resolution_warnings(image, out.card)
    if out.details.get("mode") == "whole-head":
        drop_failed_sides(out, {side: found for side, found in presence_failures(out.details.get("confidence", {}), out.card).items()
                                if side in ("left", "right")}, name)
    else:
        check_presence(out.details.get("confidence", {}), out.card, name)
        check_one_hippocampus(out.labels, name)
    failed_sides = out.details.get("failed_sides", {})
    for spec in out.specs:
        segment, volume = spec.segment_name, out.volumes_mm3.get(spec.segment_name, 0)
        if volume == 0 and spec.side not in failed_sides:
            out.notes.append(f"{segment}: no voxels found (is the hippocampus inside the volume or ROI?)")
    out.seconds = time.time() - started
    return out
