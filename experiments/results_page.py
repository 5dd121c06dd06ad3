"""Write docs/RESULTS.md (and the Dice-vs-parameters plot) from the results JSON files.

    python experiments/results_page.py [--findings docs/results/paper_findings.json]

The speed tables come from docs/results/speed_cpu.json and, when present, speed_cuda.json.
The findings section is only written from a findings file that is not a smoke run; otherwise
the page says the run has not been done and gives the command that does it. The plot is
drawn with PySide6's QPainter offscreen (no matplotlib in the environment); without PySide6
the plot is skipped with a message and can be drawn later by rerunning this script.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from localizer_section import localizer_section  # noqa: E402
from throughput_section import throughput_section  # noqa: E402
from wholehead_section import wholehead_section  # noqa: E402
RESULTS = REPO / "docs" / "results"
LABELS = {"1": "anterior", "2": "posterior"}

CPU_FINDINGS_COMMAND = (
    "PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/paper_findings.py --data .gpu/cache.npz "
    "--epochs 6 --finetune-epochs 1 --prune-steps 3 --batch-size 4 --lunet-widths 4 8 --match-widths 4 8"
)
NOTES = RESULTS / "paper_findings_notes.md"  # the reading of the numbers, written by a person
CONVERGED_EPOCHS = 100  # the shipped model peaked at epoch 150 (batch 16); far fewer is undertrained
# Issue 26's convergence rule: every full training runs at least 200 epochs and stops once
# validation Dice has not improved for 50 (600 at most); resumable across lent-GPU calls.
GPU_FINDINGS_COMMAND = (
    "PYTHONPATH=LUnetSegmentation python experiments/paper_findings.py --data .gpu/cache.npz --work runs/pf_converged "
    "--epochs 600 --patience 50 --min-epochs 200 --validate-every 5 --finetune-epochs 40 --prune-steps 4 "
    "--batch-size 32 --device cuda --jobs 3"
)


# What the inference code does with the exploration's findings (the tables only say what was faster).
ADOPTION_NOTE = (
    "Adopted in the shipped inference: none of these, so far. The TorchScript path was faster on the CPU, but "
    "`torch.jit.trace` is deprecated (torch 2.13 warns: switch to torch.compile or torch.export), and it would have to be traced again for every model and device inside "
    "Slicer's own torch build. It is the first candidate if CPU latency matters: with the model card's 8-way "
    "mirroring, one crop costs about 8 network passes. A larger tile helps only when a whole volume is passed "
    "through the network, and the shipped whole-head path segments two hippocampus crops instead."
)


# ----------------------------------------------------------------------------- machine paths

# Absolute paths of the machine that ran a command (the results JSON files record the command
# as it was typed there): temporary, home and work folders. Other absolute paths (/dev/null,
# /data/ds in an example) are left alone.
MACHINE_ROOTS = ("tmp", "var/tmp", "work", "home", "root", "scratch", "Users", "mnt")


def _machine_path_pattern(checkout: Path) -> re.Pattern:
    """Paths under the usual machine roots, and under the folder that holds this checkout wherever
    it is (CI clones into folders such as /check/work/main, under none of the usual roots)."""
    roots = [re.escape(root) for root in MACHINE_ROOTS]
    holder = checkout.parent.as_posix().strip("/")
    if holder:  # a checkout at the top of the disk (/main) has no folder of its own to hide
        roots.insert(0, re.escape(holder))
    return re.compile(r"(?<![\w.:/~-])/(?:" + "|".join(roots) + r")/[^\s'\"`()<>|;,]*")


MACHINE_PATH = _machine_path_pattern(REPO)
# Folders at the top of a checkout that are not tracked but appear in commands.
UNTRACKED_TOP = {".venv", ".venv-web", ".gpu", "runs", "build"}


def _top_level_names() -> set[str]:
    """The names at the top of this repository (tracked ones, and the usual untracked ones)."""
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        names = {line.split("/", 1)[0] for line in tracked.splitlines() if line}
    except (OSError, subprocess.CalledProcessError):
        names = {path.name for path in REPO.iterdir()}
    return (names | UNTRACKED_TOP) - {""}


def repository_relative(text: str, top_level: set[str] | None = None, checkout: Path = REPO) -> str:
    """Machine paths in `text` made portable: a path inside a checkout of this repository becomes
    relative to its root (/work/main/.venv/bin/python -> .venv/bin/python), the shared data folder
    beside it becomes ../shared/..., and any other folder of the machine becomes /path/to/... so
    the page says where a thing was without naming one developer's disk."""
    top_level = _top_level_names() if top_level is None else top_level

    def portable(match) -> str:
        parts = PurePosixPath(match.group(0)).parts[1:]
        for index, part in enumerate(parts):
            if index and part in top_level:
                return "/".join(parts[index:])
        for index, part in enumerate(parts[:-1]):
            if part == "shared" and parts[index + 1] == "data":
                return "/".join(("..",) + parts[index:])
        skip = 2 if parts[0] in ("home", "Users") or parts[:2] == ("var", "tmp") else 1
        return "/path/to/" + "/".join(parts[skip:]) if len(parts) > skip else "/path/to"

    pattern = MACHINE_PATH if checkout == REPO else _machine_path_pattern(checkout)
    return pattern.sub(portable, text)


