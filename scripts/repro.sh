#!/usr/bin/env bash
# The main job: sets everything up on a fresh machine, then runs the DVC pipeline
# (by default the built-in offline suite with three offline upstreams; see params.yaml):
#   1. `dvc repro extract`: synthesis (or import) and every feature store
#   2. `pipeline grid`: every training run, concurrently: one slot per GPU, else one per core
#      (each finished run is recorded in dvc.lock, so DVC sees it up to date)
#   3. `dvc repro`: what is left (the layer analysis and the report)
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
dvc repro
echo "[repro] dvc repro (the rest) took $((SECONDS - t2)) s; all stages $((SECONDS - t0)) s"
echo
echo "Results: results/table.md, results/languages.md, results/*.png  (dvc metrics show / dvc plots show)"
