"""GPU memory is handed back after runs (issue 13 item 8). The code path is checked here with
torch's CUDA calls observed; on a machine with a GPU the real release is measured too."""
from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

from LUnetSegmentationLib.slicer_adapter.worker import release_torch_memory  # noqa: E402


def test_release_without_cuda_does_nothing():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        pytest.skip("CUDA is initialised here; see the real measurement below")
    assert release_torch_memory() == {"cuda_cache_emptied": False}


def test_release_empties_the_cuda_cache_when_cuda_was_used(monkeypatch):
    calls, reserved = [], iter([3 << 20, 1 << 20])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *args: next(reserved))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    released = release_torch_memory()
    assert calls == ["empty_cache"]
    assert released == {"cuda_cache_emptied": True, "reserved_before_bytes": 3 << 20, "reserved_after_bytes": 1 << 20}


def test_release_never_imports_torch(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")
    assert release_torch_memory() == {"cuda_cache_emptied": False}
    assert "torch" not in sys.modules


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_real_gpu_memory_is_released_after_a_run():
    from LUnetSegmentationLib.runtime import pipeline
    import SimpleITK as sitk
    import numpy as np

    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(400, 50, (40, 56, 40)).astype(np.float32))
    pipeline.label_image(image, device="cuda", index_box=([0, 0, 0], [40, 56, 40]))
    pipeline.clear_model_cache()
    released = release_torch_memory()
    print(f"\nCUDA reserved before {released['reserved_before_bytes'] / 2**20:.1f} MiB, after {released['reserved_after_bytes'] / 2**20:.1f} MiB")
    assert released["cuda_cache_emptied"] and released["reserved_after_bytes"] < max(released["reserved_before_bytes"], 1)
