#!/usr/bin/env bash
# install_test.sh BUILD_DIR [with-systemd|without-systemd]: `make package-test`
# runs both. Installs BUILD_DIR's .deb into
# a clean Debian 12 root (debootstrap, from the mirror this machine's apt uses)
# with apt-get, inside a chroot where no systemd runs, and checks what an
# operator gets: the programs run, the accounts, directories and configuration
# have the owners and modes the units rely on, the service users can use them;
# then `apt-get remove` keeps the data and `apt-get purge` deletes it, no
# process is left running and nothing else is left behind. with-systemd (the
# default) installs the package's Recommends (systemd: the postinst uses
# systemd-sysusers and systemd-tmpfiles, with no systemd running);
# without-systemd installs without them (the postinst falls back to useradd
# and install -d).
#
# Needs root (debootstrap, chroot, mount). The clean root is cached as a
# tarball under $KPAY_PACKAGE_TEST_CACHE (default ~/.cache/klarna-package-test),
# with the downloaded .debs, so a second run needs no download of the base.
# Not part of `make test`: too slow and root only (tests/package's ctest checks
# inspect the .deb without installing it).
set -euo pipefail

build=${1:?usage: install_test.sh BUILD_DIR [with-systemd|without-systemd]}
variant=${2:-with-systemd}
case $variant in
  with-systemd) fields="Depends Recommends" apt_extra=() ;;
  without-systemd) fields="Depends" apt_extra=(--no-install-recommends) ;;
  *) echo "install_test.sh: unknown variant '$variant'"; exit 2 ;;
esac
cache=${KPAY_PACKAGE_TEST_CACHE:-$HOME/.cache/klarna-package-test}
suite=bookworm
arch=$(dpkg --print-architecture)
base=$cache/debian-$suite-$arch-minbase.tar.gz

