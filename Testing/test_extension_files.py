"""Extension Manager readiness, kept true: build lists, index descriptions, images, imports, package.

The Extension Manager builds the extension from LUnetSegmentation.json (ExtensionsIndex) and the
CMake files; a file missing from the module's CMake lists is silently left out of the installed
extension, and a heavy import at file scope slows or breaks Slicer's start-up.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lunet_test_helpers import PARTS_MODEL

REPO = Path(__file__).resolve().parents[1]
MODULE_NAME = "LUnetSegmentation"
MODULE_DIR = REPO / MODULE_NAME
LIB_DIR = MODULE_DIR / f"{MODULE_NAME}Lib"
RAW_PREFIX = "https://raw.githubusercontent.com/lunet-segmentation/SlicerLUnetSegmentation/main/"
HOMEPAGE = "https://github.com/lunet-segmentation/SlicerLUnetSegmentation"

# Keys of the ExtensionsIndex catalog entry schema (Slicer/Schemas, v1.0.x).
SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}
SCHEMA_KEYS = SCHEMA_REQUIRED | {"scm_revision", "scm_type", "build_dependencies", "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
# A subset of the categories the ExtensionsIndex checker accepts (the ones that could fit here).
ACCEPTED_CATEGORIES = {"Segmentation", "Neuroimaging", "Quantification", "Analysis", "Utilities"}
# Importable at file scope of the module: what Slicer itself bundles.
SLICER_BUNDLED = {"slicer", "qt", "ctk", "vtk", "numpy", "SimpleITK", "mrml", "vtkSegmentationCore"}
# The core may also import torch at file scope in files only reached after torch is ensured.
LIB_ALLOWED_THIRD_PARTY = SLICER_BUNDLED | {"torch"}
# Core modules the module panel, `from LUnetSegmentationLib import segment` and the console use
# before PyTorch is known to be installed: none of them may pull torch in at import time.
LIGHT_ENTRY_POINTS = [
    "LUnetSegmentationLib",
    "LUnetSegmentationLib.slicer_adapter.api",
    "LUnetSegmentationLib.slicer_adapter.mrml",
    "LUnetSegmentationLib.runtime.weights",
    "LUnetSegmentationLib.runtime.terminology",
    "LUnetSegmentationLib.files.volumeio",
]
SKIPPED_DIRS = {"__pycache__"}
# Not part of the Slicer extension, whole folders: the training code (it needs the repository:
# datasets, configs/, scripts), the BIDS App (Dask) and the web app (trame-slicer), each run
# from the source install in a Python environment of its own.
NOT_IN_EXTENSION = (
    "LUnetSegmentationLib/training/",
    "LUnetSegmentationLib/apps/bids/",
    "LUnetSegmentationLib/apps/web/",
    "LUnetSegmentationLib/files/dicom/",  # DICOM in/out: an optional extra of the source install (pydicom, highdicom)
)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_package = load_script("make_package")


def cmake_sets(path: Path) -> dict[str, str]:
    """`set(NAME "value")` of a CMake file as raw strings (quotes removed)."""
    text = "\n".join(line.split("#", 1)[0] if not line.lstrip().startswith("set(EXTENSION") else line for line in path.read_text().splitlines())
    values = {}
    for name, body in re.findall(r"\bset\s*\(\s*(\w+)\s+(\"[^\"]*\"|[^)]*)\)", text):
        values[name] = body.strip().strip('"')
    return values


def read_s4ext() -> dict[str, str]:
    values = {}
    for line in (REPO / f"{MODULE_NAME}.s4ext").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        values[key] = value.strip()
    return values


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    return struct.unpack(">II", header[16:24])


def files_on_disk() -> set[str]:
    found = set()
    for path in MODULE_DIR.rglob("*"):
        relative = path.relative_to(MODULE_DIR)
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in relative.parts):
            continue
        if relative.as_posix().startswith(NOT_IN_EXTENSION):
            continue
        if path.is_file() and relative.name != "CMakeLists.txt":
            found.add(relative.as_posix())
    return found


# ----------------------------------------------------------------------------- module CMake lists


def test_every_module_file_is_listed_and_every_listed_file_exists():
    listed = make_package.module_files()
    assert len(listed) == len(set(listed)), "a file is listed twice in the module CMakeLists.txt"
    on_disk = files_on_disk()
    unlisted = sorted(on_disk - set(listed))
    assert not unlisted, f"files under {MODULE_NAME}/ that the Extension Manager build would leave out (add them to {MODULE_NAME}/CMakeLists.txt): {unlisted}"
    absent = sorted(set(listed) - on_disk)
    assert not absent, f"{MODULE_NAME}/CMakeLists.txt lists files that do not exist: {absent}"


def test_extension_files_never_import_the_web_app():
    """The desktop extension must work without trame-slicer or the web folder: the only import
    of `web` is the `serve` command's, which turns an ImportError into advice."""
    found = []
    for name in make_package.module_files():
        if name.endswith(".py"):
            for line in (MODULE_DIR / name).read_text().splitlines():
                if re.match(r"\s*(from|import)\s+(\.+|LUnetSegmentationLib\.)?(apps\.)?web\b", line) or re.match(
                    r"\s*from\s+(\.+|LUnetSegmentationLib|LUnetSegmentationLib\.apps|\.+apps)\s+import\s+.*\bweb\b", line
                ):
                    found.append((name, line.strip()))
    assert found == [("LUnetSegmentationLib/apps/cli.py", "from .web.app import is_loopback, serve")]


