"""The learned localizer: one small LUnet reads the whole scan on a coarse grid and finds both
hippocampi and the intracranial space, for any MRI contrast (SimpleITK + numpy; the network
runs through backends.py: ONNX Runtime on the CPU, else PyTorch).

    found = localize_learned(image)        # LearnedLocalization, or LocalizationError
    found.boxes["left"], found.confidence["left"], found.intracranial_ml

How:
1. The scan is block-averaged to about 4 mm (sitk.BinShrink, cheap and anti-aliasing) and
   resampled linearly onto a 4 mm grid whose axes follow the world (RAS) axes from the header,
   covering the scan's field of view (at most 320 mm a side); voxels outside the scan are 0 and
   the rest are scaled by percentiles (`normalise`, the same as the training generator's).
2. The network gives per voxel: background, intracranial space, left and right hippocampus. It
   was trained only on synthetic heads (training/localizer_synth.py: every contrast, 2 mm to
   6 mm slices, skull on or off, cut fields of view, oblique poses, lesions, atrophy, cavities).
3. Per side: the largest connected region of that class, its probability-weighted centre, its
   mean probability (the side's confidence) and its size. A side is refused when it is missing,
   unconfident or touches the edge of the field of view (a hippocampus cut by the field of view
   would be measured partially); the other side goes on.
4. The intracranial volume is the summed probability of the three intracranial classes (mL),
   flagged when the intracranial space touches the edge of the field of view.
Each side's crop box is centred on its hippocampus; its axes turn with the line between the two
hippocampi (head yaw and roll), as the registration's rotation did, and about that line by the
head's pitch: the long axis of the intracranial space is brought to the angle it has in the
heads the segmentation network was trained on (the card's "crop_pose", measured by
scripts/measure_crop_pose.py); where the field of view cuts the intracranial space, the
hippocampi's own long axes are brought to the training hippocampi's angle instead.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .contrast import deep_brightness_rank
from .resources import RESOURCES_DIR

LOCALIZER_DIR = RESOURCES_DIR / "Localizer"
LOCALIZER_CARD = LOCALIZER_DIR / "hippocampus_localizer.json"

GRID_SPACING_MM = 4.0
MAX_GRID_MM = 320.0
# The localizer grid's axes in LPS: index x runs to the Right, y to Anterior, z to Superior
# (RAS voxel order, as the training label maps are stored).
GRID_DIRECTION = np.diag([-1.0, -1.0, 1.0])
CLASSES = ("background", "intracranial", "left", "right")
SIDES = ("left", "right")


class LocalizerUnavailable(RuntimeError):
    """No localizer card or weights are installed: the registration path is used instead."""


def normalise(array: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Scale voxels inside the field of view to 0..1 by their 0.5th and 99.5th percentiles;
    outside stays 0. Training applies the same scaling (training/localizer_synth.normalise_tensor;
    Testing/test_localizer.py checks that the two agree)."""
    values = array[inside]
    if values.size == 0:
        return np.zeros_like(array, dtype=np.float32)
    low, high = np.percentile(values, [0.5, 99.5])
    scaled = np.clip((array - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    return np.where(inside, scaled, 0.0).astype(np.float32)


@dataclass
class LearnedLocalization:
    boxes: dict  # side -> index box [start, stop) in the scan
    centres_lps: dict  # side -> hippocampus centre, scan physical LPS mm
    rotation: list  # 3x3: crop axes (template-like: x left, y posterior, z superior) in LPS
    confidence: dict  # side -> {"mean_probability", "volume_mm3", "touches_edge"}
    failed: dict  # side -> reason (not segmented)
    intracranial_ml: float
    intracranial_cut: bool  # the intracranial space touches the field of view's edge
    seconds: float
    cpu_seconds: float
    notes: list = field(default_factory=list)
    method: str = "learned localizer"
    pitch_turn_degrees: float | None = None  # how far the crops were turned for the head's pitch (None: not turned)
    deep_brightness_rank: float | None = None  # contrast.deep_brightness_rank: high in a T1, low in FLAIR/T2

    def summary(self) -> dict:
        return {
            "method": self.method,
            "boxes": {side: [list(map(int, b[0])), list(map(int, b[1]))] for side, b in self.boxes.items()},
            "centres_ras": {side: [-c[0], -c[1], c[2]] for side, c in self.centres_lps.items()},
            "confidence": {side: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items()}
                           for side, c in self.confidence.items()},
            "failed": dict(self.failed),
            "intracranial_ml": round(self.intracranial_ml, 1),
            "intracranial_cut": self.intracranial_cut,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "pitch_turn_degrees": None if self.pitch_turn_degrees is None else round(self.pitch_turn_degrees, 1),
            "deep_brightness_rank": None if self.deep_brightness_rank is None else round(self.deep_brightness_rank, 3),
        }


def localizer_grid(image: sitk.Image) -> sitk.Image:
    """A 4 mm grid on world axes covering the scan's field of view (centred, at most 320 mm
    a side, a multiple of 16 voxels so the network's four halvings fit)."""
    size = np.asarray(image.GetSize())
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
                        for corner in np.stack(np.meshgrid(*[[-0.5, s - 0.5] for s in size], indexing="ij"), -1).reshape(-1, 3)])
    along = corners @ GRID_DIRECTION  # coordinates along the grid axes
    low, high = along.min(axis=0), along.max(axis=0)
    extent = np.minimum(high - low, MAX_GRID_MM)
    voxels = np.maximum(np.ceil(extent / GRID_SPACING_MM / 16.0) * 16, 16).astype(int)
    centre = (low + high) / 2
    first = centre - (voxels - 1) / 2 * GRID_SPACING_MM
    grid = sitk.Image([int(v) for v in voxels], sitk.sitkFloat32)
    grid.SetSpacing([GRID_SPACING_MM] * 3)
    grid.SetDirection(GRID_DIRECTION.flatten().tolist())
    grid.SetOrigin((GRID_DIRECTION @ first).tolist())
    return grid


