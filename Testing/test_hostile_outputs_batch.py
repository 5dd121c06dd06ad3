"""The batch job under hostile conditions (issue 24) and its summary measures (issue 25): runs
sharing one output folder keep every case's row; a re-run with other options never reuses or
replaces results silently; file names that are not UTF-8, empty output folder names and cases
named like temporaries get clear answers; the asymmetry and intracranial columns."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lunet_test_helpers import PARTS_MODEL, copied_cases
from LUnetSegmentationLib.apps import cli
from LUnetSegmentationLib.files import batch
from LUnetSegmentationLib.runtime.preprocess import InputError

LIBRARY = Path(__file__).resolve().parents[1] / "LUnetSegmentation"
CASES = ["hippocampus_001", "hippocampus_011"]


@pytest.fixture
def inputs(hippocampus_dir, tmp_path):
    return copied_cases(hippocampus_dir, tmp_path / "in", CASES)


def _summary(out: Path) -> dict:
    with open(out / "summary.csv", encoding="utf-8") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(LIBRARY)}


# ----------------------------------------------------------------------------- shared folders


def test_concurrent_summary_updates_keep_every_case(tmp_path):
    """Four processes update summary.csv at once, each its own case, many times (a job array's
    runs finishing together): every case keeps exactly one row, with its last values."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from LUnetSegmentationLib.files import batch
        case = sys.argv[1]
        for attempt in range(25):
            row = {{"case": case, "input": case + ".nii.gz", "status": "ok", "seconds": str(attempt), "A mm3": "1.0"}}
            batch._write_summary(Path({str(tmp_path)!r}) / "summary.csv", [row], ["A mm3"])
    """)
    cases = [f"sub-{n:02d}" for n in range(4)]
    processes = [subprocess.Popen([sys.executable, "-c", code, case], env=_env(), stderr=subprocess.PIPE, text=True)
                 for case in cases]
    for process in processes:
        assert process.wait(timeout=120) == 0, process.stderr.read()
    with open(tmp_path / "summary.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["case"] for row in rows) == cases
    assert all(row["seconds"] == "24" for row in rows)
    assert not [name for name in os.listdir(tmp_path) if ".partial-" in name]


def test_a_summary_update_keeps_other_runs_rows_and_columns(tmp_path):
    path = tmp_path / "summary.csv"
    batch._write_summary(path, [{"case": "a", "status": "ok", "Left X mm3": "5.0"}], ["Left X mm3"])
    batch._write_summary(path, [{"case": "b", "status": "ok", "Y mm3": "7.0"}], ["Y mm3"])
    batch._write_summary(path, [{"case": "a", "status": "error", "error": "later"}], ["Left X mm3"])
    table = _summary(tmp_path)
    assert list(table) == ["a", "b"]
    assert table["a"]["status"] == "error" and table["a"]["Left X mm3"] == "" and table["b"]["Y mm3"] == "7.0"
    header = path.read_text().splitlines()[0].split(",")
    assert header[:5] == batch.SUMMARY_FIRST_COLUMNS and header[-4:] == batch.SUMMARY_LAST_COLUMNS
    path.write_text("subject,volume\n")  # someone else's file appeared since start-up: left alone
    with pytest.raises(InputError, match="not a summary written by this tool"):
        batch._write_summary(path, [{"case": "a"}], [])
    assert path.read_text() == "subject,volume\n"


@pytest.mark.slow
def test_two_runs_into_one_folder_at_once(inputs, tmp_path):
    """A job array: one scan per job, one --out. Both rows survive, neither run fails."""
    out = tmp_path / "out"
    runs = [subprocess.Popen([sys.executable, "-m", "LUnetSegmentationLib", "segment", str(path), "--out", str(out),
                              "--device", "cpu", "--quiet", "--model", PARTS_MODEL, "--labelmap"],
                             env=_env(), stderr=subprocess.PIPE, text=True) for path in inputs]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    table = _summary(out)
    assert sorted(table) == CASES and all(table[c]["status"] == "ok" for c in CASES)


@pytest.mark.slow
def test_a_quota_mid_batch_leaves_complete_files_a_clear_error_and_a_working_rerun(inputs, tmp_path):
    """`ulimit -f` 2000 bytes: the labelmap (800 bytes) fits, the .seg.nrrd (3 kB) does not.
    ITK writes it short; it must never appear under its name, and the summary says why."""
    import resource
    import signal

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    out = tmp_path / "out"
    command = [sys.executable, "-m", "LUnetSegmentationLib", "segment", str(inputs[0]), "--out", str(out), "--device",
               "cpu", "--quiet", "--model", PARTS_MODEL, "--labelmap"]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "quota" in done.stderr and "Nothing was written" in done.stderr
    assert not (out / f"{CASES[0]}.seg.nrrd").exists()
    assert not [name for name in os.listdir(out) if ".partial-" in name]
    assert _summary(out)[CASES[0]]["status"] == "error"
    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _summary(out)[CASES[0]]["status"] == "ok"


# ----------------------------------------------------------------------------- re-runs


def test_a_rerun_with_an_roi_never_reuses_the_whole_input_result(inputs, tmp_path):
    out = tmp_path / "out"
    first = batch.segment_files(inputs[:1], out, device="cpu", model=PARTS_MODEL)
    assert first[0]["status"] == "ok"
    before = (out / f"{CASES[0]}.seg.nrrd").read_bytes()
    roi = ((0.0, 0.0, 0.0), (20.0, 20.0, 20.0))
    with pytest.raises(InputError, match=r"other options \(whole input; this run: roi 0 0 0 20 20 20\)"):
        batch.segment_files(inputs[:1], out, device="cpu", model=PARTS_MODEL, roi=roi)
    assert (out / f"{CASES[0]}.seg.nrrd").read_bytes() == before
    again = batch.segment_files(inputs[:1], out, device="cpu", model=PARTS_MODEL)  # the same options: reused
    assert "reused" in again[0]["notes"]


def test_an_empty_leftover_of_a_full_disk_is_redone(inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{CASES[0]}.seg.nrrd").write_bytes(b"")
    rows = batch.segment_files(inputs[:1], out, device="cpu", model=PARTS_MODEL)
    assert rows[0]["status"] == "ok" and (out / f"{CASES[0]}.seg.nrrd").stat().st_size > 0


def test_a_case_named_like_a_temporary_keeps_its_results(inputs, tmp_path):
    odd = inputs[0].with_name(".case.partial-1234.nii.gz")
    inputs[0].rename(odd)
    out = tmp_path / "out"
    assert batch.segment_files([odd], out, device="cpu", model=PARTS_MODEL, labelmap=True)[0]["status"] == "ok"
    again = batch.segment_files([odd], out, device="cpu", model=PARTS_MODEL, labelmap=True)
    assert "reused" in again[0]["notes"]
    assert (out / ".case.partial-1234.seg.nrrd").is_file() and (out / ".case.partial-1234.nii.gz").is_file()


def test_a_case_named_exactly_like_a_temporary_is_refused(inputs, tmp_path):
    odd = inputs[0].with_name(".x.partial-0123456789abcdef.nii.gz")
    inputs[0].rename(odd)
    with pytest.raises(InputError, match="named like this tool's temporary files"):
        batch.segment_files([odd], tmp_path / "out", device="cpu", model=PARTS_MODEL)


# ----------------------------------------------------------------------------- names


def test_a_latin1_file_name_is_refused_and_the_batch_goes_on(inputs, tmp_path):
    """ITK's C++ aborts the whole process on a file name that is not UTF-8."""
    latin1 = os.fsdecode(bytes(inputs[0].parent) + b"/caf\xe9.nii.gz")
    try:
        shutil.copy(inputs[0], latin1)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system does not take non-UTF-8 file names")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "LUnetSegmentationLib", "segment", latin1, str(inputs[1]),
                           "--out", str(out), "--device", "cpu", "--quiet", "--model", PARTS_MODEL],
                          env=_env(), capture_output=True, timeout=300)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 1, err
    assert "not valid UTF-8" in err and "Rename the file" in err and "Traceback" not in err
    table = _summary(out)
    assert table[CASES[1]]["status"] == "ok"
    assert table["caf\\xe9"]["status"] == "error" and "not valid UTF-8" in table["caf\\xe9"]["error"]


