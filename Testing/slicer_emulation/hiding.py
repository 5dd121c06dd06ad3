"""Packages "not installed" in an emulated Slicer, until its pip installs them.

LUNET_EMULATION_HIDE="torch,onnxruntime" hides those packages from imports, from
importlib.util.find_spec and from their package metadata, in the emulated Slicer and in every
Python it starts (a sitecustomize on PYTHONPATH installs the same hook there). The stand-in
launcher records `PythonSlicer -m pip install ...` and `-m light_the_torch install ...` in
LUNET_EMULATION_INSTALLED (a folder: one file per package "installed") instead of downloading;
from then on the package is visible again, so the module's install-then-use path runs end to end
on the packages this environment already has.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

SITECUSTOMIZE = "import sys; sys.path.insert(0, {folder!r}); import slicer_emulation.hiding as _h; _h.install()\n"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def hidden() -> set:
    installed = Path(os.environ.get("LUNET_EMULATION_INSTALLED", "/nonexistent"))
    names = {_normalise(n) for n in os.environ.get("LUNET_EMULATION_HIDE", "").split(",") if n.strip()}
    return {name for name in names if not (installed / name).exists()}


def record_install(requirements) -> list:
    """The launcher's pip: mark each requirement's package installed; returns the names."""
    folder = Path(os.environ["LUNET_EMULATION_INSTALLED"])
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for requirement in requirements:
        if requirement.startswith("-"):
            continue
        name = _normalise(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        (folder / name).write_text(requirement, encoding="utf-8")
        names.append(name)
    return names


def install() -> None:
    """Hide the packages of LUNET_EMULATION_HIDE in this process (idempotent)."""
    import importlib.machinery
    import importlib.metadata

    if getattr(importlib.machinery.PathFinder, "_lunet_hidden", False):
        return
    find_spec = importlib.machinery.PathFinder.find_spec.__func__
    from_name = importlib.metadata.Distribution.from_name.__func__

    def hiding_find_spec(cls, fullname, path=None, target=None):
        if path is None and _normalise(fullname.split(".")[0]) in hidden():
            return None
        return find_spec(cls, fullname, path, target)

    def hiding_from_name(cls, name):
        if _normalise(name) in hidden():
            raise importlib.metadata.PackageNotFoundError(name)
        return from_name(cls, name)

    importlib.machinery.PathFinder.find_spec = classmethod(hiding_find_spec)
    importlib.metadata.Distribution.from_name = classmethod(hiding_from_name)
    importlib.machinery.PathFinder._lunet_hidden = True


def write_sitecustomize(folder: Path) -> Path:
    """A folder for PYTHONPATH whose sitecustomize installs the hook in every child Python."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(folder=str(Path(__file__).resolve().parents[1])), encoding="utf-8")
    return folder
