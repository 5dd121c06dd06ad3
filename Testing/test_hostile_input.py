"""Hostile and unusable input (issue 17): no server file read through an upload, no read of a
size bomb, no damaged file read as if whole, no NaN turned into 0, and the single entry check.

Small synthetic files in tmp_path; the shared whole-brain scan where real anatomy matters.
Outputs (symbolic links, partial files) are in test_hostile_outputs.py.
"""
from __future__ import annotations

import gzip
import struct
import sys
import time
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.runtime import checks
from LUnetSegmentationLib.runtime.memory import RUN_BYTES_PER_VOXEL
from LUnetSegmentationLib.files import volumeio
from LUnetSegmentationLib.runtime.preprocess import InputError
from lunet_test_helpers import run_measuring_peak
from LUnetSegmentationLib.files.volumeio import (
    MAX_VOXELS,
    check_self_contained,
    estimate_voxels_and_bytes,
    read_header,
    readImage,
)

MB = 2**20
SECRET = b"root:x:0:0:secret server file\n" * 40  # 1,240 bytes: enough for a 10x10x10 uchar volume


def _brainish(shape=(12, 11, 10), seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(300, 60, shape).astype(dtype)


def _image(array=None, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(_brainish() if array is None else array)
    image.SetSpacing(spacing)
    return image


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "server-only" / "passwd"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def no_voxel_read(monkeypatch):
    """Fail the test if any reader is asked for voxels (ITK or nibabel)."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"voxels were read: {args}")

    monkeypatch.setattr(sitk, "ReadImage", refuse)
    monkeypatch.setattr(volumeio, "_read_mgh", refuse)
    return calls


# ----------------------------------------------------------------------------- item 1: uploads


def _nrrd_naming(path: Path, target: str, field: str = "data file", sizes="10 10 10", kind="uchar") -> Path:
    path.write_text(f"NRRD0004\ntype: {kind}\ndimension: 3\nsizes: {sizes}\nencoding: raw\n{field}: {target}\n\n")
    return path


def _mha_naming(path: Path, target: str) -> Path:
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 10 10 10\nElementType = MET_UCHAR\n"
                    f"ElementDataFile = {target}\n")
    return path


def test_today_itk_reads_the_named_server_file(tmp_path, secret):
    """Why the check exists: ITK follows a data file field wherever it points."""
    image = sitk.ReadImage(str(_nrrd_naming(tmp_path / "a.nrrd", str(secret))))
    assert sitk.GetArrayFromImage(image).tobytes() == SECRET[:1000]


@pytest.mark.parametrize("field", ["data file", "datafile", "DATA FILE", "data file "])
def test_nrrd_with_a_data_file_field_is_refused_before_any_read(tmp_path, secret, no_voxel_read, field):
    path = _nrrd_naming(tmp_path / "upload.nrrd", str(secret), field=field)
    with pytest.raises(InputError, match=r"names another file for its voxels \(data file: .*passwd\)"):
        check_self_contained(path)
    assert not no_voxel_read


@pytest.mark.parametrize("target", ["LIST", "/dev/urandom", "/dev/stdin", "passwd"])
def test_metaimage_whose_data_is_not_local_is_refused(tmp_path, no_voxel_read, target):
    path = _mha_naming(tmp_path / "upload.mha", target)
    with pytest.raises(InputError, match=r"names another file for its voxels \(ElementDataFile"):
        check_self_contained(path)


@pytest.mark.parametrize("name", ["scan.nhdr", "scan.mhd"])
def test_detached_headers_are_refused(tmp_path, name):
    path = tmp_path / name
    path.write_text("NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n")
    with pytest.raises(InputError, match="detached header"):
        check_self_contained(path)


def test_a_data_file_hidden_in_a_file_named_like_nifti_is_found_by_content(tmp_path, secret, no_voxel_read):
    path = tmp_path / "scan.nii.gz"
    path.write_bytes(gzip.compress(_nrrd_naming(tmp_path / "x.nrrd", str(secret)).read_bytes()))
    with pytest.raises(InputError, match="names another file"):
        check_self_contained(path)


def test_nifti_pair_header_is_refused(tmp_path):
    header = nibabel.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header["magic"] = b"ni1"
    path = tmp_path / "pair.nii"
    path.write_bytes(header.binaryblock + b"\0" * 64)
    with pytest.raises(InputError, match="separate file"):
        check_self_contained(path)


def test_content_that_is_no_volume_is_refused(tmp_path):
    path = tmp_path / "scan.nii.gz"
    path.write_bytes(gzip.compress(b"<html>not a volume</html>" * 20))
    with pytest.raises(InputError, match="not a NIfTI, NRRD, MetaImage or FreeSurfer MGH volume"):
        check_self_contained(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_self_contained_files_pass(tmp_path, suffix):
    path = tmp_path / f"ok{suffix}"
    sitk.WriteImage(_image(), str(path), useCompression=suffix != ".nii")
    info = check_self_contained(path)
    assert info.shape == (10, 11, 12) and info.data_file is None


def test_self_contained_mgz_passes(wholebrain_dir):
    info = check_self_contained(wholebrain_dir / "fs_norm" / "norm.mgz")
    assert info.format == "mgh" and info.shape[:3] == (256, 256, 256)


def test_command_line_file_naming_a_device_is_refused(tmp_path):
    """Outside uploads a data file is allowed (the user's own pair), but never a device:
    /dev/urandom would be read without end, /dev/stdin would block."""
    for device in ("/dev/urandom", "/dev/zero"):
        with pytest.raises(InputError, match="not a regular file"):
            readImage(_nrrd_naming(tmp_path / "dev.nrrd", device, sizes="1000 1000 1000"))


def test_web_upload_naming_a_server_file_adds_nothing(mrml_scene, tmp_path, secret, no_voxel_read):
    from LUnetSegmentationLib.apps.web.session import WebSession

    session = WebSession(mrml_scene.scene)
    before = mrml_scene.scene.GetNumberOfNodes()
    uploads = {
        "evil.nrrd": _nrrd_naming(tmp_path / "a.nrrd", str(secret)).read_bytes(),
        "evil.mha": _mha_naming(tmp_path / "a.mha", str(secret)).read_bytes(),
        "evil2.nrrd": _nrrd_naming(tmp_path / "b.nrrd", "/dev/stdin", field="datafile").read_bytes(),
        "../../evil.nii.gz": gzip.compress(_nrrd_naming(tmp_path / "c.nrrd", str(secret)).read_bytes()),
    }
    for name, content in uploads.items():
        with pytest.raises(InputError, match="names another file for its voxels"):
            session.loadUpload(name, content, maxBytes=MB)
    assert mrml_scene.scene.GetNumberOfNodes() == before and session.case is None
    assert not no_voxel_read


# ----------------------------------------------------------------------------- item 7: size from the header


def _nifti_bomb(path: Path, shape=(1500, 1500, 1500), dtype=np.float32) -> Path:
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_data_offset(352)
    raw = header.binaryblock + b"\0" * 4 + b"\0" * 1024  # 1 KB of 'voxels'
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def _bombs(tmp_path) -> dict[str, Path]:
    mgz = tmp_path / "bomb.mgz"
    mgz.write_bytes(gzip.compress(struct.pack(">7i", 1, 1500, 1500, 1500, 1, 3, 0).ljust(284, b"\0") + b"\0" * 1024))
    mha = tmp_path / "bomb.mha"
    mha.write_text("ObjectType = Image\nNDims = 3\nDimSize = 1500 1500 1500\nElementType = MET_FLOAT\n"
                   "ElementDataFile = LOCAL\n")
    nrrd = tmp_path / "bomb.nrrd"
    nrrd.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 1500 1500 1500\nencoding: gzip\n\n"
                     + gzip.compress(b"\0" * 1024))
    return {"nii.gz": _nifti_bomb(tmp_path / "bomb.nii.gz"), "nii": _nifti_bomb(tmp_path / "bomb.nii"),
            "mgz": mgz, "mha": mha, "nrrd": nrrd}


@pytest.mark.parametrize("kind", ["nii.gz", "nii", "mgz", "mha", "nrrd"])
def test_header_size_bomb_is_refused_from_the_header(tmp_path, no_voxel_read, kind):
    path = _bombs(tmp_path)[kind]
    assert path.stat().st_size < 2000
    # float32 data + the measured 10 bytes per voxel of a whole-head run (runtime/memory.py)
    assert estimate_voxels_and_bytes(path) == (1500**3, 1500**3 * (4 + RUN_BYTES_PER_VOXEL))
    with pytest.raises(InputError, match=r"claims 1500x1500x1500 = 3,375,000,000 voxels.*not read"):
        readImage(path)
    assert not no_voxel_read


def test_header_size_bomb_refused_within_seconds_and_1_5_gb(tmp_path):
    """The acceptance case, measured in a child process: its peak resident memory and time."""
    script = ("import sys; from LUnetSegmentationLib.files.volumeio import readImage\n"
              "from LUnetSegmentationLib.runtime.preprocess import InputError\n"
              "try:\n    readImage(sys.argv[1])\nexcept InputError as e:\n    print('refused:', e)\n")
    for path in _bombs(tmp_path).values():
        started = time.monotonic()
        status, output, peak = run_measuring_peak([sys.executable, "-c", script, path])
        seconds = time.monotonic() - started
        assert status == 0 and output.startswith("refused:"), output
        assert peak < 1.5 * 2**30, f"{path.name}: peak {peak / 2**30:.2f} GiB"
        assert seconds < 10, f"{path.name}: {seconds:.1f} s"


def _bombs_below_the_voxel_limit(tmp_path) -> dict[str, Path]:
    """1000^3 float32 (4 GB) headers with 1 KB of data: within MAX_VOXELS, so on a machine with
    the memory they pass the size check; their data must be found short without allocating."""
    import zlib

    claim = "1000 1000 1000"
    files = {"nii.gz": _nifti_bomb(tmp_path / "b1000.nii.gz", (1000, 1000, 1000)),
             "nii": _nifti_bomb(tmp_path / "b1000.nii", (1000, 1000, 1000))}
    files["mgz"] = tmp_path / "b1000.mgz"
    files["mgz"].write_bytes(gzip.compress(struct.pack(">7i", 1, 1000, 1000, 1000, 1, 3, 0).ljust(284, b"\0")
                                           + b"\0" * 1024))
    for encoding in ("raw", "gzip"):
        data = b"\0" * 1024 if encoding == "raw" else gzip.compress(b"\0" * 1024)
        files[f"nrrd-{encoding}"] = tmp_path / f"b1000-{encoding}.nrrd"
        files[f"nrrd-{encoding}"].write_bytes(
            f"NRRD0004\ntype: float\ndimension: 3\nsizes: {claim}\nencoding: {encoding}\n\n".encode() + data)
    deflated = zlib.compress(b"\0" * 1024)
    for sized in (True, False):
        path = files[f"mha-{'sized' if sized else 'unsized'}"] = tmp_path / f"b1000-{sized}.mha"
        path.write_bytes(("ObjectType = Image\nNDims = 3\nCompressedData = True\n"
                          + (f"CompressedDataSize = {len(deflated)}\n" if sized else "")
                          + f"DimSize = {claim}\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n").encode()
                         + deflated)
    return files


def test_short_data_under_a_big_header_is_refused_without_allocating(tmp_path):
    """With memory to spare (forced in the child), a 4 GB claim over 1 KB of data is refused
    by the integrity check, streamed, in well under 1.5 GB and seconds."""
    script = ("import sys; from LUnetSegmentationLib.files import volumeio\n"
              "from LUnetSegmentationLib.runtime.preprocess import InputError\n"
              "volumeio.available_memory_bytes = lambda: 1 << 40\n"
              "try:\n    volumeio.readImage(sys.argv[1])\nexcept InputError as e:\n    print('refused:', e)\n")
    for kind, path in _bombs_below_the_voxel_limit(tmp_path).items():
        started = time.monotonic()
        status, output, peak = run_measuring_peak([sys.executable, "-c", script, path])
        seconds = time.monotonic() - started
        assert status == 0 and "ends early" in output, (kind, output)
        assert peak < 1.5 * 2**30, f"{kind}: peak {peak / 2**30:.2f} GiB"
        assert seconds < 10, f"{kind}: {seconds:.1f} s"


def test_size_beyond_available_memory_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "ok.nii.gz"
    sitk.WriteImage(_image(), str(path), useCompression=True)
    voxels, needed = estimate_voxels_and_bytes(path)
    assert (voxels, needed) == (1320, 1320 * (4 + RUN_BYTES_PER_VOXEL))
    monkeypatch.setattr(volumeio, "process_bytes_to_come", lambda: 0)  # the model is loaded already
    monkeypatch.setattr(volumeio, "available_memory_bytes", lambda: needed - 1)
    with pytest.raises(InputError, match=r"would need about .* GiB of memory.*not read"):
        readImage(path)
    monkeypatch.setattr(volumeio, "available_memory_bytes", lambda: needed)
    assert readImage(path).GetSize() == (10, 11, 12)


def test_voxel_limit_is_about_memory_not_file_size():
    assert MAX_VOXELS >= 512**3  # a 0.5 mm whole head must still read


def test_estimates_match_what_is_read(wholebrain_dir, hippocampus_dir):
    for path in (wholebrain_dir / "fs_norm" / "norm.nii.gz", wholebrain_dir / "fs_norm" / "norm.mgz",
                 sorted((hippocampus_dir / "imagesTr").glob("*.nii.gz"))[0]):
        image = readImage(path)
        voxels, _ = estimate_voxels_and_bytes(path)
        assert voxels == image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel(), path.name
        assert read_header(path).bytes_per_voxel == image.GetSizeOfPixelComponent() or path.suffix == ".mgz"


def test_web_upload_limit_counts_uncompressed_bytes(mrml_scene, tmp_path):
    """A 3 MB volume of zeros and noise that compresses far below the 1 MB limit is refused."""
    from LUnetSegmentationLib.apps.web.session import WebSession

    array = np.zeros((96, 96, 96), np.float32)  # 3.4 MB of voxels
    array[40:50, 40:50, 40:50] = _brainish((10, 10, 10))
    path = tmp_path / "small.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), useCompression=True)
    assert path.stat().st_size < MB
    session = WebSession(mrml_scene.scene)
    with pytest.raises(InputError, match=r"3\.4 MB of voxels once uncompressed.*more than this server accepts"):
        session.loadUpload("small.nii.gz", path.read_bytes(), maxBytes=MB)
    assert session.case is None
    assert session.loadUpload("small.nii.gz", path.read_bytes(), maxBytes=4 * MB).name == "small"


# ----------------------------------------------------------------------------- item 5: damaged data


def _truncate(source: Path, target: Path, drop: int = 500) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) - drop])
    return target


@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_files_are_refused(tmp_path, suffix, compressed):
    if compressed and suffix == ".nii":
        suffix = ".nii.gz"
    whole = tmp_path / f"whole{suffix}"
    sitk.WriteImage(_image(), str(whole), useCompression=compressed)
    assert readImage(whole).GetSize() == (10, 11, 12)
    with pytest.raises(InputError, match="damaged"):
        readImage(_truncate(whole, tmp_path / f"cut{suffix}"))


@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha"])
def test_truncated_raw_files_say_they_end_early(tmp_path, suffix):
    whole = tmp_path / f"whole{suffix}"
    sitk.WriteImage(_image(), str(whole), useCompression=False)
    with pytest.raises(InputError, match=r"ends early: 4,780 of 5,280 bytes of voxel data, truncated"):
        readImage(_truncate(whole, tmp_path / f"cut{suffix}"))


def test_today_itk_zero_fills_a_truncated_nii(tmp_path):
    """Why the check exists: ITK reads the short file without complaint."""
    whole = tmp_path / "whole.nii"
    sitk.WriteImage(_image(), str(whole))
    voxels = sitk.GetArrayFromImage(sitk.ReadImage(str(_truncate(whole, tmp_path / "cut.nii"))))
    assert np.count_nonzero(voxels == 0) == 125


def test_truncated_real_whole_brain_nii_is_refused(tmp_path, wholebrain_dir):
    whole = tmp_path / "norm.nii"
    whole.write_bytes(gzip.decompress((wholebrain_dir / "fs_norm" / "norm.nii.gz").read_bytes()))
    assert readImage(whole).GetSize() == (256, 256, 256)
    cut = tmp_path / "norm-cut.nii"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with pytest.raises(InputError, match="ends early"):
        readImage(cut)


def test_truncated_mgh_is_refused(tmp_path, wholebrain_dir):
    mgh = tmp_path / "norm.mgh"
    mgh.write_bytes(gzip.decompress((wholebrain_dir / "fs_norm" / "norm.mgz").read_bytes())[: 5 * MB])
    with pytest.raises(InputError, match="ends early"):
        readImage(mgh)


def test_damaged_nifti_header_is_refused(tmp_path):
    path = _nifti_bomb(tmp_path / "bad.nii", shape=(10, 10, 10))
    raw = bytearray(path.read_bytes())
    raw[42:44] = struct.pack("<h", -5)  # dim[1] < 1
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="impossible dimensions"):
        readImage(path)


# ----------------------------------------------------------------------------- item 5: NaN / Inf


def _nifti_with(values, path: Path, writer: str) -> Path:
    array = _brainish()
    for index, value in zip([(3, 4, 5), (1, 1, 1)], values):
        array[index] = value
    if writer == "itk":
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    else:
        nibabel.save(nibabel.Nifti1Image(array.transpose(2, 1, 0), np.eye(4)), str(path))
    return path


def test_today_itk_turns_nan_in_nifti_into_zero(tmp_path):
    """Why the check exists: the NIfTI library inside ITK replaces non-finite floats by 0."""
    path = _nifti_with([np.nan, np.inf], tmp_path / "nan.nii", "itk")
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()
    assert np.isnan(np.asanyarray(nibabel.load(str(path)).dataobj)).sum() == 1


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("writer", ["itk", "nibabel"])
@pytest.mark.parametrize("values", [[np.nan], [np.inf], [-np.inf, np.nan]])
def test_nan_and_inf_in_nifti_are_refused(tmp_path, suffix, writer, values):
    path = _nifti_with(values, tmp_path / f"nan{suffix}", writer)
    with pytest.raises(InputError, match=f"has {len(values)} NaN or infinite voxel"):
        readImage(path)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
def test_nan_in_every_format_is_refused_at_the_entry(tmp_path, suffix):
    array = _brainish()
    array[2, 3, 4] = np.nan
    path = tmp_path / f"nan{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), useCompression=True)
    with pytest.raises(InputError, match="NaN or infinite"):
        checks.check_input(readImage(path), "scan")


def test_nan_in_mgz_is_refused_at_the_entry(tmp_path):
    array = _brainish((8, 9, 10))
    array[2, 3, 4] = np.nan
    path = tmp_path / "nan.mgz"
    nibabel.save(nibabel.MGHImage(array, np.eye(4)), str(path))
    with pytest.raises(InputError, match="1 NaN or infinite"):
        checks.check_input(readImage(path), "scan")


def test_finite_float_and_integer_nifti_read_unchanged(tmp_path):
    for dtype in (np.float32, np.float64, np.int16):
        array = _brainish(dtype=dtype)
        path = tmp_path / f"ok-{np.dtype(dtype).name}.nii"
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        assert np.array_equal(sitk.GetArrayFromImage(readImage(path)), array)


# ----------------------------------------------------------------------------- the single entry check


SPACING_ADVICE = ("is too coarse or too anisotropic (limit: 6.0 mm, ratio 12.0) to resolve the hippocampus. "
                  "Use a 3D T1 acquisition (about 1 mm isotropic) instead.")
# Each refusal with its whole message, word for word as engine.check_image and api.checkVoxels
# said it before they were merged into checks.check_input (test_bad_input.py checks parts).
BAD_IMAGES = {
    "vector": (lambda: sitk.GetImageFromArray(np.random.default_rng(0).random((10, 12, 14, 3)), isVector=True),
               "The volume 'scan' has 3 components per voxel (a vector or colour volume). Convert it to a scalar "
               "volume first (Slicer: 'Vector to Scalar Volume')."),
    "2D": (lambda: sitk.GetImageFromArray(_brainish((20, 20))),
           "The volume 'scan' is 2D; the model needs a 3D MRI volume."),
    "4D": (lambda: sitk.JoinSeries([_image(), _image()]),
           "The volume 'scan' is 4D; the model needs a 3D MRI volume."),
    "slab": (lambda: _image(_brainish((2, 40, 40))),
             "The volume 'scan' is 40x40x2 voxels: a 2D slice or a slab too thin to segment. The model needs a 3D "
             "volume with at least 4 voxels along every axis."),
    "coarse": (lambda: _image(spacing=(1.0, 1.0, 7.0)), f"The voxel spacing 1x1x7 mm {SPACING_ADVICE}"),
    "anisotropic": (lambda: _image(spacing=(0.4, 0.4, 5.5)), f"The voxel spacing 0.4x0.4x5.5 mm {SPACING_ADVICE}"),
    "nan": (lambda: _image(np.where(np.arange(1320).reshape(12, 11, 10) == 7, np.nan, _brainish())),
            "The volume 'scan' has 1 NaN or infinite voxel(s). Replace them first, e.g. with Slicer's 'Threshold "
            "Scalar Volume' or numpy.nan_to_num, then run again."),
    "constant": (lambda: _image(np.full((12, 11, 10), 7, np.int16)),
                 "The volume 'scan' is constant (every voxel is 7), so there is nothing to segment. Check that the "
                 "right volume is selected and that it loaded completely."),
    "empty": (lambda: sitk.Image(0, 0, 0, sitk.sitkFloat32),
              "The volume 'scan' is 0x0x0 voxels: a 2D slice or a slab too thin to segment. The model needs a 3D "
              "volume with at least 4 voxels along every axis."),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_entry_check_refusals_keep_their_messages(case):
    make, message = BAD_IMAGES[case]
    with pytest.raises(InputError) as refused:
        checks.check_input(make(), "scan")
    assert str(refused.value) == message


def test_entry_check_passes_a_real_scan_without_warnings(hippocampus_dir):
    image = readImage(sorted((hippocampus_dir / "imagesTr").glob("*.nii.gz"))[0])
    assert checks.check_input(image, "crop") == []


def test_web_session_uses_the_entry_check(mrml_scene, tmp_path, monkeypatch):
    from LUnetSegmentationLib.apps.web import session as web_session

    seen = []
    monkeypatch.setattr(web_session, "check_input", lambda image, name: seen.append(name) or ["a warning"])
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(_image(), str(path), useCompression=True)
    case = web_session.WebSession(mrml_scene.scene).load(path)
    assert seen == ["scan"] and case.warnings == ["a warning"]

