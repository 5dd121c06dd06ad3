"""LUnetSegmentation core: Lean Unet hippocampus segmentation, Qt-free.

`from LUnetSegmentationLib import segment, segmentFiles` works with slicer-core alone (torch
and SimpleITK are imported on first use, never at import time, so Slicer starts fast).
"""
from __future__ import annotations

__version__ = "1.0.0"
__all__ = ["segment", "segmentFiles"]


def __getattr__(name):
    # Lazy exports: importing the package must stay cheap and free of heavy dependencies.
    if name in ("segment", "segmentFiles"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'LUnetSegmentationLib' has no attribute {name!r}")
