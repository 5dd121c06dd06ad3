"""BIDS App: `python -m LUnetSegmentationLib bids BIDS_DIR OUT_DIR participant|group [...]`.

participant: every T1w of the dataset (or every image of the `--suffix` contrasts, e.g. T2w FLAIR,
if the model's card lists them; contrasts.py), of the participants/sessions asked for, is segmented
on Dask (an embedded LocalCluster, or `--scheduler ADDRESS`), one task per scan, and written as
BIDS-Derivatives beside the source's entities (a T2w's as desc-hippocampusT2w, and so on):

    OUT_DIR/dataset_description.json                          DatasetType "derivative", GeneratedBy,
                                                              DatasetLinks "raw" (the input dataset)
    OUT_DIR/sub-01/[ses-1/]anat/sub-01_[ses-1_]desc-hippocampus_dseg.nii.gz   labels on the T1w grid
    OUT_DIR/sub-01/[ses-1/]anat/sub-01_[ses-1_]desc-hippocampus_dseg.tsv      index, name, color
    OUT_DIR/sub-01/[ses-1/]anat/sub-01_[ses-1_]desc-hippocampus_dseg.json     sources, model, volumes, QC
    OUT_DIR/sub-01/figures/sub-01_[ses-1_]desc-hippocampus_dseg.png           overlay figure for the report
    OUT_DIR/logs/<source name>_error.json                                     only for a scan that failed

group (group.py): `OUT_DIR/volumes.tsv` (+ `volumes.json`, its column descriptions) with one row
per scan, and `OUT_DIR/report.html` (report.py).

Resumable: every file is written under a temporary name and renamed into place; the JSON
sidecar is written last and records the SHA-256 of the other files, so a scan is complete
exactly when its sidecar names the current model, its source image has the size and time it had,
and its files match their checksums. A re-run skips complete scans and redoes every other one
(partial, failed, replaced, or made by another model). A scan that fails is recorded in logs/
with its error and the others go on; a worker that dies mid-scan makes Dask give the scan to
another worker.

On a cluster (the workers need this package and must see BIDS_DIR and OUT_DIR under the same
paths), e.g. SLURM through dask-jobqueue, started on the login node:

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="3GB", walltime="02:00:00",
                           job_script_prologue=["source /path/to/LUnetSegmentation/.venv/bin/activate"])
    cluster.scale(jobs=20)
    print(cluster.scheduler_address)          # tcp://10.1.2.3:36811

    python -m LUnetSegmentationLib bids /shared/ds /shared/ds/derivatives/lunet participant \
        --scheduler tcp://10.1.2.3:36811

(PBSCluster likewise; Kubernetes through dask-kubernetes' KubeCluster; or `dask scheduler` and
`dask worker tcp://HOST:8786 --nthreads 1` by hand.)

The BIDS layout rules needed here (which images, which derivative names) are in layout.py,
implemented directly rather than through pybids.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import socket
import sys
import time
import uuid
from pathlib import Path

from ... import __version__
from ...runtime.preprocess import InputError
from .layout import Scan, find_scans

BIDS_VERSION = "1.9.0"


# ----------------------------------------------------------------------------- files


def _sha256(path: Path) -> str:
    from ...runtime.weights import sha256sum

    return sha256sum(path)


def _write_atomic(path: Path, write_to) -> Path:
    """Write `path` through `write_to(tmp)` (outputs.write_atomic: a temporary file in the same
    folder, fsync, then a rename that replaces a symlink at `path` rather than writing through it;
    the temporary file removed on any error). Derivatives of a scan that is redone replace the
    old ones, hence overwrite."""
    from ...files.outputs import write_atomic

    return write_atomic(path, write_to, overwrite=True)


def _write_text(path: Path, text: str) -> Path:
    return _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_json(path: Path, data) -> Path:
    return _write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)


def _safe_dir(root: Path, parts) -> Path:
    """root/parts..., created one folder at a time; a symlink or file on the way is refused
    (outputs.ensure_subdir), so outputs never land outside the derivatives dataset."""
    from ...files.outputs import ensure_subdir

    return ensure_subdir(root, *parts)


def _remove_stale_temporaries(paths) -> None:
    """Temporary files a killed worker left for these outputs. Only this scan's own names: other
    scans' writes may be under way in the same folder (outputs.remove_partials would take them)."""
    from ...files.outputs import partials_of

    for path in paths:
        for stale in partials_of(path):
            if stale.is_file() and not stale.is_symlink():
                with contextlib.suppress(OSError):
                    stale.unlink()


