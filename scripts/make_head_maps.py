"""Shrink the SynthSeg label maps to 2 mm whole heads for training the localizer.

    .venv/bin/python scripts/make_head_maps.py [--maps ../shared/data/synthseg_label_maps] [--out .gpu/head_maps.npz]

Each 256^3, 1 mm map is turned to RAS axes (make_synth_crops.load_ras) and every second voxel
is kept (nearest, 128^3 at 2 mm): the localizer works on a 4 mm grid, so its synthetic heads are
drawn at 2 mm and averaged down by 2 for partial volume. Labels become a compact uint8 index
shared by all maps (`values`), so 20 heads take a few MB and can be carried to a lent GPU.
The 1 mm truth of each map is kept beside them: intracranial volume (every label below 500:
brain, ventricles and CSF) and each hippocampus, in mm3. Output goes to the git-ignored .gpu/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_synth_crops import compact_labels, label_map_paths, load_ras  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "synthseg_label_maps"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / ".gpu" / "head_maps.npz"))
    args = parser.parse_args(argv)
    heads, subjects, icv, left, right = [], [], [], [], []
    for path in label_map_paths(args.maps):
        labels = load_ras(path)
        icv.append(int(((labels > 0) & (labels < 500)).sum()))
        left.append(int((labels == 17).sum()))
        right.append(int((labels == 53).sum()))
        heads.append(labels[::2, ::2, ::2])
        subjects.append(path.name.split(".")[0])
        print(f"{path.name}: intracranial {icv[-1] / 1000:.0f} mL, hippocampus {left[-1]} / {right[-1]} mm3")
    stack, values = compact_labels(heads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, heads=stack, values=values, subjects=np.array(subjects),
                        icv_mm3=np.array(icv), left_mm3=np.array(left), right_mm3=np.array(right), spacing_mm=2.0)
    print(f"{len(heads)} heads {heads[0].shape} at 2 mm with {len(values)} labels -> {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
