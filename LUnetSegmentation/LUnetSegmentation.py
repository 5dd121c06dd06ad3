"""LUnet Segmentation: one-click hippocampus segmentation (anterior/posterior) of T1 MRI in 3D Slicer.

Only Slicer's own packages are imported at file scope: Slicer imports every scripted module at
start-up, and torch (or anything the PyTorch extension has yet to install) must not slow that down
or break it. The Qt-free core, `LUnetSegmentationLib`, is imported inside the functions that need it.
"""
import enum
import logging
import os
import shutil
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
            "3. Choose the device (auto uses an NVIDIA GPU when there is one) and the output "
            "segmentation (a new one by default; in an existing one only the segments this module "
            "wrote before are replaced, every other segment is kept).<br>"
            "4. Click Apply. On first use the module asks to install what it runs on: ONNX Runtime (a small "
            "download) on a computer without an NVIDIA GPU, PyTorch (through the PyTorch extension) with one.<br><br>"
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
# Widget
#


class LUnetSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel. Apply writes the volume (and ROI box) for a child process that runs the network
    (`LUnetSegmentationLib.slicer_adapter.childprocess`), a QTimer reads the child's progress lines without ever
    waiting on it, Cancel kills the child, and the segments are written here on the main thread.
    The main thread never waits for the work: no join, no processEvents loop around it."""

    POLL_INTERVAL_MS = 100
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
        self._starting = False  # between the Apply click and the child's start (dialogs may run the event loop)
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

        # The "Show 3D" button (Slicer's own, as in the Segment Editor) toggles the closed-surface
        # representation of whichever segmentation the output selector shows.
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.show3DButton.setSegmentationNode)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._showResultDetails)
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
        """Called when the application closes, the module is reloaded, or the widget is destroyed:
        end the child (with its model and GPU memory), drop the GUI binding and every observer."""
        if self._pollTimer is not None:
            self._pollTimer.stop()
        if self.logic is not None:
            self.logic.shutdown()
        self._disconnectParameterNode()
        self.removeObservers()

    def onReload(self):
        """Reload also re-imports LUnetSegmentationLib: the base class reloads only this file, so
        edits in the core would otherwise be ignored until Slicer restarts."""
        import sys

        for name in [name for name in sys.modules if name == "LUnetSegmentationLib" or name.startswith("LUnetSegmentationLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # A running segmentation goes on (the timer keeps polling); only the GUI binding is dropped.
        self._disconnectParameterNode()

    def onSceneStartClose(self, caller, event):
        # The nodes of a running job are about to disappear: stop it (nothing is written), end the
        # child and free the models it and the console held.
        wasRunning = self.running
        self._pollTimer.stop()
        self.logic.shutdown()
        self._showRunning(False)
        self._setStatus(_("The scene was closed while segmenting; the run was stopped.") if wasRunning else "")
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

    def _disconnectParameterNode(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = None

    def setParameterNode(self, inputParameterNode):
        self._disconnectParameterNode()
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
        if data.get("protocol"):
            lines.append(_("Protocol: {protocol}").format(protocol=data["protocol"]))
        if data.get("contrasts"):
            lines.append(_("Trained for: {contrasts}").format(contrasts=", ".join(data["contrasts"])))
        if data.get("input"):
            lines.append(_("Input: {input}").format(input=data["input"]))
        if data.get("license"):
            lines.append(_("Weights licence: {license}").format(license=data["license"]))
        self.ui.modelDescriptionLabel.text = "\n".join(line for line in lines if line)

    @property
    def running(self):
        return self._starting or (self.logic is not None and self.logic.busy)

    def _updateApplyButton(self):
        running = self.running
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
        # A second click is refused until this one has started or failed: the install
        # dialog runs the event loop, and a queued click must not start a second run.
        if self.running:
            return
        self._starting = True
        self._updateApplyButton()
        parameters = self._parameterNode
        self._setStatus(_("Checking the inference engine..."))
        try:
            if not self.logic.ensureDependencies(askConfirmation=True, device=parameters.device.value):
                self._setStatus(_("ONNX Runtime or PyTorch is needed to segment; it was not installed. Click Apply to be asked again."), error=True)
                return
            self.logic.startSegmentation(
                parameters.inputVolume,
                segmentationNode=parameters.outputSegmentation,
                model=parameters.modelId or None,
                device=parameters.device.value,
                roiNode=parameters.roi,
            )
        except Exception as error:
            # Bad input or a broken install: nothing has been changed in the scene.
            logging.error(traceback.format_exc())
            self._setStatus(_("Not started: {error}").format(error=error), error=True)
            slicer.util.errorDisplay(str(error), windowTitle=_("LUnet Segmentation"))
            return
        finally:
            self._starting = False
            self._updateApplyButton()
        self._showRunning(True)
        self._setStatus(_("Starting..."))
        self._pollTimer.start()

    def onCancelButton(self):
        # Kills the child at once; the scene is not touched.
        self.logic.cancelSegmentation()
        self._pollRun()

    @staticmethod
    def _stageText(stage):
        return {"reading": _("Reading the volume"), "network": _("Segmenting"), "writing": _("Writing the result")}.get(stage, _("Starting"))

    def _pollRun(self):
        """Timer tick: read what the child reported (never waits), show it, finish when it is over."""
        status = self.logic.pollSegmentation()
        if status.state == "running":
            self.ui.progressBar.value = int(round(100 * status.fraction))
            self._setStatus(_("{stage}... {percent}% ({seconds:.0f} s)").format(stage=self._stageText(status.stage), percent=int(100 * status.fraction), seconds=status.elapsed))
            return
        self._pollTimer.stop()
        try:
            self._finishRun(status)
        finally:
            self._showRunning(False)

    def _finishRun(self, status):
        if status.state == "idle":
            return
        if status.state == "cancelled":
            self.logic.discardSegmentation()
            self._setStatus(_("Cancelled. Nothing was changed."))
            return
        if status.state == "failed":
            self.logic.discardSegmentation()
            logging.error(f"LUnetSegmentation failed: {status.message}\n{status.details}")
            self._setStatus(self.failureText(status.message), error=True)
            slicer.util.errorDisplay(
                _("Segmentation failed: {error}").format(error=status.message),
                windowTitle=_("LUnet Segmentation"),
                detailedText=status.details,
            )
            return
        run = self.logic.activeRun
        try:
            segmentationNode = self.logic.applySegmentation()
        except Exception as error:
            logging.error(traceback.format_exc())
            self._setStatus(_("Failed to write the segments: {error}").format(error=error), error=True)
            slicer.util.errorDisplay(str(error), windowTitle=_("LUnet Segmentation"), detailedText=traceback.format_exc())
            return
        # The logic's parameter node, not the GUI binding: the user may be in another module now
        # (exit() dropped the binding), and the next Apply must update this node, not make "_1".
        self.logic.getParameterNode().outputSegmentation = segmentationNode
        self._setStatus(self.logic.summary(run.result))
        self.logic.showResult(segmentationNode, run.volumeNode)  # the volume segmented, not today's selection
        self.ui.show3DButton.setSegmentationNode(segmentationNode)
        self._showResultDetails(segmentationNode)

    def _showResultDetails(self, segmentationNode):
        """The volume table and the provenance of the segmentation the output selector shows."""
        from LUnetSegmentationLib.slicer_adapter import mrml

        table = segmentationNode.GetNodeReference(mrml.VOLUME_TABLE_REFERENCE) if segmentationNode is not None else None
        self.ui.volumeTableView.setMRMLTableNode(table)
        self.ui.provenanceLabel.text = mrml.provenanceText(segmentationNode) if segmentationNode is not None else ""

    @staticmethod
    def failureText(message):
        """The status line for a failed run: the child's message, and "Nothing was changed" once."""
        text = _("Failed: {error}").format(error=message.strip())
        if "nothing was changed" not in text.lower():
            text += " " + _("Nothing was changed.")
        return text


