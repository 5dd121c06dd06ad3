"""Turn a training output folder into a shipped model: CPU weights + model card with SHA-256.

    python scripts/publish_model.py RUN_DIR --id hippocampus-lunet --out LUnetSegmentation/Resources/Models \
        [--evaluation results.json]

The card records the network, preprocessing, training split and the validation figures from
`evaluate` (run on the validation cases of RUN_DIR/split.json), so inference never guesses.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LUnetSegmentation"))

from LUnetSegmentationLib.runtime.model import build_network, count_parameters  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import PreprocessingConfig  # noqa: E402
from LUnetSegmentationLib.runtime.weights import sha256sum  # noqa: E402

LABELS = [
    {"value": 1, "name": "Hippocampus anterior", "decathlon_name": "Anterior", "color": [0.86, 0.55, 0.16]},
    {"value": 2, "name": "Hippocampus posterior", "decathlon_name": "Posterior", "color": [0.20, 0.60, 0.86]},
]

ATTRIBUTION = (
    "Trained on the Medical Segmentation Decathlon Task04 Hippocampus data (Vanderbilt University Medical "
    "Center), CC-BY-SA 4.0. Antonelli et al., 'The Medical Segmentation Decathlon', Nature Communications 13, "
    "4128 (2022); Simpson et al., arXiv:1902.09063 (2019)."
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--id", required=True)
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--weights", default="best.pt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--evaluation", type=Path, help="results.json of `evaluate` on the validation split")
    parser.add_argument("--trained-on", default="", help="hardware/time note for the card")
    args = parser.parse_args()

    config = json.loads((args.run_dir / "config.json").read_text())
    split = json.loads((args.run_dir / "split.json").read_text())
    state = torch.load(args.run_dir / args.weights, map_location="cpu", weights_only=True)
    network = build_network(config["network"])
    network.load_state_dict(state)  # proves the weights fit the description before shipping
    args.out.mkdir(parents=True, exist_ok=True)
    weights_name = args.id.replace("-", "_") + ".pt"
    weights_path = args.out / weights_name
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, weights_path)

    card = {
        "id": args.id,
        "version": args.version,
        "name": "Hippocampus (anterior/posterior), T1 MRI, LUnet",
        "description": (
            "Segments the hippocampus into anterior (head) and posterior (body and tail) parts in T1-weighted MRI. "
            "Trained on 1 mm crops around one hippocampus (about 35x50x35 mm). Whole-head and whole-brain scans are "
            "localized automatically (both hippocampi, labelled left and right); a region of interest overrides that."
        ),
        "modality": "MRI T1",
        "structures": [entry["name"] for entry in LABELS],
        "input": "3D scalar T1-weighted MRI, any orientation and voxel size up to 6 mm; resampled to 1 mm internally",
        "labels": LABELS,
        "network": config["network"],
        "parameters": count_parameters(network),
        "preprocessing": PreprocessingConfig.from_dict(config.get("preprocessing", {})).to_dict(),
        "inference": {"mirror": True, "tile_size": 96},
        "weights": {"file": weights_name, "sha256": sha256sum(weights_path), "format": "torch state dict (weights_only)"},
        "training": {
            "data": "Medical Segmentation Decathlon Task04_Hippocampus, the 208 labelled cases available here",
            "split": {"seed": config.get("seed", 0), "validation_fraction": config.get("validation_fraction", 0.2),
                      "train_cases": len(split["train"]), "validation_cases": split["validation"]},
            "config": config,
            "trained_on": args.trained_on,
        },
        "license": "CC-BY-SA-4.0",
        "attribution": ATTRIBUTION,
    }
    if args.evaluation:
        evaluation = json.loads(args.evaluation.read_text())
        card["validation"] = {
            "command": "python -m LUnetSegmentationLib evaluate --data DATA --cases <validation cases> --out results.json",
            "cases": evaluation["cases"],
            "mirror": evaluation["mirror"],
            "mean_dice": evaluation["mean_dice"],
            "per_label": evaluation["per_label"],
        }
    (args.out / f"{args.id.replace('-', '_')}.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {weights_path} ({card['parameters']} parameters, sha256 {card['weights']['sha256'][:12]}...)")


if __name__ == "__main__":
    main()
