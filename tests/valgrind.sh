#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the C++ tests without sanitizers and runs them under valgrind memcheck: any invalid read or
# write, use of uninitialised memory or definite leak fails. Usage: tests/valgrind.sh [build-dir]
# (needs valgrind; cmake/ninja/Eigen as for tests/sanitize.sh, from the active Python environment)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/valgrind}
PY=${PYTHON:-python}
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }
BIN=$("$PY" -c "import sysconfig; print(sysconfig.get_path('scripts'))")
export PATH="$BIN:$PATH"

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGATECELL_BUILD_TESTS=ON \
  -DGATECELL_BUILD_PYTHON=OFF -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build "$BUILD" -j 2 --target gatecell_sanitize_kernels
# One OpenMP thread: libgomp's thread pool is not freed at exit and would show as "possibly lost".
OMP_NUM_THREADS=1 valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
  --errors-for-leak-kinds=definite --track-origins=yes -q "$BUILD/tests/cpp/gatecell_sanitize_kernels"
echo "valgrind: memcheck clean"