def test_serve_without_the_web_environment_says_how_to_get_it(capsys):
    pytest.importorskip("slicer")  # the main environment: no trame-slicer there
    if importlib.util.find_spec("trame_slicer") is not None:
        pytest.skip("this environment has trame-slicer")
    from LUnetSegmentationLib.apps import cli

    assert cli.main(["serve", "--port", "1"]) == 2
    assert "setup_web_env.sh" in capsys.readouterr().err


def test_listed_files_cover_each_kind():
    lists = make_package.cmake_set_lists()
    scripts, resources = lists["MODULE_PYTHON_SCRIPTS"], lists["MODULE_PYTHON_RESOURCES"]
    assert all(name.endswith(".py") for name in scripts), "only Python files belong in MODULE_PYTHON_SCRIPTS"
    assert f"{MODULE_NAME}.py" in scripts and f"{MODULE_NAME}Lib/__init__.py" in scripts
    assert not any(name.endswith(".py") for name in resources)
    for required in (f"Resources/UI/{MODULE_NAME}.ui", f"Resources/Icons/{MODULE_NAME}.png"):
        assert required in resources
    cards = [name for name in resources if name.startswith("Resources/Models/") and name.endswith(".json")]
    assert cards, "no model card listed"
    for card_name in cards:
        card = json.loads((MODULE_DIR / card_name).read_text())
        assert f"Resources/Models/{card['weights']['file']}" in resources, f"weights of {card_name} are not listed"


def test_module_cmake_builds_a_scripted_module_with_tests():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert re.search(r"set\(MODULE_NAME\s+LUnetSegmentation\)", text)
    macro = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", text, flags=re.DOTALL)
    assert macro, "slicerMacroBuildScriptedModule call missing"
    for word in ("NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS"):
        assert re.search(rf"\b{word}\b", macro.group(1)), f"slicerMacroBuildScriptedModule lacks {word}"
    testing = re.search(r"if\(BUILD_TESTING\)(.*?)endif\(\)", text, flags=re.DOTALL)
    assert testing and re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py\s*\)", testing.group(1))


# ----------------------------------------------------------------------------- extension metadata


