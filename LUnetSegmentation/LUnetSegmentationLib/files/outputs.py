"""Write output files whole or not at all, never through a symbolic link, never over a file.

Every output is written to a new hidden temporary file in its destination folder
(`.<case>.partial-<machine>-<pid>-<random><suffix>`, created with O_CREAT|O_EXCL|O_NOFOLLOW,
keeping the real suffix so ITK and MRML pick the right writer), read back and checked (ITK's
writers do not report every short write: a full disk or a file-size quota leaves a truncated
file that they call written), flushed to disk, and only then given its name by a move that
refuses any existing name (file, directory, dangling or live symbolic link) checked at that
moment, not at the start of a run. On any error, Ctrl-C or disk full the temporary file is
removed, so a run that stops leaves either the complete file or nothing.

The temporary name carries its writer (a hash of the machine and its process namespace, and
the process id), so a clean-up at start-up removes only the leftovers of writers that are gone
(or, for another machine sharing the folder, that are older than STALE_AFTER_SECONDS): several
runs can share one output folder (a job array) without deleting each other's writes.

    from LUnetSegmentationLib.files.outputs import write_atomic
    write_atomic(out / "sub-01.nii.gz", lambda tmp: sitk.WriteImage(labels, str(tmp), True))

Only the standard library here: usable from the CLI, the batch API, the BIDS App and the web.
"""
from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

from ..runtime.preprocess import InputError

PARTIAL_TAG = ".partial-"
_MULTI_SUFFIXES = (".seg.nrrd", ".nii.gz", ".tar.gz")
# A temporary name's tail: '.partial-' [machine '-' pid '-'] 16 hex digits. Without the writer
# part it is an earlier version's temporary (treated as stale).
_PARTIAL_TAIL = re.compile(r"\.partial-(?:(?P<machine>[0-9a-f]{8})-(?P<pid>[0-9]{1,10})-)?[0-9a-f]{16}$")
# A temporary of a writer on another machine (pids there cannot be checked) is stale once it has
# not changed for this long: one file's write takes seconds.
STALE_AFTER_SECONDS = 6 * 3600
# Files whose content write_atomic reads back as an image after writing it.
_IMAGE_SUFFIXES = (".seg.nrrd", ".nrrd", ".nii.gz", ".nii", ".mha")


class OutputError(InputError):
    """An output cannot be written as asked; the message says why and what to do. Nothing was
    written (a subclass of InputError, so every caller that reports InputError reports it)."""


class OutputExistsError(OutputError, FileExistsError):
    """Something already exists under an output's name; it was left as it is."""


class IncompleteWriteError(OutputError):
    """A file came out shorter or other than written (full disk, quota); it was removed."""


def _suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in _MULTI_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[-len(suffix):]
    return Path(name).suffix


def _stem_and_suffix(name: str) -> tuple[str, str]:
    suffix = _suffix(name)
    return (name[: len(name) - len(suffix)] if suffix else name), suffix


