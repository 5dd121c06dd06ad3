"""A throw-away "Slicer installation" for one emulated session: <home>/bin/PythonSlicer (the
stand-in launcher), and a copy of the module folder under a path with spaces and non-ASCII
characters (the extension as a user installs it)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODULE_FOLDER = REPO / "LUnetSegmentation"
ODD_NAME = "Slicer Extensions Ünïcødé ü"


def make_installation(root: Path, tag: str) -> tuple[Path, Path]:
    """(slicer home, module folder) under `root`; the launcher runs this test Python."""
    home = Path(root) / f"Slicer {tag.lstrip('v')} Jürgen's"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    launcher = home / "bin" / "PythonSlicer"
    launcher.write_text(f"#!/bin/sh\nexec \"{sys.executable}\" \"{HERE / 'launcher.py'}\" \"$@\"\n", encoding="utf-8")
    launcher.chmod(0o755)
    module_folder = Path(root) / ODD_NAME / "LUnetSegmentation"
    # LUNET_EMULATION_MODULE_SOURCE: another copy of the module folder (e.g. an older commit's,
    # to show that a scenario fails without a fix).
    source = Path(os.environ.get("LUNET_EMULATION_MODULE_SOURCE") or MODULE_FOLDER)
    if not module_folder.exists():
        shutil.copytree(source, module_folder, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    return home, module_folder


def session_environment(tag: str, home: Path) -> dict:
    environment = dict(os.environ)
    environment["LUNET_EMULATED_SLICER"] = tag
    # As in Slicer, the launcher's folder is on the PATH (slicer.util._executePythonModule needs it).
    environment["PATH"] = str(home / "bin") + os.pathsep + environment.get("PATH", "")
    environment.setdefault("QT_QPA_PLATFORM", "offscreen")
    return environment
