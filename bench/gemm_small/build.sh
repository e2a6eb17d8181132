#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds gemm_small: the packed GEMM of two gemm.cpp versions side by side in one binary.
#   bench/gemm_small/build.sh OLD_GEMM_CPP NEW_GEMM_CPP [OUT_DIR]
# (run from the repository root after `cmake --build build/ctest --target gatecell`).
set -e
old=$1; new=$2; out=${3:-build/gemm_small}
eigen=$(ls -d /work/venvs/*/lib/python3.11/site-packages/cmeel.prefix/include/eigen3 2>/dev/null | head -1)
mkdir -p "$out"
for v in old new; do
  eval src=\$$v
  sed -e "s/^namespace gatecell::detail {/namespace gatecell::detail::gv_$v {/" cpp/src/detail/gemm.hpp > "$out/gemm_$v.hpp"
  sed -e "s/^namespace gatecell::detail {/namespace gatecell::detail::gv_$v {/" \
      -e "s#\"detail/gemm.hpp\"#\"gemm_$v.hpp\"#" "$src" > "$out/gemm_$v.cpp"
done
g++ -O3 -std=c++17 -fopenmp -DNDEBUG -Icpp/src -Icpp/include -I"$out" -I"$eigen" \
  bench/gemm_small/gemm_small.cpp "$out/gemm_old.cpp" "$out/gemm_new.cpp" build/ctest/libgatecell.a -o "$out/gemm_small"
