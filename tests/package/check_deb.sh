#!/usr/bin/env bash
# check_deb.sh DEB_DIR VERSION: the package cpack.sh built holds what an
# operator installs, with the owners and modes postinst relies on, declares
# every shared library it needs, and its maintainer scripts never start a
# service (the configuration holds placeholders).
set -euo pipefail
dir=$1 version=$2
deb=$(ls "$dir"/*.deb)
fail=0
bad() { echo "FAIL: $*"; fail=1; }

listing=$(dpkg-deb -c "$deb")
echo "$listing"

# entry MODE PATH: PATH is in the package with MODE (ls -l style), root/root.
entry() {
  local mode=$1 path=$2
  if ! awk -v m="$mode" -v p="./$path" '$1 == m && $2 == "root/root" && $6 == p { ok = 1 } END { exit !ok }' <<<"$listing"; then
    bad "expected $mode root/root ./$path"
  fi
}
entry -rwxr-xr-x usr/bin/klarna-receiver
entry -rwxr-xr-x usr/bin/klarna-processor
entry -rwxr-xr-x usr/bin/klarnactl
entry -rw-r--r-- usr/lib/systemd/system/klarna-receiver.service
entry -rw-r--r-- usr/lib/systemd/system/klarna-processor.service
entry -rw-r--r-- usr/lib/sysusers.d/klarna.conf
entry -rw-r--r-- usr/lib/tmpfiles.d/klarna.conf
entry drwxr-x--- etc/klarna/
entry -rw-r----- etc/klarna/receiver.toml
entry -rw-r----- etc/klarna/processor.toml
entry -rw-r--r-- usr/share/doc/klarna-webhooks/README.md
entry -rw-r--r-- usr/share/doc/klarna-webhooks/SYSTEMD.md

# Every entry root-owned (postinst hands /etc/klarna to group klarna).
if awk '$2 != "root/root"' <<<"$listing" | grep -q .; then bad "entries not owned by root/root"; fi
# Test doubles, mock brokers, static libraries and headers stay out.
if grep -E 'klarna-sim|embedded-kafka|\.a$|/include/|\.(key|pem|crt)$|api-key' <<<"$listing"; then
  bad "test tools, build artefacts or secrets in the package"
fi

# Control fields.
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == klarna-webhooks ]] || bad "Package: $(field Package)"
[[ $(field Version) == "$version" ]] || bad "Version: $(field Version), expected $version"
[[ $(field Architecture) == "$(dpkg --print-architecture)" ]] || bad "Architecture: $(field Architecture)"
depends=$(field Depends)
echo "Depends: $depends"
# has_dep PACKAGE: PACKAGE is one of the Depends alternatives (versions ignored).
has_dep() { tr ',|' '\n\n' <<<"$depends" | awk -v p="$1" '$1 == p { ok = 1 } END { exit !ok }'; }
for p in libc6 libstdc++6 libssl3 librdkafka1 libsqlite3-0 libsystemd0 libjemalloc2 passwd; do
  has_dep "$p" || bad "Depends lacks $p"
done

# Every shared library a shipped binary needs comes from a declared package.
root=$dir/root
rm -rf "$root"
mkdir -p "$root"
dpkg-deb -x "$deb" "$root"
for bin in "$root"/usr/bin/*; do
  while read -r lib; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found { print $NF; found = 1 }')
    [[ -n "$path" ]] || { bad "$bin: $lib not found on this host"; continue; }
    pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null ||
      dpkg -S "${path#/usr}" 2>/dev/null || true)
    pkg=${pkg%%:*}
    [[ -n "$pkg" ]] || { bad "$lib ($path) belongs to no package"; continue; }
    has_dep "$pkg" || bad "$(basename "$bin") needs $lib from $pkg, not in Depends"
  done < <(objdump -p "$bin" | awk '$1 == "NEEDED" { print $2 }')
done

# The shipped binaries answer --version.
for b in klarna-receiver klarna-processor klarnactl; do
  out=$("$root/usr/bin/$b" --version) || bad "$b --version exited $?"
  [[ $out == "$b $version" ]] || bad "$b --version printed '$out'"
done

# The accounts: group klarna with both service users in it.
sysusers=$root/usr/lib/sysusers.d/klarna.conf
for line in '^g klarna ' '^u klarna-receiver ' '^u klarna-processor ' '^m klarna-receiver klarna$' \
  '^m klarna-processor klarna$'; do
  grep -Eq "$line" "$sysusers" || bad "sysusers: no line matching $line"
done
grep -q '^d /var/lib/klarna-receiver ' "$root/usr/lib/tmpfiles.d/klarna.conf" || bad "tmpfiles: no receiver state dir"

# Maintainer scripts.
ctl=$dir/control
rm -rf "$ctl"
dpkg-deb -e "$deb" "$ctl"
for s in postinst prerm postrm; do
  [[ -x $ctl/$s ]] || bad "$s missing or not executable"
  sh -n "$ctl/$s" || bad "$s: syntax error"
done
[[ $(sort "$ctl/conffiles") == $'/etc/klarna/processor.toml\n/etc/klarna/receiver.toml' ]] ||
  bad "conffiles: $(cat "$ctl/conffiles")"
if grep -Eq 'systemctl +(--[a-z-]+ +)*(enable|start|restart)|deb-systemd-invoke|invoke-rc.d' \
  "$ctl/postinst" "$ctl/postrm"; then
  bad "a maintainer script enables or starts a service"
fi
grep -q 'systemd-sysusers' "$ctl/postinst" || bad "postinst does not run systemd-sysusers"
grep -q 'systemd-tmpfiles --create' "$ctl/postinst" || bad "postinst does not run systemd-tmpfiles"
grep -q 'chown root:klarna' "$ctl/postinst" || bad "postinst does not hand /etc/klarna to group klarna"
# /var/lib is removed under "purge)" only.
awk '/^ *purge\)/ { p = 1 } /;;/ { p = 0 } /rm -rf \/var\/lib/ && !p { exit 1 }' "$ctl/postrm" ||
  bad "postrm removes state outside purge"

if ((fail)); then exit 1; fi
echo "package ok: $deb"