def test_top_level_cmake_follows_the_extension_template():
    text = (REPO / "CMakeLists.txt").read_text()
    # The index checker takes the first project() name and compares it with the .json file name.
    assert re.findall(r"project\s*\(\s*([^\s\)]+)", text, flags=re.IGNORECASE)[0] == MODULE_NAME
    sets = cmake_sets(REPO / "CMakeLists.txt")
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert sets.get(f"EXTENSION_{key}"), f"EXTENSION_{key} is not set"
    assert sets["EXTENSION_HOMEPAGE"] == HOMEPAGE
    assert sets["EXTENSION_DEPENDS"].split() == ["PyTorch"]
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", f"add_subdirectory({MODULE_NAME})",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text, f"{line} missing from CMakeLists.txt"
    # The index checker's own patterns (no space before the closing parenthesis for screenshots).
    assert re.search(r'set\s*\(EXTENSION_ICONURL\s*"(https?://[^"]+)"[ ]*\)', text)
    assert re.search(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"(https?://[^"]+)"\)', text)


def test_icon_and_screenshot_urls_point_at_files_in_the_repository():
    sets = cmake_sets(REPO / "CMakeLists.txt")
    icon = sets["EXTENSION_ICONURL"]
    screenshots = sets["EXTENSION_SCREENSHOTURLS"].split()
    assert screenshots, "at least one screenshot"
    for url in [icon, *screenshots]:
        assert url.startswith(RAW_PREFIX), f"{url} is not a raw URL of this repository's main branch"
        path = REPO / url[len(RAW_PREFIX):]
        assert path.is_file(), f"{url} refers to {path}, which does not exist"
        assert path.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif")
    assert png_size(REPO / icon[len(RAW_PREFIX):]) == (128, 128), "the extension icon must be 128x128"
    assert png_size(MODULE_DIR / "Resources" / "Icons" / f"{MODULE_NAME}.png")[0] >= 64
    for url in screenshots:
        width, height = png_size(REPO / url[len(RAW_PREFIX):])
        assert width >= 600 and height >= 300, f"{url} is too small to be a useful screenshot"


def test_index_json_has_the_schema_keys_and_an_accepted_category():
    entry = json.loads((REPO / f"{MODULE_NAME}.json").read_text())
    assert SCHEMA_REQUIRED <= set(entry), f"missing keys: {SCHEMA_REQUIRED - set(entry)}"
    assert set(entry) <= SCHEMA_KEYS, f"keys the schema does not allow: {set(entry) - SCHEMA_KEYS}"
    assert re.match(r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1\.0\.\d+\.json#?$", entry["$schema"])
    assert entry["category"] in ACCEPTED_CATEGORIES
    assert entry["scm_url"].startswith("https://") and "slicer" in entry["scm_url"].rsplit("/", 1)[-1].lower()
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert entry.get("build_subdirectory", ".") == "."
    assert entry["build_dependencies"] == ["PyTorch"]


def test_index_json_is_formatted_as_the_index_lint_wants():
    # The ExtensionsIndex lint runs prettier with prettier-plugin-multiline-arrays: two-space
    # indent, every array element on its own line (a one-line ["PyTorch"] is rejected), and a
    # final newline. For this flat entry that is exactly json.dumps(indent=2) plus a newline.
    text = (REPO / f"{MODULE_NAME}.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert '"build_dependencies": [\n    "PyTorch"\n  ]' in text


def test_description_names_the_weights_licence():
    # The weights are CC-BY-SA 4.0 (trained on Decathlon data), unlike the Apache-2.0 code.
    description = cmake_sets(REPO / "CMakeLists.txt")["EXTENSION_DESCRIPTION"]
    assert "CC-BY-SA 4.0" in description and "weights" in description


def test_json_s4ext_and_cmake_agree():
    entry = json.loads((REPO / f"{MODULE_NAME}.json").read_text())
    s4ext = read_s4ext()
    sets = cmake_sets(REPO / "CMakeLists.txt")
    assert entry["category"] == s4ext["category"] == sets["EXTENSION_CATEGORY"]
    assert entry["scm_url"] == s4ext["scmurl"] == sets["EXTENSION_HOMEPAGE"] == s4ext["homepage"]
    assert entry["scm_revision"] == s4ext["scmrevision"]
    assert entry["build_dependencies"] == s4ext["depends"].split() == sets["EXTENSION_DEPENDS"].split()
    assert s4ext["description"] == sets["EXTENSION_DESCRIPTION"]
    assert s4ext["contributors"] == sets["EXTENSION_CONTRIBUTORS"]
    assert s4ext["iconurl"] == sets["EXTENSION_ICONURL"]
    assert s4ext["screenshoturls"].split() == sets["EXTENSION_SCREENSHOTURLS"].split()
    assert s4ext["build_subdirectory"] == entry.get("build_subdirectory", ".")


def test_license_is_apache_2():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_module_metadata_names_the_category_and_cites_the_sources():
    source = (MODULE_DIR / f"{MODULE_NAME}.py").read_text()
    assert 'translate("qSlicerAbstractCoreModule", "Segmentation")' in source
    for citation in ("2512.03834", "Antonelli", "Simpson", "Decathlon"):
        assert citation in source, f"the acknowledgement should cite {citation}"


# ----------------------------------------------------------------------------- file-scope imports


def file_scope_imports(path: Path) -> list[tuple[str, int]]:
    """(top-level name, level) of imports executed when the file is imported: module body and
    class bodies, not function bodies. level > 0 means a relative import."""
    found = []
    for node in file_scope_import_nodes(path):
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], 0) for alias in node.names)
        elif node.level:
            found.extend(((node.module or alias.name).split(".")[0], node.level) for alias in node.names)
        elif node.module != "__future__":
            found.append((node.module.split(".")[0], 0))
    return found


