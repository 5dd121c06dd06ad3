"""Presence check and resolution guard (issue 17 items 3 and 4): a crop without a hippocampus
gets "no hippocampus found", never a volume; a scan coarser than the model was validated for
is segmented with a warning that reaches the API result and summary.csv."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.runtime import pipeline
from LUnetSegmentationLib.runtime.preprocess import InputError
from LUnetSegmentationLib.training.acquisition import crop_around_point, simulate_acquisition
from LUnetSegmentationLib.files.volumeio import readImage

MODEL = "hippocampus-lunet"


def _crop(image: sitk.Image, centre_lps, size_mm=(44, 60, 44)) -> sitk.Image:
    return crop_around_point(image, centre_lps, size_mm)


@pytest.fixture(scope="module")
def norm(wholebrain_dir):
    return readImage(wholebrain_dir / "fs_norm" / "norm.nii.gz")


@pytest.fixture(scope="module")
def centres(norm):
    from LUnetSegmentationLib.runtime.localize import localize

    return localize(norm).centres_lps


@pytest.mark.slow
def test_a_temporal_cortex_crop_is_not_a_hippocampus(norm, centres):
    lateral = np.asarray(centres["left"]) + [30.0, 0.0, 0.0]  # LPS: 30 mm further left, in the temporal cortex
    with pytest.raises(InputError, match="No hippocampus was found"):
        pipeline.label_image(_crop(norm, lateral), model=MODEL, device="cpu", name="temporal crop")
    # the same box on the hippocampus itself is segmented
    result = pipeline.label_image(_crop(norm, centres["left"]), model=MODEL, device="cpu", name="hippocampus crop")
    assert sum(result.volumes_mm3.values()) > 1500


def test_noise_and_a_ct_like_crop_are_refused():
    rng = np.random.default_rng(0)
    noise = sitk.GetImageFromArray(rng.normal(100, 20, (44, 60, 44)).astype(np.float32))
    noise.SetDirection([-1, 0, 0, 0, -1, 0, 0, 0, 1])
    with pytest.raises(InputError, match="No hippocampus was found"):
        pipeline.label_image(noise, model=MODEL, device="cpu", name="noise")
    # CT-like: Hounsfield values (air -1000, soft tissue 30-60, a bone shell 1000)
    z, y, x = np.mgrid[:44, :60, :44]
    radius = np.sqrt(((z - 22) / 20) ** 2 + ((y - 30) / 28) ** 2 + ((x - 22) / 20) ** 2)
    ct = np.where(radius < 0.85, 40.0, np.where(radius < 1.0, 1000.0, -1000.0)) + rng.normal(0, 5, radius.shape)
    image = sitk.GetImageFromArray(ct.astype(np.float32))
    image.SetDirection([-1, 0, 0, 0, -1, 0, 0, 0, 1])
    with pytest.raises(InputError, match="No hippocampus was found"):
        pipeline.label_image(image, model=MODEL, device="cpu", name="ct")


def test_resolution_warning_from_the_card():
    from LUnetSegmentationLib.runtime.weights import find_model

    card = find_model(MODEL)
    trusted = card.data["quality"]["trusted_max_spacing_mm"]
    fine = sitk.Image([10, 10, 10], sitk.sitkFloat32)
    thick = sitk.Image([10, 10, 10], sitk.sitkFloat32)
    thick.SetSpacing((1.0, 1.0, trusted + 1.0))
    assert pipeline.resolution_warnings(fine, card) == []
    (warning,) = pipeline.resolution_warnings(thick, card)
    assert f"{trusted:g} mm" in warning and "1x1x" in warning


@pytest.mark.slow
def test_thick_slices_reach_summary_csv_as_a_warning(norm, tmp_path):
    from LUnetSegmentationLib.files.batch import segment_files
    from LUnetSegmentationLib.runtime.weights import find_model

    quality = find_model(None).data["quality"]
    # 5 mm isotropic: within the 6 mm hard limit, beyond both shipped cards' trusted resolution
    assert 5.0 > quality["trusted_max_spacing_mm"] or 125.0 > quality["trusted_max_voxel_mm3"]
    thick = simulate_acquisition(norm, 5.0)
    path = tmp_path / "thick.nii.gz"
    sitk.WriteImage(thick, str(path))
    rows = segment_files([path], tmp_path / "out", device="cpu")
    with open(tmp_path / "out" / "summary.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    # either segmented with a warning, or refused with "no hippocampus found": never a silent volume
    if rows[0]["status"] == "ok":
        assert "coarser than" in row["warnings"]
    else:
        assert "No " in row["error"] and "hippocampus was found" in row["error"]
