"""BIDS App (issue 14): layout, participant + group on a 2-worker Dask LocalCluster, BIDS-Derivatives
names, resumability, a bad scan recorded, the bids-validator on the input dataset and on the
derivatives, and a second contrast (--suffix) beside the T1w.

The dataset is laid out in tmp_path by a fixture from ../shared/data (symlinks, never committed):
sub-01 with two sessions (Decathlon crops), sub-02 a whole-head T1 (1.75 mm, the fastest of the
shared scans), sub-03 a constant image (valid BIDS, nothing to segment). The app runs as the
user runs it, in a child process, so the tests also see its exit status and that no traceback
reaches the user.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LUnetSegmentation"))

from LUnetSegmentationLib.apps.bids import app as bids  # noqa: E402
from LUnetSegmentationLib.files.outputs import is_partial  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402

pytest.importorskip("distributed", reason="dask[distributed] is not installed (requirements.txt)")

WHOLE_HEAD = ("hippodeep_example", "example_brain_t1_1p75mm.nii.gz")
LABEL = r"[a-zA-Z0-9]+"
DERIVATIVE = re.compile(
    rf"^sub-(?P<sub>{LABEL})(?:_ses-(?P<ses>{LABEL}))?(?:_acq-{LABEL})?(?:_ce-{LABEL})?(?:_rec-{LABEL})?(?:_run-[0-9]+)?"
    rf"_desc-(?P<desc>{LABEL})_dseg\.(?P<ext>nii\.gz|tsv|json|png)$"
)


# ----------------------------------------------------------------------------- fixtures


def write_dataset_description(root: Path, name="LUnet test cohort"):
    (root / "dataset_description.json").write_text(json.dumps({"Name": name, "BIDSVersion": "1.9.0", "Authors": ["test"]}))
    (root / "README").write_text("A BIDS dataset laid out by Testing/test_bids.py from the shared scans.\n")


def t1w(root: Path, subject: str, session: str | None, source: Path | None = None, extra="") -> Path:
    folder = root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sub-{subject}{f'_ses-{session}' if session else ''}{extra}_T1w.nii.gz"
    if source is not None:
        path.symlink_to(source)
    return path


def constant_t1w(path: Path):
    image = sitk.GetImageFromArray(np.full((48, 56, 48), 100, np.int16))
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(path), useCompression=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, request) -> Path:
    hippocampus = request.getfixturevalue("hippocampus_dir")
    wholebrain = request.getfixturevalue("wholebrain_dir")
    root = tmp_path_factory.mktemp("bids") / "cohort"
    root.mkdir()
    write_dataset_description(root)
    t1w(root, "01", "1", hippocampus / "imagesTr" / "hippocampus_001.nii.gz")
    t1w(root, "01", "2", hippocampus / "imagesTr" / "hippocampus_003.nii.gz")
    t1w(root, "02", None, wholebrain.joinpath(*WHOLE_HEAD))
    constant_t1w(t1w(root, "03", None))
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\nsub-03\n")
    return root


def _app(*args) -> tuple[list[str], dict]:
    """The BIDS App's command line and environment (this checkout's package, one thread each)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "LUnetSegmentation"), OMP_NUM_THREADS="1")
    return [sys.executable, "-m", "LUnetSegmentationLib.apps.bids", *map(str, args)], env


def run_app(*args, timeout=900) -> subprocess.CompletedProcess:
    command, env = _app(*args)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def processed(dataset, tmp_path_factory):
    """participant (2 workers) then group, once for the module's checks."""
    out = tmp_path_factory.mktemp("derivatives") / "lunet"
    participant = run_app(dataset, out, "participant", "--workers", "2")
    group = run_app(dataset, out, "group")
    return out, participant, group


# ----------------------------------------------------------------------------- layout (fast)


