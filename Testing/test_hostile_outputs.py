"""Outputs under attack or interrupted (issue 17 items 2 and 6): nothing written through a
symbolic link or over an existing name, checked at write time; nothing partial left by an
error, Ctrl-C or a full disk; damaged earlier outputs recognised as such."""
from __future__ import annotations

import errno
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.files import outputs
from LUnetSegmentationLib.files.outputs import (
    OutputError,
    OutputExistsError,
    check_output_dir,
    ensure_subdir,
    is_complete_output,
    is_partial,
    remove_partials,
    write_atomic,
)
from LUnetSegmentationLib.runtime.preprocess import InputError


def _labels() -> sitk.Image:
    array = np.zeros((8, 9, 10), np.uint8)
    array[2:5, 3:6, 4:7] = 1
    return sitk.GetImageFromArray(array)


def _write_labels(tmp: Path) -> None:
    sitk.WriteImage(_labels(), str(tmp), useCompression=True)


@pytest.fixture(params=["renameat2", "link"])
def move(request, monkeypatch, tmp_path_factory):
    """Both ways of moving into place without replacing: renameat2(NOREPLACE) and link+unlink."""
    if request.param == "link":
        monkeypatch.setattr(outputs, "_renameat2_noreplace", lambda source, target: False)
    else:
        probe = tmp_path_factory.mktemp("probe")
        (probe / "a").write_text("a")
        if not outputs._renameat2_noreplace(probe / "a", probe / "b"):
            pytest.skip("renameat2(RENAME_NOREPLACE) is not available here; the link path is tested")
    return request.param


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_written_whole_with_its_own_suffix(tmp_path, move):
    seen = []

    def write(tmp: Path):
        seen.append(tmp)
        assert tmp.parent == tmp_path and is_partial(tmp) and tmp.name.endswith(".nii.gz")
        assert tmp.name.startswith(".case.partial-")
        _write_labels(tmp)

    path = write_atomic(tmp_path / "case.nii.gz", write)
    assert path == tmp_path / "case.nii.gz" and _listing(tmp_path) == ["case.nii.gz"]
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), sitk.GetArrayFromImage(_labels()))
    assert outputs.partial_name("a.seg.nrrd").endswith(".seg.nrrd")
    assert outputs.partial_name("summary.csv").startswith(".summary.partial-")


def test_dangling_symlink_at_the_target_is_never_followed(tmp_path, move):
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    (out / "case.nii.gz").symlink_to(outside / "stolen.nii.gz")
    with pytest.raises(OutputExistsError, match=r"case.nii.gz already exists as a symbolic link.*left as it is"):
        write_atomic(out / "case.nii.gz", _write_labels)
    assert _listing(outside) == [] and _listing(out) == ["case.nii.gz"]
    assert os.readlink(out / "case.nii.gz") == str(outside / "stolen.nii.gz")


def test_symlink_created_between_planning_and_writing_is_refused(tmp_path, move):
    """The name is free when the run starts (and when write_atomic starts); a link appears while
    the file is being written. The move refuses it, the link and its target stay untouched."""
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("keep me")

    def write_then_attack(tmp: Path):
        _write_labels(tmp)
        (out / "case.nii.gz").symlink_to(victim)

    with pytest.raises(OutputExistsError, match="symbolic link"):
        write_atomic(out / "case.nii.gz", write_then_attack)
    assert victim.read_text() == "keep me"
    assert _listing(out) == ["case.nii.gz"] and (out / "case.nii.gz").is_symlink()  # no temp file left


@pytest.mark.parametrize("existing", ["file", "folder"])
def test_existing_names_are_kept(tmp_path, move, existing):
    target = tmp_path / "summary.csv"
    if existing == "file":
        target.write_text("earlier run\n")
    else:
        target.mkdir()

    def late(tmp: Path):
        tmp.write_text("new\n")

    with pytest.raises(OutputExistsError, match=f"already exists as a {existing}"):
        write_atomic(target, late)
    assert _listing(tmp_path) == ["summary.csv"]
    if existing == "file":
        assert target.read_text() == "earlier run\n"


