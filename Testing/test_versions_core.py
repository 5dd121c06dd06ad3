"""Torch-free checks of the core that must hold on every Python/NumPy pair Slicer ships
(5.8: Python 3.9 + NumPy 1.26; 5.10/5.12: Python 3.12 + NumPy 2.0/2.4).

scripts/check_versions.sh runs this file (with the other torch-free test files) in small
venvs without torch or slicer-core; here, under .venv, it runs with everything else.
"""
from __future__ import annotations

import hashlib

import pytest

from LUnetSegmentationLib.apps import cli
from LUnetSegmentationLib.runtime.weights import DEFAULT_MODEL, WeightsError, available_models, find_model, sha256sum


def test_sha256_matches_hashlib_across_chunk_boundaries(tmp_path):
    # 2.5 chunks of data: the chunk loop must hash every byte exactly once.
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 10
    path.write_bytes(data)
    assert sha256sum(path, chunk_size=1024) == hashlib.sha256(data).hexdigest()
    assert sha256sum(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert sha256sum(empty) == hashlib.sha256(b"").hexdigest()


def test_shipped_weights_match_their_card():
    # The check every segmentation runs first (and that failed on Python 3.9 before).
    card = find_model(DEFAULT_MODEL)
    assert sha256sum(card.weights_path) == card.weights_sha256


def test_model_cards_load_without_torch():
    cards = available_models()
    assert DEFAULT_MODEL in [card.model_id for card in cards]
    card = find_model(None)
    assert card.model_id == DEFAULT_MODEL and card.labels
    assert [label["value"] for label in card.labels] == list(range(1, len(card.labels) + 1))


def test_damaged_card_is_refused_with_a_message(tmp_path):
    card = find_model(None)
    broken = tmp_path / card.path.name
    broken.write_text(card.path.read_text()[:40])
    with pytest.raises(WeightsError, match="not valid JSON.*Restore"):
        find_model(broken)


def test_cli_arguments_parse():
    parser = cli.build_parser()
    args = parser.parse_args(["segment", "a.nii.gz", "b.mgz", "--out", "out", "--labelmap", "--device", "cpu"])
    assert args.inputs == ["a.nii.gz", "b.mgz"] and args.out == "out" and args.labelmap and args.device == "cpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["segment", "a.nii.gz", "--out", "out", "--device", "tpu"])


def test_cli_reports_a_missing_model_without_a_traceback(tmp_path, capsys):
    # segmentFiles refuses a bad model id before loading anything: no torch needed for this path.
    source = tmp_path / "case.nii.gz"
    source.write_bytes(b"")
    code = cli.main(["segment", str(source), "--out", str(tmp_path / "out"), "--model", "no-such-model"])
    assert code == 2
    assert "No model 'no-such-model'" in capsys.readouterr().err
