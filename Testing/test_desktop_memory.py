"""Available memory on every OS without psutil (issue 13 item 10). Torch-free: also run under
Python 3.9 / 3.12 by scripts/check_versions.sh."""
from __future__ import annotations

import sys

import pytest

from LUnetSegmentationLib.runtime import memory

VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12000.
Pages active:                            300000.
Pages inactive:                           20000.
Pages speculative:                         3000.
Pages throttled:                              0.
Pages wired down:                         90000.
Pages purgeable:                           1000.
"""


def test_macos_vm_stat_counts_reclaimable_pages():
    assert memory.macos_available(VM_STAT) == (12000 + 20000 + 3000 + 1000) * 16384
    assert memory.macos_available("no header here") is None


def test_linux_meminfo_uses_memavailable():
    text = "MemTotal:       16000000 kB\nMemFree:          500000 kB\nMemAvailable:    9000000 kB\n"
    assert memory.linux_available(text) == 9000000 * 1024
    assert memory.linux_available("MemTotal: 1 kB\n") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/meminfo")
def test_this_machine_answers_without_the_fallback():
    assert memory.memory_source() == "/proc/meminfo"
    with open("/proc/meminfo") as handle:
        expected = memory.linux_available(handle.read())
    # Free memory moves while the test runs: same order of magnitude, not the 8 GiB guess.
    assert abs(memory.available_memory_bytes() - expected) < max(expected // 4, 1 << 28)


def test_windows_path_fails_soft_where_there_is_no_kernel32():
    if sys.platform == "win32":
        assert memory.windows_available() > 0
    else:
        # ctypes.windll does not exist here: the probe must fall through to sysconf, not raise.
        found, source = memory._probe("win32")
        assert source in ("sysconf", "none")


def test_macos_path_fails_soft_without_vm_stat():
    if sys.platform == "darwin":
        assert memory.memory_source() == "vm_stat"
    else:
        found, source = memory._probe("darwin")
        assert source in ("sysconf", "none")
