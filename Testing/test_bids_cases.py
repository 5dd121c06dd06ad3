"""BIDS App, issue 24's hostile cases and issue 25's BIDS items, all without running the network:
any contrast (--suffix) checked against the model card, labels the dataset does not have, a scan
present twice, an output folder inside the raw data, --threads -1, DatasetLinks and one CodeURL,
and the group table's columns (no repeats; ICV, fractions of it and the asymmetry index from
runtime/measures.py, described in volumes.json). The group stage reads derivatives laid out here
as the participant stage writes them, so it runs in a second.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LUnetSegmentation"))

from LUnetSegmentationLib.apps.bids import app as bids  # noqa: E402
from LUnetSegmentationLib.runtime import measures  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402

CATALOGUE_URL = json.loads((REPO / "LUnetSegmentation.json").read_text())["scm_url"]


def dataset(root: Path, names) -> Path:
    """A BIDS dataset of empty image files (enough for discovery) at root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "cases", "BIDSVersion": "1.9.0"}))
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def run_app(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "LUnetSegmentation"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "LUnetSegmentationLib.apps.bids", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


# ----------------------------------------------------------------------------- any contrast


def test_suffix_picks_the_contrasts_and_names_do_not_collide(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T2w.nii.gz",
                                     "sub-01/anat/sub-01_FLAIR.nii.gz", "sub-01/anat/sub-01_T1map.nii.gz"])
    assert [s.suffix for s in bids.find_scans(root)] == ["T1w"]  # the default
    scans = bids.find_scans(root, suffixes=["T1w", "T2w", "FLAIR"])
    assert sorted(s.suffix for s in scans) == ["FLAIR", "T1w", "T2w"]
    out = tmp_path / "out"
    for key in ("dseg", "tsv", "sidecar", "figure", "error"):
        assert len({scan.outputs(out)[key] for scan in scans}) == 3, key
    flair = next(s for s in scans if s.suffix == "FLAIR")
    assert flair.dseg_name(".nii.gz") == "sub-01_desc-hippocampusFLAIR_dseg.nii.gz"
    assert flair.scan_id == "sub-01_FLAIR"
    with pytest.raises(InputError, match="T1map.*T1w, inplaneT1, T2w"):
        bids.find_scans(root, suffixes=["T1map"])
    with pytest.raises(InputError, match="No PDw images found"):
        bids.find_scans(root, suffixes=["PDw"])


def test_model_card_contrasts_are_enforced(tmp_path):
    # The Decathlon model's card lists T1 only; the synthetic-contrast model's lists any.
    with pytest.raises(InputError, match=r"hippocampus-lunet.*T1 only.*FLAIR \(FLAIR\).*--model hippocampus-whole-lunet"):
        bids.model_identity("hippocampus-lunet", ["T1w", "FLAIR"])
    assert bids.model_identity("hippocampus-lunet", ["T1w"])["id"] == "hippocampus-lunet"
    assert bids.model_identity("hippocampus-whole-lunet", ["T2w", "FLAIR", "PDw"])["id"] == "hippocampus-whole-lunet"


