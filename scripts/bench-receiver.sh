#!/usr/bin/env bash
# Receiver benchmark: klarna-receiver against two references that only answer
# 200 — a bare Beast server (bench/receiver/bare_server.cpp, 2 threads) and
# nginx `return 200` (one worker) — and, when RECEIVER_BEFORE names another
# klarna-receiver binary (an older build), that one too. Same load generator,
# interleaved runs (each run of a round sees the same machine), plain HTTP and
# TLS. Kafka acknowledgement comes from the embedded Kafka in its own process.
#
# Every load run prints the loadgen's JSON — latency from each request's
# scheduled send time, and `lag_*`: how late the generator itself sent, its
# share of that latency on CPUs it shares with the server — plus, measured on
# the server's process over the measured window: context switches per request
# (voluntary + nonvoluntary, summed over its threads), CPU microseconds per
# request (total and per thread), run-queue wait per request (time its
# threads were runnable with no CPU free, /proc/<pid>/task/*/schedstat), for a
# receiver the embedded Kafka's CPU per request and the share of publishes
# Kafka acknowledged later than 0.5–25 ms (its publish-latency histogram,
# scraped from the admin port), the host's CPU steal and the 1-minute load
# average at its end (other processes on the VM: steal says only what the host
# takes). A run whose answers are not all 200 fails the benchmark. The
# summary per mode gives medians, ratios to both references (median of the
# per-round ratios), p99 at half each receiver's own maximum rate (with the
# whole sweep when RATE_FRACTIONS lists more), and peak RSS.
#
#   scripts/bench-receiver.sh [build-dir]
#   env: RUNS=3 SECONDS_PER_RUN=8 CONNECTIONS=128 TLS_MODES="false true"
#        RECEIVER_ARGS="--set kafka.properties.linger.ms=2"   (extra receiver options)
#        RECEIVER_BEFORE=/path/to/old/klarna-receiver         (compare two builds)
#        BEFORE_ARGS="--set kafka.properties.linger.ms=2"   (options for that one only:
#                 with RECEIVER_BEFORE=build/receiver/klarna-receiver, two settings
#                 of one build side by side)
#        RECEIVER_ENV="MALLOC_CONF=narenas:2"   (environment of this build's
#                 receiver only; BEFORE_ENV the same for RECEIVER_BEFORE's)
#        LOADGEN_PREFIX="taskset -c 1"   (run the generator under it, e.g. pinned)
#        RATE_FRACTIONS="0.1 0.25 0.5 0.75"  (open-loop runs at these fractions of
#                 each receiver's maximum; default 0.5)
#        LOADGEN_ARGS="--threads 2"   (extra receiver_loadgen options)
#        PERF=1   (one more run per receiver under `perf record`; top symbols)
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
"$(dirname "$0")/bench-build.sh" "$BUILD"  # the bench binaries are outside `all`
RUNS=${RUNS:-3}
SECS=${SECONDS_PER_RUN:-8}
WARMUP=2
CONN=${CONNECTIONS:-128}
TLS_MODES=${TLS_MODES:-false true}
BEFORE=${RECEIVER_BEFORE:-}
FRACTIONS=${RATE_FRACTIONS:-0.5}
read -r -a EXTRA_ARGS <<<"${RECEIVER_ARGS:-}"
read -r -a BEFORE_EXTRA <<<"${BEFORE_ARGS:-}"
read -r -a RECEIVER_ENVIRONMENT <<<"${RECEIVER_ENV:-}"
read -r -a BEFORE_ENVIRONMENT <<<"${BEFORE_ENV:-}"
read -r -a LOADGEN_PREFIX <<<"${LOADGEN_PREFIX:-}"
read -r -a LOADGEN_EXTRA <<<"${LOADGEN_ARGS:-}"
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
KAFKA_PID=$!
pids+=($KAFKA_PID)
wait_file "$DIR/bootstrap"
printf '%s' "$SECRET" >"$DIR/secret"
"$BUILD/tools/klarnactl" --set keys.database="$DIR/keys.db" keys add --id "$KEY_ID" --secret-file "$DIR/secret" >/dev/null

