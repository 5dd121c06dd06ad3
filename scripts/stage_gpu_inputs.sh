#!/usr/bin/env bash
# Here, before a lent GPU's calls for issue 26: put what the device machine lacks under .gpu/
# (ignored), sized to travel (64 MiB a call with the ~9 MB working tree). Then, there:
#   bash scripts/gpu_measurements.sh throughput   carry .gpu/site.tar.xz .gpu/scans   (~4 min)
#   bash scripts/gpu_measurements.sh findings     carry .gpu/cache.npz .gpu/pf_state  (each call resumes)
# The device has Python 3.12 with torch, numpy, scipy, psutil and onnxruntime, but not SimpleITK,
# nibabel or Dask (the device tool's KINDS.md). Their wheels, zip-compressed, are 60 MB: with the
# tree they would not fit, so they are installed here for cp312 x86-64 and xz-compressed (34 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LUNET_DATA:-../shared/data}
mkdir -p .gpu

if [ ! -s .gpu/site.tar.xz ]; then
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$tmp/wheels" \
    SimpleITK==2.5.7 nibabel==5.4.2 dask==2026.8.0 distributed==2026.8.0 \
    tornado==6.6.1 tblib==3.2.2 zict==3.0.0 partd==1.4.2 locket==1.0.0
  python3 -m pip install -q --no-deps --no-compile --target "$tmp/site" "$tmp"/wheels/*.whl
  tar -cJf .gpu/site.tar.xz.partial -C "$tmp/site" . && mv .gpu/site.tar.xz.partial .gpu/site.tar.xz
  rm -rf "$tmp"
fi

# Four of the shared whole-head T1s (7.6 MB), in benchmarks/cohort.py's folder layout; the
# cohort cycles through them, so any number of scans can be asked for.
for scan in fs_norm/norm.nii.gz colin27/ch2.nii.gz hippodeep_example/example_brain_t1_1p75mm.nii.gz \
            hippodeep_example/example_brain_t1_oblique.nii.gz; do
  mkdir -p ".gpu/scans/$(dirname "$scan")"
  install -m 644 "$DATA/wholebrain/$scan" ".gpu/scans/$scan"
done

# The 208 Decathlon crops, preprocessed (14.6 MB): paper_findings.py needs torch and numpy only.
if [ ! -s .gpu/cache.npz ]; then
  PYTHONPATH=LUnetSegmentation .venv/bin/python -c "
from LUnetSegmentationLib.runtime.preprocess import PreprocessingConfig
from LUnetSegmentationLib.training.data import build_cache
build_cache('$DATA/Task04_Hippocampus', '.gpu/cache.npz', PreprocessingConfig())"
fi
mkdir -p .gpu/pf_state  # parts of the findings' resumable state, as a call returns them

tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
for call in "throughput .gpu/site.tar.xz .gpu/scans" "findings .gpu/cache.npz .gpu/pf_state"; do
  set -- $call
  name=$1; shift
  bytes=$(( tree + $(du -cb "$@" | tail -1 | cut -f1) ))
  echo "$name: $(( bytes / 1048576 )) MiB with the tree (limit 64)"
  [ "$bytes" -lt $(( 62 * 1048576 )) ] || { echo "too large to travel: $name" >&2; exit 1; }
done
