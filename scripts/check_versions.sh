#!/usr/bin/env bash
# Version safety of what the extension ships, checked rather than hoped for (issue 13):
#   1. vermin: no syntax or standard-library API newer than Python 3.9 (Slicer 5.8's Python) in
#      the files the extension ships (LUnetSegmentation/CMakeLists.txt: no training code, BIDS App
#      or web app, which run in .venv).
#   2. the torch-free core tests under the Python/NumPy pairs Slicer bundles:
#        Slicer 5.8  -> CPython 3.9  + NumPy 1.26.4
#        Slicer 5.10 -> CPython 3.12 + NumPy 2.0.2
#        Slicer 5.12 -> CPython 3.12 + NumPy 2.4.6
#      in small venvs with SimpleITK, nibabel and pytest only: no torch, no slicer-core, so these
#      tests also prove the core's light paths never import them.
# Interpreters come from pyenv (PYENV_ROOT, default /root/.pyenv). Venvs are cached under
# LUNET_VERSION_VENVS (default /tmp/lunet-version-venvs, outside the repository) and rebuilt
# only when this script's pins change; first build ~2 min, later runs ~30 s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PYENV_ROOT=${PYENV_ROOT:-/root/.pyenv}
VENVS=${LUNET_VERSION_VENVS:-/tmp/lunet-version-venvs}
mkdir -p "$VENVS"

# Test files that need neither torch nor slicer-core (each imports only the light core).
TORCH_FREE_TESTS=(
  Testing/test_versions_core.py
  Testing/test_desktop_dependencies.py
  Testing/test_desktop_protocol.py
  Testing/test_desktop_worker.py
  Testing/test_desktop_memory.py
  Testing/test_resample.py
  Testing/test_localize.py
)

python_for() {
  local path="$PYENV_ROOT/versions/$1/bin/python"
  if [ ! -x "$path" ]; then
    echo "check_versions: Python $1 is not installed under $PYENV_ROOT (run: pyenv install $1)" >&2
    exit 2
  fi
  echo "$path"
}

# make_venv NAME PYTHON_VERSION PIP_REQUIREMENTS...: a cached venv, rebuilt when the pins change.
make_venv() {
  local name=$1 version=$2
  shift 2
  local dir="$VENVS/$name" stamp="$version $*"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
    return
  fi
  rm -rf "$dir"
  "$(python_for "$version")" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true
  echo "$stamp" >"$dir/.stamp"
}

# 1. Static check with vermin over the shipped files.
make_venv vermin 3.12.1 vermin==1.9.2
# What ships is what the module's CMakeLists.txt lists (Testing/test_extension_files.py keeps that
# list equal to the files on disk, and training/, apps/bids/ and apps/web/ out of it).
shipped=()
for file in $(sed -n 's|^ *\${MODULE_NAME}\(.*\.py\)$|LUnetSegmentation/LUnetSegmentation\1|p' LUnetSegmentation/CMakeLists.txt); do
  shipped+=("$file")
done
status=0
echo "check_versions: vermin -t=3.9- over ${#shipped[@]} shipped files"
"$VENVS/vermin/bin/vermin" -q -t=3.9- --no-tips --violations --eval-annotations "${shipped[@]}" || status=1

# 2. The torch-free tests under each Python/NumPy pair Slicer ships.
COMMON=(SimpleITK==2.4.1 nibabel==5.3.2 pytest==8.3.4)
for pair in "py39-np1 3.9.18 numpy==1.26.4" "py312-np20 3.12.1 numpy==2.0.2" "py312-np24 3.12.1 numpy==2.4.6"; do
  read -r name version numpy <<<"$pair"
  make_venv "$name" "$version" "$numpy" "${COMMON[@]}"
  echo "check_versions: $name ($("$VENVS/$name/bin/python" -c 'import sys, numpy; print("Python", sys.version.split()[0], "NumPy", numpy.__version__)'))"
  if "$VENVS/$name/bin/python" -c "import torch" 2>/dev/null || "$VENVS/$name/bin/python" -c "import slicer" 2>/dev/null; then
    echo "check_versions: $name must not have torch or slicer-core" >&2
    exit 2
  fi
  PYTHONPATH=LUnetSegmentation:scripts QT_QPA_PLATFORM=offscreen \
    "$VENVS/$name/bin/python" -m pytest -q -p no:cacheprovider -p torchfree_pytest_plugin "${TORCH_FREE_TESTS[@]}" || status=1
done
exit $status
