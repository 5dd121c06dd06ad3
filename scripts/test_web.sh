#!/usr/bin/env bash
# Browser tests of the web app (Testing/web) in .venv-web, with Debian's headless chromium.
# Extra arguments go to pytest. Screenshots: set LUNET_WEB_SCREENSHOTS=DIR to keep them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_web_env.sh --with-browser
exec .venv-web/bin/python -m pytest Testing/web "$@"
