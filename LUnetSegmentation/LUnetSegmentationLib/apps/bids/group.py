"""The BIDS App's group level: one row per scan of the dataset from the participant stage's
derivatives, written as OUT_DIR/volumes.tsv with its column descriptions in volumes.json, and the
quality report OUT_DIR/report.html (report.py).

The table's columns and their descriptions come from one list (`_columns`), so the two files
cannot disagree, and a segment column that would repeat a side column (the whole-hippocampus
model's "Left hippocampus" is left_hippocampus_mm3 already) is not written twice.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ... import __version__
from ...runtime.preprocess import InputError
from .app import _write_json, _write_text, scan_complete
from .contrasts import SUFFIX_CONTRAST
from .layout import SCAN_NAME, find_scans

ICV_NOTE = ("n/a where the localizer gave no intracranial volume (crop or region-of-interest input, or a version "
            "without its intracranial class): never approximated")


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def segmented_suffixes(out_dir: Path) -> list[str]:
    """The source suffixes (T1w, FLAIR, ...) the participant stage wrote sidecars or error records
    for in `out_dir`, sorted; the group stage reports all of them unless --suffix says otherwise."""
    sources = []
    for path in list(Path(out_dir).glob("sub-*/**/anat/*_dseg.json")) + list(Path(out_dir).glob("logs/*_error.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        source = (data.get("Sources") or [""])[0] if "Sources" in data else data.get("Source", "")
        sources.append(str(source).rsplit("/", 1)[-1])
    suffixes = {match["suffix"] for match in map(SCAN_NAME.match, sources) if match and match["suffix"] in SUFFIX_CONTRAST}
    return sorted(suffixes)


def collect_rows(bids_dir, out_dir, participants=None, sessions=None, suffixes=None) -> tuple[list[dict], dict]:
    """One row per scan of the dataset (ok, error or missing) from the derivatives; and the model."""
    out_dir = Path(out_dir)
    try:
        made_by = json.loads((out_dir / "dataset_description.json").read_text())["GeneratedBy"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise InputError(f"{out_dir} has no LUnetSegmentation results (no valid dataset_description.json): run the "
                         "participant stage first.") from error
    model = {"id": made_by.get("ModelId"), "version": made_by.get("ModelVersion"), "sha256": made_by.get("ModelSHA256")}
    rows = []
    for scan in find_scans(bids_dir, participants, sessions, suffixes or segmented_suffixes(out_dir) or None):
        paths = scan.outputs(out_dir)
        row = {"scan": scan.scan_id, "participant_id": f"sub-{scan.subject}",
               "session_id": f"ses-{scan.session}" if scan.session else "n/a", "source": scan.relative,
               "suffix": scan.suffix, "status": "missing", "error": "", "volumes": {}}
        sidecar = scan_complete(scan, out_dir, model["sha256"])
        if sidecar is not None:
            lunet = sidecar["LUnet"]
            qc = lunet.get("QC", {})
            sides = lunet.get("SideVolumesMm3", {})
            row.update(
                status="ok", volumes=lunet.get("VolumesMm3", {}), left_mm3=sides.get("left"), right_mm3=sides.get("right"),
                total_mm3=sum(lunet.get("VolumesMm3", {}).values()), mode=qc.get("Mode"),
                asymmetry_index=qc.get("AsymmetryIndex"), intracranial_volume_ml=qc.get("IntracranialVolumeMl"),
                left_fraction_of_icv=qc.get("LeftFractionOfIcv"), right_fraction_of_icv=qc.get("RightFractionOfIcv"),
                head_scale=qc.get("HeadScale"), total_normalised_mm3=qc.get("TotalNormalisedMm3"),
                localization_correlation=qc.get("LocalizationCorrelation"), mean_entropy=qc.get("MeanEntropy"),
                mean_probability=qc.get("MeanProbability"), warnings=lunet.get("Warnings", []),
                seconds=lunet.get("Seconds"), device=lunet.get("Device"), figure=lunet.get("Figure", {}).get("File"),
                figure_panels=lunet.get("Figure", {}).get("Panels", []), notes="; ".join(lunet.get("Notes", [])),
            )
        elif paths["sidecar"].exists() or paths["dseg"].exists():
            row["stale"] = True  # partial, damaged, replaced source, or another model's: participant redoes it
        elif paths["error"].is_file():
            try:
                error = json.loads(paths["error"].read_text())
                row.update(status="error", error=error.get("Error", ""), seconds=error.get("Seconds"))
            except (OSError, ValueError):
                row.update(status="error", error="(unreadable error record)")
        rows.append(row)
    return rows, model


def segment_columns(rows) -> dict[str, str]:
    """column -> segment name for the per-segment volumes, in first-seen order, leaving out those
    that would repeat the side columns (a whole-hippocampus model's segments are the sides)."""
    columns = {}
    for row in rows:
        for name in row["volumes"]:
            column = f"{_snake(name)}_mm3"
            if column not in ("left_hippocampus_mm3", "right_hippocampus_mm3") and column not in columns:
                columns[column] = name
    return columns


def _columns(segments: dict[str, str]) -> list[tuple[str, dict, object]]:
    """(column, its volumes.json description, how to read it from a row), in table order."""
    def key(name):
        return lambda row: row.get(name)

    def segment(name):
        return lambda row: row["volumes"].get(name)

    mm3 = "mm^3"
    return [
        ("participant_id", {"Description": "BIDS participant"}, key("participant_id")),
        ("session_id", {"Description": "BIDS session (n/a if none)"}, key("session_id")),
        ("source", {"Description": "the segmented image, relative to the BIDS dataset"}, key("source")),
        ("suffix", {"Description": "the source's BIDS suffix (its contrast: T1w, T2w, FLAIR, ...)"}, key("suffix")),
        ("status", {"Description": "ok, error (see qc_flags and error) or missing (participant stage not run)"},
         key("status")),
        ("mode", {"Description": "whole-head (both hippocampi localized) or crop (one hippocampus, side unknown)"},
         key("mode")),
        ("left_hippocampus_mm3", {"Description": "whole left hippocampus", "Units": mm3}, key("left_mm3")),
        ("right_hippocampus_mm3", {"Description": "whole right hippocampus", "Units": mm3}, key("right_mm3")),
        *[(column, {"Description": name, "Units": mm3}, segment(name)) for column, name in segments.items()],
        ("total_mm3", {"Description": "all hippocampus labels", "Units": mm3}, key("total_mm3")),
        ("intracranial_volume_ml", {
            "Description": "intracranial volume, from the learned localizer's intracranial class (runtime/measures.py "
                           f"intracranial_volume_ml); {ICV_NOTE}", "Units": "mL"}, key("intracranial_volume_ml")),
        ("left_fraction_of_icv", {
            "Description": f"left_hippocampus_mm3 / (intracranial_volume_ml x 1000), a head-size-normalised volume; "
                           f"{ICV_NOTE}"}, key("left_fraction_of_icv")),
        ("right_fraction_of_icv", {
            "Description": f"right_hippocampus_mm3 / (intracranial_volume_ml x 1000), a head-size-normalised volume; "
                           f"{ICV_NOTE}"}, key("right_fraction_of_icv")),
        ("asymmetry_index", {
            "Description": "(left - right) / ((left + right) / 2): positive when the left hippocampus is larger "
                           "(runtime/measures.py asymmetry_index, as in summary.csv and the Slicer table)"},
         key("asymmetry_index")),
        ("head_scale", {
            "Description": "brain volume relative to the MNI ICBM 2009a template, from the localization affine "
                           "(determinant): an atlas-scaling factor, NOT an intracranial volume (that is "
                           "intracranial_volume_ml); n/a where the localization gave no affine"}, key("head_scale")),
        ("total_normalised_mm3", {"Description": "total_mm3 / head_scale (atlas-scaling normalised)", "Units": mm3},
         key("total_normalised_mm3")),
        ("localization_correlation", {"Description": "correlation of the aligned scan with the template inside the brain"},
         key("localization_correlation")),
        ("mean_entropy", {"Description": "mean normalised softmax entropy inside the segments (0 certain, 1 uniform), "
                                         "over the test-time passes; voxel-weighted over the sides"}, key("mean_entropy")),
        ("mean_probability", {"Description": "mean foreground probability inside the segments"}, key("mean_probability")),
        ("qc_score", {"Description": "sum of the QC flags' weights (report.html sorts by it)"},
         lambda row: float(round(row["score"], 1))),
        ("qc_flags", {"Description": "QC flags, see report.html"},
         lambda row: "; ".join(text for text, _ in row["flags"])),
        ("error", {"Description": "why a scan failed"}, key("error")),
    ]


def _cell(value) -> str:
    if value is None or value == "":
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("\t", " ").replace("\n", " ")


def run_group(bids_dir, out_dir, participants=None, sessions=None, echo=print, suffixes=None) -> dict:
    """volumes.tsv (+ volumes.json) and report.html for every scan of the dataset."""
    from . import report

    out_dir = Path(out_dir)
    rows, model = collect_rows(bids_dir, out_dir, participants, sessions, suffixes)
    rows = report.assess(rows)
    segments = segment_columns(rows)
    columns = _columns(segments)
    lines = ["\t".join(name for name, _, _ in columns)]
    for row in sorted(rows, key=lambda r: r["source"]):
        lines.append("\t".join(_cell(read(row)) for _, _, read in columns))
    _write_text(out_dir / "volumes.tsv", "\n".join(lines) + "\n")
    _write_json(out_dir / "volumes.json", {name: description for name, description, _ in columns})
    dataset = {"name": str(Path(bids_dir).resolve().name), "version": __version__, "model": model}
    _write_text(out_dir / "report.html", report.render_html(rows, dataset, list(segments.values())))
    counts = {status: sum(1 for r in rows if r["status"] == status) for status in ("ok", "error", "missing")}
    flagged = sum(1 for r in rows if r["flags"])
    echo(f"{len(rows)} scan(s): {counts['ok']} segmented, {counts['error']} failed, {counts['missing']} not processed, "
         f"{flagged} flagged. Wrote {out_dir / 'volumes.tsv'} and {out_dir / 'report.html'}.")
    return {"scans": len(rows), **counts, "flagged": flagged, "rows": rows}
