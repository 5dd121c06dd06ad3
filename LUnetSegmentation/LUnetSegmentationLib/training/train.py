"""Train a LUnet (or Unet) on a preprocessed Decathlon dataset; checkpoints and resume.

`python -m LUnetSegmentationLib train --data DIR --config CONFIG --out DIR`

DIR may be a Decathlon folder or archive (preprocessed once into DIR_out/cache.npz) or a cache
.npz itself; the training loop needs torch and numpy only. The whole training set lives on
the device as one padded tensor and augmentation is batched there, so a GPU step never waits
for the host; the loss is read back only when the progress bar is refreshed.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..runtime.inference import predict_probabilities
from ..runtime.model import NetworkConfig, build_network, count_parameters
from .augment import AugmentConfig, augment_batch
from .cache import load_cache, split_cases


@dataclass
class TrainConfig:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 300
    batch_size: int = 16
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    patch_size: list[int] = field(default_factory=lambda: [48, 64, 48])  # z, y, x; fits every crop
    validation_fraction: float = 0.2
    seed: int = 0
    validate_every: int = 10
    mixed_precision: bool = True  # bf16 autocast on CUDA only
    max_cases: int = 0  # 0: all; else the first N training cases (smoke tests)
    # If > 0, shorten `epochs` after the first timed epoch so the run ends within this many
    # minutes (the learning-rate schedule follows the new length). Used on lent GPUs.
    time_budget_minutes: float = 0.0
    # If > 0, stop once validation Dice has not improved for this many epochs, but not before
    # `min_epochs`; `epochs` is then a cap that the learning-rate schedule still runs to.
    # Training "to convergence" in the paper's sense; the model kept is still the last one.
    patience_epochs: int = 0
    min_epochs: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        network = NetworkConfig.from_dict(values.pop("network", {}))
        augment = AugmentConfig(**values.pop("augment", {}))
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(network=network, augment=augment, **known)

    def to_dict(self) -> dict:
        return {**asdict(self), "network": self.network.to_dict(), "augment": self.augment.to_dict()}


def load_config(path_or_name: str | Path | None) -> TrainConfig:
    """A JSON config file, or the name of one in the repository's configs/ folder."""
    if path_or_name is None:
        return TrainConfig()
    path = Path(path_or_name)
    if not path.is_file():
        named = Path(__file__).resolve().parents[3] / "configs" / f"{path_or_name}.json"
        if not named.is_file():
            raise FileNotFoundError(f"No config file {path_or_name!r} (nor configs/{path_or_name}.json)")
        path = named
    return TrainConfig.from_dict(json.loads(path.read_text()))


