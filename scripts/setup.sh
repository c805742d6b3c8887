#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (Python >= 3.10, root or sudo, no GPU needed).
# Installs the Debian packages the project needs (eSpeak NG, libsndfile), creates .venv and
# installs the project with its pinned dependencies. Re-running is cheap: a stamp file records
# what was installed, and only a change to pyproject.toml or this script triggers pip again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

if ! command -v espeak-ng >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q libsndfile; then
  echo "[setup] installing Debian packages: espeak-ng libsndfile1"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng libsndfile1 >/dev/null
fi

# pip prints one warning per package for index locations that do not exist on some machines.
pipq() {
  local rc=0
  "$@" 2>&1 | grep -v -e 'is ignored: it is neither a file nor a directory' || true
  rc=${PIPESTATUS[0]}
  return "$rc"
}

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi

stamp=.venv/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python packages into .venv (first run: a few minutes, torch is large)"
  pipq .venv/bin/python -m pip install -q --upgrade pip
  # torch and torchaudio must match: 2.9.1 is the newest pair whose torchaudio still ships the
  # functional API we use; PyPI serves the CUDA build, which also runs on CPU.
  pipq .venv/bin/python -m pip install -q "torch==2.9.1" "torchaudio==2.9.1"
  pipq .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