# ----------------------------------------------------------------------------- plot

def write_plot(result: dict, path: Path, size=(900, 600)) -> str:
    try:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtCore import QPointF, QRectF, Qt
        from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPainter, QPen
    except ImportError:
        return f"PySide6 not installed: {path} not drawn (rerun experiments/results_page.py where it is)"
    from PySide6.QtWidgets import QApplication

    # Fonts need an application. A QApplication (not a bare QGuiApplication) so that code
    # creating widgets later in the same process, e.g. the .ui tests, still works.
    app = QGuiApplication.instance() or QApplication(sys.argv[:1])
    series = _series(result)
    points = [p for s in series for p in s["points"]]
    if not points:
        return "no points to plot"
    width, height = size
    left, right, top, bottom = 70, 230, 30, 60
    xs = [math.log10(p[0]) for p in points]
    ys = [p[1] - p[2] for p in points] + [p[1] + p[2] for p in points]
    x0, x1 = math.floor(min(xs) * 2) / 2, math.ceil(max(xs) * 2) / 2
    y0, y1 = max(0.0, math.floor(min(ys) * 20) / 20), min(1.0, math.ceil(max(ys) * 20) / 20)
    if y1 - y0 < 0.05:
        y0, y1 = max(0.0, y0 - 0.05), min(1.0, y1 + 0.05)

    def to_px(parameters, dice):
        x = left + (math.log10(parameters) - x0) / max(1e-9, x1 - x0) * (width - left - right)
        y = top + (y1 - dice) / max(1e-9, y1 - y0) * (height - top - bottom)
        return QPointF(x, y)

    image = QImage(width, height, QImage.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setFont(QFont("Sans", 9))
    painter.setPen(QPen(QColor("black"), 1))
    painter.drawRect(QRectF(left, top, width - left - right, height - top - bottom))
    for decade in range(math.floor(x0), math.ceil(x1) + 1):  # 1-2-5 ticks on the log axis
        for factor in (1, 2, 5):
            value = factor * 10**decade
            if not x0 - 1e-9 <= math.log10(value) <= x1 + 1e-9:
                continue
            p = to_px(value, y0)
            painter.setPen(QPen(QColor(220, 220, 220), 1))
            painter.drawLine(QPointF(p.x(), top), QPointF(p.x(), height - bottom))
            painter.setPen(QPen(QColor("black"), 1))
            label = f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"
            painter.drawText(QRectF(p.x() - 30, height - bottom + 4, 60, 16), Qt.AlignCenter, label)
    steps = 5
    for i in range(steps + 1):
        dice = y0 + (y1 - y0) * i / steps
        p = to_px(10**x0, dice)
        painter.setPen(QPen(QColor(220, 220, 220), 1))
        painter.drawLine(QPointF(left, p.y()), QPointF(width - right, p.y()))
        painter.setPen(QPen(QColor("black"), 1))
        painter.drawText(QRectF(left - 50, p.y() - 8, 45, 16), Qt.AlignRight | Qt.AlignVCenter, f"{dice:.2f}")
    painter.drawText(QRectF(left, height - 30, width - left - right, 20), Qt.AlignCenter,
                     "trainable parameters (log scale)")
    painter.save()
    painter.translate(16, top + (height - top - bottom) / 2)
    painter.rotate(-90)
    painter.drawText(QRectF(-200, -10, 400, 20), Qt.AlignCenter, "mean Dice (validation, mean ± std over seeds)")
    painter.restore()
    for index, s in enumerate(series):
        colour = QColor(s["colour"])
        painter.setPen(QPen(colour, 2))
        previous = None
        for parameters, dice, std, label in s["points"]:
            p = to_px(parameters, dice)
            painter.drawLine(to_px(parameters, dice - std), to_px(parameters, dice + std))
            if s["line"] and previous is not None:
                painter.drawLine(previous, p)
            previous = p
            painter.setBrush(colour)
            painter.drawEllipse(p, 4, 4)
            if label:
                painter.drawText(QPointF(p.x() + 6, p.y() - 6), label)
        y = top + 10 + 20 * index
        painter.drawLine(QPointF(width - right + 15, y), QPointF(width - right + 35, y))
        painter.setPen(QPen(QColor("black"), 1))
        painter.drawText(QPointF(width - right + 40, y + 4), s["name"])
    painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path)):
        return f"could not write {path}"
    del app
    return f"wrote {path}"


