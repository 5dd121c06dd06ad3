"""Shared fixtures. Real data comes from ../shared/data (tests that need it skip, saying why,
when it is absent); MRML tests use a real headless slicer-core scene, never fakes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from lunet_test_helpers import data_folder

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LUNET_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def hippocampus_dir() -> Path:
    return data_folder(DATA, "Task04_Hippocampus", "imagesTr")


@pytest.fixture(scope="session")
def wholebrain_dir() -> Path:
    return data_folder(DATA, "wholebrain")


@pytest.fixture
def mrml_scene():
    """A fresh real headless MRML scene (slicer-core): application logic with the Colors,
    Volumes, Segmentations and SubjectHierarchy logics registered. Returns the HeadlessSlicer
    holder (it keeps the logics alive); the scene is `.scene`."""
    pytest.importorskip("slicer", reason="slicer-core (real MRML) is not installed")
    from LUnetSegmentationLib.slicer_adapter import mrml

    headless = mrml.createHeadlessScene()
    yield headless
    headless.clear()
