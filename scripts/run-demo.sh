#!/usr/bin/env bash
# `make run`: the embedded default. Starts, on loopback:
#   embedded Kafka (in memory, NOT durable) -> klarna-receiver (HTTPS :8443)
#   -> klarna-processor (SQLite state) and klarna-sim (a Klarna double) driving
#   signed webhooks into the receiver; then `klarnactl top`, the live view, in
#   the foreground. Every process logs to $RUN_DIR/*.log, not the terminal.
# Ctrl-C (or SIGTERM) shows the run's summary, then stops everything in order,
# Kafka last. DEMO_SECONDS=N: stop by itself after N seconds (tests, CI).
# STORE=postgresql: the state in a throwaway local PostgreSQL (demo-postgres.sh,
# stopped and removed at the end) shared by TWO processors in one consumer
# group, instead of one processor on SQLite.
# Ports (each checked free before anything starts): RECEIVER_PORT (8443),
# SIM_PORT (8444), RECEIVER_ADMIN_PORT (9464), PROCESSOR_ADMIN_PORT (9102),
# with STORE=postgresql PROCESSOR2_ADMIN_PORT (9103) for the second processor.
set -euo pipefail

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
RUN_DIR=${KPAY_RUN_DIR:-$PWD/.run}
RECEIVER_PORT=${RECEIVER_PORT:-8443}
RECEIVER_ADMIN_PORT=${RECEIVER_ADMIN_PORT:-9464}
PROCESSOR_ADMIN_PORT=${PROCESSOR_ADMIN_PORT:-9102}
SIM_PORT=${SIM_PORT:-8444}
PROCESSOR2_ADMIN_PORT=${PROCESSOR2_ADMIN_PORT:-9103}
STORE=${STORE:-sqlite}
DEMO_SECONDS=${DEMO_SECONDS:-}
KEY_ID="krn:partner:global:notification:signing-key:demo-0001"

if [[ -n $DEMO_SECONDS && ! $DEMO_SECONDS =~ ^[1-9][0-9]*$ ]]; then
  echo "DEMO_SECONDS must be a whole number of seconds > 0, not '$DEMO_SECONDS'" >&2
  exit 2
fi

if [[ $STORE != sqlite && $STORE != postgresql ]]; then
  echo "STORE must be sqlite (the default) or postgresql, not '$STORE'" >&2
  exit 2
fi