def test_untrained_contrast_is_refused_on_the_command_line(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_FLAIR.nii.gz"])
    result = run_app(root, root / "derivatives" / "lunet", "participant", "--suffix", "FLAIR", "--model", "hippocampus-lunet")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: The model 'hippocampus-lunet' was trained for T1 only")
    assert "Traceback" not in result.stderr
    assert not (root / "derivatives" / "lunet" / "dataset_description.json").exists()  # refused before writing


# ----------------------------------------------------------------------------- issue 24's cases


def test_missing_participant_and_session_labels_are_named(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-04/ses-1/anat/sub-04_ses-1_T1w.nii.gz", "sub-05/anat/sub-05_T1w.nii.gz"])
    with pytest.raises(InputError, match=r"no participant 99 \(participant labels there: 04, 05\).*--participant-label"):
        bids.find_scans(root, participants=["04", "sub-99"])
    with pytest.raises(InputError, match=r"no session 2 \(session labels there: 1\).*--session-label"):
        bids.find_scans(root, participants=["04"], sessions=["1", "2"])
    assert [s.subject for s in bids.find_scans(root, participants=["04", "sub-04"])] == ["04"]
    result = run_app(root, tmp_path / "out", "participant", "--participant-label", "04", "99")
    assert result.returncode == 2 and "no participant 99" in result.stderr and "Traceback" not in result.stderr


def test_participant_without_images_of_the_suffix_is_warned_about(tmp_path, caplog):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz", "sub-02/anat/sub-02_T2w.nii.gz"])
    with caplog.at_level("WARNING", logger="LUnetSegmentation"):
        scans = bids.find_scans(root, participants=["01", "02"])
    assert [s.subject for s in scans] == ["01"]
    assert "Participant 02 has no T1w image" in caplog.text


def test_a_scan_present_as_nii_and_nii_gz_is_refused_at_discovery(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii", "sub-01/anat/sub-01_T1w.nii.gz",
                                     "sub-02/anat/sub-02_T1w.nii.gz"])
    with pytest.raises(InputError, match=r"twice, as \.nii and \.nii\.gz: sub-01/anat/sub-01_T1w\.nii and "
                                         r"sub-01_T1w\.nii\.gz.*remove"):
        bids.find_scans(root)
    result = run_app(root, tmp_path / "out", "participant")
    assert result.returncode == 2 and "twice" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("where, refused", [
    ("sub-01/out", True), ("derivatives", True), ("code/lunet", True), (".", True),
    ("derivatives/lunet", False), ("derivatives/lunet/v1", False), ("../elsewhere", False)])
def test_output_inside_the_raw_dataset_only_under_derivatives(tmp_path, where, refused):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz"])
    out = root / where
    if refused:
        with pytest.raises(InputError, match="BIDS_DIR/derivatives"):
            bids._check_out_dir(root, out)
    else:
        bids._check_out_dir(root, out)


def test_output_inside_the_raw_dataset_is_refused_on_the_command_line(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz"])
    result = run_app(root, root / "lunet", "participant")
    assert result.returncode == 2 and "inside the BIDS dataset but not in a folder of its derivatives/" in result.stderr
    assert not (root / "lunet").exists()


def test_output_that_contains_the_dataset_is_refused(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz"])
    with pytest.raises(InputError, match="contains the BIDS dataset"):
        bids._check_out_dir(root, tmp_path)


@pytest.mark.parametrize("threads", [-1, 0, 1.5, True])
def test_threads_must_be_a_positive_whole_number(threads):
    with pytest.raises(InputError, match="--threads must be a whole number of at least 1"):
        bids.check_threads(threads)
    assert bids.check_threads(None) == 1 and bids.check_threads(3) == 3


def test_negative_threads_are_refused_before_any_scan(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz"])
    result = run_app(root, tmp_path / "out", "participant", "--threads", "-1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: --threads must be a whole number of at least 1")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- dataset_description


def test_dataset_description_links_raw_and_names_the_catalogue_url(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz"])
    model = bids.model_identity()
    inside = bids.dataset_description(root, model, root / "derivatives" / "lunet")
    assert inside["DatasetLinks"] == {"raw": "../.."}
    assert (root / "derivatives" / "lunet" / inside["DatasetLinks"]["raw"]).resolve() == root.resolve()
    outside = bids.dataset_description(root, model, tmp_path / "results")
    assert outside["DatasetLinks"] == {"raw": root.resolve().as_uri()}
    assert inside["GeneratedBy"][0]["CodeURL"] == CATALOGUE_URL


PROJECT_URL = re.compile(r"https?://(?:github\.com|raw\.githubusercontent\.com)/([\w.-]+)/([\w.-]*lunet[\w.-]*)", re.I)


def test_every_url_of_this_project_is_the_catalogue_entrys():
    """CodeURL, the CLI's source link, the module's homepage, CMake, s4ext, pyproject and
    CITATION.cff name one repository: the one the Slicer catalogue entry (scm_url) builds."""
    owner_repo = "/".join(CATALOGUE_URL.rstrip("/").split("/")[-2:])
    tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    found = {}
    for name in tracked + ["LUnetSegmentation/LUnetSegmentationLib/apps/bids/app.py"]:
        path = REPO / name
        if path.suffix not in {".py", ".json", ".toml", ".cff", ".s4ext", ".txt", ".md", ".cmake", ""} or not path.is_file():
            continue
        if name.startswith(("docs/results/", "Testing/")) or path.stat().st_size > 2_000_000:
            continue
        for match in PROJECT_URL.finditer(path.read_text(errors="replace")):
            found.setdefault(f"{match[1]}/{match[2]}", set()).add(name)
    assert found, "no project URL found at all: the pattern is wrong"
    assert set(found) == {owner_repo}, {k: sorted(v) for k, v in found.items() if k != owner_repo}


# ----------------------------------------------------------------------------- per-scan measures


def labelled(left, right, details):
    return SimpleNamespace(side_volumes_mm3={"left": left, "right": right},
                           volumes_mm3={"Left hippocampus": left, "Right hippocampus": right}, details=details)


def test_qc_takes_asymmetry_and_icv_from_runtime_measures():
    with_icv = bids._qc(labelled(3300.0, 3000.0, {"mode": "whole-head", "intracranial": {"volume_ml": 1450.0}}))
    assert with_icv["AsymmetryIndex"] == round(measures.asymmetry_index(3300.0, 3000.0), 4)
    assert with_icv["IntracranialVolumeMl"] == 1450.0
    assert with_icv["LeftFractionOfIcv"] == round(measures.fraction_of_icv(3300.0, 1450.0), 6)
    assert with_icv["RightFractionOfIcv"] == round(3000.0 / 1_450_000.0, 6)
    without = bids._qc(labelled(3300.0, 3000.0, {"mode": "whole-head"}))  # no localizer estimate: never approximated
    assert without["IntracranialVolumeMl"] is None and without["LeftFractionOfIcv"] is None
    assert without["RightFractionOfIcv"] is None and without["AsymmetryIndex"] is not None


# ----------------------------------------------------------------------------- group table


def complete_scan(scan, out: Path, sha: str, volumes: dict, sides: dict, qc: dict) -> None:
    """The files of one complete scan, as the participant stage leaves them (scan_complete accepts them)."""
    paths = scan.outputs(out)
    for key in ("dseg", "tsv", "figure"):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        paths[key].write_bytes(f"{scan.scan_id} {key}".encode())
    sidecar = {"Sources": [f"bids:raw:{scan.relative}"], "LUnet": {
        "Model": {"WeightsSHA256": sha}, "Source": bids._source_state(scan.path), "VolumesMm3": volumes,
        "SideVolumesMm3": sides, "QC": qc, "Figure": {"File": scan.figure_relative(), "Panels": []},
        "Checksums": {key: bids._sha256(paths[key]) for key in ("dseg", "tsv", "figure")}}}
    paths["sidecar"].write_text(json.dumps(sidecar))


def test_group_table_has_no_repeated_columns_and_describes_icv(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_FLAIR.nii.gz",
                                     "sub-02/anat/sub-02_T1w.nii.gz"])
    out = root / "derivatives" / "lunet"
    model = bids.model_identity()
    bids._prepare_output(root, out, model)
    t1, flair = bids.find_scans(root, ["01"], suffixes=["T1w", "FLAIR"])[::-1]
    whole = {"Left hippocampus": 3300.0, "Right hippocampus": 3000.0}  # the whole-hippocampus model's segments
    sides = {"left": 3300.0, "right": 3000.0}
    complete_scan(t1, out, model["sha256"], whole, sides, bids._qc(labelled(3300.0, 3000.0, {
        "mode": "whole-head", "intracranial": {"volume_ml": 1500.0}})))
    complete_scan(flair, out, model["sha256"], whole, sides, bids._qc(labelled(3300.0, 3000.0, {"mode": "whole-head"})))
    from LUnetSegmentationLib.apps.bids import group

    summary = group.run_group(root, out, echo=lambda *_: None)  # no --suffix: every contrast segmented
    assert summary["ok"] == 2 and summary["missing"] == 1  # sub-02's T1w was not segmented
    with open(out / "volumes.tsv", newline="") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        handle.seek(0)
        rows = {row["source"]: row for row in csv.DictReader(handle, delimiter="\t")}
    assert len(header) == len(set(header)), header
    assert header.count("left_hippocampus_mm3") == 1 and "hippocampus_mm3" not in header
    described = json.loads((out / "volumes.json").read_text())
    assert list(described) == header
    for column in ("intracranial_volume_ml", "left_fraction_of_icv", "right_fraction_of_icv", "asymmetry_index", "suffix"):
        assert column in header
    assert described["intracranial_volume_ml"]["Units"] == "mL" and "never approximated" in described["intracranial_volume_ml"]["Description"]
    assert "NOT an intracranial volume" in described["head_scale"]["Description"]
    t1_row, flair_row = rows["sub-01/anat/sub-01_T1w.nii.gz"], rows["sub-01/anat/sub-01_FLAIR.nii.gz"]
    assert float(t1_row["intracranial_volume_ml"]) == 1500.0
    assert float(t1_row["left_fraction_of_icv"]) == pytest.approx(3300.0 / 1_500_000.0, rel=1e-3)
    assert float(t1_row["right_fraction_of_icv"]) == pytest.approx(3000.0 / 1_500_000.0, rel=1e-3)
    assert float(t1_row["asymmetry_index"]) == pytest.approx(measures.asymmetry_index(3300.0, 3000.0), abs=1e-3)
    assert flair_row["suffix"] == "FLAIR" and flair_row["intracranial_volume_ml"] == "n/a"
    assert flair_row["left_fraction_of_icv"] == "n/a" and flair_row["status"] == "ok"
    assert rows["sub-02/anat/sub-02_T1w.nii.gz"]["status"] == "missing"
    report = (out / "report.html").read_text()
    assert "ICV mL" in report and report.count("<th>Left hippocampus mm³</th>") == 0
    only_flair = group.run_group(root, out, echo=lambda *_: None, suffixes=["FLAIR"])
    assert [row["source"] for row in only_flair["rows"]] == ["sub-01/anat/sub-01_FLAIR.nii.gz"]


def test_derivatives_carry_bidsignore_and_readme_without_overwriting_the_users(tmp_path):
    root = dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz"])
    out = root / "derivatives" / "lunet"
    out.mkdir(parents=True)
    (out / "README").write_text("my own notes\n")
    bids._prepare_output(root, out, bids.model_identity())
    assert (out / "README").read_text() == "my own notes\n"
    ignored = (out / ".bidsignore").read_text().splitlines()
    assert {"/volumes.tsv", "/volumes.json", "/report.html", "/logs/", "/sub-*/figures"} <= set(ignored)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetLinks"] == {"raw": "../.."}
