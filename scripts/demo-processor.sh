# Sourced by run-demo.sh: klarna-processor consuming the receiver's topics into
# a SQLite state store ($RUN_DIR/state.db), its outbox worker calling the Klarna
# double (klarna-sim, started next on $SIM_PORT) over HTTPS with the demo
# certificate as CA. The demo lets unsigned commands through
# (commands.allow_unsigned, logged loudly at start): never in production.
# Inspect it with
#   build/tools/klarnactl --set processor.database=$RUN_DIR/state.db payments list
if [[ ! -s $RUN_DIR/klarna-api-key ]]; then
  (umask 077 && openssl rand -hex 16 | tr -d '\n' >"$RUN_DIR/klarna-api-key")
fi
setsid "$BUILD/processor/klarna-processor" \
  --set processor.database="$RUN_DIR/state.db" --set kafka.bootstrap_servers="$BOOTSTRAP" \
  --set admin.port="$PROCESSOR_ADMIN_PORT" \
  --set klarna.environment=custom --set klarna.base_url="https://127.0.0.1:$SIM_PORT" \
  --set klarna.ca_file="$RUN_DIR/tls.crt" --set klarna.credentials_file="$RUN_DIR/klarna-api-key" \
  --set capture.default=after_authorization \
  --set commands.senders_database="$RUN_DIR/senders.db" \
  --set commands.allow_unsigned=true >"$RUN_DIR/processor.log" 2>&1 &
started klarna-processor "$RUN_DIR/processor.log"
DEMO_INFO+="  klarna-processor   state in $RUN_DIR/state.db, metrics http://127.0.0.1:$PROCESSOR_ADMIN_PORT/metrics
                     calls to Klarna (the sim): confirm, final authorization, capture (outbox worker)
                     payments: $BUILD/tools/klarnactl --set processor.database=$RUN_DIR/state.db payments list
"
