"""Whole-head CPU benchmark of the real command line, optionally side by side with a peer tool.

    PYTHONPATH=LUnetSegmentation .venv/bin/python benchmarks/wholehead.py \
        [--scans DIR_OR_FILE ...] [--repeat N] [--peer-cmd 'TEMPLATE'] [--out docs/results/wholehead_cpu.json]

Per scan, each run is a separate process of the real command-line path

    PYTHON -m LUnetSegmentationLib segment SCAN --out TMP/out --labelmap --device cpu --quiet \
        [--timings TMP/timings.json]

(`--timings` only when `segment --help` lists it), timed for the whole process: CPU-seconds
(user + sys of the child and its waited-for descendants, from `os.wait4`), wall seconds, and
peak resident memory (ru_maxrss). When the CLI writes a timings file, its stages (imports,
read, localize, network, write, ... whatever keys it has) are printed and kept, with "rest" =
process wall time not covered by them (interpreter start, argument parsing, model loading
where it is not a stage).

With `--peer-cmd`, the peer runs on the same scans, interleaved scan by scan and run by run
(the order alternates between repeats, so neither side always gets the warmer cache), in a
temporary folder holding a copy of the scan (peers such as hippodeep write beside their
input). Placeholders in the template: {scan} (the copy), {dir} (its folder, also the working
directory), {name} (file name), {stem} (name without .nii.gz/.nii/.mgz/.mgh). Ratios are
ours / peer, per scan from the medians over `--repeat` runs. The machine is shared and noisy:
compare the ratios measured in one run rather than absolute seconds across runs.

Scores (first run of each scan; the outputs are deterministic): per-side volumes of ours and
the peer on every scan, sides outside 2,000-6,000 mm3 (an adult hippocampus) flagged; and
where a scan has reference labels (`--reference SCAN=LABELS:LEFT:RIGHT`, or found beside
the scan: FreeSurfer `aparc*+aseg*` / `aseg*` with 17 left and 53 right hippocampus; AAL
`aal.nii.gz` with 37/38, which draws the hippocampus coarsely), per-side Dice of our labelmap
(the label values of each side read from the `.seg.nrrd`'s SegmentN_LabelValue/SegmentN_Name,
so a model writing 1..4 or 1..2 both work) and of the peer's masks (`--peer-masks`, binarised
at `--peer-threshold`) against it, summarised per reference protocol.

Default scans: every .nii.gz, .nii and .mgz under ../shared/data/wholebrain (or
$LUNET_DATA/wholebrain) except label files (aal, aseg, aparc names). Nothing from the scans or
the peer is written into the repository: all outputs go to a temporary folder that is removed
unless `--keep` is given.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "LUnetSegmentation"
DATA = Path(os.environ.get("LUNET_DATA", REPO.parent / "shared" / "data")) / "wholebrain"
SCRIPT_PATH = Path(__file__).resolve()
DEFAULT_OUT = REPO / "docs" / "results" / "wholehead_cpu.json"
SCAN_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh")
LABEL_FILE = re.compile(r"(aal|aseg|aparc)", re.IGNORECASE)
# Reference label files recognised beside a scan: (name pattern, left value, right value, protocol).
REFERENCE_RULES = [
    (re.compile(r"^aparc.*\+aseg", re.IGNORECASE), 17, 53, "FreeSurfer aparc+aseg"),
    (re.compile(r"^aseg", re.IGNORECASE), 17, 53, "FreeSurfer aseg"),
    (re.compile(r"^aal\.", re.IGNORECASE), 37, 38, "AAL (coarse, about twice FreeSurfer's hippocampus)"),
]
HIPPODEEP_MASKS = "{stem}_mask_L.nii.gz,{stem}_mask_R.nii.gz"
MB = 1024 * 1024
PLAUSIBLE_MM3 = (2000.0, 6000.0)  # one adult hippocampus (issue 11): outside this, a side is flagged


# ----------------------------------------------------------------------------- scans


def strip_suffix(name: str) -> str:
    for suffix in SCAN_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_scan(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SCAN_SUFFIXES) and not LABEL_FILE.search(path.name)


def find_scans(items) -> list[Path]:
    """Files as given; folders searched recursively for whole-head scans (label files skipped)."""
    scans = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            scans += sorted(p for p in path.rglob("*") if is_scan(p))
        elif path.is_file():
            scans.append(path)
        else:
            raise SystemExit(f"error: no such scan or folder: {path}")
    return scans


def scan_label(path: Path, roots) -> str:
    """A short unique name: the path under the scan folder given (e.g. fs_norm/norm.mgz)."""
    for root in roots:
        root = Path(root)
        if root.is_dir():
            try:
                return str(path.resolve().relative_to(root.resolve()))
            except ValueError:
                pass
    return f"{path.parent.name}/{path.name}"


def find_reference(scan: Path):
    """Reference labels beside a scan, preferring the same file type (.mgz with .mgz)."""
    suffix = next((s for s in SCAN_SUFFIXES if scan.name.lower().endswith(s)), "")
    for pattern, left, right, protocol in REFERENCE_RULES:
        found = sorted(p for p in scan.parent.iterdir() if p.is_file() and pattern.search(p.name)
                       and p.name.lower().endswith(SCAN_SUFFIXES))
        if found:
            same = [p for p in found if p.name.lower().endswith(suffix)]
            return {"path": str((same or found)[0]), "left": left, "right": right, "protocol": protocol}
    return None


def parse_reference_option(text: str) -> tuple[str, dict]:
    """`SCAN=LABELS:LEFT:RIGHT` -> (scan path, reference dict)."""
    scan, _, rest = text.partition("=")
    labels, left, right = rest.rsplit(":", 2)
    return str(Path(scan).resolve()), {"path": labels, "left": int(left), "right": int(right), "protocol": "given"}


def scan_geometry(path: Path) -> dict:
    import nibabel

    image = nibabel.load(str(path))
    return {"shape": [int(n) for n in image.shape[:3]], "voxel_mm": [round(float(z), 4) for z in image.header.get_zooms()[:3]]}


# ----------------------------------------------------------------------------- running


def run_measured(command, cwd, env=None, timeout=1800.0, log_prefix=None) -> dict:
    """Run one process; whole-process CPU-seconds, wall seconds and peak RSS from os.wait4."""
    stdout = open(f"{log_prefix}.stdout", "wb") if log_prefix else subprocess.DEVNULL
    stderr = open(f"{log_prefix}.stderr", "wb") if log_prefix else subprocess.DEVNULL
    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    finally:
        for handle in (stdout, stderr):
            if handle is not subprocess.DEVNULL:
                handle.close()
    timedOut = threading.Event()

    def kill():
        timedOut.set()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    result = {
        "rc": process.returncode,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "user_s": round(usage.ru_utime, 3),
        "sys_s": round(usage.ru_stime, 3),
        "wall_s": round(wall, 3),
        "peak_mb": round(usage.ru_maxrss * 1024 / MB, 1),  # Linux: ru_maxrss in KiB
        "load_before": round(load, 2),
    }
    if timedOut.is_set():
        result["error"] = f"timed out after {timeout:.0f} s"
    elif result["rc"] != 0 and log_prefix:
        tail = Path(f"{log_prefix}.stderr").read_text(errors="replace").strip().splitlines()[-5:]
        result["error"] = " | ".join(tail)[-800:]
    return result


def cli_has_option(python: str, env: dict, option: str) -> bool:
    done = subprocess.run([python, "-m", "LUnetSegmentationLib", "segment", "--help"], env=env,
                          capture_output=True, text=True, timeout=300)
    return option in done.stdout


def ours_command(python: str, scan: Path, outDir: Path, timingsPath: Path | None) -> list[str]:
    command = [python, "-m", "LUnetSegmentationLib", "segment", str(scan), "--out", str(outDir),
               "--labelmap", "--device", "cpu", "--quiet"]
    if timingsPath is not None:
        command += ["--timings", str(timingsPath)]
    return command


def peer_command(template: str, scan: Path) -> list[str]:
    fields = {"scan": str(scan), "dir": str(scan.parent), "name": scan.name, "stem": strip_suffix(scan.name)}
    return [token.format(**fields) for token in shlex.split(template)]


def _numbers(mapping: dict) -> dict:
    return {k: float(v) for k, v in mapping.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def parse_timings(path: Path, wallSeconds: float | None = None) -> dict | None:
    """Stage seconds from the CLI's timings JSON, tolerant of added or missing keys.

    Returns {"stages": {name: seconds}, "cpu_stages": {...}, "cases": [...], "rest_s": ...}:
    "stages" has the top-level keys ending in _s (imports_s) and the per-stage sums over the
    cases (keys ending in _s except total_s), in first-seen order; keys ending in _cpu_s (CPU
    time of a stage, if the CLI gives it) go to "cpu_stages" instead; other numbers to "info".
    rest_s is the process wall time not covered by the top-level stages and the cases' totals
    (or their stage sums)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    stages: dict[str, float] = {}
    cpuStages: dict[str, float] = {}
    info: dict[str, float] = {}
    covered = 0.0

    def add(key, value, wallTarget):
        if key.endswith("_cpu_s"):
            cpuStages[key] = cpuStages.get(key, 0.0) + value
        elif key.endswith("_s"):
            wallTarget[key] = wallTarget.get(key, 0.0) + value
        else:
            info[key] = value

    for key, value in _numbers(data).items():
        add(key, value, stages)
    covered += sum(stages.values())
    cases = [c for c in data.get("cases") or [] if isinstance(c, dict)]
    for case in cases:
        caseStages: dict[str, float] = {}
        for key, value in _numbers(case).items():
            add(key, value, caseStages)
        total = caseStages.pop("total_s", None)
        for key, value in caseStages.items():
            stages[key] = stages.get(key, 0.0) + value
        covered += total if total is not None else sum(caseStages.values())
    result = {"stages": {k: round(v, 3) for k, v in stages.items()}, "cases": cases}
    if cpuStages:
        result["cpu_stages"] = {k: round(v, 3) for k, v in cpuStages.items()}
    if info:
        result["info"] = info
    if wallSeconds is not None:
        result["rest_s"] = round(wallSeconds - covered, 3)
    return result


