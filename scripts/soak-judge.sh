#!/usr/bin/env bash
# scripts/soak-judge.sh SOAK.csv OUT.png: the verdict on a soak's samples
# (scripts/soak.sh writes them) and their plot. Exit 1 when a series grows
# without levelling off or passes its bound. The rule (docs/RELIABILITY.md, "Soak"):
#
# Only the samples taken under load count (phase "load"); they are cut into
# thirds by sample count, T1 (warm-up, ignored), T2 and T3. For each judged
# series: growth = mean(T3) - mean(T2); allowance = max(ABS, REL x mean(T2));
# slope2, slope3 = least-squares slopes over T2 and T3 (per minute). A series
# FAILS when growth > allowance and slope3 > 0 and slope3 > slope2 / 2: it is
# still growing at at least half the pace it had, by more than noise allows.
# Growth that levels off (slope3 well below slope2) or stays within the
# allowance passes. With fewer than 30 load samples (5 min at 10 s) the
# thirds are too short to tell warm-up from growth: the figures are printed,
# not judged.
#
#   series                            ABS          REL
#   RSS of receiver, processor        16 MiB       10 %
#   open fds of receiver, processor   8            0
#   threads of receiver, processor    2            0
#   Kafka consumer lag                500 msgs     0
#   state DB bytes per payment        0            25 %   (the DB grows with the payments it holds)
#
# Bounded instead of levelling: the WAL never above SOAK_WAL_BOUND_MIB (640 MiB:
# the processor's store checkpoints at processor.sqlite_checkpoint_mib, 512 MiB
# by default, then truncates the file to journal_size_limit, 128 MiB).
# The sim's RSS, fds and threads are printed, not judged: klarna-sim keeps
# every payment and call for introspection (docs/SIM.md), so it grows by design.
set -euo pipefail
wal_bound=${SOAK_WAL_BOUND_MIB:-640}
csv=${1:?usage: soak-judge.sh SOAK.csv OUT.png}
png=${2:?usage: soak-judge.sh SOAK.csv OUT.png}

verdict=0
awk -F, -v walbound="$wal_bound" '
  function judge(name, col, abs, rel, unit, scale, judged,   i, n1, n2, m2, m3, s2, s3, grow, allow, st) {
    m2 = mean(col, lo2, hi2); m3 = mean(col, lo3, hi3)
    s2 = slope(col, lo2, hi2); s3 = slope(col, lo3, hi3)
    grow = m3 - m2
    allow = abs > rel * m2 ? abs : rel * m2
    if (!judged || n < 30) st = "info"
    else if (grow > allow && s3 > 0 && s3 > s2 / 2) { st = "FAIL"; failed = 1 }
    else st = "ok"
    printf "%-4s %-26s mean %10.2f -> %10.2f %s (allowance %.2f), slope %9.3f -> %9.3f %s/min\n",
           st, name, m2 / scale, m3 / scale, unit, allow / scale, s2 / scale, s3 / scale, unit
  }
  function mean(col, lo, hi,   i, s) { s = 0; for (i = lo; i < hi; i++) s += v[i, col]; return hi > lo ? s / (hi - lo) : 0 }
  function slope(col, lo, hi,   i, sx, sy, sxx, sxy, k, d) {
    sx = sy = sxx = sxy = 0; k = hi - lo
    if (k < 2) return 0
    for (i = lo; i < hi; i++) { sx += t[i]; sy += v[i, col]; sxx += t[i] * t[i]; sxy += t[i] * v[i, col] }
    d = k * sxx - sx * sx
    return d == 0 ? 0 : (k * sxy - sx * sy) / d * 60
  }
  NR == 1 { next }
  $2 == "load" {
    t[n] = $1
    for (c = 3; c <= NF; c++) v[n, c] = $c + 0
    v[n, 100] = $17 > 0 ? $12 / $17 : 0   # DB bytes per payment
    if ($13 > walmax) walmax = $13
    n++
  }
  END {
    if (n == 0) { print "FAIL no samples under load"; exit 1 }
    lo2 = int(n / 3); hi2 = int(2 * n / 3); lo3 = hi2; hi3 = n
    printf "%d samples under load over %.1f min; T2 = samples %d-%d, T3 = %d-%d%s\n", n, (t[n-1] - t[0]) / 60,
           lo2, hi2 - 1, lo3, hi3 - 1, n < 30 ? " (fewer than 30: printed, not judged)" : ""
    judge("receiver RSS", 3, 16384, 0.10, "MiB", 1024, 1)
    judge("receiver open fds", 4, 8, 0, "", 1, 1)
    judge("receiver threads", 5, 2, 0, "", 1, 1)
    judge("processor RSS", 6, 16384, 0.10, "MiB", 1024, 1)
    judge("processor open fds", 7, 8, 0, "", 1, 1)
    judge("processor threads", 8, 2, 0, "", 1, 1)
    judge("kafka consumer lag", 14, 500, 0, "msgs", 1, 1)
    judge("state DB bytes/payment", 100, 0, 0.25, "B", 1, 1)
    judge("sim RSS", 9, 0, 0, "MiB", 1024, 0)
    judge("sim open fds", 10, 0, 0, "", 1, 0)
    judge("sim threads", 11, 0, 0, "", 1, 0)
    judge("state DB size", 12, 0, 0, "MiB", 1048576, 0)
    if (walmax > walbound * 1048576) { printf "FAIL WAL reached %.1f MiB (bound %d MiB)\n", walmax / 1048576, walbound; failed = 1 }
    else printf "ok   WAL at most %.1f MiB (bound %d MiB)\n", walmax / 1048576, walbound
    exit failed
  }' "$csv" || verdict=1