def _machine() -> str:
    """8 hex digits naming this machine and process namespace: two containers on one host (each
    with its own pid numbers) or two nodes of a cluster differ, so a pid is only ever checked
    where it means something."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}|{namespace}".encode("utf-8", "replace")).hexdigest()[:8]


def partial_name(name: str) -> str:
    """'sub-01.seg.nrrd' -> '.sub-01.partial-<machine>-<pid>-<16 hex>.seg.nrrd'"""
    stem, suffix = _stem_and_suffix(name)
    return f".{stem}{PARTIAL_TAG}{_machine()}-{os.getpid()}-{secrets.token_hex(8)}{suffix}"


def _partial_tail(name: str):
    stem, _ = _stem_and_suffix(name)
    if not name.startswith(".") or PARTIAL_TAG not in name:
        return None
    return _PARTIAL_TAIL.search(stem)


def is_partial(path: str | Path) -> bool:
    """Whether a name is one of write_atomic's temporary names (exactly partial_name's pattern:
    a case called '.scan.partial-1234' is not one)."""
    return _partial_tail(Path(path).name) is not None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OSError, OverflowError):
        return False
    return True


def is_stale_partial(path: str | Path, now: float | None = None) -> bool:
    """A temporary file whose writer is gone: an earlier version's, one whose process on this
    machine has ended, or one unchanged for STALE_AFTER_SECONDS (another machine's writer)."""
    tail = _partial_tail(Path(path).name)
    if tail is None:
        return False
    if tail.group("machine") is None:
        return True
    try:
        age = (time.time() if now is None else now) - os.lstat(path).st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_SECONDS:
        return True
    if tail.group("machine") == _machine():
        return not _process_alive(int(tail.group("pid")))
    return False


def partials_of(path: str | Path) -> list[Path]:
    """The temporary files interrupted writes of this one output left (partial_name's pattern,
    writer gone), and no other output's: for a folder where other writes may be under way."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stem, suffix = _stem_and_suffix(path.name)
    pattern = f".{glob.escape(stem)}{PARTIAL_TAG}*{glob.escape(suffix)}"
    return [stale for stale in path.parent.glob(pattern)
            if _is_own_stem(stale.name, stem) and _stem_and_suffix(stale.name)[1] == suffix and is_stale_partial(stale)]


def _is_own_stem(name: str, stem: str) -> bool:
    """The temporary's output stem is exactly `stem` (not 'sub-011' for 'sub-01')."""
    tail = _partial_tail(name)
    full_stem, _ = _stem_and_suffix(name)
    return tail is not None and full_stem[1:tail.start()] == stem


def remove_partials(folder: str | Path) -> list[Path]:
    """Remove the temporary files of interrupted writes in folder whose writers are gone (never
    following links); the paths removed. Temporaries of runs still writing into the same folder
    are kept. Nothing else in the folder is touched."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if is_partial(entry.name) and entry.is_file(follow_symlinks=False) and is_stale_partial(entry.path):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _create_temp(folder: Path, name: str) -> Path:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / partial_name(name)
        try:
            os.close(os.open(tmp, flags, 0o666))  # 0o666 & ~umask, like any new file
            return tmp
        except FileExistsError:
            continue
    raise OutputError(f"Could not create a temporary file in {folder}. Check the folder, then run again.")


def _renameat2_noreplace(source: Path, target: Path) -> bool:
    """Linux renameat2(RENAME_NOREPLACE): True if done; False if not available here.
    Raises FileExistsError when target exists (as anything, symbolic links included)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_noreplace = -100, 1
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), rename_noreplace) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # file system without NOREPLACE
        return False
    raise OSError(code, os.strerror(code), str(target))


def _move_noreplace(source: Path, target: Path) -> None:
    if _renameat2_noreplace(source, target):
        return
    try:
        os.link(source, target, follow_symlinks=False)  # fails with EEXIST on any existing name
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(target):  # file system without hard links: a last check, then rename
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.rename(source, target)
        return
    os.unlink(source)


