"""The Slicer application as a scripted module sees it, assembled in this process.

    app = start("v5.8.1", slicer_home, module_paths=[folder holding LUnetSegmentation.py])

- `slicer` is built as Slicer's own `slicer/__init__.py` builds it: the MRML, logic and widget
  classes in one namespace (here slicer-core's real MRML, and `mrml_widgets` for the few Qt
  widgets), `slicer.modules` / `slicer.moduleNames`, and Slicer's own Python files of the chosen
  tag (vendor/slicer-<tag>/slicer: util.py, ScriptedLoadableModule.py, testing.py, i18n.py,
  parameterNodeWrapper/) imported from that package folder, unmodified.
- `slicer.app` answers what those files and the module ask of qSlicerApplication; the scene
  has the application logic with the Colors, Volumes, Segmentations, SubjectHierarchy and
  Markups logics; scripted modules are loaded as qSlicerScriptedLoadableModuleFactory does
  (module folder on sys.path, `<Name>(parent)` with `parent.path` set, self-test registered).
- The main window's module selector calls `exit()` on the module left and `enter()` on the
  module entered, creating the widget representation (and calling `setup()`) the first time.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAGS = ("v5.8.1", "v5.12.3")


def vendor_dir(tag: str) -> Path:
    if tag not in TAGS:
        raise ValueError(f"no vendored Slicer sources for {tag}; have {TAGS}")
    return HERE / "vendor" / f"slicer-{tag}"


class CommandOptions:
    def __init__(self, testing: bool):
        self.testingEnabled = testing
        self.noMainWindow = False
        self.disableMessageHandlers = False


class ScriptedModule:
    """qSlicerScriptedLoadableModule: the module object behind slicer.modules.<name>."""

    def __init__(self, app, name: str, path: str):
        self.app, self.name, self.path = app, name, path
        self.title, self.categories, self.dependencies, self.contributors = name, [], [], []
        self.helpText = self.acknowledgementText = ""
        self.icon = None
        self.hidden = False
        self._widgetRepresentation = None
        self.instance = None

    def widgetRepresentation(self):
        if self._widgetRepresentation is None:
            self._widgetRepresentation = make_widget_representation(self)
        return self._widgetRepresentation

    def createNewWidgetRepresentation(self):
        return make_widget_representation(self)

    def logic(self):
        return None  # scripted modules: slicer.util.getModuleLogic reads the widget's .logic


_REPRESENTATION_CLASS = []


def _widget_representation_class():
    """qSlicerScriptedLoadableModuleWidget: a qMRMLWidget with a vertical layout that owns the
    module's Python widget (`self()`), set up once, entered and exited by the module selector, and
    rebuilt by `reload()` (what slicer.util.reloadScriptedModule calls)."""
    if _REPRESENTATION_CLASS:
        return _REPRESENTATION_CLASS[0]
    from .mrml_widgets import qMRMLWidget

    class qSlicerScriptedLoadableModuleWidget(qMRMLWidget):
        def setUp(self, module):
            self._module, self.isEntered = module, False
            self._build()

        def _build(self):
            import slicer

            python_module = sys.modules[self._module.name]
            self._self = getattr(python_module, self._module.name + "Widget")(self)
            self._self.setup()
            self.setMRMLScene(slicer.mrmlScene)
            setattr(slicer.modules, self._module.name + "Widget", self._self)

        def self(self):
            return self._self

        def enter(self):
            self.show()  # the module panel on screen (offscreen platform)
            self.isEntered = True
            if hasattr(self._self, "enter"):
                self._self.enter()

        def exit(self):
            if hasattr(self._self, "exit"):
                self._self.exit()
            self.isEntered = False
            self.hide()

        def reload(self):
            self._build()
            if self.isEntered and hasattr(self._self, "enter"):
                self._self.enter()

    _REPRESENTATION_CLASS.append(qSlicerScriptedLoadableModuleWidget)
    return qSlicerScriptedLoadableModuleWidget


def make_widget_representation(module: ScriptedModule):
    from PySide6 import QtWidgets

    widget = _widget_representation_class()()
    widget.setLayout(QtWidgets.QVBoxLayout())
    widget.setUp(module)
    return widget


class ModuleSelector:
    def __init__(self, app):
        self.app = app
        self.current = None

    def selectModule(self, name: str):
        module = self.app.moduleManager().module(name)
        if module is None:
            raise RuntimeError(f"module {name!r} is not loaded")
        if self.current is module:
            return
        if self.current is not None and self.current._widgetRepresentation is not None:
            self.current._widgetRepresentation.exit()
        self.current = module
        module.widgetRepresentation().enter()

    def selectedModule(self):
        return self.current.name if self.current else ""


def _build_slicer_package(tag: str):
    """`slicer` as Slicer's own __init__ makes it: one namespace of the kits' classes, plus the
    vendored Python package folder of `tag` for its submodules."""
    import slicer_core  # slicer-core's real MRML and logic classes

    package = types.ModuleType("slicer", "3D Slicer's Python package (Testing/slicer_emulation)")
    package.__path__ = [str(vendor_dir(tag) / "slicer")]
    package.__file__ = str(vendor_dir(tag) / "slicer" / "__init__.py")
    for name in dir(slicer_core):
        if not name.startswith("_"):
            setattr(package, name, getattr(slicer_core, name))
    for submodule in ("modules", "moduleNames"):
        created = types.ModuleType(f"slicer.{submodule}")
        sys.modules[f"slicer.{submodule}"] = created
        setattr(package, submodule, created)
    return package


def start(tag: str, slicer_home: str | os.PathLike, module_paths=(), testing: bool = True, settings_dir=None):
    """Set up `qt`, `ctk`, `slicer` and `slicer.app` in this process (once) and load the
    scripted modules found in `module_paths`; returns the application."""
    from PySide6 import QtCore, QtWidgets

    from . import mrml_widgets, pythonqt

    for name in [name for name in sys.modules if name == "slicer" or name.startswith("slicer.")]:
        del sys.modules[name]
    sys.modules.update(pythonqt.make_modules())
    slicer = _build_slicer_package(tag)
    sys.modules["slicer"] = slicer

    QtCore.QCoreApplication.setOrganizationName("LUnetEmulation")
    QtCore.QCoreApplication.setApplicationName("Slicer")
    if settings_dir is not None:
        QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, str(settings_dir))
        QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
    application_class = pythonqt.wrap(QtWidgets.QApplication, "qSlicerApplication")
    app = QtWidgets.QApplication.instance() or application_class([sys.argv[0], "-platform", "offscreen"])
    _install_application_api(app, tag, Path(slicer_home), testing)
    slicer.app = app

    for name in ("qMRMLWidget", "qMRMLNodeComboBox", "qMRMLSegmentationShow3DButton", "qMRMLTableView"):
        setattr(slicer, name, mrml_widgets.widget_class(name))
    for name in ("qMRMLSliderWidget", "qMRMLRangeWidget", "qMRMLSpinBox", "qSlicerWidget", "qMRMLScreenShotDialog"):
        setattr(slicer, name, mrml_widgets.widget_class(name))
    slicer.qSlicerScriptedLoadableModule = ScriptedModule
    slicer.qSlicerScriptedLoadableModuleWidget = _widget_representation_class()

    # The scene with the application logic and module logics Slicer registers (kept alive here:
    # the application logic does not own them). Built without importing LUnetSegmentationLib,
    # which must come from the module folder the scripted module is loaded from.
    scene = slicer.vtkMRMLScene()
    application_logic = slicer.vtkSlicerApplicationLogic()
    application_logic.SetMRMLScene(scene)
    app._logics = {}
    for logic_name, factory in (("Colors", slicer.vtkMRMLColorLogic), ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
                                ("Volumes", slicer.vtkSlicerVolumesLogic), ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                                ("Markups", slicer.vtkSlicerMarkupsLogic)):
        logic = factory()
        logic.SetMRMLApplicationLogic(application_logic)
        logic.SetMRMLScene(scene)
        application_logic.SetModuleLogic(logic_name, logic)
        app._logics[logic_name] = logic
    application_logic.SetColorLogic(app._logics["Colors"])
    app._applicationLogic = application_logic
    slicer.mrmlScene = scene
    slicer.app.applicationLogic = lambda: application_logic
    slicer.selfTests = {}
    for logic_name, module_name in (("Segmentations", "segmentations"), ("Volumes", "volumes"), ("Colors", "colors"),
                                    ("SubjectHierarchy", "subjecthierarchy"), ("Markups", "markups")):
        logic = app._logics[logic_name]
        setattr(slicer.modules, module_name, types.SimpleNamespace(name=logic_name, logic=lambda logic=logic: logic, path=""))
        setattr(slicer.moduleNames, logic_name, logic_name)

    importlib.import_module("slicer.util")  # as slicerqt.py does at start-up
    app._mainWindow = _main_window(app)
    for folder in module_paths:
        for path in sorted(Path(folder).glob("*.py")):
            _load_scripted_module(app, path)
    return app


def _install_application_api(app, tag: str, slicer_home: Path, testing: bool):
    """What qSlicerApplication offers that the vendored files and the module call."""
    from PySide6 import QtCore

    app.slicerHome = str(slicer_home)
    app.temporaryPath = str(slicer_home / "tmp")
    Path(app.temporaryPath).mkdir(parents=True, exist_ok=True)
    app.applicationName = "Slicer"
    app.majorVersion, app.minorVersion = (int(part) for part in tag[1:].split(".")[:2])
    app.documentationBaseUrl = "https://slicer.readthedocs.io/en/latest"
    options = CommandOptions(testing)
    app._modules = {}
    manager = _module_manager(app)
    app.testingEnabled = lambda: options.testingEnabled
    app.commandOptions = lambda: options
    app.moduleManager = lambda: manager
    app.layoutManager = lambda: None
    app.userSettings = app.settings = lambda: QtCore.QSettings()
    if not QtCore.QSettings().contains("Developer/SelfTestDisplayMessageDelay"):
        QtCore.QSettings().setValue("Developer/SelfTestDisplayMessageDelay", 0)  # Slicer's settings default
    app.coreIOManager = lambda: CoreIOManager(app)
    app.startupEnvironment = lambda: dict(os.environ)
    app.moduleDocumentationUrl = lambda name: f"{app.documentationBaseUrl}/user_guide/modules/{name.lower()}.html"
    app.pauseRender = app.resumeRender = lambda: None
    app.mainWindow = lambda: app._mainWindow
    app.topLevelWidgets = lambda: [app._mainWindow]


def _module_manager(app):
    from PySide6 import QtCore
    from PySide6.QtCore import Signal

    from .pythonqt import PythonQtObject

    class qSlicerModuleManager(PythonQtObject, QtCore.QObject):
        moduleAboutToBeUnloaded = Signal(str)

        def module(self, name):
            return app._modules.get(name)

        def modulesNames(self):
            return list(app._modules)

    return qSlicerModuleManager()


def _main_window(app):
    from PySide6 import QtWidgets

    from .pythonqt import wrap

    window = wrap(QtWidgets.QMainWindow, "qSlicerMainWindow")()
    window.setObjectName("qSlicerMainWindow")
    selector = ModuleSelector(app)
    window.moduleSelector = lambda: selector
    return window


class CoreIOManager:
    """qSlicerCoreIOManager.loadNodes for volumes (the self-test's loadVolume), through the
    Volumes logic's archetype reader, as Slicer's volume reader plugin does."""

    def __init__(self, app):
        self.app = app

    def fileType(self, filename):
        return "VolumeFile"

    def loadNodes(self, fileType, properties, loadedNodes=None, userMessages=None):
        if fileType != "VolumeFile":
            return False
        path = properties["fileName"]
        name = properties.get("name") or Path(path).name.split(".")[0]
        volumes = self.app._logics["Volumes"]
        node = volumes.AddArchetypeVolume(str(path), name, 0)
        if node is None:
            return False
        node.CreateDefaultDisplayNodes()
        if loadedNodes is not None:
            loadedNodes.AddItem(node)
        return True


def _load_scripted_module(app, path: Path):
    """As qSlicerScriptedLoadableModuleFactory: the folder on sys.path, the file imported under
    the module's name, `<Name>(parent)` constructed with parent.path already set."""
    import slicer

    name = path.stem
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    python_module = importlib.import_module(name)
    module_class = getattr(python_module, name, None)
    if module_class is None:
        return None
    parent = ScriptedModule(app, name, str(path))
    instance = module_class(parent)
    parent.instance = instance
    app._modules[name] = parent
    setattr(slicer.modules, name.lower(), parent)
    setattr(slicer.modules, name + "Instance", instance)
    setattr(slicer.moduleNames, name, name)
    return parent


def close_scene():
    """File > Close Scene: the scene's Clear, which sends StartCloseEvent and EndCloseEvent."""
    import slicer

    slicer.mrmlScene.Clear(False)


def unload_modules(app):
    """Application exit: moduleAboutToBeUnloaded for each module (its widget's cleanup())."""
    for name in list(app._modules):
        app.moduleManager().moduleAboutToBeUnloaded.emit(name)
