"""Publish the learned localizer (training/localizer_train.py) as a shipped card with ONNX copy.

    .venv/bin/python scripts/publish_localizer.py runs/localizer [--evaluation docs/results/localizer_synthetic.json] \
        --min-probability P --min-volume MM3

Writes LUnetSegmentation/Resources/Localizer/hippocampus_localizer.pt (plain state dict), its
card hippocampus_localizer.json (classes, network, grid, per-side thresholds, provenance: data,
licence, recipe, seed, held-out label maps, steps and minutes) and, through
scripts/export_onnx.py, hippocampus_localizer.onnx, checked against PyTorch on localizer-sized
grids. The card lives outside Resources/Models so that it is never offered as a segmentation
model. The thresholds are measured on held-out synthetic heads (experiments/localizer_eval.py)
and passed in, with that measurement recorded in the card.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "LUnetSegmentation"))
sys.path.insert(0, str(ROOT / "scripts"))

from export_onnx import export  # noqa: E402
from LUnetSegmentationLib.runtime.localizer import CLASSES, GRID_SPACING_MM, LOCALIZER_CARD, MAX_GRID_MM  # noqa: E402
from LUnetSegmentationLib.runtime.model import build_network, count_parameters  # noqa: E402
from LUnetSegmentationLib.runtime.weights import sha256sum  # noqa: E402

ATTRIBUTION = (
    "Trained from scratch, only on synthetic heads generated from the SynthSeg authors' 20 whole-brain label maps "
    "(Apache-2.0; Billot et al., 'SynthSeg: Segmentation of brain MRI scans of any contrast and resolution without "
    "retraining', Medical Image Analysis 86, 102789 (2023)). No image data and no other model's weights were used."
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--weights", default="best.pt")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--min-probability", type=float, required=True, help="a side's mean probability to be trusted")
    parser.add_argument("--min-volume", type=float, required=True, help="a side's volume (mm3 on the 4 mm grid) to be trusted")
    parser.add_argument("--evaluation", type=Path, action="append", default=[], help="localizer_eval JSON(s) to record")
    args = parser.parse_args(argv)
    summary = json.loads((args.run_dir / "summary.json").read_text())
    state = torch.load(args.run_dir / args.weights, map_location="cpu", weights_only=True)
    network = build_network(summary["network"])
    network.load_state_dict(state)  # the weights fit the description before anything is written
    out = LOCALIZER_CARD.parent
    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / "hippocampus_localizer.pt"
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, weights_path)
    card = {
        "id": "hippocampus-localizer",
        "version": args.version,
        "name": "Hippocampus localizer (whole head, any MRI contrast), LUnet",
        "description": ("Finds both hippocampi and the intracranial space in a whole-head or whole-brain MRI of any "
                        "contrast, on a 4 mm grid; gives each side's crop box and confidence and the intracranial volume."),
        "modality": "MRI (any contrast)",
        "labels": [{"value": value, "name": name} for value, name in enumerate(CLASSES) if value > 0],
        "network": summary["network"],
        "parameters": count_parameters(network),
        "preprocessing": {"spacing": [GRID_SPACING_MM] * 3, "grid": (
            f"world (RAS) axes from the header, covering the field of view up to {MAX_GRID_MM:g} mm a side, a multiple of "
            "16 voxels; block average then linear resampling; 0.5-99.5th percentile scaling inside the field of view, "
            "0 outside (runtime/localizer.py)")},
        "quality": {"sides": {"min_mean_probability": args.min_probability, "min_volume_mm3": args.min_volume},
                    "measured_by": "experiments/localizer_eval.py on held-out synthetic heads (see validation)"},
        "weights": {"file": weights_path.name, "sha256": sha256sum(weights_path), "format": "torch state dict (weights_only)"},
        "training": {
            "data": "synthetic heads from ../shared/data/synthseg_label_maps (20 whole-brain label maps), 2 mm copies made by "
                    "scripts/make_head_maps.py",
            "command": "python -m LUnetSegmentationLib.training.localizer_train --heads .gpu/head_maps.npz --out RUN --minutes M --threads 1",
            "split": summary["split"],
            "seed": summary["seed"],
            "recipe": {k: summary[k] for k in ("synth", "batch_size", "learning_rate", "device", "minutes", "steps", "samples")},
            "best": summary["best"],
            "history": summary["history"],
        },
        "license": "Apache-2.0",
        "attribution": ATTRIBUTION,
        "citation": ("To cite results of this localizer, cite the software, LUnetSegmentation (the version you used: CITATION.cff "
                     "in its repository); the network architecture, Hassler et al., 'Lean Unet: A Compact Model for Image "
                     "Segmentation', arXiv:2512.03834 (2025); and the label maps its synthetic training heads were generated "
                     "from, Billot et al., 'SynthSeg', Medical Image Analysis 86, 102789 (2023)."),
    }
    if args.evaluation:
        card["validation"] = [{k: v for k, v in json.loads(p.read_text()).items() if k != "rows"} | {"file": str(p)}
                              for p in args.evaluation]
    if LOCALIZER_CARD.is_file():  # the crop pose belongs to the segmentation model's training heads, not these weights
        previous = json.loads(LOCALIZER_CARD.read_text()).get("crop_pose")
        if previous:
            card["crop_pose"] = previous
    if "crop_pose" not in card:
        print("no crop_pose in the card: run scripts/measure_crop_pose.py --write, or crops keep the head's pitch")
    LOCALIZER_CARD.write_text(json.dumps(card, indent=1) + "\n")
    export(LOCALIZER_CARD, check_shapes=((1, 1, 64, 64, 64), (1, 1, 48, 80, 64)))
    print(f"wrote {LOCALIZER_CARD} and {weights_path} ({card['parameters']} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
