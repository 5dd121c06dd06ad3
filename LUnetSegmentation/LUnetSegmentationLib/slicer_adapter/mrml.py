"""MRML adapter: volume node <-> SimpleITK image, ROI -> index box, labels -> segments.

Needs slicer-core (real MRML) and numpy/SimpleITK only: no torch, no Qt, so it runs inside
Slicer and in headless scripts and tests alike.

Geometry: MRML keeps voxels in KJI order with an IJK-to-RAS matrix; ITK keeps an origin,
spacing and direction in LPS. The conversion below keeps the full matrix (oblique directions,
anisotropic spacing, flipped axes), so labels computed on the ITK image land on exactly the
same voxels of the volume in RAS space.
"""
from __future__ import annotations

import datetime
import logging

import numpy as np
import SimpleITK as sitk

from ..files.segfile import PROVENANCE_PREFIX, TAG_LABEL_VALUE, TAG_SOURCE, TAG_STRUCTURE
from ..runtime.pipeline import SegmentSpec, specs_from_card
from ..runtime.preprocess import InputError
from ..runtime.resample import RAS_TO_LPS, image_from_ijk_to_ras

log = logging.getLogger("LUnetSegmentation")

# Segment tags (segfile.TAG_*, shared with the .seg.nrrd writer) and node attributes written by
# this module. The tag marks our own segments so a re-run replaces exactly them and leaves every
# other segment (the user's edits) alone.
ATTRIBUTE_PREFIX = PROVENANCE_PREFIX  # node attributes carry the same keys as the file header


# One label value and the segment it becomes: the MRML-free core's SegmentSpec.
LabelSpec = SegmentSpec
label_specs_from_card = specs_from_card


# ----------------------------------------------------------------------------- headless scene


class HeadlessSlicer:
    """A real MRML scene with an application logic and the module logics that segmentation
    needs, for scripts and tests without the Slicer application.

    The application logic does not own its module logics, so this object keeps them alive;
    keep a reference to it as long as the scene is in use.
    """

    def __init__(self):
        import slicer

        self.scene = slicer.vtkMRMLScene()
        self.applicationLogic = slicer.vtkSlicerApplicationLogic()
        self.applicationLogic.SetMRMLScene(self.scene)
        self.logics = {}
        # vtkMRMLColorLogic (not vtkSlicerColorLogic): the Slicer variant looks for colour files
        # under the application's home directory, which does not exist headless.
        for name, factory in (
            ("Colors", slicer.vtkMRMLColorLogic),
            ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
            ("Volumes", slicer.vtkSlicerVolumesLogic),
            # Registers the segmentation converter rules when it gets its scene.
            ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
        ):
            logic = factory()
            logic.SetMRMLApplicationLogic(self.applicationLogic)
            logic.SetMRMLScene(self.scene)
            self.applicationLogic.SetModuleLogic(name, logic)
            self.logics[name] = logic
        self.applicationLogic.SetColorLogic(self.logics["Colors"])

    def clear(self) -> None:
        self.scene.Clear(False)


def createHeadlessScene() -> HeadlessSlicer:
    return HeadlessSlicer()


# ----------------------------------------------------------------------------- volume -> image