def file_scope_import_nodes(path: Path) -> list:
    """The import statements of a file that run when it is imported (not those in functions)."""
    nodes = []

    def visit(statements):
        for node in statements:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                nodes.append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            elif isinstance(node, ast.ClassDef):
                visit(node.body)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    block = getattr(node, field, None)
                    if isinstance(block, list):
                        visit([n for n in block if isinstance(n, ast.stmt)] + [s for h in block if isinstance(h, ast.ExceptHandler) for s in h.body])

    visit(ast.parse(path.read_text(), filename=str(path)).body)
    return nodes


def test_module_file_imports_only_what_slicer_bundles():
    imports = file_scope_imports(MODULE_DIR / f"{MODULE_NAME}.py")
    outside = sorted({name for name, _ in imports if name not in sys.stdlib_module_names and name not in SLICER_BUNDLED})
    assert not outside, f"{MODULE_NAME}.py imports {outside} at file scope; import them inside the functions that need them"
    assert "LUnetSegmentationLib" not in {name for name, _ in imports}, "the core is imported lazily, not at start-up"


def shipped_core_modules() -> dict[str, Path]:
    """Dotted name -> file of every core module the extension ships."""
    modules = {}
    for name in make_package.module_files():
        if name.startswith(f"{MODULE_NAME}Lib/") and name.endswith(".py"):
            parts = name[: -len(".py")].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = MODULE_DIR / name
    return modules