declare -A PORT PID ADMIN
start_receiver() {  # $1 = name (receiver|before), $2 = binary, $3 = tls true|false, $4... = options
  rm -f "$DIR/$1.json"
  local environment=("${RECEIVER_ENVIRONMENT[@]}")
  [[ $1 == before ]] && environment=("${BEFORE_ENVIRONMENT[@]}")
  env "${environment[@]}" "$2" --set receiver.listen_address=127.0.0.1 --set receiver.port=0 \
    --set receiver.tls="$3" --set receiver.tls_certificate="$DIR/tls.crt" --set receiver.tls_private_key="$DIR/tls.key" \
    --set receiver.port_file="$DIR/$1.json" --set keys.database="$DIR/keys.db" \
    --set kafka.bootstrap_servers="$(cat "$DIR/bootstrap")" --set admin.port=0 --set log.level=warn \
    "${EXTRA_ARGS[@]}" "${@:4}" >>"$DIR/$1.log" 2>&1 &
  PID[$1]=$!
  pids+=(${PID[$1]})
  wait_file "$DIR/$1.json"
  PORT[$1]=$(port_of "$DIR/$1.json")
  ADMIN[$1]=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['admin_port'])" "$DIR/$1.json")
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

# The server's counters at one instant, as JSON: context switches (voluntary
# + nonvoluntary), CPU ticks and run-queue waits (/proc/…/schedstat: time a
# thread was runnable but found no free CPU) summed over its threads and per
# thread name, and — for a receiver, from its admin port — the buckets of
# kpay_receiver_publish_latency_seconds (publish → Kafka's delivery report).
snapshot() {  # pid [admin-port]
  python3 - "$1" "${2:-}" <<'PY'
import glob, json, re, sys, urllib.request
pid, admin = sys.argv[1], sys.argv[2]
out = {"ctxsw": 0, "preempted": 0, "ticks": 0, "wait_ns": 0, "threads": {}, "waits": {}, "switches": {},
       "publish_buckets": {}}
for task in glob.glob(f"/proc/{pid}/task/*"):
    try:
        status = open(f"{task}/status").read()
        stat = open(f"{task}/stat").read()
        # ns on a CPU, ns waiting in a run queue (runnable, no CPU free), slices
        wait_ns = int(open(f"{task}/schedstat").read().split()[1])
    except OSError:
        continue  # the thread ended meanwhile
    # voluntary: the thread blocked (a wake-up to come); nonvoluntary: preempted
    switches = sum(int(v) for v in re.findall(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M))
    preempted = sum(int(v) for v in re.findall(r"nonvoluntary_ctxt_switches:\s+(\d+)", status))
    out["ctxsw"] += switches + preempted
    out["preempted"] += preempted
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    out["ticks"] += ticks
    # rdk:broker1, rdk:broker2 → rdk:broker; the receiver's I/O threads apart
    name = re.sub(r"\d+$", "", comm) if comm.startswith("rdk:") else comm
    out["threads"][name] = out["threads"].get(name, 0) + ticks
    out["waits"][name] = out["waits"].get(name, 0) + wait_ns
    out["switches"][name] = out["switches"].get(name, 0) + switches
    out["wait_ns"] += wait_ns
if admin:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    for le, n in re.findall(r'kpay_receiver_publish_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', text):
        out["publish_buckets"][le] = float(n)
print(json.dumps(out))
PY
}
load() {  # name tls rate → one JSON line with the server's figures added
  local name=$1 tls_flag=()
  [[ $2 == true ]] && tls_flag=(--tls)
  "${LOADGEN_PREFIX[@]}" "$BUILD/bench/receiver/receiver_loadgen" --port "${PORT[$name]}" "${tls_flag[@]}" --connections "$CONN" \
    --seconds "$SECS" --warmup "$WARMUP" --rate "$3" --key-id "$KEY_ID" --secret "$SECRET" \
    "${LOADGEN_EXTRA[@]}" >"$DIR/run.json" &
  local lg=$!
  sleep "$WARMUP.2"  # the loadgen measures from 200 ms + warm-up after its start
  snapshot "${PID[$name]}" "${ADMIN[$name]:-}" >"$DIR/snap0.json"
  snapshot "$KAFKA_PID" >"$DIR/kafka0.json"
  wait "$lg" || { echo "load generator failed against $name: $(cat "$DIR/run.json")" >&2; exit 1; }
  snapshot "${PID[$name]}" "${ADMIN[$name]:-}" >"$DIR/snap1.json"
  snapshot "$KAFKA_PID" >"$DIR/kafka1.json"
  python3 - "$DIR/run.json" "$name" "$DIR/snap0.json" "$DIR/snap1.json" "$(getconf CLK_TCK)" \
    "$(cut -d' ' -f1 /proc/loadavg)" "$DIR/kafka0.json" "$DIR/kafka1.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
k0, k1 = json.load(open(sys.argv[7])), json.load(open(sys.argv[8]))
name, s0, s1, hz = sys.argv[2], json.load(open(sys.argv[3])), json.load(open(sys.argv[4])), int(sys.argv[5])
load_1m = float(sys.argv[6])
n = run["completed"]
# The benchmark checks its own work: every answer counted is a 200.
if n == 0 or run["statuses"].get("200", 0) != n:
    sys.exit(f"{name}: {n} answers, statuses {run['statuses']}: not all 200")
us = lambda ticks: round(ticks * 1e6 / hz / n, 1)
run.update(server=name, ctxsw_per_request=round((s1["ctxsw"] - s0["ctxsw"]) / n, 3),
           cpu_us_per_request=us(s1["ticks"] - s0["ticks"]), load_avg_1m=load_1m)
# CPU per request by thread (name without its number), the busiest first.
threads = {k: us(v - s0["threads"].get(k, 0)) for k, v in s1["threads"].items()}
if s1["publish_buckets"]:  # the embedded Kafka works only for the receivers
    run["kafka_cpu_us_per_request"] = us(k1["ticks"] - k0["ticks"])
# Time the server's threads waited for a CPU, per request: what sharing the
# 2 cores (with the generator, Kafka, other processes) adds to latency.
run["runqueue_wait_us_per_request"] = round((s1["wait_ns"] - s0["wait_ns"]) / 1e3 / n, 1)
waits = {k: round((v - s0["waits"].get(k, 0)) / 1e3 / n, 1) for k, v in s1["waits"].items()}
run["runqueue_wait_us_per_request_by_thread"] = dict(
    sorted(((k, v) for k, v in waits.items() if v > 0), key=lambda kv: -kv[1]))
sw = {k: round((v - s0["switches"].get(k, 0)) / n, 3) for k, v in s1["switches"].items()}
run["preempted_per_request"] = round((s1["preempted"] - s0["preempted"]) / n, 3)
run["voluntary_ctxsw_per_request_by_thread"] = dict(sorted(((k, v) for k, v in sw.items() if v > 0),
                                                 key=lambda kv: -kv[1]))
run["cpu_us_per_request_by_thread"] = dict(sorted(((k, v) for k, v in threads.items() if v > 0),
                                                  key=lambda kv: -kv[1]))
b0, b1 = s0["publish_buckets"], s1["publish_buckets"]
if b1:  # share of this run's publishes acknowledged later than each bound
    total = b1["+Inf"] - b0.get("+Inf", 0)
    if total > 0:
        run["publish_over_ms_pct"] = {
            str(round(float(le) * 1000, 1)): round(100 * (1 - (b1[le] - b0.get(le, 0)) / total), 2)
            for le in b1 if le != "+Inf" and 0.0005 <= float(le) <= 0.025}
        run["publish_over_5ms_pct"] = run["publish_over_ms_pct"].get("5.0", 0.0)
print(json.dumps(run))
PY
}
rate_at() { python3 -c "print(int($1 * $2))"; }  # max-rate fraction → req/s
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
  [[ -n $BEFORE ]] && start_receiver before "$BEFORE" "$tls" "${BEFORE_EXTRA[@]}"
  start_bare "$tls"
  start_nginx "$tls"
  servers=(bare nginx "${receivers[@]}")
  for s in "${servers[@]}"; do : >"$DIR/$s-$tls.jsonl"; done
  for _ in $(seq 1 "$RUNS"); do  # interleaved: each round's runs see the same machine
    for s in "${servers[@]}"; do load "$s" "$tls" 0 | tee -a "$DIR/$s-$tls.jsonl"; done
  done
  # Each receiver at fractions of its own maximum rate (half by default; a
  # sweep with RATE_FRACTIONS); as a control, the bare server at the first
  # receiver's rate (its tail is what the host and the load generator add on
  # their own).
  declare -A MAXRATE
  for r in "${receivers[@]}"; do MAXRATE[$r]=$(median rps <"$DIR/$r-$tls.jsonl"); done
  for f in $FRACTIONS; do
    for s in "${receivers[@]}" bare; do : >"$DIR/$s-at$f-$tls.jsonl"; done
    for _ in $(seq 1 "$RUNS"); do
      for r in "${receivers[@]}"; do
        load "$r" "$tls" "$(rate_at "${MAXRATE[$r]}" "$f")" | tee -a "$DIR/$r-at$f-$tls.jsonl"
      done
      load bare "$tls" "$(rate_at "${MAXRATE[receiver]}" "$f")" | tee -a "$DIR/bare-at$f-$tls.jsonl"
    done
  done
  for r in "${receivers[@]}"; do
    python3 - "$DIR" "$tls" "$r" "$(awk '/VmHWM/ {print $2}' "/proc/${PID[$r]}/status")" "$FRACTIONS" <<'PY'
