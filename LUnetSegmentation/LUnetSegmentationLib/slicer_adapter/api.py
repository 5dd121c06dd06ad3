"""Console and batch API: `segment(volumeNode)` and `segmentFiles(paths, outputDir)`.

Qt-free. In Slicer the scene is the volume node's scene (`slicer.mrmlScene`); headless, any
scene made by `mrml.createHeadlessScene()`. The GUI runs the same three steps as `segment`:

    job = prepareSegmentation(volumeNode, ...)   # main thread: checks input, copies voxels, loads model
    job.compute(progress, cancelled)             # any thread: no MRML access
    node = job.apply()                           # main thread: writes segments and provenance

torch is imported only when a model is loaded, never when this module is imported.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable

import SimpleITK as sitk

from ..runtime import pipeline
from . import mrml

log = logging.getLogger("LUnetSegmentation")

# The model cache and the MRML-free labelling live in runtime/pipeline.py (shared with the CLI, the
# Slicer module's child process and the BIDS App); these names stay for existing callers.
getSegmenter = pipeline.get_segmenter
clearModelCache = pipeline.clear_model_cache


# ----------------------------------------------------------------------------- what the API is given


def _is_node(value) -> bool:
    return hasattr(value, "IsA") and hasattr(value, "GetName") and hasattr(value, "GetClassName")


def _check_volume_argument(volumeNode) -> None:
    """Refuse, naming what to pass instead, a volume argument that is not an MRML node (a
    name, a numpy array, a SimpleITK image, a path): the node checks would fail on it with an
    AttributeError. None passes through, to get the "No input volume selected" message."""
    if volumeNode is None or _is_node(volumeNode):
        return
    if isinstance(volumeNode, str):
        raise TypeError(
            f"segment() needs the volume node, not its name or path {volumeNode!r}: in Slicer's Python console use "
            f"segment(getNode({volumeNode!r})); for a file on disk use segmentFiles({volumeNode!r}, outputDir)."
        )
    kind = f"{type(volumeNode).__module__}.{type(volumeNode).__name__}"
    if kind.startswith("numpy."):
        how = ("put the array into the scene first, e.g. node = slicer.util.addVolumeFromArray(array, ijkToRAS) "
               "(the array in k, j, i order, with its 4x4 IJK-to-RAS matrix so that sizes are in mm)")
    elif kind.startswith("SimpleITK."):
        how = "put the image into the scene first, e.g. node = sitkUtils.PushVolumeToSlicer(image)"
    elif isinstance(volumeNode, os.PathLike):
        how = f"for a file on disk use segmentFiles({str(volumeNode)!r}, outputDir)"
    else:
        how = "select or load a T1-weighted MRI volume, e.g. node = slicer.util.loadVolume(path)"
    raise TypeError(f"segment() needs a Slicer scalar volume node, not a {kind}: {how}; then call segment(node).")


def _check_node_argument(value, name: str, what: str) -> None:
    if value is not None and not _is_node(value):
        raise TypeError(f"{name} must be {what} or None, not a {type(value).__name__} ({value!r:.80}).")


def _check_model_argument(model) -> None:
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a shipped model id (e.g. 'hippocampus-lunet'), the path of a model card .json or of a "
            f"training output folder, or None for the default; not a {type(model).__name__} ({model!r:.80})."
        )


def _input_paths(inputPaths) -> list:
    """segmentFiles' inputs as a list: one path (a string or os.PathLike) is one file, never the
    characters of its name; otherwise an iterable of paths."""
    if isinstance(inputPaths, bytes):
        raise TypeError(f"inputPaths must be a str path (decode the bytes first), not bytes ({inputPaths!r:.80}).")
    if isinstance(inputPaths, (str, os.PathLike)):
        inputPaths = [inputPaths]
    try:
        paths = list(inputPaths)
    except TypeError:
        raise TypeError(f"inputPaths must be a file path or a list of file paths, not a {type(inputPaths).__name__} "
                        f"({inputPaths!r:.80}).") from None
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"inputPaths must hold file paths (str or pathlib.Path); it holds a {type(path).__name__} "
                            f"({path!r:.80}).")
    if not paths:
        raise ValueError("inputPaths is empty: give at least one image file (.nii.gz, .nrrd, .mha, .mgz).")
    return paths


# ----------------------------------------------------------------------------- the job


class SegmentationJob:
    """One segmentation run, split so that the slow part can run off the main thread."""

    def __init__(self, volumeNode, segmentationNode, roiNode, image, indexBox, loaded):
        self.volumeNode = volumeNode
        self.segmentationNode = segmentationNode
        self.roiNode = roiNode
        self.image = image
        self.indexBox = indexBox
        self._loaded = loaded
        self.card = loaded.segmenter.card
        self.result: pipeline.LabelResult | None = None
        self.seconds = 0.0
        self.device = loaded.segmenter.device
        self.notes: list[str] = []
        self.volumes: dict[str, float] = {}
        self.sideVolumes: dict[str, float] = {}  # "left"/"right" -> whole hippocampus mm3 (whole-head scans)
        self.segmentIds: dict[str, str] = {}
        self.warnings: list[str] = []  # from the entry check (checks.check_input)

    def compute(self, progress: Callable[[float], None] | None = None, cancelled: Callable[[], bool] | None = None) -> None:
        """The slow part: no MRML access, safe in a worker thread. Raises InterruptedError on cancel."""
        self.result = pipeline.label_image(
            self.image, index_box=self.indexBox, progress=progress, cancelled=cancelled, loaded=self._loaded,
            name=self.volumeNode.GetName(), checked=self.warnings,
        )
        self.seconds = self.result.seconds
        self.device = self.result.device
        self.notes = list(self.result.notes)
        self.volumes = dict(self.result.volumes_mm3)
        self.sideVolumes = dict(self.result.side_volumes_mm3)
        self.warnings = list(self.result.warnings)

    @property
    def labels(self) -> sitk.Image | None:
        return self.result.labels if self.result else None

    @property
    def summary(self) -> str:
        if self.result is None:
            return "not computed yet"
        parts = [f"{side} hippocampus {volume:.0f} mm3" for side, volume in self.sideVolumes.items()]
        parts += [f"{name} {volume:.0f} mm3" for name, volume in self.volumes.items()]
        text = f"{', '.join(parts)} in {self.seconds:.1f} s on {self.device}"
        text += f" ({'; '.join(self.notes)})" if self.notes else ""
        return text + "".join(f" WARNING: {warning}" for warning in self.warnings)

    def apply(self):
        """Write the segments and provenance (main thread); returns the segmentation node."""
        if self.result is None:
            raise RuntimeError("apply() called before compute() finished")
        node = mrml.outputSegmentationNode(self.volumeNode, self.segmentationNode)
        self.segmentationNode = node
        labels = sitk.GetArrayViewFromImage(self.result.labels)
        self.segmentIds = mrml.writeSegments(node, labels, self.volumeNode, self.result.specs, self.card.model_id)
        model = {"id": self.card.model_id, "version": self.card.version, "weights_sha256": self.card.weights_sha256}
        mrml.writeRunProvenance(
            node, self.volumeNode, model, self.device, self.seconds, roiNode=self.roiNode, indexBox=self.indexBox,
            notes=self.notes, warnings=self.warnings, details=self.result.details, sideVolumes=self.sideVolumes,
        )
        log.info("LUnetSegmentation: %s", self.summary)
        return node


def prepareSegmentation(volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None,
                        checked: list[str] | None = None) -> SegmentationJob:
    """Check everything and load the model (main thread); errors say what is wrong and what to do.

    The voxels get the single entry check (runtime.checks.check_input) here, before the model is
    loaded, and not again in compute(). A caller that ran it already on this node's voxels (the
    web app, when the file was opened) passes its warnings as `checked`. Arguments of the wrong
    kind (a name, an array, a model given as a number) raise TypeError saying what to pass."""
    _check_volume_argument(volumeNode)
    _check_node_argument(segmentationNode, "segmentationNode", "a segmentation node")
    _check_node_argument(roiNode, "roiNode", "a markups ROI node")
    _check_model_argument(model)
    image, indexBox, warnings = mrml.runInput(volumeNode, segmentationNode, roiNode, checked)
    loaded = getSegmenter(model, device)
    from ..runtime.localize import looks_like_crop

    if indexBox is not None or looks_like_crop(image):
        # Whole-head scans are checked per hippocampus crop inside the engine instead: they
        # only ever segment two small boxes, so sizing the whole head would refuse them wrongly.
        loaded.segmenter.check_memory(image, indexBox)
    job = SegmentationJob(volumeNode, segmentationNode, roiNode, image, indexBox, loaded)
    job.warnings = warnings
    return job


def segment(volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None, progress=None, cancelled=None):
    """Segment the hippocampus in a volume node; returns the segmentation node (blocking).

    Example (Slicer's Python console):
        from LUnetSegmentationLib import segment
        seg = segment(getNode("MRHead"))
    """
    job = prepareSegmentation(volumeNode, segmentationNode, model=model, device=device, roiNode=roiNode)
    job.compute(progress=progress, cancelled=cancelled)
    return job.apply()


# ----------------------------------------------------------------------------- batch


def segmentFiles(inputPaths, outputDir, model=None, device="auto", labelmap=False, showProgress=False, roi=None) -> list[dict]:
    """Segment MRI files (NIfTI, NRRD, MHA, FreeSurfer .mgz) without the Slicer application.

    `inputPaths`: one path or a list of paths. Writes DIR/<case>.seg.nrrd (open it in Slicer), with `labelmap=True` also DIR/<case>.nii.gz
    (label values on the input grid), and DIR/summary.csv (status, error, mode, warnings and
    each segment's volume in mm3 per case). A case that fails is reported and the others go on.
    Outputs are written whole or not at all and never replace another file; re-running the same
    command skips complete outputs of the same input and model and redoes the rest (see
    files/batch.py). `roi=(center_ras, size_mm)` restricts every case to that box. Returns one dict
    per case ("status" is "ok" or "error"). Needs no MRML scene: in Slicer's console it does
    not touch the application's scene or logics.
    """
    from ..files.batch import segment_files

    paths = _input_paths(inputPaths)  # files/batch.py checks outputDir
    _check_model_argument(model)
    return segment_files(paths, outputDir, model=model, device=device, labelmap=labelmap,
                         showProgress=showProgress, roi=roi)
