"""Engine: the memory estimate grows with the region, and a GPU out-of-memory error falls back
to the CPU for that image only."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LUnetSegmentationLib import engine, inference
from LUnetSegmentationLib.engine import Segmenter
from LUnetSegmentationLib.preprocess import InputError


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(device="cpu")


def blob_image(size):
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(100, 20, size[::-1]).astype(np.float32))
    image.SetDirection([-1, 0, 0, 0, -1, 0, 0, 0, 1])
    return image


def test_memory_estimate_refuses_large_regions_but_not_crops(segmenter, monkeypatch):
    crop, head = blob_image((36, 50, 36)), blob_image((300, 300, 300))
    small, large = segmenter.estimate_bytes((36, 50, 36)), segmenter.estimate_bytes((300, 300, 300))
    assert large > 50 * small
    monkeypatch.setattr(engine, "available_memory_bytes", lambda: (small + large) // 2)
    segmenter.check_memory(crop)  # fits
    with pytest.raises(InputError, match="GiB of memory.*region of interest"):
        segmenter.check_memory(head)
    segmenter.check_memory(head, ([0, 0, 0], [40, 40, 40]))  # an ROI makes it fit


def test_gpu_out_of_memory_retries_this_image_on_cpu_only(segmenter, monkeypatch, hippocampus_dir):
    real = inference.predict_probabilities
    calls = []

    def flaky(network, volume, device="cpu", **kwargs):
        calls.append(device)
        if device != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(network, volume, device=device, **kwargs)

    monkeypatch.setattr(inference, "predict_probabilities", flaky)
    monkeypatch.setattr(segmenter, "device", "cuda")  # pretend the model lives on a GPU
    image = sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"))
    result = segmenter.segment_image(image)
    assert calls == ["cuda", "cpu"]
    assert result.device == "cpu" and any("out of memory" in note for note in result.notes)
    assert segmenter.device == "cuda"  # the next (smaller) image tries the GPU again
    assert sitk.GetArrayViewFromImage(result.labels).max() == 2