def _grid_points(grid: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """Physical LPS points of the grid voxels where `mask` (z, y, x) is true."""
    index = np.argwhere(mask)[:, ::-1].astype(float)
    return index @ (np.reshape(grid.GetDirection(), (3, 3)) * np.asarray(grid.GetSpacing())).T + np.asarray(grid.GetOrigin())


def resample_to_grid(image: sitk.Image, grid: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(voxels on the grid as float32, bool mask of grid voxels inside the scan)."""
    spacing = np.asarray(image.GetSpacing())
    factors = np.maximum(np.floor(GRID_SPACING_MM / spacing + 0.25), 1).astype(int)
    source = sitk.Cast(image, sitk.sitkFloat32)
    if np.any(factors > 1):
        source = sitk.BinShrink(source, [int(f) for f in factors])
    array = sitk.GetArrayFromImage(sitk.Resample(source, grid, sitk.Transform(), sitk.sitkLinear, 0.0))
    # Inside: grid voxel centres that fall within the original scan's voxels.
    points = _grid_points(grid, np.ones(array.shape, dtype=bool))  # every voxel, in array order
    to_index = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    continuous = np.linalg.solve(to_index, (points - np.asarray(image.GetOrigin())).T).T
    size = np.asarray(image.GetSize())
    inside = np.all((continuous >= -0.5) & (continuous <= size - 0.5), axis=1).reshape(array.shape)
    return array.astype(np.float32), inside


def load_card():
    from .weights import ModelCard, WeightsError

    if not LOCALIZER_CARD.is_file():
        raise LocalizerUnavailable(f"No learned localizer is installed ({LOCALIZER_CARD.name} is missing).")
    try:
        return ModelCard(LOCALIZER_CARD, json.loads(LOCALIZER_CARD.read_text()))
    except ValueError as error:
        raise WeightsError(f"The localizer card {LOCALIZER_CARD} is not valid JSON ({error}). Reinstall the extension.") from error


_backend_cache: dict = {}


def _backend():
    """The localizer network, loaded once per process (ONNX Runtime on the CPU where installed)."""
    card = load_card()
    key = (str(card.path), card.weights_sha256)
    if key not in _backend_cache:
        from .backends import load_backend

        _backend_cache.clear()
        _backend_cache[key] = (card, load_backend(card, "cpu"))
    return _backend_cache[key]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean (z, y, x) mask."""
    if not mask.any():
        return mask
    components = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True),
                                       sortByObjectSize=True)
    return sitk.GetArrayViewFromImage(components) == 1


