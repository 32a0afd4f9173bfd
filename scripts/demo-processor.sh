# Sourced by run-demo.sh: klarna-processor consuming the receiver's topics, its
# outbox worker calling the Klarna double (klarna-sim, started next on
# $SIM_PORT) over HTTPS with the demo certificate as CA. The demo lets unsigned
# commands through (commands.allow_unsigned, logged loudly at start): never in
# production.
#   STORE=sqlite (default): one processor, state in $RUN_DIR/state.db.
#   STORE=postgresql: TWO processors (proc-a, proc-b) in one consumer group on
#     the demo's PostgreSQL ($PG_DSN, demo-postgres.sh), sharing the state:
#     the partitions split between them, each claims its own outbox rows
#     (settlement fetches too; the settlement watch runs on one of them).
if [[ ! -s $RUN_DIR/klarna-api-key ]]; then
  (umask 077 && openssl rand -hex 16 | tr -d '\n' >"$RUN_DIR/klarna-api-key")
fi
# start_processor NAME ADMIN_PORT LOG [--set key=value …]
start_processor() {
  local name=$1 admin=$2 log=$3
  shift 3
  setsid "$BUILD/processor/klarna-processor" \
    --set kafka.bootstrap_servers="$BOOTSTRAP" --set admin.port="$admin" \
    --set klarna.environment=custom --set klarna.base_url="https://127.0.0.1:$SIM_PORT" \
    --set klarna.ca_file="$RUN_DIR/tls.crt" --set klarna.credentials_file="$RUN_DIR/klarna-api-key" \
    --set capture.default=after_authorization \
    --set commands.senders_database="$RUN_DIR/senders.db" \
    --set commands.allow_unsigned=true "$@" >"$log" 2>&1 &
  started "$name" "$log"
}
if [[ $STORE == postgresql ]]; then
  pg_store=(--set processor.store=postgresql --set postgresql.dsn="$PG_DSN")
  start_processor "klarna-processor proc-a" "$PROCESSOR_ADMIN_PORT" "$RUN_DIR/processor.log" \
    "${pg_store[@]}" --set postgresql.instance=proc-a
  wait_started "admin endpoint on port $PROCESSOR_ADMIN_PORT" admin_up "$PROCESSOR_ADMIN_PORT"
  start_processor "klarna-processor proc-b" "$PROCESSOR2_ADMIN_PORT" "$RUN_DIR/processor-b.log" \
    "${pg_store[@]}" --set postgresql.instance=proc-b
  wait_started "admin endpoint on port $PROCESSOR2_ADMIN_PORT" admin_up "$PROCESSOR2_ADMIN_PORT"
  DEMO_INFO+="  klarna-processor   TWO processors on PostgreSQL, one consumer group:
                     proc-a metrics http://127.0.0.1:$PROCESSOR_ADMIN_PORT/metrics ($RUN_DIR/processor.log)
                     proc-b metrics http://127.0.0.1:$PROCESSOR2_ADMIN_PORT/metrics ($RUN_DIR/processor-b.log)
                     calls to Klarna (the sim): confirm, final authorization, capture (outbox workers)
                     payments: $BUILD/tools/klarnactl --set processor.store=postgresql --set postgresql.dsn='$PG_DSN' payments list
                     settlements: $BUILD/tools/klarnactl --set processor.store=postgresql --set postgresql.dsn='$PG_DSN' settlements list
"
else
  start_processor klarna-processor "$PROCESSOR_ADMIN_PORT" "$RUN_DIR/processor.log" \
    --set processor.database="$RUN_DIR/state.db"
  DEMO_INFO+="  klarna-processor   state in $RUN_DIR/state.db, metrics http://127.0.0.1:$PROCESSOR_ADMIN_PORT/metrics
                     calls to Klarna (the sim): confirm, final authorization, capture (outbox worker)
                     payments: $BUILD/tools/klarnactl --set processor.database=$RUN_DIR/state.db payments list
"
fi