def _matrix_to_array(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(volumeNode) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return _matrix_to_array(matrix)


def _sequence_browser_of(volumeNode):
    scene = volumeNode.GetScene()
    if scene is None:
        return None
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for index in range(browsers.GetNumberOfItems()):
        browser = browsers.GetItemAsObject(index)
        if browser.IsProxyNodeID(volumeNode.GetID()):
            return browser
    return None


def check_volume_node(volumeNode) -> None:
    """Refuse nodes that are not a single 3D scalar volume, saying what to do instead."""
    if volumeNode is None:
        raise InputError("No input volume selected. Select (or load) a T1-weighted MRI volume first.")
    name = volumeNode.GetName() if hasattr(volumeNode, "GetName") else str(volumeNode)
    if not hasattr(volumeNode, "IsA") or not volumeNode.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"{name!r} is not a volume ({volumeNode.GetClassName()}). Select a scalar MRI volume.")
    if volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{name!r} is a labelmap, not an MRI volume. Select the T1-weighted MRI it belongs to.")
    for kind in ("vtkMRMLVectorVolumeNode", "vtkMRMLTensorVolumeNode", "vtkMRMLDiffusionWeightedVolumeNode"):
        if volumeNode.IsA(kind):
            raise InputError(
                f"{name!r} is a vector, tensor or diffusion volume ({volumeNode.GetClassName()}); the model needs one "
                "3D scalar T1 volume. Extract one component first (Slicer: 'Vector to Scalar Volume')."
            )
    if _sequence_browser_of(volumeNode) is not None:
        raise InputError(
            f"{name!r} is one frame of a 4D sequence. Clone the frame you want (Data module: right-click > Clone) "
            "and segment the clone, so the result stays with that frame."
        )
    image = volumeNode.GetImageData()
    if image is None:
        raise InputError(f"{name!r} has no image data (an empty volume). Load or select a volume with voxels.")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(
            f"{name!r} has {image.GetNumberOfScalarComponents()} values per voxel (a 4D, vector or colour volume); "
            "the model needs one 3D scalar T1 volume. Extract one frame or component first."
        )
    dims = image.GetDimensions()
    if min(dims) <= 0 or image.GetPointData().GetScalars() is None:
        raise InputError(f"{name!r} is empty (size {dims[0]}x{dims[1]}x{dims[2]}). Select a volume with voxels.")


def volumeToImage(volumeNode, available_bytes: int | None = None) -> sitk.Image:
    """A copy of the volume's voxels as a SimpleITK image with its full geometry (in LPS).

    A parent transform is not applied: labels are written back in the volume's own
    coordinates and the segmentation goes under the same transform.
    """
    from vtk.util.numpy_support import vtk_to_numpy

    check_volume_node(volumeNode)
    image = volumeNode.GetImageData()
    dims = image.GetDimensions()
    scalars = image.GetPointData().GetScalars()
    # Estimate before copying: the copy, its float32 version and the label image.
    needed = int(np.prod(dims)) * (scalars.GetDataTypeSize() + 4 + 1)
    if available_bytes is None:
        from ..runtime.memory import available_memory_bytes

        available_bytes = available_memory_bytes()
    if needed > available_bytes:
        raise InputError(
            f"The volume ({dims[0]}x{dims[1]}x{dims[2]} voxels) needs about {needed / 2**30:.1f} GiB of memory to copy "
            f"and {available_bytes / 2**30:.1f} GiB is free. Crop it first (Crop Volume module) around the hippocampi."
        )
    voxels = np.array(vtk_to_numpy(scalars), copy=True).reshape(dims[::-1])
    return image_from_ijk_to_ras(voxels, ijk_to_ras(volumeNode), volumeNode.GetName())


def imageToVolumeNode(scene, image: sitk.Image, name: str = "Volume"):
    """A new scalar volume node holding a SimpleITK image with its geometry (LPS -> RAS)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name!r} is not a 3D scalar image; the model needs one 3D scalar T1 volume.")
    array = np.ascontiguousarray(sitk.GetArrayViewFromImage(image))
    data = vtk.vtkImageData()
    data.SetDimensions(image.GetSize())
    data.GetPointData().SetScalars(numpy_to_vtk(array.ravel(), deep=True))
    ras = RAS_TO_LPS @ (np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing()))
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, ras[r, c])
        matrix.SetElement(r, 3, (RAS_TO_LPS @ np.asarray(image.GetOrigin()))[r])
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    node.SetIJKToRASMatrix(matrix)
    node.SetAndObserveImageData(data)
    node.CreateDefaultDisplayNodes()
    return node


# ----------------------------------------------------------------------------- ROI -> index box


def _world_to_volume_local(volumeNode):
    """vtkGeneralTransform from world to the volume's own (untransformed) RAS."""
    import slicer
    import vtk

    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, volumeNode.GetParentTransformNode(), transform)
    return transform


