"""Score whole-head segmentations against FreeSurfer-numbered labels: per side Dice, HD95, volume
ratio, and the agreement of the volumes over all cases (r, slope, ICC(A,1), Bland-Altman).

    python -m LUnetSegmentationLib evaluate-wholehead --pair norm.mgz aseg.mgz [--pair IMG LABELS ...]
        [--synthetic ../shared/data/synthseg_label_maps --subjects training_seg_17 ...]
        [--variants 1mm 3mm 1x1x5] [--pathologies none atrophy resection] [--model MODEL]
        [--out results.json] [--bland-altman agreement.png]

Each image goes through the user's path (pipeline.label_image: localization, both sides, the
card's test-time setting); the result's segments are pooled per side (a card's anterior and
posterior parts form that side's hippocampus) and compared with the reference's left (17) and
right (53) hippocampus on the reference's own grid.

Variants simulate other acquisitions of the same head: `3mm` (isotropic), `1x1x5` (5 mm
slices along the head's superior-inferior axis, whatever the storage order), `1x5x1` and
`5x1x1` likewise along the anterior-posterior and left-right axes: Gaussian slice profile,
then resampling (scripts and tests use the same function, acquisition.simulate_acquisition).

`--synthetic DIR` adds whole-head synthetic images made from label maps in DIR (synthetic_heads.
synthesize_head: T1-, T2- and FLAIR-like contrasts), e.g. the maps held out from training.

`--pathologies` adds changed copies of every head (synthetic_heads): `atrophy` (hippocampi eroded
into the temporal horn, the left to about 600 mm3, ventricles widened) and `resection` /
`resection-right` (a hippocampus and 2 voxels around it become CSF). The truth is the changed
label map; a real scan (--pair) is changed in the same way, its new fluid drawn from its own CSF.

Volume agreement (training/agreement.py) pools both sides of every scored case, per variant and
over all of them. A resected side has no truth volume (0), so it is left out there and reported
on its own: our volume on that side as a fraction of its truth before the resection, and the
other side's change against the same head without pathology (when `none` is in the set).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..runtime.preprocess import InputError
from .agreement import format_agreement, volume_agreement
from .metrics import dice, hausdorff95
from .synthetic_heads import PATHOLOGIES, resected_side

FREESURFER_HIPPOCAMPUS = {"left": 17, "right": 53}
VARIANT_HELP = "'1mm' (as stored), '<k>mm' (isotropic k mm), '1x1x<k>' / '1x<k>x1' / '<k>x1x1' (k mm along S-I / A-P / R-L)"


def parse_variant(variant: str):
    """(None, None) for the scan as stored; else (axis or None for isotropic, mm)."""
    import re

    if variant == "1mm":
        return None, None
    iso = re.fullmatch(r"(\d+(?:\.\d+)?)mm", variant)
    if iso:
        return None, float(iso.group(1))
    thick = re.fullmatch(r"(\d+(?:\.\d+)?)x(\d+(?:\.\d+)?)x(\d+(?:\.\d+)?)", variant)
    if thick:
        sizes = [float(v) for v in thick.groups()]
        coarse = [i for i, v in enumerate(sizes) if v != 1.0]
        if len(coarse) == 1:
            return "RAS"[coarse[0]], sizes[coarse[0]]
    raise InputError(f"Unknown variant {variant!r}: use {VARIANT_HELP}.")


def variant_image(image: sitk.Image, variant: str) -> sitk.Image:
    from .acquisition import simulate_acquisition

    axis, mm = parse_variant(variant)
    return image if mm is None else simulate_acquisition(image, mm, axis)


def _side_masks(result, shape) -> dict[str, np.ndarray]:
    labels = sitk.GetArrayViewFromImage(result.labels)
    masks = {}
    for side in FREESURFER_HIPPOCAMPUS:
        values = [spec.value for spec in result.specs if spec.side == side]
        masks[side] = np.isin(labels, values) if values else np.zeros(shape, bool)
    return masks


def score(result, reference: sitk.Image) -> dict:
    """Per side Dice, HD95 (mm) and volume ratio (ours / reference) on the reference's grid."""
    reference_array = sitk.GetArrayViewFromImage(reference)
    # Our labels onto the reference grid (nearest: label values), when the grids differ.
    labels = result.labels
    if labels.GetSize() != reference.GetSize() or not np.allclose(labels.GetSpacing(), reference.GetSpacing()):
        labels = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    moved = type(result)(**{**result.__dict__, "labels": labels})
    masks = _side_masks(moved, reference_array.shape)
    voxel = float(np.prod(reference.GetSpacing()))
    out = {}
    for side, value in FREESURFER_HIPPOCAMPUS.items():
        truth = reference_array == value
        ours = masks[side]
        distance = hausdorff95(ours, truth, reference.GetSpacing()[::-1])
        out[side] = {
            "dice": round(dice(ours, truth), 4),
            "hd95_mm": round(distance, 2) if math.isfinite(distance) else None,
            "volume_mm3": round(float(ours.sum()) * voxel, 1),
            "reference_mm3": round(float(truth.sum()) * voxel, 1),
            "volume_ratio": round(float(ours.sum()) / max(float(truth.sum()), 1.0), 3),
        }
    return out


