"""Measure the head pitch the hippocampus crops are turned to, and record it in the localizer's card.

    .venv/bin/python scripts/measure_crop_pose.py [--maps ../shared/data/synthseg_label_maps] [--write]

The segmentation network (hippocampus-whole-lunet) was trained on crops cut from the SynthSeg
label maps in their own poses, so it knows hippocampi at those heads' pitches (within its
15-degree augmentation) and fails beyond: a real head pitched 30 degrees outside that range
lost a hippocampus (Dice 0). The localizer turns each crop about the left-right axis so that
the long axis of the scan's intracranial space lies at the training heads' median angle.
This script measures that angle on the label maps the model was trained on (the subject split
of its card: maps 01-16), with the same estimator the runtime uses
(`runtime.localizer.long_axis_pitch`, the intracranial space = labels 1-499 as in the
localizer's training targets), and with --write stores it in the card as "crop_pose". Where
the field of view cuts the intracranial space the runtime reads the pitch from the hippocampi's
own long axes instead, so their median angle in the same maps (labels 17 and 53) is stored too.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "LUnetSegmentation"))

from LUnetSegmentationLib.runtime.localizer import LOCALIZER_CARD, long_axis_pitch  # noqa: E402

TRAINING_MAPS = [f"training_seg_{number:02d}" for number in range(1, 17)]
MAX_CORRECTION_DEGREES = 45.0  # beyond this the estimate is more likely wrong than the head


def map_pitches(path: Path) -> tuple[float, list[float]]:
    """(long-axis angle of the intracranial space, of each hippocampus) in one label map."""
    import nibabel

    image = nibabel.load(str(path))
    labels = np.asarray(image.dataobj)

    def angle(mask, step=1):
        lps = nibabel.affines.apply_affine(image.affine, np.argwhere(mask)[::step]) * np.array([-1.0, -1.0, 1.0])
        return long_axis_pitch(lps, np.eye(3))

    # every 7th intracranial voxel: the same axis, 7x less work
    return angle((labels > 0) & (labels < 500), 7), [angle(labels == value) for value in (17, 53)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=Path, default=ROOT.parent / "shared" / "data" / "synthseg_label_maps")
    parser.add_argument("--write", action="store_true", help="record the result in the localizer's card")
    args = parser.parse_args(argv)
    measured = {name: map_pitches(args.maps / f"{name}.nii.gz") for name in TRAINING_MAPS}
    angles = {name: round(head, 1) for name, (head, _) in measured.items()}
    hippocampi = [angle for _, sides in measured.values() for angle in sides]
    pose = {
        "pitch_degrees": round(statistics.median(angles.values()), 1),
        "hippocampus_pitch_degrees": round(statistics.median(hippocampi), 1),
        "max_correction_degrees": MAX_CORRECTION_DEGREES,
        "training_heads_degrees": {"min": min(angles.values()), "max": max(angles.values()), "per_map": angles},
        "training_hippocampi_degrees": {"min": round(min(hippocampi), 1), "max": round(max(hippocampi), 1)},
        "measured_by": ("scripts/measure_crop_pose.py: median long-axis angle (runtime.localizer.long_axis_pitch) of the "
                        "intracranial space of the label maps the segmentation model was trained on (01-16), and of their "
                        "hippocampi (17, 53); crops are turned about the left-right axis to the first, or to the second "
                        "where the field of view cuts the intracranial space"),
    }
    print(json.dumps({k: v for k, v in pose.items() if k != "measured_by"}, indent=1))
    if args.write:
        card = json.loads(LOCALIZER_CARD.read_text())
        card["crop_pose"] = pose
        LOCALIZER_CARD.write_text(json.dumps(card, indent=1) + "\n")
        print(f"wrote crop_pose into {LOCALIZER_CARD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
