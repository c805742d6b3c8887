#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (Python >= 3.10, root or sudo, no GPU needed).
# Installs the Debian packages the project needs, creates .venv and installs the project with
# its pinned dependencies (transformers 4.x in .venv, 5.x in the overlay directory
# .venv/overlays/transformers5 that tests/test_transformers_majors.py puts on PYTHONPATH).
# A second run touches neither apt nor pip:
#   - Debian: each package of DEBIAN_PACKAGES is asked of dpkg (`dpkg-query -W`), one at a
#     time, and apt runs only for those not installed (no pipes: nothing can race or SIGPIPE);
#   - Python: a stamp in .venv records a hash of pyproject.toml and of the pip steps below;
#     pip runs only when one of them changed (or .venv is new). Editing the Debian list does
#     not reinstall Python packages.
# `bash scripts/setup.sh --check` installs nothing: it prints what a run would do and exits 1
# when something is missing, 0 when everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the project needs (space-separated; add new ones here).
# asterisk-core-sounds-*: real recorded prompts for the ml_asr column (docs/DATA_ASTERISK.md)
DEBIAN_PACKAGES="espeak-ng flite libsndfile1 asterisk-core-sounds-es asterisk-core-sounds-es-wav asterisk-core-sounds-fr asterisk-core-sounds-fr-wav asterisk-core-sounds-it asterisk-core-sounds-it-wav asterisk-core-sounds-ru asterisk-core-sounds-ru-wav"

CHECK=0
case "${1:-}" in
  --check) CHECK=1 ;;
  "") ;;
  *) echo "usage: bash scripts/setup.sh [--check]" >&2; exit 2 ;;
esac

# Prints the packages of DEBIAN_PACKAGES that dpkg does not report as installed.
missing_debian_packages() {
  local pkg status
  for pkg in $DEBIAN_PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || status=""
    case "$status" in
      *" ok installed") ;;
      *) printf '%s ' "$pkg" ;;
    esac
  done
}

# pip prints one warning per package for index locations that do not exist on some machines;
# drop those lines and return pip's own exit status.
pipq() {
  local rc
  set +e
  "$@" 2>&1 | grep -v -e 'is ignored: it is neither a file nor a directory'
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

# The pip steps. Their text is part of the stamp: changing them reinstalls.
install_python_packages() {
  pipq .venv/bin/python -m pip install -q --upgrade pip
  # torch and torchaudio must match: torchaudio 2.11.1 (its newest release) asks for torch>=2.11
  # and runs on torch 2.14.1, the newest that pip takes on these machines (resample output equal
  # to 2.9.1's); PyPI serves the CUDA build, which also runs on CPU.
  pipq .venv/bin/python -m pip install -q "torch==2.14.1" "torchaudio==2.11.1"
  # The venv keeps transformers 4.x; pyproject accepts 5.x too, which goes in the overlay below.
  pipq .venv/bin/python -m pip install -q -e ".[dev]" "transformers<5"
  # transformers 5 for tests/test_transformers_majors.py, without a second venv: only the packages
  # whose 5.x needs differ from the venv's, put first on PYTHONPATH (5.23 needs Python 3.11;
  # 5.20.2 is the last for 3.10; both take these pins).
  rm -rf .venv/overlays/transformers5
  pipq .venv/bin/python -m pip install -q --no-deps --target .venv/overlays/transformers5 \
    "transformers==5.23.0; python_version >= '3.11'" "transformers==5.20.2; python_version < '3.11'" \
    "huggingface_hub==1.33.0" "tokenizers==0.23.3" "httpx==0.29.0" "httpcore==1.0.9" "h11==0.16.0" \
    "anyio==4.16.0"
}

todo=0
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "[setup] dpkg-query not found (not a Debian system): install $DEBIAN_PACKAGES yourself" >&2
else
  missing=$(missing_debian_packages)
  if [ -n "$missing" ]; then
    todo=1
    if [ "$CHECK" = 1 ]; then
      echo "[setup] would install Debian packages: $missing"
    else
      SUDO=""
      if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
      echo "[setup] installing Debian packages: $missing"
      $SUDO apt-get update -qq
      # shellcheck disable=SC2086  # word splitting of the package list is intended
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    fi
  fi
fi

stamp=.venv/.setup-stamp
want=$( { cat pyproject.toml; declare -f install_python_packages pipq; } | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  todo=1
  if [ "$CHECK" = 1 ]; then
    echo "[setup] would create .venv"
  else
    echo "[setup] creating .venv"
    "${PYTHON:-python3}" -m venv .venv
    rm -f "$stamp"
  fi
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  todo=1
  if [ "$CHECK" = 1 ]; then
    echo "[setup] would install Python packages into .venv (stamp $stamp is missing or stale)"
  else
    echo "[setup] installing Python packages into .venv (first run: a few minutes, torch is large)"
    install_python_packages
    echo "$want" > "$stamp"
  fi
fi

if [ "$CHECK" = 1 ]; then
  [ "$todo" = 0 ] && echo "[setup] everything is in place"
  exit "$todo"
fi
