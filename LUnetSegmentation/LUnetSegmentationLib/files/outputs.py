"""Write output files whole or not at all, never through a symbolic link, never over a file.

Every output is written to a new hidden temporary file in its destination folder
(`.<case>.partial-<random><suffix>`, created with O_CREAT|O_EXCL|O_NOFOLLOW, keeping the real
suffix so ITK and MRML pick the right writer), flushed to disk, and only then given its name
by a move that refuses any existing name (file, directory, dangling or live symbolic link)
checked at that moment, not at the start of a run. On any error, Ctrl-C or disk full the
temporary file is removed, so a run that stops leaves either the complete file or nothing.

    from LUnetSegmentationLib.files.outputs import write_atomic
    write_atomic(out / "sub-01.nii.gz", lambda tmp: sitk.WriteImage(labels, str(tmp), True))

Only the standard library here: usable from the CLI, the batch API, the BIDS App and the web.
"""
from __future__ import annotations

import ctypes
import errno
import glob
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from ..runtime.preprocess import InputError

PARTIAL_TAG = ".partial-"
_MULTI_SUFFIXES = (".seg.nrrd", ".nii.gz", ".tar.gz")


class OutputError(InputError):
    """An output cannot be written as asked; the message says why and what to do. Nothing was
    written (a subclass of InputError, so every caller that reports InputError reports it)."""


class OutputExistsError(OutputError, FileExistsError):
    """Something already exists under an output's name; it was left as it is."""


def _suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in _MULTI_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[-len(suffix):]
    return Path(name).suffix


def _stem_and_suffix(name: str) -> tuple[str, str]:
    suffix = _suffix(name)
    return (name[: len(name) - len(suffix)] if suffix else name), suffix


def partial_name(name: str) -> str:
    """'sub-01.seg.nrrd' -> '.sub-01.partial-<16 hex>.seg.nrrd'"""
    stem, suffix = _stem_and_suffix(name)
    return f".{stem}{PARTIAL_TAG}{secrets.token_hex(8)}{suffix}"


def partials_of(path: str | Path) -> list[Path]:
    """The temporary files interrupted writes of this one output left (partial_name's pattern),
    and no other output's: for a folder where other writes may be under way."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stem, suffix = _stem_and_suffix(path.name)
    pattern = f".{glob.escape(stem)}{PARTIAL_TAG}*{glob.escape(suffix)}"
    return [stale for stale in path.parent.glob(pattern) if is_partial(stale)]


def is_partial(path: str | Path) -> bool:
    """A temporary file write_atomic left behind (only after SIGKILL or power loss)."""
    name = Path(path).name
    return name.startswith(".") and PARTIAL_TAG in name


def remove_partials(folder: str | Path) -> list[Path]:
    """Remove the temporary files of interrupted writes in folder (never following links); the
    paths removed. For re-runs after a hard kill: nothing else in the folder is touched."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if is_partial(entry.name) and entry.is_file(follow_symlinks=False):
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


def write_atomic(path: str | Path, write_to: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Write one output file completely, then give it its name; returns the path written.

    `write_to(tmp)` writes the content to `tmp`, a new empty file in the same folder with the
    same suffix. Then the file is flushed to disk and moved to `path` without following
    symbolic links. Unless `overwrite`, anything at `path` at that moment (file, folder, link,
    even a dangling one) is left as it is and OutputExistsError is raised; with `overwrite` an
    existing file (or link, not its target) is replaced. On any error, Ctrl-C included, the
    temporary file is removed and the error raised (OSError as OutputError with a message).
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
        write_to(tmp)
        mode = os.lstat(tmp).st_mode
        if not stat.S_ISREG(mode):
            raise OutputError(f"The temporary file for {path.name} in {folder} was replaced by something else while "
                              "it was written; nothing was written. Check who else writes into this folder.")
        _fsync(tmp)
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


def _remove(tmp: Path) -> None:
    try:
        os.unlink(tmp)  # unlink never follows a link: removes only our own name
    except FileNotFoundError:
        pass
    except OSError:
        pass


def _os_message(error: OSError, folder: Path, path: Path) -> str:
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC or error.errno == getattr(errno, "EDQUOT", -1):
        advice = "Free some space (or choose a folder on another disk), then run again."
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
    # images: the header, the data's length and the readers' own check
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
