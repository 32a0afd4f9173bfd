#!/usr/bin/env bash
# check_alert_rules.sh ALERTS_DIR: `promtool check rules` on every example
# rule file, then `promtool test rules` on the unit tests beside this script
# (tests/ops/alerts/*.test.yml). Fails without promtool (scripts/install-deps.sh
# installs it: Debian's package "prometheus").
set -euo pipefail
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v promtool >/dev/null 2>&1; then
  echo "FAIL: promtool is not installed (Debian package 'prometheus': scripts/install-deps.sh); the alert rules in $dir are unchecked"
  exit 1
fi
shopt -s nullglob
rules=("$dir"/*.rules.yml)
tests=("$here"/alerts/*.test.yml)
((${#rules[@]} > 0)) || { echo "FAIL: no *.rules.yml in $dir"; exit 1; }
promtool check rules "${rules[@]}"
if ((${#tests[@]} > 0)); then
  cd "$here/alerts"
  promtool test rules "${tests[@]##*/}"
fi
