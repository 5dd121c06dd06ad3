"""Memory the operating system can give this process now, on Linux, Windows and macOS, with the
standard library only (psutil is not bundled with Slicer).

    Linux    /proc/meminfo MemAvailable (free plus reclaimable page cache)
    Windows  GlobalMemoryStatusEx (kernel32, through ctypes): ullAvailPhys
    macOS    `vm_stat`: free + inactive + speculative + purgeable pages (what macOS reclaims
             without swapping), times its page size
    other    os.sysconf SC_AVPHYS_PAGES x SC_PAGE_SIZE where the platform has them

`available_memory_bytes()` falls back to a fixed guess only when none of these answers, and
`memory_source()` says which one answered (for messages and tests). Used by the engine's
memory check, the volume reader's header check and the MRML adapter's voxel copy.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

FALLBACK_BYTES = 8 << 30
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


def memory_source(platform: str | None = None) -> str:
    return _probe(platform or sys.platform)[1]


def available_memory_bytes(platform: str | None = None) -> int:
    """Bytes of memory available now; FALLBACK_BYTES (8 GiB) only when no method answers."""
    found, _source = _probe(platform or sys.platform)
    return FALLBACK_BYTES if found is None else int(found)
