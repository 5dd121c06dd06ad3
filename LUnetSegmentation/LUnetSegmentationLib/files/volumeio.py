"""Read MRI files into SimpleITK images with their geometry; write labelmaps (no Slicer).

NIfTI, NRRD, MHA/MHD go through SimpleITK. FreeSurfer .mgz/.mgh go through nibabel (pip's
SimpleITK has no MGH reader): its voxel-to-RAS affine is turned into ITK's LPS origin,
spacing and direction, and the voxel array into ITK's z, y, x order.

Before any voxel is read, the header alone is inspected (`read_header`): the voxel count and
memory it claims are checked against the memory available (a 100-byte file can claim 1500^3
float voxels), a plain file shorter than its header says is refused (ITK zero-fills a truncated
.nii), and float NIfTI data are scanned for NaN/Inf (ITK's NIfTI reader silently turns them
into 0). `check_self_contained` refuses files that name a second file for their voxels (NRRD
`data file:`, MetaImage `ElementDataFile`, detached headers): an upload must never make the
server read a file of its own.

After the read, `readImage` makes every format answer alike: a NIfTI's geometry is the one
nibabel, FSL and FreeSurfer read (the sform when its code is set; ITK may take the qform), and a
file whose qform and sform disagree on the orientation of its axes is refused; sheared grids,
complex voxels, NaN/Inf in any format and a single DICOM slice are refused; a float64 (or 32/64-bit
integer) volume whose values float32 cannot tell apart (a 1e9 offset) is shifted by a robust
offset and stored as float32 before anything casts it.
"""
from __future__ import annotations

import gzip
import math
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..runtime.checks import (
    ORTHOGONAL_TOLERANCE, check_orthogonal, check_real_valued, complex_voxels_message, float32_safe, shear_degrees,
    sheared_grid_message,
)
from ..runtime.memory import (
    available_memory_bytes, is_out_of_memory, memory_source, out_of_memory_message, process_bytes_to_come,
    run_peak_bytes,
)
from ..runtime.preprocess import InputError, count_nonfinite, nonfinite_message
from ..runtime.resample import image_from_ijk_to_ras

SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".mgz", ".mgh")


def case_name(path: str | Path) -> str:
    """'dir/sub-01_T1w.nii.gz' -> 'sub-01_T1w'."""
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


# ----------------------------------------------------------------------------- headers

HEADER_PEEK_BYTES = 1 << 16  # a text header (NRRD, MetaImage) longer than this is refused
# Hard limit however much memory there is: 1024^3 voxels is a 0.25 mm isotropic whole head.
MAX_VOXELS = 1024**3


@dataclass
class HeaderInfo:
    """What a file's header says about its voxels, read without reading them."""

    format: str  # "nifti", "nrrd", "metaimage", "mgh"
    shape: tuple[int, ...]  # as stored, fastest axis first, including any components/frames
    bytes_per_voxel: int  # of one stored value
    compressed: bool  # gzip file (.nii.gz, .mgz) or compressed data (NRRD gzip, MetaImage CompressedData)
    data_offset: int | None  # where the voxels start in the (decompressed) stream; None if unknown
    data_file: str | None = None  # a second file named for the voxels (NRRD data file, MetaImage ElementDataFile)
    float_kind: str | None = None  # numpy dtype string of float data ('<f4', '>f8') for the NaN scan
    detached_header: bool = False  # NIfTI 'ni1' pair, .nhdr, .mhd
    stored_bytes: int | None = None  # bytes of (compressed) data the file must hold after data_offset
    deflated_at: int | None = None  # where a deflate stream of the voxels starts (NRRD gzip, MetaImage compressed)
    nifti_datatype: int | None = None  # NIfTI datatype code (16 float32, 32 complex64...)

    @property
    def voxels(self) -> int:
        count = 1
        for n in self.shape:
            count *= int(n)
        return count

    @property
    def data_bytes(self) -> int:
        """Uncompressed size of the voxel data."""
        return self.voxels * self.bytes_per_voxel


def _damaged(path: Path, what: str) -> InputError:
    return InputError(f"Cannot read {path.name}: it is damaged ({what}). Copy or export it again.")


def _peek(path: Path, count: int = HEADER_PEEK_BYTES) -> tuple[bytes, bool]:
    """The first `count` bytes of the file, decompressed when it is gzip; (bytes, was gzip)."""
    with open(path, "rb") as handle:
        head = handle.read(count)
        if head[:2] != b"\x1f\x8b":
            return head, False
        handle.seek(0)
        try:
            with gzip.GzipFile(fileobj=handle) as stream:
                return stream.read(count), True
        except EOFError:
            # shorter than `count` after decompression and truncated: take what is there
            handle.seek(0)
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return decompressor.decompress(handle.read(count)), True
        except (OSError, zlib.error) as error:
            raise _damaged(path, f"its compressed data is corrupt: {error}") from error


