"""How often the presence check refuses a genuine hippocampus: every labelled Decathlon crop
(all 208 here, each holding one hippocampus) through the pipeline's crop mode.

    PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/presence_false_refusals.py \
        [--model hippocampus-whole-lunet] --out docs/results/presence_false_refusals_hippocampus-whole-lunet.json

For each crop: refused or not (the card's "crop" thresholds), the segment's volume, mean
probability and entropy. The whole-hippocampus model never trained on these crops (it learned
from synthetic images only), so every crop is held out for it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from LUnetSegmentationLib.files.volumeio import readImage
from LUnetSegmentationLib.runtime.pipeline import get_segmenter, label_image
from LUnetSegmentationLib.runtime.preprocess import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hippocampus-whole-lunet")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    loaded = get_segmenter(args.model, "cpu")
    rows = []
    for path in sorted((SHARED / "Task04_Hippocampus" / "imagesTr").glob("hippocampus_*.nii.gz")):
        row = {"case": path.name.split(".")[0]}
        try:
            result = label_image(readImage(path), loaded=loaded, name=row["case"])
            row.update(refused=False, volume_mm3=round(sum(result.volumes_mm3.values()), 1),
                       **result.details.get("confidence", {}).get("crop", {}))
        except InputError as error:
            row.update(refused=True, reason=str(error)[:160])
        rows.append(row)
    refused = sum(r["refused"] for r in rows)
    summary = {"model": args.model, "crops": len(rows), "refused": refused, "false_refusal_rate": round(refused / len(rows), 4),
               "command": "PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/presence_false_refusals.py " + " ".join(argv or sys.argv[1:])}
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps({**summary, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
