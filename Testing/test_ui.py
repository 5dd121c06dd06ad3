"""The module's panel: the .ui parses with Qt's own loader, and it agrees with the module code.

Slicer's widget classes (qMRMLNodeComboBox, ctkCollapsibleButton, qMRMLWidget) are unknown to
plain Qt, which builds them as their declared base class; their class names are therefore checked
in the .ui XML, and standard Qt widgets are checked on the loaded objects too.
"""
from __future__ import annotations

import ast
import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
MODULE_PY = REPO / "LUnetSegmentation" / "LUnetSegmentation.py"
UI_FILE = REPO / "LUnetSegmentation" / "Resources" / "UI" / "LUnetSegmentation.ui"

# The widgets the panel needs, with their class (issue: input, model + description, ROI, device,
# output segmentation, Apply, progress bar, Cancel, status line).
EXPECTED_CLASSES = {
    "inputVolumeSelector": "qMRMLNodeComboBox",
    "modelComboBox": "QComboBox",
    "modelDescriptionLabel": "QLabel",
    "roiSelector": "qMRMLNodeComboBox",
    "deviceComboBox": "QComboBox",
    "outputSegmentationSelector": "qMRMLNodeComboBox",
    "show3DButton": "qMRMLSegmentationShow3DButton",  # issue 23 item 11: TotalSegmentator's and the Segment Editor's toggle
    "volumeTableView": "qMRMLTableView",  # issue 23: per-side volumes next to the segmentation
    "provenanceLabel": "QLabel",  # and the input's provenance, visible
    "applyButton": "QPushButton",
    "progressBar": "QProgressBar",
    "cancelButton": "QPushButton",
    "statusLabel": "QLabel",
}
# Parameters the module synchronises by hand (the model combo stores ids as item data).
UNBOUND_PARAMETERS = {"modelId"}


def ui_widgets() -> dict[str, ElementTree.Element]:
    root = ElementTree.parse(UI_FILE).getroot()
    return {element.get("name"): element for element in root.iter("widget")}


def string_property(element: ElementTree.Element, name: str):
    for prop in element.findall("property"):
        if prop.get("name") == name:
            string = prop.find("string")
            if string is not None:
                return string.text
            strings = prop.find("stringlist")
            if strings is not None:
                return [s.text for s in strings.findall("string")]
    return None


def module_tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text(), filename=str(MODULE_PY))


def ui_names_used_in_code() -> set[str]:
    """Every `<something>.ui.<name>` the module code reads (self.ui.x in the widget, widget.ui.x in the test)."""
    names = set()
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui":
            names.add(node.attr)
    return names


