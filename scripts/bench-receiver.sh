#!/usr/bin/env bash
# Receiver benchmark: klarna-receiver vs a bare Beast server that only answers
# 200, same load generator, same run, plain HTTP and TLS. Kafka acknowledgement
# comes from the embedded Kafka running in its own process. Every load run
# reports the host's CPU steal over its window (steal_pct); the summary gives
# the medians, and the bare server's p99 at the receiver's half rate as a
# control for what the host and the load generator add. "quiet" pairs are
# those where both runs saw at most 2% steal.
#
#   scripts/bench-receiver.sh [build-dir]
#   env: RUNS=3 SECONDS_PER_RUN=8 CONNECTIONS=128 TLS_MODES="false true"
#        RECEIVER_ARGS="--set kafka.properties.linger.ms=2"   (extra receiver options)
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
RUNS=${RUNS:-3}
SECS=${SECONDS_PER_RUN:-8}
CONN=${CONNECTIONS:-128}
TLS_MODES=${TLS_MODES:-false true}
read -r -a EXTRA_ARGS <<<"${RECEIVER_ARGS:-}"
DIR=$(mktemp -d /tmp/kpay-bench.XXXXXX)
KEY_ID=krn:partner:global:notification:signing-key:bench
SECRET=bench-signing-key-NOT-REAL
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_file() { for _ in $(seq 1 200); do [[ -s $1 ]] && return 0; sleep 0.05; done; echo "no $1" >&2; exit 1; }
port_of() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['port'])" "$1"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$DIR/tls.key" -out "$DIR/tls.crt" 2>/dev/null
"$BUILD/tools/klarna-embedded-kafka" --partitions 4 --topic klarna.payment-requests \
  --topic klarna.dead-letter --bootstrap-file "$DIR/bootstrap" >"$DIR/kafka.log" 2>&1 &
pids+=($!)
wait_file "$DIR/bootstrap"
printf '%s' "$SECRET" >"$DIR/secret"
"$BUILD/tools/klarnactl" --set keys.database="$DIR/keys.db" keys add --id "$KEY_ID" --secret-file "$DIR/secret" >/dev/null

start_receiver() {  # $1 = tls true|false
  rm -f "$DIR/receiver.json"
  "$BUILD/receiver/klarna-receiver" --set receiver.listen_address=127.0.0.1 --set receiver.port=0 \
    --set receiver.tls="$1" --set receiver.tls_certificate="$DIR/tls.crt" --set receiver.tls_private_key="$DIR/tls.key" \
    --set receiver.port_file="$DIR/receiver.json" --set keys.database="$DIR/keys.db" \
    --set kafka.bootstrap_servers="$(cat "$DIR/bootstrap")" --set admin.port=0 --set log.level=warn \
    "${EXTRA_ARGS[@]}" >>"$DIR/receiver.log" 2>&1 &
  RECEIVER_PID=$!
  pids+=($RECEIVER_PID)
  wait_file "$DIR/receiver.json"
  RECEIVER_PORT=$(port_of "$DIR/receiver.json")
}
start_bare() {  # $1 = tls true|false
  rm -f "$DIR/bare.port"
  local tls_args=()
  [[ $1 == true ]] && tls_args=(--tls-certificate "$DIR/tls.crt" --tls-private-key "$DIR/tls.key")
  "$BUILD/bench/receiver/bare_beast_server" --threads 2 --port-file "$DIR/bare.port" "${tls_args[@]}" &
  BARE_PID=$!
  pids+=($BARE_PID)
  wait_file "$DIR/bare.port"
  BARE_PORT=$(cat "$DIR/bare.port")
}
load() {  # port tls rate
  local tls_flag=()
  [[ $2 == true ]] && tls_flag=(--tls)
  "$BUILD/bench/receiver/receiver_loadgen" --port "$1" "${tls_flag[@]}" --connections "$CONN" \
    --seconds "$SECS" --warmup 2 --rate "$3" --key-id "$KEY_ID" --secret "$SECRET"
}
median() { python3 -c "import sys,statistics,json;v=[json.loads(l)[sys.argv[1]] for l in sys.stdin];print(statistics.median(v))" "$1"; }

