#!/usr/bin/env bash
# scripts/soak.sh [BUILD_DIR] [OUT_DIR]: `make soak`. The `make run` demo
# (scripts/run-demo.sh: embedded Kafka, klarna-receiver, klarna-processor,
# klarna-sim playing customers) under its load for SOAK_MINUTES, plus one
# refund command (1 cent, `klarnactl refund --wait`) every
# SOAK_COMMAND_SECONDS for a transaction the processor has seen captured.
# Every SOAK_SAMPLE_SECONDS it samples RSS, open fds and threads of the
# receiver, the processor and the sim, the state database and its WAL, the
# processor's Kafka lag and the work done, into OUT_DIR/soak.csv. Then the
# load stops, the system drains, the work is checked and the run is judged
# (docs/RELIABILITY.md, "Soak"): OUT_DIR/soak.png (gnuplot), OUT_DIR/verdict.txt.
# Exit 0 when every check passed, 1 when one failed, 2 on bad usage.
#
# Environment: SOAK_MINUTES (30), SOAK_SECONDS (the load's length in seconds instead of
# SOAK_MINUTES: ctest's short run), SOAK_SAMPLE_SECONDS (10), SOAK_COMMAND_SECONDS (5),
# SOAK_DRAIN_SECONDS (240: how long the drain may take).
# OUT_DIR defaults to BUILD_DIR/soak-<UTC time>.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
OUT=${2:-$BUILD/soak-$(date -u +%Y%m%dT%H%M%SZ)}
SOAK_MINUTES=${SOAK_MINUTES:-30}
SAMPLE=${SOAK_SAMPLE_SECONDS:-10}
COMMAND_EVERY=${SOAK_COMMAND_SECONDS:-5}
DRAIN=${SOAK_DRAIN_SECONDS:-240}
for v in SOAK_MINUTES:$SOAK_MINUTES SOAK_SECONDS:${SOAK_SECONDS:-60} SOAK_SAMPLE_SECONDS:$SAMPLE SOAK_COMMAND_SECONDS:$COMMAND_EVERY \
         SOAK_DRAIN_SECONDS:$DRAIN; do
  [[ ${v#*:} =~ ^[1-9][0-9]*$ ]] || { echo "soak: ${v%%:*} must be a whole number > 0, not '${v#*:}'" >&2; exit 2; }
done
LOAD_SECONDS=${SOAK_SECONDS:-$((SOAK_MINUTES * 60))}
for tool in gnuplot jq curl awk; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is missing (scripts/install-deps.sh)" >&2; exit 2; }
done
for b in receiver/klarna-receiver processor/klarna-processor sim/klarna-sim tools/klarnactl \
         tools/klarna-embedded-kafka; do
  [[ -x $BUILD/$b ]] || { echo "soak: $BUILD/$b is missing (make build)" >&2; exit 2; }
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$OUT/run
rm -rf "$RUN" "$OUT/commands"
mkdir -p "$RUN" "$OUT/commands"
CSV=$OUT/soak.csv
VERDICT=$OUT/verdict.txt
: >"$VERDICT"
say() { echo "soak: $*" | tee -a "$VERDICT"; }

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
export RECEIVER_PORT=$(free_port) SIM_PORT=$(free_port)
export RECEIVER_ADMIN_PORT=$(free_port) PROCESSOR_ADMIN_PORT=$(free_port)
export KPAY_RUN_DIR=$RUN
unset DEMO_SECONDS

demo_pid= commander_pid=
cleanup() {
  [[ -n $commander_pid ]] && kill -TERM "$commander_pid" 2>/dev/null && wait "$commander_pid" 2>/dev/null
  [[ -n $demo_pid ]] && kill -TERM "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null
  return 0
}
trap cleanup EXIT

"$ROOT/scripts/run-demo.sh" "$BUILD" >"$OUT/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 600); do
  [[ -s $RUN/demo-info.txt ]] && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -s $RUN/demo-info.txt ]] || { cat "$OUT/demo.log"; echo "soak: the demo did not start" >&2; exit 1; }
BOOTSTRAP=$(cat "$RUN/bootstrap")
DB=$RUN/state.db
ctl() { "$BUILD/tools/klarnactl" --set processor.database="$DB" --set kafka.bootstrap_servers="$BOOTSTRAP" "$@"; }
sim() { curl -sfk "https://127.0.0.1:$SIM_PORT$1" "${@:2}"; }

# The daemons' pids, found by the run directory on their command lines.
pid_of() { pgrep -f -n -- "$1.*$RUN/$2" || true; }
RECEIVER_PID=$(pid_of klarna-receiver receiver.json)
PROCESSOR_PID=$(pid_of klarna-processor state.db)
SIM_PID=$(pid_of klarna-sim sim.json)
for p in RECEIVER_PID PROCESSOR_PID SIM_PID; do
  [[ -n ${!p} ]] || { echo "soak: no ${p%_PID} process found" >&2; exit 1; }
done

# The commands: one refund of 1 cent every COMMAND_EVERY seconds, each for a
# transaction captured in full and not refunded yet, each followed with
# --wait in the background (its final result lands in commands/N.json).
commander() {
  trap 'wait; exit 0' TERM
  local n=0 txn used=" "
  while :; do
    txn=$(ctl payments list --kind payment_transaction --limit 300 --json 2>/dev/null |
      jq -r 'select(.captured_amount > 0 and .captured_amount == .amount and .refunded_amount == 0) | .id' |
      while read -r id; do [[ $used == *" $id "* ]] || { echo "$id"; break; }; done || true)
    if [[ -n $txn ]]; then
      n=$((n + 1))
      used+="$txn "
      ctl refund --transaction "$txn" --amount 1 --command-id "soak-refund-$n" --wait --timeout 180 --json \
        >"$OUT/commands/$n.json" 2>"$OUT/commands/$n.err" &
    fi
    sleep "$COMMAND_EVERY" &
    wait $!
  done
}

# ---- sampling ------------------------------------------------------------------
proc_fields() {  # PID → "rss_kib,fds,threads" (empty fields when gone)
  local pid=$1 rss threads fds
  if [[ -r /proc/$pid/status ]]; then
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "$rss,$fds,$threads"
  else
    echo ",,"
  fi
}
size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }
metric_sum() {  # NAME [LABEL-FILTER] from stdin: the sum of the samples
  awk -v name="$1" -v filter="${2:-}" '
    $1 ~ "^" name "({|$)" && (filter == "" || index($1, filter) > 0) { s += $2 }
    END { printf "%d", s }'
}
status_json() {
  ctl status --receiver-admin "http://127.0.0.1:$RECEIVER_ADMIN_PORT" \
    --processor-admin "http://127.0.0.1:$PROCESSOR_ADMIN_PORT" --database "$DB" --json 2>/dev/null || true
}
open_calls() {  # Klarna calls pending or in flight
  local n=0 s c
  for s in pending in_flight; do
    c=$(ctl actions list --status "$s" --limit 100000 --json 2>/dev/null | jq '.actions | length' 2>/dev/null) || c=1
    n=$((n + ${c:-1}))
  done
  echo "$n"
}
start=$(date +%s)
echo "t_s,phase,receiver_rss_kib,receiver_fds,receiver_threads,processor_rss_kib,processor_fds,processor_threads,sim_rss_kib,sim_fds,sim_threads,db_bytes,wal_bytes,kafka_lag,webhooks_accepted,events_consumed,payments,commands_sent,calls_succeeded" >"$CSV"
sample() {
  local phase=$1 pm rm payments calls
  pm=$(curl -sf "http://127.0.0.1:$PROCESSOR_ADMIN_PORT/metrics" || true)
  rm=$(curl -sf "http://127.0.0.1:$RECEIVER_ADMIN_PORT/metrics" || true)
  payments=$(status_json | jq -r '.database.payments // 0' 2>/dev/null || echo 0)
  calls=$(metric_sum kpay_processor_klarna_calls_total 'outcome="succeeded"' <<<"$pm")
  echo "$(($(date +%s) - start)),$phase,$(proc_fields "$RECEIVER_PID"),$(proc_fields "$PROCESSOR_PID"),$(proc_fields "$SIM_PID"),$(size_of "$DB"),$(size_of "$DB-wal"),$(metric_sum kpay_processor_consumer_lag <<<"$pm"),$(metric_sum kpay_receiver_requests_total 'outcome="accepted"' <<<"$rm"),$(metric_sum kpay_processor_messages_consumed_total <<<"$pm"),${payments:-0},$(find "$OUT/commands" -name '*.json' | wc -l),$calls" >>"$CSV"
}
alive() { kill -0 "$RECEIVER_PID" 2>/dev/null && kill -0 "$PROCESSOR_PID" 2>/dev/null && kill -0 "$SIM_PID" 2>/dev/null; }

