"""How well the learned localizer finds both hippocampi and the intracranial volume, per kind of
input, on synthetic heads from label maps it never trained on (its held-out split).

    PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/localizer_eval.py --heads .gpu/head_maps.npz \
        [--samples 200] [--variants t1 t2 flair pd random skull-stripped thick-slices pathology field-of-view] \
        [--thresholds 0.5 300] --out docs/results/localizer_synthetic.json

Each head goes through the runtime's own path (runtime/localizer.localize_learned on a
SimpleITK image: grid, resampling, scaling, network, per-side decisions), never through the
training code's shortcut. Per variant it reports, for each side:
- found: the side was trusted (not refused);
- hit: found, and its crop box holds at least 95 % of the true hippocampus;
- refused correctly: the true hippocampus is absent or touches the field of view's edge, and
  the side was refused (a side cut by the field of view must fail, not give a partial volume);
- false: found where the true hippocampus is absent or cut;
and the intracranial volume's relative error against the visible truth. `--thresholds P MM3`
overrides the card's per-side thresholds, to choose them (sweep several values here).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from LUnetSegmentationLib.runtime import localizer as L
from LUnetSegmentationLib.runtime.localize import BOX_MM, LocalizationError
from LUnetSegmentationLib.training.localizer_synth import HeadConfig, HeadGenerator
from LUnetSegmentationLib.training.resumable import split_by_subject
from LUnetSegmentationLib.training.synth_pathology import PathologyConfig

VARIANTS = {
    "t1": ({}, {"t1_probability": 1.0}),
    "t2": ({}, {"t1_probability": 0.0, "t2_probability": 1.0}),
    "flair": ({}, {"t1_probability": 0.0, "t2_probability": 0.0, "flair_probability": 1.0}),
    "pd": ({}, {"t1_probability": 0.0, "t2_probability": 0.0, "flair_probability": 0.0, "pd_probability": 1.0}),
    "random": ({}, {"t1_probability": 0.0, "t2_probability": 0.0, "flair_probability": 0.0, "pd_probability": 0.0}),
    "skull-stripped": ({"skull_strip_probability": 1.0}, {"skull_strip_probability": 1.0}),
    "thick-slices": ({"thick_slice_probability": 1.0}, {}),
    "pathology": ({"pathology": PathologyConfig(atrophy_probability=0.5, atrophy_max_steps=1, atrophy_keep=(0.6, 0.9),
                                                growth_probability=0.0, cavity_probability=0.3, lesion_probability=1.0,
                                                large_lesion_probability=0.5)}, {}),
    "field-of-view": ({"field_of_view_probability": 1.0}, {}),
}
# Other variants keep the whole head in view; the truth is the hippocampus itself, not the
# dilated region the network was trained to mark.
QUIET = {"field_of_view_probability": 0.0, "hippocampus_dilation": 0}


def _generator(heads, values, variant):
    head_overrides, contrast_overrides = VARIANTS[variant]
    config = HeadConfig(**{**QUIET, **head_overrides, "hippocampus_dilation": 0})
    generator = HeadGenerator(heads, values, config)
    for key, value in contrast_overrides.items():
        setattr(generator.config, key, value)
    return generator


def _as_image(volume: np.ndarray, inside: np.ndarray, rng):
    """The generated 4 mm head as a scan on world axes (RAS voxel order), at a random origin,
    cut to its simulated field of view (a real scan ends where its field of view ends), and the
    index offset of that cut."""
    where = np.argwhere(inside)
    low, high = where.min(axis=0), where.max(axis=0) + 1
    image = sitk.GetImageFromArray(volume[low[0]:high[0], low[1]:high[1], low[2]:high[2]].astype(np.float32) * 1000.0)
    image.SetSpacing([L.GRID_SPACING_MM] * 3)
    image.SetDirection(L.GRID_DIRECTION.flatten().tolist())
    image.SetOrigin(rng.uniform(-50, 50, 3).tolist())
    return image, low


def _box_share(target_side: np.ndarray, box, low) -> float:
    """Share of the true hippocampus inside an index box of the cut image (offset `low`, z y x)."""
    (x0, y0, z0), (x1, y1, z1) = (np.asarray(box[0]) + low[::-1]), (np.asarray(box[1]) + low[::-1])
    total = target_side.sum()
    return float(target_side[z0:z1, y0:y1, x0:x1].sum() / total) if total else 0.0


def _cut(target_side: np.ndarray, inside: np.ndarray) -> bool:
    """The true hippocampus is absent, or touches the edge of the field of view."""
    if target_side.sum() < 5:
        return True
    return L._touches(target_side, ~inside)


def evaluate(heads, values, variant, samples, thresholds, seed):
    generator = _generator(heads, values, variant)
    torch_generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < samples:
        images, targets, icv = generator.sample(min(8, samples - len(rows)), torch_generator)
        for volume, target, truth_icv, inside in zip(images[:, 0].numpy(), targets.numpy(), icv.numpy(),
                                                     generator.last_field_of_view.numpy()):
            image, low = _as_image(volume, inside, rng)
            row = {"icv_true_ml": float(truth_icv) / 1000}
            cpu = time.process_time()
            try:
                found = L.localize_learned(image, BOX_MM, thresholds)
                row["icv_ml"] = found.intracranial_ml
                found_sides = found.boxes
            except LocalizationError as error:
                found_sides, row["error"] = {}, str(error)[:120]
            row["cpu_s"] = time.process_time() - cpu
            for number, side in ((2, "left"), (3, "right")):
                truth = target == number
                cut = _cut(truth, inside)
                found_side = side in found_sides
                share = _box_share(truth, found_sides[side], low) if found_side and not cut else None
                row[side] = {"found": found_side, "cut_or_absent": cut, "box_share": share,
                             "refused_correctly": cut and not found_side, "false": cut and found_side}
            rows.append(row)
    sides = [row[side] for row in rows for side in ("left", "right")]
    present = [s for s in sides if not s["cut_or_absent"]]
    absent = [s for s in sides if s["cut_or_absent"]]
    icv_errors = [abs(r["icv_ml"] - r["icv_true_ml"]) / r["icv_true_ml"] for r in rows if "icv_ml" in r and r["icv_true_ml"] > 0]
    return {
        "variant": variant, "heads": len(rows), "sides_in_view": len(present), "sides_cut_or_absent": len(absent),
        "found": round(np.mean([s["found"] for s in present]), 4) if present else None,
        "hit": round(np.mean([s["found"] and (s["box_share"] or 0) >= 0.95 for s in present]), 4) if present else None,
        "both_sides_hit_heads": round(np.mean([all(r[s]["found"] and (r[s]["box_share"] or 0) >= 0.95 for s in ("left", "right"))
                                               for r in rows if not (r["left"]["cut_or_absent"] or r["right"]["cut_or_absent"])]), 4),
        "refused_correctly": round(np.mean([s["refused_correctly"] for s in absent]), 4) if absent else None,
        "false_sides": int(sum(s["false"] for s in absent)),
        "icv_relative_error": {"median": round(float(np.median(icv_errors)), 4), "p95": round(float(np.percentile(icv_errors, 95)), 4)}
        if icv_errors else None,
        "cpu_s_median": round(float(np.median([r["cpu_s"] for r in rows])), 3),
        "rows": rows,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", default=".gpu/head_maps.npz")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--validation-subjects", type=int, default=4)
    parser.add_argument("--thresholds", type=float, nargs=2, metavar=("PROBABILITY", "MM3"))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep-rows", action="store_true", help="write every head's figures too (large)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = np.load(args.heads)
    _, rows, _, held_out = split_by_subject(data["subjects"], args.validation_subjects)
    thresholds = None if args.thresholds is None else {"min_mean_probability": args.thresholds[0], "min_volume_mm3": args.thresholds[1]}
    results = []
    for variant in args.variants:
        result = evaluate(data["heads"][rows], data["values"], variant, args.samples, thresholds, args.seed)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}), flush=True)
    report = {"command": "PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/localizer_eval.py " + " ".join(argv or sys.argv[1:]),
              "held_out_label_maps": held_out, "thresholds": thresholds or "the card's",
              "variants": results if args.keep_rows else [{k: v for k, v in r.items() if k != "rows"} for r in results]}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
