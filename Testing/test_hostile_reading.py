"""Hostile input, second round (issue 24), the reading side: left is left as nibabel, FSL and
FreeSurfer read a NIfTI (or a refusal when its qform and sform disagree), a float64 scan with a
huge offset keeps its contrast, sheared grids are refused in every format, NaN is refused by the
one reader every path uses, library text is replaced by messages that say what to do, and the
memory check budgets what a run really takes and sees cgroup and `ulimit -v` limits.

Small synthetic files in tmp_path, written with nibabel where the NIfTI header matters; the
shared scans where a real run is measured.
"""
from __future__ import annotations

import gzip
import math
import struct
import subprocess
import sys

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.files import volumeio
from LUnetSegmentationLib.files.volumeio import estimate_voxels_and_bytes, readImage
from LUnetSegmentationLib.runtime import checks, memory
from LUnetSegmentationLib.runtime.preprocess import InputError, PreprocessingConfig, normalize_intensity
from lunet_test_helpers import run_measuring_peak  # noqa: E402

SHEARED = "has a sheared voxel grid"


def _brainish(shape=(12, 11, 10), seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(300, 60, shape).astype(dtype)


def _ras_affine(image: sitk.Image) -> np.ndarray:
    """The IJK-to-RAS matrix of an ITK image (LPS inside ITK)."""
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    matrix = np.eye(4)
    matrix[:3, :3] = lps_to_ras @ np.reshape(image.GetDirection(), (3, 3)) @ np.diag(image.GetSpacing())
    matrix[:3, 3] = lps_to_ras @ np.asarray(image.GetOrigin())
    return matrix


def _rotation_z(degrees: float) -> np.ndarray:
    turn = np.eye(4)
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    turn[:2, :2] = [[c, -s], [s, c]]
    return turn


RAS = np.array([[1.0, 0, 0, -6], [0, 1, 0, -5], [0, 0, 1, -4], [0, 0, 0, 1]])
MIRRORED = np.diag([-1.0, 1, 1, 1]) @ RAS  # left and right swapped


def _nifti(path, qform, qcode, sform, scode, data=None):
    image = nibabel.Nifti1Image(_brainish((10, 11, 12)) if data is None else data, None)
    image.set_qform(qform, code=qcode)
    image.set_sform(sform, code=scode)
    nibabel.save(image, str(path))
    return path


# ----------------------------------------------------------------------------- qform and sform


def test_today_itk_reads_the_mirrored_qform_where_nibabel_reads_the_sform(tmp_path):
    """Why the check exists: after a tool updated only the sform, ITK keeps the stale qform."""
    path = _nifti(tmp_path / "stale.nii.gz", MIRRORED, 1, RAS, 2)
    assert np.allclose(nibabel.load(str(path)).affine, RAS)
    assert np.allclose(_ras_affine(sitk.ReadImage(str(path))), MIRRORED, atol=1e-5)


def test_qform_and_sform_disagreeing_on_left_and_right_are_refused(tmp_path):
    path = _nifti(tmp_path / "stale.nii.gz", MIRRORED, 1, RAS, 2)
    with pytest.raises(InputError) as refused:
        readImage(path)
    message = str(refused.value)
    assert "qform (code 1) says the voxel axes point LAS and its sform (code 2) says RAS" in message
    assert "fslorient -copysform2qform stale.nii.gz" in message and "set_qform" in message


def test_qform_and_sform_turned_90_degrees_apart_are_refused(tmp_path):
    path = _nifti(tmp_path / "turned.nii.gz", _rotation_z(90) @ RAS, 1, RAS, 1)
    with pytest.raises(InputError, match="says the voxel axes point ALS and its sform .* says RAS"):
        readImage(path)


@pytest.mark.parametrize("qform, qcode, sform, scode", [
    (RAS, 1, RAS, 1),  # the usual file: both the same
    (RAS, 1, RAS, 0),  # qform only
    (MIRRORED, 0, RAS, 2),  # sform only (qform not coded)
    (RAS, 1, _rotation_z(4) @ RAS, 2),  # a registration applied to the sform only
    (RAS, 1, np.array([[1.0, 0, 0, 14], [0, 1, 0, -5], [0, 0, 1, -4], [0, 0, 0, 1]]), 2),  # moved 20 mm
    (RAS, 2, np.diag([0.9, 1.1, 1.3, 1]) @ RAS, 1),  # other voxel sizes in the sform
], ids=["same", "qform-only", "sform-only", "sform-rotated", "sform-moved", "sform-spacing"])
def test_geometry_is_the_one_nibabel_reads(tmp_path, qform, qcode, sform, scode):
    """Left is left, and every voxel where nibabel, FSL and FreeSurfer put it."""
    path = _nifti(tmp_path / "scan.nii.gz", qform, qcode, sform, scode)
    image = readImage(path)
    assert np.allclose(_ras_affine(image), nibabel.load(str(path)).affine, atol=1e-4)


def test_labelmap_of_a_sform_file_overlays_it_in_nibabel(tmp_path):
    """The labels written on the read grid land on the same millimetres as the input in nibabel."""
    path = _nifti(tmp_path / "scan.nii.gz", RAS, 1, _rotation_z(4) @ RAS, 2)
    image = readImage(path)
    labels = sitk.Cast(image > 300, sitk.sitkUInt8)
    volumeio.writeLabelmap(labels, tmp_path / "labels.nii.gz")
    assert np.allclose(nibabel.load(str(tmp_path / "labels.nii.gz")).affine, nibabel.load(str(path)).affine, atol=1e-4)


# ----------------------------------------------------------------------------- float64 with an offset


def test_normalisation_keeps_the_contrast_of_a_float64_volume_with_a_1e9_offset():
    head = _brainish((20, 20, 20), dtype=np.float64)
    head[:4] = 0.0  # background
    config = PreprocessingConfig()
    plain, offset = normalize_intensity(head, config), normalize_intensity(head + 1e9, config)
    assert offset.dtype == np.float32
    assert np.abs(plain - offset).max() < 1e-4


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_a_1e9_offset_is_removed_before_anything_casts_to_float32(tmp_path, dtype):
    head = np.round(_brainish((12, 11, 10), dtype=np.float64))
    head[:2] = 0.0
    path = tmp_path / "offset.nii.gz"
    nibabel.save(nibabel.Nifti1Image((head + 1e9).astype(dtype).transpose(2, 1, 0), RAS, dtype=dtype), str(path))
    voxels = sitk.GetArrayFromImage(sitk.Cast(readImage(path), sitk.sitkFloat32))
    assert np.unique(voxels).size == np.unique(head).size  # cast first, 1e9 + x has steps of 64
    assert np.allclose(voxels, head - np.percentile(head, 0.5), atol=1e-3)


def test_ordinary_volumes_are_read_unchanged(tmp_path):
    for dtype in (np.float64, np.int32, np.uint16):
        head = np.round(_brainish((12, 11, 10), dtype=np.float64)).astype(dtype)
        path = tmp_path / f"plain-{np.dtype(dtype).name}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(head), str(path))
        image = readImage(path)
        assert np.array_equal(sitk.GetArrayFromImage(image), head)
        assert image.GetPixelID() == sitk.GetImageFromArray(head).GetPixelID()


def test_a_1e9_offset_gives_the_same_labels(tmp_path, hippocampus_dir):
    """The real run: a Decathlon crop and the same crop as float64 + 1e9 are segmented alike."""
    pytest.importorskip("torch")
    from LUnetSegmentationLib.runtime.pipeline import label_image

    source = hippocampus_dir / "imagesTr" / "hippocampus_003.nii.gz"
    original = nibabel.load(str(source))
    shifted = tmp_path / "shifted.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.asarray(original.dataobj, dtype=np.float64) + 1e9, original.affine,
                                     dtype=np.float64), str(shifted))
    assert nibabel.load(str(shifted)).get_data_dtype() == np.float64
    plain = sitk.GetArrayFromImage(label_image(readImage(source), device="cpu", name="plain").labels)
    offset = sitk.GetArrayFromImage(label_image(readImage(shifted), device="cpu", name="offset").labels)
    assert plain.any()
    assert np.mean(plain == offset) > 0.999, f"{np.count_nonzero(plain != offset)} voxels differ"


