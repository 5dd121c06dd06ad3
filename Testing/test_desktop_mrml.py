"""The MRML adapter uses only calls that exist in Slicer 5.8 (checked against Slicer's 5.8.1 API
in test_versions_slicer_api.py); here: what those calls write reads back the way 5.8 reads it."""
from __future__ import annotations

import numpy as np
import pytest
from lunet_test_helpers import add_volume, ijk_to_ras_matrix

pytest.importorskip("slicer", reason="slicer-core (real MRML) is not installed")

from LUnetSegmentationLib.slicer_adapter import mrml  # noqa: E402
from LUnetSegmentationLib.runtime import terminology  # noqa: E402


def test_terminology_is_written_as_the_tag_every_version_reads(mrml_scene):
    import vtk

    scene = mrml_scene.scene
    volume = add_volume(scene, np.zeros((6, 7, 8), np.float32), ijk_to_ras_matrix(np.eye(3), (1, 1, 1), (0, 0, 0)))
    labels = np.zeros((6, 7, 8), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[3:5, 3:5, 3:5] = 2
    specs = [mrml.LabelSpec(1, "Hippocampus anterior", (1, 0, 0), "left"), mrml.LabelSpec(2, "Unknown part", (0, 1, 0))]
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    ids = mrml.writeSegments(node, labels, volume, specs, "model")
    segment = node.GetSegmentation().GetSegment(ids["Left hippocampus anterior"])
    # Slicer 5.8 has no GetTerminology: the entry is read from the tag by name.
    value = vtk.reference("")
    assert segment.GetTag(segment.GetTerminologyEntryTagName(), value)
    assert str(value) == terminology.entry_string("Hippocampus anterior", "left")
    assert "SCT^5366008^Hippocampus" in str(value) and "SCT^7771000^Left" in str(value)
    # A structure without a code keeps whatever Slicer gave the new segment, not a hippocampus code.
    other = node.GetSegmentation().GetSegment(ids["Unknown part"])
    value = vtk.reference("")
    other.GetTag(other.GetTerminologyEntryTagName(), value)
    assert "5366008" not in str(value)
