#!/bin/sh
# Runs the integration suite against a regcache binary: run.sh BINARY [pytest args...]
# ctest runs it from the repository root.
set -e
bin="$1"
shift
REGCACHE_BIN="$bin" exec /usr/bin/python3 -m pytest -q -ra -p no:cacheprovider tests/integration "$@"
