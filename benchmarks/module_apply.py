"""How long the desktop module's Apply takes on whole-head scans, through the module's own
child-process runner: what a user waits for between the click and the segments.

    PYTHONPATH=LUnetSegmentation python benchmarks/module_apply.py [--device cpu|cuda] \
        [--repeat 3] [--scans FILE ...] --out docs/results/module_apply_cpu.json

With slicer-core (real MRML, no Qt) each scan is a volume node of a headless scene and every
Apply is the module logic's own sequence: `childprocess.Runner.start` (the entry check, the
volume written for the child, the request), `Runner.poll` every 50 ms as the panel's timer
does, then `Runner.apply` (segments, provenance and the volume table written into the scene).
Without slicer-core (a lent GPU machine has none) the scene steps are left out and the figures
say so ("parent": "files"): the scan is written as the runner writes it, sent to the same
`childprocess.Worker`, and the result read back with `childprocess.read_result`.

The first Apply on each scan starts a new worker (interpreter, imports, model load and, on a
GPU, the CUDA context): "cold". The next `--repeat - 1` reuse it, as a user's next click does:
"warm". Per Apply: wall seconds from the click to the segments, the worker's share (request
to its "done" event, seen at the next poll), the parent's CPU seconds (process_time) and the
worker's (its user + system time through psutil). Medians per scan, and the warm/cold ratio.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LUnetSegmentation"))

from LUnetSegmentationLib import __version__  # noqa: E402

POLL_S = 0.05  # the panel's QTimer interval
TIMEOUT_S = 900
DEFAULT_SCANS = [("fs_norm", "norm.nii.gz"), ("colin27", "ch2.nii.gz"), ("hippodeep_example", "example_brain_t1_1p75mm.nii.gz")]


def worker_cpu_seconds(process) -> float:
    """User + system seconds of a worker process and its children so far (psutil)."""
    import psutil

    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def scene_available() -> bool:
    try:
        import slicer  # noqa: F401  (slicer-core)
    except ImportError:
        return False
    return True


def apply_in_scene(runner, volume, device: str) -> dict:
    """One Apply as the module runs it: start, poll until done, apply (each into a new node)."""
    clock, cpu = time.time(), time.process_time()
    run = runner.start(volume, device=device)
    started_cpu = worker_cpu_seconds(runner.worker.process)
    sent = time.time()
    while True:
        status = runner.poll()
        if status.state != "running":
            break
        time.sleep(POLL_S)
    if status.state != "done":
        raise RuntimeError(f"Apply failed: {status.message}")
    worker_done = time.time()
    worker_cpu = worker_cpu_seconds(runner.worker.process) - started_cpu
    node = runner.apply()
    figures = {"wall_s": time.time() - clock, "worker_wall_s": worker_done - sent, "parent_cpu_s": time.process_time() - cpu,
               "worker_cpu_s": worker_cpu, "segments": node.GetSegmentation().GetNumberOfSegments(),
               "device": run.result.device}
    return figures


def apply_through_files(worker, folder: Path, image, number: int, device: str) -> dict:
    """The same request without a scene: the volume written as Runner.start writes it, the
    worker's events read until done, the labels read back as Runner.poll reads them."""
    import SimpleITK as sitk

    from LUnetSegmentationLib.slicer_adapter.childprocess import read_result

    clock, cpu = time.time(), time.process_time()
    run_folder = folder / f"run-{number}"
    (run_folder / "output").mkdir(parents=True)
    sitk.WriteImage(image, str(run_folder / "input.nrrd"), False)
    started_cpu = worker_cpu_seconds(worker.process)
    sent = time.time()
    worker.send({"id": f"run-{number}", "input": str(run_folder / "input.nrrd"), "output_dir": str(run_folder / "output"),
                 "model": None, "device": device, "index_box": None, "name": "scan", "checked": None})
    deadline = sent + TIMEOUT_S
    done = None
    while done is None:
        if time.time() > deadline or not worker.alive:
            raise RuntimeError(f"the worker gave no result: {worker.stderr_tail()[-2000:]}")
        for event in worker.read_events():
            if event.get("id") == f"run-{number}" and event["event"] == "error":
                raise RuntimeError(event.get("message"))
            if event.get("id") == f"run-{number}" and event["event"] == "done":
                done = event
        time.sleep(POLL_S)
    worker_done = time.time()
    worker_cpu = worker_cpu_seconds(worker.process) - started_cpu
    result = read_result(done["summary"], image.GetSize())
    figures = {"wall_s": time.time() - clock, "worker_wall_s": worker_done - sent, "parent_cpu_s": time.process_time() - cpu,
               "worker_cpu_s": worker_cpu, "segments": len(result.specs), "device": result.device}
    shutil.rmtree(run_folder, ignore_errors=True)
    return figures