import json, statistics, sys
d, tls, r, rss, fractions = sys.argv[1:]
rows = lambda s: [json.loads(l) for l in open(f"{d}/{s}-{tls}.jsonl")]
med = lambda xs, k: statistics.median(x[k] for x in xs)
mine, bare, nginx = rows(r), rows("bare"), rows("nginx")
ratio = lambda ref: round(statistics.median(m["rps"] / x["rps"] for m, x in zip(mine, ref)), 3)
# Per fraction of the maximum rate: medians of the receiver's runs and of the
# bare server's at the same rate. lag = how late the generator itself sent.
sweep = []
for f in fractions.split():
    at, bare_at = rows(f"{r}-at{f}"), rows(f"bare-at{f}")
    sweep.append({"fraction": float(f), "rate": at[0]["target_rate"],
                  "p50_ms": med(at, "p50_ms"), "p90_ms": med(at, "p90_ms"),
                  "p99_ms": med(at, "p99_ms"), "p99_ms_runs": [x["p99_ms"] for x in at],
                  "lag_p99_ms": med(at, "lag_p99_ms"),
                  "p99_without_lag_ms": med(at, "p99_without_lag_ms"),
                  "publish_over_5ms_pct": med(at, "publish_over_5ms_pct"),
                  "cpu_us_per_request": med(at, "cpu_us_per_request"),
                  "kafka_cpu_us_per_request": med(at, "kafka_cpu_us_per_request"),
                  "loadgen_cpu_us_per_request": med(at, "loadgen_cpu_us_per_request"),
                  "ctxsw_per_request": med(at, "ctxsw_per_request"),
                  "runqueue_wait_us_per_request": med(at, "runqueue_wait_us_per_request"),
                  "bare_p99_ms": med(bare_at, "p99_ms"), "bare_lag_p99_ms": med(bare_at, "lag_p99_ms"),
                  "bare_p99_without_lag_ms": med(bare_at, "p99_without_lag_ms"),
                  "bare_cpu_us_per_request": med(bare_at, "cpu_us_per_request"),
                  "steal_pct_per_run": [x["steal_pct"] for x in at]})
