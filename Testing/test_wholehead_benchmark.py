"""benchmarks/wholehead.py on a fake tiny run: a stand-in CLI and peer that write tiny outputs in
well under a second, so the measuring, parsing, Dice and report code is checked without the
real pipeline's minutes. No timing is asserted."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

nibabel = pytest.importorskip("nibabel")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "wholehead.py"
SHAPE = (12, 10, 8)
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])
AFFINE[:3, 3] = [-9.0, -7.5, -8.0]
LEFT = (slice(1, 5), slice(2, 6), slice(2, 6))  # 64 voxels
RIGHT = (slice(7, 11), slice(2, 6), slice(2, 6))  # 64 voxels
HALF_RIGHT = (slice(7, 9), slice(2, 6), slice(2, 6))  # 32 of them


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("wholehead_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SEG_HEADER = """NRRD0004
type: unsigned char
dimension: 3
sizes: 12 10 8
encoding: gzip
Segment0_ID:=S_a
Segment0_LabelValue:={v0}
Segment0_Layer:=0
Segment0_Name:={n0}
Segment1_ID:=S_b
Segment1_LabelValue:={v1}
Segment1_Layer:=0
Segment1_Name:={n1}

"""

FAKE_CLI = textwrap.dedent('''
    """A stand-in for `python -m LUnetSegmentationLib segment` with the real CLI's options."""
    import argparse, json, os, sys
    from pathlib import Path
    import nibabel, numpy as np

    HEADER = {header!r}
    parser = argparse.ArgumentParser(prog="python -m LUnetSegmentationLib")
    commands = parser.add_subparsers(dest="command", required=True)
    segment = commands.add_parser("segment")
    segment.add_argument("inputs", nargs="+")
    segment.add_argument("--out", required=True)
    segment.add_argument("--labelmap", action="store_true")
    segment.add_argument("--device", default="auto")
    segment.add_argument("--quiet", action="store_true")
    if not os.environ.get("FAKE_NO_TIMINGS"):
        segment.add_argument("--timings", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True)
    cases = []
    for path in args.inputs:
        image = nibabel.load(path)
        name = Path(path).name
        case = name.split(".")[0]
        labels = np.zeros(image.shape, np.uint8)
        labels[1:5, 2:6, 2:6] = 1     # left: exactly the reference
        labels[7:9, 2:6, 2:6] = 2     # right: half of the reference
        (out / (case + ".seg.nrrd")).write_text(HEADER.format(v0=1, n0="Left hippocampus", v1=2, n1="Right hippocampus"))
        nibabel.Nifti1Image(labels, image.affine).to_filename(str(out / (case + ".nii.gz")))
        cases.append({{"case": case, "read_s": 0.01, "localize_s": 0.02, "network_s": 0.03, "write_s": 0.01,
                      "total_s": 0.08, "brand_new_stage_s": 0.005}})
    if getattr(args, "timings", None):
        Path(args.timings).write_text(json.dumps({{"imports_s": 0.1, "cases": cases}}))
''')

FAKE_PEER = textwrap.dedent('''
    """A stand-in for hippodeep: 0-255 masks beside its input, named {stem}_mask_L/R.nii.gz."""
    import sys
    from pathlib import Path
    import nibabel, numpy as np

    scan = Path(sys.argv[1])
    image = nibabel.load(str(scan))
    stem = scan.name[:-len(".nii.gz")] if scan.name.endswith(".nii.gz") else scan.name.rsplit(".", 1)[0]
    left = np.zeros(image.shape, np.uint8)
    left[1:5, 2:6, 2:6] = 255
    right = np.full(image.shape, 100, np.uint8)   # below the 128 threshold: outside
    right[7:11, 2:6, 2:6] = 200
    nibabel.Nifti1Image(left, image.affine).to_filename(str(scan.parent / (stem + "_mask_L.nii.gz")))
    nibabel.Nifti1Image(right, image.affine).to_filename(str(scan.parent / (stem + "_mask_R.nii.gz")))
