# regcache %postun ($1: 0 on erase, 1 on upgrade): reload unit files; on upgrade restart the
# service if it was running. /var/lib/regcache and the regcache account are kept on erase
# (rpm has no purge): remove them by hand with `rm -rf /var/lib/regcache`.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 1 ]; then
    systemctl try-restart regcache.service >/dev/null 2>&1 || :
  fi
fi
