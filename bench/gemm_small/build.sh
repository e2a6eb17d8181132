#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds gemm_small: the packed GEMM of two gemm.cpp versions side by side in one binary.
#   bench/gemm_small/build.sh OLD_GEMM_CPP NEW_GEMM_CPP [OUT_DIR]
# (run from the repository root after `cmake --build build/ctest --target gatecell`).
set -e
old=$1; new=$2; out=${3:-build/gemm_small}
# Eigen from the active Python's cmeel-eigen (the test extra installs it), or $EIGEN_INCLUDE.
eigen=${EIGEN_INCLUDE:-$(python -c "import os, sysconfig; print(os.path.join(sysconfig.get_path('purelib'), 'cmeel.prefix', 'include', 'eigen3'))")}
mkdir -p "$out"
for v in old new; do
  eval src=\$$v
  sed -e "s/^namespace gatecell::detail {/namespace gatecell::detail::gv_$v {/" cpp/src/detail/gemm.hpp > "$out/gemm_$v.hpp"
  sed -e "s/^namespace gatecell::detail {/namespace gatecell::detail::gv_$v {/" \
      -e "s#\"detail/gemm.hpp\"#\"gemm_$v.hpp\"#" "$src" > "$out/gemm_$v.cpp"
done
g++ -O3 -std=c++17 -fopenmp -DNDEBUG -Icpp/src -Icpp/include -I"$out" -I"$eigen" \
  bench/gemm_small/gemm_small.cpp "$out/gemm_old.cpp" "$out/gemm_new.cpp" build/ctest/libgatecell.a -o "$out/gemm_small"