def _hex(color) -> str:
    return "#" + "".join(f"{int(round(float(c) * 255)):02x}" for c in color)


# ----------------------------------------------------------------------------- model and dataset


def model_identity(model=None, suffixes=None) -> dict:
    """id, version and weights SHA-256 of a model; checks now, in the client, that the model was
    trained for the contrasts of `suffixes` and that its weights match its card, so a wrong
    model or corrupt weights stop the run before any worker starts."""
    from ...runtime.weights import WeightsError, find_model, sha256sum
    from .contrasts import check_model_contrasts, check_suffixes

    card = find_model(model)
    check_model_contrasts(check_suffixes(suffixes), card)
    if not card.weights_path.is_file():
        raise WeightsError(f"The weights file {card.weights_path} of model {card.model_id!r} is missing. Reinstall.")
    if sha256sum(card.weights_path) != card.weights_sha256:
        raise WeightsError(f"The weights file {card.weights_path} does not match its model card's SHA-256: it is "
                           "corrupt or truncated. Reinstall (or restore the file).")
    return {"id": card.model_id, "version": card.version, "sha256": card.weights_sha256,
            "card": str(card.path), "labels": card.labels, "citation": card.data.get("citation")}


def raw_link(bids_dir: Path, out_dir: Path) -> str:
    """Where the `bids:raw:` URIs of the sidecars point (DatasetLinks "raw"): a relative path when
    the derivatives sit inside the raw dataset (BIDS_DIR/derivatives/lunet -> "../.."), so the
    two move together; else the raw dataset's file:// URI."""
    bids_dir, out_dir = Path(bids_dir).resolve(), Path(out_dir).resolve()
    if _is_within(out_dir, bids_dir):
        return "/".join([".."] * len(out_dir.relative_to(bids_dir).parts))
    return bids_dir.as_uri()


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def dataset_description(bids_dir: Path, model: dict, out_dir: Path | None = None) -> dict:
    from ..cli import SOURCE_URL  # the one CodeURL: the catalogue entry's scm_url (Testing/test_bids_cases.py)

    source_name = ""
    try:
        source_name = json.loads((Path(bids_dir) / "dataset_description.json").read_text()).get("Name", "")
    except (OSError, ValueError):
        pass
    description = {
        "Name": f"LUnetSegmentation hippocampus segmentation{f' of {source_name}' if source_name else ''}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "LUnetSegmentation",
            "Version": __version__,
            "Description": f"Lean Unet hippocampus segmentation, model {model['id']} version {model['version']} "
                           f"(weights SHA-256 {model['sha256']})",
            "CodeURL": SOURCE_URL,
            "ModelId": model["id"],
            "ModelVersion": model["version"],
            "ModelSHA256": model["sha256"],
        }],
        "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}],
        "ReferencesAndLinks": [SOURCE_URL, "https://arxiv.org/abs/2512.03834"],
    }
    if model.get("citation"):
        description["HowToAcknowledge"] = model["citation"]  # the model card's: software, LUnet paper, training data
    if out_dir is not None:
        # BIDS 1.8+: the sidecars' "Sources": ["bids:raw:sub-01/anat/..."] name the dataset "raw".
        description["DatasetLinks"] = {"raw": raw_link(bids_dir, out_dir)}
    return description