def test_a_file_appearing_during_the_write_is_kept(tmp_path, move):
    target = tmp_path / "case.nii.gz"

    def race(tmp: Path):
        _write_labels(tmp)
        target.write_bytes(b"someone else's")

    with pytest.raises(OutputExistsError):
        write_atomic(target, race)
    assert target.read_bytes() == b"someone else's" and _listing(tmp_path) == ["case.nii.gz"]


def test_overwrite_replaces_a_link_itself_never_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "summary.csv"
    link.symlink_to(victim)
    write_atomic(link, lambda tmp: tmp.write_text("a,b\n"), overwrite=True)
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "a,b\n"


def test_ctrl_c_inside_the_write_leaves_no_file(tmp_path, move):
    def interrupted(tmp: Path):
        tmp.write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "case.seg.nrrd", interrupted)
    assert _listing(tmp_path) == []


def test_full_disk_leaves_no_file_and_says_what_to_do(tmp_path, move):
    def full(tmp: Path):
        tmp.write_bytes(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    with pytest.raises(OutputError, match=r"No space left on device\. Nothing was written\. Free some space") as refused:
        write_atomic(tmp_path / "case.nii.gz", full)
    assert isinstance(refused.value, InputError)  # reported like every other refusal, no traceback
    assert _listing(tmp_path) == []


def test_writer_failure_of_any_kind_leaves_no_file(tmp_path):
    def itk_failed(tmp: Path):
        tmp.write_bytes(b"x")
        raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: x.cxx:1349:\nITK ERROR: Write: Error writing")

    with pytest.raises(OutputError, match=r"the writer failed \(ITK ERROR: Write: Error writing\)\. Nothing was written"):
        write_atomic(tmp_path / "case.nii.gz", itk_failed)
    assert _listing(tmp_path) == []

    def bug(tmp: Path):
        tmp.write_bytes(b"x")
        raise TypeError("a bug of ours")

    with pytest.raises(TypeError, match="a bug of ours"):  # not dressed up as a disk problem
        write_atomic(tmp_path / "case.nii.gz", bug)
    assert _listing(tmp_path) == []


def test_unwritable_folder_is_refused_with_advice(tmp_path, monkeypatch):
    def denied(folder, name):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))

    monkeypatch.setattr(outputs, "_create_temp", denied)
    with pytest.raises(OutputError, match="Permission denied. Nothing was written. Choose a folder you can write to"):
        write_atomic(tmp_path / "case.nii.gz", _write_labels)
    with pytest.raises(OutputError, match="Cannot write into the output folder .*Permission denied"):
        check_output_dir(tmp_path)


def test_check_output_dir(tmp_path):
    made = check_output_dir(tmp_path / "new" / "out")
    assert made.is_dir() and _listing(made) == []  # the write probe is removed
    afile = tmp_path / "out.txt"
    afile.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(afile)
    link = tmp_path / "linked"
    link.symlink_to(made)
    with pytest.raises(OutputError, match=f"is a symbolic link .*Give the real folder \\({made}\\)"):
        check_output_dir(link)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputError, match="symbolic link"):
        check_output_dir(dangling)
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(OutputError, match="does not exist"):
        check_output_dir(tmp_path / "missing", create=False)


