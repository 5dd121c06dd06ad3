"""Issue 23's scenarios, run inside one emulated Slicer session (one process per tag):

    python -m slicer_emulation.scenarios --tag v5.8.1 --root DIR --head HEAD.nii.gz --out results.json [--only a,b]

Each scenario drives the module as a user (and Slicer) does: select the module, set the
parameters, click Apply, let the event loop run the panel's QTimer, cancel, close the scene,
switch modules, delete nodes. Results are written as JSON {scenario: {"ok", "detail", "seconds"}}
so the pytest side reports each one. The event loop is run here, by the test, exactly as the
module's own self-test does (processEvents in a loop); the panel itself never waits.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

TIMEOUT_S = 300


class ScenarioFailed(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise ScenarioFailed(message)


class Session:
    def __init__(self, tag: str, root: Path, head: Path, hide: str = ""):
        from . import application, hiding, installation

        self.tag, self.root, self.head, self.hide = tag, Path(root), Path(head), hide
        if hide:
            # Packages "not installed" here and in every Python started from here, until the
            # module installs them through slicer.util.pip_install (slicer_emulation/hiding.py).
            os.environ["LUNET_EMULATION_HIDE"] = hide
            os.environ["LUNET_EMULATION_INSTALLED"] = str(self.root / "installed")
            site = hiding.write_sitecustomize(self.root / "site")
            os.environ["PYTHONPATH"] = str(site) + os.pathsep + os.environ.get("PYTHONPATH", "")
            hiding.install()
        self.home, self.module_folder = installation.make_installation(self.root, tag)
        os.environ.update(installation.session_environment(tag, self.home))
        here = Path(__file__).resolve().parent
        # The module, the PyTorch extension (its PyTorchUtils module, vendored) and a second
        # module to switch to.
        self.app = application.start(tag, self.home, [self.module_folder, here / "vendor" / "SlicerPyTorch", here / "modules"],
                                     settings_dir=self.root / "settings")
        self.application = application
        import slicer

        self.slicer = slicer

    # --- helpers ---------------------------------------------------------------------------

    def widget(self):
        self.slicer.util.selectModule("LUnetSegmentation")
        return self.slicer.modules.lunetsegmentation.widgetRepresentation().self()

    def load_head(self, name="head"):
        return self.slicer.util.loadVolume(str(self.head), {"name": name})

    def prepare(self, volume, device="cpu"):
        widget = self.widget()
        module = sys.modules["LUnetSegmentation"]
        widget._parameterNode.inputVolume = volume
        widget._parameterNode.device = module.DeviceChoice.CPU if device == "cpu" else module.DeviceChoice.AUTO
        return widget

    def wait(self, widget, until=lambda w: not w.running, timeout=TIMEOUT_S):
        deadline = time.time() + timeout
        while not until(widget) and time.time() < deadline:
            self.app.processEvents()
            time.sleep(0.02)
        check(until(widget), f"not reached within {timeout} s; status: {widget.ui.statusLabel.text!r}")

    def wait_for_progress(self, widget, fraction=0.06):
        """Until the child reports work beyond reading (so the run is really in the child)."""
        self.wait(widget, lambda w: not w.running or w.ui.progressBar.value >= int(100 * fraction))
        check(widget.running, f"the run ended before it could be interrupted: {widget.ui.statusLabel.text!r}")

    def worker(self, widget):
        runner = widget.logic._runner
        return runner.worker if runner is not None else None

    def child_pids(self, widget):
        """(launcher pid, real Python pid) of the running worker."""
        worker = self.worker(widget)
        check(worker is not None, "no worker")
        deadline = time.time() + 60
        while worker.ready is None and time.time() < deadline:
            worker.read_events()
            time.sleep(0.05)
        check(worker.ready is not None, "the worker never said it was ready")
        return worker.process.pid, int(worker.ready["pid"])

    def segmentation_count(self):
        return self.slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")

    def reset(self):
        self.application.close_scene()
        self.app.processEvents()


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie (not yet reaped by its parent) is gone too
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


# --- scenarios ---------------------------------------------------------------------------------


def scenario_module_setup(s: Session):
    widget = s.widget()
    check(s.slicer.modules.lunetsegmentation.widgetRepresentation().isEntered, "the module is entered")
    check(widget.ui.modelComboBox.count >= 2, "both shipped models are listed")
    check(not widget.ui.applyButton.enabled, "Apply is disabled without an input volume")
    for name in ("inputVolumeSelector", "roiSelector", "outputSegmentationSelector", "volumeTableView"):
        check(getattr(widget.ui, name).mrmlScene() is s.slicer.mrmlScene, f"{name} has the scene (the .ui's connections)")
    volume = s.load_head()
    s.app.processEvents()
    check(widget._parameterNode.inputVolume is volume, "the new volume is selected as input")
    check(widget.ui.applyButton.enabled, "Apply is enabled once there is an input")
    check("hippocampus" in widget.ui.modelDescriptionLabel.text.lower(), widget.ui.modelDescriptionLabel.text)
    return f"module folder {s.module_folder}"


def scenario_engine_installed_on_first_use(s: Session):
    """With PyTorch absent and no CUDA GPU, the first Apply installed ONNX Runtime (asked first;
    testing mode answers yes), never PyTorch, and the run used it."""
    if "torch" not in s.hide:
        return "PyTorch present: nothing to install"
    installed = s.root / "installed"
    widget = s.prepare(s.load_head())
    widget.onApplyButton()
    s.wait(widget)
    check(widget.ui.statusLabel.text.startswith("Done"), widget.ui.statusLabel.text)
    check((installed / "onnxruntime").exists(), "ONNX Runtime was installed through slicer.util.pip_install")
    check(not (installed / "torch").exists(), "PyTorch was not installed")
    requirement = (installed / "onnxruntime").read_text(encoding="utf-8")
    check(requirement.startswith("onnxruntime=="), requirement)
    return f"installed {requirement}"


def scenario_apply_to_completion(s: Session):
    import numpy as np

    from LUnetSegmentationLib.slicer_adapter import mrml

    volume = s.load_head()
    widget = s.prepare(volume)
    started = time.time()
    widget.onApplyButton()
    check(widget.running and widget.ui.cancelButton.visible, f"the run starts and Cancel shows: {widget.ui.statusLabel.text!r}")
    s.wait(widget)
    seconds = time.time() - started
    node = widget._parameterNode.outputSegmentation
    check(node is not None, f"the output selector shows the result: {widget.ui.statusLabel.text!r}")
    text = widget.ui.statusLabel.text
    check(text.startswith("Done"), text)
    segmentation = node.GetSegmentation()
    names = sorted(segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments()))
    check(names == ["Left hippocampus", "Right hippocampus"], f"segments {names}")
    for name in names:
        check(text.count(name) == 1, f"{name} once on the status line: {text!r}")
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
        check(segment.HasTag(segment.GetTerminologyEntryTagName()), "terminology")
        check(max(segment.GetColor()) > 0, "colour")
    check(segmentation.ContainsRepresentation("Closed surface"), "closed surfaces for the 3D view")
    check(widget.ui.show3DButton.checked and widget.ui.show3DButton.segmentationNode() is node, "Show 3D is on for the result")
    table = widget.ui.volumeTableView.mrmlTableNode()
    check(table is not None and table.GetNumberOfRows() == 2, "the volume table is shown")
    check("Model: hippocampus-whole-lunet" in widget.ui.provenanceLabel.text, widget.ui.provenanceLabel.text)
    # Geometry: the child's segments equal an in-process run of the same code on the same node.
    from LUnetSegmentationLib import segment

    console = segment(volume, device="cpu")
    for name in names:
        child_mask = mrml.segmentArray(node, segmentation.GetSegmentIdBySegmentName(name), volume)
        console_mask = mrml.segmentArray(console, console.GetSegmentation().GetSegmentIdBySegmentName(name), volume)
        check(np.array_equal(child_mask, console_mask), f"{name}: child and in-process voxels differ")
    engine = "ONNX Runtime (PyTorch absent)" if "torch" in s.hide else "PyTorch" if "onnxruntime" in s.hide else "ONNX Runtime or PyTorch"
    return f"[{engine}] Apply to segments {seconds:.1f} s (child, first click: install check, worker start, model load); {text}"


def scenario_quality_warning_on_status_line(s: Session):
    """A scan with 2.5 mm slices through the anterior/posterior model (validated up to 2 mm): the
    result comes with the child's warning on the status line, not only on the node."""
    import SimpleITK as sitk

    path = s.root / "thick_slices.nii.gz"
    if not path.exists():
        image = sitk.ReadImage(str(s.head))
        spacing = (image.GetSpacing()[0], image.GetSpacing()[1], 2.5)
        size = [int(round(n * old / new)) for n, old, new in zip(image.GetSize(), image.GetSpacing(), spacing)]
        smooth = sitk.SmoothingRecursiveGaussian(image, [0.01, 0.01, 2.5 / 2.35])
        sitk.WriteImage(sitk.Resample(smooth, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing,
                                      image.GetDirection()), str(path))
    widget = s.prepare(s.slicer.util.loadVolume(str(path), {"name": "thick"}))
    widget._parameterNode.modelId = "hippocampus-lunet"
    widget.onApplyButton()
    s.wait(widget)
    text = widget.ui.statusLabel.text
    check(text.startswith("Done"), text)
    check("coarser than this model was validated for" in text, f"the warning is on the status line: {text!r}")
    check(text.count("Left hippocampus anterior") == 1 and "Left hippocampus " in text, text)
    return text