# ----------------------------------------------------------------------------- sheared grids


SHEAR = np.array([[1.0, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def _sheared(tmp_path, kind):
    voxels = _brainish((10, 11, 12))  # k, j, i
    if kind == "nrrd":
        path = tmp_path / "sheared.nrrd"
        path.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 12 11 10\n"
                         b"space directions: (1,0,0) (0.3,1,0) (0,0,1)\nspace origin: (0,0,0)\nencoding: raw\n"
                         b"endian: little\n\n" + voxels.astype("<f4").tobytes())
    elif kind == "mha":
        path = tmp_path / "sheared.mha"
        path.write_bytes(b"ObjectType = Image\nNDims = 3\nTransformMatrix = 1 0 0 0.3 1 0 0 0 1\nOffset = 0 0 0\n"
                         b"ElementSpacing = 1 1 1\nDimSize = 12 11 10\nElementType = MET_FLOAT\n"
                         b"ElementByteOrderMSB = False\nElementDataFile = LOCAL\n" + voxels.astype("<f4").tobytes())
    elif kind == "mgz":
        path = tmp_path / "sheared.mgz"
        nibabel.save(nibabel.MGHImage(voxels.transpose(2, 1, 0), SHEAR), str(path))
    else:
        path = tmp_path / "sheared.nii.gz"
        nibabel.save(nibabel.Nifti1Image(voxels.transpose(2, 1, 0), SHEAR), str(path))
    return path


@pytest.mark.parametrize("kind", ["nrrd", "mha"])
def test_today_itk_reads_sheared_nrrd_and_metaimage_without_a_word(tmp_path, kind):
    """Why the check exists: the readers pass a non-orthonormal direction on (NRRD even rescales
    one axis), and the labelmap written on that grid no longer overlays the scan."""
    image = sitk.ReadImage(str(_sheared(tmp_path, kind)))
    axes = np.reshape(image.GetDirection(), (3, 3))
    assert abs(axes[:, 0] @ axes[:, 1]) > 0.2


@pytest.mark.parametrize("kind", ["nrrd", "mha", "mgz", "nii.gz"])
def test_sheared_grids_are_refused_alike_in_every_format(tmp_path, kind):
    with pytest.raises(InputError) as refused:
        readImage(_sheared(tmp_path, kind))
    assert f"sheared.{kind} {SHEARED}: two of its axes meet 16.70 degrees away from a right angle" in str(refused.value)
    assert "Resample it onto a regular grid first" in str(refused.value)


def test_entry_check_refuses_a_sheared_image_from_any_caller():
    image = sitk.GetImageFromArray(_brainish())
    image.SetDirection([1, 0.3, 0, 0, 1, 0, 0, 0, 1])
    with pytest.raises(InputError, match=f"The volume 'scan' {SHEARED}"):
        checks.check_input(image, "scan")


def test_oblique_but_orthonormal_scans_still_read(tmp_path, wholebrain_dir):
    image = readImage(wholebrain_dir / "hippodeep_example" / "example_brain_t1_oblique.nii.gz")
    assert not np.allclose(np.abs(image.GetDirection()), np.eye(3).flatten(), atol=1e-2)
    assert checks.check_input(image, "oblique") == []


# ----------------------------------------------------------------------------- NaN: the reader refuses it


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz", ".mgz"])
def test_nan_is_refused_by_the_reader_in_every_format(tmp_path, suffix):
    """Every path reads through readImage (the module's child process too), so none can turn NaN
    into 0 or skip the entry check with warnings it was handed."""
    array = _brainish()
    array[2, 3, 4] = np.nan
    path = tmp_path / f"nan{suffix}"
    if suffix == ".mgz":
        nibabel.save(nibabel.MGHImage(array.transpose(2, 1, 0), np.eye(4)), str(path))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path), useCompression=True)
    with pytest.raises(InputError, match="has 1 NaN or infinite voxel"):
        readImage(path)


