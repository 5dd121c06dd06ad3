"""A whole head's sides are judged one by one (issue 21, 22): a failing side is dropped with its
reason and the other is kept; no side left is a refusal. A crop or region holding both
hippocampi is refused rather than reported as one. Built on real label images, no network."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.runtime import measures
from LUnetSegmentationLib.runtime.pipeline import LabelResult, check_one_hippocampus, drop_failed_sides, measure_volumes
from LUnetSegmentationLib.runtime.preprocess import InputError
from LUnetSegmentationLib.runtime.weights import find_model
from LUnetSegmentationLib.runtime.wholebrain import side_label_table


def _labels(blobs, shape=(40, 60, 80)):
    array = np.zeros(shape, np.uint8)
    for value, (z, y, x) in blobs:
        array[z:z + 10, y:y + 20, x:x + 10] = value
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _result(rank_right=0.5):
    card = find_model("hippocampus-whole-lunet")
    specs = side_label_table(card)
    values = {spec.side: spec.value for spec in specs}
    labels = _labels([(values["left"], (10, 20, 10)), (values["right"], (10, 20, 60))])
    volumes = measure_volumes(labels, specs)
    return LabelResult(labels, specs, card, "cpu", 0.0, volumes_mm3=volumes,
                       side_volumes_mm3={"left": 2000.0, "right": 2000.0},
                       details={"mode": "whole-head", "confidence": {"right": {"centre_intensity_rank": rank_right}}}), values


def test_a_failing_side_is_dropped_with_its_reason_and_the_other_is_kept():
    result, values = _result()
    drop_failed_sides(result, {"right": "the network found 200 mm3"}, "head")
    array = sitk.GetArrayViewFromImage(result.labels)
    assert not (array == values["right"]).any() and (array == values["left"]).sum() == 2000
    assert result.side_volumes_mm3 == {"left": 2000.0}
    assert result.volumes_mm3["Right hippocampus"] == 0 and result.volumes_mm3["Left hippocampus"] == 2000
    assert "right" in result.details["failed_sides"]
    assert any("right hippocampus was not segmented" in w and "200 mm3" in w for w in result.warnings)


def test_a_side_that_looks_like_fluid_says_so():
    result, _ = _result(rank_right=0.03)
    drop_failed_sides(result, {"right": "the network found 0 mm3"}, "head")
    assert any("looks like fluid" in w and "resection or severe atrophy" in w for w in result.warnings), result.warnings


def test_no_side_left_is_a_refusal_naming_both():
    result, _ = _result()
    result.details["failed_sides"] = {"left": "the field of view cuts through the left hippocampus"}
    with pytest.raises(InputError, match="No hippocampus was found with confidence") as error:
        drop_failed_sides(result, {"right": "the network found 10 mm3"}, "head")
    assert "field of view cuts through the left" in str(error.value) and "10 mm3" in str(error.value)


def test_a_region_holding_both_hippocampi_is_refused():
    with pytest.raises(InputError, match="both hippocampi"):
        check_one_hippocampus(_labels([(1, (10, 20, 10)), (1, (10, 20, 60))]), "roi")
    one_and_a_speck = _labels([(1, (10, 20, 10))])
    array = sitk.GetArrayFromImage(one_and_a_speck)
    array[30:32, 50:52, 70:72] = 1  # an 8-voxel island is no second hippocampus
    speck = sitk.GetImageFromArray(array)
    check_one_hippocampus(speck, "roi")


def test_intracranial_volume_is_withheld_when_the_field_of_view_cuts_it():
    assert measures.intracranial_volume_ml({"intracranial": {"volume_ml": 1450.0, "cut_by_field_of_view": False}}) == 1450.0
    assert measures.intracranial_volume_ml({"intracranial": {"volume_ml": 1100.0, "cut_by_field_of_view": True}}) is None
    assert measures.intracranial_volume_ml({}) is None
    assert measures.fraction_of_icv(3000.0, 1500.0) == pytest.approx(0.002)
    assert measures.asymmetry_index(3100.0, 2900.0) == pytest.approx(200 / 3000)
