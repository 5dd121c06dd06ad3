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


# --- issue 23, "what Slicer users expect after a run": a volume table next to the segmentation


def whole_head_specs():
    from LUnetSegmentationLib.runtime.pipeline import SegmentSpec

    return [SegmentSpec(1, "Hippocampus", (1, 0.8, 0.2), "left"), SegmentSpec(2, "Hippocampus", (0.2, 0.8, 1), "right")]


def test_volume_table_follows_segment_statistics_and_fills_icv_and_asymmetry(mrml_scene):
    from LUnetSegmentationLib.runtime.measures import asymmetry_index
    from LUnetSegmentationLib.slicer_adapter import mrml

    specs = whole_head_specs()
    volumes = {specs[0].segment_name: 3200.0, specs[1].segment_name: 3000.0}
    volume = mrml.imageToVolumeNode(mrml_scene.scene, __import__("SimpleITK").Image(8, 8, 8, 8), "head")
    node = mrml.newSegmentationNode(volume)
    details = {"intracranial": {"volume_ml": 1500.0}}
    table = mrml.writeVolumeTable(node, specs, volumes, {"left": 3200.0, "right": 3000.0}, details, 0.5)
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())][:5] == [
        "Segment", "Side", "Voxel count", "Volume mm3", "Volume cm3"]
    assert table.GetColumnUnitLabel("Volume mm3") == "mm3" and table.GetColumnUnitLabel("Volume cm3") == "cm3"
    assert table.GetNumberOfRows() == 2
    cell = lambda row, name: table.GetCellText(row, table.GetColumnIndex(name))  # noqa: E731
    assert cell(0, "Segment") == specs[0].segment_name and cell(0, "Side") == "left"
    assert cell(0, "Voxel count") == "6400" and float(cell(0, "Volume cm3")) == pytest.approx(3.2)
    assert float(cell(0, "Fraction of ICV")) == pytest.approx(100 * 3200 / 1.5e6, abs=1e-3)
    assert float(cell(1, "Intracranial volume mL")) == 1500.0
    assert float(cell(0, "Asymmetry index")) == pytest.approx(asymmetry_index(3200, 3000), abs=1e-4)
    # Next to the segmentation, and the same table on a re-run.
    hierarchy = mrml_scene.scene.GetSubjectHierarchyNode()
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(table)) == hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node))
    again = mrml.writeVolumeTable(node, specs, volumes, {"left": 3200.0, "right": 3000.0}, {}, 0.5)
    assert again is table and mrml_scene.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert cell(0, "Intracranial volume mL") == "" and cell(0, "Fraction of ICV") == "", "no ICV: empty cells"


def test_volume_table_adds_side_totals_for_the_parts_model():
    from LUnetSegmentationLib.runtime.pipeline import SegmentSpec
    from LUnetSegmentationLib.slicer_adapter import mrml

    specs = [SegmentSpec(1, "Hippocampus anterior", (1, 0, 0), "left"), SegmentSpec(2, "Hippocampus posterior", (0, 1, 0), "left"),
             SegmentSpec(3, "Hippocampus anterior", (1, 0, 0), "right"), SegmentSpec(4, "Hippocampus posterior", (0, 1, 0), "right")]
    volumes = {spec.segment_name: 1000.0 + spec.value for spec in specs}
    rows = mrml.volumeTableRows(specs, volumes, {"left": 2003.0, "right": 2007.0}, {}, 1.0)
    assert [r["Segment"] for r in rows] == [specs[0].segment_name, specs[1].segment_name, "Left hippocampus",
                                            specs[2].segment_name, specs[3].segment_name, "Right hippocampus"]
    assert rows[2]["Volume mm3"] == 2003.0 and rows[2]["Asymmetry index"] is not None
    assert rows[0]["Asymmetry index"] is None and rows[0]["Intracranial volume mL"] is None
    # A crop: no side, no totals, no asymmetry.
    crop = mrml.volumeTableRows([SegmentSpec(1, "Hippocampus", (1, 0, 0))], {"Hippocampus": 3000.0}, {}, {}, 1.0)
    assert len(crop) == 1 and crop[0]["Side"] == "" and crop[0]["Asymmetry index"] is None
