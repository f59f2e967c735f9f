#!/bin/sh
# Packaging test: builds the .deb and .rpm from a build dir with cpack, lints and inspects
# them, then installs the .deb on THIS machine, checks what it made, runs the packaged config
# as the regcache user and asks /v2/, and purges it again.
#
# Usage: tests/packaging/run.sh BUILD_DIR   (registered in ctest as `packaging`)
# Needs root (exit 77, ctest's skip, otherwise). It purges any installed regcache package
# first: run it on CI machines and throwaway hosts, not on a host whose mirror you want.
set -eu

build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the packaging test installs a package: needs root"; exit 77; }

work=$(mktemp -d /tmp/regcache-packaging.XXXXXX)
chmod 0755 "$work"
server_pid=""
notify_pid=""
user_existed=no
getent passwd regcache >/dev/null && user_existed=yes

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_line FILE PATTERN WHAT: FILE has a line matching the extended regex PATTERN.
expect_line() { grep -Eq -- "$2" "$1" || { cat "$1" >&2; fail "$3: no line matches '$2'"; }; }
# installed: dpkg knows regcache in any state but not-installed (config-files, half-installed...).
installed() {
  dpkg-query -W -f='${db:Status-Status}' regcache 2>/dev/null | grep -qv '^not-installed$'
}
purge() {
  apt-get purge -y -qq -o DPkg::Lock::Timeout=300 regcache >/dev/null 2>&1 ||
    dpkg --purge --force-all regcache >/dev/null
}

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  status=$?
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  [ -z "$notify_pid" ] || kill "$notify_pid" 2>/dev/null || true
  if installed; then purge || true; fi
  # The package keeps the account on purge (Debian's rule for system users); the test removes
  # it only if it made it, so the machine is left as it was found.
  if [ "$user_existed" = no ] && getent passwd regcache >/dev/null; then
    userdel regcache 2>/dev/null || true
    groupdel regcache 2>/dev/null || true
  fi
  rm -rf "$work"
  if [ "$status" -eq 0 ]; then
    printf '\nPASS: packaging\n'
  else
    printf '\nFAIL: packaging (exit %s)\n' "$status"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in cpack lintian rpm dpkg-deb dpkg-shlibdeps fakeroot apt-get systemd-analyze curl \
  setpriv python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-deps.sh"
done

step "a previous failed run is cleaned up"
if installed; then
  echo "regcache is installed: purging it first"
  purge
fi

step "versions agree: VERSION, the changelog, the build"
version=$(head -n1 "$src/VERSION")
top=$(head -n1 "$src/packaging/changelog")
revision=$(echo "$top" | sed -n "s/^regcache ($version-\([0-9A-Za-z.+~]*\)) .*/\1/p")
[ -n "$revision" ] ||
  fail "packaging/changelog's top entry is '$top', expected 'regcache ($version-N) ...'"
deb_arch=$(dpkg --print-architecture)
rpm_arch=$(rpm --eval '%{_arch}')
echo "version $version, revision $revision, arch $deb_arch / $rpm_arch"

step "cpack builds both packages"
rm -rf "$build/packages"
(cd "$build" && cpack -G "DEB;RPM" --config CPackConfig.cmake) > "$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack"; }
deb="$build/packages/regcache_${version}-${revision}_${deb_arch}.deb"
rpm="$build/packages/regcache-${version}-${revision}.${rpm_arch}.rpm"
[ -f "$deb" ] || { ls -l "$build/packages"; fail "no $deb"; }
[ -f "$rpm" ] || { ls -l "$build/packages"; fail "no $rpm"; }
ls -l "$deb" "$rpm"

