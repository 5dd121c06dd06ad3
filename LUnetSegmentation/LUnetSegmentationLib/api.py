"""Console and batch API: `segment(volumeNode)` and `segmentFiles(paths, outputDir)`.

Qt-free. In Slicer the scene is the volume node's scene (`slicer.mrmlScene`); headless, any
scene made by `mrml.createHeadlessScene()`. The GUI runs the same three steps as `segment`:

    job = prepareSegmentation(volumeNode, ...)   # main thread: checks input, copies voxels, loads model
    job.compute(progress, cancelled)             # any thread: no MRML access
    node = job.apply()                           # main thread: writes segments and provenance

torch is imported only when a model is loaded, never when this module is imported.
"""
from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__, mrml
from .preprocess import InputError

log = logging.getLogger("LUnetSegmentation")

_CACHE_SIZE = 2  # a model or two per device; each is small (~0.5 MB of weights)
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


# ----------------------------------------------------------------------------- model cache


class _LoadedModel:
    """A Segmenter and the lock that serialises its use (it may move itself to the CPU)."""

    def __init__(self, segmenter):
        self.segmenter = segmenter
        self.lock = threading.Lock()


def getSegmenter(model=None, device: str = "auto") -> _LoadedModel:
    """Load a model once per (model, device, weights file state) and reuse it."""
    from .engine import Segmenter, choose_device
    from .weights import find_model

    card = find_model(model)
    resolved = choose_device(device)
    weights = card.weights_path
    stat = weights.stat() if weights.is_file() else None
    key = (str(card.path.resolve()), resolved, stat.st_mtime_ns if stat else None, stat.st_size if stat else None)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    loaded = _LoadedModel(Segmenter(str(card.path), resolved))
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def clearModelCache() -> None:
    with _cache_lock:
        _cache.clear()


# ----------------------------------------------------------------------------- labels for an image


@dataclass
class LabelResult:
    labels: sitk.Image  # uint8 on the input grid
    specs: list  # [mrml.LabelSpec], value -> segment
    device: str
    notes: list = field(default_factory=list)
    sideVolumes: dict = field(default_factory=dict)  # "left"/"right" -> whole hippocampus mm3 (whole-head path)
    details: dict = field(default_factory=dict)  # JSON-able: how the labels were found (mode, localization)


def _specs_from_table(card, table) -> list:
    """mrml.LabelSpec per (value, name, colour, side) row of a wholebrain label table; the
    structure name stays the model's ("Hippocampus anterior") so terminology gets the side as a
    modifier rather than a new structure."""
    structure = {int(e["value"]): e["name"] for e in card.labels}
    count = len(structure)
    return [
        mrml.LabelSpec(int(value), structure[(int(value) - 1) % count + 1], tuple(float(c) for c in colour), side)
        for value, _name, colour, side in table
    ]


def _computeLabels(loaded: _LoadedModel, image: sitk.Image, indexBox, progress, cancelled) -> LabelResult:
    """Labels for one image. With a box (the user's ROI) only that box is segmented, with the
    model's own labels. Without one, `wholebrain.segment_head` decides: a crop-sized input is
    segmented directly; a whole-head or whole-brain scan is localized and both hippocampi are
    segmented, with left/right labels."""
    from .wholebrain import segment_head

    with loaded.lock:
        if indexBox is not None:
            result = loaded.segmenter.segment_image(image, indexBox, progress=progress, cancelled=cancelled)
            return LabelResult(
                result.labels, mrml.label_specs_from_card(result.card), result.device, list(result.notes), details={"mode": "roi"}
            )
        head = segment_head(loaded.segmenter, image, progress=progress, cancelled=cancelled)
    details = {"mode": head.mode}
    if head.localization is not None:
        details["localization"] = head.localization.summary()
    return LabelResult(
        head.labels, _specs_from_table(loaded.segmenter.card, head.label_table), head.device, list(head.notes),
        dict(head.side_volumes_mm3), details,
    )


# ----------------------------------------------------------------------------- checks


