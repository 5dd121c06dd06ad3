"""The module's Logic (LUnetSegmentation.py) driving a real child process on a real MRML scene.

The slicer-core wheel lacks only Slicer's GUI-side Python packages (ScriptedLoadableModule,
i18n, parameterNodeWrapper, qt); they are given minimal stand-ins here so the module file can be
imported, and only the Logic, which uses none of them, is exercised. MRML is real. The widget
itself is exercised by the module's self-test inside Slicer.
"""
from __future__ import annotations

import importlib.util
import sys
import time
import types
from pathlib import Path

import pytest
import SimpleITK as sitk

from lunet_test_helpers import PARTS_MODEL

pytest.importorskip("slicer", reason="slicer-core (real MRML) is not installed")

MODULE_FILE = Path(__file__).resolve().parents[1] / "LUnetSegmentation" / "LUnetSegmentation.py"


@pytest.fixture
def module(monkeypatch, mrml_scene):
    import slicer

    class Base:
        def __init__(self, *args, **kwargs):
            pass

    stand_ins = {
        "qt": types.ModuleType("qt"),
        "slicer.i18n": types.SimpleNamespace(tr=lambda text: text, translate=lambda context, text: text),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(parameterNodeWrapper=lambda cls: cls),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=Base, ScriptedLoadableModuleLogic=Base, ScriptedLoadableModuleTest=Base, ScriptedLoadableModuleWidget=Base
        ),
    }
    for name, stand_in in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, stand_in)
    monkeypatch.setattr(slicer, "mrmlScene", mrml_scene.scene, raising=False)
    spec = importlib.util.spec_from_file_location("LUnetSegmentationModuleUnderTest", MODULE_FILE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    # PythonSlicer is not here: this Python (with the requirements) stands in for it.
    monkeypatch.setattr(loaded.LUnetSegmentationLogic, "_original_pythonSlicerExecutable", loaded.LUnetSegmentationLogic.__dict__["pythonSlicerExecutable"], raising=False)
    monkeypatch.setattr(loaded.LUnetSegmentationLogic, "pythonSlicerExecutable", staticmethod(lambda: sys.executable))
    return loaded


@pytest.mark.slow
def test_logic_runs_the_child_and_writes_segments(module, mrml_scene, hippocampus_dir):
    pytest.importorskip("torch", reason="the child needs torch")
    from LUnetSegmentationLib.slicer_adapter import mrml

    image = sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"))
    volume = mrml.imageToVolumeNode(mrml_scene.scene, image, "hippocampus_001")
    logic = module.LUnetSegmentationLogic()
    try:
        logic.startSegmentation(volume, model=PARTS_MODEL, device="cpu")
        assert logic.busy
        with pytest.raises(RuntimeError, match="already running"):
            logic.startSegmentation(volume, model=PARTS_MODEL, device="cpu")
        deadline = time.time() + 180
        while (status := logic.pollSegmentation()).state == "running" and time.time() < deadline:
            time.sleep(0.05)
        assert status.state == "done", status.message
        run = logic.activeRun
        node = logic.applySegmentation()
        assert node.GetSegmentation().GetNumberOfSegments() == 2
        text = logic.summary(run.result)
        assert text.startswith("Done in") and "Hippocampus anterior" in text and "mm" in text
    finally:
        worker = logic._runner.worker if logic._runner else None
        logic.shutdown()
    assert logic._runner is None and (worker is None or worker.process.poll() is not None), "shutdown ends the child"


def test_release_memory_clears_the_console_model_cache(module):
    pytest.importorskip("torch")
    from LUnetSegmentationLib.runtime import pipeline

    pipeline._cache["probe"] = object()
    released = module.LUnetSegmentationLogic().releaseMemory()
    assert "probe" not in pipeline._cache
    assert released["cuda_cache_emptied"] is False  # no CUDA on this machine: nothing else to do


# --- issue 23: the status line, dependencies without importing torch, the 3D view


def finished_job(**fields):
    import types

    job = dict(volumes={}, sideVolumes={}, seconds=1.25, device="cpu", notes=[], warnings=[])
    job.update(fields)
    return types.SimpleNamespace(**job)


def test_the_status_line_lists_each_volume_once(module):
    # Item 8: the whole-hippocampus model's segments are the sides; they were listed twice.
    text = module.LUnetSegmentationLogic.summary(finished_job(
        volumes={"Left hippocampus": 3204.0, "Right hippocampus": 3310.0}, sideVolumes={"left": 3204.0, "right": 3310.0}))
    assert text.count("3204") == 1 and text.count("3310") == 1, text
    # The parts model: the side totals add something and stay.
    text = module.LUnetSegmentationLogic.summary(finished_job(
        volumes={"Left hippocampus anterior": 1700.0, "Left hippocampus posterior": 1500.0}, sideVolumes={"left": 3200.0}))
    assert "Left hippocampus 3200" in text and "anterior 1700" in text, text


def test_the_status_line_shows_the_quality_warnings(module):
    # Item 4: a 1x1x4 mm scan's warning was stored on the node but the status line said "Done".
    warning = "Slices are 4.0 mm apart, coarser than this model was validated for (up to 3 mm)."
    text = module.LUnetSegmentationLogic.summary(finished_job(volumes={"Left hippocampus": 3000.0}, warnings=[warning]))
    assert text.startswith("Done") and warning in text, text


def test_a_failure_says_nothing_was_changed_once(module):
    # Item 8: the worker's crash message already says it.
    crash = "The segmentation worker stopped unexpectedly (exit code -9); nothing was changed. Try again."
    assert module.LUnetSegmentationWidget.failureText(crash).lower().count("nothing was changed") == 1
    assert module.LUnetSegmentationWidget.failureText("No hippocampus was found.").endswith("Nothing was changed.")


@pytest.fixture
def pytorch_utils_that_imports_torch(monkeypatch):
    """The PyTorch extension's logic as it behaves (PyTorchUtils.torchInstalled imports torch)."""
    import types

    class PyTorchUtilsLogic:
        @staticmethod
        def torchInstalled():
            import torch  # noqa: F401

            return True

        def installTorch(self, **kwargs):
            raise AssertionError("torch is installed: nothing to install")

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))


