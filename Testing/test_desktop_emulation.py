"""The module as Slicer 5.8.1 and 5.12.3 run it (issue 23 item 2), in the emulation of
Testing/slicer_emulation: Slicer's own Python files of each tag, a PythonQt-like layer over
PySide6, slicer-core's real MRML, and a stand-in PythonSlicer launcher that starts Python as its
child; the module is installed under a path with spaces and non-ASCII characters.

Each tag runs in its own process (one emulated Slicer session); every scenario is a test here.
What the emulation cannot prove is in Testing/slicer_emulation/README.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTING = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTING))

from slicer_emulation.application import TAGS  # noqa: E402
from slicer_emulation.scenarios import SCENARIOS  # noqa: E402

pytest.importorskip("PySide6.QtWidgets", reason="the emulation's Qt is PySide6")
pytest.importorskip("slicer", reason="the emulation's MRML is slicer-core")

HEAD_FILE = ("colin27", "ch2.nii.gz")  # a real whole head the presence check accepts


# PyTorch present (as after the PyTorch extension installed it; ONNX Runtime absent, so the child
# runs PyTorch), or PyTorch absent with ONNX Runtime not installed either: the module must offer
# ONNX Runtime on this GPU-less machine, install it through slicer.util.pip_install (recorded by
# the stand-in launcher) and run every scenario on it.
# nibabel is absent in both, as in Slicer (the README's .mgz example must ask for it).
ENGINES = {"torch-present": "onnxruntime,nibabel", "torch-absent": "torch,onnxruntime,nibabel"}


def run_session(tag: str, root: Path, head: Path, only=(), timeout=1500, extra_env=None, hide="") -> dict:
    out = root / "results.json"
    command = [sys.executable, "-m", "slicer_emulation.scenarios", "--tag", tag, "--root", str(root), "--head", str(head),
               "--out", str(out)]
    if only:
        command += ["--only", ",".join(only)]
    if hide:
        command += ["--hide", hide]
    environment = dict(os.environ, QT_QPA_PLATFORM="offscreen", **(extra_env or {}))
    environment["PYTHONPATH"] = str(TESTING) + os.pathsep + environment.get("PYTHONPATH", "")
    done = subprocess.run(command, cwd=TESTING, env=environment, capture_output=True, text=True, timeout=timeout)
    if not out.exists():
        raise AssertionError(f"the emulated session did not report (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def head(wholebrain_dir) -> Path:
    path = wholebrain_dir.joinpath(*HEAD_FILE)
    if not path.exists():
        pytest.skip(f"{path} is not here")
    return path


@pytest.mark.parametrize("tag", TAGS)
def test_module_loads_and_sets_up_in_emulated_slicer(tag, tmp_path, head):
    results = run_session(tag, tmp_path, head, only=["module_setup"], timeout=300)
    assert results["module_setup"]["ok"], results["module_setup"]["detail"]


@pytest.fixture(scope="module", params=[(tag, engine) for tag in TAGS for engine in ENGINES], ids=lambda p: f"{p[0]}-{p[1]}")
def session_results(request, tmp_path_factory, head):
    tag, engine = request.param
    pytest.importorskip("torch", reason="the emulated Slicer's PyTorch is this environment's")
    pytest.importorskip("onnxruntime", reason="the emulated Slicer's ONNX Runtime is this environment's")
    label = f"{tag} {engine}"
    return label, run_session(tag, tmp_path_factory.mktemp(f"slicer-{tag}-{engine}"), head, hide=ENGINES[engine])


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario(session_results, scenario):
    label, results = session_results
    result = results.get(scenario)
    assert result is not None, f"[{label}] {scenario} did not run"
    assert result["ok"], f"[{label}] {scenario}: {result['detail']}"
    if result["detail"]:
        print(f"\n[{label}] {scenario}: {result['detail']}")


def test_vendored_slicer_files_are_verbatim():
    """Each vendored file is byte for byte the one at its tag: its git blob hash is the one
    listed in the emulation's README (taken from Slicer's repository)."""
    import hashlib
    import re

    folder = TESTING / "slicer_emulation"
    rows = re.findall(r"^\| (vendor/\S+) \| (\S+) \| ([0-9a-f]{40}) \|$", (folder / "README.md").read_text(encoding="utf-8"), re.M)
    assert len(rows) >= 2 * 15 + 2, "every vendored file is listed"
    listed = {path for path, _, _ in rows}
    on_disk = {str(p.relative_to(folder)) for p in (folder / "vendor").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert on_disk == listed, f"vendored but not listed: {on_disk - listed}; listed but missing: {listed - on_disk}"
    for path, source, blob in rows:
        content = (folder / path).read_bytes()
        assert hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() == blob, f"{path} differs from {source}"
