#!/usr/bin/env bash
# What two writers would give on this machine: each round runs one
# processor_bench of EVENTS, then two of EVENTS at once (each with its own
# embedded Kafka, processor and SQLite file), and prints the rates; the sum of
# the pair's against the single run is the ratio (docs/performance/processor.md,
# "Two writers on these 2 cores"). The pair's rate is both runs' messages over
# the span from the first one's start of processing to the last one's end (each
# taken as its exit time less its processing time), and `overlap` says how much
# of that span both were processing: the two join their consumer groups at
# different moments. The pair carries two Kafka stacks, so it errs low. A run
# the bench finds invalid prints no rate.
#
#   scripts/bench-processor-pair.sh build [ROUNDS] [EVENTS]
set -euo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
"$(dirname "$0")/bench-build.sh" "$BUILD"
ROUNDS=${2:-3}
EVENTS=${3:-100000}
BENCH="$BUILD/bench/processor/processor_bench"
dir=$(mktemp -d /tmp/kpay-bench-pair.XXXXXX)
trap 'rm -rf "$dir"' EXIT

rate() { sed -n 's/.*=> \([0-9]*\) events\/s$/\1/p' "$1"; }
# "processed=N (…) in Ss => …": N and S, then the exit time.
window() { sed -n 's/^processed=\([0-9]*\) .* in \([0-9.]*\)s => .*/\1 \2/p' "$1" | tr '\n' ' '; cat "$1.end"; }
run() {
  "$BENCH" --events "$EVENTS" --dir "$dir" --max-rss-mib "${MAX_RSS_MIB:-128}" >"$1" 2>&1 || true
  date +%s.%N >"$1.end"
}

for r in $(seq 1 "$ROUNDS"); do
  run "$dir/one"
  run "$dir/a" &
  run "$dir/b" &
  wait
  one=$(rate "$dir/one") a=$(rate "$dir/a") b=$(rate "$dir/b")
  if [[ -z "$one" || -z "$a" || -z "$b" ]]; then
    echo "round $r INVALID: $(grep -h -E 'INVALID' "$dir/one" "$dir/a" "$dir/b" | tr '\n' ' ')"
    continue
  fi
  read -r na sa ea <<<"$(window "$dir/a")"
  read -r nb sb eb <<<"$(window "$dir/b")"
  echo "round $r one=$one pair: $a + $b $(awk -v na="$na" -v sa="$sa" -v ea="$ea" -v nb="$nb" \
    -v sb="$sb" -v eb="$eb" -v one="$one" 'BEGIN{
      s1 = ea - sa; s2 = eb - sb; first = s1 < s2 ? s1 : s2; last = ea > eb ? ea : eb
      lo = s1 > s2 ? s1 : s2; hi = ea < eb ? ea : eb; both = hi > lo ? hi - lo : 0
      t = (na + nb) / (last - first)
      printf "together=%.0f ratio=%.2f overlap=%.0f%%", t, t / one, 100 * both / (last - first)}')" \
    "load=$(cut -d' ' -f1 /proc/loadavg) [$(sed -n 's/^history: //p' "$dir/a")]"
done
