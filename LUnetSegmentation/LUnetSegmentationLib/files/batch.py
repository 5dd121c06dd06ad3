"""Segment files into an output folder: the command line's and `segmentFiles`'s path, no MRML.

    rows = segment_files(["sub-01_T1w.nii.gz", ...], "out/", labelmap=True)

Per case it reads the file, labels it (pipeline.label_image) and writes `<case>.seg.nrrd`
(segfile.py: Slicer opens it as a segmentation), optionally `<case>.nii.gz` (label values on
the input grid), and finally `summary.csv`. The model is loaded once. One bad case is reported
in its row and the others go on.

Outputs are never partial and never overwrite anything else (outputs.write_atomic: temporary
name, then a move that refuses any existing name, links included). A re-run of the same
command is a resume: a case whose outputs are complete and were written for the same input
file contents and the same model weights (recorded in the `.seg.nrrd` header) is skipped and
reported from its files; leftovers of an interrupted write are removed and the case redone;
`summary.csv` (ours, recognised by its columns) is rewritten. Any other existing file under an
output's name is refused before any work, with the list. Ctrl-C ends the batch between steps:
`summary.csv` is written with the finished cases and BatchInterrupted says how to resume.

No slicer-core import: the command line starts faster, and batch runs from Slicer's console
use no second application logic.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..runtime.preprocess import InputError

log = logging.getLogger("LUnetSegmentation")

SUMMARY_NAME = "summary.csv"
SUMMARY_FIRST_COLUMNS = ["case", "input", "status", "error", "mode"]
SUMMARY_LAST_COLUMNS = ["warnings", "seconds", "device", "notes"]
# Provenance fields of the .seg.nrrd header that make a complete earlier output reusable.
REUSE_KEYS = ("WeightsSHA256", "InputSHA256")


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: `rows` holds every case's row (finished ones and 'interrupted')."""

    def __init__(self, rows: list[dict], summary: Path):
        super().__init__("interrupted")
        self.rows = rows
        self.summary = summary


def file_sha256(path: Path) -> str:
    from ..runtime.weights import sha256sum

    return sha256sum(path)


def _planned_outputs(inputPaths, outputDir: Path, labelmap: bool) -> list[tuple[Path, str, Path, Path | None]]:
    from .volumeio import case_name

    plans, seen = [], {}
    for path in inputPaths:
        case = case_name(path)
        if case in seen:
            raise InputError(
                f"Two inputs would both write {case}.seg.nrrd: {seen[case]} and {path}. Rename one of them or "
                "segment them into different output folders."
            )
        seen[case] = path
        plans.append((Path(path), case, outputDir / f"{case}.seg.nrrd", outputDir / f"{case}.nii.gz" if labelmap else None))
    return plans


def _header_fields(path: Path) -> dict[str, str]:
    """The metadata of an output file's header, read without its voxels and even when the file
    is truncated (a damaged output of ours must still be recognised as ours): NRRD key/value
    lines, or a NIfTI header's description; {} when unreadable."""
    import gzip

    try:
        if path.name.lower().endswith(".nrrd"):
            with open(path, "rb") as handle:
                head = handle.read(1 << 16)
            text = head.split(b"\n\n", 1)[0].decode("latin-1")
            return dict(line.split(":=", 1) for line in text.splitlines() if ":=" in line)
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as handle:
            header = handle.read(348)
        if len(header) < 348:
            return {}
        description = header[148:228].split(b"\0", 1)[0].decode("latin-1")  # NIfTI-1 'descrip'
        return {"ITK_FileNotes": description}
    except (OSError, EOFError, ValueError):
        return {}


def _provenance(fields: dict[str, str]) -> dict[str, str]:
    from .segfile import PROVENANCE_PREFIX as prefix

    return {k[len(prefix):]: v for k, v in fields.items() if k.startswith(prefix)}


def _is_our_summary(path: Path) -> bool:
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        return False
    return bool(first) and next(csv.reader(first))[:3] == SUMMARY_FIRST_COLUMNS[:3]


def _reusable(plan, input_sha, weights_sha) -> bool:
    """True when this case's outputs are complete and were made from this input by this model."""
    from .outputs import is_complete_output

    _, _, seg_path, label_path = plan
    if not is_complete_output(seg_path, "seg"):
        return False
    provenance = _provenance(_header_fields(seg_path))
    if provenance.get("WeightsSHA256") != weights_sha or provenance.get("InputSHA256") != input_sha:
        return False
    return label_path is None or (is_complete_output(label_path, "labels") and _labelmap_matches(label_path, provenance))


def _labelmap_matches(label_path: Path, provenance: dict) -> bool:
    notes = _header_fields(label_path).get("ITK_FileNotes", "")  # the NIfTI description, as _header_fields reads it
    return notes == _labelmap_note(provenance.get("WeightsSHA256", ""), provenance.get("InputSHA256", ""))