def test_find_scans_follows_bids_layout(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    with pytest.raises(InputError, match="no dataset_description.json"):
        bids.find_scans(root)
    write_dataset_description(root)
    with pytest.raises(InputError, match="No T1w images found"):
        bids.find_scans(root)
    for path in (t1w(root, "01", "a"), t1w(root, "01", "b", extra="_acq-mprage_run-2"), t1w(root, "02", None)):
        path.write_bytes(b"")
    (root / "sub-02" / "anat" / "sub-02_T2w.nii.gz").write_bytes(b"")  # not a T1w
    (root / "sub-02" / "anat" / "sub-03_T1w.nii.gz").write_bytes(b"")  # subject does not match its folder
    (root / "derivatives" / "sub-09" / "anat").mkdir(parents=True)  # never searched
    scans = bids.find_scans(root)
    assert [s.relative for s in scans] == [
        "sub-01/ses-a/anat/sub-01_ses-a_T1w.nii.gz",
        "sub-01/ses-b/anat/sub-01_ses-b_acq-mprage_run-2_T1w.nii.gz",
        "sub-02/anat/sub-02_T1w.nii.gz",
    ]
    assert scans[1].dseg_name(".nii.gz") == "sub-01_ses-b_acq-mprage_run-2_desc-hippocampus_dseg.nii.gz"
    assert scans[1].outputs(tmp_path / "out")["dseg"].parent == tmp_path / "out" / "sub-01" / "ses-b" / "anat"
    assert [s.subject for s in bids.find_scans(root, participants=["sub-02"])] == ["02"]
    assert [s.session for s in bids.find_scans(root, sessions=["b"])] == ["b"]
    with pytest.raises(InputError, match="participant"):
        bids.find_scans(root, participants=["07"])
    with pytest.raises(InputError, match="not a BIDS label"):
        bids.find_scans(root, participants=["0_1"])


def test_bad_arguments_are_one_line_errors(tmp_path):
    result = run_app(tmp_path / "missing", tmp_path / "out", "participant")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    root = tmp_path / "ds"
    root.mkdir()
    write_dataset_description(root)
    result = run_app(root, root, "participant")
    assert result.returncode == 2 and "must not be the BIDS dataset" in result.stderr


def test_planted_links_in_the_output_are_refused_per_scan(tmp_path, hippocampus_dir):
    root = tmp_path / "ds"
    root.mkdir()
    write_dataset_description(root)
    t1w(root, "01", None, hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "sub-01").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "sub-01" / "anat").symlink_to(elsewhere)
    (out / "logs").symlink_to(elsewhere)  # the error record's folder too
    scans, todo, tasks = bids.participant_tasks(root, out)
    record = bids.process_scan(tasks[0])
    assert record["status"] == "error" and "symbolic link" in record["error"]
    assert "error record could not be written" in record["error"]
    assert list(elsewhere.iterdir()) == []


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises((RuntimeError, InputError)):  # the writer's error, or files/outputs.py's message for it
        bids._write_atomic(target, fail)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    # A symlink at the destination is replaced, never written through.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "link.txt"
    link.symlink_to(victim)
    bids._write_text(link, "new")
    assert victim.read_text() == "keep" and not link.is_symlink() and link.read_text() == "new"


# ----------------------------------------------------------------------------- participant + group


@pytest.mark.slow
def test_participant_and_group_with_two_workers(processed, dataset):
    out, participant, group = processed
    assert participant.returncode == 1, participant.stderr  # the constant scan failed; the others did not
    assert "Traceback" not in participant.stderr + participant.stdout
    assert "3 segmented, 1 failed" in participant.stdout
    assert re.search(r"FAILED sub-03/anat/sub-03_T1w\.nii\.gz: .*constant", participant.stderr)
    assert group.returncode == 0, group.stderr
    assert "4 scan(s): 3 segmented, 1 failed" in group.stdout


@pytest.mark.slow
def test_derivative_names_follow_bids(processed, dataset):
    out, _, _ = processed
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    made_by = description["GeneratedBy"][0]
    from LUnetSegmentationLib import __version__
    from LUnetSegmentationLib.runtime.weights import find_model

    assert made_by["Name"] == "LUnetSegmentation" and made_by["Version"] == __version__
    assert made_by["ModelSHA256"] == find_model().weights_sha256 and re.fullmatch(r"[0-9a-f]{64}", made_by["ModelSHA256"])

    top_level = {"dataset_description.json", "README", ".bidsignore", "volumes.tsv", "volumes.json", "report.html"}
    seen = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = path.relative_to(out)
        if relative.parts[0] == "logs":
            assert re.fullmatch(r"sub-[a-zA-Z0-9]+(_ses-[a-zA-Z0-9]+)?.*_T1w_error\.json", path.name), relative
            continue
        if len(relative.parts) == 1:
            assert relative.name in top_level, relative
            continue
        match = DERIVATIVE.match(path.name)
        assert match, f"{relative} is not a BIDS-Derivatives name"
        assert match["desc"] == "hippocampus"
        sub, ses = match["sub"], match["ses"]
        if match["ext"] == "png":
            assert relative.parts[:2] == (f"sub-{sub}", "figures"), relative
        else:
            assert relative.parts[:-1] == (f"sub-{sub}",) + ((f"ses-{ses}",) if ses else ()) + ("anat",), relative
        seen.append(relative.as_posix())
    expected_stems = ["sub-01/ses-1/anat/sub-01_ses-1", "sub-01/ses-2/anat/sub-01_ses-2", "sub-02/anat/sub-02"]
    for stem in expected_stems:
        for ext in ("nii.gz", "tsv", "json"):
            assert f"{stem}_desc-hippocampus_dseg.{ext}" in seen
    assert not any("sub-03" in name for name in seen)  # the failed scan wrote nothing but its error record
    assert (out / "logs" / "sub-03_T1w_error.json").is_file()
    assert not [p for p in out.rglob(".*") if is_partial(p)]


