#!/bin/sh
# Installs everything regcache needs to build and test, from Debian 12's packages.
# Usage: scripts/install-deps.sh [--build-only | --bench]
#   --bench also installs the peers and profilers tests/bench/run.py uses.
set -eu

build="build-essential cmake ninja-build pkg-config git
  libevent-dev libcurl4-openssl-dev libssl-dev liblmdb-dev libsimdjson-dev libspdlog-dev
  libfmt-dev libtomlplusplus-dev libhttp-parser-dev catch2 clang-format"
tests="python3 openssl python3-pytest python3-requests skopeo umoci docker-registry curl podman containerd
  lintian rpm systemd dpkg-dev fakeroot file clang libclang-rt-14-dev chromium nodejs npm apache2-utils"

bench="nginx-light linux-perf valgrind"

packages="$build"
[ "${1:-}" = "--build-only" ] || packages="$build $tests"
[ "${1:-}" != "--bench" ] || packages="$packages $bench"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Skip apt entirely when everything is already there (a developer's second run).
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  # A Node.js installed outside Debian's packages (with its own npm) conflicts with Debian's npm
  # package; the browser test only needs the commands.
  case "$p" in nodejs | npm) command -v "$p" >/dev/null 2>&1 && continue ;; esac
  missing="$missing $p"
done
[ -n "$missing" ] || exit 0

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
