#!/usr/bin/env bash
# npm run bench:scale: the import bench and the Users list bench at 1,000,000 users (USERS= to
# change), on PostgreSQL for every step and on PGlite for the fresh import and the re-import only
# (no target there: it must complete). Prints the same lines as `npm run bench`, with the bytes of
# peak RSS per directory user. One run of each step (BENCH_RUNS=1): about 20 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/../.."
export USERS="${USERS:-1000000}"
pg_url="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
status=0
BENCH_RUNS="${BENCH_RUNS:-1}" BENCH_PGLITE_STEPS="${BENCH_PGLITE_STEPS:-fresh,unchanged}" \
  node --import tsx test/bench/import.bench.ts || status=1
echo
echo "== Users list, PostgreSQL, ${USERS} users =="
DATABASE_URL="$pg_url" node --import tsx test/bench/user-list.bench.ts || status=1
exit $status
