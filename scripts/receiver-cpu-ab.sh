#!/usr/bin/env bash
# CPU per request of two klarna-receiver binaries at one fixed open-loop rate,
# in alternating rounds (A B, B A, …) against one embedded Kafka: unlike
# scripts/bench-receiver.sh, whose half-rate runs put each binary at its own
# rate, both see the same load, so their CPU per request compares directly
# (CPU per request falls as the rate rises: more requests share a wake-up).
# Per round and binary: CPU µs per request of the receiver process (all its
# threads) and of the embedded Kafka, p99, CPU steal (ticks of /proc/stat over
# the run) and the 1-minute load average; a run whose answers are not all 200
# fails. The last lines: the medians.
#
#   scripts/receiver-cpu-ab.sh [build-dir] binary-a binary-b
#   env: RATE=15000 ROUNDS=6 SECONDS_PER_RUN=5 CONNECTIONS=128
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
"$(dirname "$0")/bench-build.sh" "$BUILD"  # the bench binaries are outside `all`
A=${2:?binary a}
B_BIN=${3:?binary b}
RATE=${RATE:-15000}
ROUNDS=${ROUNDS:-6}
SECS=${SECONDS_PER_RUN:-5}
CONN=${CONNECTIONS:-128}
DIR=$(mktemp -d /tmp/kpay-cpu-ab.XXXXXX)
KEY_ID=krn:partner:global:notification:signing-key:bench
SECRET=bench-signing-key-NOT-REAL
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
wait_file() { for _ in $(seq 1 600); do [[ -s $1 ]] && return 0; sleep 0.05; done; echo "no $1" >&2; exit 1; }
ticks() {  # utime + stime of every thread of a process
  python3 - "$1" <<'PY'
import glob, sys
t = 0
for f in glob.glob(f"/proc/{sys.argv[1]}/task/*/stat"):
    try:
        s = open(f).read()
    except OSError:
        continue  # the thread ended meanwhile
    x = s[s.rindex(")") + 2:].split()
    t += int(x[11]) + int(x[12])
print(t)
PY
}
steal() { awk '/^cpu / {print $9}' /proc/stat; }

"$BUILD/tools/klarna-embedded-kafka" --partitions 4 --topic klarna.payment-requests \
  --topic klarna.dead-letter --bootstrap-file "$DIR/bootstrap" >"$DIR/kafka.log" 2>&1 &
KAFKA_PID=$!
pids+=("$KAFKA_PID")
wait_file "$DIR/bootstrap"
printf '%s' "$SECRET" >"$DIR/secret"
"$BUILD/tools/klarnactl" --set keys.database="$DIR/keys.db" keys add --id "$KEY_ID" --secret-file "$DIR/secret" >/dev/null

declare -A PID PORT BIN=([a]="$A" [b]="$B_BIN")
for name in a b; do
  "${BIN[$name]}" --set receiver.listen_address=127.0.0.1 --set receiver.port=0 --set receiver.tls=false \
    --set receiver.port_file="$DIR/$name.json" --set keys.database="$DIR/keys.db" \
    --set kafka.bootstrap_servers="$(cat "$DIR/bootstrap")" --set admin.port=0 --set log.level=warn \
    >"$DIR/$name.log" 2>&1 &
  PID[$name]=$!
  pids+=("${PID[$name]}")
  wait_file "$DIR/$name.json"
  PORT[$name]=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['port'])" "$DIR/$name.json")
done

: >"$DIR/rounds.jsonl"
for r in $(seq 1 "$ROUNDS"); do
  order="a b"
  ((r % 2 == 0)) && order="b a"
  for name in $order; do
    "$BUILD/bench/receiver/receiver_loadgen" --port "${PORT[$name]}" --connections "$CONN" \
      --seconds "$SECS" --warmup 1 --rate "$RATE" --key-id "$KEY_ID" --secret "$SECRET" >"$DIR/run.json" &
    lg=$!
    sleep 1.2  # the loadgen measures from 200 ms + warm-up after its start
    t0=$(ticks "${PID[$name]}") k0=$(ticks "$KAFKA_PID") s0=$(steal)
    wait "$lg" || { echo "load generator failed: $(cat "$DIR/run.json")" >&2; exit 1; }
    t1=$(ticks "${PID[$name]}") k1=$(ticks "$KAFKA_PID") s1=$(steal)
    python3 - "$DIR/run.json" "$name: ${BIN[$name]}" "$r" "$t0" "$t1" "$k0" "$k1" "$s0" "$s1" <<'PY' | tee -a "$DIR/rounds.jsonl"
import json, os, sys
run = json.load(open(sys.argv[1]))
n = run["completed"]
if n == 0 or run["statuses"].get("200", 0) != n:
    sys.exit(f"{n} answers, statuses {run['statuses']}: not all 200")
t0, t1, k0, k1, s0, s1 = map(int, sys.argv[4:10])
us = lambda ticks: round(ticks * 1e6 / os.sysconf("SC_CLK_TCK") / n, 1)
print(json.dumps({"round": int(sys.argv[3]), "binary": sys.argv[2], "rps": run["rps"],
                  "cpu_us_per_request": us(t1 - t0), "kafka_cpu_us_per_request": us(k1 - k0),
                  "p99_ms": run["p99_ms"], "steal_ticks": s1 - s0,
                  "load_avg_1m": float(open("/proc/loadavg").read().split()[0])}))
PY
  done
done
python3 - "$DIR/rounds.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for b in dict.fromkeys(r["binary"] for r in rows):
    mine = [r for r in rows if r["binary"] == b]
    med = lambda k: statistics.median(r[k] for r in mine)
    print(json.dumps({"summary": b, "rounds": len(mine), "cpu_us_per_request_median": med("cpu_us_per_request"),
                      "kafka_cpu_us_per_request_median": med("kafka_cpu_us_per_request"),
                      "p99_ms_median": med("p99_ms"), "steal_ticks_max": max(r["steal_ticks"] for r in mine)}))
PY
