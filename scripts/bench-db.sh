#!/usr/bin/env bash
# TechEmpower's database endpoints, percore (examples/techempower.rs, one
# shard) against actix-web with tokio-postgres (bench/peers/actix-pg, one
# worker), side by side against the same local PostgreSQL: each server on
# SERVER_CPU, PostgreSQL and wrk on LOAD_CPU, rounds alternating. Prints
# req/s and server CPU per request (user+system from /proc/PID/stat) for
# /db, /queries?q=20, /fortunes and /updates?q=20, with the ratios.
# percore-nospin is the same server with PERCORE_IDLE_POLL_US=0: the
# shard waits on PostgreSQL much of the time, and the default shard spins
# up to 50 µs before it sleeps, which counts as CPU per request without
# being work (the peer never spins).
#
#   ROUNDS=5 DURATION=5 CONNECTIONS=64 DB_POOL=1 scripts/bench-db.sh
#
# PATHS picks endpoints (space-separated); PERF=FILE profiles percore's
# first round with perf. DB_POOL is percore's connections per shard (the peer keeps one per
# worker, as TechEmpower's actix entry does). Makes a throwaway cluster with
# initdb (as the postgres user when run as root); installs PostgreSQL and
# wrk (apt-get) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
DB_POOL=${DB_POOL:-1}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && command -v wrk >/dev/null \
  || { apt-get update -qq && apt-get install -y -qq postgresql wrk >/dev/null; }
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cargo build --release --quiet --example techempower
cargo build --release --quiet --manifest-path bench/peers/actix-pg/Cargo.toml

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
as_pg=()
if [[ $(id -u) == 0 ]]; then chown postgres "$work"; as_pg=(runuser -u postgres --); fi
"${as_pg[@]}" "$bin/initdb" -D "$work/data" -U bench -A trust --no-sync -E UTF8 --locale=C >/dev/null
pg_port=$(free_port)
taskset -c "$LOAD_CPU" "${as_pg[@]}" "$bin/postgres" -D "$work/data" -k "$work" -p "$pg_port" \
  -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200 \
  >"$work/pg.log" 2>&1 &
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" stop -m fast >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
  "$bin/pg_isready" -h 127.0.0.1 -p "$pg_port" -q && break
  sleep 0.1
done
psql() { command psql -q -h 127.0.0.1 -p "$pg_port" -U bench -d postgres "$@"; }
psql <<'SQL'
CREATE TABLE world (id INT PRIMARY KEY, randomnumber INT NOT NULL);
INSERT INTO world SELECT i, 1 + floor(random() * 10000)::INT FROM generate_series(1, 10000) AS i;
CREATE TABLE fortune (id INT PRIMARY KEY, message TEXT NOT NULL);
INSERT INTO fortune VALUES
 (1, 'fortune: No such file or directory'),
 (2, 'A computer scientist is someone who fixes things that aren''t broken.'),
 (3, 'After enough decimal places, nobody gives a damn.'),
 (4, 'A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1'),
 (5, 'A computer program does what you tell it to do, not what you want it to do.'),
 (6, 'Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen'),
 (7, 'Any program that runs right is obsolete.'),
 (8, 'A list is only as strong as its weakest link. — Donald Knuth'),
 (9, 'Feature: A bug with seniority.'),
 (10, 'Computers make very fast, very accurate mistakes.'),
 (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
 (12, 'フレームワークのベンチマーク');
ANALYZE;
SQL
export DATABASE_URL="postgres://bench@127.0.0.1:$pg_port/postgres"

declare -A port pid
port[percore]=$(free_port)
port[percore-nospin]=$(free_port)
port[actix]=$(free_port)
DB_POOL=$DB_POOL taskset -c "$SERVER_CPU" target/release/examples/techempower serve \
  --listen "127.0.0.1:${port[percore]}" --shards 1 --cpus "$SERVER_CPU" --log-level warn &
pid[percore]=$!
PERCORE_IDLE_POLL_US=0 DB_POOL=$DB_POOL taskset -c "$SERVER_CPU" target/release/examples/techempower serve \
  --listen "127.0.0.1:${port[percore-nospin]}" --shards 1 --cpus "$SERVER_CPU" --log-level warn &
pid[percore-nospin]=$!
taskset -c "$SERVER_CPU" bench/peers/actix-pg/target/release/peer-actix-pg "127.0.0.1:${port[actix]}" &
pid[actix]=$!
pids=("${pid[percore]}" "${pid[percore-nospin]}" "${pid[actix]}")
for name in percore percore-nospin actix; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:${port[$name]}/db" >/dev/null && break
    sleep 0.1
  done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
echo "| endpoint | server | req/s median (min–max) | CPU µs/request | req/s vs actix | CPU vs actix |"
echo "|---|---|---|---|---|---|"
for path in ${PATHS:-/db /queries?q=20 /fortunes /updates?q=20}; do
  declare -A rates=() cpus=()
  for name in percore percore-nospin actix; do
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:${port[$name]}$path" >/dev/null
  done
  for round in $(seq "$ROUNDS"); do
    for name in percore percore-nospin actix; do
      before=$(cpu_ticks "${pid[$name]}")
      # PERF=FILE: a CPU profile of percore's first round (perf record).
      if [[ -n ${PERF:-} && $name == percore && $round == 1 ]]; then
        perf record -g -o "$PERF" -p "${pid[$name]}" -- sleep "$DURATION" >/dev/null 2>&1 &
      fi
      out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:${port[$name]}$path")
      after=$(cpu_ticks "${pid[$name]}")
      requests=$(echo "$out" | awk '/requests in/ {print $1}')
      errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
      [[ -z $errors ]] || echo "   $name $path: $errors non-2xx answers" >&2
      rates[$name]+="$(python3 -c "print(round($requests / $DURATION))") "
      cpus[$name]+="$(python3 -c "print(round(($after - $before) * 1e4 / max($requests, 1), 2))") "
    done
  done
  declare -A r=() c=() span=()
  for name in percore percore-nospin actix; do
    r[$name]=$(median ${rates[$name]}); c[$name]=$(median ${cpus[$name]})
    span[$name]=$(python3 -c "import sys; v=list(map(float, sys.argv[1:])); print(f'{min(v):.0f}–{max(v):.0f}')" ${rates[$name]})
  done
  for name in percore percore-nospin actix; do
    echo "| $path | $name | ${r[$name]} (${span[$name]}) | ${c[$name]} | $(python3 -c "print(round(${r[$name]} / ${r[actix]}, 2))") | $(python3 -c "print(round(${c[$name]} / ${c[actix]}, 2))") |"
  done
done
