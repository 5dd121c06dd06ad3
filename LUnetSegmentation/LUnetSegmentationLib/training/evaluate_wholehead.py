"""Score whole-head segmentations against FreeSurfer-numbered labels: per side Dice, HD95, volume ratio.

    python -m LUnetSegmentationLib evaluate-wholehead --pair norm.mgz aseg.mgz [--pair IMG LABELS ...]
        [--synthetic ../shared/data/synthseg_label_maps --subjects training_seg_17 ...]
        [--variants 1mm 3mm 1x1x5] [--model MODEL] [--out results.json]

Each image goes through the user's path (pipeline.label_image: localization, both sides, the
card's test-time setting); the result's segments are pooled per side (a card's anterior and
posterior parts form that side's hippocampus) and compared with the reference's left (17) and
right (53) hippocampus on the reference's own grid.

Variants simulate other acquisitions of the same head: `3mm` (isotropic), `1x1x5` (5 mm
slices along the head's superior-inferior axis, whatever the storage order), `1x5x1` and
`5x1x1` likewise along the anterior-posterior and left-right axes: Gaussian slice profile,
then resampling (scripts and tests use the same function, acquisition.simulate_acquisition).

`--synthetic DIR` adds whole-head synthetic images made from label maps in DIR (synth.
synthesize_head: T1-, T2- and FLAIR-like contrasts), e.g. the maps held out from training.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..runtime.preprocess import InputError
from .metrics import dice, hausdorff95

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


def evaluate_wholehead(pairs, model=None, device="cpu", variants=("1mm",), synthetic=None, subjects=None,
                       contrasts=("t1", "t2", "flair"), seed=0, passes=None, printer=print) -> dict:
    from ..files.volumeio import case_name, readImage
    from ..runtime.engine import Segmenter
    from ..runtime.pipeline import LoadedModel, label_image

    for variant in variants:
        parse_variant(variant)  # refuse a typo before any work

    loaded = LoadedModel(Segmenter(model, device, mirror=passes))
    cases = [(case_name(image), lambda image=image: readImage(image), lambda labels=labels: readImage(labels))
             for image, labels in pairs]
    if synthetic:
        from .synthetic_heads import synthesize_head

        maps = sorted(Path(synthetic).glob("*.nii.gz"))
        if subjects:
            maps = [m for m in maps if any(m.name.startswith(s) for s in subjects)]
        for path in maps:
            for contrast in contrasts:
                cases.append((f"{path.name.split('.')[0]} {contrast}",
                              lambda path=path, contrast=contrast: synthesize_head(path, contrast, seed)[0],
                              lambda path=path, contrast=contrast: synthesize_head(path, contrast, seed)[1]))
    rows = []
    for name, read_image, read_labels in cases:
        image, reference = read_image(), read_labels()
        for variant in variants:
            row = {"case": name, "variant": variant}
            started = time.time()
            try:
                result = label_image(variant_image(image, variant), loaded=loaded, name=name)
                row.update(score(result, reference))
                row["warnings"] = list(result.warnings)
                row["confidence"] = result.details.get("confidence", {})
            except Exception as error:  # noqa: BLE001 - a failed case is a result too
                row["error"] = str(error)
            row["seconds"] = round(time.time() - started, 2)
            rows.append(row)
            if printer:
                printer(_line(row))
    scored = [r for r in rows if "error" not in r]
    dices = [r[side]["dice"] for r in scored for side in FREESURFER_HIPPOCAMPUS]
    summary = {
        "model": loaded.segmenter.card.model_id, "weights_sha256": loaded.segmenter.card.weights_sha256,
        "device": device, "mirror": loaded.segmenter.mirror, "variants": list(variants),
        "mean_side_dice": round(float(np.mean(dices)), 4) if dices else None,
        "min_side_dice": round(float(np.min(dices)), 4) if dices else None,
        "failures": len(rows) - len(scored), "rows": rows,
    }
    by_variant = {}
    for variant in variants:
        mine = [r[side]["dice"] for r in scored if r["variant"] == variant for side in FREESURFER_HIPPOCAMPUS]
        by_variant[variant] = round(float(np.mean(mine)), 4) if mine else None
    summary["mean_side_dice_by_variant"] = by_variant
    return summary


def _line(row) -> str:
    if "error" in row:
        return f"{row['case']:<28} {row['variant']:<7} FAILED {row['error']}"
    parts = [f"{side} Dice {row[side]['dice']:.3f} vol {row[side]['volume_mm3']:.0f}/{row[side]['reference_mm3']:.0f}"
             for side in FREESURFER_HIPPOCAMPUS]
    return f"{row['case']:<28} {row['variant']:<7} " + "  ".join(parts) + f"  ({row['seconds']:.1f} s)"


def run(args) -> int:
    from ..files.outputs import write_atomic

    if not args.pair and not args.synthetic:
        raise InputError("Give at least one --pair IMAGE LABELS or --synthetic DIR.")
    summary = evaluate_wholehead(args.pair or [], model=args.model, device=args.device, variants=args.variants,
                                 synthetic=args.synthetic, subjects=args.subjects, contrasts=args.contrasts,
                                 passes=args.passes)
    print(f"mean per-side Dice {summary['mean_side_dice']}, lowest {summary['min_side_dice']}, "
          f"by variant {summary['mean_side_dice_by_variant']}, failures {summary['failures']}")
    if args.out:
        text = json.dumps(summary, indent=1, allow_nan=False)
        write_atomic(Path(args.out), lambda tmp: tmp.write_text(text), overwrite=True)
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("evaluate-wholehead", help="per-side Dice/HD95/volume ratio against FreeSurfer labels 17/53")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("IMAGE", "LABELS"), help="a scan and its FreeSurfer-numbered labels")
    parser.add_argument("--synthetic", default=None, help="folder of FreeSurfer-numbered label maps to synthesise heads from")
    parser.add_argument("--subjects", nargs="*", default=None, help="only these label maps (file name prefixes)")
    parser.add_argument("--variants", nargs="*", default=["1mm"], help=VARIANT_HELP)
    parser.add_argument("--contrasts", nargs="*", default=["t1", "t2", "flair"], choices=["t1", "t2", "flair"])
    parser.add_argument("--passes", type=int, default=None, help="test-time passes (1 = no mirroring, 8 = all flips; default: the card's)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", default=None)
    parser.set_defaults(run=run)
