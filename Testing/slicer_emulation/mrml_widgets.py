"""Slicer's C++ widgets that the module's .ui names, as small PySide6 widgets over real MRML.

Each implements the behaviour the module and parameterNodeWrapper rely on, read from the C++
sources at v5.8.1 (qMRMLNodeComboBox: listing nodes of `nodeTypes`, subclasses only with
`showChildNodeTypes`, the first node selected when `noneEnabled` is off, the selection dropped
when its node leaves the scene; qMRMLSegmentationShow3DButton: checked while the segmentation
holds a closed surface, toggling creates or removes it; qMRMLWidget: `setMRMLScene` emits
`mrmlSceneChanged`, which reaches the children through the .ui's connections, made by
pythonqt.UiLoader). Anything else of those classes is not emulated.
"""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Property, Signal

from .pythonqt import PythonQtObject

CLOSED_SURFACE = "Closed surface"


class qMRMLWidget(PythonQtObject, QtWidgets.QWidget):
    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self._scene = None

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)  # children get it through the .ui's connections

    def mrmlScene(self):
        return self._scene


class qMRMLNodeComboBox(PythonQtObject, QtWidgets.QWidget):
    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)
    nodeAdded = Signal(object)

    def __init__(self, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self._nodeTypes, self._noneEnabled, self._showChildNodeTypes = [], False, True
        self._addEnabled = self._removeEnabled = self._renameEnabled = self._editEnabled = False
        self._noneDisplay, self._scene, self._current, self._observations = "None", None, None, []

    # Qt properties (set by the .ui loader and as attributes)
    def _get_nodeTypes(self):
        return list(self._nodeTypes)

    def _set_nodeTypes(self, value):
        self._nodeTypes = [str(v) for v in value]
        self._sync()

    nodeTypes = Property("QStringList", _get_nodeTypes, _set_nodeTypes)
    noneEnabled = Property(bool, lambda self: self._noneEnabled, lambda self, v: (setattr(self, "_noneEnabled", bool(v)), self._sync()))
    showChildNodeTypes = Property(bool, lambda self: self._showChildNodeTypes, lambda self, v: setattr(self, "_showChildNodeTypes", bool(v)))
    addEnabled = Property(bool, lambda self: self._addEnabled, lambda self, v: setattr(self, "_addEnabled", bool(v)))
    removeEnabled = Property(bool, lambda self: self._removeEnabled, lambda self, v: setattr(self, "_removeEnabled", bool(v)))
    renameEnabled = Property(bool, lambda self: self._renameEnabled, lambda self, v: setattr(self, "_renameEnabled", bool(v)))
    editEnabled = Property(bool, lambda self: self._editEnabled, lambda self, v: setattr(self, "_editEnabled", bool(v)))
    noneDisplay = Property(str, lambda self: self._noneDisplay, lambda self, v: setattr(self, "_noneDisplay", str(v)))

    def setMRMLScene(self, scene):
        import slicer

        for observed, tag in self._observations:
            observed.RemoveObserver(tag)
        self._observations = []
        self._scene = scene
        if scene is not None:
            for event in (slicer.vtkMRMLScene.NodeAddedEvent, slicer.vtkMRMLScene.NodeRemovedEvent, slicer.vtkMRMLScene.EndCloseEvent):
                self._observations.append((scene, scene.AddObserver(event, lambda caller, event: self._sync())))
        self._sync()

    def mrmlScene(self):
        return self._scene

    def nodes(self) -> list:
        if self._scene is None or not self._nodeTypes:
            return []
        found = []
        for index in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(index)
            if node.GetHideFromEditors() or node.GetSingletonTag():
                continue
            if self._showChildNodeTypes:
                matches = any(node.IsA(kind) for kind in self._nodeTypes)
            else:
                matches = node.GetClassName() in self._nodeTypes
            if matches:
                found.append(node)
        return found

    def nodeCount(self):
        return len(self.nodes())

    def currentNode(self):
        return self._current

    def currentNodeID(self):
        return self._current.GetID() if self._current is not None else ""

    def setCurrentNode(self, node):
        if node is not None and node not in self.nodes():
            node = None if self._noneEnabled or not self.nodes() else self.nodes()[0]
        if node is self._current:
            return
        self._current = node
        self.currentNodeChanged.emit(node)
        self.currentNodeIDChanged.emit(self.currentNodeID())

    def setCurrentNodeID(self, nodeID):
        self.setCurrentNode(self._scene.GetNodeByID(nodeID) if self._scene is not None and nodeID else None)

    def _sync(self):
        available = self.nodes()
        if self._current is not None and (self._current.GetScene() is None or self._current not in available):
            self._current = None
            if not self._noneEnabled and available:
                self._current = available[0]
            self.currentNodeChanged.emit(self._current)
            self.currentNodeIDChanged.emit(self.currentNodeID())
        elif self._current is None and not self._noneEnabled and available:
            self.setCurrentNode(available[0])


class qMRMLSegmentationShow3DButton(PythonQtObject, QtWidgets.QPushButton):
    def __init__(self, parent=None):
        QtWidgets.QPushButton.__init__(self, parent)
        QtWidgets.QPushButton.setCheckable(self, True)
        QtWidgets.QPushButton.setEnabled(self, False)
        self._node, self._observations = None, []
        self.toggled.connect(self._onToggled)

    def setSegmentationNode(self, node):
        if node is self._node:
            return
        import slicer

        for tag in self._observations:
            self._node.RemoveObserver(tag)
        self._observations = []
        self._node = node
        if node is not None:
            # The events the C++ button observes on the node (vtkMRMLSegmentationNode forwards
            # its segmentation's events).
            for event in ("ModifiedEvent", slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                          slicer.vtkSegmentation.ContainedRepresentationNamesModified):
                self._observations.append(node.AddObserver(event, lambda caller, event: self.updateWidgetFromMRML()))
        self.updateWidgetFromMRML()

    def segmentationNode(self):
        return self._node

    def updateWidgetFromMRML(self):
        segmentation = self._node.GetSegmentation() if self._node is not None else None
        if segmentation is None:
            QtWidgets.QPushButton.setEnabled(self, False)
            return
        QtWidgets.QPushButton.setEnabled(self, segmentation.GetNumberOfSegments() > 0
                                         and segmentation.GetSourceRepresentationName() != CLOSED_SURFACE)
        blocked = self.blockSignals(True)
        QtWidgets.QPushButton.setChecked(self, segmentation.ContainsRepresentation(CLOSED_SURFACE))
        self.blockSignals(blocked)

    def _onToggled(self, checked):
        if self._node is None:
            return
        if checked:
            self._node.CreateClosedSurfaceRepresentation()
        else:
            self._node.RemoveClosedSurfaceRepresentation()


class qMRMLTableView(PythonQtObject, QtWidgets.QTableView):
    def __init__(self, parent=None):
        QtWidgets.QTableView.__init__(self, parent)
        self._table, self._scene = None, None

    def setMRMLScene(self, scene):
        self._scene = scene

    def mrmlScene(self):
        return self._scene

    def setMRMLTableNode(self, node):
        self._table = node

    def mrmlTableNode(self):
        return self._table


class ctkCollapsibleButton(PythonQtObject, QtWidgets.QWidget):
    def __init__(self, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self._text, self._collapsed = "", False

    text = Property(str, lambda self: self._text, lambda self, v: setattr(self, "_text", str(v)))
    collapsed = Property(bool, lambda self: self._collapsed, lambda self, v: setattr(self, "_collapsed", bool(v)))


_KNOWN = {cls.__name__: cls for cls in (qMRMLWidget, qMRMLNodeComboBox, qMRMLSegmentationShow3DButton, qMRMLTableView, ctkCollapsibleButton)}
_PLACEHOLDERS: dict[str, type] = {}


def widget_class(name: str):
    """The emulated class of a Slicer/CTK widget; other ctk*/qMRML*/qSlicer* names get a plain
    placeholder widget (so `type(widget) in (ctk.ctkCheckBox, ...)` tests can run), never used by
    the module."""
    if name in _KNOWN:
        return _KNOWN[name]
    if name.startswith(("ctk", "qMRML", "qSlicer")):
        if name not in _PLACEHOLDERS:
            _PLACEHOLDERS[name] = type(name, (PythonQtObject, QtWidgets.QWidget), {"__module__": "ctk" if name.startswith("ctk") else "slicer"})
        return _PLACEHOLDERS[name]
    return None


__all__ = ["QtCore", "widget_class", *_KNOWN]