def _labelmap_note(weights_sha: str, input_sha: str) -> str:
    # NIfTI's description field holds 80 characters: enough for both hashes' first 24 digits.
    return f"LUnet w{weights_sha[:24]} i{input_sha[:24]}"


def _check_existing(plans, summaryPath: Path, input_shas: dict, weights_sha: str) -> set[str]:
    """Cases to skip (complete outputs of an earlier run of the same input and model). Refuses,
    before any work, when another existing file holds an output's name."""
    from .outputs import is_complete_output, remove_partials

    removed = remove_partials(summaryPath.parent)
    if removed:
        log.warning("Removed %d temporary file(s) of an interrupted earlier run.", len(removed))
    skip, foreign, damaged = set(), [], []
    for plan in plans:
        _, case, seg_path, label_path = plan
        outputs = [p for p in (seg_path, label_path) if p is not None]
        present = [p for p in outputs if p.is_symlink() or p.exists()]
        if not present:
            continue
        if _reusable(plan, input_shas[case], weights_sha):
            skip.add(case)
            continue
        # The case is redone: its files may go only if they are ours and either damaged (an
        # earlier run's leftovers) or made from this very input by this very model.
        note = _labelmap_note(weights_sha, input_shas[case])
        for path in present:
            fields = _header_fields(path) if not path.is_symlink() else {}
            provenance = _provenance(fields)
            file_note = fields.get("ITK_FileNotes", "")
            ours = bool(provenance) or file_note.startswith("LUnet w")
            same_run = (provenance.get("WeightsSHA256") == weights_sha and provenance.get("InputSHA256") == input_shas[case]) \
                or file_note == note
            if ours and (same_run or not is_complete_output(path)):
                damaged.append(path)
            else:
                foreign.append(path)
    if summaryPath.is_symlink() or (summaryPath.exists() and not _is_our_summary(summaryPath)):
        foreign.append(summaryPath)
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InputError(
            f"Refusing to overwrite existing output(s): {shown}. They were not written by an earlier run of this "
            "command on the same input and model. Choose a new output folder or remove them."
        )
    for path in damaged:
        log.warning("Removing the incomplete or orphaned output %s of an earlier run; it is made again.", path)
        path.unlink()
    return skip


def _rows_from_files(plan, row: dict) -> None:
    """Fill a skipped case's row (volumes, mode, device) from its complete earlier outputs."""
    _, _, seg_path, _ = plan
    fields = _header_fields(seg_path)
    provenance = _provenance(fields)
    image = sitk.ReadImage(str(seg_path))
    counts = np.bincount(sitk.GetArrayViewFromImage(image).ravel(), minlength=256)
    voxel = float(np.prod(image.GetSpacing()))
    index = 0
    sides: dict[str, float] = {}
    while f"Segment{index}_Name" in fields:
        name = fields[f"Segment{index}_Name"]
        value = int(fields.get(f"Segment{index}_LabelValue", "0"))
        volume = float(counts[value]) * voxel
        row[f"{name} mm3"] = f"{volume:.1f}"
        tags = fields.get(f"Segment{index}_Tags", "")
        side = "left" if "^Left~" in tags else ("right" if "^Right~" in tags else None)
        if side and provenance.get("Mode") == "whole-head":
            sides[side] = sides.get(side, 0.0) + volume
        index += 1
    for side, volume in sides.items():
        row[f"{side.capitalize()} hippocampus mm3"] = f"{volume:.1f}"
    row.update(status="ok", mode=provenance.get("Mode", ""), device=provenance.get("Device", ""),
               warnings=provenance.get("Warnings", ""), notes="reused the complete outputs of an earlier run")


def summary_columns(card) -> list[str]:
    """summary.csv's volume columns for a model, from its card (crop labels, sided labels,
    per-side totals), each once."""
    from ..runtime.pipeline import specs_from_card
    from ..runtime.wholebrain import side_label_table

    names = [s.segment_name for s in specs_from_card(card)] + [s.segment_name for s in side_label_table(card)]
    names += ["Left hippocampus", "Right hippocampus"]
    return list(dict.fromkeys(f"{n} mm3" for n in names))


def _write_summary(path: Path, rows: list[dict], volumeColumns: list[str]) -> None:
    from .outputs import write_atomic

    columns = SUMMARY_FIRST_COLUMNS + volumeColumns + SUMMARY_LAST_COLUMNS
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    text = buffer.getvalue()
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)


def _progress_bar(items, show: bool):
    if show:
        try:
            from tqdm import tqdm

            return tqdm(items, unit="case", desc="Segmenting")
        except ImportError:
            log.info("tqdm is not installed: no progress bar")
    return None


