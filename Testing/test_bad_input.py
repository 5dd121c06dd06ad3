"""Bad input: each refused with a message that names the problem, and nothing in the scene
lost or half-written."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lunet_test_helpers import add_volume, ijk_to_ras_matrix

pytest.importorskip("slicer")

from LUnetSegmentationLib.slicer_adapter import api, mrml  # noqa: E402
from LUnetSegmentationLib.runtime import engine, memory  # noqa: E402
from LUnetSegmentationLib import segment  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402
from LUnetSegmentationLib.runtime.weights import MODELS_DIR, WeightsError, find_model  # noqa: E402


def _brainish(shape=(24, 28, 20), seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(300, 60, shape).astype(np.float32)


def _volume(scene, voxels=None, spacing=(1.0, 1.0, 1.0), name="T1", **kwargs):
    voxels = _brainish() if voxels is None else voxels
    matrix = ijk_to_ras_matrix(np.diag([-1.0, -1.0, 1.0]), spacing, (0.0, 0.0, 0.0))
    return add_volume(scene, voxels, matrix, name=name, **kwargs)


def _segmentation_count(scene) -> int:
    return scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems()


def _refused(scene, match, volume, **kwargs):
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match=match):
        segment(volume, device="cpu", **kwargs)
    assert scene.GetNumberOfNodes() == before, "a refused run must not add nodes"


def test_no_volume(mrml_scene):
    with pytest.raises(InputError, match="No input volume selected"):
        segment(None)


def test_two_dimensional_volume(mrml_scene):
    volume = _volume(mrml_scene.scene, _brainish((1, 64, 64)))
    _refused(mrml_scene.scene, "2D slice", volume)


def test_vector_volume(mrml_scene):
    voxels = np.random.default_rng(0).random((10, 12, 14, 3)).astype(np.float32)
    volume = _volume(mrml_scene.scene, voxels, class_name="vtkMRMLVectorVolumeNode")
    _refused(mrml_scene.scene, "vector", volume)


def test_four_dimensional_data_in_a_scalar_node(mrml_scene):
    voxels = np.random.default_rng(0).random((10, 12, 14, 5)).astype(np.float32)
    volume = _volume(mrml_scene.scene, voxels)
    _refused(mrml_scene.scene, "5 values per voxel", volume)


def test_frame_of_a_sequence(mrml_scene):
    import slicer

    scene = mrml_scene.scene
    # In Slicer the Sequences module registers these node classes; headless the test does.
    scene.RegisterNodeClass(slicer.vtkMRMLSequenceNode())
    scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())
    frame = _volume(scene, name="frame 0")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "fMRI")
    sequence.SetDataNodeAtValue(frame, "0")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    proxy = _volume(scene, name="fMRI proxy")
    browser.AddProxyNode(proxy, sequence, False)
    assert browser.IsProxyNodeID(proxy.GetID())
    _refused(scene, "4D sequence", proxy)


def test_volume_without_voxels(mrml_scene):
    volume = mrml_scene.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    _refused(mrml_scene.scene, "no image data", volume)


def test_constant_volume(mrml_scene):
    volume = _volume(mrml_scene.scene, np.full((20, 20, 20), 7, np.int16))
    _refused(mrml_scene.scene, "constant", volume)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_voxels(mrml_scene, bad):
    voxels = _brainish()
    voxels[3, 4, 5] = bad
    _refused(mrml_scene.scene, "NaN or infinite", _volume(mrml_scene.scene, voxels))


def test_extreme_anisotropy(mrml_scene):
    volume = _volume(mrml_scene.scene, _brainish((8, 64, 64)), spacing=(0.4, 0.4, 5.5))
    _refused(mrml_scene.scene, "too coarse or too anisotropic", volume)


def test_spacing_in_the_wrong_unit(mrml_scene):
    """0.001 mm voxels (a header in metres): the model saw a speck and said "volume is constant"."""
    volume = _volume(mrml_scene.scene, _brainish(), spacing=(0.001, 0.001, 0.001))
    _refused(mrml_scene.scene, r"finer than any MRI .* metres or micrometres", volume)


def test_sheared_node_geometry(mrml_scene):
    """A node's IJK-to-RAS can be sheared too (a hand-set matrix): the entry check refuses it."""
    matrix = np.array([[-1.0, 0.3, 0, 0], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    volume = add_volume(mrml_scene.scene, _brainish(), matrix, name="T1")
    assert np.allclose(mrml.ijk_to_ras(volume)[:3, :3], matrix[:3, :3])  # MRML keeps the shear
    _refused(mrml_scene.scene, "The volume 'T1' has a sheared voxel grid", volume)


def test_labelmap_is_not_an_mri(mrml_scene):
    volume = _volume(mrml_scene.scene, np.ones((10, 10, 10), np.uint8), class_name="vtkMRMLLabelMapVolumeNode")
    _refused(mrml_scene.scene, "labelmap", volume)


def test_too_large_for_memory_is_refused_before_work(mrml_scene, monkeypatch):
    volume = _volume(mrml_scene.scene)
    # Just under the engine's own estimate for this volume: enough to copy the voxels, too
    # little for the network's buffers.
    needed = api.getSegmenter(None, "cpu").segmenter.estimate_bytes((20, 28, 24))
    monkeypatch.setattr(engine, "available_memory_bytes", lambda: needed - 1)
    _refused(mrml_scene.scene, r"GiB of memory.*region of interest", volume)
    # and a volume too large even to copy is refused before its voxels are copied
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 1 << 10)
    _refused(mrml_scene.scene, "Crop it first", volume)


@pytest.fixture(params=["torch", "onnx"])
def model_copy(tmp_path, request, monkeypatch):
    """The shipped card and weights (PyTorch and ONNX) copied into tmp_path (the shipped files
    are never touched); returns the card and the weights file the chosen backend loads."""
    card = find_model(None)
    shutil.copy(card.path, tmp_path / card.path.name)
    shutil.copy(card.weights_path, tmp_path / card.weights_path.name)
    onnx = card.path.parent / card.data["onnx"]["file"]
    shutil.copy(onnx, tmp_path / onnx.name)
    if request.param == "torch":
        monkeypatch.setenv("LUNET_BACKEND", "torch")
        return tmp_path / card.path.name, tmp_path / card.weights_path.name
    pytest.importorskip("onnxruntime")
    return tmp_path / card.path.name, tmp_path / onnx.name


def _shipped_intact():
    card = find_model(None)
    from LUnetSegmentationLib.runtime.weights import sha256sum

    return sha256sum(card.weights_path) == card.weights_sha256 and card.path.parent == MODELS_DIR


def test_missing_weights(mrml_scene, model_copy):
    card_path, weights_path = model_copy
    weights_path.unlink()
    volume = _volume(mrml_scene.scene)
    with pytest.raises(WeightsError, match="is missing"):
        segment(volume, model=str(card_path), device="cpu")
    assert _segmentation_count(mrml_scene.scene) == 0
    assert _shipped_intact()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_weights(mrml_scene, model_copy, damage):
    card_path, weights_path = model_copy
    data = bytearray(weights_path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 3]
    weights_path.write_bytes(bytes(data))
    volume = _volume(mrml_scene.scene)
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        segment(volume, model=str(card_path), device="cpu")
    assert _segmentation_count(mrml_scene.scene) == 0
    assert _shipped_intact()


def test_broken_model_card(mrml_scene, model_copy):
    card_path, _ = model_copy
    card_path.write_text(card_path.read_text()[:200])
    with pytest.raises(WeightsError, match="not valid JSON"):
        segment(_volume(mrml_scene.scene), model=str(card_path), device="cpu")


def test_output_with_closed_surface_segments_is_refused_and_kept(mrml_scene):
    import vtk

    scene = mrml_scene.scene
    volume = _volume(scene)
    surfaces = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "from a model")
    sphere = vtk.vtkSphereSource()
    sphere.Update()
    surfaces.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "Sphere", [1, 0, 0])
    surfaces.GetSegmentation().SetSourceRepresentationName("Closed surface")
    _refused(scene, "not as a binary labelmap", volume, segmentationNode=surfaces)
    assert surfaces.GetSegmentation().GetNumberOfSegments() == 1