# ----------------------------------------------------------------------------- library text replaced


def test_complex_nifti_is_refused_saying_to_save_the_magnitude(tmp_path):
    path = tmp_path / "kspace.nii.gz"
    nibabel.save(nibabel.Nifti1Image(_brainish().astype(np.complex64), np.eye(4)), str(path))
    with pytest.raises(InputError, match=r"holds complex numbers \(complex64.*Save its magnitude first"):
        readImage(path)
    complex_image = sitk.GetImageFromArray(_brainish().astype(np.complex64))
    with pytest.raises(InputError, match="holds complex numbers"):
        checks.check_input(complex_image, "scan")


@pytest.mark.parametrize("affine", [np.eye(4), np.array([[0, 0, 1.0, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])],
                         ids=["axial", "sagittal"])
def test_2d_nifti_is_refused_as_2d(tmp_path, affine):
    """ITK's words for a sagittal 2D NIfTI were a matrix row, "(1 -0)"."""
    path = tmp_path / "slice.nii.gz"
    nibabel.save(nibabel.Nifti1Image(_brainish((64, 64)), affine), str(path))
    with pytest.raises(InputError, match=r"slice.nii.gz is 2D; the model needs a 3D MRI volume \(64x64 voxels: one slice\)"):
        readImage(path)


def test_a_single_dicom_file_says_series_are_read_as_folders(tmp_path):
    path = tmp_path / "IM0001.dcm"
    sitk.WriteImage(sitk.GetImageFromArray(_brainish((64, 64), dtype=np.int16)), str(path))
    with pytest.raises(InputError, match=r"single DICOM file .*give the folder of the series"):
        readImage(path)


def test_a_file_named_only_by_its_extension_is_refused_with_a_rename(tmp_path):
    path = tmp_path / ".nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(_brainish()), str(tmp_path / "x.nii.gz"))
    path.write_bytes((tmp_path / "x.nii.gz").read_bytes())
    with pytest.raises(InputError, match=r"'\.nii\.gz' has nothing before its extension.*Rename it \(e\.g\. to "
                                         r"scan\.nii\.gz\)"):
        readImage(path)


def test_micrometre_spacing_is_refused_as_a_header_in_the_wrong_unit():
    image = sitk.GetImageFromArray(_brainish())
    image.SetSpacing([0.001] * 3)
    with pytest.raises(InputError, match=r"0\.001x0\.001x0\.001 mm .* finer than any MRI .* metres or micrometres"):
        checks.check_input(image, "scan")


def test_a_failed_allocation_is_a_memory_message(tmp_path, monkeypatch):
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(_brainish()), str(path))

    def cannot_allocate(*args, **kwargs):
        raise RuntimeError("Exception thrown in SimpleITK ReadImage: itkImportImageContainer.hxx:200:\n"
                           "ITK ERROR: Failed to allocate memory for image.")

    monkeypatch.setattr(sitk, "ReadImage", cannot_allocate)
    with pytest.raises(InputError) as refused:
        readImage(path)
    assert str(refused.value).startswith("Not enough memory to read scan.nii.gz: this process may use")
    assert "ITK ERROR" not in str(refused.value)


