"""Derive the small MNI-space T1 template that localize.py registers scans to.

Source: the ICBM 2009a nonlinear symmetric T1 template (skull-stripped, 1 mm, uint8) that
the nilearn wheel ships as nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz.
nilearn is a development tool here, not a runtime dependency: this script runs once, and its
output (a few hundred KB) is committed, so Slicer needs no network and no extra package.

What it does, and why:
- smooth (Gaussian, sigma = half the target spacing) then resample to 2 mm: registration runs
  at 4-6 mm and 2-3 mm only, so finer detail would only cost download size;
- crop to the brain plus a margin: the empty border carries no information for the metric;
- rescale to uint8 (0..255), keeping the brain/background contrast that Mattes MI uses.

Usage:
    .venv/bin/pip install nilearn   # development only
    .venv/bin/python scripts/make_template.py [--source PATH] [--spacing 2]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "LUnetSegmentation" / "Resources" / "Templates"
NAME = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def find_source() -> Path:
    try:
        import nilearn  # noqa: F401  (development only)
    except ImportError as error:
        raise SystemExit("nilearn is not installed: `.venv/bin/pip install nilearn`, or pass --source PATH") from error
    path = Path(nilearn.__file__).parent / "datasets" / "data" / NAME
    if not path.is_file():
        raise SystemExit(f"{path} not found in this nilearn; pass --source PATH")
    return path


def derive(source: Path, spacing: float, margin_mm: float) -> sitk.Image:
    image = sitk.Cast(sitk.ReadImage(str(source)), sitk.sitkFloat32)
    smoothed = sitk.SmoothingRecursiveGaussian(image, spacing / 2)
    # Brain bounding box (voxels > 0 in the skull-stripped source) plus a margin, in index space.
    mask = sitk.GetArrayViewFromImage(image) > 0
    zyx = np.argwhere(mask)
    low = np.maximum(zyx.min(axis=0)[::-1] - margin_mm, 0)
    high = np.minimum(zyx.max(axis=0)[::-1] + margin_mm, np.asarray(image.GetSize()) - 1)
    first = image.TransformIndexToPhysicalPoint([int(v) for v in low])
    size = [int(np.ceil((h - l + 1) / spacing)) for l, h in zip(low, high)]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetDirection(image.GetDirection())
    reference.SetSpacing([spacing] * 3)
    # The first voxel centre sits half a target voxel inside the 1 mm box corner.
    corner = np.asarray(first) - np.reshape(image.GetDirection(), (3, 3)) @ np.full(3, 0.5)
    reference.SetOrigin((corner + np.reshape(image.GetDirection(), (3, 3)) @ np.full(3, spacing / 2)).tolist())
    small = sitk.Resample(smoothed, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    array = sitk.GetArrayFromImage(small)
    array = np.clip(np.round(array / array.max() * 255), 0, 255).astype(np.uint8)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(small)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help=f"path to {NAME} (default: the installed nilearn's copy)")
    parser.add_argument("--spacing", type=float, default=2.0, help="template voxel size in mm (default 2)")
    parser.add_argument("--margin", type=float, default=6.0, help="margin around the brain in mm (default 6)")
    args = parser.parse_args()
    source = args.source or find_source()
    template = derive(source, args.spacing, args.margin)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"mni_icbm152_2009a_t1_{args.spacing:g}mm.nii.gz"
    sitk.WriteImage(template, str(out), useCompression=True)
    print(f"wrote {out} {template.GetSize()} {out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
