"""Batch re-runs and interruptions (issue 17 items 2, 6): a re-run skips complete outputs of the
same input and model, redoes damaged ones of ours, refuses files that are not ours, and Ctrl-C
leaves complete files only, a summary of what was done, and a command that finishes the rest."""
from __future__ import annotations

import csv

import pytest

from lunet_test_helpers import PARTS_MODEL, copied_cases
from LUnetSegmentationLib.files import batch
from LUnetSegmentationLib.apps import cli
from LUnetSegmentationLib.runtime.preprocess import InputError

CASES = ["hippocampus_001", "hippocampus_011", "hippocampus_037"]


@pytest.fixture
def inputs(hippocampus_dir, tmp_path):
    return copied_cases(hippocampus_dir, tmp_path / "in", CASES)


def _summary(out):
    with open(out / "summary.csv") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def test_rerun_skips_complete_outputs_and_redoes_damaged_ones(inputs, tmp_path):
    out = tmp_path / "out"
    first = batch.segment_files(inputs, out, device="cpu", labelmap=True, model=PARTS_MODEL)
    assert [row["status"] for row in first] == ["ok"] * 3
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    damaged = out / f"{CASES[1]}.seg.nrrd"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # a file of ours, truncated
    second = batch.segment_files(inputs, out, device="cpu", labelmap=True, model=PARTS_MODEL)
    assert [row["status"] for row in second] == ["ok"] * 3
    assert "reused" in second[0]["notes"] and "reused" not in second[1]["notes"]
    assert (out / f"{CASES[0]}.seg.nrrd").stat().st_mtime_ns == stamps[f"{CASES[0]}.seg.nrrd"]  # untouched
    assert (out / f"{CASES[1]}.seg.nrrd").stat().st_size > damaged.stat().st_size // 2 + 10
    table = _summary(out)
    assert table[CASES[0]]["Hippocampus anterior mm3"] == next(r for r in first if r["case"] == CASES[0])["Hippocampus anterior mm3"]
    # a changed input is not "the same input": its outputs are not reused, and being ours and
    # complete they are not silently replaced either
    inputs[2].write_bytes(inputs[0].read_bytes())
    with pytest.raises(InputError, match="Refusing to overwrite"):
        batch.segment_files(inputs, out, device="cpu", labelmap=True, model=PARTS_MODEL)


def test_foreign_files_are_refused_before_any_work(inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{CASES[2]}.seg.nrrd").write_text("someone else's file")
    (out / "summary.csv").write_text("subject,volume\n")
    with pytest.raises(InputError, match="Refusing to overwrite") as error:
        batch.segment_files(inputs, out, device="cpu")
    assert "summary.csv" in str(error.value) and f"{CASES[2]}.seg.nrrd" in str(error.value)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{CASES[2]}.seg.nrrd", "summary.csv"])


def test_ctrl_c_mid_batch_then_rerun_finishes(inputs, tmp_path, monkeypatch, capsys):
    from LUnetSegmentationLib.runtime import pipeline

    out = tmp_path / "out"
    real = pipeline.label_image
    calls = []

    def interrupted_on_second_case(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "label_image", interrupted_on_second_case)
    code = cli.main(["segment", *map(str, inputs), "--out", str(out), "--device", "cpu", "--quiet", "--labelmap", "--model", PARTS_MODEL])
    assert code == 130
    assert "Run the same command again" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{CASES[0]}.seg.nrrd", f"{CASES[0]}.nii.gz", "summary.csv",
                                                            batch.SUMMARY_LOCK_NAME])
    table = _summary(out)
    assert table[CASES[0]]["status"] == "ok" and table[CASES[1]]["status"] == "interrupted" and table[CASES[2]]["status"] == "interrupted"
    monkeypatch.setattr(pipeline, "label_image", real)
    assert cli.main(["segment", *map(str, inputs), "--out", str(out), "--device", "cpu", "--quiet", "--labelmap", "--model", PARTS_MODEL]) == 0
    table = _summary(out)
    assert [table[c]["status"] for c in CASES] == ["ok"] * 3
    assert "reused" in table[CASES[0]]["notes"]


def test_missing_input_and_bad_output_folder_write_nothing(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["segment", str(inputs[0]), str(tmp_path / "typo.nii.gz"), "--out", str(out), "--device", "cpu"]) == 2
    assert "No such input file" in capsys.readouterr().err and not out.exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["segment", str(inputs[0]), "--out", str(afile), "--device", "cpu"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_sigterm_ends_a_batch_like_ctrl_c(inputs, tmp_path):
    """A scheduler's SIGTERM mid-batch: exit 130, complete files only, a summary of what was done."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "out"
    library = Path(__file__).resolve().parents[1] / "LUnetSegmentation"
    many = inputs * 1  # three crops; the signal arrives once the first is written
    process = subprocess.Popen([sys.executable, "-m", "LUnetSegmentationLib", "segment", *map(str, many), "--out", str(out),
                                "--device", "cpu", "--quiet", "--model", PARTS_MODEL],
                               env={**os.environ, "PYTHONPATH": str(library)}, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / f"{CASES[0]}.seg.nrrd").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the batch finished before the signal arrived (a fast machine)")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Run the same command again" in err
    assert not [p for p in out.iterdir() if ".partial-" in p.name]
    assert (out / "summary.csv").is_file()