@pytest.mark.parametrize("text", [
    "ITK ERROR: Failed to allocate memory for image.",
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : ... Failed to allocate memory for requested buffer of size 1019215872",
    "[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 4 GB",
    "std::bad_alloc",
])
def test_allocation_failures_of_every_library_are_recognised(text):
    assert memory.is_out_of_memory(RuntimeError(text)) and memory.is_out_of_memory(MemoryError())
    assert not memory.is_out_of_memory(RuntimeError("Filter does not support casting from complex"))


# ----------------------------------------------------------------------------- memory: budget and limits


def _header_only_nifti(path, shape, dtype):
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_data_offset(352)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))
    return path


def test_a_035_mm_head_is_budgeted_what_it_peaked_at(tmp_path):
    """The issue's 0.35 mm isotropic head (uint8) peaked at 4.3 GB; the old budget was 5 bytes per
    voxel (2.0 GB), so a machine with 3 GB accepted it and then ran out."""
    path = _header_only_nifti(tmp_path / "fine.nii.gz", (731, 731, 731), np.uint8)
    voxels, needed = estimate_voxels_and_bytes(path)
    assert needed / voxels >= 11  # 4.3 GB
    with pytest.raises(InputError, match=r"would need about 4\.\d GiB of memory and 3\.0 GiB is available"):
        volumeio.check_size(path, available=3 << 30)


