"""The cohort and desktop-Apply benchmarks measure the path the product takes: the batched
whole-head run must give the shipped path's labels voxel for voxel (it once localized by the
template registration after the product had moved to the learned localizer, and matched
results to the wrong scans when crops finished out of order), and the Apply benchmark must
run the module's own worker. Figures are printed by the benchmarks, never asserted here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
pytest.importorskip("torch")
pytest.importorskip("distributed")


@pytest.mark.slow
def test_batched_cohort_gives_the_shipped_labels_for_every_scan(wholebrain_dir, tmp_path):
    import cohort

    out = tmp_path / "batched.json"
    # 5 scans cycling over the shared ones, in batches of 2: crops reach the network out of order.
    assert cohort.main(["--batched", "--device", "cpu", "--data", str(wholebrain_dir), "--scans", "5", "--batch", "2",
                        "--workers", "2", "--check", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["scans"] == 5 and sum(result["batches"]) == 5
    checks = result["check_against_label_image"]
    assert len(checks) == 5 and all(check["voxels_equal"] == 1.0 for check in checks), checks
    assert not Path(checks[0]["scan"]).is_absolute()  # results name scans, not this machine's folders


@pytest.mark.slow
def test_module_apply_runs_the_modules_worker_cold_then_warm(wholebrain_dir, tmp_path):
    import module_apply

    out = tmp_path / "apply.json"
    scan = wholebrain_dir / "fs_norm" / "norm.nii.gz"
    assert module_apply.main(["--parent", "files", "--device", "cpu", "--repeat", "2", "--scans", str(scan),
                              "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    row = result["scans"][0]
    assert result["parent"] == "files" and row["scan"] == "norm.nii.gz" and row["warm_runs"] == 1
    assert row["cold"]["segments"] == 2 and row["cold"]["device"] == "cpu"  # both hippocampi, as the module shows them
    assert row["cold"]["worker_cpu_s"] > 0 and row["warm_median"]["wall_s"] > 0
