"""Batch: `segmentFiles` and the CLI on real Decathlon crops, with a corrupt file in the list,
a FreeSurfer .mgz copy, outputs Slicer can open, the summary CSV, and no silent overwrite."""
from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from lunet_test_helpers import PARTS_MODEL, dice

pytest.importorskip("slicer")
pytest.importorskip("torch")

from LUnetSegmentationLib.apps import cli  # noqa: E402
from LUnetSegmentationLib.slicer_adapter import mrml  # noqa: E402
from LUnetSegmentationLib import segmentFiles  # noqa: E402
from LUnetSegmentationLib.files import volumeio  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402

CASES = ["hippocampus_001", "hippocampus_011"]


def _to_mgz(image: sitk.Image, path) -> None:
    """Write a FreeSurfer .mgz of the image (nibabel; its affine is voxel -> RAS)."""
    import nibabel

    direction = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ direction
    affine[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(image.GetOrigin())
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float32)
    nibabel.save(nibabel.MGHImage(data, affine), str(path))


@pytest.fixture
def batch_inputs(hippocampus_dir, tmp_path):
    inputs = [hippocampus_dir / "imagesTr" / f"{case}.nii.gz" for case in CASES]
    corrupt = tmp_path / "in" / "broken_scan.nii.gz"
    corrupt.parent.mkdir()
    corrupt.write_bytes(gzip.compress(inputs[0].read_bytes()[:5000])[:3000])  # truncated garbage
    mgz = tmp_path / "in" / "as_freesurfer.mgz"
    _to_mgz(sitk.ReadImage(str(inputs[1])), mgz)
    return [inputs[0], corrupt, inputs[1], mgz]


def _read_seg(path):
    """Load a .seg.nrrd the way Slicer does (segmentation storage node) into a fresh scene."""
    import slicer

    headless = mrml.createHeadlessScene()
    node = headless.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    storage = node.CreateDefaultStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer cannot read {path}"
    del slicer
    return headless, node


