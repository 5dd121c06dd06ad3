"""How fast can the whole-head localization be without moving the hippocampus boxes?

    PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/localize_speed.py [--out docs/results/localize_speed.json]

Runs localize() with the thorough registration (the 1.0 setting) and faster candidates on
every shared whole-head scan, plus fs_norm resampled to 3 mm and to 1x1x5 mm, and reports per
setting the CPU-seconds (process time, robust to a busy machine) and how far each box centre
moves from the thorough one (mm). A setting is adoptable when no centre moves more than a few
millimetres: the boxes leave 8-11 mm around the hippocampus (localize.BOX_MM).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LUnetSegmentationLib.runtime.localize import FAST, THOROUGH, localize
from LUnetSegmentationLib.files.volumeio import readImage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wholebrain"
SCANS = ["colin27/ch2.nii.gz", "fs_norm/norm.nii.gz", "chris_t1/chris_t1.nii.gz", "otsu_t1/otsu.nii.gz",
         "brainchop_t1/t1_crop.nii.gz", "hippodeep_example/example_brain_t1_oblique.nii.gz",
         "hippodeep_example/example_brain_t1_1p75mm.nii.gz", "niimath_t1/T1.nii.gz"]

DEFAULT = "default: fast, thorough if it fails"
CANDIDATES = {
    "thorough (1.0)": THOROUGH,
    DEFAULT: None,
    "sample10_it40_30": replace(THOROUGH, sampling=0.1, similarity_shrink=(4, 2), similarity_iterations=40,
                                affine_shrink=(2,), affine_sigmas=(2.0,), affine_iterations=30),
    "fast (4 mm, adopted)": FAST,
    "4mm_block_sample15": replace(THOROUGH, spacing_mm=4.0, block_average=True, sampling=0.15, similarity_shrink=(2, 1),
                                  similarity_sigmas=(4.0, 0.0), similarity_iterations=30, affine_shrink=(1,),
                                  affine_sigmas=(0.0,), affine_iterations=20),
    "2mm_block_sample10": replace(THOROUGH, block_average=True, sampling=0.1, similarity_shrink=(4, 2),
                                  similarity_sigmas=(4.0, 2.0), similarity_iterations=40, affine_shrink=(2, 1),
                                  affine_sigmas=(2.0, 0.0), affine_iterations=20),
    # Candidates for a cheaper fallback than THOROUGH where FAST fails (otsu_t1, niimath_t1):
    "fast at 2 mm": replace(FAST, spacing_mm=2.0),
    "thorough, block-averaged": replace(THOROUGH, block_average=True),
}


def resampled(image: sitk.Image, spacing) -> sitk.Image:
    spacing = np.asarray(spacing, dtype=float)
    size = np.round(np.asarray(image.GetSize()) * np.asarray(image.GetSpacing()) / spacing).astype(int)
    sigma = np.sqrt(np.maximum(spacing**2 - np.asarray(image.GetSpacing()) ** 2, 0)) / 2.355
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), [float(max(s, 1e-3)) for s in sigma])
    return sitk.Resample(smooth, [int(s) for s in size], sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                         spacing.tolist(), image.GetDirection(), 0.0, sitk.sitkFloat32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/results/localize_speed.json")
    parser.add_argument("--settings", nargs="*", default=list(CANDIDATES))
    args = parser.parse_args(argv)
    images = {}
    for name in SCANS:
        if (DATA / name).is_file():
            images[name] = readImage(DATA / name)
    norm = images.get("fs_norm/norm.nii.gz")
    if norm is not None:
        images["fs_norm 3 mm"] = resampled(norm, (3, 3, 3))
        images["fs_norm 1x1x5 mm (axial)"] = resampled(norm, (1, 5, 1))  # LIA storage: y is S-I
    rows = []
    for scan, image in images.items():
        reference = None
        for setting in args.settings:
            cpu, wall = time.process_time(), time.time()
            try:
                found = localize(image, settings=CANDIDATES[setting])
            except Exception as error:  # noqa: BLE001 - report and go on
                rows.append({"scan": scan, "setting": setting, "error": str(error)})
                print(f"{scan:45s} {setting:32s} FAILED {error}")
                continue
            cpu, wall = time.process_time() - cpu, time.time() - wall
            centres = {side: np.asarray(c) for side, c in found.centres_lps.items()}
            if reference is None:
                reference = centres
            shift = max(float(np.linalg.norm(centres[s] - reference[s])) for s in centres)
            rows.append({"scan": scan, "setting": setting, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                         "max_centre_shift_mm": round(shift, 2), "correlation": round(found.correlation, 3)})
            print(f"{scan:45s} {setting:32s} cpu {cpu:6.2f} s wall {wall:6.2f} s shift {shift:5.1f} mm corr {found.correlation:.2f}")
    summary = {}
    for setting in args.settings:
        mine = [r for r in rows if r["setting"] == setting and "cpu_s" in r]
        summary[setting] = {"median_cpu_s": float(np.median([r["cpu_s"] for r in mine])) if mine else None,
                            "max_shift_mm": max((r["max_centre_shift_mm"] for r in mine), default=None),
                            "failures": sum(1 for r in rows if r["setting"] == setting and "error" in r)}
        print(setting, summary[setting])
    Path(args.out).write_text(json.dumps({"command": "experiments/localize_speed.py", "settings": {k: asdict(CANDIDATES[k]) if CANDIDATES[k] else "localize() default" for k in args.settings},
                                          "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
