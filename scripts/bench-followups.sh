#!/usr/bin/env bash
# Benchmarks of the follow-up calls (docs/performance/follow-up-calls.md, "Follow-up calls"):
#   1. worker_bench: final authorizations/s against klarna-sim with 5 ms added
#      latency, 10,000 calls at concurrency 64 vs 300 one at a time (each line
#      also gives steal, load and CPU time over its own measured window);
#   2. loop_bench: webhook → Klarna call latency through receiver, Kafka,
#      processor and worker at 1,000 payments/s;
#   3. processor_bench with and without the worker (calling a klarna-sim that
#      refuses the benchmark's invented tokens), interleaved: the event-apply
#      rate must not fall while the worker works.
# Each line says the host's CPU steal over the run (from /proc/stat).
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
"$(dirname "$0")/bench-build.sh" "$BUILD"  # the bench binaries are outside `all`
RUNS=${RUNS:-3}
EVENTS=${EVENTS:-200000}

steal() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
with_steal() {
  local a b
  a=$(steal)
  "$@"
  b=$(steal)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," ");split(b,y," ");
    printf "  (steal %.1f%%)\n", 100*(y[1]-x[1])/((y[2]-x[2])>0?(y[2]-x[2]):1)}'
}

for _ in $(seq "$RUNS"); do
  with_steal "$BUILD/bench/processor/worker_bench" --calls 10000 --latency-ms 5 --concurrency 64
  with_steal "$BUILD/bench/processor/worker_bench" --calls 300 --latency-ms 5 --concurrency 1
done
for _ in $(seq "$RUNS"); do
  with_steal "$BUILD/bench/processor/loop_bench" --payments 10000 --rate 1000
done

dir=$(mktemp -d /tmp/kpay-bench-followups.XXXXXX)
trap 'kill "$sim_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
(umask 077 && printf 'bench-api-key' >"$dir/api-key")
"$BUILD/sim/klarna-sim" --port 0 --port-file "$dir/sim.json" --set sim.tls=true \
  --set sim.tls_certificate="$dir/cert.pem" --set sim.tls_private_key="$dir/key.pem" \
  --set sim.api_key_file="$dir/api-key" --set sim.log_level=warn >"$dir/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 200); do [[ -s $dir/sim.json ]] && break; sleep 0.05; done
port=$(sed 's/.*"port":\([0-9]*\).*/\1/' "$dir/sim.json")
worker=(--set worker.enabled=true --set klarna.environment=custom
        --set "klarna.base_url=https://127.0.0.1:$port" --set "klarna.ca_file=$dir/cert.pem"
        --set "klarna.credentials_file=$dir/api-key")
for _ in $(seq "$RUNS"); do
  echo "without the worker:"
  with_steal "$BUILD/bench/processor/processor_bench" --events "$EVENTS" --batch-size 2000 --dir "$dir"
  echo "with the worker calling klarna-sim:"
  with_steal "$BUILD/bench/processor/processor_bench" --events "$EVENTS" --batch-size 2000 --dir "$dir" "${worker[@]}"
done
