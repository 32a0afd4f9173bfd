# Sourced by run-demo.sh: klarna-sim driving signed webhooks into the receiver
# (customer journeys v1 and v2, disputes, settlements; a few duplicated and
# reordered deliveries, as Klarna does), until Ctrl-C. The sim also plays the
# merchant backend (merchant_actions) so payments get captured; /v2 calls use
# the sim's default key.
setsid "$BUILD/sim/klarna-sim" --port "$SIM_PORT" --port-file "$RUN_DIR/sim.json" \
  --webhook-url "https://127.0.0.1:$RECEIVER_PORT/webhooks/klarna" \
  --signing-key-id "$KEY_ID" --signing-key-file "$RUN_DIR/signing-key" \
  --journeys 20 --rate 2 \
  --set 'scenario.mix=["approve:4","decline","expire","cancel","step-up"]' \
  --set 'scenario.versions=["v1","v2"]' --set scenario.disputes=2 --set scenario.settlements=1 \
  --set scenario.repeat=true --set scenario.merchant_actions=true \
  --duplicate-percent 5 --reorder-percent 5 >"$RUN_DIR/sim.log" 2>&1 &
pids+=($!)
wait_for_file "$RUN_DIR/sim.json"
DEMO_INFO+="  klarna-sim         http://127.0.0.1:$SIM_PORT  (introspection: /_sim/webhooks, /_sim/calls, /_sim/scenarios)
                     /v2 calls need: -H 'Authorization: Basic klarna-sim-api-key'
"
