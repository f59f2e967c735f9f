#!/bin/sh
# Fails when a tracked C++ file differs from what clang-format (.clang-format) makes of it.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cc' '*.h')
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files
echo "format: $(echo "$files" | wc -l) files clean"
