"""Train the learned localizer (runtime/localizer.py) on synthetic whole heads.

    python -m LUnetSegmentationLib.training.localizer_train --heads .gpu/head_maps.npz --out runs/localizer \
        [--minutes 60] [--threads 1]

Pure torch and numpy (runs unchanged on a lent GPU). The label maps are split by subject: the
last `--validation-subjects` (sorted by name) never reach training and give a fixed synthetic
validation set, drawn once from a fixed seed. Time-budgeted (cosine learning rate), resumable
from `out/checkpoint.pt` (written atomically every few minutes); `out/best.pt` keeps the
weights with the best validation score (mean Dice of the two hippocampus classes) and
`out/summary.json` the recipe, split and history, including the intracranial-volume error.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from torch.nn import functional as F

from ..runtime.model import NetworkConfig, build_network
from .localizer_synth import HeadConfig, HeadGenerator
from .resumable import resume_state, run_summary, save_state, split_by_subject, training_device
from .train import _save

# LUnet with a thin full-resolution level: 8 channels at every coarse level (the LUnet rule),
# 4 at 4 mm, where most of the multiply-adds are: the localizer must run in a fraction of a
# CPU-second on a 64^3 grid (0.9 instead of 2.2 GMAC).
NETWORK = {"architecture": "LUnet", "width": 8, "channels": [4, 8, 8, 8, 8], "levels": 5, "convs_per_level": 2,
           "num_classes": 4, "dropout": 0.0}


# Each hippocampus fills about 55 of a head's 262,144 voxels at 4 mm: plain cross-entropy
# barely sees them (the first 100 steps predicted none), so they weigh more in it.
CLASS_WEIGHTS = (1.0, 1.0, 20.0, 20.0)


def localizer_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy + soft Dice of the intracranial and the two hippocampus classes."""
    ce = F.cross_entropy(logits, targets, weight=torch.tensor(CLASS_WEIGHTS, device=logits.device))
    probabilities = torch.softmax(logits.float(), dim=1)
    one_hot = F.one_hot(targets, 4).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    dice = (2 * (probabilities * one_hot).sum(dims) + 1e-5) / (probabilities.sum(dims) + one_hot.sum(dims) + 1e-5)
    return ce + (1 - dice[1:].mean())


def class_dice(prediction: torch.Tensor, target: torch.Tensor, value: int) -> torch.Tensor:
    """Per-sample Dice of one class; 1 where both are empty."""
    a, b = prediction == value, target == value
    dims = tuple(range(1, a.ndim))
    total = a.sum(dims) + b.sum(dims)
    return torch.where(total > 0, 2 * (a & b).sum(dims).float() / total.clamp_min(1), torch.ones(a.shape[0], device=a.device))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--validation-subjects", type=int, default=4)
    parser.add_argument("--validation-samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    device = training_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = np.load(args.heads)
    train_rows, val_rows, train_subjects, held_out = split_by_subject(data["subjects"], args.validation_subjects)
    config = HeadConfig()
    train_gen = HeadGenerator(data["heads"][train_rows], data["values"], config, device)
    val_gen = HeadGenerator(data["heads"][val_rows], data["values"], config, device)
    fixed = torch.Generator(device=device).manual_seed(1234)
    validation = []
    for start in range(0, args.validation_samples, 4):
        picks = torch.arange(start, min(start + 4, args.validation_samples), device=device) % len(val_rows)
        validation.append(val_gen.sample(len(picks), fixed, indices=picks))

    torch.manual_seed(args.seed)
    network = build_network(NetworkConfig.from_dict(NETWORK)).to(device)
    optimiser = torch.optim.AdamW(network.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    state = {"step": 0, "seconds": 0.0, "best": {"score": -1.0, "step": 0}, "history": []}
    checkpoint = out / "checkpoint.pt"
    state = resume_state(checkpoint, network, optimiser, generator, state, device)

    def validate() -> dict:
        network.eval()
        dice, icv_error = [], []
        with torch.inference_mode():
            for images, targets, icv in validation:
                probabilities = torch.softmax(network(images), dim=1)
                prediction = probabilities.argmax(1)
                dice.append(torch.stack([class_dice(prediction, targets, v) for v in (2, 3)], 1))
                estimate = probabilities[:, 1:].sum(dim=(1, 2, 3, 4)) * 64.0
                icv_error.append((estimate - icv).abs() / icv.clamp_min(1))
        network.train()
        dice = torch.cat(dice)
        return {"hippocampus_dice": round(float(dice.mean()), 4), "icv_relative_error": round(float(torch.cat(icv_error).mean()), 4)}

    def save_checkpoint():
        save_state(checkpoint, network, optimiser, generator, state)

    def record(loss) -> None:
        figures = validate()
        state["history"].append({"step": state["step"], "minutes": round(state["seconds"] / 60, 2), **figures,
                                 "loss": None if loss is None else round(float(loss.detach()), 4)})
        print(f"validation {figures} at step {state['step']}", flush=True)
        if figures["hippocampus_dice"] > state["best"]["score"]:
            state["best"] = {"score": figures["hippocampus_dice"], "step": state["step"], **figures}
            _save(network.state_dict(), out / "best.pt")
        save_checkpoint()

    budget = args.minutes * 60
    last_save = time.time()
    started = time.time() - state["seconds"]
    network.train()
    loss = None
    while time.time() - started < budget:
        elapsed = time.time() - started
        lr = args.learning_rate * min(1.0, (state["step"] + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))
        for group in optimiser.param_groups:
            group["lr"] = lr
        images, targets, _ = train_gen.sample(args.batch_size, generator)
        loss = localizer_loss(network(images), targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        state["step"] += 1
        if state["step"] % 25 == 0:
            print(f"step {state['step']} loss {float(loss.detach()):.4f} lr {lr:.2e} {elapsed / 60:.1f} min", flush=True)
        if time.time() - last_save > 300:
            state["seconds"] = time.time() - started
            record(loss)
            last_save = time.time()
    state["seconds"] = time.time() - started
    record(loss)
    summary = run_summary(NETWORK, network, config.to_dict(), args, device, state,
                          train_subjects, held_out,
                          loss=f"cross-entropy weighted {list(CLASS_WEIGHTS)} + soft Dice of classes 1-3")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"done: {state['step']} steps, best {state['best']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
