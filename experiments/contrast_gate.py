"""Where does a T1-only model's contrast gate fall? (runtime/contrast.py)

    PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/contrast_gate.py \
        [--limit 0.35] --out docs/results/contrast_gate.json

The learned localizer's deep_brightness_rank (how much of the outer brain the deep brain's median
outshines) for:
- every real whole-head T1 under ../shared/data/wholebrain (the scans icv_check.py finds), as it
  lies and turned 30 degrees about the left-right and the vertical axis (header turn, pose_check);
- synthetic heads from the four label maps held out of training (17-20), T1-, T2- and FLAIR-like,
  healthy, atrophied and resected (training/synthetic_heads.synthesize_head).
Per group: the range, and how many a T1-only model would refuse at --limit. A real T1 refused is
a false refusal; a FLAIR let through is a wrong result waiting to happen.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from icv_check import SHARED, scans  # noqa: E402
from pose_check import posed  # noqa: E402

from LUnetSegmentationLib.files.volumeio import readImage  # noqa: E402
from LUnetSegmentationLib.runtime.localize import BOX_MM  # noqa: E402
from LUnetSegmentationLib.runtime.localizer import localize_learned  # noqa: E402
from LUnetSegmentationLib.training.synthetic_heads import synthesize_head  # noqa: E402

HELD_OUT = ("training_seg_17", "training_seg_18", "training_seg_19", "training_seg_20")
POSES = {"as it lies": None, "pitch 30": (0, 30.0), "yaw 30": (2, 30.0)}


def rank_of(image) -> float | None:
    return localize_learned(image, BOX_MM).deep_brightness_rank


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=0.35, help="the gate: refuse below this rank")
    parser.add_argument("--maps", type=Path, default=SHARED.parent / "synthseg_label_maps")
    parser.add_argument("--out", type=Path, default=Path("docs/results/contrast_gate.json"))
    args = parser.parse_args(argv)
    rows = []
    for path in scans(SHARED):
        image = readImage(path)
        for pose, turn in POSES.items():
            rank = rank_of(image if turn is None else posed(image, *turn))
            rows.append({"case": f"{path.relative_to(SHARED)} {pose}", "group": "real T1", "rank": rank})
            print(rows[-1], flush=True)
    for subject in HELD_OUT:
        for contrast in ("t1", "t2", "flair"):
            for pathology in ("none", "atrophy", "resection"):
                image, _ = synthesize_head(args.maps / f"{subject}.nii.gz", contrast, 0, pathology)
                rows.append({"case": f"{subject} {contrast} {pathology}", "group": f"synthetic {contrast}",
                             "pathology": pathology, "rank": rank_of(image)})
                print(rows[-1], flush=True)
    groups = {}
    for group in dict.fromkeys(row["group"] for row in rows):
        ranks = [row["rank"] for row in rows if row["group"] == group and row["rank"] is not None]
        groups[group] = {"cases": len(ranks), "min": round(min(ranks), 3), "max": round(max(ranks), 3),
                         "refused_at_limit": sum(rank < args.limit for rank in ranks)}
    result = {"command": "PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/contrast_gate.py "
                         + " ".join(sys.argv[1:] if argv is None else argv),
              "limit": args.limit, "groups": groups,
              "rows": [{**row, "rank": None if row["rank"] is None else round(row["rank"], 3)} for row in rows]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(groups, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