def checkVoxels(image: sitk.Image, name: str) -> None:
    """Refuse a volume the model cannot use (not 3D, NaN, constant) with a message that says why."""
    from .engine import check_image
    from .preprocess import check_finite

    check_image(image, what=f"volume {name!r}")
    array = sitk.GetArrayViewFromImage(image)
    check_finite(array, what=f"volume {name!r}")
    if array.min() == array.max():
        raise InputError(
            f"The volume {name!r} is constant (every voxel is {float(array.min()):g}), so there is nothing to "
            "segment. Check that the right volume is selected and that it loaded completely."
        )


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
        self.result: LabelResult | None = None
        self.seconds = 0.0
        self.device = loaded.segmenter.device
        self.notes: list[str] = []
        self.volumes: dict[str, float] = {}
        self.sideVolumes: dict[str, float] = {}  # "left"/"right" -> whole hippocampus mm3 (whole-head scans)
        self.segmentIds: dict[str, str] = {}

    def compute(self, progress: Callable[[float], None] | None = None, cancelled: Callable[[], bool] | None = None) -> None:
        """The slow part: no MRML access, safe in a worker thread. Raises InterruptedError on cancel."""
        started = time.time()
        self.result = _computeLabels(self._loaded, self.image, self.indexBox, progress, cancelled)
        self.seconds = time.time() - started
        self.device = self.result.device
        self.notes = list(self.result.notes)
        voxel = float(np.prod(self.image.GetSpacing()))
        counts = np.bincount(sitk.GetArrayViewFromImage(self.result.labels).ravel(), minlength=256)
        self.volumes = {spec.segment_name: float(counts[spec.value]) * voxel for spec in self.result.specs}
        self.sideVolumes = dict(self.result.sideVolumes)
        for name, volume in self.volumes.items():
            if volume == 0:
                self.notes.append(f"{name}: no voxels found (is the hippocampus inside the volume or ROI?)")

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
        return text + (f" ({'; '.join(self.notes)})" if self.notes else "")

    def apply(self):
        """Write the segments and provenance (main thread); returns the segmentation node."""
        if self.result is None:
            raise RuntimeError("apply() called before compute() finished")
        # Check again: the user may have changed the scene while compute() ran.
        if self.volumeNode.GetScene() is None:
            raise InputError("The input volume was removed from the scene while it was being segmented; nothing was written.")
        if self.segmentationNode is not None and self.segmentationNode.GetScene() is None:
            raise InputError(
                "The output segmentation was removed from the scene while segmenting; nothing was written. "
                "Run again to create a new one."
            )
        mrml.check_volume_node(self.volumeNode)
        mrml.check_segmentation_node(self.segmentationNode, self.volumeNode)
        node = self.segmentationNode or mrml.newSegmentationNode(self.volumeNode)
        self.segmentationNode = node
        labels = sitk.GetArrayViewFromImage(self.result.labels)
        self.segmentIds = mrml.writeSegments(node, labels, self.volumeNode, self.result.specs, self.card.model_id)
        mrml.writeProvenance(
            node,
            {
                "ModelId": self.card.model_id,
                "ModelVersion": self.card.version,
                "WeightsSHA256": self.card.weights_sha256,
                "Device": self.device,
                "Seconds": f"{self.seconds:.2f}",
                "InputVolumeID": self.volumeNode.GetID(),
                "InputVolumeName": self.volumeNode.GetName(),
                "ROINodeID": self.roiNode.GetID() if self.roiNode is not None else "",
                "IndexBox": "" if self.indexBox is None else f"{self.indexBox[0]}-{self.indexBox[1]}",
                "Notes": self.notes,
                "Mode": self.result.details.get("mode", ""),
                "Localization": json.dumps(self.result.details["localization"]) if "localization" in self.result.details else "",
                "HippocampusVolumesMm3": json.dumps({side: round(v, 1) for side, v in self.sideVolumes.items()}),
                "ModuleVersion": __version__,
            },
        )
        log.info("LUnetSegmentation: %s", self.summary)
        return node


def prepareSegmentation(volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None) -> SegmentationJob:
    """Check everything and load the model (main thread); errors say what is wrong and what to do."""
    mrml.check_volume_node(volumeNode)
    if volumeNode.GetScene() is None:
        raise InputError(f"The volume {volumeNode.GetName()!r} is not in a scene.")
    mrml.check_segmentation_node(segmentationNode, volumeNode)
    indexBox = mrml.roiToIndexBox(roiNode, volumeNode) if roiNode is not None else None
    image = mrml.volumeToImage(volumeNode)
    checkVoxels(image, volumeNode.GetName())
    loaded = getSegmenter(model, device)
    from .localize import looks_like_crop

    if indexBox is not None or looks_like_crop(image):
        # Whole-head scans are checked per hippocampus crop inside the engine instead: they
        # only ever segment two small boxes, so sizing the whole head would refuse them wrongly.
        loaded.segmenter.check_memory(image, indexBox)
    return SegmentationJob(volumeNode, segmentationNode, roiNode, image, indexBox, loaded)


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


def _planned_outputs(inputPaths, outputDir: Path, labelmap: bool) -> list[tuple[Path, str, Path, Path | None]]:
    from .volumeio import case_name

    plans, seen = [], {}
    for path in inputPaths:
        case = case_name(path)
        if case in seen:
            raise InputError(
                f"Two inputs would both write {case}.seg.nrrd: {seen[case]} and {path}. Rename one of them or "
                "segment them into different output folders."
            )
        seen[case] = path
        plans.append((Path(path), case, outputDir / f"{case}.seg.nrrd", outputDir / f"{case}.nii.gz" if labelmap else None))
    return plans


def _roi_node(scene, roi):
    """A markups ROI from `roi=(center_ras, size_mm)` (same box for every case)."""
    center, size = roi
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "LUnet ROI")
    node.SetCenter(*[float(c) for c in center])
    node.SetSize(*[float(s) for s in size])
    return node


