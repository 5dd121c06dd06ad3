"""DICOM in and DICOM SEG out (issue 25 item 4): a folder holding one MR series is segmented
like the NIfTI it was made from; several series are refused with a listing and --series picks
one; a single .dcm gets told to give the folder; --dicom-seg writes a SEG that highdicom and
pydicom read back with the NIfTI run's labels on the source slices, that dciodvfy (Debian's
dicom3tools) validates, and that a re-run reuses."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from lunet_test_helpers import PARTS_MODEL, dice  # noqa: E402
from LUnetSegmentationLib.apps import cli  # noqa: E402
from LUnetSegmentationLib.files import batch  # noqa: E402
from LUnetSegmentationLib.files.dicom import series as dicom_series  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_mr_series(image: sitk.Image, folder: Path, description: str = "T1 MPRAGE", study_uid: str | None = None,
                    series_number: int = 3) -> str:
    """Write an int16 sitk image as a DICOM MR series (one file per slice, pydicom); its UID.
    ITK's physical space is DICOM's patient space (LPS), so positions and orientation carry over."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image).astype(np.int16)
    direction = np.reshape(image.GetDirection(), (3, 3))
    spacing = image.GetSpacing()
    series_uid, study_uid, frame_uid = generate_uid(), study_uid or generate_uid(), generate_uid()
    for k in range(array.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "LUNET-TEST", "19700101", "O"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20260101", "120000", "1"
        ds.AccessionNumber, ds.ReferringPhysicianName = "A1", ""
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription, ds.Modality = series_uid, series_number, description, "MR"
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
        ds.Manufacturer = "LUnet test"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "3D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "2300", "2.98", "1"
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
        ds.PixelData = np.ascontiguousarray(array[k]).tobytes()
        ds.save_as(folder / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return series_uid


def _as_int16(image: sitk.Image) -> sitk.Image:
    """The scan with its intensities on an int16 scale (DICOM's pixels): the NIfTI and the
    series then hold the very same voxels."""
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    scaled = np.round((array - array.min()) / max(np.ptp(array), 1e-9) * 4000).astype(np.int16)
    out = sitk.GetImageFromArray(scaled)
    out.CopyInformation(image)
    return out


@pytest.fixture
def crop_series(hippocampus_dir, tmp_path):
    """A Decathlon crop as a NIfTI and as a DICOM MR series with the same voxels and geometry."""
    image = _as_int16(sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz")))
    nifti = tmp_path / "nifti" / "crop.nii.gz"
    nifti.parent.mkdir()
    sitk.WriteImage(image, str(nifti))
    folder = tmp_path / "dicom" / "crop"
    uid = write_mr_series(image, folder)
    return image, nifti, folder, uid


def _validate(path: Path) -> None:
    """dciodvfy (dicom3tools) on a file: no 'Error' lines. CI installs it (scripts/test.sh)."""
    if shutil.which("dciodvfy") is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy is not installed: scripts/test.sh installs Debian's dicom3tools")
        pytest.skip("dciodvfy (Debian's dicom3tools) is not installed here")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    report = done.stdout + done.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, report


def test_a_series_reads_as_the_image_it_was_made_from(crop_series):
    image, _, folder, uid = crop_series
    info = dicom_series.find_series(folder)
    assert info.uid == uid and info.modality == "MR" and len(info.files) == image.GetSize()[2]
    read = dicom_series.read_series(info)
    assert np.array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))
    assert np.allclose(read.GetOrigin(), image.GetOrigin(), atol=1e-4)
    assert np.allclose(read.GetSpacing(), image.GetSpacing(), atol=1e-4)
    assert np.allclose(read.GetDirection(), image.GetDirection(), atol=1e-5)


def test_several_series_are_listed_and_one_is_chosen(crop_series, tmp_path):
    image, _, folder, uid = crop_series
    other = write_mr_series(image, tmp_path / "other", description="T2 FLAIR", series_number=7)
    for name in os.listdir(tmp_path / "other"):
        shutil.copy(tmp_path / "other" / name, folder / f"flair_{name}")
    with pytest.raises(InputError, match="holds 2 DICOM series; choose one with --series UID") as refused:
        dicom_series.find_series(folder)
    for shown in (uid, other, '"T1 MPRAGE"', '"T2 FLAIR"', f"{image.GetSize()[2]} files"):
        assert shown in str(refused.value)
    assert dicom_series.find_series(folder, other).description == "T2 FLAIR"
    with pytest.raises(InputError, match="holds no series with UID 1.2.3"):
        dicom_series.find_series(folder, "1.2.3")


def test_a_missing_slice_is_refused(crop_series):
    _, _, folder, _ = crop_series
    files = sorted(folder.iterdir())
    files[len(files) // 2].unlink()
    with pytest.raises(InputError, match="uneven gaps between its slices"):
        dicom_series.read_series(dicom_series.find_series(folder))


def test_a_single_dicom_file_is_told_to_give_its_folder(crop_series, tmp_path, capsys):
    _, _, folder, _ = crop_series
    one = sorted(folder.iterdir())[0]
    assert cli.main(["segment", str(one), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet",
                     "--model", PARTS_MODEL]) == 1
    err = capsys.readouterr().err
    assert "is a single DICOM file" in err and f"give the folder that holds the whole series (here {folder})" in err


def test_a_folder_without_dicom_and_dicom_seg_without_dicom_are_refused(crop_series, tmp_path, capsys):
    _, nifti, _, _ = crop_series
    assert cli.main(["segment", str(nifti.parent), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert "without DICOM images in it" in capsys.readouterr().err
    assert cli.main(["segment", str(nifti), "--dicom-seg", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert "--dicom-seg needs DICOM series as input" in capsys.readouterr().err


def _segment_both(nifti: Path, folder: Path, out: Path, model: str | None, min_dice: float = 1.0):
    """The NIfTI and the series segmented by the CLI, their labels compared in physical space
    (a series is stored in DICOM's slice order, which may reverse the NIfTI's): every label's
    Dice at least min_dice. Returns the DICOM run's labels (on the series' grid), the SEG, and
    the segments (label value, name) as the NIfTI run's .seg.nrrd lists them."""
    chosen = ["--model", model] if model else []
    assert cli.main(["segment", str(nifti), "--out", str(out / "nifti"), "--device", "cpu", "--quiet", *chosen,
                     "--labelmap"]) == 0
    assert cli.main(["segment", str(folder), "--out", str(out / "dicom"), "--device", "cpu", "--quiet", *chosen,
                     "--labelmap", "--dicom-seg"]) == 0
    case = nifti.name[: -len(".nii.gz")]
    reference = sitk.ReadImage(str(out / "nifti" / f"{case}.nii.gz"))
    from_dicom = sitk.ReadImage(str(out / "dicom" / f"{folder.name}.nii.gz"))
    on_reference = sitk.GetArrayFromImage(sitk.Resample(from_dicom, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    expected = sitk.GetArrayFromImage(reference)
    fields = batch._header_fields(out / "nifti" / f"{case}.seg.nrrd")
    specs, index = [], 0
    while f"Segment{index}_Name" in fields:
        specs.append((int(fields[f"Segment{index}_LabelValue"]), fields[f"Segment{index}_Name"]))
        index += 1
    for value, name in specs:
        assert dice(on_reference == value, expected == value) >= min_dice, name
    return sitk.GetArrayFromImage(from_dicom), out / "dicom" / f"{folder.name}.seg.dcm", specs


def _check_seg(seg_path: Path, folder: Path, labels: np.ndarray, specs: list[tuple[int, str]]) -> None:
    """The SEG, read by highdicom and pydicom: its segments (names, codes), the source series it
    references, each frame's position and the labels on every source slice."""
    sources = [pydicom.dcmread(path) for path in dicom_series.find_series(folder).files]
    raw = pydicom.dcmread(seg_path)
    assert raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and raw.SegmentationType == "BINARY"
    assert raw.StudyInstanceUID == sources[0].StudyInstanceUID and raw.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in raw.SegmentSequence] == [(i + 1, name) for i, (_, name) in enumerate(specs)]
    for segment in raw.SegmentSequence:
        kind = segment.SegmentedPropertyTypeCodeSequence[0]
        assert (kind.CodingSchemeDesignator, kind.CodeValue) == ("SCT", "5366008")  # Hippocampus, as in Slicer
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
        side = segment.SegmentLabel.split()[0].lower()
        if side in ("left", "right"):
            modifier = kind.SegmentedPropertyTypeModifierCodeSequence[0]
            assert modifier.CodeValue == {"left": "7771000", "right": "24028007"}[side]
    position_of = {s.SOPInstanceUID: [float(v) for v in s.ImagePositionPatient] for s in sources}
    for frame in raw.PerFrameFunctionalGroupsSequence:
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, position_of[source_uid], atol=1e-3)
    seg = hd.seg.segread(str(seg_path))
    pixels = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], combine_segments=True,
                                               assert_missing_frames_are_empty=True)
    expected = np.zeros(labels.shape, np.uint8)
    for number, (value, _) in enumerate(specs, start=1):
        expected[labels == value] = number
    assert expected.any() and np.array_equal(pixels, expected)
    _validate(seg_path)


def test_a_series_is_segmented_into_a_dicom_seg(crop_series, tmp_path):
    _, nifti, folder, _ = crop_series
    labels, seg_path, specs = _segment_both(nifti, folder, tmp_path / "out", PARTS_MODEL)
    assert [name for _, name in specs] == ["Hippocampus anterior", "Hippocampus posterior"]
    _check_seg(seg_path, folder, labels, specs)
    stamp = seg_path.stat().st_mtime_ns
    rows = batch.segment_files([folder], tmp_path / "out" / "dicom", device="cpu", model=PARTS_MODEL, labelmap=True,
                               dicomSeg=True)
    assert "reused" in rows[0]["notes"] and seg_path.stat().st_mtime_ns == stamp
    with open(tmp_path / "out" / "dicom" / "summary.csv", encoding="utf-8") as handle:
        assert [row["case"] for row in csv.DictReader(handle)] == [folder.name]


@pytest.mark.slow
def test_a_whole_head_series_gives_left_and_right_segments(wholebrain_dir, tmp_path):
    """FreeSurfer's norm.mgz (256 slices) as a DICOM series, through the whole-head path."""
    source = wholebrain_dir / "fs_norm" / "norm.nii.gz"
    if not source.is_file():
        pytest.skip(f"{source} is not there")
    image = _as_int16(sitk.ReadImage(str(source)))
    nifti = tmp_path / "nifti" / "norm.nii.gz"
    nifti.parent.mkdir()
    sitk.WriteImage(image, str(nifti))
    folder = tmp_path / "dicom" / "norm"
    write_mr_series(image, folder)
    # The whole-head path on the same head stored in reverse slice order agrees to Dice ~0.945
    # (the pipeline is not invariant to the voxel storage order); the SEG must match its own run exactly.
    labels, seg_path, specs = _segment_both(nifti, folder, tmp_path / "out", None, min_dice=0.9)
    sides = {name.split()[0] for _, name in specs}
    assert {"Left", "Right"} <= sides, specs
    _check_seg(seg_path, folder, labels, specs)
