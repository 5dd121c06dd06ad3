"""training/synthetic_heads.py: atrophied and resected heads, with the truth taken from the changed
label map, on a small hand-made label map (fast: no real data, no network)."""
import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.training import synthetic_heads as heads

WHITE_LEFT, WHITE_RIGHT, CORTEX_LEFT, CORTEX_RIGHT = 2, 41, 3, 42


def toy_labels() -> np.ndarray:
    """A 40 x 48 x 64 (z, y, x) 'brain': white matter and cortex per hemisphere, a lateral
    ventricle and a temporal horn next to a 1,920-voxel hippocampus on each side."""
    labels = np.zeros((40, 48, 64), np.int32)
    labels[4:36, 4:44, 4:32] = CORTEX_LEFT
    labels[4:36, 4:44, 32:60] = CORTEX_RIGHT
    labels[8:32, 8:40, 8:30] = WHITE_LEFT
    labels[8:32, 8:40, 34:56] = WHITE_RIGHT
    for side, (x0, x1) in (("left", (12, 24)), ("right", (40, 52))):
        labels[10:18, 12:32, x0:x1] = heads.HIPPOCAMPUS[side]  # 8 x 20 x 12 = 1,920 voxels
        labels[18:20, 12:32, x0:x1] = heads.INFERIOR_LATERAL_VENTRICLE[side]
        labels[24:30, 14:34, x0 + 2:x1 - 2] = heads.LATERAL_VENTRICLE[side]
    labels[36:38, 4:44, 4:60] = heads.CSF
    return labels


def count(labels, side, kind=heads.HIPPOCAMPUS):
    return int((labels == kind[side]).sum())


def test_atrophy_reaches_the_target_volumes_and_keeps_the_core():
    labels = toy_labels()
    out = heads.atrophy(labels, (1.0, 1.0, 1.0))
    assert count(out, "left") == 600
    assert count(out, "right") == round(0.55 * 1920)
    for side in heads.HIPPOCAMPUS:
        kept = out == heads.HIPPOCAMPUS[side]
        assert np.all(labels[kept] == heads.HIPPOCAMPUS[side])  # what is left was hippocampus
        lost = (labels == heads.HIPPOCAMPUS[side]) & ~kept
        assert np.all(out[lost] == heads.INFERIOR_LATERAL_VENTRICLE[side])  # eroded into the temporal horn
        # it thins from the surface: the outermost layer goes first, the centre stays
        assert not kept[10, 12:32, :].any() and kept[14, 22, 18 if side == "left" else 46]
        # the ventricles grew into the tissue around them, never into the other labels
        assert count(out, side, heads.LATERAL_VENTRICLE) > count(labels, side, heads.LATERAL_VENTRICLE)
    grown = (out != labels) & ~np.isin(labels, list(heads.HIPPOCAMPUS.values()))
    assert set(np.unique(labels[grown])) <= {WHITE_LEFT, WHITE_RIGHT, CORTEX_LEFT, CORTEX_RIGHT}
    assert np.array_equal(labels, toy_labels())  # the input is left as it was


def test_atrophy_counts_millimetres_not_voxels():
    labels = toy_labels()
    out = heads.erode_to_volume(labels.copy(), (0.5, 0.5, 0.5), heads.HIPPOCAMPUS["left"], 5, 100.0)
    assert count(out, "left") == 100 / 0.125  # 0.125 mm3 voxels
    small = heads.erode_to_volume(labels.copy(), (1.0, 1.0, 1.0), heads.HIPPOCAMPUS["left"], 5, 5000.0)
    assert count(small, "left") == 1920  # already smaller than the target: unchanged