def local_imports(module: str, path: Path, anywhere: bool = False) -> set[str]:
    """Dotted names of the core modules (and their packages) a file imports at file scope, or
    with `anywhere` also inside functions (the imports that run when the function is called)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    nodes = ast.walk(ast.parse(path.read_text())) if anywhere else file_scope_import_nodes(path)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import mrml`
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(f"{MODULE_NAME}Lib"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    found.add(package)  # importing a.b.c runs a/__init__ and a/b/__init__ first
    found = {".".join(name.split(".")[:i]) for name in found for i in range(1, len(name.split(".")) + 1)}
    return {name for name in found if is_core_module(name)}


def is_core_module(dotted: str) -> bool:
    """A module or package of the core on disk (not a function or class imported by name)."""
    path = MODULE_DIR.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_core_imports_nothing_unbundled_at_file_scope():
    for module, path in sorted(shipped_core_modules().items()):
        third_party = {name for name, level in file_scope_imports(path) if level == 0 and name not in sys.stdlib_module_names}
        extra = third_party - LIB_ALLOWED_THIRD_PARTY - {f"{MODULE_NAME}Lib"}
        assert not extra, f"{module} imports {sorted(extra)} at file scope; import them where they are used (Slicer does not bundle them)"


def test_light_core_modules_do_not_import_torch():
    modules = shipped_core_modules()
    for entry in LIGHT_ENTRY_POINTS:
        assert entry in modules, f"{entry} is missing from what the extension ships"
        seen, stack = set(), [entry]
        while stack:
            name = stack.pop()
            if name in seen or name not in modules:
                continue
            seen.add(name)
            third_party = {top for top, level in file_scope_imports(modules[name]) if not level}
            assert "torch" not in third_party, (
                f"importing {entry} imports torch at file scope (via {name}); "
                "torch must be imported on first use, after the PyTorch extension has installed it"
            )
            stack.extend(local_imports(name, modules[name]))
        assert len(seen) > 1 or entry == f"{MODULE_NAME}Lib", f"the import graph of {entry} was not followed"


# The only imports from shipped files into unshipped ones: the CLI's commands that need them,
# each behind cli._installed(), which lists them as "(source install only)" when absent.
GUARDED_IMPORTS = {
    ("LUnetSegmentationLib.apps.cli", "LUnetSegmentationLib.training"),
    ("LUnetSegmentationLib.apps.cli", "LUnetSegmentationLib.training.train"),
    ("LUnetSegmentationLib.apps.cli", "LUnetSegmentationLib.training.evaluate"),
    ("LUnetSegmentationLib.apps.cli", "LUnetSegmentationLib.training.evaluate_wholehead"),
    ("LUnetSegmentationLib.apps.cli", "LUnetSegmentationLib.apps.bids"),
    ("LUnetSegmentationLib.apps.cli", "LUnetSegmentationLib.apps.bids.app"),
    ("LUnetSegmentationLib.apps.cli", "LUnetSegmentationLib.apps.web"),
    ("LUnetSegmentationLib.apps.cli", "LUnetSegmentationLib.apps.web.app"),
    # batch._dicom() says "source install" where the DICOM extra is absent
    ("LUnetSegmentationLib.files.batch", "LUnetSegmentationLib.files.dicom"),
    ("LUnetSegmentationLib.files.batch", "LUnetSegmentationLib.files.dicom.series"),
    ("LUnetSegmentationLib.files.batch", "LUnetSegmentationLib.files.dicom.seg"),
}


def test_shipped_files_never_import_what_is_not_shipped():
    """runtime/, files/, slicer_adapter/ and apps/cli.py import nothing from training/,
    apps/bids/ or apps/web/, at file scope or inside a function, so nothing the installed
    extension runs can reach a missing file; the exceptions are the CLI's guarded commands."""
    modules = shipped_core_modules()
    for module, path in modules.items():
        outside = sorted(name for name in local_imports(module, path, anywhere=True)
                         if name.startswith(f"{MODULE_NAME}Lib.") and name not in modules
                         and not any(other.startswith(name + ".") for other in modules)
                         and (module, name) not in GUARDED_IMPORTS)
        assert not outside, f"{module} imports {outside}, which the extension does not ship"


def test_layers_import_only_downwards():
    """runtime <- files <- slicer_adapter <- apps, and training on runtime and files: the tree is the
    architecture only while no layer imports one above it (at file scope or in a function)."""
    order = {"runtime": 0, "files": 1, "slicer_adapter": 2, "training": 2, "apps": 3}
    lib = MODULE_DIR / f"{MODULE_NAME}Lib"
    for path in sorted(lib.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        layer = path.relative_to(lib).parts[0]
        if layer not in order:
            continue
        package = ".".join([f"{MODULE_NAME}Lib", *path.relative_to(lib).parts[:-1]])
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else [])).split(".")
            elif node.module and node.module.startswith(f"{MODULE_NAME}Lib."):
                target = node.module.split(".")
            else:
                continue
            names = [target[1]] if len(target) > 1 else [alias.name for alias in node.names]
            for other in names:
                if other in order and other != layer:
                    assert order[other] < order[layer] or (layer == "training" and other == "files"), (
                        f"{path.relative_to(lib)} (layer {layer}) imports {other}, a layer above or beside it"
                    )


