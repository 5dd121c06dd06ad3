"""The cohort and desktop-Apply section of docs/RESULTS.md, from benchmarks/cohort.py's and
benchmarks/module_apply.py's JSON files in docs/results/ (CPU here; the GPU files appear once
scripts/gpu_measurements.sh throughput has run on a lent GPU)."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
GPU_COMMAND = "bash scripts/stage_gpu_inputs.sh (here), then bash scripts/gpu_measurements.sh throughput (there)"


def _load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _machine(report: dict) -> str:
    machine = report.get("machine", {})
    gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
    return f"{machine.get('cpus', '?')} CPUs{gpu}, load average at the start {machine.get('load_average_at_start', '?')}"


def cluster_table(report: dict) -> list[str]:
    lines = [f"BIDS App `participant` on a Dask LocalCluster, one single-threaded worker per process, then `group` "
             f"({report['scans']} whole-head T1s, device {report['device']}, model {report['model']['id']} "
             f"{report['model']['version']}; {_machine(report)}). Command: `{report.get('command', '-')}`", "",
             "| workers | scans ok | scans per minute (all) | steady scans per minute | CPU-s per scan, median | peak MB per worker | group stage s |",
             "|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        cpu = run.get("cpu_seconds_per_scan") or {}
        lines.append(f"| {run['workers']} | {run['ok']} of {run['scans']} | {run['scans_per_minute']} | "
                     f"{run.get('steady_scans_per_minute')} | {cpu.get('median', '-')} | {run['peak_mb_per_worker']} | "
                     f"{run['group_seconds']} |")
    return lines + ["", "All: from the cluster's start to the last scan, one model load per worker included. Steady: "
                        "the scans after the first over the time from the first finished scan to the last.", ""]


def stages_line(report: dict) -> list[str]:
    mean = report["mean"]
    return [f"Where one scan's CPU time goes (mean over {len(report['scans'])} scans, one torch thread; command "
            f"`{report.get('command', '-')}`): reading {mean['read_s']} s, localization {mean['localize_s']} s, network and "
            f"resampling {mean['network_and_resampling_s']} s, writing and figure {mean['write_and_figure_s']} s.", ""]


def batched_rows(reports: list[dict]) -> list[str]:
    lines = ["The network batched over subjects (`--batched`): CPU workers read, localize, crop, map back and write; one "
             "process runs every subject's crops through the network in batches. Checked against the shipped path "
             "(`label_image`) on the first scans.", "",
             "| device | machine | scans | CPU workers | scans per second (reading and writing included) | network alone, scans per second | worker CPU-s per scan | same voxels as label_image | command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for report in reports:
        checks = report.get("check_against_label_image", [])
        same = sum(1 for check in checks if check["voxels_equal"] == 1.0)
        lines.append(f"| {report['device']} | {_machine(report)} | {report['scans']} | {report['cpu_workers']} | "
                     f"{report['scans_per_second']} | {report['network_scans_per_second']} | "
                     f"{report['worker_cpu_seconds_per_scan']} | {same} of {len(checks)} scans | `{report.get('command', '-')}` |")
    return lines + [""]


def apply_rows(reports: list[dict]) -> list[str]:
    lines = ["The desktop module's Apply through its child-process worker (`benchmarks/module_apply.py`): the first Apply "
             "on a scan starts the worker (cold), the next ones reuse it (warm). \"scene\": the module logic's own "
             "sequence on a real MRML scene (slicer-core), segments and table written; \"files\": the worker's part alone.", "",
             "| device | parent | scan | cold: click to segments s | worker CPU-s | warm: click to segments s (median) | worker CPU-s | parent CPU-s |",
             "|---|---|---|---|---|---|---|---|"]
    for report in reports:
        for row in report["scans"]:
            warm = row.get("warm_median", {})
            lines.append(f"| {report['device']} | {report['parent']} | {row['scan']} | {row['cold']['wall_s']} | "
                         f"{row['cold']['worker_cpu_s']} | {warm.get('wall_s', '-')} | {warm.get('worker_cpu_s', '-')} | "
                         f"{warm.get('parent_cpu_s', '-')} |")
    lines += [""] + [f"- {report['device']} ({_machine(report)}): `{report.get('command', '-')}`" for report in reports]
    return lines + [""]


def throughput_section() -> list[str]:
    lines = ["## Cohorts and the desktop Apply", ""]
    cluster, stages = _load("cohort_cpu.json"), _load("cohort_stages_cpu.json")
    # *_gpu_machine.json: the CPU baselines that gpu_measurements.sh runs on the lent GPU's machine
    for report in (cluster, _load("cohort_cpu_gpu_machine.json")):
        if report is not None:
            lines += cluster_table(report)
    if stages is not None:
        lines += stages_line(stages)
    batched_cuda, applied_cuda = _load("cohort_batched_cuda.json"), _load("module_apply_cuda.json")
    batched = [report for report in (_load("cohort_batched_cpu.json"), batched_cuda) if report]
    if batched:
        lines += batched_rows(batched)
    applied = [report for report in (_load("module_apply_cpu.json"), _load("module_apply_cpu_gpu_machine.json"),
                                     applied_cuda) if report]
    if applied:
        lines += apply_rows(applied)
    if batched_cuda is None or applied_cuda is None:
        lines += [f"GPU: not measured yet (no GPU has been lent for it). Command: {GPU_COMMAND}; it also measures the "
                  "CPU cluster and the CPU Apply on the same machine, as the baseline.", ""]
    return lines