# ----------------------------------------------------------------------------- scoring


def read_seg_nrrd_table(path: Path) -> list[dict]:
    """Segments of a Slicer .seg.nrrd header: [{"value", "name", "layer", "side"}], side from the name."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
    text = head.split(b"\n\n", 1)[0].decode("latin-1")
    fields: dict[int, dict] = {}
    for line in text.splitlines():
        match = re.match(r"Segment(\d+)_(\w+):=(.*)$", line)
        if match:
            fields.setdefault(int(match.group(1)), {})[match.group(2)] = match.group(3).strip()
    table = []
    for index in sorted(fields):
        entry = fields[index]
        if "LabelValue" not in entry:
            continue
        name = entry.get("Name", "")
        lowered = name.lower()
        side = "left" if re.search(r"\bleft\b", lowered) else "right" if re.search(r"\bright\b", lowered) else None
        table.append({"value": int(entry["LabelValue"]), "name": name, "layer": int(entry.get("Layer", 0)), "side": side})
    return table


def _load(path: Path):
    import nibabel
    import numpy as np

    image = nibabel.load(str(path))
    return np.asanyarray(image.dataobj), image.affine, image.header.get_zooms()[:3]


def resample_nearest(data, affine, targetShape, targetAffine):
    """`data` (on `affine`) at the voxel centres of the target grid, nearest neighbour, 0 outside."""
    import numpy as np

    if data.shape[:3] == tuple(targetShape) and np.allclose(affine, targetAffine, atol=1e-3):
        return data
    mapping = np.linalg.inv(affine) @ targetAffine
    out = np.zeros(targetShape, dtype=data.dtype)
    i, j = np.meshgrid(np.arange(targetShape[0]), np.arange(targetShape[1]), indexing="ij")
    for k in range(targetShape[2]):
        coords = [mapping[r, 0] * i + mapping[r, 1] * j + mapping[r, 2] * k + mapping[r, 3] for r in range(3)]
        idx = [np.rint(c).astype(np.int64) for c in coords]
        inside = np.ones(i.shape, bool)
        for axis in range(3):
            inside &= (idx[axis] >= 0) & (idx[axis] < data.shape[axis])
        out[..., k][inside] = data[idx[0][inside], idx[1][inside], idx[2][inside]]
    return out


def dice(a, b) -> float | None:
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else round(2.0 * int((a & b).sum()) / total, 4)


def score_masks(masks: dict, affine, reference: dict | None) -> dict:
    """Per-side volumes of {"left": bool array, "right": ...}, plausibility, and with reference
    labels the per-side Dice against them."""
    import numpy as np

    voxel = float(abs(np.linalg.det(np.asarray(affine)[:3, :3])))
    result = {"volume_mm3": {side: round(float(masks[side].sum()) * voxel, 1) for side in ("left", "right") if side in masks}}
    low, high = PLAUSIBLE_MM3
    result["implausible_sides"] = [side for side in ("left", "right")
                                   if not low <= result["volume_mm3"].get(side, 0.0) <= high]
    if not reference:
        return result
    refData, refAffine, _ = _load(Path(reference["path"]))
    anyMask = next(iter(masks.values()))
    ref = resample_nearest(np.asarray(refData), refAffine, anyMask.shape, affine)
    result["dice"], result["reference_mm3"] = {}, {}
    for side in ("left", "right"):
        truth = ref == reference[side]
        result["reference_mm3"][side] = round(float(truth.sum()) * voxel, 1)
        result["dice"][side] = dice(masks[side], truth) if side in masks else None
    values = [v for v in result["dice"].values() if v is not None]
    result["dice"]["mean"] = round(sum(values) / len(values), 4) if len(values) == 2 else None
    result["protocol"] = reference.get("protocol")
    return result


def ours_masks(outDir: Path):
    """Side masks from our labelmap, the values of each side read from the .seg.nrrd table."""
    import numpy as np

    segs = sorted(Path(outDir).glob("*.seg.nrrd"))
    if not segs:
        return None, None, None, "no .seg.nrrd written"
    labelmap = segs[0].with_name(segs[0].name[: -len(".seg.nrrd")] + ".nii.gz")
    if not labelmap.is_file():
        return None, None, None, f"no labelmap {labelmap.name}"
    table = read_seg_nrrd_table(segs[0])
    data, affine, zooms = _load(labelmap)
    data = np.asarray(data)
    masks = {}
    for side in ("left", "right"):
        values = [entry["value"] for entry in table if entry["side"] == side]
        if values:
            masks[side] = np.isin(data, values)
    if not masks:
        return None, None, table, "no sided segments (a crop result?)"
    return masks, affine, table, None


def peer_masks(folder: Path, scanName: str, spec: str, threshold: float):
    import numpy as np

    stem = strip_suffix(scanName)
    names = [part.strip().format(stem=stem, name=scanName) for part in spec.split(",")]
    masks, affine = {}, None
    for side, name in zip(("left", "right"), names):
        path = Path(folder) / name
        if not path.is_file():
            return None, None, f"no peer mask {name}"
        data, affine, _ = _load(path)
        masks[side] = np.asarray(data) >= threshold
    return masks, affine, None


# ----------------------------------------------------------------------------- report


def median_of(runs: list[dict], key: str):
    values = [run[key] for run in runs if run.get("rc") == 0 and run.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def summarize_runs(runs: list[dict]) -> dict:
    summary = {key: median_of(runs, key) for key in ("cpu_s", "user_s", "sys_s", "wall_s", "peak_mb")}
    summary["ok_runs"] = sum(1 for run in runs if run.get("rc") == 0)
    stages = {**_medians(runs, lambda timings: timings.get("stages", {})),
              **_medians(runs, lambda timings: {"rest_s": timings.get("rest_s")})}
    if stages:
        summary["stages"] = stages
    cpuStages = _medians(runs, lambda timings: timings.get("cpu_stages", {}))
    if cpuStages:
        summary["cpu_stages"] = cpuStages
    return summary


def _medians(runs: list[dict], pick) -> dict:
    """Median per key of pick(run's timings) over the successful runs, keys in the order any run
    first names them; a key no successful run gives a value for is left out."""
    rows = [pick(run.get("timings") or {}) for run in runs]
    medians = {}
    for key in dict.fromkeys(key for row in rows for key in row):
        values = [row.get(key) for run, row in zip(runs, rows) if run.get("rc") == 0 and row.get(key) is not None]
        if values:
            medians[key] = round(statistics.median(values), 3)
    return medians


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def short_stage(name: str) -> str:
    name = name[:-2] if name.endswith("_s") else name
    return {"imports": "imp", "localize": "loc", "network": "net", "write": "wri"}.get(name, name)


def format_table(scans: list[dict], withPeer: bool) -> str:
    header = ["scan", "voxel mm", "CPU-s", "wall-s", "peak MB", "stages (wall s, medians)"]
    if withPeer:
        header += ["peer CPU-s", "peer wall-s", "peer MB", "CPU ours/peer", "wall ours/peer"]
    header += ["mm3 L/R ours", "Dice L/R ours"] + (["mm3 L/R peer", "Dice L/R peer"] if withPeer else [])
    rows = [header]
    fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731

    def dice_text(score):
        if not score or not score.get("dice"):
            return "-"
        return f"{fmt(score['dice'].get('left'), 3)}/{fmt(score['dice'].get('right'), 3)}"

    def volume_text(score):
        if not score or not score.get("volume_mm3"):
            return (score or {}).get("error", "-")[:30] if score else "-"
        volumes = score["volume_mm3"]
        return f"{fmt(volumes.get('left'), 0)}/{fmt(volumes.get('right'), 0)}" + ("!" if score.get("implausible_sides") else "")

    for scan in scans:
        ours = scan["ours"]["median"]
        stages = " ".join(f"{short_stage(k)} {v:.1f}" for k, v in (ours.get("stages") or {}).items()) or "-"
        if ours.get("cpu_stages"):
            stages += " | CPU " + " ".join(f"{short_stage(k[:-len('_cpu_s')] + '_s')} {v:.1f}"
                                           for k, v in ours["cpu_stages"].items())
        voxel = "x".join(f"{v:g}" for v in scan.get("voxel_mm") or []) or "?"
        row = [scan["scan"], voxel, fmt(ours["cpu_s"]), fmt(ours["wall_s"]), fmt(ours["peak_mb"], 0), stages]
        if withPeer:
            peer = scan["peer"]["median"]
            row += [fmt(peer["cpu_s"]), fmt(peer["wall_s"]), fmt(peer["peak_mb"], 0),
                    fmt(scan["ratio"]["cpu"], 2), fmt(scan["ratio"]["wall"], 2)]
        row += [volume_text(scan["ours"].get("score")), dice_text(scan["ours"].get("score"))]
        if withPeer:
            row += [volume_text(scan["peer"].get("score")), dice_text(scan["peer"].get("score"))]
        rows.append(row)
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    low, high = PLAUSIBLE_MM3
    lines.append(f"(mm3 ... !: a side outside {low:.0f}-{high:.0f} mm3; Dice against each scan's reference labels, "
                 "see 'reference' and 'protocol' in the JSON)")
    return "\n".join(lines)


def overall_summary(scans: list[dict], withPeer: bool) -> dict:
    def med(values):
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 3) if values else None

    def mean(values):
        values = [v for v in values if v is not None]
        return round(sum(values) / len(values), 4) if values else None

    summary = {"scans": len(scans)}
    for who in ("ours", "peer") if withPeer else ("ours",):
        block = {key: med([s[who]["median"][key] for s in scans]) for key in ("cpu_s", "wall_s", "peak_mb")}
        block["max_peak_mb"] = max((s[who]["median"]["peak_mb"] or 0 for s in scans), default=None)
        block["failed_runs"] = sum(len(s[who]["runs"]) - s[who]["median"]["ok_runs"] for s in scans)
        byProtocol = {}
        for scan in scans:
            score = scan[who].get("score") or {}
            if score.get("dice"):
                byProtocol.setdefault(score.get("protocol") or "?", []).append(score["dice"])
        block["dice_per_side_mean_by_protocol"] = {
            protocol: {"mean": mean([d.get(side) for d in dices for side in ("left", "right")]), "scans": len(dices)}
            for protocol, dices in byProtocol.items()}
        block["implausible_volume_scans"] = [s["scan"] for s in scans if (s[who].get("score") or {}).get("implausible_sides")]
        block["unscored_scans"] = [s["scan"] for s in scans if "volume_mm3" not in (s[who].get("score") or {})]
        summary[who] = block
    big = [s for s in scans if s.get("shape") and min(s["shape"]) >= 256]
    if big:
        summary["ours"]["cpu_s_256cubed"] = med([s["ours"]["median"]["cpu_s"] for s in big])
        summary["ours"]["peak_mb_256cubed"] = max((s["ours"]["median"]["peak_mb"] or 0) for s in big)
        if withPeer:
            summary["peer"]["cpu_s_256cubed"] = med([s["peer"]["median"]["cpu_s"] for s in big])
    if withPeer:
        summary["ratio_ours_over_peer"] = {
            "cpu_median": med([s["ratio"]["cpu"] for s in scans]),
            "wall_median": med([s["ratio"]["wall"] for s in scans]),
            "cpu_min": min((s["ratio"]["cpu"] for s in scans if s["ratio"]["cpu"] is not None), default=None),
            "cpu_max": max((s["ratio"]["cpu"] for s in scans if s["ratio"]["cpu"] is not None), default=None),
        }
    return summary


# ----------------------------------------------------------------------------- environment


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def python_versions(python: str, env=None) -> dict:
    code = ("import json, sys\nout = {'python': sys.version.split()[0]}\n"
            "for name in ('torch', 'numpy', 'onnxruntime', 'SimpleITK', 'nibabel', 'scipy'):\n"
            "    try:\n        out[name] = __import__(name).__version__\n"
            "    except Exception:\n        pass\n"
            "print(json.dumps(out))")
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001 - versions are informative only
        return {}


def git_state(folder: Path) -> dict:
    def git(*args):
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None}
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "dirty": bool(dirty), "root": git("rev-parse", "--show-toplevel")}


def machine_info() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_count": os.cpu_count(), "usable_cpus": usable, "cpu_model": cpu_model(),
            "platform": platform.platform()}


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", nargs="+", default=None, help=f"scan files or folders (default: {DATA})")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scan and tool (medians reported)")
    parser.add_argument("--peer-cmd", default=None,
                        help="peer command template, e.g. '/tmp/peer/venv/bin/python /tmp/peer/hippodeep/hippodeep.py {scan}'")
    parser.add_argument("--peer-masks", default=HIPPODEEP_MASKS,
                        help="the peer's left,right mask files in {dir} (default: hippodeep's)")
    parser.add_argument("--peer-threshold", type=float, default=128,
                        help="peer mask voxels >= this are inside (hippodeep writes 0-255 probabilities)")
    parser.add_argument("--peer-name", default="hippodeep")
    parser.add_argument("--reference", action="append", default=[], metavar="SCAN=LABELS:LEFT:RIGHT",
                        help="reference labels for a scan (default: FreeSurfer/AAL label files beside it)")
    parser.add_argument("--python", default=None, help="interpreter for our CLI (default: .venv/bin/python, else this one)")
    parser.add_argument("--lib", default=None,
                        help="folder holding LUnetSegmentationLib (default: the PYTHONPATH entry that has it, else this repository's)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file")
    parser.add_argument("--keep", default=None, help="keep every run's outputs and logs in this folder")
    return parser


def resolve_lib(option: str | None) -> Path:
    if option:
        return Path(option).resolve()
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and (Path(entry) / "LUnetSegmentationLib").is_dir():
            return Path(entry).resolve()
    return LIB


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    roots = args.scans or [str(DATA)]
    scans = find_scans(roots)
    if not scans:
        raise SystemExit(f"error: no scans found in {roots}")
    python = args.python or (str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable)
    lib = resolve_lib(args.lib)
    env = dict(os.environ, PYTHONPATH=str(lib))
    hasTimings = cli_has_option(python, env, "--timings")
    references = dict(parse_reference_option(text) for text in args.reference)
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="lunet-wholehead-"))
    work.mkdir(parents=True, exist_ok=True)
    withPeer = bool(args.peer_cmd)
    print(f"{len(scans)} scan(s), {args.repeat} run(s) each, ours: {python} -m LUnetSegmentationLib (from {lib}); "
          f"--timings {'used' if hasTimings else 'not supported by this CLI: no stage breakdown'}"
          + (f"; peer: {args.peer_cmd}" if withPeer else ""), flush=True)

    results = []
    try:
        for index, scan in enumerate(scans):
            label = scan_label(scan, roots)
            entry = {"scan": label, "path": str(scan.resolve())}
            try:
                entry.update(scan_geometry(scan))
            except Exception as error:  # noqa: BLE001 - geometry is informative only
                entry["geometry_error"] = str(error)
            reference = references.get(str(scan.resolve())) or find_reference(scan)
            entry["reference"] = reference
            entry["ours"] = {"runs": []}
            if withPeer:
                entry["peer"] = {"runs": []}
            for repeat in range(args.repeat):
                order = ["ours", "peer"] if withPeer else ["ours"]
                if repeat % 2 == 1:
                    order.reverse()
                for who in order:
                    runDir = work / f"{index:02d}_{strip_suffix(scan.name)}" / f"{who}{repeat}"
                    runDir.mkdir(parents=True, exist_ok=True)
                    if who == "ours":
                        timingsPath = runDir / "timings.json" if hasTimings else None
                        command = ours_command(python, scan.resolve(), runDir / "out", timingsPath)
                        run = run_measured(command, cwd=str(runDir), env=env, timeout=args.timeout, log_prefix=str(runDir / "log"))
                        if timingsPath is not None:
                            run["timings"] = parse_timings(timingsPath, run["wall_s"])
                        if repeat == 0 and run["rc"] == 0:
                            masks, affine, table, problem = ours_masks(runDir / "out")
                            entry["ours"]["label_table"] = table
                            entry["ours"]["score"] = ({"error": problem} if problem else
                                                      score_masks(masks, affine, reference))
                    else:
                        copy = runDir / scan.name
                        shutil.copy2(scan, copy)
                        os.chmod(copy, 0o644)
                        command = peer_command(args.peer_cmd, copy)
                        run = run_measured(command, cwd=str(runDir), timeout=args.timeout, log_prefix=str(runDir / "log"))
                        if repeat == 0 and run["rc"] == 0:
                            masks, affine, problem = peer_masks(runDir, scan.name, args.peer_masks, args.peer_threshold)
                            entry["peer"]["score"] = ({"error": problem} if problem else
                                                      score_masks(masks, affine, reference))
                    entry[who]["runs"].append(run)
                    stages = (run.get("timings") or {}).get("stages") or {}
                    print(f"  {label} [{who} {repeat + 1}/{args.repeat}] rc {run['rc']} CPU {run['cpu_s']:.1f} s, "
                          f"wall {run['wall_s']:.1f} s, peak {run['peak_mb']:.0f} MB, load {run['load_before']}"
                          + ("".join(f", {short_stage(k)} {v:.1f}" for k, v in stages.items()))
                          + (f"  ERROR {run['error']}" if run.get("error") else ""), flush=True)
                    if not args.keep:
                        shutil.rmtree(runDir, ignore_errors=True)
            entry["ours"]["median"] = summarize_runs(entry["ours"]["runs"])
            if withPeer:
                entry["peer"]["median"] = summarize_runs(entry["peer"]["runs"])
                ours, peer = entry["ours"]["median"], entry["peer"]["median"]
                entry["ratio"] = {"cpu": ratio(ours["cpu_s"], peer["cpu_s"]), "wall": ratio(ours["wall_s"], peer["wall_s"]),
                                  "peak": ratio(ours["peak_mb"], peer["peak_mb"])}
            results.append(entry)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    table = format_table(results, withPeer)
    summary = overall_summary(results, withPeer)
    print()
    print(table)
    print()
    print(json.dumps(summary, indent=1))
    code = git_state(lib)
    code["lib"] = str(lib)
    code["repository_commit"] = git_state(REPO).get("commit")
    report = {
        "benchmark": "wholehead",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": f"PYTHONPATH={shlex.quote(str(lib))} " + " ".join(
            shlex.quote(a) for a in ([sys.executable, *sys.argv] if argv is None else [sys.executable, str(SCRIPT_PATH), *argv])),
        "machine": {k: v for k, v in machine_info().items() if v is not None},
        "ours": {"command": " ".join(ours_command(python, Path("SCAN"), Path("TMP/out"),
                                                  Path("TMP/timings.json") if hasTimings else None)),
                 "pythonpath": str(lib), "versions": python_versions(python, env), "timings_option": hasTimings,
                 "code": code},
        "peer": None if not withPeer else {
            "name": args.peer_name, "command": args.peer_cmd, "masks": args.peer_masks,
            "threshold": args.peer_threshold, "versions": python_versions(shlex.split(args.peer_cmd)[0]),
            "run_in": "a temporary folder holding a copy of the scan",
        },
        "repeat": args.repeat,
        "interleaving": "per scan and run: ours then peer on odd runs, peer then ours on even runs",
        "measures": {
            "cpu_s": "user + sys seconds of the whole process and its waited-for children (os.wait4)",
            "wall_s": "wall seconds from start to exit of the process",
            "peak_mb": "peak resident memory of the process (ru_maxrss), MiB",
            "stages": "wall seconds from the CLI's --timings file when it has that option (on a loaded machine they include "
                      "waiting for a core, so they add up to more than cpu_s); rest_s = process wall not covered by them; "
                      "cpu_stages: the file's *_cpu_s keys, if any",
            "score": "first run of each scan: per-side volumes (ours: labelmap voxels whose value the .seg.nrrd names Left/Right; "
                     "peer: mask voxels >= threshold), sides outside the plausible adult range flagged, and with reference labels "
                     "per-side Dice against them (reference resampled nearest-neighbour onto the output grid when grids differ)",
            "plausible_mm3": list(PLAUSIBLE_MM3),
        },
        "summary": summary,
        "table": table.splitlines(),
        "scans": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Paths as a reader can use them (relative to the repository, /path/to/... elsewhere), not
    # this machine's folders: the results files are committed.
    sys.path.insert(0, str(REPO / "experiments"))
    from results_page import repository_relative

    out.write_text(repository_relative(json.dumps(report, indent=1)) + "\n")
    print(f"wrote {out}")
    return 0 if all(r["rc"] == 0 for s in results for who in ("ours", "peer") if who in s for r in s[who]["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
