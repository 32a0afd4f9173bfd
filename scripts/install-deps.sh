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
  # make package-test: the clean Debian 12 root it installs the .deb into.
  debootstrap
  # The alert-rule test (promtool) and scripts/dashboard-screenshot.sh (a
  # Prometheus run by hand, jq to read its answers, gnuplot to draw them).
  # prometheus is installed without starting its service: install_quiet below.
  prometheus gnuplot-nox jq
  # scripts/bench-receiver.sh: nginx `return 200` as a reference server.
  nginx-light
  # The PostgreSQL state store: libpq to build against, and the server programs
  # (/usr/lib/postgresql/15/bin) the tests start their own throwaway servers
  # with. No cluster is created and no service started: install_quiet below.
  libpq-dev postgresql-15
)
# Packages whose installation would start a service (and enable it at boot)
# that the build only wants the programs of.
QUIET=(prometheus nginx-light postgresql-15)  # services: prometheus, nginx, postgresql

# The service a quiet package installs.
service_of() {
  case $1 in
    nginx-light) echo nginx ;;
    postgresql-*) echo postgresql ;;
    *) echo "$1" ;;
  esac
}

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

is_quiet() {
  local q
  for q in "${QUIET[@]}"; do [[ $q == "$1" ]] && return 0; done
  return 1
}

# Installs $@ without starting their services, and leaves them disabled: a
# policy-rc.d answering 101 ("action forbidden") for the time of the install
# stops the maintainer scripts' invoke-rc.d and deb-systemd-invoke from
# starting them (on hosts without one: an existing policy-rc.d is left as it
# is); then each unit is disabled (systemd's links, and the SysV ones for
# hosts booted without systemd) and, where systemd runs, stopped should an
# existing policy have let it start.
# PostgreSQL's packages would also create a cluster (15/main, owned by user
# postgres, port 5432) on first install: a createcluster.d drop-in (read by
# postgresql-common's createcluster.conf through its include_dir) says
# create_main_cluster = false before they are installed. Tests start their own
# servers in temp dirs (tests/support/postgres_server.cpp).
install_quiet() {
  local policy=/usr/sbin/policy-rc.d ours=0 p
  local nocluster=/etc/postgresql-common/createcluster.d/kpay-no-main-cluster.conf
  if [[ " $* " == *" postgresql-"* && ! -e $nocluster ]]; then
    $SUDO mkdir -p "$(dirname "$nocluster")"
    printf '# install-deps.sh: no cluster on install; tests start their own servers\ncreate_main_cluster = false\n' |
      $SUDO tee "$nocluster" >/dev/null
  fi
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# install-deps.sh: no service starts during this install\nexit 101\n' |
      $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
    ours=1
    trap "$SUDO rm -f $policy" EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@"
  ((ours)) && $SUDO rm -f "$policy"
  trap - EXIT
  for p in "$@"; do
    local svc
    svc=$(service_of "$p")
    if [[ -d /run/systemd/system ]]; then
      $SUDO systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
    else
      $SUDO deb-systemd-helper disable "$svc.service" >/dev/null 2>&1 || true
    fi
    $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
  done
}

plain=() quiet=()
for p in "${missing[@]}"; do
  if is_quiet "$p"; then quiet+=("$p"); else plain+=("$p"); fi
done
$SUDO apt-get update -qq
((${#plain[@]} == 0)) || $SUDO apt-get install -y -qq --no-install-recommends "${plain[@]}"
((${#quiet[@]} == 0)) || install_quiet "${quiet[@]}"
