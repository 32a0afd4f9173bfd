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
  --journeys 20 --rate 2 \
  --set 'scenario.mix=["approve:4","decline","expire","cancel","step-up"]' \
  --set 'scenario.versions=["v1","v2"]' --set scenario.disputes=2 --set scenario.settlements=1 \
  --set scenario.repeat=true --set scenario.merchant_actions=false \
  --duplicate-percent 5 --reorder-percent 5 >"$RUN_DIR/sim.log" 2>&1 &
pids+=($!)
wait_for_file "$RUN_DIR/sim.json"
DEMO_INFO+="  klarna-sim         https://127.0.0.1:$SIM_PORT  (introspection: /_sim/webhooks, /_sim/calls, /_sim/executions)
                     /v2 calls need: -H \"Authorization: Basic \$(cat $RUN_DIR/klarna-api-key)\"
"
