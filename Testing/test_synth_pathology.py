"""Pathology and partial volume in the synthetic generators: the truth follows the tissue.

Atrophy and growth change the hippocampus' volume (over the range the issue asks: down to about
600 mm3), a cavity or a lesion removes the hippocampus label where the tissue is gone, and the
supersampled generator's targets keep the label map's volumes (partial volume averaged down,
not a shape redrawn)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from LUnetSegmentationLib.training.synth import SynthConfig, SyntheticGenerator  # noqa: E402
from LUnetSegmentationLib.training.synth_pathology import (  # noqa: E402
    LESION_VALUE, LabelClasses, PathologyConfig, apply_pathology, with_lesion_value)

VALUES = np.array([0, 2, 3, 4, 5, 17, 24, 53, 507])
NONE = dict(atrophy_probability=0.0, growth_probability=0.0, cavity_probability=0.0, lesion_probability=0.0,
            large_lesion_probability=0.0)


def _head_like(batch=4):
    """(B, 40, 48, 40) compact labels: white matter, cortex, a temporal horn and one hippocampus
    of 8 x 20 x 10 = 1,600 voxels (index of 17) in the middle."""
    values = with_lesion_value(VALUES)
    index = {int(v): i for i, v in enumerate(values)}
    labels = np.full((batch, 40, 48, 40), index[3], np.int64)
    labels[:, 4:36, 4:44, 4:36] = index[2]
    labels[:, 10:12, 14:34, 15:25] = index[5]
    labels[:, 12:20, 14:34, 15:25] = index[17]
    return torch.from_numpy(labels), values, index


def test_nothing_changes_without_pathology():
    labels, values, _ = _head_like()
    out = apply_pathology(labels, LabelClasses(values), PathologyConfig(**NONE), torch.Generator().manual_seed(0))
    assert torch.equal(out, labels)


def test_atrophy_shrinks_the_hippocampus_into_csf_down_to_about_600_voxels():
    labels, values, index = _head_like(16)
    config = PathologyConfig(**{**NONE, "atrophy_probability": 1.0, "atrophy_max_steps": 4})
    out = apply_pathology(labels, LabelClasses(values), config, torch.Generator().manual_seed(1))
    volumes = (out == index[17]).sum(dim=(1, 2, 3))
    assert int(volumes.max()) < 1600 and int(volumes.min()) <= 700, volumes
    lost = (labels == index[17]) & (out != index[17])
    assert bool((out[lost] == index[5]).all())  # lost tissue became the temporal horn's CSF
    assert int((out == index[5]).sum()) > int((labels == index[5]).sum())  # and the horn widened


def test_growth_enlarges_the_hippocampus_from_white_matter_and_cortex_only():
    labels, values, index = _head_like(8)
    config = PathologyConfig(**{**NONE, "growth_probability": 1.0, "growth_max_steps": 2})
    out = apply_pathology(labels, LabelClasses(values), config, torch.Generator().manual_seed(2))
    volumes = (out == index[17]).sum(dim=(1, 2, 3))
    assert bool((volumes > 1600).all()), volumes
    gained = (labels != index[17]) & (out == index[17])
    assert bool(torch.isin(labels[gained], torch.tensor([index[2], index[3]])).all())


def test_a_cavity_removes_the_hippocampus_label_where_the_tissue_is_gone():
    labels, values, index = _head_like(16)
    config = PathologyConfig(**{**NONE, "cavity_probability": 1.0})
    out = apply_pathology(labels, LabelClasses(values), config, torch.Generator().manual_seed(3))
    volumes = (out == index[17]).sum(dim=(1, 2, 3))
    assert int(volumes.max()) < 1600 and int(volumes.min()) == 0, volumes  # partial and whole resections
    assert bool((out[(labels == index[17]) & (out != index[17])] == index[24]).all())  # replaced by CSF


def test_lesions_are_their_own_tissue_and_not_hippocampus():
    labels, values, index = _head_like(8)
    config = PathologyConfig(**{**NONE, "lesion_probability": 1.0, "large_lesion_probability": 1.0})
    out = apply_pathology(labels, LabelClasses(values), config, torch.Generator().manual_seed(4))
    assert int((out == index[LESION_VALUE]).sum()) > 0
    # the large lesion sits near the hippocampus: the tissue it covers is lesion or fluid now
    covered = (labels == index[17]) & ((out == index[LESION_VALUE]) | (out == index[24]))
    assert int(covered.sum()) > 0


def test_supersampled_targets_keep_the_label_maps_volume():
    """No deformation, no pathology: the 1 mm target averaged from the 0.5 mm grid has the
    crop's own hippocampus volume (within partial-volume rounding at the boundary)."""
    labels, values, index = _head_like(1)
    crops = labels.numpy().astype(np.uint8)
    still = dict(rotation_degrees=0.0, scale_range=0.0, translation_mm=0.0, elastic_mm=0.0, resolution_probability=0.0,
                 patch_size=(32, 40, 32), pathology=PathologyConfig(**NONE))
    generator = SyntheticGenerator(crops, values, SynthConfig(supersample=2, **still))
    _, targets = generator.sample(4, torch.Generator().manual_seed(0), indices=torch.zeros(4, dtype=torch.long))
    truth = int((labels[0, 4:36, 4:44, 4:36] == index[17]).sum())
    assert truth == 1600
    assert np.allclose(targets.sum(dim=(1, 2, 3)).numpy(), truth, rtol=0.03), targets.sum(dim=(1, 2, 3))