def roiToIndexBox(roiNode, volumeNode) -> tuple[list[int], list[int]]:
    """The index box [start, stop) of the volume covering a markups ROI.

    An ROI rotated against the volume's axes is covered by the box around its 8 corners,
    so the work region always contains the whole ROI.
    """
    if roiNode is None:
        raise InputError("No region of interest given.")
    if not roiNode.IsA("vtkMRMLMarkupsROINode"):
        raise InputError(f"{roiNode.GetName()!r} is not a markups ROI ({roiNode.GetClassName()}). Use a Markups ROI.")
    if roiNode.GetNumberOfControlPoints() < 1:
        raise InputError(f"The ROI {roiNode.GetName()!r} is not placed yet. Place it around the hippocampus.")
    size = np.asarray(roiNode.GetSize(), dtype=float)
    object_to_world = _matrix_to_array(roiNode.GetObjectToWorldMatrix())
    to_local = _world_to_volume_local(volumeNode)
    ras_to_ijk = np.linalg.inv(ijk_to_ras(volumeNode))
    indices = []
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            for sz in (-0.5, 0.5):
                corner = object_to_world @ np.array([sx * size[0], sy * size[1], sz * size[2], 1.0])
                local = to_local.TransformPoint(corner[:3].tolist())
                indices.append((ras_to_ijk @ np.array([*local, 1.0]))[:3])
    indices = np.array(indices)
    dims = np.asarray(volumeNode.GetImageData().GetDimensions())
    # Voxel v covers [v - 0.5, v + 0.5]: take every voxel whose centre region meets the box.
    start = np.clip(np.floor(indices.min(axis=0) + 0.5).astype(int), 0, dims)
    stop = np.clip(np.ceil(indices.max(axis=0) + 0.5).astype(int), 0, dims)
    if np.any(stop <= start):
        raise InputError(
            f"The ROI {roiNode.GetName()!r} does not overlap the volume {volumeNode.GetName()!r}. Move it onto the volume."
        )
    return start.tolist(), stop.tolist()


# ----------------------------------------------------------------------------- labels -> segments


def segment_tag(segment, key: str) -> str | None:
    import vtk

    if not segment.HasTag(key):
        return None
    value = vtk.reference("")
    segment.GetTag(key, value)
    return str(value)


def own_segment_ids(segmentationNode) -> dict[str, str]:
    """{structure key: segment id} of the segments this module wrote before."""
    segmentation = segmentationNode.GetSegmentation()
    found = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        if segment_tag(segment, TAG_SOURCE) is not None:
            found[segment_tag(segment, TAG_STRUCTURE) or segment.GetName()] = segmentation.GetNthSegmentID(index)
    return found


def check_segmentation_node(segmentationNode, volumeNode) -> None:
    """Refuse an output node that cannot take our labels, before any work is done."""
    if segmentationNode is None:
        return
    if not segmentationNode.IsA("vtkMRMLSegmentationNode"):
        raise InputError(
            f"{segmentationNode.GetName()!r} is not a segmentation ({segmentationNode.GetClassName()}). Choose a "
            "segmentation node or 'Create new segmentation'."
        )
    if segmentationNode.GetScene() is not volumeNode.GetScene():
        raise InputError("The output segmentation and the input volume are in different scenes.")
    _check_results_of_this_volume(segmentationNode, volumeNode)
    segmentation = segmentationNode.GetSegmentation()
    source = segmentation.GetSourceRepresentationName()
    labelmap = "Binary labelmap"
    if segmentation.GetNumberOfSegments() > 0 and source != labelmap:
        raise InputError(
            f"The segmentation {segmentationNode.GetName()!r} stores its segments as {source!r}, not as a binary "
            "labelmap. Choose 'Create new segmentation' (its segments are kept as they are)."
        )
    _volume_to_segmentation_matrix(volumeNode, segmentationNode)


def _check_results_of_this_volume(segmentationNode, volumeNode) -> None:
    """Writing into a segmentation replaces the segments this module wrote before. When those
    were computed for another volume, that would silently swap one scan's results for
    another's: refuse, and say what to do."""
    if not own_segment_ids(segmentationNode):
        return
    madeFor = segmentationNode.GetAttribute(ATTRIBUTE_PREFIX + "InputVolumeID")
    if madeFor and madeFor != volumeNode.GetID():
        other = volumeNode.GetScene().GetNodeByID(madeFor) if volumeNode.GetScene() is not None else None
        name = other.GetName() if other is not None else madeFor
        raise InputError(
            f"The segmentation {segmentationNode.GetName()!r} holds results computed for volume {name!r}; writing "
            f"the results for {volumeNode.GetName()!r} into it would replace them. Choose 'Create new segmentation' "
            "(or segment(volume) without a segmentation), or remove those segments first."
        )


