"""segfile: a .seg.nrrd written without MRML opens in slicer-core's own segmentation storage node
with the names, colours, label values, terminology, our tags and the exact voxels."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.runtime.pipeline import SegmentSpec
from LUnetSegmentationLib.files.segfile import write_segmentation

pytest.importorskip("slicer")
from LUnetSegmentationLib.slicer_adapter import mrml  # noqa: E402


def _labels():
    array = np.zeros((20, 30, 40), np.uint8)
    array[5:8, 10:15, 3:9] = 1
    array[10:12, 2:4, 20:30] = 2
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.9, 1.1, 2.0))
    image.SetOrigin((5.0, -6.0, 7.0))
    image.SetDirection([0, -1, 0, 1, 0, 0, 0, 0, 1])  # turned: voxels must still land right
    return image, array


def test_slicer_reads_what_segfile_writes(tmp_path, mrml_scene):
    labels, array = _labels()
    specs = [SegmentSpec(1, "Hippocampus", (1.0, 0.0, 0.0), "left"), SegmentSpec(2, "Hippocampus", (0.0, 0.5, 1.0), "right"),
             SegmentSpec(3, "Hippocampus anterior", (0.2, 0.2, 0.2), None)]  # empty segment
    path = tmp_path / "case.seg.nrrd"
    write_segmentation(labels, specs, path, "model-x", {"WeightsSHA256": "abc"})
    node = mrml_scene.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    storage = node.CreateDefaultStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["Left hippocampus", "Right hippocampus", "Hippocampus anterior"]
    assert np.allclose(segmentation.GetNthSegment(1).GetColor(), (0.0, 0.5, 1.0))
    assert "5366008" in segmentation.GetNthSegment(0).GetTerminology() and "Left" in segmentation.GetNthSegment(0).GetTerminology()
    assert mrml.own_segment_ids(node) == {"Left hippocampus": "Left_hippocampus", "Right hippocampus": "Right_hippocampus",
                                          "Hippocampus anterior": "Hippocampus_anterior"}
    volume = mrml.imageToVolumeNode(mrml_scene.scene, sitk.Cast(labels, sitk.sitkFloat32), "reference")
    for index, value in enumerate((1, 2, 3)):
        mask = mrml.segmentArray(node, segmentation.GetNthSegmentID(index), volume)
        assert np.array_equal(mask, (array == value).astype(np.uint8)), value
    header = sitk.ImageFileReader()
    header.SetFileName(str(path))
    header.ReadImageInformation()
    assert header.GetMetaData("LUnetSegmentation.WeightsSHA256") == "abc"