def test_the_model_still_to_load_is_counted(tmp_path, monkeypatch):
    """The CLI checks the size before torch and the model are loaded (about 360 MiB more)."""
    path = _header_only_nifti(tmp_path / "small.nii.gz", (100, 100, 100), np.uint8)
    scan = memory.run_peak_bytes(100**3, 1)
    monkeypatch.setattr(memory, "resident_bytes", lambda: 100 << 20)
    assert memory.process_bytes_to_come() == memory.RUN_PROCESS_BYTES - (100 << 20)
    with pytest.raises(InputError, match="would need about"):
        volumeio.check_size(path, available=scan + (200 << 20))
    volumeio.check_size(path, available=scan + (260 << 20))
    monkeypatch.setattr(memory, "resident_bytes", lambda: 2 << 30)  # a batch: loaded with the first scan
    assert memory.process_bytes_to_come() == 0
    volumeio.check_size(path, available=scan)


@pytest.mark.slow
def test_measured_peak_of_a_whole_head_run_stays_within_the_budget(tmp_path, wholebrain_dir):
    """The figure in runtime/memory.py, measured again: a whole-head run of a 0.5 mm scan (about
    50 million voxels) peaks below its budget plus the process's own 450 MiB."""
    pytest.importorskip("torch")
    source = sitk.ReadImage(str(wholebrain_dir / "chris_t1" / "chris_t1.nii.gz"))
    size = [int(round(n * s / 0.5)) for n, s in zip(source.GetSize(), source.GetSpacing())]
    fine = sitk.Resample(source, size, sitk.Transform(), sitk.sitkLinear, source.GetOrigin(), [0.5] * 3,
                         source.GetDirection(), 0, source.GetPixelID())
    path = tmp_path / "fine.nii.gz"
    sitk.WriteImage(fine, str(path), useCompression=True)
    del source, fine
    status, output, peak = run_measuring_peak([sys.executable, "-m", "LUnetSegmentationLib", "segment", path, "--out",
                                               tmp_path / "out", "--device", "cpu", "--labelmap", "--quiet"])
    assert status == 0, output
    voxels, budget = estimate_voxels_and_bytes(path)
    assert peak <= budget + (450 << 20), f"peak {peak / 2**20:.0f} MiB, budget {budget / 2**20:.0f} MiB"
    assert peak >= 0.6 * budget, "the budget is far above the real peak: measure the figure again"


def _files(root, files: dict[str, str]):
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def test_cgroup_v2_limit_less_current_use_and_reclaimable_cache(tmp_path):
    _files(tmp_path, {"proc": "0::/slurm/job_42\n",
                      "cg/slurm/job_42/memory.max": str(4 << 30), "cg/slurm/job_42/memory.current": str(3 << 30),
                      "cg/slurm/job_42/memory.stat": f"anon 1\nfile 2\ninactive_file {1 << 30}\nactive_file 5\n",
                      "cg/slurm/memory.max": "max", "cg/slurm/memory.current": str(50 << 30)})
    assert memory.cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == (2 << 30, "cgroup v2 memory.max")


def test_cgroup_v2_parent_limit_applies_and_max_means_none(tmp_path):
    _files(tmp_path, {"proc": "0::/a/b\n", "cg/a/b/memory.max": "max", "cg/a/b/memory.current": "100",
                      "cg/a/memory.max": str(1 << 30), "cg/a/memory.current": str(256 << 20)})
    assert memory.cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc"))[0] == 768 << 20
    _files(tmp_path, {"cg/a/memory.max": "max\n"})
    assert memory.cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == (None, "")


