"""Memory the operating system can give this process now, on Linux, Windows and macOS, with the
standard library only (psutil is not bundled with Slicer).

    Linux    /proc/meminfo MemAvailable (free plus reclaimable page cache)
    Windows  GlobalMemoryStatusEx (kernel32, through ctypes): ullAvailPhys
    macOS    `vm_stat`: free + inactive + speculative + purgeable pages (what macOS reclaims
             without swapping), times its page size
    other    os.sysconf SC_AVPHYS_PAGES x SC_PAGE_SIZE where the platform has them

A process can be held to less than the machine has: a container, systemd or SLURM job runs in a
cgroup with its own memory limit, and `ulimit -v` caps the address space. `available_memory_bytes()`
takes the lowest of the platform figure, the cgroup v2/v1 limit minus what the cgroup already
uses (less its reclaimable file cache) and the address-space limit minus what is mapped, so a
job given 4 GB on a 512 GB node is refused before it starts instead of being killed (or getting
ITK's "Failed to allocate memory for image") halfway. It falls back to a fixed guess only when
no method answers, and `memory_source()` says which figure answered (for messages and tests).
Used by the engine's memory check, the volume reader's header check and the MRML adapter's
voxel copy.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

FALLBACK_BYTES = 8 << 30
# Peak memory of one whole-head run, per voxel of the input scan, besides the voxels as stored and
# the process itself. Measured on the shared chris_t1 scan (0.88 mm) resampled to 0.5 and 0.35 mm
# (49.9 and 145.6 million voxels), stored as uint8 and as float32, with the whole-head CLI on the
# CPU; peak resident memory from GNU time:
#   python -c "import SimpleITK as s; i = s.ReadImage('chris_t1.nii.gz'); ..."  # sitk.Resample to
#       S mm isotropic, same pixel type (and a sitk.Cast to float32 copy) -> fine_S.nii.gz
#   /usr/bin/time -v python -m LUnetSegmentationLib segment fine_S.nii.gz --out o --device cpu --labelmap
# Peak RSS: uint8 842 MiB (0.5 mm) and 1781 MiB (0.35 mm); float32 985 and 2198 MiB; the original
# 9.1 million voxels 449 MiB. The slope between the two sizes is 10.3 bytes per voxel for uint8
# input and 13.3 for float32: the stored bytes (1 or 4) plus 9.3 for the float32 copies, the
# resampling and the labels; the intercept (about 350 MiB) is Python, torch and the model.
RUN_BYTES_PER_VOXEL = 10  # besides the stored bytes per voxel (1 for uint8, 4 for float32)
# The intercept: what a run's process holds besides the scan (Python, SimpleITK, torch or ONNX
# Runtime and the model). A check made before the model is loaded counts what is still to come.
RUN_PROCESS_BYTES = 360 << 20
_NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as 9223372036854771712
_MACOS_RECLAIMABLE = ("Pages free", "Pages inactive", "Pages speculative", "Pages purgeable")


def linux_available(meminfo_text: str) -> int | None:
    for line in meminfo_text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def macos_available(vm_stat_text: str) -> int | None:
    """Parse `vm_stat` output ("Mach Virtual Memory Statistics: (page size of 16384 bytes)")."""
    page = re.search(r"page size of (\d+) bytes", vm_stat_text)
    if not page:
        return None
    pages = 0
    found = False
    for line in vm_stat_text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in _MACOS_RECLAIMABLE:
            pages += int(value.strip().rstrip("."))
            found = True
    return pages * int(page.group(1)) if found else None


def windows_available() -> int | None:
    import ctypes

    class MEMORYSTATUSEX(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MEMORYSTATUSEX()
    status.dwLength = ctypes.sizeof(MEMORYSTATUSEX)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return int(status.ullAvailPhys)


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _probe(platform: str):
    """(bytes or None, source name) for one platform."""
    if platform.startswith("linux"):
        try:
            with open("/proc/meminfo") as handle:
                found = linux_available(handle.read())
            if found is not None:
                return found, "/proc/meminfo"
        except OSError:
            pass
    elif platform == "win32":
        try:
            found = windows_available()
            if found is not None:
                return found, "GlobalMemoryStatusEx"
        except (OSError, AttributeError):
            pass
    elif platform == "darwin":
        try:
            output = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=5, check=True).stdout
            found = macos_available(output)
            if found is not None:
                return found, "vm_stat"
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    found = _sysconf_available()
    return (found, "sysconf") if found is not None else (None, "none")


def run_peak_bytes(voxels: int, stored_bytes_per_voxel: int) -> int:
    """Memory one whole-head run of a scan of this many voxels needs at its peak, besides the
    process itself (measured, see RUN_BYTES_PER_VOXEL; `process_bytes_to_come` adds the rest)."""
    return int(voxels) * (int(stored_bytes_per_voxel) + RUN_BYTES_PER_VOXEL)


def resident_bytes(statm_path: str = "/proc/self/statm") -> int | None:
    """Memory this process holds now (Linux); None where that cannot be read."""
    try:
        with open(statm_path) as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def process_bytes_to_come() -> int:
    """What the process will still take for itself during a run (libraries and the model not
    loaded yet): RUN_PROCESS_BYTES less what it holds now; all of it where that is unknown."""
    held = resident_bytes()
    return max(0, RUN_PROCESS_BYTES - (held or 0))


# What the libraries say when an allocation fails (ITK, C++, ONNX Runtime, PyTorch on the CPU).
_OUT_OF_MEMORY_TEXT = ("Failed to allocate memory", "bad_alloc", "DefaultCPUAllocator: can't allocate memory",
                       "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for an error that means an allocation failed, whatever library raised it: callers
    turn it into `out_of_memory_message` instead of the library's text (under `ulimit -v`, ITK
    says "Failed to allocate memory for image", ONNX Runtime "Failed to allocate memory for
    requested buffer")."""
    return isinstance(error, MemoryError) or any(text in str(error) for text in _OUT_OF_MEMORY_TEXT)


