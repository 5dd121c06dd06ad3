"""Run the whole-brain path (localize, crop, segment, combine) on every case in
../shared/data/wholebrain: runtime end to end on this CPU, screenshot-style PNGs, and Dice
against the reference hippocampus on the labelled cases.

    .venv/bin/python scripts/measure_wholebrain.py [--data DIR] [--threads 2] [--cases NAME ...] [--compare-boxes]

Writes docs/results/wholebrain.json and docs/results/wholebrain/<case>.png. Each PNG is a
2x2 panel: rows left / right hippocampus, columns coronal (patient's right on the image's left,
as in Slicer) and sagittal (anterior on the left), 1 mm per 3 pixels, 100 mm wide; the
localization box is drawn in yellow, segments overlaid in their label colours. On labelled
cases the reference hippocampus outline is drawn in white.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "wholebrain"
OUT_JSON = REPO / "docs" / "results" / "wholebrain.json"
OUT_PNG = REPO / "docs" / "results" / "wholebrain"

# case -> (scan, reference labels or None, {side: reference label value})
COMPARE_BOXES = [(36.0, 50.0, 36.0), (44.0, 60.0, 44.0), (52.0, 68.0, 52.0)]

CASES = {
    "colin27": ("colin27/ch2.nii.gz", "colin27/aal.nii.gz", {"left": 37, "right": 38}),
    "fs_norm": ("fs_norm/norm.mgz", "fs_norm/aparc.a2009s+aseg.mgz", {"left": 17, "right": 53}),
    "chris_t1": ("chris_t1/chris_t1.nii.gz", None, {}),
    "otsu_t1": ("otsu_t1/otsu.nii.gz", None, {}),
    "brainchop_t1": ("brainchop_t1/t1_crop.nii.gz", None, {}),
    "hippodeep_oblique": ("hippodeep_example/example_brain_t1_oblique.nii.gz", None, {}),
    "hippodeep_1p75mm": ("hippodeep_example/example_brain_t1_1p75mm.nii.gz", None, {}),
    "niimath_t1": ("niimath_t1/T1.nii.gz", None, {}),
}


def read_image(path: Path) -> sitk.Image:
    """SimpleITK image from any file nibabel reads (pip's SimpleITK cannot read .mgz)."""
    if not str(path).endswith(".mgz"):
        return sitk.ReadImage(str(path))
    import nibabel as nib

    loaded = nib.load(str(path))
    array = np.asarray(loaded.dataobj)
    array = array.astype(array.dtype.newbyteorder("="))  # .mgz is big-endian; SimpleITK wants native
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ loaded.affine  # RAS -> LPS (ITK)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((affine[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    return image


def template_space(localization, reference, ref_values) -> dict:
    """Centroid and 1st..99th percentile box (RAS mm) of each reference hippocampus mapped back
    into the template's MNI space: the data behind localize.HIPPOCAMPUS_MNI_RAS."""
    inverse = localization.transform.GetInverse()
    labels = sitk.GetArrayViewFromImage(reference)
    out = {}
    for side, value in ref_values.items():
        zyx = np.argwhere(labels == value)[::3]
        points = np.array([inverse.TransformPoint(reference.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]])) for p in zyx])
        ras = points * [-1, -1, 1]
        out[side] = {"centroid": ras.mean(axis=0).round(1).tolist(),
                     "p1": np.percentile(ras, 1, axis=0).round(1).tolist(), "p99": np.percentile(ras, 99, axis=0).round(1).tolist()}
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.logical_and(a, b).sum()) / total if total else float("nan")


def _plane(centre_lps, axis_h, axis_v, size_mm=100.0, spacing=1 / 3) -> sitk.Image:
    n = int(round(size_mm / spacing))
    axis_h, axis_v = np.asarray(axis_h, float), np.asarray(axis_v, float)
    normal = np.cross(axis_h, axis_v)
    plane = sitk.Image([n, n, 1], sitk.sitkFloat32)
    plane.SetSpacing([spacing] * 3)
    plane.SetDirection(np.column_stack([axis_h, axis_v, normal]).flatten().tolist())
    plane.SetOrigin((np.asarray(centre_lps) - (axis_h + axis_v) * size_mm / 2).tolist())
    return plane


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return mask & ~inner


