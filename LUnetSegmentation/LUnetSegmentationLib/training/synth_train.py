"""Train the whole-hippocampus LUnet on synthetic images generated from label maps (synth.py).

    python -m LUnetSegmentationLib.training.synth_train --crops .gpu/synth_crops.npz --out runs/synth \
        [--minutes 60] [--init hippocampus-lunet] [--device auto]

Pure torch and numpy (runs unchanged on a lent GPU). Label maps are split by subject: the last
`--validation-subjects` maps (sorted by name) are held out and give a fixed synthetic validation
set (T1-like, inverted and random contrasts at random resolutions, drawn once from a fixed
seed). The run is time-budgeted (cosine learning rate over the budget), checkpoints atomically
every few minutes and resumes from `out/checkpoint.pt`; `out/best.pt` keeps the best
validation Dice and `out/summary.json` the recipe, split and history.

`--init MODEL` starts from a shipped model's weights (all layers but the class head, whose
hippocampus row starts as the mean of the card's foreground rows): on 2 CPU cores there is
time for a few thousand synthetic samples only, and a network that already knows the
hippocampus on T1 adapts to the FreeSurfer protocol and to other contrasts far faster.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..runtime.model import NetworkConfig, build_network
from .synth import SynthConfig, SyntheticGenerator
from .resumable import resume_state, run_summary, save_state, split_by_subject, training_device
from .train import _save, dice_ce_loss

NETWORK = {"architecture": "LUnet", "width": 16, "levels": 4, "convs_per_level": 2, "num_classes": 2, "dropout": 0.005}


def _initialise_from(network, model: str) -> str:
    from ..runtime.weights import find_model, load_state_dict

    card = find_model(model)
    state = load_state_dict(card)
    own = network.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape == value.shape:
            own[key] = value.clone()
    # Head: background row as is; hippocampus row = mean of the card's foreground rows, bias
    # + log(count) so its logit starts near logsumexp of the parts' logits.
    weight, bias = state["head.weight"], state["head.bias"]
    own["head.weight"][0] = weight[0]
    own["head.weight"][1] = weight[1:].mean(dim=0)
    own["head.bias"][0] = bias[0]
    own["head.bias"][1] = bias[1:].mean() + math.log(weight.shape[0] - 1)
    network.load_state_dict(own)
    return f"{card.model_id} {card.version} (sha256 {card.weights_sha256[:12]})"


def dice_per_sample(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, prediction.ndim))
    intersection = (prediction & target).sum(dims).float()
    total = prediction.sum(dims).float() + target.sum(dims).float()
    return torch.where(total > 0, 2 * intersection / total.clamp_min(1), torch.ones_like(total))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    parser.add_argument("--init", default="hippocampus-lunet", help="shipped model to start from ('' for random)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-subjects", type=int, default=4)
    parser.add_argument("--validation-samples", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)

    device = training_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = np.load(args.crops)
    train_rows, val_rows, train_subjects, held_out = split_by_subject(data["subjects"], args.validation_subjects)
    config = SynthConfig()
    train_gen = SyntheticGenerator(data["crops"][train_rows], data["values"], config, device)
    val_gen = SyntheticGenerator(data["crops"][val_rows], data["values"], config, device)
    fixed = torch.Generator(device=device).manual_seed(1234)
    val_images, val_targets = [], []
    for start in range(0, args.validation_samples, 4):
        picks = torch.arange(start, min(start + 4, args.validation_samples), device=device) % len(val_rows)
        x, y = val_gen.sample(len(picks), fixed, indices=picks)
        val_images.append(x)
        val_targets.append(y)

    torch.manual_seed(args.seed)
    network = build_network(NetworkConfig.from_dict(NETWORK)).to(device)
    init = _initialise_from(network, args.init) if args.init else "random"
    optimiser = torch.optim.AdamW(network.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    state = {"step": 0, "seconds": 0.0, "best": {"dice": -1.0, "step": 0}, "history": []}
    checkpoint = out / "checkpoint.pt"
    state = resume_state(checkpoint, network, optimiser, generator, state, device)

    def validate() -> float:
        """Mean Dice over the fixed validation samples (a sample without hippocampus tissue
        scores 1 only when nothing is found); the relative volume error is logged beside it."""
        network.eval()
        scores, found, truth = [], [], []
        with torch.inference_mode():
            for x, y in zip(val_images, val_targets):
                prediction = network(x).argmax(1) == 1
                scores.append(dice_per_sample(prediction, y == 1))
                found.append(prediction.sum(dim=(1, 2, 3)).float())
                truth.append((y == 1).sum(dim=(1, 2, 3)).float())
        network.train()
        found, truth = torch.cat(found), torch.cat(truth)
        present = truth > 0
        state["last_volume_error"] = round(float(((found[present] - truth[present]).abs() / truth[present]).mean()), 4)
        return float(torch.cat(scores).mean())

    budget = args.minutes * 60
    last_save = time.time()
    started = time.time() - state["seconds"]
    network.train()
    while True:
        elapsed = time.time() - started
        if elapsed >= budget:
            break
        lr = args.learning_rate * (min(1.0, (state["step"] + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget))))
        for group in optimiser.param_groups:
            group["lr"] = lr
        images, targets = train_gen.sample(args.batch_size, generator)
        loss = dice_ce_loss(network(images), targets, 2)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        state["step"] += 1
        if state["step"] % 25 == 0:
            print(f"step {state['step']} loss {float(loss.detach()):.4f} lr {lr:.2e} {elapsed / 60:.1f} min", flush=True)
        if time.time() - last_save > 300 or time.time() - started >= budget:
            state["seconds"] = time.time() - started
            dice = validate()
            state["history"].append({"step": state["step"], "minutes": round(state["seconds"] / 60, 2), "val_dice": round(dice, 4),
                                     "val_volume_error": state.get("last_volume_error"), "loss": round(float(loss.detach()), 4)})
            print(f"validation Dice {dice:.4f}, mean relative volume error {state.get('last_volume_error')} at step {state['step']}", flush=True)
            if dice > state["best"]["dice"]:
                state["best"] = {"dice": dice, "step": state["step"]}
                _save(network.state_dict(), out / "best.pt")
            save_state(checkpoint, network, optimiser, generator, state)
            last_save = time.time()
    state["seconds"] = time.time() - started
    dice = validate()
    state["history"].append({"step": state["step"], "minutes": round(state["seconds"] / 60, 2), "val_dice": round(dice, 4)})
    if dice > state["best"]["dice"]:
        state["best"] = {"dice": dice, "step": state["step"]}
        _save(network.state_dict(), out / "best.pt")
    save_state(checkpoint, network, optimiser, generator, state)
    summary = run_summary(NETWORK, network, config.to_dict(), args, device, state,
                          train_subjects, held_out, initialised_from=init)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"done: {state['step']} steps, best synthetic validation Dice {state['best']['dice']:.4f} at step {state['best']['step']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
