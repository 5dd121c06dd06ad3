"""`python -m LUnetSegmentationLib serve`: loopback by default, a warning for anything else."""
from __future__ import annotations

import pytest

from LUnetSegmentationLib.apps import cli
from LUnetSegmentationLib.apps.web import app


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


def _status(url: str, headers: dict) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_pages_of_other_sites_are_refused(start_server):
    """Loopback keeps other machines out; this keeps other web sites in the user's browser out
    (a cross-origin WebSocket, or a DNS-rebinding page whose Host is its own domain)."""
    server = start_server()
    own = f"127.0.0.1:{server.port}"
    assert _status(server.url, {}) == 200
    assert _status(server.url, {"Origin": f"http://{own}"}) == 200
    assert _status(server.url, {"Origin": "http://evil.example"}) == 403
    assert _status(server.url + "ws", {"Origin": "http://evil.example", "Connection": "Upgrade",
                                       "Upgrade": "websocket"}) == 403
    assert _status(server.url, {"Host": f"evil.example:{server.port}"}) == 403
    assert _status(server.url, {"Host": f"localhost:{server.port}", "Origin": f"http://localhost:{server.port}"}) == 200


def test_server_waits_for_the_user_and_ignores_our_argv(monkeypatch):
    """wslink's default would shut a server down after 5 minutes without a browser (say, while
    the user sets up an SSH tunnel); and trame must not re-read our command line as its own."""
    import sys

    from trame_server import Server

    captured = {}
    monkeypatch.setattr(Server, "start", lambda self, **options: captured.update(options, argv=list(sys.argv)))
    monkeypatch.setattr(sys, "argv", ["lunet", "serve", "--host", "0.0.0.0", "scan.nii.gz"])
    app.serve([], host="127.0.0.1", port=8124)
    assert captured["timeout"] == 0
    assert (captured["host"], captured["port"]) == ("127.0.0.1", 8124)
    assert captured["argv"] == ["lunet"]
