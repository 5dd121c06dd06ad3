"""Publish the whole-hippocampus model trained on synthetic images (synth_train.py) as a shipped card.

    .venv/bin/python scripts/publish_synth_model.py runs/synth --out LUnetSegmentation/Resources/Models \
        [--weights best.pt] [--passes 1] [--evaluation docs/results/wholehead_eval_whole.json] \
        --presence-crop 500 0.90 0.34 --presence-head 500 0.80 --trusted-spacing 6 --trusted-voxel 64

Writes `hippocampus_whole_lunet.pt` (plain state dict), the card `hippocampus_whole_lunet.json` with
provenance (data, licences, recipe, seed, held-out label maps, how it was initialised) and, with
scripts/export_onnx.py, its ONNX copy. Thresholds and test-time passes are measured elsewhere
and passed in, with the commands that measured them recorded in the card.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "LUnetSegmentation"))

from LUnetSegmentationLib.runtime.model import build_network, count_parameters  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import PreprocessingConfig  # noqa: E402
from LUnetSegmentationLib.runtime.weights import sha256sum  # noqa: E402

MODEL_ID = "hippocampus-whole-lunet"
CITATION = (
    "To cite results of this model, cite the software, LUnetSegmentation (cite the version you used: "
    "CITATION.cff in its repository, https://github.com/lunet-segmentation/SlicerLUnetSegmentation); the "
    "network architecture, Hassler T, Åkerholm I, Nordström M, Balletti G, Goksel O. 'Lean Unet: A "
    "Compact Model for Image Segmentation', arXiv:2512.03834 (2025), doi:10.48550/arXiv.2512.03834; the "
    "label maps its synthetic training images were generated from, Billot et al., 'SynthSeg: Segmentation"
    " of brain MRI scans of any contrast and resolution without retraining', Medical Image Analysis 86, "
    "102789 (2023); and the data of the model it was initialised from, Antonelli et al., 'The Medical "
    "Segmentation Decathlon', Nature Communications 13, 4128 (2022); Simpson et al., arXiv:1902.09063 "
    "(2019)."
)
FREESURFER_HIPPOCAMPUS_COLOUR = [round(220 / 255, 3), round(216 / 255, 3), round(20 / 255, 3)]  # FreeSurferColorLUT 17/53
ATTRIBUTION = (
    "Trained on synthetic images generated from the SynthSeg authors' 20 whole-brain label maps (Apache-2.0; "
    "Billot et al., 'SynthSeg: Segmentation of brain MRI scans of any contrast and resolution without retraining', "
    "Medical Image Analysis 86, 102789 (2023)), starting from the weights of the hippocampus-lunet model, which was "
    "trained on the Medical Segmentation Decathlon Task04 Hippocampus data (Vanderbilt University Medical Center), "
    "CC-BY-SA 4.0: Antonelli et al., Nature Communications 13, 4128 (2022); Simpson et al., arXiv:1902.09063 (2019)."
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "LUnetSegmentation" / "Resources" / "Models")
    parser.add_argument("--weights", default="best.pt")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--passes", type=int, default=1, help="test-time passes (1 = no mirroring)")
    parser.add_argument("--evaluation", type=Path, action="append", default=[], help="evaluate-wholehead JSON(s) to record")
    parser.add_argument("--presence-crop", type=float, nargs=3, required=True, metavar=("MM3", "PROBABILITY", "ENTROPY"),
                        help="crops and regions: least volume, least mean probability, largest mean entropy")
    parser.add_argument("--presence-head", type=float, nargs=2, required=True, metavar=("MM3", "PROBABILITY"),
                        help="each side of a localized head: least volume and mean probability")
    parser.add_argument("--trusted-spacing", type=float, required=True)
    parser.add_argument("--trusted-voxel", type=float, required=True)
    parser.add_argument("--measured-by", default="", help="commands behind the thresholds and passes")
    args = parser.parse_args(argv)

    summary = json.loads((args.run_dir / "summary.json").read_text())
    state = torch.load(args.run_dir / args.weights, map_location="cpu", weights_only=True)
    network = build_network(summary["network"])
    network.load_state_dict(state)  # proves the weights fit the description before shipping
    stem = MODEL_ID.replace("-", "_")
    weights_path = args.out / f"{stem}.pt"
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, weights_path)
    card = {
        "id": MODEL_ID,
        "version": args.version,
        "name": "Hippocampus (whole, FreeSurfer-style), any MRI contrast, LUnet",
        "description": (
            "Segments the whole hippocampus as FreeSurfer's aseg draws it (labels 17/53). Trained only on synthetic "
            "images of random contrast and resolution generated from whole-brain label maps, so it is meant for T1, "
            "T2, FLAIR and thick-slice scans alike. Whole-head and whole-brain scans are localized automatically "
            "(both hippocampi, labelled left and right); a region of interest overrides that."
        ),
        "modality": "MRI (any contrast)",
        "protocol": "FreeSurfer aseg hippocampus (labels 17 and 53): the whole hippocampus, no anterior/posterior split",
        "contrasts": ["T1", "T2", "FLAIR", "other MRI contrasts (synthetic training)"],
        "structures": ["Hippocampus"],
        "input": "3D scalar MRI of the head, any orientation and contrast, voxels up to 6 mm; resampled to 1 mm internally",
        # FreeSurfer's conventions on whole heads (issue 25): aseg values 17/53 and the LUT colour, so
        # our labelmaps overlay FreeSurfer's; 1 in a crop or ROI, where the side is unknown.
        "labels": [{"value": 1, "name": "Hippocampus", "color": FREESURFER_HIPPOCAMPUS_COLOUR,
                    "sides": {"left": {"value": 17, "color": FREESURFER_HIPPOCAMPUS_COLOUR},
                              "right": {"value": 53, "color": FREESURFER_HIPPOCAMPUS_COLOUR}},
                    "convention": "FreeSurfer's aseg values (17 Left-Hippocampus, 53 Right-Hippocampus) and "
                                  "FreeSurferColorLUT colour (220, 216, 20) on whole heads; 1 in a crop or region of "
                                  "interest, where the side is unknown"}],
        "network": summary["network"],
        "parameters": count_parameters(network),
        "preprocessing": PreprocessingConfig().to_dict(),
        "inference": {"passes": args.passes, "tile_size": 96},
        "quality": {
            "presence": {
                "crop": {"min_volume_mm3": args.presence_crop[0], "min_mean_probability": args.presence_crop[1],
                         "max_mean_entropy": args.presence_crop[2]},
                "whole_head": {"min_volume_mm3": args.presence_head[0], "min_mean_probability": args.presence_head[1]},
            },
            "trusted_max_spacing_mm": args.trusted_spacing,
            "trusted_max_voxel_mm3": args.trusted_voxel,
            "measured_by": args.measured_by,
        },
        "weights": {"file": weights_path.name, "sha256": sha256sum(weights_path), "format": "torch state dict (weights_only)"},
        "training": {
            "data": "synthetic images from ../shared/data/synthseg_label_maps (20 whole-brain label maps, FreeSurfer numbering)",
            "command": "python -m LUnetSegmentationLib.training.synth_train --crops .gpu/synth_crops.npz --out RUN (crops: scripts/make_synth_crops.py)",
            "split": summary["split"],
            "seed": summary["seed"],
            "recipe": {k: summary[k] for k in ("synth", "batch_size", "learning_rate", "initialised_from", "device",
                                                "minutes", "steps", "samples")},
            "best": summary["best"],
            "history": summary["history"],
        },
        "license": "CC-BY-SA-4.0",
        "attribution": ATTRIBUTION,
        "citation": CITATION,
    }
    if args.evaluation:
        card["validation"] = [
            {k: v for k, v in json.loads(path.read_text()).items() if k != "rows"} | {"file": str(path)} for path in args.evaluation
        ]
    card_path = args.out / f"{stem}.json"
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "export_onnx.py"), str(card_path)], check=True)
    print(f"wrote {card_path} and {weights_path} ({card['parameters']} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
