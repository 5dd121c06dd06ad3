"""Read MRI files into SimpleITK images with their geometry; write labelmaps (no Slicer).

NIfTI, NRRD, MHA/MHD go through SimpleITK. FreeSurfer .mgz/.mgh go through nibabel (pip's
SimpleITK has no MGH reader): its voxel-to-RAS affine is turned into ITK's LPS origin,
spacing and direction, and the voxel array into ITK's z, y, x order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .preprocess import InputError
from .resample import image_from_ijk_to_ras

SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".mgz", ".mgh")


def case_name(path: str | Path) -> str:
    """'dir/sub-01_T1w.nii.gz' -> 'sub-01_T1w'."""
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _read_mgh(path: Path) -> sitk.Image:
    import nibabel

    loaded = nibabel.load(str(path))
    data = np.asanyarray(loaded.dataobj)
    # MGH stores big-endian; SimpleITK takes native byte order only.
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path.name} has {data.ndim} dimensions {data.shape}; the model needs one 3D volume.")
    affine = np.asarray(loaded.affine, dtype=float)
    # nibabel indexes (i, j, k); ITK arrays are (k, j, i).
    return image_from_ijk_to_ras(data.transpose(2, 1, 0), affine, path.name)


def _check_gzip_complete(path: Path) -> None:
    """ITK reads a truncated .nii.gz without complaint (the missing voxels come back as zeros),
    so read the compressed stream to its end once first."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(
            f"Cannot read {path.name}: it is damaged (its compressed data {'ends early' if isinstance(error, EOFError) else 'is corrupt'}). "
            "Copy or download it again."
        ) from error


def readImage(path: str | Path) -> sitk.Image:
    """An MRI file as a SimpleITK image; a clear error when the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    try:
        if path.name.lower().endswith((".gz", ".mgz")):
            _check_gzip_complete(path)
        if path.name.lower().endswith((".mgz", ".mgh")):
            return _read_mgh(path)
        return sitk.ReadImage(str(path))
    except InputError:
        raise
    except Exception as error:  # readers raise RuntimeError, EOFError, zlib errors...
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise InputError(f"Cannot read {path.name}: it is damaged or not a supported image ({first_line}).") from error


def writeLabelmap(labels: sitk.Image, path: str | Path) -> None:
    """Write a uint8 label image (NIfTI when the name ends in .nii/.nii.gz), compressed."""
    sitk.WriteImage(sitk.Cast(labels, sitk.sitkUInt8), str(path), useCompression=True)
