"""MRML adapter against a real headless scene: geometry round trips, ROI boxes, segments
landing on the right voxels in RAS space, transforms, terminology strings."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lunet_test_helpers import add_volume, ijk_to_ras_matrix, rotation, voxel_ras

pytest.importorskip("slicer")

from LUnetSegmentationLib.slicer_adapter import mrml  # noqa: E402
from LUnetSegmentationLib.runtime import terminology  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402

# name -> (directions (columns = I, J, K axes in RAS), spacing, origin)
GEOMETRIES = {
    "ras": (np.eye(3), (1.0, 1.0, 1.0), (10.0, -20.0, 30.0)),
    "lps": (np.diag([-1.0, -1.0, 1.0]), (1.0, 1.0, 1.0), (40.0, 35.0, -12.0)),
    "anisotropic-permuted": (np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float), (0.7, 1.3, 2.5), (-5.0, 8.0, 60.0)),
    "oblique": (rotation("z", 25) @ rotation("x", -17) @ np.diag([-1.0, 1.0, 1.0]), (0.9, 1.1, 1.6), (3.0, -7.5, 11.0)),
}


def _volume(scene, geometry, shape=(12, 14, 16), seed=0):
    directions, spacing, origin = GEOMETRIES[geometry]
    matrix = ijk_to_ras_matrix(directions, spacing, origin)
    voxels = np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)
    return add_volume(scene, voxels, matrix, name=geometry), matrix, voxels


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_volume_to_image_keeps_voxels_and_maps_every_voxel_to_its_ras_point(mrml_scene, geometry):
    volume, matrix, voxels = _volume(mrml_scene.scene, geometry)
    image = mrml.volumeToImage(volume)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), voxels)
    rng = np.random.default_rng(1)
    kji = np.stack([rng.integers(0, n, 20) for n in voxels.shape], axis=1)
    expected_ras = voxel_ras(matrix, kji)
    for (k, j, i), ras in zip(kji, expected_ras):
        lps = image.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
        assert np.allclose([-lps[0], -lps[1], lps[2]], ras, atol=1e-6)
    # and back: a node made from the image has the same IJK-to-RAS matrix
    again = mrml.imageToVolumeNode(mrml_scene.scene, image, "again")
    assert np.allclose(mrml.ijk_to_ras(again), matrix, atol=1e-9)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_labels_land_on_the_right_ras_points(mrml_scene, geometry):
    """Mark voxels near a known RAS point through the ITK image, write them as a segment, and
    find them at that RAS point in the segment's own labelmap (independent of the volume)."""
    import slicer
    from vtk.util.numpy_support import vtk_to_numpy

    volume, matrix, voxels = _volume(mrml_scene.scene, geometry)
    image = mrml.volumeToImage(volume)
    target_ras = voxel_ras(matrix, [[4, 6, 9]])[0] + 0.2  # near a voxel centre, off-grid
    labels = np.zeros(voxels.shape, np.uint8)
    for k in range(voxels.shape[0]):
        for j in range(voxels.shape[1]):
            for i in range(voxels.shape[2]):
                lps = np.asarray(image.TransformIndexToPhysicalPoint((i, j, k)))
                if np.linalg.norm(lps * [-1, -1, 1] - target_ras) < 2.6:
                    labels[k, j, i] = 1
    assert labels.sum() > 3
    spec = mrml.LabelSpec(1, "Hippocampus anterior", (1.0, 0.0, 0.0))
    node = mrml.newSegmentationNode(volume)
    ids = mrml.writeSegments(node, labels, volume, [spec], "test-model")
    segment_id = ids["Hippocampus anterior"]
    # exported onto the volume grid: the same voxels
    assert np.array_equal(mrml.segmentArray(node, segment_id, volume), labels)
    # the segment's internal labelmap, read in world (RAS) coordinates
    internal = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(node, segment_id, internal)
    dims = internal.GetDimensions()
    extent = internal.GetExtent()
    mask = vtk_to_numpy(internal.GetPointData().GetScalars()).reshape(dims[::-1]) > 0
    kji = np.argwhere(mask) + [extent[4], extent[2], extent[0]]
    to_world = mrml._matrix_to_array(_image_to_world(internal))
    points = voxel_ras(to_world, kji)
    assert np.all(np.linalg.norm(points - target_ras, axis=1) < 2.6 + 1e-6)
    assert len(points) == labels.sum()


def _image_to_world(oriented):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    oriented.GetImageToWorldMatrix(matrix)
    return matrix


