#!/usr/bin/env bash
# Brings a build directory's binaries up to date before a benchmark reads them:
# the benches are outside `all` (bench_all, built by `make bench`), so a tree
# built by `make test` alone keeps whatever bench binaries it had, and a rate
# would be measured with an old harness. Sourced or run by the bench scripts:
#
#   scripts/bench-build.sh BUILD_DIR
set -euo pipefail
build=${1:?build dir}
if ! out=$(cmake --build "$build" --target all bench_all -j "$(nproc)" 2>&1); then
  echo "$out" | tail -n 30 >&2
  echo "bench-build: the build of $build failed" >&2
  exit 1
fi