#
# Logic
#


class LUnetSegmentationLogic(ScriptedLoadableModuleLogic):
    """Delegates to `LUnetSegmentationLib.slicer_adapter.api`, so the GUI, the console and batch scripts share one
    code path. Usable without the widget:

        logic = slicer.util.getModuleLogic("LUnetSegmentation")  # or LUnetSegmentationLogic()
        segmentationNode = logic.segment(volumeNode, roiNode=roiNode)
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._runner = None  # childprocess.Runner, made on the first Apply

    # --- the panel's path: inference in a child process ---------------------------------------

    @staticmethod
    def pythonSlicerExecutable():
        """Slicer's own Python launcher, PythonSlicer, which the child runs in (same packages,
        torch included). The launcher, never python-real directly: it sets up the environment
        (library paths, PYTHONHOME; PYTHONUTF8 from 5.12) that Slicer's Python needs. This
        Slicer's own first (bin/ under slicerHome), then one on the PATH."""
        name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
        candidate = os.path.join(slicer.app.slicerHome, "bin", name)
        if os.path.isfile(candidate):
            return candidate
        found = shutil.which("PythonSlicer")
        if found:
            return found
        raise RuntimeError(
            _("Slicer's Python ({name}) was not found in {folder} or on the PATH; the segmentation runs in it. Reinstall Slicer.").format(
                name=name, folder=os.path.join(slicer.app.slicerHome, "bin")
            )
        )

    def _getRunner(self):
        if self._runner is None:
            from LUnetSegmentationLib.slicer_adapter.childprocess import Runner

            self._runner = Runner(python=self.pythonSlicerExecutable())
        return self._runner

    @property
    def busy(self):
        return self._runner is not None and self._runner.busy

    @property
    def activeRun(self):
        return self._runner.run if self._runner is not None else None

    def startSegmentation(self, volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None):
        """Check the inputs, hand the volume to the child and return at once (main thread). Raises,
        with what to do, on bad input or while another run is going."""
        return self._getRunner().start(volumeNode, segmentationNode=segmentationNode, model=model, device=device, roiNode=roiNode)

    def pollSegmentation(self):
        """The run's Status (state, fraction, stage, message); reads the child's new output, never waits."""
        if self._runner is None:
            from LUnetSegmentationLib.slicer_adapter.childprocess import Status

            return Status()
        return self._runner.poll()

    def cancelSegmentation(self):
        if self._runner is not None:
            self._runner.cancel()

    def discardSegmentation(self):
        if self._runner is not None:
            self._runner.finish()

    def applySegmentation(self):
        """Write the finished run's segments into the scene (main thread); returns the segmentation node."""
        return self._getRunner().apply()

    def releaseMemory(self):
        """Free the models the console path (in-process `segment()`) keeps, and hand cached GPU
        memory back to the driver. Imports nothing that is not loaded already."""
        import sys

        pipeline = sys.modules.get("LUnetSegmentationLib.runtime.pipeline")
        if pipeline is not None:
            pipeline.clear_model_cache()
        worker = sys.modules.get("LUnetSegmentationLib.slicer_adapter.worker")
        if worker is None and "torch" in sys.modules:
            from LUnetSegmentationLib.slicer_adapter import worker
        return worker.release_torch_memory() if worker is not None else {"cuda_cache_emptied": False}

    def shutdown(self):
        """Module cleanup and scene close: stop any run (nothing is written), end the child (its
        model and GPU memory go with it), free the console path's models."""
        if self._runner is not None:
            self._runner.shutdown()
            self._runner = None
        self.releaseMemory()

    # --- parameter node, dependencies, the console path ---------------------------------------

    def getParameterNode(self):
        return LUnetSegmentationParameterNode(super().getParameterNode())

    @staticmethod
    def availableModels():
        from LUnetSegmentationLib.runtime.weights import available_models

        return available_models()

    @staticmethod
    def ensureDependencies(askConfirmation=True, device="auto"):
        """True when what the run needs is installed; installs it after asking. Raises (with what
        to do) where nothing can work.

        Without a CUDA GPU (or with the CPU chosen) the network runs with ONNX Runtime, one small
        wheel, offered instead of PyTorch; with a GPU, PyTorch through the PyTorch extension (which
        picks the CUDA or CPU build that fits this computer; never pip-installed directly). An
        installed torch is used in either case.

        What is installed, and which version, comes from package metadata: neither torch nor
        onnxruntime is imported here, in Slicer's main thread (importing torch freezes the GUI for
        seconds; the child process imports what it uses). A new PyTorch install asks for >=2.3
        (builds for NumPy 2, which Slicer ships from 5.10); an installed 2.1 or 2.2 is accepted under
        NumPy 1 (Slicer 5.8); Intel Macs get 2.2 under NumPy 1 and a clear refusal under NumPy 2
        (see LUnetSegmentationLib.slicer_adapter.dependencies).
        """
        from LUnetSegmentationLib.slicer_adapter.dependencies import check_torch_version, inference_backend, installed_version

        version = installed_version("torch")
        if version is not None:
            from LUnetSegmentationLib.slicer_adapter.dependencies import torch_requirement

            check_torch_version(version, torch_requirement())
            return True
        if inference_backend(device) == "onnxruntime":
            return LUnetSegmentationLogic.ensureOnnxRuntime(askConfirmation)
        return LUnetSegmentationLogic.ensurePyTorch(askConfirmation)

    @staticmethod
    def ensureOnnxRuntime(askConfirmation=True):
        """ONNX Runtime for CPU inference, pip-installed after asking (1.19.2 on Slicer 5.8's Python 3.9)."""
        from LUnetSegmentationLib.slicer_adapter.dependencies import installed_version, onnxruntime_requirement

        if installed_version("onnxruntime") is not None:
            return True
        requirement = onnxruntime_requirement()
        # As the PyTorch extension's installTorch: no question in testing mode (where Slicer's
        # confirmOkCancelDisplay answers Cancel), so ctest and the self-test can install it.
        if askConfirmation and not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(
            _("LUnet Segmentation runs on this computer's CPU with ONNX Runtime ({requirement}, a download of about "
              "15 MB). Install it now? (PyTorch is needed only to use an NVIDIA GPU.)").format(requirement=requirement),
            windowTitle=_("LUnet Segmentation"),
        ):
            return False
        slicer.util.pip_install(requirement)
        import importlib

        importlib.invalidate_caches()
        if installed_version("onnxruntime") is None:
            raise RuntimeError(_("ONNX Runtime could not be installed ({requirement}); see the Python console for pip's output.").format(requirement=requirement))
        return True

    @staticmethod
    def ensurePyTorch(askConfirmation=True):
        """PyTorch through the PyTorch extension, after asking."""
        from LUnetSegmentationLib.slicer_adapter.dependencies import check_torch_version, torch_requirement

        requirement = torch_requirement()
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise RuntimeError(
                _("LUnet Segmentation needs the PyTorch extension to use a GPU. Install 'PyTorch' from the Extensions Manager, restart Slicer, and try again (or choose the CPU).")
            ) from None
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation, torchVersionRequirement=requirement)
        if torch is None:
            return False
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
        # No question in testing mode, as for the inference engines (Slicer answers Cancel there).
        if not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(
            _("{reason} needs the Python package '{package}', which is not installed. Install it now?").format(reason=reason, package=pipName),
            windowTitle=_("LUnet Segmentation"),
        ):
            raise RuntimeError(_("{reason} needs the Python package '{package}'; it was not installed.").format(reason=reason, package=pipName))
        slicer.util.pip_install(pipName)
        return True

    def prepare(self, volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None):
        """Check the inputs and read the voxels (main thread); returns a job to `compute()` then `apply()`."""
        from LUnetSegmentationLib.slicer_adapter.api import prepareSegmentation

        return prepareSegmentation(volumeNode, segmentationNode=segmentationNode, model=model, device=device, roiNode=roiNode)

    def segment(self, volumeNode, segmentationNode=None, model=None, device="auto", roiNode=None, progress=None):
        """Blocking segmentation (console, scripts, tests); returns the vtkMRMLSegmentationNode."""
        if not self.ensureDependencies(askConfirmation=not slicer.app.testingEnabled(), device=device):
            raise RuntimeError(_("ONNX Runtime or PyTorch is needed to segment; it was not installed."))
        job = self.prepare(volumeNode, segmentationNode, model, device, roiNode)
        try:
            job.compute(progress=progress)
        finally:
            # The model stays cached for the next call; cached GPU blocks go back to the driver.
            from LUnetSegmentationLib.slicer_adapter.worker import release_torch_memory

            release_torch_memory()
        segmentationNode = job.apply()
        from LUnetSegmentationLib.slicer_adapter import mrml

        spacing = volumeNode.GetSpacing()
        mrml.writeVolumeTable(segmentationNode, job.result.specs, job.volumes, job.sideVolumes, job.result.details,
                              spacing[0] * spacing[1] * spacing[2])
        return segmentationNode

    def segmentFiles(self, inputPaths, outputDir, **kwargs):
        """Batch: segment files on disk; see `LUnetSegmentationLib.slicer_adapter.api.segmentFiles`. The batch
        path needs no MRML scene, so it never builds a second application logic (which would
        register the segmentation converter rules again in Slicer's global factory)."""
        if isinstance(inputPaths, (str, os.PathLike)):
            inputPaths = [inputPaths]  # one path, not the characters of its name
        if not self.ensureDependencies(askConfirmation=True, device=kwargs.get("device", "auto")):
            raise RuntimeError(_("ONNX Runtime or PyTorch is needed to segment; it was not installed."))
        if any(str(path).lower().endswith((".mgz", ".mgh")) for path in inputPaths):
            self.ensureOptionalPackage("nibabel", "nibabel", _("Reading FreeSurfer .mgz files"))
        from LUnetSegmentationLib.slicer_adapter.api import segmentFiles

        return segmentFiles(inputPaths, outputDir, **kwargs)

    @staticmethod
    def summary(job):
        """One status line: time, device, volume of each hippocampus (whole-head scans) and of each
        segment, and any notes (e.g. a GPU fallback)."""
        sides = {"left": _("Left hippocampus"), "right": _("Right hippocampus")}
        segmentVolumes = dict(job.volumes)
        segmentNames = {name.lower() for name in segmentVolumes}
        # A side's total only adds something when the side has several segments (anterior and
        # posterior); the whole-hippocampus model's segments are the sides, listed once.
        parts = [(sides.get(side, side), volume) for side, volume in (getattr(job, "sideVolumes", None) or {}).items()
                 if sides.get(side, side).lower() not in segmentNames]
        parts += list(segmentVolumes.items())
        volumes = ", ".join(_("{name} {volume:.0f} mm\u00b3").format(name=name, volume=volume) for name, volume in parts)
        text = _("Done in {seconds:.1f} s on {device}: {volumes}.").format(seconds=job.seconds, device=job.device, volumes=volumes)
        if getattr(job, "notes", None):
            text += " " + " ".join(job.notes)
        warnings = list(getattr(job, "warnings", None) or [])
        if warnings:
            text += " " + _("Warning: {warnings}").format(warnings=" ".join(warnings))
        return text

    @staticmethod
    def showResult(segmentationNode, volumeNode=None, show3D=True):
        """Show the new segments in the slice views, centred on the first non-empty one, and (with
        `show3D`) as closed surfaces in the 3D view; the panel's "Show 3D" button toggles them."""
        if volumeNode is not None:
            slicer.util.setSliceViewerLayers(background=volumeNode)
        segmentationNode.CreateDefaultDisplayNodes()
        if show3D:
            segmentationNode.CreateClosedSurfaceRepresentation()
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
    """Self-test, run by ctest (each test_* on its own, in alphabetical order, through
    slicer.testing.runUnitTest) and by "Reload and Test" (runTest: all of them).

    Each test sets up what it needs and the scene is cleared before and after it. Tests that run
    the network need an inference engine (ONNX Runtime or PyTorch): they run where one is
    installed, or when LUNET_SELFTEST_INFERENCE=1 (then the one this computer needs is installed
    without asking), and skip otherwise, so the build factory runs the quick tests only, as
    TotalSegmentator and MONAIAuto3DSeg do. LUNET_SELFTEST_INFERENCE=0 switches them off.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def tearDown(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        import unittest

        for name in sorted(name for name in dir(self) if name.startswith("test_")):
            self.setUp()
            try:
                getattr(self, name)()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"{name} skipped: {reason}")
            finally:
                self.tearDown()

    def _requireInference(self):
        """Skip (with the reason) unless the network can run on the CPU; never asks a question
        and never imports torch (only its package metadata is read)."""
        import unittest

        from LUnetSegmentationLib.slicer_adapter.dependencies import installed_version

        switch = os.environ.get("LUNET_SELFTEST_INFERENCE", "")
        if switch == "0":
            raise unittest.SkipTest("network tests switched off (LUNET_SELFTEST_INFERENCE=0)")
        installed = installed_version("torch") is not None or installed_version("onnxruntime") is not None
        if not installed and switch != "1":
            raise unittest.SkipTest("neither ONNX Runtime nor PyTorch is installed (set LUNET_SELFTEST_INFERENCE=1 to install one and run)")
        if not LUnetSegmentationLogic.ensureDependencies(askConfirmation=False, device="cpu"):
            raise unittest.SkipTest("no inference engine could be installed")

    def _realHead(self):
        """A real whole-head T1 the presence check accepts: the file named by LUNET_SELFTEST_HEAD,
        else Slicer's MRHead sample (downloaded once); skipped, saying why, when neither is there.
        Blobs are refused as "No hippocampus was found", so tests that expect segments need this."""
        import unittest

        path = os.environ.get("LUNET_SELFTEST_HEAD", "")
        if path:
            return slicer.util.loadVolume(path)
        try:
            import SampleData

            return SampleData.SampleDataLogic().downloadSample("MRHead")
        except Exception as error:  # no network
            raise unittest.SkipTest(f"MRHead sample not available ({error}); set LUNET_SELFTEST_HEAD to a whole-head T1") from None

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

    def _widget(self, volumeNode):
        slicer.util.selectModule("LUnetSegmentation")
        widget = slicer.modules.lunetsegmentation.widgetRepresentation().self()
        widget._parameterNode.inputVolume = volumeNode
        widget._parameterNode.device = DeviceChoice.CPU
        widget._parameterNode.outputSegmentation = None
        return widget

    def _waitForWidget(self, widget, timeout=120):
        # The test waits here; the panel itself never does (its QTimer polls the child).
        deadline = time.time() + timeout
        while widget.running and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        self.assertFalse(widget.running, f"the run must finish within {timeout} s: {widget.ui.statusLabel.text}")

    def test_BadInputIsRefused(self):
        self.delayDisplay("Bad input gives a clear message (no PyTorch needed)")
        logic = LUnetSegmentationLogic()
        with self.assertRaises(ValueError):
            logic.startSegmentation(None)
        flat = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Flat")
        import numpy as np

        slicer.util.updateVolumeFromArray(flat, np.zeros((20, 20, 20), dtype=np.float32))
        with self.assertRaises(ValueError) as raised:
            logic.startSegmentation(flat, device="cpu")
        self.assertIn("constant", str(raised.exception))
        self.assertFalse(logic.busy, "nothing was started")
        logic.shutdown()

    def test_CancelChangesNothing(self):
        self._requireInference()
        self.delayDisplay("Cancel kills the child and leaves the scene as it was")
        volumeNode = self._syntheticVolume()
        widget = self._widget(volumeNode)
        before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
        widget.onApplyButton()
        self.assertTrue(widget.running, widget.ui.statusLabel.text)
        widget.onCancelButton()
        self.assertFalse(widget.running)
        self.assertIn("Cancelled", widget.ui.statusLabel.text)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), before)

    def test_ReplaceOnlyOwnSegments(self):
        self._requireInference()
        self.delayDisplay("Re-running into an existing segmentation keeps the user's segments")
        volumeNode = self._realHead()
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

    def test_SegmentMRHead(self):
        """Real anatomy: Slicer's MRHead sample (a whole-head T1) gives both hippocampi."""
        self._requireInference()
        self.delayDisplay("Segmenting a whole-head T1 (both hippocampi found automatically)")
        volumeNode = self._realHead()
        logic = LUnetSegmentationLogic()
        job = logic.prepare(volumeNode, device="cpu")
        started = time.time()  # the clock covers the work only, not downloads or installs
        job.compute()
        segmentationNode = job.apply()
        self.assertEqual(set(job.sideVolumes), {"left", "right"}, "both hippocampi are found")
        self._checkSegments(job, segmentationNode, volumeNode)
        for side, volume in job.sideVolumes.items():
            # An adult hippocampus is about 2.5 to 5 cm3; allow protocol and resolution effects.
            self.assertTrue(1500 < volume < 7000, f"{side} hippocampus volume {volume:.0f} mm3 is implausible")
        self.delayDisplay(f"MRHead segmented in {time.time() - started:.1f} s: {LUnetSegmentationLogic.summary(job)}")

    def test_SegmentSyntheticVolume(self):
        """Blobs are not anatomy: the console path runs to the end and the presence check answers
        "No hippocampus was found" instead of reporting a volume; nothing is written."""
        self._requireInference()
        from LUnetSegmentationLib.runtime.preprocess import InputError

        self.delayDisplay("Segmenting a synthetic volume on the CPU (console path, in process)")
        volumeNode = self._syntheticVolume()
        logic = LUnetSegmentationLogic()
        job = logic.prepare(volumeNode, device="cpu")  # loads the model: set-up, before the clock
        fractions = []
        started = time.time()
        with self.assertRaises(InputError) as caught:
            job.compute(progress=fractions.append)
        seconds = time.time() - started
        self.assertIn("No hippocampus was found", str(caught.exception))
        self.assertLess(seconds, 30.0, "CPU inference on a small volume must take under 30 s")
        self.assertTrue(fractions and fractions[-1] >= 0.99, "the network ran to the end before the check")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 0, "nothing was written")

    def _checkSegments(self, job, segmentationNode, volumeNode):
        """One segment per label the job reports, named after a structure of the model card, with
        its colour, terminology, exact voxels and the model named in the provenance."""
        import numpy as np

        card = job.card
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual(set(job.volumes), {segmentation.GetNthSegment(index).GetName() for index in range(segmentation.GetNumberOfSegments())})
        voxelVolume = float(np.prod(volumeNode.GetSpacing()))
        for name, volume in job.volumes.items():
            labels = [label for label in card.labels if label["name"].lower() in name.lower()]
            self.assertTrue(labels, f"segment {name!r} is named after a structure of the model")
            segmentId = segmentation.GetSegmentIdBySegmentName(name)
            segment = segmentation.GetSegment(segmentId)
            self.assertTrue(segment.HasTag(segment.GetTerminologyEntryTagName()), "each segment carries a terminology entry")
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
            self.assertEqual(mask.shape, slicer.util.arrayFromVolume(volumeNode).shape)
            self.assertAlmostEqual(volume, float(mask.sum()) * voxelVolume, delta=voxelVolume)
        attributes = {name: segmentationNode.GetAttribute(name) for name in segmentationNode.GetAttributeNames() or []}
        self.assertTrue(any(card.model_id in str(value) for value in attributes.values()), f"provenance names the model: {attributes}")

    def test_WidgetRunsInChildProcess(self):
        """The panel's path: a child process, a polling timer, progress, the status line; a second
        Apply while it runs is refused; the second click reuses the loaded worker."""
        self._requireInference()
        self.delayDisplay("Running from the module panel (child process)")
        volumeNode = self._realHead()
        widget = self._widget(volumeNode)
        widget.onApplyButton()
        self.assertTrue(widget.running, widget.ui.statusLabel.text)
        self.assertFalse(widget.ui.applyButton.enabled, "Apply is disabled while a run is going")
        firstRun = widget.logic.activeRun
        widget.onApplyButton()  # refused: the same run goes on
        self.assertIs(widget.logic.activeRun, firstRun)
        self._waitForWidget(widget)
        output = widget._parameterNode.outputSegmentation
        self.assertIsNotNone(output, widget.ui.statusLabel.text)
        self.assertEqual(output.GetAttribute("LUnetSegmentation.Process"), "child")
        self.assertIn("mm", widget.ui.statusLabel.text)
        self.assertFalse(widget.ui.cancelButton.visible)
        pid = widget.logic._runner.worker.process.pid
        started = time.time()
        widget.onApplyButton()
        self._waitForWidget(widget)
        self.delayDisplay(f"Second click (model already loaded): {time.time() - started:.1f} s")
        self.assertEqual(widget.logic._runner.worker.process.pid, pid, "the worker is reused")

    def test_WidgetReportsNoHippocampus(self):
        """Blobs through the panel: the child's refusal reaches the status line once, nothing is
        written, and the worker stays for the next click."""
        self._requireInference()
        self.delayDisplay("A volume without a hippocampus is refused through the panel")
        widget = self._widget(self._syntheticVolume())
        widget.onApplyButton()
        self._waitForWidget(widget)
        text = widget.ui.statusLabel.text
        self.assertIn("No hippocampus was found", text)
        self.assertEqual(text.lower().count("nothing was changed"), 1, text)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 0)
        self.assertTrue(widget.logic._runner.worker.alive, "a refused request does not end the worker")