def test_nested_output_folders_never_pass_through_a_link(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    made = ensure_subdir(out, "sub-01", "anat")
    assert made == out / "sub-01" / "anat" and made.is_dir()
    assert ensure_subdir(out, "sub-01", "anat") == made  # existing real folders are fine
    (out / "sub-02").symlink_to(outside)
    with pytest.raises(OutputError, match=r"sub-02 is a symbolic link .*never written through links"):
        ensure_subdir(out, "sub-02", "anat")
    assert _listing(outside) == []
    (out / "sub-03").write_text("x")
    with pytest.raises(OutputError, match="is a file where an output folder goes"):
        ensure_subdir(out, "sub-03")
    for bad in ("..", "a/b", ""):
        with pytest.raises(OutputError, match="is not a folder name"):
            ensure_subdir(out, bad)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, where nobody can create folders")
def test_unwritable_place_is_refused_even_for_root():
    with pytest.raises(OutputError, match="Cannot (write into|create)"):
        check_output_dir("/proc/lunet-out")


# ----------------------------------------------------------------------------- resumable re-runs


def test_complete_and_damaged_outputs_are_told_apart(tmp_path, mrml_scene):
    from LUnetSegmentationLib.slicer_adapter import mrml
    from lunet_test_helpers import add_volume, ijk_to_ras_matrix

    labels = tmp_path / "case.nii.gz"
    write_atomic(labels, _write_labels)
    assert is_complete_output(labels, "labels")
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(labels.read_bytes()[:-40])
    assert not is_complete_output(cut, "labels")

    volume = add_volume(mrml_scene.scene, np.random.default_rng(0).normal(300, 60, (8, 9, 10)).astype(np.float32),
                        ijk_to_ras_matrix(np.eye(3), (1, 1, 1), (0, 0, 0)))
    segmentation = mrml.newSegmentationNode(volume, "seg")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentation.GetSegmentation().AddEmptySegment("a", "a", [1, 0, 0])
    seg = write_atomic(tmp_path / "case.seg.nrrd", lambda tmp: mrml.writeSegmentationFile(segmentation, tmp))
    assert is_complete_output(seg, "seg")
    half = tmp_path / "half.seg.nrrd"
    half.write_bytes(seg.read_bytes()[: seg.stat().st_size - 20])
    assert not is_complete_output(half, "seg")

    raw = tmp_path / "raw.nrrd"
    sitk.WriteImage(_labels(), str(raw), useCompression=False)
    assert is_complete_output(raw)
    (tmp_path / "rawcut.nrrd").write_bytes(raw.read_bytes()[:-100])
    assert not is_complete_output(tmp_path / "rawcut.nrrd")


def test_csv_completeness(tmp_path):
    good = tmp_path / "summary.csv"
    good.write_text("case,status\nsub-01,ok\n")
    assert is_complete_output(good, "csv", columns=["case", "status"])
    assert not is_complete_output(good, "csv", columns=["case", "volume"])
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert not is_complete_output(empty, "csv")
    cut = tmp_path / "cut.csv"
    cut.write_text("case,status\nsub-01,o")
    assert not is_complete_output(cut, "csv")
    link = tmp_path / "link.csv"
    link.symlink_to(good)
    assert not is_complete_output(link, "csv")
    assert not is_complete_output(tmp_path / "missing.csv")


def _dead_pid() -> int:
    """The id of a process of this machine that has ended."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def _partial_of_dead_writer(folder: Path, name: str) -> Path:
    stem, suffix = outputs._stem_and_suffix(name)
    return folder / f".{stem}.partial-{outputs._machine()}-{_dead_pid()}-{os.urandom(8).hex()}{suffix}"


def test_partials_of_a_killed_run_are_removed_and_nothing_else(tmp_path):
    leftover = _partial_of_dead_writer(tmp_path, "sub-01.seg.nrrd")
    leftover.write_bytes(b"half")
    running = tmp_path / outputs.partial_name("sub-02.seg.nrrd")  # this process's write, under way
    running.write_bytes(b"half")
    theirs = tmp_path / ".hidden-notes.txt"
    theirs.write_text("mine")
    kept = tmp_path / "sub-01.nii.gz"
    kept.write_bytes(gzip.compress(b"x"))
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / ".x.partial-0123456789abcdef.csv").symlink_to(victim)
    assert remove_partials(tmp_path) == [leftover]
    assert _listing(tmp_path) == sorted([".hidden-notes.txt", ".x.partial-0123456789abcdef.csv", "sub-01.nii.gz",
                                         running.name, "victim"])


def test_partials_of_one_output_are_its_own_only(tmp_path):
    """The BIDS App clears one scan's leftovers while other scans write in the same folder."""
    mine = [_partial_of_dead_writer(tmp_path, "sub-01_dseg.nii.gz") for _ in range(2)]
    mine.append(tmp_path / ".sub-01_dseg.partial-0123456789abcdef.nii.gz")  # an earlier version's temporary
    others = [_partial_of_dead_writer(tmp_path, name) for name in ("sub-011_dseg.nii.gz", "sub-01_dseg.json")]
    others.append(tmp_path / outputs.partial_name("sub-01_dseg.nii.gz"))  # a write under way in this process
    for path in mine + others + [tmp_path / "sub-01_dseg.nii.gz"]:
        path.write_bytes(b"x")
    assert sorted(outputs.partials_of(tmp_path / "sub-01_dseg.nii.gz")) == sorted(mine)
    assert outputs.partials_of(tmp_path / "absent" / "sub-01_dseg.nii.gz") == []


# ----------------------------------------------------------------------------- the web app's Save


@pytest.fixture
def loaded(mrml_scene, tmp_path):
    """A web session with a small synthetic case and one painted segment."""
    from LUnetSegmentationLib.slicer_adapter import mrml
    from LUnetSegmentationLib.apps.web.session import WebSession

    folder = tmp_path / "input"
    folder.mkdir()
    source = folder / "case.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).normal(300, 60, (8, 9, 10)).astype(np.float32)),
                    str(source), useCompression=True)
    session = WebSession(mrml_scene.scene)
    case = session.load(source)
    case.segmentationNode.GetSegmentation().AddEmptySegment("mine", "mine", [1, 0, 0])
    mask = np.zeros((8, 9, 10), np.uint8)
    mask[2:5, 2:5, 2:5] = 1
    import slicer

    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        mrml._oriented_mask(mask, mrml.ijk_to_ras(case.volumeNode)), case.segmentationNode, "mine")
    return session, folder


