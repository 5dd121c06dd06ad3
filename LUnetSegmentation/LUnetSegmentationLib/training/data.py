"""Decathlon-format datasets: find, verify, download, read and preprocess cases.

Layout expected (Medical Segmentation Decathlon):
    DIR/imagesTr/<case>.nii.gz   (or <case>_0000.nii.gz as nnU-Net writes them)
    DIR/labelsTr/<case>.nii.gz
    DIR/dataset.json             (optional: when missing, images and labels are paired by name)
`DIR` may also be the release archive `Task04_Hippocampus.tar`, which is unpacked next to it.

Quirks handled (see the data README): macOS resource-fork files ("._*") inside the release
archive are skipped; images come as float32 or uint8; some label files are float32 holding
integers (cast, after checking they are integers); intensities span 100 to 1.7e6 (each volume
is normalised on its own, in `preprocess`).
"""
from __future__ import annotations

import json
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..runtime.preprocess import InputError, PreprocessingConfig, normalize_intensity
from ..runtime.resample import to_model_grid

HIPPOCAMPUS_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar"
KNOWN_MD5 = {"Task04_Hippocampus.tar": "9d24dba78a72977dbd1d2e110310f31b"}
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")

LAYOUT_HELP = (
    "Expected a Decathlon-format folder: DIR/imagesTr/<case>.nii.gz with a label of the same "
    "name in DIR/labelsTr/ (dataset.json optional), or the release .tar archive."
)


class DatasetError(FileNotFoundError):
    """The dataset folder or archive does not match the Decathlon layout."""


@dataclass(frozen=True)
class Case:
    case_id: str
    image: Path
    label: Path | None


def md5sum(path: Path) -> str:
    from ..runtime.weights import file_hexdigest

    return file_hexdigest(path, "md5")


def _strip_suffix(name: str) -> str | None:
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")  # "._case.nii.gz" are macOS metadata, not images


def extract_archive(archive: Path, destination: Path | None = None) -> Path:
    """Verify the archive's MD5 (when known) and unpack it; returns the dataset folder."""
    archive = Path(archive)
    expected = KNOWN_MD5.get(archive.name)
    if expected:
        actual = md5sum(archive)
        if actual != expected:
            raise DatasetError(
                f"{archive} has MD5 {actual}, expected {expected}: the download is corrupt or "
                "incomplete. Delete it and download again."
            )
    destination = Path(destination or archive.parent)
    folder = destination / archive.name.split(".")[0]
    if not (folder / "imagesTr").is_dir():
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if not Path(m.name).name.startswith("._")]
            tar.extractall(destination, members=members, filter="data")
    if not (folder / "imagesTr").is_dir():
        raise DatasetError(f"{archive} did not contain {folder.name}/imagesTr. {LAYOUT_HELP}")
    return folder


def download_hippocampus(destination: Path, url: str = HIPPOCAMPUS_URL) -> Path:
    """Download the Decathlon hippocampus release (27 MB) with checksum; needs a network."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / "Task04_Hippocampus.tar"
    if not archive.exists() or md5sum(archive) != KNOWN_MD5[archive.name]:
        partial = archive.with_suffix(".tar.part")
        urllib.request.urlretrieve(url, partial)
        partial.replace(archive)
    return extract_archive(archive, destination)


def resolve_dataset(path: Path | str) -> Path:
    path = Path(path)
    if path.is_file() and path.name.endswith(".tar"):
        return extract_archive(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist. {LAYOUT_HELP}")
    if not (path / "imagesTr").is_dir():
        raise DatasetError(f"{path} has no imagesTr/ folder. {LAYOUT_HELP}")
    return path


def find_cases(data_dir: Path | str, require_labels: bool = True) -> list[Case]:
    """All cases of a Decathlon folder, sorted by id."""
    root = resolve_dataset(data_dir)
    labels_dir = root / "labelsTr"
    cases: dict[str, Case] = {}
    manifest = root / "dataset.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text()).get("training", [])
        for entry in entries:
            image, label = root / entry["image"], root / entry["label"]
            case_id = _strip_suffix(image.name)
            if image.exists() or label.exists():
                cases[case_id] = Case(case_id, image, label)
    if not cases:  # no or empty dataset.json: pair by file name
        for image in sorted((root / "imagesTr").iterdir()):
            stem = _strip_suffix(image.name)
            if stem is None or not _visible(image):
                continue
            case_id = stem[:-5] if stem.endswith("_0000") else stem
            label = next((labels_dir / (case_id + s) for s in IMAGE_SUFFIXES if (labels_dir / (case_id + s)).exists()), None)
            cases[case_id] = Case(case_id, image, label)
    problems = []
    for case in cases.values():
        if not case.image.exists():
            problems.append(f"{case.case_id}: image {case.image} missing")
        if require_labels and (case.label is None or not case.label.exists()):
            problems.append(f"{case.case_id}: label missing in {labels_dir}")
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in {root}: " + "; ".join(problems[:5]) + f". {LAYOUT_HELP}")
    if not cases:
        raise DatasetError(f"No images found in {root / 'imagesTr'}. {LAYOUT_HELP}")
    return [cases[k] for k in sorted(cases)]


def read_label(path: Path) -> sitk.Image:
    label = sitk.ReadImage(str(path))
    values = sitk.GetArrayViewFromImage(label)
    if not np.array_equal(values, np.round(values)):
        raise DatasetError(f"{path} holds non-integer label values; expected 0, 1, 2, ...")
    return sitk.Cast(label, sitk.sitkUInt8)


def load_case(case: Case, config: PreprocessingConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Image (normalised float32, z/y/x on the model grid) and label (uint8, same grid)."""
    image = sitk.ReadImage(str(case.image))
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{case.image} is not a 3D scalar image")
    on_grid = to_model_grid(image, config)
    array = normalize_intensity(sitk.GetArrayFromImage(on_grid), config)
    if case.label is None:
        return array, None
    label = read_label(case.label)
    if label.GetSize() != image.GetSize():
        raise DatasetError(f"{case.case_id}: label size {label.GetSize()} differs from image size {image.GetSize()}")
    label.CopyInformation(image)
    label_on_grid = sitk.Resample(label, on_grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return array, sitk.GetArrayFromImage(label_on_grid)


def build_cache(data_dir: Path | str, cache_path: Path | str, config: PreprocessingConfig, cases=None) -> Path:
    """Preprocess every case once and store them in one .npz (numpy only to read back)."""
    cases = cases or find_cases(data_dir)
    arrays = {}
    for case in cases:
        image, label = load_case(case, config)
        arrays[f"image/{case.case_id}"] = image.astype(np.float16)  # z-scored: float16 is plenty
        arrays[f"label/{case.case_id}"] = label
    arrays["preprocessing"] = np.frombuffer(json.dumps(config.to_dict()).encode(), dtype=np.uint8)
    cache_path = Path(cache_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache_path, **arrays)
    return cache_path