def dice_ce_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy + soft Dice over the foreground classes (batch Dice, as in nnU-Net)."""
    ce = F.cross_entropy(logits, labels)
    probs = torch.softmax(logits.float(), dim=1)
    one_hot = F.one_hot(labels, num_classes).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    intersection = (probs * one_hot).sum(dims)
    denominator = probs.sum(dims) + one_hot.sum(dims)
    soft_dice = (2 * intersection + 1e-5) / (denominator + 1e-5)
    return ce + (1 - soft_dice[1:].mean())


def _save(obj, path: Path) -> None:
    """Write via a temporary file and rename, so a run killed mid-save leaves the previous
    checkpoint intact and resumable."""
    partial = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, partial)
    os.replace(partial, path)


def _pad_centre(array: np.ndarray, shape: list[int]) -> np.ndarray:
    out = np.zeros(shape, dtype=array.dtype)
    if any(a > s for a, s in zip(array.shape, shape)):
        raise ValueError(f"case of shape {array.shape} exceeds patch size {shape}; raise patch_size")
    offsets = [(s - a) // 2 for a, s in zip(array.shape, shape)]
    out[tuple(slice(o, o + a) for o, a in zip(offsets, array.shape))] = array
    return out


def _learning_rate(config: TrainConfig, epoch_float: float) -> float:
    if epoch_float < config.warmup_epochs:
        return config.learning_rate * (epoch_float + 1e-3) / config.warmup_epochs
    progress = (epoch_float - config.warmup_epochs) / max(1, config.epochs - config.warmup_epochs)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def converged(config: TrainConfig, epoch: int, best: dict) -> bool:
    """The patience rule: `epoch` epochs done, the best validation `best["epoch"]` epochs in."""
    if config.patience_epochs <= 0 or epoch < config.min_epochs or "epoch" not in best:
        return False
    return epoch - best["epoch"] >= config.patience_epochs


def validate(network, cases: dict, ids: list[str], device, num_classes: int, mirror: bool = False) -> dict:
    """Mean Dice per foreground label over the validation cases."""
    from .metrics import dice

    scores = {label: [] for label in range(1, num_classes)}
    for case_id in ids:
        image, label = cases[case_id]
        probs = predict_probabilities(network, image, device=device, mirror=mirror)
        prediction = probs.argmax(axis=0)
        for value in scores:
            scores[value].append(dice(prediction == value, label == value))
    per_label = {value: float(np.mean(v)) for value, v in scores.items()}
    return {"per_label": per_label, "mean_dice": float(np.mean(list(per_label.values())))}


def _progress(total: int, initial: int, quiet: bool):
    try:
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit="epoch", disable=quiet, dynamic_ncols=True)
    except ImportError:  # tqdm is optional (not bundled with Slicer)
        return None


def train(
    data: str | Path, config: TrainConfig, out_dir: str | Path, device: str = "auto", quiet: bool = False
) -> dict:
    """Train, checkpointing to out_dir every validation; resumes from out_dir/checkpoint.pt."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    data = Path(data)
    cache_path = data if data.suffix == ".npz" else out / "cache.npz"
    if data.suffix != ".npz" and not cache_path.exists():
        from ..runtime.preprocess import PreprocessingConfig
        from .data import build_cache

        build_cache(data, cache_path, PreprocessingConfig())
    cases, preprocessing = load_cache(cache_path)
    train_ids, validation_ids = split_cases(list(cases), config.validation_fraction, config.seed)
    if config.max_cases:
        train_ids = train_ids[: config.max_cases]
        validation_ids = validation_ids[: max(1, config.max_cases // 4)]
    (out / "split.json").write_text(json.dumps({"train": train_ids, "validation": validation_ids}, indent=1))
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))

    num_classes = config.network.num_classes
    images = torch.from_numpy(np.stack([_pad_centre(cases[i][0], config.patch_size) for i in train_ids]))[:, None]
    labels = torch.from_numpy(np.stack([_pad_centre(cases[i][1], config.patch_size) for i in train_ids])).long()
    images, labels = images.to(device), labels.to(device)

    network = build_network(config.network).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    steps_per_epoch = max(1, math.ceil(len(train_ids) / config.batch_size))
    start_epoch, history, best = 0, [], {"mean_dice": -1.0}
    checkpoint_path = out / "checkpoint.pt"
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())  # set_state takes a CPU ByteTensor, also for CUDA generators
        start_epoch = int(state["epoch"])
        history = json.loads((out / "history.json").read_text()) if (out / "history.json").exists() else []
        best = json.loads((out / "best.json").read_text()) if (out / "best.json").exists() else best
    use_amp = config.mixed_precision and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels
    bar = _progress(config.epochs, start_epoch, quiet)
    started = time.time()
    running = torch.zeros((), device=device)
    epoch = start_epoch
    stopped_early = converged(config, epoch, best)  # a resumed run that had already stopped
    while epoch < config.epochs and not stopped_early:
        network.train()
        running.zero_()
        for step in range(steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, epoch + step / steps_per_epoch)
            index = torch.randint(0, len(train_ids), (config.batch_size,), device=device, generator=generator)
            batch_images, batch_labels = augment_batch(images[index], labels[index], config.augment, num_classes, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = network(batch_images)
            loss = dice_ce_loss(logits.float(), batch_labels, num_classes)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach()
        if config.time_budget_minutes > 0 and epoch == start_epoch + 1:
            torch.cuda.synchronize() if device.type == "cuda" else None
            per_epoch = (time.time() - epoch_started) * 1.1  # margin for validation
            affordable = start_epoch + 2 + int((config.time_budget_minutes * 60 - (time.time() - started)) / per_epoch)
            if affordable < config.epochs:
                config.epochs = max(epoch + 2, affordable)
                (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
                if bar is not None:
                    bar.total = config.epochs
        if epoch == start_epoch:
            torch.cuda.synchronize() if device.type == "cuda" else None
            epoch_started = time.time()  # time epoch 2 alone: epoch 1 includes cuDNN autotuning
        last_epoch = epoch + 1 == config.epochs
        if (epoch + 1) % config.validate_every == 0 or last_epoch:
            mean_loss = float(running) / steps_per_epoch  # one host sync per validation, not per step
            scores = validate(network, cases, validation_ids, device, num_classes)
            record = {"epoch": epoch + 1, "loss": mean_loss, **scores, "seconds": time.time() - started}
            history.append(record)
            if scores["mean_dice"] > best["mean_dice"]:
                best = {"epoch": epoch + 1, **scores}
                _save(network.state_dict(), out / "best.pt")
            _save(network.state_dict(), out / "last.pt")
            _save(
                {"network": network.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "epoch": epoch + 1},
                checkpoint_path,
            )
            (out / "history.json").write_text(json.dumps(history, indent=1))
            (out / "best.json").write_text(json.dumps(best, indent=1))
            if bar is not None:
                bar.set_postfix(loss=f"{mean_loss:.3f}", val_dice=f"{scores['mean_dice']:.3f}")
            elif not quiet:
                print(json.dumps(record), flush=True)
            stopped_early = converged(config, epoch + 1, best)
        if bar is not None:
            bar.update(1)
        epoch += 1
    if bar is not None:
        bar.close()
    summary = {
        "parameters": count_parameters(network),
        "device": str(device),
        "train_cases": len(train_ids),
        "validation_cases": len(validation_ids),
        "seconds": time.time() - started,
        "best": best,
        "epochs_trained": history[-1]["epoch"] if history else epoch,
        "stopped_early": stopped_early and epoch < config.epochs,  # before the cap
        "preprocessing": preprocessing,
        "history": history,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
