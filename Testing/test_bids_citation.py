"""How to cite: CITATION.cff (valid CFF 1.2.0 fields, checked here against the package's version,
licence and the catalogue's repository), the model cards' "citation", and the BIDS derivatives'
HowToAcknowledge, which carries the card's text. (cffconvert --validate checks the full schema;
it is not a dependency of the suite.)"""
from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LUnetSegmentation"))

from LUnetSegmentationLib import __version__  # noqa: E402
from LUnetSegmentationLib.runtime.weights import available_models  # noqa: E402

yaml = pytest.importorskip("yaml", reason="PyYAML reads CITATION.cff")
LUNET_DOI = "10.48550/arXiv.2512.03834"
CATALOGUE_URL = json.loads((REPO / "LUnetSegmentation.json").read_text())["scm_url"]


def test_citation_cff_describes_this_release():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert {"message", "title", "authors"} <= set(cff)
    assert str(cff["version"]) == __version__
    assert cff["repository-code"] == CATALOGUE_URL
    assert cff["license"] == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    lunet = [ref for ref in cff["references"] if ref.get("doi") == LUNET_DOI]
    assert len(lunet) == 1 and lunet[0]["authors"][0]["family-names"] == "Hassler"
    assert "Lean Unet" in lunet[0]["title"]


def test_pyproject_urls_are_the_catalogue_entrys():
    urls = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Source"] == urls["Homepage"] == CATALOGUE_URL
    assert urls["Citation"].startswith(CATALOGUE_URL) and urls["Citation"].endswith("CITATION.cff")


@pytest.mark.parametrize("card", available_models(), ids=lambda card: card.model_id)
def test_every_model_card_says_how_to_cite(card):
    citation = card.data.get("citation", "")
    assert "arXiv:2512.03834" in citation and "Hassler" in citation, card.model_id
    assert "CITATION.cff" in citation and CATALOGUE_URL in citation
    assert "Decathlon" in citation  # both models descend from the Decathlon-trained weights


def test_derivatives_say_how_to_acknowledge(tmp_path):
    from LUnetSegmentationLib.apps.bids import app as bids

    model = bids.model_identity()
    description = bids.dataset_description(tmp_path, model, tmp_path / "derivatives" / "lunet")
    assert description["HowToAcknowledge"] == model["citation"] and "arXiv:2512.03834" in model["citation"]
    assert CATALOGUE_URL in description["ReferencesAndLinks"]
