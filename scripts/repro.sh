#!/usr/bin/env bash
# The main job: sets everything up on a fresh machine, then runs the DVC pipeline
# (by default the built-in offline suite with three offline upstreams; see params.yaml):
#   1. `dvc repro extract`: synthesis (or import) and every feature store
#   2. `pipeline grid`: every training run, concurrently: one slot per GPU, else one per core
#      (each finished run is recorded in dvc.lock, so DVC sees it up to date)
#   3. `dvc repro --single-item analyze report`: what is left, the layer analysis and the report
#      (a plain `dvc repro` would do the same but first re-check every stage above, 145 in the
#      default experiment: 2 minutes of DVC reading params.yaml on 2 cores; afterwards it finds
#      nothing to do)
# Extra arguments go to `pipeline grid` (e.g. --jobs 4, --cluster tcp://HOST:8786).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[repro] set-up took ${SECONDS} s"
export PATH="$PWD/.venv/bin:$PATH"
t0=$SECONDS
dvc repro extract
echo "[repro] data and stores took $((SECONDS - t0)) s"
t1=$SECONDS
pipeline grid "$@"
echo "[repro] training took $((SECONDS - t1)) s"
t2=$SECONDS
dvc repro --single-item analyze report
echo "[repro] analysis and report took $((SECONDS - t2)) s; all stages $((SECONDS - t0)) s"
echo
echo "Results: results/table.md, results/languages.md, results/*.png  (dvc metrics show / dvc plots show)"