def _fsync(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _exists_message(path: Path) -> str:
    if path.is_symlink():
        what = f"a symbolic link (to {os.readlink(path)})"
    elif path.is_dir():
        what = "a folder"
    else:
        what = "a file"
    return (f"{path} already exists as {what}; it was left as it is and nothing was written there. "
            "Remove or rename it, or choose another output folder.")


def write_atomic(path: str | Path, write_to: Callable[[Path], None], overwrite: bool = False,
                 verify: Callable[[Path], str | None] | None = None) -> Path:
    """Write one output file completely, then give it its name; returns the path written.

    `write_to(tmp)` writes the content to `tmp`, a new empty file in the same folder with the
    same suffix. Then the file is flushed to disk and checked: not empty, an image (by suffix)
    whose header and every voxel read back, and `verify(tmp)` if given (what is wrong with the
    file, or None when it is whole). Only then is it moved to `path` without following symbolic
    links. Unless `overwrite`, anything at `path` at that moment (file, folder, link, even a
    dangling one) is left as it is and OutputExistsError is raised; with `overwrite` an
    existing file (or link, not its target) is replaced. On any error, Ctrl-C included, the
    temporary file is removed and the error raised (OSError, a writer's RuntimeError and a
    failed check as OutputError with a message).
    """
    path = Path(path)
    folder = path.parent
    if not overwrite and os.path.lexists(path):
        raise OutputExistsError(_exists_message(path))
    try:
        tmp = _create_temp(folder, path.name)
    except OSError as error:
        raise OutputError(_os_message(error, folder, path)) from error
    try:
        try:
            write_to(tmp)
        except RuntimeError as error:  # ITK's exceptions: a short write it did notice, among others
            raise IncompleteWriteError(
                f"Could not write {path.name} into {folder}: the writer failed ({_first_line(error)}). Nothing was "
                "written under that name. If the disk is full or a disk or file-size quota was reached, free some "
                "space or raise the quota, then run again; otherwise run again with --verbose and report the details."
            ) from error
        mode = os.lstat(tmp).st_mode
        if not stat.S_ISREG(mode):
            raise OutputError(f"The temporary file for {path.name} in {folder} was replaced by something else while "
                              "it was written; nothing was written. Check who else writes into this folder.")
        _fsync(tmp)  # before the check: a delayed-allocation ENOSPC shows here
        problem = written_problem(tmp) or (verify(tmp) if verify is not None else None)
        if problem:
            raise IncompleteWriteError(_write_failed_message(path, folder, problem))
        if overwrite:
            os.replace(tmp, path)  # rename(2) replaces a link itself, never its target
        else:
            _move_noreplace(tmp, path)
        _fsync(folder, directory=True)
        return path
    except FileExistsError as error:
        _remove(tmp)
        raise OutputExistsError(_exists_message(path)) from error
    except OutputError:
        _remove(tmp)
        raise
    except OSError as error:
        _remove(tmp)
        raise OutputError(_os_message(error, folder, path)) from error
    except BaseException:
        _remove(tmp)
        raise


def write_text_atomic(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """write_atomic for a text file (UTF-8), read back and compared byte for byte."""
    data = text.encode("utf-8")

    def same_bytes(tmp: Path) -> str | None:
        written = tmp.read_bytes()
        return None if written == data else f"{len(written)} of {len(data)} bytes came back"

    return write_atomic(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite, verify=same_bytes)


def written_problem(path: str | Path) -> str | None:
    """What is wrong with a file just written, or None: empty, or (images, by suffix) a header
    or voxel data that do not read back completely."""
    path = Path(path)
    size = os.lstat(path).st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    if path.name.lower().endswith(_IMAGE_SUFFIXES) and not _image_reads_back(path):
        return f"the image does not read back whole ({size} bytes on disk)"
    return None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK: "Exception thrown in ...: file:line:" then "ITK ERROR: ...": the last line says what.
    return (lines[-1] if lines else type(error).__name__)[:300]


def _write_failed_message(path: Path, folder: Path, problem: str) -> str:
    return (f"Could not write {path.name} into {folder}: {problem}. The disk is probably full, or a disk or "
            "file-size quota (ulimit -f, a cluster quota) was reached. Nothing was written under that name. Free "
            "some space or raise the quota (or choose a folder on another disk), then run again.")


def _remove(tmp: Path) -> None:
    try:
        os.unlink(tmp)  # unlink never follows a link: removes only our own name
    except FileNotFoundError:
        pass
    except OSError:
        pass


def _os_message(error: OSError, folder: Path, path: Path) -> str:
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)):
        advice = ("Free some space or raise the quota (the disk is full, or a disk or file-size quota was "
                  "reached), or choose a folder on another disk, then run again.")
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "Choose a folder you can write to, then run again."
    elif error.errno == errno.ENOENT:
        advice = "Check that the output folder exists, then run again."
    elif error.errno == errno.EISDIR:
        advice = "Remove or rename that folder, or choose another output folder."
    else:
        advice = "Check the output folder, then run again."
    return f"Could not write {path.name} into {folder}: {reason}. Nothing was written. {advice}"