def out_of_memory_message(name: str, doing: str = "segment") -> str:
    return (f"Not enough memory to {doing} {name}: this process may use {available_memory_bytes() / 2**30:.1f} GiB "
            f"now ({memory_source()}). Crop or downsample it first (or restrict it with a region of interest), free "
            "memory, or ask your job scheduler for more (e.g. SLURM --mem).")


# ----------------------------------------------------------------------------- limits of this process


def _read_number(path: str) -> int | None:
    """An integer from a cgroup file; None for "max", a missing or unreadable file."""
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    try:
        value = int(text.split()[0])
    except (ValueError, IndexError):
        return None  # "max": no limit
    return value if value < _NO_LIMIT else None


def _reclaimable(stat_path: str, keys: tuple[str, ...]) -> int:
    """File cache the kernel drops before it refuses memory (memory.stat inactive_file)."""
    try:
        with open(stat_path) as handle:
            fields = dict(line.split()[:2] for line in handle if len(line.split()) >= 2)
    except OSError:
        return 0
    for key in keys:
        if key in fields:
            try:
                return int(fields[key])
            except ValueError:
                pass
    return 0


def _cgroup_dirs(root: str, relative: str) -> list[str]:
    """The cgroup's folder and every folder above it up to `root` (each level's limit applies).
    Inside a container the path in /proc/self/cgroup may not exist under the mount; the mount
    itself (the container's own cgroup) is always included."""
    parts = [p for p in relative.strip("/").split("/") if p and p != ".."]
    dirs = [os.path.join(root, *parts[:n]) for n in range(len(parts), -1, -1)]
    return [d for d in dirs if os.path.isdir(d)]


def cgroup_available(cgroup_root: str = "/sys/fs/cgroup",
                     proc_cgroup: str = "/proc/self/cgroup") -> tuple[int | None, str]:
    """(bytes this process's cgroup still allows, source) or (None, "") without a cgroup limit.

    cgroup v2: memory.max minus memory.current; v1: memory.limit_in_bytes minus
    memory.usage_in_bytes; in both the reclaimable file cache (inactive_file) is not counted as
    used. The lowest figure over the cgroup and its ancestors. Paths are injectable for tests."""
    try:
        with open(proc_cgroup) as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = ["0::/"]
    best: tuple[int | None, str] = (None, "")
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _id, controllers, relative = fields
        if controllers == "":  # v2 (unified), on its own or beside v1 under unified/
            candidates = [(cgroup_root, "memory.max", "memory.current", ("inactive_file",), "cgroup v2 memory.max"),
                          (os.path.join(cgroup_root, "unified"), "memory.max", "memory.current", ("inactive_file",),
                           "cgroup v2 memory.max")]
        elif "memory" in controllers.split(","):
            candidates = [(os.path.join(cgroup_root, "memory"), "memory.limit_in_bytes", "memory.usage_in_bytes",
                           ("total_inactive_file", "inactive_file"), "cgroup v1 memory.limit_in_bytes")]
        else:
            continue
        for root, limit_name, usage_name, cache_keys, source in candidates:
            for folder in _cgroup_dirs(root, relative):
                limit = _read_number(os.path.join(folder, limit_name))
                if limit is None:
                    continue
                usage = _read_number(os.path.join(folder, usage_name)) or 0
                usage -= min(usage, _reclaimable(os.path.join(folder, "memory.stat"), cache_keys))
                left = max(limit - usage, 0)
                if best[0] is None or left < best[0]:
                    best = (left, source)
    return best


def address_space_available(status_path: str = "/proc/self/status") -> tuple[int | None, str]:
    """(bytes `ulimit -v` (RLIMIT_AS) still allows, source) or (None, "") without that limit:
    the limit minus the address space mapped now (VmSize). Beyond it every allocation fails."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError, AttributeError):
        return None, ""
    if soft in (resource.RLIM_INFINITY, -1) or soft <= 0:
        return None, ""
    mapped = 0
    try:
        with open(status_path) as handle:
            for line in handle:
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return max(int(soft) - mapped, 0), "ulimit -v (RLIMIT_AS)"


def _lowest(platform: str) -> tuple[int | None, str]:
    found, source = _probe(platform)
    limits = [(found, source)]
    if platform.startswith("linux"):
        limits += [cgroup_available(), address_space_available()]
    elif platform != "win32":
        limits.append(address_space_available())
    known = [(value, name) for value, name in limits if value is not None]
    return min(known, key=lambda pair: pair[0]) if known else (None, "none")


def memory_source(platform: str | None = None) -> str:
    """Which figure `available_memory_bytes` answers with: the platform's own ("/proc/meminfo",
    "vm_stat", ...) or a lower limit of this process ("cgroup v2 memory.max", "ulimit -v ...")."""
    return _lowest(platform or sys.platform)[1]


def available_memory_bytes(platform: str | None = None) -> int:
    """Bytes of memory this process can still get now: the lowest of the platform's available
    memory, the cgroup limit and the address-space limit; FALLBACK_BYTES (8 GiB) only when no
    method answers."""
    found, _source = _lowest(platform or sys.platform)
    return FALLBACK_BYTES if found is None else int(found)
