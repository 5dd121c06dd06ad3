"""LUnetSegmentation core: Lean Unet hippocampus segmentation, Qt-free.

`from LUnetSegmentationLib import segment, segmentFiles` works with slicer-core alone (torch
and SimpleITK are imported on first use, never at import time, so Slicer starts fast).

The layers, each importing only those above it:

    runtime/         image in memory -> labels: checks, localization, network, model cards
    files/           scans read safely, results written atomically, the file-to-folder batch
    slicer_adapter/  MRML nodes, the console API, the Slicer module's child process
    apps/            cli (ships with the extension), bids/ and web/ (their own environments)
    training/        data, training, evaluation, synthetic data: the source install only

The Slicer extension ships runtime/, files/, slicer_adapter/ and apps/cli.py
(LUnetSegmentation/CMakeLists.txt; Testing/test_extension_files.py keeps it so).
"""
from __future__ import annotations

from .runtime.resources import RESOURCES_DIR  # noqa: F401  (the module's Resources/, for callers)

__version__ = "1.0.0"
__all__ = ["segment", "segmentFiles"]


def __getattr__(name):
    # Lazy exports: importing the package must stay cheap and free of heavy dependencies.
    if name in ("segment", "segmentFiles"):
        from .slicer_adapter import api

        return getattr(api, name)
    raise AttributeError(f"module 'LUnetSegmentationLib' has no attribute {name!r}")
