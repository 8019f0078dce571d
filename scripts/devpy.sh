#!/usr/bin/env bash
# Build the C++ library, the CLI and the Python extension into a private build folder and run
# a command with that build first on PYTHONPATH and PATH, without reinstalling the package:
#   scripts/devpy.sh build-mine .venv/bin/python -m pytest -q tests/python/test_native_linear.py
# Several people (or helpers) can work side by side, each with their own folder.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:?usage: scripts/devpy.sh BUILD_DIR command...}
shift
PY=${PY:-.venv/bin/python}
if [ ! -f "$B/build.ninja" ]; then
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVITRIFY_BUILD_PYTHON=ON \
    -DVITRIFY_BUILD_TESTS=OFF -DVITRIFY_BUILD_TOOLS=ON -DVITRIFY_INSTALL=OFF \
    -DPython_EXECUTABLE="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" > "$B.configure.log" 2>&1 || { cat "$B.configure.log"; exit 1; }
fi
cmake --build "$B" -j "${JOBS:-2}" >&2
mkdir -p "$B/py/vitrify"
for f in python/vitrify/*; do ln -sfn "$(realpath "$f")" "$B/py/vitrify/$(basename "$f")"; done
so=$(find "$B/python" -maxdepth 1 -name '_core*.so' | head -n1)
ln -sfn "$(realpath "$so")" "$B/py/vitrify/$(basename "$so")"
export PYTHONPATH="$(realpath "$B/py")${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$(realpath "$B/tools/vitrify"):$PATH"
exec "$@"
