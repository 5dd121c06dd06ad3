"""Which PyTorch the module may install or use, decided without importing torch (pure Python).

torch below 2.3 was built against NumPy 1, and `torch.from_numpy` fails ("Numpy is not
available") under NumPy 2, which Slicer ships from 5.10 (5.10: 2.0.2, 5.12: 2.4.6). So a new
install asks for 2.3 or newer everywhere PyTorch still publishes wheels. Under NumPy 1 (Slicer
5.8: 1.26.4) an installed torch 2.1 or 2.2 works, so it is accepted there rather than the user
being told to upgrade.

Whether torch is installed, and which version, is read from its package metadata: importing
torch in Slicer's main thread to find out freezes the GUI for seconds.

Intel Macs are the exception: PyTorch's last x86_64 macOS wheel is 2.2.2. There it works with
NumPy 1 (Slicer 5.8 ships 1.26.4), so 2.2 is accepted when NumPy is below 2. Under NumPy 2 no
torch works there, and downgrading the NumPy that Slicer and its other extensions were built
with is not ours to do, so the module refuses with a message saying what to use instead.
"""
from __future__ import annotations

import platform
import re

TORCH_REQUIREMENT = ">=2.3"
TORCH_MINIMUM = (2, 3)
TORCH_MINIMUM_NUMPY_1 = (2, 1)  # builds for NumPy 1 work under NumPy 1
INTEL_MAC_TORCH_REQUIREMENT = ">=2.2"
INTEL_MAC_TORCH_MINIMUM = (2, 2)


# ONNX Runtime, the CPU backend offered instead of PyTorch where there is no CUDA GPU (one wheel of
# about 15 MB against PyTorch's hundreds). 1.19.2 is the last release with wheels for Python 3.9
# (Slicer 5.8); newer Pythons get the release the command line is tested with (requirements.txt).
ONNXRUNTIME_PYTHON39 = "onnxruntime==1.19.2"
ONNXRUNTIME_CURRENT = "onnxruntime==1.24.4"


class DependencyError(RuntimeError):
    """PyTorch cannot work in this Python; the message says what to do."""


def version_tuple(version: str) -> tuple:
    """"2.3.1+cu121" -> (2, 3, 1); missing or odd parts count as 0."""
    parts = []
    for part in str(version).split("+")[0].split(".")[:3]:
        match = re.match(r"\d+", part)
        parts.append(int(match.group()) if match else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def is_intel_mac(system: str | None = None, machine: str | None = None) -> bool:
    system = platform.system() if system is None else system
    machine = platform.machine() if machine is None else machine
    return system == "Darwin" and machine.lower() in ("x86_64", "amd64", "i386")


def torch_requirement(system: str | None = None, machine: str | None = None, numpy_version: str | None = None) -> str:
    """The pip requirement to give PyTorchUtils' installTorch here; raises DependencyError where
    no torch can work (an Intel Mac with NumPy 2)."""
    if not is_intel_mac(system, machine):
        return TORCH_REQUIREMENT
    if numpy_version is None:
        import numpy

        numpy_version = numpy.__version__
    if version_tuple(numpy_version) >= (2, 0, 0):
        raise DependencyError(
            f"This Slicer ships NumPy {numpy_version}, and PyTorch's newest build for Intel Macs (2.2.2) works only "
            "with NumPy 1, so LUnet Segmentation cannot run in it on this Mac. Use Slicer 5.8 (NumPy 1.26) on this "
            "Mac, or a Mac with Apple silicon, Windows or Linux, or the command line tool "
            "(`python -m LUnetSegmentationLib segment ...`) in a Python environment with torch 2.2.2 and numpy<2."
        )
    return INTEL_MAC_TORCH_REQUIREMENT


def installed_version(distribution: str) -> str | None:
    """The installed version of a package from its metadata, without importing it; None when absent."""
    import importlib.metadata
    import importlib.util

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    # A package without metadata (a source tree on sys.path) is found, version unknown.
    return "0" if importlib.util.find_spec(distribution) is not None else None


def _numpy_version() -> str:
    version = installed_version("numpy")
    if version in (None, "0"):
        import numpy

        version = numpy.__version__
    return version


def check_torch_version(torch_version: str, requirement: str, numpy_version: str | None = None) -> None:
    """Raise DependencyError (with what to do) when an installed torch cannot work with this
    NumPy: under NumPy 2 the requirement's floor (2.3; 2.2 on Intel Macs), under NumPy 1 2.1."""
    numpy_version = _numpy_version() if numpy_version is None else numpy_version
    if version_tuple(numpy_version) < (2, 0, 0):
        minimum, needed = TORCH_MINIMUM_NUMPY_1, ">=2.1 with NumPy 1"
    else:
        minimum = INTEL_MAC_TORCH_MINIMUM if requirement == INTEL_MAC_TORCH_REQUIREMENT else TORCH_MINIMUM
        needed = f"{requirement} with NumPy {numpy_version}: older builds fail with NumPy 2"
    if version_tuple(torch_version)[:2] < minimum:
        raise DependencyError(
            f"PyTorch {torch_version} is too old for LUnet Segmentation ({needed}). Update it in the PyTorch Utils "
            "module (Utilities category), restart Slicer, and try again."
        )


def onnxruntime_requirement(python_version: tuple | None = None) -> str:
    """The pip requirement for ONNX Runtime in this Python (Slicer 5.8: 3.9; 5.10 and 5.12: 3.12)."""
    import sys

    version = tuple(sys.version_info[:2]) if python_version is None else tuple(python_version)[:2]
    return ONNXRUNTIME_PYTHON39 if version < (3, 10) else ONNXRUNTIME_CURRENT


def cuda_gpu_present() -> bool:
    """Whether an NVIDIA driver is installed, without importing torch: decides between offering
    PyTorch (a GPU to use) and ONNX Runtime (CPU only). The runtime's own check, so the panel and
    the child agree on what "auto" means."""
    from ..runtime.engine import cuda_driver_present

    return cuda_driver_present()


def inference_backend(device: str = "auto", gpu: bool | None = None) -> str:
    """What the run needs installed: "torch" (a GPU asked for or present) or "onnxruntime" (CPU)."""
    if device in ("cuda", "gpu"):
        return "torch"
    if device == "cpu":
        return "onnxruntime"
    return "torch" if (cuda_gpu_present() if gpu is None else gpu) else "onnxruntime"