say "$LOAD_SECONDS s of load from $(date -u +%FT%TZ), a sample every $SAMPLE s, a refund command every $COMMAND_EVERY s; output in $OUT"
commander &
commander_pid=$!
deadline=$((start + LOAD_SECONDS))
died=0
while (($(date +%s) < deadline)); do
  sample load
  alive || { died=1; break; }
  sleep "$SAMPLE"
done

# ---- drain ---------------------------------------------------------------------
kill -TERM "$commander_pid" 2>/dev/null || true
wait "$commander_pid" 2>/dev/null || true  # waits for every klarnactl --wait too
commander_pid=
sim /_sim/scenarios -X DELETE >/dev/null || true
drained=0
drain_deadline=$(($(date +%s) + DRAIN))
while (($(date +%s) < drain_deadline)) && ((died == 0)); do
  sample drain
  alive || { died=1; break; }
  running=$(sim /_sim/scenarios | jq -r '.running // false' 2>/dev/null || echo true)
  pending=$(sim '/_sim/webhooks?state=pending&limit=1' | jq -r '.summary.pending' 2>/dev/null || echo 1)
  open_calls=$(open_calls)
  lag=$(tail -n1 "$CSV" | cut -d, -f14)
  settled=0
  if [[ $running == false && $pending == 0 && $open_calls == 0 && $lag == 0 ]]; then
    # Everything the receiver accepted consumed as well (the lag gauge lags a
    # scrape). Read now, after the sim said nothing is pending, receiver before
    # processor: the sample above may predate the last deliveries.
    accepted=$( (curl -sf "http://127.0.0.1:$RECEIVER_ADMIN_PORT/metrics" || true) |
      metric_sum kpay_receiver_requests_total 'outcome="accepted"')
    consumed_events=$( (curl -sf "http://127.0.0.1:$PROCESSOR_ADMIN_PORT/metrics" || true) |
      (grep -v 'topic="klarna.commands"' || true) | metric_sum kpay_processor_messages_consumed_total)
    ((accepted == consumed_events)) && settled=1
  fi
  # Drained when it holds at two checks in a row with the same count.
  if ((settled == 1)) && [[ ${settled_at:-} == "$accepted" ]]; then drained=1; break; fi
  ((settled == 1)) && settled_at=$accepted || settled_at=
  sleep 2