def scenario_second_apply_reuses_worker(s: Session):
    volume = s.load_head()
    widget = s.prepare(volume)
    widget.onApplyButton()
    s.wait(widget)
    first = widget._parameterNode.outputSegmentation
    pid = s.worker(widget).process.pid
    started = time.time()
    widget.onApplyButton()
    s.wait(widget)
    seconds = time.time() - started
    check(s.worker(widget).process.pid == pid, "the same worker serves the second click")
    check(widget._parameterNode.outputSegmentation is first and s.segmentation_count() == 1, "the result is updated, not duplicated")
    return f"second click {seconds:.1f} s"


def scenario_double_apply_refused(s: Session):
    widget = s.prepare(s.load_head())
    widget.onApplyButton()
    run = widget.logic.activeRun
    widget.onApplyButton()
    check(widget.logic.activeRun is run, "a second Apply while running is refused")
    check(not widget.ui.applyButton.enabled, "Apply is disabled while running")
    widget.onCancelButton()
    return ""


def scenario_cancel_leaves_no_process(s: Session):
    widget = s.prepare(s.load_head())
    before = s.segmentation_count()
    widget.onApplyButton()
    launcher, child = s.child_pids(widget)
    s.wait_for_progress(widget)
    widget.onCancelButton()
    check(not widget.running and "Cancelled" in widget.ui.statusLabel.text, widget.ui.statusLabel.text)
    check(gone(launcher) and gone(child), "launcher and its Python are both gone")
    check(s.segmentation_count() == before, "nothing was added")
    return ""


