#!/usr/bin/env bash
# Receiver benchmark: klarna-receiver against two references that only answer
# 200 — a bare Beast server (bench/receiver/bare_server.cpp, 2 threads) and
# nginx `return 200` (one worker) — and, when RECEIVER_BEFORE names another
# klarna-receiver binary (an older build), that one too. Same load generator,
# interleaved runs (each run of a round sees the same machine), plain HTTP and
# TLS. Kafka acknowledgement comes from the embedded Kafka in its own process.
#
# Every load run prints the loadgen's JSON plus, measured on the server's
# process over the measured window: context switches per request (voluntary +
# nonvoluntary, summed over its threads from /proc/<pid>/task/*/status) and
# CPU microseconds per request (/proc/<pid>/stat utime+stime), and the host's
# CPU steal and the 1-minute load average at its end (other processes on the
# VM: steal says only what the host takes). A run whose answers are not all
# 200 fails the benchmark. The
# summary per mode gives medians, ratios to both references (median of the
# per-round ratios), p99 at half each receiver's own maximum rate, and peak RSS.
#
#   scripts/bench-receiver.sh [build-dir]
#   env: RUNS=3 SECONDS_PER_RUN=8 CONNECTIONS=128 TLS_MODES="false true"
#        RECEIVER_ARGS="--set kafka.properties.linger.ms=2"   (extra receiver options)
#        RECEIVER_BEFORE=/path/to/old/klarna-receiver         (compare two builds)
#        PERF=1   (one more run per receiver under `perf record`; top symbols)
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
RUNS=${RUNS:-3}
SECS=${SECONDS_PER_RUN:-8}
WARMUP=2
CONN=${CONNECTIONS:-128}
TLS_MODES=${TLS_MODES:-false true}
BEFORE=${RECEIVER_BEFORE:-}
read -r -a EXTRA_ARGS <<<"${RECEIVER_ARGS:-}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { echo "nginx not found (Debian: nginx-light; scripts/install-deps.sh)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/kpay-bench.XXXXXX)
KEY_ID=krn:partner:global:notification:signing-key:bench
SECRET=bench-signing-key-NOT-REAL
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_file() { for _ in $(seq 1 200); do [[ -s $1 ]] && return 0; sleep 0.05; done; echo "no $1" >&2; exit 1; }
port_of() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['port'])" "$1"; }
free_port() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$DIR/tls.key" -out "$DIR/tls.crt" 2>/dev/null
"$BUILD/tools/klarna-embedded-kafka" --partitions 4 --topic klarna.payment-requests \
  --topic klarna.dead-letter --bootstrap-file "$DIR/bootstrap" >"$DIR/kafka.log" 2>&1 &
pids+=($!)
wait_file "$DIR/bootstrap"
printf '%s' "$SECRET" >"$DIR/secret"
"$BUILD/tools/klarnactl" --set keys.database="$DIR/keys.db" keys add --id "$KEY_ID" --secret-file "$DIR/secret" >/dev/null

