"""`python -m LUnetSegmentationLib serve`: loopback by default, a warning for anything else."""
from __future__ import annotations

import pytest

from LUnetSegmentationLib import cli
from LUnetSegmentationLib.web import app


@pytest.fixture
def started(monkeypatch):
    calls = []
    monkeypatch.setattr(app, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def test_default_is_loopback_without_warning(started, capsys):
    assert cli.main(["serve", "scan.nii.gz", "--port", "8123"]) == 0
    (files,), options = started[0]
    assert files == ["scan.nii.gz"] and options["host"] == "127.0.0.1" and options["port"] == 8123
    assert "WARNING" not in capsys.readouterr().err


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "::1"])
def test_other_loopback_addresses_need_no_warning(started, capsys, host):
    assert cli.main(["serve", "--host", host]) == 0
    assert "WARNING" not in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "myserver.example"])
def test_binding_elsewhere_warns(started, capsys, host):
    assert cli.main(["serve", "--host", host]) == 0
    error = capsys.readouterr().err
    assert "WARNING" in error and host in error and "no login" in error
    assert started[0][1]["host"] == host
