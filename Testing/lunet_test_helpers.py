"""Small builders shared by the MRML tests: volumes with a chosen IJK-to-RAS geometry."""
from __future__ import annotations

import numpy as np

# The Decathlon-trained anterior/posterior model: tests of its protocol name it rather than
# relying on whichever model is the default.
PARTS_MODEL = "hippocampus-lunet"


def rotation(axis: str, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def ijk_to_ras_matrix(directions: np.ndarray, spacing, origin) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(directions, dtype=float) * np.asarray(spacing, dtype=float)
    matrix[:3, 3] = origin
    return matrix


def add_volume(scene, array_kji: np.ndarray, ijk_to_ras: np.ndarray, name="Volume", class_name="vtkMRMLScalarVolumeNode"):
    """A volume node with the given voxels (K, J, I order) and IJK-to-RAS matrix."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    array_kji = np.ascontiguousarray(array_kji)
    components = 1 if array_kji.ndim == 3 else array_kji.shape[3]
    data = vtk.vtkImageData()
    data.SetDimensions(array_kji.shape[2], array_kji.shape[1], array_kji.shape[0])
    scalars = numpy_to_vtk(array_kji.reshape(-1, components) if components > 1 else array_kji.ravel(), deep=True)
    data.GetPointData().SetScalars(scalars)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijk_to_ras[r, c]))
    node = scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(matrix)
    node.SetAndObserveImageData(data)
    return node


def voxel_ras(ijk_to_ras: np.ndarray, kji_indices: np.ndarray) -> np.ndarray:
    """RAS positions of voxel centres given as rows of (k, j, i)."""
    ijk = np.asarray(kji_indices, dtype=float)[:, ::-1]
    return (ijk_to_ras[:3, :3] @ ijk.T).T + ijk_to_ras[:3, 3]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def data_folder(data_root, relative: str, must_contain: str = "", missing=None):
    """data_root/relative if it holds must_contain, else `missing(reason)`: pytest.skip in the
    main suite (data is optional there), pytest.fail where a test exists to open real data."""
    import pytest

    path = data_root / relative
    if not (path / must_contain).is_dir():
        (missing or pytest.skip)(f"{relative} data not found at {path} (set LUNET_DATA)")
    return path


_PEAK_LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
output = child.stdout.read()
_, status, usage = os.wait4(child.pid, 0)
sys.stdout.buffer.write(output)
sys.stderr.write(json.dumps({"exit": os.waitstatus_to_exitcode(status), "peak_bytes": usage.ru_maxrss * 1024}))
"""


def run_measuring_peak(command, **kwargs) -> tuple[int, str, int]:
    """(exit status, output, peak resident bytes) of `command`, run as the child of a small
    launcher process. Linux keeps a process's largest resident size across fork and exec, so a
    child forked straight from a test process that has grown to 1.8 GB reports 1.8 GB however
    little it uses itself; forked from a fresh interpreter, its ru_maxrss is its own."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PEAK_LAUNCHER, *map(str, command)], capture_output=True, **kwargs)
    report = json.loads(done.stderr.decode().strip().splitlines()[-1])
    return report["exit"], done.stdout.decode(errors="replace"), report["peak_bytes"]


def copied_cases(hippocampus_dir, folder, cases) -> list:
    """Copies of Decathlon images `cases` in a new `folder` (a batch writes beside nothing of
    the shared data): their paths, in order."""
    import shutil
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir()
    for case in cases:
        shutil.copy(Path(hippocampus_dir) / "imagesTr" / f"{case}.nii.gz", folder / f"{case}.nii.gz")
    return [folder / f"{case}.nii.gz" for case in cases]
