"""Evaluate a model on a labelled Decathlon-format folder: Dice and HD95 per label and case.

`python -m LUnetSegmentationLib evaluate --data DIR [--model MODEL] [--cases ID ...] --out results.json`

Each image goes through the same path as a user's scan (`Segmenter.segment_image`: geometry,
resampling, normalisation, tiling, mirroring, mapping back onto the input grid), so the figures
measure what users get.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..files.outputs import write_atomic
from ..files.volumeio import readImage
from ..runtime.engine import Segmenter
from ..runtime.preprocess import InputError
from .data import find_cases, read_label
from .metrics import dice, hausdorff95

# Decathlon folders carry the Decathlon's labels (anterior/posterior): by default they are
# scored against the model trained on them, whichever model `segment` uses by default.
DECATHLON_MODEL = "hippocampus-lunet"


def evaluate(data_dir, model=None, case_ids=None, device="auto", mirror=None, out=None, printer=print) -> dict:
    cases = find_cases(data_dir)
    if case_ids:
        wanted = set(case_ids)
        missing = wanted - {c.case_id for c in cases}
        if missing:
            raise InputError(f"Cases not found in {data_dir}: {', '.join(sorted(missing))}. Check the case ids "
                             "(file names in imagesTr/ without .nii.gz).")
        cases = [c for c in cases if c.case_id in wanted]
    segmenter = Segmenter(model or DECATHLON_MODEL, device=device, mirror=mirror)
    labels = {entry["value"]: entry["name"] for entry in segmenter.card.labels}
    rows = []
    started = time.time()
    for case in cases:
        image = readImage(case.image)  # a damaged file is refused, never scored as Dice 0
        result = segmenter.segment_image(image)
        prediction = sitk.GetArrayFromImage(result.labels)
        reference = sitk.GetArrayFromImage(read_label(case.label))  # a copy: a view would outlive its image
        spacing = image.GetSpacing()[::-1]
        row = {"case": case.case_id, "seconds": round(result.seconds, 3)}
        for value, name in labels.items():
            row[name] = {
                "dice": dice(prediction == value, reference == value),
                "hd95": hausdorff95(prediction == value, reference == value, spacing),
            }
        rows.append(row)
    per_label = {}
    for name in labels.values():
        distances = [r[name]["hd95"] for r in rows]
        finite = [d for d in distances if math.isfinite(d)]
        per_label[name] = {
            "dice": float(np.mean([r[name]["dice"] for r in rows])),
            "dice_std": float(np.std([r[name]["dice"] for r in rows])),
            # Mean over cases where both masks exist; HD95 is undefined when one is empty, so
            # those cases are counted beside it rather than hidden.
            "hd95": float(np.mean(finite)) if finite else None,
            "hd95_undefined_cases": len(distances) - len(finite),
        }
    for row in rows:  # strict JSON: an undefined distance is null, not Infinity
        for name in labels.values():
            if not math.isfinite(row[name]["hd95"]):
                row[name]["hd95"] = None
    result = {
        "model": segmenter.card.model_id,
        "model_version": segmenter.card.version,
        "weights_sha256": segmenter.card.weights_sha256,
        "data": str(data_dir),
        "device": segmenter.device,
        "mirror": segmenter.mirror,
        "cases": len(rows),
        "mean_dice": float(np.mean([v["dice"] for v in per_label.values()])),
        "per_label": per_label,
        "per_case": rows,
        "seconds": round(time.time() - started, 2),
    }
    if printer:
        printer(format_table(result))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=1, allow_nan=False)
        write_atomic(Path(out), lambda tmp: tmp.write_text(text), overwrite=True)
    return result


def _mm(value) -> str:
    return f"{value:>10.2f}mm" if value is not None else f"{'n/a':>12}"


def format_table(result: dict) -> str:
    names = list(result["per_label"])
    lines = [f"{'case':<24}" + "".join(f"{n[:22]:>24}" for n in names)]
    for row in result["per_case"]:
        lines.append(f"{row['case']:<24}" + "".join(f"{row[n]['dice']:>12.3f}{_mm(row[n]['hd95'])}" for n in names))
    lines.append("-" * len(lines[0]))
    lines.append(f"{'mean (Dice, HD95)':<24}" + "".join(f"{result['per_label'][n]['dice']:>12.3f}{_mm(result['per_label'][n]['hd95'])}" for n in names))
    lines.append(f"mean Dice over labels and cases: {result['mean_dice']:.4f}  ({result['cases']} cases, model {result['model']}, {result['device']})")
    return "\n".join(lines)