def test_output_that_is_not_a_segmentation(mrml_scene):
    scene = mrml_scene.scene
    volume = _volume(scene)
    _refused(scene, "is not a segmentation", volume, segmentationNode=_volume(scene, name="another volume"))


def test_failed_run_into_an_existing_segmentation_keeps_its_segments(mrml_scene):
    """Cancel after prepare: the user's segmentation is exactly as before."""
    scene = mrml_scene.scene
    voxels = _brainish()
    volume = _volume(scene, voxels)
    theirs = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "manual")
    theirs.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    their_id = theirs.GetSegmentation().AddEmptySegment("", "Hippocampus", [1, 1, 0])
    mask = np.zeros(voxels.shape, np.uint8)
    mask[5:10, 5:10, 5:10] = 1
    import slicer

    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(mrml._oriented_mask(mask, mrml.ijk_to_ras(volume)), theirs, their_id)
    with pytest.raises(InterruptedError):
        segment(volume, segmentationNode=theirs, device="cpu", cancelled=lambda: True)
    assert theirs.GetSegmentation().GetNumberOfSegments() == 1
    assert np.array_equal(mrml.segmentArray(theirs, their_id, volume), mask)
    assert mrml.readProvenance(theirs) == {}


def test_unknown_model_names_the_known_ones():
    with pytest.raises(WeightsError, match="hippocampus-lunet"):
        api.getSegmenter("no-such-model", "cpu")


def test_card_in_tmp_is_a_real_copy(model_copy):
    card_path, _ = model_copy
    assert json.loads(card_path.read_text())["id"] == find_model(None).model_id


@pytest.mark.parametrize("suffix", [".nii.gz", ".mgz"])
def test_truncated_compressed_file_is_refused_not_read_as_zeros(tmp_path, wholebrain_dir, suffix):
    # ITK reads a truncated .nii.gz without error and fills the missing voxels with zeros:
    # a half-black brain would then be segmented as if it were whole.
    from LUnetSegmentationLib.files.volumeio import readImage

    source = wholebrain_dir / "fs_norm" / f"norm{suffix}"
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(InputError, match="damaged .*ends early"):
        readImage(truncated)
    assert readImage(source).GetSize() == (256, 256, 256)
