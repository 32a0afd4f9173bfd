# Sourced by run-demo.sh: klarna-sim, the Klarna double, over HTTPS (the demo
# certificate) with Basic credentials from $RUN_DIR/klarna-api-key. It plays the
# customer only (journeys v1 and v2, disputes, settlements; a few duplicated and
# reordered deliveries, as Klarna does), until Ctrl-C: every confirm, final
# authorization and capture is made by klarna-processor's outbox worker.
if [[ ! -s $RUN_DIR/klarna-api-key ]]; then
  (umask 077 && openssl rand -hex 16 | tr -d '\n' >"$RUN_DIR/klarna-api-key")
fi
setsid "$BUILD/sim/klarna-sim" --port "$SIM_PORT" --port-file "$RUN_DIR/sim.json" \
  --set sim.tls=true --set sim.tls_certificate="$RUN_DIR/tls.crt" \
  --set sim.tls_private_key="$RUN_DIR/tls.key" --set sim.api_key_file="$RUN_DIR/klarna-api-key" \
  --webhook-url "https://127.0.0.1:$RECEIVER_PORT/webhooks/klarna" \
  --signing-key-id "$KEY_ID" --signing-key-file "$RUN_DIR/signing-key" \
  --duplicate-percent 5 --reorder-percent 5 >"$RUN_DIR/sim.log" 2>&1 &
started klarna-sim "$RUN_DIR/sim.log"
wait_for_file "$RUN_DIR/sim.json"
# A second subscription, v1, to the same receiver (through "localhost", so the
# URL differs): Gen 1 payments need its pending-confirmation events, and every
# event then arrives in both versions, as during a migration Klarna supports.
sim_api() {
  curl -sfk "https://127.0.0.1:$SIM_PORT$1" -H "Authorization: Basic $(cat "$RUN_DIR/klarna-api-key")" \
    -H 'Content-Type: application/json' -d "$2" >/dev/null
}
sim_api /v2/notification/webhooks \
  '{"url":"https://localhost:'"$RECEIVER_PORT"'/webhooks/klarna","event_types":["*"],"event_version":"v1","signing_key_id":"'"$KEY_ID"'","status":"ENABLED"}'
# Then the customers: rounds of 20 journeys, 2 per second, until Ctrl-C.
sim_api /_sim/scenarios \
  '{"journeys":20,"rate":2,"mix":["approve:4","decline","expire","cancel","step-up"],"versions":["v1","v2"],"disputes":2,"settlements":1,"repeat":true}'
DEMO_INFO+="  klarna-sim         https://127.0.0.1:$SIM_PORT  (introspection: /_sim/webhooks, /_sim/calls, /_sim/executions)
                     /v2 calls need: -H \"Authorization: Basic \$(cat $RUN_DIR/klarna-api-key)\"
"