def test_checking_for_torch_never_imports_it_in_slicers_main_process(module, monkeypatch, pytorch_utils_that_imports_torch):
    # Item 6: importing torch in Slicer's main thread froze the GUI for seconds on the first Apply.
    import builtins

    pytest.importorskip("torch")  # installed (its metadata is what is read), but must not be imported
    imported, real_import = [], builtins.__import__

    def recording_import(name, *args, **kwargs):
        imported.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", recording_import)
    assert module.LUnetSegmentationLogic.ensureDependencies(askConfirmation=False) is True
    assert "torch" not in imported


def test_show_result_builds_the_closed_surface(module, mrml_scene, monkeypatch):
    # Item 11: nothing appeared in the 3D view.
    import types

    import numpy as np
    import slicer

    from LUnetSegmentationLib.runtime.pipeline import SegmentSpec
    from LUnetSegmentationLib.slicer_adapter import mrml

    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(markups=types.SimpleNamespace(
        logic=lambda: types.SimpleNamespace(JumpSlicesToLocation=lambda *args: None))), raising=False)
    voxels = np.zeros((20, 20, 20), dtype=np.float32)
    volume = mrml.imageToVolumeNode(mrml_scene.scene, sitk.GetImageFromArray(voxels), "v")
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[5:12, 6:14, 4:10] = 1
    node = mrml.newSegmentationNode(volume)
    mrml.writeSegments(node, labels, volume, [SegmentSpec(1, "Hippocampus", (1.0, 0.8, 0.2), "left")], "test")
    module.LUnetSegmentationLogic.showResult(node)
    assert node.GetSegmentation().ContainsRepresentation("Closed surface")
    segmentId = node.GetSegmentation().GetNthSegmentID(0)
    polydata = node.GetSegmentation().GetSegment(segmentId).GetRepresentation("Closed surface")
    assert polydata is not None and polydata.GetNumberOfPoints() > 0


