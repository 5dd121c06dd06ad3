"""The learned localizer (runtime/localizer.py): its grid, its scaling (the same in training and
at inference), its per-side decisions, and the shipped network on real and hostile inputs."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.runtime import localizer as L
from LUnetSegmentationLib.runtime.localize import BOX_MM, LocalizationError

SHIPPED = L.LOCALIZER_CARD.is_file()
needs_localizer = pytest.mark.skipif(not SHIPPED, reason="no learned localizer card is installed")


def _image(shape=(60, 70, 50), spacing=(1.0, 1.2, 3.0), direction=None, origin=(10.0, -20.0, 5.0)):
    image = sitk.GetImageFromArray(np.random.default_rng(0).random(shape[::-1]).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def test_grid_is_world_aligned_covers_the_scan_and_fits_the_network():
    image = _image(direction=(0, 0, 1, 1, 0, 0, 0, 1, 0))  # stored sideways: the grid ignores storage order
    grid = L.localizer_grid(image)
    assert np.allclose(np.reshape(grid.GetDirection(), (3, 3)), L.GRID_DIRECTION)
    assert grid.GetSpacing() == (4.0, 4.0, 4.0)
    assert all(n % 16 == 0 for n in grid.GetSize())
    _, inside = L.resample_to_grid(image, grid)
    # every corner of the scan lies on the grid, and the inside mask covers the scan's volume
    size = np.asarray(image.GetSize())
    for corner in np.stack(np.meshgrid(*[[0, s - 1] for s in size], indexing="ij"), -1).reshape(-1, 3):
        index = np.asarray(grid.TransformPhysicalPointToContinuousIndex(image.TransformIndexToPhysicalPoint(corner.tolist())))
        assert np.all(index > -0.5) and np.all(index < np.asarray(grid.GetSize()) - 0.5)
    scan_mm3 = float(np.prod(size * np.asarray(image.GetSpacing())))
    assert abs(inside.sum() * 64.0 - scan_mm3) / scan_mm3 < 0.15


def test_grid_is_capped_at_320_mm():
    grid = L.localizer_grid(_image(shape=(200, 200, 200), spacing=(2.0, 2.0, 2.0)))
    assert max(grid.GetSize()) * 4.0 <= L.MAX_GRID_MM


def test_training_and_inference_scale_intensities_the_same_way():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    array = rng.gamma(2.0, 100.0, (32, 32, 32)).astype(np.float32)
    inside = np.zeros_like(array, dtype=bool)
    inside[4:28, 2:30, 6:26] = True
    expected = L.normalise(array, inside)
    from LUnetSegmentationLib.training.localizer_synth import normalise_tensor

    got = normalise_tensor(torch.from_numpy(array)[None, None], torch.from_numpy(inside.astype(np.float32))[None, None])[0, 0]
    assert np.allclose(got.numpy(), expected, atol=1e-3)
    assert expected[~inside].max() == 0 and expected.max() == 1.0


def test_crop_axes_follow_the_line_between_the_hippocampi():
    assert np.allclose(L._crop_rotation({"left": [25, 0, 0], "right": [-25, 0, 0]}), np.eye(3))  # LPS: left is +x
    turned = L._crop_rotation({"left": [25 * np.cos(0.3), 25 * np.sin(0.3), 0], "right": [-25 * np.cos(0.3), -25 * np.sin(0.3), 0]})
    assert np.allclose(turned @ turned.T, np.eye(3)) and np.isclose(np.linalg.det(turned), 1.0)
    assert np.isclose(np.degrees(np.arccos(turned[0, 0])), np.degrees(0.3))
    assert np.allclose(L._crop_rotation({"left": [1, 0, 0]}), np.eye(3))  # one side: no turn


def test_touching_the_edge_of_the_field_of_view():
    mask = np.zeros((8, 8, 8), bool)
    mask[3:5, 3:5, 3:5] = True
    outside = np.zeros_like(mask)
    assert not L._touches(mask, outside)
    outside[:, :, 5:] = True
    assert L._touches(mask, outside)
    edge = np.zeros_like(mask)
    edge[0, 3, 3] = True
    assert L._touches(edge, np.zeros_like(mask))  # the grid's own border counts as the edge


# ---------- the shipped network ----------


@needs_localizer
def test_card_is_complete_and_its_weights_verify():
    from LUnetSegmentationLib.runtime.weights import load_state_dict, sha256sum

    card = L.load_card()
    for key in ("network", "weights", "onnx", "quality", "training", "license", "attribution"):
        assert key in card.data, key
    assert card.data["license"] == "Apache-2.0"
    assert sha256sum(card.path.parent / card.data["onnx"]["file"]) == card.data["onnx"]["sha256"]
    pytest.importorskip("torch")
    load_state_dict(card)  # SHA-256 checked


@needs_localizer
def test_finds_both_hippocampi_and_the_intracranial_volume_in_a_real_head(wholebrain_dir):
    image = sitk.ReadImage(str(wholebrain_dir / "fs_norm" / "norm.nii.gz"))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(wholebrain_dir / "fs_norm" / "aparc.a2009s+aseg.nii.gz")))
    found = L.localize_learned(image, BOX_MM)
    assert not found.failed, found.failed
    for side, value in (("left", 17), ("right", 53)):
        start, stop = found.boxes[side]
        inside_box = labels[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]] == value
        assert inside_box.sum() / (labels == value).sum() > 0.95, side
    # FreeSurfer's labels cover brain and ventricles but not the CSF around the brain: a lower
    # bound of the intracranial volume, which exceeds it by that CSF (10-25 % in adults)
    brain_ml = float((labels > 0).sum()) * float(np.prod(image.GetSpacing())) / 1000
    assert brain_ml < found.intracranial_ml < 1.35 * brain_ml, (found.intracranial_ml, brain_ml)
    # fs_norm's head sits at about +7 degrees of pitch, the training heads' median at -24.9: the
    # crops are turned by about 32 degrees, and the summary (summary.json's details) says so
    assert 25 < found.pitch_turn_degrees < 40 and found.summary()["pitch_turn_degrees"] == round(found.pitch_turn_degrees, 1)


@needs_localizer
def test_a_field_of_view_that_cuts_one_hippocampus_fails_that_side_only(wholebrain_dir):
    image = sitk.ReadImage(str(wholebrain_dir / "fs_norm" / "norm.nii.gz"))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(wholebrain_dir / "fs_norm" / "aparc.a2009s+aseg.nii.gz")))
    # cut the scan through the middle of the right hippocampus, along the index axis that runs left-right
    direction = np.reshape(image.GetDirection(), (3, 3))
    axis = int(np.argmax(np.abs(direction[0, :])))  # index axis along LPS x
    right = np.argwhere(labels == 53)[:, 2 - axis]
    left = np.argwhere(labels == 17)[:, 2 - axis]
    cut = int(np.median(right))
    size, start = list(image.GetSize()), [0, 0, 0]
    if left.mean() < cut:
        size[axis] = cut
    else:
        start[axis], size[axis] = cut, size[axis] - cut
    cropped = sitk.RegionOfInterest(image, size, start)
    found = L.localize_learned(cropped, BOX_MM)
    assert "right" in found.failed and "left" in found.boxes, (found.failed, found.confidence)


@needs_localizer
@pytest.mark.parametrize("kind", ["noise", "phantom"])
def test_non_head_volumes_are_refused(kind):
    rng = np.random.default_rng(0)
    shape = (96, 110, 96)
    if kind == "noise":
        array = rng.normal(100, 30, shape).astype(np.float32)
    else:
        z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
        inside = ((z - 48) / 40) ** 2 + ((y - 55) / 48) ** 2 + ((x - 48) / 38) ** 2 < 1
        array = (inside * 500 + rng.normal(0, 5, shape)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.6, 1.6, 1.6))
    with pytest.raises(LocalizationError, match="Neither hippocampus was found"):
        L.localize_learned(image, BOX_MM)


def test_long_axis_pitch_reads_the_angle_of_an_elongated_cloud_and_pitched_turns_it_away():
    from LUnetSegmentationLib.runtime.localizer import _pitched, long_axis_pitch

    rng = np.random.default_rng(0)
    # a brain-like ellipsoid of points: 85 mm half-length front to back, 60 across and up
    points = rng.normal(size=(20000, 3)) * [60.0, 85.0, 60.0]
    for degrees in (-40.0, -12.0, 0.0, 25.0):
        angle = np.radians(degrees)
        turn = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
        cloud = points @ turn.T  # y (posterior) turned towards z (superior) by `degrees`
        assert long_axis_pitch(cloud, np.eye(3)) == pytest.approx(degrees, abs=1.5)
        frame = _pitched(np.eye(3), degrees - (-20.0))  # bring it to -20 degrees, as the runtime does
        assert long_axis_pitch(cloud, frame) == pytest.approx(-20.0, abs=1.5)
        assert np.allclose(frame.T @ frame, np.eye(3)) and np.linalg.det(frame) == pytest.approx(1.0)
        assert np.allclose(frame[:, 0], [1, 0, 0])  # turned about the left-right axis only


def test_the_card_records_the_training_heads_pose_that_crops_are_turned_to():
    from LUnetSegmentationLib.runtime.localizer import load_card

    pose = load_card().data["crop_pose"]
    low, high = pose["training_heads_degrees"]["min"], pose["training_heads_degrees"]["max"]
    assert low <= pose["pitch_degrees"] <= high and len(pose["training_heads_degrees"]["per_map"]) == 16
    assert 0 < pose["max_correction_degrees"] <= 60


@needs_localizer
def test_a_field_of_view_cutting_the_brain_still_turns_the_crops_for_pitch_from_the_hippocampi(wholebrain_dir):
    """The intracranial space's long axis is the cut's when the field of view cuts the brain; the
    hippocampi's own long axes then give the head's pitch, against the training hippocampi's."""
    image = sitk.ReadImage(str(wholebrain_dir / "fs_norm" / "norm.nii.gz"))
    whole = L.localize_learned(image, BOX_MM)
    direction = np.reshape(image.GetDirection(), (3, 3))
    axis = int(np.argmax(np.abs(direction[2, :])))  # the index axis along superior
    size, start = list(image.GetSize()), [0, 0, 0]
    keep = int(size[axis] * 0.6)  # cut away the top of the head, keep the temporal lobes
    if direction[2, axis] > 0:
        size[axis] = keep
    else:
        start[axis], size[axis] = size[axis] - keep, keep
    cut = L.localize_learned(sitk.RegionOfInterest(image, size, start), BOX_MM)
    assert cut.intracranial_cut and not whole.intracranial_cut
    assert cut.pitch_turn_degrees is not None and abs(cut.pitch_turn_degrees - whole.pitch_turn_degrees) < 8, (
        cut.pitch_turn_degrees, whole.pitch_turn_degrees)
