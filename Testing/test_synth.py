"""The synthetic-image generator: deterministic under a seed, images normalised as at inference,
targets exactly the deformed hippocampus labels, and contrasts that really vary."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from LUnetSegmentationLib.training.synth import SynthConfig, SyntheticGenerator  # noqa: E402
from LUnetSegmentationLib.training.synth_pathology import PathologyConfig  # noqa: E402

# The statistics below are those of healthy anatomy; test_synth_pathology.py covers pathology.
NO_PATHOLOGY = PathologyConfig(atrophy_probability=0.0, growth_probability=0.0, cavity_probability=0.0,
                               lesion_probability=0.0, large_lesion_probability=0.0)

VALUES = np.array([0, 2, 3, 4, 17, 24, 53, 507])


def _crops():
    """Two label crops: nested boxes of white matter, cortex, ventricle, one hippocampus each."""
    crops = np.zeros((2, 40, 48, 40), np.uint8)
    for n in range(2):
        crops[n, 4:36, 4:44, 4:36] = 7  # index of 507: non-brain tissue around
        crops[n, 8:32, 8:40, 8:32] = 2  # cortex (index 2 -> label 3)
        crops[n, 12:28, 12:36, 12:28] = 1  # white matter
        crops[n, 14:18, 14:34, 22:26] = 3  # ventricle
        crops[n, 16:24, 16:32, 14:20] = 4 if n == 0 else 6  # hippocampus 17 or 53
    return crops


@pytest.fixture(scope="module")
def generator():
    return SyntheticGenerator(_crops(), VALUES, SynthConfig(patch_size=(24, 32, 24), translation_mm=2.0, pathology=NO_PATHOLOGY))


def test_deterministic_under_a_seed(generator):
    a, ta = generator.sample(4, torch.Generator().manual_seed(7))
    b, tb = generator.sample(4, torch.Generator().manual_seed(7))
    c, _ = generator.sample(4, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert not torch.equal(a, c)


def test_statistics(generator):
    images, targets = generator.sample(16, torch.Generator().manual_seed(0))
    assert images.shape == (16, 1, 24, 32, 24) and targets.shape == (16, 24, 32, 24)
    # the inference normalisation: each sample z-scored after percentile clipping
    assert torch.allclose(images.mean(dim=(1, 2, 3, 4)), torch.zeros(16), atol=1e-4)
    assert torch.allclose(images.std(dim=(1, 2, 3, 4), unbiased=False), torch.ones(16), atol=1e-3)
    assert set(targets.unique().tolist()) <= {0, 1}
    fraction = targets.float().mean(dim=(1, 2, 3))
    assert bool((fraction > 0.01).all()) and bool((fraction < 0.2).all()), fraction  # the hippocampus is in view
    # contrasts vary: the hippocampus is brighter than white matter in some samples, darker in others
    hippocampus_vs_rest = [(images[i, 0][targets[i] == 1].mean() - images[i, 0][targets[i] == 0].mean()).item() for i in range(16)]
    assert min(hippocampus_vs_rest) < 0 < max(hippocampus_vs_rest)


def test_targets_are_the_deformed_hippocampus(generator):
    """With no deformation, no mirroring and no shift, the target is the crop's own centre."""
    still = SyntheticGenerator(_crops(), VALUES, SynthConfig(patch_size=(24, 32, 24), rotation_degrees=0.0, scale_range=0.0,
                                                             translation_mm=0.0, elastic_mm=0.0, supersample=1), "cpu")
    torch.manual_seed(0)
    generator_ = torch.Generator().manual_seed(3)
    labels = still._sample_labels(torch.tensor([0, 0, 0, 0]), generator_)
    centre = _crops()[0, 8:32, 8:40, 8:32]
    for sample in labels.numpy():
        # mirroring is the only random spatial change left: either the crop or its left-right mirror
        assert np.array_equal(sample, centre) or np.array_equal(sample, centre[:, :, ::-1])