def test_web_save_skips_a_dangling_symlink(loaded, tmp_path):
    session, folder = loaded
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / "case.lunet.seg.nrrd").symlink_to(outside / "stolen.seg.nrrd")
    seg, labels = session.saveNextToInput()
    assert (seg.name, labels.name) == ("case.lunet-2.seg.nrrd", "case.lunet-labels-2.nii.gz")
    assert _listing(outside) == [] and (folder / "case.lunet.seg.nrrd").is_symlink()
    assert is_complete_output(seg) and is_complete_output(labels)


def test_web_save_refuses_a_symlink_that_appears_while_saving(loaded, tmp_path, monkeypatch):
    from LUnetSegmentationLib.apps.web import session as web_session

    session, folder = loaded
    victim = tmp_path / "victim.nii.gz"
    victim.write_bytes(b"keep")
    real = web_session.writeLabelmap

    def attacked(labels, path):
        real(labels, path)
        (folder / "case.lunet-labels.nii.gz").symlink_to(victim)

    monkeypatch.setattr(web_session, "writeLabelmap", attacked)
    with pytest.raises(InputError, match="already exists as a symbolic link"):
        session.saveNextToInput()
    assert victim.read_bytes() == b"keep"
    assert not any(is_partial(name) for name in os.listdir(folder))


def test_web_download_leaves_no_temporary_files(loaded, monkeypatch):
    session, _ = loaded
    files = session.downloadBytes()
    assert sorted(files) == ["case.lunet-labels.nii.gz", "case.lunet.seg.nrrd"]
    assert files["case.lunet-labels.nii.gz"][:2] == b"\x1f\x8b"
