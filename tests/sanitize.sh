#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the core, the C++ tests and the extension with AddressSanitizer + UBSan (GATECELL_SANITIZE),
# runs ctest, then runs the torch-free Python suites against the sanitized extension. Any report fails.
# Usage: tests/sanitize.sh [build-dir]   (uses the active virtual environment's Python, or $PYTHON;
# installs cmake/ninja/pybind11/cmeel-eigen into that environment from PyPI when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/sanitize}
PY=${PYTHON:-python}

if ! "$PY" -c "import cmake, ninja, pybind11, cmeel" 2>/dev/null; then
  "$PY" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)" ||
    { echo "sanitize.sh: activate a virtual environment first (build tools are installed into it)" >&2; exit 2; }
  "$PY" -m pip install -q cmake ninja pybind11 cmeel-eigen
fi
BIN=$("$PY" -c "import sysconfig; print(sysconfig.get_path('scripts'))")
export PATH="$BIN:$PATH"

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGATECELL_SANITIZE=ON \
  -DGATECELL_BUILD_TESTS=ON -DGATECELL_BUILD_PYTHON=ON -DPython_EXECUTABLE="$(command -v "$PY")" \
  -Dpybind11_DIR="$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$BUILD" -j 2

# allocator_may_return_null: an absurd size must reach the code as a failed allocation (MemoryError),
# which is what the tests check, instead of ASan stopping the process.
ASAN=abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$BUILD" && ASAN_OPTIONS=$ASAN:detect_leaks=1 ctest --output-on-failure)

# The Python package with the sanitized extension next to it, ahead of any installed gatecell.
STAGE="$BUILD/python"
rm -rf "$STAGE" && mkdir -p "$STAGE"
cp -r python/gatecell "$STAGE/"
rm -f "$STAGE"/gatecell/_core*.so
cp "$BUILD"/_core*.so "$STAGE/gatecell/"
# libstdc++ is preloaded too: Python itself does not link it, and ASan's __cxa_throw interceptor must
# find the real one at start-up, or the first C++ exception aborts.
PRELOAD="$(${CXX:-c++} -print-file-name=libasan.so) $(${CXX:-c++} -print-file-name=libstdc++.so)"
# Leaks are not checked in Python (the interpreter keeps memory to exit); C++ leaks are, by ctest.
# torch is not loaded under ASan: these suites check against reference.py and finite differences.
STAGE=$(cd "$STAGE" && pwd)
# python -S skips the .pth files, so an editable install of gatecell cannot take precedence over the
# staged package; site-packages (numpy, pytest, hypothesis) is put back on the path after it.
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
export PYTHONPATH="$STAGE:$SITE"
LD_PRELOAD="$PRELOAD" ASAN_OPTIONS=$ASAN:detect_leaks=0 "$PY" -S -c \
  "import gatecell; assert gatecell.__file__.startswith('$STAGE'), 'not the sanitized build: ' + gatecell.__file__"
LD_PRELOAD="$PRELOAD" ASAN_OPTIONS=$ASAN:detect_leaks=0 CI=true "$PY" -S -m pytest -q -p no:cacheprovider \
  tests/python/test_errors.py tests/python/test_validation.py tests/python/test_gradcheck.py tests/python/test_variants.py \
  tests/python/test_fuzz.py tests/python/test_properties.py \
  tests/python/test_concurrency.py tests/python/test_numerics.py tests/python/test_repeatability.py \
  tests/python/test_workspace.py "tests/python/test_step.py::test_split_steps_match_one_thread" \
  tests/python/test_batch_split.py tests/python/test_weight_packs.py
echo "sanitize: ctest and Python suites clean under ASan+UBSan"