def render_panel(image, labels, table, box, centre_lps, axis_h, axis_v, reference=None) -> np.ndarray:
    plane = _plane(centre_lps, axis_h, axis_v)
    grey = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), plane, sitk.Transform(), sitk.sitkLinear, 0.0))[0]
    seg = sitk.GetArrayFromImage(sitk.Resample(labels, plane, sitk.Transform(), sitk.sitkNearestNeighbor, 0))[0]
    low, high = np.percentile(grey, [1, 99.5])
    rgb = np.repeat((np.clip((grey - low) / max(high - low, 1e-6), 0, 1))[..., None], 3, axis=2)
    for value, colour in ((spec.value, spec.color) for spec in table):
        where = seg == value
        rgb[where] = 0.45 * rgb[where] + 0.55 * np.asarray(colour)
    if reference is not None:
        ref = sitk.GetArrayFromImage(sitk.Resample(reference, plane, sitk.Transform(), sitk.sitkNearestNeighbor, 0))[0] > 0
        rgb[_outline(ref)] = (1.0, 1.0, 1.0)
    if box is not None:
        # Box membership of every pixel, from its continuous index in the scan.
        n = grey.shape[0]
        jj, ii = np.mgrid[0:n, 0:n]
        points = np.asarray(plane.GetOrigin()) + (ii.ravel()[:, None] * np.asarray(axis_h) + jj.ravel()[:, None] * np.asarray(axis_v)) * plane.GetSpacing()[0]
        matrix = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
        index = np.linalg.solve(matrix, (points - image.GetOrigin()).T).T
        inside = np.all((index >= np.asarray(box[0]) - 0.5) & (index <= np.asarray(box[1]) - 0.5), axis=1).reshape(n, n)
        rgb[_outline(inside)] = (1.0, 0.9, 0.0)
    return (rgb * 255).astype(np.uint8)


def write_png(rgb: np.ndarray, path: Path) -> None:
    import vtk
    from vtk.util import numpy_support

    height, width, _ = rgb.shape
    data = vtk.vtkImageData()
    data.SetDimensions(width, height, 1)
    flat = np.ascontiguousarray(rgb[::-1]).reshape(-1, 3)  # VTK rows run bottom-up
    data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(data)
    writer.Write()