def runInput(volumeNode, segmentationNode=None, roiNode=None, checked: list[str] | None = None):
    """A run's input, read from the scene and checked before any work (main thread), for the
    console job and the panel's child alike: (image, index box of the ROI or None, warnings).
    The voxels get the single entry check (runtime.checks.check_input) unless the caller ran it
    already on this node's voxels and passes its warnings as `checked`."""
    from ..runtime.checks import check_input

    check_volume_node(volumeNode)
    if volumeNode.GetScene() is None:
        raise InputError(f"The volume {volumeNode.GetName()!r} is not in a scene.")
    check_segmentation_node(segmentationNode, volumeNode)  # also refuses results of another volume
    indexBox = roiToIndexBox(roiNode, volumeNode) if roiNode is not None else None
    image = volumeToImage(volumeNode)
    warnings = list(checked) if checked is not None else check_input(image, volumeNode.GetName())
    return image, indexBox, warnings


def outputSegmentationNode(volumeNode, segmentationNode):
    """The node to write a finished run into (main thread): the checks again, because the user
    may have changed the scene while the work ran, then the given node or a new one."""
    if volumeNode.GetScene() is None:
        raise InputError("The input volume was removed from the scene while it was being segmented; nothing was written.")
    if segmentationNode is not None and segmentationNode.GetScene() is None:
        raise InputError(
            "The output segmentation was removed from the scene while segmenting; nothing was written. "
            "Run again to create a new one."
        )
    check_volume_node(volumeNode)
    check_segmentation_node(segmentationNode, volumeNode)
    return segmentationNode or newSegmentationNode(volumeNode)


def _volume_to_segmentation_matrix(volumeNode, segmentationNode) -> np.ndarray:
    """Linear map from the volume's local RAS to the segmentation's local RAS (identity when
    both sit under the same transform)."""
    import slicer
    import vtk

    if volumeNode.GetParentTransformNode() is segmentationNode.GetParentTransformNode():
        return np.eye(4)
    general = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        volumeNode.GetParentTransformNode(), segmentationNode.GetParentTransformNode(), general
    )
    linear = vtk.vtkTransform()
    if not slicer.vtkMRMLTransformNode.IsGeneralTransformLinear(general, linear):
        raise InputError(
            "The input volume and the output segmentation are under different, non-linear transforms. Harden the "
            "transform or choose 'Create new segmentation'."
        )
    return _matrix_to_array(linear.GetMatrix())


def _oriented_mask(mask: np.ndarray, image_to_world: np.ndarray):
    import slicer
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    oriented = slicer.vtkOrientedImageData()
    oriented.SetDimensions(mask.shape[::-1])
    oriented.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).ravel(), deep=True))
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, image_to_world[r, c])
    oriented.SetImageToWorldMatrix(matrix)
    return oriented


def newSegmentationNode(volumeNode, name: str | None = None):
    """A new segmentation node next to the volume: same subject hierarchy parent, same parent
    transform, the volume as reference geometry."""
    scene = volumeNode.GetScene()
    node = scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", scene.GenerateUniqueName(name or f"{volumeNode.GetName()} hippocampus")
    )
    node.CreateDefaultDisplayNodes()
    node.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    _place_next_to(node, volumeNode)
    return node


def _has_reference_geometry(segmentationNode) -> bool:
    import slicer

    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    return bool(segmentationNode.GetSegmentation().GetConversionParameter(name))