_NIFTI_TYPES = {  # datatype code -> (numpy kind for floats or None, bytes of one value)
    2: (None, 1), 4: (None, 2), 8: (None, 4), 16: ("f4", 4), 64: ("f8", 8), 256: (None, 1), 512: (None, 2),
    768: (None, 4), 1024: (None, 8), 1280: (None, 8), 32: ("f4", 8), 1792: ("f8", 16), 128: (None, 3),
    2304: (None, 4), 1536: (None, 16),
}


def _nifti_header(path: Path, head: bytes, gzipped: bool) -> HeaderInfo | None:
    if len(head) < 4:
        return None
    for endian in "<>":
        (sizeof_hdr,) = struct.unpack(endian + "i", head[:4])
        if sizeof_hdr in (348, 540):
            break
    else:
        return None
    if len(head) < sizeof_hdr:
        raise _damaged(path, f"it ends inside its NIfTI header ({len(head)} of {sizeof_hdr} bytes)")
    if sizeof_hdr == 348:
        dims = struct.unpack(endian + "8h", head[40:56])
        datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
        (vox_offset,) = struct.unpack(endian + "f", head[108:112])
        magic = head[344:348]
        pair = magic.startswith(b"ni1")
    else:
        magic = head[4:12]
        datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
        dims = struct.unpack(endian + "8q", head[16:80])
        (vox_offset,) = struct.unpack(endian + "q", head[168:176])
        pair = magic.startswith(b"ni2")
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1 : ndim + 1]):
        raise _damaged(path, f"its NIfTI header has impossible dimensions {list(dims[: ndim + 1 if 0 <= ndim <= 7 else 8])}")
    kind, value_bytes = _NIFTI_TYPES.get(datatype, (None, max(1, bitpix // 8)))
    return HeaderInfo(
        format="nifti",
        shape=tuple(int(d) for d in dims[1 : ndim + 1]),
        bytes_per_voxel=value_bytes,
        compressed=gzipped,
        data_offset=None if pair else max(int(vox_offset), sizeof_hdr + 4),
        float_kind=(endian + kind) if kind else None,
        detached_header=pair,
        nifti_datatype=int(datatype),
    )


def _mgh_header(path: Path, head: bytes, gzipped: bool) -> HeaderInfo | None:
    if len(head) < 28 or struct.unpack(">i", head[:4])[0] != 1 or not path.name.lower().endswith((".mgz", ".mgh")):
        return None
    width, height, depth, frames, kind = struct.unpack(">5i", head[4:24])
    if min(width, height, depth, frames) < 1:
        raise _damaged(path, f"its MGH header has impossible dimensions {[width, height, depth, frames]}")
    value_bytes = {0: 1, 1: 4, 3: 4, 4: 2}.get(kind)
    if value_bytes is None:
        raise _damaged(path, f"its MGH header has an unknown voxel type {kind}")
    shape = (width, height, depth) + ((frames,) if frames > 1 else ())
    return HeaderInfo("mgh", shape, value_bytes, gzipped, 284,
                      float_kind=">f4" if kind == 3 else None)


def _nrrd_value_bytes(kind: str) -> int:
    kind = kind.strip().lower()
    if kind in ("double",) or "64" in kind or "long" in kind:
        return 8
    if "short" in kind or "16" in kind:
        return 2
    if "char" in kind or kind.endswith(("int8", "int8_t")):
        return 1
    return 4  # float, int, uint, int32...


def _nrrd_header(path: Path, head: bytes, gzipped: bool) -> HeaderInfo | None:
    if not head.startswith(b"NRRD"):
        return None
    match = re.search(rb"\r?\n\r?\n", head)
    end = match.end() if match else None
    if end is None and len(head) >= HEADER_PEEK_BYTES:
        raise _damaged(path, f"its NRRD header is longer than {HEADER_PEEK_BYTES // 1024} KB or has no end")
    fields: dict[str, str] = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        if not line.strip() or line.startswith("#"):
            continue
        if ":" in line:
            key, _, value = line.partition(":")
            if value.startswith("="):  # key:=value pairs are free text, not fields
                continue
            fields[key.strip().lower().replace(" ", "")] = value.strip()
    data_file = fields.get("datafile")
    try:
        shape = tuple(int(v) for v in fields.get("sizes", "").split())
    except ValueError:
        raise _damaged(path, f"its NRRD 'sizes' field is not a list of numbers ({fields.get('sizes')!r})") from None
    if not shape or any(n < 1 for n in shape):
        raise _damaged(path, f"its NRRD header has no valid 'sizes' field ({fields.get('sizes')!r})")
    kind = fields.get("type", "")
    encoding = fields.get("encoding", "raw").lower()
    value_bytes = _nrrd_value_bytes(kind)
    float_kind = None
    if kind.lower() in ("float", "double"):
        order = ">" if fields.get("endian", "little").lower() == "big" else "<"
        float_kind = order + ("f4" if kind.lower() == "float" else "f8")
    return HeaderInfo(
        format="nrrd", shape=shape, bytes_per_voxel=value_bytes, compressed=gzipped or encoding not in ("raw",),
        data_offset=end if encoding == "raw" and data_file is None and fields.get("byteskip", "0") == "0" else None,
        data_file=data_file, float_kind=float_kind,
        detached_header=path.name.lower().endswith(".nhdr"),
        deflated_at=end if encoding in ("gzip", "gz") and data_file is None and not gzipped
        and fields.get("byteskip", "0") == "0" and fields.get("lineskip", "0") == "0" else None,
    )


_META_BYTES = {"CHAR": 1, "UCHAR": 1, "SHORT": 2, "USHORT": 2, "INT": 4, "UINT": 4, "LONG": 4, "ULONG": 4,
               "LONG_LONG": 8, "ULONG_LONG": 8, "FLOAT": 4, "DOUBLE": 8}


def _meta_header(path: Path, head: bytes, gzipped: bool) -> HeaderInfo | None:
    match = re.search(rb"(?im)^[ \t]*ElementDataFile[ \t]*=[ \t]*([^\r\n]*)\r?\n?", head)
    if match is None:
        if re.match(rb"\s*(ObjectType|NDims|DimSize)\s*=", head):
            raise _damaged(path, "its MetaImage header has no ElementDataFile line (or is longer than "
                                 f"{HEADER_PEEK_BYTES // 1024} KB)")
        return None
    fields = {}
    for line in head[: match.start()].decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    try:
        shape = tuple(int(v) for v in fields.get("dimsize", "").split())
        channels = int(fields.get("elementnumberofchannels", "1"))
    except ValueError:
        raise _damaged(path, f"its MetaImage DimSize is not a list of numbers ({fields.get('dimsize')!r})") from None
    if not shape or any(n < 1 for n in shape) or channels < 1:
        raise _damaged(path, f"its MetaImage header has no valid DimSize ({fields.get('dimsize')!r})")
    element = fields.get("elementtype", "").upper().removeprefix("MET_").removesuffix("_ARRAY")
    data_file = match.group(1).decode("latin-1").strip()
    local = data_file.upper() == "LOCAL"
    compressed = fields.get("compresseddata", "false").lower() == "true"
    try:
        compressed_size = int(fields.get("compresseddatasize", "0")) if compressed else None
    except ValueError:
        compressed_size = None
    float_kind = None
    if element in ("FLOAT", "DOUBLE"):
        msb = fields.get("binarydatabyteordermsb", fields.get("elementbyteordermsb", "false")).lower() == "true"
        float_kind = (">" if msb else "<") + ("f4" if element == "FLOAT" else "f8")
    return HeaderInfo(
        format="metaimage", shape=shape + ((channels,) if channels > 1 else ()),
        bytes_per_voxel=_META_BYTES.get(element, 8), compressed=gzipped or compressed,
        data_offset=match.end() if local and (not compressed or compressed_size) and fields.get("headersize", "0") == "0" else None,
        data_file=None if local else data_file, float_kind=float_kind,
        detached_header=path.name.lower().endswith(".mhd"), stored_bytes=compressed_size or None,
        deflated_at=match.end() if local and compressed and not gzipped and fields.get("headersize", "0") == "0"
        else None,
    )


def _refuse_missing_or_special(path: Path) -> None:
    """A path that is not a regular file: say which (a FIFO or a device would block or never
    end; "No such file" would be wrong for them)."""
    if path.exists():
        raise InputError(f"{path} is not a regular file (a pipe, a device or a folder that is not a DICOM series), so it "
                         "was not read. Give the path of an image file.")
    raise FileNotFoundError(f"No such file: {path}")


def read_header(path: str | Path) -> HeaderInfo | None:
    """The header of a NIfTI, NRRD, MetaImage or MGH file, read without its voxels; None if the
    file is none of these (by content, not name). Raises InputError for a damaged header."""
    path = Path(path)
    if not path.is_file():
        _refuse_missing_or_special(path)
    head, gzipped = _peek(path)
    for parse in (_nrrd_header, _nifti_header, _mgh_header, _meta_header):
        info = parse(path, head, gzipped)
        if info is not None:
            return info
    return None


def check_self_contained(path: str | Path) -> HeaderInfo:
    """Refuse a file that is not one self-contained NIfTI/NRRD/MetaImage/MGH volume: one that
    names another file for its voxels (NRRD `data file:`, MetaImage `ElementDataFile` other than
    LOCAL), a detached header (.nhdr, .mhd, NIfTI 'ni1' pair), or content of another kind.
    For uploads: reading such a file would read a file of the server's. Reads the header only."""
    path = Path(path)
    what = "Upload a single-file .nii.gz, .nrrd, .mha or .mgz (voxels in the same file)."
    if path.name.lower().endswith((".nhdr", ".mhd")):
        raise InputError(f"{path.name} is a detached header: its voxels are in a separate file, which an upload "
                         f"does not bring along. {what}")
    info = read_header(path)
    if info is None:
        raise InputError(f"{path.name} is not a NIfTI, NRRD, MetaImage or FreeSurfer MGH volume (by its content). {what}")
    if info.data_file is not None:
        field = "data file" if info.format == "nrrd" else "ElementDataFile"
        raise InputError(f"{path.name} names another file for its voxels ({field}: {info.data_file[:240]}); "
                         f"it was not read. {what}")
    if info.detached_header:
        raise InputError(f"{path.name} is a header whose voxels are in a separate file; it was not read. {what}")
    return info


def estimate_voxels_and_bytes(path: str | Path) -> tuple[int, int]:
    """(voxel values, bytes of memory to read and segment them) from the header alone; (0, 0) if
    the format is not one we can inspect. The bytes are the measured peak of a whole-head run
    (runtime.memory.run_peak_bytes: the voxels as stored plus 10 bytes per voxel), not just the
    read: a scan that can be read but not segmented is refused before the work starts."""
    info = read_header(path)
    if info is None:
        return 0, 0
    return info.voxels, run_peak_bytes(info.voxels, info.bytes_per_voxel)


def check_size(path: str | Path, max_bytes: int | None = None, available: int | None = None,
               info: HeaderInfo | None = None) -> HeaderInfo | None:
    """Refuse, from the header alone, a file whose voxels would not fit: more than MAX_VOXELS,
    more memory than is available now, or (uploads) more uncompressed bytes than `max_bytes`."""
    path = Path(path)
    info = read_header(path) if info is None else info
    if info is None:
        return None
    voxels = info.voxels
    # The run's peak (measured), and the model and libraries if they are not loaded yet (the
    # check runs before them in the CLI and BIDS App); see runtime/memory.py.
    needed = run_peak_bytes(voxels, info.bytes_per_voxel) + process_bytes_to_come()
    dims = "x".join(str(n) for n in info.shape)
    if voxels > MAX_VOXELS:
        raise InputError(f"{path.name} claims {dims} = {voxels:,} voxels, more than this program reads "
                         f"({MAX_VOXELS:,}); it was not read. Crop or downsample it first (or the header is damaged).")
    if max_bytes is not None and info.data_bytes > max_bytes:
        raise InputError(f"{path.name} holds {info.data_bytes / 2**20:.1f} MB of voxels once uncompressed ({dims}), "
                         f"more than this server accepts ({max_bytes / 2**20:.1f} MB). Give its path on the command "
                         "line instead, or start the server with a larger --max-upload-mb.")
    free = available_memory_bytes() if available is None else available
    if needed > free:
        source = f" ({memory_source()})" if available is None else ""
        raise InputError(f"Reading and segmenting {path.name} ({dims} voxels) would need about {needed / 2**30:.1f} GiB "
                         f"of memory and {free / 2**30:.1f} GiB is available to this process{source}; it was not "
                         "read. Crop or downsample it first, free memory, or ask your job scheduler for more "
                         "(e.g. SLURM --mem).")
    return info


def _scan_data(path: Path, info: HeaderInfo) -> None:
    """Read the voxel data of a NIfTI/MGH file as a stream, once: refuse it if it ends early (ITK
    zero-fills a truncated plain .nii and a truncated .nii.gz) or, for float NIfTI, if it holds
    NaN/Inf (ITK's NIfTI reader silently turns them into 0). Memory: one 4 MB chunk."""
    scan_floats = info.format == "nifti" and info.float_kind is not None
    expected = info.data_bytes
    if not info.compressed and not scan_floats:
        have = path.stat().st_size - info.data_offset
        if have < expected:
            raise _damaged(path, f"it ends early: {max(have, 0):,} of {expected:,} bytes of voxel data, truncated")
        return
    dtype = np.dtype(info.float_kind) if scan_floats else None
    chunk = (1 << 22) - (1 << 22) % (dtype.itemsize if dtype else 1)
    bad = read = 0
    carry = b""
    try:
        with (gzip.open(path, "rb") if info.compressed else open(path, "rb")) as stream:
            skip = info.data_offset
            while skip:
                got = len(stream.read(min(skip, chunk)))
                if not got:
                    break
                skip -= got
            while read < expected:  # no further: a gzip bomb's extra gigabytes are never inflated
                block = stream.read(min(chunk, expected - read))
                if not block:
                    break
                if dtype is not None:
                    useful = carry + block
                    whole = len(useful) - len(useful) % dtype.itemsize
                    values = np.frombuffer(useful[:whole], dtype)
                    bad += int(values.size - np.count_nonzero(np.isfinite(values)))
                    carry = useful[whole:]
                read += len(block)
    except EOFError as error:
        raise _damaged(path, "it ends early: its compressed data stop before the end, truncated") from error
    except (OSError, zlib.error) as error:
        raise _damaged(path, f"its compressed data is corrupt: {error}") from error
    if read < expected:
        raise _damaged(path, f"it ends early: {read:,} of {expected:,} bytes of voxel data, truncated")
    if bad:
        raise InputError(
            f"{path.name} has {bad} NaN or infinite voxel(s), which the NIfTI reader would silently turn into 0. "
            "Replace them first, e.g. with Slicer's 'Threshold Scalar Volume' or numpy.nan_to_num, then run again."
        )


def _inflated_length(path: Path, offset: int, wanted: int) -> int:
    """Bytes a deflate stream (gzip or zlib) starting at `offset` decompresses to, counted in
    4 MB pieces and only up to `wanted`: a header claiming far more than its data is found
    without allocating what it claims."""
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header, detected
    count = 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        while count < wanted:
            block = handle.read(1 << 20)
            if not block:
                break
            while block and count < wanted:
                count += len(inflater.decompress(block, 1 << 22))
                block = inflater.unconsumed_tail
            if inflater.eof:
                break
    return count


def check_integrity(path: str | Path, info: HeaderInfo | None = None) -> None:
    """Refuse a file whose voxel data are shorter than its header says (plain NIfTI, raw NRRD,
    MetaImage, MGH; gzip streams read to their end) or, for float NIfTI, hold NaN/Inf."""
    path = Path(path)
    info = read_header(path) if info is None else info
    if info is None:
        if path.name.lower().endswith((".gz", ".mgz")):
            _check_gzip_complete(path)
        return
    if info.format in ("nifti", "mgh") and info.data_offset is not None:
        _scan_data(path, info)
    elif info.compressed and path.name.lower().endswith((".gz", ".mgz")):
        _check_gzip_complete(path)
    elif info.deflated_at is not None:  # NRRD gzip encoding, compressed MetaImage
        if info.stored_bytes and path.stat().st_size - info.deflated_at < info.stored_bytes:
            have = max(path.stat().st_size - info.deflated_at, 0)
            raise _damaged(path, f"it ends early: {have:,} of {info.stored_bytes:,} bytes of voxel data, truncated")
        try:
            have = _inflated_length(path, info.deflated_at, info.data_bytes)
        except zlib.error as error:
            raise _damaged(path, f"its compressed data is corrupt: {error}") from error
        if have < info.data_bytes:
            raise _damaged(path, f"it ends early: its compressed data hold {have:,} of {info.data_bytes:,} bytes "
                                 "of voxels, truncated")
    elif info.data_offset is not None:  # raw NRRD or MetaImage with the voxels in this file
        have, need = path.stat().st_size - info.data_offset, info.stored_bytes or info.data_bytes
        if have < need:
            raise _damaged(path, f"it ends early: {max(have, 0):,} of {need:,} bytes of voxel data, truncated")


def _read_mgh(path: Path) -> sitk.Image:
    import nibabel

    loaded = nibabel.load(str(path))
    data = np.asanyarray(loaded.dataobj)
    # MGH stores big-endian; SimpleITK takes native byte order only.
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path.name} has {data.ndim} dimensions {data.shape}; the model needs one 3D volume.")
    affine = np.asarray(loaded.affine, dtype=float)
    # nibabel indexes (i, j, k); ITK arrays are (k, j, i).
    return image_from_ijk_to_ras(data.transpose(2, 1, 0), affine, path.name)


def _check_gzip_complete(path: Path) -> None:
    """ITK reads a truncated .nii.gz without complaint (the missing voxels come back as zeros),
    so read the compressed stream to its end once first."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(
            f"Cannot read {path.name}: it is damaged (its compressed data {'ends early' if isinstance(error, EOFError) else 'is corrupt'}). "
            "Copy or download it again."
        ) from error


def _check_data_file(path: Path, info: HeaderInfo) -> None:
    """A detached data file must be a regular file: never a device (/dev/urandom, /dev/stdin)
    or a FIFO, which would be read without end or block."""
    name = info.data_file.strip()
    if name.upper() == "LIST" or len(name.split()) > 1:  # file lists and patterns: left to the reader
        return
    target = Path(name) if Path(name).is_absolute() else path.parent / name
    if target.exists() and not target.is_file():
        raise InputError(f"{path.name} names {name} for its voxels, which is not a regular file; it was not read. "
                         "Point its data file at the raw voxel file, or convert the volume to .nii.gz.")


# ----------------------------------------------------------------------------- what every format must pass

_NIFTI_COMPLEX = {32: "complex64", 1792: "complex128", 2048: "complex256"}
_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])
# How far ITK's reading of a NIfTI may be from nibabel's before nibabel's is taken instead:
# float32 quaternions and offsets in the header round to about 1e-6.
_AFFINE_TOLERANCE = 1e-4  # of the 3x3 part (mm per voxel)
_ORIGIN_TOLERANCE_MM = 1e-3


def _refuse_from_header(path: Path, info: HeaderInfo | None) -> None:
    """What the header alone shows the model cannot use, said before ITK reads it (ITK's own
    words for these are "Cast error" or a matrix printed as "(1 -0)")."""
    if info is None or info.format != "nifti":
        return
    if info.nifti_datatype in _NIFTI_COMPLEX:
        raise InputError(complex_voxels_message(path.name, _NIFTI_COMPLEX[info.nifti_datatype]))
    if len(info.shape) < 3:
        dims = "x".join(str(n) for n in info.shape)
        raise InputError(f"{path.name} is 2D; the model needs a 3D MRI volume ({dims} voxels: one slice). Give the "
                         "whole 3D scan (or, for a DICOM series, the folder of the series).")


# Where a NIfTI-1 (348-byte) and NIfTI-2 (540-byte) header keep their geometry: (offset, format).
_NIFTI_GEOMETRY_FIELDS = {
    348: {"pixdim": (76, "8f"), "codes": (252, "2h"), "quatern": (256, "6f"), "srow": (280, "12f")},
    540: {"pixdim": (104, "8d"), "codes": (344, "2i"), "quatern": (352, "6d"), "srow": (400, "12d")},
}


def _quaternion_matrix(b: float, c: float, d: float) -> np.ndarray:
    """The rotation of a NIfTI qform (a = sqrt(1 - b^2 - c^2 - d^2), as nibabel and ITK take it)."""
    a = math.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ])


def _nifti_transforms(path: Path):
    """(qform, qform code, sform, sform code) of a NIfTI header, as nibabel's get_qform and
    get_sform give them, read from the header bytes (nibabel is optional inside Slicer); None for
    a header that is no NIfTI-1/2 (then ITK's reading stands)."""
    head, _ = _peek(path, 544)
    for endian in "<>":
        if len(head) >= 4 and struct.unpack(endian + "i", head[:4])[0] in _NIFTI_GEOMETRY_FIELDS:
            break
    else:
        return None
    size = struct.unpack(endian + "i", head[:4])[0]
    if len(head) < size:
        return None
    fields = {name: struct.unpack_from(endian + kind, head, offset)
              for name, (offset, kind) in _NIFTI_GEOMETRY_FIELDS[size].items()}
    qcode, scode = (int(code) for code in fields["codes"])
    pixdim = np.asarray(fields["pixdim"], dtype=float)
    b, c, d, *offset = fields["quatern"]
    qfac = pixdim[0] if pixdim[0] in (-1.0, 1.0) else 1.0  # 0 (unset) counts as 1, as in ITK and nibabel
    qform = np.eye(4)
    qform[:3, :3] = _quaternion_matrix(b, c, d) @ np.diag([pixdim[1], pixdim[2], pixdim[3] * qfac])
    qform[:3, 3] = offset
    sform = np.eye(4)
    sform[:3, :] = np.asarray(fields["srow"], dtype=float).reshape(3, 4)
    return qform, qcode, sform, scode


def _axis_codes(affine: np.ndarray) -> str:
    """Where each voxel axis points, nearest of R/L, A/P, S/I ("RAS", "LAS", ...), as
    nibabel.aff2axcodes says it: the matrix made orthonormal, then the voxel axes, the most
    clearly aligned first, each take the world axis nearest to it among those not yet taken."""
    axes = np.asarray(affine, dtype=float)[:3, :3]
    norms = np.linalg.norm(axes, axis=0)
    axes = axes / np.where(norms == 0, 1.0, norms)
    left, _, right = np.linalg.svd(axes)
    rotation = left @ right
    codes = [""] * 3
    for column in np.argsort(np.min(-(rotation**2), axis=0), kind="stable"):
        axis = rotation[:, column]
        nearest = int(np.argmax(np.abs(axis)))
        codes[column] = ("RAS" if axis[nearest] > 0 else "LPI")[nearest]
        rotation[nearest, :] = 0
    return "".join(codes)


def _degenerate(affine: np.ndarray) -> str | None:
    """What makes a voxel-to-world matrix unusable, or None."""
    if not np.all(np.isfinite(affine)):
        return "not finite"
    axes = affine[:3, :3]
    if abs(np.linalg.det(axes)) <= 1e-6 * max(float(np.abs(axes).max()), 1e-12) ** 3:
        return "degenerate (a voxel axis of length 0, or two along one line)"
    return None


def nifti_geometry(path: str | Path) -> np.ndarray | None:
    """The voxel-to-RAS affine nibabel, FSL and FreeSurfer use for a NIfTI file (the sform when
    its code is set, else the qform), or None when neither is coded. Refuses (InputError) a file
    whose qform and sform are both coded and disagree on which way its axes point: then left and
    right depend on the program that reads it, and only its owner can say which is right."""
    path = Path(path)
    found = _nifti_transforms(path)
    if found is None:
        return None
    qform, qcode, sform, scode = found
    for matrix, code, which, other in ((sform, scode, "sform", "qform"), (qform, qcode, "qform", "sform")):
        problem = _degenerate(matrix) if code > 0 else None
        if problem:
            raise InputError(
                f"{path.name} has a damaged header: its {which} (code {code}) is {problem}, so where its voxels lie is "
                f"unknown. Fix the header (e.g. FSL `fslorient -copy{other}2{which} {path.name}` if its {other} is "
                "right) or export the volume again."
            )
    if scode > 0 and qcode > 0 and _axis_codes(qform) != _axis_codes(sform):
        raise InputError(
            f"{path.name} has two orientations that disagree: its qform (code {qcode}) says the voxel axes point "
            f"{_axis_codes(qform)} and its sform (code {scode}) says {_axis_codes(sform)}, so left and right depend on "
            "the program (ITK and Slicer may read the qform; nibabel, FSL and FreeSurfer read the sform). It was not "
            "read. Make them agree, keeping the one you trust: FSL `fslorient -copysform2qform "
            f"{path.name}` (or -copyqform2sform), or in Python `img = nibabel.load(f); img.set_qform(img.get_sform(), "
            f"code={scode}); nibabel.save(img, f)`; then run again."
        )
    chosen = sform if scode > 0 else (qform if qcode > 0 else None)
    if chosen is None:
        return None
    chosen = np.asarray(chosen, dtype=float)
    lps_axes = _RAS_FROM_LPS @ chosen[:3, :3]
    degrees = shear_degrees(lps_axes.flatten())
    if np.sin(np.radians(degrees)) > ORTHOGONAL_TOLERANCE or not np.all(np.linalg.norm(lps_axes, axis=0) > 0):
        raise InputError(sheared_grid_message(path.name, degrees))
    return chosen


def _ijk_to_ras(image: sitk.Image) -> np.ndarray:
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = _RAS_FROM_LPS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = _RAS_FROM_LPS @ np.asarray(image.GetOrigin(), dtype=float)
    return matrix


def _differs(ijk_to_ras: np.ndarray, affine: np.ndarray) -> bool:
    return bool(np.abs(ijk_to_ras[:3, :3] - affine[:3, :3]).max() > _AFFINE_TOLERANCE
                or np.abs(ijk_to_ras[:3, 3] - affine[:3, 3]).max() > _ORIGIN_TOLERANCE_MM)


def check_loaded_geometry(path: str | Path, ijk_to_ras, name: str) -> None:
    """Refuse a volume that another program loaded from this NIfTI file with a geometry other
    than nibabel's (Slicer's reader is ITK's, which may take the qform where nibabel, FSL and
    FreeSurfer take the sform): its labels would be placed where that program put the voxels,
    not where the file's own tools do. `ijk_to_ras`: the 4x4 matrix the volume has (a Slicer
    node's IJKToRAS). Files that are no NIfTI, or whose geometry agrees, pass."""
    path = Path(path)
    if not path.is_file() or not path.name.lower().endswith((".nii", ".nii.gz")):
        return
    affine = nifti_geometry(path)  # refuses a qform and sform that disagree on sides
    loaded = np.asarray(ijk_to_ras, dtype=float).reshape(4, 4)
    if affine is None or not _differs(loaded, affine):
        return
    moved = float(np.abs(loaded[:3, 3] - affine[:3, 3]).max())
    raise InputError(
        f"{name!r} was loaded from {path.name} with the file's qform, but nibabel, FSL and FreeSurfer place its voxels "
        f"by its sform (they differ by up to {moved:.1f} mm at the first voxel, and in orientation or spacing): the "
        "labels would not overlay the scan in those tools. Make the two agree (FSL `fslorient -copysform2qform "
        f"{path.name}`, or nibabel: img.set_qform(img.get_sform())), load it again, then run."
    )


def _with_nifti_geometry(image: sitk.Image, affine: np.ndarray | None) -> sitk.Image:
    """The image on nibabel's geometry where ITK read another (ITK may prefer the qform)."""
    if affine is None or image.GetDimension() != 3:
        return image
    if not _differs(_ijk_to_ras(image), affine):
        return image
    lps = _RAS_FROM_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps / spacing).flatten().tolist())
    image.SetOrigin((_RAS_FROM_LPS @ affine[:3, 3]).tolist())
    return image


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM" or path.suffix.lower() in (".dcm", ".ima")


def _refuse_after_read(path: Path, image: sitk.Image, info: HeaderInfo | None) -> None:
    """Refusals that need the read image: every format says them alike, whoever reads."""
    check_real_valued(image, path.name)
    if _is_dicom(path) and (image.GetDimension() < 3 or min(image.GetSize()) < 4):
        size = "x".join(str(n) for n in image.GetSize())
        raise InputError(f"{path.name} is a single DICOM file ({size} voxels, one slice of a series). DICOM series "
                         "are read as folders: give the folder of the series (the folder that holds all its slices) "
                         "instead of one of its files.")
    if image.GetDimension() == 3:
        check_orthogonal(image, path.name)
    scanned = info is not None and info.format == "nifti" and info.data_offset is not None  # by _scan_data
    if not scanned and image.GetNumberOfComponentsPerPixel() == 1 and image.GetPixelID() in (
            sitk.sitkFloat32, sitk.sitkFloat64):
        bad = count_nonfinite(sitk.GetArrayViewFromImage(image))
        if bad:
            raise InputError(nonfinite_message(f"volume {path.name}", bad))


# ITK's words for a broken geometry, and what they mean to the user.
_ITK_GEOMETRY_ERRORS = (
    ("determinant is 0", "its direction matrix is degenerate: two voxel axes along one line, or an axis of length 0"),
    ("Zero-valued spacing", "a voxel spacing of 0"),
    ("space directions", "its NRRD 'space directions' field cannot be parsed"),
)


# The name a file of each format must have for ITK to pick its reader (it goes by the name).
_SUFFIX_OF_FORMAT = {("nifti", True): ".nii.gz", ("nifti", False): ".nii", ("nrrd", True): ".nrrd",
                     ("nrrd", False): ".nrrd", ("metaimage", False): ".mha", ("metaimage", True): ".mha",
                     ("mgh", True): ".mgz", ("mgh", False): ".mgh"}
READABLE = ("NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or FreeSurfer (.mgz, .mgh); "
            "for DICOM give the folder of the series")


def _reader_refusal(path: Path, error: BaseException, info: HeaderInfo | None = None) -> InputError:
    """The reader's exception as a message: a name that does not match the content, known
    geometry errors in words, otherwise the reader's own sentence without ITK's file, line and
    object address."""
    text = str(error).strip()
    if "Unable to determine ImageIO reader" in text:
        if info is not None:
            gzipped = _peek(path, 2)[1] if info.format in ("nifti", "mgh") else info.compressed
            suffix = _SUFFIX_OF_FORMAT.get((info.format, bool(gzipped)), "")
            kind = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage", "mgh": "FreeSurfer MGH"}[info.format]
            return InputError(f"{path.name} holds a {kind} volume (by its content) but its name does not end "
                              f"in {suffix}, which the reader goes by. Rename it to end in {suffix} and run again.")
        return InputError(f"Cannot read {path.name}: it is not an image this program reads ({READABLE}).")
    for clue, meaning in _ITK_GEOMETRY_ERRORS:
        if clue in text:
            return _damaged(path, meaning)
    said = re.search(r"ERROR: \w+\(0x[0-9a-fA-F]+\): ([^\n]+)", text)
    lines = [line for line in text.splitlines() if line.strip()]
    detail = lines[-1].strip() if lines else type(error).__name__
    if said and not said.group(1).rstrip().endswith(":"):  # else the details are on the lines below
        detail = said.group(1).strip()
    return InputError(f"Cannot read {path.name}: it is damaged or not a supported image ({detail}).")


def readImage(path: str | Path, max_bytes: int | None = None) -> sitk.Image:
    """An MRI file as a SimpleITK image; a clear error when the file is missing or unreadable.

    Every path that reads a file (CLI, batch, BIDS App, web panel, the Slicer module's child
    process) reads it here, so every one refuses the same files. Before the voxels are read: the
    header's size is checked against the memory a run needs and the memory this process may use
    (and `max_bytes` of uncompressed voxel data, if given), the data are checked to be complete
    (and, for float NIfTI, finite), complex and 2D NIfTI are refused, and a NIfTI's qform and
    sform must not disagree. After: a NIfTI takes nibabel's geometry, and sheared grids, complex
    voxels, NaN/Inf and single DICOM slices are refused in every format; and a float64 volume
    with a huge offset is brought to float32 without losing its contrast (checks.float32_safe)."""
    path = Path(path)
    if not path.is_file():
        _refuse_missing_or_special(path)
    if not case_name(path):
        raise InputError(f"The file name {path.name!r} has nothing before its extension, so its results would be "
                         f"hidden files without a name. Rename it (e.g. to scan{path.name}) and run again.")
    if path.stat().st_size == 0:
        raise InputError(f"Cannot read {path.name}: it is empty (0 bytes). Copy or export it again.")
    info = None
    try:
        info = read_header(path)
        check_size(path, max_bytes=max_bytes, info=info)
        if info is not None and info.data_file is not None:
            _check_data_file(path, info)
        check_integrity(path, info)
        _refuse_from_header(path, info)
        affine = nifti_geometry(path) if info is not None and info.format == "nifti" else None
        if path.name.lower().endswith((".mgz", ".mgh")):
            image = _read_mgh(path)
        else:
            image = _with_nifti_geometry(sitk.ReadImage(str(path)), affine)
        _refuse_after_read(path, image, info)
        return float32_safe(image)
    except InputError:
        raise
    except Exception as error:  # readers raise RuntimeError, EOFError, zlib errors...
        if is_out_of_memory(error):
            raise InputError(out_of_memory_message(path.name, "read")) from error
        raise _reader_refusal(path, error, info) from error


def writeLabelmap(labels: sitk.Image, path: str | Path, note: str | None = None) -> None:
    """Write a uint8 label image (NIfTI when the name ends in .nii/.nii.gz), compressed; `note`
    goes into the header's description (NIfTI `descrip`, 80 characters)."""
    image = sitk.Cast(labels, sitk.sitkUInt8)
    if note is not None:
        image.SetMetaData("ITK_FileNotes", note)
    sitk.WriteImage(image, str(path), useCompression=True)
