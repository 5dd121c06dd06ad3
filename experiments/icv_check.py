"""The learned localizer's intracranial volume on the shared real whole-head scans, beside the
references that exist for them.

    PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/icv_check.py \
        [--peer-etiv fs_norm=1368.75 ...] --out docs/results/icv_wholebrain.json

For every scan under ../shared/data/wholebrain (as benchmarks/wholehead.py finds them): the
intracranial volume (mL), whether the field of view cuts it, and the CPU-seconds of the
localizer. References, where there are any:
- fs_norm: the volume of FreeSurfer's aseg labels (every label of aparc.a2009s+aseg: brain and
  ventricles, without the extracerebral CSF that aseg does not label, so it is a lower bound
  of the intracranial volume);
- `--peer-etiv NAME=ML`: another tool's estimate for the same scan (NAME: the scan's folder, or
  folder/file where a folder holds several; e.g. hippodeep's eTIV from its *_hippoLR_volumes.csv,
  in mm3 / 1000), given by hand because the peer runs outside this repository.
At the end: the correlation and mean ratio against the peer over scans whose estimate is not
withheld (the field of view cuts the brain).
The synthetic heads' errors against label-map truth come from experiments/localizer_eval.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LUnetSegmentationLib.files.volumeio import readImage
from LUnetSegmentationLib.runtime.localize import BOX_MM, LocalizationError
from LUnetSegmentationLib.runtime.localizer import localize_learned

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "wholebrain"
LABEL_WORDS = ("aal", "aseg", "aparc", "mask")


def scans(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.name.endswith((".nii.gz", ".nii", ".mgz")) and not any(w in path.name for w in LABEL_WORDS):
            if path.name.endswith(".mgz") and path.with_name(path.name[:-4] + ".nii.gz").exists():
                continue  # the same scan as its NIfTI copy
            yield path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--peer-etiv", nargs="*", default=[], metavar="NAME=ML")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    peer = dict(item.split("=", 1) for item in args.peer_etiv)
    rows = []
    for path in scans(args.data):
        name = path.parent.name
        image = readImage(path)
        cpu = time.process_time()
        try:
            found = localize_learned(image, BOX_MM)
            row = {"scan": f"{name}/{path.name}", "icv_ml": round(found.intracranial_ml, 1), "cut": found.intracranial_cut,
                   "failed_sides": found.failed}
        except LocalizationError as error:
            row = {"scan": f"{name}/{path.name}", "error": str(error)[:200]}
        row["localizer_cpu_s"] = round(time.process_time() - cpu, 3)
        aseg = path.parent / "aparc.a2009s+aseg.nii.gz"
        if aseg.exists():
            labels = sitk.ReadImage(str(aseg))
            row["aseg_labelled_ml"] = round(float((sitk.GetArrayViewFromImage(labels) > 0).sum())
                                            * float(np.prod(labels.GetSpacing())) / 1000, 1)
        key = f"{name}/{path.name}" if f"{name}/{path.name}" in peer else name
        if key in peer:
            row["peer_etiv_ml"] = float(peer[key])
        rows.append(row)
        print(json.dumps(row), flush=True)
    paired = [(row["icv_ml"], row["peer_etiv_ml"]) for row in rows if "icv_ml" in row and "peer_etiv_ml" in row and not row["cut"]]
    agreement = None
    if len(paired) >= 3:
        ours, theirs = np.array(paired).T
        agreement = {"n": len(paired), "pearson_r": round(float(np.corrcoef(ours, theirs)[0, 1]), 3),
                     "mean_ratio": round(float(np.mean(ours / theirs)), 3), "max_abs_difference": round(float(np.max(np.abs(ours / theirs - 1))), 3)}
        print(json.dumps({"against_peer": agreement}))
    report = {"against_peer": agreement, "command": "PYTHONPATH=LUnetSegmentation .venv/bin/python experiments/icv_check.py " + " ".join(argv or sys.argv[1:]),
              "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