def writeSegments(segmentationNode, labels: np.ndarray, volumeNode, specs: list[LabelSpec], source: str) -> dict[str, str]:
    """Write one segment per label spec from a label array (KJI, on the volume's grid).

    Segments this module wrote before are updated in place (same ID, the user's display
    choices kept) or removed when no longer produced; every other segment is left untouched.
    Returns {segment name: segment id}.
    """
    import slicer

    if labels.shape != tuple(volumeNode.GetImageData().GetDimensions()[::-1]):
        raise ValueError(f"label array {labels.shape} does not match the volume's grid")
    segmentation = segmentationNode.GetSegmentation()
    image_to_world = _volume_to_segmentation_matrix(volumeNode, segmentationNode) @ ijk_to_ras(volumeNode)
    own = own_segment_ids(segmentationNode)
    wanted = {spec.segment_name for spec in specs}
    for key, segment_id in own.items():
        if key not in wanted:
            segmentation.RemoveSegment(segment_id)
    others = {
        segmentation.GetNthSegment(i).GetName()
        for i in range(segmentation.GetNumberOfSegments())
        if segmentation.GetNthSegmentID(i) not in own.values()
    }
    if not _has_reference_geometry(segmentationNode):
        # Only a node without one: the geometry of a user's existing segmentation is the grid
        # they edit on, and changing it under them would resample their later edits.
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    written = {}
    was_modifying = segmentationNode.StartModify()
    try:
        for spec in specs:
            key = spec.segment_name
            segment_id = own.get(key)
            if segment_id is None:
                # Keep names unique: a user's segment of the same name stays as it is.
                name = key if key not in others else f"{key} (LUnet)"
                segment_id = segmentation.AddEmptySegment("", name, list(spec.color))
            segment = segmentation.GetSegment(segment_id)
            segment.SetColor(*spec.color)
            segment.SetTag(TAG_SOURCE, source)
            segment.SetTag(TAG_STRUCTURE, key)
            segment.SetTag(TAG_LABEL_VALUE, str(spec.value))
            if spec.terminology:
                # The tag rather than vtkSegment.SetTerminology, which exists only from Slicer
                # 5.10; the tag is what SetTerminology writes, on every version from 5.8.
                segment.SetTag(segment.GetTerminologyEntryTagName(), spec.terminology)
            mask = _oriented_mask(labels == spec.value, image_to_world)
            if not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                mask, segmentationNode, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE
            ):
                raise RuntimeError(f"Could not write segment {key!r} into {segmentationNode.GetName()!r}.")
            written[segment.GetName()] = segment_id
    finally:
        segmentationNode.EndModify(was_modifying)
    return written


def writeProvenance(segmentationNode, values: dict) -> None:
    """Provenance attributes (model, weights hash, device, run time, input, notes) on the node."""
    values = dict(values)
    values.setdefault("Date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            value = " | ".join(str(v) for v in value)
        segmentationNode.SetAttribute(ATTRIBUTE_PREFIX + key, "" if value is None else str(value))


def writeRunProvenance(segmentationNode, volumeNode, model: dict, device: str, seconds: float, roiNode=None,
                       indexBox=None, notes=(), warnings=(), details: dict | None = None,
                       sideVolumes: dict | None = None, **extra) -> None:
    """What every run records on its segmentation node, whichever way it ran (console in
    process, panel through the child): model {"id", "version", "weights_sha256"}, device, time,
    input, ROI, notes, warnings, mode, localization and per-side volumes; `extra` adds keys."""
    import json

    from .. import __version__

    details = details or {}
    writeProvenance(
        segmentationNode,
        {
            "ModelId": model.get("id", ""),
            "ModelVersion": model.get("version", ""),
            "WeightsSHA256": model.get("weights_sha256", ""),
            "Device": device,
            "Seconds": f"{seconds:.2f}",
            "InputVolumeID": volumeNode.GetID(),
            "InputVolumeName": volumeNode.GetName(),
            "ROINodeID": roiNode.GetID() if roiNode is not None else "",
            "IndexBox": "" if indexBox is None else f"{indexBox[0]}-{indexBox[1]}",
            "Notes": list(notes),
            "Warnings": list(warnings),
            "Mode": details.get("mode", ""),
            "Localization": json.dumps(details["localization"]) if "localization" in details else "",
            "HippocampusVolumesMm3": json.dumps({side: round(v, 1) for side, v in (sideVolumes or {}).items()}),
            "ModuleVersion": __version__,
            **extra,
        },
    )


def readProvenance(segmentationNode) -> dict[str, str]:
    names = segmentationNode.GetAttributeNames() or []
    return {n[len(ATTRIBUTE_PREFIX):]: segmentationNode.GetAttribute(n) for n in names if n.startswith(ATTRIBUTE_PREFIX)}


def segmentArray(segmentationNode, segmentId: str, volumeNode) -> np.ndarray:
    """A segment as a uint8 KJI array on the volume's grid (for tests and measurements)."""
    import slicer
    from vtk.util.numpy_support import vtk_to_numpy

    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    scene = volumeNode.GetScene()
    scene.AddNode(labelmap)
    try:
        ids = __import__("vtk").vtkStringArray()
        ids.InsertNextValue(segmentId)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentationNode, ids, labelmap, volumeNode):
            raise RuntimeError(f"could not export segment {segmentId!r}")
        dims = labelmap.GetImageData().GetDimensions()
        return (vtk_to_numpy(labelmap.GetImageData().GetPointData().GetScalars()).reshape(dims[::-1]) > 0).astype(np.uint8)
    finally:
        # The export also adds a display node and a colour table for the labelmap: remove them
        # too, or every measurement (the web panel measures after each edit) leaves two nodes.
        display = labelmap.GetDisplayNode()
        color = display.GetColorNode() if display is not None else None
        scene.RemoveNode(labelmap)
        if display is not None:
            scene.RemoveNode(display)
        if color is not None and not color.GetSingletonTag():
            scene.RemoveNode(color)


