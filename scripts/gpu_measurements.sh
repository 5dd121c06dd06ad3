#!/usr/bin/env bash
# Issue 26's measurements, one part per call of a lent GPU (scripts/stage_gpu_inputs.sh first, here):
#
#   throughput  carry .gpu/site.tar.xz .gpu/scans; about 4 minutes.
#               The whole-head path with the network batched over subjects on the GPU, against the
#               BIDS App's CPU-only cluster on the same machine (benchmarks/cohort.py), and the
#               desktop module's Apply through its worker on the GPU and on the CPU
#               (benchmarks/module_apply.py; no slicer-core there, so the worker's part).
#   findings    carry .gpu/cache.npz .gpu/pf_state; stops itself at BUDGET_S (default 480 s).
#               experiments/paper_findings.py trained to convergence, resumed from .gpu/pf_state;
#               returns its state as $OUT/pf_state.tar.xz.* (put them in .gpu/pf_state, replacing
#               the old parts) and call again until $OUT/paper_findings.json has "complete": true;
#               then, here, copy it to docs/results/ and run python experiments/results_page.py.
#
# DEVICE=cpu runs either part on a machine without a GPU (a rehearsal: the figures mean nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:?usage: gpu_measurements.sh throughput|findings}
device=${DEVICE:-cuda}
out=${OUT:-runs/gpu_measurements}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/LUnetSegmentation
python=${PYTHON:-python3}
[ "$device" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# The convergence rule of issue 26, as in docs/RESULTS.md's GPU command (a test keeps them equal).
FINDINGS_ARGS=${FINDINGS_ARGS:-"--epochs 600 --patience 50 --min-epochs 200 --validate-every 5 --finetune-epochs 40 --prune-steps 4 --batch-size 32"}

case $part in
throughput)
  site=$(mktemp -d)
  tar -xJf .gpu/site.tar.xz -C "$site" || exit 1
  export PYTHONPATH=$PYTHONPATH:$site
  scans=".gpu/scans/fs_norm/norm.nii.gz .gpu/scans/colin27/ch2.nii.gz"
  SCANS=${SCANS:-512}
  $python benchmarks/cohort.py --batched --device "$device" --data .gpu/scans --scans "$SCANS" --batch 64 --workers "${WORKERS:-15}" \
    --check 4 --out "$out/cohort_batched_$device.json" || exit 1
  $python benchmarks/cohort.py --data .gpu/scans --scans $(( SCANS / 4 )) --workers "${WORKERS:-15}" --device cpu \
    --out "$out/cohort_cpu_gpu_machine.json" || exit 1
  $python benchmarks/module_apply.py --parent files --device "$device" --repeat 5 --scans $scans \
    --out "$out/module_apply_$device.json" || exit 1
  [ "$device" = cpu ] || $python benchmarks/module_apply.py --parent files --device cpu --repeat 5 --scans $scans \
    --out "$out/module_apply_cpu_gpu_machine.json" || exit 1
  ;;
findings)
  mkdir -p runs
  if ls .gpu/pf_state/pf_state.tar.xz.* > /dev/null 2>&1; then
    rm -rf runs/pf_converged
    cat .gpu/pf_state/pf_state.tar.xz.* | tar -xJf - -C runs || exit 1
  fi
  # TERM to the whole process group (timeout signals it, the seeds' children included); every
  # training's checkpoint is written by rename, so a stop leaves the last one whole.
  timeout -s TERM "${BUDGET_S:-480}" $python experiments/paper_findings.py --data .gpu/cache.npz --work runs/pf_converged \
    $FINDINGS_ARGS --device "$device" --jobs 3 --page "" --plot "" --results runs/pf_converged/paper_findings.json
  status=$?  # the results name a path in the repository, never the machine's $OUT
  [ -f runs/pf_converged/paper_findings.json ] && cp runs/pf_converged/paper_findings.json "$out/"
  # Small enough to come back: a finished training keeps only last.pt (pruning starts from it).
  find runs/pf_converged -name best.pt -delete
  for folder in runs/pf_converged/*/; do [ -f "$folder/summary.json" ] && rm -f "$folder/checkpoint.pt"; done
  tar -cf - -C runs pf_converged | xz -1 -T0 | split -b 15M - "$out/pf_state.tar.xz."
  ls -la "$out"
  case $status in
    0) echo "paper findings complete: $out/paper_findings.json" ;;
    124) echo "stopped at the budget; call again with the returned state to continue" ;;
    *) echo "paper_findings.py failed (exit $status)"; exit $status ;;
  esac
  ;;
*) echo "unknown part: $part (throughput or findings)" >&2; exit 2 ;;
esac