''')


@pytest.fixture(scope="module")
def fake_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("wholehead")
    data = root / "data"
    (data / "subj").mkdir(parents=True)
    (data / "other").mkdir()
    scan = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    nibabel.Nifti1Image(scan, AFFINE).to_filename(str(data / "subj" / "t1.nii.gz"))
    reference = np.zeros(SHAPE, np.int16)
    reference[LEFT] = 17
    reference[RIGHT] = 53
    reference[0, 0, 0] = 2  # other FreeSurfer labels are ignored
    nibabel.Nifti1Image(reference, AFFINE).to_filename(str(data / "subj" / "aparc.a2009s+aseg.nii.gz"))
    nibabel.MGHImage(scan, AFFINE).to_filename(str(data / "other" / "head.mgz"))  # no reference: no Dice
    lib = root / "lib" / "LUnetSegmentationLib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "__main__.py").write_text(FAKE_CLI.format(header=SEG_HEADER))
    peer = root / "fake_peer.py"
    peer.write_text(FAKE_PEER)
    return {"root": root, "data": data, "lib": root / "lib", "peer": peer}


def _run(fake_setup, name, extra_env=None, peer=True, repeat=2):
    out = fake_setup["root"] / f"{name}.json"
    command = [sys.executable, str(SCRIPT), "--scans", str(fake_setup["data"]), "--repeat", str(repeat),
               "--python", sys.executable, "--lib", str(fake_setup["lib"]), "--out", str(out)]
    if peer:
        command += ["--peer-cmd", f"{sys.executable} {fake_setup['peer']} {{scan}}"]
    env = dict(os.environ, **(extra_env or {}))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


@pytest.fixture(scope="module")
def fake_run(fake_setup):
    return _run(fake_setup, "with_peer")


def test_scans_skip_label_files_and_get_their_reference(fake_run):
    _, report = fake_run
    names = [scan["scan"] for scan in report["scans"]]
    assert names == ["other/head.mgz", "subj/t1.nii.gz"]
    by_name = {scan["scan"]: scan for scan in report["scans"]}
    assert by_name["other/head.mgz"]["reference"] is None
    reference = by_name["subj/t1.nii.gz"]["reference"]
    assert reference["left"] == 17 and reference["right"] == 53 and reference["path"].endswith("aparc.a2009s+aseg.nii.gz")
    assert by_name["subj/t1.nii.gz"]["voxel_mm"] == [1.5, 1.5, 2.0] and by_name["subj/t1.nii.gz"]["shape"] == list(SHAPE)


def test_every_run_is_measured_and_interleaved(fake_run):
    _, report = fake_run
    assert report["repeat"] == 2
    for scan in report["scans"]:
        for who in ("ours", "peer"):
            runs = scan[who]["runs"]
            assert len(runs) == 2 and all(run["rc"] == 0 for run in runs)
            for run in runs:
                assert run["cpu_s"] >= 0 and run["wall_s"] > 0 and run["peak_mb"] > 0
                assert abs(run["cpu_s"] - (run["user_s"] + run["sys_s"])) < 0.01
            assert scan[who]["median"]["ok_runs"] == 2
        ours, peer = scan["ours"]["median"], scan["peer"]["median"]
        assert scan["ratio"]["cpu"] == pytest.approx(ours["cpu_s"] / peer["cpu_s"], abs=1e-3)
        assert scan["ratio"]["wall"] == pytest.approx(ours["wall_s"] / peer["wall_s"], abs=1e-3)
    machine = report["machine"]
    assert machine["cpu_count"] >= 1
    assert report["ours"]["timings_option"] is True and "--timings" in report["ours"]["command"]
    assert report["ours"]["versions"]["numpy"] == np.__version__


def test_stage_breakdown_keeps_unknown_keys(fake_run):
    stdout, report = fake_run
    stages = report["scans"][0]["ours"]["median"]["stages"]
    for key in ("imports_s", "read_s", "localize_s", "network_s", "write_s", "brand_new_stage_s", "rest_s"):
        assert key in stages, (key, stages)
    assert "total_s" not in stages
    assert stages["network_s"] == pytest.approx(0.03)
    assert "net 0.0" in stdout and "brand_new_stage" in stdout


def test_dice_per_side_from_the_seg_nrrd_table(fake_run):
    stdout, report = fake_run
    scan = {s["scan"]: s for s in report["scans"]}["subj/t1.nii.gz"]
    ours, peer = scan["ours"]["score"], scan["peer"]["score"]
    assert ours["dice"]["left"] == 1.0
    assert ours["dice"]["right"] == pytest.approx(2 * 32 / (32 + 64), abs=1e-4)
    assert peer["dice"] == {"left": 1.0, "right": 1.0, "mean": 1.0}
    voxel = 1.5 * 1.5 * 2.0
    assert ours["volume_mm3"]["right"] == pytest.approx(32 * voxel) and ours["reference_mm3"]["left"] == pytest.approx(64 * voxel)
    assert [entry["side"] for entry in scan["ours"]["label_table"]] == ["left", "right"]
    assert ours["protocol"] == peer["protocol"] == "FreeSurfer aparc+aseg"
    summary = report["summary"]
    assert summary["ours"]["dice_per_side_mean_by_protocol"] == {
        "FreeSurfer aparc+aseg": {"mean": pytest.approx((1.0 + 2 * 32 / 96) / 2, abs=1e-4), "scans": 1}}
    assert summary["peer"]["dice_per_side_mean_by_protocol"]["FreeSurfer aparc+aseg"]["mean"] == 1.0
    assert "| subj/t1.nii.gz" in stdout and "1.000/0.667" in stdout and report["table"][0].startswith("| scan")


def test_volumes_for_every_scan_and_implausible_sides_flagged(fake_run):
    stdout, report = fake_run
    voxel = 1.5 * 1.5 * 2.0
    for scan in report["scans"]:  # the scan without reference labels gets volumes too
        assert scan["ours"]["score"]["volume_mm3"] == {"left": pytest.approx(64 * voxel), "right": pytest.approx(32 * voxel)}
        assert scan["peer"]["score"]["volume_mm3"]["right"] == pytest.approx(64 * voxel)
        assert scan["ours"]["score"]["implausible_sides"] == ["left", "right"]  # a tiny fake is no adult hippocampus
    assert "dice" not in {s["scan"]: s for s in report["scans"]}["other/head.mgz"]["ours"]["score"]
    assert report["summary"]["ours"]["implausible_volume_scans"] == ["other/head.mgz", "subj/t1.nii.gz"]
    assert report["summary"]["ours"]["unscored_scans"] == []
    assert "288/144!" in stdout
    assert report["command"].startswith("PYTHONPATH=")


def test_runs_without_timings_option_or_peer(fake_setup):
    stdout, report = _run(fake_setup, "plain", extra_env={"FAKE_NO_TIMINGS": "1"}, peer=False, repeat=1)
    assert report["peer"] is None and report["ours"]["timings_option"] is False
    assert "--timings" not in report["ours"]["command"]
    for scan in report["scans"]:
        assert "stages" not in scan["ours"]["median"] and "peer" not in scan and scan["ours"]["runs"][0]["rc"] == 0
    assert "ratio_ours_over_peer" not in report["summary"]
    assert "not supported by this CLI" in stdout


def test_seg_nrrd_table_and_timings_parsing(tmp_path):
    bench = _load_benchmark()
    seg = tmp_path / "case.seg.nrrd"
    header = "NRRD0004\n" + "".join(
        f"Segment{i}_LabelValue:={i + 1}\nSegment{i}_Name:={name}\nSegment{i}_Layer:=0\n"
        for i, name in enumerate(["Left hippocampus anterior", "Left hippocampus posterior",
                                  "Right hippocampus anterior", "Right hippocampus posterior"]))
    seg.write_bytes(header.encode() + b"\n\x1f\x8b binary gzip data \n\n more")
    table = bench.read_seg_nrrd_table(seg)
    assert [(e["value"], e["side"]) for e in table] == [(1, "left"), (2, "left"), (3, "right"), (4, "right")]
    crop = tmp_path / "crop.seg.nrrd"
    crop.write_text("NRRD0004\nSegment0_LabelValue:=1\nSegment0_Name:=Hippocampus anterior\n\n")
    assert bench.read_seg_nrrd_table(crop)[0]["side"] is None

    assert bench.parse_timings(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert bench.parse_timings(tmp_path / "bad.json") is None
    (tmp_path / "t.json").write_text(json.dumps({"imports_s": 1.0, "model_load_s": 0.5, "cases": [
        {"case": "a", "read_s": 0.5, "network_s": 2.0, "total_s": 3.0}]}))
    parsed = bench.parse_timings(tmp_path / "t.json", wallSeconds=5.0)
    assert parsed["stages"] == {"imports_s": 1.0, "model_load_s": 0.5, "read_s": 0.5, "network_s": 2.0}
    assert parsed["rest_s"] == pytest.approx(5.0 - 1.0 - 0.5 - 3.0)
    (tmp_path / "cpu.json").write_text(json.dumps({"imports_s": 1.0, "imports_cpu_s": 0.9, "threads": 2, "cases": [
        {"case": "a", "network_s": 2.0, "network_cpu_s": 3.5}, {"case": "b", "network_s": 1.0, "network_cpu_s": 1.5}]}))
    parsed = bench.parse_timings(tmp_path / "cpu.json", wallSeconds=4.5)
    assert parsed["stages"] == {"imports_s": 1.0, "network_s": 3.0}
    assert parsed["cpu_stages"] == {"imports_cpu_s": 0.9, "network_cpu_s": 5.0} and parsed["info"] == {"threads": 2}
    assert parsed["rest_s"] == pytest.approx(0.5)  # no total_s: the stage sums count
    summary = bench.summarize_runs([{"rc": 0, "cpu_s": 1, "user_s": 1, "sys_s": 0, "wall_s": 4.5, "peak_mb": 9, "timings": parsed}])
    assert summary["cpu_stages"]["network_cpu_s"] == 5.0 and summary["stages"]["rest_s"] == pytest.approx(0.5)

    assert bench.strip_suffix("norm.nii.gz") == "norm" and bench.strip_suffix("norm.mgz") == "norm"
    assert bench.peer_command("py run.py {scan} --in {dir}", Path("/x/y/norm.mgz")) == ["py", "run.py", "/x/y/norm.mgz", "--in", "/x/y"]


def test_reference_is_resampled_when_grids_differ():
    bench = _load_benchmark()
    data = np.zeros((4, 4, 4), np.int16)
    data[1, 2, 3] = 17
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 3.0  # x axis reversed: voxel i maps to 3 - i
    out = bench.resample_nearest(data, np.eye(4), (4, 4, 4), flipped)
    assert out[2, 2, 3] == 17 and out.sum() == 17


def test_the_written_report_names_no_folder_of_this_machine(fake_run):
    # The fake scans, CLI and peer live in pytest's temporary folder: the report must still say
    # /path/to/..., as the committed docs/results/wholehead_cpu.json must.
    _, report = fake_run
    text = json.dumps(report)
    assert "/tmp/" not in text and str(REPO) not in text
    assert "/path/to/" in report["peer"]["command"]