def render_case(image, result, reference, path: Path) -> None:
    coronal = ((1, 0, 0), (0, 0, -1))  # LPS: screen right = patient left, screen down = inferior
    sagittal = ((0, 1, 0), (0, 0, -1))  # screen right = posterior
    rows = []
    for side in ("left", "right"):
        loc = result.localization
        centre, box = loc.centres_lps[side], loc.boxes[side]
        rows.append(np.concatenate([render_panel(image, result.labels, result.label_table, box, centre, *view, reference) for view in (coronal, sagittal)], axis=1))
        rows[-1][:, rows[-1].shape[1] // 2 - 1: rows[-1].shape[1] // 2 + 1] = 255
    panel = np.concatenate(rows, axis=0)
    panel[panel.shape[0] // 2 - 1: panel.shape[0] // 2 + 1] = 255
    write_png(panel, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--compare-boxes", action="store_true", help="on labelled cases, also Dice for other box sizes")
    parser.add_argument("--no-png", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT_JSON)
    args = parser.parse_args()

    import torch

    from LUnetSegmentationLib.runtime.engine import Segmenter
    from LUnetSegmentationLib.runtime.localize import BOX_MM
    from LUnetSegmentationLib.runtime.wholebrain import segment_head

    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    started = time.time()
    segmenter = Segmenter(device="cpu")
    load_seconds = time.time() - started
    boxes = [tuple(BOX_MM)]
    OUT_PNG.mkdir(parents=True, exist_ok=True)
    rows, comparison = [], {}
    for name in args.cases:
        scan, ref_path, ref_values = CASES[name]
        image = read_image(args.data / scan)
        reference = read_image(args.data / ref_path) if ref_path else None
        for box in boxes + ([b for b in COMPARE_BOXES if b != tuple(BOX_MM)] if args.compare_boxes and reference is not None else []):
            row = {"case": name, "size": list(image.GetSize()), "spacing_mm": [round(s, 3) for s in image.GetSpacing()],
                   "type": image.GetPixelIDTypeAsString(), "box_mm": list(box)}
            t0 = time.time()
            try:
                result = segment_head(segmenter, image, box_mm=box)
            except Exception as error:  # record and go on: the report must show failures
                row.update(status="error", error=f"{type(error).__name__}: {error}", seconds=round(time.time() - t0, 2))
                rows.append(row)
                print(json.dumps(row))
                continue
            row.update(status="ok", mode=result.mode, seconds=round(time.time() - t0, 2), load_average=round(os.getloadavg()[0], 1),
                       localization=result.localization.summary() if result.localization else None,
                       side_volumes_mm3={k: round(v) for k, v in result.side_volumes_mm3.items()},
                       volumes_mm3={k: round(v) for k, v in result.volumes_mm3.items()})
            if reference is not None:
                ours = sitk.GetArrayViewFromImage(result.labels)
                ref = sitk.GetArrayViewFromImage(reference)
                sides = {"left": (1, 2), "right": (3, 4)}
                row["dice"] = {side: round(dice(np.isin(ours, sides[side]), ref == value), 4) for side, value in ref_values.items()}
                row["dice"]["both_hippocampi"] = round(dice(ours > 0, np.isin(ref, list(ref_values.values()))), 4)
                # Our side labels against the other side's reference: must be ~0 (left is left).
                row["dice"]["swapped_sides"] = round(dice(np.isin(ours, (1, 2)), ref == ref_values["right"]), 4)
                if box != boxes[0]:
                    comparison.setdefault(name, []).append({"box_mm": list(box), "dice": row["dice"]})
                    continue
                row["template_space"] = template_space(result.localization, reference, ref_values)
                row["reference_volumes_mm3"] = {side: round(float((ref == v).sum()) * float(np.prod(image.GetSpacing()))) for side, v in ref_values.items()}
            if not args.no_png and box == boxes[0]:
                hippo = None
                if reference is not None:
                    hippo = sitk.Cast(sitk.GetImageFromArray(np.isin(sitk.GetArrayViewFromImage(reference), list(ref_values.values())).astype(np.uint8)), sitk.sitkUInt8)
                    hippo.CopyInformation(reference)
                render_case(image, result, hippo, OUT_PNG / f"{name}.png")
                row["png"] = f"docs/results/wholebrain/{name}.png"
            rows.append(row)
            print(json.dumps(row))
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    cases = {row["case"]: row for row in previous.get("cases", [])}
    cases.update({row["case"]: row for row in rows if row["box_mm"] == list(boxes[0])})
    box_comparison = previous.get("box_comparison", {})
    for name, entries in comparison.items():
        box_comparison[name] = [{"box_mm": list(boxes[0]), "dice": cases[name]["dice"]}] + entries
    summary = {
        "command": "python scripts/measure_wholebrain.py --threads N [--cases ...] [--compare-boxes] (updates the cases it runs)",
        "cpu_threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "model_load_seconds": round(load_seconds, 2),
        "note": "seconds = segment_head end to end (localization + two crops + combine), file reading excluded; "
        "load_average = 1-minute load of this machine when the case ran (other jobs share the CPU)",
        "cases": [cases[name] for name in CASES if name in cases],
        "box_comparison": box_comparison,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