def _check_out_dir(bids_dir: Path, out_dir: Path) -> None:
    bids_resolved, out_resolved = Path(bids_dir).resolve(), Path(out_dir).resolve()
    if out_resolved == bids_resolved:
        raise InputError("OUT_DIR must not be the BIDS dataset itself; use e.g. BIDS_DIR/derivatives/lunet.")
    derivatives = bids_resolved / "derivatives"
    if _is_within(out_resolved, bids_resolved) and derivatives not in out_resolved.parents:
        raise InputError(f"OUT_DIR {out_dir} is inside the BIDS dataset but not in a folder of its derivatives/: "
                         f"BIDS keeps derived data apart from the raw data, in BIDS_DIR/derivatives/<pipeline>. "
                         f"Use e.g. {Path(bids_dir) / 'derivatives' / 'lunet'}, or a folder outside the dataset.")
    if _is_within(bids_resolved, out_resolved):
        raise InputError(f"OUT_DIR {out_dir} contains the BIDS dataset {bids_dir}; use e.g. BIDS_DIR/derivatives/lunet.")
    if Path(out_dir).is_symlink():
        raise InputError(f"{out_dir} is a symbolic link; give the real output folder.")


def _prepare_output(bids_dir: Path, out_dir: Path, model: dict) -> None:
    from ...files.outputs import check_output_dir

    _check_out_dir(bids_dir, out_dir)
    bids_dir, out_dir = Path(bids_dir).resolve(), check_output_dir(out_dir)  # created; refused if a link or not writable
    description = out_dir / "dataset_description.json"
    if description.is_file():
        try:
            existing = json.loads(description.read_text())
            made_by = existing["GeneratedBy"][0]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            made_by = None
        if made_by is None or made_by.get("Name") != "LUnetSegmentation":
            raise InputError(f"{out_dir} holds another dataset (its dataset_description.json is not this app's); "
                             "choose an empty or LUnetSegmentation output folder.")
        if made_by.get("ModelSHA256") != model["sha256"]:
            raise InputError(f"{out_dir} holds results of another model (weights SHA-256 "
                             f"{str(made_by.get('ModelSHA256'))[:12]}...); write this model's results to a new folder.")
    _write_json(description, dataset_description(bids_dir, model, out_dir))
    _write_own_text(out_dir / ".bidsignore", BIDSIGNORE)
    _write_own_text(out_dir / "README", DERIVATIVES_README)


# Written at the top of the derivatives dataset, so that the bids-validator passes it: the files of
# this app that BIDS-Derivatives has no names for (as fMRIPrep does for its reports and logs).
OWN_MARK = "# Written by LUnetSegmentation"
BIDSIGNORE = f"""{OWN_MARK} (BIDS App): its own files, which BIDS-Derivatives has no names for.
/volumes.tsv
/volumes.json
/report.html
/logs/
/sub-*/figures
"""
DERIVATIVES_README = f"""{OWN_MARK} (BIDS App).

Hippocampus segmentations of the dataset linked as "raw" in dataset_description.json (DatasetLinks),
one per anatomical image: sub-*/[ses-*/]anat/*_desc-hippocampus*_dseg.nii.gz on the source image's grid,
with its label table (_dseg.tsv) and a sidecar (_dseg.json: source, model, volumes, quality measures).
volumes.tsv (described in volumes.json) has one row per scan; report.html is the quality report;
logs/ holds the error of each scan that failed. Model, version and weights: dataset_description.json.
"""


def _write_own_text(path: Path, text: str) -> None:
    """Write one of this app's text files, unless a file of someone else's is there (kept as it is)."""
    if os.path.lexists(path):
        try:
            if not path.is_file() or path.is_symlink() or not path.read_text(errors="replace").startswith(OWN_MARK):
                return
        except OSError:
            return
    _write_text(path, text)


# ----------------------------------------------------------------------------- one scan (on a worker)


def scan_complete(scan: Scan, out_dir: Path, model_sha: str) -> dict | None:
    """The scan's sidecar if its outputs are complete and valid for this model, else None."""
    paths = scan.outputs(out_dir)
    try:
        sidecar = json.loads(paths["sidecar"].read_text())
        if sidecar["LUnet"]["Model"]["WeightsSHA256"] != model_sha:
            return None
        if sidecar["LUnet"]["Source"] != _source_state(scan.path):
            return None  # the source image was replaced since
        for key, expected in sidecar["LUnet"]["Checksums"].items():
            path = paths[key]
            if path.is_symlink() or _sha256(path) != expected:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sidecar