def _pair_loader(image_path, labels_path, pathology: str, seed: int):
    """load() -> (image, labels, truth before the pathology or None) of a real scan, with
    `pathology` made in its labels and painted into it."""
    def load():
        from ..files.volumeio import readImage
        from .synthetic_heads import apply_pathology, paint_pathology

        image, labels = readImage(image_path), readImage(labels_path)
        if pathology == "none":
            return image, labels, None
        before = np.rint(sitk.GetArrayViewFromImage(labels)).astype(np.int32)
        if image.GetSize() != labels.GetSize():
            raise InputError(f"--pathologies {pathology} needs the labels of {image_path} on the scan's own grid "
                             f"(scan {image.GetSize()}, labels {labels.GetSize()}): resample them, or leave "
                             f"{pathology} out for this pair.")
        after = apply_pathology(before, labels.GetSpacing(), pathology)
        changed = sitk.GetImageFromArray(after.astype(np.int16))
        changed.CopyInformation(labels)
        return paint_pathology(image, before, after, seed), changed, _truth_volumes(labels)
    return load


def _synthetic_loader(label_map: Path, contrast: str, pathology: str, seed: int):
    """load() -> (image, labels, truth before the pathology or None) of a synthetic head."""
    def load():
        from .synthetic_heads import synthesize_head

        image, labels = synthesize_head(label_map, contrast, seed, pathology)
        return image, labels, None if pathology == "none" else _truth_volumes(sitk.ReadImage(str(label_map)))
    return load


def _cases(pairs, synthetic, subjects, contrasts, pathologies, seed) -> list:
    """[(name, facts, load)]: `facts` says where a case comes from (source, contrast, pathology),
    `load()` gives its (image, labels, truth volumes before the pathology or None)."""
    from ..files.volumeio import case_name

    cases = []
    for image, labels in pairs:
        for pathology in pathologies:
            name = case_name(image) + ("" if pathology == "none" else f" {pathology}")
            cases.append((name, {"base": case_name(image), "source": "real", "contrast": None, "pathology": pathology},
                          _pair_loader(image, labels, pathology, seed)))
    if synthetic:
        maps = sorted(Path(synthetic).glob("*.nii.gz"))
        if subjects:
            maps = [m for m in maps if any(m.name.startswith(s) for s in subjects)]
        if not maps:
            raise InputError(f"No label maps (*.nii.gz) {'matching --subjects ' if subjects else ''}in {synthetic}.")
        for path in maps:
            for contrast in contrasts:
                for pathology in pathologies:
                    base = f"{path.name.split('.')[0]} {contrast}"
                    name = base + ("" if pathology == "none" else f" {pathology}")
                    cases.append((name, {"base": base, "source": "synthetic", "contrast": contrast, "pathology": pathology},
                                  _synthetic_loader(path, contrast, pathology, seed)))
    return cases


def group_of(row) -> str:
    """The group a case's point is coloured by: its pathology, else real or the synthetic contrast."""
    if row.get("pathology", "none") != "none":
        return "atrophied" if row["pathology"] == "atrophy" else "resected (other side)"
    return "real" if row.get("source") == "real" else f"synthetic {row.get('contrast')}"


def side_observations(rows) -> list:
    """One (row, side) per measured hippocampus that has a truth volume: resected sides, refused
    cases and refused sides (the pipeline reported no volume there) left out."""
    return [(row, side) for row in rows if "error" not in row for side in FREESURFER_HIPPOCAMPUS
            if side != resected_side(row.get("pathology", "none")) and not row[side].get("refused")]


def refused_sides(rows) -> int:
    """Sides with a truth volume that the pipeline declined to report (the rest of the case was)."""
    return sum(1 for row in rows if "error" not in row for side in FREESURFER_HIPPOCAMPUS
               if side != resected_side(row.get("pathology", "none")) and row[side].get("refused"))


