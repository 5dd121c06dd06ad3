"""`segment()` end to end on real Decathlon crops in a real headless MRML scene: accuracy,
storage-orientation independence, names/colours/terminology/provenance, safe re-runs, ROI,
progress/cancel and the prepare/compute/apply split."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import SimpleITK as sitk

from lunet_test_helpers import PARTS_MODEL, dice

pytest.importorskip("slicer")
pytest.importorskip("torch")

from LUnetSegmentationLib.slicer_adapter import api, mrml  # noqa: E402
from LUnetSegmentationLib import segment  # noqa: E402
from LUnetSegmentationLib.runtime import terminology  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402
from LUnetSegmentationLib.runtime.weights import find_model  # noqa: E402

CASE = "hippocampus_001"  # a validation case of the shipped model (not trained on)


@pytest.fixture(scope="module")
def crop(hippocampus_dir):
    image = sitk.ReadImage(str(hippocampus_dir / "imagesTr" / f"{CASE}.nii.gz"))
    labels = sitk.ReadImage(str(hippocampus_dir / "labelsTr" / f"{CASE}.nii.gz"))
    return image, sitk.GetArrayFromImage(labels).astype(np.uint8)


def _segments(node):
    segmentation = node.GetSegmentation()
    return {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())}


def test_segment_reaches_dice_and_writes_named_coded_segments_with_provenance(mrml_scene, crop):
    image, truth = crop
    volume = mrml.imageToVolumeNode(mrml_scene.scene, image, CASE)
    node = segment(volume, device="cpu", model=PARTS_MODEL)
    card = find_model(PARTS_MODEL)
    segments = _segments(node)
    assert list(segments) == ["Hippocampus anterior", "Hippocampus posterior"]
    for entry in card.labels:
        segment_id = segments[entry["name"]]
        seg = node.GetSegmentation().GetSegment(segment_id)
        score = dice(mrml.segmentArray(node, segment_id, volume), truth == entry["value"])
        assert score > 0.8, f"{entry['name']}: Dice {score:.3f}"
        assert np.allclose(seg.GetColor(), entry["color"])
        assert seg.GetTerminology() == terminology.entry_string(entry["name"])
        assert "SCT^5366008^Hippocampus" in seg.GetTerminology()
    colours = [tuple(node.GetSegmentation().GetSegment(s).GetColor()) for s in segments.values()]
    assert len(set(colours)) == 2
    provenance = mrml.readProvenance(node)
    assert provenance["ModelId"] == card.model_id and provenance["ModelVersion"] == card.version
    assert provenance["WeightsSHA256"] == card.weights_sha256 == api.getSegmenter(PARTS_MODEL, "cpu").segmenter.card.weights_sha256
    assert provenance["Device"] == "cpu"
    assert float(provenance["Seconds"]) > 0
    assert provenance["InputVolumeID"] == volume.GetID()
    # reference geometry is the input volume
    assert node.GetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole()) == volume.GetID()


def _restored(image: sitk.Image, flip_axes=(True, True, False), permute=(0, 1, 2)) -> sitk.Image:
    """The same physical image stored differently: axes flipped and permuted, voxel centres kept."""
    flipped = sitk.Flip(image, list(flip_axes))
    return sitk.PermuteAxes(flipped, list(permute))


@pytest.mark.slow
def test_two_storage_orientations_give_the_same_ras_labels(mrml_scene, crop):
    image, _ = crop
    # The Decathlon crops are stored LPS-axis-aligned; the copy is stored RAS-like with its
    # axes permuted, covering the same voxel centres.
    other = _restored(image, (True, True, False), (2, 0, 1))
    assert not np.allclose(image.GetDirection(), other.GetDirection())
    first = mrml.imageToVolumeNode(mrml_scene.scene, image, "as stored")
    second = mrml.imageToVolumeNode(mrml_scene.scene, other, "restored")
    node_a, node_b = segment(first, device="cpu", model=PARTS_MODEL), segment(second, device="cpu", model=PARTS_MODEL)
    for name in ("Hippocampus anterior", "Hippocampus posterior"):
        a = mrml.segmentArray(node_a, _segments(node_a)[name], first)
        # export B's segment onto A's grid: this goes through RAS space
        b = mrml.segmentArray(node_b, _segments(node_b)[name], first)
        assert a.sum() > 100
        assert dice(a, b) > 0.99, name


def test_rerun_replaces_only_own_segments(mrml_scene, crop):
    image, _ = crop
    scene = mrml_scene.scene
    volume = mrml.imageToVolumeNode(scene, image, CASE)
    node = segment(volume, device="cpu", model=PARTS_MODEL)
    before = _segments(node)
    user_id = node.GetSegmentation().AddEmptySegment("", "My edit", [0.1, 0.9, 0.1])
    user_mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    user_mask[3:9, 4:12, 5:10] = 1
    import slicer  # write the user's voxels the way the Segment Editor would

    oriented = mrml._oriented_mask(user_mask, mrml.ijk_to_ras(volume))
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(oriented, node, user_id)
    again = segment(volume, segmentationNode=node, device="cpu", model=PARTS_MODEL)
    assert again is node
    after = _segments(node)
    assert after["My edit"] == user_id
    assert after["Hippocampus anterior"] == before["Hippocampus anterior"]  # updated in place, same ID
    assert len(after) == 3
    assert np.array_equal(mrml.segmentArray(node, user_id, volume), user_mask)
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1


@pytest.mark.slow
def test_existing_segments_from_another_source_are_kept(mrml_scene, crop):
    """A segmentation from another tool that already has a 'Hippocampus anterior' segment."""
    image, truth = crop
    scene = mrml_scene.scene
    volume = mrml.imageToVolumeNode(scene, image, CASE)
    theirs = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "FreeSurfer")
    theirs.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    their_id = theirs.GetSegmentation().AddEmptySegment("", "Hippocampus anterior", [1, 1, 0])
    import slicer

    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        mrml._oriented_mask(truth > 0, mrml.ijk_to_ras(volume)), theirs, their_id
    )
    # into their node: theirs kept as it is, ours added with a distinguishable name
    segment(volume, segmentationNode=theirs, device="cpu", model=PARTS_MODEL)
    names = _segments(theirs)
    assert names["Hippocampus anterior"] == their_id
    assert "Hippocampus anterior (LUnet)" in names and "Hippocampus posterior" in names
    assert np.array_equal(mrml.segmentArray(theirs, their_id, volume), (truth > 0).astype(np.uint8))
    # a second run still finds its own (renamed) segment and does not multiply segments
    segment(volume, segmentationNode=theirs, device="cpu", model=PARTS_MODEL)
    assert len(_segments(theirs)) == 3


def test_roi_restricts_the_work_to_its_box(mrml_scene, crop):
    image, truth = crop
    scene = mrml_scene.scene
    volume = mrml.imageToVolumeNode(scene, image, CASE)
    size = np.asarray(image.GetSize())
    # an ROI over the half of the crop along I that holds most of the hippocampus
    half = size.copy()
    half[0] = size[0] // 2 + 4
    matrix = mrml.ijk_to_ras(volume)
    centre_ijk = (half - 1) / 2.0
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "ROI")
    roi.SetCenter(*(matrix[:3, :3] @ centre_ijk + matrix[:3, 3]))
    roi.SetSize(*(half * np.asarray(image.GetSpacing())))
    job = api.prepareSegmentation(volume, device="cpu", roiNode=roi, model=PARTS_MODEL)
    start, stop = job.indexBox
    assert stop[0] - start[0] < size[0]
    job.compute()
    labels = sitk.GetArrayViewFromImage(job.labels)
    outside = np.ones(labels.shape, bool)
    outside[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]] = False
    assert labels[outside].max() == 0
    assert labels.max() > 0
    node = job.apply()
    assert mrml.readProvenance(node)["ROINodeID"] == roi.GetID()


def test_progress_cancel_and_the_threaded_split(mrml_scene, crop):
    image, _ = crop
    scene = mrml_scene.scene
    volume = mrml.imageToVolumeNode(scene, image, CASE)
    job = api.prepareSegmentation(volume, device="cpu", model=PARTS_MODEL)
    with pytest.raises(InterruptedError):
        job.compute(cancelled=lambda: True)
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0  # nothing half-written
    seen = []
    worker = threading.Thread(target=job.compute, kwargs={"progress": seen.append})
    worker.start()
    worker.join(120)
    assert seen and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    node = job.apply()
    assert set(job.volumes) == {"Hippocampus anterior", "Hippocampus posterior"}
    assert all(v > 500 for v in job.volumes.values())  # mm3; a hippocampus part is ~1-2 cm3
    assert "mm3" in job.summary and job.device == "cpu"
    assert node.GetSegmentation().GetNumberOfSegments() == 2


def test_model_is_loaded_once_and_reused():
    first = api.getSegmenter(PARTS_MODEL, "cpu")
    assert api.getSegmenter(PARTS_MODEL, "cpu") is first


def test_prepare_refuses_before_creating_anything(mrml_scene, crop):
    image, _ = crop
    scene = mrml_scene.scene
    volume = mrml.imageToVolumeNode(scene, image, CASE)
    with pytest.raises(InputError, match="Unknown device"):
        api.prepareSegmentation(volume, device="tpu")
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_existing_node_keeps_its_reference_geometry(mrml_scene, crop):
    """The user's segmentation was made on a coarser 2 mm grid: writing our segments into it
    must not change the grid they edit on."""
    import slicer

    image, _ = crop
    scene = mrml_scene.scene
    volume = mrml.imageToVolumeNode(scene, image, CASE)
    coarse = mrml.imageToVolumeNode(scene, sitk.Resample(image, [s // 2 for s in image.GetSize()], sitk.Transform(),
                                                         sitk.sitkLinear, image.GetOrigin(), [2.0] * 3, image.GetDirection()), "coarse")
    theirs = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Mine")
    theirs.SetReferenceImageGeometryParameterFromVolumeNode(coarse)
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    before = theirs.GetSegmentation().GetConversionParameter(parameter)
    segment(volume, segmentationNode=theirs, device="cpu", model=PARTS_MODEL)
    assert theirs.GetSegmentation().GetConversionParameter(parameter) == before
    assert {"Hippocampus anterior", "Hippocampus posterior"} <= set(_segments(theirs))