declare -A PORT PID
start_receiver() {  # $1 = name (receiver|before), $2 = binary, $3 = tls true|false
  rm -f "$DIR/$1.json"
  "$2" --set receiver.listen_address=127.0.0.1 --set receiver.port=0 \
    --set receiver.tls="$3" --set receiver.tls_certificate="$DIR/tls.crt" --set receiver.tls_private_key="$DIR/tls.key" \
    --set receiver.port_file="$DIR/$1.json" --set keys.database="$DIR/keys.db" \
    --set kafka.bootstrap_servers="$(cat "$DIR/bootstrap")" --set admin.port=0 --set log.level=warn \
    "${EXTRA_ARGS[@]}" >>"$DIR/$1.log" 2>&1 &
  PID[$1]=$!
  pids+=(${PID[$1]})
  wait_file "$DIR/$1.json"
  PORT[$1]=$(port_of "$DIR/$1.json")
}
start_bare() {  # $1 = tls true|false
  rm -f "$DIR/bare.port"
  local tls_args=()
  [[ $1 == true ]] && tls_args=(--tls-certificate "$DIR/tls.crt" --tls-private-key "$DIR/tls.key")
  "$BUILD/bench/receiver/bare_beast_server" --threads 2 --port-file "$DIR/bare.port" "${tls_args[@]}" &
  PID[bare]=$!
  pids+=(${PID[bare]})
  wait_file "$DIR/bare.port"
  PORT[bare]=$(cat "$DIR/bare.port")
}
start_nginx() {  # $1 = tls true|false; one worker, no logging, unlimited keep-alive
  PORT[nginx]=$(free_port)
  local listen="127.0.0.1:${PORT[nginx]}" tls_lines=""
  if [[ $1 == true ]]; then
    listen="$listen ssl"
    tls_lines="ssl_certificate $DIR/tls.crt; ssl_certificate_key $DIR/tls.key; ssl_protocols TLSv1.2 TLSv1.3;"
  fi
  cat >"$DIR/nginx.conf" <<EOF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $DIR/nginx-body; proxy_temp_path $DIR/nginx-proxy;
  fastcgi_temp_path $DIR/nginx-fcgi; uwsgi_temp_path $DIR/nginx-uwsgi; scgi_temp_path $DIR/nginx-scgi;
  keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_buffer_size 64k;
  server { listen $listen; $tls_lines location / { return 200 "ok"; } }
}
EOF
  rm -f "$DIR/nginx.pid"
  "$NGINX" -p "$DIR" -c "$DIR/nginx.conf" -g 'daemon off;' 2>>"$DIR/nginx-error.log" &
  local master=$!
  pids+=($master)
  wait_file "$DIR/nginx.pid"
  for _ in $(seq 1 100); do PID[nginx]=$(pgrep -P "$master" | head -1 || true); [[ -n ${PID[nginx]} ]] && break; sleep 0.05; done
  NGINX_MASTER=$master
}

ctxsw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/_ctxt_switches/ {s += $2} END {print s + 0}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() {  # name tls rate → one JSON line with the server's figures added
  local name=$1 tls_flag=()
  [[ $2 == true ]] && tls_flag=(--tls)
  "$BUILD/bench/receiver/receiver_loadgen" --port "${PORT[$name]}" "${tls_flag[@]}" --connections "$CONN" \
    --seconds "$SECS" --warmup "$WARMUP" --rate "$3" --key-id "$KEY_ID" --secret "$SECRET" >"$DIR/run.json" &
  local lg=$!
  sleep "$WARMUP.2"  # the loadgen measures from 200 ms + warm-up after its start
  local cs0 cpu0 cs1 cpu1
  cs0=$(ctxsw "${PID[$name]}"); cpu0=$(cpu_ticks "${PID[$name]}")
  wait "$lg" || { echo "load generator failed against $name: $(cat "$DIR/run.json")" >&2; exit 1; }
  cs1=$(ctxsw "${PID[$name]}"); cpu1=$(cpu_ticks "${PID[$name]}")
  python3 - "$DIR/run.json" "$name" "$((cs1 - cs0))" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" \
    "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
name, cs, ticks, hz = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
load_1m = float(sys.argv[6])
n = run["completed"]
# The benchmark checks its own work: every answer counted is a 200.
if n == 0 or run["statuses"].get("200", 0) != n:
    sys.exit(f"{name}: {n} answers, statuses {run['statuses']}: not all 200")
run.update(server=name, ctxsw_per_request=round(cs / n, 3),
           cpu_us_per_request=round(ticks * 1e6 / hz / n, 1), load_avg_1m=load_1m)
print(json.dumps(run))
PY
}
median() { python3 -c "import sys,statistics,json;v=[json.loads(l)[sys.argv[1]] for l in sys.stdin];print(statistics.median(v))" "$1"; }

profile() {  # name tls → top of a perf profile of one closed-loop run
  command -v perf >/dev/null || { echo "perf not installed (linux-perf)" >&2; return 0; }
  perf record -F 499 -g -o "$DIR/perf-$1-$2.data" -p "${PID[$1]}" -- sleep $((SECS + WARMUP)) 2>/dev/null &
  local pr=$!
  load "$1" "$2" 0 >/dev/null
  wait "$pr" || true
  echo "--- perf: $1 tls=$2, share of samples by binary, then the top symbols"
  # (|| true: head closing the pipe early is not a failure)
  perf report -i "$DIR/perf-$1-$2.data" --no-children -g none --sort dso --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -8 || true
  perf report -i "$DIR/perf-$1-$2.data" --no-children -g none --sort sym --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -15 || true
}

