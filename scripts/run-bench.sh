#!/usr/bin/env bash
# `make bench`: every benchmark, printed as JSON lines; see docs/PERFORMANCE.md.
set -euo pipefail
BUILD=${1:-build}
"$(dirname "$0")/bench-receiver.sh" "$BUILD"
if [[ -x $(dirname "$0")/bench-processor.sh ]]; then
  "$(dirname "$0")/bench-processor.sh" "$BUILD"
fi
