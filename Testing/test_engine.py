"""Engine: the memory estimate grows with the region, and a GPU out-of-memory error falls back
to the CPU for that image only."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from lunet_test_helpers import PARTS_MODEL
from LUnetSegmentationLib.runtime import engine
from LUnetSegmentationLib.runtime.engine import Segmenter
from LUnetSegmentationLib.runtime.preprocess import InputError


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(PARTS_MODEL, device="cpu")


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


def test_gpu_out_of_memory_retries_this_image_on_cpu_only(hippocampus_dir, monkeypatch):
    """A PyTorch backend whose GPU forward runs out of memory finishes the image on a CPU copy,
    says so, and tries the GPU again for the next image."""
    from LUnetSegmentationLib.runtime.backends import TorchBackend

    monkeypatch.setenv("LUNET_BACKEND", "torch")
    torch_segmenter = Segmenter(PARTS_MODEL, device="cpu")
    backend = torch_segmenter.backend
    assert isinstance(backend, TorchBackend)
    calls = []

    def gpu_that_runs_out(tensor):
        calls.append("cuda")
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    backend._cpu_copy = backend.network  # what deepcopy(network).to("cpu") gives
    monkeypatch.setattr(backend, "_device_forward", gpu_that_runs_out)
    monkeypatch.setattr(torch_segmenter, "device", "cuda")
    monkeypatch.setattr(backend, "device", "cuda")
    image = sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"))
    result = torch_segmenter.segment_image(image)
    assert calls == ["cuda"]  # tried once, then the CPU copy did every pass
    assert result.device == "cpu" and any("out of memory" in note for note in result.notes)
    assert sitk.GetArrayViewFromImage(result.labels).max() == 2
    torch_segmenter.segment_image(image)
    assert calls == ["cuda", "cuda"]  # the next image tries the GPU again
