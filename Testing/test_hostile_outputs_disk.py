"""Full disks, quotas and shared folders (issue 24): what a writer calls written is read back
before it gets its name; temporaries of writers still running are never cleaned up; a case
named like a temporary is not one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from LUnetSegmentationLib.files import outputs
from LUnetSegmentationLib.files.outputs import OutputError, is_partial, remove_partials, write_atomic

LIBRARY = Path(__file__).resolve().parents[1] / "LUnetSegmentation"


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(LIBRARY)}, **kwargs)


def test_a_writer_that_writes_nothing_leaves_nothing(tmp_path):
    """A full disk: the writer opened the file, wrote nothing and reported no error."""
    with pytest.raises(OutputError, match=r"case\.seg\.nrrd .*the file is empty \(0 bytes\).*Free some space"):
        write_atomic(tmp_path / "case.seg.nrrd", lambda tmp: None)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["case.seg.nrrd", "case.nii.gz", "summary.csv"])
def test_a_file_size_quota_leaves_no_truncated_output(tmp_path, name):
    """Under `ulimit -f` (RLIMIT_FSIZE, SIGXFSZ ignored as batch systems do) writes come out
    short; ITK's NIfTI writer reports success all the same. Nothing truncated gets a name."""
    result = _python(f"""
        import resource, signal
        import numpy as np, SimpleITK as sitk
        from pathlib import Path
        from LUnetSegmentationLib.files.outputs import OutputError, write_atomic, write_text_atomic
        from LUnetSegmentationLib.files.segfile import write_segmentation
        from LUnetSegmentationLib.files.volumeio import writeLabelmap
        from LUnetSegmentationLib.runtime.pipeline import SegmentSpec

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))
        labels = sitk.GetImageFromArray((np.random.default_rng(0).random((30, 40, 50)) * 3).astype(np.uint8))
        target = Path({str(tmp_path)!r}) / {name!r}
        try:
            if target.name.endswith(".seg.nrrd"):
                specs = [SegmentSpec(1, "Hippocampus anterior", (1, 0, 0)), SegmentSpec(2, "Hippocampus posterior", (0, 1, 0))]
                write_atomic(target, lambda tmp: write_segmentation(labels, specs, tmp, "test"))
            elif target.name.endswith(".nii.gz"):
                write_atomic(target, lambda tmp: writeLabelmap(labels, tmp))
            else:
                write_text_atomic(target, "case,status\\n" + "sub-01,ok\\n" * 2000)
        except OutputError as error:
            print("REFUSED", error)
        else:
            print("WRITTEN")
    """)
    assert result.returncode == 0, result.stderr
    assert "REFUSED" in result.stdout and "quota" in result.stdout and "Nothing was written" in result.stdout, result.stdout
    assert os.listdir(tmp_path) == []


def test_a_case_named_like_a_temporary_is_not_one(tmp_path):
    """An input `.case.partial-1234.nii.gz` gives outputs `.case.partial-1234.seg.nrrd`: finished
    results, never taken for an interrupted write."""
    finished = [tmp_path / ".case.partial-1234.seg.nrrd", tmp_path / ".case.partial-1234.nii.gz",
                tmp_path / ".x.partial-99-0123456789abcdef.csv"]
    for path in finished:
        path.write_bytes(b"a finished result")
    assert not any(is_partial(path) for path in finished)
    assert remove_partials(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in finished)
    assert is_partial(outputs.partial_name(".case.partial-1234.seg.nrrd"))


def test_cleanup_spares_a_write_under_way_in_another_process(tmp_path):
    """Two runs share a folder: one's start-up clean-up must not take the other's temporary."""
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from LUnetSegmentationLib.files.outputs import partial_name
            tmp = Path({str(tmp_path)!r}) / partial_name("sub-02.seg.nrrd")
            tmp.write_bytes(b"half written")
            print(tmp.name, flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(LIBRARY)})
    try:
        name = writer.stdout.readline().strip()
        assert is_partial(name)
        assert remove_partials(tmp_path) == [] and os.listdir(tmp_path) == [name]
        assert outputs.partials_of(tmp_path / "sub-02.seg.nrrd") == []
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert remove_partials(tmp_path) == [tmp_path / name]  # its writer is gone: a leftover now


def test_another_machines_temporary_is_stale_only_when_old(tmp_path):
    """A folder on a cluster's shared disk: a pid of another node cannot be checked here."""
    other = tmp_path / ".sub-03.partial-00000000-1-0123456789abcdef.seg.nrrd"
    if outputs._machine() == "00000000":
        pytest.skip("this machine's hash happens to be the one the test uses for another")
    other.write_bytes(b"x")
    assert remove_partials(tmp_path) == []
    old = time.time() - outputs.STALE_AFTER_SECONDS - 60
    os.utime(other, (old, old))
    assert remove_partials(tmp_path) == [other]