def test_roi_box_covers_the_roi_on_an_oblique_volume(mrml_scene):
    volume, matrix, voxels = _volume(mrml_scene.scene, "oblique", shape=(30, 30, 30))
    centre = voxel_ras(matrix, [[15, 15, 15]])[0]
    roi = mrml_scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    roi.SetCenter(*centre)
    roi.SetSize(8, 10, 6)
    start, stop = mrml.roiToIndexBox(roi, volume)
    assert all(0 <= a < b <= n for a, b, n in zip(start, stop, voxels.shape[::-1]))
    # every voxel centre inside the ROI lies inside the box
    inverse = np.linalg.inv(matrix)
    rng = np.random.default_rng(0)
    for offset in rng.uniform(-0.5, 0.5, (200, 3)) * [8, 10, 6]:
        ijk = (inverse @ np.append(centre + offset, 1))[:3]
        index = np.round(ijk).astype(int)
        assert np.all(index >= start) and np.all(index < stop)
    # the box is not much larger than the ROI (oblique volume: the box around the corners)
    assert np.prod(np.subtract(stop, start)) < 8 * 10 * 6 * 4


def test_rotated_roi_takes_the_box_of_its_corners(mrml_scene):
    volume, matrix, _ = _volume(mrml_scene.scene, "ras", shape=(40, 40, 40))
    roi = mrml_scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    roi.SetCenter(*(matrix[:3, 3] + 20))
    roi.SetSize(10, 2, 2)
    axis_aligned = mrml.roiToIndexBox(roi, volume)
    turn = np.eye(4)
    turn[:3, :3] = rotation("z", 90)
    import vtk

    vmatrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vmatrix.SetElement(r, c, turn[r, c])
    roi.GetObjectToNodeMatrix()  # the ROI's own orientation
    orientation = vtk.vtkMatrix4x4()
    orientation.DeepCopy(roi.GetObjectToNodeMatrix())
    for r in range(3):
        for c in range(3):
            orientation.SetElement(r, c, turn[r, c])
    roi.SetAndObserveObjectToNodeMatrix(orientation)
    rotated = mrml.roiToIndexBox(roi, volume)
    size_before = np.subtract(axis_aligned[1], axis_aligned[0])
    size_after = np.subtract(rotated[1], rotated[0])
    assert size_before[0] > size_before[1] and size_after[1] > size_after[0]


def test_roi_outside_the_volume_is_refused(mrml_scene):
    volume, matrix, _ = _volume(mrml_scene.scene, "lps")
    roi = mrml_scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "far away")
    roi.SetCenter(500, 500, 500)
    roi.SetSize(5, 5, 5)
    with pytest.raises(InputError, match="does not overlap"):
        mrml.roiToIndexBox(roi, volume)


def test_new_segmentation_sits_next_to_the_volume_under_its_transform(mrml_scene):
    scene = mrml_scene.scene
    volume, _, _ = _volume(scene, "oblique")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    hierarchy = scene.GetSubjectHierarchyNode()
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "Subject 1")
    # headless nothing creates hierarchy items for new nodes (Slicer's Qt plugin handler does)
    hierarchy.CreateItem(folder, volume)
    node = mrml.newSegmentationNode(volume)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == folder
    assert node.GetTransformNodeID() == transform.GetID()


def test_segments_into_a_node_under_another_linear_transform_keep_their_ras_position(mrml_scene):
    import vtk

    scene = mrml_scene.scene
    volume, matrix, voxels = _volume(scene, "ras")
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    moved = vtk.vtkMatrix4x4()
    moved.SetElement(0, 3, 7.0)
    shift.SetMatrixTransformToParent(moved)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "elsewhere")
    node.SetAndObserveTransformNodeID(shift.GetID())
    labels = np.zeros(voxels.shape, np.uint8)
    labels[5:8, 5:8, 5:8] = 1
    ids = mrml.writeSegments(node, labels, volume, [mrml.LabelSpec(1, "Hippocampus", (0, 1, 0))], "m")
    # exporting onto the volume accounts for both transforms: the same voxels again
    assert np.array_equal(mrml.segmentArray(node, ids["Hippocampus"], volume), labels)


def test_terminology_strings_are_read_back_by_slicer():
    import slicer

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    for name, side, modifier in (("Hippocampus anterior", None, ""), ("Hippocampus posterior", "left", "Left"), ("Hippocampus anterior", "R", "Right")):
        entry = slicer.vtkSlicerTerminologyEntry()
        text = terminology.entry_string(name, side)
        assert logic.DeserializeTerminologyEntry(text, entry)
        assert entry.GetTerminologyContextName() == "Segmentation category and type - DICOM master list"
        assert entry.GetCategoryObject().GetCodeValue() == "123037004"
        assert entry.GetTypeObject().GetCodeValue() == "5366008"
        assert entry.GetTypeObject().GetCodeMeaning() == "Hippocampus"
        assert (entry.GetTypeModifierObject().GetCodeMeaning() or "") == modifier
        # Slicer serialises it back to the same string
        assert logic.SerializeTerminologyEntry(entry) == text
    assert terminology.display_name("Hippocampus anterior", "left") == "Left hippocampus anterior"
    assert terminology.entry_string("Background") == ""
