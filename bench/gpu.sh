#!/usr/bin/env bash
# Every GPU-bound measurement in one call (about 8 minutes on one H200), for a lent GPU machine:
#   bash bench/gpu.sh [OUT_DIR]
# Prints, each measured side by side in the same run: stage one (extract ÷ max(forward, write of
# the same bytes); trim ÷ pad30), the loader (loader ÷ raw read, per tier), cached ÷ on-the-fly
# epochs, the 8-bit encodings (extraction and epoch time per encoding), and packing (K=8 packed
# runs ÷ 8 runs one after the other, ER and ASR heads). Each step has its own time limit so one
# slow step cannot eat the others'; the logs go to OUT_DIR (default $OUT, else /tmp/gpu-bench).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu-bench}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
py=${PYTHON:-python3}
step() {  # step NAME SECONDS CMD...: run with a limit, keep the log, never stop the script
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | tail -25
  echo "=== $name exit ${PIPESTATUS[0]}"
}
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee "$out/gpu.txt"
step extract 120 $py bench/bench_extract.py --device cuda --model whisper_base --clips 48
step loader 60 $py bench/bench_loader.py --device cuda --mb 2000
step epoch 90 $py bench/bench_epoch.py --device cuda --utts 64 --interface hconv
step tiers 120 $py bench/bench_tiers.py --device cuda --utts 64
step pack 120 $py bench/bench_pack.py --device cuda --tasks er,asr --utts 64 --dim 768
echo "logs in $out"