def check_output_dir(path: str | Path, create: bool = True) -> Path:
    """The output folder, checked (and created if `create`) before any work: refuse a path that
    is a file, a symbolic link, or a folder that cannot be written (tried with a real file,
    which catches read-only disks and root's access too). Raises OutputError saying what to do."""
    path = Path(path)
    if path.is_symlink():
        target = os.readlink(path)
        raise OutputError(f"The output folder {path} is a symbolic link (to {target}); outputs are never written "
                          f"through links. Give the real folder ({Path(os.path.realpath(path))}) instead.")
    if path.exists() and not path.is_dir():
        raise OutputError(f"The output folder {path} is a file, not a folder. Give a folder (it is created if "
                          "missing), or remove that file.")
    if not path.exists():
        if not create:
            raise OutputError(f"The output folder {path} does not exist. Create it, or give an existing folder.")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"Cannot create the output folder {path}: {error.strerror or error}. Choose a folder "
                              "you can write to.") from error
    try:
        probe = _create_temp(path, "write-test")
    except OSError as error:
        raise OutputError(f"Cannot write into the output folder {path}: {error.strerror or error}. Choose a folder "
                          "you can write to.") from error
    _remove(probe)
    return path


def ensure_subdir(root: str | Path, *parts: str) -> Path:
    """root/part1/part2/... created one folder at a time, for nested outputs (BIDS derivatives):
    a part that exists as a symbolic link or a file is refused, so a link planted inside the
    output folder can never send a write elsewhere. Parts are single names (no '/', no '..')."""
    folder = Path(root)
    for part in parts:
        if not part or part in (".", "..") or "/" in part or os.sep in part:
            raise OutputError(f"{part!r} is not a folder name; outputs stay inside {root}.")
        folder = folder / part
        try:
            os.mkdir(folder)
        except FileExistsError:
            mode = os.lstat(folder).st_mode
            if stat.S_ISLNK(mode):
                raise OutputError(f"{folder} is a symbolic link (to {os.readlink(folder)}); outputs are never written "
                                  "through links. Remove the link, or choose another output folder.") from None
            if not stat.S_ISDIR(mode):
                raise OutputError(f"{folder} is a file where an output folder goes. Remove or rename it, or choose "
                                  "another output folder.") from None
        except OSError as error:
            raise OutputError(f"Cannot create the output folder {folder}: {error.strerror or error}. Choose a folder "
                              "you can write to.") from error
    return folder


def is_complete_output(path: str | Path, kind: str | None = None, columns: list[str] | None = None) -> bool:
    """Whether an existing output is whole, for re-runs: a regular file (not a link) that parses
    completely. kind: 'seg' / 'nrrd' / 'nifti' / 'labels' (image: header and all voxel data
    readable) or 'csv' (a header line, with `columns` if given, and every line ended); by
    suffix when None."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0 or is_partial(path):
        return False
    lowered = path.name.lower()
    if kind is None:
        kind = "csv" if lowered.endswith(".csv") else "image"
    if kind == "csv":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        lines = text.splitlines()
        if not lines or not text.endswith("\n"):
            return False
        if columns is not None:
            import csv

            header = next(csv.reader([lines[0]]))
            return all(column in header for column in columns)
        return True
    return _image_reads_back(path)


def _image_reads_back(path: Path) -> bool:
    """The header, the data's length and the readers' own check: every voxel is there."""
    from .volumeio import check_integrity, read_header

    try:
        header = read_header(path)
        if header is None:
            return False
        check_integrity(path, header)
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.Execute()
        return True
    except Exception:  # damaged in any way: not complete
        return False