step "the .deb's files, control fields and scripts"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' > "$work/deb-files"
for f in /usr/bin/regcache /etc/regcache/regcache.toml /usr/lib/systemd/system/regcache.service \
  /usr/lib/sysusers.d/regcache.conf /usr/share/man/man8/regcache.8.gz \
  /usr/share/bash-completion/completions/regcache /usr/share/doc/regcache/copyright \
  /usr/share/doc/regcache/changelog.Debian.gz; do
  expect_line "$work/deb-files" "^$f\$" ".deb file list"
done
dpkg-deb -f "$deb" Version Depends > "$work/deb-control"
cat "$work/deb-control"
expect_line "$work/deb-control" "^Version: $version-$revision\$" ".deb version"
for dep in adduser libc6 libstdc\\+\\+6 libevent-core libcurl4 libssl3 liblmdb0 libsimdjson \
  libspdlog libfmt libhttp-parser libtomlplusplus; do
  expect_line "$work/deb-control" "[ ,]$dep" ".deb Depends"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -t | sed 's|^\./||' > "$work/deb-control-files"
for f in conffiles postinst prerm postrm md5sums; do
  expect_line "$work/deb-control-files" "^$f\$" ".deb control files"
done
dpkg-deb -I "$deb" conffiles > "$work/deb-conffiles"
expect_line "$work/deb-conffiles" '^/etc/regcache/regcache.toml$' ".deb conffiles"

step "lintian: no errors"
# Tags suppressed, each inapplicable to a package built by CPack outside a Debian source tree:
# none so far. Warnings and infos are printed, not fatal.
lintian --fail-on error --display-info "$deb" | tee "$work/lintian.log" ||
  fail "lintian reported errors"

step "rpm -qlpi: files, metadata; --requires and --scripts"
rpm -qlpi "$rpm" > "$work/rpm-info"
cat "$work/rpm-info"
expect_line "$work/rpm-info" "^Name +: regcache" "rpm name"
expect_line "$work/rpm-info" "^Version +: $version" "rpm version"
expect_line "$work/rpm-info" "^Release +: $revision" "rpm release"
for f in /usr/bin/regcache /etc/regcache/regcache.toml /usr/lib/systemd/system/regcache.service \
  /usr/lib/sysusers.d/regcache.conf /usr/share/man/man8/regcache.8.gz \
  /usr/share/bash-completion/completions/regcache; do
  expect_line "$work/rpm-info" "^$f\$" "rpm file list"
done
# Only files regcache owns: never the distribution's directories.
for d in /usr /usr/bin /etc /usr/lib/systemd/system /usr/share/man /usr/share/man/man8; do
  if grep -qx -- "$d" "$work/rpm-info"; then fail "the rpm owns $d"; fi
done
rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpm" > "$work/rpm-flags"
expect_line "$work/rpm-flags" '^/etc/regcache/regcache.toml cn$' "rpm %config(noreplace)"
rpm -qp --requires "$rpm" > "$work/rpm-requires"
cat "$work/rpm-requires"
for dep in libevent libcurl openssl-libs lmdb-libs simdjson spdlog fmt http-parser tomlplusplus; do
  expect_line "$work/rpm-requires" "^$dep\$" "rpm Requires"
done
expect_line "$work/rpm-requires" '^systemd' "rpm Requires(post)"
rpm -qp --scripts "$rpm" > "$work/rpm-scripts"
cat "$work/rpm-scripts"
expect_line "$work/rpm-scripts" '^postinstall scriptlet' "rpm %post"
expect_line "$work/rpm-scripts" '^preuninstall scriptlet' "rpm %preun"
expect_line "$work/rpm-scripts" '^postuninstall scriptlet' "rpm %postun"
expect_line "$work/rpm-scripts" 'systemd-sysusers regcache.conf' "rpm %post makes the account"
expect_line "$work/rpm-scripts" 'systemctl --no-reload preset' "rpm %post presets the unit"
expect_line "$work/rpm-scripts" 'disable --now regcache.service' "rpm %preun stops the service"
expect_line "$work/rpm-scripts" 'try-restart regcache.service' "rpm %postun restarts on upgrade"
rpm -qp --changelog "$rpm" > "$work/rpm-changelog"
expect_line "$work/rpm-changelog" "^\\* .* - $version-$revision\$" "rpm %changelog"