def _touches(mask: np.ndarray, outside: np.ndarray) -> bool:
    """True when `mask` has a voxel next to (or on) the grid's edge or a voxel outside the scan."""
    padded = np.pad(outside, 1, constant_values=True)
    near = np.zeros_like(mask)
    for axis in range(3):
        for step in (-1, 1):
            near |= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return bool((mask & near).any())


def _crop_rotation(centres: dict) -> np.ndarray:
    """Crop axes in LPS: x along right->left hippocampus, z as close to superior as allows,
    y = z x x (posterior). Identity for an upright head; one side alone gives identity."""
    if len(centres) < 2:
        return np.eye(3)
    x = np.asarray(centres["left"]) - np.asarray(centres["right"])
    if np.linalg.norm(x) < 20:  # hippocampi 20 mm apart cannot be a head's two sides
        return np.eye(3)
    x = x / np.linalg.norm(x)
    z = np.array([0.0, 0.0, 1.0]) - x[2] * x
    z = z / np.linalg.norm(z)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def long_axis_pitch(points_lps: np.ndarray, frame: np.ndarray) -> float:
    """Angle in degrees of the long axis of a cloud of points (the intracranial space, or one
    hippocampus) in the sagittal plane of `frame` (3x3, columns x left, y posterior, z superior
    in LPS), from y towards z. Both have a clear long axis there (the intracranial space front
    to back: variance 1.6-2.3x that across; a hippocampus more so), so the angle follows the
    head's pitch."""
    sagittal = (np.asarray(points_lps, dtype=float) @ np.asarray(frame)[:, 1:3])
    _, vectors = np.linalg.eigh(np.cov(sagittal.T))
    major = vectors[:, 1] if vectors[0, 1] >= 0 else -vectors[:, 1]
    return float(np.degrees(np.arctan2(major[1], major[0])))


def _pitched(frame: np.ndarray, degrees: float) -> np.ndarray:
    """`frame` turned about its own x axis by `degrees`, from y towards z: an axis at angle a in
    `frame` (long_axis_pitch) is at a - degrees in the result."""
    angle = np.radians(degrees)
    x, y, z = frame.T
    return np.stack([x, np.cos(angle) * y + np.sin(angle) * z, -np.sin(angle) * y + np.cos(angle) * z], axis=1)


def _pitch_turn(pose: dict, grid: sitk.Image, labels: np.ndarray, intracranial_cut: bool, regions: dict,
                frame: np.ndarray) -> float | None:
    """Degrees to turn the crops about their left-right axis so the head's pitch matches the
    training heads' (the segmentation network saw their poses, within its augmentation, only);
    None when the card gives no pose or no side was found.

    The head's pitch is read from the long axis of the intracranial space; where the field of
    view cuts that space (its long axis would then be the cut's), from the long axes of the
    hippocampi found, against the training heads' hippocampi. Also with one side found (a
    resection the localizer misses too): the remaining side is the one that matters then."""
    if not regions or "pitch_degrees" not in pose:
        return None
    if not intracranial_cut:
        pitch = long_axis_pitch(_grid_points(grid, labels > 0), frame) - float(pose["pitch_degrees"])
    elif "hippocampus_pitch_degrees" in pose:
        measured = [long_axis_pitch(_grid_points(grid, region), frame) for region in regions.values()]
        pitch = float(np.mean(measured)) - float(pose["hippocampus_pitch_degrees"])
    else:
        return None
    limit = float(pose.get("max_correction_degrees", 45.0))
    return float(np.clip(pitch, -limit, limit))


