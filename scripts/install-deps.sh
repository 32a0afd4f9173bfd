#!/usr/bin/env bash
# Installs the Debian 12 packages the build needs, and only those missing:
# when everything is present it runs no apt command at all.
set -euo pipefail

# libboost1.81-dev: Asio + Beast 1.81 only; never the unversioned libboost-*-dev (1.74).
# librdkafka-dev carries rdkafka_mock.h, the embedded Kafka.
PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libboost1.81-dev
  librdkafka-dev
  libsqlite3-dev sqlite3
  libssl-dev openssl
  libsimdjson-dev
  libtomlplusplus-dev
  libcli11-dev
  libfmt-dev
  libsystemd-dev
  libjemalloc-dev
  libgtest-dev libgmock-dev
  libbenchmark-dev
  libvalijson-dev nlohmann-json3-dev
  curl
  # make package / the package tests: dpkg-shlibdeps, objdump, systemd-analyze.
  dpkg-dev binutils systemd
  # make fuzz / the fuzz_short test: clang with libFuzzer and the sanitizer
  # runtimes (libclang-rt-14-dev); llvm-symbolizer (llvm-14) for their reports.
  clang-14 libclang-rt-14-dev llvm-14
  # scripts/bench-receiver.sh: nginx `return 200` as a reference server.
  nginx-light
)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
