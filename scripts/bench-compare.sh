#!/usr/bin/env bash
# percore against nginx, one core each, side by side (see ../shared/BENCH.md).
#
#   scripts/bench-compare.sh
#
# Server under test on SERVER_CPU with one shard (nginx: one worker), wrk on
# LOAD_CPU. Rounds alternate percore, nginx, percore, nginx…; each figure is
# the median of the rounds with its min–max, and the ratio of medians.
# CPU per request is the server's user+system time over the requests it
# served. Knobs (environment): ROUNDS=5 DURATION=8 WARMUP=3 SERVER_CPU=1
# LOAD_CPU=0 IDLE_CONNECTIONS=10000. Installs nginx and wrk with apt-get when
# missing. Prints a Markdown table; the same goes to target/bench-compare.md.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-3}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}

cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx wrk >/dev/null
fi
cargo build --release --quiet
ulimit -n "$(ulimit -Hn)"  # the hard limit; 10k idle connections need ~10k

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # port
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

percore_port=$(free_port)
nginx_port=$(free_port)
mask=$(python3 -c "print(format(1 << $SERVER_CPU, 'b'))")
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $mask;
worker_rlimit_nofile $(ulimit -n);
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections $((IDLE_CONNECTIONS + 1024)); }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nginx_port;
    location = /plaintext { default_type "text/plain; charset=utf-8"; return 200 "Hello, World!"; }
    location = /json { default_type application/json; return 200 '{"message":"Hello, World!"}'; }
  }
}
CONF

# Starts both servers; sets percore_pid and nginx_worker.
start_servers() {
  taskset -c "$SERVER_CPU" "$root/target/release/percore" --listen "127.0.0.1:$percore_port" \
    --shards 1 --cpus "$SERVER_CPU" --log-level warn &
  percore_pid=$!
  pids+=("$percore_pid")
  nginx -c "$work/nginx/nginx.conf" &
  nginx_master=$!
  pids+=("$nginx_master")
  wait_for "$percore_port"
  wait_for "$nginx_port"
  nginx_worker=$(pgrep -P "$nginx_master" | head -1)
}

stop_servers() {
  kill "$percore_pid" "$nginx_master"
  wait "$percore_pid" "$nginx_master" 2>/dev/null || true
}

start_servers

# CPU ticks (user + system, all threads) of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run_wrk SERVER_PID PORT CONNECTIONS PATH [pipeline depth] -> "requests_per_second microseconds_per_request"
run_wrk() {
  local pid=$1 port=$2 connections=$3 path=$4 depth=${5:-} duration=${6:-$DURATION}
  local args=(-t1 -c"$connections" -d"${duration}s" "http://127.0.0.1:$port$path")
  [ -n "$depth" ] && args+=(-s scripts/pipeline.lua -- "$depth" "$path")
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c "$LOAD_CPU" wrk "${args[@]}")
  after=$(cpu_ticks "$pid")
  local requests rps
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
    echo "$out" | grep "Non-2xx\|Socket errors" >&2
  fi
  python3 -c "print($rps, ($after - $before) / $hz * 1e6 / max($requests, 1))"
}

scenarios=(
  "plaintext keep-alive, 64 connections|64|/plaintext|"
  "plaintext keep-alive, 256 connections|256|/plaintext|"
  "plaintext pipelined ×16, 256 connections|256|/plaintext|16"
  "json keep-alive, 64 connections|64|/json|"
)

results="$work/results"
: > "$results"
for scenario in "${scenarios[@]}"; do
  IFS='|' read -r name connections path depth <<<"$scenario"
  echo "== $name" >&2
  run_wrk "$percore_pid" "$percore_port" "$connections" "$path" "$depth" "$WARMUP" >/dev/null
  run_wrk "$nginx_worker" "$nginx_port" "$connections" "$path" "$depth" "$WARMUP" >/dev/null
  for round in $(seq "$ROUNDS"); do
    read -r rps us < <(run_wrk "$percore_pid" "$percore_port" "$connections" "$path" "$depth")
    echo "$name|percore|$rps|$us" >> "$results"
    echo "   round $round percore $rps req/s, $us µs CPU/req" >&2
    read -r rps us < <(run_wrk "$nginx_worker" "$nginx_port" "$connections" "$path" "$depth")
    echo "$name|nginx|$rps|$us" >> "$results"
    echo "   round $round nginx   $rps req/s, $us µs CPU/req" >&2
  done
done

echo "== idle keep-alive memory, $IDLE_CONNECTIONS connections, fresh servers" >&2
for round in 1 2; do
  stop_servers
  start_servers
  echo "idle|percore|$(python3 scripts/idle_connections.py "$percore_port" "$IDLE_CONNECTIONS" "$percore_pid")|0" >> "$results"
  echo "idle|nginx|$(python3 scripts/idle_connections.py "$nginx_port" "$IDLE_CONNECTIONS" "$nginx_worker")|0" >> "$results"
done

python3 - "$results" <<'PY' | tee target/bench-compare.md
import statistics, sys
rows = [line.rstrip("\n").split("|") for line in open(sys.argv[1])]
order = []
data = {}
for name, server, value, cpu in rows:
    if name not in order:
        order.append(name)
    data.setdefault((name, server), []).append((float(value), float(cpu)))
def summary(values):
    return statistics.median(values), min(values), max(values)
print("| scenario | percore | nginx | ratio | CPU µs/req percore | nginx | ratio |")
print("|---|---|---|---|---|---|---|")
for name in order:
    ours, theirs = data[(name, "percore")], data[(name, "nginx")]
    if name == "idle":
        o = summary([v for v, _ in ours]); t = summary([v for v, _ in theirs])
        print(f"| idle keep-alive RSS growth, bytes/connection | {o[0]:.0f} ({o[1]:.0f}–{o[2]:.0f}) | {t[0]:.0f} ({t[1]:.0f}–{t[2]:.0f}) | {o[0]/t[0]:.2f} | | | |")
        continue
    o = summary([v for v, _ in ours]); t = summary([v for v, _ in theirs])
    oc = summary([c for _, c in ours]); tc = summary([c for _, c in theirs])
    print(f"| {name} | {o[0]:,.0f} ({o[1]:,.0f}–{o[2]:,.0f}) | {t[0]:,.0f} ({t[1]:,.0f}–{t[2]:,.0f}) | {o[0]/t[0]:.2f} "
          f"| {oc[0]:.2f} | {tc[0]:.2f} | {oc[0]/tc[0]:.2f} |")
PY
