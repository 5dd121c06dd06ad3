"""The reader names what a path is when it is no image file (issue 23/24: a FIFO said "No such file")."""
from __future__ import annotations

import os

import pytest

from LUnetSegmentationLib.files.volumeio import readImage
from LUnetSegmentationLib.runtime.preprocess import InputError


def test_a_fifo_is_refused_as_not_a_regular_file_without_blocking(tmp_path):
    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        readImage(fifo)


def test_a_missing_file_is_still_no_such_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file"):
        readImage(tmp_path / "absent.nii.gz")
