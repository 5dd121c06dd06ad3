"""A second scripted module to switch to (Slicer's Welcome module stands here): selecting it
exits LUnetSegmentation's panel as the module selector does in Slicer."""
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleWidget


class EmulationWelcome(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Welcome (emulation)"


class EmulationWelcomeWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