[[ $(id -u) == 0 ]] || { echo "install_test.sh: must run as root (debootstrap, chroot)"; exit 2; }
command -v debootstrap >/dev/null || { echo "install_test.sh: debootstrap is missing (apt-get install debootstrap)"; exit 2; }
shopt -s nullglob
debs=("$build"/klarna-webhooks_*.deb)
((${#debs[@]} == 1)) || { echo "install_test.sh: expected one $build/klarna-webhooks_*.deb (make package), found ${#debs[@]}"; exit 2; }
deb=${debs[0]}

step() { printf '\n== %s\n' "$*"; }
fail=0
bad() { echo "FAIL: $*"; fail=1; }
ok() { echo "ok: $*"; }

# The first deb URI of this machine's apt sources (deb822 or one-line).
mirror() {
  local uri
  uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $2 !~ /^\[/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

root=$(mktemp -d /tmp/klarna-package-test.XXXXXX)
# Processes whose root is the chroot (none may be left running).
chroot_processes() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/root" 2>/dev/null) == "$root" ]] && echo "${p#/proc/} $(tr '\0' ' ' <"$p/cmdline")"
  done
  return 0
}

mounted=()
cleanup() {
  local m p
  # Whatever this run started inside the root and left running (a failed check).
  for p in $(chroot_processes | awk '{ print $1 }'); do kill -KILL "$p" 2>/dev/null || true; done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@"; }

step "clean Debian 12 root ($variant)"
mkdir -p "$cache/archives"
if [[ ! -s $base ]]; then
  echo "no cached base: debootstrap --variant=minbase $suite from $(mirror) (once)"
  started=$SECONDS
  debootstrap --variant=minbase --cache-dir="$cache/archives" "$suite" "$root" "$(mirror)" \
    >"$cache/debootstrap.log" 2>&1 || { tail -30 "$cache/debootstrap.log"; exit 1; }
  tar -C "$root" -czf "$base.tmp" . && mv "$base.tmp" "$base"
  echo "debootstrap took $((SECONDS - started)) s; cached as $base"
else
  tar -C "$root" -xzf "$base"
  echo "from the cache: $base"
fi
chmod 0755 "$root"  # the chroot's /, as mktemp made it 0700: the service users traverse it
for m in proc dev; do
  mount --bind "/$m" "$root/$m"
  mounted+=("$root/$m")
done
mkdir -p "$root/var/cache/apt/archives"
mount --bind "$cache/archives" "$root/var/cache/apt/archives"
mounted+=("$root/var/cache/apt/archives")
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/hosts "$root/etc/hosts"

# Every path in the root but the ones apt, dpkg and logs change on any install.
snapshot() {
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./tmp -o -path ./run \
    -o -path ./var/cache -o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./var/log \) -prune \
    -o -print | sort)
}

step "dependencies first (so what our package adds can be told apart)"
in_root apt-get update -q >/dev/null
# Depends (and Recommends with systemd) of the .deb, first alternative,
# versions dropped.
wanted=$(dpkg-deb -f "$deb" $fields | sed -E 's/^[A-Za-z-]+: //' | tr ',' '\n' |
  sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' | grep -v '^$' | sort -u | tr '\n' ' ')
echo "installing: $wanted"
in_root apt-get install -y -q "${apt_extra[@]}" $wanted >"$root/tmp/deps.log" 2>&1 || { tail -30 "$root/tmp/deps.log"; exit 1; }
echo "systemd running inside the root: $([[ -d $root/run/systemd/system ]] && echo yes || echo no);" \
  "systemd-sysusers installed: $([[ -x $root/usr/bin/systemd-sysusers ]] && echo yes || echo no)"
before=$(snapshot)

step "apt-get install ./$(basename "$deb")"
cp "$deb" "$root/tmp/"
if in_root apt-get install -y -q "${apt_extra[@]}" "./tmp/$(basename "$deb")" >"$root/tmp/install.log" 2>&1; then
  grep -E 'newly installed|^Setting up|^Unpacking' "$root/tmp/install.log"
  grep -q '^1 newly installed' <(grep 'newly installed' "$root/tmp/install.log" | sed -E 's/^[0-9]+ upgraded, //') ||
    bad "apt installed more than the package: $(grep 'newly installed' "$root/tmp/install.log")"
else
  cat "$root/tmp/install.log"
  bad "apt-get install failed"
fi

step "the programs run"
for p in klarna-receiver klarna-processor klarnactl; do
  if out=$(in_root "$p" --version 2>&1); then ok "$out"; else bad "$p --version: $out"; fi
done

step "accounts, directories, configuration"
# expect_stat PATH 'MODE OWNER:GROUP'
expect_stat() {
  local got
  got=$(in_root stat -c '%A %U:%G' "$1" 2>&1 || true)
  if [[ $got == "$2" ]]; then ok "$1 $got"; else bad "$1 is '$got', expected '$2'"; fi
}
for u in klarna-receiver klarna-processor; do
  entry=$(in_root getent passwd "$u" || true)
  if [[ $entry == "$u:x:"*":/var/lib/$u:/usr/sbin/nologin" ]]; then ok "$entry"; else bad "account $u: '$entry'"; fi
  in_root id -nG "$u" | tr ' ' '\n' | grep -qx klarna && ok "$u is in group klarna" || bad "$u is not in group klarna"
  expect_stat "/var/lib/$u" "drwx------ $u:$u"
done
expect_stat /etc/klarna "drwxr-x--- root:klarna"
expect_stat /etc/klarna/receiver.toml "-rw-r----- root:klarna"
expect_stat /etc/klarna/processor.toml "-rw-r----- root:klarna"
for f in /usr/lib/systemd/system/klarna-receiver.service /usr/lib/systemd/system/klarna-processor.service; do
  expect_stat "$f" "-rw-r--r-- root:root"
done

step "the service users can use them (no systemd: run as the users by hand)"
# The receiver's user reads its configuration and creates the key database.
if out=$(printf 'secret-for-package-test' | in_root setpriv --reuid=klarna-receiver --regid=klarna-receiver \
  --init-groups klarnactl --config /etc/klarna/receiver.toml keys add --id krn:package-test --secret-file - 2>&1); then
  ok "klarnactl keys add as klarna-receiver: $out"
else
  bad "klarnactl keys add as klarna-receiver: $out"
fi
expect_stat /var/lib/klarna-receiver/keys.db "-rw------- klarna-receiver:klarna-receiver"
# The processor's user creates its state database (no Kafka here: it runs,
# is stopped with SIGTERM and must exit 0 within its stop budget). UMask=0077
# as in its unit.
umask 0077
# chroot itself in the background (not the in_root function, whose subshell
# would take the signal): chroot, env and setpriv exec, so $! is the processor.
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin LC_ALL=C.UTF-8 \
  setpriv --reuid=klarna-processor --regid=klarna-processor --init-groups \
  klarna-processor --config /etc/klarna/processor.toml --set worker.enabled=false \
  --set kafka.bootstrap_servers=127.0.0.1:9 --set admin.port=0 \
  --set processor.shutdown_flush_timeout_ms=1000 >"$root/tmp/processor.log" 2>&1 &
pid=$!
umask 0022
for _ in $(seq 100); do [[ -s $root/var/lib/klarna-processor/state.db ]] && break; sleep 0.1; done
kill -TERM "$pid" 2>/dev/null || true
status=0
wait "$pid" || status=$?
if [[ $status == 0 ]]; then ok "klarna-processor as klarna-processor started and stopped (exit 0)"; else
  tail -5 "$root/tmp/processor.log"
  bad "klarna-processor as klarna-processor exited $status"
fi
[[ -s $root/var/lib/klarna-processor/state.db ]] && ok "state.db created" || bad "no /var/lib/klarna-processor/state.db"
expect_stat /var/lib/klarna-processor/state.db "-rw------- klarna-processor:klarna-processor"

step "apt-get remove: programs gone, data, configuration and accounts kept"
in_root apt-get remove -y -q klarna-webhooks >"$root/tmp/remove.log" 2>&1 || { cat "$root/tmp/remove.log"; bad "apt-get remove failed"; }
[[ -e $root/usr/bin/klarna-receiver ]] && bad "/usr/bin/klarna-receiver still there" || ok "binaries removed"
for f in /var/lib/klarna-receiver/keys.db /var/lib/klarna-processor/state.db /etc/klarna/receiver.toml /etc/klarna/processor.toml; do
  [[ -e $root$f ]] && ok "kept $f" || bad "$f removed by apt-get remove"
done
in_root getent passwd klarna-receiver >/dev/null && ok "accounts kept" || bad "account klarna-receiver removed"

step "apt-get purge: data and configuration gone"
in_root apt-get purge -y -q klarna-webhooks >"$root/tmp/purge.log" 2>&1 || { cat "$root/tmp/purge.log"; bad "apt-get purge failed"; }
for d in /var/lib/klarna-receiver /var/lib/klarna-processor /etc/klarna; do
  [[ -e $root$d ]] && bad "$d left after purge" || ok "$d gone"
done
state=$(in_root dpkg-query -W -f '${db:Status-Abbrev}' klarna-webhooks 2>/dev/null || true)
[[ -z $state || $state == "un "* || $state == "pn "* ]] && ok "dpkg: not installed" || bad "dpkg status '$state'"

step "nothing left running, nothing left behind"
left=$(chroot_processes)
[[ -z $left ]] && ok "no process runs in the root" || bad "still running: $left"
after=$(snapshot)
# Accounts stay (Debian practice: files they owned may remain elsewhere);
# useradd/sysusers keep backups of the account files.
extra=$(comm -13 <(echo "$before") <(echo "$after") | grep -vxE '\./etc/(passwd|group|shadow|gshadow)-' || true)
missing=$(comm -23 <(echo "$before") <(echo "$after") || true)
[[ -z $extra ]] && ok "no file left behind" || bad "left behind after purge:"$'\n'"$extra"
[[ -z $missing ]] && ok "nothing else removed" || bad "removed although not ours:"$'\n'"$missing"

echo
if ((fail)); then echo "package-test: FAILED ($variant)"; exit 1; fi
echo "package-test: passed ($(basename "$deb") in a clean Debian 12 root, $variant)"