def measure_scan(path: Path, repeat: int, device: str, use_scene: bool) -> list[dict]:
    from LUnetSegmentationLib.files.volumeio import readImage
    from LUnetSegmentationLib.slicer_adapter.childprocess import Runner, Worker

    image = readImage(path)
    runs = []
    if use_scene:
        from LUnetSegmentationLib.slicer_adapter import mrml

        headless = mrml.createHeadlessScene()
        volume = mrml.imageToVolumeNode(headless.scene, image, path.name.split(".")[0])
        runner = Runner(python=sys.executable)  # a new worker: the first Apply is cold
        try:
            for _ in range(repeat):
                runs.append(apply_in_scene(runner, volume, device))
        finally:
            runner.shutdown()
            headless.clear()
        return runs
    with tempfile.TemporaryDirectory(prefix="lunet-apply-") as tmp:
        worker = Worker(sys.executable, Path(tmp) / "worker")
        try:
            for number in range(repeat):
                runs.append(apply_through_files(worker, Path(tmp), image, number, device))
        finally:
            worker.stop(timeout=10)
    return runs


def summarise(scan: str, runs: list[dict]) -> dict:
    def rounded(run):
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}

    cold, warm = runs[0], runs[1:]
    row = {"scan": scan, "cold": rounded(cold), "warm_runs": len(warm)}
    if warm:
        row["warm_median"] = {key: round(statistics.median(r[key] for r in warm), 3)
                              for key in ("wall_s", "worker_wall_s", "parent_cpu_s", "worker_cpu_s")}
        row["warm_over_cold_wall"] = round(row["warm_median"]["wall_s"] / cold["wall_s"], 3)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("LUNET_DATA", REPO.parent / "shared" / "data")) / "wholebrain"
    parser.add_argument("--scans", type=Path, nargs="+", default=None,
                        help="whole-head scans (default: three of ../shared/data/wholebrain, those present)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=3, help="Applies per scan: the first cold, the rest warm")
    parser.add_argument("--parent", choices=["auto", "scene", "files"], default="auto",
                        help="scene: real MRML through Runner (needs slicer-core); files: the worker only; auto: scene if possible")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "module_apply_cpu.json")
    args = parser.parse_args(argv)
    scans = args.scans or [data / folder / name for folder, name in DEFAULT_SCANS if (data / folder / name).is_file()]
    if not scans:
        sys.exit(f"no scans: give --scans, or put the shared whole-brain data at {data}")
    use_scene = args.parent == "scene" or (args.parent == "auto" and scene_available())
    if use_scene and not scene_available():
        sys.exit("--parent scene needs slicer-core (pip install slicer-core); --parent files measures the worker alone")
    result = {
        "what": "the desktop module's Apply on whole-head scans through childprocess.Runner (benchmarks/module_apply.py)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "command": "python benchmarks/module_apply.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "parent": "scene" if use_scene else "files",
        "device": args.device,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "scans": [],
    }
    if args.device != "cpu":
        import torch

        if torch.cuda.is_available():
            result["machine"]["gpu"] = torch.cuda.get_device_name(0)
    for scan in scans:
        row = summarise(scan.name, measure_scan(scan, args.repeat, args.device, use_scene))
        print(json.dumps(row), flush=True)
        result["scans"].append(row)
    warm = [row["warm_median"]["wall_s"] for row in result["scans"] if "warm_median" in row]
    result["median"] = {"cold_wall_s": round(statistics.median(r["cold"]["wall_s"] for r in result["scans"]), 3),
                        "warm_wall_s": round(statistics.median(warm), 3) if warm else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
