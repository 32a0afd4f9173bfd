#!/usr/bin/env bash
# The libFuzzer targets (fuzz/, docs/RELIABILITY.md "Fuzzing").
#
#   scripts/fuzz.sh build  DIR            configure a clang build in DIR, build the targets
#   scripts/fuzz.sh replay DIR            every target over its committed seeds and regressions
#   scripts/fuzz.sh run    DIR SECONDS    every target for SECONDS (or those named in FUZZ_TARGETS)
#   scripts/fuzz.sh short  DIR SECONDS    build + replay + run, for ctest: fails when no
#                                         clang with libFuzzer is installed
#
# `run` keeps its corpus in DIR/corpus/<target> (the committed seeds under
# fuzz/corpus/ are only read), saves crashes in DIR/crashes/<target>/, prints
# a table (executions, executions per second, corpus size) and fails when a
# target crashed. `short` starts from the committed seeds each time.
# Environment: FUZZ_CXX (the clang++ to use), FUZZ_JOBS (build jobs),
# FUZZ_TARGETS (space-separated subset), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ALL_TARGETS=(receiver_request envelope signature events commands api_answer command_signature
  settlement_report)
read -r -a TARGETS <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"

usage() {
  sed -n '2,16p' "$0" >&2
  exit 2
}

find_cxx() {
  if [[ -n "${FUZZ_CXX:-}" ]]; then
    echo "$FUZZ_CXX"
    return
  fi
  for c in clang++-14 clang++; do
    if command -v "$c" >/dev/null 2>&1; then
      echo "$c"
      return
    fi
  done
}

# True when $1 links a libFuzzer target (clang alone is not enough: Debian
# ships libFuzzer in libclang-rt-14-dev).
has_libfuzzer() {
  local cxx="$1" tmp
  [[ -n "$cxx" ]] || return 1
  tmp="$(mktemp -d)"
  printf '%s\n' 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
    >"$tmp/probe.cpp"
  local ok=0
  "$cxx" -fsanitize=fuzzer,address,undefined "$tmp/probe.cpp" -o "$tmp/probe" >/dev/null 2>&1 || ok=1
  rm -rf "$tmp"
  return $ok
}

sanitizer_env() {
  local symbolizer
  symbolizer="$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0${symbolizer:+:external_symbolizer_path=$symbolizer}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
}

build() {
  local dir="$1" cxx
  cxx="$(find_cxx)"
  if ! has_libfuzzer "$cxx"; then
    echo "fuzz: no clang++ with libFuzzer (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
    return 1
  fi
  local gen=() launcher=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    cmake -S "$ROOT" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" \
      -DKPAY_FUZZ=ON -DKPAY_BUILD_TESTS=OFF -DKPAY_BUILD_BENCH=OFF >/dev/null
  fi
  cmake --build "$dir" --target fuzz_all -j "${FUZZ_JOBS:-$(nproc)}"
}

seed_dirs() {
  local t="$1"
  for d in "$ROOT/fuzz/corpus/$t" "$ROOT/fuzz/regressions/$t"; do
    [[ -d "$d" ]] && echo "$d"
  done
}

dict_args() {
  local t="$1"
  [[ -f "$ROOT/fuzz/dict/$t.dict" ]] && echo "-dict=$ROOT/fuzz/dict/$t.dict"
  return 0
}

# Every committed seed and regression input, once.
replay() {
  local dir="$1" failed=0
  sanitizer_env
  for t in "${TARGETS[@]}"; do
    local seeds n
    mapfile -t seeds < <(seed_dirs "$t")
    n=0
    ((${#seeds[@]} == 0)) || n=$(find "${seeds[@]}" -type f | wc -l)
    if "$dir/fuzz/fuzz_$t" -runs=0 "${seeds[@]}" >"$dir/replay-$t.log" 2>&1; then
      echo "fuzz replay $t: $n inputs ok"
    else
      echo "fuzz replay $t: FAILED (log: $dir/replay-$t.log)"
      tail -40 "$dir/replay-$t.log"
      failed=1
    fi
  done
  return $failed
}

stat_of() {
  sed -n "s/^stat::$1: *//p" "$2" | tail -1
}

# One target for $3 seconds with corpus dir $4 (created; new inputs go there).
run_one() {
  local dir="$1" t="$2" seconds="$3" corpus="$4" log="$1/run-$2.log"
  local crashes="$dir/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  local seeds
  mapfile -t seeds < <(seed_dirs "$t")
  local status=0
  # shellcheck disable=SC2046,SC2086
  "$dir/fuzz/fuzz_$t" "$corpus" "${seeds[@]}" $(dict_args "$t") \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$crashes/" -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
  local execs rate cov corp
  execs="$(stat_of number_of_executed_units "$log")"
  rate="$(stat_of average_exec_per_sec "$log")"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)"
  corp="$(find "$corpus" -type f | wc -l)"
  printf '%-18s %12s %10s %8s %8s   %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corp" \
    "$([[ $status -eq 0 ]] && echo ok || echo "CRASH (exit $status)")"
  if [[ $status -ne 0 ]]; then
    grep -E 'ERROR: |runtime error|property violated|Test unit written' "$log" | head -8 | sed 's/^/    /'
    echo "    log: $log; inputs: $crashes/"
    return 1
  fi
}

run() {
  local dir="$1" seconds="$2" corpus_root="${3:-$1/corpus}" failed=0
  sanitizer_env
  printf '%-18s %12s %10s %8s %8s   %s\n' target executions exec/s cov corpus result
  for t in "${TARGETS[@]}"; do
    run_one "$dir" "$t" "$seconds" "$corpus_root/$t" || failed=1
  done
  return $failed
}

[[ $# -ge 2 ]] || usage
mode="$1"
dir="$(mkdir -p "$2" && cd "$2" && pwd)"
case "$mode" in
  build) build "$dir" ;;
  replay) replay "$dir" ;;
  run)
    [[ $# -ge 3 ]] || usage
    run "$dir" "$3"
    ;;
  short)
    [[ $# -ge 3 ]] || usage
    status=0
    build "$dir" || status=$?
    [[ $status -eq 0 ]] || exit $status
    replay "$dir"
    work="$(mktemp -d "$dir/short-corpus.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    run "$dir" "$3" "$work"
    ;;
  *) usage ;;
esac