def scenario_child_crash_then_recovery(s: Session):
    widget = s.prepare(s.load_head())
    widget.onApplyButton()
    _, child = s.child_pids(widget)
    s.wait_for_progress(widget)
    os.kill(child, signal.SIGKILL)  # the real Python dies (out of memory, a native crash)
    s.wait(widget)
    text = widget.ui.statusLabel.text
    check("stopped unexpectedly" in text, text)
    check(text.lower().count("nothing was changed") == 1, f"said once: {text!r}")
    widget.onApplyButton()
    s.wait(widget)
    check(widget.ui.statusLabel.text.startswith("Done"), f"the next Apply recovers: {widget.ui.statusLabel.text!r}")
    return ""


def scenario_scene_closed_mid_run(s: Session):
    widget = s.prepare(s.load_head())
    widget.onApplyButton()
    launcher, child = s.child_pids(widget)
    s.wait_for_progress(widget)  # the status line shows progress when the scene closes
    s.reset()
    check(not widget.running, "the run stops")
    check(gone(launcher) and gone(child), "no process is left")
    text = widget.ui.statusLabel.text
    check("%" not in text and "Reading" not in text, f"no stale progress text: {text!r}")
    check(s.segmentation_count() == 0, "nothing was written into the new scene")
    return text


def scenario_module_switched_mid_run(s: Session):
    widget = s.prepare(s.load_head())
    widget.onApplyButton()
    s.slicer.util.selectModule("EmulationWelcome")  # the user goes elsewhere while it runs
    s.wait(widget)
    output = widget.logic.getParameterNode().outputSegmentation
    check(output is not None, "the finished run set the output even from another module")
    widget = s.widget()  # back
    widget.onApplyButton()
    s.wait(widget)
    check(s.segmentation_count() == 1, "the next Apply updates that segmentation instead of making '_1'")
    return ""