def segmentFiles(inputPaths, outputDir, model=None, device="auto", labelmap=False, showProgress=False, roi=None) -> list[dict]:
    """Segment MRI files (NIfTI, NRRD, MHA, FreeSurfer .mgz) without the Slicer application.

    Writes DIR/<case>.seg.nrrd (open it in Slicer), with `labelmap=True` also DIR/<case>.nii.gz
    (the model's label values on the input grid), and DIR/summary.csv (status, error and each
    segment's volume in mm3 per case). A case that fails is reported and the others go on.
    Existing outputs are never overwritten: if any would be, nothing is done and the error
    lists them (choose a new output folder, or remove them). `roi=(center_ras, size_mm)`
    restricts every case to that box. Returns one dict per case ("status" is "ok" or "error").
    """
    from .volumeio import readImage, writeLabelmap

    inputPaths = [str(p) for p in inputPaths]
    if not inputPaths:
        raise InputError("No input files given.")
    outputDir = Path(outputDir)
    plans = _planned_outputs(inputPaths, outputDir, labelmap)
    summaryPath = outputDir / "summary.csv"
    existing = [p for plan in plans for p in plan[2:] if p is not None and p.exists()]
    existing += [summaryPath] if summaryPath.exists() else []
    if existing:
        shown = ", ".join(str(p) for p in existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise InputError(f"Refusing to overwrite existing output(s): {shown}. Choose a new output folder or remove them.")
    outputDir.mkdir(parents=True, exist_ok=True)

    loaded = getSegmenter(model, device)  # once for the whole batch; fails early on bad weights
    headless = mrml.createHeadlessScene()
    scene = headless.scene
    roiNode = _roi_node(scene, roi) if roi is not None else None
    card = loaded.segmenter.card
    # Crop inputs give the model's labels, whole-head scans the sided ones: one column each.
    from .wholebrain import side_label_table

    specNames = [spec.segment_name for spec in mrml.label_specs_from_card(card)]
    specNames += [spec.segment_name for spec in _specs_from_table(card, side_label_table(card))]
    specNames += ["Left hippocampus", "Right hippocampus"]
    rows = []
    bar = _progress_bar(plans, showProgress)
    for inputPath, case, segPath, labelPath in bar:
        bar.set_postfix_str(case)
        row = {"case": case, "input": str(inputPath), "status": "error", "error": "", "seconds": "", "device": "", "notes": ""}
        started = time.time()
        volumeNode = None
        try:
            image = readImage(inputPath)
            checkVoxels(image, case)
            volumeNode = mrml.imageToVolumeNode(scene, image, case)
            job = prepareSegmentation(volumeNode, model=model, device=device, roiNode=roiNode)
            job.compute()
            node = job.apply()
            mrml.writeSegmentationFile(node, segPath)
            if labelPath is not None:
                writeLabelmap(job.labels, labelPath)
            row.update(status="ok", device=job.device, notes="; ".join(job.notes))
            for name, volume in job.volumes.items():
                row[f"{name} mm3"] = f"{volume:.1f}"
            for side, volume in job.sideVolumes.items():
                row[f"{side.capitalize()} hippocampus mm3"] = f"{volume:.1f}"
            row["mode"] = job.result.details.get("mode", "")
        except Exception as error:  # isolate the case: report it, go on with the others
            log.warning("%s failed: %s", inputPath, error)
            row["error"] = str(error) or type(error).__name__
        finally:
            row["seconds"] = f"{time.time() - started:.2f}"
            # Drop this case's nodes (with their display and storage nodes and hierarchy
            # items) so a long batch does not accumulate them.
            for node in [n for n in (volumeNode,) if n is not None] + _nodes_of_class(scene, "vtkMRMLSegmentationNode"):
                _remove_with_dependents(scene, node)
        rows.append(row)
    bar.close()
    _write_summary(summaryPath, rows, specNames)
    return rows


class _NoBar(list):
    """Stands in for tqdm where it is missing (Slicer does not bundle it)."""

    def set_postfix_str(self, text):
        pass

    def close(self):
        pass


def _progress_bar(items, show: bool):
    if show:
        try:
            from tqdm import tqdm

            return tqdm(items, unit="case", desc="Segmenting")
        except ImportError:
            log.info("tqdm is not installed: no progress bar")
    return _NoBar(items)


def _remove_with_dependents(scene, node) -> None:
    dependents = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    dependents.append(node.GetStorageNode())
    hierarchy = scene.GetSubjectHierarchyNode()
    item = hierarchy.GetItemByDataNode(node) if hierarchy is not None else 0
    if item:
        hierarchy.RemoveItem(item, False, False)  # the item only; nodes are removed below
    scene.RemoveNode(node)
    for dependent in dependents:
        if dependent is not None and dependent.GetScene() is scene:
            scene.RemoveNode(dependent)


def _nodes_of_class(scene, className):
    nodes = scene.GetNodesByClass(className)
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def _write_summary(path: Path, rows: list[dict], specNames: list[str]) -> None:
    columns = ["case", "input", "status", "error", "mode"] + [f"{n} mm3" for n in specNames] + ["seconds", "device", "notes"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