def _source_state(path: Path) -> dict:
    """Size and modification time of a source image: a re-run redoes a scan whose source changed
    (cheap: no read of the image; a copy that does not keep times is redone too)."""
    info = os.stat(path)
    return {"Size": info.st_size, "MtimeNs": info.st_mtime_ns}


def _rounded(value, digits: int):
    return None if value is None else round(float(value), digits)


def _qc(result) -> dict:
    """The per-scan measures of the sidecar's QC block. The asymmetry index and the intracranial
    volume (and each side as a fraction of it) come from runtime/measures.py, as in summary.csv
    and the Slicer table; the intracranial volume is the learned localizer's, None where it did
    not run (never approximated). HeadScale is the template registration's scaling, not an ICV."""
    from ...runtime.measures import asymmetry_index, fraction_of_icv, intracranial_volume_ml

    details = result.details or {}
    localization = details.get("localization") or {}
    left = result.side_volumes_mm3.get("left")
    right = result.side_volumes_mm3.get("right")
    icv_ml = intracranial_volume_ml(details)
    scale = None
    if localization.get("scales"):
        scale = 1.0
        for s in localization["scales"]:
            scale *= float(s)
    total = sum(result.volumes_mm3.values())
    # The network's confidence inside each side's segment (engine.segment_confidence, averaged
    # over the test-time passes): voxel-weighted over the sides for one figure per scan.
    confidence = [c for c in (details.get("confidence") or {}).values() if c.get("voxels")]
    weight = sum(c["voxels"] for c in confidence)
    entropy = round(sum(c["mean_entropy"] * c["voxels"] for c in confidence) / weight, 4) if weight else None
    probability = round(sum(c["mean_probability"] * c["voxels"] for c in confidence) / weight, 4) if weight else None
    return {
        "Mode": details.get("mode"),
        "LocalizationCorrelation": localization.get("correlation"),
        "AsymmetryIndex": _rounded(asymmetry_index(left, right), 4),
        "IntracranialVolumeMl": _rounded(icv_ml, 1),
        "LeftFractionOfIcv": _rounded(fraction_of_icv(left, icv_ml), 6),
        "RightFractionOfIcv": _rounded(fraction_of_icv(right, icv_ml), 6),
        "HeadScale": _rounded(scale, 4),
        "TotalNormalisedMm3": None if not scale else round(total / scale, 1),
        "MeanEntropy": entropy,
        "MeanProbability": probability,
    }


def process_scan(task: dict) -> dict:
    """Segment one scan and write its derivatives; never raises (a failure is a record, also
    written to logs/). Runs in a Dask worker: the model comes from the worker's cache."""
    from . import cohort

    started, usage = time.time(), _usage()
    scan = Scan(Path(task["path"]), task["relative"], task["subject"], task["session"], task["stem"],
                task.get("suffix", "T1w"))
    out_dir = Path(task["out_dir"])
    paths = scan.outputs(out_dir)
    record = {"scan": scan.scan_id, "relative": scan.relative, "status": "error", "error": "", "pid": os.getpid(),
              "host": socket.gethostname()}
    try:
        _remove_stale_temporaries(paths.values())
        with contextlib.suppress(OSError):
            paths["sidecar"].unlink()  # from here until the new sidecar lands, the scan counts as partial
        record.update(_segment_and_write(scan, task, paths))
        record["status"] = "ok"
        with contextlib.suppress(OSError):
            paths["error"].unlink()
    except Exception as error:  # one bad scan: recorded, the others go on
        record["error"] = _message(error)
    finally:
        after = _usage()
        record["seconds"] = round(time.time() - started, 3)
        record["cpu_seconds"] = round(after[0] - usage[0], 3)
        record["peak_rss_mb"] = after[1]
        record["model_loads_in_process"] = cohort.model_loads
    if record["status"] == "error":
        write_error(scan, out_dir, record)
    return record


