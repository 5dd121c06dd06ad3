"""Backends: ONNX Runtime and PyTorch give the same probabilities for the shipped model, tiling
and mirroring are backend-independent, and the pass order starts with the left-right flip."""
from __future__ import annotations

import numpy as np
import pytest

from LUnetSegmentationLib.runtime.inference import mirror_flips, predict_batch
from LUnetSegmentationLib.runtime.weights import find_model

pytest.importorskip("torch")


def test_mirror_passes_in_order():
    assert mirror_flips(False) == [()] and mirror_flips(1) == [()]
    assert mirror_flips(2) == [(), (4,)]  # left-right (x) first: the hippocampus is mirror-symmetric across sides
    assert len(mirror_flips(True)) == 8 and len(set(mirror_flips(True))) == 8
    assert mirror_flips(99) == mirror_flips(True)


def test_onnx_runtime_matches_torch_on_a_tiled_mirrored_volume():
    pytest.importorskip("onnxruntime")
    from LUnetSegmentationLib.runtime.backends import OnnxBackend, TorchBackend

    card = find_model("hippocampus-lunet")
    volume = np.random.default_rng(1).standard_normal((2, 60, 70, 50)).astype(np.float32)  # 2 crops, tiled at 48
    onnx = predict_batch(OnnxBackend(card), volume, mirror=2, tile_size=48)
    torch = predict_batch(TorchBackend(card, "cpu"), volume, mirror=2, tile_size=48)
    assert onnx.shape == (2, 3, 60, 70, 50)
    assert np.abs(onnx - torch).max() < 1e-4
    assert np.allclose(onnx.sum(axis=1), 1.0, atol=1e-4)


def test_backend_choice(monkeypatch):
    pytest.importorskip("onnxruntime")
    from LUnetSegmentationLib.runtime.backends import load_backend

    card = find_model("hippocampus-lunet")
    assert load_backend(card, "cpu").name == "onnxruntime"
    monkeypatch.setenv("LUNET_BACKEND", "torch")
    assert load_backend(card, "cpu").name == "torch"


def test_no_engine_installed_says_what_to_install(monkeypatch):
    """Issue 23 item 7: segment() before torch or ONNX Runtime is installed gave a bare ModuleNotFoundError."""
    import importlib.util

    from LUnetSegmentationLib.runtime import backends
    from LUnetSegmentationLib.runtime.weights import WeightsError, find_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("onnxruntime", "torch") else real(name, *a))
    with pytest.raises(WeightsError, match="Neither ONNX Runtime nor PyTorch is installed") as error:
        backends.load_backend(find_model(None), "cpu")
    assert "pip install onnxruntime" in str(error.value) and "LUnetSegmentationLogic" in str(error.value)
