"""Throughput of the BIDS App: N whole-head scans through `participant` (Dask LocalCluster) with
1 and 2 workers, then `group`, in one run.

    python benchmarks/cohort.py [--scans 8] [--workers 1 2] [--device cpu] --out docs/results/cohort_cpu.json
    python benchmarks/cohort.py --stages 4 --out docs/results/cohort_stages_cpu.json
    python benchmarks/cohort.py --batched --device cuda --scans 512 --batch 64 --workers 15 --out docs/results/cohort_batched_cuda.json

--batched is the GPU throughput run: CPU workers (Dask) read, localize, crop, map back and write;
this process runs the network on `--batch` scans' crops (two per scan) in one forward pass and
checks the first `--check` scans' labels against pipeline.label_image (identical on CPU).

The dataset is laid out in a temporary folder as sub-01 ... sub-N, each a symlink to one of the
shared whole-brain T1s (../shared/data/wholebrain, or --data), cycling through them, so N can be
larger than the number of scans. Each worker count writes into a fresh derivatives folder.

Figures per worker count:
- scans_per_minute: N / wall time of the participant stage, everything included (cluster start,
  one model load per worker, reading, localization, segmentation, writing the derivatives and
  figures); steady_scans_per_minute: the N-1 scans after the first over the time from the first
  finished scan to the last (leaves out the cluster start and most of the model loading).
- cpu_seconds_per_scan: user+system CPU of the worker process during each scan (getrusage in
  the worker), median and mean; the first scan of each worker includes its model load.
- peak_mb_per_worker: the worker process's resident high-water mark (ru_maxrss) at its last
  scan, max over workers.
- group_seconds: the group stage (volumes.tsv and report.html) for the N scans.
The machine's load average at the start is recorded: on a shared machine the figures are
lower bounds of what the CPUs can do.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LUnetSegmentation"))

from LUnetSegmentationLib import __version__  # noqa: E402
from LUnetSegmentationLib.apps.bids import app as bids  # noqa: E402

SCANS = [  # (folder, file) in the shared whole-brain data; .mgz left out (same scan as fs_norm/norm.nii.gz)
    ("colin27", "ch2.nii.gz"), ("fs_norm", "norm.nii.gz"), ("chris_t1", "chris_t1.nii.gz"),
    ("otsu_t1", "otsu.nii.gz"), ("brainchop_t1", "t1_crop.nii.gz"), ("niimath_t1", "T1.nii.gz"),
    ("hippodeep_example", "example_brain_t1_oblique.nii.gz"), ("hippodeep_example", "example_brain_t1_1p75mm.nii.gz"),
]


def layout(root: Path, data: Path, count: int) -> list[str]:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "cohort benchmark", "BIDSVersion": "1.9.0"}))
    sources = [data / folder / name for folder, name in SCANS if (data / folder / name).is_file()]
    if not sources:
        sys.exit(f"no whole-brain scans under {data}")
    used = []
    for number in range(1, count + 1):
        source = sources[(number - 1) % len(sources)]
        anat = root / f"sub-{number:03d}" / "anat"
        anat.mkdir(parents=True)
        (anat / f"sub-{number:03d}_T1w.nii.gz").symlink_to(source.resolve())  # a relative --data too
        used.append(str(source.relative_to(data)))
    return used


def measure(dataset: Path, out: Path, workers: int, device: str) -> dict:
    arrivals = []

    def echo(line):
        arrivals.append(time.time())

    started = time.time()
    summary = bids.run_participant(dataset, out, workers=workers, device=device, echo=echo)
    wall = time.time() - started
    records = summary["records"]
    ok = [r for r in records if r["status"] == "ok"]
    finished = arrivals[1:-1]  # echo lines: the plan, one per scan, the summary
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) * 60 if len(finished) > 1 and finished[-1] > finished[0] else None
    per_worker: dict[int, dict] = {}
    for record in records:
        if "pid" in record:
            entry = per_worker.setdefault(record["pid"], {"scans": 0, "peak_mb": 0.0, "model_loads": 0})
            entry["scans"] += 1
            entry["peak_mb"] = max(entry["peak_mb"], record.get("peak_rss_mb") or 0.0)
            entry["model_loads"] = max(entry["model_loads"], record.get("model_loads_in_process") or 0)
    cpu = [r["cpu_seconds"] for r in ok]
    group_started = time.time()
    bids.run_group(dataset, out, echo=lambda *_: None)
    return {
        "workers": workers,
        "scans": len(records),
        "ok": len(ok),
        "failed": [(r["relative"], r["error"]) for r in records if r["status"] != "ok"],
        "wall_seconds": round(wall, 1),
        "scans_per_minute": round(len(records) / wall * 60, 2),
        "steady_scans_per_minute": None if steady is None else round(steady, 2),
        "cpu_seconds_per_scan": {"median": round(statistics.median(cpu), 2), "mean": round(statistics.mean(cpu), 2)} if cpu else None,
        "scan_seconds": {"median": round(statistics.median(r["seconds"] for r in ok), 2)} if ok else None,
        "peak_mb_per_worker": round(max((w["peak_mb"] for w in per_worker.values()), default=0.0), 1),
        "per_worker": {str(pid): w for pid, w in per_worker.items()},
        "group_seconds": round(time.time() - group_started, 2),
    }


def stages(data: Path, count: int, device: str) -> dict:
    """CPU seconds per stage of one whole-head scan, in this process with one torch thread:
    what would stay on the CPU if the network ran batched on a GPU (read, localize, write)."""
    import tempfile as _tempfile

    import torch

    from LUnetSegmentationLib.apps.bids import report
    from LUnetSegmentationLib.files.volumeio import readImage, writeLabelmap
    from LUnetSegmentationLib.runtime.localize import BOX_MM
    from LUnetSegmentationLib.runtime.pipeline import get_segmenter, label_image
    from LUnetSegmentationLib.runtime.wholebrain import find_hippocampi

    torch.set_num_threads(1)
    loaded = get_segmenter(None, device)
    rows = []
    sources = [data / folder / name for folder, name in SCANS if (data / folder / name).is_file()][:count]
    with _tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            clock = time.process_time()
            image = readImage(source)
            read = time.process_time() - clock
            clock = time.process_time()
            find_hippocampi(image, BOX_MM)  # as label_image localizes
            localization = time.process_time() - clock
            clock = time.process_time()
            result = label_image(image, loaded=loaded)  # localizes again, then the two crops through the network
            total = time.process_time() - clock
            clock = time.process_time()
            writeLabelmap(result.labels, Path(tmp) / "labels.nii.gz")
            rgb, _ = report.overlay_figure(image, result.labels, result.specs)
            report.write_png(rgb, Path(tmp) / "figure.png")
            write = time.process_time() - clock
            rows.append({"scan": str(source.relative_to(data)), "read_s": round(read, 2), "localize_s": round(localization, 2),
                         "network_and_resampling_s": round(total - localization, 2), "write_and_figure_s": round(write, 2)})
    means = {key: round(statistics.mean(r[key] for r in rows), 2) for key in rows[0] if key != "scan"}
    return {"what": "CPU seconds per stage, one torch thread, in one process (benchmarks/cohort.py --stages)",
            "device": device, "scans": rows, "mean": means}


# ----------------------------------------------------------------------------- batched network (GPU)


def _prepare(path: str, threads: int) -> dict:
    """On a CPU worker: read, localize as the shipped path does (wholebrain.find_hippocampi), and
    the aligned crop of every side found (on the model's grid)."""
    from LUnetSegmentationLib.apps.bids import cohort
    from LUnetSegmentationLib.runtime.localize import BOX_MM
    from LUnetSegmentationLib.files.volumeio import readImage
    from LUnetSegmentationLib.runtime.wholebrain import SIDES, _aligned_crop, find_hippocampi

    segmenter = cohort.worker_model(None, "cpu", threads).segmenter  # for its preprocessing settings
    clock = time.process_time()
    image = readImage(path)
    found = find_hippocampi(image, BOX_MM)
    sides = [side for side in SIDES if side in found.boxes]
    crops = [_aligned_crop(image, found.centres_lps[side], found.rotation, BOX_MM, segmenter) for side in sides]
    return {"image": image, "sides": sides, "boxes": [found.boxes[side] for side in sides],
            "true": [c[0] for c in crops], "canonical": [c[1] for c in crops], "cpu_s": time.process_time() - clock}


def _canonical(prepared: dict) -> list:
    return prepared["canonical"]


def _finish(prepared: dict, labels: list, out: str) -> dict:
    """On the CPU worker holding `prepared`: labels back onto the scan's grid with each side's
    values (as segment_head writes them), written as NIfTI."""
    import numpy as np
    import SimpleITK as sitk

    from LUnetSegmentationLib.apps.bids import cohort
    from LUnetSegmentationLib.files.volumeio import writeLabelmap
    from LUnetSegmentationLib.runtime.wholebrain import _labels_to_box, keep_largest_component, place_side, side_output_values

    clock = time.process_time()
    image = prepared["image"]
    output_values = side_output_values(cohort.worker_model(None, "cpu", 1).segmenter.card)
    result = np.zeros(image.GetSize()[::-1], dtype=np.uint8)
    for side, crop_labels, true_crop, box in zip(prepared["sides"], labels, prepared["true"], prepared["boxes"]):
        place_side(result, side, _labels_to_box(keep_largest_component(crop_labels), true_crop, image, box), box, output_values)
    labels_image = sitk.GetImageFromArray(result)
    labels_image.CopyInformation(image)
    writeLabelmap(labels_image, out)
    return {"out": out, "cpu_s": prepared["cpu_s"] + time.process_time() - clock}


def batched(data: Path, count: int, device: str, workers: int, batch: int, check: int) -> dict:
    """Whole heads with the network batched over many subjects: CPU workers (Dask) read, localize
    and crop; this process runs `Segmenter.segment_crops` on `batch` scans' crops (2 per scan)
    at once on `device`; the workers map the labels back and write them. Reading and writing
    are included; the cluster's start and the model loads are not (reported apart)."""
    import numpy as np
    import SimpleITK as sitk
    import torch
    from dask.distributed import as_completed

    from LUnetSegmentationLib.apps.bids import cohort
    from LUnetSegmentationLib.runtime.pipeline import get_segmenter, label_image
    from LUnetSegmentationLib.files.volumeio import readImage

    sources = [data / folder / name for folder, name in SCANS if (data / folder / name).is_file()]
    paths = [str(sources[i % len(sources)]) for i in range(count)]
    started = time.time()
    segmenter = get_segmenter(None, device).segmenter
    if device != "cpu":
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory(prefix="lunet-batched-") as tmp, cohort.dask_client(workers) as client:
        client.run(lambda: cohort.worker_model(None, "cpu", 1) and None)  # one model load per worker, before the clock
        setup = time.time() - started
        started = time.time()
        prepared = [client.submit(_prepare, path, 1, key=f"prepare-{i}", pure=False) for i, path in enumerate(paths)]
        crops = {client.submit(_canonical, p, key=f"crops-{i}", pure=False): i for i, p in enumerate(prepared)}
        finished, network_s, batches = {}, 0.0, []  # scan index -> its writing task (crops finish in any order)
        pending: list[tuple[int, list]] = []

        def run_batch():
            nonlocal network_s
            clock = time.time()
            labels, _, _, _ = segmenter.segment_crops([crop for _, scan_crops in pending for crop in scan_crops])
            if device != "cpu":
                torch.cuda.synchronize()
            network_s += time.time() - clock
            batches.append(len(pending))
            first = 0
            for index, scan_crops in pending:  # one crop per side found: usually two, one where a side failed
                scan_labels = labels[first: first + len(scan_crops)]
                first += len(scan_crops)
                finished[index] = client.submit(_finish, prepared[index], scan_labels, f"{tmp}/{index}.nii.gz", pure=False)
            pending.clear()

        for future in as_completed(list(crops)):
            pending.append((crops[future], future.result()))
            future.release()
            if len(pending) >= batch:
                run_batch()
        if pending:
            run_batch()
        results = dict(zip(finished, client.gather(list(finished.values()))))
        wall = time.time() - started
        agreement = []
        for index in range(min(check, count)):  # the batched labels against the shipped path's
            reference = sitk.GetArrayFromImage(label_image(readImage(paths[index]), loaded=get_segmenter(None, device)).labels)
            mine = sitk.GetArrayFromImage(sitk.ReadImage(results[index]["out"]))
            agreement.append(round(float((mine == reference).mean()), 6))
            agreement[-1] = {"scan": str(Path(paths[index]).relative_to(data)), "voxels_equal": agreement[-1],
                             "dice": round(float(2 * ((mine > 0) & (reference > 0)).sum() / max(1, (mine > 0).sum() + (reference > 0).sum())), 4)}
    return {
        "what": "whole heads, the network batched over subjects in this process (benchmarks/cohort.py --batched)",
        "device": device, "scans": count, "cpu_workers": workers, "batch_scans": batch, "batches": batches,
        "setup_seconds": round(setup, 1), "wall_seconds": round(wall, 1), "scans_per_second": round(count / wall, 3),
        "network_seconds": round(network_s, 2), "network_scans_per_second": round(count / network_s, 2) if network_s else None,
        "worker_cpu_seconds_per_scan": round(statistics.mean(r["cpu_s"] for r in results.values()), 2),
        "check_against_label_image": agreement,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("LUNET_DATA", REPO.parent / "shared" / "data")) / "wholebrain")
    parser.add_argument("--scans", type=int, default=8, help="N: scans in the cohort (cycling through the shared ones)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "cohort_cpu.json")
    parser.add_argument("--stages", type=int, default=0, metavar="N",
                        help="instead: CPU seconds per stage (read, localize, network, write) on N scans")
    parser.add_argument("--batched", action="store_true",
                        help="instead: the network batched over subjects in one process (GPU throughput), CPU workers "
                             "reading, localizing and writing")
    parser.add_argument("--batch", type=int, default=16, help="--batched: scans per network batch (2 crops each)")
    parser.add_argument("--check", type=int, default=2, help="--batched: compare this many scans with label_image")
    args = parser.parse_args(argv)
    command = "python benchmarks/cohort.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.batched:
        result = batched(args.data, args.scans, args.device, args.workers[0], args.batch, args.check)
        result.update(command=command, version=__version__,
                      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        result["machine"] = {"cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
        if args.device != "cpu":
            import torch

            result["machine"]["gpu"] = torch.cuda.get_device_name(0)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "check_against_label_image"}))
        print(json.dumps(result["check_against_label_image"]))
        return 0
    if args.stages:
        result = stages(args.data, args.stages, args.device)
        result.update(command=command, version=__version__,
                      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        result["machine"] = {"cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["mean"]))
        return 0
    with tempfile.TemporaryDirectory(prefix="lunet-cohort-") as tmp:
        dataset = Path(tmp) / "bids"
        sources = layout(dataset, args.data, args.scans)
        result = {
            "what": "BIDS App participant stage (Dask LocalCluster, one single-threaded worker process per worker, one "
                    "torch thread each) on N whole-head T1 scans, then the group stage; benchmarks/cohort.py",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "version": __version__,
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
            "device": args.device,
            "model": {k: v for k, v in bids.model_identity().items() if k in ("id", "version", "sha256")},
            "scans": args.scans,
            "sources": sources,
            "runs": [],
        }
        for workers in args.workers:
            run = measure(dataset, Path(tmp) / f"out-{workers}", workers, args.device)
            print(json.dumps({k: run[k] for k in ("workers", "ok", "scans_per_minute", "steady_scans_per_minute",
                                                    "cpu_seconds_per_scan", "peak_mb_per_worker")}), flush=True)
            if run["failed"]:  # a rate over failed scans measures nothing
                sys.exit(f"{len(run['failed'])} of {run['scans']} scans failed, e.g. {run['failed'][0]}")
            result["runs"].append(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
