"""LUnet Segmentation: one-click hippocampus segmentation (anterior/posterior) of T1 MRI in 3D Slicer.

Only Slicer's own packages are imported at file scope: Slicer imports every scripted module at
start-up, and torch (or anything the PyTorch extension has yet to install) must not slow that down
or break it. The Qt-free core, `LUnetSegmentationLib`, is imported inside the functions that need it.
"""
import enum
import logging
import threading
import time
import traceback

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

HOMEPAGE = "https://github.com/lunet-segmentation/SlicerLUnetSegmentation"

#
# Module
#


class LUnetSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LUnet Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        # Markups and Segmentations provide the ROI and segmentation node classes imported above.
        # PyTorchUtils (PyTorch extension) is needed only when segmenting, and checked then with a
        # clear message, so the module still loads (and shows its help) where it is missing.
        self.parent.dependencies = ["Markups", "Segmentations"]
        self.parent.contributors = ["LUnetSegmentation contributors (" + HOMEPAGE + ")"]
        self.parent.helpText = _(
            "Segments the hippocampus of a T1-weighted MRI into editable segments, anterior (head) "
            "and posterior (body and tail), with a compact Lean Unet (LUnet) network.<br><br>"
            "1. Choose the input T1 volume. On a whole-head or whole-brain scan both hippocampi are "
            "found automatically and written as four segments (left/right, anterior/posterior); a crop "
            "around one hippocampus is segmented directly.<br>"
            "2. Optionally place a region of interest (ROI) box: it overrides the automatic "
            "localization and restricts the work to the box.<br>"
            "3. Choose the device (auto uses the GPU when PyTorch sees one) and the output "
            "segmentation (a new one by default; in an existing one only the segments this module "
            "wrote before are replaced, every other segment is kept).<br>"
            "4. Click Apply. PyTorch is installed through the PyTorch extension on first use, after asking.<br><br>"
            "The result is a research tool, not for clinical use. "
            'See the <a href="{homepage}">documentation</a> for console and batch use.'
        ).format(homepage=HOMEPAGE)
        self.parent.acknowledgementText = _(
            "The network follows Hassler et al., <i>Lean Unet: A Compact Model for Image Segmentation</i>, "
            "arXiv:2512.03834. The shipped weights were trained on the Medical Segmentation Decathlon "
            "Task04 Hippocampus data (Vanderbilt University Medical Center, CC-BY-SA 4.0): "
            "Antonelli et al., <i>The Medical Segmentation Decathlon</i>, Nature Communications 13, 4128 (2022); "
            "Simpson et al., arXiv:1902.09063 (2019). The weights are distributed under CC-BY-SA 4.0."
        )


#
# Parameter node
#


class DeviceChoice(enum.Enum):
    """Where the network runs; the values are what the core's `device` argument takes."""

    AUTO = "auto"
    GPU = "cuda"
    CPU = "cpu"

    def label(self):
        # The parameter node wrapper fills the device combo box with these labels.
        return {
            DeviceChoice.AUTO: _("Automatic (GPU if available)"),
            DeviceChoice.GPU: _("GPU (CUDA)"),
            DeviceChoice.CPU: _("CPU"),
        }[self]