def test_cgroup_v1_limit_and_its_no_limit_value(tmp_path):
    _files(tmp_path, {"proc": "12:pids:/x\n4:memory:/docker/abc\n1:name=systemd:/x\n",
                      "cg/memory/docker/abc/memory.limit_in_bytes": str(2 << 30),
                      "cg/memory/docker/abc/memory.usage_in_bytes": str(1 << 30),
                      "cg/memory/docker/abc/memory.stat": f"cache 9\ntotal_inactive_file {256 << 20}\n",
                      "cg/memory/memory.limit_in_bytes": "9223372036854771712"})
    assert memory.cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == (
        (1 << 30) + (256 << 20), "cgroup v1 memory.limit_in_bytes")
    _files(tmp_path, {"cg/memory/docker/abc/memory.limit_in_bytes": "9223372036854771712"})
    assert memory.cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == (None, "")


def test_cgroup_path_missing_inside_a_container_reads_the_mount_itself(tmp_path):
    """With a cgroup namespace /proc/self/cgroup names a path the container's mount does not have."""
    _files(tmp_path, {"proc": "0::/kubepods/pod1/ctr\n", "cg/memory.max": str(3 << 30), "cg/memory.current": "0"})
    assert memory.cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == (3 << 30, "cgroup v2 memory.max")


