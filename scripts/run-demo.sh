#!/usr/bin/env bash
# `make run`: the embedded default. Starts, on loopback:
#   embedded Kafka (in memory, NOT durable) -> klarna-receiver (HTTPS :8443)
#   -> klarna-processor (SQLite state) and klarna-sim (a Klarna double) driving
#   signed webhooks into the receiver. Ctrl-C stops everything cleanly.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
RUN_DIR=${KPAY_RUN_DIR:-$PWD/.run}
RECEIVER_PORT=${RECEIVER_PORT:-8443}
RECEIVER_ADMIN_PORT=${RECEIVER_ADMIN_PORT:-9464}
PROCESSOR_ADMIN_PORT=${PROCESSOR_ADMIN_PORT:-9102}
SIM_PORT=${SIM_PORT:-8444}
KEY_ID="krn:partner:global:notification:signing-key:demo-0001"

# Children run in their own sessions (setsid): Ctrl-C reaches only this
# script, which then stops them in order, Kafka last, so each can finish
# cleanly against a live Kafka.
mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR"/*.port "$RUN_DIR"/*.json "$RUN_DIR"/bootstrap
pids=()

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "stopping…"
  # Reverse start order: producers of traffic first, Kafka last.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "stopped. Logs and databases are in $RUN_DIR"
}
trap stop_all INT TERM EXIT

wait_for_file() {
  local f=$1
  for _ in $(seq 1 200); do [[ -s $f ]] && return 0; sleep 0.05; done
  echo "timed out waiting for $f" >&2
  return 1
}

# Demo TLS certificate (self-signed, loopback only).
if [[ ! -s $RUN_DIR/tls.crt ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$RUN_DIR/tls.key" -out "$RUN_DIR/tls.crt" 2>/dev/null
fi

TOPICS=(klarna.payment-requests klarna.payment-transactions klarna.disputes klarna.settlements
        klarna.accounts klarna.unrouted klarna.dead-letter klarna.payment-states
        klarna.processor-dead-letter)
topic_args=()
for t in "${TOPICS[@]}"; do topic_args+=(--topic "$t"); done
setsid "$BUILD/tools/klarna-embedded-kafka" --partitions 4 "${topic_args[@]}" \
  --bootstrap-file "$RUN_DIR/bootstrap" >"$RUN_DIR/kafka.log" 2>&1 &
pids+=($!)
wait_for_file "$RUN_DIR/bootstrap"
BOOTSTRAP=$(cat "$RUN_DIR/bootstrap")

# The demo signing key, shared by the receiver and the simulator.
if [[ ! -s $RUN_DIR/signing-key ]]; then
  openssl rand -hex 32 | tr -d '\n' >"$RUN_DIR/signing-key"
  chmod 600 "$RUN_DIR/signing-key"
fi
if [[ ! -s $RUN_DIR/keys.db ]] ||
   ! "$BUILD/tools/klarnactl" --set keys.database="$RUN_DIR/keys.db" keys list | grep -q "$KEY_ID"; then
  "$BUILD/tools/klarnactl" --set keys.database="$RUN_DIR/keys.db" keys add --id "$KEY_ID" \
    --secret-file "$RUN_DIR/signing-key" >/dev/null
fi

setsid "$BUILD/receiver/klarna-receiver" \
  --set receiver.listen_address=127.0.0.1 --set receiver.port="$RECEIVER_PORT" \
  --set receiver.tls_certificate="$RUN_DIR/tls.crt" --set receiver.tls_private_key="$RUN_DIR/tls.key" \
  --set receiver.port_file="$RUN_DIR/receiver.json" \
  --set keys.database="$RUN_DIR/keys.db" --set kafka.bootstrap_servers="$BOOTSTRAP" \
  --set admin.port="$RECEIVER_ADMIN_PORT" >"$RUN_DIR/receiver.log" 2>&1 &
pids+=($!)
wait_for_file "$RUN_DIR/receiver.json"

if [[ -x $BUILD/processor/klarna-processor ]]; then
  source "$(dirname "$0")/demo-processor.sh"
fi
if [[ -x $BUILD/sim/klarna-sim ]]; then
  source "$(dirname "$0")/demo-sim.sh"
fi

cat <<INFO

  embedded Kafka     $BOOTSTRAP   (in memory, NOT durable)
  klarna-receiver    https://127.0.0.1:$RECEIVER_PORT/webhooks/klarna
                     metrics http://127.0.0.1:$RECEIVER_ADMIN_PORT/metrics
${DEMO_INFO:-}
  logs               $RUN_DIR/*.log
  send one yourself:
    body='{"metadata":{"event_type":"payment.request.state-change.submitted","event_id":"manual-1","event_version":"v2"},"payload":{"payment_request_id":"krn:payment:eu1:request:manual-1"}}'
    sig=\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac "\$(cat $RUN_DIR/signing-key)" | cut -d' ' -f2)
    curl -sk https://127.0.0.1:$RECEIVER_PORT/webhooks/klarna -H "Klarna-Signing-Key-Id: $KEY_ID" -H "Klarna-Signature: \$sig" -d "\$body"

  Ctrl-C stops everything.
INFO

# Show the flow: accepted events as they are stored.
tail --pid=$$ -n 0 -F "$RUN_DIR/receiver.log" 2>/dev/null | grep --line-buffered '"event stored"' &
pids+=($!)
wait "${pids[0]}"
