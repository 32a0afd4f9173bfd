#!/usr/bin/env bash
# check_metrics_documented.sh SOURCE_DIR: every metric the daemons register
# (a "kpay_…" name passed to the registry in core/, receiver/, processor/,
# klarna/, storage/) is explained in docs/OPERATIONS.md, and the doc names no
# metric the code does not have (a renamed one left behind).
set -euo pipefail
src=$1
doc=$src/docs/OPERATIONS.md
[[ -f $doc ]] || { echo "FAIL: $doc is missing"; exit 1; }
code=$(grep -rhoE '"kpay_[a-z0-9_]+"' --include='*.cpp' --include='*.hpp' \
  "$src"/core "$src"/receiver "$src"/processor "$src"/klarna "$src"/storage | tr -d '"' | sort -u)
[[ -n $code ]] || { echo "FAIL: no metric registrations found under $src"; exit 1; }
# Names as documented: `kpay_…` in the doc's metric tables (histogram series
# suffixes _bucket/_sum/_count are not separate metrics).
documented=$(grep -oE '`kpay_[a-z0-9_]+' "$doc" | tr -d '`' | sed -E 's/_(bucket|sum|count)$//' | sort -u)
fail=0
for m in $code; do
  grep -qx "$m" <<<"$documented" || { echo "FAIL: $m is registered in the code but not explained in docs/OPERATIONS.md"; fail=1; }
done
for m in $documented; do
  grep -qx "$m" <<<"$code" || { echo "FAIL: docs/OPERATIONS.md names $m, which no code registers"; fail=1; }
done
echo "$(wc -w <<<"$code") metrics registered, all explained in docs/OPERATIONS.md"
exit $fail