def _usage() -> tuple[float, float | None]:
    """CPU seconds (user + system) of this process so far, and its peak resident MB (None where
    the platform does not say: `resource` is Unix-only)."""
    try:
        import resource
    except ImportError:
        return time.process_time(), None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return usage.ru_utime + usage.ru_stime, round(usage.ru_maxrss / scale, 1)


def _message(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, (InputError, FileNotFoundError)) or type(error).__name__ == "WeightsError":
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def write_error(scan: Scan, out_dir: Path, record: dict) -> None:
    """logs/<scan>_error.json; if even that cannot be written (a planted link, a full disk) the
    record still carries the error to the client, which prints it: never raises."""
    path = scan.outputs(out_dir)["error"]
    try:
        _safe_dir(out_dir, ["logs"])
        _write_json(path, {"Source": scan.relative, "Error": record.get("error", ""), "Seconds": record.get("seconds"),
                           "Host": record.get("host"), "Time": _now()})
    except (OSError, InputError) as error:
        record["error"] = f"{record.get('error', '')} (and its error record could not be written: {error})"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _segment_and_write(scan: Scan, task: dict, paths: dict) -> dict:
    from ...files.volumeio import readImage, writeLabelmap
    from ...runtime.pipeline import label_image
    from . import cohort, report

    out_dir = Path(task["out_dir"])
    _safe_dir(out_dir, scan.anat_parts)  # first: a planted link fails the scan before any work
    _safe_dir(out_dir, [f"sub-{scan.subject}", "figures"])
    source = _source_state(scan.path)
    image = readImage(scan.path)
    loaded = cohort.worker_model(task["model"], task["device"], task.get("threads"))
    result = label_image(image, loaded=loaded, name=scan.scan_id)  # checks the input first
    if result.card.weights_sha256 != task["model_sha"]:
        raise InputError("The model's weights changed during the run; run again.")

    _write_atomic(paths["dseg"], lambda tmp: writeLabelmap(result.labels, tmp))
    rows = ["index\tname\tcolor"] + [f"{s.value}\t{s.segment_name}\t{_hex(s.color)}" for s in result.specs]
    _write_text(paths["tsv"], "\n".join(rows) + "\n")
    figure, panels = report.overlay_figure(image, result.labels, result.specs)
    _write_atomic(paths["figure"], lambda tmp: report.write_png(figure, tmp))

    qc = _qc(result)
    sidecar = {
        "Description": "Hippocampus segmentation (LUnetSegmentation); label values in the _dseg.tsv beside this file.",
        "Sources": [f"bids:raw:{scan.relative}"],
        "SpatialReference": f"bids:raw:{scan.relative}",  # the labels lie on the source's own grid
        "Manual": False,
        "LUnet": {
            "Model": {"Id": result.card.model_id, "Version": result.card.version, "WeightsSHA256": result.card.weights_sha256},
            "Version": __version__,
            "Device": result.device,
            "Seconds": round(result.seconds, 2),
            "VolumesMm3": {k: round(v, 1) for k, v in result.volumes_mm3.items()},
            "SideVolumesMm3": {k: round(v, 1) for k, v in result.side_volumes_mm3.items()},
            "Labels": [{"index": s.value, "name": s.segment_name, "structure": s.name, "side": s.side,
                        "color": _hex(s.color), "terminology": s.terminology} for s in result.specs],
            "QC": qc,
            "Details": result.details,
            "Notes": list(result.notes),
            "Warnings": list(getattr(result, "warnings", None) or []),
            "Figure": {"File": scan.figure_relative(), "Panels": panels},
            "Completed": _now(),
            "Host": socket.gethostname(),
            "RunId": task.get("run_id"),
            "Source": source,
            "Checksums": {key: _sha256(paths[key]) for key in ("dseg", "tsv", "figure")},
        },
    }
    _write_json(paths["sidecar"], sidecar)  # last: its presence (with matching checksums) marks the scan complete
    return {"mode": qc["Mode"], "volumes_mm3": sidecar["LUnet"]["VolumesMm3"],
            "side_volumes_mm3": sidecar["LUnet"]["SideVolumesMm3"], "device": result.device}


# ----------------------------------------------------------------------------- participant


