"""Browser fixtures: the web app as a real server on loopback, driven by Debian's headless chromium.

Runs in the web environment only (`bash scripts/test_web.sh`); the main suite ignores this
folder. Screenshots go to $LUNET_WEB_SCREENSHOTS if set, else into each test's tmp_path.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from lunet_test_helpers import data_folder

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("LUNET_DATA", REPO.parent / "shared" / "data"))


# The browser tests exist to open real MRI: without the data they fail (the main suite's
# fixtures of the same names skip instead), so a green run always means they ran.
@pytest.fixture(scope="session")
def hippocampus_dir() -> Path:
    return data_folder(DATA, "Task04_Hippocampus", "imagesTr", missing=pytest.fail)


@pytest.fixture(scope="session")
def wholebrain_dir() -> Path:
    return data_folder(DATA, "wholebrain", missing=pytest.fail)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python -m LUnetSegmentationLib serve ...` in a child process, its log in a file."""

    def __init__(self, args: list[str], log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(REPO / "LUnetSegmentation"), OMP_NUM_THREADS="2")
        command = [sys.executable, "-m", "LUnetSegmentationLib", "serve", "--port", str(self.port), *args]
        self.process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the server did not answer within 90 s:\n{log.read_text()[-3000:]}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(*args: str) -> Server:
        server = Server([str(a) for a in args], tmp_path / f"server{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def downloads(tmp_path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are needed: bash scripts/setup_web_env.sh --with-browser")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--window-size=1400,900"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def screenshots(tmp_path, request) -> Path:
    folder = Path(os.environ.get("LUNET_WEB_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
