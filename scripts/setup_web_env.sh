#!/usr/bin/env bash
# Create or update the optional web environment in .venv-web from requirements-web.txt, and
# make sure Debian's headless chromium and its driver are there for the browser tests.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv-web/bin/python ]; then
  "$python" -m venv .venv-web
fi
stamp=.venv-web/.requirements.sha256
wanted=$(cat requirements-web.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv-web/bin/python -m pip install --quiet --upgrade pip
  .venv-web/bin/python -m pip install --quiet -r requirements-web.txt
  .venv-web/bin/python -m pip install --quiet --no-deps -e .
  echo "$wanted" > "$stamp"
fi
if [ "${1:-}" = "--with-browser" ] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may still be running its own apt job: wait for the lock, retry once.
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null || { sleep 20; apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null; }
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium chromium-driver >/dev/null
  else
    echo "The browser tests need Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