# ----------------------------------------------------------------------------- the package zip


PACKAGE_CHECK = r"""
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
sys.path.insert(0, str(root))
import numpy as np
import LUnetSegmentationLib
from LUnetSegmentationLib.slicer_adapter import api, mrml
from LUnetSegmentationLib.runtime import weights
from LUnetSegmentationLib.runtime.preprocess import InputError
assert Path(LUnetSegmentationLib.__file__).resolve().is_relative_to(root.resolve()), LUnetSegmentationLib.__file__
assert weights.MODELS_DIR.resolve().is_relative_to(root.resolve()), weights.MODELS_DIR
slicer_app = mrml.createHeadlessScene()
image_path = sys.argv[2] if len(sys.argv) > 2 else ""
if image_path:
    from LUnetSegmentationLib.files.volumeio import readImage
    volume = mrml.imageToVolumeNode(slicer_app.scene, readImage(image_path), "case")
else:
    import SimpleITK as sitk
    rng = np.random.default_rng(0)
    volume = mrml.imageToVolumeNode(slicer_app.scene, sitk.GetImageFromArray(rng.normal(100, 20, (36, 48, 36)).astype(np.float32)), "noise")
job = api.prepareSegmentation(volume, device="cpu", model=sys.argv[4])
try:
    job.compute()
except InputError as error:  # noise has no hippocampus: the presence check must say so
    print(json.dumps({"refused": str(error), "module": LUnetSegmentationLib.__file__}))
    raise SystemExit(0)
node = job.apply()
segmentation = node.GetSegmentation()
names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
import SimpleITK as sitk
labels = sitk.GetArrayFromImage(job.labels)
np.save(sys.argv[3], labels)
print(json.dumps({"names": names, "volumes": job.volumes, "module": LUnetSegmentationLib.__file__, "seconds": job.seconds}))
"""


@pytest.fixture(scope="module")
def package_zip(tmp_path_factory):
    return make_package.build(tmp_path_factory.mktemp("dist"))


def test_package_zip_holds_exactly_the_listed_files(package_zip):
    with zipfile.ZipFile(package_zip) as archive:
        names = set(archive.namelist())
    expected = {f"{MODULE_NAME}/{name}" for name in make_package.module_files()} | {"LICENSE", "INSTALL.txt"}
    assert names == expected
    assert package_zip.name == f"{MODULE_NAME}-{make_package.version()}.zip"


@pytest.mark.slow
def test_unpacked_package_imports_and_segments(package_zip, tmp_path, request):
    """Unpack as a user would, import the core from there (not from the checkout) with real
    slicer-core, and segment one volume: a Decathlon case when the data is here, else noise."""
    with zipfile.ZipFile(package_zip) as archive:
        archive.extractall(tmp_path)
    module_root = tmp_path / MODULE_NAME
    assert (module_root / f"{MODULE_NAME}.py").is_file()
    case = None
    try:
        data = request.getfixturevalue("hippocampus_dir")
        case = data / "imagesTr" / "hippocampus_001.nii.gz"  # a validation case of the shipped model
    except pytest.skip.Exception:
        pass
    labels_out = tmp_path / "labels.npy"
    # The Decathlon case is scored against the Decathlon's labels, so with the model trained on them.
    args = [sys.executable, "-c", PACKAGE_CHECK, str(module_root), str(case) if case else "", str(labels_out), PARTS_MODEL]
    completed = subprocess.run(args, capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert Path(report["module"]).resolve().is_relative_to(tmp_path.resolve())
    if case is None:
        assert "No hippocampus was found" in report["refused"]
        return
    assert len(report["names"]) >= 2 and set(report["names"]) == set(report["volumes"])
    if case is not None:
        import numpy as np
        import SimpleITK as sitk

        labels = np.load(labels_out, allow_pickle=False)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "labelsTr" / case.name))).astype(int)
        overlap = 2 * ((labels > 0) & (truth > 0)).sum() / ((labels > 0).sum() + (truth > 0).sum())
        assert overlap > 0.8, f"hippocampus Dice {overlap:.3f} from the unpacked package"
        assert all(volume > 500 for volume in report["volumes"].values()), report["volumes"]