def check_threads(threads) -> int:
    """torch threads per worker: a whole number from 1 (torch takes -1 or 0 badly, on every scan)."""
    if threads is None:
        return 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"--threads must be a whole number of at least 1 (torch threads per worker), not {threads!r}.")
    return threads


def participant_tasks(bids_dir, out_dir, participants=None, sessions=None, model=None, device="auto", threads=1,
                      run_id=None, suffixes=None) -> tuple[list[Scan], list[Scan], list[dict]]:
    """Check the model and the output folder, write dataset_description.json, and plan the run:
    (all scans, scans still to do, one task dict per scan to do for `process_scan`)."""
    bids_dir, out_dir = Path(bids_dir), Path(out_dir)
    threads = check_threads(threads)
    _check_out_dir(bids_dir, out_dir)
    scans = find_scans(bids_dir, participants, sessions, suffixes)
    identity = model_identity(model, suffixes)
    _prepare_output(bids_dir, out_dir, identity)
    todo = [scan for scan in scans if scan_complete(scan, out_dir, identity["sha256"]) is None]
    run_id = run_id or uuid.uuid4().hex[:12]
    tasks = [{"path": str(scan.path.absolute()), "relative": scan.relative, "subject": scan.subject,
              "session": scan.session, "stem": scan.stem, "suffix": scan.suffix, "out_dir": str(out_dir.resolve()), "model": identity["card"],
              "device": device, "model_sha": identity["sha256"], "threads": threads, "run_id": run_id} for scan in todo]
    return scans, todo, tasks


def run_participant(bids_dir, out_dir, participants=None, sessions=None, model=None, device="auto",
                    workers=None, scheduler=None, threads=None, echo=print, suffixes=None) -> dict:
    """Segment every scan not yet complete on Dask; returns counts and the per-scan records."""
    from . import cohort

    bids_dir, out_dir = Path(bids_dir), Path(out_dir)
    run_id = uuid.uuid4().hex[:12]
    # One torch thread per single-threaded worker: the workers, not threads, use the cores.
    scans, todo, tasks = participant_tasks(bids_dir, out_dir, participants, sessions, model, device,
                                           1 if threads is None else threads, run_id, suffixes)
    skipped = len(scans) - len(todo)
    kinds = "/".join(sorted({scan.suffix for scan in scans}))
    echo(f"{len(scans)} {kinds} scan(s) in {bids_dir}: {skipped} already complete, {len(todo)} to segment.")
    if workers is None and not scheduler:
        workers = min(cohort.default_workers(), max(1, len(todo)))
    by_scan = {scan.scan_id: scan for scan in todo}
    done = []

    def report_one(record):
        done.append(record)
        if record["status"] == "ok":
            sides = record.get("side_volumes_mm3") or {}
            volumes = ", ".join(f"{k} {v:.0f}" for k, v in (sides or record.get("volumes_mm3", {})).items())
            echo(f"[{len(done)}/{len(tasks)}] {record['relative']}: ok in {record['seconds']:.1f} s ({volumes} mm3)")
        else:
            echo(f"[{len(done)}/{len(tasks)}] {record['relative']}: FAILED: {record['error']}")

    def lost(task, message):
        scan = by_scan[f"{task['stem']}_{task['suffix']}"]
        record = {"scan": scan.scan_id, "relative": scan.relative, "status": "error", "error": message, "seconds": None}
        write_error(scan, out_dir, record)
        return record

    started = time.time()
    if tasks:
        keys = [f"lunet-{run_id}-{task['stem']}_{task['suffix']}" for task in tasks]  # one key per scan
        cohort.run_tasks(process_scan, tasks, keys, on_result=report_one, workers=workers, scheduler=scheduler, lost=lost)
    failed = [r for r in done if r["status"] != "ok"]
    summary = {"scans": len(scans), "skipped": skipped, "segmented": len(done) - len(failed), "failed": len(failed),
               "seconds": round(time.time() - started, 2), "workers": workers, "scheduler": scheduler,
               "records": done}
    echo(f"{summary['segmented']} segmented, {summary['failed']} failed, {skipped} skipped (complete) in "
         f"{summary['seconds']:.0f} s; derivatives in {out_dir}. Next: the group stage ({bids_dir} {out_dir} group).")
    return summary


