"""Draw examples of the synthetic training images: docs/results/synth_examples.png.

    .venv/bin/python scripts/synth_examples.py [--crops .gpu/synth_crops.npz] [--seed 0]

Eight samples of the generator (synth.py) with the training configuration, a coronal and a
sagittal slice through each hippocampus target (red outline).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "LUnetSegmentation"))


def main(argv=None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from LUnetSegmentationLib.training.synth import SynthConfig, SyntheticGenerator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", default=str(ROOT / ".gpu" / "synth_crops.npz"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "synth_examples.png"))
    args = parser.parse_args(argv)
    data = np.load(args.crops)
    images, targets = SyntheticGenerator(data["crops"], data["values"], SynthConfig()).sample(8, torch.Generator().manual_seed(args.seed))
    images, targets = images.numpy()[:, 0], targets.numpy()
    figure, axes = plt.subplots(2, 8, figsize=(16, 4.6))
    for index in range(8):
        centre = np.argwhere(targets[index]).mean(axis=0).astype(int)
        for row, (image, target) in enumerate(((images[index][:, centre[1], :], targets[index][:, centre[1], :]),
                                               (images[index][:, :, centre[2]], targets[index][:, :, centre[2]]))):
            axes[row, index].imshow(image[::-1], cmap="gray")
            axes[row, index].contour(target[::-1], [0.5], colors="r", linewidths=0.6)
            axes[row, index].axis("off")
    axes[0, 0].set_title("coronal", fontsize=8, loc="left")
    axes[1, 0].set_title("sagittal", fontsize=8, loc="left")
    figure.suptitle("Synthetic training images (synth.py): random contrast, deformation, bias, resolution; red: hippocampus target")
    figure.tight_layout()
    figure.savefig(args.out, dpi=70)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
