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


# ----------------------------------------------------------------- evaluate-wholehead: volume agreement

def _row(case, pathology, left, right, variant="1mm", source="synthetic", contrast="t1", before=None):
    """A scored evaluate-wholehead row: (ours, reference) mm3 per side."""
    row = {"case": case if pathology == "none" else f"{case} {pathology}", "base": case, "variant": variant,
           "source": source, "contrast": contrast, "pathology": pathology, "warnings": [], "notes": []}
    for side, (ours, reference) in (("left", left), ("right", right)):
        row[side] = {"dice": 0.8, "volume_mm3": float(ours), "reference_mm3": float(reference)}
    if before:
        row["truth_before_pathology_mm3"] = before
    return row


def test_wholehead_agreement_leaves_resected_sides_out_and_reports_them_apart():
    from LUnetSegmentationLib.training.evaluate_wholehead import agreement_summary, group_of, resection_summary

    rows = [
        _row("norm", "none", (3600, 3800), (3700, 3900), source="real", contrast=None),
        _row("seg_17 t1", "none", (4400, 4300), (4800, 4600)),
        _row("seg_18 t1", "none", (2800, 1900), (2900, 2100)),
        _row("seg_18 t1", "atrophy", (1650, 600), (2000, 1150), before={"left": 1900, "right": 2100}),
        _row("seg_18 t1", "resection", (5300, 0), (2929, 2100), before={"left": 1900, "right": 2100}),
        {"case": "seg_19 t1 resection", "base": "seg_19 t1", "variant": "1mm", "source": "synthetic", "contrast": "t1",
         "pathology": "resection", "error": "No hippocampus was found"},
    ]
    agreement = agreement_summary(rows, ["1mm"])
    assert agreement["all"]["n"] == 9  # 4 heads x 2 sides + the intact side of the resected one
    assert agreement["left_out_resected_sides"] == 1 and agreement["refused_cases"] == 1
    assert agreement["by_variant"]["1mm"] == agreement["all"]
    assert agreement["healthy"]["n"] == 6  # the three heads without pathology
    assert agreement["by_group"]["atrophied"]["n"] == 2 and agreement["by_group"]["real"]["n"] == 2
    assert agreement["by_group"]["resected (other side)"]["n"] == 1
    assert [group_of(r) for r in rows[:3]] == ["real", "synthetic t1", "synthetic t1"]

    resection = resection_summary(rows)
    first, refused = resection["cases"]
    assert first["resected_side"] == "left" and first["fraction_of_truth_before"] == round(5300 / 1900, 3)
    assert first["other_side_change"] == round(2929 / 2900 - 1, 4)
    assert first["fraction_of_other_side_truth"] == round(5300 / 2100, 3)
    assert refused["refused"] and "No hippocampus" in refused["error"]
    assert not first["flagged"]  # no warning about the left side
    assert resection["refused"] == 1 and resection["under_25_percent"] == 0


def test_wholehead_resection_is_flagged_only_by_a_warning_about_that_side():
    from LUnetSegmentationLib.training.evaluate_wholehead import resection_summary

    intact = _row("h", "none", (3000, 3100), (3400, 3300))
    resected = _row("h", "resection", (0, 0), (3400, 3300), before={"left": 3100, "right": 3300})
    resected["warnings"] = ["No left hippocampus was found: the region looks like fluid."]
    resected["notes"] = ["The fast localization failed its checks; the thorough registration found the hippocampi."]
    other = _row("h", "resection", (2500, 0), (3400, 3300), before={"left": 3100, "right": 3300})
    other["warnings"] = ["The right hippocampus was not segmented."]
    first, second = resection_summary([intact, resected, other])["cases"]
    assert first["flagged"] and first["fraction_of_truth_before"] == 0
    assert not second["flagged"] and second["warnings"] == other["warnings"]


