"""A short real training run: a few iterations on 4 cases must lower the loss; resume works."""
import json

import numpy as np
import torch

from LUnetSegmentationLib.training.augment import AugmentConfig, augment_batch
from LUnetSegmentationLib.training.cache import split_cases
from LUnetSegmentationLib.training.data import build_cache, find_cases
from LUnetSegmentationLib.runtime.preprocess import PreprocessingConfig
from LUnetSegmentationLib.training.train import TrainConfig, converged, train


def small_config(epochs):
    config = TrainConfig.from_dict({
        "network": {"width": 8, "levels": 3, "num_classes": 3},
        "epochs": epochs, "batch_size": 4, "learning_rate": 0.01, "warmup_epochs": 1,
        "validate_every": 1, "max_cases": 4, "validation_fraction": 0.5,
    })
    config.augment = AugmentConfig(rotation_degrees=0, scale_range=0, translation_voxels=0, noise_std=0, gamma=0, brightness=0, contrast=0)
    return config


def test_short_training_lowers_the_loss_and_resumes(hippocampus_dir, tmp_path):
    cases = find_cases(hippocampus_dir)[:8]
    cache = build_cache(hippocampus_dir, tmp_path / "cache.npz", PreprocessingConfig(), cases=cases)
    torch.set_num_threads(2)
    summary = train(cache, small_config(6), tmp_path / "run", device="cpu", quiet=True)
    losses = [h["loss"] for h in summary["history"]]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.05, losses  # CE+Dice starts near 2.1 for 3 classes
    assert np.mean(losses[3:]) < np.mean(losses[:3]), losses
    assert (tmp_path / "run" / "best.pt").exists()
    # Resume: two more epochs continue from the checkpoint, not from scratch.
    resumed = train(cache, small_config(8), tmp_path / "run", device="cpu", quiet=True)
    assert [h["epoch"] for h in resumed["history"]] == list(range(1, 9))
    assert json.loads((tmp_path / "run" / "split.json").read_text())["train"]


def test_split_is_deterministic_and_disjoint():
    ids = [f"case_{i:03d}" for i in range(50)]
    a = split_cases(ids, 0.2, seed=0)
    assert a == split_cases(list(reversed(ids)), 0.2, seed=0)
    assert not set(a[0]) & set(a[1]) and len(a[1]) == 10
    assert a != split_cases(ids, 0.2, seed=1)


def test_augmentation_keeps_labels_aligned_with_anatomy():
    # A bright cube labelled 1: after any spatial augmentation, labels still sit on bright voxels.
    image = torch.zeros(4, 1, 24, 24, 24)
    image[:, :, 8:16, 8:16, 8:16] = 1.0
    labels = (image[:, 0] > 0.5).long()
    config = AugmentConfig(brightness=0, contrast=0, gamma=0, noise_std=0, spatial_probability=1.0)
    generator = torch.Generator().manual_seed(0)
    aug_image, aug_labels = augment_batch(image, labels, config, 2, generator)
    inside = aug_image[:, 0][aug_labels == 1]
    assert aug_labels.sum() > 0.5 * labels.sum()
    assert float(inside.mean()) > 0.8
    assert not torch.equal(aug_labels, labels)  # it did move


def test_patience_stops_a_training_that_no_longer_improves_and_resume_keeps_it_stopped(hippocampus_dir, tmp_path):
    # Learning rate 0: the weights never change, so validation Dice is best at the first
    # validation and never improves. Patience 2 with at least 4 epochs must stop at epoch 4 of 20.
    cases = find_cases(hippocampus_dir)[:8]
    cache = build_cache(hippocampus_dir, tmp_path / "cache.npz", PreprocessingConfig(), cases=cases)
    torch.set_num_threads(2)
    config = small_config(20)
    config.learning_rate, config.patience_epochs, config.min_epochs = 0.0, 2, 4
    summary = train(cache, config, tmp_path / "run", device="cpu", quiet=True)
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3, 4]
    assert summary["stopped_early"] is True and summary["epochs_trained"] == 4
    assert summary["best"]["epoch"] == 1
    again = train(cache, config, tmp_path / "run", device="cpu", quiet=True)  # resumed: already converged
    assert len(again["history"]) == 4 and again["stopped_early"] is True


def test_without_patience_a_training_never_stops_early():
    config = TrainConfig()
    assert not converged(config, 500, {"epoch": 1, "mean_dice": 0.5})
    config.patience_epochs, config.min_epochs = 50, 200
    assert not converged(config, 199, {"epoch": 1})  # never before min_epochs
    assert not converged(config, 249, {"epoch": 200})
    assert converged(config, 250, {"epoch": 200})
    assert not converged(config, 250, {"mean_dice": -1.0})  # no validation yet