def parameter_fields() -> dict[str, str]:
    """Field name -> annotation source of the @parameterNodeWrapper class."""
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper") for d in node.decorator_list
        ):
            return {
                item.target.id: ast.unparse(item.annotation)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError("no @parameterNodeWrapper class in LUnetSegmentation.py")


@pytest.fixture(scope="module")
def loaded_ui():
    QtWidgets = pytest.importorskip("PySide6.QtWidgets")
    QtUiTools = pytest.importorskip("PySide6.QtUiTools")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    loader = QtUiTools.QUiLoader()
    widget = loader.load(str(UI_FILE))
    assert widget is not None, f"QUiLoader could not load {UI_FILE}: {loader.errorString()}"
    yield QtWidgets, widget
    widget.deleteLater()
    app.processEvents()


def test_ui_loads_with_qt_loader(loaded_ui):
    QtWidgets, widget = loaded_ui
    assert widget.objectName() == "LUnetSegmentation"
    for name in EXPECTED_CLASSES:
        assert widget.findChild(QtWidgets.QWidget, name) is not None, f"{name} missing from the loaded panel"


def test_standard_widgets_have_their_qt_class(loaded_ui):
    QtWidgets, widget = loaded_ui
    for name, class_name in EXPECTED_CLASSES.items():
        if class_name.startswith("Q"):
            child = widget.findChild(QtWidgets.QWidget, name)
            assert child.metaObject().className() == class_name, name


def test_panel_has_the_expected_widgets():
    widgets = ui_widgets()
    for name, class_name in EXPECTED_CLASSES.items():
        assert name in widgets, f"{name} is not in {UI_FILE.name}"
        assert widgets[name].get("class") == class_name, f"{name} is a {widgets[name].get('class')}, expected {class_name}"


def test_every_widget_the_code_uses_exists():
    widgets = ui_widgets()
    used = ui_names_used_in_code()
    assert used >= {"applyButton", "cancelButton", "progressBar", "statusLabel", "modelComboBox"}, used
    missing = sorted(used - set(widgets))
    assert not missing, f"LUnetSegmentation.py uses widgets that {UI_FILE.name} lacks: {missing}"
    for name in used & set(EXPECTED_CLASSES):
        assert widgets[name].get("class") == EXPECTED_CLASSES[name]


def test_custom_widgets_are_declared():
    root = ElementTree.parse(UI_FILE).getroot()
    declared = {cw.findtext("class") for cw in root.iter("customwidget")}
    used = {element.get("class") for element in root.iter("widget")}
    custom = {name for name in used if not name.startswith("Q")}
    assert custom <= declared, f"custom widget classes without a <customwidget> entry: {custom - declared}"


def test_parameter_bindings_match_the_parameter_node():
    fields = parameter_fields()
    bound = {}
    for name, element in ui_widgets().items():
        parameter = string_property(element, "SlicerParameterName")
        if parameter:
            assert parameter not in bound, f"{parameter} is bound to both {bound[parameter][0]} and {name}"
            bound[parameter] = (name, element)
    assert set(bound) <= set(fields), f"the .ui binds unknown parameters: {set(bound) - set(fields)}"
    assert set(fields) - set(bound) <= UNBOUND_PARAMETERS, f"parameters without a widget: {set(fields) - set(bound) - UNBOUND_PARAMETERS}"
    for parameter, (name, element) in bound.items():
        annotation = fields[parameter]
        if annotation.startswith("vtkMRML"):
            # A node parameter needs a node combo box listing exactly that node class.
            assert element.get("class") == "qMRMLNodeComboBox", name
            assert string_property(element, "nodeTypes") == [annotation], name
        elif annotation == "DeviceChoice":
            assert element.get("class") == "QComboBox", name


def test_output_and_roi_are_optional_and_input_is_not():
    widgets = ui_widgets()

    def flag(name, prop):
        for p in widgets[name].findall("property"):
            if p.get("name") == prop:
                return p.findtext("bool") == "true"
        return False

    assert flag("outputSegmentationSelector", "noneEnabled"), "'Create new segmentation' must be offered"
    assert string_property(widgets["outputSegmentationSelector"], "noneDisplay")
    assert flag("roiSelector", "noneEnabled"), "the ROI must be optional"
    assert not flag("inputVolumeSelector", "noneEnabled")


def gui_parameters_in_code() -> dict[str, str]:
    """The widget class's GUI_PARAMETERS dict literal (parameter -> widget name)."""
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "GUI_PARAMETERS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("no GUI_PARAMETERS in LUnetSegmentation.py")


def test_parameters_are_bound_with_a_tag_that_works_on_slicer_58():
    # Slicer 5.8's connectGui returns no tag (disconnectGui then does nothing and connectors pile
    # up on each enter); connectParametersToGui returns one on every version.
    calls = {
        node.func.attr
        for node in ast.walk(module_tree())
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "connectGui" not in calls
    assert "connectParametersToGui" in calls and "disconnectGui" in calls
    bound = {}
    for name, element in ui_widgets().items():
        parameter = string_property(element, "SlicerParameterName")
        if parameter:
            bound[parameter] = name
    assert gui_parameters_in_code() == bound


def widget_class() -> ast.ClassDef:
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == "LUnetSegmentationWidget":
            return node
    raise AssertionError("no LUnetSegmentationWidget in LUnetSegmentation.py")


def method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    for item in cls.body:
        if isinstance(item, ast.FunctionDef) and item.name == name:
            return item
    raise AssertionError(f"{cls.name}.{name} is missing")


def called_names(node) -> set[str]:
    """Names of the functions and methods called under `node` (not str methods: "\n".join)."""
    return {
        call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        for call in ast.walk(node)
        if isinstance(call, ast.Call) and not (isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Constant))
    }


def test_the_panel_never_waits_for_the_work():
    # Issue 13 item 4: in Slicer the main thread holds the GIL; the panel must poll the child from
    # its QTimer, never join a thread, wait on a process or spin the event loop around the work.
    widget = widget_class()
    calls = called_names(widget)
    assert not calls & {"join", "processEvents", "wait", "communicate", "sleep"}, calls & {"join", "processEvents", "wait", "communicate", "sleep"}
    assert "pollSegmentation" in called_names(method(widget, "_pollRun"))
    assert "startSegmentation" in called_names(method(widget, "onApplyButton"))
    assert "threading" not in MODULE_PY.read_text()


def test_a_second_apply_is_refused_before_anything_else():
    # Issue 13 item 9: the first statement of onApplyButton returns while a run is starting or going.
    first = [stmt for stmt in method(widget_class(), "onApplyButton").body if not isinstance(stmt, ast.Expr)][0]
    assert isinstance(first, ast.If) and "running" in ast.unparse(first.test) and isinstance(first.body[0], ast.Return)


def test_cleanup_ends_the_child_and_drops_the_parameter_node_and_reload_reloads_the_core():
    # Issue 13 items 8 and 11.
    widget = widget_class()
    cleanup = called_names(method(widget, "cleanup"))
    assert {"shutdown", "_disconnectParameterNode", "removeObservers"} <= cleanup
    assert "disconnectGui" in called_names(method(widget, "_disconnectParameterNode"))
    assert "shutdown" in called_names(method(widget, "onSceneStartClose"))
    reload_source = ast.unparse(method(widget, "onReload"))
    assert "LUnetSegmentationLib." in reload_source and "sys.modules" in reload_source and "onReload" in reload_source