def run_group(bids_dir, out_dir, participants=None, sessions=None, echo=print, suffixes=None) -> dict:
    """volumes.tsv (+ volumes.json) and report.html for every scan of the dataset (group.py)."""
    from . import group

    return group.run_group(bids_dir, out_dir, participants, sessions, echo, suffixes)


# ----------------------------------------------------------------------------- command line


def add_bids_parser(subparsers) -> argparse.ArgumentParser:
    """The `bids` sub-command, for cli.build_parser()."""
    from .contrasts import SUFFIX_CONTRAST

    parser = subparsers.add_parser(
        "bids", help="BIDS App: segment a BIDS dataset on Dask (participant), then volumes.tsv and report.html (group)",
        description="BIDS App (bids_dir output_dir participant|group). participant: segment every T1w (or --suffix) into "
                    "BIDS-Derivatives (resumable: complete scans are skipped); group: volumes.tsv and report.html.")
    parser.add_argument("bids_dir", help="the BIDS dataset (read only)")
    parser.add_argument("output_dir", help="the derivatives folder, e.g. BIDS_DIR/derivatives/lunet")
    parser.add_argument("analysis_level", choices=["participant", "group"])
    parser.add_argument("--participant-label", "--participant_label", nargs="+", default=None, metavar="LABEL",
                        help="only these participants (01 or sub-01); default: all")
    parser.add_argument("--session-label", "--session", nargs="+", default=None, metavar="LABEL",
                        help="only these sessions (1 or ses-1); default: all")
    parser.add_argument("--suffix", nargs="+", default=None, metavar="SUFFIX",
                        help="the BIDS suffixes (contrasts) to segment: " + ", ".join(SUFFIX_CONTRAST) + " (default: T1w "
                             "for participant; for group, every contrast the participant stage segmented). The model "
                             "must be trained for them (its card's contrasts): hippocampus-lunet is T1 only.")
    parser.add_argument("--model", default=None, help="shipped model id or model card .json (default: the shipped model)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes of the embedded Dask LocalCluster (default: one per core, fewer if memory is short)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="use an existing Dask cluster (e.g. tcp://10.0.0.5:8786) instead of a LocalCluster")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker, at least 1 (default: 1)")
    parser.set_defaults(run=run_bids)
    return parser


def run_bids(args) -> int:
    """Run the `bids` sub-command; returns the exit status (1 if any scan failed, 2 on bad
    arguments, data or weights). Problems are printed as one line, never as a traceback."""
    from ...runtime.weights import WeightsError

    try:
        if args.workers is not None and args.workers < 1:
            raise InputError("--workers must be at least 1.")
        if args.workers is not None and args.scheduler:
            raise InputError("--workers sizes the embedded LocalCluster; with --scheduler the cluster decides.")
        check_threads(args.threads)
        if args.analysis_level == "participant":
            summary = run_participant(args.bids_dir, args.output_dir, args.participant_label, args.session_label,
                                      model=args.model, device=args.device, workers=args.workers,
                                      scheduler=args.scheduler, threads=args.threads, suffixes=args.suffix)
            for record in summary["records"]:
                if record["status"] != "ok":
                    print(f"FAILED {record['relative']}: {record['error']}", file=sys.stderr)
            return 1 if summary["failed"] else 0
        run_group(args.bids_dir, args.output_dir, args.participant_label, args.session_label, suffixes=args.suffix)
        return 0
    except (InputError, WeightsError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: complete scans are kept; run the same command again to finish the others.", file=sys.stderr)
        return 130
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    """`python -m LUnetSegmentationLib.apps.bids BIDS_DIR OUT_DIR participant|group ...`, the same as
    `python -m LUnetSegmentationLib bids ...` (apps/bids/__main__.py)."""
    parser = argparse.ArgumentParser(prog="python -m LUnetSegmentationLib.apps.bids")
    add_bids_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bids", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    return args.run(args)
