#!/usr/bin/env bash
# Install everything vitrify needs on a fresh Debian machine: system packages (apt-get) and a
# Python virtual environment (.venv) with the PyPI packages. Idempotent: does nothing that is
# already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libzstd-dev libxxhash-dev libsimdjson-dev libssl-dev
  libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcsv-dev                 # RFC 4180 CSV reader of `vitrify predict`
  zlib1g-dev libbz2-dev liblzma-dev liblz4-dev   # joblib compressed files (src/legacy)
  libminizip-dev libarchive-dev                  # PyTorch zip / legacy tar checkpoints, .npz
  time                       # GNU time: peak memory of fresh processes in bench/bench_native.py
  python3-venv python3-dev
  clang libclang-rt-14-dev   # libFuzzer + sanitizer runtimes for `make fuzz` (CI runs it)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# python3-venv / python3-dev are only needed when the interpreter lacks venv or headers.
if python3 -c 'import venv, sysconfig, os; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in python3-venv|python3-dev) ;; *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
# cmake from pip counts too.
if command -v cmake >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]+"${missing[@]}"}"; do [ "$p" = cmake ] || filtered+=("$p"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV"
fi
STAMP="$VENV/.requirements-stamp"
if [ ! -f "$STAMP" ] || [ requirements-dev.txt -nt "$STAMP" ]; then
  echo "setup: installing Python packages into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
  touch "$STAMP"
fi