step "install the .deb on this machine"
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "$deb" \
  > "$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get install"; }
dpkg-query -W -f='${db:Status-Status} ${Version}\n' regcache

step "the account, the directories, the conffile"
getent passwd regcache > "$work/passwd" || fail "no regcache user"
cat "$work/passwd"
expect_line "$work/passwd" '^regcache:x:[0-9]+:[0-9]+:[^:]*:/var/lib/regcache:/usr/sbin/nologin$' \
  "regcache account"
uid=$(id -u regcache)
[ "$uid" -lt 1000 ] || fail "regcache is not a system user (uid $uid)"
getent group regcache >/dev/null || fail "no regcache group"
[ "$(stat -c '%U:%G %a' /var/lib/regcache)" = "regcache:regcache 750" ] ||
  fail "/var/lib/regcache is $(stat -c '%U:%G %a' /var/lib/regcache)"
[ "$(stat -c '%U:%G %a' /etc/regcache/regcache.toml)" = "root:root 644" ] ||
  fail "/etc/regcache/regcache.toml is $(stat -c '%U:%G %a' /etc/regcache/regcache.toml)"
dpkg-query -W -f='${Conffiles}\n' regcache | grep -q '/etc/regcache/regcache.toml' ||
  fail "/etc/regcache/regcache.toml is not a conffile"
expect_line /etc/regcache/regcache.toml '^data_dir = "/var/lib/regcache"$' "packaged data_dir"
for f in /usr/share/man/man8/regcache.8.gz /usr/share/bash-completion/completions/regcache; do
  [ -f "$f" ] || fail "$f is missing"
done
[ "$(systemctl is-enabled regcache.service 2>&1)" = enabled ] ||
  fail "regcache.service is not enabled: $(systemctl is-enabled regcache.service 2>&1)"
if [ -d /run/systemd/system ]; then
  systemctl is-active --quiet regcache.service && fail "the package started the service"
fi

step "regcache version runs from /usr/bin"
[ "$(command -v regcache)" = /usr/bin/regcache ] || fail "regcache is $(command -v regcache)"
/usr/bin/regcache version | tee "$work/version"
expect_line "$work/version" "^regcache $version\$" "regcache version"

step "bash completion lists the commands"
bash -c '. /usr/share/bash-completion/completions/regcache
  COMP_WORDS=(regcache "") COMP_CWORD=1; _regcache; echo "${COMPREPLY[*]}"
  COMP_WORDS=(regcache serve --l) COMP_CWORD=2; _regcache; echo "${COMPREPLY[*]}"' \
  > "$work/completion"
cat "$work/completion"
expect_line "$work/completion" '(^| )serve( |$)' "completion of commands"
expect_line "$work/completion" '--listen' "completion of serve's options"

step "systemd-analyze verify accepts the unit"
systemd-analyze verify /usr/lib/systemd/system/regcache.service > "$work/verify" 2>&1 ||
  { cat "$work/verify"; fail "systemd-analyze verify"; }
cat "$work/verify"
systemd-analyze security --offline=yes /usr/lib/systemd/system/regcache.service \
  > "$work/security" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for regcache.service: \([0-9.]*\).*/\1/p' \
  "$work/security")
echo "systemd-analyze security: exposure $score"
# A guard against losing hardening by accident: the unit scored 1.1 when written.
awk -v s="${score:-99}" 'BEGIN { exit !(s <= 2.0) }' ||
  { cat "$work/security"; fail "exposure score ${score:-unknown} is above 2.0"; }