# ---- ports: all free before anything starts -----------------------------------
port_in_use() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}
check_ports() {
  local bad=0 seen=" " entry port var who
  local entries=("RECEIVER_PORT:$RECEIVER_PORT:klarna-receiver (webhooks, HTTPS)"
                 "SIM_PORT:$SIM_PORT:klarna-sim (the Klarna API double, HTTPS)"
                 "RECEIVER_ADMIN_PORT:$RECEIVER_ADMIN_PORT:klarna-receiver's admin endpoint (/metrics, /readyz)"
                 "PROCESSOR_ADMIN_PORT:$PROCESSOR_ADMIN_PORT:klarna-processor's admin endpoint (/metrics, /readyz)")
  [[ $STORE == postgresql ]] &&
    entries+=("PROCESSOR2_ADMIN_PORT:$PROCESSOR2_ADMIN_PORT:the second klarna-processor's admin endpoint")
  for entry in "${entries[@]}"; do
    var=${entry%%:*}; port=${entry#*:}; port=${port%%:*}; who=${entry#*:*:}
    if [[ ! $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
      echo "make run: $var='$port' is not a port (1..65535)" >&2
      bad=1
    elif [[ $seen == *" $port "* ]]; then
      echo "make run: port $port is given twice; $var needs its own (for $who)" >&2
      bad=1
    elif port_in_use "$port"; then
      echo "make run: port $port is already in use; $who needs it." >&2
      echo "          Stop what listens there (ss -ltnp 'sport = :$port') or pick another: $var=<port> make run" >&2
      bad=1
    fi
    seen+="$port "
  done
  return $bad
}
check_ports || exit 1

mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR"/*.port "$RUN_DIR"/*.json "$RUN_DIR"/bootstrap
# The embedded Kafka starts empty on every run (offsets from 0), so a state
# database from an earlier run would hold offsets and payments this Kafka never
# had: each run starts with a fresh one (the signing key store is kept).
rm -f "$RUN_DIR"/state.db "$RUN_DIR"/state.db-wal "$RUN_DIR"/state.db-shm

# Children run in their own sessions (setsid): Ctrl-C reaches only this
# script and the live view; the script then stops them in order, Kafka last,
# so each can finish cleanly against a live Kafka.
pids=() names=() logs=()
top_pid=
PG_DIR=
pg_stop_demo() { :; }  # demo-postgres.sh defines the real one
# Records the process just started in the background ($!).
started() {
  pids+=($!); names+=("$1"); logs+=("$2")
}

stop_all() {
  trap - INT TERM EXIT
  if [[ -n $top_pid ]]; then
    kill -TERM "$top_pid" 2>/dev/null || true  # the live view prints its summary
    wait "$top_pid" 2>/dev/null || true
  fi
  if [[ $STORE == postgresql ]]; then
    # The live view reads proc-a's metrics; what each processor did:
    echo
    echo "Klarna calls answered, per processor (kpay_processor_klarna_calls_total):"
    local who port
    for who in "proc-a:$PROCESSOR_ADMIN_PORT" "proc-b:$PROCESSOR2_ADMIN_PORT"; do
      port=${who#*:}
      echo "  ${who%%:*}  $(curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null |
        awk '/^kpay_processor_klarna_calls_total[{ ]/ {n += $NF} END {printf "%d", n}')"
    done
  fi
  # The settlements the processors fetched and what reconciling them found
  # (klarnactl settlements reconcile is read-only).
  local state=(--set processor.database="$RUN_DIR/state.db")
  [[ $STORE == postgresql ]] && state=(--set processor.store=postgresql --set postgresql.dsn="${PG_DSN:-}")
  if [[ $STORE == postgresql || -s $RUN_DIR/state.db ]]; then
    echo
    echo "settlements:"
    "$BUILD/tools/klarnactl" "${state[@]}" settlements list 2>&1 || true
    echo "reconciliation:"
    "$BUILD/tools/klarnactl" "${state[@]}" settlements reconcile 2>&1 || true
  fi
  echo
  echo "stopping…"
  # Reverse start order: producers of traffic first, Kafka last.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
    echo "  ${names[i]} stopped"
  done
  if [[ $STORE == postgresql ]]; then
    pg_stop_demo
    echo "stopped. Logs: $RUN_DIR/*.log   database: $RUN_DIR/keys.db (signing keys); the payments'"
    echo "PostgreSQL state was throwaway and is removed (its log: $RUN_DIR/postgres.log)"
    return
  fi
  echo "stopped. Logs: $RUN_DIR/*.log   databases: $RUN_DIR/state.db (payments), $RUN_DIR/keys.db (signing keys)"
  echo "inspect: $BUILD/tools/klarnactl --set processor.database=$RUN_DIR/state.db payments list"
}
on_signal() {
  stop_all
  exit 0
}
trap on_signal INT TERM
trap stop_all EXIT

# A component that exited while starting: say which, and show its log's tail.
died() {
  local i=$1 code=0
  wait "${pids[i]}" 2>/dev/null || code=$?
  echo "make run: ${names[i]} exited while starting (exit code $code). Last lines of ${logs[i]}:" >&2
  tail -n 20 "${logs[i]}" >&2 || true
  exit 1
}
# Waits (bounded: 10 s) until `check` succeeds, while the last started process lives.
wait_started() {
  local what=$1; shift
  local i=$((${#pids[@]} - 1))
  for _ in $(seq 1 200); do
    "$@" && return 0
    kill -0 "${pids[i]}" 2>/dev/null || died "$i"
    sleep 0.05
  done
  echo "make run: ${names[i]} did not become ready in 10 s ($what). Last lines of ${logs[i]}:" >&2
  tail -n 20 "${logs[i]}" >&2 || true
  exit 1
}
file_ready() { [[ -s $1 ]]; }
wait_for_file() { wait_started "waiting for $1" file_ready "$1"; }
admin_up() { curl -sf "http://127.0.0.1:$1/healthz" >/dev/null 2>&1; }

# Demo TLS certificate (self-signed, loopback only).
if [[ ! -s $RUN_DIR/tls.crt ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$RUN_DIR/tls.key" -out "$RUN_DIR/tls.crt" 2>/dev/null
fi

# klarna.commands and klarna.command-results too: `klarnactl refund|capture|…
# --wait` against the demo (scripts/soak.sh sends refunds this way).
TOPICS=(klarna.payment-requests klarna.payment-transactions klarna.disputes klarna.settlements
        klarna.accounts klarna.unrouted klarna.dead-letter klarna.payment-states
        klarna.processor-dead-letter klarna.commands klarna.command-results klarna.reconciliation)
topic_args=()
for t in "${TOPICS[@]}"; do topic_args+=(--topic "$t"); done
setsid "$BUILD/tools/klarna-embedded-kafka" --partitions 4 "${topic_args[@]}" \
  --bootstrap-file "$RUN_DIR/bootstrap" >"$RUN_DIR/kafka.log" 2>&1 &
started "embedded Kafka" "$RUN_DIR/kafka.log"
wait_for_file "$RUN_DIR/bootstrap"
BOOTSTRAP=$(cat "$RUN_DIR/bootstrap")

# The demo signing key, shared by the receiver and the simulator.
if [[ ! -s $RUN_DIR/signing-key ]]; then
  openssl rand -hex 32 | tr -d '\n' >"$RUN_DIR/signing-key"
  chmod 600 "$RUN_DIR/signing-key"
fi
# Secret files are owner-only (the receiver refuses them otherwise); a .run/
# from an older build may hold them readable by others.
chmod 600 "$RUN_DIR/tls.key" 2>/dev/null || true
for f in "$RUN_DIR"/keys.db "$RUN_DIR"/keys.db-wal "$RUN_DIR"/keys.db-shm; do
  [[ -e $f ]] && chmod 600 "$f"
done
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
started klarna-receiver "$RUN_DIR/receiver.log"
wait_for_file "$RUN_DIR/receiver.json"

if [[ -x $BUILD/processor/klarna-processor ]]; then
  [[ $STORE == postgresql ]] && source "$(dirname "$0")/demo-postgres.sh"
  source "$(dirname "$0")/demo-processor.sh"
  wait_started "admin endpoint on port $PROCESSOR_ADMIN_PORT" admin_up "$PROCESSOR_ADMIN_PORT"
fi
if [[ -x $BUILD/sim/klarna-sim ]]; then
  source "$(dirname "$0")/demo-sim.sh"
fi

# How klarnactl finds the state: the SQLite file, or the demo's PostgreSQL.
db_args=(--set processor.database="$RUN_DIR/state.db")
[[ $STORE == postgresql ]] && db_args=(--set processor.store=postgresql --set postgresql.dsn="$PG_DSN")
db_words="--set processor.database=$RUN_DIR/state.db"
[[ $STORE == postgresql ]] && db_words="--set processor.store=postgresql --set postgresql.dsn='$PG_DSN'"
cat >"$RUN_DIR/demo-info.txt" <<INFO
  embedded Kafka     $BOOTSTRAP   (in memory, NOT durable)
  klarna-receiver    https://127.0.0.1:$RECEIVER_PORT/webhooks/klarna
                     metrics http://127.0.0.1:$RECEIVER_ADMIN_PORT/metrics
${DEMO_INFO:-}
  logs               $RUN_DIR/*.log
  status             $BUILD/tools/klarnactl ${db_words} status --receiver-admin http://127.0.0.1:$RECEIVER_ADMIN_PORT --processor-admin http://127.0.0.1:$PROCESSOR_ADMIN_PORT
  send one yourself:
    body='{"metadata":{"event_type":"payment.request.state-change.submitted","event_id":"manual-1","event_version":"v2"},"payload":{"payment_request_id":"krn:payment:eu1:request:manual-1"}}'
    sig=\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac "\$(cat $RUN_DIR/signing-key)" | cut -d' ' -f2)
    curl -sk https://127.0.0.1:$RECEIVER_PORT/webhooks/klarna -H "Klarna-Signing-Key-Id: $KEY_ID" -H "Klarna-Signature: \$sig" -d "\$body"
INFO
echo
cat "$RUN_DIR/demo-info.txt"
echo
echo "  (this text is kept in $RUN_DIR/demo-info.txt)   Ctrl-C: summary, then everything stops."
echo

# The live view, in the foreground of the terminal (it shares the script's
# process group, so Ctrl-C reaches it too). Started with & and waited for,
# so a SIGTERM to this script is handled at once as well.
top_args=(--receiver-admin "http://127.0.0.1:$RECEIVER_ADMIN_PORT"
          --processor-admin "http://127.0.0.1:$PROCESSOR_ADMIN_PORT")
[[ -n $DEMO_SECONDS ]] && top_args+=(--duration "$DEMO_SECONDS")
"$BUILD/tools/klarnactl" "${db_args[@]}" top "${top_args[@]}" </dev/null &
top_pid=$!
top_rc=0
wait "$top_pid" || top_rc=$?
top_pid=
stop_all
exit "$top_rc"
