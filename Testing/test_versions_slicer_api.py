"""Every Slicer/MRML/VTK call in the shipped code exists in Slicer 5.8.1 (the oldest Slicer the
README promises), checked against Testing/data/slicer_5.8.1_api.txt, which
scripts/extract_slicer_api.py extracted from Slicer's sources at tag v5.8.1 (the command is in the
file's header). This caught vtkSegment.SetTerminology (5.10+) and would catch its kind again.

Method names are matched by name, not by class (the receiver's type is unknown statically): a
call passes when some 5.8.1 class declares that method. Calls that are not Slicer's are allowed
when VTK's core classes or SimpleITK's Image (whose API Slicer does not version) have them.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
API_FILE = REPO / "Testing" / "data" / "slicer_5.8.1_api.txt"
MODULE_DIR = REPO / "LUnetSegmentation"
# Receivers that are other libraries (their own versions, pinned elsewhere), not Slicer objects.
OTHER_LIBRARIES = {"sitk", "SimpleITK", "np", "numpy", "torch", "nn", "F", "qt", "ctk", "math", "os", "json", "re"}
# Core VTK classes the shipped code uses directly (vtk.vtkMatrix4x4() etc.); their methods are
# VTK's, stable across the VTK 9 versions Slicer 5.8-5.12 ship.
VTK_CORE = ["vtkMatrix4x4", "vtkTransform", "vtkGeneralTransform", "vtkImageData", "vtkStringArray", "vtkPointData",
            "vtkDataArray", "vtkCommand", "vtkObject", "vtkCollection", "vtkLinearTransform", "vtkTable"]


def shipped_files() -> list[Path]:
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    names = re.findall(r"^\s*\$\{MODULE_NAME\}(\S*\.py)\s*$", cmake, re.M)
    # What the extension installs (training/, apps/bids/ and apps/web/ are not in the list).
    return [MODULE_DIR / f"LUnetSegmentation{name}" for name in names]


def load_api():
    entries = [line.strip() for line in API_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    methods = {e.split(".", 1)[1] for e in entries if not e.startswith(("slicer.util.", "parameterNodeWrapper."))}
    classes = {e.split(".", 1)[0] for e in entries if not e.startswith(("slicer.util.", "parameterNodeWrapper."))}
    util = {e[len("slicer.util."):] for e in entries if e.startswith("slicer.util.")}
    wrapper = {e[len("parameterNodeWrapper."):] for e in entries if e.startswith("parameterNodeWrapper.")}
    return methods, classes, util, wrapper


def dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def calls(path: Path):
    """(line, receiver dotted name or "", attribute) of every `receiver.attribute(...)` call."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node.lineno, dotted(node.func.value), node.func.attr, node


def imported_modules(path: Path) -> set[str]:
    """Names a file binds by import (other than slicer and vtk): calls on them are not on Slicer objects."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names - {"slicer", "vtk"}


def other_library_has(name: str) -> bool:
    """SimpleITK (images, filters, registration, transforms) or core VTK has this method."""
    vtk = pytest.importorskip("vtk")
    sitk = pytest.importorskip("SimpleITK")
    sitk_classes = [getattr(sitk, attr) for attr in dir(sitk) if isinstance(getattr(sitk, attr), type)]
    return any(hasattr(cls, name) for cls in sitk_classes) or any(hasattr(getattr(vtk, cls), name) for cls in VTK_CORE)


def test_the_list_was_extracted_from_v581():
    header = API_FILE.read_text().splitlines()[:3]
    assert "v5.8.1" in header[0] and "extract_slicer_api.py" in header[1]
    methods, classes, util, wrapper = load_api()
    # Sanity: what 5.8.1 has and lacks, so an empty or wrong list cannot pass everything.
    assert {"SetTag", "GetTerminologyEntryTagName", "SetBinaryLabelmapToSegment"} <= methods
    assert "SetTerminology" not in methods
    assert "vtkSegment" in classes and "launchConsoleProcess" in util and "connectParametersToGui" in wrapper


def test_shipped_code_calls_only_what_slicer_581_has():
    files = shipped_files()
    assert any(f.name == "mrml.py" for f in files) and any(f.name == "LUnetSegmentation.py" for f in files)
    missing = unknown_calls(files)
    assert not missing, "calls that Slicer 5.8.1 lacks:\n" + "\n".join(missing)


def test_the_check_flags_calls_that_581_lacks(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import slicer\n"
        "segment.SetTerminology(entry)\n"
        "segment.SetTag(segment.GetTerminologyEntryTagName(), entry)\n"
        "slicer.util.notInSlicer()\n"
        "scene.AddNewNodeByClass('vtkMRMLNoSuchNode')\n"
    )
    flagged = unknown_calls([probe], root=tmp_path)
    assert len(flagged) == 3, flagged
    assert any("SetTerminology" in f for f in flagged) and any("notInSlicer" in f for f in flagged)


def unknown_calls(files, root: Path = REPO) -> list[str]:
    methods, classes, util, wrapper = load_api()
    missing = []
    for path in files:
        modules = imported_modules(path)
        for line, receiver, name, node in calls(path):
            where = f"{path.relative_to(root)}:{line} {receiver}.{name}"
            if receiver == "slicer.util":
                if name not in util:
                    missing.append(where + " (not in slicer.util of 5.8.1)")
            elif receiver in ("slicer", "vtk") and name.startswith("vtk"):
                known = name in classes or (receiver == "vtk" and hasattr(pytest.importorskip("vtk"), name))
                if not known:
                    missing.append(where + " (no such class in 5.8.1)")
            elif name in ("connectGui", "connectParametersToGui", "disconnectGui"):
                if name not in wrapper:
                    missing.append(where + " (not in parameterNodeWrapper of 5.8.1)")
            elif name[:1].isupper() and receiver.split(".")[0] not in OTHER_LIBRARIES | modules:
                if name not in methods and not other_library_has(name):
                    missing.append(where + " (no 5.8.1 class declares it)")
            # Node classes named in strings: AddNewNodeByClass("vtkMRML..."), IsA(...), GetNodesByClass(...)
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and re.fullmatch(r"vtk(MRML|Slicer)\w+", arg.value):
                    if arg.value not in classes:
                        missing.append(f"{where}({arg.value!r}) (no such class in 5.8.1)")
    return missing
