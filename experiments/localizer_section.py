"""The learned localizer's section of docs/RESULTS.md, from its JSON results:
docs/results/localizer_synthetic.json (experiments/localizer_eval.py),
docs/results/icv_wholebrain.json (experiments/icv_check.py) and
docs/results/pose_wholebrain.json (experiments/pose_check.py)."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def synthetic_table(report: dict) -> list[str]:
    lines = [
        f"Held-out synthetic heads (label maps {', '.join(report['held_out_label_maps'])}, never seen in training), "
        f"each through the runtime's own path; thresholds: {report['thresholds']}. Command: `{report['command']}`",
        "",
        "| variant | heads | sides in view: found | box holds >= 95 % of it | heads with both sides hit | sides cut by the field of view or without hippocampus: refused | found anyway | intracranial volume error, median / 95th pct | CPU-s (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["variants"]:
        icv = row.get("icv_relative_error") or {}
        lines.append(
            f"| {row['variant']} | {row['heads']} | {_percent(row['found'])} | {_percent(row['hit'])} | "
            f"{_percent(row['both_sides_hit_heads'])} | {_percent(row['refused_correctly'])} of {row['sides_cut_or_absent']} | "
            f"{row['false_sides']} | {_percent(icv.get('median'))} / {_percent(icv.get('p95'))} | {row['cpu_s_median']:.2f} |")
    lines += ["", "A side without hippocampus tissue (a resection cavity, a tumour over it) is still *located* by the localizer: "
              "deciding that no hippocampus is there is the segmentation network's presence check, whose result is in the "
              "volume-agreement table (resected sides).", ""]
    return lines


def real_table(report: dict) -> list[str]:
    lines = [f"Real whole heads (no intracranial truth exists for them here). Command: `{report['command']}`", "",
             "| scan | intracranial volume (mL) | cut by the field of view | FreeSurfer labels, a lower bound (mL) | peer eTIV (mL) | localizer CPU-s |",
             "|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['scan']} | {row.get('icv_ml', row.get('error', '-'))} | {'yes (withheld)' if row.get('cut') else 'no'} | "
                     f"{row.get('aseg_labelled_ml', '-')} | {row.get('peer_etiv_ml', '-')} | {row['localizer_cpu_s']} |")
    peer = report.get("against_peer")
    if peer:
        lines += ["", f"Against the peer's eTIV over the {peer['n']} scans whose estimate is not withheld: r {peer['pearson_r']}, "
                      f"mean ratio {peer['mean_ratio']}, at most {100 * peer['max_abs_difference']:.1f} % apart."]
    return lines + [""]


def pose_table(report: dict) -> list[str]:
    labels = {"shipped": "as shipped (yaw, roll and pitch)", "yaw_roll_only": "yaw and roll only (before the pitch step)"}
    lines = [f"Head pose on the real heads: each scan's header turned by {report['degrees']} degrees about the left-right "
             f"axis (pitch) or the vertical axis (yaw), the same voxels in another pose, through the shipped path; crops "
             f"turned to the training heads' pitch ({report['crop_pose']} degrees) or not. Volume variation over the poses "
             f"per scan and side. Command: `{report['command']}`", "",
             "| crops turned for | head turned about | median CV | largest CV | sides not reported |", "|---|---|---|---|---|"]
    for key, figures in report["summary"].items():
        mode, turn = key.rsplit("_", 1)
        lines.append(f"| {labels.get(mode, mode)} | {turn} | {_percent(figures['median_cv'])} | {_percent(figures['max_cv'])} | "
                     f"{figures['sides_not_reported']} of {figures['side_poses']} |")
    return lines + ["", "Where the field of view is tight around the brain (a turned pose makes the intracranial space touch "
                        "its edge), the pitch is read from the hippocampi's own long axes instead of the intracranial "
                        "space's, whose long axis would be the cut's.", ""]


def localizer_section() -> list[str]:
    synthetic, real = _load("localizer_synthetic.json"), _load("icv_wholebrain.json")
    lines = ["## The learned localizer and the intracranial volume", ""]
    if synthetic is None and real is None:
        return lines + ["Not measured yet: run `experiments/localizer_eval.py` and `experiments/icv_check.py`.", ""]
    if synthetic is not None:
        lines += synthetic_table(synthetic)
    if real is not None:
        lines += real_table(real)
    pose = _load("pose_wholebrain.json")
    if pose is not None:
        lines += pose_table(pose)
    return lines
