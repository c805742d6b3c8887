#!/usr/bin/env bash
# The main job: sets everything up on a fresh machine, then runs the DVC pipeline
# (by default the built-in offline suite with the two offline Whisper models; see params.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[repro] set-up took ${SECONDS} s"
export PATH="$PWD/.venv/bin:$PATH"
t0=$SECONDS
dvc repro "$@"
echo "[repro] dvc repro took $((SECONDS - t0)) s"
echo
echo "Results: results/table.md, results/languages.md, results/*.png  (dvc metrics show / dvc plots show)"