drain_start=$(awk -F, '$2 == "drain" { print $1; exit }' "$csv")
gnuplot <<GP || { echo "FAIL gnuplot could not draw $png"; verdict=1; }
set terminal pngcairo noenhanced size 1500,1100 font 'DejaVu Sans,9'
set output '$png'
set datafile separator ','
set key autotitle columnhead top left
set xlabel 'minutes'
set grid
set offsets 0, 0, graph 0.08, graph 0.08
${drain_start:+set arrow from ${drain_start}/60.0, graph 0 to ${drain_start}/60.0, graph 1 nohead dt 2 lc rgb 'gray'}
set multiplot layout 3,2 title 'klarna soak: $(basename "$(dirname "$csv")") (dashed line: load stops, drain)'
set title 'RSS (MiB)'
plot '$csv' using (\$1/60):(\$3/1024) with lines title 'receiver', '' using (\$1/60):(\$6/1024) with lines title 'processor', '' using (\$1/60):(\$9/1024) with lines title 'sim'
set title 'open file descriptors'
plot '$csv' using (\$1/60):4 with lines title 'receiver', '' using (\$1/60):7 with lines title 'processor', '' using (\$1/60):10 with lines title 'sim'
set title 'threads'
plot '$csv' using (\$1/60):5 with lines title 'receiver', '' using (\$1/60):8 with lines title 'processor', '' using (\$1/60):11 with lines title 'sim'
set title 'state database (MiB)'
plot '$csv' using (\$1/60):(\$12/1048576) with lines title 'state.db', '' using (\$1/60):(\$13/1048576) with lines title 'state.db-wal'
set title 'processor Kafka consumer lag (messages)'
plot '$csv' using (\$1/60):14 with lines title 'lag'
set title 'work done (cumulative)'
set y2tics
plot '$csv' using (\$1/60):15 with lines title 'webhooks accepted', '' using (\$1/60):16 with lines title 'messages consumed', '' using (\$1/60):17 with lines title 'payments', '' using (\$1/60):19 with lines title 'Klarna calls succeeded', '' using (\$1/60):18 axes x1y2 with lines title 'commands sent (right axis)'
unset multiplot
GP
[[ -s $png ]] || { echo "FAIL no plot at $png"; verdict=1; }
exit "$verdict"