def test_wholehead_refused_side_is_no_volume_but_an_honest_resection_result():
    """A side the pipeline declined (details["failed_sides"]) has no volume: out of the agreement and
    counted apart, like a refused case; on a resected side it is the honest answer (flagged, 0 %)."""
    from LUnetSegmentationLib.training.evaluate_wholehead import agreement_summary, resection_summary

    healthy = [_row("h", "none", (3000, 3100), (3400, 3300)), _row("i", "none", (4000, 4100), (3900, 4000)),
               _row("j", "none", (2500, 2600), (2700, 2800))]
    declined = _row("k", "none", (0, 3000), (3300, 3200))
    declined["left"]["refused"] = "no left hippocampus was found with confidence"
    resected = _row("h", "resection", (0, 0), (3420, 3300), before={"left": 3100, "right": 3300})
    resected["left"]["refused"] = "no left hippocampus was found with confidence"
    agreement = agreement_summary([*healthy, declined, resected], ["1mm"])
    assert agreement["all"]["n"] == 8 and agreement["refused_sides"] == 1
    assert agreement["healthy"]["n"] == 7  # k's right side only
    line = resection_summary([*healthy, resected])["cases"][0]
    assert line["side_refused"] and line["flagged"] and line["fraction_of_truth_before"] == 0
    assert line["other_side_change"] == round(3420 / 3400 - 1, 4)


def test_wholehead_agreement_pools_every_variant_and_splits_them():
    from LUnetSegmentationLib.training.evaluate_wholehead import agreement_summary

    rows = [_row("a", "none", (3000, 3000), (3500, 3500)), _row("b", "none", (4000, 4000), (4200, 4200)),
            _row("a", "none", (2000, 3000), (2500, 3500), variant="3mm"), _row("b", "none", (3000, 4000), (3200, 4200), variant="3mm")]
    agreement = agreement_summary(rows, ["1mm", "3mm"])
    assert agreement["all"]["n"] == 8
    assert agreement["by_variant"]["1mm"]["icc_a1"] == 1.0 and agreement["by_variant"]["1mm"]["bias"] == 0
    assert agreement["by_variant"]["3mm"]["bias"] == -1000 and agreement["by_variant"]["3mm"]["slope"] == 1.0


@pytest.mark.parametrize("option, value, message", [
    ("--bland-altman", "plot.svg", "ending in .png"),
    ("--bland-altman", "missing/plot.png", "does not exist"),
    ("--out", "missing/results.json", "does not exist"),
])
def test_wholehead_outputs_are_checked_before_the_long_run(tmp_path, option, value, message, capsys):
    from LUnetSegmentationLib.apps.cli import main

    code = main(["evaluate-wholehead", "--synthetic", str(tmp_path), option, str(tmp_path / value)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_wholehead_unknown_pathology_is_refused_by_the_parser(tmp_path, capsys):
    from LUnetSegmentationLib.apps.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate-wholehead", "--synthetic", str(tmp_path), "--pathologies", "stroke"])
    assert "invalid choice: 'stroke'" in capsys.readouterr().err


def test_wholehead_empty_synthetic_folder_says_so(tmp_path, capsys):
    from LUnetSegmentationLib.apps.cli import main

    assert main(["evaluate-wholehead", "--synthetic", str(tmp_path), "--subjects", "training_seg_99"]) == 2
    assert "No label maps (*.nii.gz) matching --subjects" in capsys.readouterr().err


@pytest.mark.slow
def test_wholehead_command_writes_agreement_resection_and_plot(tmp_path):
    """The command on one held-out synthetic head, healthy and resected: the JSON has the
    agreement (without the resected side), the resection line and the command; the PNG exists."""
    from conftest import DATA

    maps = DATA / "synthseg_label_maps"
    if not (maps / "training_seg_18.nii.gz").is_file():
        pytest.skip(f"no SynthSeg label maps in {maps}")
    out, plot = tmp_path / "agreement.json", tmp_path / "agreement.png"
    run = subprocess.run(
        [sys.executable, "-m", "LUnetSegmentationLib", "evaluate-wholehead", "--synthetic", str(maps), "--subjects",
         "training_seg_18", "--contrasts", "t1", "--pathologies", "none", "resection", "--passes", "1", "--out", str(out),
         "--bland-altman", str(plot)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "volume agreement" in run.stdout and "resection (1 cases" in run.stdout
    result = json.loads(out.read_text())
    assert result["agreement"]["all"]["n"] == 3 and result["agreement"]["left_out_resected_sides"] == 1
    assert result["resection"]["cases"][0]["truth_before_mm3"] == 1894.0
    assert "--pathologies none resection" in result["command"]
    assert "commit" in result["code"] and result["model_version"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