def test_package_holds_no_training_bids_or_web_code(package_zip):
    with zipfile.ZipFile(package_zip) as archive:
        names = archive.namelist()
    lib = f"{MODULE_NAME}/{MODULE_NAME}Lib/"
    assert any(name.startswith(lib + "runtime/") for name in names)
    for left_out in NOT_IN_EXTENSION:
        assert not [name for name in names if name.startswith(f"{MODULE_NAME}/{left_out}")], f"{left_out} is in the package"


@pytest.fixture(scope="module")
def unpacked_package(package_zip, tmp_path_factory) -> Path:
    """The package as a user unpacks it; the CLI run from there imports that copy, not the checkout."""
    root = tmp_path_factory.mktemp("installed")
    with zipfile.ZipFile(package_zip) as archive:
        archive.extractall(root)
    return root


def run_installed(unpacked_package: Path, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(unpacked_package / MODULE_NAME)}
    return subprocess.run([sys.executable, "-m", f"{MODULE_NAME}Lib", *argv], capture_output=True, text=True,
                          cwd=unpacked_package, env=env, timeout=120)


@pytest.mark.parametrize("argv, setup", [
    (["train", "--data", "DATA", "--out", "runs/x"], "scripts/setup_env.sh"),
    (["train", "--help"], "scripts/setup_env.sh"),
    (["evaluate", "--data", "DATA"], "scripts/setup_env.sh"),
    (["evaluate-wholehead", "--pair", "norm.mgz", "aseg.mgz"], "scripts/setup_env.sh"),
    (["bids", "BIDS", "OUT", "participant"], "scripts/setup_env.sh"),
    (["serve", "--port", "1"], "scripts/setup_web_env.sh"),
])
def test_installed_extension_says_what_needs_the_source_install(unpacked_package, argv, setup):
    """Commands whose code the extension does not ship answer with how to get the source install
    and the environment to run them in (the web app has its own)."""
    done = run_installed(unpacked_package, *argv)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"`{argv[0]}` needs the full source install" in done.stderr and "git clone" in done.stderr, done.stderr
    assert f"bash {setup}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_installed_extension_lists_every_command_and_segments(unpacked_package, tmp_path):
    """The installed CLI still lists the source-only commands, and `segment` runs the whole path
    (reading, the entry check, the network, the presence check) from the shipped files alone."""
    listed = run_installed(unpacked_package, "--help")
    assert listed.returncode == 0
    for command in ("train", "evaluate", "evaluate-wholehead", "segment", "serve", "bids"):
        assert command in listed.stdout
    assert " ".join(listed.stdout.split()).count("(source install only)") == 5  # argparse wraps lines
    import numpy as np
    import SimpleITK as sitk

    scan = tmp_path / "blob.nii.gz"
    noise = np.random.default_rng(3).normal(100, 30, (36, 48, 36)).astype(np.float32)
    sitk.WriteImage(sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(noise), 2.0), str(scan))
    done = run_installed(unpacked_package, "segment", str(scan), "--out", str(tmp_path / "out"), "--device", "cpu",
                        "--model", PARTS_MODEL, "--quiet")
    # A smooth random volume has no hippocampus: the presence check, after the network, says so.
    assert done.returncode == 1 and "No hippocampus was found" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "source install" not in done.stderr
