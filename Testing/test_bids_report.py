"""QC flags and the report page of the BIDS App (report.py), on rows made up for the purpose:
every flag fires when it should, not otherwise, and the worst scans come first."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LUnetSegmentation"))

from LUnetSegmentationLib.apps.bids import report  # noqa: E402
from LUnetSegmentationLib.runtime.pipeline import SegmentSpec  # noqa: E402


def row(scan, left=3000.0, right=3000.0, status="ok", correlation=0.6, entropy=None, error="", empty=False):
    volumes = {"Left hippocampus anterior": 0.0 if empty else left / 2, "Left hippocampus posterior": left / 2,
               "Right hippocampus anterior": right / 2, "Right hippocampus posterior": right / 2}
    if status != "ok":
        return {"scan": scan, "status": status, "error": error, "volumes": {}}
    return {"scan": scan, "status": "ok", "volumes": volumes, "left_mm3": left, "right_mm3": right,
            "total_normalised_mm3": left + right, "asymmetry_index": (left - right) / ((left + right) / 2),
            "localization_correlation": correlation, "mean_entropy": entropy, "head_scale": 1.0}


def cohort():
    rng = np.random.default_rng(0)
    rows = [row(f"sub-{i:02d}_T1w", 3000 + rng.normal(0, 100), 3000 + rng.normal(0, 100), entropy=0.1 + rng.normal(0, 0.005))
            for i in range(1, 13)]
    rows += [
        row("sub-big_T1w", 5200, 5100),  # both sides far above the cohort
        row("sub-asym_T1w", 3300, 2500),  # 28 % asymmetry
        row("sub-weak_T1w", correlation=0.28),
        row("sub-empty_T1w", empty=True),
        row("sub-unsure_T1w", entropy=0.4),
        row("sub-broken_T1w", status="error", error="The volume 'x' is constant"),
        row("sub-todo_T1w", status="missing"),
        {**row("sub-stale_T1w", status="missing"), "stale": True},
        {**row("sub-thick_T1w"), "warnings": ["slices 5 mm thick"]},
    ]
    return rows


def flags_of(rows):
    return {r["scan"]: [text.split(":")[0] for text, _ in r["flags"]] for r in rows}


def test_each_flag_fires_where_it_should():
    rows = report.assess(cohort())
    flags = flags_of(rows)
    assert flags["sub-broken_T1w"] == ["failed"] and flags["sub-todo_T1w"] == ["not processed"]
    assert flags["sub-stale_T1w"] == ["incomplete or out of date"]
    assert flags["sub-thick_T1w"] == ["input warning"]
    assert flags["sub-big_T1w"].count("volume outlier") == 3  # left, right and the normalised total
    assert flags["sub-asym_T1w"] == ["asymmetry"] or "asymmetry" in flags["sub-asym_T1w"]
    assert flags["sub-weak_T1w"] == ["weak localization"]
    assert "empty segment" in flags["sub-empty_T1w"]
    assert flags["sub-unsure_T1w"] == ["uncertain"]
    assert all(flags[f"sub-{i:02d}_T1w"] == [] for i in range(1, 13))
    order = [r["scan"] for r in rows]
    assert order[:3] == ["sub-broken_T1w", "sub-stale_T1w", "sub-todo_T1w"]
    assert order.index("sub-empty_T1w") < order.index("sub-weak_T1w") < order.index("sub-01_T1w")
    assert [r["score"] for r in rows[3:]] == sorted((r["score"] for r in rows[3:]), reverse=True)


def test_no_z_scores_for_a_tiny_cohort():
    rows = report.assess([row("a", 3000, 3000), row("b", 3100, 3000), row("c", 9000, 9000)])
    assert all(not r["flags"] for r in rows)  # 3 scans: no volume-outlier flags, no false alarms


def test_page_lists_every_scan_worst_first_without_network():
    rows = report.assess(cohort())
    names = list(rows[2]["volumes"])
    page = report.render_html(rows, {"name": "t", "version": "1", "model": {"id": "m", "version": "1", "sha256": "ab" * 32}}, names)
    scans = re.findall(r'data-scan="([^"]+)"', page)
    assert scans == [r["scan"] for r in rows] and len(scans) == 21
    assert re.findall(r'<li><a href="#scan-([^"]+)"', page)[0] == "sub-broken_T1w"
    assert "<script" not in page and "<link" not in page and "https://" not in page
    assert page.count('class="pt flagged"') + page.count('class="pt"') == 18  # every segmented scan has both sides


def test_overlay_figure_cuts_through_each_hippocampus():
    image = sitk.GetImageFromArray(np.random.default_rng(1).normal(100, 10, (60, 80, 90)).astype(np.float32))
    image.SetSpacing((1.0, 1.0, 1.0))
    labels = np.zeros((60, 80, 90), np.uint8)
    labels[25:35, 30:50, 10:20] = 1  # one side ...
    labels[25:35, 30:50, 70:80] = 3  # ... and the other
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    specs = [SegmentSpec(1, "Hippocampus anterior", (1.0, 0.0, 0.0), "left"),
             SegmentSpec(3, "Hippocampus anterior", (0.0, 0.0, 1.0), "right")]
    rgb, panels = report.overlay_figure(image, label_image, specs)
    assert panels == ["left coronal", "left sagittal", "right coronal", "right sagittal"]
    size = int(round(report.PANEL_MM / report.PIXEL_MM))
    assert rgb.shape == (size, 4 * size + 3 * 2, 3) and rgb.dtype == np.uint8
    first, last = rgb[:, :size], rgb[:, -size:]
    red = (first[..., 0] > 200) & (first[..., 2] < 60)
    blue = (last[..., 2] > 200) & (last[..., 0] < 60)
    assert red.sum() > 50 and blue.sum() > 50  # each side's panel shows its own label's outline
