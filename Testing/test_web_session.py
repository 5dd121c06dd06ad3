"""The web panel's logic (`web.session`) on a real headless MRML scene and real data, no browser.

The browser tests (Testing/web/) check the same flow through the page; these check the rules
that must hold whatever the page does: bad files add nothing, a failed run changes nothing,
saving never replaces a file, and the saved labelmap holds what the segments hold.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.slicer_adapter import mrml
from LUnetSegmentationLib.runtime.preprocess import InputError
from LUnetSegmentationLib.runtime.weights import WeightsError, find_model
from LUnetSegmentationLib.apps.web.session import WebSession, check_upload
from lunet_test_helpers import PARTS_MODEL, dice

MB = 2**20


def _node_ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


@pytest.fixture
def crop(hippocampus_dir, tmp_path):
    """A labelled Decathlon crop copied out of ../shared (saving writes next to the input)."""
    source = hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"
    target = tmp_path / "input" / source.name
    target.parent.mkdir()
    shutil.copy(source, target)
    return target


@pytest.fixture
def segmented(mrml_scene, crop):
    session = WebSession(mrml_scene.scene)
    session.load(crop)
    job = session.prepare(model=PARTS_MODEL, device="cpu")
    job.compute()
    session.finish(job)
    return session


@pytest.mark.parametrize(
    "name, size, message",
    [
        ("notes.txt", 10, "not a supported volume"),
        ("brain.seg.nrrd", 10, "is a segmentation"),
        ("brain.mhd", 10, "separate file"),
        ("brain.nii.gz", 0, "empty"),
        ("brain.nii.gz", 3 * MB, "more than this server accepts"),
    ],
)
def test_uploads_refused_by_name_and_size(name, size, message):
    with pytest.raises(InputError, match=message):
        check_upload(name, size, max_bytes=2 * MB)


def test_accepted_upload_names():
    for name in ("t1.nii.gz", "T1.NII", "norm.mgz", "scan.nrrd", "scan.mha"):
        check_upload(name, 1000, max_bytes=MB)


def test_bad_files_add_nothing_and_keep_the_current_case(mrml_scene, crop, tmp_path):
    session = WebSession(mrml_scene.scene)
    case = session.load(crop)
    before = _node_ids(mrml_scene.scene)
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(crop.read_bytes()[:2000])
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.Image([8, 8], sitk.sitkFloat32), str(flat))
    constant = tmp_path / "constant.nii.gz"
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkFloat32), str(constant))
    for path, message in ((damaged, "damaged"), (flat, "is 2D; the model needs a 3D MRI volume"), (constant, "constant")):
        with pytest.raises(InputError, match=message):
            session.load(path)
        assert _node_ids(mrml_scene.scene) == before
        assert session.case is case
    with pytest.raises(InputError, match="not a supported volume"):
        session.loadUpload("scan.txt", b"hello", maxBytes=MB)
    earlier_output = tmp_path / "hippocampus_001.lunet.seg.nrrd"
    earlier_output.write_bytes(b"not read")
    with pytest.raises(InputError, match="is a segmentation"):
        session.load(earlier_output)
    assert session.case is case and _node_ids(mrml_scene.scene) == before


def test_segment_measure_and_save_without_overwriting(segmented, crop, hippocampus_dir):
    rows = segmented.segmentRows()
    assert [row.name for row in rows] == ["Hippocampus anterior", "Hippocampus posterior"]
    assert [row.labelValue for row in rows] == [1, 2]
    for row in rows:
        assert 300 < row.volumeMm3 < 3000, row  # one hippocampus is ~3000-4000 mm3 in all
        assert row.color.startswith("#") and len(row.color) == 7
    # The panel centres the slice views on the first segment: its RAS centre lies inside it.
    centre = segmented.segmentCentre(rows[0].segmentId)
    ras_to_ijk = np.linalg.inv(mrml.ijk_to_ras(segmented.case.volumeNode))
    i, j, k = np.round(ras_to_ijk @ [*centre, 1.0])[:3].astype(int)
    anterior = mrml.segmentArray(segmented.case.segmentationNode, rows[0].segmentId, segmented.case.volumeNode)
    assert anterior[max(k - 2, 0):k + 3, max(j - 2, 0):j + 3, max(i - 2, 0):i + 3].any()

    seg1, labels1 = segmented.saveNextToInput()
    seg2, labels2 = segmented.saveNextToInput()
    assert seg1.parent == crop.parent and seg1.name == "hippocampus_001.lunet.seg.nrrd"
    assert seg2.name == "hippocampus_001.lunet-2.seg.nrrd" and labels2.name == "hippocampus_001.lunet-labels-2.nii.gz"
    assert seg1.read_bytes() and seg2.read_bytes()
    seg2.unlink()  # with only one file of a pair left, the next save still takes a fresh pair
    seg3, labels3 = segmented.saveNextToInput()
    assert (seg3.name, labels3.name) == ("hippocampus_001.lunet-3.seg.nrrd", "hippocampus_001.lunet-labels-3.nii.gz")
    labels = sitk.ReadImage(str(labels1))
    original = sitk.ReadImage(str(crop))
    assert labels.GetSize() == original.GetSize()
    np.testing.assert_allclose(labels.GetOrigin(), original.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(labels.GetDirection(), original.GetDirection(), atol=1e-6)
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=3)
    voxel = float(np.prod(original.GetSpacing()))
    assert counts[1] * voxel == pytest.approx(rows[0].volumeMm3)
    assert counts[2] * voxel == pytest.approx(rows[1].volumeMm3)
    # Against the Decathlon reference (a validation case of the shipped model): a real
    # segmentation of both parts, not any blob of the right size.
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(hippocampus_dir / "labelsTr" / crop.name)))
    ours = sitk.GetArrayFromImage(labels)
    for value in (1, 2):
        assert dice(ours == value, reference == value) > 0.8


def test_user_segments_get_their_own_label_value(segmented):
    import slicer

    segmentation = segmented.case.segmentationNode.GetSegmentation()
    painted = segmentation.AddEmptySegment("", "My lesion", [1.0, 0.0, 0.0])
    volume = segmented.case.volumeNode
    mask = np.zeros(volume.GetImageData().GetDimensions()[::-1], np.uint8)
    mask[:4, :4, :4] = 1  # a corner box, away from the hippocampus
    oriented = mrml._oriented_mask(mask, mrml.ijk_to_ras(volume))
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented, segmented.case.segmentationNode, painted, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE
    )
    rows = segmented.segmentRows()
    assert [row.name for row in rows][-1] == "My lesion"
    values = np.unique(sitk.GetArrayFromImage(segmented.labelImage()))
    assert list(values) == [0, 1, 2, 3]  # the next free value after the model's 1 and 2
    assert rows[-1].labelValue == 0 and rows[-1].volumeMm3 == pytest.approx(64 * segmented.case.voxelVolume)


def test_failed_segmentation_changes_nothing(segmented, tmp_path):
    card = find_model(None)
    shutil.copy(card.path, tmp_path / card.path.name)
    weights = tmp_path / card.weights_path.name
    weights.write_bytes(card.weights_path.read_bytes()[:1000])  # truncated
    before = [(row.segmentId, row.volumeMm3) for row in segmented.segmentRows()]
    scene = segmented.scene
    nodes = _node_ids(scene)
    with pytest.raises(WeightsError):
        segmented.prepare(model=str(tmp_path / card.path.name), device="cpu")
    assert _node_ids(scene) == nodes  # measuring (segmentRows) adds no nodes either
    assert [(row.segmentId, row.volumeMm3) for row in segmented.segmentRows()] == before
    assert _node_ids(scene) == nodes


def test_cancelled_run_changes_nothing(segmented):
    before = [(row.segmentId, row.volumeMm3) for row in segmented.segmentRows()]
    nodes = _node_ids(segmented.scene)
    job = segmented.prepare(model=PARTS_MODEL, device="cpu")
    with pytest.raises(InterruptedError):
        job.compute(cancelled=lambda: True)
    assert [(row.segmentId, row.volumeMm3) for row in segmented.segmentRows()] == before
    assert _node_ids(segmented.scene) == nodes


def test_uploaded_case_downloads_instead_of_saving(mrml_scene, crop):
    session = WebSession(mrml_scene.scene)
    case = session.loadUpload(crop.name, crop.read_bytes(), maxBytes=MB)
    assert case.inputPath is None and case.name == "hippocampus_001"
    with pytest.raises(InputError, match="There is nothing to save yet"):
        session.downloadBytes()
    job = session.prepare(model=PARTS_MODEL, device="cpu")
    job.compute()
    session.finish(job)
    with pytest.raises(InputError, match="uploaded"):
        session.saveNextToInput()
    files = session.downloadBytes()
    assert sorted(files) == ["hippocampus_001.lunet-labels.nii.gz", "hippocampus_001.lunet.seg.nrrd"]
    assert all(len(content) > 100 for content in files.values())