def agreement_summary(rows, variants) -> dict:
    """Volume agreement pooled over sides: over every variant, per variant and per group."""
    def figures(chosen):
        return volume_agreement([row[side]["volume_mm3"] for row, side in chosen],
                                [row[side]["reference_mm3"] for row, side in chosen])

    observations = side_observations(rows)
    groups = list(dict.fromkeys(group_of(row) for row, _ in observations))
    return {
        "all": figures(observations),
        "healthy": figures([o for o in observations if o[0].get("pathology", "none") == "none"]),
        "by_variant": {variant: figures([o for o in observations if o[0]["variant"] == variant]) for variant in variants},
        "by_group": {group: figures([o for o in observations if group_of(o[0]) == group]) for group in groups},
        "refused_cases": sum(1 for row in rows if "error" in row),
        "refused_sides": refused_sides(rows),
        "left_out_resected_sides": sum(1 for row in rows if "error" not in row and resected_side(row.get("pathology", "none"))),
        "note": "sides pooled; resected sides left out (their truth is 0); refused cases and sides have no volume and are "
                "counted apart",
    }


def resection_summary(rows) -> dict | None:
    """Per resected case: our volume on the resected side as a fraction of that hippocampus's truth
    before the resection, and the other side's change against the same head without pathology."""
    lines = []
    intact = {(row["base"], row["variant"]): row for row in rows if row.get("pathology") == "none" and "error" not in row}
    for row in rows:
        side = resected_side(row.get("pathology", "none"))
        if side is None:
            continue
        other = "right" if side == "left" else "left"
        line = {"case": row["case"], "variant": row["variant"], "resected_side": side}
        if "error" in row:
            line.update(refused=True, error=row["error"])
            lines.append(line)
            continue
        before = row["truth_before_pathology_mm3"][side]
        line.update(refused=False, ours_mm3=row[side]["volume_mm3"], truth_before_mm3=before,
                    fraction_of_truth_before=round(row[side]["volume_mm3"] / before, 3) if before else None,
                    fraction_of_other_side_truth=(round(row[side]["volume_mm3"] / row[other]["reference_mm3"], 3)
                                                  if row[other]["reference_mm3"] else None),
                    side_refused=bool(row[side].get("refused")),
                    # no volume reported there, or a warning that names the side ("The left hippocampus ...")
                    flagged=bool(row[side].get("refused"))
                    or any(f"{side} hippocampus" in text.lower() for text in row.get("warnings", [])),
                    warnings=list(row.get("warnings", [])))
        unchanged = intact.get((row["base"], row["variant"]))
        if row[other].get("refused"):
            line["other_side_refused"] = True
        elif unchanged and unchanged[other]["volume_mm3"] > 0 and not unchanged[other].get("refused"):
            line["other_side_change"] = round(row[other]["volume_mm3"] / unchanged[other]["volume_mm3"] - 1, 4)
        lines.append(line)
    if not lines:
        return None
    fractions = [line["fraction_of_truth_before"] for line in lines if line.get("fraction_of_truth_before") is not None]
    changes = [abs(line["other_side_change"]) for line in lines if "other_side_change" in line]
    return {
        "cases": lines,
        "refused": sum(1 for line in lines if line["refused"]),
        "mean_fraction_of_truth_before": round(float(np.mean(fractions)), 3) if fractions else None,
        "max_fraction_of_truth_before": round(float(np.max(fractions)), 3) if fractions else None,
        "under_25_percent": sum(1 for f in fractions if f < 0.25),
        "max_abs_other_side_change": round(float(np.max(changes)), 4) if changes else None,
        "mean_abs_other_side_change": round(float(np.mean(changes)), 4) if changes else None,
    }


