"""Decathlon reading: layout errors, missing dataset.json, quirks (float labels, ._ files)."""
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.training.data import DatasetError, find_cases, load_case, read_label
from LUnetSegmentationLib.runtime.preprocess import InputError, PreprocessingConfig, normalize_intensity


def make_case(folder, name, label_dtype=sitk.sitkUInt8, image_dtype=sitk.sitkFloat32):
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    image = sitk.Cast(sitk.GetImageFromArray(rng.uniform(0, 200, (20, 24, 18)).astype(np.float32)), image_dtype)
    label_array = np.zeros((20, 24, 18), np.float32)
    label_array[5:10, 6:12, 4:9] = 1
    label_array[10:14, 6:12, 4:9] = 2
    label = sitk.Cast(sitk.GetImageFromArray(label_array), label_dtype)
    sitk.WriteImage(image, str(folder / "imagesTr" / f"{name}.nii.gz"))
    sitk.WriteImage(label, str(folder / "labelsTr" / f"{name}.nii.gz"))


def test_pairs_by_name_without_dataset_json_and_skips_macos_files(tmp_path):
    make_case(tmp_path, "case_b")
    make_case(tmp_path, "case_a", label_dtype=sitk.sitkFloat32, image_dtype=sitk.sitkUInt8)
    (tmp_path / "imagesTr" / "._case_a.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["case_a", "case_b"]
    image, label = load_case(cases[0], PreprocessingConfig())
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1, 2}
    assert image.dtype == np.float32 and abs(float(image.mean())) < 0.1


def test_missing_label_names_the_case_and_layout(tmp_path):
    make_case(tmp_path, "case_a")
    (tmp_path / "labelsTr" / "case_a.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"case_a: label missing.*imagesTr"):
        find_cases(tmp_path)


def test_folder_without_images_explains_the_layout(tmp_path):
    with pytest.raises(DatasetError, match="Decathlon-format"):
        find_cases(tmp_path)


def test_non_integer_labels_are_refused(tmp_path):
    path = tmp_path / "bad.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 4, 4), 0.5, np.float32)), str(path))
    with pytest.raises(DatasetError, match="non-integer"):
        read_label(path)


def test_wrong_archive_checksum_is_refused(tmp_path):
    from LUnetSegmentationLib.training.data import extract_archive

    archive = tmp_path / "Task04_Hippocampus.tar"
    archive.write_bytes(b"not the release")
    with pytest.raises(DatasetError, match="MD5"):
        extract_archive(archive)


def test_normalisation_is_robust_to_hot_voxels():
    rng = np.random.default_rng(1)
    volume = rng.normal(100, 10, (20, 20, 20)).astype(np.float32)
    hot = volume.copy()
    hot[0, 0, :5] = 1.7e6  # the Decathlon maxima range up to 1.7 million
    a, b = normalize_intensity(volume, PreprocessingConfig()), normalize_intensity(hot, PreprocessingConfig())
    assert np.abs(a[5:, 5:, 5:] - b[5:, 5:, 5:]).max() < 0.05


@pytest.mark.parametrize("volume, message", [
    (np.zeros((8, 8, 8), np.float32), "constant"),
    (np.full((8, 8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((0, 8, 8), np.float32), "empty"),
])
def test_degenerate_volumes_are_refused(volume, message):
    with pytest.raises(InputError, match=message):
        normalize_intensity(volume, PreprocessingConfig())


def test_real_decathlon_folder(hippocampus_dir, tmp_path):
    # The real release files, as a folder without dataset.json.
    for sub in ("imagesTr", "labelsTr"):
        (tmp_path / sub).mkdir()
        for name in ("hippocampus_001.nii.gz", "hippocampus_003.nii.gz"):
            shutil.copy(hippocampus_dir / sub / name, tmp_path / sub / name)
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["hippocampus_001", "hippocampus_003"]
    assert len(find_cases(hippocampus_dir)) == 208
