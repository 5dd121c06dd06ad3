"""Does the network itself know when no hippocampus is in a crop? Figures for the presence check.

    PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/presence_check.py [--model ID] [--out FILE.json]

Positives: Decathlon validation crops (the card's split) and boxes cut around both hippocampi
of the whole-brain scans (FreeSurfer norm, Colin27) where the localizer puts them. Negatives:
boxes of the same size moved to the lateral temporal cortex, the cerebellum and the frontal
lobe of the same scans, noise, and a CT-like crop (a synthetic head from a label map with
Hounsfield-like values). For each crop: the segment volume (mm3) and the network's confidence
inside it (mean foreground probability, mean normalised entropy; engine.segment_confidence).
The presence thresholds in the model cards are chosen from these figures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LUnetSegmentationLib.runtime.engine import Segmenter
from LUnetSegmentationLib.runtime.localize import BOX_MM, localize
from LUnetSegmentationLib.training.acquisition import crop_around_point
from LUnetSegmentationLib.files.volumeio import readImage
from LUnetSegmentationLib.runtime.weights import find_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# Offsets (LPS mm, for the left side; x mirrored for the right) from the hippocampus box centre.
NEGATIVE_OFFSETS = {"lateral temporal cortex": (30, 0, 0), "cerebellum": (-12, 35, -25), "frontal lobe": (-5, -65, 35)}


def box(image: sitk.Image, centre_lps, size_mm=BOX_MM) -> sitk.Image:
    """An axis-aligned 1 mm crop of `size_mm` around a physical point."""
    return crop_around_point(image, centre_lps, size_mm)


def ct_like(seed=0) -> sitk.Image:
    path = SHARED / "synthseg_label_maps" / "training_seg_20.nii.gz"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(int)
    rng = np.random.default_rng(seed)
    hu = np.full(labels.shape, -1000.0)
    hu[labels > 0] = 35.0  # brain parenchyma
    hu[np.isin(labels, (4, 5, 14, 15, 24, 43, 44))] = 8.0  # CSF
    hu[labels >= 500] = 60.0  # soft tissue
    hu[np.isin(labels, (507,))] = 900.0  # the largest non-brain class as bone
    image = sitk.GetImageFromArray((hu + rng.normal(0, 5, hu.shape)).astype(np.float32))
    image.CopyInformation(sitk.ReadImage(str(path)))
    return image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    segmenter = Segmenter(args.model, "cpu")
    rows = []

    def run(kind, name, image):
        result = segmenter.segment_image(image)
        labels = sitk.GetArrayViewFromImage(result.labels)
        volume = float((labels > 0).sum()) * float(np.prod(image.GetSpacing()))
        row = {"kind": kind, "name": name, "volume_mm3": round(volume, 1), **result.confidence}
        rows.append(row)
        print(f"{kind:9s} {name:45s} volume {volume:7.0f} mean p {row['mean_probability']:.3f} entropy {row['mean_entropy']:.3f}")

    # Decathlon crops the Decathlon model never trained on (its validation split): positives for every model.
    card = json.loads(Path(find_model("hippocampus-lunet").path).read_text())
    decathlon = SHARED / "Task04_Hippocampus" / "imagesTr"
    for case in card.get("training", {}).get("split", {}).get("validation_cases", [])[: args.cases]:
        run("positive", f"decathlon {case}", readImage(decathlon / f"{case}.nii.gz"))
    for scan in ("fs_norm/norm.nii.gz", "colin27/ch2.nii.gz"):
        image = readImage(SHARED / "wholebrain" / scan)
        found = localize(image)
        for side, centre in found.centres_lps.items():
            run("positive", f"{scan} {side}", box(image, centre))
            sign = 1 if side == "left" else -1
            for region, offset in NEGATIVE_OFFSETS.items():
                moved = np.asarray(centre) + np.asarray(offset) * np.array([sign, 1, 1])
                run("negative", f"{scan} {side} {region}", box(image, moved))
    rng = np.random.default_rng(0)
    noise = sitk.GetImageFromArray(rng.normal(100, 20, (44, 60, 44)).astype(np.float32))
    noise.SetDirection([-1, 0, 0, 0, -1, 0, 0, 0, 1])
    run("negative", "noise", noise)
    ct = ct_like()
    run("negative", "CT-like crop around the hippocampus", ct_crop(ct))
    if args.out:
        Path(args.out).write_text(json.dumps({"model": segmenter.card.model_id, "rows": rows}, indent=1))
    return 0


def ct_crop(ct: sitk.Image) -> sitk.Image:
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED / "synthseg_label_maps" / "training_seg_20.nii.gz")))
    centre_index = np.argwhere(labels == 17).mean(axis=0)[::-1]
    return box(ct, ct.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))


if __name__ == "__main__":
    raise SystemExit(main())