@parameterNodeWrapper
class LUnetSegmentationParameterNode:
    """The panel's choices, saved with the scene.

    inputVolume - the T1 MRI to segment.
    modelId - id of the model card (empty: the default model).
    roi - optional markups ROI box that restricts the work (whole-head scans).
    device - auto, GPU or CPU.
    outputSegmentation - where segments go (None: a new segmentation node).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""
    roi: vtkMRMLMarkupsROINode
    device: DeviceChoice = DeviceChoice.AUTO
    outputSegmentation: vtkMRMLSegmentationNode


#
# Background run
#


class BackgroundRun:
    """Runs `job.compute` in a Python thread; the GUI polls it from a QTimer on the main thread.

    The thread never touches MRML or Qt: it only writes plain attributes that the main thread reads
    (a float, a bool, an exception). torch releases the GIL while it computes, and the poller gives
    the worker the GIL by waiting on it briefly, so both the GUI and the work keep moving.
    """

    def __init__(self, job):
        self.job = job
        self.fraction = 0.0
        self.cancelRequested = False
        self.error = None
        self.errorDetails = ""
        self.started = time.time()
        self._thread = threading.Thread(target=self._run, name="LUnetSegmentation", daemon=True)

    def start(self):
        self._thread.start()

    def _progress(self, fraction):
        self.fraction = min(max(float(fraction), 0.0), 1.0)

    def _cancelled(self):
        return self.cancelRequested

    def _run(self):
        try:
            self.job.compute(progress=self._progress, cancelled=self._cancelled)
        except BaseException as error:  # reported to the user on the main thread
            self.error = error
            self.errorDetails = traceback.format_exc()

    def cancel(self):
        self.cancelRequested = True

    def finished(self, wait=0.0):
        """True once the worker has stopped; waits up to `wait` seconds (releasing the GIL meanwhile)."""
        self._thread.join(timeout=wait)
        return not self._thread.is_alive()


#
# Widget
#


class LUnetSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    POLL_INTERVAL_MS = 100
    POLL_WAIT_S = 0.05  # the worker holds the GIL for this long per poll when it needs it
    # Parameter -> widget bound to it (the same pairs as the SlicerParameterName properties in the
    # .ui file; Testing/test_ui.py checks that they agree).
    GUI_PARAMETERS = {
        "inputVolume": "inputVolumeSelector",
        "roi": "roiSelector",
        "device": "deviceComboBox",
        "outputSegmentation": "outputSegmentationSelector",
    }

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._runInputs = None
        self._discardRun = False
        self._pollTimer = None
        self._modelCards = {}

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LUnetSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LUnetSegmentationLogic()

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(self.POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._pollRun)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)

        self._populateModels()
        self._showRunning(False)
        self.initializeParameterNode()

    def _populateModels(self):
        """Fill the model list from the shipped model cards (reads JSON only: no torch needed)."""
        self.ui.modelComboBox.clear()
        try:
            cards = self.logic.availableModels()
        except Exception as error:
            cards = []
            logging.error(f"LUnetSegmentation: cannot read the model cards: {error}")
        for card in cards:
            self.ui.modelComboBox.addItem(card.data.get("name", card.model_id), card.model_id)
        if not cards:
            self._setStatus(_("No model found: the extension's Resources/Models folder is missing or damaged. Reinstall the extension."), error=True)
        self._modelCards = {card.model_id: card for card in cards}

    def cleanup(self):
        """Called when the application closes and the module widget is destroyed."""
        if self._run is not None:
            self._discardRun = True
            self._run.cancel()
            self._run.finished(wait=5.0)
        if self._pollTimer is not None:
            self._pollTimer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # A running segmentation goes on (the timer keeps polling); only the GUI binding is dropped.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event):
        # The nodes of a running job are about to disappear: stop it and drop its result.
        if self._run is not None:
            self._discardRun = True
            self._run.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode
        if not self._parameterNode.modelId and self.ui.modelComboBox.count:
            self._parameterNode.modelId = self.ui.modelComboBox.itemData(0)

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # connectParametersToGui rather than connectGui: on Slicer 5.8 connectGui returns no
            # tag, so disconnectGui could not undo it and connectors piled up on every enter.
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(
                {parameter: getattr(self.ui, widgetName) for parameter, widgetName in self.GUI_PARAMETERS.items()}
            )
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None):
        # The model combo holds ids in its item data, so it is synchronised here rather than bound.
        if self._parameterNode:
            self._forgetOutputOfOtherInput()
            index = self.ui.modelComboBox.findData(self._parameterNode.modelId)
            if index >= 0 and index != self.ui.modelComboBox.currentIndex:
                self.ui.modelComboBox.currentIndex = index
        self._updateModelDescription()
        self._updateApplyButton()

    def _forgetOutputOfOtherInput(self):
        """After a run the output combo shows its result; when the user then picks another input
        volume, go back to "Create new segmentation" rather than writing into the segmentation
        made for the previous volume."""
        inputVolume = self._parameterNode.inputVolume
        output = self._parameterNode.outputSegmentation
        if inputVolume is None or output is None:
            return
        madeFor = output.GetAttribute("LUnetSegmentation.InputVolumeID")
        if madeFor and madeFor != inputVolume.GetID():
            self._parameterNode.outputSegmentation = None

    def onModelChanged(self, index):
        if self._parameterNode and index >= 0:
            modelId = self.ui.modelComboBox.itemData(index)
            if modelId != self._parameterNode.modelId:
                self._parameterNode.modelId = modelId
        self._updateModelDescription()

    def _updateModelDescription(self):
        index = self.ui.modelComboBox.currentIndex
        card = self._modelCards.get(self.ui.modelComboBox.itemData(index)) if index >= 0 else None
        if card is None:
            self.ui.modelDescriptionLabel.text = ""
            return
        data = card.data
        lines = [data.get("description", "")]
        if data.get("structures"):
            lines.append(_("Structures: {structures}").format(structures=", ".join(data["structures"])))
        if data.get("modality"):
            lines.append(_("Modality: {modality}").format(modality=data["modality"]))
        if data.get("input"):
            lines.append(_("Input: {input}").format(input=data["input"]))
        if data.get("license"):
            lines.append(_("Weights licence: {license}").format(license=data["license"]))
        self.ui.modelDescriptionLabel.text = "\n".join(line for line in lines if line)

    def _updateApplyButton(self):
        running = self._run is not None
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = hasInput and not running and self.ui.modelComboBox.count > 0
        if running:
            self.ui.applyButton.toolTip = _("A segmentation is running; wait for it or cancel it.")
        elif not hasInput:
            self.ui.applyButton.toolTip = _("Select an input volume.")
        else:
            self.ui.applyButton.toolTip = _("Segment the hippocampus in the input volume.")

    def _showRunning(self, running):
        self.ui.progressBar.visible = running
        self.ui.cancelButton.visible = running
        self.ui.cancelButton.enabled = running
        if running:
            self.ui.progressBar.value = 0
        self._updateApplyButton()

    def _setStatus(self, text, error=False):
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c0392b;" if error else "")

    def onApplyButton(self):
        if self._run is not None:
            return
        parameters = self._parameterNode
        self._setStatus(_("Checking PyTorch..."))
        slicer.app.processEvents()
        try:
            if not self.logic.ensureDependencies(askConfirmation=True):
                self._setStatus(_("PyTorch is needed to segment; it was not installed. Click Apply to be asked again."), error=True)
                return
            job = self.logic.prepare(
                parameters.inputVolume,
                segmentationNode=parameters.outputSegmentation,
                model=parameters.modelId or None,
                device=parameters.device.value,
                roiNode=parameters.roi,
            )
        except Exception as error:
            # Bad input or a broken install: nothing has been changed in the scene yet.
            logging.error(traceback.format_exc())
            self._setStatus(_("Not started: {error}").format(error=error), error=True)
            slicer.util.errorDisplay(str(error), windowTitle=_("LUnet Segmentation"))
            return
        self._discardRun = False
        self._run = BackgroundRun(job)
        self._run.start()
        self._showRunning(True)
        self._setStatus(_("Segmenting..."))
        self._pollTimer.start()

    def onCancelButton(self):
        if self._run is not None:
            self._run.cancel()
            self.ui.cancelButton.enabled = False
            self._setStatus(_("Cancelling..."))

    def _pollRun(self):
        run = self._run
        if run is None:
            self._pollTimer.stop()
            return
        done = run.finished(wait=self.POLL_WAIT_S)
        self.ui.progressBar.value = int(round(100 * run.fraction))
        if not done:
            if not run.cancelRequested:
                elapsed = time.time() - run.started
                self._setStatus(_("Segmenting... {percent}% ({seconds:.0f} s)").format(percent=int(100 * run.fraction), seconds=elapsed))
            return
        self._pollTimer.stop()
        self._run = None
        try:
            self._finishRun(run)
        finally:
            self._showRunning(False)

    def _finishRun(self, run):
        if self._discardRun:
            self._setStatus(_("Segmentation stopped because the scene was closed."))
            return
        if isinstance(run.error, InterruptedError) or run.cancelRequested:
            # Cancel counts even when the worker finished between the click and this poll.
            self._setStatus(_("Cancelled. Nothing was changed."))
            return
        if run.error is not None:
            logging.error(run.errorDetails)
            self._setStatus(_("Failed: {error}. Nothing was changed.").format(error=run.error), error=True)
            slicer.util.errorDisplay(
                _("Segmentation failed: {error}").format(error=run.error),
                windowTitle=_("LUnet Segmentation"),
                detailedText=run.errorDetails,
            )
            return
        try:
            segmentationNode = run.job.apply()
        except Exception as error:
            logging.error(traceback.format_exc())
            self._setStatus(_("Failed to write the segments: {error}").format(error=error), error=True)
            slicer.util.errorDisplay(str(error), windowTitle=_("LUnet Segmentation"), detailedText=traceback.format_exc())
            return
        if self._parameterNode:
            self._parameterNode.outputSegmentation = segmentationNode
        self._setStatus(self.logic.summary(run.job))
        self.logic.showResult(segmentationNode, run.job.volumeNode)  # the volume segmented, not today's selection


#
# Logic
#


class LUnetSegmentationLogic(ScriptedLoadableModuleLogic):
    """Delegates to `LUnetSegmentationLib.api`, so the GUI, the console and batch scripts share one
    code path. Usable without the widget:

        logic = slicer.util.getModuleLogic("LUnetSegmentation")  # or LUnetSegmentationLogic()
        segmentationNode = logic.segment(volumeNode, roiNode=roiNode)
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return LUnetSegmentationParameterNode(super().getParameterNode())

    @staticmethod
    def availableModels():
        from LUnetSegmentationLib.weights import available_models

        return available_models()

    @staticmethod
    def ensureDependencies(askConfirmation=True):
        """True when a torch that works here can be imported; installs it through the PyTorch
        extension after asking. Raises (with what to do) where none can work.

        Never pip-installs torch directly: the PyTorch extension picks the build (CUDA or CPU)
        that matches this computer. The requirement is >=2.3 (builds for NumPy 2, which Slicer
        ships from 5.10); Intel Macs get 2.2 under NumPy 1 and a clear refusal under NumPy 2
        (see LUnetSegmentationLib.dependencies).
        """
        from LUnetSegmentationLib.dependencies import check_torch_version, torch_requirement

        requirement = torch_requirement()
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise RuntimeError(
                _("LUnet Segmentation needs the PyTorch extension. Install 'PyTorch' from the Extensions Manager, restart Slicer, and try again.")
            ) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            torch = torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=requirement)
            if torch is None:
                return False
        import torch

        check_torch_version(torch.__version__, requirement)
        return True

    @staticmethod
    def ensureOptionalPackage(importName, pipName, reason):
        """Install a package that Slicer does not bundle (e.g. nibabel to read .mgz), after asking."""
        try:
            __import__(importName)
            return True
        except ModuleNotFoundError:
            pass
        if not slicer.util.confirmOkCancelDisplay(
            _("{reason} needs the Python package '{package}', which is not installed. Install it now?").format(reason=reason, package=pipName),
            windowTitle=_("LUnet Segmentation"),
        ):
            return False
        slicer.util.pip_install(pipName)
        return True

    def prepare(self, volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None):
        """Check the inputs and read the voxels (main thread); returns a job to `compute()` then `apply()`."""
        from LUnetSegmentationLib.api import prepareSegmentation

        return prepareSegmentation(volumeNode, segmentationNode=segmentationNode, model=model, device=device, roiNode=roiNode)

    def segment(self, volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None, progress=None):
        """Blocking segmentation (console, scripts, tests); returns the vtkMRMLSegmentationNode."""
        if not self.ensureDependencies(askConfirmation=not slicer.app.testingEnabled()):
            raise RuntimeError(_("PyTorch is not installed; segmentation needs it."))
        job = self.prepare(volumeNode, segmentationNode, model, device, roiNode)
        job.compute(progress=progress)
        return job.apply()

    def segmentFiles(self, inputPaths, outputDir, **kwargs):
        """Batch: segment files on disk; see `LUnetSegmentationLib.api.segmentFiles`."""
        if not self.ensureDependencies(askConfirmation=True):
            raise RuntimeError(_("PyTorch is not installed; segmentation needs it."))
        if any(str(path).lower().endswith(".mgz") for path in inputPaths):
            self.ensureOptionalPackage("nibabel", "nibabel", _("Reading FreeSurfer .mgz files"))
        from LUnetSegmentationLib.api import segmentFiles

        return segmentFiles(inputPaths, outputDir, **kwargs)

    @staticmethod
    def summary(job):
        """One status line: time, device, volume of each hippocampus (whole-head scans) and of each
        segment, and any notes (e.g. a GPU fallback)."""
        sides = {"left": _("Left hippocampus"), "right": _("Right hippocampus")}
        parts = [(sides.get(side, side), volume) for side, volume in getattr(job, "sideVolumes", {}).items()]
        parts += list(job.volumes.items())
        volumes = ", ".join(_("{name} {volume:.0f} mm\u00b3").format(name=name, volume=volume) for name, volume in parts)
        text = _("Done in {seconds:.1f} s on {device}: {volumes}.").format(seconds=job.seconds, device=job.device, volumes=volumes)
        if getattr(job, "notes", None):
            text += " " + " ".join(job.notes)
        return text

    @staticmethod
    def showResult(segmentationNode, volumeNode=None):
        """Show the new segments in the slice views, centred on the first non-empty one."""
        if volumeNode is not None:
            slicer.util.setSliceViewerLayers(background=volumeNode)
        segmentationNode.CreateDefaultDisplayNodes()
        segmentation = segmentationNode.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            try:
                center = segmentationNode.GetSegmentCenterRAS(segmentId)
            except Exception:
                center = None
            if center is not None:
                slicer.modules.markups.logic().JumpSlicesToLocation(center[0], center[1], center[2], True)
                break


