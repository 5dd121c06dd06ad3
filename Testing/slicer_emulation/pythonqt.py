"""A thin PythonQt-like layer over PySide6: the `qt` and `ctk` modules as Slicer's Python sees them.

What PythonQt does that PySide6 does not, and this layer adds (only that):
- Qt properties are Python attributes: `label.text = "x"`, `button.enabled`, `combo.currentIndex`
  (reading `label.text` gives the string, not the bound method);
- `name` is the object name (Slicer's `childWidgetVariables` relies on it);
- `obj.connect("clicked(bool)", slot)` / `obj.disconnect(...)` with Qt signatures;
- `qt.QUiLoader` builds every widget of a .ui file as this layer's class (so `type(widget) ==
  qt.QComboBox` holds, as parameterNodeWrapper's connectors test), and Slicer's own widget
  classes (`qMRMLNodeComboBox`, `ctkCollapsibleButton`, ...) from `mrml_widgets`.

Everything else is PySide6 as it is. What PySide6 cannot stand in for (PythonQt's own argument
conversions, C++ widgets' behaviour beyond what `mrml_widgets` implements) is listed in
Testing/slicer_emulation/README.md.
"""
from __future__ import annotations

import types

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets

_QT_MODULES = (QtCore, QtGui, QtWidgets, QtUiTools)
_CLASSES: dict[str, type] = {}


_PROPERTY_NAMES: dict[type, frozenset] = {}


def _property_names(cls) -> frozenset:
    names = _PROPERTY_NAMES.get(cls)
    if names is None:
        meta = cls.staticMetaObject
        names = _PROPERTY_NAMES[cls] = frozenset(meta.property(i).name() for i in range(meta.propertyCount()))
    return names


class PythonQtObject:
    """Mixin: PythonQt's attribute view of Qt properties, `name`, and string-signature connect."""

    def __getattribute__(self, name):
        if name[:1] != "_" and name in _property_names(type(self)):
            return QtCore.QObject.property(self, name)
        if name == "name":
            return QtCore.QObject.objectName(self)
        if name in ("connect", "disconnect"):  # Shiboken would hand out QObject's own
            return types.MethodType(getattr(PythonQtObject, name), self)
        return super().__getattribute__(name)

    def __setattr__(self, name, value):
        if name[:1] != "_" and name in _property_names(type(self)):
            if isinstance(value, tuple):
                value = list(value)  # PythonQt converts any sequence to a QStringList/QVariantList
            if not QtCore.QObject.setProperty(self, name, value):
                raise AttributeError(f"cannot set Qt property {name!r} of {type(self).__name__} to {value!r}")
            return
        if name == "name":
            QtCore.QObject.setObjectName(self, value)
            return
        super().__setattr__(name, value)

    def connect(self, signature, slot):  # PythonQt: obj.connect("clicked(bool)", slot)
        getattr(self, _signal_name(signature)).connect(slot)
        return True

    def disconnect(self, signature, slot=None):
        signal = getattr(self, _signal_name(signature))
        try:
            signal.disconnect(slot) if slot is not None else signal.disconnect()
        except (RuntimeError, TypeError):
            return False
        return True


def _signal_name(signature: str) -> str:
    if not isinstance(signature, str) or "(" not in signature:
        raise TypeError(f"connect() takes a Qt signature such as 'clicked(bool)', not {signature!r}")
    return signature.split("(", 1)[0].strip()


def wrap(cls: type, name: str | None = None) -> type:
    """The PythonQt-like class for a PySide6 QObject class (one class per name)."""
    name = name or cls.__name__
    if name not in _CLASSES:
        _CLASSES[name] = type(name, (PythonQtObject, cls), {"__module__": "qt"})
    return _CLASSES[name]


class UiLoader(QtUiTools.QUiLoader):
    """QUiLoader that builds PythonQt-like widgets, and Slicer's widgets from `mrml_widgets`, and
    makes the .ui file's <connections> (Qt cannot: the emulated signals carry Python objects, not
    `vtkMRMLScene*`), so a widget without its connection gets no scene, as in Slicer."""

    def load(self, device, parent=None):
        widget = super().load(device, parent) if parent is not None else super().load(device)
        path = device.fileName() if hasattr(device, "fileName") else str(device)
        if widget is not None and path:
            _connect_ui_connections(widget, path)
        return widget

    def createWidget(self, className, parent=None, name=""):
        from . import mrml_widgets

        cls = mrml_widgets.widget_class(className) or qt_class(className)
        if cls is None:
            return super().createWidget(className, parent, name)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget


def _connect_ui_connections(root, path: str) -> None:
    import xml.etree.ElementTree as ElementTree

    def named(name):
        return root if QtCore.QObject.objectName(root) == name else root.findChild(QtCore.QObject, name)

    for connection in ElementTree.parse(path).getroot().iter("connection"):
        sender, receiver = named(connection.findtext("sender")), named(connection.findtext("receiver"))
        signal, slot = _signal_name(connection.findtext("signal")), _signal_name(connection.findtext("slot"))
        if sender is None or receiver is None:
            raise RuntimeError(f"{path}: a connection names a widget that is not there ({connection.findtext('sender')} -> {connection.findtext('receiver')})")
        getattr(sender, signal).connect(getattr(receiver, slot))


def _quiet_ui_loader_connections(mode, context, message):
    # QUiLoader's own attempt at those connections fails (see UiLoader); the rest is printed.
    if "QObject::connect" not in message and "propagateSizeHints" not in message:
        print(message)


QtCore.qInstallMessageHandler(_quiet_ui_loader_connections)


def qt_class(name: str):
    if name in _CLASSES:
        return _CLASSES[name]
    for module in _QT_MODULES:
        value = getattr(module, name, None)
        if isinstance(value, type) and issubclass(value, QtCore.QObject):
            return wrap(value, name)
    return None


def _qt_getattr(name):
    if name == "QUiLoader":
        return _CLASSES.setdefault("QUiLoader", type("QUiLoader", (PythonQtObject, UiLoader), {"__module__": "qt"}))
    cls = qt_class(name)
    if cls is not None:
        return cls
    for module in _QT_MODULES:
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module 'qt' has no attribute {name!r} (not in PySide6's QtCore, QtGui, QtWidgets)")


def _ctk_getattr(name):
    from . import mrml_widgets

    cls = mrml_widgets.widget_class(name)
    if cls is None:
        raise AttributeError(f"module 'ctk' has no attribute {name!r}")
    return cls


def make_modules() -> dict[str, types.ModuleType]:
    qt = types.ModuleType("qt", "PythonQt-like view of PySide6 (Testing/slicer_emulation)")
    qt.__getattr__ = _qt_getattr
    ctk = types.ModuleType("ctk", "CTK widgets the module uses, emulated over PySide6")
    ctk.__getattr__ = _ctk_getattr
    return {"qt": qt, "ctk": ctk}
