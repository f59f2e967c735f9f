# regcache %post ($1: 1 on install, 2 on upgrade): the service account and data directory;
# on first install the unit's enablement follows the system's preset policy (Fedora's rule
# for packaged services), and it is never started by the package.
if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers regcache.conf || :
elif ! getent passwd regcache >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/regcache --no-create-home \
    --comment "regcache OCI registry mirror" --shell /sbin/nologin regcache || :
fi
if [ ! -d /var/lib/regcache ]; then
  install -d -o regcache -g regcache -m 0750 /var/lib/regcache || :
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl --no-reload preset regcache.service >/dev/null 2>&1 || :
fi
