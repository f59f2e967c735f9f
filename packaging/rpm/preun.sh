# regcache %preun ($1: 0 on erase, 1 on upgrade): on erase, disable and stop the service.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl --no-reload disable --now regcache.service >/dev/null 2>&1 || :
fi
