#!/usr/bin/env bash
# Instructions per request of klarna-receiver, counted by callgrind: user-space
# instructions of the receiver's process (its own code, Beast/Asio, OpenSSL,
# librdkafka, libc) per answered webhook, by thread. Unlike req/s or CPU time,
# the count does not move with what else runs on the machine (kernel work —
# syscalls, context switches — is not counted; see scripts/bench-receiver.sh
# for that). Each binary runs under valgrind at a fixed open-loop rate (the
# same for all, low enough for valgrind's ~50× slow-down), the count taken over
# the measured window only; the Kafka acknowledgement comes from the embedded
# Kafka as in the benchmark. A run whose answers are not all 200 fails.
#
# Valgrind's virtual CPU has no SHA extensions: under callgrind OpenSSL runs its
# AVX2 SHA-256 code whatever the host offers, so the HMAC's count (~18k of a
# plain request's) is that code's, not the host's (docs/performance/receiver.md,
# "2026-12-07 (16:05–16:47 UTC)").
#
#   scripts/receiver-instructions.sh [build-dir] [receiver-binary...]
#   env: RATE=500 SECONDS_PER_RUN=6 CONNECTIONS=16 TLS_MODES="false true"
#        BARE=1    also count the bare Beast server (bench/receiver/bare_server.cpp,
#                  2 threads) under the same load, as the reference
#        KAFKA=1   also count the embedded Kafka process (run under callgrind
#                  too, counted over each binary's window)
#        KEEP=1    keep the callgrind files (for callgrind_annotate); their
#                  directory is printed
# Binaries default to build-dir/receiver/klarna-receiver; pass an older build's
# binary too to compare (e.g. main's, copied aside). Each binary's line: the
# instructions per request of its process, by thread (kpay-io: the I/O
# threads; librdkafka+other: librdkafka's threads, almost all of it the broker
# thread, the main thread and the Kafka prober) and, with KAFKA=1, of the
# embedded Kafka.
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
"$(dirname "$0")/bench-build.sh" "$BUILD"  # the bench binaries are outside `all`
shift || true
BINARIES=("$@")
[[ ${#BINARIES[@]} -gt 0 ]] || BINARIES=("$BUILD/receiver/klarna-receiver")
[[ ${BARE:-0} == 1 ]] && BINARIES=("$BUILD/bench/receiver/bare_beast_server" "${BINARIES[@]}")
RATE=${RATE:-500}
SECS=${SECONDS_PER_RUN:-6}
CONN=${CONNECTIONS:-16}
TLS_MODES=${TLS_MODES:-false true}
BARE=${BARE:-0}
KAFKA=${KAFKA:-0}
KEEP=${KEEP:-0}
command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 1; }
DIR=$(mktemp -d /tmp/kpay-instr.XXXXXX)
KEY_ID=krn:partner:global:notification:signing-key:bench
SECRET=bench-signing-key-NOT-REAL
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $KEEP == 1 ]]; then echo "callgrind files kept in $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
wait_file() { for _ in $(seq 1 1200); do [[ -s $1 ]] && return 0; sleep 0.05; done; echo "no $1" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$DIR/tls.key" -out "$DIR/tls.crt" 2>/dev/null
kafka_cmd=("$BUILD/tools/klarna-embedded-kafka")
[[ $KAFKA == 1 ]] && kafka_cmd=(valgrind --tool=callgrind --instr-atstart=no
  --callgrind-out-file="$DIR/callgrind.kafka.%p" "${kafka_cmd[@]}")
"${kafka_cmd[@]}" --partitions 4 --topic klarna.payment-requests \
  --topic klarna.dead-letter --bootstrap-file "$DIR/bootstrap" >"$DIR/kafka.log" 2>&1 &
KAFKA_PID=$!
pids+=("$KAFKA_PID")
kafka_dumps=0
wait_file "$DIR/bootstrap"
printf '%s' "$SECRET" >"$DIR/secret"
"$BUILD/tools/klarnactl" --set keys.database="$DIR/keys.db" keys add --id "$KEY_ID" --secret-file "$DIR/secret" >/dev/null

for tls in $TLS_MODES; do
  for i in "${!BINARIES[@]}"; do
    bin=${BINARIES[$i]}
    out="$DIR/callgrind.$i.$tls"
    rm -f "$DIR/port.json" "$DIR/bare.port"
    if [[ $(basename "$bin") == bare_beast_server ]]; then
      bare_tls=()
      [[ $tls == true ]] && bare_tls=(--tls-certificate "$DIR/tls.crt" --tls-private-key "$DIR/tls.key")
      valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
        --callgrind-out-file="$out.%p" "$bin" --threads 2 --port-file "$DIR/bare.port" \
        "${bare_tls[@]}" >"$DIR/receiver.$i.$tls.log" 2>&1 &
      vg=$!
      pids+=("$vg")
      wait_file "$DIR/bare.port"
      port=$(cat "$DIR/bare.port")
    else
      valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
        --callgrind-out-file="$out.%p" "$bin" --set receiver.listen_address=127.0.0.1 \
        --set receiver.port=0 --set receiver.tls="$tls" --set receiver.tls_certificate="$DIR/tls.crt" \
        --set receiver.tls_private_key="$DIR/tls.key" --set receiver.port_file="$DIR/port.json" \
        --set keys.database="$DIR/keys.db" --set kafka.bootstrap_servers="$(cat "$DIR/bootstrap")" \
        --set admin.port=0 --set log.level=warn >"$DIR/receiver.$i.$tls.log" 2>&1 &
      vg=$!
      pids+=("$vg")
      wait_file "$DIR/port.json"
      port=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['port'])" "$DIR/port.json")
    fi
    tls_flag=()
    [[ $tls == true ]] && tls_flag=(--tls)
    # Connections opened (and TLS handshakes done) in the unmeasured warm-up.
    "$BUILD/bench/receiver/receiver_loadgen" --port "$port" "${tls_flag[@]}" --connections "$CONN" \
      --seconds "$SECS" --warmup 3 --rate "$RATE" --key-id "$KEY_ID" --secret "$SECRET" \
      >"$DIR/run.$i.$tls.json" &
    lg=$!
    sleep 3.2
    if [[ $KAFKA == 1 ]]; then callgrind_control -z "$KAFKA_PID" >/dev/null; callgrind_control -i on "$KAFKA_PID" >/dev/null; fi
    callgrind_control -i on "$vg" >/dev/null
    wait "$lg" || { echo "load generator failed: $(cat "$DIR/run.$i.$tls.json")" >&2; exit 1; }
    callgrind_control -i off "$vg" >/dev/null
    kafka_dump=""
    if [[ $KAFKA == 1 ]]; then
      callgrind_control -i off "$KAFKA_PID" >/dev/null
      callgrind_control -d "$KAFKA_PID" >/dev/null
      kafka_dumps=$((kafka_dumps + 1))
      kafka_dump="$DIR/callgrind.kafka.$KAFKA_PID.$kafka_dumps"
      [[ $(basename "$bin") == bare_beast_server ]] && kafka_dump=""
    fi
    kill -TERM "$vg"
    wait "$vg" 2>/dev/null || true
    python3 - "$DIR/run.$i.$tls.json" "$bin" "$tls" "$out" "$kafka_dump" <<'PY'