#
# Test
#


class LUnetSegmentationTest(ScriptedLoadableModuleTest):
    """Runs real inference on CPU on a small synthetic volume (no download, under 30 s)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentSyntheticVolume()
        self.setUp()
        self.test_SegmentMRHead()
        self.setUp()
        self.test_ReplaceOnlyOwnSegments()
        self.setUp()
        self.test_CancelChangesNothing()
        self.setUp()
        self.test_BadInputIsRefused()
        self.setUp()
        self.test_WidgetRunsInBackground()

    def _syntheticVolume(self, name="LUnetSynthetic"):
        """A 40x48x40 volume (1 mm, oblique) of smooth blobs: not anatomy, but exercises the whole path."""
        import numpy as np

        shape = (40, 48, 40)  # KJI
        rng = np.random.default_rng(0)
        k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
        voxels = np.full(shape, 400.0, dtype=np.float32)
        for _index in range(6):
            center = rng.uniform(8, 32, 3)
            radius = rng.uniform(4, 9)
            inside = (k - center[0]) ** 2 + (j - center[1]) ** 2 + (i - center[2]) ** 2 < radius**2
            voxels[inside] = rng.uniform(150, 700)
        voxels += rng.normal(0, 10, shape).astype(np.float32)
        volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(volumeNode, voxels)
        volumeNode.SetOrigin(10.0, -20.0, 5.0)
        transform = vtk.vtkTransform()
        transform.RotateZ(20)
        transform.RotateX(10)
        directions = vtk.vtkMatrix4x4()
        transform.GetMatrix(directions)
        volumeNode.SetIJKToRASDirectionMatrix(directions)
        volumeNode.CreateDefaultDisplayNodes()
        return volumeNode

    def _modelCard(self):
        from LUnetSegmentationLib.weights import find_model

        return find_model(None)

    def test_SegmentSyntheticVolume(self):
        import numpy as np

        self.delayDisplay("Segmenting a synthetic volume on the CPU")
        volumeNode = self._syntheticVolume()
        logic = LUnetSegmentationLogic()
        started = time.time()
        self.assertTrue(logic.ensureDependencies(askConfirmation=False))
        job = logic.prepare(volumeNode, device="cpu")
        fractions = []
        job.compute(progress=fractions.append)
        segmentationNode = job.apply()
        seconds = time.time() - started
        self.assertLess(seconds, 30.0, "CPU inference on a small volume must take under 30 s")
        self.assertTrue(fractions and fractions[-1] >= 0.99, "progress must reach the end")

        card = self._modelCard()
        self.assertTrue(segmentationNode.IsA("vtkMRMLSegmentationNode"))
        segmentation = segmentationNode.GetSegmentation()
        # One segment per label the job reports; each named after a structure of the model card
        # (the whole-brain path may prefix a side, e.g. "Left hippocampus anterior").
        self.assertEqual(set(job.volumes), {segmentation.GetNthSegment(index).GetName() for index in range(segmentation.GetNumberOfSegments())})
        # Blobs are not anatomy, so the segments may be empty here: this checks the path (names,
        # colours, terminology, geometry, provenance); test_SegmentMRHead checks real anatomy.
        self.assertEqual(len(job.volumes), len(card.labels), "one segment per model label")
        voxelVolume = float(np.prod(volumeNode.GetSpacing()))
        for name, volume in job.volumes.items():
            labels = [label for label in card.labels if label["name"].lower() in name.lower()]
            self.assertTrue(labels, f"segment {name!r} is named after a structure of the model")
            segmentId = segmentation.GetSegmentIdBySegmentName(name)
            segment = segmentation.GetSegment(segmentId)
            np.testing.assert_allclose(segment.GetColor(), labels[0]["color"], atol=0.01)
            self.assertTrue(segment.HasTag(segment.GetTerminologyEntryTagName()), "each segment carries a terminology entry")
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
            self.assertEqual(mask.shape, slicer.util.arrayFromVolume(volumeNode).shape)
            self.assertAlmostEqual(volume, float(mask.sum()) * voxelVolume, delta=voxelVolume)
        attributes = {name: segmentationNode.GetAttribute(name) for name in segmentationNode.GetAttributeNames() or []}
        self.assertTrue(any(card.model_id in str(value) for value in attributes.values()), f"provenance names the model: {attributes}")
        self.assertIn(str(job.device), ("cpu",))
        self.delayDisplay(f"Segmented in {seconds:.1f} s: {LUnetSegmentationLogic.summary(job)}")

    def test_SegmentMRHead(self):
        """Real anatomy: Slicer's MRHead sample (a whole-head T1) gives both hippocampi."""
        self.delayDisplay("Segmenting the MRHead sample (whole head: both hippocampi found automatically)")
        try:
            import SampleData

            volumeNode = SampleData.SampleDataLogic().downloadSample("MRHead")
        except Exception as error:  # no network: say so rather than fail the other checks
            self.delayDisplay(f"MRHead sample not available ({error}); real-anatomy check skipped")
            return
        started = time.time()
        job = LUnetSegmentationLogic().prepare(volumeNode, device="cpu")
        job.compute()
        job.apply()
        self.assertEqual(set(job.sideVolumes), {"left", "right"}, "both hippocampi are found")
        for side, volume in job.sideVolumes.items():
            # An adult hippocampus is about 2.5 to 5 cm3; allow protocol and resolution effects.
            self.assertTrue(1500 < volume < 7000, f"{side} hippocampus volume {volume:.0f} mm3 is implausible")
        self.delayDisplay(f"MRHead segmented in {time.time() - started:.1f} s: {LUnetSegmentationLogic.summary(job)}")

    def test_ReplaceOnlyOwnSegments(self):
        self.delayDisplay("Re-running into an existing segmentation keeps the user's segments")
        volumeNode = self._syntheticVolume()
        logic = LUnetSegmentationLogic()
        segmentationNode = logic.segment(volumeNode, device="cpu")
        segmentation = segmentationNode.GetSegmentation()
        userSegmentId = segmentation.AddEmptySegment("", "My annotation")
        count = segmentation.GetNumberOfSegments()
        again = logic.segment(volumeNode, segmentationNode=segmentationNode, device="cpu")
        self.assertIs(again, segmentationNode)
        self.assertEqual(segmentation.GetNumberOfSegments(), count)
        self.assertIsNotNone(segmentation.GetSegment(userSegmentId))
        self.assertEqual(segmentation.GetSegment(userSegmentId).GetName(), "My annotation")

    def test_CancelChangesNothing(self):
        self.delayDisplay("Cancelling leaves the scene as it was")
        volumeNode = self._syntheticVolume()
        logic = LUnetSegmentationLogic()
        before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
        job = logic.prepare(volumeNode, device="cpu")
        with self.assertRaises(InterruptedError):
            job.compute(cancelled=lambda: True)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), before)

    def test_BadInputIsRefused(self):
        self.delayDisplay("Bad input gives a clear message")
        logic = LUnetSegmentationLogic()
        with self.assertRaises(ValueError):
            logic.prepare(None)
        flat = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Flat")
        import numpy as np

        slicer.util.updateVolumeFromArray(flat, np.zeros((20, 20, 20), dtype=np.float32))
        with self.assertRaises(ValueError) as raised:
            logic.prepare(flat, device="cpu")
        self.assertTrue(str(raised.exception), "the message says what is wrong")

    def test_WidgetRunsInBackground(self):
        """The panel's path: a worker thread, a polling timer, progress, and the status line."""
        self.delayDisplay("Running from the module panel")
        volumeNode = self._syntheticVolume()
        slicer.util.selectModule("LUnetSegmentation")
        widget = slicer.modules.lunetsegmentation.widgetRepresentation().self()
        widget._parameterNode.inputVolume = volumeNode
        widget._parameterNode.device = DeviceChoice.CPU
        widget._parameterNode.outputSegmentation = None
        widget.onApplyButton()
        self.assertIsNotNone(widget._run, widget.ui.statusLabel.text)
        deadline = time.time() + 60
        while widget._run is not None and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        self.assertIsNone(widget._run, "the background run must finish")
        output = widget._parameterNode.outputSegmentation
        self.assertIsNotNone(output, widget.ui.statusLabel.text)
        self.assertIn("mm", widget.ui.statusLabel.text)
        self.assertFalse(widget.ui.cancelButton.visible)