receivers=(receiver)
[[ -n $BEFORE ]] && receivers=(before receiver)
for tls in $TLS_MODES; do
  start_receiver receiver "$BUILD/receiver/klarna-receiver" "$tls"
  [[ -n $BEFORE ]] && start_receiver before "$BEFORE" "$tls"
  start_bare "$tls"
  start_nginx "$tls"
  servers=(bare nginx "${receivers[@]}")
  for s in "${servers[@]}"; do : >"$DIR/$s-$tls.jsonl"; done
  for _ in $(seq 1 "$RUNS"); do  # interleaved: each round's runs see the same machine
    for s in "${servers[@]}"; do load "$s" "$tls" 0 | tee -a "$DIR/$s-$tls.jsonl"; done
  done
  # Each receiver at half its own maximum rate; as a control, the bare server
  # at the first receiver's half rate (its tail is what the host and the load
  # generator add on their own).
  declare -A HALF
  for r in "${receivers[@]}"; do HALF[$r]=$(python3 -c "print(int($(median rps <"$DIR/$r-$tls.jsonl")/2))"); : >"$DIR/$r-half-$tls.jsonl"; done
  : >"$DIR/bare-half-$tls.jsonl"
  for _ in $(seq 1 "$RUNS"); do
    for r in "${receivers[@]}"; do load "$r" "$tls" "${HALF[$r]}" | tee -a "$DIR/$r-half-$tls.jsonl"; done
    load bare "$tls" "${HALF[receiver]}" | tee -a "$DIR/bare-half-$tls.jsonl"
  done
  for r in "${receivers[@]}"; do
    python3 - "$DIR" "$tls" "$r" "$(awk '/VmHWM/ {print $2}' "/proc/${PID[$r]}/status")" <<'PY'
import json, statistics, sys
d, tls, r, rss = sys.argv[1:]
rows = lambda s: [json.loads(l) for l in open(f"{d}/{s}-{tls}.jsonl")]
med = lambda xs, k: statistics.median(x[k] for x in xs)
mine, bare, nginx = rows(r), rows("bare"), rows("nginx")
half, bare_half = rows(f"{r}-half"), rows("bare-half")
ratio = lambda ref: round(statistics.median(m["rps"] / x["rps"] for m, x in zip(mine, ref)), 3)
print(json.dumps({"summary": r, "tls": tls == "true", "rps_median": med(mine, "rps"),
  "bare_rps_median": med(bare, "rps"), "nginx_rps_median": med(nginx, "rps"),
  "ratio_to_bare": ratio(bare), "ratio_to_nginx": ratio(nginx),
  "ctxsw_per_request": med(mine, "ctxsw_per_request"),
  "bare_ctxsw_per_request": med(bare, "ctxsw_per_request"),
  "nginx_ctxsw_per_request": med(nginx, "ctxsw_per_request"),
  "cpu_us_per_request": med(mine, "cpu_us_per_request"),
  "bare_cpu_us_per_request": med(bare, "cpu_us_per_request"),
  "nginx_cpu_us_per_request": med(nginx, "cpu_us_per_request"),
  "half_rate": half[0]["target_rate"], "p50_ms_at_half": med(half, "p50_ms"),
  "p99_ms_at_half": med(half, "p99_ms"), "bare_p99_ms_at_half": med(bare_half, "p99_ms"),
  "peak_rss_mib": round(int(rss) / 1024, 1),
  "steal_pct_per_run": [x["steal_pct"] for x in mine],
  "load_avg_1m_per_run": [x["load_avg_1m"] for x in mine],
  "steal_pct_median_all_runs": med(mine + bare + nginx + half, "steal_pct")}))
PY
  done
  if [[ ${PERF:-0} == 1 ]]; then for r in "${receivers[@]}"; do profile "$r" "$tls"; done; fi
  kill "${PID[receiver]}" "${PID[bare]}" "$NGINX_MASTER" ${BEFORE:+"${PID[before]}"}
  wait "${PID[receiver]}" "${PID[bare]}" "$NGINX_MASTER" ${BEFORE:+"${PID[before]}"} 2>/dev/null || true
done
