#!/usr/bin/env bash
# `make bench`: every benchmark; results and their reading in docs/PERFORMANCE.md.
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
"$(dirname "$0")/bench-build.sh" "$BUILD"  # the bench binaries are outside `all`
here=$(dirname "$0")
"$here/bench-receiver.sh" "$BUILD"
dir=$(mktemp -d /tmp/kpay-bench-processor.XXXXXX)
for _ in 1 2 3; do
  "$BUILD/bench/processor/processor_bench" --events 200000 --batch-size 2000 --dir "$dir"
done
"$BUILD/bench/sim/sim_bench"
rm -rf "$dir"
"$here/bench-followups.sh" "$BUILD"
