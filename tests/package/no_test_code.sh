#!/usr/bin/env bash
# no_test_code.sh BINARY...: none of them defines the embedded Kafka's
# accept()/accept4() wrappers or any other symbol of kpay_embedded_kafka.
set -euo pipefail
status=0
for bin in "$@"; do
  # Defined (not undefined "U") symbols only: libc's accept is imported by name.
  found=$(nm -C --defined-only "$bin" | grep -E ' (accept|accept4)$|EmbeddedKafka' || true)
  if [[ -n "$found" ]]; then
    echo "FAIL: $bin carries test code:"
    echo "$found"
    status=1
  else
    echo "ok: $bin"
  fi
done
exit $status