for tls in $TLS_MODES; do
  start_receiver "$tls"
  start_bare "$tls"
  : >"$DIR/bare-$tls.jsonl"
  : >"$DIR/recv-$tls.jsonl"
  for _ in $(seq 1 "$RUNS"); do   # interleaved, so both see the same machine
    load "$BARE_PORT" "$tls" 0 | tee -a "$DIR/bare-$tls.jsonl"
    load "$RECEIVER_PORT" "$tls" 0 | tee -a "$DIR/recv-$tls.jsonl"
  done
  bare=$(median rps <"$DIR/bare-$tls.jsonl")
  recv=$(median rps <"$DIR/recv-$tls.jsonl")
  half=$(python3 -c "print(int($recv/2))")
  # The receiver at half its maximum rate, and as a control the bare server at
  # that same rate, interleaved: the control's tail is what the host and the
  # load generator add on their own.
  : >"$DIR/half-$tls.jsonl"
  : >"$DIR/bare-half-$tls.jsonl"
  for _ in $(seq 1 "$RUNS"); do
    load "$RECEIVER_PORT" "$tls" "$half" | tee -a "$DIR/half-$tls.jsonl"
    load "$BARE_PORT" "$tls" "$half" | tee -a "$DIR/bare-half-$tls.jsonl"
  done
  p50=$(median p50_ms <"$DIR/half-$tls.jsonl")
  p99=$(median p99_ms <"$DIR/half-$tls.jsonl")
  bare_p99=$(median p99_ms <"$DIR/bare-half-$tls.jsonl")
  steal_closed=$(cat "$DIR/bare-$tls.jsonl" "$DIR/recv-$tls.jsonl" | median steal_pct)
  steal_half=$(median steal_pct <"$DIR/half-$tls.jsonl")
  rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$RECEIVER_PID/status")
  python3 - "$tls" "$bare" "$recv" "$half" "$p50" "$p99" "$bare_p99" "$rss_kb" "$steal_closed" "$steal_half" \
    "$DIR/bare-$tls.jsonl" "$DIR/recv-$tls.jsonl" <<'PY'
import json, statistics, sys
tls, bare, recv, half, p50, p99, bare_p99, rss, steal_closed, steal_half, bare_f, recv_f = sys.argv[1:]
# Each receiver run against the bare run just before it: steal that lands on
# one side of a pair shows in that pair only.
pairs = list(zip([json.loads(l) for l in open(bare_f)], [json.loads(l) for l in open(recv_f)]))
ratios = [r["rps"] / b["rps"] for b, r in pairs]
quiet = [r["rps"] / b["rps"] for b, r in pairs if max(b["steal_pct"], r["steal_pct"]) <= 2.0]
print(json.dumps({"summary": "receiver", "tls": tls == "true", "bare_rps_median": float(bare),
  "receiver_rps_median": float(recv), "ratio": round(float(recv) / float(bare), 3),
  "ratio_median_of_pairs": round(statistics.median(ratios), 3),
  "quiet_pairs": len(quiet), "ratio_median_of_quiet_pairs": round(statistics.median(quiet), 3) if quiet else None,
  "half_rate": int(half), "p50_ms_at_half": float(p50), "p99_ms_at_half": float(p99),
  "bare_p99_ms_at_same_rate": float(bare_p99), "receiver_peak_rss_mib": round(int(rss) / 1024, 1),
  "steal_pct_median_closed_loop": round(float(steal_closed), 1),
  "steal_pct_median_at_half": round(float(steal_half), 1)}))
PY
  kill "$RECEIVER_PID" "$BARE_PID"; wait "$RECEIVER_PID" "$BARE_PID" 2>/dev/null || true
done