def writeSegmentationFile(segmentationNode, path) -> None:
    """Write `<name>.seg.nrrd` through the segmentation's own storage node (the file Slicer reads)."""
    storage = segmentationNode.GetStorageNode()
    if storage is None:
        storage = segmentationNode.CreateDefaultStorageNode()
        segmentationNode.GetScene().AddNode(storage)
        segmentationNode.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.WriteData(segmentationNode):
        raise OSError(f"Could not write the segmentation to {path}.")


# ----------------------------------------------------------------------------- the volume table

# The table next to the segmentation, found again on a re-run through this node reference.
VOLUME_TABLE_REFERENCE = ATTRIBUTE_PREFIX + "VolumeTable"
SIDE_NAMES = {"left": "Left hippocampus", "right": "Right hippocampus"}
# (column name, title, unit, description, vtk array class): names, titles and units follow
# Segment Statistics' labelmap plugin ("Voxel count", "Volume mm3", "Volume cm3"), so scripts
# that read its tables read this one. Optional measures are text columns, empty when missing.
VOLUME_TABLE_COLUMNS = (
    ("Segment", "Segment", "", "Segment name, or a side's total when the side has several segments.", "vtkStringArray"),
    ("Side", "Side", "", "left or right (empty in a crop or ROI, where the side is not known).", "vtkStringArray"),
    ("Voxel count", "Voxel count", "", "Number of voxels of the segment on the input volume's grid.", "vtkLongArray"),
    ("Volume mm3", "Volume", "mm3", "Volume of the segment computed from its voxels.", "vtkDoubleArray"),
    ("Volume cm3", "Volume", "cm3", "Volume of the segment computed from its voxels.", "vtkDoubleArray"),
    ("Fraction of ICV", "Fraction of ICV", "%", "Volume as a percentage of the intracranial volume.", "vtkStringArray"),
    ("Intracranial volume mL", "Intracranial volume", "mL", "Intracranial volume estimated by the localizer.", "vtkStringArray"),
    ("Asymmetry index", "Asymmetry index", "", "(L - R) / ((L + R) / 2) of the whole hippocampi, on the side rows.", "vtkStringArray"),
)


def volumeTableRows(specs, volumes: dict, sideVolumes: dict, details: dict, voxelVolume: float) -> list[dict]:
    """The table's rows: one per segment (in label order) and, for a side with several segments
    (anterior and posterior), the side's total after them. Measures come from runtime.measures,
    the one definition every output uses; a missing one is None (an empty cell)."""
    from ..runtime.measures import asymmetry_index, fraction_of_icv, intracranial_volume_ml

    icv = intracranial_volume_ml(details)
    asymmetry = asymmetry_index(sideVolumes.get("left"), sideVolumes.get("right"))

    def row(name, side, mm3, whole_side):
        return {
            "Segment": name, "Side": side or "", "Voxel count": int(round(mm3 / voxelVolume)) if voxelVolume else 0,
            "Volume mm3": float(mm3), "Volume cm3": float(mm3) / 1000.0,
            "Fraction of ICV": None if fraction_of_icv(mm3, icv) is None else 100.0 * fraction_of_icv(mm3, icv),
            "Intracranial volume mL": icv, "Asymmetry index": asymmetry if whole_side else None,
        }

    rows = []
    for side in [None, *sorted({spec.side for spec in specs if spec.side})]:
        of_side = [spec for spec in specs if spec.side == side]
        whole_side = side in sideVolumes and len(of_side) == 1
        rows += [row(spec.segment_name, side, volumes.get(spec.segment_name, 0.0), whole_side) for spec in of_side]
        if side in sideVolumes and len(of_side) > 1:
            rows.append(row(SIDE_NAMES.get(side, side), side, sideVolumes[side], True))
    return rows


