#!/usr/bin/env bash
# scripts/dashboard-screenshot.sh [BUILD_DIR] [OUT.png]: the Grafana dashboard
# (config/grafana/klarna.json) drawn from a real run, for docs/OPERATIONS.md.
#
# Grafana is not a Debian package, so: the `make run` demo (scripts/run-demo.sh,
# DEMO_SECONDS long) runs with its daemons scraped every 2 s by a real
# Prometheus (Debian's binary, started here in a temporary directory, never as
# a service); meanwhile the sim answers 20 % of captures with 429 and one
# signed but unparseable webhook a second is sent (a dead letter). After the
# run every panel's queries are evaluated by that Prometheus
# (/api/v1/query_range, $__rate_interval = 10s) and gnuplot draws each panel's
# series, titled and labelled as the dashboard does, into one PNG.
# Environment: DEMO_SECONDS (default 90). Needs prometheus, gnuplot, jq, curl
# (scripts/install-deps.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
OUT=${2:-$ROOT/docs/dashboard.png}
DEMO_SECONDS=${DEMO_SECONDS:-90}
DASHBOARD=$ROOT/config/grafana/klarna.json
for tool in prometheus gnuplot jq curl openssl; do
  command -v "$tool" >/dev/null || { echo "dashboard-screenshot: $tool is missing (scripts/install-deps.sh)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/kpay-dashboard.XXXXXX)
prom_pid= demo_pid=
cleanup() {
  [[ -n $demo_pid ]] && kill -TERM "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null
  [[ -n $prom_pid ]] && kill -TERM "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Free loopback ports (the demo's defaults may be taken by another run).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
export RECEIVER_PORT=$(free_port) SIM_PORT=$(free_port)
export RECEIVER_ADMIN_PORT=$(free_port) PROCESSOR_ADMIN_PORT=$(free_port)
PROM_PORT=$(free_port)
export KPAY_RUN_DIR=$work/run DEMO_SECONDS

cat >"$work/prometheus.yml" <<YAML
global: {scrape_interval: 2s, evaluation_interval: 2s}
scrape_configs:
  - job_name: klarna-receiver
    static_configs: [{targets: ["127.0.0.1:$RECEIVER_ADMIN_PORT"]}]
  - job_name: klarna-processor
    static_configs: [{targets: ["127.0.0.1:$PROCESSOR_ADMIN_PORT"]}]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
prom="http://127.0.0.1:$PROM_PORT"
for _ in $(seq 100); do curl -sf "$prom/-/ready" >/dev/null && break; sleep 0.2; done
curl -sf "$prom/-/ready" >/dev/null || { tail "$work/prometheus.log"; exit 1; }

start=$(date +%s)
"$ROOT/scripts/run-demo.sh" "$BUILD" >"$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 300); do [[ -s $KPAY_RUN_DIR/demo-info.txt ]] && break; sleep 0.1; done
[[ -s $KPAY_RUN_DIR/demo-info.txt ]] || { cat "$work/demo.log"; exit 1; }
echo "demo running for $DEMO_SECONDS s; Prometheus on $prom"

# Klarna rate-limits 20 % of captures; one signed, unparseable webhook a second.
curl -sfk "https://127.0.0.1:$SIM_PORT/_sim/faults" -d '{"rules":["payment.transactions.capture:429:20:1"]}' >/dev/null
key_id="krn:partner:global:notification:signing-key:demo-0001"
secret=$(cat "$KPAY_RUN_DIR/signing-key")
while kill -0 "$demo_pid" 2>/dev/null && (($(date +%s) < start + DEMO_SECONDS - 5)); do
  body="not json $(date +%s%N)"
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | cut -d' ' -f2)
  curl -sk -o /dev/null "https://127.0.0.1:$RECEIVER_PORT/webhooks/klarna" \
    -H "Klarna-Signing-Key-Id: $key_id" -H "Klarna-Signature: $sig" -d "$body" || true
  sleep 1
done
wait "$demo_pid" || true
demo_pid=
end=$(date +%s)
sleep 3  # the last scrapes

# One data file per panel target: "time value" blocks, one per series, each
# headed by its legend.
panels=$(jq -c '[.panels[] | select(.type != "row")]' "$DASHBOARD")
count=$(jq length <<<"$panels")
for ((i = 0; i < count; i++)); do
  : >"$work/panel$i.dat"
  jq -c ".[$i].targets[]" <<<"$panels" | while read -r target; do
    expr=$(jq -r .expr <<<"$target" | sed 's/\$__rate_interval/10s/g')
    legend=$(jq -r '.legendFormat // ""' <<<"$target")
    curl -sfG "$prom/api/v1/query_range" --data-urlencode "query=$expr" \
      --data-urlencode "start=$start" --data-urlencode "end=$end" --data-urlencode "step=2" |
      jq -r --arg legend "$legend" --argjson t0 "$start" '
        .data.result[] | . as $s
        | [.values[] | select(.[1] != "NaN" and .[1] != "+Inf")] as $points
        | select($points | length > 0)
        | ($legend | gsub("\\{\\{ *(?<l>[a-zA-Z_]+) *\\}\\}"; ($s.metric[.l] // ""))) as $name
        | "# \($name)", ($points[] | "\(.[0] - $t0) \(.[1])"), "", ""
      ' >>"$work/panel$i.dat"
  done
done

# gnuplot: one plot per panel, three per row, in the dashboard's order.
rows=$(((count + 2) / 3))
{
  echo "set terminal pngcairo noenhanced size 1800,$((rows * 330)) font 'DejaVu Sans,9'"
  echo "set output '$OUT'"
  echo "set multiplot layout $rows,3 title 'Klarna webhooks and payments (config/grafana/klarna.json): make run, ${DEMO_SECONDS} s, 20 % of captures answered 429' font ',12'"
  echo "set key top left font ',7' samplen 1 spacing 0.8"
  echo "set xlabel 'seconds into the run' offset 0,0.5"
  echo "set grid"
  echo "set format y '%g'"
  echo "set xrange [0:$((end - start))]"
  for ((i = 0; i < count; i++)); do
    title=$(jq -r ".[$i].title" <<<"$panels" | sed "s/'/ /g")
    unit=$(jq -r ".[$i].fieldConfig.defaults.unit // \"\"" <<<"$panels")
    echo "set title '$title ($unit)'"
    blocks=$(grep -c '^# ' "$work/panel$i.dat" || true)
    if ((blocks == 0)); then
      echo "unset key; set label 1 'no series in this run' at graph 0.5,0.5 center"
      echo "plot [] [0:1] NaN notitle"
      echo "unset label 1; set key"
    else
      echo "plot for [b=0:$((blocks - 1))] '$work/panel$i.dat' index b using 1:2 with lines lw 1.5 title columnheader(1)"
    fi
  done
  echo "unset multiplot"
} >"$work/plot.gp"
# columnheader(1) reads a block's first line: write the legend as that line.
for ((i = 0; i < count; i++)); do sed -i 's/^# \(.*\)$/"\1" ""/' "$work/panel$i.dat"; done
gnuplot "$work/plot.gp"
echo "wrote $OUT ($count panels, $((end - start)) s of $(jq -r '.status' <(curl -sf "$prom/api/v1/query?query=up")) data)"
grep -E "summary|webhooks received|klarna calls" "$work/demo.log" | head -5 || true
