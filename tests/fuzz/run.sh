#!/bin/sh
# Builds the libFuzzer targets with clang in a build dir of their own and runs each for a bounded
# time on a fresh copy of its seed corpus (tests/fuzz/corpus/<target>/).
# Usage: tests/fuzz/run.sh [BUILD_DIR]   (default: build-fuzz at the top of the source tree)
# Environment: FUZZ_SECONDS per target (default 20); FUZZ_TARGETS to run a subset.
# Prints `fuzz <target>: <N> executions, 0 crashes` per target; exits non-zero when any target
# crashes, keeping the input that did it under BUILD_DIR/artifacts/<target>/ (until the next run;
# replay it with `BUILD_DIR/tests/fuzz/<target>_fuzz FILE`).
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-fuzz}
seconds=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-"http_request reference manifest www_authenticate range"}

command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (scripts/install-deps.sh)" >&2; exit 1; }

cmake -S "$src" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREGCACHE_FUZZ=ON -DREGCACHE_TESTS=OFF >/dev/null
set --
for t in $targets; do
  set -- "$@" "${t}_fuzz"
done
cmake --build "$build" -j2 --target "$@"

failed=0
for t in $targets; do
  corpus=$build/corpus/$t
  artifacts=$build/artifacts/$t
  log=$build/logs/$t.log
  rm -rf "$corpus" "$artifacts"  # a crash kept from an earlier run is not this run's
  mkdir -p "$corpus" "$artifacts" "$build/logs"
  cp "$src/tests/fuzz/corpus/$t/"* "$corpus/"
  dict=""
  [ ! -f "$src/tests/fuzz/$t.dict" ] || dict="-dict=$src/tests/fuzz/$t.dict"

  status=0
  # shellcheck disable=SC2086
  "$build/tests/fuzz/${t}_fuzz" -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=5 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" $dict "$corpus" >"$log" 2>&1 ||
    status=$?

  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=$(find "$artifacts" -type f | wc -l)
  if [ "$status" -eq 0 ] && [ "$crashes" -eq 0 ]; then
    echo "fuzz $t: ${runs:-0} executions, 0 crashes"
  else
    failed=1
    echo "fuzz $t: ${runs:-0} executions, $((crashes > 0 ? crashes : 1)) crashes (exit $status)"
    find "$artifacts" -type f -exec echo "  kept: {}" \;
    echo "  log: $log (last lines below)"
    tail -n 30 "$log" | sed 's/^/  | /'
  fi
done
exit "$failed"
