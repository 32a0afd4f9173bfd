# Sourced by run-demo.sh: klarna-processor consuming the receiver's topics into
# a SQLite state store ($RUN_DIR/state.db). Inspect it with
#   build/tools/klarnactl --set processor.database=$RUN_DIR/state.db payments list
setsid "$BUILD/processor/klarna-processor" \
  --set processor.database="$RUN_DIR/state.db" --set kafka.bootstrap_servers="$BOOTSTRAP" \
  --set admin.port="$PROCESSOR_ADMIN_PORT" >"$RUN_DIR/processor.log" 2>&1 &
pids+=($!)
DEMO_INFO+="  klarna-processor   state in $RUN_DIR/state.db, metrics http://127.0.0.1:$PROCESSOR_ADMIN_PORT/metrics
                     payments: $BUILD/tools/klarnactl --set processor.database=$RUN_DIR/state.db payments list
"
