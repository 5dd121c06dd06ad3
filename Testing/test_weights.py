"""Weights: SHA-256 verified, plain tensors only, clear errors for missing or damaged files."""
import json
import shutil

import pytest
import torch

from LUnetSegmentationLib.runtime.weights import WeightsError, find_model, load_network


class Payload:
    """Stands for any non-tensor object a malicious weights file could carry."""


@pytest.fixture
def card_copy(tmp_path):
    card = find_model()
    shutil.copy(card.path, tmp_path / card.path.name)
    shutil.copy(card.weights_path, tmp_path / card.weights_path.name)
    return find_model(tmp_path / card.path.name)


def test_shipped_model_loads_and_verifies():
    net = load_network(find_model("hippocampus-lunet"))
    assert not net.training
    assert net.config.num_classes == 3


def test_truncated_weights_are_refused(card_copy):
    data = card_copy.weights_path.read_bytes()
    card_copy.weights_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_network(card_copy)


def test_missing_weights_are_refused(card_copy):
    card_copy.weights_path.unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_network(card_copy)


def test_pickled_objects_are_never_loaded(card_copy, tmp_path):
    # A weights file holding an arbitrary object: weights_only loading must refuse it even
    # when the checksum matches (someone could ship a malicious card + file pair).
    torch.save({"x": Payload()}, card_copy.weights_path)
    from LUnetSegmentationLib.runtime.weights import sha256sum

    card_copy.data["weights"]["sha256"] = sha256sum(card_copy.weights_path)
    with pytest.raises(WeightsError, match="cannot be read"):
        load_network(card_copy)


def test_unknown_model_lists_known_ids():
    with pytest.raises(WeightsError, match="hippocampus-lunet"):
        find_model("no-such-model")


def test_card_describes_preprocessing_and_licence():
    card = find_model("hippocampus-lunet")
    assert card.data["license"] == "CC-BY-SA-4.0"
    assert "Decathlon" in card.data["attribution"]
    assert set(card.data["preprocessing"]) >= {"spacing", "direction", "clip_percentiles", "pad_value"}
    assert [entry["name"] for entry in card.labels] == ["Hippocampus anterior", "Hippocampus posterior"]
    assert card.data["validation"]["mean_dice"] > 0.85
    json.dumps(card.data)  # plain JSON
