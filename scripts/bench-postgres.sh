#!/usr/bin/env bash
# PostgreSQL benchmarks (docs/performance/postgresql.md),
# interleaved so that the machine's load falls on every variant alike:
#   1. pg_bench: events/s of 1, 2 and 3 processors on one durable PostgreSQL,
#      with SQLite's processor_bench over the same kind of stream as the
#      reference, RUNS rounds;
#   2. loop_bench: webhook -> Klarna call latency and calls/s with the sim's
#      5 ms latency on every authorize call, 1, 2 and 3 processors on
#      PostgreSQL and one on SQLite, RUNS rounds, at RATE payments/s (100: the
#      latency at a steady load; 1000 and more: how many calls/s they reach).
# Each line says the host's CPU steal and the load average over the run.
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
"$(dirname "$0")/bench-build.sh" "$BUILD"  # the bench binaries are outside `all`
RUNS=${RUNS:-2}
EVENTS=${EVENTS:-30000}
PAYMENTS=${PAYMENTS:-1000}
RATE=${RATE:-100}

dir=$(mktemp -d /tmp/kpay-bench-postgres.XXXXXX)
trap 'rm -rf "$dir"' EXIT
steal() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
with_dir=$(mktemp -d /tmp/kpay-bench-postgres.XXXXXX)
trap 'rm -rf "$dir"' EXIT
steal() {
  local a b
  a=$(steal)
  "$@" 2>"$dir/stderr" | grep -E '^(processors=|processed=|cpu:|pg_stat|loop:|events=|peak_rss|processor cpu)' ||
    { echo "  (run failed: $*)"; tail -n 5 "$dir/stderr"; }
  b=$(steal)
  awk -v a="$a" -v b="$b" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN{split(a,x," ");split(b,y," ");
    printf "  (steal %.1f%%, load average %s)\n", 100*(y[1]-x[1])/((y[2]-x[2])>0?(y[2]-x[2]):1), load}'
}

for round in $(seq "$RUNS"); do
  echo "== round $round: events"
  for n in 1 2 3; do
    with_steal "$BUILD/bench/processor/pg_bench" --events "$EVENTS" --processors "$n" --batch-size 500
  done
  echo "sqlite:"
  with_steal "$BUILD/bench/processor/processor_bench" --events "$EVENTS" --batch-size 500 --dir "$dir"
done
for round in $(seq "$RUNS"); do
  echo "== round $round: webhook -> call"
  for n in 1 2 3; do
    with_steal "$BUILD/bench/processor/loop_bench" --payments "$PAYMENTS" --rate "$RATE" \
      --store postgresql --processors "$n" --latency-ms 5
  done
  with_steal "$BUILD/bench/processor/loop_bench" --payments "$PAYMENTS" --rate "$RATE" --latency-ms 5
done