done
sample drain

# ---- the work ------------------------------------------------------------------
fail=0
bad() { say "FAIL: $*"; fail=1; }
ok() { say "ok: $*"; }
((died == 0)) || bad "a component exited during the run (receiver $RECEIVER_PID, processor $PROCESSOR_PID, sim $SIM_PID): see $RUN/*.log"
((drained == 1)) && ok "drained in $(($(date +%s) - deadline)) s" ||
  bad "not drained within $DRAIN s (scenario stopped: ${running:-?}, deliveries pending: ${pending:-?}, calls open: ${open_calls:-?}, lag: ${lag:-?})"

pm=$(curl -sf "http://127.0.0.1:$PROCESSOR_ADMIN_PORT/metrics" || true)
rm=$(curl -sf "http://127.0.0.1:$RECEIVER_ADMIN_PORT/metrics" || true)
accepted=$(metric_sum kpay_receiver_requests_total 'outcome="accepted"' <<<"$rm")
rejected=$(metric_sum kpay_receiver_requests_total 'outcome="rejected"' <<<"$rm")
unavailable=$(metric_sum kpay_receiver_requests_total 'outcome="unavailable"' <<<"$rm")
dead_lettered=$(metric_sum kpay_receiver_requests_total 'outcome="dead_lettered"' <<<"$rm")
consumed_events=$( (grep -v 'topic="klarna.commands"' <<<"$pm" || true) | metric_sum kpay_processor_messages_consumed_total)
consumed_commands=$(metric_sum kpay_processor_messages_consumed_total 'topic="klarna.commands"' <<<"$pm")
applied=$(metric_sum kpay_processor_events_total 'outcome="applied"' <<<"$pm")
duplicates=$(metric_sum kpay_processor_events_total 'outcome="duplicate"' <<<"$pm")
stale=$(metric_sum kpay_processor_events_total 'outcome="stale"' <<<"$pm")
poison=$(metric_sum kpay_processor_poison_messages_total <<<"$pm")
summary=$(sim '/_sim/webhooks?limit=1' | jq -c .summary || echo '{}')
delivered=$(jq -r .delivered <<<"$summary")
say "webhooks: sim delivered $delivered (summary $summary); receiver accepted $accepted, rejected $rejected, unavailable $unavailable, dead-lettered $dead_lettered; processor consumed $consumed_events (applied $applied, duplicate $duplicates, stale $stale, poison $poison)"
((accepted == consumed_events)) && ok "every accepted webhook consumed ($accepted)" ||
  bad "receiver accepted $accepted webhooks, processor consumed $consumed_events"
