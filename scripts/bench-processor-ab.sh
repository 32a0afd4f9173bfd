#!/usr/bin/env bash
# Interleaved A/B of two klarna-processor builds with processor_bench (same
# bench binary, the processor switched with --processor): ROUNDS rounds, the
# order alternating, each run with the CPU steal and idle share over its own
# window (/proc/stat) and its peak RSS; medians at the end. A run the bench
# finds invalid (counts wrong, RSS above the bound) prints no rate and counts
# as a failure here.
#
#   scripts/bench-processor-ab.sh build /tmp/klarna-processor-before [ROUNDS] [EVENTS]
#
# ALSO="label=binary …" adds variants to every round (e.g. a wrapper script
# that execs a build with `--set kafka.properties.…`); the order of a round's
# runs rotates from round to round.
#
# MAX_RSS_MIB (default 128) is passed to the bench: a comparison of builds
# whose peaks exceed it needs a higher bound (and says so). (Peaks of 600 MiB
# in runs before 2026-12-07 09:00 were the bench's own RSS, read between fork
# and exec; docs/PERFORMANCE.md.)
set -euo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
"$(dirname "$0")/bench-build.sh" "$BUILD"  # the bench binaries are outside `all`
BEFORE=${2:?old klarna-processor binary}
ROUNDS=${3:-3}
EVENTS=${4:-200000}
MAX_RSS_MIB=${MAX_RSS_MIB:-128}
NEW="$BUILD/processor/klarna-processor"
BENCH="$BUILD/bench/processor/processor_bench"
dir=$(mktemp -d /tmp/kpay-bench-ab.XXXXXX)
trap 'rm -rf "$dir"' EXIT

cpu() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5, $9}' /proc/stat; }

run() {  # $1 label, $2 processor binary
  local before after out rate rss steal idle
  before=$(cpu)
  out=$("$BENCH" --events "$EVENTS" --dir "$dir" --processor "$2" --max-rss-mib "$MAX_RSS_MIB" \
    2>&1 | grep -v '"level":"warn"') || {
    echo "$1 INVALID: $(grep -E 'INVALID|history|peak_rss' <<<"$out" | tr '\n' ' ')"
    return 0
  }
  after=$(cpu)
  read -r t0 i0 s0 <<<"$before"
  read -r t1 i1 s1 <<<"$after"
  steal=$(awk -v t="$((t1 - t0))" -v s="$((s1 - s0))" 'BEGIN{printf "%.1f", t ? 100*s/t : 0}')
  idle=$(awk -v t="$((t1 - t0))" -v i="$((i1 - i0))" 'BEGIN{printf "%.1f", t ? 100*i/t : 0}')
  rate=$(sed -n 's/.*=> \([0-9]*\) events\/s.*/\1/p' <<<"$out")
  cpus=$(sed -n 's/.*=> \([0-9]*\) events per cpu-second.*/\1/p' <<<"$out")
  rss=$(sed -n 's/^peak_rss=\([0-9.]*\) MiB.*/\1/p' <<<"$out")
  hist=$(sed -n 's/^history: //p' <<<"$out")
  io=$(sed -n 's/^io: //p' <<<"$out")
  echo "$1 events/s=$rate per-cpu-s=$cpus peak_rss=${rss}MiB steal=${steal}% idle=${idle}% load=$(cut -d' ' -f1 /proc/loadavg) io: $io [$hist]"
  echo "$1 $rate $rss $cpus" >>"$dir/results"
}

labels=(old new)
declare -A binary=([old]="$BEFORE" [new]="$NEW")
for v in ${ALSO:-}; do
  labels+=("${v%%=*}")
  binary[${v%%=*}]=${v#*=}
done
n=${#labels[@]}
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    if ((n == 2)); then  # old, new; then new, old; …
      l=${labels[$(((i + r + 1) % 2))]}
    else
      l=${labels[$(((i + r - 1) % n))]}
    fi
    run "$l" "${binary[$l]}"
  done
done
median() { sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for b in "${labels[@]}"; do
  echo "$b median events/s=$(awk -v b="$b" '$1==b{print $2}' "$dir/results" | median)" \
    "per-cpu-s=$(awk -v b="$b" '$1==b{print $4}' "$dir/results" | median)" \
    "peak_rss median=$(awk -v b="$b" '$1==b{print $3}' "$dir/results" | median)" \
    "max=$(awk -v b="$b" '$1==b{print $3}' "$dir/results" | sort -n | tail -1)MiB"
done
