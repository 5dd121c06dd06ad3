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


def _code_line(result: dict) -> str:
    """The commit the benchmark measured (recorded under ours/code), or say it was not recorded."""
    code = result.get("ours", {}).get("code", {})
    commit = result.get("git") or code.get("commit")
    if not commit:
        return "commit not recorded"
    return f"commit {commit[:12]}" + (" (with uncommitted changes)" if code.get("dirty") else "")


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


def _agreement_row(label: str, figures: dict) -> str:
    limits = figures.get("limits_of_agreement") or [None, None]
    ratio = "n/a" if figures.get("mean_ratio") is None else f"{figures['mean_ratio']:.3f} +- {_fmt(figures.get('sd_ratio'))}"
    return (f"| {label} | {figures['n']} | {_fmt(figures.get('pearson_r'))} | {_fmt(figures.get('slope'), 2)} | "
            f"{_fmt(figures.get('intercept'), 0)} | {ratio} | {_fmt(figures.get('icc_a1'))} | "
            f"{_fmt(figures.get('bias'), 0)} ({_fmt(limits[0], 0)} to {_fmt(limits[1], 0)}) |")


def _atrophy_line(rows) -> list[str]:
    """Our volume of the hippocampi eroded to a fixed truth (the left, ~600 mm3)."""
    atrophied = [r for r in rows if r.get("pathology") == "atrophy" and "error" not in r]
    pairs = [(r["left"]["volume_mm3"], r["left"]["reference_mm3"]) for r in atrophied if not r["left"].get("refused")]
    declined = len(atrophied) - len(pairs)
    if not pairs:
        return [f"Atrophied left hippocampi: none reported ({declined} declined).", ""] if declined else []
    ours = sorted(v for v, _ in pairs)
    truth = sorted(t for _, t in pairs)
    truth_text = f"{truth[0]:.0f}" if truth[0] == truth[-1] else f"{truth[0]:.0f}-{truth[-1]:.0f}"
    return [f"Atrophied left hippocampi (truth {truth_text} mm3, {len(pairs)} heads): ours median "
            f"{ours[len(ours) // 2]:.0f} mm3 (range {ours[0]:.0f}-{ours[-1]:.0f}); declined (no volume reported): "
            f"{declined}.", ""]


def _resection_lines(resection: dict | None) -> list[str]:
    if not resection:
        return []
    lines = ["Resections (a hippocampus and 2 voxels around it replaced by CSF; that side has no truth volume, so it is "
             "left out of the agreement above): our volume on the resected side as a fraction of that hippocampus's "
             "truth before the resection, and the other side's change against the same head without pathology.", "",
             "| case | side | ours on the resected side, mm3 (truth before) | fraction | flagged | other side change |",
             "|---|---|---|---|---|---|"]
    for case in resection["cases"]:
        if case["refused"]:
            lines.append(f"| {case['case']} {case['variant']} | {case['resected_side']} | refused: {case['error'][:80]} | | | |")
            continue
        change = case.get("other_side_change")
        ours = "none reported" if case.get("side_refused") else f"{case['ours_mm3']:.0f}"
        lines.append(f"| {case['case']} {case['variant']} | {case['resected_side']} | {ours} "
                     f"({case['truth_before_mm3']:.0f}) | {_fmt(case.get('fraction_of_truth_before'), 2)} | "
                     f"{'yes' if case.get('flagged') else 'no'} | "
                     f"{'refused' if case.get('other_side_refused') else 'n/a' if change is None else f'{100 * change:+.1f} %'} |")
    worst = resection.get("max_abs_other_side_change")
    lines += ["", f"Resected sides: mean fraction {_fmt(resection.get('mean_fraction_of_truth_before'), 2)}, highest "
                  f"{_fmt(resection.get('max_fraction_of_truth_before'), 2)}, {resection.get('under_25_percent')} under 25 %, "
                  f"{resection.get('refused')} refused; other side changed by at most "
                  f"{'n/a' if worst is None else f'{100 * worst:.1f} %'}.", ""]
    return lines


def _code_text(code) -> str:
    """Which code measured: a long evaluation can run on an older commit than the page's."""
    if not code or not code.get("commit"):
        return ""
    changed = code.get("changed_files") or []
    newer = f" ({', '.join(Path(f).name for f in changed)} newer)" if changed else ""
    return f"; code {code['commit'][:7]}{newer}"