def localize_learned(image: sitk.Image, box_mm, thresholds: dict | None = None) -> LearnedLocalization:
    """Boxes around each hippocampus found by the learned localizer (see the module doc).
    Raises LocalizerUnavailable when no localizer is installed, LocalizationError (an
    InputError) when neither hippocampus is found with confidence."""
    from .localize import LocalizationError, box_around

    started, cpu_started = time.time(), time.process_time()
    card, backend = _backend()
    limits = dict(card.data.get("quality", {}).get("sides", {}))
    limits.update(thresholds or {})
    min_probability = float(limits.get("min_mean_probability", 0.5))
    min_volume = float(limits.get("min_volume_mm3", 300.0))
    grid = localizer_grid(image)
    array, inside = resample_to_grid(image, grid)
    if not np.isfinite(array).all():
        raise LocalizationError("The volume has NaN or infinite voxels; replace them before segmenting.")
    probabilities = backend.forward(normalise(array, inside)[None, None])[0]  # (4, z, y, x)
    voxel_mm3 = GRID_SPACING_MM ** 3
    labels = probabilities.argmax(axis=0)
    outside = ~inside
    intracranial = (probabilities[1:] * inside).sum() * voxel_mm3 / 1000.0
    intracranial_cut = _touches(labels > 0, outside) and bool((labels > 0).any())
    centres, confidence, failed, boxes, regions = {}, {}, {}, {}, {}
    for number, side in enumerate(SIDES, start=2):
        region = largest_component(labels == number)
        volume = float(region.sum()) * voxel_mm3
        probability = float(probabilities[number][region].mean()) if region.any() else 0.0
        touches = _touches(region, outside) if region.any() else False
        confidence[side] = {"mean_probability": probability, "volume_mm3": volume, "touches_edge": touches}
        if not region.any() or volume < min_volume or probability < min_probability:
            failed[side] = (f"no {side} hippocampus was found with confidence by the localizer ({volume:.0f} mm3 at "
                            f"{probability:.2f} mean probability; a hippocampus gives at least {min_volume:.0f} mm3 at "
                            f"{min_probability:.2f})")
            continue
        if touches:
            failed[side] = (f"the field of view cuts through the {side} hippocampus, so its volume would be partial; "
                            "use a scan that covers both temporal lobes")
            continue
        weights = probabilities[number] * region
        where = np.argwhere(region)  # (z, y, x)
        centre_index = (where * weights[region][:, None]).sum(axis=0) / weights[region].sum()
        centres[side] = list(grid.TransformContinuousIndexToPhysicalPoint([float(v) for v in centre_index[::-1]]))
        regions[side] = region
    rotation = _crop_rotation(centres)
    pitch_turn = _pitch_turn(card.data.get("crop_pose", {}), grid, labels, intracranial_cut, regions, rotation)
    if pitch_turn is not None:
        rotation = _pitched(rotation, pitch_turn)
    for side, centre in centres.items():
        boxes[side] = box_around(image, np.asarray(centre), box_mm, rotation)
    notes = []
    if intracranial_cut:
        notes.append("The intracranial space reaches the edge of the field of view, so the intracranial volume "
                     f"({intracranial:.0f} mL) covers only the part inside it.")
    brightness = deep_brightness_rank(array, largest_component((labels > 0) & inside), GRID_SPACING_MM)
    found = LearnedLocalization(boxes, centres, rotation.tolist(), confidence, failed, float(intracranial), intracranial_cut,
                                time.time() - started, time.process_time() - cpu_started, notes,
                                pitch_turn_degrees=pitch_turn, deep_brightness_rank=brightness)
    if not centres:
        raise LocalizationError(
            "Neither hippocampus was found with confidence in this volume ({}). Check that it is an MRI of a head, or "
            "place a region of interest around a hippocampus by hand.".format("; ".join(failed.values())))
    return found
