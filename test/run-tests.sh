#!/usr/bin/env bash
# Runs the test files given (default: all of them) with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s globstar nullglob
files=("$@")
if [ ${#files[@]} -eq 0 ]; then files=(test/**/*.test.ts); fi
exec node --test --test-concurrency=1 --import tsx "${files[@]}"
