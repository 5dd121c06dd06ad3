"""Every shipped model card drives names, terminology, label values and summary columns: a card
with anterior/posterior parts gives four sided segments, a whole-hippocampus card two, and
neither gives doubled names ("Left hippocampus Hippocampus") or empty part columns."""
from __future__ import annotations

import csv

import pytest

from LUnetSegmentationLib.files.batch import summary_columns
from LUnetSegmentationLib.runtime.pipeline import specs_from_card
from LUnetSegmentationLib.runtime.weights import DEFAULT_MODEL, available_models
from LUnetSegmentationLib.runtime.wholebrain import side_label_table

CARDS = available_models()


def test_the_whole_hippocampus_model_writes_freesurfers_values_and_colour():
    """Issue 25: labelmaps of whole heads overlay FreeSurfer's aseg: 17 left, 53 right, LUT colour (220, 216, 20)."""
    card = next(c for c in CARDS if c.model_id == "hippocampus-whole-lunet")
    table = {spec.side: spec for spec in side_label_table(card)}
    assert (table["left"].value, table["right"].value) == (17, 53)
    for spec in table.values():
        assert [round(c * 255) for c in spec.color] == [220, 216, 20]


def test_the_default_model_is_shipped_and_listed_first():
    assert CARDS and CARDS[0].model_id == DEFAULT_MODEL


@pytest.mark.parametrize("card", CARDS, ids=[c.model_id for c in CARDS])
def test_card_contract(card):
    structures = [entry["name"] for entry in card.labels]
    assert card.data["structures"] == structures
    for key in ("protocol", "contrasts", "quality", "onnx"):
        assert key in card.data, f"{card.model_id}: the panel and the pipeline need {key!r}"
    sided = side_label_table(card)
    declared = [entry["sides"][side]["value"] for side in ("left", "right") for entry in card.labels if "sides" in entry]
    if declared:  # the card states each side's value (FreeSurfer's 17/53 for the whole hippocampus)
        assert [spec.value for spec in sided] == declared and len(set(declared)) == len(declared)
    else:
        assert [spec.value for spec in sided] == list(range(1, 2 * len(structures) + 1))
    for spec in sided:
        words = spec.segment_name.lower().split()
        assert words.count("hippocampus") == 1, spec.segment_name
        assert spec.segment_name.startswith(spec.side.capitalize())
        assert "5366008" in spec.terminology and ("7771000" if spec.side == "left" else "24028007") in spec.terminology
    columns = summary_columns(card)
    assert len(columns) == len(set(columns))
    expected = {f"{s.segment_name} mm3" for s in specs_from_card(card) + sided} | {"Left hippocampus mm3", "Right hippocampus mm3"}
    assert set(columns) == expected
    if structures == ["Hippocampus"]:
        assert not any("anterior" in c or "posterior" in c for c in columns)


@pytest.mark.parametrize("card", CARDS, ids=[c.model_id for c in CARDS])
def test_crop_run_fills_the_cards_own_columns(card, hippocampus_dir, tmp_path):
    from LUnetSegmentationLib.files.batch import segment_files

    rows = segment_files([hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"], tmp_path, model=card.model_id, device="cpu")
    assert rows[0]["status"] == "ok", rows[0]["error"]
    with open(tmp_path / "summary.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    for spec in specs_from_card(card):
        assert float(row[f"{spec.segment_name} mm3"]) > 500, spec.segment_name
