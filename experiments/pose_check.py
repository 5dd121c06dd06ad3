"""Do the volumes of a real head stay the same when the head lies differently in the scanner?

    PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/pose_check.py \
        [--degrees -30 -15 0 15 30] --out docs/results/pose_wholebrain.json

For every whole-head scan under ../shared/data/wholebrain (the scans icv_check.py finds), the
header is turned about the scan's centre by each angle, about the left-right axis (pitch) and
about the vertical axis (yaw): the same voxels, another pose, no interpolation. Each pose goes
through the shipped path (pipeline.label_image, CPU) twice: as shipped, and with the crops
turned for yaw and roll only (the localizer card's crop_pose taken away), as before the pitch
step. Per scan and side: the volume at every pose, the coefficient of variation over the poses
and the poses at which the side was not reported. Real heads have no truth here; what a
measurement tool owes them is the same answer whatever the pose (fs_norm's Dice against
FreeSurfer at each pose is in Testing/test_volume_fidelity.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from icv_check import SHARED, scans  # noqa: E402

from LUnetSegmentationLib.files.volumeio import readImage  # noqa: E402
from LUnetSegmentationLib.runtime import localizer  # noqa: E402
from LUnetSegmentationLib.runtime.pipeline import get_segmenter, label_image  # noqa: E402
from LUnetSegmentationLib.runtime.preprocess import InputError  # noqa: E402

AXES = {"pitch": 0, "yaw": 2}  # LPS axis the head turns about


def posed(image: sitk.Image, axis: int, degrees: float) -> sitk.Image:
    """`image` with its header turned about its centre (voxels untouched)."""
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    turn = {0: np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), 2: np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    out = sitk.Image(image)
    out.SetDirection((turn @ np.reshape(image.GetDirection(), (3, 3))).flatten().tolist())
    out.SetOrigin((centre + turn @ (np.asarray(image.GetOrigin()) - centre)).tolist())
    return out


@contextlib.contextmanager
def crop_pose(enabled: bool):
    """The localizer as shipped, or without its card's crop_pose (crops turned for yaw and roll only)."""
    data = localizer._backend()[0].data  # the card the loaded localizer reads
    saved = data.get("crop_pose")
    if not enabled:
        data.pop("crop_pose", None)
    try:
        yield
    finally:
        if saved is not None:
            data["crop_pose"] = saved


def volumes(image: sitk.Image, loaded) -> dict:
    try:
        return dict(label_image(image, loaded=loaded, name="posed").side_volumes_mm3)
    except InputError:
        return {}


def summarise(per_pose: list[dict]) -> dict:
    out = {}
    for side in ("left", "right"):
        found = [v[side] for v in per_pose if side in v]
        out[side] = {"volumes_mm3": [round(v[side]) if side in v else None for v in per_pose],
                     "not_reported": sum(side not in v for v in per_pose),
                     "cv": round(float(np.std(found) / np.mean(found)), 4) if len(found) > 1 else None}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrees", type=float, nargs="+", default=[-30, -15, 0, 15, 30])
    parser.add_argument("--out", type=Path, default=Path("docs/results/pose_wholebrain.json"))
    args = parser.parse_args(argv)
    loaded = get_segmenter(None, "cpu")
    rows = []
    for path in scans(SHARED):
        image = readImage(path)
        row = {"scan": str(path.relative_to(SHARED))}
        for mode in ("shipped", "yaw_roll_only"):
            for turn_name, axis in AXES.items():
                with crop_pose(mode == "shipped"):
                    per_pose = [volumes(posed(image, axis, degrees), loaded) for degrees in args.degrees]
                row[f"{mode}_{turn_name}"] = summarise(per_pose)
        print(json.dumps({"scan": row["scan"], **{k: {s: (v[s]["cv"], v[s]["not_reported"]) for s in v}
                                                   for k, v in row.items() if k != "scan"}}), flush=True)
        rows.append(row)
    summary = {}
    for key in [k for k in rows[0] if k != "scan"]:
        cvs = [row[key][side]["cv"] for row in rows for side in ("left", "right") if row[key][side]["cv"] is not None]
        summary[key] = {"median_cv": round(statistics.median(cvs), 4), "max_cv": round(max(cvs), 4),
                        "sides_not_reported": sum(row[key][side]["not_reported"] for row in rows for side in ("left", "right")),
                        "side_poses": len(rows) * 2 * len(args.degrees)}
    result = {"command": "PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/pose_check.py "
                         + " ".join(sys.argv[1:] if argv is None else argv),
              "degrees": args.degrees, "crop_pose": localizer.load_card().data.get("crop_pose", {}).get("pitch_degrees"),
              "summary": summary, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
