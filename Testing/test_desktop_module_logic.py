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
