"""End-to-end demo: segment a real MRI with the command line, write the labelmap, print Dice and time.

    python scripts/demo.py [DATA] [--out DIR]

DATA: a Decathlon hippocampus folder or release .tar; by default ../shared/data/Task04_Hippocampus
(or $LUNET_DATA), else the public mirror is downloaded (needs a network). The case segmented is
one of the shipped model's validation cases, so the Dice printed is an honest held-out figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]


def find_data(given: str | None) -> Path:
    from LUnetSegmentationLib.training.data import download_hippocampus, resolve_dataset

    candidates = [given] if given else [
        os.environ.get("LUNET_DATA") and Path(os.environ["LUNET_DATA"]) / "Task04_Hippocampus",
        REPO.parent / "shared" / "data" / "Task04_Hippocampus",
    ]
    for candidate in filter(None, candidates):
        if Path(candidate).exists():
            return resolve_dataset(candidate)
    print("No local data found; downloading the Decathlon hippocampus release (27 MB)...")
    return download_hippocampus(REPO / "runs" / "data")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?")
    parser.add_argument("--out", default=str(REPO / "runs" / "demo"))
    args = parser.parse_args()
    from LUnetSegmentationLib.training.metrics import dice
    from LUnetSegmentationLib.runtime.weights import find_model

    data = find_data(args.data)
    card = find_model(CROP_MODEL)
    case = card.data["training"]["split"]["validation_cases"][0]
    image = data / "imagesTr" / f"{case}.nii.gz"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / f"{case}.seg.nrrd", out / f"{case}.nii.gz", out / "summary.csv"):
        stale.unlink(missing_ok=True)  # the demo's own outputs from an earlier run
    started = time.time()
    command = [sys.executable, "-m", "LUnetSegmentationLib", "segment", str(image), "--out", str(out), "--labelmap",
               "--device", "auto", "--model", CROP_MODEL]
    print("$", " ".join(command))
    if subprocess.run(command).returncode != 0:
        return 1
    seconds = time.time() - started
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "labelsTr" / f"{case}.nii.gz"))).astype(int)
    scores = {entry["name"]: dice(prediction == entry["value"], reference == entry["value"]) for entry in card.labels}
    for name, value in scores.items():
        print(f"{name:<24} Dice {value:.3f}")
    print(f"mean Dice {np.mean(list(scores.values())):.3f} on held-out case {case}; {seconds:.1f} s end to end (process start, model load, inference, writing)")
    print(f"wrote {out / (case + '.seg.nrrd')}, {out / (case + '.nii.gz')}, {out / 'summary.csv'}")
    report = {"case": case, "dice": scores, "seconds": seconds}
    head = data.parent / "wholebrain" / "fs_norm"
    if (head / "norm.nii.gz").exists():
        report["whole_head"] = whole_head_demo(head, out)
    (out / "demo.json").write_text(json.dumps(report, indent=1))
    return 0


# The crop demo scores the Decathlon model on a held-out Decathlon case, whose labels follow its protocol.
CROP_MODEL = "hippocampus-lunet"


def whole_head_demo(folder: Path, out: Path) -> dict:
    """One click on a whole-brain T1 with the default model: both hippocampi found, compared with
    FreeSurfer's (17, 53). Each side's label values come from the model card, not assumptions."""
    from LUnetSegmentationLib.training.metrics import dice
    from LUnetSegmentationLib.runtime.weights import find_model
    from LUnetSegmentationLib.runtime.wholebrain import side_label_table

    sides = {side: [spec.value for spec in side_label_table(find_model()) if spec.side == side] for side in ("left", "right")}

    for path in (out / "head").glob("*"):
        path.unlink()  # the demo's own outputs from an earlier run
    started = time.time()
    command = [sys.executable, "-m", "LUnetSegmentationLib", "segment", str(folder / "norm.nii.gz"), "--out", str(out / "head"), "--labelmap"]
    print("$", " ".join(command))
    if subprocess.run(command).returncode != 0:
        return {"status": "failed"}
    seconds = time.time() - started
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "head" / "norm.nii.gz")))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "aparc.a2009s+aseg.nii.gz")))
    scores = {
        "left": dice(np.isin(ours, sides["left"]), reference == 17),
        "right": dice(np.isin(ours, sides["right"]), reference == 53),
        "both": dice(ours > 0, np.isin(reference, (17, 53))),
    }
    print(
        f"whole-brain T1 (FreeSurfer norm): Dice with FreeSurfer's hippocampus left {scores['left']:.3f}, right "
        f"{scores['right']:.3f}, both {scores['both']:.3f}; {seconds:.1f} s end to end"
    )
    return {"dice": scores, "seconds": seconds}


if __name__ == "__main__":
    sys.exit(main())