@pytest.mark.slow
def test_label_tables_images_and_sidecars(processed, dataset):
    out, _, _ = processed
    for dseg in sorted(out.rglob("*_dseg.nii.gz")):
        with open(str(dseg).replace(".nii.gz", ".tsv"), newline="") as handle:
            table = list(csv.DictReader(handle, delimiter="\t"))
        assert list(table[0])[:2] == ["index", "name"]
        labels = sitk.ReadImage(str(dseg))
        values = set(np.unique(sitk.GetArrayViewFromImage(labels)).tolist()) - {0}
        assert values and values <= {int(row["index"]) for row in table}, dseg.name
        sidecar = json.loads(Path(str(dseg).replace(".nii.gz", ".json")).read_text())
        source = dataset / sidecar["Sources"][0].removeprefix("bids:raw:")
        image = sitk.ReadImage(str(source))
        assert labels.GetSize() == image.GetSize() and np.allclose(labels.GetOrigin(), image.GetOrigin())
        names = {row["name"] for row in table}
        assert set(sidecar["LUnet"]["VolumesMm3"]) == names
    head = [row for row in csv.DictReader(open(out / "sub-02/anat/sub-02_desc-hippocampus_dseg.tsv"), delimiter="\t")]
    from LUnetSegmentationLib.runtime.weights import find_model
    from LUnetSegmentationLib.runtime.wholebrain import side_label_table

    # the default model's own sided segments ("Left hippocampus", or anterior/posterior parts)
    assert {row["name"] for row in head} == {spec.segment_name for spec in side_label_table(find_model())}