def agreement_table() -> list[str]:
    """Volume agreement (evaluate-wholehead): one table per docs/results/wholehead_agreement_*.json."""
    results = sorted(RESULTS.glob("wholehead_agreement_*.json"))
    lines = ["### Volume agreement with the reference", "",
             "Whether a volume tracks the truth from one head to the next (what a study comparing people needs), over "
             "every case, both sides pooled: Pearson r, the least-squares slope and intercept of our volume on the "
             "reference's, the mean ratio ours/reference, ICC(A,1) (two-way, absolute agreement, single measures; "
             "McGraw & Wong 1996) and the Bland-Altman bias with 95 % limits of agreement, all in mm3 "
             "(training/agreement.py). Atrophied heads: ventricles widened by 2 mm and each hippocampus eroded from "
             "its surface into the temporal horn, the left to 600 mm3, the right to 55 % of its volume "
             "(training/synthetic_heads.py); the real scan is changed the same way, its new fluid drawn from its own "
             "CSF. Rows per group follow the overall one.", ""]
    if not results:
        return lines + ["Not run yet: `python -m LUnetSegmentationLib evaluate-wholehead ... --pathologies none atrophy "
                        "resection --out docs/results/wholehead_agreement_MODEL.json --bland-altman "
                        "docs/results/wholehead_agreement_MODEL.png` writes the file this table is made from.", ""]
    for path in results:
        result = json.loads(path.read_text())
        agreement = result.get("agreement")
        if not agreement:
            continue
        version = f" {result['model_version']}" if result.get("model_version") else ""
        lines += [f"**{result['model']}{version}** (weights {result['weights_sha256'][:12]}, test-time passes "
                  f"{result.get('mirror')}, variants {', '.join(result.get('variants', []))}; `docs/results/{path.name}`"
                  f"{_code_text(result.get('code'))}). "
                  f"Command: `{result.get('command', 'not recorded')}`", "",
                  "| cases | n sides | r | slope | intercept mm3 | ratio +- SD | ICC(A,1) | bias mm3 (95 % limits) |",
                  "|---|---|---|---|---|---|---|---|", _agreement_row("all", agreement["all"])]
        if "healthy" in agreement:
            lines.append(_agreement_row("healthy heads (no pathology)", agreement["healthy"]))
        if len(agreement.get("by_variant", {})) > 1:
            lines += [_agreement_row(variant, figures) for variant, figures in agreement["by_variant"].items()]
        lines += [_agreement_row(group, figures) for group, figures in agreement.get("by_group", {}).items()]
        lines += ["", f"Refused (no volume, not in the table): {agreement.get('refused_cases', 0)} cases, "
                      f"{agreement.get('refused_sides', 0)} single sides.", ""]
        lines += _atrophy_line(result.get("rows", []))
        lines += _resection_lines(result.get("resection"))
        plot = path.with_suffix(".png")
        if plot.is_file():
            lines += [f"![Bland-Altman plot, {result['model']}](results/{plot.name})", ""]
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
                  f"cores; date {result.get('date_utc', '')}; {_code_line(result)}.", ""]
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


def contrast_gate_table() -> list[str]:
    """hippocampus-lunet's refusal of scans that do not look T1-weighted (runtime/contrast.py)."""
    result = _load("contrast_gate.json")
    if not result:
        return []
    lines = ["### The T1-only model's contrast gate", "",
             "`hippocampus-lunet` was trained on T1 only; on a FLAIR it outlined another structure (977 mm3 at Dice 0.003), "
             "so it refuses a head whose deep brain is not brighter than its outer brain: the rank of the deep median among "
             f"the outer shell's voxels, learned localizer's intracranial space, refused below {result['limit']}. The "
             "default model takes every contrast and is not gated. Command: "
             f"`{result['command']}`", "",
             "| scans | cases | rank, lowest | rank, highest | refused |", "|---|---|---|---|---|"]
    lines += [f"| {group} | {figures['cases']} | {figures['min']:.3f} | {figures['max']:.3f} | {figures['refused_at_limit']} |"
              for group, figures in result["groups"].items()]
    refused_t1 = [row["case"] for row in result["rows"]
                  if row["group"] in ("real T1", "synthetic t1") and row["rank"] is not None and row["rank"] < result["limit"]]
    return lines + ["", "Real T1: the shared whole heads as they lie and turned 30 degrees (pitch, yaw). Synthetic: maps "
                        "17-20, healthy, atrophied and resected. T1 heads refused: "
                        f"{', '.join(refused_t1) if refused_t1 else 'none'}.", ""]


def wholehead_section() -> list[str]:
    return ["## Whole-head scans", "", *speed_table(), *accuracy_table(), *contrast_gate_table(), *agreement_table(),
            *passes_table(), *localization_table(), *presence_table()]
