#!/usr/bin/env bash
# The README's test command: set up .venv and run the main suite, then set up .venv-web (and
# Debian's chromium) and run the browser tests of the web app. Extra arguments go to the main
# pytest run, e.g. `bash scripts/test.sh -m "not slow"`; LUNET_SKIP_WEB=1 skips the browser part
# (for a quick local run; CI always runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export QT_QPA_PLATFORM=offscreen
.venv/bin/python -m pytest Testing --ignore=Testing/web "$@"
if [ "${LUNET_SKIP_WEB:-0}" != 1 ]; then
  bash scripts/test_web.sh -q
fi