@pytest.mark.slow
def test_group_volumes_table(processed, dataset):
    out, _, _ = processed
    with open(out / "volumes.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["source"] for r in rows] == [s.relative for s in bids.find_scans(dataset)]
    by = {r["source"]: r for r in rows}
    head = by["sub-02/anat/sub-02_T1w.nii.gz"]
    left, right = float(head["left_hippocampus_mm3"]), float(head["right_hippocampus_mm3"])
    assert 1500 < left < 6000 and 1500 < right < 6000
    from LUnetSegmentationLib.runtime.weights import find_model
    from LUnetSegmentationLib.runtime.wholebrain import side_label_table

    table = side_label_table(find_model())
    for side, total in (("left", left), ("right", right)):
        parts = [float(head[spec.segment_name.lower().replace(" ", "_") + "_mm3"]) for spec in table if spec.side == side]
        assert parts and abs(sum(parts) - total) < 1, side
    if head["head_scale"] != "n/a":  # the template registration localized this scan
        assert 0.5 < float(head["head_scale"]) < 1.6 and float(head["localization_correlation"]) > 0.25
    else:  # the learned localizer did: no registration figures (its intracranial volume is checked below;
        # this 1.75 mm example's field of view touches the brain, so it is withheld there)
        assert head["localization_correlation"] == "n/a"
    from LUnetSegmentationLib.runtime.measures import asymmetry_index

    assert float(head["asymmetry_index"]) == pytest.approx(asymmetry_index(left, right), abs=2e-3)
    if head["intracranial_volume_ml"] == "n/a":  # the localizer gave no intracranial volume: none is made up
        assert head["left_fraction_of_icv"] == head["right_fraction_of_icv"] == "n/a"
    else:
        icv = float(head["intracranial_volume_ml"])
        assert 900 < icv < 2500 and float(head["left_fraction_of_icv"]) == pytest.approx(left / (icv * 1000), rel=1e-2)
    assert 0 < float(head["mean_entropy"]) < 0.5 and 0.5 < float(head["mean_probability"]) <= 1  # network confidence
    broken = by["sub-03/anat/sub-03_T1w.nii.gz"]
    assert broken["status"] == "error" and "constant" in broken["error"] and broken["left_hippocampus_mm3"] == "n/a"
    assert by["sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz"]["session_id"] == "ses-2"
    columns = json.loads((out / "volumes.json").read_text())
    assert set(rows[0]) == set(columns)


@pytest.mark.slow
def test_report_lists_every_scan_broken_first(processed, dataset):
    out, _, _ = processed
    page = (out / "report.html").read_text()
    scans = re.findall(r'<tr id="[^"]+" class="scan (\w+)" data-scan="([^"]+)" data-status="(\w+)"', page)
    assert sorted(s[1] for s in scans) == sorted(s.scan_id for s in bids.find_scans(dataset))
    assert scans[0][1:] == ("sub-03_T1w", "error") and scans[0][0] == "flagged"
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    for figure in re.findall(r'<img loading="lazy" src="([^"]+)"', page):
        assert (out / figure).is_file()


@pytest.mark.slow
def test_rerun_skips_complete_and_redoes_partial(processed, dataset):
    out, _, _ = processed
    complete = {p: p.stat().st_ino for p in out.rglob("*_dseg.json")}
    # A partial scan: its labelmap truncated (as by a crash mid-copy) and a stale temporary beside it.
    damaged = out / "sub-01/ses-2/anat/sub-01_ses-2_desc-hippocampus_dseg.nii.gz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    stale = damaged.with_name(".sub-01_ses-2_desc-hippocampus_dseg.partial-0123456789abcdef.nii.gz")
    neighbour = damaged.with_name(".sub-01_ses-1_desc-hippocampus_dseg.partial-0123456789abcdef.nii.gz")
    neighbour.write_bytes(b"another scan's write in progress")
    stale.write_bytes(b"half")
    again = run_app(dataset, out, "participant", "--workers", "1")
    assert "2 already complete, 2 to segment" in again.stdout, again.stdout  # the damaged one and the failed one
    assert "1 segmented, 1 failed, 2 skipped" in again.stdout
    for path, inode in complete.items():
        if "ses-2" not in path.name:
            assert path.stat().st_ino == inode, f"{path.name} was rewritten"
    assert bids.scan_complete(bids.find_scans(dataset, ["01"], ["2"])[0], out, bids.model_identity()["sha256"])
    assert not stale.exists() and neighbour.exists()  # only the redone scan's own leftovers are removed
    neighbour.unlink()
    # A T1w replaced under the same name (another size and time) is redone too.
    source = dataset / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"
    target = os.readlink(source)
    source.unlink()
    source.symlink_to(target.replace("hippocampus_001", "hippocampus_004"))
    try:
        third = run_app(dataset, out, "participant", "--workers", "1")
        assert "2 already complete, 2 to segment" in third.stdout, third.stdout  # the replaced one and the failed one
        assert "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz: ok" in third.stdout
    finally:
        source.unlink()
        source.symlink_to(target)


@pytest.mark.slow
def test_one_model_load_per_worker(dataset, tmp_path):
    """In process this time (no CLI), to read the per-scan records."""
    summary = bids.run_participant(dataset, tmp_path / "out", participants=["01"], workers=2, echo=lambda *_: None)
    records = summary["records"]
    assert summary["segmented"] == 2 and len(records) == 2
    assert all(r["model_loads_in_process"] == 1 for r in records)
    assert all(r["peak_rss_mb"] > 0 and r["cpu_seconds"] > 0 for r in records)


# ----------------------------------------------------------------------------- bids-validator


def _validator() -> str:
    """The schema-based BIDS validator (bids-validator-deno, pinned in requirements.txt: the
    validator's bundled JavaScript and the deno binary, both from PyPI; runs offline). The npm
    package bids-validator is the legacy 1.x, which knows no BIDS-Derivatives names."""
    beside = Path(sys.executable).parent / "bids-validator-deno"
    found = str(beside) if beside.exists() else shutil.which("bids-validator-deno")
    if found is None:
        pytest.skip("bids-validator-deno is not installed (pip install -r requirements.txt installs the pinned one)")
    return found


def validate(root: Path, *options) -> tuple[list, dict]:
    """(errors, summary) of the validator on a dataset; warnings are not failures."""
    result = subprocess.run([_validator(), "--format", "json", *options, str(root)], capture_output=True, text=True,
                            timeout=300)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"bids-validator gave no JSON (exit {result.returncode}): {result.stderr[-2000:]}")
    errors = [(issue["code"], issue.get("location"), issue.get("issueMessage"))
              for issue in report["issues"]["issues"] if issue["severity"] == "error"]
    return errors, report["summary"]


