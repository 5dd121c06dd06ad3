"""Read a preprocessed dataset cache (.npz written by `data.build_cache`); numpy only, so
training runs where SimpleITK is not installed (e.g. a bare GPU server)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def load_cache(path: Path | str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """{case_id: (image float32 zyx, label uint8 zyx)}, preprocessing parameters."""
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as archive:
        preprocessing = json.loads(bytes(archive["preprocessing"]).decode())
        for key in archive.files:
            if key.startswith("image/"):
                case_id = key[len("image/") :]
                cases[case_id] = (archive[key].astype(np.float32), archive[f"label/{case_id}"].astype(np.uint8))
    return dict(sorted(cases.items())), preprocessing


def split_cases(case_ids: list[str], validation_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A deterministic train/validation split: same ids, fraction and seed -> same split."""
    ordered = sorted(case_ids)
    order = np.random.default_rng(seed).permutation(len(ordered))
    count = int(round(len(ordered) * validation_fraction))
    validation = sorted(ordered[i] for i in order[:count])
    train = sorted(ordered[i] for i in order[count:])
    return train, validation