def scenario_input_deleted_mid_run(s: Session):
    volume = s.load_head()
    widget = s.prepare(volume)
    widget.onApplyButton()
    launcher, child = s.child_pids(widget)
    run = widget.logic.activeRun
    s.wait_for_progress(widget)
    s.slicer.mrmlScene.RemoveNode(volume)
    s.wait(widget, timeout=10)
    text = widget.ui.statusLabel.text
    check("removed" in text, text)
    check(gone(child) and gone(launcher), "the child stops at once rather than computing to the end")
    check(not run.folder.exists(), "the run's temporary folder is removed")
    return text


def scenario_stray_native_stdout(s: Session):
    # A native library in the child writes to stdout without newlines, all through the run and
    # once more right before the result is reported (where a glued line used to be lost).
    noise = s.root / "noise"
    noise.mkdir(exist_ok=True)
    from .hiding import SITECUSTOMIZE

    # Only the first sitecustomize on the path runs: keep the package hiding of this session.
    hide = SITECUSTOMIZE.format(folder=str(Path(__file__).resolve().parents[1]))
    (noise / "sitecustomize.py").write_text(hide + NATIVE_NOISE, encoding="utf-8")
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(noise) + (os.pathsep + previous if previous else "")
    try:
        widget = s.prepare(s.load_head())
        widget.logic.shutdown()  # a fresh worker, started with the noise
        widget.onApplyButton()
        s.wait(widget, timeout=120)
        check(widget.ui.statusLabel.text.startswith("Done"), widget.ui.statusLabel.text)
    finally:
        os.environ.pop("PYTHONPATH") if previous is None else os.environ.__setitem__("PYTHONPATH", previous)
        widget.logic.shutdown()
    return ""


NATIVE_NOISE = """
import importlib.abc, importlib.machinery, os, sys, threading, time


def _noise():
    while True:
        os.write(1, b"native progress 42%")
        time.sleep(0.05)


threading.Thread(target=_noise, daemon=True).start()


class _AtTheEnd(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "LUnetSegmentationLib.slicer_adapter.worker":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            run = module.run_request

            def run_then_print(request, emit):
                fields = run(request, emit)
                os.write(1, b"native: inference 100%")
                return fields

            module.run_request = run_then_print

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AtTheEnd())
"""


def scenario_selftest(s: Session):
    # As ctest runs it (slicer_add_python_unittest): --python-code "import slicer.testing;
    # slicer.testing.runUnitTest([...], 'LUnetSegmentation')"; it raises when a test fails.
    import importlib

    os.environ["LUNET_SELFTEST_HEAD"] = str(s.head)
    testing = importlib.import_module("slicer.testing")
    testing.runUnitTest([str(s.module_folder)], "LUnetSegmentation")
    return "slicer.testing.runUnitTest passed"


