#!/usr/bin/env bash
# Train several candidate configs side by side on one GPU within a time budget, then pack the
# results (weights, histories, summaries) into $OUT/candidates.tar.gz. Used on a lent GPU:
#   bash scripts/train_candidates.sh CACHE.npz MINUTES configs/a.json configs/b.json ...
# The GPU machine has torch and numpy but not SimpleITK, hence the preprocessed cache.
set -u
cache=$1; minutes=$2; shift 2
out=${OUT:-runs}/candidates
mkdir -p "$out"
export PYTHONPATH=$PWD/LUnetSegmentation PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
pids=()
for config in "$@"; do
  name=$(basename "$config" .json)
  # A hard stop a little after the budget, so the packing below always runs: the device
  # machine returns at most 8 files, and nothing at all of a command killed at its limit
  # except what is already under $OUT.
  timeout "$(python3 -c "print(int($minutes * 60 + 60))")" \
    python3 -m LUnetSegmentationLib train --data "$cache" --config "$config" --out "$out/$name" \
      --device cuda --time-budget "$minutes" --quiet > "$out/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for config in "$@"; do name=$(basename "$config" .json); echo "== $name"; tail -3 "$out/$name.log"; done
rm -f "$out"/*/checkpoint.pt "$out"/*/cache.npz
tar -C "${OUT:-runs}" -czf "${OUT:-runs}/candidates.tar.gz" candidates
ls -la "${OUT:-runs}"
