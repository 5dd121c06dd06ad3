"""The whole-head part of docs/RESULTS.md, from the JSON files the commands below write.

Called by experiments/results_page.py. Each table says which command made its figures; a table
whose file is missing is left out with a line saying how to make it.
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
MODELS = ("hippocampus-whole-lunet", "hippocampus-lunet")


def _load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def accuracy_table() -> list[str]:
    lines = ["### Accuracy against FreeSurfer's hippocampus", "",
             "Command: `python -m LUnetSegmentationLib evaluate-wholehead --pair norm.mgz aparc.a2009s+aseg.mgz "
             "--synthetic ../shared/data/synthseg_label_maps --subjects training_seg_17 training_seg_18 training_seg_19 "
             "training_seg_20 --variants 1mm 3mm 1x1x5 --model MODEL --out docs/results/wholehead_eval_MODEL.json`. "
             "Real scan: fs_norm (FreeSurfer norm.mgz, labels 17/53). Synthetic: whole heads made from the four label maps "
             "held out of training, in T1-, T2- and FLAIR-like contrast (synthetic_heads.synthesize_head). `3mm` and `1x1x5` are the "
             "same heads with 3 mm voxels or 5 mm slices along S-I (training/acquisition.py, simulate_acquisition). Per-side Dice; a "
             "refused case (no hippocampus found with confidence) counts as a failure, never as a volume.", ""]
    found = False
    for model in MODELS:
        result = _load(f"wholehead_eval_{model}.json")
        if not result:
            continue
        found = True
        lines += [f"**{model}** (test-time passes {result.get('mirror')}; weights {result['weights_sha256'][:12]}):", "",
                  "| case | variant | left Dice | right Dice | left mm3 (ref) | right mm3 (ref) |", "|---|---|---|---|---|---|"]
        for row in result["rows"]:
            if "error" in row:
                lines.append(f"| {row['case']} | {row['variant']} | refused | | {row['error'][:80]} | |")
                continue
            left, right = row["left"], row["right"]
            lines.append(f"| {row['case']} | {row['variant']} | {left['dice']:.3f} | {right['dice']:.3f} | "
                         f"{left['volume_mm3']:.0f} ({left['reference_mm3']:.0f}) | {right['volume_mm3']:.0f} ({right['reference_mm3']:.0f}) |")
        by_variant = ", ".join(f"{k} {_fmt(v)}" for k, v in result.get("mean_side_dice_by_variant", {}).items())
        lines += ["", f"Mean per-side Dice {_fmt(result.get('mean_side_dice'))}, lowest {_fmt(result.get('min_side_dice'))}; "
                      f"by variant: {by_variant}; failures {result.get('failures')}.", ""]
    if not found:
        lines += ["Not run yet: the command above writes the file this table is made from.", ""]
    return lines


def passes_table() -> list[str]:
    rows = []
    for model in MODELS:
        for passes in (1, 2, 8):
            result = _load(f"wholehead_passes_{model}_{passes}.json")
            if result:
                rows.append(f"| {model} | {passes} | {_fmt(result.get('mean_side_dice'))} | {_fmt(result.get('min_side_dice'))} | "
                            f"{len(result['rows'])} |")
    if not rows:
        return []
    return ["### Test-time passes on whole heads", "",
            "Command: `evaluate-wholehead` as above (1 mm, fs_norm and the four held-out synthetic T1 heads) with "
            "`--passes 1|2|8` (1 = no mirroring, 2 = plus the left-right flip, 8 = every flip).", "",
            "| model | passes | mean per-side Dice | lowest | cases |", "|---|---|---|---|---|", *rows, ""]


def speed_table() -> list[str]:
    result = _load("wholehead_cpu.json")
    if not result:
        return ["### Speed against hippodeep", "", "Not run yet: `benchmarks/wholehead.py` writes docs/results/wholehead_cpu.json.", ""]
    summary = result["summary"]
    ours, peer, ratio = summary["ours"], summary.get("peer", {}), summary.get("ratio_ours_over_peer", {})
    lines = ["### Speed and memory of the whole command-line process, against hippodeep", "",
             f"Command: `{result['command']}` (every shared whole-head scan, ours and the peer interleaved scan by scan, "
             f"{result.get('repeat', 1)} run(s) each; CPU-seconds of the whole process from wait4, so interpreter start, "
             "imports, reading, localization, network and writing all count). hippodeep (github:bthyreau/hippodeep_pytorch, "
             "1.04 M parameters, FreeSurfer-trained) runs from outside the repository with the same torch build.", "",
             "| | median CPU-s | CPU-s at 256^3 | median wall-s | peak MB at 256^3 |", "|---|---|---|---|---|",
             f"| ours | {_fmt(ours.get('cpu_s'), 1)} | {_fmt(ours.get('cpu_s_256cubed'), 1)} | {_fmt(ours.get('wall_s'), 1)} | "
             f"{_fmt(ours.get('peak_mb_256cubed'), 0)} |"]
    if peer:
        lines.append(f"| hippodeep | {_fmt(peer.get('cpu_s'), 1)} | {_fmt(peer.get('cpu_s_256cubed'), 1)} | "
                     f"{_fmt(peer.get('wall_s'), 1)} | {_fmt(peer.get('max_peak_mb'), 0)} |")
        lines += ["", f"CPU-seconds ours/hippodeep: median {_fmt(ratio.get('cpu_median'), 2)} (range "
                      f"{_fmt(ratio.get('cpu_min'), 2)}-{_fmt(ratio.get('cpu_max'), 2)}); wall {_fmt(ratio.get('wall_median'), 2)}."]
    lines += ["", f"Machine: {result.get('machine', {}).get('cpu_model', '')}, {result.get('machine', {}).get('cpu_count', '')} "
                  f"cores; date {result.get('date_utc', '')}; git {result.get('git', result.get('ours', {}).get('git', ''))}.", ""]
    return lines


def localization_table() -> list[str]:
    result = _load("localize_speed.json")
    if not result:
        return []
    lines = ["### Localization: fast registration", "", f"Command: `PYTHONPATH=LUnetSegmentation python {result['command']}`. "
             "CPU-seconds of localize() per setting and how far each hippocampus box centre moves from the thorough "
             "(version 1.0) setting; the boxes leave 8-11 mm around the hippocampus.", "",
             "| setting | median CPU-s | largest centre shift (mm) | failed its checks |", "|---|---|---|---|"]
    for name, figures in result["summary"].items():
        lines.append(f"| {name} | {_fmt(figures['median_cpu_s'], 2)} | {_fmt(figures['max_shift_mm'], 1)} | {figures['failures']} |")
    return lines + [""]


def presence_table() -> list[str]:
    lines = []
    for model in MODELS:
        result = _load(f"presence_{model}.json")
        if not result:
            continue
        positives = [r for r in result["rows"] if r["kind"] == "positive"]
        negatives = [r for r in result["rows"] if r["kind"] == "negative"]
        lines += [f"**{model}**: {len(positives)} crops with a hippocampus, mean foreground probability "
                  f"{min(r['mean_probability'] for r in positives):.3f}-{max(r['mean_probability'] for r in positives):.3f}, "
                  f"volumes {min(r['volume_mm3'] for r in positives):.0f}-{max(r['volume_mm3'] for r in positives):.0f} mm3; "
                  f"{len(negatives)} without, probability at most {max(r['mean_probability'] for r in negatives):.3f} "
                  f"(volumes up to {max(r['volume_mm3'] for r in negatives):.0f} mm3).", ""]
    if not lines:
        return []
    return ["### Presence check", "", "Command: `PYTHONPATH=LUnetSegmentation python experiments/presence_check.py --model MODEL "
            "--out docs/results/presence_MODEL.json`. The card's thresholds sit between the two groups.", "", *lines]


def wholehead_section() -> list[str]:
    return ["## Whole-head scans", "", *speed_table(), *accuracy_table(), *passes_table(), *localization_table(), *presence_table()]
