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
    from LUnetSegmentationLib.evaluate import evaluate

    with pytest.raises(ValueError, match="hippocampus_999"):
        evaluate(small_dataset, case_ids=["hippocampus_999"], printer=None)