def test_an_empty_output_folder_name_is_refused(inputs, capsys):
    assert cli.main(["segment", str(inputs[0]), "--out", "", "--device", "cpu"]) == 2
    assert "output folder name is empty" in capsys.readouterr().err


def test_one_path_as_a_string_is_one_input(inputs, tmp_path):
    rows = batch.segment_files(str(inputs[0]), tmp_path / "out", device="cpu", model=PARTS_MODEL)
    assert [row["case"] for row in rows] == [CASES[0]]


# ----------------------------------------------------------------------------- summary measures


def test_summary_measures_from_a_result():
    measures = batch.summary_measures({"left": 3300.0, "right": 3000.0}, {"intracranial": {"volume_ml": 1500.0}})
    assert measures == {"asymmetry_index": f"{300 / 3150:.4f}", "intracranial_volume_ml": "1500.0",
                        "left_fraction_of_icv": f"{3300 / 1.5e6:.6f}", "right_fraction_of_icv": f"{3000 / 1.5e6:.6f}"}
    without_icv = batch.summary_measures({"left": 3300.0, "right": 3000.0}, {"mode": "whole-head"})
    assert without_icv["asymmetry_index"] and not any(without_icv[c] for c in batch.SUMMARY_MEASURE_COLUMNS[1:])
    crop = batch.summary_measures({}, {})
    assert not any(crop.values())  # never approximated


def test_summary_columns_from_a_run_and_its_reuse(inputs, tmp_path, monkeypatch):
    """A run whose result has both sides and an intracranial estimate (as the localizer will
    give): the columns in summary.csv, and the same values when a re-run reuses the files."""
    from LUnetSegmentationLib.runtime import pipeline

    real = pipeline.label_image

    def with_sides_and_icv(*args, **kwargs):
        result = real(*args, **kwargs)
        result.side_volumes_mm3 = {"left": 3300.0, "right": 3000.0}
        result.details["intracranial"] = {"volume_ml": 1500.0}
        return result

    monkeypatch.setattr(pipeline, "label_image", with_sides_and_icv)
    out = tmp_path / "out"
    batch.segment_files(inputs[:1], out, device="cpu", model=PARTS_MODEL)
    row = _summary(out)[CASES[0]]
    assert row["asymmetry_index"] == f"{300 / 3150:.4f}" and row["intracranial_volume_ml"] == "1500.0"
    assert row["left_fraction_of_icv"] == f"{3300 / 1.5e6:.6f}"
    monkeypatch.setattr(pipeline, "label_image", real)
    batch.segment_files(inputs[:1], out, device="cpu", model=PARTS_MODEL)
    reused = _summary(out)[CASES[0]]
    assert "reused" in reused["notes"] and reused["intracranial_volume_ml"] == "1500.0"
