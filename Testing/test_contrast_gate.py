"""A T1-only model (hippocampus-lunet) refuses a scan that does not look T1-weighted and a side
whose centre is fluid, where it used to report another structure or a cavity as a hippocampus;
the any-contrast default model is not gated. runtime/contrast.py, pipeline.fluid_centre."""
from __future__ import annotations

import numpy as np
import pytest

from LUnetSegmentationLib.runtime.contrast import check_model_contrast, deep_brightness_rank
from LUnetSegmentationLib.runtime.pipeline import presence_failures
from LUnetSegmentationLib.runtime.preprocess import InputError
from LUnetSegmentationLib.runtime.weights import find_model

T1_ONLY, ANY_CONTRAST = "hippocampus-lunet", "hippocampus-whole-lunet"


def _ball(deep_value: float, outer_value: float, radius_mm: float = 70.0, spacing_mm: float = 4.0):
    """A ball of intracranial space on a 4 mm grid: `deep_value` beyond 20 mm inside, the rest `outer_value`."""
    n = int(2 * radius_mm / spacing_mm) + 5
    z, y, x = np.indices((n, n, n)) - n // 2
    distance = np.sqrt(x * x + y * y + z * z) * spacing_mm
    inside = distance <= radius_mm
    array = np.where(distance <= radius_mm - 20.0, deep_value, outer_value).astype(np.float32) * inside
    return array, inside


def test_a_bright_deep_brain_ranks_high_and_a_dark_one_low():
    assert deep_brightness_rank(*_ball(100.0, 50.0), 4.0) == 1.0  # T1: white matter outshines the cortex
    assert deep_brightness_rank(*_ball(50.0, 100.0), 4.0) == 0.0  # FLAIR: the cortex outshines it
    array, inside = _ball(100.0, 50.0)
    assert deep_brightness_rank(array * 3.0 + 7.0, inside, 4.0) == 1.0  # ranks ignore gain and offset


def test_a_space_too_small_for_a_deep_part_or_none_at_all_gives_no_rank():
    assert deep_brightness_rank(*_ball(100.0, 50.0, radius_mm=16.0), 4.0) is None
    array, inside = _ball(100.0, 50.0)
    assert deep_brightness_rank(array, np.zeros_like(inside), 4.0) is None


def test_a_space_cut_by_the_field_of_view_is_measured_from_the_cut_face_too():
    # The whole 160 mm grid is intracranial (a tight field of view): its edge is the surface,
    # so the bright middle is deep and the rim outer.
    z, y, x = np.indices((40, 40, 40))
    rim = np.minimum.reduce([z, y, x, 39 - z, 39 - y, 39 - x]) * 4.0
    array = np.where(rim >= 20.0, 100.0, 50.0).astype(np.float32)
    with np.errstate(all="raise"):  # no distance of the float maximum times the spacing
        assert deep_brightness_rank(array, np.ones(array.shape, bool), 4.0) == 1.0


def test_the_t1_only_model_refuses_a_low_rank_and_says_which_model_to_use():
    card = find_model(T1_ONLY)
    limit = card.data["quality"]["contrast"]["min_deep_brightness_rank"]
    with pytest.raises(InputError) as refused:
        check_model_contrast(limit - 0.1, card)
    message = str(refused.value)
    assert "does not look T1-weighted" in message and ANY_CONTRAST in message and T1_ONLY in message
    check_model_contrast(limit, card)  # at the limit: a T1
    check_model_contrast(None, card)  # no rank (registration fallback, tiny head): not gated


def test_the_any_contrast_model_is_not_gated():
    check_model_contrast(0.0, find_model(ANY_CONTRAST))


def _side(rank: float) -> dict:
    return {"left": {"voxels": 3500, "mean_probability": 0.95, "mean_entropy": 0.1, "centre_intensity_rank": rank}}


def test_a_fluid_centre_fails_the_t1_only_models_side_only():
    card = find_model(T1_ONLY)
    low, high = card.data["quality"]["presence"]["whole_head"]["centre_intensity_rank_band"]
    assert "intensity of fluid" in presence_failures(_side(low - 0.05), card)["left"]
    assert "left" in presence_failures(_side(min(high + 0.05, 1.0)), card)
    assert presence_failures(_side((low + high) / 2), card) == {}
    # The default model was trained on cavities and leaves them empty itself: no band.
    assert presence_failures(_side(0.05), find_model(ANY_CONTRAST)) == {}


@pytest.fixture(scope="module")
def segmenters():
    from LUnetSegmentationLib.runtime.engine import Segmenter
    from LUnetSegmentationLib.runtime.pipeline import LoadedModel

    return {model: LoadedModel(Segmenter(model, "cpu")) for model in (T1_ONLY, ANY_CONTRAST)}


def _synthetic(name: str, contrast: str, pathology: str):
    from conftest import DATA
    from LUnetSegmentationLib.training.synthetic_heads import synthesize_head

    path = DATA / "synthseg_label_maps" / f"{name}.nii.gz"
    if not path.is_file():
        pytest.skip(f"no SynthSeg label map {path}")
    return synthesize_head(path, contrast, 0, pathology)[0]


@pytest.mark.slow
def test_a_flair_head_is_refused_by_the_t1_model_and_segmented_by_the_default(segmenters):
    from LUnetSegmentationLib.runtime.pipeline import label_image

    flair = _synthetic("training_seg_17", "flair", "none")  # hippocampus-lunet reported 977 mm3 at Dice 0.003 here
    with pytest.raises(InputError, match="does not look T1-weighted"):
        label_image(flair, loaded=segmenters[T1_ONLY], name="flair")
    result = label_image(flair, loaded=segmenters[ANY_CONTRAST], name="flair")
    assert set(result.side_volumes_mm3) == {"left", "right"}
    assert result.details["localization"]["deep_brightness_rank"] < 0.35


@pytest.mark.slow
def test_a_resected_side_of_a_t1_head_is_not_reported_by_the_t1_model(segmenters):
    from LUnetSegmentationLib.runtime.pipeline import label_image

    resected = _synthetic("training_seg_18", "t1", "resection")  # the left cavity came back as 5,553 mm3
    result = label_image(resected, loaded=segmenters[T1_ONLY], name="resected")
    assert "left" not in result.side_volumes_mm3 and "fluid" in result.details["failed_sides"]["left"]
    assert result.side_volumes_mm3["right"] > 1000


@pytest.mark.slow
def test_real_t1_heads_pass_the_gate(wholebrain_dir, segmenters):
    from LUnetSegmentationLib.files.volumeio import readImage
    from LUnetSegmentationLib.runtime.pipeline import label_image

    result = label_image(readImage(wholebrain_dir / "fs_norm" / "norm.nii.gz"), loaded=segmenters[T1_ONLY], name="fs_norm")
    assert set(result.side_volumes_mm3) == {"left", "right"}
    assert result.details["localization"]["deep_brightness_rank"] > 0.5
