#!/usr/bin/env bash
# The whole suite, as CI runs it: once on the embedded PGlite database, then on the PostgreSQL server
# (a fresh database per test file, dropped afterwards). The second pass leaves out the browser tests
# and the Samba AD tests: they drive the same pages and the same directory code whatever the database,
# take half the suite's time, and the pass on the server is about the database.
set -euo pipefail
cd "$(dirname "$0")/.."
bash src/dev/install-system-packages.sh test

pg_url="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

echo "== Test suite on PGlite (embedded) =="
env -u DATABASE_URL bash test/run-tests.sh

if node -e "require('postgres')(process.argv[1],{max:1,connect_timeout:3})\`select 1\`.then(()=>process.exit(0),()=>process.exit(1))" "$pg_url" 2>/dev/null; then
  echo "== Test suite on PostgreSQL ($pg_url), without the browser and Samba AD tests =="
  shopt -s globstar nullglob
  server_files=()
  for file in test/**/*.test.ts; do
    case "$file" in test/browser/* | test/ad/*) ;; *) server_files+=("$file") ;; esac
  done
  DATABASE_URL="$pg_url" bash test/run-tests.sh "${server_files[@]}"
elif [ -n "${CI:-}" ]; then
  echo "PostgreSQL is not reachable at $pg_url: CI needs it for the second pass." >&2
  exit 1
else
  echo "PostgreSQL is not reachable at $pg_url: skipped the PostgreSQL pass (set TEST_POSTGRES_URL)."
fi
