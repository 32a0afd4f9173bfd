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
#   scripts/receiver-instructions.sh [build-dir] [receiver-binary...]
#   env: RATE=500 SECONDS_PER_RUN=6 CONNECTIONS=16 TLS_MODES="false true"
# Binaries default to build-dir/receiver/klarna-receiver; pass an older build's
# binary too to compare (e.g. main's, copied aside).
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
shift || true
BINARIES=("$@")
[[ ${#BINARIES[@]} -gt 0 ]] || BINARIES=("$BUILD/receiver/klarna-receiver")
RATE=${RATE:-500}
SECS=${SECONDS_PER_RUN:-6}
CONN=${CONNECTIONS:-16}
TLS_MODES=${TLS_MODES:-false true}
command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 1; }
DIR=$(mktemp -d /tmp/kpay-instr.XXXXXX)
KEY_ID=krn:partner:global:notification:signing-key:bench
SECRET=bench-signing-key-NOT-REAL
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_file() { for _ in $(seq 1 1200); do [[ -s $1 ]] && return 0; sleep 0.05; done; echo "no $1" >&2; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$DIR/tls.key" -out "$DIR/tls.crt" 2>/dev/null
"$BUILD/tools/klarna-embedded-kafka" --partitions 4 --topic klarna.payment-requests \
  --topic klarna.dead-letter --bootstrap-file "$DIR/bootstrap" >"$DIR/kafka.log" 2>&1 &
pids+=($!)
wait_file "$DIR/bootstrap"
printf '%s' "$SECRET" >"$DIR/secret"
"$BUILD/tools/klarnactl" --set keys.database="$DIR/keys.db" keys add --id "$KEY_ID" --secret-file "$DIR/secret" >/dev/null

for tls in $TLS_MODES; do
  for i in "${!BINARIES[@]}"; do
    bin=${BINARIES[$i]}
    out="$DIR/callgrind.$i.$tls"
    rm -f "$DIR/port.json"
    valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
      --callgrind-out-file="$out.%p" "$bin" --set receiver.listen_address=127.0.0.1 \
      --set receiver.port=0 --set receiver.tls="$tls" --set receiver.tls_certificate="$DIR/tls.crt" \
      --set receiver.tls_private_key="$DIR/tls.key" --set receiver.port_file="$DIR/port.json" \
      --set keys.database="$DIR/keys.db" --set kafka.bootstrap_servers="$(cat "$DIR/bootstrap")" \
      --set admin.port=0 --set log.level=warn >"$DIR/receiver.$i.$tls.log" 2>&1 &
    vg=$!
    pids+=($vg)
    wait_file "$DIR/port.json"
    port=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['port'])" "$DIR/port.json")
    tls_flag=()
    [[ $tls == true ]] && tls_flag=(--tls)
    # Connections opened (and TLS handshakes done) in the unmeasured warm-up.
    "$BUILD/bench/receiver/receiver_loadgen" --port "$port" "${tls_flag[@]}" --connections "$CONN" \
      --seconds "$SECS" --warmup 3 --rate "$RATE" --key-id "$KEY_ID" --secret "$SECRET" \
      >"$DIR/run.$i.$tls.json" &
    lg=$!
    sleep 3.2
    callgrind_control -i on "$vg" >/dev/null
    wait "$lg" || { echo "load generator failed: $(cat "$DIR/run.$i.$tls.json")" >&2; exit 1; }
    callgrind_control -i off "$vg" >/dev/null
    kill -TERM "$vg"
    wait "$vg" 2>/dev/null || true
    python3 - "$DIR/run.$i.$tls.json" "$bin" "$tls" "$out" <<'PY'
import glob, json, re, sys
run, binary, tls, prefix = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
n = run["completed"]
if n == 0 or run["statuses"].get("200", 0) != n:
    sys.exit(f"{n} answers, statuses {run['statuses']}: not all 200")
# The window counted (instrumentation on → off) spans the measured window and
# a little more; requests are counted over the measured window, so the
# per-request figure is slightly high (the same way for every binary).
by_thread = {}
for f in glob.glob(prefix + ".*"):
    text = open(f, errors="replace").read()
    m = re.search(r"^totals:\s+(\d+)", text, re.M)
    if not m:
        continue
    # callgrind numbers threads, it does not name them: the I/O threads are
    # those running connections; the rest is librdkafka's threads (almost all
    # of it the broker thread; librdkafka has no symbols to tell them apart),
    # the main thread and the Kafka prober.
    name = "kpay-io" if "run_connection" in text else "librdkafka+other"
    by_thread[name] = by_thread.get(name, 0) + int(m.group(1))
total = sum(by_thread.values())
print(json.dumps({"binary": binary, "tls": tls == "true", "requests": n, "rate": run["target_rate"],
                  "instructions_per_request": round(total / n),
                  "by_thread": {k: round(v / n) for k, v in sorted(by_thread.items(),
                                                                    key=lambda kv: -kv[1])}}))
PY
  done
done