def _series(result: dict) -> list[dict]:
    series = []
    f1 = result.get("finding1", {})
    unet = [(m["parameters"], m["mean_dice"]["mean"], m["mean_dice"]["std"], n) for n, m in f1.items() if n.startswith("unet")]
    lunet = sorted((m["parameters"], m["mean_dice"]["mean"], m["mean_dice"]["std"], n) for n, m in f1.items() if n.startswith("lunet"))
    narrow = sorted((v["narrow_unet"]["parameters"], v["narrow_unet"]["mean_dice"]["mean"], v["narrow_unet"]["mean_dice"]["std"],
                     "narrow Unet") for v in result.get("finding3", {}).values())
    series += [{"name": "standard Unet", "colour": "#d62728", "line": False, "points": unet},
               {"name": "LUnet (widths)", "colour": "#1f77b4", "line": True, "points": lunet},
               {"name": "narrow doubling Unet", "colour": "#ff7f0e", "line": False, "points": narrow}]
    colours = {"bn": "#2ca02c", "random_same": "#9467bd", "random_widest": "#7f7f7f"}
    names = {"bn": "pruned: BN scale", "random_same": "pruned: random, same level", "random_widest": "pruned: random, widest level"}
    for strategy, curve in result.get("finding2", {}).items():
        points = [(c.get("parameters_mean", c["parameters"]), c["mean_dice"]["mean"], c["mean_dice"]["std"], "") for c in curve]
        series.append({"name": names.get(strategy, strategy), "colour": colours.get(strategy, "black"), "line": True, "points": points})
    # The standard Unet last, so that the pruning curves starting at its point do not hide it.
    series.append(series.pop(0))
    return [s for s in series if s["points"]]


# ----------------------------------------------------------------------------- page

def _mib(value):
    return f"{value / 2**20:,.0f} MiB"