step "the packaged config serves /v2/ as the regcache user, and says READY=1"
# A stand-in for systemd's notify socket, so Type=notify is checked against the real binary.
python3 - "$work/notify.sock" "$work/notify.log" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.settimeout(60)
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        try:
            log.write(s.recv(4096).decode() + "\n")
        except socket.timeout:
            break
PY
notify_pid=$!
i=0
while [ ! -S "$work/notify.sock" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "the notify stand-in did not start"; sleep 0.1
done
cd /var/lib/regcache
NOTIFY_SOCKET="$work/notify.sock" setpriv --reuid=regcache --regid=regcache --init-groups \
  --inh-caps=-all -- /usr/bin/regcache serve -c /etc/regcache/regcache.toml \
  --listen 127.0.0.1:0 > "$work/serve.log" 2>&1 &
server_pid=$!
cd "$work"
i=0
until grep -qs 'serve.start' "$work/serve.log"; do
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; fail "regcache serve exited"; }
  i=$((i + 1)); [ $i -lt 300 ] || { cat "$work/serve.log"; fail "no serve.start in 30 s"; }
  sleep 0.1
done
cat "$work/serve.log"
port=$(sed -n 's/.*serve.start .*addr=127.0.0.1:\([0-9]*\).*/\1/p' "$work/serve.log")
[ -n "$port" ] || fail "no port in the serve.start line"
code=$(curl -s -o "$work/v2.body" -w '%{http_code}' "http://127.0.0.1:$port/v2/")
[ "$code" = 200 ] || fail "GET /v2/ answered $code"
echo "GET http://127.0.0.1:$port/v2/ -> $code"
[ -n "$(ls -A /var/lib/regcache)" ] || fail "the server wrote nothing to /var/lib/regcache"
strays=$(find /var/lib/regcache ! -user regcache)
[ -z "$strays" ] || fail "not owned by regcache: $strays"
kill -TERM "$server_pid"
wait "$server_pid" || fail "regcache serve exited $? after SIGTERM"
server_pid=""
i=0
until grep -q 'STOPPING=1' "$work/notify.log" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 50 ] || break; sleep 0.1
done
cat "$work/notify.log"
expect_line "$work/notify.log" '^READY=1$' "notify"
expect_line "$work/notify.log" '^STOPPING=1$' "notify"
kill "$notify_pid" 2>/dev/null || true
notify_pid=""

step "an edited conffile survives reinstalling the package"
echo '# edited by the packaging test' >> /etc/regcache/regcache.toml
dpkg -i --force-confold "$deb" > "$work/reinstall.log" 2>&1 ||
  { cat "$work/reinstall.log"; fail "dpkg -i over the installed package"; }
expect_line /etc/regcache/regcache.toml '^# edited by the packaging test$' "edited conffile"

step "remove keeps the data and the config; purge deletes the data, keeps the account"
apt-get remove -y -qq -o DPkg::Lock::Timeout=300 regcache > "$work/remove.log" 2>&1 ||
  { cat "$work/remove.log"; fail "apt-get remove"; }
[ ! -e /usr/bin/regcache ] || fail "/usr/bin/regcache is still there after remove"
if [ ! -d /var/lib/regcache ] || [ -z "$(ls -A /var/lib/regcache)" ]; then
  fail "remove deleted the data in /var/lib/regcache"
fi
[ -f /etc/regcache/regcache.toml ] || fail "remove deleted the conffile"
apt-get purge -y -qq -o DPkg::Lock::Timeout=300 regcache > "$work/purge.log" 2>&1 ||
  { cat "$work/purge.log"; fail "apt-get purge"; }
[ ! -e /var/lib/regcache ] || fail "purge left /var/lib/regcache"
[ ! -e /etc/regcache ] || fail "purge left /etc/regcache"
[ ! -e /etc/systemd/system/multi-user.target.wants/regcache.service ] ||
  fail "purge left the service enabled"
getent passwd regcache >/dev/null || fail "purge removed the regcache account"
installed && fail "regcache is still installed after purge"
exit 0
