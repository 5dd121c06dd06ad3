"""Whole-brain path: localization of both hippocampi (localize.py) and segment_head
(wholebrain.py). Real scans from ../shared/data/wholebrain; synthetic volumes for the
error paths. Robustness tests move the same scan in physical space (rotation, shift, storage
flip) by changing only its geometry, so the results can be compared voxel by voxel on the
original grid after undoing the move, with no interpolation in the comparison."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lunet_test_helpers import PARTS_MODEL
from LUnetSegmentationLib.runtime import localize as L
from LUnetSegmentationLib.runtime.preprocess import InputError
from LUnetSegmentationLib.runtime.wholebrain import segment_head, side_label_table

LEFT, RIGHT = (1, 2), (3, 4)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else 0.0


@pytest.fixture(scope="module")
def colin(wholebrain_dir):
    image = sitk.ReadImage(str(wholebrain_dir / "colin27" / "ch2.nii.gz"))
    aal = sitk.GetArrayFromImage(sitk.ReadImage(str(wholebrain_dir / "colin27" / "aal.nii.gz")))
    return image, aal  # AAL 37 = left hippocampus, 38 = right, on the same grid


@pytest.fixture(scope="module")
def segmenter():
    from LUnetSegmentationLib.runtime.engine import Segmenter

    return Segmenter(PARTS_MODEL, device="cpu")


@pytest.fixture(scope="module")
def colin_result(colin, segmenter):
    return segment_head(segmenter, colin[0])


# ---------- fast: template, geometry, error paths ----------


def test_template_is_small_and_in_mni_space():
    assert L.TEMPLATE_PATH.stat().st_size < 400_000  # keeps Slicer's install light
    template = L.load_template()
    assert template.GetSpacing() == (2.0, 2.0, 2.0)
    # MNI (0, 0, 0) (anterior commissure) lies inside the template, near its centre left-right.
    index = np.asarray(template.TransformPhysicalPointToContinuousIndex((0.0, 0.0, 0.0)))
    assert np.all(index > 0) and np.all(index < np.asarray(template.GetSize()) - 1)
    assert abs(index[0] - (template.GetSize()[0] - 1) / 2) < 3
    # The hippocampus centres are in grey-ish tissue of the template, not background.
    for centre in L.HIPPOCAMPUS_MNI_RAS.values():
        value = template[template.TransformPhysicalPointToIndex(L.mni_to_lps(centre).tolist())]
        assert value > 40


def test_box_is_the_same_physical_region_for_lps_and_ras_storage():
    lps = sitk.Image([120, 140, 110], sitk.sitkUInt8)
    lps.SetOrigin((-60.0, -70.0, -50.0))
    ras = sitk.Image([120, 140, 110], sitk.sitkUInt8)
    ras.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    ras.SetOrigin((59.0, 69.0, -50.0))  # same voxel centres, x and y stored reversed
    centre = np.array([20.0, -10.0, 5.0])
    corners = []
    for image in (lps, ras):
        start, stop = L.box_around(image, centre, (44, 60, 44))
        points = [image.TransformIndexToPhysicalPoint([int(v) for v in corner]) for corner in (start, np.subtract(stop, 1))]
        corners.append(np.sort(np.array(points), axis=0))
    assert np.allclose(corners[0], corners[1])
    assert np.allclose(corners[0].mean(axis=0), centre, atol=1.0)


def test_crop_sized_input_is_not_localized():
    crop = sitk.Image([35, 50, 35], sitk.sitkFloat32)
    assert L.looks_like_crop(crop)
    with pytest.raises(L.LocalizationError, match="too small to be a whole head"):
        L.localize(crop)
    assert issubclass(L.LocalizationError, InputError)  # callers catch one error type


def test_decathlon_crop_mislabelled_as_whole_head_takes_the_crop_path(hippocampus_dir, segmenter):
    image = sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(hippocampus_dir / "labelsTr" / "hippocampus_001.nii.gz")))
    result = segment_head(segmenter, image)
    assert result.mode == "crop" and result.localization is None
    labels = sitk.GetArrayFromImage(result.labels)
    assert dice(labels > 0, reference > 0) > 0.8
    assert [spec.value for spec in result.label_table] == [1, 2] and result.side_volumes_mm3 == {}


def test_side_label_table(segmenter):
    table = side_label_table(segmenter.card)
    assert [(spec.value, spec.segment_name, spec.side) for spec in table] == [
        (1, "Left hippocampus anterior", "left"),
        (2, "Left hippocampus posterior", "left"),
        (3, "Right hippocampus anterior", "right"),
        (4, "Right hippocampus posterior", "right"),
    ]
    assert len({spec.color for spec in table}) == 4  # four distinct colours


@pytest.mark.parametrize("kind", ["noise", "phantom", "constant"])
def test_non_head_images_raise_a_clear_error(kind):
    rng = np.random.default_rng(0)
    shape = (96, 110, 96)  # z, y, x at 1.6 mm: head-sized field of view
    if kind == "noise":
        array = rng.normal(100, 30, shape).astype(np.float32)
    elif kind == "phantom":  # a uniform ellipsoid with a little noise: a head-sized object, no anatomy
        z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
        inside = ((z - 48) / 40) ** 2 + ((y - 55) / 48) ** 2 + ((x - 48) / 38) ** 2 < 1
        array = (inside * 500 + rng.normal(0, 5, shape)).astype(np.float32)
    else:
        array = np.full(shape, 7, dtype=np.uint8)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.6, 1.6, 1.6))
    with pytest.raises(L.LocalizationError) as error:
        L.localize(image)
    message = str(error.value)
    assert "constant" in message or "T1" in message or "diverged" in message


# ---------- real whole-head scan ----------


def test_localization_finds_both_hippocampi_in_a_whole_head_scan(colin):
    image, aal = colin
    found = L.localize(image)
    assert found.correlation > 0.6 and found.rotation_degrees < 10
    for side, value in (("left", 37), ("right", 38)):
        start, stop = found.boxes[side]
        box = np.zeros(aal.shape, dtype=bool)
        box[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]] = True
        hippocampus = aal == value
        # AAL draws the hippocampus generously (into the fornix): nearly all of it in the box.
        assert hippocampus[box].sum() / hippocampus.sum() > 0.95
        assert not (aal == (38 if value == 37 else 37))[box].any()  # the other side is not in it
    # Left is on the patient's left in physical space (LPS x larger), whatever the storage.
    assert found.centres_lps["left"][0] > found.centres_lps["right"][0] + 30


@pytest.mark.slow
def test_segment_head_on_colin27_matches_aal_per_side(colin, colin_result):
    _, aal = colin
    labels = sitk.GetArrayFromImage(colin_result.labels)
    # AAL's hippocampus is about twice the protocol's volume, so Dice tops out near 0.67.
    assert dice(np.isin(labels, LEFT), aal == 37) > 0.5
    assert dice(np.isin(labels, RIGHT), aal == 38) > 0.5
    assert dice(np.isin(labels, LEFT), aal == 38) == 0.0
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    assert 2000 < colin_result.side_volumes_mm3["left"] < 6000
    assert colin_result.mode == "whole-head"


# ---------- robustness: the same scan moved in physical space ----------


def _rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    angle = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _moved(image, rotation=np.eye(3), shift=(0.0, 0.0, 0.0)):
    """The same voxels with the physical space rotated about the image centre and shifted."""
    moved = sitk.Image(image)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint((np.asarray(image.GetSize()) - 1) / 2.0))
    direction = rotation @ np.reshape(image.GetDirection(), (3, 3))
    origin = rotation @ (np.asarray(image.GetOrigin()) - centre) + centre + np.asarray(shift)
    moved.SetDirection(direction.flatten().tolist())
    moved.SetOrigin(origin.tolist())
    return moved


def _flipped_storage(image):
    """The same physical image stored with x and y reversed (RAS-style vs LPS-style storage)."""
    array = sitk.GetArrayFromImage(image)[:, ::-1, ::-1]
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array))
    flipped.SetSpacing(image.GetSpacing())
    direction = np.reshape(image.GetDirection(), (3, 3)) @ np.diag([-1.0, -1.0, 1.0])
    flipped.SetDirection(direction.flatten().tolist())
    last = np.asarray(image.GetSize()) - 1
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint([int(last[0]), int(last[1]), 0]))
    return flipped


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    return {
        "left": dice(np.isin(a, LEFT), np.isin(b, LEFT)),
        "right": dice(np.isin(a, RIGHT), np.isin(b, RIGHT)),
        "labels": np.mean([dice(a == v, b == v) for v in (1, 2, 3, 4)]),
    }


# Tolerances. Moving the scan in physical space makes every step resample differently (the
# registration's samples, the model grid's interpolation, the mapping back), so boundary voxels
# flip: on a ~4 cm3 hippocampus with ~2500 mm2 of surface, half a voxel of boundary change is
# about 0.15 in Dice, hence > 0.8 for the whole hippocampus per side. The anterior/posterior
# split moves a little more, so the mean over the four labels must exceed 0.7. Sides must never
# swap. Resampling to 2 mm loses detail itself, so it gets 0.75 / 0.65.
@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    ["rotated_20deg", "shifted", "storage_flipped", "resampled_2mm"],
)
def test_same_scan_moved_gives_the_same_segments_in_ras_space(colin, colin_result, segmenter, variant):
    image, _ = colin
    baseline = sitk.GetArrayFromImage(colin_result.labels)
    if variant == "rotated_20deg":
        rotation = _rotation((1.0, 0.6, 0.3), 20)
        result = segment_head(segmenter, _moved(image, rotation=rotation))
        back = sitk.GetArrayFromImage(result.labels)  # same voxels: compare directly
        floor = (0.8, 0.7)
    elif variant == "shifted":
        result = segment_head(segmenter, _moved(image, shift=(35.0, -25.0, 40.0)))
        back = sitk.GetArrayFromImage(result.labels)
        floor = (0.8, 0.7)
    elif variant == "storage_flipped":
        result = segment_head(segmenter, _flipped_storage(image))
        back = sitk.GetArrayFromImage(result.labels)[:, ::-1, ::-1]
        floor = (0.8, 0.7)
    else:
        coarse = sitk.Resample(image, [int(round(s / 2)) for s in image.GetSize()], sitk.Transform(), sitk.sitkLinear,
                               image.TransformContinuousIndexToPhysicalPoint((0.5, 0.5, 0.5)), (2.0, 2.0, 2.0),
                               image.GetDirection(), 0.0, image.GetPixelID())
        result = segment_head(segmenter, coarse)
        back = sitk.GetArrayFromImage(sitk.Resample(result.labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
        floor = (0.75, 0.65)
    agreement = _agreement(back, baseline)
    assert agreement["left"] > floor[0] and agreement["right"] > floor[0], agreement
    assert agreement["labels"] > floor[1], agreement
    assert dice(np.isin(back, LEFT), np.isin(baseline, RIGHT)) == 0.0  # never swapped