def speed_section(path: Path, title: str) -> list[str]:
    if not path.exists():
        return [f"### {title}", "", f"Not measured yet (`{path.relative_to(REPO)}` is absent).", ""]
    r = json.loads(path.read_text())
    meta = r["meta"]
    s = meta["settings"]
    lines = [f"### {title}", "",
             f"{meta['device_name']} ({meta['device']}), torch {meta['torch']}, {meta['torch_threads']} threads, {meta['date']}. "
             f"Crop {'x'.join(map(str, s['crop']))}, whole-brain {'x'.join(map(str, s['whole']))} (tile {s['tile']}), "
             f"training batch {s['train_batch']} of crops, memory budget for the largest batch {_mib(meta['memory_budget_bytes'])}.",
             ""]
    if meta.get("note"):
        lines += [f"Note: {meta['note']}", ""]
    columns = [("parameters", "parameters", lambda v: f"{v:,}"),
               ("macs_crop", "GMAC / crop", lambda v: f"{v / 1e9:.2f}"),
               ("macs_whole", "GMAC / whole brain (tiled)", lambda v: f"{v / 1e9:,.0f}"),
               ("crop_latency_s", "crop latency", lambda v: f"{v * 1000:,.0f} ms"),
               ("crop_peak_bytes", "crop peak memory", _mib),
               ("whole_latency_s", "whole-brain latency", lambda v: f"{v:,.1f} s"),
               ("whole_peak_bytes", "whole-brain peak memory", _mib),
               ("crop_cpu_s", "crop CPU time", lambda v: f"{v * 1000:,.0f} ms"),
               ("whole_cpu_s", "whole-brain CPU time", lambda v: f"{v:,.1f} s"),
               ("train_step_s", "training step", lambda v: f"{v:.2f} s"),
               ("train_step_cpu_s", "training-step CPU time", lambda v: f"{v:.2f} s"),
               ("train_peak_bytes", "training-step peak memory", _mib),
               ("max_train_batch", "largest batch in budget", str)]
    names = list(r["models"])
    lines.append("| | " + " | ".join(f"{n} ({r['models'][n]['description']})" for n in names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for key, label, fmt in columns:
        cells = []
        for n in names:
            value, ratio = r["models"][n].get(key), r["ratios"][n].get(key)
            if value is None:
                cells.append("-")
                continue
            cells.append(fmt(value) + (f" ({ratio:.2f}x)" if ratio is not None and n != meta["baseline"] else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "lunet" in r["ratios"]:
        q = r["ratios"]["lunet"]
        lines += ["", f"In short: against the doubling Unet of the same depth and first width, the shipped LUnet has "
                  f"{1 / q['parameters']:.0f}x fewer parameters but only {1 / q['macs_crop']:.1f}x fewer multiply-accumulates "
                  f"(most of the work is at full resolution, where both have {r['models']['lunet']['network']['width']} channels); "
                  f"crop latency x{q['crop_latency_s']:.2f}, whole-brain x{q['whole_latency_s']:.2f}, training step "
                  f"x{q['train_step_s']:.2f}, inference peak memory x{q['crop_peak_bytes']:.2f}, training peak memory "
                  f"x{q['train_peak_bytes']:.2f}, largest batch x{q['max_train_batch']:.2f}."]
    lines += ["", f"Ratios are to `{meta['baseline']}` from the same run. Whole-brain figures: {r['models'][names[0]]['whole_method']}. "
              f"Memory: {meta['memory_method']}. Inference: {meta['inference']}. Training step: {meta['train_step']}.", ""]
    if r.get("exploration"):
        lines += ["What makes inference faster (shipped LUnet, one crop unless noted):", "",
                  "| setting | before | after | speed-up | over 5% faster |", "|---|---|---|---|---|"]
        for item in r["exploration"]:
            if "error" in item:
                lines.append(f"| {item['name']} | - | - | not measured: {item['error'][:80]} | no |")
                continue
            lines.append(f"| {item['name']} | {item['before_s']:.3f} s | {item['after_s']:.3f} s | {item['speedup']:.2f}x | "
                         f"{'yes' if item['kept'] else 'no'} |")
            for tile in item.get("tiles", []):
                lines.append(f"| &nbsp; tile {tile['tile_size']} ({tile['tiles']} tiles, {tile['voxels_computed_per_voxel']:.1f} "
                             f"voxels computed per voxel) | | {tile['whole_latency_s']:.1f} s | | {tile['method']} |")
        lines += ["", ADOPTION_NOTE]
        lines.append("")
    return lines


def _dice(entry: dict) -> str:
    return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"


def findings_section(result: dict, plot: Path | None) -> list[str]:
    meta = result["meta"]
    lines = ["## Paper findings", "",
             f"Command: `{meta['command']}` ({meta['device']}, {'at most ' if meta.get('patience') else ''}"
             f"{meta['epochs']} epochs per training, "
             f"{meta['finetune_epochs']} after each pruning step, seeds {meta['seeds']}, {meta['levels']} levels). "
             f"Dice in %: {meta['dice']}; mean ± standard deviation over seeds.", ""]
    config = meta.get("train_config", {})
    if meta.get("patience"):
        trained = [n for m in result["finding1"].values() for n in m.get("epochs_trained", [])]
        span = f"{min(trained)}-{max(trained)}" if trained else "?"
        lines += [f"Trained to convergence: every full training ran at least {meta['min_epochs']} epochs and stopped "
                  f"once validation Dice had not improved for {meta['patience']} (at most {meta['epochs']}); they "
                  f"stopped after {span} epochs. The Dice reported is the last model's.", ""]
    elif meta["epochs"] < CONVERGED_EPOCHS:
        batch = config.get("batch_size", "?")
        lines += [f"**Reduced budget: no network here is trained to convergence.** Each saw {meta['epochs']} epochs "
                  f"at batch {batch} (the shipped model reached its best Dice at epoch 150 at batch 16 on a GPU). "
                  "These figures compare architectures at an equal, short training budget: they say which learns "
                  "fastest per case seen, not which is best when trained fully as in the paper.", ""]
    if not meta.get("complete", True):
        lines += ["**Incomplete run:** the pruning chains had not finished when this was written.", ""]
    if NOTES.exists():
        lines += [NOTES.read_text().strip(), ""]
    lines += ["Commands (resumable: rerun the same command to continue):", "",
              f"- reduced CPU run (as above, about 2 hours on 2 cores): `{CPU_FINDINGS_COMMAND}`",
              f"- GPU run to convergence (estimated 20-30 minutes on one H200 from its training-step time, so two or three 15-minute loans; each call resumes): `{GPU_FINDINGS_COMMAND}`",
              "- then `python experiments/results_page.py` redraws this page and the plot.", ""]
    if plot is not None:
        lines += [f"![Dice against parameters](results/{plot.name})", ""]
    lines += ["### 1. LUnet vs standard Unet, same depth and training", "",
              "| model | channels | parameters | mean Dice | anterior | posterior |", "|---|---|---|---|---|---|"]
    f1 = result["finding1"]
    for name, m in f1.items():
        lines.append(f"| {name} | {m['channels']} | {m['parameters']:,} | {_dice(m['mean_dice'])} | "
                     f"{_dice(m['per_label']['1'])} | {_dice(m['per_label']['2'])} |")
    unet = next(m for n, m in f1.items() if n.startswith("unet"))
    close = [(n, m) for n, m in f1.items() if n.startswith("lunet")
             and m["mean_dice"]["mean"] >= unet["mean_dice"]["mean"] - max(0.01, unet["mean_dice"]["std"])]
    if close:
        n, m = min(close, key=lambda item: item[1]["parameters"])
        lines += ["", f"Smallest LUnet within max(1 point, one Unet std) of the Unet: {n}, "
                  f"{unet['parameters'] / m['parameters']:.0f}x fewer parameters ({_dice(m['mean_dice'])} vs {_dice(unet['mean_dice'])})."]
    else:
        lines += ["", "No LUnet came within max(1 point, one Unet std) of the Unet's Dice in this run."]
    lines += ["Paper (HarP, binary): Unet 354k 85.8, LUnet 42k 86.4, LUnet 10.7k 85.3.", ""]
    if result.get("finding2"):
        lines += ["### 2. Pruning the trained Unet", "", "| strategy | step | levels pruned (per seed) | parameters | mean Dice |",
                  "|---|---|---|---|---|"]
        for strategy, curve in result["finding2"].items():
            for point in curve:
                lines.append(f"| {strategy} | {point['step']} | {point.get('levels', '-')} | "
                             f"{point.get('parameters_mean', point['parameters']):,.0f} | {_dice(point['mean_dice'])} |")
        bn, same = result["finding2"].get("bn", []), result["finding2"].get("random_same", [])
        pairs = list(zip(bn[1:], same[1:]))
        if pairs:
            gap = sum(a["mean_dice"]["mean"] - b["mean_dice"]["mean"] for a, b in pairs) / len(pairs)
            lines += ["", f"Mean Dice advantage of BN-scale pruning over random channels at the same level: {100 * gap:+.1f} points "
                      "(the paper: no meaningful advantage)."]
        lines.append("")
    if result.get("finding3"):
        lines += ["### 3. LUnet vs a doubling Unet of the same parameter count", "",
                  "| pair | narrow Unet channels | narrow Unet params | narrow Unet Dice | LUnet params | LUnet Dice |",
                  "|---|---|---|---|---|---|"]
        for name, pair in result["finding3"].items():
            a, b = pair["narrow_unet"], pair["lunet"]
            lines.append(f"| {name} | {a['channels']} | {a['parameters']:,} | {_dice(a['mean_dice'])} | {b['parameters']:,} | "
                         f"{_dice(b['mean_dice'])} |")
        lines.append("")
    return lines


def placeholder_section() -> list[str]:
    return ["## Paper findings", "",
            "**Not run yet.** The three findings (LUnet vs Unet at several widths; data-driven vs random pruning of a "
            "trained Unet; LUnet vs a narrow Unet of the same parameter count; 3 seeds each) have not been computed, so "
            "this page shows no Dice figures for them. The runner has only been smoke-tested (a few epochs, 1 seed, few "
            "cases), and those numbers are not findings.", "",
            "To produce them (resumable; rerun the same command to continue):", "",
            f"- GPU to convergence (the three seeds in parallel; estimated 20-30 minutes on one H200, so two or three 15-minute loans; each call resumes): `{GPU_FINDINGS_COMMAND}`",
            f"- reduced CPU run (estimated about 2 hours on 2 idle cores; 6 epochs leave the networks far from "
            f"converged, so prefer the GPU run): `{CPU_FINDINGS_COMMAND}`", "",
            "`.gpu/cache.npz` is the preprocessed hippocampus cache (208 cases; `train` writes one next to its output "
            "when given the Decathlon folder). `--epochs`, `--finetune-epochs` and `--prune-steps` are the budget knobs.", "",
            "Either writes `docs/results/paper_findings.json`, `docs/results/dice_vs_params.png` and this page.", ""]


def write_page(path: Path, findings: dict | None = None, plot: Path | None = None) -> None:
    lines = ["# Results", "",
             "Everything here is reproduced by the commands given in each section. Figures come from the JSON files in "
             "`docs/results/`; this page is generated by `experiments/results_page.py`.", ""]
    lines += wholehead_section()
    lines += localizer_section()
    lines += throughput_section()
    lines += ["## Speed and memory of the network alone", "",
             "Command: `PYTHONPATH=LUnetSegmentation python benchmarks/speed.py [--device cuda] --out docs/results/speed_cpu.json` "
             "(`--fast` is the CI smoke test: tiny volumes, meaningless figures).", ""]
    lines += speed_section(RESULTS / "speed_cpu.json", "CPU")
    lines += speed_section(RESULTS / "speed_cuda.json", "GPU")
    lines += findings_section(findings, plot) if findings and not findings["meta"].get("smoke") else placeholder_section()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The commands come from the results files as typed on the machine that ran them.
    path.write_text(repository_relative("\n".join(lines)) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", default=str(RESULTS / "paper_findings.json"))
    parser.add_argument("--page", default=str(REPO / "docs" / "RESULTS.md"))
    parser.add_argument("--plot", default=str(RESULTS / "dice_vs_params.png"))
    args = parser.parse_args(argv)
    findings = json.loads(Path(args.findings).read_text()) if Path(args.findings).exists() else None
    plot = None
    if findings and not findings["meta"].get("smoke") and args.plot:
        print(write_plot(findings, Path(args.plot)))
        plot = Path(args.plot)
    write_page(Path(args.page), findings, plot)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