def test_input_dataset_passes_bids_validator(dataset):
    errors, summary = validate(dataset)
    assert errors == [], errors
    assert sorted(summary["subjects"]) == ["01", "02", "03"]


@pytest.mark.slow
def test_derivatives_pass_bids_validator(processed):
    out, _, _ = processed
    assert (out / "logs").is_dir()  # the failed scan's record is there, and ignored (.bidsignore), not an error
    errors, summary = validate(out)
    assert errors == [], errors
    assert summary["dataProcessed"] is True and sorted(summary["subjects"]) == ["01", "02"]


@pytest.mark.slow
def test_any_contrast_end_to_end(tmp_path, hippocampus_dir):
    """The T1w and a FLAIR of one session (the same crop under both names: what is checked here is
    the layout, not the network) segmented into one derivatives folder, reported in one table,
    and both datasets valid BIDS."""
    root = tmp_path / "ds"
    root.mkdir()
    write_dataset_description(root)
    source = hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"
    t1w(root, "01", None, source)
    (root / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz").symlink_to(source)
    (root / "participants.tsv").write_text("participant_id\nsub-01\n")
    out = root / "derivatives" / "lunet"
    participant = run_app(root, out, "participant", "--workers", "1", "--suffix", "T1w", "FLAIR")
    assert participant.returncode == 0, participant.stdout + participant.stderr
    assert "2 FLAIR/T1w scan(s)" in participant.stdout and "2 segmented, 0 failed" in participant.stdout
    group = run_app(root, out, "group")
    assert group.returncode == 0 and "2 scan(s): 2 segmented" in group.stdout, group.stdout + group.stderr
    anat = out / "sub-01" / "anat"
    assert (anat / "sub-01_desc-hippocampus_dseg.nii.gz").is_file()
    assert (anat / "sub-01_desc-hippocampusFLAIR_dseg.nii.gz").is_file()
    flair = json.loads((anat / "sub-01_desc-hippocampusFLAIR_dseg.json").read_text())
    assert flair["Sources"] == ["bids:raw:sub-01/anat/sub-01_FLAIR.nii.gz"] == [flair["SpatialReference"]]
    with open(out / "volumes.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert sorted(row["suffix"] for row in rows) == ["FLAIR", "T1w"]
    assert rows[0]["hippocampus_mm3"] == rows[1]["hippocampus_mm3"]  # one image under two names, one volume
    errors, summary = validate(root, "--recursive")  # the raw dataset and its derivatives/lunet
    assert errors == [], errors


# ----------------------------------------------------------------------------- a worker dies, a run dies


SCANS = 8  # whole heads, ~1.5-3 s each here since the learned localizer: with 3, both workers could
# finish the other two in the 0.2 s between the first sidecar and the kill (seen once under load)


def _cohort(root: Path, wholebrain: Path, subjects: int) -> Path:
    root.mkdir()
    write_dataset_description(root)
    for number in range(1, subjects + 1):
        t1w(root, f"{number:02d}", None, wholebrain.joinpath(*WHOLE_HEAD))
    return root


def _cohort_run_under_way(tmp_path: Path, wholebrain_dir: Path, **popen) -> tuple[Path, Path, subprocess.Popen]:
    """A participant run over the cohort (2 workers, its own process group), once its first scan
    is done: (dataset, output folder, process)."""
    dataset = _cohort(tmp_path / "ds", wholebrain_dir, SCANS)
    out = tmp_path / "out"
    command, env = _app(dataset, out, "participant", "--workers", 2)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                               start_new_session=True, **popen)
    _wait_for_sidecars(out, 1, process)
    return dataset, out, process


def _wait_for_sidecars(out: Path, count: int, process: subprocess.Popen, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list(out.rglob("*_dseg.json"))) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before {count} scan(s) were done: {process.communicate()}")
        time.sleep(0.2)
    pytest.fail(f"fewer than {count} scans done within {timeout} s")


def _busiest_worker(process: subprocess.Popen):
    psutil = pytest.importorskip("psutil")
    workers = [child for child in psutil.Process(process.pid).children(recursive=True) if "python" in child.name().lower()]
    assert len(workers) >= 2, f"expected 2 worker processes, found {[w.cmdline() for w in workers]}"
    for worker in workers:
        worker.cpu_percent(None)
    time.sleep(0.5)
    return max(workers, key=lambda w: w.cpu_percent(None))


@pytest.mark.slow
def test_killed_worker_loses_no_scan(tmp_path, wholebrain_dir):
    dataset, out, process = _cohort_run_under_way(tmp_path, wholebrain_dir)
    victim = _busiest_worker(process)
    os.kill(victim.pid, signal.SIGKILL)  # a worker process this test's run started, mid-scan
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert f"{SCANS} segmented, 0 failed" in stdout
    scans = bids.find_scans(dataset)
    sha = bids.model_identity()["sha256"]
    assert all(bids.scan_complete(scan, out, sha) for scan in scans)
    assert not [p for p in out.rglob(".*") if is_partial(p)]
    inodes = {p: p.stat().st_ino for p in out.rglob("*_dseg.*")}
    again = run_app(dataset, out, "participant", "--workers", "2")
    assert again.returncode == 0 and f"{SCANS} already complete, 0 to segment" in again.stdout
    assert inodes == {p: p.stat().st_ino for p in out.rglob("*_dseg.*")}  # every scan done exactly once


@pytest.mark.slow
def test_killed_run_resumes_each_scan_once(tmp_path, wholebrain_dir):
    dataset, out, process = _cohort_run_under_way(tmp_path, wholebrain_dir)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run (its own process group) dies mid-cohort
    process.communicate(timeout=60)
    first = {p: json.loads(p.read_text())["LUnet"]["RunId"] for p in out.rglob("*_dseg.json")}
    assert 1 <= len(first) < SCANS
    inodes = {p: p.stat().st_ino for p in first}
    again = run_app(dataset, out, "participant", "--workers", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(first)} already complete, {SCANS - len(first)} to segment" in again.stdout
    sha = bids.model_identity()["sha256"]
    assert all(bids.scan_complete(scan, out, sha) for scan in bids.find_scans(dataset))
    assert {p: p.stat().st_ino for p in first} == inodes  # the first run's scans were not redone
    second = {p: json.loads(p.read_text())["LUnet"]["RunId"] for p in out.rglob("*_dseg.json")}
    assert len(set(second.values())) == 2 and len(second) == SCANS
    assert not [p for p in out.rglob(".*") if is_partial(p)]


# ----------------------------------------------------------------------------- an existing cluster


@pytest.mark.slow
def test_existing_cluster_through_scheduler_address(dataset, tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = run_app(dataset, tmp_path / "out", "participant", "--participant-label", "01",
                         "--scheduler", cluster.scheduler_address)
        assert len(cluster.workers) == 1  # the app used the cluster and left it running
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 segmented, 0 failed" in result.stdout
    unreachable = run_app(dataset, tmp_path / "out", "participant", "--scheduler", "tcp://127.0.0.1:9")
    assert unreachable.returncode == 2 and "Cannot reach the Dask scheduler" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


@pytest.mark.slow
def test_ctrl_c_stops_the_run_with_one_line(tmp_path, wholebrain_dir):
    """Ctrl+C in a terminal sends SIGINT to the whole foreground group: the app's workers too."""
    _, _, process = _cohort_run_under_way(
        tmp_path, wholebrain_dir, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: complete scans are kept")
    assert "Traceback" not in stderr


def _dies_on(task):
    if task["die"]:
        os._exit(1)  # as a segfault or the kernel's OOM killer would end the worker process
    return {"status": "ok", "n": task["n"]}


@pytest.mark.slow
def test_a_scan_that_kills_every_worker_is_recorded_and_the_others_finish():
    from LUnetSegmentationLib.apps.bids import cohort

    tasks = [{"n": n, "die": n == 2} for n in range(4)]
    lost = []
    records = cohort.run_tasks(_dies_on, tasks, [f"t-{n}" for n in range(4)], workers=2,
                               lost=lambda task, message: lost.append((task["n"], message)) or {"status": "error", "n": task["n"]})
    assert sorted((r["n"], r["status"]) for r in records) == [(0, "ok"), (1, "ok"), (2, "error"), (3, "ok")]
    assert lost and lost[0][0] == 2 and "died on every attempt" in lost[0][1]
