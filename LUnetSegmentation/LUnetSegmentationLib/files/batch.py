"""Segment files into an output folder: the command line's and `segmentFiles`'s path, no MRML.

    rows = segment_files(["sub-01_T1w.nii.gz", ...], "out/", labelmap=True)

Per case it reads the file, labels it (pipeline.label_image) and writes `<case>.seg.nrrd`
(segfile.py: Slicer opens it as a segmentation), optionally `<case>.nii.gz` (label values on
the input grid), and finally `summary.csv`. The model is loaded once. One bad case is reported
in its row and the others go on.

An input may also be a folder holding one DICOM series (files/dicom/series.py, source install
only); with `dicomSeg` each such case also gets `<case>.seg.dcm`, a DICOM SEG referencing it.

Outputs are never partial and never overwrite anything else (outputs.write_atomic: temporary
name, read back and compared with the labels, then a move that refuses any existing name, links
included). A re-run of the same command is a resume: a case whose outputs are complete and were
written for the same input file contents, the same model weights and the same options that
change the labels (`--roi`; recorded in the `.seg.nrrd` header) is skipped and reported from
its files; leftovers of an interrupted write are removed and the case redone. Any other
existing file under an output's name is refused before any work, with the list.

`summary.csv` holds one row per case of every run into the folder: each run updates its own
cases' rows under a lock (several runs may share a folder, as a job array does) and keeps the
others'. Ctrl-C ends the batch between steps: `summary.csv` is updated with the finished cases
and BatchInterrupted says how to resume.

No slicer-core import: the command line starts faster, and batch runs from Slicer's console
use no second application logic.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import logging
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..runtime.preprocess import InputError

log = logging.getLogger("LUnetSegmentation")

SUMMARY_NAME = "summary.csv"
SUMMARY_LOCK_NAME = ".summary.csv.lock"  # kept: removing a lock file while others wait on it races
SUMMARY_FIRST_COLUMNS = ["case", "input", "status", "error", "mode"]
# Derived measures (runtime/measures.py): empty where they cannot be computed, never approximated.
SUMMARY_MEASURE_COLUMNS = ["asymmetry_index", "intracranial_volume_ml", "left_fraction_of_icv", "right_fraction_of_icv"]
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


class Plan(NamedTuple):
    """One case: its input (a file, or a DICOM series folder) and the outputs it gets."""

    input: Path
    case: str
    seg: Path
    labels: Path | None
    dicom_seg: Path | None = None

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.seg, self.labels, self.dicom_seg) if p is not None]


def shown(path) -> str:
    """A path as text that can always be printed and written to UTF-8 files: bytes that are not
    UTF-8 (a Latin-1 file name) are shown as \\xNN escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def unusable_name(path) -> str | None:
    """Why a path cannot be given to ITK (whose C++ aborts the whole process on file names that
    are not UTF-8), or None."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return (f"The file name {shown(path)} is not valid UTF-8 text (it was probably made on a system using "
                "Latin-1 or another old encoding); it was not read. Rename the file (or its folder) with plain "
                "letters, then run again.")
    return None


def _planned_outputs(inputPaths, outputDir: Path, labelmap: bool, dicomSeg: bool = False) -> list[Plan]:
    from .outputs import is_partial
    from .volumeio import case_name

    plans, seen = [], {}
    for path in inputPaths:
        case = Path(path).name if Path(path).is_dir() else case_name(path)
        if not case or case.startswith(".") and case.strip(".") == "":
            raise InputError(f"The input {shown(path)} has no name before its suffix, so its outputs would have none. "
                             "Rename it (e.g. scan.nii.gz), then run again.")
        if is_partial(f"{case}.seg.nrrd") or is_partial(f"{case}.nii.gz"):
            raise InputError(f"The input {shown(path)} is named like this tool's temporary files; its results would "
                             "be taken for leftovers and removed. Rename it, then run again.")
        if case in seen:
            raise InputError(
                f"Two inputs would both write {shown(case)}.seg.nrrd: {shown(seen[case])} and {shown(path)}. Rename one "
                "of them or segment them into different output folders."
            )
        seen[case] = path
        plans.append(Plan(Path(path), case, outputDir / f"{case}.seg.nrrd", outputDir / f"{case}.nii.gz" if labelmap else None,
                          outputDir / f"{case}.seg.dcm" if dicomSeg else None))
    return plans


def options_text(roi) -> str:
    """The options that change the labels, as recorded in the outputs and compared on re-runs."""
    if roi is None:
        return "whole input"
    centre, size = roi
    return "roi " + " ".join(f"{float(v):g}" for v in (*centre, *size))


def _options_hash(options: str) -> str:
    return hashlib.sha256(options.encode("utf-8")).hexdigest()[:8]


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


def _reusable(plan: Plan, input_sha, weights_sha, options: str) -> bool:
    """True when this case's outputs are complete and were made from this input by this model
    with the same options (an ROI changes the labels)."""
    from .outputs import is_complete_output

    if not is_complete_output(plan.seg, "seg"):
        return False
    provenance = _provenance(_header_fields(plan.seg))
    if provenance.get("WeightsSHA256") != weights_sha or provenance.get("InputSHA256") != input_sha \
            or provenance.get("Options") != options:
        return False
    if plan.labels is not None and not (is_complete_output(plan.labels, "labels") and _labelmap_matches(plan.labels, provenance)):
        return False
    return plan.dicom_seg is None or _dicom_seg_matches(plan.dicom_seg, weights_sha, input_sha, options)


def _dicom_seg_matches(path: Path, weights_sha: str, input_sha: str, options: str) -> bool:
    dicom_seg = _dicom("seg")
    return dicom_seg.is_complete_seg(path, dicom_seg.content_note(weights_sha, input_sha, _options_hash(options)))


def _labelmap_matches(label_path: Path, provenance: dict) -> bool:
    notes = _header_fields(label_path).get("ITK_FileNotes", "")  # the NIfTI description, as _header_fields reads it
    return notes == _labelmap_note(provenance.get("WeightsSHA256", ""), provenance.get("InputSHA256", ""),
                                   provenance.get("Options", ""))


def _labelmap_note(weights_sha: str, input_sha: str, options: str) -> str:
    # NIfTI's description field holds 80 characters: both hashes' first 24 digits and the options' 8.
    return f"LUnet w{weights_sha[:24]} i{input_sha[:24]} o{_options_hash(options)}"


def _check_existing(plans: list[Plan], summaryPath: Path, input_shas: dict, weights_sha: str, options: str) -> set[str]:
    """Cases to skip (complete outputs of an earlier run of the same input, model and options).
    Refuses, before any work, when another existing file holds an output's name."""
    from .outputs import is_complete_output, remove_partials

    removed = remove_partials(summaryPath.parent)
    if removed:
        log.warning("Removed %d temporary file(s) of an interrupted earlier run.", len(removed))
    skip, foreign, other_options, damaged = set(), [], [], []
    for plan in plans:
        present = [p for p in plan.outputs if p.is_symlink() or p.exists()]
        if not present:
            continue
        if _reusable(plan, input_shas[plan.case], weights_sha, options):
            skip.add(plan.case)
            continue
        # The case is redone: its files may go only if they are ours and either damaged (an
        # earlier run's leftovers) or made from this very input by this very model with these
        # options; an empty file (a full disk's leftover) holds nothing to lose.
        for path in present:
            if not path.is_symlink() and path.is_file() and path.stat().st_size == 0:
                damaged.append(path)
                continue
            ours, same_input, same_options, complete = _existing_state(path, plan, input_shas[plan.case], weights_sha, options)
            if ours and ((same_input and same_options) or not complete):
                damaged.append(path)
            elif ours and same_input:
                other_options.append((path, _recorded_options(path)))
            else:
                foreign.append(path)
    if summaryPath.is_symlink() or (summaryPath.exists() and not _is_our_summary(summaryPath)):
        foreign.append(summaryPath)
    if foreign:
        listed = ", ".join(shown(p) for p in foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InputError(
            f"Refusing to overwrite existing output(s): {listed}. They were not written by an earlier run of this "
            "command on the same input and model. Choose a new output folder or remove them."
        )
    if other_options:
        path, theirs = other_options[0]
        raise InputError(
            f"Refusing to reuse or overwrite {shown(path)}{f' and {len(other_options) - 1} more' if len(other_options) > 1 else ''}: "
            f"made from the same input by the same model but with other options ({theirs or 'not recorded'}; this "
            f"run: {options}). Choose a new output folder for this run, or remove them to replace them."
        )
    for path in damaged:
        log.warning("Removing the incomplete or orphaned output %s of an earlier run; it is made again.", shown(path))
        path.unlink()
    return skip


def _existing_state(path: Path, plan: Plan, input_sha: str, weights_sha: str, options: str) -> tuple[bool, bool, bool, bool]:
    """An existing output's (ours, same input and model, same options, complete)."""
    from .outputs import is_complete_output

    if path.is_symlink():
        return False, False, False, False
    if path == plan.dicom_seg:
        dicom_seg = _dicom("seg")
        found = dicom_seg.read_content_note(path) or ""
        wanted = dicom_seg.content_note(weights_sha, input_sha, _options_hash(options))
        return (found.startswith("LUnet w"), found.rsplit(" o", 1)[0] == wanted.rsplit(" o", 1)[0], found == wanted,
                dicom_seg.is_complete_seg(path))
    fields = _header_fields(path)
    provenance = _provenance(fields)
    if provenance:
        same_input = provenance.get("WeightsSHA256") == weights_sha and provenance.get("InputSHA256") == input_sha
        return True, same_input, provenance.get("Options") == options, is_complete_output(path)
    note = fields.get("ITK_FileNotes", "")
    wanted = _labelmap_note(weights_sha, input_sha, options)
    return (note.startswith("LUnet w"), note.rsplit(" o", 1)[0] == wanted.rsplit(" o", 1)[0], note == wanted,
            is_complete_output(path))


def _recorded_options(path: Path) -> str | None:
    """The options an output of ours was made with, where its header says (the .seg.nrrd)."""
    return _provenance(_header_fields(path)).get("Options") if path.name.endswith(".seg.nrrd") else None


def _rows_from_files(plan: Plan, row: dict) -> None:
    """Fill a skipped case's row (volumes, measures, mode, device) from its complete earlier outputs."""
    fields = _header_fields(plan.seg)
    provenance = _provenance(fields)
    image = sitk.ReadImage(str(plan.seg))
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
    icv = provenance.get("IntracranialVolumeML")
    details = {"intracranial": {"volume_ml": float(icv)}} if icv else {}
    row.update(summary_measures(sides, details))
    row.update(status="ok", mode=provenance.get("Mode", ""), device=provenance.get("Device", ""),
               warnings=provenance.get("Warnings", ""), notes="reused the complete outputs of an earlier run")


def summary_measures(side_volumes_mm3: dict, details: dict) -> dict:
    """summary.csv's derived columns from a result's per-side volumes and details: the asymmetry
    index and, once the localizer estimates it, the intracranial volume and each side's fraction
    of it; empty strings where a measure is not available (never an approximation)."""
    from ..runtime.measures import asymmetry_index, fraction_of_icv, intracranial_volume_ml

    left, right = side_volumes_mm3.get("left"), side_volumes_mm3.get("right")
    icv = intracranial_volume_ml(details)
    values = {
        "asymmetry_index": (asymmetry_index(left, right), "{:.4f}"),
        "intracranial_volume_ml": (icv, "{:.1f}"),
        "left_fraction_of_icv": (fraction_of_icv(left, icv), "{:.6f}"),
        "right_fraction_of_icv": (fraction_of_icv(right, icv), "{:.6f}"),
    }
    return {column: ("" if value is None else form.format(value)) for column, (value, form) in values.items()}


def summary_columns(card) -> list[str]:
    """summary.csv's volume columns for a model, from its card (crop labels, sided labels,
    per-side totals), each once."""
    from ..runtime.pipeline import specs_from_card
    from ..runtime.wholebrain import side_label_table

    names = [s.segment_name for s in specs_from_card(card)] + [s.segment_name for s in side_label_table(card)]
    names += ["Left hippocampus", "Right hippocampus"]
    return list(dict.fromkeys(f"{n} mm3" for n in names))


@contextlib.contextmanager
def summary_lock(folder: Path):
    """Hold the output folder's summary lock (flock on SUMMARY_LOCK_NAME, which also works on
    NFS), so that runs sharing the folder update summary.csv one at a time. Where fcntl does
    not exist (Windows) runs are not serialised."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    from .outputs import OutputError

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    lock_path = Path(folder) / SUMMARY_LOCK_NAME
    try:
        fd = os.open(lock_path, flags, 0o666)
    except OSError as error:
        raise OutputError(f"Cannot open the summary lock {shown(lock_path)}: {error.strerror or error}. If it is a "
                          "symbolic link or a folder, remove it; otherwise check the output folder's permissions.") from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_summary(path: Path) -> tuple[list[str], list[dict]]:
    """An existing summary.csv's columns and rows ([] and [] when there is none); refuses one
    that is not ours (it was checked at start-up, but another program may have written it since)."""
    from .outputs import OutputExistsError

    if not os.path.lexists(path):
        return [], []
    if path.is_symlink() or not _is_our_summary(path):
        raise OutputExistsError(f"{shown(path)} is not a summary written by this tool (it appeared during the run); it "
                                "was left as it is. Remove or rename it, then run again to write the summary.")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row.get("case")]
        return list(reader.fieldnames or []), rows


def _write_summary(path: Path, rows: list[dict], volumeColumns: list[str]) -> None:
    """Update summary.csv: this run's cases' rows replace their earlier rows, every other
    case's row is kept; under the folder's lock, written atomically and read back."""
    from .outputs import write_text_atomic

    fixed = set(SUMMARY_FIRST_COLUMNS + SUMMARY_MEASURE_COLUMNS + SUMMARY_LAST_COLUMNS)
    with summary_lock(path.parent):
        earlier_columns, earlier_rows = _read_summary(path)
        volumes = list(dict.fromkeys([c for c in earlier_columns if c not in fixed] + list(volumeColumns)))
        columns = SUMMARY_FIRST_COLUMNS + volumes + SUMMARY_MEASURE_COLUMNS + SUMMARY_LAST_COLUMNS
        mine = {row["case"]: row for row in rows}
        merged = [mine.pop(row["case"], row) for row in earlier_rows]
        merged += [row for row in rows if row["case"] in mine]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in merged:
            writer.writerow({c: row.get(c, "") for c in columns})
        write_text_atomic(path, buffer.getvalue(), overwrite=True)


def _progress_bar(items, show: bool):
    if show:
        try:
            from tqdm import tqdm

            return tqdm(items, unit="case", desc="Segmenting")
        except ImportError:
            log.info("tqdm is not installed: no progress bar")
    return None


def _dicom(module: str):
    """files/dicom/series.py or files/dicom/seg.py: DICOM is an optional extra of the source
    install (not in the Slicer extension; pydicom and highdicom for DICOM SEG). The only
    imports of unshipped code from this shipped file, each behind this guard."""
    try:
        if module == "series":
            from .dicom import series as loaded
        else:
            from .dicom import seg as loaded
            import highdicom  # noqa: F401 - its absence is said here, before any work
    except ImportError as error:
        raise InputError(
            "Reading DICOM series and writing DICOM SEG need the source install of LUnetSegmentation with its DICOM "
            f"packages ({getattr(error, 'name', None) or error} is missing): `bash scripts/setup_env.sh`, then "
            "`.venv/bin/python -m LUnetSegmentationLib segment ...`. Or convert the series to NIfTI first (dcm2niix)."
        ) from error
    return loaded


def _single_dicom_file(path: Path) -> str | None:
    """A message for one DICOM file given where its series folder is meant, or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return None
    if path.suffix.lower() == ".dcm" or head[128:132] == b"DICM":
        return (f"{shown(path)} is a single DICOM file (one slice of a series). DICOM series are read as folders: give "
                f"the folder that holds the whole series (here {shown(path.parent)}), with --series UID if it holds "
                "several.")
    return None


def _labels_problem(path: Path, labels: sitk.Image) -> str | None:
    """What differs between a label file just written and the labels meant, or None."""
    written = sitk.ReadImage(str(path))
    if written.GetSize() != labels.GetSize():
        return f"it reads back as {written.GetSize()} voxels instead of {labels.GetSize()}"
    if not np.array_equal(sitk.GetArrayViewFromImage(written), sitk.GetArrayViewFromImage(labels)):
        return "its voxels read back differently from the labels written"
    return None


def segment_files(inputPaths, outputDir, model=None, device="auto", labelmap=False, showProgress=False, roi=None,
                  series=None, dicomSeg=False) -> list[dict]:
    """See the module docstring; returns one dict per case ("status": "ok", "error" or
    "interrupted"; stage timings in "read_s", "localize_s", "network_s", "write_s").
    `series`: the SeriesInstanceUID to read from DICOM folders that hold several series;
    `dicomSeg`: also write `<case>.seg.dcm` (inputs must be DICOM series)."""
    from ..runtime import pipeline
    from ..runtime.resample import index_box_for_ras_box
    from .outputs import check_output_dir, write_atomic
    from .segfile import write_segmentation
    from .volumeio import readImage, writeLabelmap

    if isinstance(inputPaths, (str, Path)):
        inputPaths = [inputPaths]
    if outputDir is None or not str(outputDir).strip():
        raise InputError("The output folder name is empty. Give a folder for the results (it is created if missing), "
                         "e.g. --out results.")
    inputPaths = [str(p) for p in inputPaths]
    if not inputPaths:
        raise InputError("No input files given.")
    missing = [p for p in inputPaths if not (Path(p).is_file() or Path(p).is_dir())]
    if missing:
        listed = ", ".join(shown(p) for p in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"No such input file: {listed}. Nothing was done; check the path(s) and run again.")
    if unusable_name(outputDir):
        raise InputError(unusable_name(outputDir).replace("The file name", "The output folder name", 1))
    outputDir = Path(outputDir)
    plans = _planned_outputs(inputPaths, outputDir, labelmap, dicomSeg)
    series_of = {}  # case -> dicom.series.SeriesInfo, for DICOM folder inputs
    for plan in plans:
        if plan.input.is_dir() and not unusable_name(plan.input):  # GDCM too aborts on such names: refused per case
            series_of[plan.case] = _dicom("series").find_series(plan.input, series)
    if dicomSeg:
        not_dicom = [shown(plan.input) for plan in plans if plan.case not in series_of]
        if not_dicom:
            raise InputError(f"--dicom-seg needs DICOM series as input (a DICOM SEG refers to the images it segments); "
                             f"not a DICOM series folder: {', '.join(not_dicom[:5])}. Give series folders, or leave out "
                             "--dicom-seg.")
        _dicom("seg")  # its packages, checked before any work
    summaryPath = outputDir / SUMMARY_NAME
    check_output_dir(outputDir)  # before the model loads: a bad folder fails in a second
    loaded = pipeline.get_segmenter(model, device)  # once for the whole batch; fails early on bad weights
    card = loaded.segmenter.card
    options = options_text(roi)
    input_shas = {plan.case: (series_of[plan.case].sha256() if plan.case in series_of
                              else "" if plan.input.is_dir() else file_sha256(plan.input)) for plan in plans}
    skip = _check_existing(plans, summaryPath, input_shas, card.weights_sha256, options)
    volumeColumns = summary_columns(card)

    rows = []
    bar = _progress_bar(plans, showProgress)
    try:
        for plan in plans:
            case = plan.case
            if bar is not None:
                bar.set_postfix_str(shown(case))
            row = {"case": shown(case), "input": shown(plan.input), "status": "error", "error": "", "seconds": "",
                   "device": "", "notes": ""}
            rows.append(row)
            started, cpu_started = time.time(), time.process_time()
            try:
                if case in skip:
                    _rows_from_files(plan, row)
                    continue
                refused = unusable_name(plan.input) or (None if plan.input.is_dir() else _single_dicom_file(plan.input))
                if refused:
                    raise InputError(refused)
                if case in series_of:
                    image = _dicom("series").read_series(series_of[case])
                else:
                    image = readImage(plan.input)
                row["read_s"] = round(time.time() - started, 3)
                row["read_cpu_s"] = round(time.process_time() - cpu_started, 3)
                indexBox = index_box_for_ras_box(image, *roi) if roi is not None else None
                result = pipeline.label_image(image, index_box=indexBox, loaded=loaded, name=case)
                row.update({k: v for k, v in result.details.get("timings", {}).items()})
                written, written_cpu = time.time(), time.process_time()
                measures = summary_measures(result.side_volumes_mm3, result.details)
                provenance = {
                    "ModelId": card.model_id, "ModelVersion": card.version, "WeightsSHA256": card.weights_sha256,
                    "Input": plan.input.name, "InputSHA256": input_shas[case], "Options": options, "Device": result.device,
                    "Mode": result.details.get("mode", ""), "Seconds": f"{result.seconds:.2f}",
                    "Warnings": " / ".join(result.warnings), "ModuleVersion": __version__,
                }
                if measures["intracranial_volume_ml"]:
                    provenance["IntracranialVolumeML"] = measures["intracranial_volume_ml"]
                check_labels = functools.partial(_labels_problem, labels=result.labels)
                if plan.labels is not None:
                    note = _labelmap_note(card.weights_sha256, input_shas[case], options)
                    write_atomic(plan.labels, lambda tmp: writeLabelmap(result.labels, tmp, note), verify=check_labels)
                if plan.dicom_seg is not None:
                    dicom_seg = _dicom("seg")
                    note = dicom_seg.content_note(card.weights_sha256, input_shas[case], _options_hash(options))
                    seg_writer = dicom_seg.SegWriter  # a class of ours, not Slicer's (the Slicer API check reads calls)
                    writer = seg_writer(result, series_of[case].files, note, __version__)
                    write_atomic(plan.dicom_seg, writer.write, verify=writer.problem)
                write_atomic(plan.seg, lambda tmp: write_segmentation(result.labels, result.specs, tmp, card.model_id, provenance),
                             verify=check_labels)
                row["write_s"] = round(time.time() - written, 3)
                row["write_cpu_s"] = round(time.process_time() - written_cpu, 3)
                row.update(status="ok", device=result.device, notes="; ".join(result.notes), mode=result.details.get("mode", ""),
                           warnings=" / ".join(result.warnings))
                for name, volume in result.volumes_mm3.items():
                    row[f"{name} mm3"] = f"{volume:.1f}"
                for side, volume in result.side_volumes_mm3.items():
                    row[f"{side.capitalize()} hippocampus mm3"] = f"{volume:.1f}"
                row.update(measures)
            except (KeyboardInterrupt, InterruptedError):
                raise
            except MemoryError:
                row["error"] = "Not enough memory for this case. Free memory, or crop the volume around the hippocampi."
            except Exception as error:  # isolate the case: report it, go on with the others
                log.warning("%s failed: %s", shown(plan.input), error)
                log.debug("traceback", exc_info=True)
                row["error"] = shown(str(error) or type(error).__name__)
            finally:
                row["seconds"] = f"{time.time() - started:.2f}"
                if bar is not None:
                    bar.update(1)
    except (KeyboardInterrupt, InterruptedError) as interrupt:
        done = {row["case"] for row in rows}
        if rows and rows[-1]["status"] == "error" and not rows[-1]["error"]:
            rows[-1].update(status="interrupted", error="interrupted (Ctrl-C); nothing was written for this case")
        for plan in plans:
            if shown(plan.case) not in done:
                rows.append({"case": shown(plan.case), "input": shown(plan.input), "status": "interrupted",
                             "error": "not started (Ctrl-C)"})
        _write_summary(summaryPath, rows, volumeColumns)
        raise BatchInterrupted(rows, summaryPath) from interrupt
    finally:
        if bar is not None:
            bar.close()
    _write_summary(summaryPath, rows, volumeColumns)
    return rows