def segment_files(inputPaths, outputDir, model=None, device="auto", labelmap=False, showProgress=False, roi=None) -> list[dict]:
    """See the module docstring; returns one dict per case ("status": "ok", "error" or
    "interrupted"; stage timings in "read_s", "localize_s", "network_s", "write_s")."""
    from ..runtime import pipeline
    from ..runtime.resample import index_box_for_ras_box
    from .outputs import check_output_dir, write_atomic
    from .segfile import write_segmentation
    from .volumeio import readImage, writeLabelmap

    inputPaths = [str(p) for p in inputPaths]
    if not inputPaths:
        raise InputError("No input files given.")
    missing = [p for p in inputPaths if not Path(p).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"No such input file: {shown}. Nothing was done; check the path(s) and run again.")
    outputDir = Path(outputDir)
    plans = _planned_outputs(inputPaths, outputDir, labelmap)
    summaryPath = outputDir / SUMMARY_NAME
    check_output_dir(outputDir)  # before the model loads: a bad folder fails in a second
    loaded = pipeline.get_segmenter(model, device)  # once for the whole batch; fails early on bad weights
    card = loaded.segmenter.card
    input_shas = {case: file_sha256(path) for path, case, _, _ in plans}
    skip = _check_existing(plans, summaryPath, input_shas, card.weights_sha256)
    volumeColumns = summary_columns(card)

    rows = []
    bar = _progress_bar(plans, showProgress)
    try:
        for plan in plans:
            inputPath, case, segPath, labelPath = plan
            if bar is not None:
                bar.set_postfix_str(case)
            row = {"case": case, "input": str(inputPath), "status": "error", "error": "", "seconds": "", "device": "", "notes": ""}
            rows.append(row)
            started, cpu_started = time.time(), time.process_time()
            try:
                if case in skip:
                    _rows_from_files(plan, row)
                    continue
                image = readImage(inputPath)
                row["read_s"] = round(time.time() - started, 3)
                row["read_cpu_s"] = round(time.process_time() - cpu_started, 3)
                indexBox = index_box_for_ras_box(image, *roi) if roi is not None else None
                result = pipeline.label_image(image, index_box=indexBox, loaded=loaded, name=case)
                row.update({k: v for k, v in result.details.get("timings", {}).items()})
                written, written_cpu = time.time(), time.process_time()
                provenance = {
                    "ModelId": card.model_id, "ModelVersion": card.version, "WeightsSHA256": card.weights_sha256,
                    "Input": Path(inputPath).name, "InputSHA256": input_shas[case], "Device": result.device,
                    "Mode": result.details.get("mode", ""), "Seconds": f"{result.seconds:.2f}",
                    "Warnings": " / ".join(result.warnings), "ModuleVersion": __version__,
                }
                if labelPath is not None:
                    note = _labelmap_note(card.weights_sha256, input_shas[case])
                    write_atomic(labelPath, lambda tmp: writeLabelmap(result.labels, tmp, note))
                write_atomic(segPath, lambda tmp: write_segmentation(result.labels, result.specs, tmp, card.model_id, provenance))
                row["write_s"] = round(time.time() - written, 3)
                row["write_cpu_s"] = round(time.process_time() - written_cpu, 3)
                row.update(status="ok", device=result.device, notes="; ".join(result.notes), mode=result.details.get("mode", ""),
                           warnings=" / ".join(result.warnings))
                for name, volume in result.volumes_mm3.items():
                    row[f"{name} mm3"] = f"{volume:.1f}"
                for side, volume in result.side_volumes_mm3.items():
                    row[f"{side.capitalize()} hippocampus mm3"] = f"{volume:.1f}"
            except (KeyboardInterrupt, InterruptedError):
                raise
            except MemoryError:
                row["error"] = "Not enough memory for this case. Free memory, or crop the volume around the hippocampi."
            except Exception as error:  # isolate the case: report it, go on with the others
                log.warning("%s failed: %s", inputPath, error)
                log.debug("traceback", exc_info=True)
                row["error"] = str(error) or type(error).__name__
            finally:
                row["seconds"] = f"{time.time() - started:.2f}"
                if bar is not None:
                    bar.update(1)
    except (KeyboardInterrupt, InterruptedError) as interrupt:
        done = {row["case"] for row in rows}
        if rows and rows[-1]["status"] == "error" and not rows[-1]["error"]:
            rows[-1].update(status="interrupted", error="interrupted (Ctrl-C); nothing was written for this case")
        for _, case, _, _ in plans:
            if case not in done:
                rows.append({"case": case, "status": "interrupted", "error": "not started (Ctrl-C)"})
        _write_summary(summaryPath, rows, volumeColumns)
        raise BatchInterrupted(rows, summaryPath) from interrupt
    finally:
        if bar is not None:
            bar.close()
    _write_summary(summaryPath, rows, volumeColumns)
    return rows