def scenario_readme_console(s: Session):
    """The README's console examples, as written there."""
    import slicer

    volume = s.load_head("MRHead")
    namespace = {"slicer": slicer, "getNode": slicer.util.getNode}
    out = s.root / "console-out"
    files = [str(s.head)]
    mgz = s.head.parents[1] / "fs_norm" / "norm.mgz"  # FreeSurfer's format: needs nibabel, which Slicer lacks
    if mgz.exists():
        files.append(str(mgz))
    code = s.root / "readme_console.py"
    code.write_text(README_CONSOLE.format(out=str(out), files=files), encoding="utf-8")
    exec(compile(code.read_text(encoding="utf-8"), str(code), "exec"), namespace)
    check(namespace["segmentation"].GetSegmentation().GetNumberOfSegments() == 2, "segment(volume)")
    check(len(namespace["rows"]) == len(files) and all(row["status"] == "ok" for row in namespace["rows"]),
          f"segmentFiles rows: {namespace['rows']}")
    if "nibabel" in s.hide and len(files) > 1:
        check((s.root / "installed" / "nibabel").exists(), "nibabel was installed for the .mgz file")
    check(volume.GetScene() is not None, "input kept")
    return f"{len(files)} files"


def scenario_reload_and_test(s: Session):
    """The developer's "Reload and Test": the module file and its core are reloaded, a new panel
    is built, and the self-test runs (its quick tests) (slicer.util.tryWithErrorDisplay reports a failure as an
    error message, which is what is checked here)."""
    import logging

    # The network tests already ran through ctest's path (scenario "selftest"); here the reload
    # itself and the quick tests, to keep CI time down.
    os.environ["LUNET_SELFTEST_INFERENCE"] = "0"
    widget = s.widget()
    core = sys.modules["LUnetSegmentationLib"]
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect(level=logging.ERROR)
    logging.getLogger().addHandler(handler)
    try:
        widget.onReloadAndTest()
    finally:
        logging.getLogger().removeHandler(handler)
        del os.environ["LUNET_SELFTEST_INFERENCE"]
    failures = [m for m in messages if "Reload and Test failed" in m]
    check(not failures, "\n".join(failures)[-3000:])
    check(s.widget() is not widget, "a new panel was built")
    check(sys.modules["LUnetSegmentationLib"] is not core, "the core was reloaded too")
    return ""


def scenario_application_exit_mid_run(s: Session):
    """Slicer closing while a run goes: every module's widget gets cleanup() (moduleAboutToBeUnloaded),
    and no process is left behind. Runs last: the panels are gone afterwards."""
    widget = s.prepare(s.load_head())
    widget.onApplyButton()
    launcher, child = s.child_pids(widget)
    s.application.unload_modules(s.app)
    check(gone(launcher) and gone(child), "launcher and its Python are gone when Slicer closes")
    return ""


# The console block of the README (issue 23 item 7), with this machine's paths filled in.
README_CONSOLE = '''
import LUnetSegmentation
logic = LUnetSegmentation.LUnetSegmentationLogic()     # the first time: asks to install ONNX Runtime (no GPU) or PyTorch
volume = slicer.util.getNode("MRHead")                 # any scalar T1 volume
segmentation = logic.segment(volume)                   # whole head: both hippocampi
segmentation = logic.segment(volume, segmentation)     # re-run: replaces only the segments it wrote
rows = logic.segmentFiles({files!r}, {out!r}, labelmap=True)   # .mgz: asks to install nibabel
'''

SCENARIOS = {name[len("scenario_"):]: function for name, function in globals().items() if name.startswith("scenario_")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--head", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", default="")
    parser.add_argument("--hide", default="", help="packages absent in this Slicer until installed, e.g. torch,onnxruntime")
    args = parser.parse_args(argv)
    wanted = [name for name in args.only.split(",") if name] or list(SCENARIOS)
    results = {}
    session = Session(args.tag, Path(args.root), Path(args.head), args.hide)
    for name in wanted:
        started = time.time()
        try:
            detail = SCENARIOS[name](session) or ""
            results[name] = {"ok": True, "detail": detail}
        except BaseException as error:  # noqa: BLE001 - every failure is reported, the next scenario runs
            results[name] = {"ok": False, "detail": f"{type(error).__name__}: {error}\n{traceback.format_exc()}"}
        results[name]["seconds"] = round(time.time() - started, 2)
        print(f"[{args.tag}] {name}: {'ok' if results[name]['ok'] else 'FAILED'} ({results[name]['seconds']} s)", flush=True)
        try:
            session.reset()
        except Exception:  # noqa: BLE001
            pass
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    session.application.unload_modules(session.app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
