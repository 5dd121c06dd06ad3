"""Which torch the module installs (issue 13 item 3): floor 2.3 (NumPy 2 builds); Intel Macs
(torch 2.2.2 at most) accepted under NumPy 1 and refused with a clear message under NumPy 2."""
from __future__ import annotations

import pytest

from LUnetSegmentationLib.slicer_adapter.dependencies import DependencyError, check_torch_version, torch_requirement, version_tuple


def test_floor_is_23_where_wheels_exist():
    for system, machine in (("Linux", "x86_64"), ("Windows", "AMD64"), ("Darwin", "arm64")):
        assert torch_requirement(system, machine, numpy_version="2.4.6") == ">=2.3"


def test_intel_mac_uses_222_with_numpy_1():
    assert torch_requirement("Darwin", "x86_64", numpy_version="1.26.4") == ">=2.2"
    check_torch_version("2.2.2", ">=2.2", numpy_version="1.26.4")


def test_intel_mac_with_numpy_2_is_refused_with_what_to_do():
    with pytest.raises(DependencyError, match="NumPy 2.0.2.*Slicer 5.8"):
        torch_requirement("Darwin", "x86_64", numpy_version="2.0.2")


def test_old_torch_is_refused_under_numpy_2():
    with pytest.raises(DependencyError, match=r"2\.1\.2\+cu121 is too old.*PyTorch Utils"):
        check_torch_version("2.1.2+cu121", ">=2.3", numpy_version="2.0.2")
    check_torch_version("2.3.0+cpu", ">=2.3", numpy_version="2.4.6")
    check_torch_version("2.13.0", ">=2.3", numpy_version="2.4.6")
    assert version_tuple("2.10.0a0+git") == (2, 10, 0)


def test_torch_21_and_22_are_accepted_under_numpy_1():
    # Issue 23 item 12: on Slicer 5.8 (NumPy 1.26.4) torch 2.1-2.2 works; users who have it are
    # not told to upgrade. 2.0 is still refused.
    for version in ("2.1.2+cu121", "2.2.2"):
        check_torch_version(version, ">=2.3", numpy_version="1.26.4")
    with pytest.raises(DependencyError, match="2.0.1 is too old"):
        check_torch_version("2.0.1", ">=2.3", numpy_version="1.26.4")


def test_installed_versions_are_read_without_importing():
    from LUnetSegmentationLib.slicer_adapter.dependencies import installed_version

    assert installed_version("numpy") is not None
    assert installed_version("surely-not-installed-lunet") is None
