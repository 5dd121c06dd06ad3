"""What the web panel does, without the web: load a case, segment it, measure and save it.

Works on any MRML scene that has the Slicer module logics registered (trame-slicer's
SlicerApp in the web app, `mrml.createHeadlessScene()` in tests), so it is tested without a
browser. Every step either completes or leaves the scene as it was: a file that cannot be
loaded adds no node, a segmentation that fails writes nothing, and saving never replaces an
existing file (each file is written whole to a temporary name, then moved into place without
following symbolic links: see outputs.write_atomic). An upload is read only if it is one
self-contained volume whose header fits the size limit, uncompressed (see
volumeio.check_self_contained and check_size): it can never make the server read a file of its own.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...files.outputs import OutputError, OutputExistsError, write_atomic
from ...files.volumeio import SUFFIXES, case_name, check_self_contained, readImage, writeLabelmap
from ...runtime.checks import check_input
from ...runtime.preprocess import InputError
from ...runtime.resample import image_from_ijk_to_ras
from ...slicer_adapter import api, mrml

# Volume formats a user can open; .seg.nrrd is an output, not an input.
INPUT_SUFFIXES = tuple(s for s in SUFFIXES if s != ".seg.nrrd")
# An upload is one file: formats that keep their voxels in a second file cannot come that way.
UPLOAD_SUFFIXES = tuple(s for s in INPUT_SUFFIXES if s not in (".mhd", ".nhdr"))
DEFAULT_MAX_UPLOAD_MB = 512  # a 1 mm float32 whole head is ~30 MB; 512 MB leaves room for 7T data


def check_volume_name(name: str) -> None:
    """Refuse a file that is not a volume we read, by its name."""
    lowered = name.lower()
    if lowered.endswith(".seg.nrrd"):
        raise InputError(f"{name} is a segmentation, not an MRI volume. Open the T1 volume it was made from.")
    if not lowered.endswith(INPUT_SUFFIXES):
        raise InputError(
            f"{name} is not a supported volume file. Open a 3D T1 MRI as "
            f"{', '.join(INPUT_SUFFIXES)} (a DICOM series can be converted to NIfTI with dcm2niix)."
        )


def check_upload(name: str, size: int, max_bytes: int) -> None:
    """Refuse an upload by its name and size before it is written anywhere."""
    check_volume_name(name)
    if name.lower().endswith((".mhd", ".nhdr")):
        raise InputError(
            f"{name} keeps its voxels in a separate file, which an upload does not bring along. "
            "Upload a single-file .mha, .nrrd or .nii.gz, or give the path on the command line."
        )
    if size <= 0:
        raise InputError(f"{name} is empty (0 bytes). Check that the file was copied completely.")
    if size > max_bytes:
        raise InputError(
            f"{name} is {size / 2**20:.1f} MB, more than this server accepts ({max_bytes / 2**20:.1f} MB). "
            "Give its path on the command line instead, or start the server with a larger --max-upload-mb."
        )


@dataclass
class Case:
    """One loaded volume and the segmentation shown and edited with it."""

    name: str
    volumeNode: object
    segmentationNode: object
    inputPath: Path | None  # None for an upload: there is no folder of the user's to save next to
    voxelVolume: float  # mm3 of one voxel of the input volume
    warnings: list[str] = field(default_factory=list)  # from checks.check_input: shown with the case


@dataclass
class SegmentRow:
    segmentId: str
    name: str
    color: str  # '#rrggbb'
    labelValue: int
    volumeMm3: float


def _window_level(volumeNode) -> None:
    """Robust display range (1st-99.5th percentile) so that every MRI opens readable."""
    from vtk.util.numpy_support import vtk_to_numpy

    voxels = vtk_to_numpy(volumeNode.GetImageData().GetPointData().GetScalars())
    low, high = np.percentile(voxels[:: max(1, voxels.size // 1_000_000)], [1, 99.5])
    display = volumeNode.GetDisplayNode()
    if display is not None and high > low:
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(float(low), float(high))


def _free_paths(folder: Path, names: list[tuple[str, str]]) -> list[Path]:
    """folder/stem+suffix for each (stem, suffix), or all with -2, -3 ... where any is taken:
    saving never replaces a file, and the files of one save share one number."""
    number = 1
    while True:
        tag = "" if number == 1 else f"-{number}"
        paths = [folder / f"{stem}{tag}{suffix}" for stem, suffix in names]
        if not any(os.path.lexists(path) for path in paths):  # a dangling link is taken too
            return paths
        number += 1


# What saving writes, by kind: <case><stem><suffix>. The app's download names come from here too.
OUTPUTS = {"seg": (".lunet", ".seg.nrrd"), "labels": (".lunet-labels", ".nii.gz")}


class WebSession:
    """The state behind one web panel: the current case and what can be done with it."""

    def __init__(self, scene):
        self.scene = scene
        self.case: Case | None = None

    # ------------------------------------------------------------------ loading

    def load(self, path: str | Path, displayName: str | None = None, fromUpload: bool = False,
             maxBytes: int | None = None) -> Case:
        """Read a volume file into the scene as the current case, with an empty segmentation.

        Everything is checked before the first node is added, so a bad file leaves the scene
        and the current case as they were. Earlier cases stay in the scene (nothing is lost).
        An upload must be self-contained (no data file named in its header) and, if maxBytes
        is given, hold at most that many bytes of voxels uncompressed: both from the header,
        before any voxel is read.
        """
        path = Path(path)
        name = case_name(displayName or path.name)
        check_volume_name(displayName or path.name)
        if fromUpload:
            check_self_contained(path)
        image = readImage(path, max_bytes=maxBytes)  # header size, truncation, NaN in NIfTI: before the voxels
        if image.GetDimension() == 4 and image.GetSize()[3] == 1:
            image = image[:, :, :, 0]
        warnings = check_input(image, name)  # the single entry check every caller uses
        volumeNode = mrml.imageToVolumeNode(self.scene, image, name)
        _window_level(volumeNode)
        segmentationNode = mrml.newSegmentationNode(volumeNode, f"{name} segmentation")
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        self.case = Case(
            name=name,
            volumeNode=volumeNode,
            segmentationNode=segmentationNode,
            inputPath=None if fromUpload else path.resolve(),
            voxelVolume=float(np.prod(image.GetSpacing())),
            warnings=warnings,
        )
        return self.case

    def loadUpload(self, name: str, content: bytes, maxBytes: int) -> Case:
        """An uploaded file: checked by name and size, then by its header (self-contained, at
        most maxBytes of voxels uncompressed), read from a private temporary copy."""
        check_upload(name, len(content), maxBytes)
        lowered = name.lower()
        suffix = next(s for s in UPLOAD_SUFFIXES if lowered.endswith(s))
        with tempfile.TemporaryDirectory(prefix="lunet-upload-") as folder:
            path = Path(folder) / f"upload{suffix}"  # never a name or path the client chose
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            with os.fdopen(os.open(path, flags, 0o600), "wb") as handle:
                handle.write(content)
            return self.load(path, displayName=Path(name).name, fromUpload=True, maxBytes=maxBytes)

    # ------------------------------------------------------------------ segmenting

    def _current(self) -> Case:
        if self.case is None:
            raise InputError("No volume is loaded. Open a T1 MRI first.")
        return self.case

    def prepare(self, model: str | None = None, device: str = "auto") -> api.SegmentationJob:
        """Check the case and load the model (main thread); `job.compute()` may then run anywhere."""
        case = self._current()
        # The voxels were checked when the file was opened (load); not again.
        return api.prepareSegmentation(case.volumeNode, case.segmentationNode, model=model, device=device,
                                       checked=case.warnings)

    def finish(self, job: api.SegmentationJob) -> list[SegmentRow]:
        """Write the computed segments into the case's segmentation (main thread)."""
        job.apply()
        return self.segmentRows()

    # ------------------------------------------------------------------ measuring

    def _segmentMasks(self):
        """(segment id, segment, voxel mask on the input's grid) of every segment, one export each."""
        case = self.case
        segmentation = case.segmentationNode.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            yield segmentId, segmentation.GetSegment(segmentId), mrml.segmentArray(
                case.segmentationNode, segmentId, case.volumeNode)

    @staticmethod
    def _labelValue(segment) -> int:
        """The model's label value of one of our segments; 0 for a segment the user added."""
        value = mrml.segment_tag(segment, mrml.TAG_LABEL_VALUE)
        return int(value) if value else 0

    def segmentRows(self) -> list[SegmentRow]:
        """Every segment of the current case with its volume now (after any edits)."""
        if self.case is None:
            return []
        rows = []
        for segmentId, segment, mask in self._segmentMasks():
            color = "#" + "".join(f"{round(c * 255):02x}" for c in segment.GetColor())
            rows.append(SegmentRow(segmentId, segment.GetName(), color, self._labelValue(segment),
                                   int(mask.sum()) * self.case.voxelVolume))
        return rows

    def segmentCentre(self, segmentId: str) -> list[float] | None:
        """RAS centre of a segment's voxels (None if empty), to bring it into the slice views.
        (A segment's own bounds are those of the labelmap layer it shares with the others.)"""
        case = self._current()
        voxels = np.argwhere(mrml.segmentArray(case.segmentationNode, segmentId, case.volumeNode) > 0)
        if not len(voxels):
            return None
        k, j, i = voxels.mean(axis=0)
        return [float(v) for v in (mrml.ijk_to_ras(case.volumeNode) @ [i, j, k, 1.0])[:3]]

    def _requireSegments(self) -> Case:
        case = self._current()
        if not case.segmentationNode.GetSegmentation().GetNumberOfSegments():
            raise InputError("There is nothing to save yet: press Segment (or paint a segment) first.")
        return case

    def labelImage(self) -> sitk.Image:
        """All segments as one label image on the input's grid: the model's label values for
        our segments, the next free values for segments the user added."""
        case = self._requireSegments()
        masks = [(self._labelValue(segment), mask) for _, segment, mask in self._segmentMasks()]
        nextValue = max(value for value, _ in masks) + 1
        labels = np.zeros(masks[0][1].shape, np.uint8)
        for value, mask in masks:
            if not value:
                value, nextValue = nextValue, nextValue + 1
            labels[mask > 0] = value
        return image_from_ijk_to_ras(labels, mrml.ijk_to_ras(case.volumeNode), case.name)

    # ------------------------------------------------------------------ saving

    def saveNextToInput(self) -> tuple[Path, Path]:
        """Write <case>.lunet.seg.nrrd and <case>.lunet-labels.nii.gz beside the input file."""
        case = self._current()
        if case.inputPath is None:
            raise InputError("This volume was uploaded, so there is no folder of yours to save into: use Download.")
        return self.saveTo(case.inputPath.parent)

    def saveTo(self, folder: Path, kinds=tuple(OUTPUTS)) -> tuple[Path, ...]:
        """Write the outputs of these kinds (see OUTPUTS) into folder; the paths, in that order."""
        case = self._requireSegments()  # refuses an empty result before any file is written
        labels = self.labelImage() if "labels" in kinds else None
        paths = _free_paths(folder, [(case.name + OUTPUTS[kind][0], OUTPUTS[kind][1]) for kind in kinds])
        try:
            for kind, path in zip(kinds, paths):
                # Written whole under a temporary name, then moved into place: never through a
                # symbolic link, never over a name that appeared since _free_paths looked.
                if kind == "seg":
                    write_atomic(path, lambda tmp: mrml.writeSegmentationFile(case.segmentationNode, tmp))
                else:
                    write_atomic(path, lambda tmp: writeLabelmap(labels, tmp))
        except OutputExistsError:
            raise
        except OutputError as error:
            raise InputError(f"{error} Or use Download instead.") from error
        except OSError as error:
            raise InputError(f"Could not save into {folder}: {error.strerror or error}. Use Download instead.") from error
        finally:
            # The storage node now points at the saved file; a later save must not write there again.
            storage = case.segmentationNode.GetStorageNode()
            if storage is not None:
                storage.SetFileName("")
        return tuple(paths)

    def downloadBytes(self, kinds=tuple(OUTPUTS)) -> dict[str, bytes]:
        """{file name: content} of the outputs of these kinds, for the browser to download."""
        with tempfile.TemporaryDirectory(prefix="lunet-download-") as folder:
            return {path.name: path.read_bytes() for path in self.saveTo(Path(folder), kinds)}
