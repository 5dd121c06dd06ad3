"""What the time-budgeted training runs (synth_train, localizer_train) share: the device, the
split of label maps by subject, and the resumable state (network, optimiser, the random
generator that draws the synthetic data, the run's own record) in one checkpoint written
atomically, and the record left in summary.json. torch and numpy only: a lent GPU has neither
SimpleITK nor the runtime's other needs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .train import _save


def training_device(name: str) -> torch.device:
    """"auto": the GPU when torch sees one, else the CPU; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def split_by_subject(subjects, held_out_count: int):
    """(training rows, validation rows, training subjects, held-out subjects) of per-row subject
    names: the last `held_out_count` subjects in sorted order are held out, with all their rows."""
    names = sorted(set(np.asarray(subjects).tolist()))
    held_out = names[-held_out_count:]
    validation = np.isin(np.asarray(subjects), held_out)
    return np.flatnonzero(~validation), np.flatnonzero(validation), [n for n in names if n not in held_out], held_out


def save_state(path: Path, network, optimiser, generator: torch.Generator, state: dict) -> None:
    _save({"network": network.state_dict(), "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
           "state": state}, path)


def resume_state(path: Path, network, optimiser, generator: torch.Generator, state: dict, device) -> dict:
    """`state` as saved at `path` (network, optimiser and generator restored in place), or the
    given fresh `state` when there is no checkpoint yet."""
    if not path.is_file():
        return state
    saved = torch.load(path, map_location=device, weights_only=False)
    network.load_state_dict(saved["network"])
    optimiser.load_state_dict(saved["optimiser"])
    generator.set_state(saved["generator"].cpu() if torch.device(device).type == "cpu" else saved["generator"])
    print(f"resumed at step {saved['state']['step']} ({saved['state']['seconds'] / 60:.1f} min done)")
    return saved["state"]


def run_summary(network_description: dict, network, data_config: dict, args, device, state: dict,
                train_subjects, validation_subjects, **extra) -> dict:
    """The record a run leaves in summary.json (publish scripts copy it into the model card):
    the network, the data recipe, the optimiser's settings, time, steps, split and history."""
    from ..runtime.model import count_parameters

    return {
        "network": network_description, "parameters": count_parameters(network), "synth": data_config, **extra,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": args.seed, "device": str(device),
        "minutes": round(state["seconds"] / 60, 2), "steps": state["step"], "samples": state["step"] * args.batch_size,
        "split": {"train_subjects": list(train_subjects), "validation_subjects": list(validation_subjects)},
        "validation": {"samples": args.validation_samples, "seed": 1234}, "best": state["best"], "history": state["history"],
    }