def evaluate_wholehead(pairs, model=None, device="cpu", variants=("1mm",), synthetic=None, subjects=None,
                       contrasts=("t1", "t2", "flair"), seed=0, passes=None, printer=print,
                       pathologies=("none",)) -> dict:
    from ..runtime.engine import Segmenter
    from ..runtime.pipeline import LoadedModel, label_image

    for variant in variants:
        parse_variant(variant)  # refuse a typo before any work
    for pathology in pathologies:
        if pathology not in PATHOLOGIES:
            raise InputError(f"Unknown pathology {pathology!r}: use {', '.join(PATHOLOGIES)}.")

    cases = _cases(pairs, synthetic, subjects, contrasts, pathologies, seed)
    loaded = LoadedModel(Segmenter(model, device, mirror=passes))
    rows = []
    for name, facts, load in cases:
        image, reference, truth_before = load()  # truth_before: the hippocampi as they were, for the resection figures
        for variant in variants:
            row = {"case": name, "variant": variant, **facts}
            if truth_before:
                row["truth_before_pathology_mm3"] = truth_before
            started = time.time()
            try:
                result = label_image(variant_image(image, variant), loaded=loaded, name=name)
                row.update(score(result, reference))
                for side, reason in (result.details.get("failed_sides") or {}).items():
                    if side in row:  # the pipeline reported no volume for this side, and why
                        row[side]["refused"] = reason
                row["warnings"] = list(result.warnings)
                row["notes"] = list(result.notes)
                row["confidence"] = result.details.get("confidence", {})
            except Exception as error:  # noqa: BLE001 - a failed case is a result too
                row["error"] = str(error)
            row["seconds"] = round(time.time() - started, 2)
            rows.append(row)
            if printer:
                printer(_line(row))
    scored = [r for r in rows if "error" not in r]
    dices = [r[side]["dice"] for r in scored for side in FREESURFER_HIPPOCAMPUS
             if side != resected_side(r["pathology"]) and not r[side].get("refused")]
    # Resected sides: Dice against an empty truth is 0 by definition. Refused sides: counted apart, as refused cases are.
    summary = {
        "model": loaded.segmenter.card.model_id, "model_version": loaded.segmenter.card.version,
        "weights_sha256": loaded.segmenter.card.weights_sha256,
        "device": device, "mirror": loaded.segmenter.mirror, "variants": list(variants),
        "pathologies": list(pathologies),
        "mean_side_dice": round(float(np.mean(dices)), 4) if dices else None,
        "min_side_dice": round(float(np.min(dices)), 4) if dices else None,
        "failures": len(rows) - len(scored), "refused_sides": refused_sides(rows), "rows": rows,
    }
    by_variant = {}
    for variant in variants:
        mine = [r[side]["dice"] for r in scored if r["variant"] == variant for side in FREESURFER_HIPPOCAMPUS
                if side != resected_side(r["pathology"]) and not r[side].get("refused")]
        by_variant[variant] = round(float(np.mean(mine)), 4) if mine else None
    summary["mean_side_dice_by_variant"] = by_variant
    summary["agreement"] = agreement_summary(rows, variants)
    resection = resection_summary(rows)
    if resection:
        summary["resection"] = resection
    return summary


def _truth_volumes(labels: sitk.Image) -> dict:
    array = sitk.GetArrayViewFromImage(labels)
    voxel = float(np.prod(labels.GetSpacing()))
    return {side: round(float(np.count_nonzero(array == value)) * voxel, 1) for side, value in FREESURFER_HIPPOCAMPUS.items()}


def _line(row) -> str:
    if "error" in row:
        return f"{row['case']:<28} {row['variant']:<7} FAILED {row['error']}"
    parts = [f"{side} Dice {row[side]['dice']:.3f} vol {row[side]['volume_mm3']:.0f}/{row[side]['reference_mm3']:.0f}"
             for side in FREESURFER_HIPPOCAMPUS]
    return f"{row['case']:<28} {row['variant']:<7} " + "  ".join(parts) + f"  ({row['seconds']:.1f} s)"


def report_lines(summary) -> list[str]:
    """The figures for the terminal: Dice, volume agreement and the resection line."""
    lines = [f"mean per-side Dice {summary['mean_side_dice']}, lowest {summary['min_side_dice']}, "
             f"by variant {summary['mean_side_dice_by_variant']}, failures {summary['failures']}, "
             f"refused sides {summary['refused_sides']}"]
    agreement = summary["agreement"]
    lines.append(f"volume agreement, all variants, sides pooled ({agreement['left_out_resected_sides']} resected sides "
                 f"left out, {agreement['refused_cases']} refused cases, {agreement['refused_sides']} refused sides): "
                 f"{format_agreement(agreement['all'])}")
    lines.append(f"  healthy heads only: {format_agreement(agreement['healthy'])}")
    if len(agreement["by_variant"]) > 1:
        lines += [f"  {variant}: {format_agreement(figures)}" for variant, figures in agreement["by_variant"].items()]
    lines += [f"  {group}: {format_agreement(figures)}" for group, figures in agreement["by_group"].items()]
    resection = summary.get("resection")
    if resection:
        lines.append(f"resection ({len(resection['cases'])} cases, {resection['refused']} refused): our volume on the "
                     f"resected side {resection['mean_fraction_of_truth_before']} of its truth before (highest "
                     f"{resection['max_fraction_of_truth_before']}, {resection['under_25_percent']} under 25 %); other "
                     f"side changed by at most {resection['max_abs_other_side_change']} (mean "
                     f"{resection['mean_abs_other_side_change']}) against the head without pathology")
    return lines