@pytest.mark.parametrize("pathology, side", [("resection", "left"), ("resection-right", "right")])
def test_resection_removes_the_hippocampus_and_two_voxels_around_it(pathology, side):
    labels = toy_labels()
    out = heads.apply_pathology(labels, (1.0, 1.0, 1.0), pathology)
    other = "right" if side == "left" else "left"
    assert count(out, side) == 0 and count(out, other) == 1920
    assert heads.resected_side(pathology) == side
    cavity = out != labels
    assert np.all(out[cavity] == heads.CSF)
    z, y, x = np.nonzero(labels == heads.HIPPOCAMPUS[side])
    assert out[z.min() - 2, y.min(), x.min()] == heads.CSF  # 2 voxels out: cavity
    assert out[z.min() - 3, y.min(), x.min()] == labels[z.min() - 3, y.min(), x.min()]  # 3 voxels out: kept


def test_unknown_pathology_is_refused():
    with pytest.raises(ValueError, match="unknown pathology 'stroke'"):
        heads.apply_pathology(toy_labels(), (1.0, 1.0, 1.0), "stroke")


def toy_labels_without_csf() -> np.ndarray:
    labels = toy_labels()
    labels[labels == heads.CSF] = 0
    return labels


@pytest.fixture
def toy_map(tmp_path):
    """The toy map without label 24, so a resection brings in a label the map did not have."""
    image = sitk.GetImageFromArray(toy_labels_without_csf().astype(np.float32))  # float labels, as SynthSeg's are
    path = tmp_path / "toy_seg.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("contrast", ["t1", "flair"])
def test_synthetic_resected_head_has_fluid_where_the_hippocampus_was(toy_map, contrast):
    healthy_image, healthy_labels = heads.synthesize_head(toy_map, contrast, seed=3)
    image, labels = heads.synthesize_head(toy_map, contrast, seed=3, pathology="resection")
    truth = sitk.GetArrayFromImage(labels)
    assert np.array_equal(truth, heads.apply_pathology(toy_labels_without_csf(), (1.0, 1.0, 1.0), "resection"))
    before, after = sitk.GetArrayFromImage(healthy_image), sitk.GetArrayFromImage(image)
    hippocampus = toy_labels() == heads.HIPPOCAMPUS["left"]
    ventricle = toy_labels() == heads.LATERAL_VENTRICLE["left"]
    # the cavity looks like the ventricles of the same head, not like the tissue it replaced
    assert abs(np.median(after[hippocampus]) - np.median(after[ventricle])) < 0.1
    assert abs(np.median(before[hippocampus]) - np.median(after[hippocampus])) > 0.2
    # away from the cavity nothing changed: same intensities, same noise
    far = np.zeros_like(hippocampus)
    far[:, :, 34:] = True
    assert np.array_equal(before[far], after[far])
    assert np.array_equal(sitk.GetArrayFromImage(healthy_labels), toy_labels_without_csf())


def test_paint_pathology_fills_a_real_scan_with_its_own_csf():
    labels = toy_labels()
    rng = np.random.default_rng(0)
    scan = np.where(np.isin(labels, heads._CSF_LABELS), 30.0, 100.0) + rng.normal(0, 2, labels.shape)
    image = sitk.GetImageFromArray(scan.astype(np.float32))
    after = heads.apply_pathology(labels, (1.0, 1.0, 1.0), "resection")
    painted = sitk.GetArrayFromImage(heads.paint_pathology(image, labels, after, seed=1))
    cavity = after != labels
    assert abs(float(np.median(painted[cavity])) - 30.0) < 5
    assert np.array_equal(painted[:, :, 40:], scan[:, :, 40:].astype(np.float32))  # the other side untouched
    with pytest.raises(ValueError, match="not on one grid"):
        heads.paint_pathology(image, labels[:, :, :32], after[:, :, :32])


def test_the_cli_parser_does_not_import_torch_or_matplotlib():
    """evaluate-wholehead's parser is built for every command (segment too): the synthetic-head
    and plotting code it names must not pull torch (seconds of CPU) or matplotlib in."""
    import subprocess
    import sys

    code = ("import sys\nfrom LUnetSegmentationLib.apps.cli import build_parser\nbuild_parser()\n"
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr[-2000:]