((accepted >= delivered && delivered > 0)) && ok "every delivery the sim saw acknowledged was accepted" ||
  bad "sim delivered $delivered, receiver accepted $accepted"
[[ $(jq -r .failed <<<"$summary") == 0 ]] && ok "no delivery exhausted Klarna's retries" || bad "deliveries failed: $summary"
((rejected + unavailable + dead_lettered + poison == 0)) && ok "nothing rejected, unavailable or dead-lettered" ||
  bad "rejected $rejected, unavailable $unavailable, dead-lettered $dead_lettered, poison $poison"

sent=$(find "$OUT/commands" -name '*.json' | wc -l)
finals=$(cat "$OUT"/commands/*.json 2>/dev/null | jq -r 'select(.status != null and .status != "accepted") | .status' | sort | uniq -c | tr -s ' ' | tr '\n' ';' || true)
final_count=$( (cat "$OUT"/commands/*.json 2>/dev/null || true) | jq -r 'select(.status != null and .status != "accepted") | .command_id' | sort -u | wc -l)
say "commands: $sent sent, $consumed_commands consumed by the processor, final results: ${finals:-none}"
((sent > 0)) && ((final_count == sent)) && ((consumed_commands == sent)) && ok "every command answered with one final result ($sent)" ||
  bad "$sent commands sent, $consumed_commands consumed, $final_count with a final result (see $OUT/commands/*.err)"

executions=$(sim /_sim/executions || echo '{}')
twice=$(jq '[(.by_idempotency_key // {}) | to_entries[] | select(.value > 1)] | length' <<<"$executions")
say "Klarna calls executed at the sim: $(jq -c .by_route <<<"$executions")"
[[ $twice == 0 ]] && ok "every idempotency key executed at most once" || bad "$twice idempotency keys executed more than once"
calls=$(status_json | jq -c '[(.database.calls // [])[] | "\(.operation) \(.status) \(.count)"]' || true)
say "outbox calls (operation status count): $calls"
[[ $(open_calls) == 0 ]] && ok "no Klarna call pending or in flight" || bad "Klarna calls still open: $(open_calls)"

# ---- stop, plot, judge ------------------------------------------------------------
kill -TERM "$demo_pid" 2>/dev/null || true
wait "$demo_pid" 2>/dev/null || true
demo_pid=
"$ROOT/scripts/soak-judge.sh" "$CSV" "$OUT/soak.png" | tee -a "$VERDICT" || fail=1
((fail == 0)) && say "PASS" || say "FAILED"
say "csv $CSV, plot $OUT/soak.png, logs $RUN/*.log"
exit "$fail"