def _cell(value, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def writeVolumeTable(segmentationNode, specs, volumes: dict, sideVolumes: dict, details: dict, voxelVolume: float):
    """The per-segment and per-side volumes in a table node next to the segmentation (same
    subject hierarchy folder), updated in place on a re-run; returns the table node."""
    import vtk

    scene = segmentationNode.GetScene()
    table = segmentationNode.GetNodeReference(VOLUME_TABLE_REFERENCE)
    if table is None or table.GetScene() is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{segmentationNode.GetName()} volumes"))
        segmentationNode.SetNodeReferenceID(VOLUME_TABLE_REFERENCE, table.GetID())
        _place_next_to(table, segmentationNode)
    rows = volumeTableRows(specs, volumes, sideVolumes or {}, details or {}, voxelVolume)
    was_modifying = table.StartModify()
    try:
        table.RemoveAllColumns()
        for name, title, unit, description, array_class in VOLUME_TABLE_COLUMNS:
            column = table.AddColumn(getattr(vtk, array_class)())
            column.SetName(name)
            table.SetColumnTitle(name, title)
            table.SetColumnUnitLabel(name, unit)
            table.SetColumnDescription(name, description)
        table.SetUseColumnTitleAsColumnHeader(True)
        text_decimals = {"Fraction of ICV": 3, "Intracranial volume mL": 1, "Asymmetry index": 4}
        for row in rows:
            index = table.AddEmptyRow()
            for name, _title, _unit, _description, array_class in VOLUME_TABLE_COLUMNS:
                value = row[name]
                if name in text_decimals:
                    table.SetCellText(index, table.GetColumnIndex(name), _cell(value, text_decimals[name]))
                else:
                    table.GetTable().GetColumnByName(name).SetValue(index, value)
        table.SetAttribute(ATTRIBUTE_PREFIX + "SegmentationNodeID", segmentationNode.GetID())
    finally:
        table.EndModify(was_modifying)
    table.Modified()
    return table


def _place_next_to(node, sibling) -> None:
    """Put `node` under the same subject hierarchy parent as `sibling`. In Slicer every node gets
    a hierarchy item when added (the Qt plugin handler does it); headless nobody does, so a
    missing item is created here."""
    hierarchy = node.GetScene().GetSubjectHierarchyNode()
    if hierarchy is None:
        return
    sibling_item = hierarchy.GetItemByDataNode(sibling)
    parent = hierarchy.GetItemParent(sibling_item) if sibling_item else hierarchy.GetSceneItemID()
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:
        hierarchy.CreateItem(parent, node)


def provenanceText(segmentationNode) -> str:
    """The run's provenance as lines for the panel: what a reader of the result needs to know."""
    values = readProvenance(segmentationNode)
    if not values.get("ModelId"):
        return ""
    lines = [
        f"Input: {values.get('InputVolumeName', '')}" + (f" (ROI box {values['IndexBox']})" if values.get("IndexBox") else ""),
        f"Model: {values.get('ModelId', '')} {values.get('ModelVersion', '')} (weights SHA-256 {values.get('WeightsSHA256', '')[:12]})",
        f"Mode: {values.get('Mode', '')}; device: {values.get('Device', '')}; {values.get('Seconds', '')} s; {values.get('Date', '')}",
        f"Module version: {values.get('ModuleVersion', '')}",
    ]
    if values.get("Warnings"):
        lines.append(f"Warnings: {values['Warnings']}")
    if values.get("Notes"):
        lines.append(f"Notes: {values['Notes']}")
    return "\n".join(lines)
