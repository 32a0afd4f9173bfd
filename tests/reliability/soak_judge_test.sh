#!/usr/bin/env bash
# The soak's verdict rule (scripts/soak-judge.sh) on made-up samples: flat
# series pass, a leak fails, growth that levels off passes, a fd leak and a
# WAL past its bound fail, a run too short is printed but not judged.
set -euo pipefail
judge=${1:?usage: soak_judge_test.sh scripts/soak-judge.sh}
work=$(mktemp -d /tmp/kpay-soak-judge.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0

# csv NAME SAMPLES AWK-EXPRESSIONS…: one row per sample i (t = 10 i s), the
# receiver/processor/sim columns from the expressions (i and n known).
csv() {
  local name=$1 n=$2 prss=$3 pfds=$4 wal=$5
  awk -v n="$n" -v seed="${#name}" "BEGIN {
    srand(seed)
    print \"t_s,phase,receiver_rss_kib,receiver_fds,receiver_threads,processor_rss_kib,processor_fds,processor_threads,sim_rss_kib,sim_fds,sim_threads,db_bytes,wal_bytes,kafka_lag,webhooks_accepted,events_consumed,payments,commands_sent,calls_succeeded\"
    for (i = 0; i < n; i++) {
      noise = (rand() - 0.5) * 2048
      printf \"%d,load,%d,40,12,%d,%d,20,%d,30,8,%d,%d,%d,%d,%d,%d,%d,%d\n\", 10 * i, 30000 + noise, $prss + noise, $pfds, 50000 + 100 * i, 4096 * 100 * (i + 1), $wal, int(rand() * 20), 50 * i, 50 * i, 100 * (i + 1), i / 2, 10 * i
    }
    printf \"%d,drain,30000,40,12,60000,50,20,60000,30,8,1,0,0,1,1,1,1,1\n\", 10 * n
  }" >"$work/$name.csv"
}
# expect NAME STATUS [PATTERN]: the judge exits STATUS and prints PATTERN.
expect() {
  local name=$1 want=$2 pattern=${3:-} got=0 out
  out=$("$judge" "$work/$name.csv" "$work/$name.png" 2>&1) || got=$?
  if [[ $got != "$want" ]]; then
    echo "FAIL $name: exit $got, expected $want"$'\n'"$out"; fail=1; return
  fi
  if [[ -n $pattern ]] && ! grep -qE "$pattern" <<<"$out"; then
    echo "FAIL $name: no line matching '$pattern'"$'\n'"$out"; fail=1; return
  fi
  [[ -s $work/$name.png ]] || { echo "FAIL $name: no plot"; fail=1; return; }
  echo "ok $name"
}

csv flat 90 60000 50 "4194304"
expect flat 0 '^ok +processor RSS'
csv leak 90 "60000 + 1700 * i" 50 "4194304"            # 10 MiB a minute, all along
expect leak 1 '^FAIL processor RSS'
csv levels 90 "60000 + 40000 * (1 - exp(-i / 12))" 50 "4194304"  # grows, then flat
expect levels 0 '^ok +processor RSS'
csv fds 90 60000 "50 + i" "4194304"                     # one fd more every sample
expect fds 1 '^FAIL processor open fds'
csv wal 90 60000 50 "700 * 1048576"
expect wal 1 '^FAIL WAL reached 700.0 MiB'
csv short 20 "60000 + 1700 * i" "50 + i" "4194304"     # leaking, but only 20 samples
expect short 0 'not judged'
exit "$fail"