half = next((x for x in sweep if x["fraction"] == 0.5), None)
at_all = [x for f in fractions.split() for x in rows(f"{r}-at{f}") + rows(f"bare-at{f}")]
print(json.dumps({"summary": r, "tls": tls == "true", "rps_median": med(mine, "rps"),
  "bare_rps_median": med(bare, "rps"), "nginx_rps_median": med(nginx, "rps"),
  "ratio_to_bare": ratio(bare), "ratio_to_nginx": ratio(nginx),
  "ctxsw_per_request": med(mine, "ctxsw_per_request"),
  "bare_ctxsw_per_request": med(bare, "ctxsw_per_request"),
  "nginx_ctxsw_per_request": med(nginx, "ctxsw_per_request"),
  "cpu_us_per_request": med(mine, "cpu_us_per_request"),
  "bare_cpu_us_per_request": med(bare, "cpu_us_per_request"),
  "nginx_cpu_us_per_request": med(nginx, "cpu_us_per_request"),
  "half_rate": half and half["rate"], "p50_ms_at_half": half and half["p50_ms"],
  "p99_ms_at_half": half and half["p99_ms"], "lag_p99_ms_at_half": half and half["lag_p99_ms"],
  "p99_without_lag_ms_at_half": half and half["p99_without_lag_ms"],
  "bare_p99_ms_at_half": half and half["bare_p99_ms"],
  "sweep": sweep,
  "peak_rss_mib": round(int(rss) / 1024, 1),
  "steal_pct_per_run": [x["steal_pct"] for x in mine],
  "load_avg_1m_per_run": [x["load_avg_1m"] for x in mine],
  "steal_pct_median_all_runs": med(mine + bare + nginx + at_all, "steal_pct")}))
PY
  done
  if [[ ${PERF:-0} == 1 ]]; then for r in "${receivers[@]}"; do profile "$r" "$tls"; done; fi
  kill "${PID[receiver]}" "${PID[bare]}" "$NGINX_MASTER" ${BEFORE:+"${PID[before]}"}
  wait "${PID[receiver]}" "${PID[bare]}" "$NGINX_MASTER" ${BEFORE:+"${PID[before]}"} 2>/dev/null || true
done
