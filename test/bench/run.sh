#!/usr/bin/env bash
# npm run bench: the import of 100,000 users (and a group of all of them) against an ldapsearch
# baseline, then the Users list at 100,000 users, on PGlite and on the PostgreSQL server.
set -uo pipefail
cd "$(dirname "$0")/../.."
pg_url="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
status=0
node --import tsx test/bench/import.bench.ts || status=1
echo
echo "== Users list, PGlite =="
env -u DATABASE_URL node --import tsx test/bench/user-list.bench.ts || status=1
echo
echo "== Users list, PostgreSQL =="
DATABASE_URL="$pg_url" node --import tsx test/bench/user-list.bench.ts || status=1
exit $status
