"""Build a zip that a Slicer user unpacks and adds under "Additional module paths".

The files come from the lists in LUnetSegmentation/CMakeLists.txt (MODULE_PYTHON_SCRIPTS and
MODULE_PYTHON_RESOURCES), the same lists the Extension Manager build installs, so the zip and the
extension cannot ship different files. Run from anywhere:

    .venv/bin/python scripts/make_package.py            # -> dist/LUnetSegmentation-<version>.zip
    .venv/bin/python scripts/make_package.py --out DIR

The zip holds one folder, LUnetSegmentation/, laid out as Slicer installs a scripted module:
LUnetSegmentation.py, LUnetSegmentationLib/, Resources/ (panel, icon, model weights and card),
plus LICENSE and INSTALL.txt. In Slicer: Edit > Application Settings > Modules > Additional module
paths > add the unpacked LUnetSegmentation folder, restart, and find the module under Segmentation.
"""
from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE_NAME = "LUnetSegmentation"
MODULE_DIR = REPO / MODULE_NAME
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"

INSTALL_TEXT = """LUnet Segmentation for 3D Slicer (version {version})

Install without the Extension Manager:
1. Install the PyTorch extension from Slicer's Extension Manager and restart Slicer.
2. Edit > Application Settings > Modules > Additional module paths: add the folder
   {folder}/ that holds LUnetSegmentation.py (the folder next to this file).
3. Restart Slicer. The module is under Segmentation > LUnet Segmentation.
On first use the module offers to install PyTorch through the PyTorch extension.

Code: Apache-2.0 (LICENSE). Model weights: CC-BY-SA 4.0, see
Resources/Models/hippocampus_lunet.json for the attribution.
"""


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def cmake_set_lists(cmake_file: Path = MODULE_CMAKE) -> dict[str, list[str]]:
    """The `set(NAME item item ...)` lists of a CMake file, with ${VAR} expanded from earlier sets."""
    text = _strip_comments(cmake_file.read_text())
    values: dict[str, list[str]] = {}
    for name, body in re.findall(r"\bset\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s+([^)]*)\)", text, flags=re.IGNORECASE):
        items = []
        for item in body.split():
            item = item.strip('"')
            item = re.sub(r"\$\{(\w+)\}", lambda m: " ".join(values.get(m.group(1), [])), item)
            items.append(item)
        values[name] = items
    return values


def module_files(cmake_file: Path = MODULE_CMAKE) -> list[str]:
    """Paths (relative to the module folder) of every script and resource the module ships."""
    lists = cmake_set_lists(cmake_file)
    missing = [name for name in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES") if name not in lists]
    if missing:
        raise ValueError(f"{cmake_file} does not set {', '.join(missing)}")
    return lists["MODULE_PYTHON_SCRIPTS"] + lists["MODULE_PYTHON_RESOURCES"]


def version() -> str:
    init = (MODULE_DIR / f"{MODULE_NAME}Lib" / "__init__.py").read_text()
    match = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", init, flags=re.MULTILINE)
    return match.group(1) if match else "0"


def build(out_dir: Path) -> Path:
    files = module_files()
    absent = [name for name in files if not (MODULE_DIR / name).is_file()]
    if absent:
        raise FileNotFoundError(f"{MODULE_CMAKE} lists files that do not exist: {', '.join(absent)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{MODULE_NAME}-{version()}.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.write(MODULE_DIR / name, f"{MODULE_NAME}/{name}")
        archive.write(REPO / "LICENSE", "LICENSE")
        archive.writestr("INSTALL.txt", INSTALL_TEXT.format(version=version(), folder=MODULE_NAME))
    partial.replace(target)  # never leave a half-written zip under the final name
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    try:
        target = build(args.out)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(target) as archive:
        count = len(archive.namelist())
    print(f"wrote {target} ({count} files, {target.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
