"""Out-of-process inference end to end (issue 13 item 4): a real child process (this Python
standing in for PythonSlicer) segments a volume node of a real MRML scene; progress, cancel,
a failing child with its message, one run at a time, and the persistent worker's second click."""
from __future__ import annotations

import shutil
import sys
import time

import pytest
import SimpleITK as sitk
from lunet_test_helpers import dice

pytest.importorskip("slicer", reason="slicer-core (real MRML) is not installed")
pytest.importorskip("torch", reason="the child needs torch")

from LUnetSegmentationLib.slicer_adapter import mrml  # noqa: E402
from LUnetSegmentationLib.slicer_adapter.childprocess import ChildError, Runner  # noqa: E402
from LUnetSegmentationLib.runtime.weights import find_model  # noqa: E402
from lunet_test_helpers import PARTS_MODEL  # noqa: E402

TIMEOUT_S = 180  # a loaded 2-core machine; a run takes a few seconds when idle


def wait(runner: Runner, until=("done", "failed", "cancelled"), timeout=TIMEOUT_S):
    """Poll as the module's QTimer does; returns the final status and every fraction seen."""
    fractions, deadline = [], time.time() + timeout
    while time.time() < deadline:
        status = runner.poll()
        fractions.append(status.fraction)
        if status.state in until:
            return status, fractions
        time.sleep(0.05)
    raise AssertionError(f"no {until} within {timeout} s; last status {status}")


@pytest.fixture
def crop(hippocampus_dir, mrml_scene):
    image = sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"))
    volume = mrml.imageToVolumeNode(mrml_scene.scene, image, "hippocampus_001")
    reference = sitk.ReadImage(str(hippocampus_dir / "labelsTr" / "hippocampus_001.nii.gz"))
    return volume, reference


@pytest.fixture
def runner():
    runner = Runner(python=sys.executable)
    yield runner
    runner.shutdown()


def segment_count(scene) -> int:
    return scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")


@pytest.mark.slow
def test_child_segments_a_crop_into_the_scene(crop, runner, mrml_scene):
    volume, reference = crop
    runner.start(volume, model=PARTS_MODEL, device="cpu")
    status, fractions = wait(runner)
    assert status.state == "done", status.message
    assert fractions == sorted(fractions) and 0 < max(fractions) == 1.0, "progress moves forward to the end"
    assert len(set(fractions)) > 3, "intermediate progress reaches the parent"
    node = runner.apply()
    assert runner.run is None and not runner.busy
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    truth = sitk.GetArrayFromImage(reference)
    for value, name in ((1, "Hippocampus anterior"), (2, "Hippocampus posterior")):
        mask = mrml.segmentArray(node, segmentation.GetSegmentIdBySegmentName(name), volume)
        assert dice(mask, truth == value) > 0.8, name
    provenance = mrml.readProvenance(node)
    assert provenance["ModelId"] == "hippocampus-lunet" and provenance["Process"] == "child"
    assert provenance["Device"] == "cpu"
    # The same record as the console's in-process run (mrml.writeRunProvenance), plus "Process".
    from LUnetSegmentationLib import segment

    console = mrml.readProvenance(segment(volume, model=PARTS_MODEL, device="cpu"))
    assert set(provenance) == set(console) | {"Process"}
    for key in ("ModelId", "WeightsSHA256", "InputVolumeID", "Mode", "ModuleVersion"):
        assert provenance[key] == console[key], key


@pytest.mark.slow
def test_second_click_reuses_the_loaded_worker(crop, runner, mrml_scene):
    volume, _ = crop
    times, pids = [], []
    for _ in range(2):
        started = time.time()
        runner.start(volume, device="cpu")
        status, _ = wait(runner)
        assert status.state == "done", status.message
        runner.apply()
        times.append(time.time() - started)
        pids.append(runner.worker.process.pid)
    assert pids[0] == pids[1], "the same worker process (model kept loaded) serves the second click"
    print(f"\nfirst click {times[0]:.2f} s (worker start + model load), second click {times[1]:.2f} s")
    assert segment_count(mrml_scene.scene) == 2


@pytest.mark.slow
def test_cancel_kills_the_child_and_changes_nothing(crop, runner, mrml_scene):
    volume, _ = crop
    before = segment_count(mrml_scene.scene)
    runner.start(volume, device="cpu")
    status, _ = wait(runner, until=("running",), timeout=5)
    process = runner.worker.process
    runner.cancel()
    assert process.poll() is not None, "the child is killed at once"
    assert runner.poll().state == "cancelled" and "Nothing was changed" in runner.poll().message
    with pytest.raises(RuntimeError, match="finished run"):
        runner.apply()
    runner.finish()
    assert segment_count(mrml_scene.scene) == before
    # The next click starts a fresh worker and works.
    runner.start(volume, device="cpu")
    assert wait(runner)[0].state == "done"


@pytest.mark.slow
def test_a_second_start_while_running_is_refused(crop, runner):
    volume, _ = crop
    runner.start(volume, device="cpu")
    with pytest.raises(RuntimeError, match="already running"):
        runner.start(volume, device="cpu")
    runner.cancel()


@pytest.mark.slow
def test_failing_child_surfaces_its_message(crop, runner, mrml_scene, tmp_path):
    volume, _ = crop
    card = find_model()
    models = tmp_path / "Models"
    shutil.copytree(card.path.parent, models)  # the card with every file it names
    (models / card.path.name).write_text(card.path.read_text()[:50])  # a damaged (cut) card
    runner.start(volume, model=str(models / card.path.name), device="cpu")
    status, _ = wait(runner)
    assert status.state == "failed"
    assert "not valid JSON" in status.message and "Restore it" in status.message, status.message
    assert "Traceback" in status.details
    runner.finish()
    assert segment_count(mrml_scene.scene) == 0


def test_a_child_that_dies_is_reported_with_its_output(crop, tmp_path):
    volume, _ = crop
    # A "Python" that prints an error and exits, as a broken PythonSlicer install would.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ImportError: no module named SimpleITK' >&2\nexit 3\n")
    fake.chmod(0o755)
    runner = Runner(python=str(fake))
    try:
        runner.start(volume, device="cpu")
        status, _ = wait(runner, timeout=20)
        message = status.message
        assert status.state == "failed" and "exit code 3" in message
    except ChildError as error:  # the child may be gone before the request is even written
        message = str(error)
        assert "stopped before it could take the request" in message
    finally:
        runner.shutdown()
    assert "no module named SimpleITK" in message, message


def test_bad_input_is_refused_before_any_child_starts(mrml_scene):
    runner = Runner(python=sys.executable)
    flat = mrml.imageToVolumeNode(mrml_scene.scene, sitk.Image(20, 20, 20, sitk.sitkFloat32), "flat")
    with pytest.raises(ValueError, match="constant"):
        runner.start(flat)
    assert runner.worker is None and runner.run is None
    runner.shutdown()
