"""The single entry check (runtime.checks.check_input) runs exactly once per scan, whichever way
the scan comes in: console, batch, the panel's parent + child process, the web app.

Each test counts the calls while a real run goes through (real MRML scene, real model on the
CPU). The input is a smooth random volume: it passes the entry check, goes through the network
and is then refused by the presence check ("No hippocampus was found"), which is the end of a
complete run for the purpose of counting.
"""
from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from lunet_test_helpers import PARTS_MODEL, add_volume, ijk_to_ras_matrix

pytest.importorskip("slicer", reason="slicer-core (real MRML) is not installed")

from LUnetSegmentationLib.runtime import checks  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402

SHAPE = (36, 48, 36)  # a crop-sized volume: no localization, one network pass


def _voxels() -> np.ndarray:
    rng = np.random.default_rng(7)
    image = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(rng.normal(100, 30, SHAPE).astype(np.float32)), 2.0)
    return sitk.GetArrayFromImage(image)


@pytest.fixture
def calls(monkeypatch):
    """Counts check_input calls, wherever a caller looks it up."""
    counted = []
    original = checks.check_input

    def counting(image, name):
        counted.append(name)
        return original(image, name)

    monkeypatch.setattr(checks, "check_input", counting)
    from LUnetSegmentationLib.apps.web import session

    monkeypatch.setattr(session, "check_input", counting)
    return counted


def _finishes_or_finds_nothing(run) -> str:
    """Run to the end; a presence refusal (after the network) also counts as the end."""
    try:
        run()
    except InputError as error:
        assert "No hippocampus was found" in str(error), error
        return "refused after the network"
    return "segmented"


def test_console_segment_checks_once(mrml_scene, calls):
    from LUnetSegmentationLib import segment

    volume = add_volume(mrml_scene.scene, _voxels(), ijk_to_ras_matrix(np.eye(3), (1, 1, 1), (0, 0, 0)), name="T1")
    _finishes_or_finds_nothing(lambda: segment(volume, model=PARTS_MODEL, device="cpu"))
    assert calls == ["T1"]


def test_batch_checks_each_file_once(tmp_path, calls):
    from LUnetSegmentationLib.files.batch import segment_files

    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(sitk.GetImageFromArray(_voxels()), str(paths[-1]))
    rows = segment_files(paths, tmp_path / "out", model=PARTS_MODEL, device="cpu")
    assert len(rows) == 2
    assert len(calls) == 2 and calls[0] != calls[1], calls


def test_panel_checks_in_the_parent_and_not_again_in_the_child(mrml_scene, calls, monkeypatch):
    """Runner.start (the panel's side) checks before it starts anything and tells the child it
    did; the child's run_request, given that request, does not check again."""
    from LUnetSegmentationLib.slicer_adapter import childprocess, worker

    sent = []

    class RecordingWorker:  # stands in for the child's stdin only: the request is run below, for real
        alive = True

        def send(self, request):
            sent.append(request)

    volume = add_volume(mrml_scene.scene, _voxels(), ijk_to_ras_matrix(np.eye(3), (1, 1, 1), (0, 0, 0)), name="T1")
    runner = childprocess.Runner(python=sys.executable)
    monkeypatch.setattr(runner, "_ensure_worker", lambda: RecordingWorker())
    runner.start(volume, model=PARTS_MODEL, device="cpu")
    assert calls == ["T1"]
    assert sent and sent[0]["checked"] == [] and sent[0]["name"] == "T1"

    def child():
        worker.run_request(sent[0], worker.Emitter(io.StringIO()))

    _finishes_or_finds_nothing(child)
    assert calls == ["T1"], "the child checked the voxels again"


def test_worker_request_without_checked_is_checked_there(tmp_path, calls):
    """A request from a script (no "checked") gets the entry check in the worker."""
    from LUnetSegmentationLib.slicer_adapter import worker

    path = tmp_path / "input.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(_voxels()), str(path))
    request = {"id": "r", "input": str(path), "output_dir": str(tmp_path / "out"), "model": PARTS_MODEL, "device": "cpu"}
    _finishes_or_finds_nothing(lambda: worker.run_request(request, worker.Emitter(io.StringIO())))
    assert calls == ["volume"]


def test_web_app_checks_when_the_file_is_opened_and_not_again(mrml_scene, tmp_path, calls):
    from LUnetSegmentationLib.apps.web.session import WebSession

    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(_voxels()), str(path))
    session = WebSession(mrml_scene.scene)
    session.load(path)
    assert len(calls) == 1

    def run():
        job = session.prepare(model=PARTS_MODEL, device="cpu")
        job.compute()

    _finishes_or_finds_nothing(run)
    assert len(calls) == 1, calls


def test_bad_input_gets_the_entry_check_message_from_batch(tmp_path):
    """The batch path refuses with check_input's own words, unchanged."""
    from LUnetSegmentationLib.files.batch import segment_files

    path = tmp_path / "c.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full(SHAPE, 5.0, np.float32)), str(path))
    rows = segment_files([path], tmp_path / "out", model=PARTS_MODEL, device="cpu")
    assert rows[0]["status"] == "error"
    assert "is constant (every voxel is 5), so there is nothing to segment" in rows[0]["error"]
