#!/usr/bin/env bash
# verify_units.sh DEB_DIR: systemd-analyze verify on the units as installed
# (the package extracted by check_deb.sh's fixture into DEB_DIR/root).
# Fails where systemd-analyze is missing (Debian package "systemd": scripts/install-deps.sh).
set -euo pipefail
dir=$1
command -v systemd-analyze >/dev/null 2>&1 || { echo "FAIL: systemd-analyze not available (Debian package 'systemd': scripts/install-deps.sh)"; exit 1; }
root=$dir/verify-root
rm -rf "$root"
mkdir -p "$root"
dpkg-deb -x "$dir"/*.deb "$root"
units=("$root"/usr/lib/systemd/system/klarna-*.service)
# What the units refer to outside the package comes from this host: the
# targets they order against, and /bin/kill (ExecReload=).
cp -rn /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null || true
if [[ -d /lib/systemd/system && ! -L /lib ]]; then cp -rn /lib/systemd/system/. "$root/usr/lib/systemd/system/"; fi
mkdir -p "$root/bin"
cp /bin/kill "$root/bin/kill" 2>/dev/null || cp /usr/bin/kill "$root/bin/kill"
# ExecStart= names /usr/bin/...: --root makes it resolve inside the package.
out=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || {
  echo "$out"
  exit 1
}
# verify exits 0 on some warnings: anything about our units fails the test.
if grep -E 'klarna-(receiver|processor)\.service' <<<"$out"; then exit 1; fi
echo "$out"
for u in "${units[@]}"; do
  systemd-analyze security --offline=yes --root="$root" "$(basename "$u")" 2>/dev/null | tail -1 ||
    systemd-analyze security --offline=yes "$u" | tail -1
done
echo "units ok"