def test_the_child_is_this_slicers_launcher(module, monkeypatch, tmp_path):
    # Item 2: the launcher of this Slicer (bin/PythonSlicer), not another one on the PATH.
    import types

    import slicer

    home, other = tmp_path / "Slicer 5.8.1 äö", tmp_path / "other"
    for folder in (home / "bin", other):
        folder.mkdir(parents=True)
        launcher = folder / "PythonSlicer"
        launcher.write_text("#!/bin/sh\n")
        launcher.chmod(0o755)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(slicerHome=str(home)), raising=False)
    monkeypatch.setenv("PATH", str(other))
    # The fixture replaced the method with this Python; the module's own is what is checked here.
    executable = module.LUnetSegmentationLogic.__dict__.get("_original_pythonSlicerExecutable")
    assert executable() == str(home / "bin" / "PythonSlicer")


# --- issue 23 item 4: no PyTorch needed on a CPU


@pytest.fixture
def nothing_installed(monkeypatch, module):
    """Neither torch nor onnxruntime installed; pip_install and the dialogs recorded."""
    import types

    import slicer

    from LUnetSegmentationLib.slicer_adapter import dependencies

    installed, calls = {}, []
    monkeypatch.setattr(dependencies, "installed_version", lambda name: installed.get(name))

    def pip_install(requirement):
        calls.append(("pip_install", requirement))
        installed[requirement.split("=")[0]] = requirement.split("==")[-1]

    answer = {"ok": True}

    def confirm(text, **kwargs):
        calls.append(("confirm", text))
        return answer["ok"]

    monkeypatch.setattr(slicer, "util", types.SimpleNamespace(pip_install=pip_install, confirmOkCancelDisplay=confirm), raising=False)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(testingEnabled=lambda: False), raising=False)

    class PyTorchUtilsLogic:
        def installTorch(self, **kwargs):
            calls.append(("installTorch", kwargs))
            return None

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    return types.SimpleNamespace(calls=calls, answer=answer, installed=installed, dependencies=dependencies)


def test_without_a_gpu_onnx_runtime_is_offered_instead_of_pytorch(module, nothing_installed, monkeypatch):
    monkeypatch.setattr(nothing_installed.dependencies, "cuda_gpu_present", lambda: False)
    assert module.LUnetSegmentationLogic.ensureDependencies(askConfirmation=True, device="auto") is True
    kinds = [kind for kind, _ in nothing_installed.calls]
    assert kinds == ["confirm", "pip_install"], nothing_installed.calls  # asked first, then installed
    assert "ONNX Runtime" in nothing_installed.calls[0][1]
    assert nothing_installed.calls[1][1] == nothing_installed.dependencies.onnxruntime_requirement()


def test_declining_onnx_runtime_installs_nothing(module, nothing_installed, monkeypatch):
    monkeypatch.setattr(nothing_installed.dependencies, "cuda_gpu_present", lambda: False)
    nothing_installed.answer["ok"] = False
    assert module.LUnetSegmentationLogic.ensureDependencies(askConfirmation=True) is False
    assert [kind for kind, _ in nothing_installed.calls] == ["confirm"]


def test_with_a_gpu_pytorch_comes_from_the_pytorch_extension(module, nothing_installed, monkeypatch):
    monkeypatch.setattr(nothing_installed.dependencies, "cuda_gpu_present", lambda: True)
    assert module.LUnetSegmentationLogic.ensureDependencies(askConfirmation=True) is False  # the stand-in declines
    assert [kind for kind, _ in nothing_installed.calls] == ["installTorch"]
    nothing_installed.calls.clear()
    # The CPU chosen on a GPU machine: the small engine is enough.
    module.LUnetSegmentationLogic.ensureDependencies(askConfirmation=True, device="cpu")
    assert [kind for kind, _ in nothing_installed.calls] == ["confirm", "pip_install"]


def test_onnx_runtime_release_fits_slicers_python():
    from LUnetSegmentationLib.slicer_adapter.dependencies import onnxruntime_requirement

    assert onnxruntime_requirement((3, 9)) == "onnxruntime==1.19.2"  # Slicer 5.8: the last release for 3.9
    assert onnxruntime_requirement((3, 12)).startswith("onnxruntime==")
