"""Cut the SynthSeg label maps into compact crops around each hippocampus for synthetic training.

    .venv/bin/python scripts/make_synth_crops.py [--maps ../shared/data/synthseg_label_maps] [--out .gpu/synth_crops.npz]

Each of the 20 whole-brain label maps (256^3, 1 mm, FreeSurfer numbering, LIA) is turned to
RAS axes and cut into one box per hippocampus (FreeSurfer 17 left, 53 right), centred on the
hippocampus' bounding-box midpoint (what the whole-head localizer aims at). Label values are
renumbered to a compact uint8 index shared by all maps (`values` maps index -> FreeSurfer
label), so 40 crops fit in a few MB: small enough to `carry` to a lent GPU, where training
is pure torch. The label maps themselves are never committed (their README's rule); this
output goes to the git-ignored .gpu/ folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# (z, y, x) = (S-I, A-P, R-L) voxels at 1 mm: the training patch (48, 64, 48) plus room for
# rotation, scaling, elastic deformation and localization error in the generator.
CROP_SHAPE = (88, 104, 88)
HIPPOCAMPUS = {"left": 17, "right": 53}


def load_ras(path: Path) -> np.ndarray:
    """A label map as a (z, y, x) = (S, A, R)-ordered integer array."""
    import nibabel

    image = nibabel.as_closest_canonical(nibabel.load(str(path)))  # voxel axes -> R, A, S
    spacing = np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))
    if not np.allclose(spacing, 1.0, atol=1e-3):
        raise ValueError(f"{path.name}: expected 1 mm voxels, got {spacing}")
    return np.rint(np.asarray(image.dataobj)).astype(np.int32).transpose(2, 1, 0)


def crop_around(labels: np.ndarray, value: int) -> np.ndarray:
    where = np.argwhere(labels == value)
    if where.size == 0:
        raise ValueError(f"label {value} is absent")
    centre = np.round((where.min(axis=0) + where.max(axis=0)) / 2).astype(int)
    start = centre - np.asarray(CROP_SHAPE) // 2
    out = np.zeros(CROP_SHAPE, dtype=labels.dtype)
    src = tuple(slice(max(0, s), min(n, s + c)) for s, c, n in zip(start, CROP_SHAPE, labels.shape))
    dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, start))
    out[dst] = labels[src]
    return out


def label_map_paths(folder) -> list[Path]:
    """The label maps in `folder`, sorted by name, or SystemExit saying none is there."""
    paths = sorted(Path(folder).glob("training_seg_*.nii.gz"))
    if not paths:
        raise SystemExit(f"No training_seg_*.nii.gz label maps in {folder}")
    return paths


def compact_labels(arrays) -> tuple[np.ndarray, np.ndarray]:
    """(the arrays renumbered to a shared compact uint8 index, stacked; index -> label value)."""
    values = np.unique(np.concatenate([np.unique(a) for a in arrays]))
    if len(values) > 255:
        raise SystemExit(f"{len(values)} distinct labels do not fit a uint8 index")
    index = np.zeros(int(values.max()) + 1, dtype=np.uint8)
    index[values] = np.arange(len(values), dtype=np.uint8)
    return np.stack([index[a] for a in arrays]), values.astype(np.int32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "synthseg_label_maps"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / ".gpu" / "synth_crops.npz"))
    args = parser.parse_args(argv)
    crops, subjects, sides = [], [], []
    for path in label_map_paths(args.maps):
        labels = load_ras(path)
        for side, value in HIPPOCAMPUS.items():
            crops.append(crop_around(labels, value))
            subjects.append(path.name.split(".")[0])
            sides.append(side)
        print(f"{path.name}: hippocampus voxels left {int((labels == 17).sum())}, right {int((labels == 53).sum())}")
    stack, values = compact_labels(crops)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, crops=stack, values=values, subjects=np.array(subjects), sides=np.array(sides))
    print(f"{len(crops)} crops {stack.shape[1:]} with {len(values)} labels -> {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