import glob, json, re, sys
run, binary, tls, prefix = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
kafka_dump = sys.argv[5]
n = run["completed"]
if n == 0 or run["statuses"].get("200", 0) != n:
    sys.exit(f"{n} answers, statuses {run['statuses']}: not all 200")
# The window counted (instrumentation on → off) is a little wider than the
# load generator's measured window, and a server under valgrind lags behind
# the load by a varying amount: the requests it served in the window are
# counted in it, as the answers its I/O threads sent (one sendmsg each; the
# Kafka traffic is the broker thread's).
def calls_to(text, name):
    names, calls, target = {}, 0, None
    for line in text.splitlines():
        if line.startswith("cfn="):
            m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
            if m.group(2): names[m.group(1)] = m.group(2)
            target = names.get(m.group(1))
        elif line.startswith("fn="):
            m = re.match(r"fn=\((\d+)\)(?: (.*))?", line)
            if m and m.group(2): names[m.group(1)] = m.group(2)
        elif line.startswith("calls=") and target == name:
            calls += int(line.split("=")[1].split()[0])
    return calls
by_thread, answers = {}, 0
for f in glob.glob(prefix + ".*"):
    text = open(f, errors="replace").read()
    m = re.search(r"^totals:\s+(\d+)", text, re.M)
    if not m:
        continue
    # callgrind numbers threads, it does not name them: the I/O threads are
    # those running connections; the rest is librdkafka's threads (almost all
    # of it the broker thread; librdkafka has no symbols to tell them apart),
    # the main thread and the Kafka prober.
    name = "kpay-io" if "run_connection" in text or "bare_beast_server" in binary else "librdkafka+other"
    by_thread[name] = by_thread.get(name, 0) + int(m.group(1))
    if name == "kpay-io":
        answers += calls_to(text, "sendmsg")
if answers < n:
    sys.exit(f"{answers} answers sent in the counted window, fewer than the {n} measured")
n = answers
total = sum(by_thread.values())
line = {"binary": binary, "tls": tls == "true", "requests": n, "measured": run["completed"],
        "rate": run["target_rate"],
        "instructions_per_request": round(total / n),
        "by_thread": {k: round(v / n) for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1])}}
if kafka_dump:
    # The embedded Kafka's process, counted over the same window (its dump
    # after the receiver's window: all its threads in one file).
    kafka_total = 0
    for f in glob.glob(kafka_dump + "*"):
        m = re.search(r"^totals:\s+(\d+)", open(f, errors="replace").read(), re.M)
        kafka_total += int(m.group(1)) if m else 0
    line["embedded_kafka_per_request"] = round(kafka_total / n)
print(json.dumps(line))
PY
  done
done
