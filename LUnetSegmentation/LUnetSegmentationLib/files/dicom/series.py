"""Read one DICOM MR series from a folder (SimpleITK's GDCM), for `segment FOLDER`.

    info = find_series("dicom/", uid=None)   # refuses, with a listing, a folder of several series
    image = read_series(info)                # an sitk.Image on the series' grid

The folder's own files are read (not its subfolders: a PACS export tree holds many series, and
choosing among them is the user's job, with the listing). Slices are ordered by GDCM along
the slice normal; a series whose slices are unevenly spaced or missing, or differ in size or
orientation (a 3-plane localizer), is refused rather than read onto a wrong grid.

Source install only (not in the Slicer extension, which reads DICOM through Slicer's own
DICOM module): files/batch.py imports this module lazily, for folder inputs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ...runtime.preprocess import InputError

# Tags read from each file's header (group|element, as GDCM names them).
SERIES_DESCRIPTION = "0008|103e"
MODALITY = "0008|0060"
SERIES_NUMBER = "0020|0011"
IMAGE_POSITION = "0020|0032"
IMAGE_ORIENTATION = "0020|0037"
ROWS, COLUMNS = "0028|0010", "0028|0011"
# Slice gaps may differ by this fraction before the series counts as unevenly spaced.
SPACING_TOLERANCE = 0.01


@dataclass
class SeriesInfo:
    """One series of a folder: its UID, its files in slice order and what the listing shows."""

    folder: Path
    uid: str
    files: list = field(default_factory=list)
    description: str = ""
    modality: str = ""
    number: str = ""

    def listing(self) -> str:
        return f"{self.uid}  ({self.modality or '?'}, series {self.number or '?'}, \"{self.description}\", {len(self.files)} files)"

    def sha256(self) -> str:
        """One checksum of the series' file contents in slice order: the input of a re-run
        check, as a file's own checksum is for NIfTI inputs."""
        digest = hashlib.sha256()
        for name in self.files:
            with open(name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
        return digest.hexdigest()


def _tags(path: str, keys) -> dict:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.SetImageIO("GDCMImageIO")
    reader.ReadImageInformation()
    return {key: reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else "" for key in keys}


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """Every DICOM image series directly in folder (none: [])."""
    folder = Path(folder)
    series = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        if not files:
            continue
        try:
            tags = _tags(files[0], (SERIES_DESCRIPTION, MODALITY, SERIES_NUMBER))
        except RuntimeError:
            tags = {}
        series.append(SeriesInfo(folder, uid, files, tags.get(SERIES_DESCRIPTION, ""), tags.get(MODALITY, ""),
                                 tags.get(SERIES_NUMBER, "")))
    return series


def find_series(folder: str | Path, uid: str | None = None) -> SeriesInfo:
    """The one series of folder to segment: the only one, or the one with SeriesInstanceUID
    `uid`. Raises InputError saying what the folder holds and what to do."""
    folder = Path(folder)
    series = list_series(folder)
    if not series:
        raise InputError(
            f"{folder} is a folder without DICOM images in it (its subfolders are not searched). Give the folder "
            "that holds one series' files, or an image file (NIfTI, NRRD, MHA, .mgz)."
        )
    listing = "\n  ".join(info.listing() for info in series)
    if uid is not None:
        chosen = [info for info in series if info.uid == uid.strip()]
        if not chosen:
            raise InputError(f"{folder} holds no series with UID {uid}. It holds:\n  {listing}\nGive one of these with --series.")
        info = chosen[0]
    elif len(series) > 1:
        raise InputError(f"{folder} holds {len(series)} DICOM series; choose one with --series UID:\n  {listing}")
    else:
        info = series[0]
    if info.modality and info.modality != "MR":
        raise InputError(f"Series {info.uid} in {folder} is {info.modality}, not MR: the models segment MR scans. "
                         + ("Choose an MR series with --series UID:\n  " + listing if len(series) > 1 else "Give an MR series."))
    return info


def _check_slices(info: SeriesInfo) -> None:
    """Refuse series that do not make one regular grid: sizes or orientations differ between
    files, or the gaps between slice positions are uneven (missing slices)."""
    keys = (IMAGE_POSITION, IMAGE_ORIENTATION, ROWS, COLUMNS)
    headers = [_tags(name, keys) for name in info.files]
    shapes = {(h[ROWS], h[COLUMNS]) for h in headers}
    orientations = {tuple(np.round([float(v) for v in h[IMAGE_ORIENTATION].split("\\")], 4)) for h in headers
                    if h[IMAGE_ORIENTATION]}
    if len(shapes) > 1 or len(orientations) > 1:
        raise InputError(f"Series {info.uid} in {info.folder} mixes images of different sizes or orientations (a "
                         "localizer?); it does not make one volume. Choose the 3D series with --series UID.")
    if len(info.files) < 3 or not orientations or any(not h[IMAGE_POSITION] for h in headers):
        return  # too few slices for a 3D scan, or no positions: the entry checks say so
    row, column = np.array(next(iter(orientations))[:3]), np.array(next(iter(orientations))[3:])
    normal = np.cross(row, column)
    depths = np.array([np.dot(normal, [float(v) for v in h[IMAGE_POSITION].split("\\")]) for h in headers])
    gaps = np.diff(depths)
    typical = float(np.median(np.abs(gaps)))
    if typical <= 0 or np.any(np.abs(np.abs(gaps) - typical) > SPACING_TOLERANCE * typical + 1e-3):
        raise InputError(f"Series {info.uid} in {info.folder} has uneven gaps between its slices ({np.abs(gaps).min():.3g} "
                         f"to {np.abs(gaps).max():.3g} mm): slices are missing or it is not one volume. Export the "
                         "complete series again.")


def read_series(info: SeriesInfo) -> sitk.Image:
    """The series as one image (slice order and geometry from the files' positions)."""
    _check_slices(info)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(info.files)
    try:
        return reader.Execute()
    except RuntimeError as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise InputError(f"Cannot read series {info.uid} in {info.folder}: {lines[-1] if lines else error}. Check that "
                         "the export is complete, or convert it to NIfTI (dcm2niix) and give that file.") from error
