#!/usr/bin/env bash
# The README's test command: set up .venv and run the main suite, then set up .venv-web (and
# Debian's chromium) and run the browser tests of the web app. Extra arguments go to the main
# pytest run, e.g. `bash scripts/test.sh -m "not slow"`; LUNET_SKIP_WEB=1 skips the browser part
# (for a quick local run; CI always runs it). scripts/check_versions.sh then checks Python 3.9/3.12
# and NumPy 1/2 compatibility of what the extension ships.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# dciodvfy (Debian's dicom3tools) validates the DICOM SEG files in Testing/test_dicom.py.
if ! command -v dciodvfy >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may still be running its own apt job: wait for the lock, retry once.
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null || { sleep 20; apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null; }
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends dicom3tools >/dev/null
  else
    echo "The DICOM SEG tests validate with dciodvfy: sudo apt-get install dicom3tools (they skip without it outside CI)" >&2
  fi
fi
export QT_QPA_PLATFORM=offscreen
.venv/bin/python -m pytest Testing --ignore=Testing/web "$@"
# What the extension ships, under the Python/NumPy pairs of Slicer 5.8, 5.10 and 5.12 (pyenv's
# 3.9 and 3.12) plus a static Python 3.9 check; LUNET_SKIP_VERSIONS=1 skips it locally.
if [ "${LUNET_SKIP_VERSIONS:-0}" != 1 ]; then
  bash scripts/check_versions.sh
fi
if [ "${LUNET_SKIP_WEB:-0}" != 1 ]; then
  bash scripts/test_web.sh -q
fi