def test_available_memory_is_the_lowest_limit(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "cgroup_available", lambda: (1 << 30, "cgroup v2 memory.max"))
    if sys.platform.startswith("linux"):
        assert memory.available_memory_bytes() == 1 << 30 and memory.memory_source() == "cgroup v2 memory.max"
        path = tmp_path / "scan.nii.gz"
        _header_only_nifti(path, (512, 512, 512), np.int16)
        with pytest.raises(InputError, match=r"GiB is available to this process \(cgroup v2 memory.max\).*SLURM --mem"):
            volumeio.check_size(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ulimit -v and /proc/self/status are Linux")
def test_ulimit_v_is_seen_before_anything_is_read(tmp_path):
    """Under `ulimit -v` ITK's allocation failed ("Failed to allocate memory for image"): the
    header check now sees the limit and refuses, naming it."""
    path = _header_only_nifti(tmp_path / "big.nii.gz", (512, 512, 512), np.float32)
    script = ("import resource, sys\nfrom LUnetSegmentationLib.files.volumeio import readImage\n"
              "from LUnetSegmentationLib.runtime.preprocess import InputError\n"
              "mapped = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize')][0]\n"
              "resource.setrlimit(resource.RLIMIT_AS, (mapped + (512 << 20), resource.RLIM_INFINITY))\n"
              "try:\n    readImage(sys.argv[1])\nexcept InputError as e:\n    print('refused:', e)\n")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("refused:") and "ulimit -v (RLIMIT_AS)" in result.stdout, result.stdout + result.stderr


def test_float32_safe_is_there_for_images_that_come_from_no_file():
    """The Slicer node path builds its image from the node's voxels: the same function applies."""
    head = np.round(_brainish((12, 11, 10), dtype=np.float64))
    plain = sitk.GetImageFromArray(head)
    assert checks.float32_safe(plain) is plain
    shifted = sitk.GetImageFromArray(head + 1e9)
    shifted.SetSpacing([0.9, 1.0, 1.1])
    safe = checks.float32_safe(shifted)
    assert safe.GetPixelID() == sitk.sitkFloat32 and safe.GetSpacing() == shifted.GetSpacing()
    assert np.unique(sitk.GetArrayViewFromImage(safe)).size == np.unique(head).size


@pytest.mark.parametrize("suffix", [".nrrd", ".nii"])
def test_the_module_worker_refuses_nan_even_when_handed_the_entry_checks_warnings(tmp_path, suffix):
    """The panel's child read its input with sitk.ReadImage (NaN in NIfTI became 0: 1,713 mm3
    instead of 3,204). It now reads through readImage, which refuses NaN in every format, also
    when it is handed `checked` (the parent's entry check) and does not check again."""
    import io

    from LUnetSegmentationLib.slicer_adapter import worker

    array = _brainish((20, 20, 20))
    array[5, 5, 5] = np.nan
    path = tmp_path / f"input{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    request = {"id": "1", "input": str(path), "output_dir": str(tmp_path / "out"), "device": "cpu", "checked": []}
    with pytest.raises(InputError, match="has 1 NaN or infinite voxel"):
        worker.run_request(request, worker.Emitter(io.StringIO()))
    assert not list((tmp_path / "out").glob("labels*"))


def test_a_volume_loaded_with_the_qform_is_refused_where_nibabel_reads_the_sform(tmp_path):
    """For the Slicer module: its volume node was loaded by ITK (the qform); the file's sform says
    otherwise, so the node's labels would not overlay the scan in nibabel, FSL or FreeSurfer."""
    path = _nifti(tmp_path / "moved.nii.gz", RAS, 1, _rotation_z(4) @ RAS, 2)
    as_slicer_loads_it = _ras_affine(sitk.ReadImage(str(path)))
    with pytest.raises(InputError, match=r"'T1' was loaded from moved.nii.gz with the file's qform.*copysform2qform"):
        volumeio.check_loaded_geometry(path, as_slicer_loads_it, "T1")
    volumeio.check_loaded_geometry(path, _ras_affine(readImage(path)), "T1")  # nibabel's geometry passes
    same = _nifti(tmp_path / "same.nii.gz", RAS, 1, RAS, 1)
    volumeio.check_loaded_geometry(same, _ras_affine(sitk.ReadImage(str(same))), "T1")
    volumeio.check_loaded_geometry(tmp_path / "scan.nrrd", np.eye(4), "T1")  # not NIfTI (or absent): nothing to say


@pytest.mark.parametrize("kind", ["nifti1", "nifti2", "nifti1-big-endian"])
def test_header_geometry_is_read_as_nibabel_reads_it(tmp_path, kind):
    """The reader takes the qform and sform from the header bytes (nibabel is optional inside
    Slicer): the same matrices and axis codes as nibabel, for rotations, flips and qfac -1."""
    rng = np.random.default_rng(7)
    for case in range(12):
        affine = np.eye(4)
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        rotation *= np.sign(np.linalg.det(rotation))  # a rotation, flips added below
        flip = np.diag([(-1.0) ** (case % 2), 1.0, (-1.0) ** (case // 2 % 2)])
        affine[:3, :3] = rotation @ flip @ np.diag(rng.uniform(0.5, 2.0, 3))
        affine[:3, 3] = rng.uniform(-100, 100, 3)
        make = nibabel.Nifti2Image if kind == "nifti2" else nibabel.Nifti1Image
        image = make(_brainish((6, 6, 6)), affine)
        image.set_sform(_rotation_z(3 * case) @ affine, code=2)
        path = tmp_path / f"{case}.nii"
        if kind.endswith("big-endian"):
            header = image.header.as_byteswapped(">")
            image = nibabel.Nifti1Image(_brainish((6, 6, 6)).astype(">f4"), None, header)
        nibabel.save(image, str(path))
        header = nibabel.load(str(path)).header
        qform, qcode, sform, scode = volumeio._nifti_transforms(path)
        assert (qcode, scode) == (int(header["qform_code"]), int(header["sform_code"]))
        assert np.allclose(qform, header.get_qform(), atol=1e-4), case
        assert np.allclose(sform, header.get_sform(), atol=1e-4), case
        for matrix in (qform, sform):
            assert volumeio._axis_codes(matrix) == "".join(nibabel.aff2axcodes(matrix)), case


def test_nifti_geometry_needs_no_nibabel(tmp_path, monkeypatch):
    """Slicer does not bundle nibabel: reading a NIfTI must not import it."""
    stale = _nifti(tmp_path / "stale.nii.gz", MIRRORED, 1, RAS, 2)
    moved = _nifti(tmp_path / "moved.nii.gz", RAS, 1, _rotation_z(4) @ RAS, 2)
    expected = nibabel.load(str(moved)).affine
    monkeypatch.setitem(sys.modules, "nibabel", None)  # `import nibabel` now raises ImportError
    with pytest.raises(InputError, match="two orientations that disagree"):
        readImage(stale)
    assert np.allclose(_ras_affine(readImage(moved)), expected, atol=1e-4)


@pytest.mark.parametrize("damage", ["zero", "nan"])
def test_a_damaged_sform_is_named_not_called_sheared(tmp_path, damage):
    path = _nifti(tmp_path / "damaged.nii", RAS, 1, RAS, 2)
    raw = bytearray(path.read_bytes())
    raw[280:328] = (struct.pack("<12f", *([0.0] * 12)) if damage == "zero"
                    else struct.pack("<f", float("nan")) + bytes(raw[284:328]))
    path.write_bytes(bytes(raw))
    problem = "degenerate" if damage == "zero" else "not finite"
    with pytest.raises(InputError, match=rf"damaged.nii has a damaged header: its sform \(code 2\) is {problem}.*"
                                         r"fslorient -copyqform2sform damaged.nii"):
        readImage(path)


@pytest.mark.parametrize("kind, header, meaning", [
    ("nrrd", b"space directions: (1,0,0) (1,0,0) (0,0,1)\n", "its direction matrix is degenerate"),
    ("nrrd", b"space directions: (1,0,0) (0,0,0) (0,0,1)\n", "a voxel spacing of 0"),
    ("mha", b"TransformMatrix = 0 0 0 0 0 0 0 0 0\n", "its direction matrix is degenerate"),
    ("mha", b"ElementSpacing = 0 1 1\n", "a voxel spacing of 0"),
], ids=["nrrd-parallel", "nrrd-zero", "mha-zero-matrix", "mha-zero-spacing"])
def test_broken_geometry_fields_are_named_not_printed_as_matrices(tmp_path, kind, header, meaning):
    """ITK's words were a matrix row such as "(0 0 1)" or "Refusing to change direction"."""
    voxels = _brainish((10, 11, 12)).astype("<f4").tobytes()
    path = tmp_path / f"broken.{kind}"
    if kind == "nrrd":
        path.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 12 11 10\n"
                         + header + b"encoding: raw\nendian: little\n\n" + voxels)
    else:
        path.write_bytes(b"ObjectType = Image\nNDims = 3\n" + header + b"DimSize = 12 11 10\nElementType = MET_FLOAT\n"
                         b"ElementDataFile = LOCAL\n" + voxels)
    with pytest.raises(InputError) as refused:
        readImage(path)
    assert f"Cannot read broken.{kind}: it is damaged ({meaning}" in str(refused.value)
    assert "0x" not in str(refused.value) and "Refusing" not in str(refused.value)


def test_a_volume_under_a_name_the_reader_does_not_know_is_told_to_be_renamed(tmp_path):
    """ITK picks its reader by the name ("Unable to determine ImageIO reader"); the content says
    what the file is, so the message can say what to rename it to."""
    plain = tmp_path / "scan.nii"
    sitk.WriteImage(sitk.GetImageFromArray(_brainish()), str(plain))
    for name, content, suffix, kind in (("scan.dat", plain.read_bytes(), ".nii", "NIfTI"),
                                        ("scan.nii", gzip.compress(plain.read_bytes()), ".nii.gz", "NIfTI")):
        path = tmp_path / "renamed" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        with pytest.raises(InputError, match=rf"{name} holds a {kind} volume .* Rename it to end in {suffix} and"):
            readImage(path)
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n" * 20)
    with pytest.raises(InputError, match=r"not an image this program reads \(NIfTI .*folder of the series\)"):
        readImage(text)
    empty = tmp_path / "empty.nii.gz"
    empty.touch()
    with pytest.raises(InputError, match=r"empty.nii.gz: it is empty \(0 bytes\)"):
        readImage(empty)
