"""The evaluate command, exactly as acceptance runs it, on real cases without dataset.json."""
import json
import shutil
import subprocess
import sys

import pytest

CASES = ["hippocampus_001", "hippocampus_017"]


@pytest.fixture
def small_dataset(hippocampus_dir, tmp_path):
    for sub in ("imagesTr", "labelsTr"):
        (tmp_path / sub).mkdir()
        for case in CASES:
            shutil.copy(hippocampus_dir / sub / f"{case}.nii.gz", tmp_path / sub / f"{case}.nii.gz")
    return tmp_path


def test_evaluate_command_writes_dice_and_hd95(small_dataset, tmp_path):
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "LUnetSegmentationLib", "evaluate", "--data", str(small_dataset), "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "mean Dice" in run.stdout
    result = json.loads(out.read_text())
    assert set(result["per_label"]) == {"Hippocampus anterior", "Hippocampus posterior"}
    assert [row["case"] for row in result["per_case"]] == CASES
    assert result["mean_dice"] > 0.8
    for values in result["per_label"].values():
        assert 0 <= values["hd95"] < 5  # mm


def test_evaluate_unknown_case_is_an_error(small_dataset):
    from LUnetSegmentationLib.training.evaluate import evaluate

    with pytest.raises(ValueError, match="hippocampus_999"):
        evaluate(small_dataset, case_ids=["hippocampus_999"], printer=None)


def test_undefined_hd95_is_null_in_strict_json(hippocampus_dir, tmp_path):
    """A reference without the posterior label: HD95 is undefined there, written as null (not
    Infinity, which strict JSON parsers reject) and counted, not silently dropped."""
    import numpy as np
    import SimpleITK as sitk

    from LUnetSegmentationLib.training.evaluate import evaluate

    for sub in ("imagesTr", "labelsTr"):
        (tmp_path / sub).mkdir()
    shutil.copy(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz", tmp_path / "imagesTr" / "case.nii.gz")
    label = sitk.ReadImage(str(hippocampus_dir / "labelsTr" / "hippocampus_001.nii.gz"))
    array = sitk.GetArrayFromImage(label)
    array[array == 2] = 0
    stripped = sitk.GetImageFromArray(array)
    stripped.CopyInformation(label)
    sitk.WriteImage(stripped, str(tmp_path / "labelsTr" / "case.nii.gz"))
    out = tmp_path / "results.json"
    evaluate(tmp_path, device="cpu", out=out, printer=None)

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    result = json.loads(out.read_text(), parse_constant=refuse)
    posterior = result["per_label"]["Hippocampus posterior"]
    assert posterior["hd95"] is None and posterior["hd95_undefined_cases"] == 1
    assert result["per_case"][0]["Hippocampus posterior"]["hd95"] is None
    assert result["per_label"]["Hippocampus anterior"]["hd95"] < 5
