#!/usr/bin/env bash
# cpack.sh BUILD_DIR OUT_DIR: the .deb of BUILD_DIR's binaries, into OUT_DIR.
set -euo pipefail
build=$1 out=$2
rm -rf "$out"
mkdir -p "$out"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$out" >"$out/cpack.log" 2>&1 || {
  cat "$out/cpack.log"
  exit 1
}
ls "$out"/*.deb