@pytest.mark.slow
def test_batch_isolates_a_corrupt_file_and_writes_everything(batch_inputs, tmp_path, hippocampus_dir):
    out = tmp_path / "out"
    rows = segmentFiles(batch_inputs, out, device="cpu", labelmap=True, model=PARTS_MODEL)
    status = {row["case"]: row["status"] for row in rows}
    assert status == {"hippocampus_001": "ok", "broken_scan": "error", "hippocampus_011": "ok", "as_freesurfer": "ok"}
    broken = next(row for row in rows if row["case"] == "broken_scan")
    assert "broken_scan.nii.gz" in broken["error"]
    assert not (out / "broken_scan.seg.nrrd").exists()

    with open(out / "summary.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["case"] for r in table] == ["hippocampus_001", "broken_scan", "hippocampus_011", "as_freesurfer"]
    assert {"Hippocampus anterior mm3", "Hippocampus posterior mm3", "seconds", "device", "error"} <= set(table[0])
    assert table[1]["status"] == "error" and table[1]["error"]
    assert float(table[0]["Hippocampus anterior mm3"]) > 500 and table[0]["device"] == "cpu"

    for case in CASES:
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(hippocampus_dir / "labelsTr" / f"{case}.nii.gz"))).astype(int)
        # the labelmap: model values on the input grid
        labels = sitk.ReadImage(str(out / f"{case}.nii.gz"))
        source = sitk.ReadImage(str(hippocampus_dir / "imagesTr" / f"{case}.nii.gz"))
        assert labels.GetSize() == source.GetSize()
        assert np.allclose(labels.GetOrigin(), source.GetOrigin()) and np.allclose(labels.GetDirection(), source.GetDirection())
        array = sitk.GetArrayFromImage(labels)
        assert dice(array == 1, truth == 1) > 0.8 and dice(array == 2, truth == 2) > 0.8
        # the .seg.nrrd opens as a segmentation with named, coded segments and provenance
        headless, node = _read_seg(out / f"{case}.seg.nrrd")
        segmentation = node.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        assert names == ["Hippocampus anterior", "Hippocampus posterior"]
        assert "5366008" in segmentation.GetNthSegment(0).GetTerminology()
        volume = mrml.imageToVolumeNode(headless.scene, source, case)
        for index, value in ((0, 1), (1, 2)):
            mask = mrml.segmentArray(node, segmentation.GetNthSegmentID(index), volume)
            assert np.array_equal(mask, (array == value).astype(np.uint8))

    # the .mgz copy of case 011 gives the same labels as the NIfTI
    mgz_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "as_freesurfer.nii.gz")))
    nii_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "hippocampus_011.nii.gz")))
    assert (mgz_labels == nii_labels).mean() > 0.999

    # never overwrite: a second run into the same folder is refused and leaves files as they were
    stamp = (out / "hippocampus_001.seg.nrrd").stat().st_mtime_ns
    with pytest.raises(InputError, match="Refusing to overwrite"):
        segmentFiles(batch_inputs[:1], out, device="cpu")
    assert (out / "hippocampus_001.seg.nrrd").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_cli_exits_non_zero_when_a_case_fails(hippocampus_dir, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.nrrd"
    corrupt.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n" + "x" * 17)
    good = hippocampus_dir / "imagesTr" / f"{CASES[0]}.nii.gz"
    out = tmp_path / "out"
    code = cli.main(["segment", str(good), str(corrupt), "--out", str(out), "--device", "cpu", "--quiet", "--model", PARTS_MODEL])
    assert code == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err and "corrupt.nrrd" in captured.err
    assert (out / f"{CASES[0]}.seg.nrrd").is_file() and (out / "summary.csv").is_file()
    # all good: exit 0
    code = cli.main(["segment", str(good), "--out", str(tmp_path / "out2"), "--device", "cpu", "--quiet", "--model", PARTS_MODEL])
    assert code == 0


def test_duplicate_case_names_are_refused_before_any_work(hippocampus_dir, tmp_path):
    good = hippocampus_dir / "imagesTr" / f"{CASES[0]}.nii.gz"
    other = tmp_path / f"{CASES[0]}.nrrd"
    other.write_bytes(b"")
    with pytest.raises(InputError, match="Two inputs would both write"):
        segmentFiles([good, other], tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_reading_mgz_matches_the_nifti_copy(wholebrain_dir):
    folder = wholebrain_dir / "fs_norm"
    mgz, nii = folder / "norm.mgz", folder / "norm.nii.gz"  # the README: a lossless NIfTI copy
    if not mgz.is_file() or not nii.is_file():
        pytest.skip(f"no norm.mgz / norm.nii.gz pair in {folder}")
    a, b = volumeio.readImage(mgz), volumeio.readImage(nii)
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    assert np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)
    assert np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-2)
    assert np.array_equal(sitk.GetArrayViewFromImage(a).astype(float), sitk.GetArrayViewFromImage(b).astype(float))


def test_case_names():
    assert volumeio.case_name("/x/sub-01_T1w.nii.gz") == "sub-01_T1w"
    assert volumeio.case_name("norm.mgz") == "norm"
    assert volumeio.case_name("a.b.nrrd") == "a.b"


def test_batch_runs_without_mrml_or_torch(hippocampus_dir, tmp_path):
    """The command line's path loads neither slicer-core (no scene, no second application logic
    inside Slicer) nor, when ONNX Runtime is installed, torch: each costs about a CPU-second
    or more per process (issue 11's budget)."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("onnxruntime")
    image = hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"
    code = (
        "import sys; from LUnetSegmentationLib.files.batch import segment_files; "
        f"rows = segment_files([{str(image)!r}], {str(tmp_path / 'out')!r}, device='cpu'); "
        "print(rows[0]['status'], 'slicer' in sys.modules, 'torch' in sys.modules, 'vtk' in sys.modules)"
    )
    library = Path(__file__).resolve().parents[1] / "LUnetSegmentation"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(library), "PATH": ""})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", "False", "False", "False"]