def _check_output(path, suffix=None) -> None:
    """Refuse an output that cannot be written before the long evaluation, not after it."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise InputError(f"The folder for {path} does not exist: create it first or choose another path.")
    if suffix and Path(path).suffix.lower() != suffix:
        raise InputError(f"{path}: the plot is written as PNG; give a file name ending in {suffix}.")


def command_line(args) -> str:
    """The command that reproduces this evaluation, from the parsed options (every default spelled out)."""
    import shlex

    words = ["python", "-m", "LUnetSegmentationLib", "evaluate-wholehead"]
    for image, labels in args.pair or []:
        words += ["--pair", image, labels]
    if args.synthetic:
        words += ["--synthetic", args.synthetic]
        if args.subjects:
            words += ["--subjects", *args.subjects]
        words += ["--contrasts", *args.contrasts]
    words += ["--variants", *args.variants, "--pathologies", *args.pathologies]
    for option, value in (("--passes", args.passes), ("--model", args.model), ("--device", args.device),
                          ("--out", args.out), ("--bland-altman", args.bland_altman)):
        if value is not None:
            words += [option, str(value)]
    return " ".join(shlex.quote(str(word)) for word in words)


def code_state() -> dict:
    """The code that measured: git commit and the package's files changed since it (none outside a
    git checkout). Figures from a working tree in flux say so."""
    import subprocess

    package = Path(__file__).resolve().parents[1]

    def git(*words):
        try:
            done = subprocess.run(["git", "-C", str(package), *words], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None}
    changed = git("diff", "--name-only", "HEAD", "--", ".") or ""
    return {"commit": commit, "changed_files": sorted(changed.splitlines())}


def run(args) -> int:
    from ..files.outputs import write_atomic
    from .agreement import bland_altman_png

    if not args.pair and not args.synthetic:
        raise InputError("Give at least one --pair IMAGE LABELS or --synthetic DIR.")
    _check_output(args.out)
    _check_output(args.bland_altman, ".png")
    summary = evaluate_wholehead(args.pair or [], model=args.model, device=args.device, variants=args.variants,
                                 synthetic=args.synthetic, subjects=args.subjects, contrasts=args.contrasts,
                                 passes=args.passes, pathologies=args.pathologies)
    summary["command"] = command_line(args)
    summary["code"] = code_state()
    for line in report_lines(summary):
        print(line)
    if args.out:
        text = json.dumps(summary, indent=1, allow_nan=False)
        write_atomic(Path(args.out), lambda tmp: tmp.write_text(text), overwrite=True)
    if args.bland_altman:
        observations = side_observations(summary["rows"])
        if not observations:
            raise InputError("No case was scored, so there is no Bland-Altman plot to draw.")
        several = len(summary["variants"]) > 1
        groups = [group_of(row) + (f" {row['variant']}" if several else "") for row, _ in observations]
        bland_altman_png([row[side]["volume_mm3"] for row, side in observations],
                         [row[side]["reference_mm3"] for row, side in observations], groups, args.bland_altman,
                         title=f"{summary['model']}: hippocampus volume, ours vs reference (sides pooled)")
        print(f"Bland-Altman plot: {args.bland_altman}")
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("evaluate-wholehead", help="per-side Dice/HD95/volume agreement against FreeSurfer labels 17/53")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("IMAGE", "LABELS"), help="a scan and its FreeSurfer-numbered labels")
    parser.add_argument("--synthetic", default=None, help="folder of FreeSurfer-numbered label maps to synthesise heads from")
    parser.add_argument("--subjects", nargs="*", default=None, help="only these label maps (file name prefixes)")
    parser.add_argument("--variants", nargs="*", default=["1mm"], help=VARIANT_HELP)
    parser.add_argument("--contrasts", nargs="*", default=["t1", "t2", "flair"], choices=["t1", "t2", "flair"])
    parser.add_argument("--pathologies", nargs="*", default=["none"], choices=list(PATHOLOGIES),
                        help="changed copies of every head: atrophy (left hippocampus to ~600 mm3, right to 55 %%, "
                             "ventricles widened), resection / resection-right (a hippocampus + 2 voxels becomes CSF)")
    parser.add_argument("--passes", type=int, default=None, help="test-time passes (1 = no mirroring, 8 = all flips; default: the card's)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default=None)
    parser.add_argument("--bland-altman", default=None, metavar="FILE.png",
                        help="write a Bland-Altman plot of the volumes (sides pooled, resected sides left out)")
    parser.set_defaults(run=run)
